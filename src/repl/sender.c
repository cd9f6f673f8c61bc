/* The primary's stream: every write, trim and zero write goes, in sequence
 * order, to every peer that takes our stream; every peer that does not
 * gets the range set in its dirty bitmap instead. Frames point at the
 * request's own buffer (no copy), gathered into one sendmsg per link and
 * turn. The reply to the client waits per protocol: A for nothing more than
 * the queueing, B for every such peer's ACK_RECV, C for every such peer's
 * ACK_WRITE (and for FLUSH, its BARRIER_ACK).
 *
 * The transfer log remembers every streamed write until each peer has it
 * durably (a barrier after it is acknowledged) and it is done here: if a
 * link drops first, the write's range is set in that peer's bitmap. Its
 * entries hold the activity log's extents, so the log forgets an extent
 * only once every write there is safe everywhere, or covered by bits.
 *
 * Resync frames (src/resync/ decides what) go into the same stream, so a
 * peer applies them in order with client writes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl-int.h"

#define TABLE (1u << 17)     /* requests waiting for acks, by seq */
#define TL_CAP (1u << 19)    /* writes remembered until durable everywhere */
#define TL_BARRIER_AT (TL_CAP / 2) /* a confirm after this many unconfirmed writes */
#define TL_BARRIER_MS 5000   /* ... or when the oldest waits this long */
#define CLIENT_IDLE_MS 200   /* no client write for this long: resync runs at full speed */

#define STF_AL 1u            /* r holds activity log references */
#define STF_TL 2u            /* r's entry is in the transfer log (it owns the references) */

#define TE_LOCAL 1u          /* done on the local disk */
#define TE_AL 2u             /* holds activity log references */

struct tl_ent {
    uint64_t seq, off;
    uint32_t len;
    uint32_t born;           /* ms, low bits */
    uint32_t acked;          /* peers (bits) that acknowledged it: their lag */
    uint8_t flags;
};

static struct {
    bool on;                 /* primary: the stream is plugged in */
    uint64_t seq;            /* shared by every link: one order */
    uint32_t epoch;
    struct nm_req *table[TABLE];
    struct nm_req *held, *held_tail; /* writes waiting (sync chunk, log, room) */
    bool held_retry;
    struct tl_ent tl[TL_CAP];
    uint64_t tl_head, tl_tail;
    uint64_t last_barrier;   /* seq of the last barrier every sending link got */
    uint64_t confirm_seq;    /* the confirm in flight (0: none) */
    bool confirm_now;        /* the activity log is full of extents in use: confirm */
    uint64_t last_client_ms;
    unsigned client_inflight;
} T;

static bool queue_data(void *peer, struct resync_chunk *c, uint64_t off, uint32_t len);
static bool queue_hash(void *peer, struct resync_chunk *c, bool verify);
static uint32_t budget(void *peer, uint32_t inflight);
static uint64_t queue_done(void *peer);
static void sync_verified(void *peer);
static void sync_failed(void *peer, const char *why);

/* ---- the transfer log ---- */

static struct tl_ent *tl_at(uint64_t pos) { return &T.tl[pos % TL_CAP]; }

static uint64_t tl_append(uint64_t seq, uint64_t off, uint32_t len, uint8_t flags)
{
    struct tl_ent *e = tl_at(T.tl_head);
    *e = (struct tl_ent){ .seq = seq, .off = off, .len = len, .flags = flags,
                          .born = (uint32_t)now_ms() };
    return T.tl_head++;
}

/* The oldest sequence number some sending link may still lack on disk. */
static uint64_t durable_everywhere(void)
{
    uint64_t min = UINT64_MAX;
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        const struct peer *p = &N.peers[i];
        if (p->used && peer_sending(p) && p->barrier_acked < min)
            min = p->barrier_acked;
    }
    return min;
}

/* The entry of seq, or NULL (retired already). A peer acknowledges mostly
 * in order, so the entry after the one it acknowledged last (*hint) is
 * tried first; else a binary search (the log is in seq order). */
