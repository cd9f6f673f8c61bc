/* Links to peers. Either side may dial (--peer) or accept (--listen); a
 * link is one stream of the connection layer (src/conn). Its life:
 *
 *   HELLO both ways (who: node id, size, role, protocol) -> GENS both ways
 *   (generation ids, include/gen.h) -> both sides decide the same thing:
 *   nothing to do / a resync (the target sends its bitmap of the source,
 *   the source ORs it into its own and starts once it is primary) / split
 *   brain or a refusal (the link closes, said once in the log)
 *   -> up: the primary's stream flows to the others; STATE tells a role
 *   change, a new generation id, an outdate; PING keeps it honest.
 *
 * Handshakes are bounded: 5 s, and a stranger still in its handshake makes
 * room for a new connection when every slot is taken. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repl-int.h"

static void send_gens(struct peer *p);
static void decide(struct peer *p);
static void refuse(struct peer *p, const char *why, bool error);

struct peer *peer_of(struct stream *s) { return s->arg; }

const char *peer_repl_name(enum peer_repl rs)
{
    static const char *names[] = { "Off", "Established", "SyncSource", "SyncTarget",
                                   "PausedSyncS", "PausedSyncT", "VerifyS", "split-brain" };
    return rs <= PR_SPLIT_BRAIN ? names[rs] : "Off";
}

/* Our stream goes to p: we are primary and it is in sync (or being
 * verified), or we are its sync source (primary or not). */
bool peer_sending(const struct peer *p)
{
    if (p->st != LK_UP || p->primary)
        return false;
    return p->rs == PR_SYNC_SOURCE ||
           (N.primary && (p->rs == PR_ESTABLISHED || p->rs == PR_VERIFY));
}

/* p's stream comes to us: it is primary and we are in sync, or it is our
 * sync source. */
bool peer_receiving(const struct peer *p)
{
    if (p->st != LK_UP)
        return false;
    return p->rs == PR_PAUSED_TARGET || p->rs == PR_SYNC_TARGET ||
           (p->primary && p->rs == PR_ESTABLISHED);
}

int link_frame(struct peer *p, uint8_t type, uint16_t flags, uint64_t seq, uint32_t epoch,
               uint32_t aux, const uint8_t *extra, uint8_t extra_len, const void *data,
               uint32_t data_len, stream_done_fn done, void *arg)
{
    struct repl_hdr h = { .type = type, .flags = flags, .seq = seq, .epoch = epoch, .aux = aux,
                          .len = extra_len + data_len };
    uint8_t hdr[REPL_HDR + 16];

    if (!p->s || p->s->dead || extra_len > 16)
        return -EPIPE;
    repl_encode_hdr(hdr, &h);
    if (extra_len)
        memcpy(hdr + REPL_HDR, extra, extra_len);
    return stream_queue(p->s, hdr, REPL_HDR + extra_len, data, data_len, done, arg);
}

int link_write(struct peer *p, uint8_t type, uint16_t flags, uint64_t seq, uint32_t epoch,
               uint32_t aux, const void *pay, uint32_t len)
{
    struct repl_hdr h = { .type = type, .flags = flags, .seq = seq, .epoch = epoch, .aux = aux,
                          .len = len };
    uint8_t b[REPL_HDR + 12 + (REPL_CSUM_MAX / 4096) * REPL_HASH];

    if (!p->s || p->s->dead || len > sizeof b - REPL_HDR)
        return -EPIPE;
    repl_encode_hdr(b, &h);
    if (len)
        memcpy(b + REPL_HDR, pay, len);
    return stream_write(p->s, b, REPL_HDR + len);
}

void link_send_state(struct peer *p, uint32_t kind, uint64_t value)
{
    uint8_t v[8];
    put_be64(v, value);
    if (link_write(p, RT_STATE, 0, 0, 0, kind, v, 8) < 0)
        peer_drop(p, "cannot send a state change");
}

void link_kill(struct peer *p, const char *why)
{
    if (p->s && !p->s->dead)
        stream_close(p->s, why);
}

/* ---- dropping ---- */

