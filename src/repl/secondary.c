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
#include <unistd.h>

#include "common.h"
#include "conn.h"
#include "io.h"
#include "repl-int.h"

#define IN_CAP   (256u << 10)
#define ACK_QUEUE 2048        /* frames to the primary not yet sent */
#define MAX_OPS  256
#define MAX_ACCEPTED 8        /* connections that called us */
#define MAX_LINKS (MAX_ACCEPTED + REPL_MAX_PEERS) /* and one per --peer we dial */
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
    struct stream s;          /* s.dead: closed; freed once nothing is in flight */
    bool established;
    bool clean_stop;          /* the primary said it stops cleanly */
    bool frame_waiting;       /* fh and its payload are here; ordering says wait */
    bool buf_waiting;         /* no buffer for a WRITE yet: input waits */
    uint64_t born;
    int dial;                 /* index into dial[], or -1 for accepted */
    struct repl_hdr fh;
    uint8_t small[REPL_HELLO_SIZE];  /* payload prefix: offset (+len), or HELLO */
    uint8_t *data;            /* WRITE data, received straight into it */
    unsigned inflight;
    bool barrier_running;
    struct op ops[MAX_OPS];
    struct op barrier;
    struct repl_hello remote;
    uint64_t rx_bytes, acked_bytes, trimmed_bytes, zeroed_bytes, acked_reqs;
};

static struct {
    struct repl_node self;
    struct listener ls;
    struct link *links[MAX_LINKS];
    char **dial;
    int ndial;
    struct dialer dialer[REPL_MAX_PEERS];
    bool dial_busy[REPL_MAX_PEERS];
    enum disk_state disk;     /* as status shows it; the metadata may say less */
    bool syncing;             /* SyncTarget */
    bool sync_failed;         /* an I/O failed since the sync started */
    bool meta_failed;         /* the metadata cannot be written: no replication */
    uint64_t resync_rx;
} S = { .ls = { .fd = -1 } };

static void link_resume(struct link *l);

/* Closes the link; link_closed says why, once. */
static void link_kill(struct link *l, const char *why) { stream_close(&l->s, why); }

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

static void link_closed(struct stream *s, const char *why)
{
    struct link *l = s->arg;

    if (s->connecting)
        why = NULL; /* nobody there yet: retried quietly with backoff */
    else if (why == STREAM_EOF)
        why = l->established ? NULL : "closed during the handshake";
    if (why)
        log_warn("replication link %s: %s; closing it", s->peer, why);
    else if (l->established)
        log_info("replication link %s: primary disconnected", s->peer);
    if (l->established) {
        if (S.disk == DS_UPTODATE && !l->clean_stop)
            S.disk = DS_OUTDATED; /* the primary goes on without us */
        if (S.syncing)
            log_warn("full sync interrupted; the disk stays Inconsistent until it completes");
        S.syncing = false;
    }
    if (l->dial >= 0) {
        S.dial_busy[l->dial] = false;
        dialer_lost(&S.dialer[l->dial], now_ms());
    }
}

static void out_frame(struct link *l, uint8_t type, uint16_t flags, uint64_t seq, uint32_t epoch,
                      uint32_t aux, const void *pay, uint32_t len)
{
    struct repl_hdr h = { .type = type, .flags = flags, .seq = seq, .epoch = epoch, .aux = aux,
                          .len = len };
    uint8_t b[REPL_HDR + REPL_HELLO_SIZE];

    if (l->s.dead)
        return;
    repl_encode_hdr(b, &h);
    if (len)
        memcpy(b + REPL_HDR, pay, len);
    /* a full queue cannot happen: input stops at half of it (q_limit) */
    if (stream_write(&l->s, b, REPL_HDR + len) < 0)
        link_kill(l, "acknowledgements not read by the primary");
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
    if (l->s.dead || failed < 0)
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
    link_resume(l); /* a frame may have been waiting for this one */
}

static void barrier_done(struct io_cmd *cmd, int res)
{
    struct op *o = (struct op *)((char *)cmd - offsetof(struct op, io));
    struct link *l = o->l;

    o->busy = false;
    l->barrier_running = false;
    l->inflight--;
    if (l->s.dead)
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
    link_resume(l);
}

