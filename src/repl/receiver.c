/* Applying a peer's stream (the peer is our primary, or our sync source).
 *
 * Writes of one epoch run concurrently, except that a write overlapping one
 * still in flight waits for it (sequence order). A BARRIER waits until every
 * earlier write is done, flushes, and is acknowledged before anything after
 * it starts: so the disk always holds a state the primary's disk passed
 * through at some barrier. Waiting stops reading; TCP pushes back.
 *
 * A write, trim, zero or flush that fails here makes the disk Failed: it is
 * recorded (Inconsistent, needs a full sync) before anything further is
 * acknowledged, the error goes back to the primary (which drops us), and
 * only a full sync that runs from start to end without an error makes it
 * UpToDate again. A trim is made to read zeroes, as it does on the primary,
 * so both disks stay equal. A checksum request is answered with the hashes
 * of our blocks, read after every earlier write in the stream. */
#include <errno.h>
#include <linux/fs.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repl-int.h"

#define ZERO_BUF (1u << 20)

enum { OP_MAIN, OP_ZEROOUT, OP_ZERO_FILL, OP_FUA, OP_HASH };

static bool sync_io_failed; /* an I/O failed here since the current resync began */

static void link_resume(struct peer *p);

static void ack(struct peer *p, uint8_t type, uint16_t flags, uint64_t seq, uint32_t epoch,
                uint32_t err, const void *pay, uint32_t len)
{
    if (!p->s || p->s->dead)
        return;
    /* a full queue cannot happen: input waits while it is three quarters full */
    if (link_write(p, type, flags, seq, epoch, err, pay, len) < 0)
        link_kill(p, "acknowledgements not read by the primary");
}

/* A replicated write, trim, zero or flush failed: the disk no longer holds
 * what the primary holds. Recorded before anything else is acknowledged. */
static int disk_failed(const char *what)
{
    sync_io_failed = true;
    node_disk_failed(what);
    return N.meta_failed ? -1 : 0;
}

/* With O_DIRECT, a partial block is a read-modify-write (the page cache, or
 * the zero-out of an unaligned range), so requests sharing a block overlap. */
static bool overlaps(const struct peer *p, uint64_t off, uint32_t len)
{
    const struct disk *d = N.self.dev;
    uint64_t g = d->direct ? (d->align > 4096 ? d->align : 4096) : 1;
    uint64_t lo = off / g * g, hi = (off + len + g - 1) / g * g;

    for (int i = 0; i < RX_OPS; i++) {
        const struct rx_op *o = &p->rx.ops[i];
        if (o->busy && lo < (o->off + o->len + g - 1) / g * g && o->off / g * g < hi)
            return true;
    }
    return false;
}

static _Alignas(4096) const uint8_t zeroes[ZERO_BUF];

/* Writing zeroes by hand: the last resort of a trim or zero write. */
static void zero_fill(struct rx_op *o)
{
    const struct disk *d = N.self.dev;
    uint32_t n = o->len - o->done < ZERO_BUF ? o->len - o->done : ZERO_BUF;
    uint64_t off = o->off + o->done;

    o->step = OP_ZERO_FILL;
    o->io = (struct io_cmd){ .op = IO_WRITE, .fd = disk_fd_for(d, zeroes, off, n),
                             .buf = (void *)zeroes, .len = n, .off = off, .cb = o->io.cb };
    io_queue(N.self.io, &o->io);
}

static void confirm_check(struct peer *p);

static void op_finish(struct rx_op *o)
{
    struct peer *p = o->p;
    o->busy = false;
    if (o->buf) {
        buf_put(o->buf, o->len);
        o->buf = NULL;
    }
    p->rx.inflight--;
    if (p->rx.nconfirm)
        confirm_check(p);
}

/* ---- confirm barriers: durable before acked, without stopping the stream ---- */

static void confirm_done(struct io_cmd *cmd, int res)
{
    struct rx_op *c = (struct rx_op *)((char *)cmd - offsetof(struct rx_op, io));
    struct peer *p = c->p;
    uint64_t seq = c->seq;
    uint32_t epoch = c->len;

    /* the oldest one is always the one flushing: drop it from the front */
    memmove(&p->rx.confirm[0], &p->rx.confirm[1], --p->rx.nconfirm * sizeof p->rx.confirm[0]);
    p->rx.inflight--;
    if (!p->s || p->s->dead)
        return;
    if (res < 0) {
        log_err("flush for a replication confirm failed: %s", strerror(-res));
        if (disk_failed("a replicated flush failed") < 0)
            return;
    }
    ack(p, RT_BARRIER_ACK, 0, seq, epoch, res < 0 ? -res : 0, NULL, 0);
    confirm_check(p);
    link_resume(p);
}

