/* The primary's stream: every write, trim and zero write goes, in sequence
 * order, to every connected peer. Each peer has a send queue of frames that
 * point at the request's own buffer (no copy: the kernel copies it into the
 * socket), gathered into one sendmsg per turn. The reply to the client waits
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
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common.h"
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
#define RETRY_MAX_MS 5000
#define HELLO_TIMEOUT_MS 5000     /* a connection must say HELLO within this */
#define MAX_IOV     256

struct sq_item {
    struct nm_req *r;   /* a client request, whose buf is the payload */
    struct resync_chunk *chunk; /* or a full-sync chunk; neither: no payload */
    uint8_t hdr[REPL_HDR + 12];
    uint8_t hdr_len;
    uint32_t data_len;  /* bytes of r->buf that follow the header */
};

enum pconn { PC_IDLE, PC_CONNECTING, PC_HELLO, PC_UP };

struct peer {
    struct handler h;
    int idx;
    bool used, dial;
    char addr[128];
    int fd;
    uint32_t events;             /* what epoll watches now */
    enum pconn st;
    uint64_t next_try, backoff, last_rx, last_tx, born;
    struct repl_hello remote;
    enum disk_state peer_disk;
    bool missed;                 /* dropped while writes went on: needs a full sync */
    bool failed;                 /* its disk failed: no quick redial until a sync works */
    char last_error[128];
    struct sq_item *sq;
    unsigned sq_head, sq_count;
    size_t sq_off;               /* bytes of the head item already sent */
    uint64_t sq_bytes;
    uint8_t in[4096];
    uint32_t in_len;
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
    int lfd;
    struct handler h_listen;
    uint64_t seq;
    uint32_t epoch;
    struct nm_req *table[TABLE];
    struct nm_req *held, *held_tail; /* writes waiting for a sync chunk to pass */
} P = { .lfd = -1 };

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

/* ---- send queue ---- */

static struct sq_item *sq_push(struct peer *p)
{
    if (p->sq_count == SQ_MAX)
        return NULL;
    struct sq_item *it = &p->sq[(p->sq_head + p->sq_count++) % SQ_MAX];
    memset(it, 0, sizeof *it);
    return it;
}

/* Fills a queued item; the queue's byte count follows every item in it. */
static void frame(struct peer *p, struct sq_item *it, uint8_t type, uint16_t flags, uint64_t seq,
                  uint32_t epoch, const uint8_t *extra, uint8_t extra_len, uint32_t data_len)
{
    struct repl_hdr h = { .type = type, .flags = flags, .seq = seq, .epoch = epoch,
                          .len = extra_len + data_len };
    repl_encode_hdr(it->hdr, &h);
    if (extra_len)
        memcpy(it->hdr + REPL_HDR, extra, extra_len);
    it->hdr_len = REPL_HDR + extra_len;
    it->data_len = data_len;
    p->sq_bytes += it->hdr_len + data_len;
}

static void unqueue(struct peer *p, struct nm_req *r)
{
    if (r)
        req_event(r, REQ_EV_UNQUEUED, p->idx, 0);
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
    if (p->st == PC_IDLE)
        return;
    if (p->st == PC_UP)
        log_warn("peer %s: %s; it is Outdated until a full sync", p->addr, why ? why : "gone");
    else if (why)
        log_info("peer %s: %s", p->addr, why);
    loop_del(p->fd);
    close(p->fd);
    if (p->st == PC_UP) {
        p->missed = true;
        p->peer_disk = DS_OUTDATED;
    }
    p->st = PC_IDLE;
    /* nothing queued for it will be sent; nobody waits for it any more */
    while (p->sq_count) {
        if (p->sq[p->sq_head].chunk)
            resync_chunk_done(p->sq[p->sq_head].chunk, false);
        unqueue(p, p->sq[p->sq_head].r);
        p->sq_head = (p->sq_head + 1) % SQ_MAX;
        p->sq_count--;
    }
    p->sq_off = p->sq_bytes = 0;
    p->unacked = 0; /* whatever was in flight there is lost with the link */
    for (unsigned i = 0; i < TABLE && p->waiting; i++)
        if (P.table[i])
            stop_waiting(p, P.table[i], false);
    p->waiting = 0;
    sync_abort(p);
    p->in_len = 0;
    p->next_try = now_ms() + p->backoff;
    p->backoff = p->backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : p->backoff * 2;
    if (!p->dial)
        p->used = false; /* it called us: it will call again */
}

