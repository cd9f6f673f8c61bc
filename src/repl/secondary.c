/* The secondary: receives the primary's stream and applies it in order.
 *
 * Writes of one epoch run concurrently, except that a write overlapping one
 * still in flight waits for it (sequence order). A BARRIER waits until every
 * earlier write is done, flushes, and is acknowledged before anything after
 * it starts: so the disk always holds a state the primary's disk passed
 * through at some barrier. Waiting stops reading; TCP pushes back.
 *
 * A write, trim, zero or flush that fails here makes the disk Failed: it is
 * recorded Inconsistent before anything further is acknowledged, the error
 * goes back to the primary (which drops us), and only a full sync that runs
 * from start to end without an error makes it UpToDate again. A trim is made
 * to read zeroes, as it does on the primary, so both disks stay equal. */
#include <errno.h>
#include <linux/fs.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "io.h"
#include "repl-int.h"

#define IN_CAP   (256u << 10)
#define OUT_CAP  (64u << 10)
#define MAX_OPS  256
#define MAX_LINKS 8
#define RETRY_MAX_MS 5000
#define HELLO_TIMEOUT_MS 5000 /* a connection must say HELLO within this */
#define ZERO_BUF (1u << 20)

struct link;
enum { OP_MAIN, OP_ZEROOUT, OP_ZERO_FILL, OP_FUA };
struct op {
    struct io_cmd io;
    struct link *l;
    uint64_t seq, off;
    uint32_t len, done;
    uint8_t type, step;
    uint16_t flags;
    uint8_t *buf;
    bool busy;
};

struct link {
    struct handler h;
    int fd;
    bool dead, established, connecting;
    bool clean_stop;          /* the primary said it stops cleanly */
    uint64_t born;
    uint32_t events;          /* what epoll watches now */
    int dial;                 /* index into dial[], or -1 for accepted */
    char addr[128];
    uint8_t *in;
    uint32_t in_start, in_end;
    bool have_frame;          /* fh is decoded; its payload may be arriving */
    struct repl_hdr fh;
    uint8_t small[REPL_HELLO_SIZE];  /* payload prefix: offset (+len), or HELLO */
    uint8_t *data;            /* WRITE data */
    uint32_t pay_have;
    uint8_t out[OUT_CAP];
    uint32_t out_len, out_off;
    unsigned inflight;
    bool barrier_running;
    struct op ops[MAX_OPS];
    struct op barrier;
    struct repl_hello remote;
    uint64_t rx_bytes, acked_bytes, trimmed_bytes, zeroed_bytes, acked_reqs;
};

static struct {
    struct repl_node self;
    int lfd;
    struct handler h_listen;
    struct link *links[MAX_LINKS];
    char **dial;
    int ndial;
    uint64_t next_dial[REPL_MAX_PEERS], backoff[REPL_MAX_PEERS];
    bool dial_busy[REPL_MAX_PEERS];
    enum disk_state disk;     /* as status shows it; the metadata may say less */
    bool syncing;             /* SyncTarget */
    bool sync_failed;         /* an I/O failed since the sync started */
    bool meta_failed;         /* the metadata cannot be written: no replication */
    uint64_t resync_rx;
} S = { .lfd = -1 };

static void link_kill(struct link *l, const char *why);

/* Records the disk's state durably: after a crash the node must come back
 * knowing whether it is behind (Outdated) or half-synced (Inconsistent).
 * If that cannot be written, nothing more may be acknowledged: a crash would
 * bring the node back believing more than is true. So the disk is Failed,
 * every link closes and none is accepted until a restart. Returns 0 or -1. */
static int persist(enum disk_state st)
{
    if (S.meta_failed)
        return -1;
    if (!S.self.meta || S.self.meta->disk_state == (uint32_t)st)
        return 0;
    uint32_t old = S.self.meta->disk_state;
    S.self.meta->disk_state = st;
    int r = meta_save(S.self.meta_fd, S.self.meta);
    if (r == 0)
        return 0;
    S.self.meta->disk_state = old;
    S.meta_failed = true;
    S.disk = DS_FAILED;
    log_err("cannot write the metadata (disk state %s): %s; disk Failed, replication stops "
            "until nbdmirror is restarted", disk_state_name(st), strerror(-r));
    for (int i = 0; i < MAX_LINKS; i++)
        if (S.links[i])
            link_kill(S.links[i], "the metadata cannot be written");
    return -1;
}