/* The oldest confirm flushes once no op that started before it is busy. */
static void confirm_check(struct peer *p)
{
    struct rx_op *c = &p->rx.confirm[0];
    if (!p->rx.nconfirm || c->step)
        return;
    for (int i = 0; i < RX_OPS; i++)
        if (p->rx.ops[i].busy && p->rx.ops[i].cgen < c->cgen)
            return;
    c->step = 1;
    c->io = (struct io_cmd){ .op = IO_FSYNC, .fd = N.self.dev->fd, .cb = confirm_done };
    p->rx.inflight++; /* the entry is not reused while it runs */
    io_queue(N.self.io, &c->io);
}

/* A checksum request: the hashes of our blocks go back. */
static void hash_done(struct rx_op *o, int res)
{
    struct peer *p = o->p;
    uint32_t nb = (o->len + 4095) / 4096;
    uint8_t reply[12 + (REPL_CSUM_MAX / 4096) * REPL_HASH];

    put_be64(reply, o->off);
    put_be32(reply + 8, o->len);
    for (uint32_t i = 0; res >= 0 && i < nb; i++) {
        uint32_t l = o->len - i * 4096 < 4096 ? o->len - i * 4096 : 4096;
        repl_hash_block(o->buf + (size_t)i * 4096, l, reply + 12 + (size_t)i * REPL_HASH);
    }
    if (res < 0) /* unreadable here: hashes that match nothing, so the source sends */
        memset(reply + 12, 0, (size_t)nb * REPL_HASH);
    uint16_t flags = o->flags & RF_VERIFY;
    uint64_t seq = o->seq;
    op_finish(o);
    if (p->s && !p->s->dead)
        ack(p, RT_CSUM_REPLY, flags, seq, 0, 0, reply, 12 + nb * REPL_HASH);
    link_resume(p);
}

static void op_done(struct io_cmd *cmd, int res)
{
    struct rx_op *o = (struct rx_op *)((char *)cmd - offsetof(struct rx_op, io));
    struct peer *p = o->p;
    const struct disk *d = N.self.dev;

    if (o->step == OP_HASH) {
        hash_done(o, res);
        return;
    }
    /* A trim or zero write the disk cannot do one way is done another: the
     * range must read zeroes, as on the primary (a zero-out on a device,
     * then plain writes of zeroes). */
    if (res < 0 && o->type != RT_WRITE && (o->step == OP_MAIN || o->step == OP_ZEROOUT) &&
        (res == -EOPNOTSUPP || res == -EINVAL)) {
        if (d->is_blockdev && o->step == OP_MAIN) {
            disk_zero_cmd(d, &o->io, o->off, o->len, true);
            o->io.cb = op_done;
            o->step = OP_ZEROOUT;
            io_queue(N.self.io, &o->io);
        } else {
            o->done = 0;
            zero_fill(o);
        }
        return;
    }
    if (res >= 0 && o->step == OP_ZERO_FILL) {
        o->done += o->io.len;
        if (o->done < o->len) {
            zero_fill(o);
            return;
        }
    }
    /* FUA: a write used RWF_DSYNC; a trim or zero write is flushed before
     * it is acknowledged */
    if (res >= 0 && o->type != RT_WRITE && (o->flags & RF_FUA) && o->step != OP_FUA) {
        o->step = OP_FUA;
        o->io = (struct io_cmd){ .op = IO_FSYNC, .fd = d->fd, .cb = op_done };
        io_queue(N.self.io, &o->io);
        return;
    }
    static struct ratelimit rl;
    if (res < 0 && log_ratelimit(&rl))
        log_err("replicated %s of %u bytes at %llu failed: %s",
                o->type == RT_WRITE ? "write" : o->type == RT_TRIM ? "trim" : "zero write",
                o->len, (unsigned long long)o->off, strerror(-res));
    int failed = res < 0 ? disk_failed("a replicated write failed") : 0; /* before the ack */
    uint8_t type = o->type;
    uint16_t flags = o->flags;
    uint64_t seq = o->seq, off = o->off;
    uint32_t len = o->len;
    op_finish(o);
    if (!p->s || p->s->dead || failed < 0)
        return; /* the entry is reused only once nothing is in flight */
    /* say what is acknowledged, so the primary counts data and ranges apart;
     * resync data names its offset (its bits are cleared by it) */
    uint8_t offb[8];
    put_be64(offb, off);
    ack(p, RT_ACK_WRITE, type << 8 | (flags & RF_RESYNC), seq, len, res < 0 ? -res : 0,
        offb, (flags & RF_RESYNC) ? 8 : 0);
    if (!(flags & RF_RESYNC)) {
        p->rx.acked_reqs++;
        if (type == RT_WRITE)
            p->rx.acked_bytes += len;
        else if (type == RT_TRIM)
            p->rx.trimmed_bytes += len;
        else
            p->rx.zeroed_bytes += len;
    }
    link_resume(p); /* a frame may have been waiting for this one */
}

