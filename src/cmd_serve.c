/* nbdmirror serve: the daemon. Opens the disk and its metadata, picks the io
 * engine, serves NBD clients, and shuts down cleanly on SIGTERM/SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common.h"
#include "conn.h"
#include "ctl.h"
#include "io.h"
#include "meta.h"
#include "metrics.h"
#include "nbd.h"
#include "nbdmirror.h"
#include "repl.h"
#include "status.h"

/* A secondary's export answers reads only while its disk is consistent: a
 * disk mid-sync (or that failed a write) holds a mix of old and new blocks. */
static bool secondary_readable(void)
{
    enum disk_state d = repl_local_disk();
    return d == DS_UPTODATE || d == DS_OUTDATED;
}

static const char usage[] =
    "Usage: nbdmirror serve DISK --nbd unix:PATH|HOST:PORT [options]\n"
    "       nbdmirror serve DISK --role primary --nbd ADDRESS --peer HOST:PORT... [options]\n"
    "       nbdmirror serve DISK --role secondary --listen HOST:PORT [options]\n"
    "\n"
    "Serve DISK (a file or block device with nbdmirror metadata, see create-md)\n"
    "to NBD clients, and as a primary stream every write to the secondaries.\n"
    "Runs in the foreground; SIGTERM or SIGINT stops it cleanly.\n"
    "\n"
    "  --role primary|secondary  replicate, starting in this role (default:\n"
    "                         standalone, no peers); 'nbdmirror promote' and\n"
    "                         'demote' change it while serve runs\n"
    "  --force                start as primary although the disk is not UpToDate\n"
    "                         (it becomes the reference: see nbdmirror(8))\n"
    "  --peer HOST:PORT       a node to connect to (repeat for more, up to 31)\n"
    "  --listen HOST:PORT     accept replication connections here\n"
    "  --protocol A|B|C       when a write is acknowledged (primary; default C):\n"
    "                         A local disk + queued, B + peers received it,\n"
    "                         C + peers' disks have it\n"
    "  --timeout SECONDS      a peer silent this long is dropped (default 5)\n"
    "  --resync-rate BYTES/s  cap on resync traffic, e.g. 50M (default: none)\n"
    "  --resync-csums         resync by checksum: only blocks whose hashes differ move\n"
    "  --no-resync-control    resync at full speed even while clients write\n"
    "  --al-extents N         activity log: 4 MiB extents kept hot (64-4088,\n"
    "                         default 1016, about 4 GiB)\n"
    "  --after-sb-0pri POLICY split brain with no primary: disconnect (default),\n"
    "                         discard-zero-changes, discard-younger-primary\n"
    "  --peer-psk FILE        authenticate and encrypt replication links with a\n"
    "                         pre-shared key (psktool format, the same on every node)\n"
    "  --peer-certificates DIR  ... with X.509: ca-cert.pem, server-cert.pem,\n"
    "                         server-key.pem (client-cert.pem/-key.pem if any);\n"
    "                         each side must present a certificate of the CA\n"
    "  --tls off|on|require   NBD over TLS (STARTTLS): refused, offered, or\n"
    "                         required before anything else (default off)\n"
    "  --tls-certificates DIR X.509 for NBD: ca-cert.pem, server-cert.pem, server-key.pem\n"
    "  --tls-psk FILE         pre-shared keys for NBD clients (psktool format)\n"
    "  --tls-verify-peer      NBD clients must present a certificate signed by the CA\n"
    "  --nbd unix:PATH|HOST:PORT  where clients connect (e.g. unix:/run/nbd.sock,\n"
    "                         0.0.0.0:10809, [::1]:10809)\n"
    "  --meta FILE            external metadata (as given to create-md)\n"
    "  --name EXPORT          export name (default \"\"; the empty name always\n"
    "                         selects this export)\n"
    "  --read-only            refuse writes (EPERM)\n"
    "  --engine uring|aio     force an io engine (default: io_uring, else libaio)\n"
    "  --direct               O_DIRECT on a file (always on for block devices)\n"
    "  --poll-us N            poll up to N microseconds for the next event before\n"
    "                         sleeping, adapted to how soon events come (default 100;\n"
    "                         0: never poll)\n"
    "  --disk-depth N         at most N requests at the disk at once, the rest wait\n"
    "                         in order (default 0: no limit)\n"
    "  --control PATH         control socket for 'nbdmirror status'\n"
    "                         (default " NM_DEFAULT_CONTROL ")\n"
    "  --metrics HOST:PORT    serve Prometheus metrics over HTTP at /metrics\n"
    "                         (or unix:PATH, for a local proxy)\n";