void peer_drop(struct peer *p, const char *why)
{
    struct stream *s = p->s;
    bool sending = peer_sending(p), receiving = peer_receiving(p), was_up = p->st == LK_UP;

    if (p->st == LK_IDLE)
        return;
    if (was_up)
        log_warn("peer %s: %s", p->addr, why ? why : "disconnected");
    else if (why)
        log_info("peer %s: %s", p->addr, why);
    if (sending) {
        sender_link_down(p); /* its bitmap takes what it may lack */
        if (p->rs == PR_ESTABLISHED || p->rs == PR_VERIFY)
            N.rotate_pending = true; /* a write from now on is one it lacks */
    }
    resync_abort(&p->sync);
    if (receiving || was_up)
        rx_closed(p);
    if (p->rs != PR_SPLIT_BRAIN)
        p->rs = PR_OFF;
    p->st = LK_IDLE;
    p->s = NULL; /* its on_close only frees it now */
    p->got_hello = p->got_gens = p->sent_gens = p->bm_out = p->bm_in_done = false;
    p->clean_seq = p->done_seq = p->gen_barrier = 0;
    if (s)
        stream_close(s, why);
    dialer_lost(&p->dialer, now_ms());
    if (was_up && p->slot >= 0)
        node_flush_bitmaps(); /* what it lacks, on disk now */
    if (!p->dial && !p->standalone)
        p->used = false; /* it called us: it will call again */
}

/* ---- HELLO and GENS ---- */

static void send_hello(struct peer *p)
{
    struct repl_hello hi = { .data_size = N.self.data_size, .node_id = N.meta->node_id,
                             .block_size = 4096,
                             .role = N.primary ? ROLE_PRIMARY : ROLE_SECONDARY,
                             .protocol = N.cfg.protocol,
                             .disk_state = N.disk == DS_FAILED ? DS_INCONSISTENT : N.disk };
    uint8_t b[REPL_HELLO_SIZE];

    repl_encode_hello(b, &hi);
    if (link_write(p, RT_HELLO, 0, 0, 0, 0, b, sizeof b) < 0)
        peer_drop(p, "cannot send HELLO");
}

/* Another link to the same node, in its handshake or up. */
static struct peer *twin(const struct peer *p, uint64_t node_id)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *q = &N.peers[i];
        if (q != p && q->used && q->st != LK_IDLE && q->got_hello && q->node_id == node_id)
            return q;
    }
    return NULL;
}

int link_on_hello(struct peer *p, const struct repl_hdr *h, const uint8_t *payload)
{
    const char *why;
    char msg[200];
    struct peer *t;

    if (p->got_hello) {
        peer_drop(p, "second HELLO");
        return -1;
    }
    if (repl_decode_hello(payload, h->len, &p->hello, &why) < 0) {
        peer_drop(p, why);
        return -1;
    }
    if (p->hello.node_id == N.meta->node_id) {
        peer_drop(p, "that is this node itself");
        return -1;
    }
    if ((t = twin(p, p->hello.node_id))) {
        /* two links to one node (both sides dialled): both sides keep the
         * one dialled by the node with the lower id, whatever state either
         * is in, so they always keep the same one */
        bool mine_lower = N.meta->node_id < p->hello.node_id;
        if (p->dial != mine_lower) {
            p->node_id = p->hello.node_id; /* not dialled while the other link lives */
            stream_flush(p->s); /* our HELLO: the other side learns who we are too */
            peer_drop(p, "already connected to this node (the other link stays)");
            return -1;
        }
        peer_drop(t, "already connected to this node (the other link stays)");
    }
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        const struct peer *q = &N.peers[i];
        if (q != p && q->used && q->standalone && q->node_id == p->hello.node_id) {
            peer_drop(p, q->rs == PR_SPLIT_BRAIN
                             ? "refused: split brain with this node (resolve it, then connect)"
                             : "refused: disconnected by the admin (nbdmirror connect)");
            return -1;
        }
    }
    p->node_id = p->hello.node_id;
    p->got_hello = true;
    p->primary = p->hello.role == ROLE_PRIMARY;
    /* sizes: a node never receives more than its disk holds */
    if (N.primary && p->hello.data_size < N.self.data_size) {
        snprintf(msg, sizeof msg, "refused: its disk (%llu bytes) is smaller than ours (%llu bytes)",
                 (unsigned long long)p->hello.data_size, (unsigned long long)N.self.data_size);
        refuse(p, msg, true);
        return -1;
    }
    if (p->primary && p->hello.data_size > N.self.data_size) {
        snprintf(msg, sizeof msg, "refused: the primary's disk (%llu bytes) is larger than ours "
                 "(%llu bytes)", (unsigned long long)p->hello.data_size,
                 (unsigned long long)N.self.data_size);
        refuse(p, msg, true);
        return -1;
    }

    p->slot = node_slot_for(p->node_id);
    if (p->slot < 0) {
        peer_drop(p, "refused: every metadata slot for peers is taken");
        return -1;
    }
    send_gens(p);
    if (p->got_gens)
        decide(p);
    return p->s ? 1 : -1;
}