static void barrier_done(struct io_cmd *cmd, int res)
{
    struct rx_op *o = (struct rx_op *)((char *)cmd - offsetof(struct rx_op, io));
    struct peer *p = o->p;
    uint64_t gen = o->done ? o->off : 0; /* the id the barrier carries */

    o->busy = false;
    p->rx.barrier_running = false;
    p->rx.inflight--;
    if (!p->s || p->s->dead)
        return;
    if (res < 0) {
        log_err("flush for replication barrier %u failed: %s", (unsigned)o->len, strerror(-res));
        if (disk_failed("a replicated flush failed") < 0)
            return;
    } else if (o->flags & RF_SYNC_START) {
        /* blocks land in any order from here on: Inconsistent until done */
        node_set_disk(DS_INCONSISTENT);
        if (gen)
            node_adopt_gen(gen, "a resync begins");
        if (N.meta_failed)
            return;
        p->rs = PR_SYNC_TARGET;
        sync_io_failed = false; /* this sync may heal a failed disk */
        p->rx.resync_rx = 0;
        log_info("resync from %s starts (SyncTarget)", p->addr);
    } else if (o->flags & RF_SYNC_DONE) {
        if (sync_io_failed || N.disk == DS_FAILED) {
            /* some of it never reached the disk: still Inconsistent */
            log_err("resync ended, but writes failed here during it: disk stays Inconsistent");
            res = -EIO;
        } else {
            /* our own changes for the source are in its copy now */
            if (p->slot >= 0 && N.bm_on[p->slot]) {
                bm_clear_all(&N.bm[p->slot]);
                gen_bitmap_clear(N.meta, p->slot);
            }
            N.meta->flags &= ~META_F_FULL_SYNC;
            N.discard_my_data = false; /* done: our changes are overwritten */
            if (gen)
                gen_adopt(N.meta, gen);
            node_set_disk(DS_UPTODATE); /* saves the ids with the state */
            if (N.meta_failed)
                return;
            p->rs = PR_ESTABLISHED;
            p->disk = DS_UPTODATE;
            log_info("resync from %s done (%llu MiB); disk UpToDate", p->addr,
                     (unsigned long long)(p->rx.resync_rx >> 20));
        }
    } else if (o->flags & RF_CLEAN) {
        log_info("primary %s %s cleanly; disk %s", p->addr,
                 p->primary ? "stops" : "demotes", disk_state_name(N.disk));
    }
    ack(p, RT_BARRIER_ACK, 0, o->seq, o->len, res < 0 ? -res : 0, NULL, 0);
    link_resume(p);
}

/* Anything applied: never once this node cannot record its state. */
static bool may_apply(struct peer *p)
{
    if (N.meta_failed) {
        link_kill(p, "the metadata cannot be written");
        return false;
    }
    return true;
}

/* Everything before it on disk (flushed) before it is acknowledged, and
 * nothing after it started before that. */