static struct tl_ent *tl_find(uint64_t seq, uint64_t *hint)
{
    uint64_t lo = T.tl_tail, hi = T.tl_head;
    if (*hint >= lo && *hint < hi && tl_at(*hint)->seq == seq)
        return tl_at((*hint)++);
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (tl_at(mid)->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == T.tl_head || tl_at(lo)->seq != seq)
        return NULL;
    *hint = lo + 1;
    return tl_at(lo);
}

static void tl_retire(void)
{
    uint64_t durable = durable_everywhere();
    while (T.tl_tail < T.tl_head) {
        struct tl_ent *e = tl_at(T.tl_tail);
        if (!(e->flags & TE_LOCAL) || e->seq >= durable)
            break;
        if (e->flags & TE_AL)
            node_al_end(e->off, e->len);
        T.tl_tail++;
        T.held_retry = true; /* room for writes waiting on a full log */
    }
}

/* ---- send queue (one item a frame) ---- */

/* A client write, trim or zero left the socket (or never will). */
static void req_frame_done(struct stream *s, void *arg, bool sent)
{
    struct peer *p = s->arg; /* a peer entry outlives its links */
    struct nm_req *r = arg;

    if (sent) {
        p->unacked++; /* each is answered by one ACK_WRITE */
        p->sent_reqs++;
        if (r->op == REQ_WRITE)
            p->sent_bytes += r->len; /* client write data only */
    }
    req_event(r, REQ_EV_UNQUEUED, p->idx, 0);
}

static void chunk_frame_done(struct stream *s, void *arg, bool sent)
{
    struct peer *p = s->arg;
    if (sent)
        p->unacked++;
    resync_frame_done(arg, sent);
}

/* The request no longer waits for this peer: it acknowledged, or is gone. */
static void stop_waiting(struct peer *p, struct nm_req *r, bool acked)
{
    uint32_t bit = 1u << p->idx;
    if (!(r->wait_peers & bit))
        return;
    p->waiting--;
    if (!(r->wait_peers & ~bit) && T.table[r->seq % TABLE] == r)
        T.table[r->seq % TABLE] = NULL; /* before the event: r may be done after it */
    req_event(r, acked ? REQ_EV_PEER_ACKED : REQ_EV_PEER_LOST, p->idx, 0);
}

/* Queues a frame or drops the peer: a full ring means it is too far behind. */
static bool frame_or_drop(struct peer *p, uint8_t type, uint16_t flags, uint64_t seq,
                          const uint8_t *extra, uint8_t extra_len, const void *data,
                          uint32_t data_len, stream_done_fn done, void *arg)
{
    if (link_frame(p, type, flags, seq, T.epoch, 0, extra, extra_len, data, data_len, done,
                   arg) < 0) {
        peer_drop(p, "too far behind (send queue full)");
        return false;
    }
    return true;
}

uint64_t sender_barrier(struct peer *p, uint16_t flags, uint64_t gen)
{
    uint8_t g[16];
    uint8_t n = gen ? 8 : 0;
    put_be64(g, gen);
    if (gen && (flags & RF_SYNC_START) && p->slot >= 0) {
        put_be64(g + 8, bm_bytes(&N.bm[p->slot])); /* for the target's status */
        n = 16;
    }
    if (!frame_or_drop(p, RT_BARRIER, flags, ++T.seq, n ? g : NULL, n, NULL, 0, NULL, NULL))
        return 0;
    return T.seq;
}

/* ---- the stream (struct req_stream) ---- */

static bool queue_to(struct peer *p, struct nm_req *r, uint8_t type, uint16_t flags,
                     const uint8_t *extra, uint8_t extra_len, uint32_t data_len)
{
    /* too far behind, too: LINK_SQ_BYTES_MAX bytes queued (one maximum
     * request always fits an empty queue) */
    uint64_t queued = stream_queued_bytes(p->s);
    if (queued && queued + data_len > LINK_SQ_BYTES_MAX) {
        peer_drop(p, "too far behind (send queue full)");
        return false;
    }
    if (!frame_or_drop(p, type, flags, r->seq, extra, extra_len, r->buf, data_len,
                       req_frame_done, r))
        return false;
    req_hold_buf(r, p->idx); /* until req_frame_done */
    p->lag_bytes += r->stream_len; /* until its ACK_WRITE (which says as much) */
    return true;
}