/* The frames a secondary receives (the table is in frames.c). */

int secondary_on_hello(void *link, const struct repl_hdr *h, const uint8_t *payload)
{
    struct link *l = link;
    const char *why;
    char msg[160];

    if (l->established) {
        link_kill(l, "second HELLO");
        return -1;
    }
    if (repl_decode_hello(payload, h->len, &l->remote, &why) < 0) {
        link_kill(l, why);
        return -1;
    }
    if (l->remote.role != ROLE_PRIMARY) {
        link_kill(l, "peer is not a primary (two secondaries cannot replicate)");
        return -1;
    }
    if (l->remote.data_size > S.self.data_size) {
        snprintf(msg, sizeof msg, "primary's disk (%llu bytes) is larger than ours (%llu bytes)",
                 (unsigned long long)l->remote.data_size, (unsigned long long)S.self.data_size);
        link_kill(l, msg);
        return -1;
    }
    for (int i = 0; i < MAX_LINKS; i++)
        if (S.links[i] && S.links[i] != l && !S.links[i]->s.dead && S.links[i]->established) {
            link_kill(l, "already replicating from a primary");
            return -1;
        }
    /* writes may come now: if we crash we are behind, whatever the primary
     * thought of us; a clean stop of the primary records UpToDate again */
    if (persist(S.disk == DS_UPTODATE ? DS_OUTDATED
                : S.disk == DS_FAILED ? DS_INCONSISTENT : S.disk) < 0)
        return -1; /* persist closed the link */
    l->established = true;
    if (l->dial >= 0 && S.disk != DS_FAILED)
        dialer_reset(&S.dialer[l->dial]); /* a failed disk is retried slowly */
    log_info("replication link %s: connected to primary (protocol %c, %llu bytes)", l->s.peer,
             l->remote.protocol ? l->remote.protocol : '?', (unsigned long long)l->remote.data_size);
    return 1;
}

/* Anything but HELLO: only on an established link, and never once this
 * node cannot record its state. */
static bool may_apply(struct link *l)
{
    if (S.meta_failed) {
        link_kill(l, "the metadata cannot be written");
        return false;
    }
    if (!l->established) {
        link_kill(l, "frame before HELLO");
        return false;
    }
    return true;
}

int secondary_on_ping(void *link, const struct repl_hdr *h, const uint8_t *payload)
{
    struct link *l = link;
    (void)payload;
    if (!may_apply(l))
        return -1;
    out_frame(l, RT_PONG, 0, h->seq, 0, 0, NULL, 0);
    return 1;
}

/* Everything before it on disk (flushed) before it is acknowledged, and
 * nothing after it started before that. */
int secondary_on_barrier(void *link, const struct repl_hdr *h, const uint8_t *payload)
{
    struct link *l = link;
    struct op *o = &l->barrier;
    (void)payload;
    if (!may_apply(l))
        return -1;
    if (l->inflight || l->barrier_running)
        return 0;
    o->l = l;
    o->seq = h->seq;
    o->off = h->epoch;
    o->flags = h->flags;
    o->busy = true;
    o->io = (struct io_cmd){ .op = IO_FSYNC, .fd = S.self.dev->fd, .cb = barrier_done };
    l->barrier_running = true;
    l->inflight++;
    io_queue(S.self.io, &o->io);
    return 1;
}

/* WRITE (its data is in l->data), TRIM, ZERO: concurrently within an epoch,
 * but after every overlapping one still running. */
