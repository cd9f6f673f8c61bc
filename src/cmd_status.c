/* nbdmirror status: asks a running serve over its control socket. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "nbdmirror.h"

static const char usage[] =
    "Usage: nbdmirror status [--control PATH] [--json]\n"
    "\n"
    "Show the state of a running 'nbdmirror serve'.\n"
    "\n"
    "  --control PATH  its control socket (default " NM_DEFAULT_CONTROL ")\n"
    "  --json          machine-readable output (keys in nbdmirror(8))\n";

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, 0, 'c' },
        { "json", no_argument, 0, 'j' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    const char *path = NM_DEFAULT_CONTROL;
    int json = 0, o, r;

    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 'j': json = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind != argc) {
        fputs(usage, stderr);
        return 2;
    }
    r = ctl_query(path, json ? "status json" : "status");
    if (r < 0) {
        fprintf(stderr, "nbdmirror status: cannot reach %s: %s (is 'nbdmirror serve' running?)\n",
                path, strerror(-r));
        return 1;
    }
    return 0;
}