static struct {
    const char *disk_path, *meta_path, *nbd, *name, *engine, *control, *role, *listen;
    char *peers[REPL_MAX_PEERS];
    int npeers;
    char protocol;
    unsigned timeout_ms, al_extents, poll_us, disk_depth;
    uint64_t resync_rate;
    int meta_fd;
    uint8_t after_sb_0pri;
    bool read_only, export_ro, direct, stopping, force, resync_csums, no_resync_control;
    const char *tls_mode, *tls_dir, *tls_psk, *peer_psk, *peer_dir;
    const char *metrics;
    bool tls_verify;
    struct tls_creds *nbd_tls, *peer_tls;
    struct disk disk;
    struct meta meta;
    struct nbd_export exp;
    struct io_engine *io;
    const char *engine_why;
    uint64_t started;
    /* started by `up` from a resource file: its name, this node's settings
     * ("key=value" lines, as adjust compares them), the pipe to `up` */
    const char *resource;
    char *settings;
    int ready_fd;
} S = { .ready_fd = -1 };

void serve_from_resource(const char *name, const char *settings, int ready_fd)
{
    S.resource = name;
    S.settings = strdup(settings);
    S.ready_fd = ready_fd;
}

static int sb_policy(const char *v)
{
    return !strcmp(v, "disconnect") ? SB_DISCONNECT
         : !strcmp(v, "discard-zero-changes") ? SB_DISCARD_ZERO_CHANGES
         : !strcmp(v, "discard-younger-primary") ? SB_DISCARD_YOUNGER_PRIMARY : -1;
}

static const char *role_name(void)
{
    return !S.role ? "standalone" : repl_is_primary() ? "primary" : "secondary";
}

#define SECONDARY_DESC "secondary's disk (read-only replication target)"

/* The node's role changed: the export follows (new clients see it; those
 * connected before keep what they were told). */
static void role_changed(bool primary)
{
    S.exp.read_only = S.read_only || !primary;
    S.exp.description = primary ? NULL : SECONDARY_DESC;
    S.exp.readable = primary ? NULL : secondary_readable;
    S.export_ro = S.exp.read_only;
    if (S.nbd)
        nbd_server_resume();
}

static void quiesce(void)
{
    S.exp.read_only = true; /* clients arriving during the demote: read-only */
    S.export_ro = true;
    if (S.nbd)
        nbd_server_quiesce();
}

static bool quiesced(void) { return !S.nbd || nbd_server_quiesced(); }

static const char *disk_name(void) { return disk_state_name(repl_local_disk()); }


/* The node's state, gathered once; `nbdmirror status` renders it. */
static void fill_status(struct node_status *st)
{
    const struct nbd_stats *ns = nbd_server_stats();
    struct peer_status ps[REPL_MAX_PEERS];

    memset(st, 0, sizeof *st);
    snprintf(st->role, sizeof st->role, "%s", role_name());
    snprintf(st->disk, sizeof st->disk, "%s", disk_name());
    if (S.role)
        snprintf(st->generation, sizeof st->generation, "%016llx",
                 (unsigned long long)repl_current_gen());
    snprintf(st->device, sizeof st->device, "%s", S.disk_path);
    snprintf(st->export_name, sizeof st->export_name, "%s", S.name);
    st->size = S.meta.data_size;
    st->read_only = S.export_ro;
    snprintf(st->engine, sizeof st->engine, "%s", io_engine_name(S.io));
    st->direct = S.disk.direct;
    st->uptime_s = (now_ms() - S.started) / 1000;
    st->clients = ns->clients_now;
    st->connections_total = ns->connections;
    st->reads = ns->reads;
    st->writes = ns->writes;
    st->flushes = ns->flushes;
    st->trims = ns->trims;
    st->zero_writes = ns->zeroes;
    st->block_status = ns->block_status;
    st->errors = ns->errors;
    st->read_bytes = ns->read_bytes;
    st->write_bytes = ns->write_bytes;
    struct io_queue_counts q;
    io_queue_counts(S.io, &q);
    st->disk_depth = q.depth;
    st->disk_inflight = q.at_disk;
    st->disk_waiting = q.waiting;
    st->disk_waited = q.waited;
    st->npeers = repl_peers_status(ps, REPL_MAX_PEERS);
    for (int i = 0; i < st->npeers; i++)
        status_peer_from(&st->peers[i], &ps[i]);
}

