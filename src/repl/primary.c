/* The primary's stream: every write, trim and zero write goes, in sequence
 * order, to every connected peer. Each peer's link is a stream of the
 * connection layer (src/conn), whose send queue holds frames that point at
 * the request's own buffer (no copy: the kernel copies it into the socket),
 * gathered into one sendmsg per turn. The reply to the client waits
 * per protocol: A for nothing more than the queueing, B for every connected
 * peer's ACK_RECV, C for every connected peer's ACK_WRITE (and for FLUSH,
 * its BARRIER_ACK). A peer that drops or stops answering within the timeout
 * leaves the wait sets and is marked Outdated; it is redialled with backoff.
 * A peer whose disk fails a replicated write or flush is dropped the same
 * way and marked Failed: it is synced again when it comes back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "conn.h"
#include "repl-int.h"
#include "request.h"
#include "resync.h"

#define SQ_MAX      8192          /* frames queued per peer */
/* A peer further behind than this is dropped (one maximum request always
 * fits an empty queue). 64 requests per client connection hold their
 * buffers until every queue has sent them, so a larger limit would let a
 * slow peer hold the client back instead of being dropped. */
#define SQ_BYTES_MAX (64u << 20)
#define TABLE       (1u << 17)    /* requests waiting for acks, by seq */
#define HELLO_TIMEOUT_MS 5000     /* a connection must say HELLO within this */
#define IN_CAP      (16u << 10)   /* acks, PONGs and a HELLO come back */

enum pconn { PC_IDLE, PC_CONNECTING, PC_HELLO, PC_UP };

struct peer {
    int idx;
    bool used, dial;
    char addr[128];
    struct stream *s;            /* the link; allocated per link, as an event
                                    for a closed one may still be on its way */
    enum pconn st;
    struct dialer dialer;        /* when to dial again */
    uint64_t born;
    struct repl_hello remote;
    enum disk_state peer_disk;
    bool missed;                 /* dropped while writes went on: needs a full sync */
    bool failed;                 /* its disk failed: no quick redial until a sync works */
    char last_error[128];
    unsigned waiting;            /* requests whose reply waits for this peer */
    struct resync rs;            /* SyncSource while rs.active */
    uint64_t clean_seq;          /* the RF_CLEAN barrier of a clean stop */
    bool clean_acked;
    /* status: client write data bytes, trim and zero ranges, requests */
    uint64_t sent_bytes, acked_bytes, trimmed_bytes, zeroed_bytes, sent_reqs, acked_reqs;
    uint64_t unacked;            /* frames sent that await their ACK_WRITE */
};

static struct {
    struct repl_node self;
    struct repl_primary_config cfg;
    struct peer peers[REPL_MAX_PEERS];
    struct listener ls;
    uint64_t seq;
    uint32_t epoch;
    struct nm_req *table[TABLE];
    struct nm_req *held, *held_tail; /* writes waiting for a sync chunk to pass */
} P = { .ls = { .fd = -1 } };

static const char *conn_name(const struct peer *p)
{
    return p->st == PC_UP ? "Connected" : p->dial ? "Connecting" : "StandAlone";
}

static void send_hello(struct peer *p);
static void sync_abort(struct peer *p);
static void sync_start(struct peer *p);
static bool queue_chunk(void *peer, struct resync_chunk *c);
static uint64_t queue_done(void *peer);
static void sync_failed(void *peer, const char *why);

/* ---- send queue (the stream's: one item a frame) ---- */

static void unqueue(struct peer *p, struct nm_req *r)
{
    if (r)
        req_event(r, REQ_EV_UNQUEUED, p->idx, 0);
}

/* A client write, trim or zero left the socket (or never will). */
static void req_frame_done(struct stream *s, void *arg, bool sent)
{
    struct peer *p = s->arg;
    struct nm_req *r = arg;

    if (sent) {
        p->unacked++; /* each is answered by one ACK_WRITE */
        p->sent_reqs++;
        if (r->op == REQ_WRITE)
            p->sent_bytes += r->len; /* client write data only */
    }
    unqueue(p, r);
}

/* A full-sync chunk left the socket (or never will). */
static void chunk_frame_done(struct stream *s, void *arg, bool sent)
{
    struct peer *p = s->arg;

    if (sent)
        p->unacked++;
    resync_chunk_done(arg, sent);
}

