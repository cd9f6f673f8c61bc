/* libFuzzer target: the NBD front end as the daemon runs it. Each input is
 * everything one client sends on one connection (handshake, options,
 * requests with their payloads); the real server (event loop, connection
 * layer, handshake.c, transmit.c, the request lifecycle, the io engine, a
 * 4 MiB disk) answers it. The connection must end once the input has (no
 * hang), with every request finished and nothing leaked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "peer.h"
#include "conn.h"
#include "io.h"
#include "nbd.h"
#include "request.h"

static struct disk disk;
static struct io_engine *io;
static struct nbd_export exp;
static char sock_path[108];

static bool busy(void) { return io_inflight(io) || io_pending(io) || nbd_server_busy(); }

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
    fuzz_sock_path(sock_path, sizeof sock_path, "nbd");
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
    fuzz_peer_run(sock_path, data, size, turn, busy);
    return 0;
}