/* Our ids for p, as sent: both sides decide on exactly the two views that
 * crossed the link, whatever changes here meanwhile. */
static void send_gens(struct peer *p)
{
    struct gen_view *v = &p->my_gens;
    uint8_t b[REPL_GENS_SIZE];

    *v = (struct gen_view){
        .node_id = N.meta->node_id, .current = N.meta->current_gen,
        .bitmap = N.meta->peer_bitmap_gen[p->slot], .bits = node_bm_count(p->slot),
        .primary_since = N.meta->primary_since,
        .disk = N.disk == DS_FAILED ? DS_INCONSISTENT : N.disk, .primary = N.primary,
        .want_full = N.meta->flags & META_F_FULL_SYNC, .discard_my_data = N.discard_my_data,
        .sb_policy = N.cfg.after_sb_0pri,
    };
    memcpy(v->history, N.meta->history_gen, sizeof v->history);
    repl_encode_gens(b, v);
    if (link_write(p, RT_GENS, 0, 0, 0, 0, b, sizeof b) == 0)
        p->sent_gens = true;
    else
        peer_drop(p, "cannot send GENS");
}

int link_on_gens(struct peer *p, const struct repl_hdr *h, const uint8_t *payload)
{
    const char *why;

    if (p->got_gens || !p->got_hello) {
        peer_drop(p, p->got_gens ? "second GENS" : "GENS before HELLO");
        return -1;
    }
    if (repl_decode_gens(payload, h->len, &p->gens, &why) < 0 ||
        p->gens.node_id != p->node_id) {
        peer_drop(p, p->gens.node_id != p->node_id ? "GENS of another node" : why);
        return -1;
    }
    p->got_gens = true;
    if (p->sent_gens)
        decide(p);
    return p->s ? 1 : -1;
}

/* The link is refused for now: said once (until the reason changes). */
static void refuse(struct peer *p, const char *why, bool error)
{
    stream_flush(p->s); /* our GENS: the other side decides the same */
    if (strcmp(p->refused, why)) {
        snprintf(p->refused, sizeof p->refused, "%s", why);
        if (error)
            log_err("peer %s: %s", p->addr, why);
        else
            log_warn("peer %s: %s", p->addr, why);
    }
    snprintf(p->last_error, sizeof p->last_error, "%s", why);
    peer_drop(p, NULL);
    dialer_slow(&p->dialer, now_ms());
}

/* Sends the next pieces of our bitmap for p (we are its sync target). */
static void send_bitmap(struct peer *p)
{
    const struct bitmap *bm = &N.bm[p->slot];
    const uint64_t piece_bits = BM_PIECE * 8;
    uint8_t b[8 + BM_PIECE];

    while (p->bm_out && stream_write_room(p->s) >= 2 * (REPL_HDR + sizeof b)) {
        uint64_t first = bm_next_set(bm, p->bm_out_pos);
        if (first >= bm->nbits) {
            memset(b, 0, 9);
            if (link_write(p, RT_BITMAP, RF_LAST, 0, 0, 0, b, 9) < 0)
                peer_drop(p, "cannot send the bitmap");
            p->bm_out = false;
            return;
        }
        first = first / piece_bits * piece_bits;
        uint64_t n = bm->nbits - first < piece_bits ? bm->nbits - first : piece_bits;
        memset(b, 0, sizeof b);
        put_be64(b, first);
        for (uint64_t i = 0; i < n; i++)
            if (bm_test(bm, first + i))
                b[8 + i / 8] |= 1u << (i % 8);
        if (link_write(p, RT_BITMAP, 0, 0, 0, 0, b, 8 + (n + 7) / 8) < 0) {
            peer_drop(p, "cannot send the bitmap");
            return;
        }
        p->bm_out_pos = first + n;
    }
}