/* A replicated write, trim, zero or flush failed: the disk no longer holds
 * what the primary holds. Recorded before anything else is acknowledged. */
static int disk_failed(void)
{
    S.sync_failed = true;
    if (S.disk == DS_FAILED)
        return S.meta_failed ? -1 : 0;
    S.disk = DS_FAILED;
    return persist(DS_INCONSISTENT);
}

enum disk_state secondary_disk(void) { return S.disk; }

static void link_parse(struct link *l);

static void link_kill(struct link *l, const char *why)
{
    if (l->dead)
        return;
    if (why)
        log_warn("replication link %s: %s; closing it", l->addr, why);
    else if (l->established)
        log_info("replication link %s: primary disconnected", l->addr);
    loop_del(l->fd);
    close(l->fd);
    l->dead = true;
    if (l->established) {
        if (S.disk == DS_UPTODATE && !l->clean_stop)
            S.disk = DS_OUTDATED; /* the primary goes on without us */
        if (S.syncing)
            log_warn("full sync interrupted; the disk stays Inconsistent until it completes");
        S.syncing = false;
    }
    if (l->dial >= 0) {
        S.dial_busy[l->dial] = false;
        S.next_dial[l->dial] = now_ms() + S.backoff[l->dial];
    }
}

static void out_frame(struct link *l, uint8_t type, uint16_t flags, uint64_t seq, uint32_t epoch,
                      uint32_t aux, const void *pay, uint32_t len)
{
    struct repl_hdr h = { .type = type, .flags = flags, .seq = seq, .epoch = epoch, .aux = aux,
                          .len = len };
    if (l->dead)
        return;
    if (l->out_off == l->out_len)
        l->out_off = l->out_len = 0;
    if (l->out_len + REPL_HDR + len > OUT_CAP) { /* cannot happen: parsing stops first */
        link_kill(l, "acknowledgements not read by the primary");
        return;
    }
    repl_encode_hdr(l->out + l->out_len, &h);
    if (len)
        memcpy(l->out + l->out_len + REPL_HDR, pay, len);
    l->out_len += REPL_HDR + len;
}

static void send_hello(struct link *l)
{
    /* the disk as it is now, not as it was at start: a node dropped while
     * writes went on is Outdated, a failed one Inconsistent */
    struct repl_hello h = { .data_size = S.self.data_size, .node_id = S.self.node_id,
                            .current_gen = S.self.current_gen, .block_size = 4096,
                            .role = ROLE_SECONDARY,
                            .disk_state = S.disk == DS_FAILED ? DS_INCONSISTENT : S.disk };
    uint8_t p[REPL_HELLO_SIZE];
    repl_encode_hello(p, &h);
    out_frame(l, RT_HELLO, 0, 0, 0, 0, p, sizeof p);
}

/* A whole frame waits for ordering, or the staging buffer is full: reading
 * more would only fill memory, and TCP should push back instead. */
static bool waiting(const struct link *l)
{
    return (l->have_frame && l->pay_have == l->fh.len) || l->in_end - l->in_start == IN_CAP;
}

static void link_flush(struct link *l)
{
    while (!l->dead && l->out_off < l->out_len) {
        ssize_t n = send(l->fd, l->out + l->out_off, l->out_len - l->out_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                link_kill(l, strerror(errno));
            break;
        }
        l->out_off += n;
    }
    uint32_t ev = (waiting(l) ? 0 : EPOLLIN) | (l->out_off < l->out_len ? EPOLLOUT : 0);
    if (!l->dead && ev != l->events) {
        loop_mod(l->fd, ev, &l->h);
        l->events = ev;
    }
}