/* Queues a frame: header and extra bytes inline, then data_len bytes of
 * data (not copied). 0, or -ENOBUFS when the ring is full. */
static int frame(struct peer *p, uint8_t type, uint16_t flags, uint64_t seq, uint32_t epoch,
                 const uint8_t *extra, uint8_t extra_len, const void *data, uint32_t data_len,
                 stream_done_fn done, void *arg)
{
    struct repl_hdr h = { .type = type, .flags = flags, .seq = seq, .epoch = epoch,
                          .len = extra_len + data_len };
    uint8_t hdr[REPL_HDR + 12];

    repl_encode_hdr(hdr, &h);
    if (extra_len)
        memcpy(hdr + REPL_HDR, extra, extra_len);
    return stream_queue(p->s, hdr, REPL_HDR + extra_len, data, data_len, done, arg);
}

/* The request no longer waits for this peer: it acknowledged, or is gone. */
static void stop_waiting(struct peer *p, struct nm_req *r, bool acked)
{
    uint32_t bit = 1u << p->idx;
    if (!(r->wait_peers & bit))
        return;
    p->waiting--;
    if (!(r->wait_peers & ~bit) && P.table[r->seq % TABLE] == r)
        P.table[r->seq % TABLE] = NULL; /* before the event: r may be done after it */
    req_event(r, acked ? REQ_EV_PEER_ACKED : REQ_EV_PEER_LOST, p->idx, 0);
}

static void peer_drop(struct peer *p, const char *why)
{
    struct stream *s = p->s;

    if (p->st == PC_IDLE)
        return;
    if (p->st == PC_UP)
        log_warn("peer %s: %s; it is Outdated until a full sync", p->addr, why ? why : "gone");
    else if (why)
        log_info("peer %s: %s", p->addr, why);
    if (p->st == PC_UP) {
        p->missed = true;
        p->peer_disk = DS_OUTDATED;
    }
    p->st = PC_IDLE;
    p->s = NULL; /* its on_close only frees it now */
    /* nothing queued for it will be sent (each frame's done runs, unsent);
     * nobody waits for it any more */
    stream_close(s, why);
    p->unacked = 0; /* whatever was in flight there is lost with the link */
    for (unsigned i = 0; i < TABLE && p->waiting; i++)
        if (P.table[i])
            stop_waiting(p, P.table[i], false);
    p->waiting = 0;
    sync_abort(p);
    dialer_lost(&p->dialer, now_ms());
    if (!p->dial)
        p->used = false; /* it called us: it will call again */
}

/* Queues a frame or drops the peer: a full ring (SQ_MAX frames) means it
 * is too far behind. */
static bool frame_or_drop(struct peer *p, uint8_t type, uint16_t flags, uint64_t seq,
                          const uint8_t *extra, uint8_t extra_len, const void *data,
                          uint32_t data_len, stream_done_fn done, void *arg)
{
    if (frame(p, type, flags, seq, P.epoch, extra, extra_len, data, data_len, done, arg) < 0) {
        peer_drop(p, "too far behind (send queue full)");
        return false;
    }
    return true;
}

/* ---- the stream ---- */

static bool queue_to(struct peer *p, struct nm_req *r, uint8_t type, uint16_t flags,
                     const uint8_t *extra, uint8_t extra_len, uint32_t data_len)
{
    /* too far behind, too: SQ_BYTES_MAX bytes queued (one maximum
     * request always fits an empty queue) */
    uint64_t queued = stream_queued_bytes(p->s);
    if (queued && queued + data_len > SQ_BYTES_MAX) {
        peer_drop(p, "too far behind (send queue full)");
        return false;
    }
    if (!frame_or_drop(p, type, flags, r->seq, extra, extra_len, r->buf, data_len,
                       req_frame_done, r))
        return false;
    req_hold_buf(r, p->idx); /* until req_frame_done */
    return true;
}

static void barrier_to(struct peer *p, struct nm_req *r)
{
    frame_or_drop(p, RT_BARRIER, 0, r ? r->seq : ++P.seq, NULL, 0, NULL, 0, NULL, NULL);
}

