/* Resync and online verify (see include/resync.h for the rules that keep
 * a resync safe while clients write). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "repl.h"
#include "resync.h"

#define MAX_SYNCS 31
#define BLOCK META_BM_BLOCK

static struct {
    struct resync_env env;
    uint16_t *stripe_writes;   /* local writes in flight per chunk-sized stripe */
    struct resync *running[MAX_SYNCS];
    bool unlocked;
} R;

int resync_init(const struct resync_env *env)
{
    R.env = *env;
    free(R.stripe_writes);
    R.stripe_writes = calloc(env->data_size / RESYNC_CHUNK + 1, sizeof *R.stripe_writes);
    return R.stripe_writes ? 0 : -ENOMEM;
}

/* adjust: a new cap applies to running syncs too (it bounds their average
 * since they began) */
void resync_set_rate(uint64_t rate) { R.env.rate = rate; }

static void track(struct resync *rs, bool on)
{
    for (int i = 0; i < MAX_SYNCS; i++) {
        if (on && !R.running[i]) {
            R.running[i] = rs;
            return;
        }
        if (!on && R.running[i] == rs)
            R.running[i] = NULL;
    }
}

void resync_begin(struct resync *rs, void *peer, enum resync_kind kind, struct bitmap *bm)
{
    if (!rs->active)
        track(rs, true);
    rs->active = true;
    rs->kind = kind;
    rs->bm = bm;
    rs->peer = peer;
    rs->cursor = rs->sent = rs->skipped = rs->mismatched = rs->unacked = 0;
    rs->done_seq = rs->queued_at = 0;
    rs->total = kind == RK_VERIFY ? R.env.data_size : bm_bytes(bm);
    rs->gen++;
    rs->start_ms = now_ms();
}

static void chunk_free(struct resync_chunk *c)
{
    if (c->buf)
        buf_put(c->buf, c->len);
    c->buf = NULL;
    free(c->hash);
    c->hash = NULL;
    if (c->rs->inflight >= c->len)
        c->rs->inflight -= c->len;
    c->st = CK_FREE;
    R.unlocked = true;
}

void resync_abort(struct resync *rs)
{
    if (!rs->active)
        return;
    rs->active = false;
    track(rs, false);
    for (int k = 0; k < RESYNC_CHUNKS; k++) {
        struct resync_chunk *c = &rs->chunks[k];
        /* reading ones free themselves on completion, queued ones when
         * their frames are done */
        if (c->st == CK_LOCKED || c->st == CK_HASH_WAIT || c->st == CK_VERIFY_WAIT)
            chunk_free(c);
    }
    R.unlocked = true;
}

bool resync_busy(const struct resync *rs)
{
    for (int k = 0; k < RESYNC_CHUNKS; k++)
        if (rs->chunks[k].st != CK_FREE)
            return true;
    return false;
}

void resync_frame_done(struct resync_chunk *c, bool sent)
{
    (void)sent; /* counted when queued; a link that drops aborts the sync */
    if (c->frames && --c->frames == 0 && c->st == CK_QUEUED)
        chunk_free(c);
}

void resync_acked(struct resync *rs, uint64_t off, uint32_t len)
{
    if (!rs->active)
        return;
    rs->unacked = rs->unacked > len ? rs->unacked - len : 0;
    /* whole blocks only: the last one of the data area may be partial */
    uint64_t end = off + len;
    if (end >= R.env.data_size)
        end = (R.env.data_size + BLOCK - 1) / BLOCK * BLOCK;
    bm_clear_blocks(rs->bm, off / BLOCK, end / BLOCK - off / BLOCK);
}

/* Queues blocks [first, first + n) of c as one data frame. */
static bool queue_run(struct resync_chunk *c, uint64_t first, uint64_t n)
{
    uint64_t off = first * BLOCK, len = n * BLOCK;
    if (off + len > c->off + c->len)
        len = c->off + c->len - off;
    c->frames++;
    if (!R.env.queue_data(c->rs->peer, c, off, len)) {
        c->frames--;
        return false;
    }
    c->rs->sent += len;
    c->rs->unacked += len;
    return true;
}

