/* nbdmirror promote | demote | connect | disconnect | verify | invalidate:
 * one line to a running serve's control socket, one line back. They share
 * this file because they differ only in their words (a table below).
 * verify and invalidate start work that goes on; on a terminal they follow
 * it (status polling) on one progress line until it is done. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "ctl.h"
#include "nbdmirror.h"
#include "status.h"

struct node_cmd {
    const char *name, *args, *help;
    const char *flag;        /* the one flag it takes, or NULL */
    bool peer_arg;           /* takes an optional PEER address */
    bool follows;            /* on a terminal, shows the work's progress */
};

static const struct node_cmd cmds[] = {
    { "promote", "[--force]",
      "Make this node primary: its export takes writes and every write is streamed\n"
      "to its peers. Refused while another connected node is primary, and on a disk\n"
      "that is not UpToDate unless --force (which makes this disk's data the\n"
      "reference: writes only other nodes have are then lost, or end in a split brain).\n",
      "--force", false, false },
    { "demote", "",
      "Make this node secondary: new writes fail with ESHUTDOWN, writable clients\n"
      "are closed once their requests are answered, the disk is flushed and every\n"
      "connected peer confirms it has everything; then the export is read-only.\n"
      "Waits until that is done.\n", NULL, false, false },
    { "connect", "[--discard-my-data] [PEER]",
      "Connect again to peers that were disconnected (by 'disconnect' or by a split\n"
      "brain), or retry a waiting one now. --discard-my-data: this node's changes\n"
      "since it parted from its peer are overwritten from the peer (resolves a\n"
      "split brain; this node must be secondary).\n", "--discard-my-data", true, false },
    { "disconnect", "[PEER]",
      "Close the link to PEER (every peer if none) and stop connecting to it until\n"
      "'connect'. A primary tells the peer it is Outdated first.\n", NULL, true, false },
    { "verify", "[PEER]",
      "Online verify (on the primary): compare a hash of every block with PEER's\n"
      "(every connected peer if none); blocks that differ are marked out of sync,\n"
      "reported in status and the log, and resynced.\n"
      "On a terminal it shows the verify's progress (and that of the resync of\n"
      "blocks that differ) until it is done, and exits 1 if it was interrupted;\n"
      "otherwise it returns once the verify has started. Ctrl-C stops watching,\n"
      "not the verify.\n", NULL, true, true },
    { "invalidate", "",
      "Throw away this (secondary) node's data: it is Inconsistent and fully\n"
      "resynced from a peer.\n"
      "On a terminal it shows the resync's progress until the disk is UpToDate,\n"
      "and exits 1 if no resync runs for 30 s; otherwise it returns at once.\n"
      "Ctrl-C stops watching, not the resync.\n", NULL, false, true },
};

static int usage(const struct node_cmd *c, FILE *f)
{
    fprintf(f, "Usage: nbdmirror %s [NAME | --control PATH] %s\n\n%s\n" TARGET_HELP
               "  --control PATH  the serve's control socket (default " NM_DEFAULT_CONTROL ")\n%s",
            c->name, c->args, c->help,
            c->peer_arg ? "  PEER            a peer's HOST:PORT, or after NAME a node's name\n" : "");
    return f == stdout ? 0 : 2;
}

/* ---- following verify and invalidate ---- */

#define POLL_MS 250
#define IDLE_MS 30000 /* invalidate: no resync for this long, no use waiting */

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

static bool is_verify(const struct status_peer *p) { return !strcmp(p->replication, "VerifyS"); }
static bool is_target(const struct status_peer *p)
{
    return !strcmp(p->replication, "SyncTarget") || !strcmp(p->replication, "PausedSyncT");
}

static const struct status_peer *peer_in(const struct node_status *st, const char *addr)
{
    for (int i = 0; i < st->npeers; i++)
        if (!strcmp(st->peers[i].address, addr))
            return &st->peers[i];
    return NULL;
}

static void human(char *buf, size_t len, uint64_t v)
{
    if (v < (1u << 20))
        snprintf(buf, len, "%llu KiB", (unsigned long long)(v + 1023) >> 10);
    else
        snprintf(buf, len, "%.1f MiB", v / 1048576.0);
}

/* The sync that was (a, as last seen) is over; b is its peer now. false:
 * it did not finish (the peer went away). */
static bool sync_over(struct progress *pg, const struct status_peer *a,
                      const struct status_peer *b, uint64_t total)
{
    double s = (now_ms() - pg->t0) / 1000.0;
    char n[32];

    if (!b || strcmp(b->connection, "Connected") || !strcmp(b->replication, "split-brain")) {
        progress_end(pg, "interrupted at %d%%: the peer is %s", a->resync_percent,
                     b ? b->connection : "gone");
        return false;
    }
    if (is_verify(a)) {
        human(n, sizeof n, b->verify_mismatch_bytes);
        if (b->verify_mismatch_bytes)
            progress_end(pg, "done in %.1f s: %s (%llu bytes) differ, resyncing them", s, n,
                         (unsigned long long)b->verify_mismatch_bytes);
        else
            progress_end(pg, "done in %.1f s: the disks are equal", s);
        return true;
    }
    human(n, sizeof n, total);
    progress_end(pg, "done: %s in %.1f s", n, s);
    return true;
}

/* What a sync that ended between two polls left in the status: the last
 * one's record. */