static void stream_submit(struct nm_req *r)
{
    uint8_t extra[12];
    uint8_t type, elen = 8;
    uint16_t flags = 0;
    uint32_t data_len = 0;
    bool barrier = r->op == REQ_FLUSH;

    r->seq = ++T.seq;
    r->epoch = T.epoch;
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
    if (type != RT_BARRIER) {
        T.last_client_ms = now_ms();
        T.client_inflight++;
        /* remembered until durable everywhere; owns the log references */
        r->stream_pos = tl_append(r->seq, r->stream_off, r->stream_len,
                                  (r->stream_flags & STF_AL) ? TE_AL : 0);
        r->stream_flags |= STF_TL;
        /* peers that do not take the stream: the range is out of sync */
        uint32_t lost = node_lost_slots();
        for (int s = 0; lost; s++, lost >>= 1)
            if (lost & 1)
                node_bits(s, r->stream_off, r->stream_len);
    }
    if (type != RT_BARRIER && (r->flags & REQ_F_FUA)) {
        flags |= RF_FUA;  /* durable on the peer before it acknowledges */
        barrier = true;   /* and it orders like a flush */
    }
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        if (!p->used || !peer_sending(p))
            continue;
        if (type == RT_BARRIER)
            frame_or_drop(p, RT_BARRIER, 0, r->seq, NULL, 0, NULL, 0, NULL, NULL);
        else if (!queue_to(p, r, type, flags, extra, elen, data_len))
            continue;
        else if (barrier)
            sender_barrier(p, 0, 0);
        if (!peer_sending(p))
            continue;
        /* what the reply waits for from this peer */
        if (N.cfg.protocol == 'C' || (N.cfg.protocol == 'B' && type != RT_BARRIER)) {
            req_wait_peer(r, p->idx);
            p->waiting++;
        }
    }
    if (barrier) {
        T.epoch++;
        T.last_barrier = T.seq;
    }
    struct nm_req *old = T.table[r->seq % TABLE];
    if (r->wait_peers && old && old->wait_peers) {
        /* still waiting TABLE sequence numbers later: whoever it waits for
         * is stuck. Drop them (they resync) rather than wait for ever. */
        uint32_t stuck = old->wait_peers;
        for (int i = 0; i < REPL_MAX_PEERS; i++)
            if (stuck & (1u << i)) {
                peer_drop(&N.peers[i], "acknowledgement overdue");
                stop_waiting(&N.peers[i], old, false);
            }
    }
    if (r->wait_peers)
        T.table[r->seq % TABLE] = r;
    if (type != RT_BARRIER)
        resync_write_begin(r->offset, r->len); /* a sync chunk here waits for it */
}

/* A write failed here after it was sent: the peers may hold what this disk
 * does not, so those blocks are synced to them again from this disk. */
static void local_failed(struct nm_req *r)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        if (!p->used || !peer_sending(p) || p->slot < 0)
            continue;
        log_warn("peer %s: a write failed here after it was sent; syncing the peer again",
                 p->addr);
        node_bits(p->slot, r->offset, r->len);
        if (p->rs == PR_ESTABLISHED)
            sender_sync_start(p, RK_BITMAP, "local write error");
    }
}

static void stream_local_done(struct nm_req *r, int err)
{
    if (r->op == REQ_FLUSH)
        return; /* nothing was written on the peers that this disk lacks */
    if (r->stream_flags & STF_TL) {
        tl_at(r->stream_pos)->flags |= TE_LOCAL;
        resync_write_end(r->offset, r->len);
        if (T.client_inflight)
            T.client_inflight--;
        if (err)
            local_failed(r);
        tl_retire();
    } else if (r->stream_flags & STF_AL) {
        /* never streamed (nothing trimmed, a fast zero refused): done */
        node_al_end(r->offset, r->len);
    }
    r->stream_flags &= ~STF_AL;
}

static void park(struct nm_req *r)
{
    r->next = NULL;
    if (T.held)
        T.held_tail->next = r;
    else
        T.held = r;
    T.held_tail = r;
}

