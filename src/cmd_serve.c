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
#include <sys/signalfd.h>
#include <unistd.h>

#include "common.h"
#include "ctl.h"
#include "io.h"
#include "meta.h"
#include "nbd.h"
#include "nbdmirror.h"
#include "repl.h"

static const char usage[] =
    "Usage: nbdmirror serve DISK --nbd unix:PATH|HOST:PORT [options]\n"
    "       nbdmirror serve DISK --role primary --nbd ADDRESS --peer HOST:PORT... [options]\n"
    "       nbdmirror serve DISK --role secondary --listen HOST:PORT [options]\n"
    "\n"
    "Serve DISK (a file or block device with nbdmirror metadata, see create-md)\n"
    "to NBD clients, and as a primary stream every write to the secondaries.\n"
    "Runs in the foreground; SIGTERM or SIGINT stops it cleanly.\n"
    "\n"
    "  --role primary|secondary  replicate (default: standalone, no peers)\n"
    "  --peer HOST:PORT       a node to connect to (repeat for more, up to 31)\n"
    "  --listen HOST:PORT     accept replication connections here\n"
    "  --protocol A|B|C       when a write is acknowledged (primary; default C):\n"
    "                         A local disk + queued, B + peers received it,\n"
    "                         C + peers' disks have it\n"
    "  --timeout SECONDS      a peer silent this long is dropped (default 5)\n"
    "  --resync-rate BYTES/s  cap on full-sync traffic, e.g. 50M (default: none)\n"
    "  --nbd unix:PATH|HOST:PORT  where clients connect (e.g. unix:/run/nbd.sock,\n"
    "                         0.0.0.0:10809, [::1]:10809)\n"
    "  --meta FILE            external metadata (as given to create-md)\n"
    "  --name EXPORT          export name (default \"\"; the empty name always\n"
    "                         selects this export)\n"
    "  --read-only            refuse writes (EPERM)\n"
    "  --engine uring|aio     force an io engine (default: io_uring, else libaio)\n"
    "  --direct               O_DIRECT on a file (always on for block devices)\n"
    "  --control PATH         control socket for 'nbdmirror status'\n"
    "                         (default " NM_DEFAULT_CONTROL ")\n";

static struct {
    const char *disk_path, *meta_path, *nbd, *name, *engine, *control, *role, *listen;
    char *peers[REPL_MAX_PEERS];
    int npeers;
    char protocol;
    unsigned timeout_ms;
    uint64_t resync_rate;
    int meta_fd;
    bool read_only, export_ro, direct, stopping;
    struct disk disk;
    struct meta meta;
    struct nbd_export exp;
    struct io_engine *io;
    const char *engine_why;
    uint64_t started;
} S;

static const char *role_name(void) { return S.role ? S.role : "standalone"; }

static const char *disk_name(void) { return disk_state_name(repl_local_disk()); }

/* A secondary's export answers reads only while its disk is consistent: a
 * disk mid-sync (or that failed a write) holds a mix of old and new blocks. */
static bool secondary_readable(void)
{
    enum disk_state d = repl_local_disk();
    return d == DS_UPTODATE || d == DS_OUTDATED;
}

