/* Transmission phase: decode requests, check them, hand them to the io
 * engine, and queue the replies as the disk completes them (in any order). */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "nbd-int.h"

enum { STEP_MAIN, STEP_ZEROOUT, STEP_ZERO_FILL, STEP_FUA };

#define ZERO_CHUNK (1u << 20)
#define MAX_EXTENTS 256

static _Alignas(4096) const uint8_t zeroes[ZERO_CHUNK];

static void req_done(struct io_cmd *cmd, int res);
static void start_io(struct nm_req *r);
static void reply(struct nm_req *r);
static bool conn_gone(struct nm_req *r);

/* The request lifecycle (src/req) calls these; see include/request.h. */
static const struct req_owner owner = {
    .io = start_io, .complete = reply, .release = req_release, .gone = conn_gone,
};

static bool conn_gone(struct nm_req *r) { return ((struct conn *)r->conn)->s.dead; }

/* Nobody holds the request or its buffer any more: the slot is free. */
void req_release(struct nm_req *r)
{
    struct conn *c = r->conn;

    if (r->buf && r->buf_cap) {
        buf_put(r->buf, r->buf_cap);
        srv.resume_all = true; /* a paused connection may now get a buffer */
    }
    r->buf = NULL;
    r->buf_cap = 0;
    r->next = c->free_slots;
    c->free_slots = r;
    c->inflight--;
    if (c->paused)
        srv.resume_all = true;
    if (c->closing && !c->inflight)
        stream_close_when_sent(&c->s); /* DISC: the last reply is queued or out */
}

static void reply_sent(struct stream *s, void *arg, bool sent)
{
    (void)s, (void)sent;
    req_replied(arg);
}

/* Queue the reply: one item (the header inline, the payload from r->buf).
 * Replies of one turn leave together (stream_flush_dirty in the main loop),
 * and each is handed back (req_replied) once sent or dropped. */
static void reply(struct nm_req *r)
{
    struct conn *c = r->conn;

    if (r->err)
        srv.stats.errors++;
    struct hist *h = r->op == REQ_READ ? &srv.stats.lat_read
                     : r->op == REQ_WRITE ? &srv.stats.lat_write
                     : r->op == REQ_FLUSH ? &srv.stats.lat_flush : NULL;
    if (h)
        hist_add(h, hist_now_ns() - r->t_ns);
    if (c->s.dead) {
        req_replied(r);
        return;
    }
    if (r->op == REQ_READ && c->structured)
        r->err ? nbd_encode_error_chunk(r) : nbd_encode_read_chunk(r);
    else if (r->op == REQ_BLOCK_STATUS)
        r->err ? nbd_encode_error_chunk(r) : nbd_encode_status_chunk(r);
    else
        nbd_encode_simple(r);
    /* the queue holds every slot's reply and the handshake's: it cannot be full */
    if (stream_queue(&c->s, r->hdr, r->hdr_len, r->buf, r->buf_len, reply_sent, r) < 0) {
        conn_kill(c, "reply queue full");
        req_replied(r);
    }
}

static void submit_io(struct nm_req *r, enum io_op op, int fd, void *buf,
                      uint32_t len, uint64_t off, int mode)
{
    r->io.op = op;
    r->io.fd = fd;
    r->io.buf = buf;
    r->io.len = len;
    r->io.off = off;
    r->io.mode = mode;
    r->io.done = 0;
    r->io.cb = req_done;
    io_queue(srv.exp->io, &r->io);
}

static void submit_flush(struct nm_req *r)
{
    r->step = STEP_FUA;
    submit_io(r, IO_FSYNC, srv.exp->disk->fd, NULL, 0, 0, 0);
}

/* Writing zeroes by hand, for filesystems that cannot zero a range. */
static void submit_zero_fill(struct nm_req *r)
{
    const struct disk *d = srv.exp->disk;
    uint32_t n = r->len - r->done < ZERO_CHUNK ? r->len - r->done : ZERO_CHUNK;
    uint64_t off = r->offset + r->done;

    r->step = STEP_ZERO_FILL;
    submit_io(r, IO_WRITE, disk_fd_for(d, zeroes, off, n), (void *)zeroes, n, off, 0);
}