/* With O_DIRECT, a partial block is a read-modify-write (the page cache, or
 * the zero-out of an unaligned range), so requests sharing a block overlap. */
static bool overlaps(const struct link *l, uint64_t off, uint32_t len)
{
    const struct disk *d = S.self.dev;
    uint64_t g = d->direct ? (d->align > 4096 ? d->align : 4096) : 1;
    uint64_t lo = off / g * g, hi = (off + len + g - 1) / g * g;

    for (int i = 0; i < MAX_OPS; i++) {
        const struct op *o = &l->ops[i];
        if (o->busy && lo < (o->off + o->len + g - 1) / g * g && o->off / g * g < hi)
            return true;
    }
    return false;
}

static _Alignas(4096) const uint8_t zeroes[ZERO_BUF];

/* Writing zeroes by hand: the last resort of a trim or zero write. */
static void zero_fill(struct op *o)
{
    const struct disk *d = S.self.dev;
    uint32_t n = o->len - o->done < ZERO_BUF ? o->len - o->done : ZERO_BUF;
    uint64_t off = o->off + o->done;

    o->step = OP_ZERO_FILL;
    o->io = (struct io_cmd){ .op = IO_WRITE, .fd = disk_fd_for(d, zeroes, off, n),
                             .buf = (void *)zeroes, .len = n, .off = off, .cb = o->io.cb };
    io_queue(S.self.io, &o->io);
}