static void stream_submit(struct nm_req *r)
{
    uint8_t extra[12];
    uint8_t type, elen = 8;
    uint16_t flags = 0;
    uint32_t data_len = 0;
    bool barrier = r->op == REQ_FLUSH;

    r->seq = ++P.seq;
    r->epoch = P.epoch;
    put_be64(extra, r->stream_off);
    switch (r->op) {
    case REQ_WRITE:
        type = RT_WRITE;
        data_len = r->len;
        break;
    case REQ_TRIM:
        type = RT_TRIM;
        put_be32(extra + 8, r->stream_len);
        elen = 12;
        break;
    case REQ_ZERO:
        type = RT_ZERO;
        flags = (r->flags & REQ_F_NO_HOLE) ? RF_NO_HOLE : 0;
        put_be32(extra + 8, r->stream_len);
        elen = 12;
        break;
    case REQ_FLUSH:
        type = RT_BARRIER;
        break;
    default:
        return;
    }
    if (type != RT_BARRIER && (r->flags & REQ_F_FUA)) {
        flags |= RF_FUA;  /* durable on the peer before it acknowledges */
        barrier = true;   /* and it orders like a flush */
    }
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &P.peers[i];
        if (!p->used || p->st != PC_UP)
            continue;
        if (type == RT_BARRIER)
            barrier_to(p, r);
        else if (!queue_to(p, r, type, flags, extra, elen, data_len))
            continue;
        else if (barrier)
            barrier_to(p, NULL);
        if (p->st != PC_UP)
            continue;
        /* what the reply waits for from this peer */
        if (P.cfg.protocol == 'C' || (P.cfg.protocol == 'B' && type != RT_BARRIER)) {
            req_wait_peer(r, p->idx);
            p->waiting++;
        }
    }
    if (barrier)
        P.epoch++;
    struct nm_req *old = P.table[r->seq % TABLE];
    if (r->wait_peers && old && old->wait_peers) {
        /* still waiting TABLE sequence numbers later: whoever it waits for
         * is stuck. Drop them (they resync) rather than wait for ever. */
        uint32_t stuck = old->wait_peers;
        for (int i = 0; i < REPL_MAX_PEERS; i++)
            if (stuck & (1u << i)) {
                peer_drop(&P.peers[i], "acknowledgement overdue");
                stop_waiting(&P.peers[i], r, false);
            }
    }
    if (r->wait_peers)
        P.table[r->seq % TABLE] = r;
    if (type != RT_BARRIER)
        resync_write_begin(r->offset, r->len); /* a sync chunk here waits for it */
}

static void local_failed(struct nm_req *r);

static void stream_local_done(struct nm_req *r, int err)
{
    if (r->op == REQ_FLUSH)
        return; /* nothing was written on the peers that this disk lacks */
    resync_write_end(r->offset, r->len);
    if (err)
        local_failed(r);
}

static bool stream_may_start(struct nm_req *r)
{
    if (!req_is_write(r) || !resync_locked(r->offset, r->len))
        return true;
    r->next = NULL; /* parked until the chunk is queued */
    if (P.held)
        P.held_tail->next = r;
    else
        P.held = r;
    P.held_tail = r;
    return false;
}

/* ---- acknowledgements ---- */

/* The peer's disk failed a write or a flush: it no longer holds what we
 * hold. It leaves every wait set now (as on a timeout: the client's request
 * succeeds on our disk alone), and is shown Failed until it comes back and a
 * full sync succeeds; meanwhile it is redialled slowly. */
static void peer_failed(struct peer *p, const char *what, int err)
{
    snprintf(p->last_error, sizeof p->last_error, "its disk failed a %s: %s", what, strerror(err));
    log_err("peer %s: %s; dropping it from the replication set until a full sync", p->addr,
            p->last_error);
    peer_drop(p, NULL);
    p->failed = p->missed = true;
    p->peer_disk = DS_FAILED;
    dialer_slow(&p->dialer, now_ms());
}

