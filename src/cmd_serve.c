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

static const char usage[] =
    "Usage: nbdmirror serve DISK --nbd unix:PATH|HOST:PORT [options]\n"
    "\n"
    "Serve DISK (a file or block device with nbdmirror metadata, see create-md)\n"
    "to NBD clients. Runs in the foreground; SIGTERM or SIGINT stops it cleanly.\n"
    "\n"
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
    const char *disk_path, *meta_path, *nbd, *name, *engine, *control;
    bool read_only, direct;
    struct disk disk;
    struct meta meta;
    struct nbd_export exp;
    struct io_engine *io;
    const char *engine_why;
    uint64_t started;
} S;

static size_t report(const char *cmd, char *b, size_t cap)
{
    const struct nbd_stats *st = nbd_server_stats();
    unsigned long long up = (now_ms() - S.started) / 1000;

    if (!strcmp(cmd, "status json"))
        return snprintf(b, cap,
            "{\"role\":\"standalone\",\"disk\":\"UpToDate\",\"device\":\"%s\","
            "\"export\":\"%s\",\"size\":%llu,\"read_only\":%s,\"engine\":\"%s\","
            "\"direct\":%s,\"uptime_s\":%llu,\"clients\":%llu,\"connections_total\":%llu,"
            "\"reads\":%llu,\"writes\":%llu,\"flushes\":%llu,\"trims\":%llu,"
            "\"zero_writes\":%llu,\"block_status\":%llu,\"errors\":%llu,"
            "\"read_bytes\":%llu,\"write_bytes\":%llu,\"peers\":[]}\n",
            S.disk_path, S.name, (unsigned long long)S.exp.size,
            S.read_only ? "true" : "false", io_engine_name(S.io),
            S.disk.direct ? "true" : "false", up,
            (unsigned long long)st->clients_now, (unsigned long long)st->connections,
            (unsigned long long)st->reads, (unsigned long long)st->writes,
            (unsigned long long)st->flushes, (unsigned long long)st->trims,
            (unsigned long long)st->zeroes, (unsigned long long)st->block_status,
            (unsigned long long)st->errors, (unsigned long long)st->read_bytes,
            (unsigned long long)st->write_bytes);
    if (!strcmp(cmd, "status"))
        return snprintf(b, cap,
            "role: standalone   disk: UpToDate   %s%s\n"
            "device: %s   export: \"%s\"   size: %llu bytes\n"
            "engine: %s%s   uptime: %llus\n"
            "clients: %llu now, %llu since start\n"
            "requests: %llu reads (%llu bytes), %llu writes (%llu bytes), %llu flushes,\n"
            "          %llu trims, %llu zero writes, %llu block status, %llu errors\n"
            "peers: none\n",
            S.read_only ? "read-only" : "read-write", "",
            S.disk_path, S.name, (unsigned long long)S.exp.size,
            io_engine_name(S.io), S.disk.direct ? " (O_DIRECT)" : " (buffered)", up,
            (unsigned long long)st->clients_now, (unsigned long long)st->connections,
            (unsigned long long)st->reads, (unsigned long long)st->read_bytes,
            (unsigned long long)st->writes, (unsigned long long)st->write_bytes,
            (unsigned long long)st->flushes, (unsigned long long)st->trims,
            (unsigned long long)st->zeroes, (unsigned long long)st->block_status,
            (unsigned long long)st->errors);
    return snprintf(b, cap, "error: unknown command '%s' (try: status, status json)\n", cmd);
}

static int sfd = -1;
static struct handler h_signal;

static void on_signal(struct handler *h, uint32_t ev)
{
    struct signalfd_siginfo si;
    (void)h, (void)ev;
    while (read(sfd, &si, sizeof si) == sizeof si) {
        if (!nbd_server_done())
            log_info("signal %s: finishing requests in flight, then exiting",
                     strsignal(si.ssi_signo));
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
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int o;

    S.name = "";
    S.control = NM_DEFAULT_CONTROL;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'n': S.nbd = optarg; break;
        case 'm': S.meta_path = optarg; break;
        case 'N': S.name = optarg; break;
        case 'r': S.read_only = true; break;
        case 'e': S.engine = optarg; break;
        case 'd': S.direct = true; break;
        case 'c': S.control = optarg; break;
        case 'h': fputs(usage, stdout); exit(0);
        default: fputs(usage, stderr); return -1;
        }
    }
    if (optind != argc - 1 || !S.nbd) {
        fprintf(stderr, "nbdmirror serve: %s\n\n%s",
                optind != argc - 1 ? "give exactly one DISK" : "--nbd is required", usage);
        return -1;
    }
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
    if (fd != S.disk.fd_buffered)
        close(fd); /* nothing writes metadata while serving yet */
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
    S.exp = (struct nbd_export){
        .name = S.name,
        .size = S.meta.data_size,
        .read_only = S.read_only,
        .disk = &S.disk,
        .io = S.io,
    };
    lfd = nbd_listen(S.nbd);
    if (lfd < 0) {
        log_err("cannot listen on %s: %s", S.nbd, strerror(-lfd));
        return 1;
    }
    if (nbd_server_start(&S.exp, lfd) < 0)
        return 1;
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
    log_info("serving %s (%llu bytes, %s, %s metadata) on %s", S.disk_path,
             (unsigned long long)S.exp.size, S.read_only ? "read-only" : "read-write",
             S.meta_path ? "external" : "internal", S.nbd);
    log_info("io engine: %s, %s%s%s%s", io_engine_name(S.io),
             S.disk.direct ? "O_DIRECT" : "buffered", S.engine_why ? " (fallback: " : "",
             S.engine_why ? S.engine_why : "", S.engine_why ? ")" : "");

    while (!nbd_server_done()) {
        /* sleep only when nothing waits; 200 ms for timers (handshake, grace) */
        bool busy = io_pending(S.io) || nbd_server_busy();
        if (loop_wait(busy ? 0 : 200) < 0)
            break;
        io_run(S.io);
        nbd_server_tick();
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