/* A scrape: the status record and the front end's latency histograms. */
static void fill_metrics(struct node_status *st, struct metrics_hists *h)
{
    const struct nbd_stats *ns = nbd_server_stats();
    fill_status(st);
    *h = (struct metrics_hists){ &ns->lat_read, &ns->lat_write, &ns->lat_flush };
}

static void demote_done(void *arg, int rc, const char *msg)
{
    char line[256];
    if (rc < 0) /* still primary: writable again */
        role_changed(true);
    snprintf(line, sizeof line, "%s: %s\n", rc < 0 ? "error" : "ok", msg);
    ctl_reply((ctl_ticket)(uintptr_t)arg, line);
}

static struct repl_config repl_cfg(void);

/* adjust: "set KEY VALUE" for an option a running node takes (the keys of
 * the resource file that res_key_runtime() names) */
static int set_option(const char *key, const char *val, char *msg, size_t len)
{
    uint64_t v;
    bool yes = !strcmp(val, "yes") || !strcmp(val, "true") || !strcmp(val, "on");
    bool no = !strcmp(val, "no") || !strcmp(val, "false") || !strcmp(val, "off");

    if (!strcmp(key, "disk-depth")) {
        /* the engine's own; commands already at the disk stay there */
        if (parse_size(val, &v) < 0 || v > DISK_DEPTH_MAX)
            goto bad;
        S.disk_depth = v;
        io_set_depth(S.io, S.disk_depth);
    } else if (!S.role) {
        snprintf(msg, len, "not replicating: nothing to adjust");
        return -1;
    } else if (!strcmp(key, "timeout")) {
        if (parse_size(val, &v) < 0 || v < 1 || v > 3600)
            goto bad;
        S.timeout_ms = v * 1000;
    } else if (!strcmp(key, "resync-rate")) {
        if (parse_size(val, &v) < 0)
            goto bad;
        S.resync_rate = v;
    } else if (!strcmp(key, "resync-csums") && (yes || no)) {
        S.resync_csums = yes;
    } else if (!strcmp(key, "resync-control") && (yes || no)) {
        S.no_resync_control = no;
    } else if (!strcmp(key, "after-sb-0pri") && sb_policy(val) >= 0) {
        S.after_sb_0pri = sb_policy(val);
    } else if (!strcmp(key, "timeout") || !strcmp(key, "resync-csums") ||
               !strcmp(key, "resync-control") || !strcmp(key, "after-sb-0pri")) {
        goto bad;
    } else {
        snprintf(msg, len, "'%s' cannot change while the node runs", key);
        return -1;
    }
    if (S.role) {
        struct repl_config c = repl_cfg();
        repl_adjust(&c);
    }
    log_info("adjust: %s = %s", key, val);
    /* the settings adjust compares: this key's line takes the new value */
    if (S.settings) {
        char *out = NULL, *p = S.settings;
        size_t olen, kl = strlen(key);
        FILE *f = open_memstream(&out, &olen);
        if (f) {
            for (; *p; p += strcspn(p, "\n") + (p[strcspn(p, "\n")] != 0)) {
                if (!strncmp(p, key, kl) && p[kl] == '=')
                    fprintf(f, "%s=%s\n", key, val);
                else
                    fprintf(f, "%.*s\n", (int)strcspn(p, "\n"), p);
            }
            if (fclose(f) == 0) {
                free(S.settings);
                S.settings = out;
            }
        }
    }
    snprintf(msg, len, "%s = %s", key, val);
    return 0;
bad:
    snprintf(msg, len, "%s: '%s' is not a valid value", key, val);
    return -1;
}