static void on_ack(struct peer *p, const struct repl_hdr *h)
{
    struct nm_req *r = P.table[h->seq % TABLE];

    if (h->aux && (h->type == RT_ACK_WRITE || h->type == RT_BARRIER_ACK)) {
        peer_failed(p, h->type == RT_BARRIER_ACK ? "flush" : "write", h->aux);
        return;
    }
    if (h->type == RT_ACK_WRITE) {
        /* acks say what they confirm: type in the high byte of flags */
        uint8_t what = h->flags >> 8;
        if (p->unacked)
            p->unacked--;
        if (!(h->flags & RF_RESYNC)) {
            p->acked_reqs++;
            if (what == RT_WRITE)
                p->acked_bytes += h->epoch; /* byte count */
            else if (what == RT_TRIM)
                p->trimmed_bytes += h->epoch;
            else if (what == RT_ZERO)
                p->zeroed_bytes += h->epoch;
        }
    }
    if (h->type == RT_BARRIER_ACK && p->rs.active && h->seq == p->rs.done_seq) {
        uint64_t ms = now_ms() - p->rs.start_ms + 1;
        resync_abort(&p->rs); /* finished: nothing is locked any more */
        p->missed = p->failed = false;
        dialer_reset(&p->dialer);
        p->peer_disk = DS_UPTODATE;
        log_info("peer %s: full sync done, %llu MiB in %.1f s (%.0f MiB/s); UpToDate", p->addr,
                 (unsigned long long)(p->rs.sent >> 20), ms / 1000.0,
                 (p->rs.sent >> 20) * 1000.0 / ms);
    }
    if (h->type == RT_BARRIER_ACK && p->clean_seq && h->seq == p->clean_seq)
        p->clean_acked = true;
    if (!r || r->seq != h->seq)
        return; /* protocol A, or an ack nobody waits for */
    bool counts = P.cfg.protocol == 'B' ? h->type == RT_ACK_RECV
                                        : h->type == RT_ACK_WRITE || h->type == RT_BARRIER_ACK;
    if (counts)
        stop_waiting(p, r, true);
}

static void peer_hello(struct peer *p, const struct repl_hdr *h, const uint8_t *pay)
{
    const char *why;
    char msg[200];

    if (h->type != RT_HELLO || repl_decode_hello(pay, h->len, &p->remote, &why) < 0) {
        peer_drop(p, h->type != RT_HELLO ? "frame before HELLO" : why);
        return;
    }
    if (p->remote.role != ROLE_SECONDARY) {
        peer_drop(p, "peer is a primary too (split roles first)");
        return;
    }
    if (p->remote.data_size < P.self.data_size) {
        snprintf(msg, sizeof msg, "refused: its disk (%llu bytes) is smaller than ours (%llu bytes)",
                 (unsigned long long)p->remote.data_size, (unsigned long long)P.self.data_size);
        log_err("peer %s: %s", p->addr, msg);
        peer_drop(p, NULL);
        return;
    }
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *o = &P.peers[i];
        if (o != p && o->used && o->st == PC_UP && o->remote.node_id == p->remote.node_id) {
            peer_drop(p, "already connected to this node");
            return;
        }
    }
    p->st = PC_UP;
    if (!p->failed)
        dialer_reset(&p->dialer); /* a failed disk is redialled slowly */
    p->peer_disk = p->missed ? DS_OUTDATED : (enum disk_state)p->remote.disk_state;
    log_info("peer %s: connected (protocol %c, its disk %s%s)", p->addr, P.cfg.protocol,
             disk_state_name(p->peer_disk), p->missed ? ": it missed writes" : "");
    if (p->peer_disk != DS_UPTODATE)
        sync_start(p);
}

/* One frame from a secondary: the handshake, then acknowledgements. */
static void peer_frame(struct peer *p, const struct repl_hdr *h, const uint8_t *pay)
{
    const char *why;
    if (repl_frame_dispatch(ROLE_PRIMARY, p, h, pay, &why) < 0 && p->st != PC_IDLE)
        peer_drop(p, why); /* a frame no secondary may send */
}

/* The stream's parser: one whole frame from the staged bytes. */
static size_t peer_data(struct stream *s, uint8_t *b, size_t len)
{
    struct peer *p = s->arg;
    struct repl_hdr h;
    const char *why = "unexpected frame from a secondary";
    int r = repl_frame_start(b, len, &h, &why);

    if (r < 0 || (r > 0 && REPL_HDR + h.len > IN_CAP)) {
        peer_drop(p, why);
        return 0;
    }
    if (r == 0 || len < REPL_HDR + h.len)
        return 0;
    peer_frame(p, &h, b + REPL_HDR); /* if it drops p, b is gone: the layer stops */
    return REPL_HDR + h.len;
}