static enum resync_kind kind_of(enum gen_decision d)
{
    return d == GD_FULL_SOURCE ? RK_FULL : RK_BITMAP;
}

/* A sync we are the source of can start: the target's bitmap is here. */
static void maybe_start_sync(struct peer *p)
{
    if (p->rs != PR_PAUSED_SOURCE || !p->bm_in_done || p->st != LK_UP)
        return;
    p->rs = PR_ESTABLISHED; /* takes the stream from here on */
    sender_link_up(p);
    sender_sync_start(p, kind_of(p->decision),
                      p->decision == GD_FULL_SOURCE ? "it has no usable data" : "by bitmap");
}

static void decide(struct peer *p)
{
    const struct gen_view me = p->my_gens;
    const char *why;

    enum gen_decision d = gen_decide(&me, &p->gens, &why);
    p->decision = d;
    if (d == GD_BITMAP_TARGET || d == GD_FULL_TARGET) {
        /* one source at a time (and a primary's stream is one) */
        for (int i = 0; i < REPL_MAX_PEERS; i++) {
            const struct peer *q = &N.peers[i];
            if (q != p && q->used && peer_receiving(q)) {
                refuse(p, "it has data we lack, but another node is our source now", false);
                return;
            }
        }
    }
    /* --discard-my-data holds until a resync to us ends (receiver.c), or
     * a handshake shows there is nothing to discard */
    if (N.discard_my_data && (d == GD_NONE || d == GD_BITMAP_SOURCE || d == GD_FULL_SOURCE))
        N.discard_my_data = false;
    switch (d) {
    case GD_SPLIT_BRAIN:
        log_err("peer %s: SPLIT BRAIN: both nodes wrote since they parted (my id %016llx, its "
                "%016llx); no data moves. Resolve: on the node whose changes are to be thrown "
                "away run 'nbdmirror demote' then 'nbdmirror connect --discard-my-data', and "
                "'nbdmirror connect' on the other", p->addr,
                (unsigned long long)me.current, (unsigned long long)p->gens.current);
        snprintf(p->last_error, sizeof p->last_error, "split brain (%s)", why);
        p->rs = PR_SPLIT_BRAIN;
        p->standalone = true;
        stream_flush(p->s); /* our GENS: the other side decides the same */
        peer_drop(p, NULL);
        return;
    case GD_REFUSED:
    case GD_NO_SOURCE:
        refuse(p, why, d == GD_REFUSED);
        return;
    default:
        break;
    }
    p->refused[0] = '\0';
    p->last_error[0] = p->failed ? p->last_error[0] : '\0';
    p->st = LK_UP;
    p->disk = p->gens.disk;
    stream_drop_blob(p->s);
    if (!p->failed)
        dialer_reset(&p->dialer);
    log_info("peer %s: connected (%s, its disk %s, protocol %c): %s (%s)", p->addr,
             p->primary ? "primary" : "secondary", disk_state_name(p->disk),
             p->primary ? p->hello.protocol : N.cfg.protocol, gen_decision_name(d), why);
    switch (d) {
    case GD_NONE:
        p->rs = PR_ESTABLISHED;
        p->gen_confirmed = me.current;
        if (N.disk == DS_OUTDATED && p->disk == DS_UPTODATE) {
            node_set_disk(DS_UPTODATE); /* the same data as an UpToDate node */
            log_info("disk UpToDate (equal to %s)", p->addr);
        }
        if (peer_sending(p)) {
            sender_link_up(p);
            /* written here since our GENS left (the peer was not taking the
             * stream yet): those blocks first */
            if (node_bm_count(p->slot))
                sender_sync_start(p, RK_BITMAP, "blocks written during the handshake");
        }
        break;
    case GD_BITMAP_SOURCE:
    case GD_FULL_SOURCE:
        p->rs = PR_PAUSED_SOURCE; /* until its bitmap is here */
        if (p->disk == DS_UPTODATE)
            p->disk = DS_OUTDATED; /* it lacks blocks: it says so itself (below) */
        break;
    case GD_BITMAP_TARGET:
    case GD_FULL_TARGET:
        p->rs = PR_PAUSED_TARGET;
        if (N.disk == DS_UPTODATE)
            node_set_disk(DS_OUTDATED); /* we know we are behind */
        p->bm_out = true;
        p->bm_out_pos = 0;
        send_bitmap(p);
        break;
    default:
        break;
    }
}