static void unseen(FILE *tty, const char *what, const struct status_peer *p)
{
    struct progress pg;
    char label[200], n[32];

    snprintf(label, sizeof label, "%s %s", what, p->address);
    progress_start(&pg, tty, label);
    if (!strcmp(p->last_resync_reason, "verify")) {
        human(n, sizeof n, p->verify_mismatch_bytes);
        if (p->verify_mismatch_bytes)
            progress_end(&pg, "done in %.1f s: %s (%llu bytes) differ, resyncing them",
                         p->last_resync_ms / 1000.0, n,
                         (unsigned long long)p->verify_mismatch_bytes);
        else
            progress_end(&pg, "done in %.1f s: the disks are equal", p->last_resync_ms / 1000.0);
        return;
    }
    human(n, sizeof n, p->last_resync_bytes);
    progress_end(&pg, "done: %s in %.1f s", n, p->last_resync_ms / 1000.0);
}

/* Polls the status until the work verify or invalidate started is over,
 * on one progress line. A verify that found blocks that differ is over
 * when their resync is. 0 done, 1 interrupted or lost. */
static int follow(const struct node_cmd *c, const char *path, const char *peer, FILE *tty)
{
    static struct node_status st;
    static struct status_peer last; /* the sync on the progress line, as last seen */
    bool verify = !strcmp(c->name, "verify"), on = false, waiting = false, seen = false;
    struct sigaction sa = { .sa_handler = on_sigint };
    struct progress pg;
    uint64_t idle_since = now_ms(), total = 0;
    char why[128], label[200], pending[128] = "", *ans;
    size_t len;
    int r, rc = 0;

    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: the sleep ends */
    for (;; nanosleep(&(struct timespec){ 0, POLL_MS * 1000000L }, NULL)) {
        if (interrupted) {
            if (on || waiting)
                progress_end(&pg, "stopped watching; it goes on (see 'nbdmirror status')");
            return 130;
        }
        if ((r = ctl_query(path, CTL_CMD_GET, &ans, &len)) < 0 ||
            status_parse(ans, len, &st, why, sizeof why) < 0) {
            if (on || waiting)
                fputc('\n', tty);
            fprintf(stderr, "nbdmirror %s: lost %s: %s\n", c->name, path,
                    r < 0 ? strerror(-r) : why);
            if (r == 0)
                free(ans);
            return 1;
        }
        free(ans);
        const struct status_peer *a = NULL;
        int n = 0;
        for (int i = 0; i < st.npeers; i++) {
            const struct status_peer *p = &st.peers[i];
            if (p->resync_percent >= 0 && (!*peer || !strcmp(p->address, peer)) && !n++)
                a = p;
        }
        if (on && (!a || strcmp(a->address, last.address) || is_verify(a) != is_verify(&last))) {
            const struct status_peer *b = peer_in(&st, last.address);
            if (!sync_over(&pg, &last, b, total))
                rc = verify; /* invalidate: a new link resyncs again */
            else if (is_verify(&last) && b->verify_mismatch_bytes)
                snprintf(pending, sizeof pending, "%s", last.address); /* their resync */
            else if (!strcmp(last.address, pending))
                pending[0] = '\0';
            on = false;
        }
        if (a) {
            if (!on) {
                snprintf(label, sizeof label, "%s %s%s", is_verify(a) ? "verify of"
                         : is_target(a) ? "resync from" : "resync to", a->address,
                         n > 1 ? " (and more)" : "");
                progress_start(&pg, tty, label);
                total = a->resync_sent_bytes + a->out_of_sync_bytes;
                on = seen = true;
                waiting = false;
            }
            /* a resync has done what is no longer out of sync of what it
             * began with; a verify walks the whole disk */
            if (total < a->out_of_sync_bytes)
                total = a->out_of_sync_bytes;
            uint64_t done = total - a->out_of_sync_bytes;
            if (is_verify(a)) {
                total = st.size;
                done = st.size / 100 * (uint64_t)a->resync_percent;
            }
            progress_show(&pg, done, total, a->resync_bytes_per_s, false);
            last = *a;
            idle_since = now_ms();
            continue;
        }
        if (verify && !seen) {
            /* it ended before the first look */
            for (int i = 0; i < st.npeers; i++) {
                const struct status_peer *p = &st.peers[i];
                if ((!*peer || !strcmp(p->address, peer)) && !strcmp(p->last_resync_reason, "verify")) {
                    unseen(tty, "verify of", p);
                    if (p->verify_mismatch_bytes)
                        snprintf(pending, sizeof pending, "%s", p->address);
                }
            }
            seen = true;
        }
        if (verify && pending[0]) {
            /* the resync of what differs, over before we saw it run? */
            const struct status_peer *b = peer_in(&st, pending);
            if (b && strcmp(b->last_resync_reason, "verify")) {
                unseen(tty, "resync to", b);
                pending[0] = '\0';
            } else if (!b || strcmp(b->connection, "Connected") || now_ms() - idle_since > IDLE_MS) {
                fprintf(tty, "resync to %s: did not run (the peer is %s)\n", pending,
                        b ? b->connection : "gone");
                return 1;
            } else {
                continue;
            }
        }
        if (verify)
            return rc;
        if (!strcmp(st.disk, "UpToDate")) {
            if (waiting)
                progress_end(&pg, "disk UpToDate");
            return 0;
        }
        if (!waiting)
            progress_start(&pg, tty, "invalidate");
        if (now_ms() - idle_since > IDLE_MS) {
            progress_end(&pg, "no resync for %d s; the disk is %s (it resyncs when a peer "
                         "connects)", IDLE_MS / 1000, st.disk);
            return 1;
        }
        waiting = true;
        progress_note(&pg, "waiting for a peer to resync from (disk %s)", st.disk);
    }
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
    FILE *tty = c->follows && ok ? progress_tty() : NULL;
    if (tty) {
        fflush(stdout);
        return follow(c, path, peer, tty);
    }
    return ok ? 0 : 1;
}

bool cmd_node_known(const char *name)
{
    for (unsigned i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(name, cmds[i].name))
            return true;
    return false;
}