static void send_hello(struct peer *p)
{
    struct repl_hello hi = { .data_size = P.self.data_size, .node_id = P.self.node_id,
                             .current_gen = P.self.current_gen, .block_size = 4096,
                             .role = ROLE_PRIMARY, .protocol = P.cfg.protocol,
                             .disk_state = P.self.disk };
    struct repl_hdr h = { .type = RT_HELLO, .len = REPL_HELLO_SIZE };
    uint8_t buf[REPL_HDR + REPL_HELLO_SIZE];

    repl_encode_hdr(buf, &h);
    repl_encode_hello(buf + REPL_HDR, &hi);
    if (stream_write(p->s, buf, sizeof buf) < 0)
        peer_drop(p, "cannot send HELLO");
}

static void peer_connected(struct stream *s)
{
    struct peer *p = s->arg;

    p->st = PC_HELLO;
    send_hello(p);
}

static void peer_closed(struct stream *s, const char *why)
{
    struct peer *p = s->arg;

    if (p->s == s) /* closed by the layer (by the peer, an error), not by peer_drop */
        peer_drop(p, s->connecting ? NULL /* down: retried with backoff */
                     : why == STREAM_EOF ? "connection closed" : why);
    loop_free_later(s);
}

static const struct stream_ops peer_ops = { .on_data = peer_data, .on_connected = peer_connected,
                                            .on_close = peer_closed };

static void peer_attach(struct peer *p, int fd, bool connecting)
{
    struct stream *s = malloc(sizeof *s);
    int r = -ENOMEM;

    if (!s)
        close(fd);
    else if ((r = stream_init(s, fd, p->addr, &peer_ops, p, IN_CAP, SQ_MAX, 0, connecting)) < 0)
        free(s);
    if (r < 0) {
        log_warn("peer %s: %s", p->addr, strerror(-r));
        dialer_lost(&p->dialer, now_ms());
        if (!p->dial)
            p->used = false;
        return;
    }
    p->s = s;
    p->st = connecting ? PC_CONNECTING : PC_HELLO;
    p->born = now_ms();
    if (!connecting)
        send_hello(p);
}

static void on_accept(struct listener *ls, int fd, const char *peer)
{
    struct peer *p = NULL, *oldest = NULL;

    (void)ls;
    for (int i = 0; i < REPL_MAX_PEERS && !p; i++) {
        struct peer *q = &P.peers[i];
        if (!q->used)
            p = q;
        else if (!q->dial && q->st == PC_HELLO && (!oldest || q->born < oldest->born))
            oldest = q;
    }
    if (!p && oldest) {
        /* full: whoever has been silent in its handshake longest makes
         * room, so idle strangers cannot lock the real peers out */
        peer_drop(oldest, "handshake not completed; its place is needed");
        p = oldest->used ? NULL : oldest;
    }
    if (!p) {
        close(fd);
        return;
    }
    memset(&p->remote, 0, sizeof p->remote);
    p->used = true;
    p->dial = false;
    p->missed = false;
    dialer_init(&p->dialer);
    snprintf(p->addr, sizeof p->addr, "%s", peer);
    peer_attach(p, fd, false);
}

int repl_primary_start(const struct repl_node *self, const struct repl_primary_config *cfg)
{
    static const struct req_stream stream = {
        .may_start = stream_may_start, .submit = stream_submit, .local_done = stream_local_done,
    };
    repl_role_started(1);
    req_set_stream(&stream);
    P.self = *self;
    P.cfg = *cfg;
    P.epoch = 1;
    struct resync_env env = { .data_size = self->data_size, .rate = cfg->resync_rate,
                              .dev = self->dev, .io = self->io, .queue_chunk = queue_chunk,
                              .queue_done = queue_done, .failed = sync_failed };
    if (resync_init(&env) < 0)
        return -ENOMEM;
    for (int i = 0; i < REPL_MAX_PEERS; i++)
        P.peers[i].idx = i;
    for (int i = 0; i < cfg->npeers && i < REPL_MAX_PEERS; i++) {
        struct peer *p = &P.peers[i];
        p->used = p->dial = true;
        dialer_init(&p->dialer);
        snprintf(p->addr, sizeof p->addr, "%s", cfg->peers[i]);
    }
    if (cfg->listen)
        return listener_open(&P.ls, cfg->listen, on_accept, NULL);
    return 0;
}