int link_on_bitmap(struct peer *p, const struct repl_hdr *h, const uint8_t *payload)
{
    struct bitmap *bm = &N.bm[p->slot];
    uint64_t first = get_be64(payload), n = (uint64_t)(h->len - 8) * 8;

    if (p->rs != PR_PAUSED_SOURCE || p->bm_in_done) {
        peer_drop(p, "a bitmap nobody asked for");
        return -1;
    }
    if (!(h->flags & RF_LAST)) {
        if (first >= bm->nbits || first % 8) {
            peer_drop(p, "a bitmap piece outside the disk");
            return -1;
        }
        for (uint64_t i = 0; i < n; i++)
            if (payload[8 + i / 8] >> (i % 8) & 1) {
                if (first + i >= bm->nbits) {
                    peer_drop(p, "a bitmap piece outside the disk");
                    return -1;
                }
                bm_set_blocks(bm, first + i, 1);
            }
        return 1;
    }
    p->bm_in_done = true;
    maybe_start_sync(p);
    return 1;
}

int link_on_state(struct peer *p, const struct repl_hdr *h, const uint8_t *payload)
{
    uint64_t v = get_be64(payload);

    switch (h->aux) {
    case ST_ROLE:
        if (v == ROLE_PRIMARY && N.primary) {
            peer_drop(p, "refused: both nodes are primary (demote one)");
            return -1;
        }
        if (v == ROLE_PRIMARY && (p->rs == PR_PAUSED_SOURCE || p->rs == PR_SYNC_SOURCE)) {
            peer_drop(p, "the node behind us was promoted: deciding again");
            return -1;
        }
        p->primary = v == ROLE_PRIMARY;
        log_info("peer %s is %s now", p->addr, p->primary ? "primary" : "secondary");
        return 1;
    case ST_GEN:
        if (p->primary && p->rs == PR_ESTABLISHED)
            node_adopt_gen(v, "the primary's new generation");
        return 1;
    case ST_OUTDATE:
        if (N.disk == DS_UPTODATE) {
            node_set_disk(DS_OUTDATED);
            log_warn("peer %s disconnects us and writes on: disk Outdated", p->addr);
        }
        return 1;
    default:
        peer_drop(p, "unknown state change");
        return -1;
    }
}

int link_on_ping(struct peer *p, const struct repl_hdr *h, const uint8_t *payload)
{
    (void)payload;
    if (link_write(p, RT_PONG, 0, h->seq, 0, 0, NULL, 0) < 0)
        peer_drop(p, "cannot answer PING");
    return p->s ? 1 : -1;
}

int link_on_pong(struct peer *p, const struct repl_hdr *h, const uint8_t *payload)
{
    (void)p, (void)h, (void)payload;
    return 1;
}

/* ---- the stream's callbacks ---- */

/* The parser: one frame from the staged bytes (frames applied in order are
 * the receiver's; WRITE data goes straight into its buffer). */
static size_t link_data(struct stream *s, uint8_t *b, size_t len)
{
    struct peer *p = s->arg;
    struct repl_hdr h;
    const char *why = NULL;
    int r = repl_frame_start(b, len, &h, &why);

    if (r < 0) {
        peer_drop(p, why);
        return 0;
    }
    if (r == 0)
        return 0;
    if (repl_frame_waits(h.type))
        return rx_parse(p, b, len, &h);
    if (REPL_HDR + h.len > LINK_IN_CAP) {
        peer_drop(p, "frame too large");
        return 0;
    }
    if (len < REPL_HDR + h.len)
        return 0;
    if (repl_frame_dispatch(p, &h, b + REPL_HDR, &why) < 0) {
        if (p->s == s && why)
            peer_drop(p, why);
        return 0; /* if it dropped p, b is gone: the layer stops */
    }
    return REPL_HDR + h.len;
}

static void link_payload(struct stream *s, void *buf, uint32_t len)
{
    (void)buf, (void)len;
    rx_payload(s->arg);
}