static bool stream_may_start(struct nm_req *r)
{
    if (!req_is_write(r))
        return true;
    if (N.rotate_pending) {
        /* the first write since a peer may have been lost: a new current
         * id first, recorded before anything is written under it */
        uint32_t lost = node_lost_slots();
        gen_rotate(N.meta, lost);
        N.rotate_pending = false;
        if (node_save_meta("a new generation id") == 0) {
            log_info("new generation id %016llx (writing without every peer)",
                     (unsigned long long)N.meta->current_gen);
            sender_send_gen();
        }
    }
    if (resync_locked(r->offset, r->len) || T.tl_head - T.tl_tail >= TL_CAP) {
        park(r); /* until the chunk is queued, or the log has room */
        return false;
    }
    if (!(r->stream_flags & STF_AL)) {
        if (r->len && !node_al_begin(r)) {
            park(r); /* until its extents are in the activity log */
            return false;
        }
        r->stream_flags |= STF_AL;
    }
    return true;
}

static void stream_cancel(struct nm_req *r)
{
    if ((r->stream_flags & STF_AL) && !(r->stream_flags & STF_TL))
        node_al_end(r->offset, r->len);
    r->stream_flags &= ~STF_AL;
}

static const struct req_stream stream = {
    .may_start = stream_may_start, .submit = stream_submit, .local_done = stream_local_done,
    .cancel = stream_cancel,
};

/* ---- links coming and going ---- */

void sender_link_up(struct peer *p)
{
    /* what it lacked before is in its bitmap (and being resynced) */
    p->barrier_acked = T.seq + 1;
    p->waiting = 0;
    p->unacked = 0;
    p->lag_bytes = 0;
    p->lag_pos = T.tl_head; /* what the log holds now was never sent to it */
}

void sender_link_down(struct peer *p)
{
    /* its bits count from the id it is known to hold */
    if (p->slot >= 0 && !N.meta->peer_bitmap_gen[p->slot])
        N.meta->peer_bitmap_gen[p->slot] = p->gen_confirmed ? p->gen_confirmed
                                                             : N.meta->current_gen;
    /* what it may not have on disk: every write after its last confirmed
     * barrier goes into its bitmap */
    if (p->slot >= 0)
        for (uint64_t i = T.tl_tail; i < T.tl_head; i++) {
            struct tl_ent *e = tl_at(i);
            if (e->seq >= p->barrier_acked && e->len)
                node_bits(p->slot, e->off, e->len);
        }
    for (; p->rsq_tail < p->rsq_head; p->rsq_tail++) {
        const struct rs_unconfirmed *u = &p->rsq[p->rsq_tail % RSQ_CAP];
        node_bits(p->slot, u->off, u->len); /* resync data it may not have kept */
    }
    p->rsq_confirm = 0;
    p->rsq_since = 0;
    for (unsigned i = 0; i < TABLE && p->waiting; i++)
        if (T.table[i])
            stop_waiting(p, T.table[i], false);
    p->waiting = 0;
    p->unacked = 0;
    p->lag_bytes = 0;
    p->barrier_acked = UINT64_MAX; /* no longer holds the log back */
    if (p->sync.active)
        log_warn("peer %s: resync interrupted with %llu MiB to go; it goes on when the peer "
                 "is back", p->addr, (unsigned long long)(node_bm_count(p->slot) >> 8));
    resync_abort(&p->sync);
    tl_retire();
}

void sender_send_gen(void)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        /* in sync: it takes our id; a sync target takes it when done */
        if (p->used && peer_sending(p) && p->rs == PR_ESTABLISHED) {
            link_send_state(p, ST_GEN, N.meta->current_gen);
            /* confirmed by the barrier after it */
            p->gen_sent = N.meta->current_gen;
            p->gen_barrier = sender_barrier(p, RF_CONFIRM, 0);
        }
    }
}

void sender_init(void)
{
    static struct resync_env env;
    env = (struct resync_env){
            .data_size = N.self.data_size, .rate = N.cfg.resync_rate, .dev = N.self.dev,
            .io = N.self.io, .queue_data = queue_data, .queue_hash = queue_hash,
            .budget = budget, .queue_done = queue_done, .verified = sync_verified,
            .failed = sync_failed,
    };
    resync_init(&env);
    T.epoch = 1;
}