/* A dialled address whose node already connected to us the other way. */
static bool connected_elsewhere(const struct peer *p)
{
    for (int i = 0; p->remote.node_id && i < REPL_MAX_PEERS; i++) {
        const struct peer *q = &P.peers[i];
        if (q != p && q->used && q->st == PC_UP && q->remote.node_id == p->remote.node_id)
            return true;
    }
    return false;
}

void primary_tick(void)
{
    uint64_t now = now_ms();

    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &P.peers[i];
        if (!p->used)
            continue;
        if (p->st == PC_IDLE && p->dial && dialer_due(&p->dialer, now) &&
            !connected_elsewhere(p)) {
            int fd = dialer_connect(&p->dialer, p->addr, now);
            if (fd >= 0)
                peer_attach(p, fd, true); /* HELLO goes once connected */
            continue;
        }
        if (p->st == PC_IDLE)
            continue;
        /* silence while something is owed means the peer is gone */
        bool owed = p->waiting || stream_queued(p->s) || p->st != PC_UP;
        if (owed && now - p->s->last_rx > P.cfg.timeout_ms) {
            peer_drop(p, "no answer within the timeout");
            continue;
        }
        if (p->st != PC_UP && now - p->born > HELLO_TIMEOUT_MS) {
            peer_drop(p, "no HELLO within 5 s");
            continue;
        }
        if (p->st == PC_UP && now - p->s->last_tx > P.cfg.timeout_ms / 4 &&
            !stream_queued(p->s))
            frame(p, RT_PING, 0, 0, 0, NULL, 0, NULL, 0, NULL, NULL);
        if (p->st == PC_UP)
            resync_step(&p->rs, now);
    }
    if (resync_unlocked()) {
        struct nm_req *list = P.held;
        P.held = P.held_tail = NULL;
        while (list) {
            struct nm_req *r = list;
            list = r->next;
            req_resume(r); /* parks itself again if still locked */
        }
    }
}

bool primary_busy(void) { return false; /* the main loop flushes the streams every turn */ }

int primary_status(struct peer_status *out, int max)
{
    int n = 0;
    for (int i = 0; i < REPL_MAX_PEERS && n < max; i++) {
        struct peer *p = &P.peers[i];
        if (!p->used || (p->st != PC_UP && connected_elsewhere(p)))
            continue; /* one line per node */
        struct peer_status *s = &out[n++];
        memset(s, 0, sizeof *s);
        snprintf(s->address, sizeof s->address, "%s", p->addr);
        s->connection = conn_name(p);
        s->replication = p->st == PC_UP ? "Established" : "Off";
        s->peer_disk = disk_state_name(p->st == PC_UP || p->missed ? p->peer_disk : DS_UNKNOWN);
        s->protocol = P.cfg.protocol;
        s->sent_bytes = p->sent_bytes;
        s->acked_bytes = p->acked_bytes;
        s->trimmed_bytes = p->trimmed_bytes;
        s->zeroed_bytes = p->zeroed_bytes;
        s->sent_requests = p->sent_reqs;
        s->acked_requests = p->acked_reqs;
        s->inflight = p->unacked;
        snprintf(s->last_error, sizeof s->last_error, "%s", p->last_error);
        s->out_of_sync_bytes = p->missed || p->peer_disk != DS_UPTODATE ? P.self.data_size : 0;
        s->resync_percent = -1;
        if (p->rs.active) {
            uint64_t now = now_ms();
            s->replication = "SyncSource";
            s->out_of_sync_bytes = P.self.data_size - p->rs.sent;
            s->resync_sent_bytes = p->rs.sent;
            s->resync_percent = resync_percent(&p->rs);
            s->resync_eta_s = resync_eta_s(&p->rs, now);
            s->resync_bytes_per_s = resync_bytes_per_s(&p->rs, now);
        }
    }
    return n;
}

/* A clean stop tells each in-sync peer so, after everything else: it then
 * records UpToDate and needs no sync at the next start. */