static void op_done(struct io_cmd *cmd, int res)
{
    struct op *o = (struct op *)((char *)cmd - offsetof(struct op, io));
    struct link *l = o->l;
    const struct disk *d = S.self.dev;

    /* A trim or zero write the disk cannot do one way is done another: the
     * range must read zeroes, as on the primary (a zero-out on a device,
     * then plain writes of zeroes). */
    if (res < 0 && o->type != RT_WRITE && (o->step == OP_MAIN || o->step == OP_ZEROOUT) &&
        (res == -EOPNOTSUPP || res == -EINVAL)) {
        if (d->is_blockdev && o->step == OP_MAIN) {
            disk_zero_cmd(d, &o->io, o->off, o->len, true);
            o->io.cb = op_done;
            o->step = OP_ZEROOUT;
            io_queue(S.self.io, &o->io);
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
        io_queue(S.self.io, &o->io);
        return;
    }
    static struct ratelimit rl;
    if (res < 0 && log_ratelimit(&rl))
        log_err("replicated %s of %u bytes at %llu failed: %s",
                o->type == RT_WRITE ? "write" : o->type == RT_TRIM ? "trim" : "zero write",
                o->len, (unsigned long long)o->off, strerror(-res));
    int failed = res < 0 ? disk_failed() : 0; /* recorded before the ack goes */
    o->busy = false;
    if (o->buf) {
        buf_put(o->buf, o->len);
        o->buf = NULL;
    }
    l->inflight--;
    if (l->dead || failed < 0)
        return; /* the link is freed by secondary_tick once nothing is in flight */
    /* say what is acknowledged, so the primary counts data and ranges apart */
    out_frame(l, RT_ACK_WRITE, o->type << 8 | (o->flags & RF_RESYNC), o->seq, o->len,
              res < 0 ? -res : 0, NULL, 0);
    if (!(o->flags & RF_RESYNC)) {
        l->acked_reqs++;
        if (o->type == RT_WRITE)
            l->acked_bytes += o->len;
        else if (o->type == RT_TRIM)
            l->trimmed_bytes += o->len;
        else
            l->zeroed_bytes += o->len;
    }
    link_parse(l); /* a frame may have been waiting for this one */
}

static void barrier_done(struct io_cmd *cmd, int res)
{
    struct op *o = (struct op *)((char *)cmd - offsetof(struct op, io));
    struct link *l = o->l;

    o->busy = false;
    l->barrier_running = false;
    l->inflight--;
    if (l->dead)
        return;
    if (res < 0) {
        log_err("flush for replication barrier %u failed: %s", (unsigned)o->off, strerror(-res));
        if (disk_failed() < 0)
            return;
    } else if (o->flags & RF_SYNC_START) {
        if (persist(DS_INCONSISTENT) < 0) /* chunks land in any order from here on */
            return;
        S.disk = DS_INCONSISTENT;
        S.syncing = true;
        S.sync_failed = false; /* this sync may heal a failed disk */
        S.resync_rx = 0;
        log_info("full sync from the primary starts (SyncTarget)");
    } else if (o->flags & RF_SYNC_DONE) {
        S.syncing = false;
        if (S.sync_failed) {
            /* some of it never reached the disk: still Inconsistent */
            log_err("full sync ended, but writes failed here during it: disk stays Inconsistent");
            res = -EIO;
        } else {
            if (persist(DS_OUTDATED) < 0) /* consistent; Outdated on disk while connected */
                return;
            S.disk = DS_UPTODATE;
            log_info("full sync done (%llu MiB); disk UpToDate",
                     (unsigned long long)(S.resync_rx >> 20));
        }
    } else if ((o->flags & RF_CLEAN) && S.disk == DS_UPTODATE) {
        if (persist(DS_UPTODATE) < 0) /* the primary stopped with everything here */
            return;
        l->clean_stop = true;
        log_info("primary stopping cleanly: disk UpToDate");
    } else if (o->flags & RF_CLEAN) {
        log_warn("primary stopping cleanly, but this disk is %s: it stays so",
                 disk_state_name(S.disk));
    }
    out_frame(l, RT_BARRIER_ACK, 0, o->seq, (uint32_t)o->off, res < 0 ? -res : 0, NULL, 0);
    link_parse(l);
}

static bool hello(struct link *l)
{
    const char *why;
    char msg[160];

    if (repl_decode_hello(l->small, l->fh.len, &l->remote, &why) < 0) {
        link_kill(l, why);
        return false;
    }
    if (l->remote.role != ROLE_PRIMARY) {
        link_kill(l, "peer is not a primary (two secondaries cannot replicate)");
        return false;
    }
    if (l->remote.data_size > S.self.data_size) {
        snprintf(msg, sizeof msg, "primary's disk (%llu bytes) is larger than ours (%llu bytes)",
                 (unsigned long long)l->remote.data_size, (unsigned long long)S.self.data_size);
        link_kill(l, msg);
        return false;
    }
    for (int i = 0; i < MAX_LINKS; i++)
        if (S.links[i] && S.links[i] != l && !S.links[i]->dead && S.links[i]->established) {
            link_kill(l, "already replicating from a primary");
            return false;
        }
    /* writes may come now: if we crash we are behind, whatever the primary
     * thought of us; a clean stop of the primary records UpToDate again */
    if (persist(S.disk == DS_UPTODATE ? DS_OUTDATED
                : S.disk == DS_FAILED ? DS_INCONSISTENT : S.disk) < 0)
        return false; /* persist closed the link */
    l->established = true;
    if (l->dial >= 0 && S.disk != DS_FAILED)
        S.backoff[l->dial] = 100; /* a failed disk is retried slowly */
    log_info("replication link %s: connected to primary (protocol %c, %llu bytes)", l->addr,
             l->remote.protocol ? l->remote.protocol : '?', (unsigned long long)l->remote.data_size);
    return true;
}

/* Starts the frame in l->fh if the ordering rules allow; false = wait. */
static bool apply(struct link *l)
{
    const struct disk *d = S.self.dev;
    struct op *o = NULL;

    if (l->fh.type == RT_HELLO)
        return l->established ? (link_kill(l, "second HELLO"), false) : hello(l);
    if (S.meta_failed) {
        link_kill(l, "the metadata cannot be written");
        return false;
    }
    if (!l->established) {
        link_kill(l, "frame before HELLO");
        return false;
    }
    switch (l->fh.type) {
    case RT_PING:
        out_frame(l, RT_PONG, 0, l->fh.seq, 0, 0, NULL, 0);
        return true;
    case RT_BARRIER:
        if (l->inflight || l->barrier_running)
            return false;
        o = &l->barrier;
        o->l = l;
        o->seq = l->fh.seq;
        o->off = l->fh.epoch;
        o->flags = l->fh.flags;
        o->busy = true;
        o->io = (struct io_cmd){ .op = IO_FSYNC, .fd = d->fd, .cb = barrier_done };
        l->barrier_running = true;
        l->inflight++;
        io_queue(S.self.io, &o->io);
        return true;
    case RT_WRITE:
    case RT_TRIM:
    case RT_ZERO:
        break;
    default:
        link_kill(l, "unexpected frame type from a primary");
        return false;
    }
    uint64_t off = get_be64(l->small);
    uint32_t len = l->fh.type == RT_WRITE ? l->fh.len - 8 : get_be32(l->small + 8);
    if (len == 0 || off > S.self.data_size || len > S.self.data_size - off) {
        link_kill(l, "write outside the disk");
        return false;
    }
    if (l->barrier_running || overlaps(l, off, len))
        return false;
    for (int i = 0; i < MAX_OPS && !o; i++)
        if (!l->ops[i].busy)
            o = &l->ops[i];
    if (!o)
        return false;
    if (l->remote.protocol == 'B')
        out_frame(l, RT_ACK_RECV, 0, l->fh.seq, len, 0, NULL, 0);
    *o = (struct op){ .l = l, .seq = l->fh.seq, .off = off, .len = len, .type = l->fh.type,
                      .flags = l->fh.flags, .busy = true };
    o->io.cb = op_done;
    o->io.off = off;
    o->io.len = len;
    if (l->fh.flags & RF_RESYNC)
        S.resync_rx += len;
    if (l->fh.type == RT_WRITE) {
        o->buf = l->data;
        l->data = NULL;
        o->io.op = IO_WRITE;
        o->io.buf = o->buf;
        o->io.fd = disk_fd_for(d, o->buf, off, len);
        o->io.mode = (l->fh.flags & RF_FUA) ? RWF_DSYNC : 0;
    } else if (l->fh.type == RT_TRIM) {
        /* the primary trimmed exactly this, and there it reads zeroes now:
         * so it must here (op_done falls back to writing them) */
        disk_zero_cmd(d, &o->io, off, len, false);
    } else {
        disk_zero_cmd(d, &o->io, off, len, l->fh.flags & RF_NO_HOLE);
    }
    l->inflight++;
    io_queue(S.self.io, &o->io);
    return true;
}

/* Moves payload bytes from the staging buffer into the frame. */
static void take_staged(struct link *l)
{
    uint32_t avail = l->in_end - l->in_start, want, n;
    uint32_t prefix = l->fh.type == RT_WRITE ? 8 : l->fh.len;

    while (avail && l->pay_have < l->fh.len) {
        if (l->pay_have < prefix) {
            want = prefix - l->pay_have;
            n = avail < want ? avail : want;
            memcpy(l->small + l->pay_have, l->in + l->in_start, n);
        } else {
            want = l->fh.len - l->pay_have;
            n = avail < want ? avail : want;
            memcpy(l->data + (l->pay_have - 8), l->in + l->in_start, n);
        }
        l->pay_have += n;
        l->in_start += n;
        avail -= n;
    }
}

static void link_parse(struct link *l)
{
    const char *why;

    while (!l->dead && l->out_len - l->out_off < OUT_CAP / 2) {
        if (!l->have_frame) {
            if (l->in_end - l->in_start < REPL_HDR)
                break;
            if (repl_decode_hdr(l->in + l->in_start, &l->fh, &why) < 0) {
                link_kill(l, why);
                return;
            }
            if (l->fh.type == RT_WRITE) {
                l->data = buf_get(l->fh.len - 8);
                if (!l->data)
                    break; /* over the memory budget: wait for writes to finish */
            }
            l->in_start += REPL_HDR;
            if (l->fh.type == RT_WRITE && !(l->fh.flags & RF_RESYNC))
                l->rx_bytes += l->fh.len - 8; /* client write data, as the primary counts */
            l->have_frame = true;
            l->pay_have = 0;
        }
        take_staged(l);
        if (l->pay_have < l->fh.len)
            break; /* the rest is still on its way */
        if (!apply(l))
            break; /* ordering says wait; completions call us again */
        l->have_frame = false;
    }
}

static void on_link(struct handler *h, uint32_t ev)
{
    struct link *l = (struct link *)h;

    if (l->dead)
        return;
    if (l->connecting) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            link_kill(l, NULL);
            return;
        }
        l->connecting = false;
        send_hello(l);
    }
    if (ev & EPOLLOUT)
        link_flush(l);
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    for (int round = 0; round < 8 && !l->dead && !waiting(l); round++) {
        ssize_t n;
        if (l->have_frame && l->fh.type == RT_WRITE && l->pay_have >= 8 &&
            l->in_start == l->in_end) {
            /* a large payload goes straight into its buffer */
            n = recv(l->fd, l->data + (l->pay_have - 8), l->fh.len - l->pay_have, MSG_DONTWAIT);
            if (n > 0)
                l->pay_have += n;
        } else {
            if (l->in_start > 0) {
                memmove(l->in, l->in + l->in_start, l->in_end - l->in_start);
                l->in_end -= l->in_start;
                l->in_start = 0;
            }
            if (l->in_end == IN_CAP)
                break; /* stalled: the staging buffer is full */
            n = recv(l->fd, l->in + l->in_end, IN_CAP - l->in_end, MSG_DONTWAIT);
            if (n > 0)
                l->in_end += n;
        }
        if (n == 0) {
            link_kill(l, l->established ? NULL : "closed during the handshake");
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                link_kill(l, strerror(errno));
            break;
        }
        link_parse(l);
    }
    if (waiting(l))
        link_flush(l); /* stop polling for input until the frame goes */
}