static void read_done(struct io_cmd *cmd, int res)
{
    struct resync_chunk *c = (struct resync_chunk *)((char *)cmd - offsetof(struct resync_chunk, io));
    struct resync *rs = c->rs;

    if (c->gen != rs->gen || !rs->active) {
        chunk_free(c); /* the sync was abandoned meanwhile */
        return;
    }
    if (res < 0) {
        log_err("resync: reading %u bytes at %llu failed: %s", c->len,
                (unsigned long long)c->off, strerror(-res));
        chunk_free(c);
        R.env.failed(rs->peer, "resync stopped by a local read error");
        return;
    }
    if (rs->kind == RK_BITMAP || rs->kind == RK_FULL) {
        /* each run of marked blocks in it, as they are marked now */
        uint64_t first = c->off / BLOCK, end = (c->off + c->len + BLOCK - 1) / BLOCK;
        c->st = CK_QUEUED; /* unlocked: writes parked on it follow it in the stream */
        R.unlocked = true;
        c->frames++; /* held while its frames are queued */
        for (uint64_t b = bm_next_set(rs->bm, first); b < end; b = bm_next_set(rs->bm, b)) {
            uint64_t e = bm_next_clear(rs->bm, b);
            if (e > end)
                e = end;
            if (!queue_run(c, b, e - b))
                break;
            b = e;
        }
        resync_frame_done(c, false);
        return;
    }
    /* checksum and verify: our hashes, then the peer's */
    uint32_t nb = (c->len + BLOCK - 1) / BLOCK;
    c->hash = malloc((size_t)nb * REPL_HASH);
    if (!c->hash) {
        chunk_free(c);
        R.env.failed(rs->peer, "out of memory for hashes");
        return;
    }
    for (uint32_t i = 0; i < nb; i++) {
        uint32_t l = c->len - i * BLOCK < BLOCK ? c->len - i * BLOCK : BLOCK;
        repl_hash_block(c->buf + (size_t)i * BLOCK, l, c->hash + (size_t)i * REPL_HASH);
    }
    if (rs->kind == RK_VERIFY) {
        /* the peer hashes its copy after every earlier write and before any
         * later one (stream order): the chunk need not stay locked */
        buf_put(c->buf, c->len);
        c->buf = NULL;
        c->st = CK_VERIFY_WAIT;
        R.unlocked = true;
    } else {
        c->st = CK_HASH_WAIT; /* locked until the blocks that differ are queued */
    }
    if (!R.env.queue_hash(rs->peer, c, rs->kind == RK_VERIFY))
        chunk_free(c);
}

int resync_hashes(struct resync *rs, uint64_t seq, uint64_t off, uint32_t len,
                  const uint8_t *hashes)
{
    struct resync_chunk *c = NULL;

    for (int k = 0; k < RESYNC_CHUNKS && !c; k++)
        if ((rs->chunks[k].st == CK_HASH_WAIT || rs->chunks[k].st == CK_VERIFY_WAIT) &&
            rs->chunks[k].seq == seq)
            c = &rs->chunks[k];
    if (!c || c->off != off || c->len != len)
        return -1;
    uint64_t first = off / BLOCK, nb = (len + BLOCK - 1) / BLOCK;
    if (c->st == CK_VERIFY_WAIT) {
        for (uint64_t i = 0; i < nb; i++)
            if (memcmp(c->hash + i * REPL_HASH, hashes + i * REPL_HASH, REPL_HASH)) {
                bm_set_blocks(rs->bm, first + i, 1);
                rs->mismatched += BLOCK;
            }
        chunk_free(c);
        return 0;
    }
    /* checksum resync: equal blocks are in sync now; runs of the others go */
    c->st = CK_QUEUED;
    for (uint64_t i = 0; i < nb;) {
        bool same = !memcmp(c->hash + i * REPL_HASH, hashes + i * REPL_HASH, REPL_HASH);
        uint64_t j = i + 1;
        while (j < nb && same == !memcmp(c->hash + j * REPL_HASH, hashes + j * REPL_HASH, REPL_HASH))
            j++;
        if (same) {
            bm_clear_blocks(rs->bm, first + i, j - i);
            rs->skipped += (j - i) * BLOCK;
        } else if (!queue_run(c, first + i, j - i)) {
            break;
        }
        i = j;
    }
    R.unlocked = true;
    if (c->frames == 0)
        chunk_free(c);
    return 0;
}

static bool stripes_idle(uint64_t off, uint32_t len)
{
    for (uint64_t i = off / RESYNC_CHUNK; i <= (off + len - 1) / RESYNC_CHUNK; i++)
        if (R.stripe_writes[i])
            return false;
    return true;
}

/* The next run to copy from the cursor on (at most max bytes): false when
 * the pass is over. */
static bool next_run(struct resync *rs, uint32_t max, uint64_t *off, uint32_t *len)
{
    const struct bitmap *bm = rs->bm;
    uint64_t first, last;

    if (rs->kind == RK_VERIFY) {
        if (rs->cursor >= bm->nbits)
            return false;
        first = rs->cursor;
        last = first + max / BLOCK;
    } else {
        first = bm_next_set(bm, rs->cursor);
        if (first >= bm->nbits)
            return false;
        last = bm_next_clear(bm, first);
        if (last - first > max / BLOCK)
            last = first + max / BLOCK;
        if (rs->kind != RK_CSUM && max == RESYNC_CHUNK) {
            /* runs close together in one stripe: one read of their span, a
             * frame per run, as long as at least half of what is read is
             * marked (a read per small run costs more than its bytes; a
             * span mostly unmarked costs reads of what needs no copy) */
            uint64_t end = (first * BLOCK / RESYNC_CHUNK + 1) * (RESYNC_CHUNK / BLOCK);
            uint64_t marked = last - first;
            for (uint64_t n = bm_next_set(bm, last); n < end && n < bm->nbits;
                 n = bm_next_set(bm, last)) {
                uint64_t e = bm_next_clear(bm, n) < end ? bm_next_clear(bm, n) : end;
                if (2 * (marked + e - n) < e - first)
                    break;
                marked += e - n;
                last = e;
            }
        }
    }
    if (last > bm->nbits)
        last = bm->nbits;
    /* a chunk never crosses a 1 MiB stripe: one stripe to wait for */
    uint64_t stripe_end = (first * BLOCK / RESYNC_CHUNK + 1) * (RESYNC_CHUNK / BLOCK);
    if (last > stripe_end)
        last = stripe_end;
    rs->cursor = last;
    *off = first * BLOCK;
    uint64_t end = last * BLOCK > R.env.data_size ? R.env.data_size : last * BLOCK;
    *len = end - *off;
    return true;
}