void primary_stop_begin(void)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &P.peers[i];
        if (!p->used || p->st != PC_UP || p->rs.active || p->missed)
            continue;
        if (frame(p, RT_BARRIER, RF_CLEAN, P.seq + 1, P.epoch, NULL, 0, NULL, 0, NULL, NULL) < 0)
            continue;
        p->clean_seq = ++P.seq;
        stream_flush(p->s);
    }
}

bool primary_stop_done(void)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        const struct peer *p = &P.peers[i];
        if (p->used && p->st == PC_UP && p->clean_seq && !p->clean_acked)
            return false;
    }
    return true;
}

void primary_stop(void)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &P.peers[i];
        if (p->used && p->st != PC_IDLE) {
            struct stream *s = p->s;
            p->st = PC_IDLE;
            p->s = NULL;
            stream_flush(s); /* a last try to hand over what is queued */
            stream_close(s, NULL);
        }
    }
    listener_close(&P.ls);
}

/* ---- full sync (src/resync/ runs it; these hand its chunks to a peer) ---- */

static void sync_start(struct peer *p)
{
    /* the peer records Inconsistent before the first chunk lands */
    if (!frame_or_drop(p, RT_BARRIER, RF_SYNC_START, ++P.seq, NULL, 0, NULL, 0, NULL, NULL))
        return;
    p->peer_disk = DS_INCONSISTENT;
    resync_begin(&p->rs, p);
    log_info("peer %s: full sync of %llu MiB starts (SyncSource)", p->addr,
             (unsigned long long)(P.self.data_size >> 20));
}

static void sync_abort(struct peer *p)
{
    if (!p->rs.active)
        return;
    resync_abort(&p->rs);
    log_warn("peer %s: full sync interrupted at %llu MiB; it restarts when the peer is back",
             p->addr, (unsigned long long)(p->rs.sent >> 20));
}

/* A write failed here after it was streamed: the peers may hold what this
 * disk does not, so they are synced from it again. */
static void local_failed(struct nm_req *r)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &P.peers[i];
        if (!p->used || p->st != PC_UP)
            continue;
        if (p->rs.active && r->offset >= p->rs.cursor)
            continue; /* the running sync has yet to copy it */
        log_warn("peer %s: a write failed here after it was sent; syncing the peer again",
                 p->addr);
        sync_start(p);
    }
}

static bool queue_chunk(void *peer, struct resync_chunk *c)
{
    struct peer *p = peer;
    uint8_t extra[8];

    if (p->st != PC_UP)
        return false;
    put_be64(extra, c->off);
    return frame_or_drop(p, RT_WRITE, RF_RESYNC, ++P.seq, extra, 8, c->buf, c->len,
                         chunk_frame_done, c);
}

static uint64_t queue_done(void *peer)
{
    struct peer *p = peer;
    if (p->st != PC_UP ||
        frame(p, RT_BARRIER, RF_SYNC_DONE, P.seq + 1, P.epoch, NULL, 0, NULL, 0, NULL, NULL) < 0)
        return 0; /* tried again next turn */
    return ++P.seq;
}

static void sync_failed(void *peer, const char *why) { peer_drop(peer, why); }

/* ---- the frames a primary receives (the table is in frames.c) ---- */

int primary_on_hello(void *link, const struct repl_hdr *h, const uint8_t *payload)
{
    struct peer *p = link;
    if (p->st != PC_HELLO) {
        peer_drop(p, "second HELLO");
        return -1;
    }
    peer_hello(p, h, payload);
    return p->st == PC_UP ? 1 : -1;
}

int primary_on_ack(void *link, const struct repl_hdr *h, const uint8_t *payload)
{
    struct peer *p = link;
    (void)payload;
    if (p->st != PC_UP) {
        peer_drop(p, "frame before HELLO");
        return -1;
    }
    on_ack(p, h);
    return p->st == PC_UP ? 1 : -1; /* dropped: its buffer is gone */
}

int primary_on_pong(void *link, const struct repl_hdr *h, const uint8_t *payload)
{
    struct peer *p = link;
    (void)h, (void)payload;
    if (p->st != PC_UP) {
        peer_drop(p, "frame before HELLO");
        return -1;
    }
    return 1;
}
