/* nbdmirror status: asks a running serve for its status record over the
 * control socket and renders it as text or JSON (status.h). */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "nbdmirror.h"
#include "status.h"

static const char usage[] =
    "Usage: nbdmirror status [NAME | --control PATH] [--json]\n"
    "\n"
    "Show the state of a running 'nbdmirror serve'. Without NAME or --control:\n"
    "every resource in /etc/nbdmirror if there are any, else the default socket.\n"
    "\n"
    TARGET_HELP
    "  --control PATH  its control socket (default " NM_DEFAULT_CONTROL ")\n"
    "  --json          machine-readable output, one JSON object (keys in nbdmirror(8))\n";

/* Asks path for its record; quiet: no message when nobody answers. 0 shown,
 * 1 not reachable or no record. */
static int fetch(const char *path, struct node_status *st, bool quiet)
{
    char *ans, why[128];
    size_t len;
    int r = ctl_query(path, CTL_CMD_GET, &ans, &len);

    if (r < 0) {
        if (!quiet)
            fprintf(stderr, "nbdmirror status: cannot reach %s: %s (is 'nbdmirror serve' "
                            "running?)\n", path, strerror(-r));
        return 1;
    }
    if (status_parse(ans, len, st, why, sizeof why) < 0) {
        /* an answer that is no record (e.g. an older daemon's error line)
         * is shown as it came, up to its first line break */
        fprintf(stderr, "nbdmirror status: %s answered no usable status (%s): %.*s\n", path, why,
                (int)strcspn(ans, "\n"), ans);
        free(ans);
        return 1;
    }
    free(ans);
    return 0;
}

/* status with neither NAME nor --control, when /etc/nbdmirror holds
 * resources: each of them, like `drbdadm status` (JSON: an array) */
static int show_all(bool json, const char *node)
{
    static struct node_status st;
    const char *dir = getenv(RES_DIR_ENV);
    char path[RES_VALUE_MAX + 300], err[600];
    struct dirent **ents;
    int n, shown = 0, rc = 0;

    dir = dir && *dir ? dir : RES_DEFAULT_DIR;
    n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        const char *e = ents[i]->d_name;
        size_t l = strlen(e);
        static struct resource res;
        const struct res_section *self;

        if (l <= 4 || strcmp(e + l - 4, ".res") || e[0] == '.') {
            free(ents[i]);
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, e);
        if (json)
            fputs(shown ? ",\n " : "[", stdout);
        shown++;
        if (res_load(&res, path, NULL, err, sizeof err) < 0 ||
            !(self = res_this_node(&res, node, err, sizeof err))) {
            if (json) {
                char rname[RES_NAME_MAX];
                snprintf(rname, sizeof rname, "%.*s", (int)(l - 4), e);
                fputs("{\"resource\": ", stdout);
                status_json_str(stdout, rname);
                fputs(", \"error\": ", stdout);
                status_json_str(stdout, err);
                fputs("}", stdout);
            } else {
                printf("%.*s: %s\n", (int)(l - 4), e, err);
            }
            rc = 1;
        } else {
            int r = fetch(res_get(&res, self, RK_CONTROL), &st, true);
            if (json) {
                fputs("{\"resource\": ", stdout);
                status_json_str(stdout, res.name);
                fputs(", \"node\": ", stdout);
                status_json_str(stdout, self->name);
                fputs(", \"status\": ", stdout);
                if (r)
                    fputs("null}", stdout);
                else {
                    fflush(stdout);
                    status_print_json(stdout, &st);
                    fputs("}", stdout);
                }
            } else {
                printf("%s (node %s): %s\n", res.name, self->name, r ? "not running" : "");
                if (!r)
                    status_print_text(stdout, &st);
            }
            res_free(&res);
        }
        free(ents[i]);
    }
    free(ents);
    if (!shown)
        return -1;
    if (json)
        fputs("]\n", stdout);
    return fflush(stdout) == 0 ? rc : 1;
}

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, 0, 'c' },
        { "json", no_argument, 0, 'j' },
        { "help", no_argument, 0, 'h' },
        TARGET_OPTIONS,
        { 0, 0, 0, 0 },
    };
    static struct node_status st;
    static struct target t;
    const char *path = NULL, *name = NULL;
    int json = 0, o, r;

    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 'j': json = 1; break;
        case 1101: t.config = optarg; break;
        case 1102: t.node = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc)
        name = argv[optind++];
    if (optind != argc) {
        fputs(usage, stderr);
        return 2;
    }
    if (!name && !path && !t.config && access(NM_DEFAULT_CONTROL, F_OK) != 0 &&
        (r = show_all(json, t.node)) >= 0)
        return r;
    if ((r = target_resolve(&t, "status", name, path)) != 0)
        return r;
    r = fetch(t.control, &st, false);
    target_free(&t);
    if (r)
        return r;
    if (json)
        status_print_json(stdout, &st);
    else
        status_print_text(stdout, &st);
    return fflush(stdout) == 0 ? 0 : 1;
}
