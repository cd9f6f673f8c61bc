/* Full sync (see include/resync.h for the rules that keep it safe). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "resync.h"

#define MAX_SYNCS 31

static struct {
    struct resync_env env;
    uint16_t *stripe_writes;   /* local writes in flight per chunk-sized stripe */
    struct resync *running[MAX_SYNCS];
    bool unlocked;
} R;

int resync_init(const struct resync_env *env)
{
    R.env = *env;
    R.stripe_writes = calloc(env->data_size / RESYNC_CHUNK + 1, sizeof *R.stripe_writes);
    return R.stripe_writes ? 0 : -ENOMEM;
}

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

void resync_begin(struct resync *rs, void *peer)
{
    if (!rs->active)
        track(rs, true);
    rs->active = true;
    rs->peer = peer;
    rs->cursor = rs->sent = rs->done_seq = 0;
    rs->gen++;
    rs->start_ms = now_ms();
}

void resync_abort(struct resync *rs)
{
    if (!rs->active)
        return;
    rs->active = false;
    track(rs, false);
    for (int k = 0; k < RESYNC_CHUNKS; k++)
        if (rs->chunks[k].st == CK_LOCKED)
            rs->chunks[k].st = CK_FREE; /* READING ones free themselves on completion */
    R.unlocked = true;
}

void resync_chunk_done(struct resync_chunk *c, bool sent)
{
    if (sent && c->gen == c->rs->gen)
        c->rs->sent += c->len;
    buf_put(c->buf, c->len);
    c->buf = NULL;
    c->st = CK_FREE;
    R.unlocked = true;
}

static void read_done(struct io_cmd *cmd, int res)
{
    struct resync_chunk *c = (struct resync_chunk *)((char *)cmd - offsetof(struct resync_chunk, io));
    struct resync *rs = c->rs;

    if (c->gen != rs->gen || !rs->active) {
        resync_chunk_done(c, false); /* the sync was abandoned meanwhile */
        return;
    }
    if (res < 0) {
        log_err("full sync: reading %u bytes at %llu failed: %s", c->len,
                (unsigned long long)c->off, strerror(-res));
        resync_chunk_done(c, false);
        R.env.failed(rs->peer, "full sync stopped by a local read error");
        return;
    }
    c->st = CK_QUEUED; /* unlocked: writes parked on it follow it in the stream */
    R.unlocked = true;
    if (!R.env.queue_chunk(rs->peer, c))
        resync_chunk_done(c, false);
}

static bool stripes_idle(uint64_t off, uint32_t len)
{
    for (uint64_t i = off / RESYNC_CHUNK; i <= (off + len - 1) / RESYNC_CHUNK; i++)
        if (R.stripe_writes[i])
            return false;
    return true;
}

void resync_step(struct resync *rs, uint64_t now)
{
    bool busy = false;

    if (!rs->active)
        return;
    for (int k = 0; k < RESYNC_CHUNKS; k++) {
        struct resync_chunk *c = &rs->chunks[k];
        if (c->st == CK_FREE && rs->cursor < R.env.data_size) {
            /* --resync-rate: no new chunk before its time */
            if (R.env.rate && rs->cursor * 1000 / R.env.rate > now - rs->start_ms)
                break;
            c->rs = rs;
            c->gen = rs->gen;
            c->off = rs->cursor;
            c->len = R.env.data_size - rs->cursor < RESYNC_CHUNK ? R.env.data_size - rs->cursor
                                                                 : RESYNC_CHUNK;
            rs->cursor += c->len;
            c->st = CK_LOCKED; /* from now on, new writes to it wait */
        }
        if (c->st == CK_LOCKED && stripes_idle(c->off, c->len)) {
            c->buf = buf_get(c->len);
            if (!c->buf)
                break; /* memory budget: next turn */
            c->io = (struct io_cmd){ .op = IO_READ, .buf = c->buf, .len = c->len, .off = c->off,
                                     .fd = disk_fd_for(R.env.dev, c->buf, c->off, c->len),
                                     .cb = read_done };
            c->st = CK_READING;
            io_queue(R.env.io, &c->io);
        }
        busy |= c->st != CK_FREE;
    }
    if (!busy && rs->cursor >= R.env.data_size && !rs->done_seq)
        rs->done_seq = R.env.queue_done(rs->peer);
}

bool resync_locked(uint64_t off, uint32_t len)
{
    for (int i = 0; i < MAX_SYNCS; i++) {
        const struct resync *rs = R.running[i];
        for (int k = 0; rs && k < RESYNC_CHUNKS; k++) {
            const struct resync_chunk *c = &rs->chunks[k];
            if ((c->st == CK_LOCKED || c->st == CK_READING) && off < c->off + c->len &&
                c->off < off + len)
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
    return rs->active ? (int)(rs->sent * 100 / R.env.data_size) : -1;
}

uint64_t resync_bytes_per_s(const struct resync *rs, uint64_t now)
{
    return rs->sent * 1000 / (now - rs->start_ms + 1);
}

uint64_t resync_eta_s(const struct resync *rs, uint64_t now)
{
    uint64_t rate = resync_bytes_per_s(rs, now);
    return rate ? (R.env.data_size - rs->sent) / rate : 0;
}