void sender_start(void)
{
    T.on = true;
    req_set_stream(&stream);
}

void sender_stop(void)
{
    T.on = false;
    req_set_stream(NULL);
}

void sender_retry(void) { T.held_retry = true; }

void sender_confirm_soon(void) { T.confirm_now = true; }

bool sender_idle(void)
{
    return T.tl_tail == T.tl_head && !T.held && !T.client_inflight;
}

bool sender_clients_idle(void) { return !T.client_inflight && !T.held; }

bool sender_busy(void) { return T.held_retry; }

bool sender_client_busy(void)
{
    return T.client_inflight || now_ms() - T.last_client_ms < CLIENT_IDLE_MS;
}

void sender_lag(struct peer *p, uint64_t now, uint64_t *bytes, uint64_t *ms)
{
    *bytes = *ms = 0;
    if (!peer_sending(p))
        return;
    *bytes = p->lag_bytes;
    /* the oldest entry it has neither acknowledged nor confirmed durable
     * (a barrier after it); the position only moves on, so each entry is
     * looked at about once */
    if (p->lag_pos < T.tl_tail)
        p->lag_pos = T.tl_tail;
    for (; p->lag_pos < T.tl_head; p->lag_pos++) {
        const struct tl_ent *e = tl_at(p->lag_pos);
        if (e->seq >= p->barrier_acked && !(e->acked & 1u << p->idx))
            break;
    }
    if (p->lag_pos < T.tl_head)
        *ms = (uint32_t)now - tl_at(p->lag_pos)->born;
}

void sender_tick(void)
{
    uint64_t now = now_ms();

    tl_retire();
    /* bound the transfer log: a confirm (one at a time) when many writes,
     * or old ones, are not yet durable on every link, or when the activity
     * log has no extent left that it could forget */
    if (T.confirm_seq && durable_everywhere() >= T.confirm_seq)
        T.confirm_seq = 0;
    if (!T.confirm_seq && T.tl_tail < T.tl_head && T.last_barrier < T.seq) {
        struct tl_ent *e = tl_at(T.tl_tail);
        if (T.confirm_now || T.tl_head - T.tl_tail >= TL_BARRIER_AT ||
            (uint32_t)now - e->born > TL_BARRIER_MS) {
            /* a confirmation only: the peers go on applying meanwhile */
            T.confirm_seq = ++T.seq;
            for (int i = 0; i < REPL_MAX_PEERS; i++)
                if (N.peers[i].used && peer_sending(&N.peers[i]))
                    frame_or_drop(&N.peers[i], RT_BARRIER, RF_CONFIRM, T.confirm_seq, NULL, 0,
                                  NULL, 0, NULL, NULL);
            T.last_barrier = T.seq;
        }
    }
    T.confirm_now = false;
    if (resync_unlocked() || T.held_retry) {
        struct nm_req *list = T.held;
        T.held = T.held_tail = NULL;
        T.held_retry = false;
        while (list) {
            struct nm_req *r = list;
            list = r->next;
            req_resume(r); /* parks itself again if it must still wait */
        }
    }
}

/* ---- acknowledgements ---- */

/* The peer's disk failed a write or a flush: it no longer holds what we
 * hold. It leaves every wait set now (as on a timeout: the client's request
 * succeeds on our disk alone), and is shown Failed until it comes back and
 * a full sync succeeds; meanwhile it is redialled slowly. */
static void peer_failed(struct peer *p, const char *what, int err)
{
    snprintf(p->last_error, sizeof p->last_error, "its disk failed a %s: %s", what, strerror(err));
    log_err("peer %s: %s; dropping it from the replication set until a full sync", p->addr,
            p->last_error);
    peer_drop(p, NULL);
    p->failed = true;
    p->disk = DS_FAILED;
    dialer_slow(&p->dialer, now_ms());
}