/* A dead link with nothing in the io engine. */
static void link_free(int i)
{
    struct link *l = S.links[i];
    if (l->data)
        buf_put(l->data, l->fh.len - 8);
    free(l->in);
    free(l);
    S.links[i] = NULL;
}

static struct link *link_new(int fd, const char *addr, int dial)
{
    int slot = -1;
    struct link *oldest = NULL;
    for (int i = 0; i < MAX_LINKS && slot < 0; i++) {
        if (!S.links[i])
            slot = i;
        else if (!S.links[i]->dead && !S.links[i]->established &&
                 (!oldest || S.links[i]->born < oldest->born))
            oldest = S.links[i];
    }
    if (slot < 0 && oldest && oldest->inflight == 0) {
        /* full: whoever has been silent in its handshake longest makes
         * room, so idle strangers cannot lock the real primary out */
        link_kill(oldest, "handshake not completed; its place is needed");
        for (int i = 0; i < MAX_LINKS; i++)
            if (S.links[i] == oldest) {
                link_free(i);
                slot = i;
            }
    }
    struct link *l = slot < 0 ? NULL : calloc(1, sizeof *l);
    if (!l || !(l->in = malloc(IN_CAP))) {
        free(l);
        close(fd);
        return NULL;
    }
    l->fd = fd;
    l->dial = dial;
    l->born = now_ms();
    l->h.fn = on_link;
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    l->events = EPOLLIN | EPOLLOUT;
    if (loop_add(fd, l->events, &l->h) < 0) {
        free(l->in);
        free(l);
        close(fd);
        return NULL;
    }
    S.links[slot] = l;
    return l;
}

