/* libFuzzer target: the NBD front end as the daemon runs it. Each input is
 * everything one client sends on one connection (handshake, options,
 * requests with their payloads); the real server (event loop, connection
 * layer, handshake.c, transmit.c, the request lifecycle, the io engine, a
 * 4 MiB disk) answers it. The connection must end once the input has (no
 * hang), with every request finished and nothing leaked. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"
#include "conn.h"
#include "io.h"
#include "nbd.h"
#include "request.h"

static struct disk disk;
static struct io_engine *io;
static struct nbd_export exp;
static char sock_path[108];

static void turn(int timeout_ms)
{
    bool busy = io_pending(io) || nbd_server_busy() || stream_any_dirty();
    loop_wait(busy ? 0 : timeout_ms);
    io_run(io);
    nbd_server_tick();
    stream_flush_dirty();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char path[] = "/tmp/nbdm-fuzz-disk.XXXXXX";
    const char *why;
    int fd = mkstemp(path);

    nm_log_silence(!getenv("FUZZ_LOG")); /* FUZZ_LOG=1: the daemon's lines, to see a seed through */
    if (fd < 0 || ftruncate(fd, 4 << 20) < 0 || disk_open(&disk, path, false, false) < 0) {
        perror("fuzz_nbd: disk");
        exit(1);
    }
    close(fd);
    unlink(path);
    if (loop_init() < 0 || io_engine_open(&io, NULL, &why) < 0) {
        perror("fuzz_nbd: loop or io engine");
        exit(1);
    }
    bufpool_init(256u << 20);
    exp = (struct nbd_export){ .name = "", .size = disk.size, .disk = &disk, .io = io };
    snprintf(sock_path, sizeof sock_path, "/tmp/nbdm-fuzz.%d.sock", (int)getpid());
    char spec[128];
    snprintf(spec, sizeof spec, "unix:%s", sock_path);
    int lfd = nbd_listen(spec);
    if (lfd < 0 || nbd_server_start(&exp, lfd) < 0) {
        fprintf(stderr, "fuzz_nbd: cannot listen on %s\n", sock_path);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    size_t off = 0;
    bool shut = false, eof = false;
    unsigned quiet = 0; /* turns with nothing to do, after the last byte went */
    char sink[65536];

    memcpy(sa.sun_path, sock_path, sizeof sa.sun_path);
    if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof sa) < 0)
        abort();
    fcntl(c, F_SETFL, O_NONBLOCK);
    /* the client: write what the input says, read (and drop) the answers,
     * until the server closes; the server must, once the input has ended */
    while (!eof) {
        if (off < size) {
            ssize_t n = send(c, data + off, size - off, MSG_NOSIGNAL);
            if (n > 0)
                off += n;
            else if (n < 0 && errno != EAGAIN)
                off = size; /* the server closed on us: fine */
        }
        /* all sent: the end of the input once everything it started is
         * done (an end of file now would cut short what is staged) */
        if (off == size && !shut && ++quiet > 3) {
            shutdown(c, SHUT_WR);
            shut = true;
        }
        if (io_inflight(io) || io_pending(io) || nbd_server_busy())
            quiet = 0;
        turn(shut ? 10 : 0);
        for (;;) {
            ssize_t n = recv(c, sink, sizeof sink, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                eof = true;
                break;
            }
            if (n < 0)
                break;
        }
    }
    close(c);
    /* every request it started finishes before the next input */
    while (io_inflight(io) || io_pending(io) || nbd_server_busy())
        turn(0);
    turn(0); /* frees what the last turn retired */
    return 0;
}
