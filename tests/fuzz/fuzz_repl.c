/* libFuzzer target: a secondary's replication port as the daemon runs it.
 * Each input is everything a "primary" sends on one link (HELLO, GENS,
 * writes, trims, barriers, bitmaps, state changes, checksum requests...);
 * the real node (event loop, connection layer, link.c, frames.c,
 * receiver.c, the io engine, metadata on an 8 MiB disk) takes it. The link
 * must end once the input has, with every write it started finished.
 *
 * Two things keep the fuzzer from being stuck at the door, so the code
 * behind it is reached: an input whose first byte is odd has the CRC of
 * every frame header fixed up; a GENS whose current id is the one
 * `create-md --skip-initial-sync` gives (as the seeds have) is given the
 * node's current id, which earlier inputs may have moved on; a HELLO with
 * a data size of 0 is given the node's.
 *
 * Also the pure decoders on every frame, and the rule that both sides of a
 * link reach the same decision: gen_decide(a, b) mirrors gen_decide(b, a). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "peer.h"
#include "conn.h"
#include "gen.h"
#include "io.h"
#include "meta.h"
#include "repl.h"

static struct disk disk;
static struct io_engine *io;
static struct meta meta;
static char sock_path[108];
static uint8_t *buf;
static size_t buf_cap;

static bool busy(void) { return io_inflight(io) || io_pending(io) || repl_busy(); }

static void turn(int timeout_ms)
{
    bool busy = io_pending(io) || repl_busy() || stream_any_dirty();
    loop_wait(busy ? 0 : timeout_ms);
    io_run(io);
    repl_tick();
    stream_flush_dirty();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char path[] = "/dev/shm/nbdm-fuzz-repl.XXXXXX", err[400];
    const char *why;
    int fd = mkstemp(path);

    nm_log_silence(!getenv("FUZZ_LOG")); /* FUZZ_LOG=1: the daemon's lines, to see a seed through */
    if (fd < 0 || ftruncate(fd, 8 << 20) < 0 || meta_plan(&meta, 8 << 20, true) < 0) {
        perror("fuzz_repl: disk");
        exit(1);
    }
    meta.disk_state = DS_UPTODATE; /* as create-md --skip-initial-sync */
    meta.flags |= META_F_SKIP_SYNC;
    meta.current_gen = GEN_SKIP_SYNC;
    if (meta_create(fd, &meta) < 0 || disk_open(&disk, path, false, false) < 0 ||
        meta_load(disk.fd_buffered, disk.size, true, &meta, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_repl: metadata: %s\n", err);
        exit(1);
    }
    close(fd);
    unlink(path);
    if (loop_init() < 0 || io_engine_open(&io, NULL, &why) < 0) {
        perror("fuzz_repl: loop or io engine");
        exit(1);
    }
    bufpool_init(256u << 20);
    fuzz_sock_path(sock_path, sizeof sock_path, "repl");
    char listen[128];
    snprintf(listen, sizeof listen, "unix:%s", sock_path);
    static const struct repl_hooks hooks = { 0 };
    struct repl_node_init self = { .data_size = meta.data_size, .dev = &disk, .io = io,
                                   .meta = &meta, .meta_fd = disk.fd_buffered };
    struct repl_config rc = { .listen = strdup(listen), .protocol = 'C', .timeout_ms = 5000 };
    if (repl_start(&self, &rc, &hooks, false, false, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_repl: %s\n", err);
        exit(1);
    }
    return 0;
}

/* The frames in b, their headers' CRCs fixed (fix) and seed ids updated;
 * each decoded the way the node will (the pure functions). */
static void prepare(uint8_t *b, size_t len, bool fix)
{
    struct gen_view v[2];
    int nv = 0;

    for (size_t off = 0; off + REPL_HDR <= len;) {
        uint8_t *h = b + off;
        struct repl_hdr hd;
        const char *why;
        uint32_t plen = get_be32(h + 8);
        if (fix)
            put_be32(h + 28, crc32c(0, h, 28));
        if (repl_frame_start(h, len - off, &hd, &why) <= 0)
            break;
        if (plen > len - off - REPL_HDR)
            break;
        uint8_t *p = h + REPL_HDR;
        if (hd.type == RT_GENS && plen == REPL_GENS_SIZE && get_be64(p) == GEN_SKIP_SYNC)
            put_be64(p, repl_current_gen());
        if (hd.type == RT_HELLO && plen == REPL_HELLO_SIZE && get_be64(p) == 0)
            put_be64(p, meta.data_size); /* the seeds' HELLO: our size */
        if (hd.type == RT_HELLO) {
            struct repl_hello hello;
            repl_decode_hello(p, plen, &hello, &why);
        } else if (hd.type == RT_GENS && nv < 2 && repl_decode_gens(p, plen, &v[nv], &why) == 0) {
            nv++;
        }
        off += REPL_HDR + plen;
    }
    if (nv == 2) {
        const char *w1, *w2;
        enum gen_decision a = gen_decide(&v[0], &v[1], &w1), b2 = gen_decide(&v[1], &v[0], &w2);
        if (a != gen_mirror(b2)) {
            fprintf(stderr, "fuzz_repl: the two sides decide differently: %s (%s) / %s (%s)\n",
                    gen_decision_name(a), w1, gen_decision_name(b2), w2);
            for (int i = 0; i < 2; i++)
                fprintf(stderr, "  view %d: node %llx current %llx bitmap %llx history %llx %llx "
                        "%llx %llx bits %llu since %llu disk %u primary %d full %d discard %d "
                        "policy %u\n", i, (unsigned long long)v[i].node_id,
                        (unsigned long long)v[i].current, (unsigned long long)v[i].bitmap,
                        (unsigned long long)v[i].history[0], (unsigned long long)v[i].history[1],
                        (unsigned long long)v[i].history[2], (unsigned long long)v[i].history[3],
                        (unsigned long long)v[i].bits, (unsigned long long)v[i].primary_since,
                        v[i].disk, v[i].primary, v[i].want_full, v[i].discard_my_data,
                        v[i].sb_policy);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (size > buf_cap && !(buf = realloc(buf, buf_cap = size)))
        abort();
    memcpy(buf, data + 1, size - 1);
    size--;
    prepare(buf, size, data[0] & 1);

    fuzz_peer_run(sock_path, buf, size, turn, busy);
    return 0;
}
