/* The program's subcommands (one file each, as wg(8) does). */
#ifndef NM_NBDMIRROR_H
#define NM_NBDMIRROR_H

#include <stdbool.h>

#define NM_VERSION "0.1.0"
#define NM_DEFAULT_CONTROL "/run/nbdmirror.ctl"

int cmd_create_md(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_status(int argc, char **argv);
/* promote, demote, connect, disconnect, verify, invalidate (argv[0]) */
int cmd_node(int argc, char **argv);
bool cmd_node_known(const char *name);

#endif