static int sender_on_ack(struct peer *p, const struct repl_hdr *h)
{
    if (h->aux && (h->type == RT_ACK_WRITE || h->type == RT_BARRIER_ACK)) {
        peer_failed(p, h->type == RT_BARRIER_ACK ? "flush" : "write", h->aux);
        return -1;
    }
    if (h->type == RT_ACK_WRITE) {
        /* acks say what they confirm: type in the high byte of flags */
        uint8_t what = h->flags >> 8;
        if (p->unacked)
            p->unacked--;
        if (!(h->flags & RF_RESYNC)) {
            struct tl_ent *e = tl_find(h->seq, &p->ack_pos);
            if (e)
                e->acked |= 1u << p->idx;
            p->lag_bytes -= h->epoch < p->lag_bytes ? h->epoch : p->lag_bytes;
            p->acked_reqs++;
            if (what == RT_WRITE)
                p->acked_bytes += h->epoch; /* byte count */
            else if (what == RT_TRIM)
                p->trimmed_bytes += h->epoch;
            else if (what == RT_ZERO)
                p->zeroed_bytes += h->epoch;
        }
    }
    if (h->type == RT_BARRIER_ACK) {
        if (h->seq > p->barrier_acked || p->barrier_acked == UINT64_MAX)
            p->barrier_acked = h->seq;
        tl_retire();
        while (p->rsq_tail < p->rsq_head && p->rsq[p->rsq_tail % RSQ_CAP].seq < h->seq) {
            /* durable there: a page written while it was not still marks it */
            const struct rs_unconfirmed *u = &p->rsq[p->rsq_tail++ % RSQ_CAP];
            if (p->slot >= 0 && N.bm_on[p->slot])
                bm_touch_bytes(&N.bm[p->slot], u->off, u->len);
        }
        if (p->rsq_confirm && h->seq >= p->rsq_confirm)
            p->rsq_confirm = 0;
        if (p->gen_barrier && h->seq >= p->gen_barrier) {
            p->gen_confirmed = p->gen_sent;
            p->gen_barrier = 0;
        }
        if (p->done_seq && h->seq == p->done_seq) {
            /* the resync is complete and durable there */
            struct resync *rs = &p->sync;
            uint64_t ms = now_ms() - rs->start_ms + 1;
            p->last = (struct last_sync){ .bytes = rs->sent, .ms = ms, .skipped = rs->skipped };
            snprintf(p->last.reason, sizeof p->last.reason, "%s",
                     rs->kind == RK_FULL ? "full sync" : rs->kind == RK_CSUM ? "checksum resync"
                                                                             : "bitmap resync");
            resync_abort(rs); /* finished: nothing is locked any more */
            p->done_seq = 0;
            p->failed = false;
            dialer_reset(&p->dialer);
            p->disk = DS_UPTODATE;
            p->rs = PR_ESTABLISHED;
            log_info("peer %s: %s done, %llu MiB sent (%llu bytes)%s in %.1f s (%.0f MiB/s); "
                     "UpToDate", p->addr, p->last.reason, (unsigned long long)(rs->sent >> 20),
                     (unsigned long long)rs->sent,
                     rs->skipped ? ", the rest equal by checksum" : "", ms / 1000.0,
                     (rs->sent >> 20) * 1000.0 / ms);
        }
        if (p->clean_seq && h->seq == p->clean_seq)
            p->clean_acked = true;
    }
    return 1;
}

int tx_on_ack(struct peer *p, const struct repl_hdr *h, const uint8_t *payload)
{
    struct nm_req *r = T.table[h->seq % TABLE];

    if (h->type == RT_ACK_WRITE && (h->flags & RF_RESYNC) && h->len == 8)
        resync_acked(&p->sync, get_be64(payload), h->epoch);
    if (sender_on_ack(p, h) < 0 || p->st != LK_UP)
        return -1; /* dropped: its buffer is gone */
    if (!r || r->seq != h->seq)
        return 1; /* protocol A, or an ack nobody waits for */
    bool counts = N.cfg.protocol == 'B' ? h->type == RT_ACK_RECV
                                        : h->type == RT_ACK_WRITE || h->type == RT_BARRIER_ACK;
    if (counts)
        stop_waiting(p, r, true);
    return 1;
}