static void on_listen(struct handler *h, uint32_t ev)
{
    (void)h, (void)ev;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char addr[128];
        int fd = accept4(S.lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (S.meta_failed) {
            close(fd); /* nothing may be replicated here until a restart */
            continue;
        }
        net_peer_name(&ss, addr, sizeof addr);
        struct link *l = link_new(fd, addr, -1);
        if (!l) {
            log_warn("replication: refusing %s: too many connections", addr);
            continue;
        }
        send_hello(l);
    }
}

int repl_secondary_start(const struct repl_node *self, const char *listen, char **dial, int ndial)
{
    repl_role_started(0);
    S.self = *self;
    S.disk = self->disk;
    S.dial = dial;
    S.ndial = ndial > REPL_MAX_PEERS ? REPL_MAX_PEERS : ndial;
    for (int i = 0; i < S.ndial; i++)
        S.backoff[i] = 100;
    if (listen) {
        S.lfd = net_listen(listen);
        if (S.lfd < 0)
            return S.lfd;
        S.h_listen.fn = on_listen;
        loop_add(S.lfd, EPOLLIN, &S.h_listen);
    }
    return 0;
}

bool secondary_busy(void)
{
    for (int i = 0; i < MAX_LINKS; i++)
        if (S.links[i] && !S.links[i]->dead && S.links[i]->out_off < S.links[i]->out_len)
            return true;
    return false;
}