int rx_on_barrier(struct peer *p, const struct repl_hdr *h, const uint8_t *payload)
{
    struct rx_op *o = &p->rx.barrier;
    if (!may_apply(p))
        return -1;
    if (h->flags & RF_CONFIRM) {
        /* only a confirmation: later frames need not wait for it */
        if (p->rx.barrier_running || p->rx.nconfirm == sizeof p->rx.confirm / sizeof p->rx.confirm[0])
            return 0;
        p->rx.confirm[p->rx.nconfirm++] = (struct rx_op){ .p = p, .seq = h->seq, .len = h->epoch,
                                                          .cgen = ++p->rx.cgen };
        confirm_check(p);
        return 1;
    }
    if (p->rx.inflight || p->rx.barrier_running)
        return 0;
    *o = (struct rx_op){ .p = p, .seq = h->seq, .len = h->epoch, .flags = h->flags,
                         .busy = true };
    if (h->len >= 8) {
        o->off = get_be64(payload);
        o->done = 1; /* it carries an id */
    }
    if (h->len == 16 && (h->flags & RF_SYNC_START))
        p->rx.resync_total = get_be64(payload + 8); /* how much is coming (status) */
    o->io = (struct io_cmd){ .op = IO_FSYNC, .fd = N.self.dev->fd, .cb = barrier_done };
    p->rx.barrier_running = true;
    p->rx.inflight++;
    io_queue(N.self.io, &o->io);
    return 1;
}

static struct rx_op *free_op(struct peer *p)
{
    for (int i = 0; i < RX_OPS; i++)
        if (!p->rx.ops[i].busy)
            return &p->rx.ops[i];
    return NULL;
}

/* Offset and length, checked against our disk. */
static bool range_of(struct peer *p, const struct repl_hdr *h, const uint8_t *payload,
                     uint64_t *off, uint32_t *len)
{
    *off = get_be64(payload);
    *len = h->type == RT_WRITE ? h->len - 8 : get_be32(payload + 8);
    if (*len == 0 || *off > N.self.data_size || *len > N.self.data_size - *off) {
        link_kill(p, "write outside the disk");
        return false;
    }
    return true;
}

/* A checksum request: read our blocks (in stream order, after the writes
 * before it), hash them, answer. */
int rx_on_csum(struct peer *p, const struct repl_hdr *h, const uint8_t *payload)
{
    uint64_t off;
    uint32_t len;
    struct rx_op *o;

    if (!may_apply(p) || !range_of(p, h, payload, &off, &len))
        return -1;
    if (len > REPL_CSUM_MAX) {
        link_kill(p, "checksum request too large");
        return -1;
    }
    /* the answer must fit the output buffer when it is ready */
    if (p->rx.barrier_running || overlaps(p, off, len) || !(o = free_op(p)) ||
        stream_write_room(p->s) < 2 * (12 + REPL_HASH * (REPL_CSUM_MAX / 4096) + REPL_HDR))
        return 0;
    uint8_t *buf = buf_get(len);
    if (!buf)
        return 0;
    *o = (struct rx_op){ .p = p, .seq = h->seq, .off = off, .len = len, .type = h->type,
                         .flags = h->flags, .busy = true, .step = OP_HASH, .buf = buf,
                         .cgen = p->rx.cgen };
    o->io = (struct io_cmd){ .op = IO_READ, .buf = buf, .len = len, .off = off,
                             .fd = disk_fd_for(N.self.dev, buf, off, len),
                             .mode = disk_bulk_flags(N.self.dev), .cb = op_done };
    p->rx.inflight++;
    io_queue(N.self.io, &o->io);
    return 1;
}

/* WRITE (its data is in p->rx.data), TRIM, ZERO: concurrently within an
 * epoch, but after every overlapping one still running. */