static void stop_now(void)
{
    if (!S.stopping) {
        S.stopping = true;
        notify_service("STOPPING=1");
        if (S.nbd)
            nbd_server_shutdown();
    }
}

/* A command that acts on the node: one line back, "ok: ..." or "error: ...". */
static void act(FILE *f, const char *cmd)
{
    char verb[32] = "", a1[160] = "", a2[160] = "", msg[256];
    int rc, n = sscanf(cmd, "%31s %159s %159s", verb, a1, a2);
    bool discard = !strcmp(a1, "--discard-my-data");
    const char *peer = discard ? a2 : a1;

    (void)n;
    if (!strcmp(verb, "set"))
        rc = set_option(a1, a2, msg, sizeof msg);
    else if (!strcmp(verb, "stop")) {
        log_info("stop requested on the control socket: finishing requests in flight, then "
                 "exiting");
        stop_now();
        rc = 0;
        snprintf(msg, sizeof msg, "stopping (pid %d)", (int)getpid());
    } else if (!strcmp(verb, "promote"))
        rc = repl_promote(!strcmp(a1, "--force"), msg, sizeof msg);
    else if (!strcmp(verb, "demote")) {
        ctl_ticket t = ctl_later();
        rc = repl_demote(demote_done, (void *)(uintptr_t)t, msg, sizeof msg);
        if (rc == 1)
            return; /* answered by demote_done */
        ctl_reply(t, ""); /* not taken: answered here */
    } else if (!strcmp(verb, "connect"))
        rc = repl_connect(peer, discard, msg, sizeof msg);
    else if (!strcmp(verb, "disconnect"))
        rc = repl_disconnect(a1, msg, sizeof msg);
    else if (!strcmp(verb, "verify"))
        rc = repl_verify(a1, msg, sizeof msg);
    else if (!strcmp(verb, "invalidate"))
        rc = repl_invalidate(msg, sizeof msg);
    else {
        fprintf(f, "error: unknown command '%s' (try: get, config, promote, demote, connect, "
                   "disconnect, verify, invalidate, set, stop)\n", cmd);
        return;
    }
    fprintf(f, "%s: %s\n", rc < 0 ? "error" : "ok", msg);
}

/* The control socket: "get" answers the status record; the rest act. */
static char *answer(const char *cmd, size_t *len)
{
    static struct node_status st;
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);

    if (!f)
        return NULL;
    if (!strcmp(cmd, CTL_CMD_GET)) {
        fill_status(&st);
        status_write(f, &st);
    } else if (!strcmp(cmd, "config")) {
        if (S.settings)
            fprintf(f, "ok:\n%s", S.settings);
        else
            fputs("error: this node was not started from a resource file ('nbdmirror up')\n", f);
    } else {
        act(f, cmd);
    }
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int sfd = -1;
static struct handler h_signal;

static void on_signal(struct handler *h, uint32_t ev)
{
    struct signalfd_siginfo si;
    (void)h, (void)ev;
    while (read(sfd, &si, sizeof si) == sizeof si) {
        if (!S.stopping)
            log_info("signal %s: finishing requests in flight, then exiting",
                     strsignal(si.ssi_signo));
        stop_now();
    }
}