static void peer_send(struct peer *p)
{
    while (p->st >= PC_HELLO && p->sq_count) {
        struct iovec iov[MAX_IOV];
        int k = 0;
        size_t skip = p->sq_off;
        for (unsigned i = 0; i < p->sq_count && k < MAX_IOV - 1; i++) {
            struct sq_item *it = &p->sq[(p->sq_head + i) % SQ_MAX];
            if (skip < it->hdr_len) {
                iov[k++] = (struct iovec){ it->hdr + skip, it->hdr_len - skip };
                skip = 0;
            } else {
                skip -= it->hdr_len;
            }
            if (it->data_len)
                iov[k++] = (struct iovec){ (it->r ? it->r->buf : it->chunk->buf) + skip,
                                           it->data_len - skip };
            skip = 0;
        }
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = k };
        ssize_t n = sendmsg(p->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                peer_drop(p, strerror(errno));
            break;
        }
        p->last_tx = now_ms();
        size_t left = p->sq_off + n;
        while (p->sq_count) {
            struct sq_item *it = &p->sq[p->sq_head];
            size_t sz = it->hdr_len + it->data_len;
            if (left < sz)
                break;
            left -= sz;
            p->sq_bytes -= sz;
            if (it->r || it->chunk)
                p->unacked++; /* each is answered by one ACK_WRITE */
            if (it->r) {
                p->sent_reqs++;
                p->sent_bytes += it->data_len;
            }
            if (it->chunk)
                resync_chunk_done(it->chunk, true);
            unqueue(p, it->r);
            p->sq_head = (p->sq_head + 1) % SQ_MAX;
            p->sq_count--;
        }
        p->sq_off = left;
        if (p->sq_count)
            break; /* the socket is full: EPOLLOUT tells us when to go on */
    }
    uint32_t ev = EPOLLIN | (p->sq_count ? EPOLLOUT : 0);
    if (p->st >= PC_HELLO && ev != p->events) {
        loop_mod(p->fd, ev, &p->h);
        p->events = ev;
    }
}

/* ---- the stream ---- */

static bool queue_to(struct peer *p, struct nm_req *r, uint8_t type, uint16_t flags,
                     const uint8_t *extra, uint8_t extra_len, uint32_t data_len)
{
    struct sq_item *it;
    if ((p->sq_count && p->sq_bytes + data_len > SQ_BYTES_MAX) || !(it = sq_push(p))) {
        peer_drop(p, "too far behind (send queue full)");
        return false;
    }
    frame(p, it, type, flags, r ? r->seq : 0, P.epoch, extra, extra_len, data_len);
    it->r = r;
    if (r)
        req_hold_buf(r, p->idx);
    return true;
}

static void barrier_to(struct peer *p, struct nm_req *r)
{
    struct sq_item *it = sq_push(p);
    if (!it) {
        peer_drop(p, "too far behind (send queue full)");
        return;
    }
    frame(p, it, RT_BARRIER, 0, r ? r->seq : ++P.seq, P.epoch, NULL, 0, 0);
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
    p->backoff = RETRY_MAX_MS;
    p->next_try = now_ms() + RETRY_MAX_MS;
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
        p->backoff = 100;
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
        p->backoff = 100;
    p->peer_disk = p->missed ? DS_OUTDATED : (enum disk_state)p->remote.disk_state;
    log_info("peer %s: connected (protocol %c, its disk %s%s)", p->addr, P.cfg.protocol,
             disk_state_name(p->peer_disk), p->missed ? ": it missed writes" : "");
    if (p->peer_disk != DS_UPTODATE)
        sync_start(p);
}

static void peer_read(struct peer *p)
{
    for (;;) {
        ssize_t n = recv(p->fd, p->in + p->in_len, sizeof p->in - p->in_len, MSG_DONTWAIT);
        if (n == 0) {
            peer_drop(p, "connection closed");
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                peer_drop(p, strerror(errno));
            return;
        }
        p->in_len += n;
        p->last_rx = now_ms();
        uint32_t off = 0;
        while (p->in_len - off >= REPL_HDR) {
            struct repl_hdr h;
            const char *why;
            if (repl_decode_hdr(p->in + off, &h, &why) < 0) {
                peer_drop(p, why);
                return;
            }
            if (p->in_len - off < REPL_HDR + h.len)
                break;
            if (p->st == PC_HELLO) {
                peer_hello(p, &h, p->in + off + REPL_HDR);
                if (p->st != PC_UP)
                    return;
            } else if (h.type == RT_ACK_RECV || h.type == RT_ACK_WRITE ||
                       h.type == RT_BARRIER_ACK) {
                on_ack(p, &h);
                if (p->st != PC_UP)
                    return; /* dropped: its buffer is gone */
            } else if (h.type != RT_PONG) {
                peer_drop(p, "unexpected frame from a secondary");
                return;
            }
            off += REPL_HDR + h.len;
        }
        memmove(p->in, p->in + off, p->in_len - off);
        p->in_len -= off;
        if ((size_t)n < sizeof p->in)
            return;
    }
}

static void on_peer(struct handler *h, uint32_t ev)
{
    struct peer *p = (struct peer *)h;

    if (p->st == PC_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            peer_drop(p, NULL); /* down: retried with backoff */
            return;
        }
        p->st = PC_HELLO;
        p->last_rx = now_ms();
        send_hello(p);
        if (p->st == PC_IDLE)
            return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
        peer_read(p);
    if (p->st >= PC_HELLO && (ev & EPOLLOUT))
        peer_send(p);
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
    /* the first bytes on a fresh socket: they fit its buffer */
    if (send(p->fd, buf, sizeof buf, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)sizeof buf)
        peer_drop(p, "cannot send HELLO");
}