void secondary_tick(void)
{
    uint64_t now = now_ms();

    for (int i = 0; i < MAX_LINKS; i++) {
        struct link *l = S.links[i];
        if (!l)
            continue;
        if (!l->dead && !l->established && now - l->born > HELLO_TIMEOUT_MS)
            link_kill(l, "no HELLO within 5 s");
        if (!l->dead)
            link_flush(l);
        if (l->dead && l->inflight == 0)
            link_free(i);
    }
    bool have_primary = false;
    for (int i = 0; i < MAX_LINKS; i++)
        have_primary |= S.links[i] && !S.links[i]->dead && S.links[i]->established;
    for (int i = 0; i < S.ndial && !have_primary && !S.meta_failed; i++) {
        if (S.dial_busy[i] || now < S.next_dial[i])
            continue;
        int fd = net_connect(S.dial[i]);
        S.next_dial[i] = now + S.backoff[i];
        S.backoff[i] = S.backoff[i] * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : S.backoff[i] * 2;
        if (fd < 0)
            continue;
        struct link *l = link_new(fd, S.dial[i], i);
        if (l) {
            l->connecting = true;
            S.dial_busy[i] = true;
        }
    }
}

int secondary_status(struct peer_status *out, int max)
{
    int n = 0;
    for (int i = 0; i < MAX_LINKS && n < max; i++) {
        struct link *l = S.links[i];
        if (!l || l->dead || !l->established)
            continue;
        struct peer_status *p = &out[n++];
        memset(p, 0, sizeof *p);
        snprintf(p->address, sizeof p->address, "%s", l->addr);
        p->connection = "Connected";
        p->replication = S.syncing ? "SyncTarget" : "Established";
        p->resync_percent = -1;
        if (S.syncing && l->remote.data_size) {
            p->resync_sent_bytes = S.resync_rx;
            p->resync_percent = (int)(S.resync_rx * 100 / l->remote.data_size);
            p->out_of_sync_bytes = l->remote.data_size - S.resync_rx;
        }
        p->peer_disk = "UpToDate"; /* a primary's disk */
        p->protocol = l->remote.protocol;
        p->received_bytes = l->rx_bytes;
        p->acked_bytes = l->acked_bytes;
        p->trimmed_bytes = l->trimmed_bytes;
        p->zeroed_bytes = l->zeroed_bytes;
        p->acked_requests = l->acked_reqs;
        p->inflight = l->inflight;
    }
    if (n == 0 && max > 0 && (S.ndial || S.lfd >= 0)) {
        struct peer_status *p = &out[n++];
        memset(p, 0, sizeof *p);
        snprintf(p->address, sizeof p->address, "%s", S.ndial ? S.dial[0] : "(waiting for a primary)");
        p->connection = S.ndial ? "Connecting" : "StandAlone";
        p->replication = "Off";
        p->resync_percent = -1;
        p->peer_disk = "Unknown";
    }
    return n;
}

void secondary_stop(void)
{
    for (int i = 0; i < MAX_LINKS; i++)
        if (S.links[i])
            link_kill(S.links[i], NULL);
    if (S.lfd >= 0) {
        loop_del(S.lfd);
        close(S.lfd);
        S.lfd = -1;
    }
}