static int parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        { "nbd", required_argument, 0, 'n' },
        { "meta", required_argument, 0, 'm' },
        { "name", required_argument, 0, 'N' },
        { "read-only", no_argument, 0, 'r' },
        { "engine", required_argument, 0, 'e' },
        { "direct", no_argument, 0, 'd' },
        { "control", required_argument, 0, 'c' },
        { "role", required_argument, 0, 'R' },
        { "peer", required_argument, 0, 'P' },
        { "listen", required_argument, 0, 'L' },
        { "protocol", required_argument, 0, 'p' },
        { "timeout", required_argument, 0, 't' },
        { "resync-rate", required_argument, 0, 'Y' },
        { "resync-csums", no_argument, 0, 'K' },
        { "no-resync-control", no_argument, 0, 'Q' },
        { "al-extents", required_argument, 0, 'A' },
        { "after-sb-0pri", required_argument, 0, 'B' },
        { "force", no_argument, 0, 'F' },
        { "tls", required_argument, 0, 1001 },
        { "tls-certificates", required_argument, 0, 1002 },
        { "tls-psk", required_argument, 0, 1003 },
        { "tls-verify-peer", no_argument, 0, 1004 },
        { "peer-psk", required_argument, 0, 1005 },
        { "peer-certificates", required_argument, 0, 1006 },
        { "metrics", required_argument, 0, 1007 },
        { "poll-us", required_argument, 0, 1008 },
        { "disk-depth", required_argument, 0, 1009 },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int o;
    uint64_t v;

    S.name = "";
    S.control = NM_DEFAULT_CONTROL;
    S.protocol = 'C';
    S.timeout_ms = 5000;
    S.poll_us = POLL_US_DEFAULT;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'n': S.nbd = optarg; break;
        case 'm': S.meta_path = optarg; break;
        case 'N': S.name = optarg; break;
        case 'r': S.read_only = true; break;
        case 'e': S.engine = optarg; break;
        case 'd': S.direct = true; break;
        case 'c': S.control = optarg; break;
        case 'R': S.role = optarg; break;
        case 'L': S.listen = optarg; break;
        case 'P':
            if (S.npeers == REPL_MAX_PEERS) {
                fprintf(stderr, "nbdmirror serve: at most %d peers\n", REPL_MAX_PEERS);
                return -1;
            }
            S.peers[S.npeers++] = optarg;
            break;
        case 'p':
            if (strlen(optarg) != 1 || optarg[0] < 'A' || optarg[0] > 'C') {
                fprintf(stderr, "nbdmirror serve: --protocol takes A, B or C\n");
                return -1;
            }
            S.protocol = optarg[0];
            break;
        case 't':
            if (parse_size(optarg, &v) < 0 || v == 0 || v > 3600) {
                fprintf(stderr, "nbdmirror serve: --timeout takes 1 to 3600 seconds\n");
                return -1;
            }
            S.timeout_ms = v * 1000;
            break;
        case 'Y':
            if (parse_size(optarg, &S.resync_rate) < 0) {
                fprintf(stderr, "nbdmirror serve: --resync-rate takes bytes per second (e.g. 50M)\n");
                return -1;
            }
            break;
        case 1001: S.tls_mode = optarg; break;
        case 1002: S.tls_dir = optarg; break;
        case 1003: S.tls_psk = optarg; break;
        case 1004: S.tls_verify = true; break;
        case 1005: S.peer_psk = optarg; break;
        case 1006: S.peer_dir = optarg; break;
        case 1007: S.metrics = optarg; break;
        case 'K': S.resync_csums = true; break;
        case 'Q': S.no_resync_control = true; break;
        case 'F': S.force = true; break;
        case 'A':
            if (parse_size(optarg, &v) < 0 || v < AL_MIN || v > AL_MAX) {
                fprintf(stderr, "nbdmirror serve: --al-extents takes %u to %u\n", AL_MIN, AL_MAX);
                return -1;
            }
            S.al_extents = v;
            break;
        case 1008:
            if (parse_size(optarg, &v) < 0 || v > POLL_US_MAX) {
                fprintf(stderr, "nbdmirror serve: --poll-us takes 0 to %u\n", POLL_US_MAX);
                return -1;
            }
            S.poll_us = v;
            break;
        case 1009:
            if (parse_size(optarg, &v) < 0 || v > DISK_DEPTH_MAX) {
                fprintf(stderr, "nbdmirror serve: --disk-depth takes 0 to %u\n", DISK_DEPTH_MAX);
                return -1;
            }
            S.disk_depth = v;
            break;
        case 'B':
            if (sb_policy(optarg) >= 0)
                S.after_sb_0pri = sb_policy(optarg);
            else {
                fprintf(stderr, "nbdmirror serve: --after-sb-0pri takes disconnect, "
                                "discard-zero-changes or discard-younger-primary\n");
                return -1;
            }
            break;
        case 'h': fputs(usage, stdout); exit(0);
        default: fputs(usage, stderr); return -1;
        }
    }
    bool secondary = S.role && !strcmp(S.role, "secondary");
    if (S.role && strcmp(S.role, "primary") && !secondary) {
        fprintf(stderr, "nbdmirror serve: --role takes primary or secondary\n");
        return -1;
    }
    if (!S.role && (S.npeers || S.listen)) {
        fprintf(stderr, "nbdmirror serve: --peer and --listen need --role\n");
        return -1;
    }
    if (S.role && !S.npeers && !S.listen) {
        fprintf(stderr, "nbdmirror serve: a %s needs --peer or --listen\n", S.role);
        return -1;
    }
    if (S.tls_mode && strcmp(S.tls_mode, "off") && strcmp(S.tls_mode, "on") &&
        strcmp(S.tls_mode, "require")) {
        fprintf(stderr, "nbdmirror serve: --tls takes off, on or require\n");
        return -1;
    }
    bool tls = S.tls_mode && strcmp(S.tls_mode, "off");
    if (tls && !S.tls_dir == !S.tls_psk) {
        fprintf(stderr, "nbdmirror serve: --tls %s needs --tls-certificates DIR or --tls-psk FILE "
                        "(one of them)\n", S.tls_mode);
        return -1;
    }
    if (!tls && (S.tls_dir || S.tls_psk || S.tls_verify)) {
        fprintf(stderr, "nbdmirror serve: --tls-certificates, --tls-psk and --tls-verify-peer "
                        "need --tls on or --tls require\n");
        return -1;
    }
    if (S.tls_verify && !S.tls_dir) {
        fprintf(stderr, "nbdmirror serve: --tls-verify-peer is for X.509 (--tls-certificates)\n");
        return -1;
    }
    if (S.peer_psk && S.peer_dir) {
        fprintf(stderr, "nbdmirror serve: --peer-psk or --peer-certificates, not both\n");
        return -1;
    }
    if ((S.peer_psk || S.peer_dir) && !S.role) {
        fprintf(stderr, "nbdmirror serve: --peer-psk and --peer-certificates need --role\n");
        return -1;
    }
    if (S.force && (!S.role || secondary)) {
        fprintf(stderr, "nbdmirror serve: --force is for --role primary\n");
        return -1;
    }
    if (optind != argc - 1 || (!S.nbd && !secondary)) {
        fprintf(stderr, "nbdmirror serve: %s\n\n%s",
                optind != argc - 1 ? "give exactly one DISK" : "--nbd is required", usage);
        return -1;
    }
    S.export_ro = S.read_only || secondary; /* clients never write to a secondary */
    if (S.engine && strcmp(S.engine, "uring") && strcmp(S.engine, "aio")) {
        fprintf(stderr, "nbdmirror serve: --engine takes uring or aio\n");
        return -1;
    }
    if (strlen(S.name) > NBD_MAX_NAME) {
        fprintf(stderr, "nbdmirror serve: --name is longer than %d bytes\n", NBD_MAX_NAME);
        return -1;
    }
    S.disk_path = argv[optind];
    return 0;
}

