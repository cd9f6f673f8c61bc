/* The program's subcommands (one file each, as wg(8) does). */
#ifndef NM_NBDMIRROR_H
#define NM_NBDMIRROR_H

#include <stdbool.h>

#include "config.h"

#define NM_VERSION "0.1.0"
#define NM_DEFAULT_CONTROL "/run/nbdmirror.ctl"

/* A client command's node: a resource NAME or --control PATH (cmd_target.c).
 * Every such command takes --config FILE and --node NAME for the first. */
struct target {
    const char *config, *node;       /* set from the options before resolving */
    char control[RES_VALUE_MAX];
    bool loaded;
    struct resource res;
    const struct res_section *self;
};
#define TARGET_OPTIONS { "config", required_argument, 0, 1101 }, { "node", required_argument, 0, 1102 }
#define TARGET_HELP \
    "  NAME            a resource: this node's part of /etc/nbdmirror/NAME.res\n" \
    "  --config FILE   the resource file (instead of /etc/nbdmirror/NAME.res)\n" \
    "  --node NAME     this node's name in it (default: uname -n)\n"
/* 0, or an exit status after saying why on stderr */
int target_resolve(struct target *t, const char *cmd, const char *name, const char *control);
const char *target_peer(const struct target *t, const char *peer);
void target_free(struct target *t);

int cmd_create_md(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_events(int argc, char **argv);
/* promote, demote, connect, disconnect, verify, invalidate (argv[0]) */
int cmd_node(int argc, char **argv);
bool cmd_node_known(const char *name);
/* up, down, adjust, dump (argv[0]): resource files */
int cmd_resource(int argc, char **argv);
bool cmd_resource_known(const char *name);
/* serve, started by `up`: the resource it runs (for the control commands
 * config and set), and a pipe to tell `up` it serves */
void serve_from_resource(const char *name, const char *settings, int ready_fd);

#endif