static size_t report(const char *cmd, char *b, size_t cap)
{
    const struct nbd_stats *st = nbd_server_stats();
    unsigned long long up = (now_ms() - S.started) / 1000;
    struct peer_status ps[REPL_MAX_PEERS];
    int np = repl_peers_status(ps, REPL_MAX_PEERS);
    size_t n;

    if (!strcmp(cmd, "status json")) {
        n = snprintf(b, cap,
            "{\"role\":\"%s\",\"disk\":\"%s\",\"device\":\"%s\","
            "\"export\":\"%s\",\"size\":%llu,\"read_only\":%s,\"engine\":\"%s\","
            "\"direct\":%s,\"uptime_s\":%llu,\"clients\":%llu,\"connections_total\":%llu,"
            "\"reads\":%llu,\"writes\":%llu,\"flushes\":%llu,\"trims\":%llu,"
            "\"zero_writes\":%llu,\"block_status\":%llu,\"errors\":%llu,"
            "\"read_bytes\":%llu,\"write_bytes\":%llu,\"peers\":[",
            role_name(), disk_name(), S.disk_path, S.name, (unsigned long long)S.meta.data_size,
            S.export_ro ? "true" : "false", io_engine_name(S.io),
            S.disk.direct ? "true" : "false", up,
            (unsigned long long)st->clients_now, (unsigned long long)st->connections,
            (unsigned long long)st->reads, (unsigned long long)st->writes,
            (unsigned long long)st->flushes, (unsigned long long)st->trims,
            (unsigned long long)st->zeroes, (unsigned long long)st->block_status,
            (unsigned long long)st->errors, (unsigned long long)st->read_bytes,
            (unsigned long long)st->write_bytes);
        char pct[REPL_MAX_PEERS][16], eta[REPL_MAX_PEERS][24];
        for (int i = 0; i < np; i++) {
            snprintf(pct[i], sizeof pct[i], ps[i].resync_percent < 0 ? "null" : "%d",
                     ps[i].resync_percent);
            snprintf(eta[i], sizeof eta[i], ps[i].resync_percent < 0 ? "null" : "%llu",
                     (unsigned long long)ps[i].resync_eta_s);
        }
        for (int i = 0; i < np && n < cap; i++)
            n += snprintf(b + n, cap - n,
                "%s{\"address\":\"%s\",\"connection\":\"%s\",\"replication\":\"%s\","
                "\"peer_disk\":\"%s\",\"protocol\":\"%c\",\"sent_bytes\":%llu,"
                "\"acked_bytes\":%llu,\"received_bytes\":%llu,\"sent_requests\":%llu,"
                "\"acked_requests\":%llu,\"inflight\":%llu,\"out_of_sync_bytes\":%llu,"
                "\"resync_sent_bytes\":%llu,\"resync_percent\":%s,\"resync_eta_s\":%s,"
                "\"resync_bytes_per_s\":%llu,\"trimmed_bytes\":%llu,\"zeroed_bytes\":%llu,"
                "\"last_error\":\"%s\"}",
                i ? "," : "", ps[i].address, ps[i].connection, ps[i].replication,
                ps[i].peer_disk, ps[i].protocol ? ps[i].protocol : '-',
                (unsigned long long)ps[i].sent_bytes, (unsigned long long)ps[i].acked_bytes,
                (unsigned long long)ps[i].received_bytes, (unsigned long long)ps[i].sent_requests,
                (unsigned long long)ps[i].acked_requests, (unsigned long long)ps[i].inflight,
                (unsigned long long)ps[i].out_of_sync_bytes,
                (unsigned long long)ps[i].resync_sent_bytes, pct[i], eta[i],
                (unsigned long long)ps[i].resync_bytes_per_s,
                (unsigned long long)ps[i].trimmed_bytes, (unsigned long long)ps[i].zeroed_bytes,
                ps[i].last_error);
        if (n < cap)
            n += snprintf(b + n, cap - n, "]}\n");
        return n < cap ? n : cap - 1;
    }
    if (!strcmp(cmd, "status")) {
        n = snprintf(b, cap,
            "role: %s   disk: %s   %s\n"
            "device: %s   export: \"%s\"   size: %llu bytes\n"
            "engine: %s%s   uptime: %llus\n"
            "clients: %llu now, %llu since start\n"
            "requests: %llu reads (%llu bytes), %llu writes (%llu bytes), %llu flushes,\n"
            "          %llu trims, %llu zero writes, %llu block status, %llu errors\n",
            role_name(), disk_name(), S.export_ro ? "read-only" : "read-write",
            S.disk_path, S.name, (unsigned long long)S.meta.data_size,
            io_engine_name(S.io), S.disk.direct ? " (O_DIRECT)" : " (buffered)", up,
            (unsigned long long)st->clients_now, (unsigned long long)st->connections,
            (unsigned long long)st->reads, (unsigned long long)st->read_bytes,
            (unsigned long long)st->writes, (unsigned long long)st->write_bytes,
            (unsigned long long)st->flushes, (unsigned long long)st->trims,
            (unsigned long long)st->zeroes, (unsigned long long)st->block_status,
            (unsigned long long)st->errors);
        if (np == 0 && n < cap)
            n += snprintf(b + n, cap - n, "peers: none\n");
        else if (n < cap)
            n += snprintf(b + n, cap - n, "%-22s %-10s %-11s %-12s %s %10s %10s %8s\n", "peer",
                          "connection", "replication", "peer disk", "p", "sent MiB", "acked MiB",
                          "in flight");
        for (int i = 0; i < np && n < cap; i++) {
            n += snprintf(b + n, cap - n, "%-22s %-10s %-11s %-12s %c %10.1f %10.1f %8llu\n",
                          ps[i].address, ps[i].connection, ps[i].replication, ps[i].peer_disk,
                          ps[i].protocol ? ps[i].protocol : '-',
                          (ps[i].sent_bytes ? ps[i].sent_bytes : ps[i].received_bytes) / 1048576.0,
                          ps[i].acked_bytes / 1048576.0, (unsigned long long)ps[i].inflight);
            if (ps[i].resync_percent >= 0 && n < cap)
                n += snprintf(b + n, cap - n, "    sync: %d%%, %.1f MiB done, %.1f MiB/s, eta %llus\n",
                              ps[i].resync_percent, ps[i].resync_sent_bytes / 1048576.0,
                              ps[i].resync_bytes_per_s / 1048576.0,
                              (unsigned long long)ps[i].resync_eta_s);
            if ((ps[i].trimmed_bytes || ps[i].zeroed_bytes) && n < cap)
                n += snprintf(b + n, cap - n, "    trimmed %.1f MiB, zeroed %.1f MiB\n",
                              ps[i].trimmed_bytes / 1048576.0, ps[i].zeroed_bytes / 1048576.0);
            if (ps[i].last_error[0] && n < cap)
                n += snprintf(b + n, cap - n, "    last error: %s\n", ps[i].last_error);
        }
        return n < cap ? n : cap - 1;
    }
    return snprintf(b, cap, "error: unknown command '%s' (try: status, status json)\n", cmd);
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
        S.stopping = true;
        if (S.nbd)
            nbd_server_shutdown();
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
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int o;
    uint64_t v;

    S.name = "";
    S.control = NM_DEFAULT_CONTROL;
    S.protocol = 'C';
    S.timeout_ms = 5000;
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

    r = disk_open(&S.disk, S.disk_path, S.direct, S.read_only);
    if (r < 0) {
        log_err("%s: %s", S.disk_path, r == -EINVAL ? "not a regular file or block device" : strerror(-r));
        return 1;
    }
    if (open_meta() < 0)
        return 1;
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
    if (!S.disk.is_blockdev && !strcmp(io_engine_name(S.io), "io_uring"))
        io_set_inline_writes(S.io, S.disk.fd_buffered);
    bufpool_init(512u << 20);
    bool primary = S.role && !strcmp(S.role, "primary");
    S.exp = (struct nbd_export){
        .name = S.name,
        .description = S.role && !primary ? "secondary's disk (read-only replication target)" : NULL,
        .size = S.meta.data_size,
        .read_only = S.export_ro,
        .readable = S.role && !primary ? secondary_readable : NULL,
        .disk = &S.disk,
        .io = S.io,
    };
    if (S.nbd) {
        lfd = nbd_listen(S.nbd);
        if (lfd < 0) {
            log_err("cannot listen on %s: %s", S.nbd, strerror(-lfd));
            return 1;
        }
        if (nbd_server_start(&S.exp, lfd) < 0)
            return 1;
    }
    if (S.role) {
        struct repl_node self = {
            .data_size = S.meta.data_size, .node_id = S.meta.node_id,
            .current_gen = S.meta.current_gen, .dev = &S.disk, .io = S.io,
            .disk = primary ? DS_UPTODATE : (enum disk_state)S.meta.disk_state,
            .meta = &S.meta, .meta_fd = S.meta_fd,
        };
        struct repl_primary_config pc = { .peers = S.peers, .npeers = S.npeers,
                                          .listen = S.listen, .protocol = S.protocol,
                                          .timeout_ms = S.timeout_ms,
                                          .resync_rate = S.resync_rate };
        r = primary ? repl_primary_start(&self, &pc)
                    : repl_secondary_start(&self, S.listen, S.peers, S.npeers);
        if (r < 0) {
            log_err("replication: cannot listen on %s: %s", S.listen, strerror(-r));
            return 1;
        }
    }
    r = ctl_start(S.control, report);
    if (r < 0) {
        log_err("control socket %s: %s", S.control,
                r == -EADDRINUSE ? "another nbdmirror is using it (give --control)" : strerror(-r));
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

    for (;;) {
        if (S.stopping && (!S.nbd || nbd_server_done()))
            break;
        /* sleep only when nothing waits; 200 ms for timers (handshake, grace) */
        bool busy = io_pending(S.io) || (S.nbd && nbd_server_busy()) || repl_busy();
        if (loop_wait(busy ? 0 : 200) < 0)
            break;
        io_run(S.io);
        if (S.nbd)
            nbd_server_tick();
        repl_tick();
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