int tx_on_csum(struct peer *p, const struct repl_hdr *h, const uint8_t *payload)
{
    uint64_t off = get_be64(payload);
    uint32_t len = get_be32(payload + 8);

    if (!p->sync.active)
        return 1; /* an answer to a sync that ended */
    if (len == 0 || len > REPL_CSUM_MAX || h->len != 12 + (len + 4095) / 4096 * REPL_HASH ||
        resync_hashes(&p->sync, h->seq, off, len, payload + 12) < 0) {
        peer_drop(p, "checksum answer that matches no request");
        return -1;
    }
    return 1;
}

/* ---- resync (src/resync/ runs it; these hand its frames to a peer) ---- */

void sender_sync_start(struct peer *p, enum resync_kind kind, const char *reason)
{
    struct bitmap *bm = &N.bm[p->slot];

    if (kind == RK_FULL) {
        /* every block; recorded before anything is sent, so that a crash
         * here resumes the sync instead of forgetting it */
        gen_bitmap_start(N.meta, p->slot);
        bm_set_all(bm);
        node_flush_bitmaps();
    } else if (kind != RK_VERIFY) {
        gen_bitmap_start(N.meta, p->slot);
        node_flush_bitmaps();
    }
    if (kind == RK_VERIFY) {
        resync_begin(&p->sync, p, kind, bm);
        p->rs = PR_VERIFY;
        p->verify_mismatch = 0;
        log_info("peer %s: online verify starts (%llu MiB)", p->addr,
                 (unsigned long long)(N.self.data_size >> 20));
        return;
    }
    if ((kind == RK_BITMAP || kind == RK_FULL) && N.cfg.resync_csums)
        kind = RK_CSUM; /* every block marked, only those that differ move */
    /* the target marks itself Inconsistent and takes the id its bitmap
     * counts from, so an interrupted sync resumes by bitmap */
    uint64_t base = N.meta->peer_bitmap_gen[p->slot];
    uint64_t seq = sender_barrier(p, RF_SYNC_START, base);
    if (!seq)
        return;
    p->gen_sent = base;
    p->gen_barrier = seq;
    p->rs = PR_SYNC_SOURCE;
    p->disk = DS_INCONSISTENT;
    p->done_seq = 0;
    resync_begin(&p->sync, p, kind, bm);
    log_info("peer %s: %s of %llu MiB starts (SyncSource: %s)", p->addr,
             kind == RK_FULL ? "full sync" : kind == RK_CSUM ? "checksum resync" : "bitmap resync",
             (unsigned long long)(bm_bytes(bm) >> 20), reason);
}

static bool queue_data(void *peer, struct resync_chunk *c, uint64_t off, uint32_t len)
{
    struct peer *p = peer;
    uint8_t extra[8];

    if (p->st != LK_UP || p->rsq_head - p->rsq_tail >= RSQ_CAP)
        return false;
    if (!p->rsq && !(p->rsq = malloc(RSQ_CAP * sizeof *p->rsq)))
        return false;
    put_be64(extra, off);
    uint64_t seq = ++T.seq;
    if (!frame_or_drop(p, RT_WRITE, RF_RESYNC, seq, extra, 8, c->buf + (off - c->off), len,
                       chunk_frame_done, c))
        return false;
    /* its bits are cleared when acknowledged; if the link drops before a
     * barrier confirms it durable, its range is set again */
    p->rsq[p->rsq_head++ % RSQ_CAP] = (struct rs_unconfirmed){ .seq = seq, .off = off, .len = len };
    p->rsq_since += len;
    if ((p->rsq_head - p->rsq_tail >= RSQ_CAP / 4 || p->rsq_since >= RSQ_CONFIRM_BYTES) &&
        !p->rsq_confirm) {
        p->rsq_confirm = sender_barrier(p, RF_CONFIRM, 0);
        p->rsq_since = 0;
    }
    return true;
}

/* Resync data acknowledged but not yet confirmed durable has its bits clear
 * in memory (a pass must not send it again), but a bitmap page written now
 * must still mark it: after a crash of both nodes the target may not have
 * it, and the source would otherwise resume as if it had. */