/* With --peer-psk or --peer-certificates nothing but the TLS handshake is
 * read before TLS is up: HELLO goes once it is (link_secure). */
static void link_connected(struct stream *s)
{
    struct peer *p = s->arg;
    p->st = LK_HELLO;
    if (N.cfg.peer_tls)
        stream_start_tls(s, N.cfg.peer_tls, false);
    else
        send_hello(p);
}

static void link_secure(struct stream *s)
{
    struct peer *p = s->arg;
    char d[128];
    tls_describe(s->tls, d, sizeof d);
    log_info("peer %s: authenticated (%s), %s", p->addr,
             tls_creds_are_psk(N.cfg.peer_tls) ? "pre-shared key" : "X.509", d);
    send_hello(p);
}

static void link_closed(struct stream *s, const char *why)
{
    struct peer *p = s->arg;

    if (p->s == s && s->tls_creds && !s->tls_up && !s->connecting) {
        /* it did not prove it holds the secret (or we do not hold its) */
        snprintf(p->last_error, sizeof p->last_error, "refused: %s (the same %s on both nodes?)",
                 why == STREAM_EOF || !why ? "closed during the TLS handshake" : why,
                 tls_creds_are_psk(N.cfg.peer_tls) ? "key" : "CA");
        log_warn("peer %s: %s", p->addr, p->last_error);
        peer_drop(p, NULL);
        loop_free_later(s);
        return;
    }
    if (p->s == s) /* closed by the layer (by the peer, an error), not by peer_drop */
        peer_drop(p, s->connecting ? NULL /* down: retried with backoff */
                     : why == STREAM_EOF ? (p->st == LK_UP ? "connection closed"
                                                          : "closed during the handshake")
                     : why);
    loop_free_later(s);
}

static const struct stream_ops link_ops = { .on_data = link_data, .on_payload = link_payload,
                                            .on_connected = link_connected,
                                            .on_secure = link_secure,
                                            .on_close = link_closed };

static void attach(struct peer *p, int fd, bool connecting)
{
    struct stream *s = malloc(sizeof *s);
    int r = -ENOMEM;

    if (!s)
        close(fd);
    else if ((r = stream_init(s, fd, p->addr, &link_ops, p, LINK_IN_CAP, LINK_SQ_MAX,
                              LINK_SQ_MAX * 3 / 4, connecting)) < 0)
        free(s);
    if (r < 0) {
        log_warn("peer %s: %s", p->addr, strerror(-r));
        dialer_lost(&p->dialer, now_ms());
        if (!p->dial)
            p->used = false;
        return;
    }
    p->s = s;
    p->st = connecting ? LK_CONNECTING : LK_HELLO;
    p->born = now_ms();
    p->got_hello = p->got_gens = p->sent_gens = false;
    p->rs = p->rs == PR_SPLIT_BRAIN ? PR_SPLIT_BRAIN : PR_OFF;
    if (!connecting && N.cfg.peer_tls)
        stream_start_tls(s, N.cfg.peer_tls, true);
    else if (!connecting)
        send_hello(p);
}

static void on_accept(struct listener *ls, int fd, const char *addr)
{
    struct peer *p = NULL, *oldest = NULL;

    (void)ls;
    if (N.meta_failed) {
        close(fd); /* nothing may be replicated here until a restart */
        return;
    }
    for (int i = 0; i < REPL_MAX_PEERS && !p; i++) {
        struct peer *q = &N.peers[i];
        if (!q->used && rx_idle(q) && !resync_busy(&q->sync))
            p = q;
        else if (q->used && !q->dial && q->st == LK_HELLO && (!oldest || q->born < oldest->born))
            oldest = q;
    }
    if (!p && oldest && rx_idle(oldest) && !resync_busy(&oldest->sync)) {
        /* full: whoever has been silent in its handshake longest makes
         * room, so idle strangers cannot lock the real peers out */
        peer_drop(oldest, "handshake not completed; its place is needed");
        p = oldest->used ? NULL : oldest;
    }
    if (!p) {
        log_warn("replication: refusing %s: too many connections", addr);
        close(fd);
        return;
    }
    int idx = p->idx;
    memset(p, 0, offsetof(struct peer, sync)); /* sync and rx are idle: kept */
    p->idx = idx;
    p->used = true;
    p->slot = -1;
    p->barrier_acked = UINT64_MAX;
    rx_reset(p);
    dialer_init(&p->dialer);
    snprintf(p->addr, sizeof p->addr, "%s", addr);
    attach(p, fd, false);
}

