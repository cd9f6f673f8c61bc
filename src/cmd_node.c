/* nbdmirror promote | demote | connect | disconnect | verify | invalidate:
 * one line to a running serve's control socket, one line back. They share
 * this file because they differ only in their words (a table below). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "nbdmirror.h"

struct node_cmd {
    const char *name, *args, *help;
    const char *flag;        /* the one flag it takes, or NULL */
    bool peer_arg;           /* takes an optional PEER address */
};

static const struct node_cmd cmds[] = {
    { "promote", "[--force]",
      "Make this node primary: its export takes writes and every write is streamed\n"
      "to its peers. Refused while another connected node is primary, and on a disk\n"
      "that is not UpToDate unless --force (which makes this disk's data the\n"
      "reference: writes only other nodes have are then lost, or end in a split brain).\n",
      "--force", false },
    { "demote", "",
      "Make this node secondary: new writes fail with ESHUTDOWN, writable clients\n"
      "are closed once their requests are answered, the disk is flushed and every\n"
      "connected peer confirms it has everything; then the export is read-only.\n"
      "Waits until that is done.\n", NULL, false },
    { "connect", "[--discard-my-data] [PEER]",
      "Connect again to peers that were disconnected (by 'disconnect' or by a split\n"
      "brain), or retry a waiting one now. --discard-my-data: this node's changes\n"
      "since it parted from its peer are overwritten from the peer (resolves a\n"
      "split brain; this node must be secondary).\n", "--discard-my-data", true },
    { "disconnect", "[PEER]",
      "Close the link to PEER (every peer if none) and stop connecting to it until\n"
      "'connect'. A primary tells the peer it is Outdated first.\n", NULL, true },
    { "verify", "[PEER]",
      "Online verify (on the primary): compare a hash of every block with PEER's\n"
      "(every connected peer if none); blocks that differ are marked out of sync,\n"
      "reported in status and the log, and resynced.\n", NULL, true },
    { "invalidate", "",
      "Throw away this (secondary) node's data: it is Inconsistent and fully\n"
      "resynced from a peer.\n", NULL, false },
};

static int usage(const struct node_cmd *c, FILE *f)
{
    fprintf(f, "Usage: nbdmirror %s [NAME | --control PATH] %s\n\n%s\n" TARGET_HELP
               "  --control PATH  the serve's control socket (default " NM_DEFAULT_CONTROL ")\n%s",
            c->name, c->args, c->help,
            c->peer_arg ? "  PEER            a peer's HOST:PORT, or after NAME a node's name\n" : "");
    return f == stdout ? 0 : 2;
}

int cmd_node(int argc, char **argv)
{
    static const struct option opts[] = {
        { "control", required_argument, 0, 'c' },
        { "force", no_argument, 0, 'f' },
        { "discard-my-data", no_argument, 0, 'd' },
        { "help", no_argument, 0, 'h' },
        TARGET_OPTIONS,
        { 0, 0, 0, 0 },
    };
    static struct target t;
    const struct node_cmd *c = NULL;
    const char *path = NULL, *flag = "", *name = NULL;
    char line[512], *ans;
    size_t len;
    int o, r;

    for (unsigned i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[0], cmds[i].name))
            c = &cmds[i];
    if (!c)
        return 2;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 'f':
        case 'd': {
            const char *f = o == 'f' ? "--force" : "--discard-my-data";
            if (!c->flag || strcmp(c->flag, f)) {
                fprintf(stderr, "nbdmirror %s: %s is not an option of %s\n", c->name, f, c->name);
                return 2;
            }
            flag = f;
            break;
        }
        case 1101: t.config = optarg; break;
        case 1102: t.node = optarg; break;
        case 'h': return usage(c, stdout);
        default: return usage(c, stderr);
        }
    }
    /* a first word without ':' or '/' names a resource; an address has a port */
    if (optind < argc && res_is_name(argv[optind]))
        name = argv[optind++];
    if (argc - optind > (c->peer_arg ? 1 : 0))
        return usage(c, stderr);
    if ((r = target_resolve(&t, c->name, name, path)) != 0)
        return r;
    path = t.control;
    const char *peer = optind < argc ? target_peer(&t, argv[optind]) : "";
    if (strpbrk(peer, " \n")) {
        fprintf(stderr, "nbdmirror %s: a peer address has no spaces\n", c->name);
        return 2;
    }
    snprintf(line, sizeof line, "%s %s %s", c->name, flag, peer);
    r = ctl_query(path, line, &ans, &len);
    if (r < 0) {
        fprintf(stderr, "nbdmirror %s: cannot reach %s: %s (is 'nbdmirror serve' running?)\n",
                c->name, path, strerror(-r));
        return 1;
    }
    bool ok = !strncmp(ans, "ok: ", 4);
    fprintf(ok ? stdout : stderr, "nbdmirror %s: %s", c->name,
            ok ? ans + 4 : !strncmp(ans, "error: ", 7) ? ans + 7 : ans);
    if (!len || ans[len - 1] != '\n')
        fputc('\n', ok ? stdout : stderr);
    free(ans);
    return ok ? 0 : 1;
}

bool cmd_node_known(const char *name)
{
    for (unsigned i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(name, cmds[i].name))
            return true;
    return false;
}