int secondary_on_data(void *link, const struct repl_hdr *h, const uint8_t *payload)
{
    struct link *l = link;
    const struct disk *d = S.self.dev;
    struct op *o = NULL;

    if (!may_apply(l))
        return -1;
    uint64_t off = get_be64(payload);
    uint32_t len = h->type == RT_WRITE ? h->len - 8 : get_be32(payload + 8);
    if (len == 0 || off > S.self.data_size || len > S.self.data_size - off) {
        link_kill(l, "write outside the disk");
        return -1;
    }
    if (l->barrier_running || overlaps(l, off, len))
        return 0;
    for (int i = 0; i < MAX_OPS && !o; i++)
        if (!l->ops[i].busy)
            o = &l->ops[i];
    if (!o)
        return 0;
    if (l->remote.protocol == 'B')
        out_frame(l, RT_ACK_RECV, 0, h->seq, len, 0, NULL, 0);
    *o = (struct op){ .l = l, .seq = h->seq, .off = off, .len = len, .type = h->type,
                      .flags = h->flags, .busy = true };
    o->io.cb = op_done;
    o->io.off = off;
    o->io.len = len;
    if (h->flags & RF_RESYNC)
        S.resync_rx += len;
    if (h->type == RT_WRITE) {
        o->buf = l->data;
        l->data = NULL;
        o->io.op = IO_WRITE;
        o->io.buf = o->buf;
        o->io.fd = disk_fd_for(d, o->buf, off, len);
        o->io.mode = (h->flags & RF_FUA) ? RWF_DSYNC : 0;
    } else if (h->type == RT_TRIM) {
        /* the primary trimmed exactly this, and there it reads zeroes now:
         * so it must here (op_done falls back to writing them) */
        disk_zero_cmd(d, &o->io, off, len, false);
    } else {
        disk_zero_cmd(d, &o->io, off, len, h->flags & RF_NO_HOLE);
    }
    l->inflight++;
    io_queue(S.self.io, &o->io);
    return 1;
}

/* Starts the frame in l->fh if the ordering rules allow; false = wait. */
static bool apply(struct link *l)
{
    const char *why;
    int r = repl_frame_dispatch(ROLE_SECONDARY, l, &l->fh, l->small, &why);
    if (r < 0 && !l->s.dead)
        link_kill(l, why);
    return r > 0;
}

/* A frame is all here: it starts, or input waits until it can. */
static void frame_ready(struct link *l)
{
    if (apply(l) || l->s.dead)
        return;
    l->frame_waiting = true;
    stream_hold(&l->s); /* reading more would only fill memory: TCP pushes back */
}

/* Something finished that a waiting frame or buffer may have needed. */
static void link_resume(struct link *l)
{
    if (l->s.dead)
        return;
    if (l->frame_waiting) {
        if (!apply(l))
            return;
        l->frame_waiting = false;
    }
    l->buf_waiting = false;
    stream_unhold(&l->s);
}

/* The parser: a header and its small prefix from the staged bytes; WRITE
 * data is received straight into its buffer (link_payload follows). */
static size_t link_data(struct stream *s, uint8_t *p, size_t len)
{
    struct link *l = s->arg;
    struct repl_hdr fh;
    const char *why;
    int r = repl_frame_start(p, len, &fh, &why);

    if (r <= 0) {
        if (r < 0)
            link_kill(l, why);
        return 0;
    }
    uint32_t prefix = fh.type == RT_WRITE ? 8 : fh.len;
    if (len < REPL_HDR + prefix)
        return 0;
    if (fh.type == RT_WRITE) {
        l->data = buf_get(fh.len - 8);
        if (!l->data) { /* over the memory budget: wait for writes to finish */
            l->buf_waiting = true;
            stream_hold(s);
            return 0;
        }
    }
    l->fh = fh;
    memcpy(l->small, p + REPL_HDR, prefix);
    if (fh.type == RT_WRITE) {
        if (!(fh.flags & RF_RESYNC))
            l->rx_bytes += fh.len - 8; /* client write data, as the primary counts */
        stream_recv_into(s, l->data, fh.len - 8);
    } else {
        frame_ready(l);
    }
    return REPL_HDR + prefix;
}

static void link_payload(struct stream *s, void *buf, uint32_t len)
{
    (void)buf, (void)len;
    frame_ready(s->arg);
}

static void link_connected(struct stream *s) { send_hello(s->arg); }

static const struct stream_ops link_ops = { .on_data = link_data, .on_payload = link_payload,
                                            .on_connected = link_connected,
                                            .on_close = link_closed };

/* A dead link with nothing in the io engine. */
static void link_free(int i)
{
    struct link *l = S.links[i];
    if (l->data)
        buf_put(l->data, l->fh.len - 8);
    loop_free_later(l); /* an event for it may still wait in this epoll batch */
    S.links[i] = NULL;
}