static struct repl_config repl_cfg(void)
{
    return (struct repl_config){ .peers = S.peers, .npeers = S.npeers, .listen = S.listen,
                                 .protocol = S.protocol, .timeout_ms = S.timeout_ms,
                                 .resync_rate = S.resync_rate, .resync_csums = S.resync_csums,
                                 .no_resync_control = S.no_resync_control,
                                 .after_sb_0pri = S.after_sb_0pri, .al_extents = S.al_extents,
                                 .peer_tls = S.peer_tls };
}

static int open_meta(void)
{
    char why[256];
    int fd = S.disk.fd_buffered, r;

    if (S.meta_path) {
        fd = open(S.meta_path, (S.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (fd < 0) {
            log_err("%s: %s", S.meta_path, strerror(errno));
            return -1;
        }
    }
    r = meta_load(fd, S.disk.size, !S.meta_path, &S.meta, why, sizeof why);
    S.meta_fd = fd; /* replication records disk state changes there */
    if (r == -ENOENT && S.meta_path) {
        log_err("%s: %s; run 'nbdmirror create-md %s --meta %s' first", S.meta_path, why,
                S.disk_path, S.meta_path);
        return -1;
    }
    if (r == -ENOENT) {
        /* create-md would write over the end of DISK: only advise it when
         * the metadata cannot simply be elsewhere */
        log_err("%s: %s at the end of the disk; if its metadata is external give "
                "--meta FILE, otherwise run 'nbdmirror create-md %s' first",
                S.disk_path, why, S.disk_path);
        return -1;
    }
    if (r < 0) {
        log_err("%s: %s", S.meta_path ? S.meta_path : S.disk_path, why);
        return -1;
    }
    /* meta_load warned about a damaged copy: write it anew from the good one */
    if (S.meta.one_copy_bad && !S.read_only && (r = meta_save(S.meta_fd, &S.meta)) < 0)
        log_warn("cannot repair the metadata superblock: %s", strerror(-r));
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    sigset_t mask;
    int lfd, r;

    if (parse_args(argc, argv) < 0)
        return 2;
    S.started = now_ms();
    /* Signals arrive through signalfd; block them before any thread starts. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* 1024 NBD clients and 31 peers need more than systemd's soft limit */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max && rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    r = disk_open(&S.disk, S.disk_path, S.direct, S.read_only);
    if (r < 0) {
        log_err("%s: %s", S.disk_path, r == -EINVAL ? "not a regular file or block device" : strerror(-r));
        return 1;
    }
    if (open_meta() < 0)
        return 1;
    loop_set_poll(S.poll_us);
    if (loop_init() < 0) {
        log_err("epoll: %s", strerror(errno));
        return 1;
    }
    r = io_engine_open(&S.io, S.engine, &S.engine_why);
    if (r < 0) {
        log_err("cannot start the %s io engine: %s", S.engine ? S.engine : "io_uring or libaio",
                strerror(-r));
        return 1;
    }
    io_set_depth(S.io, S.disk_depth);
    if (!S.disk.is_blockdev && !strcmp(io_engine_name(S.io), "io_uring"))
        io_set_inline_writes(S.io, S.disk.fd_buffered);
    bufpool_init(512u << 20);
    bool primary = S.role && !strcmp(S.role, "primary");
    S.exp = (struct nbd_export){
        .name = S.name,
        .description = S.role && !primary ? SECONDARY_DESC : NULL,
        .size = S.meta.data_size,
        .read_only = S.export_ro,
        .readable = S.role && !primary ? secondary_readable : NULL,
        .disk = &S.disk,
        .io = S.io,
    };
    char terr[512];
    if (S.tls_mode && strcmp(S.tls_mode, "off") &&
        (S.tls_dir ? tls_creds_x509(&S.nbd_tls, S.tls_dir, S.tls_verify, terr, sizeof terr)
                   : tls_creds_psk(&S.nbd_tls, S.tls_psk, terr, sizeof terr)) < 0) {
        log_err("--tls: %s", terr);
        return 1;
    }
    S.exp.tls = !S.tls_mode || !strcmp(S.tls_mode, "off") ? NBD_TLS_OFF
                : !strcmp(S.tls_mode, "on") ? NBD_TLS_ON : NBD_TLS_REQUIRE;
    S.exp.tls_creds = S.nbd_tls;
    if ((S.peer_dir && tls_creds_x509(&S.peer_tls, S.peer_dir, true, terr, sizeof terr) < 0) ||
        (S.peer_psk && tls_creds_psk(&S.peer_tls, S.peer_psk, terr, sizeof terr) < 0)) {
        log_err("%s: %s", S.peer_dir ? "--peer-certificates" : "--peer-psk", terr);
        return 1;
    }
    if (S.role) {
        static const struct repl_hooks hooks = { .role_changed = role_changed,
                                                 .quiesce = quiesce, .quiesced = quiesced };
        struct repl_node_init self = { .data_size = S.meta.data_size, .dev = &S.disk,
                                       .io = S.io, .meta = &S.meta, .meta_fd = S.meta_fd };
        struct repl_config rc = repl_cfg();
        char err[400];
        if (S.read_only) {
            log_err("--read-only and --role do not go together (replication writes)");
            return 1;
        }
        if (repl_start(&self, &rc, &hooks, primary, S.force, err, sizeof err) < 0) {
            log_err("%s", err);
            return 1;
        }
    }
    if (S.nbd) {
        lfd = nbd_listen(S.nbd);
        if (lfd < 0) {
            log_err("cannot listen on %s: %s", S.nbd, strerror(-lfd));
            return 1;
        }
        if (nbd_server_start(&S.exp, lfd) < 0)
            return 1;
    }
    ctl_events_init(fill_status);
    r = ctl_start(S.control, answer);
    if (r < 0) {
        log_err("control socket %s: %s", S.control,
                r == -EADDRINUSE ? "another nbdmirror is using it (give --control)" : strerror(-r));
        return 1;
    }
    if (S.resource)
        metrics_set_resource(S.resource);
    if (S.metrics && (r = metrics_start(S.metrics, fill_metrics)) < 0) {
        log_err("--metrics %s: %s", S.metrics,
                r == -EINVAL ? "not HOST:PORT or unix:PATH (or the host is unknown)"
                             : strerror(-r));
        ctl_stop();
        return 1;
    }
    sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    h_signal.fn = on_signal;
    if (sfd < 0 || loop_add(sfd, EPOLLIN, &h_signal) < 0) {
        log_err("signalfd: %s", strerror(errno));
        return 1;
    }
    log_info("%s %s (%llu bytes, %s, %s metadata)%s%s", S.role ? S.role : "serving", S.disk_path,
             (unsigned long long)S.exp.size, S.export_ro ? "read-only" : "read-write",
             S.meta_path ? "external" : "internal", S.nbd ? " on " : "", S.nbd ? S.nbd : "");
    log_info("io engine: %s, %s%s%s%s", io_engine_name(S.io),
             S.disk.direct ? "O_DIRECT" : "buffered", S.engine_why ? " (fallback: " : "",
             S.engine_why ? S.engine_why : "", S.engine_why ? ")" : "");
    /* serving: tell systemd (Type=notify) and `up`, which waits for this */
    char ready[300];
    snprintf(ready, sizeof ready, "READY=1\nSTATUS=%s%s%s %s", S.resource ? "resource " : "",
             S.resource ? S.resource : "", S.resource ? ":" : "", role_name());
    if ((r = notify_service(ready)) < 0)
        log_warn("NOTIFY_SOCKET: %s", strerror(-r));
    if (S.ready_fd >= 0) {
        if (write(S.ready_fd, "R", 1) != 1)
            log_warn("could not tell 'nbdmirror up' that this node serves: %s", strerror(errno));
        close(S.ready_fd);
        S.ready_fd = -1;
    }

    for (;;) {
        if (S.stopping && (!S.nbd || nbd_server_done()))
            break;
        /* sleep only when nothing waits; the loop's tick (LOOP_TICK_MS)
         * wakes it for timers (handshake, grace) */
        bool busy = io_pending(S.io) || (S.nbd && nbd_server_busy()) || repl_busy() ||
                    stream_any_dirty();
        /* Polling before a sleep for clients and peers, at any queue depth
         * (a group of requests waits on each sleep and wake-up), but not
         * while the disk has requests: O_DIRECT QD1 writes took 1.5x as
         * long with it (bench/README.md, "Not polling for the disk"). */
        if ((busy ? loop_wait(0) : loop_wait_next(io_inflight(S.io) == 0)) < 0)
            break;
        io_run(S.io);
        if (S.nbd)
            nbd_server_tick();
        repl_tick();
        ctl_events_tick(); /* what changed, to `nbdmirror events` */
        stream_flush_dirty(); /* one sendmsg per connection and turn */
    }
    /* a primary tells in-sync peers it stops cleanly, and waits a little */
    repl_stop_begin();
    for (uint64_t end = now_ms() + 3000; !repl_stop_done() && now_ms() < end;) {
        loop_wait(50);
        io_run(S.io);
        repl_tick();
    }
    repl_stop();
    /* replicated writes already received finish before the final flush */
    for (uint64_t end = now_ms() + 5000; io_inflight(S.io) && now_ms() < end;) {
        loop_wait(io_pending(S.io) ? 0 : 50);
        io_run(S.io);
        repl_tick();
    }
    ctl_stop();
    metrics_stop();
    /* Everything acknowledged reaches stable storage before we go. */
    r = 0;
    if (!S.read_only && fdatasync(S.disk.fd) < 0) {
        log_err("%s: final flush failed: %s", S.disk_path, strerror(errno));
        r = 1;
    }
    io_engine_close(S.io);
    disk_close(&S.disk);
    log_info("stopped cleanly");
    return r;
}