static void peer_attach(struct peer *p, int fd, bool connecting)
{
    p->fd = fd;
    p->st = connecting ? PC_CONNECTING : PC_HELLO;
    p->in_len = 0;
    p->last_rx = p->last_tx = p->born = now_ms();
    p->h.fn = on_peer;
    if (!p->sq && !(p->sq = calloc(SQ_MAX, sizeof *p->sq))) {
        close(fd);
        p->st = PC_IDLE;
        return;
    }
    p->events = EPOLLIN | EPOLLOUT;
    if (loop_add(fd, p->events, &p->h) < 0) {
        log_warn("peer %s: %s", p->addr, strerror(errno));
        close(fd);
        p->st = PC_IDLE;
        p->next_try = now_ms() + p->backoff;
        if (!p->dial)
            p->used = false;
        return;
    }
    if (!connecting)
        send_hello(p);
}

static void on_listen(struct handler *h, uint32_t ev)
{
    (void)h, (void)ev;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(P.lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct peer *p = NULL, *oldest = NULL;
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
            continue;
        }
        memset(&p->remote, 0, sizeof p->remote);
        p->used = true;
        p->dial = false;
        p->backoff = 100;
        p->missed = false;
        net_peer_name(&ss, p->addr, sizeof p->addr);
        peer_attach(p, fd, false);
    }
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
        p->backoff = 100;
        snprintf(p->addr, sizeof p->addr, "%s", cfg->peers[i]);
    }
    if (cfg->listen) {
        P.lfd = net_listen(cfg->listen);
        if (P.lfd < 0)
            return P.lfd;
        P.h_listen.fn = on_listen;
        if (loop_add(P.lfd, EPOLLIN, &P.h_listen) < 0)
            return -errno;
    }
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
        if (p->st == PC_IDLE && p->dial && now >= p->next_try && !connected_elsewhere(p)) {
            int fd = net_connect(p->addr);
            if (fd >= 0) {
                peer_attach(p, fd, true); /* HELLO goes once connected */
            } else {
                p->next_try = now + p->backoff;
            }
            continue;
        }
        if (p->st == PC_IDLE)
            continue;
        /* silence while something is owed means the peer is gone */
        bool owed = p->waiting || p->sq_count || p->st != PC_UP;
        if (owed && now - p->last_rx > P.cfg.timeout_ms) {
            peer_drop(p, "no answer within the timeout");
            continue;
        }
        if (p->st != PC_UP && now - p->born > HELLO_TIMEOUT_MS) {
            peer_drop(p, "no HELLO within 5 s");
            continue;
        }
        if (p->st == PC_UP && now - p->last_tx > P.cfg.timeout_ms / 4 && !p->sq_count) {
            frame(p, sq_push(p), RT_PING, 0, 0, 0, NULL, 0, 0);
        }
        if (p->st == PC_UP)
            resync_step(&p->rs, now);
        if (p->sq_count)
            peer_send(p);
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

bool primary_busy(void) { return false; /* sends happen in primary_tick every turn */ }

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
        struct sq_item *it = sq_push(p);
        if (!it)
            continue;
        p->clean_seq = ++P.seq;
        frame(p, it, RT_BARRIER, RF_CLEAN, p->clean_seq, P.epoch, NULL, 0, 0);
        peer_send(p);
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
            peer_send(p); /* a last try to hand over what is queued */
            loop_del(p->fd);
            close(p->fd);
            p->st = PC_IDLE;
        }
    }
    if (P.lfd >= 0) {
        loop_del(P.lfd);
        close(P.lfd);
        P.lfd = -1;
    }
}

/* ---- full sync (src/resync/ runs it; these hand its chunks to a peer) ---- */

static void sync_start(struct peer *p)
{
    struct sq_item *it = sq_push(p);
    if (!it) {
        peer_drop(p, "too far behind (send queue full)");
        return;
    }
    p->peer_disk = DS_INCONSISTENT;
    /* the peer records Inconsistent before the first chunk lands */
    frame(p, it, RT_BARRIER, RF_SYNC_START, ++P.seq, P.epoch, NULL, 0, 0);
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
    struct sq_item *it;

    if (p->st != PC_UP)
        return false;
    if (!(it = sq_push(p))) {
        peer_drop(p, "too far behind (send queue full)");
        return false;
    }
    put_be64(extra, c->off);
    frame(p, it, RT_WRITE, RF_RESYNC, ++P.seq, P.epoch, extra, 8, c->len);
    it->chunk = c;
    return true;
}

static uint64_t queue_done(void *peer)
{
    struct peer *p = peer;
    struct sq_item *it = p->st == PC_UP ? sq_push(p) : NULL;
    if (!it)
        return 0; /* tried again next turn */
    frame(p, it, RT_BARRIER, RF_SYNC_DONE, ++P.seq, P.epoch, NULL, 0, 0);
    return P.seq;
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
