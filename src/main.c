/* nbdmirror: a userspace replicated block device. Dispatches subcommands. */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "nbdmirror.h"

static const char usage[] =
    "Usage: nbdmirror COMMAND [ARGS]\n"
    "\n"
    "A DRBD-style replicated block device in userspace: an NBD server in front\n"
    "of a local disk.\n"
    "\n"
    "Commands:\n"
    "  create-md DISK|NAME [--meta FILE] [--force] [--skip-initial-sync]\n"
    "                  write fresh metadata (internal, at the end of DISK, or in FILE)\n"
    "  serve DISK --nbd unix:PATH|HOST:PORT [options]\n"
    "                  serve DISK to NBD clients; with --role primary|secondary,\n"
    "                  replicate it (--peer, --listen, --protocol A|B|C)\n"
    "  up NAME [--foreground] | down NAME\n"
    "                  start or stop this node's part of resource NAME\n"
    "                  (/etc/nbdmirror/NAME.res, see nbdmirror.conf(5))\n"
    "  adjust NAME     apply the resource file's changes to the running node\n"
    "  dump NAME       the parsed resource file as JSON\n"
    "  status [NAME] [--control PATH] [--json]\n"
    "                  show what a running serve is doing\n"
    "  events [NAME] [--control PATH] [--json] [--now]\n"
    "                  follow its state changes, one line each\n"
    "  promote [--force] | demote\n"
    "                  make a running serve primary, or secondary\n"
    "  connect [--discard-my-data] [PEER] | disconnect [PEER]\n"
    "                  links to peers (a split brain is resolved with connect)\n"
    "  verify [PEER]   compare every block with a peer, online\n"
    "  invalidate      throw this node's data away: full resync from a peer\n"
    "\n"
    "Every command that talks to a running node takes a resource NAME (this\n"
    "node's part of it) or --control PATH.\n"
    "Run 'nbdmirror COMMAND --help' for a command's options, and see nbdmirror(8).\n";

int main(int argc, char **argv)
{
    nm_log_init("nbdmirror");
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("nbdmirror %s\n", NM_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "create-md"))
        return cmd_create_md(argc - 1, argv + 1);
    if (!strcmp(argv[1], "serve"))
        return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(argv[1], "status"))
        return cmd_status(argc - 1, argv + 1);
    if (!strcmp(argv[1], "events"))
        return cmd_events(argc - 1, argv + 1);
    if (cmd_resource_known(argv[1]))
        return cmd_resource(argc - 1, argv + 1);
    if (cmd_node_known(argv[1]))
        return cmd_node(argc - 1, argv + 1);
    fprintf(stderr, "nbdmirror: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}