static void submit_cmd(struct nm_req *r)
{
    r->io.cb = req_done;
    io_queue(srv.exp->io, &r->io);
}

static void submit_zeroes(struct nm_req *r)
{
    const struct disk *d = srv.exp->disk;
    bool keep = r->flags & REQ_F_NO_HOLE;

    if (d->is_blockdev && keep && (r->flags & REQ_F_FAST_ZERO)) {
        req_local_done(r, ENOTSUP); /* the device decides the speed: no promise */
        return;
    }
    disk_zero_cmd(d, &r->io, r->offset, r->len, keep);
    submit_cmd(r);
}

/* base:allocation from SEEK_DATA / SEEK_HOLE. A block device reports all
 * data: lseek cannot see its allocation (EINVAL on devices). */
static void block_status(struct nm_req *r)
{
    int fd = srv.exp->disk->fd_buffered;
    uint64_t pos = r->offset, end = r->offset + r->len;
    unsigned n = 0, max = (r->flags & REQ_F_REQ_ONE) ? 1 : MAX_EXTENTS;

    srv.stats.block_status++;
    while (pos < end && n < max) {
        off_t data = srv.exp->disk->is_blockdev ? (off_t)pos : lseek(fd, pos, SEEK_DATA), next;
        uint32_t flags;
        if (data < 0 && errno != ENXIO)
            data = pos; /* cannot tell (no SEEK_DATA here): say data, which is always true */
        if (data < 0 || (uint64_t)data > pos) {
            next = data < 0 ? (off_t)end : data;
            flags = NBD_STATE_HOLE | NBD_STATE_ZERO;
        } else {
            next = srv.exp->disk->is_blockdev ? (off_t)end : lseek(fd, pos, SEEK_HOLE);
            if (next < 0)
                next = end;
            flags = 0;
        }
        if ((uint64_t)next > end)
            next = end;
        put_be32(r->buf + 8 * n, next - pos);
        put_be32(r->buf + 8 * n + 4, flags);
        n++;
        pos = next;
    }
    r->buf_len = 8 * n;
    req_local_done(r, 0);
}

/* The lifecycle says go: the local disk's part of the request. */
static void start_io(struct nm_req *r)
{
    const struct disk *d = srv.exp->disk;
    int rwf = 0;

    r->step = STEP_MAIN;
    r->done = 0;
    switch (r->op) {
    case REQ_READ:
        srv.stats.reads++;
        srv.stats.read_bytes += r->len;
        r->buf_len = r->len;
        submit_io(r, IO_READ, disk_fd_for(d, r->buf, r->offset, r->len), r->buf, r->len, r->offset, 0);
        break;
    case REQ_WRITE:
        srv.stats.writes++;
        srv.stats.write_bytes += r->len;
        if (r->flags & REQ_F_FUA)
            rwf = RWF_DSYNC; /* durable before the reply, in one operation */
        submit_io(r, IO_WRITE, disk_fd_for(d, r->buf, r->offset, r->len), r->buf, r->len, r->offset, rwf);
        break;
    case REQ_FLUSH:
        srv.stats.flushes++;
        submit_flush(r);
        break;
    case REQ_TRIM:
        srv.stats.trims++;
        disk_trim_cmd(d, &r->io, r->offset, r->len);
        r->stream_off = r->io.off; /* on a device: the aligned part; peers get */
        r->stream_len = r->io.len; /* what was really trimmed here */
        if (r->io.len == 0) {
            req_local_done(r, 0); /* nothing whole to trim: a no-op everywhere */
            return;
        }
        submit_cmd(r);
        break;
    case REQ_ZERO:
        srv.stats.zeroes++;
        submit_zeroes(r);
        break;
    case REQ_BLOCK_STATUS:
        block_status(r);
        break;
    case REQ_NONE:
        req_local_done(r, EINVAL); /* check() refuses these first */
        break;
    }
}