int link_start(void)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        N.peers[i].idx = i;
        N.peers[i].slot = -1;
        N.peers[i].barrier_acked = UINT64_MAX;
    }
    for (int i = 0; i < N.cfg.npeers && i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        p->used = p->dial = true;
        dialer_init(&p->dialer);
        snprintf(p->addr, sizeof p->addr, "%s", N.cfg.peers[i]);
    }
    N.ls.fd = -1;
    if (N.cfg.listen && !N.cfg.peer_tls)
        log_warn("the replication port %s accepts unauthenticated peers: anyone who can reach "
                 "it can write this disk (give --peer-psk or --peer-certificates)", N.cfg.listen);
    if (N.cfg.listen)
        return listener_open(&N.ls, N.cfg.listen, on_accept, NULL);
    return 0;
}

void link_start_pending_syncs(void)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        if (!p->used || p->st != LK_UP)
            continue;
        if (p->rs == PR_ESTABLISHED && !p->primary)
            sender_link_up(p);
        maybe_start_sync(p);
    }
}

void link_role_changed(void)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        if (p->used && p->st == LK_UP)
            link_send_state(p, ST_ROLE, N.primary ? ROLE_PRIMARY : ROLE_SECONDARY);
    }
}

void link_tick(void)
{
    uint64_t now = now_ms();

    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        rx_tick(p);
        if (!p->used)
            continue;
        if (p->st == LK_IDLE) {
            if (p->dial && !p->standalone && !N.meta_failed && rx_idle(p) &&
                dialer_due(&p->dialer, now) && !(p->node_id && twin(p, p->node_id))) {
                int fd = dialer_connect(&p->dialer, p->addr, now);
                if (fd >= 0)
                    attach(p, fd, true); /* HELLO goes once connected */
            }
            continue;
        }
        if (p->st != LK_UP) {
            if (now - p->born > HELLO_TIMEOUT_MS)
                peer_drop(p, "no HELLO within 5 s");
            continue;
        }
        /* silence: a peer that answers nothing, not even PING, is gone (not
         * while we hold its input ourselves) */
        if (!p->s->held && now - p->s->last_rx > N.cfg.timeout_ms) {
            peer_drop(p, "no answer within the timeout");
            continue;
        }
        if (now - p->s->last_tx > N.cfg.timeout_ms / 4 && !stream_queued(p->s))
            link_write(p, RT_PING, 0, 0, 0, 0, NULL, 0);
        if (p->bm_out)
            send_bitmap(p);
        if (p->sync.active)
            resync_step(&p->sync, now);
    }
}

void link_stop(void)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        if (p->used && p->st != LK_IDLE) {
            struct stream *s = p->s;
            if (peer_sending(p))
                sender_link_down(p);
            p->st = LK_IDLE;
            p->s = NULL;
            stream_flush(s); /* a last try to hand over what is queued */
            stream_close(s, NULL);
        }
    }
    listener_close(&N.ls);
}

/* ---- control: connect / disconnect ---- */

static bool matches(const struct peer *p, const char *addr)
{
    return !addr || !*addr || !strcmp(addr, p->addr);
}

int link_connect(const char *addr, char *msg, size_t len)
{
    int n = 0;
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        if (!p->used || !matches(p, addr))
            continue;
        if (p->standalone) {
            p->standalone = false;
            if (p->rs == PR_SPLIT_BRAIN)
                p->rs = PR_OFF;
            dialer_reset(&p->dialer);
            if (!p->dial)
                p->used = false; /* it will call again */
            n++;
        } else if (p->st == LK_IDLE && p->dial) {
            dialer_reset(&p->dialer);
            p->refused[0] = '\0';
            n++;
        }
    }
    snprintf(msg, len, "%s", n ? "connecting" : addr && *addr ? "no such peer to connect"
                                                              : "nothing to connect");
    return n || !(addr && *addr) ? 0 : -1;
}

