/* The program's subcommands (one file each, as wg(8) does). */
#ifndef NM_NBDMIRROR_H
#define NM_NBDMIRROR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

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

/* Progress of long-running work (src/progress.c): one line on a terminal,
 * redrawn in place; every call does nothing when tty is NULL. */
struct progress {
    FILE *tty;
    char label[160];
    uint64_t t0;                  /* progress_start */
    uint64_t seen_ms, seen_done;  /* the first sample: the rate since */
    uint64_t drawn_ms;
    bool drawn;
};
FILE *progress_tty(void); /* stderr if a terminal, else stdout if one, else NULL */
void progress_start(struct progress *pg, FILE *tty, const char *label);
/* "LABEL: 42% 1.1 GiB of 2.0 GiB, 110.0 MiB/s, ETA 0:07"; rate 0: measured
 * here. At most ten redraws a second unless now. */
void progress_show(struct progress *pg, uint64_t done, uint64_t total, uint64_t rate, bool now);
void progress_note(struct progress *pg, const char *fmt, ...)  /* "LABEL: words" in place */
    __attribute__((format(printf, 2, 3)));
void progress_end(struct progress *pg, const char *fmt, ...)   /* ... and a line break */
    __attribute__((format(printf, 2, 3)));

#endif