static void req_done(struct io_cmd *cmd, int res)
{
    struct nm_req *r = (struct nm_req *)((char *)cmd - offsetof(struct nm_req, io));

    if (res < 0) {
        int err = -res;
        if (r->op == REQ_TRIM && r->step == STEP_MAIN && (err == EOPNOTSUPP || err == EINVAL)) {
            /* trim is advisory: a disk that cannot trim has done its part,
             * and since nothing changed here, nothing is streamed */
            r->stream_len = 0;
            req_local_done(r, 0);
            return;
        } else if (r->op == REQ_ZERO && (r->step == STEP_MAIN || r->step == STEP_ZEROOUT) &&
                   (err == EOPNOTSUPP || err == EINVAL)) {
            if (r->flags & REQ_F_FAST_ZERO) {
                req_local_done(r, ENOTSUP);
                return;
            }
            if (srv.exp->disk->is_blockdev && r->step == STEP_MAIN) {
                disk_zero_cmd(srv.exp->disk, &r->io, r->offset, r->len, true);
                r->step = STEP_ZEROOUT;
                submit_cmd(r);
            } else {
                submit_zero_fill(r); /* the last resort: writing zeroes */
            }
            return;
        } else {
            static struct ratelimit rl;
            if (err != ENOSPC && err != EDQUOT && log_ratelimit(&rl))
                log_err("%s: %s of %u bytes at %llu failed: %s", srv.exp->disk->path,
                        r->op == REQ_READ ? "read" : "write", r->len,
                        (unsigned long long)r->offset, strerror(err));
            req_local_done(r, err);
            return;
        }
    }
    if (r->step == STEP_ZERO_FILL) {
        r->done += cmd->len;
        if (r->done < r->len) {
            submit_zero_fill(r);
            return;
        }
    }
    /* WRITE with FUA used RWF_DSYNC; others that change data flush after. */
    if (r->step != STEP_FUA && (r->flags & REQ_F_FUA) && (r->op == REQ_TRIM || r->op == REQ_ZERO)) {
        submit_flush(r);
        return;
    }
    req_local_done(r, 0);
}

/* Checks a request against the spec and the export; 0 or an errno. */
static int check(const struct conn *c, const struct nbd_request *q)
{
    const struct nbd_export *e = srv.exp;
    uint16_t allowed = NBD_CMD_FLAG_FUA;
    bool writes = false;

    switch (q->type) {
    case NBD_CMD_READ:
        if (c->structured)
            allowed |= NBD_CMD_FLAG_DF;
        break;
    case NBD_CMD_WRITE:
    case NBD_CMD_TRIM:
        writes = true;
        break;
    case NBD_CMD_WRITE_ZEROES:
        allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
        writes = true;
        break;
    case NBD_CMD_FLUSH:
        return q->flags & ~allowed ? EINVAL : 0;
    case NBD_CMD_BLOCK_STATUS:
        if (!c->meta_alloc)
            return EINVAL;
        allowed |= NBD_CMD_FLAG_REQ_ONE;
        break;
    default:
        return EINVAL; /* unknown command (and CACHE, which we do not offer) */
    }
    if (q->flags & ~allowed)
        return EINVAL;
    if (writes && (e->read_only || !c->writable))
        return EPERM; /* a connection told it is read-only stays so */
    if (q->len == 0)
        return EINVAL;
    if (q->type == NBD_CMD_READ && q->len > NBD_MAX_BLOCK)
        return EINVAL;
    if (q->offset > e->size || q->len > e->size - q->offset)
        return q->type == NBD_CMD_WRITE || q->type == NBD_CMD_WRITE_ZEROES ? ENOSPC : EINVAL;
    if (e->readable && !e->readable())
        return EIO; /* mid-sync: a mix of old and new blocks is no answer */
    return 0;
}