static struct link *link_new(int fd, const char *addr, int dial, bool connecting)
{
    int slot = -1, accepted = 0;
    struct link *oldest = NULL;
    for (int i = 0; i < MAX_LINKS; i++) {
        struct link *o = S.links[i];
        if (!o) {
            if (slot < 0)
                slot = i;
        } else if (!o->s.dead && o->dial < 0) {
            accepted++;
            if (!o->established && (!oldest || o->born < oldest->born))
                oldest = o;
        }
    }
    if (dial < 0 && accepted >= MAX_ACCEPTED) {
        slot = -1;
        if (oldest && oldest->inflight == 0) {
            /* full: whoever has been silent in its handshake longest makes
             * room, so idle strangers cannot lock the real primary out */
            link_kill(oldest, "handshake not completed; its place is needed");
            for (int i = 0; i < MAX_LINKS; i++)
                if (S.links[i] == oldest) {
                    link_free(i);
                    slot = i;
                }
        }
    }
    struct link *l = slot < 0 ? NULL : calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return NULL;
    }
    l->dial = dial;
    l->born = now_ms();
    if (stream_init(&l->s, fd, addr, &link_ops, l, IN_CAP, ACK_QUEUE, ACK_QUEUE / 2,
                    connecting) < 0) {
        free(l);
        return NULL;
    }
    S.links[slot] = l;
    return l;
}

static void on_accept(struct listener *ls, int fd, const char *peer)
{
    (void)ls;
    if (S.meta_failed) {
        close(fd); /* nothing may be replicated here until a restart */
        return;
    }
    struct link *l = link_new(fd, peer, -1, false);
    if (!l) {
        log_warn("replication: refusing %s: too many connections", peer);
        return;
    }
    send_hello(l);
}

int repl_secondary_start(const struct repl_node *self, const char *listen, char **dial, int ndial)
{
    repl_role_started(0);
    S.self = *self;
    S.disk = self->disk;
    S.dial = dial;
    S.ndial = ndial > REPL_MAX_PEERS ? REPL_MAX_PEERS : ndial;
    for (int i = 0; i < S.ndial; i++)
        dialer_init(&S.dialer[i]);
    if (listen)
        return listener_open(&S.ls, listen, on_accept, NULL);
    return 0;
}

/* acknowledgements queued this turn go out in secondary_tick */
bool secondary_busy(void) { return stream_any_dirty(); }

void secondary_tick(void)
{
    uint64_t now = now_ms();

    for (int i = 0; i < MAX_LINKS; i++) {
        struct link *l = S.links[i];
        if (!l)
            continue;
        if (!l->s.dead && !l->established && now - l->born > HELLO_TIMEOUT_MS)
            link_kill(l, "no HELLO within 5 s");
        if (l->s.dead && l->inflight == 0)
            link_free(i);
        else if (l->buf_waiting)
            link_resume(l); /* buffers may have come back from elsewhere */
    }
    stream_flush_dirty(); /* one sendmsg per link and turn */
    bool have_primary = false;
    for (int i = 0; i < MAX_LINKS; i++)
        have_primary |= S.links[i] && !S.links[i]->s.dead && S.links[i]->established;
    for (int i = 0; i < S.ndial && !have_primary && !S.meta_failed; i++) {
        if (S.dial_busy[i] || !dialer_due(&S.dialer[i], now))
            continue;
        int fd = dialer_connect(&S.dialer[i], S.dial[i], now);
        if (fd >= 0 && link_new(fd, S.dial[i], i, true))
            S.dial_busy[i] = true;
    }
}

int secondary_status(struct peer_status *out, int max)
{
    int n = 0;
    for (int i = 0; i < MAX_LINKS && n < max; i++) {
        struct link *l = S.links[i];
        if (!l || l->s.dead || !l->established)
            continue;
        struct peer_status *p = &out[n++];
        memset(p, 0, sizeof *p);
        snprintf(p->address, sizeof p->address, "%s", l->s.peer);
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
    if (n == 0 && max > 0 && (S.ndial || S.ls.fd >= 0)) {
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
    listener_close(&S.ls);
}
