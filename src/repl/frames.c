/* Every replication frame type in one table: the payload length it must
 * have, the handler, and when a link may receive it. Decoding checks
 * lengths here (wire.c) and every link dispatches here, so adding a frame
 * type (or allowing it in one more state) is one line. */
#include <stddef.h>

#include "repl-int.h"

enum when {
    W_HANDSHAKE = 1, /* before the two nodes have decided */
    W_UP,            /* after */
    W_RECEIVING,     /* after, and the peer streams to us (it is primary) */
    W_SENDING,       /* after, and we stream to the peer (we are primary) */
};

struct frame_rule {
    uint32_t min, max; /* payload bytes */
    enum when when;
    frame_fn fn;
};

static const struct frame_rule rules[RT_TYPE_MAX + 1] = {
    [RT_HELLO]       = { REPL_HELLO_SIZE, REPL_HELLO_SIZE, W_HANDSHAKE, link_on_hello },
    [RT_GENS]        = { REPL_GENS_SIZE, REPL_GENS_SIZE, W_HANDSHAKE, link_on_gens },
    [RT_WRITE]       = { 9, REPL_MAX_PAYLOAD, W_RECEIVING, rx_on_data },
    [RT_TRIM]        = { 12, 12, W_RECEIVING, rx_on_data },
    [RT_ZERO]        = { 12, 12, W_RECEIVING, rx_on_data },
    [RT_BARRIER]     = { 0, 16, W_RECEIVING, rx_on_barrier },
    [RT_CSUM_REQ]    = { 12, 12, W_RECEIVING, rx_on_csum },
    /* (a demote ends only once every peer has answered everything) */
    [RT_ACK_RECV]    = { 0, 0, W_SENDING, tx_on_ack },
    [RT_ACK_WRITE]   = { 0, 8, W_SENDING, tx_on_ack },  /* resync: + offset u64 */
    [RT_BARRIER_ACK] = { 0, 0, W_SENDING, tx_on_ack },
    [RT_CSUM_REPLY]  = { 12, 12 + (REPL_CSUM_MAX / 4096) * REPL_HASH, W_SENDING, tx_on_csum },
    [RT_BITMAP]      = { 9, 8 + BM_PIECE, W_UP, link_on_bitmap },
    [RT_STATE]       = { 8, 8, W_UP, link_on_state },
    [RT_PING]        = { 0, 0, W_UP, link_on_ping },
    [RT_PONG]        = { 0, 0, W_UP, link_on_pong },
};

bool repl_frame_known(uint8_t type, uint32_t len)
{
    if (type < RT_HELLO || type > RT_TYPE_MAX || !rules[type].fn)
        return false;
    return len >= rules[type].min && len <= rules[type].max;
}

bool repl_frame_allowed(const struct peer *p, const struct repl_hdr *h, const char **why)
{
    const struct frame_rule *r = &rules[h->type];
    bool ok;

    switch (r->when) {
    case W_HANDSHAKE: ok = p->st == LK_HELLO; break;
    case W_UP: ok = p->st == LK_UP; break;
    case W_RECEIVING: ok = p->st == LK_UP && peer_receiving(p); break;
    case W_SENDING: ok = p->st == LK_UP && peer_sending(p); break;
    default: ok = false;
    }
    if (!ok) {
        *why = r->when != W_HANDSHAKE && p->st != LK_UP ? "frame before the handshake is over"
               : r->when == W_HANDSHAKE ? "a second handshake"
               : r->when == W_SENDING ? "an answer to nothing we sent"
                                      : "data from a node that is not our primary";
        return false;
    }
    return true;
}

bool repl_frame_waits(uint8_t type) { return rules[type].when == W_RECEIVING; }

int repl_frame_dispatch(struct peer *p, const struct repl_hdr *h, const uint8_t *payload,
                        const char **why)
{
    if (!repl_frame_allowed(p, h, why))
        return -1;
    return rules[h->type].fn(p, h, payload);
}