int link_disconnect(const char *addr, char *msg, size_t len)
{
    int n = 0;
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        if (!p->used || !matches(p, addr))
            continue;
        if (p->st == LK_UP) {
            /* a primary that writes on without it: it knows it is behind */
            if (peer_sending(p))
                link_send_state(p, ST_OUTDATE, 0);
            if (p->s)
                stream_flush(p->s);
        }
        p->standalone = true;
        p->used = true;
        peer_drop(p, "disconnected by the admin");
        snprintf(p->last_error, sizeof p->last_error, "disconnected by the admin");
        n++;
    }
    snprintf(msg, len, n ? "disconnected %d peer%s" : "no such peer", n, n == 1 ? "" : "s");
    return n ? 0 : -1;
}

/* ---- status ---- */

static const char *conn_name(const struct peer *p)
{
    return p->st == LK_UP ? "Connected" : p->standalone ? "StandAlone"
           : p->dial ? "Connecting" : "StandAlone";
}

int link_status(struct peer_status *out, int max)
{
    int n = 0;
    uint64_t now = now_ms();

    for (int i = 0; i < REPL_MAX_PEERS && n < max; i++) {
        struct peer *p = &N.peers[i];
        if (!p->used || (p->st != LK_UP && p->node_id && twin(p, p->node_id)))
            continue; /* one line per node */
        if (!p->dial && p->st != LK_UP && !p->standalone)
            continue; /* a stranger in its handshake */
        struct peer_status *s = &out[n++];
        memset(s, 0, sizeof *s);
        snprintf(s->address, sizeof s->address, "%s", p->addr);
        s->connection = conn_name(p);
        s->replication = peer_repl_name(p->st == LK_UP || p->rs == PR_SPLIT_BRAIN ? p->rs : PR_OFF);
        s->peer_disk = disk_state_name(p->st == LK_UP || p->failed ? p->disk : DS_UNKNOWN);
        s->peer_role = p->st != LK_UP ? "Unknown" : p->primary ? "Primary" : "Secondary";
        s->protocol = p->st == LK_UP && p->primary ? p->hello.protocol : N.cfg.protocol;
        s->sent_bytes = p->sent_bytes;
        s->acked_bytes = p->primary ? p->rx.acked_bytes : p->acked_bytes;
        s->received_bytes = p->rx.rx_bytes;
        s->trimmed_bytes = p->primary ? p->rx.trimmed_bytes : p->trimmed_bytes;
        s->zeroed_bytes = p->primary ? p->rx.zeroed_bytes : p->zeroed_bytes;
        s->sent_requests = p->sent_reqs;
        s->acked_requests = p->primary ? p->rx.acked_reqs : p->acked_reqs;
        s->inflight = p->primary ? p->rx.inflight : p->unacked;
        snprintf(s->last_error, sizeof s->last_error, "%s", p->last_error);
        s->out_of_sync_bytes = p->slot >= 0 ? bm_bytes(&N.bm[p->slot]) : 0;
        s->resync_percent = -1;
        snprintf(s->last_resync_reason, sizeof s->last_resync_reason, "%s", p->last.reason);
        s->last_resync_bytes = p->last.bytes;
        s->last_resync_ms = p->last.ms;
        s->last_resync_skipped_bytes = p->last.skipped;
        s->verify_mismatch_bytes = p->verify_mismatch;
        s->send_queue_bytes = p->s && !p->s->dead ? stream_backlog(p->s) : 0;
        sender_lag(p, now, &s->lag_bytes, &s->lag_ms);
        if (p->sync.active) {
            s->resync_sent_bytes = p->sync.sent;
            s->resync_percent = resync_percent(&p->sync);
            s->resync_eta_s = resync_eta_s(&p->sync, now);
            s->resync_bytes_per_s = resync_bytes_per_s(&p->sync, now);
        } else if (p->rs == PR_SYNC_TARGET && p->st == LK_UP) {
            uint64_t total = p->rx.resync_total ? p->rx.resync_total : 1;
            uint64_t got = p->rx.resync_rx < total ? p->rx.resync_rx : total;
            s->resync_sent_bytes = p->rx.resync_rx;
            s->resync_percent = (int)(got * 100 / total); /* as the source said at the start */
            s->out_of_sync_bytes = total - got;
        } else {
            s->resync_sent_bytes = p->last.bytes; /* the last one's, until the next */
        }
    }
    return n;
}
