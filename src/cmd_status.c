/* nbdmirror status: asks a running serve for its status record over the
 * control socket and renders it as text or JSON (status.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "nbdmirror.h"
#include "status.h"

static const char usage[] =
    "Usage: nbdmirror status [--control PATH] [--json]\n"
    "\n"
    "Show the state of a running 'nbdmirror serve'.\n"
    "\n"
    "  --control PATH  its control socket (default " NM_DEFAULT_CONTROL ")\n"
    "  --json          machine-readable output, one JSON object (keys in nbdmirror(8))\n";

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, 0, 'c' },
        { "json", no_argument, 0, 'j' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    static struct node_status st;
    const char *path = NM_DEFAULT_CONTROL;
    char *ans, why[128];
    size_t len;
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
    r = ctl_query(path, CTL_CMD_GET, &ans, &len);
    if (r < 0) {
        fprintf(stderr, "nbdmirror status: cannot reach %s: %s (is 'nbdmirror serve' running?)\n",
                path, strerror(-r));
        return 1;
    }
    if (status_parse(ans, len, &st, why, sizeof why) < 0) {
        /* an answer that is no record (e.g. an older daemon's error line)
         * is shown as it came, up to its first line break */
        fprintf(stderr, "nbdmirror status: %s answered no usable status (%s): %.*s\n", path, why,
                (int)strcspn(ans, "\n"), ans);
        free(ans);
        return 1;
    }
    free(ans);
    if (json)
        status_print_json(stdout, &st);
    else
        status_print_text(stdout, &st);
    return fflush(stdout) == 0 ? 0 : 1;
}