bool sender_mark_unconfirmed(int slot, uint32_t page, uint8_t *buf)
{
    bool changed = false;
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        const struct peer *p = &N.peers[i];
        if (!p->used || p->slot != slot)
            continue;
        for (uint64_t k = p->rsq_tail; k < p->rsq_head; k++) {
            const struct rs_unconfirmed *u = &p->rsq[k % RSQ_CAP];
            changed |= bm_page_mark_bytes(&N.bm[slot], page, buf, u->off, u->len);
        }
    }
    return changed;
}

static bool queue_hash(void *peer, struct resync_chunk *c, bool verify)
{
    struct peer *p = peer;
    uint8_t extra[12];

    if (p->st != LK_UP)
        return false;
    put_be64(extra, c->off);
    put_be32(extra + 8, c->len);
    c->seq = ++T.seq;
    return frame_or_drop(p, RT_CSUM_REQ, verify ? RF_VERIFY : 0, c->seq, extra, 12, NULL, 0,
                         NULL, NULL);
}

/* The controller: while clients write, a client write never finds more
 * than about RESYNC_YIELD bytes of resync data ahead of it on the link (in
 * our queue and the socket's: it waits behind all of it), sent in small
 * chunks; otherwise the sync runs at full speed. */
static uint32_t budget(void *peer, uint32_t inflight)
{
    struct peer *p = peer;
    if (p->st != LK_UP || p->rsq_head - p->rsq_tail >= RSQ_CAP)
        return 0;
    if (N.cfg.no_resync_control || !sender_client_busy())
        return inflight < RESYNC_INFLIGHT ? RESYNC_CHUNK : 0;
    return inflight + stream_backlog(p->s) < RESYNC_YIELD ? RESYNC_SMALL : 0;
}

static uint64_t queue_done(void *peer)
{
    struct peer *p = peer;
    if (p->st != LK_UP)
        return 0;
    /* the target is in sync from here on: it takes our id with this
     * barrier, and our bitmap id for it goes (a drop after this sets bits
     * from our current id, as for any peer in sync) */
    uint64_t seq = sender_barrier(p, RF_SYNC_DONE, N.meta->current_gen);
    if (!seq)
        return 0;
    gen_bitmap_clear(N.meta, p->slot);
    node_save_meta("the end of a resync");
    p->done_seq = seq;
    p->gen_sent = N.meta->current_gen;
    p->gen_barrier = seq;
    return seq;
}

static void sync_verified(void *peer)
{
    struct peer *p = peer;
    struct resync *rs = &p->sync;
    uint64_t ms = now_ms() - rs->start_ms + 1;

    p->verify_mismatch = rs->mismatched;
    p->last = (struct last_sync){ .bytes = 0, .ms = ms };
    snprintf(p->last.reason, sizeof p->last.reason, "verify");
    resync_abort(rs);
    p->rs = PR_ESTABLISHED;
    if (!rs->mismatched) {
        log_info("peer %s: online verify done in %.1f s: the disks are equal", p->addr,
                 ms / 1000.0);
        return;
    }
    log_warn("peer %s: online verify done in %.1f s: %llu blocks (%llu KiB) differ; "
             "resyncing them", p->addr, ms / 1000.0, (unsigned long long)(rs->mismatched >> 12),
             (unsigned long long)(rs->mismatched >> 10));
    sender_sync_start(p, RK_BITMAP, "blocks found by online verify");
}

static void sync_failed(void *peer, const char *why) { peer_drop(peer, why); }

/* ---- clean stop: each in-sync peer hears it last, after everything ---- */

void sender_stop_begin(void)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        if (!p->used || !peer_sending(p) || p->rs != PR_ESTABLISHED)
            continue;
        p->clean_seq = sender_barrier(p, RF_CLEAN, 0);
        p->clean_acked = false;
        if (p->clean_seq)
            stream_flush(p->s);
    }
}

bool sender_stop_done(void)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        const struct peer *p = &N.peers[i];
        if (p->used && p->st == LK_UP && p->clean_seq && !p->clean_acked)
            return false;
    }
    return true;
}