int rx_on_data(struct peer *p, const struct repl_hdr *h, const uint8_t *payload)
{
    const struct disk *d = N.self.dev;
    struct rx_op *o;
    uint64_t off;
    uint32_t len;

    if (!may_apply(p) || !range_of(p, h, payload, &off, &len))
        return -1;
    if (p->rx.barrier_running || overlaps(p, off, len) || !(o = free_op(p)))
        return 0;
    if (p->hello.protocol == 'B' && !(h->flags & RF_RESYNC))
        ack(p, RT_ACK_RECV, 0, h->seq, len, 0, NULL, 0);
    *o = (struct rx_op){ .p = p, .seq = h->seq, .off = off, .len = len, .type = h->type,
                         .flags = h->flags, .busy = true, .cgen = p->rx.cgen };
    o->io.cb = op_done;
    o->io.off = off;
    o->io.len = len;
    if (h->flags & RF_RESYNC)
        p->rx.resync_rx += len;
    if (h->type == RT_WRITE) {
        o->buf = p->rx.data;
        p->rx.data = NULL;
        o->io.op = IO_WRITE;
        o->io.buf = o->buf;
        o->io.fd = disk_fd_for(d, o->buf, off, len);
        o->io.mode = (h->flags & RF_FUA) ? RWF_DSYNC : 0;
        if (h->flags & RF_RESYNC)
            o->io.mode |= disk_bulk_flags(d);
    } else if (h->type == RT_TRIM) {
        /* the primary trimmed exactly this, and there it reads zeroes now:
         * so it must here (op_done falls back to writing them) */
        disk_zero_cmd(d, &o->io, off, len, false);
    } else {
        disk_zero_cmd(d, &o->io, off, len, h->flags & RF_NO_HOLE);
    }
    p->rx.inflight++;
    io_queue(N.self.io, &o->io);
    return 1;
}

/* Starts the frame in rx.fh if the ordering rules allow; false = wait. */
static bool apply(struct peer *p)
{
    const char *why;
    int r = repl_frame_dispatch(p, &p->rx.fh, p->rx.small, &why);
    if (r < 0 && p->s && !p->s->dead)
        link_kill(p, why);
    return r > 0;
}

/* A frame is all here: it starts, or input waits until it can. */
static void frame_ready(struct peer *p)
{
    if (apply(p) || !p->s || p->s->dead)
        return;
    p->rx.frame_waiting = true;
    stream_hold(p->s); /* reading more would only fill memory: TCP pushes back */
}

/* Something finished that a waiting frame or buffer may have needed. */
static void link_resume(struct peer *p)
{
    if (!p->s || p->s->dead)
        return;
    if (p->rx.frame_waiting) {
        if (!apply(p))
            return;
        p->rx.frame_waiting = false;
    }
    p->rx.buf_waiting = false;
    stream_unhold(p->s);
}

size_t rx_parse(struct peer *p, uint8_t *b, size_t len, const struct repl_hdr *h)
{
    const char *why;
    uint32_t prefix = h->type == RT_WRITE ? 8 : h->len;

    if (!repl_frame_allowed(p, h, &why)) {
        link_kill(p, why);
        return 0;
    }
    if (len < REPL_HDR + prefix)
        return 0;
    if (h->type == RT_WRITE) {
        p->rx.data = buf_get(h->len - 8);
        if (!p->rx.data) { /* over the memory budget: wait for writes to finish */
            p->rx.buf_waiting = true;
            stream_hold(p->s);
            return 0;
        }
    }
    p->rx.fh = *h;
    memcpy(p->rx.small, b + REPL_HDR, prefix);
    if (h->type == RT_WRITE) {
        if (!(h->flags & RF_RESYNC))
            p->rx.rx_bytes += h->len - 8; /* client write data, as the primary counts */
        stream_recv_into(p->s, p->rx.data, h->len - 8);
    } else {
        frame_ready(p);
    }
    return REPL_HDR + prefix;
}

void rx_payload(struct peer *p) { frame_ready(p); }

void rx_closed(struct peer *p)
{
    if (p->rx.data) {
        buf_put(p->rx.data, p->rx.fh.len - 8);
        p->rx.data = NULL;
    }
    p->rx.frame_waiting = p->rx.buf_waiting = false;
    /* confirms still waiting are moot; one flushing finishes on its own */
    p->rx.nconfirm = p->rx.nconfirm && p->rx.confirm[0].step ? 1 : 0;
    if (p->rs == PR_SYNC_TARGET)
        log_warn("resync from %s interrupted; the disk stays Inconsistent until it completes",
                 p->addr);
}

bool rx_idle(const struct peer *p) { return p->rx.inflight == 0; }

void rx_tick(struct peer *p)
{
    /* buffers and output room may have come back from elsewhere */
    if (p->s && !p->s->dead && (p->rx.buf_waiting || p->rx.frame_waiting))
        link_resume(p);
}

void rx_reset(struct peer *p)
{
    p->rx.rx_bytes = p->rx.acked_bytes = p->rx.trimmed_bytes = p->rx.zeroed_bytes = 0;
    p->rx.acked_reqs = p->rx.resync_rx = 0;
}