void resync_step(struct resync *rs, uint64_t now)
{
    bool busy = false;

    if (!rs->active)
        return;
    for (int k = 0; k < RESYNC_CHUNKS; k++) {
        struct resync_chunk *c = &rs->chunks[k];
        if (c->st == CK_FREE && rs->inflight < RESYNC_INFLIGHT) {
            uint64_t off;
            uint32_t len;
            /* --resync-rate: no new chunk before its time */
            if (R.env.rate && (rs->sent + rs->skipped) * 1000 / R.env.rate > now - rs->start_ms)
                break;
            uint32_t max = R.env.budget(rs->peer, rs->inflight);
            if (max < BLOCK || !next_run(rs, max / BLOCK * BLOCK, &off, &len))
                break;
            c->rs = rs;
            c->gen = rs->gen;
            c->off = off;
            c->len = len;
            c->frames = 0;
            c->st = CK_LOCKED; /* from now on, new writes to it wait */
            rs->inflight += len;
        }
        if (c->st == CK_LOCKED && stripes_idle(c->off, c->len)) {
            c->buf = buf_get(c->len);
            if (!c->buf)
                break; /* memory budget: next turn */
            c->io = (struct io_cmd){ .op = IO_READ, .buf = c->buf, .len = c->len, .off = c->off,
                                     .fd = disk_fd_for(R.env.dev, c->buf, c->off, c->len),
                                     .mode = disk_bulk_flags(R.env.dev), .cb = read_done };
            c->st = CK_READING;
            io_queue(R.env.io, &c->io);
        }
    }
    for (int k = 0; k < RESYNC_CHUNKS; k++)
        busy |= rs->chunks[k].st != CK_FREE;
    uint64_t end = rs->kind == RK_VERIFY ? rs->bm->nbits : bm_next_set(rs->bm, rs->cursor);
    if (busy || end < rs->bm->nbits || rs->done_seq)
        return;
    if (rs->kind == RK_VERIFY) {
        if (rs->cursor >= rs->bm->nbits) {
            rs->done_seq = 1;
            R.env.verified(rs->peer);
        }
        return;
    }
    /* the pass is over: once every block sent is acknowledged, either all
     * is clean (done) or bits were set meanwhile (another pass) */
    if (rs->unacked)
        return;
    if (rs->bm->set) {
        rs->cursor = 0;
        return;
    }
    rs->done_seq = R.env.queue_done(rs->peer);
}

bool resync_locked(uint64_t off, uint32_t len)
{
    for (int i = 0; i < MAX_SYNCS; i++) {
        const struct resync *rs = R.running[i];
        for (int k = 0; rs && k < RESYNC_CHUNKS; k++) {
            const struct resync_chunk *c = &rs->chunks[k];
            if ((c->st == CK_LOCKED || c->st == CK_READING || c->st == CK_HASH_WAIT) &&
                off < c->off + c->len && c->off < off + len)
                return true;
        }
    }
    return false;
}

void resync_write_begin(uint64_t off, uint32_t len)
{
    for (uint64_t i = off / RESYNC_CHUNK; i <= (off + len - 1) / RESYNC_CHUNK; i++)
        R.stripe_writes[i]++;
}

void resync_write_end(uint64_t off, uint32_t len)
{
    for (uint64_t i = off / RESYNC_CHUNK; i <= (off + len - 1) / RESYNC_CHUNK; i++)
        R.stripe_writes[i]--;
}

bool resync_unlocked(void)
{
    bool u = R.unlocked;
    R.unlocked = false;
    return u;
}

int resync_percent(const struct resync *rs)
{
    if (!rs->active)
        return -1;
    if (rs->kind == RK_VERIFY)
        return (int)(rs->cursor * 100 / (rs->bm->nbits ? rs->bm->nbits : 1));
    uint64_t left = bm_bytes(rs->bm);
    return rs->total ? (int)((rs->total - (left < rs->total ? left : rs->total)) * 100 / rs->total)
                     : 100;
}

uint64_t resync_bytes_per_s(const struct resync *rs, uint64_t now)
{
    return (rs->sent + rs->skipped) * 1000 / (now - rs->start_ms + 1);
}

uint64_t resync_eta_s(const struct resync *rs, uint64_t now)
{
    uint64_t rate = resync_bytes_per_s(rs, now);
    uint64_t left = rs->kind == RK_VERIFY ? (rs->bm->nbits - rs->cursor) * BLOCK : bm_bytes(rs->bm);
    return rate ? left / rate : 0;
}