/* NBD's command and flags, translated once into our own. */
static void translate(struct nm_req *r, const struct nbd_request *q)
{
    static const enum req_op ops[] = {
        [NBD_CMD_READ] = REQ_READ, [NBD_CMD_WRITE] = REQ_WRITE, [NBD_CMD_FLUSH] = REQ_FLUSH,
        [NBD_CMD_TRIM] = REQ_TRIM, [NBD_CMD_WRITE_ZEROES] = REQ_ZERO,
        [NBD_CMD_BLOCK_STATUS] = REQ_BLOCK_STATUS,
    };
    r->op = q->type < sizeof ops / sizeof ops[0] && (ops[q->type] || q->type == NBD_CMD_READ)
                ? ops[q->type] : REQ_NONE;
    r->flags = (q->flags & NBD_CMD_FLAG_FUA ? REQ_F_FUA : 0) |
               (q->flags & NBD_CMD_FLAG_NO_HOLE ? REQ_F_NO_HOLE : 0) |
               (q->flags & NBD_CMD_FLAG_FAST_ZERO ? REQ_F_FAST_ZERO : 0) |
               (q->flags & NBD_CMD_FLAG_DF ? REQ_F_DF : 0) |
               (q->flags & NBD_CMD_FLAG_REQ_ONE ? REQ_F_REQ_ONE : 0);
    r->cookie = q->cookie;
    r->offset = q->offset;
    r->len = q->len;
}

static struct nm_req *take_slot(struct conn *c)
{
    struct nm_req *r = c->free_slots;
    c->free_slots = r->next;
    c->inflight++;
    r->conn = c;
    r->buf = NULL;
    r->buf_len = r->buf_cap = 0;
    return r;
}

/* One request from the staged bytes; returns what it took (0: wait). A
 * write's payload is received straight into its buffer (tx_payload follows);
 * a refused write's payload is discarded. */
size_t tx_data(struct conn *c, const uint8_t *p, size_t len)
{
    struct nbd_request q;
    struct nm_req *r;
    int err;

    if (len < NBD_REQ_SIZE)
        return 0;
    if (nbd_decode_request(p, &q) < 0) {
        conn_kill(c, "bad request magic");
        return 0;
    }
    if (q.type == NBD_CMD_WRITE && q.len > NBD_MAX_BLOCK) {
        /* we cannot know where the next request starts without taking
         * the payload, and this one is beyond what we advertised */
        conn_kill(c, "write longer than the maximum block size");
        return 0;
    }
    if (q.type == NBD_CMD_DISC) {
        c->closing = true; /* outstanding requests still get replies */
        stream_hold(&c->s);
        if (!c->inflight)
            stream_close_when_sent(&c->s);
        return NBD_REQ_SIZE;
    }
    if (!c->free_slots) {
        conn_pause(c);
        return 0;
    }
    err = srv.shutting_down || (srv.quiescing && c->writable) ? ESHUTDOWN : check(c, &q);
    r = take_slot(c);
    r->t_ns = hist_now_ns();
    translate(r, &q);
    req_init(r, &owner);
    if (!err && (q.type == NBD_CMD_READ || q.type == NBD_CMD_WRITE ||
                 q.type == NBD_CMD_BLOCK_STATUS)) {
        uint32_t need = q.type == NBD_CMD_BLOCK_STATUS ? 8 * MAX_EXTENTS : q.len;
        r->buf = buf_get(need);
        if (!r->buf) { /* over the memory budget: wait, do not fail */
            req_release(r);
            conn_pause(c);
            return 0;
        }
        r->buf_cap = need;
    }
    if (q.type == NBD_CMD_WRITE && q.len) {
        if (!err)
            c->rd = r; /* submitted once the payload is all in r->buf */
        stream_recv_into(&c->s, err ? NULL : r->buf, q.len);
        if (!err)
            return NBD_REQ_SIZE;
    }
    if (err)
        req_fail(r, err);
    else
        req_submit(r);
    return NBD_REQ_SIZE;
}

void tx_payload(struct conn *c)
{
    struct nm_req *r = c->rd;

    if (!r)
        return; /* a refused write's payload, discarded */
    c->rd = NULL;
    req_submit(r);
}
