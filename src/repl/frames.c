/* Every replication frame type in one table: the payload length it must
 * have, and which role may receive it with which handler. Decoding checks
 * lengths here (wire.c) and both roles dispatch here, so adding a frame type
 * (or letting a role receive one more) is one line. */
#include <stddef.h>

#include "repl-int.h"

struct frame_rule {
    uint32_t min, max;     /* payload bytes */
    frame_fn on[2];        /* handler when received by [ROLE_SECONDARY], [ROLE_PRIMARY];
                            * NULL: that role must never receive it */
};

static const struct frame_rule rules[RT_TYPE_MAX + 1] = {
    [RT_HELLO]       = { REPL_HELLO_SIZE, REPL_HELLO_SIZE, { secondary_on_hello, primary_on_hello } },
    [RT_WRITE]       = { 9, REPL_MAX_PAYLOAD, { secondary_on_data, NULL } },
    [RT_TRIM]        = { 12, 12, { secondary_on_data, NULL } },
    [RT_ZERO]        = { 12, 12, { secondary_on_data, NULL } },
    [RT_BARRIER]     = { 0, 0, { secondary_on_barrier, NULL } },
    [RT_ACK_RECV]    = { 0, 0, { NULL, primary_on_ack } },
    [RT_ACK_WRITE]   = { 0, 0, { NULL, primary_on_ack } },
    [RT_BARRIER_ACK] = { 0, 0, { NULL, primary_on_ack } },
    [RT_PING]        = { 0, 0, { secondary_on_ping, NULL } },
    [RT_PONG]        = { 0, 0, { NULL, primary_on_pong } },
};

bool repl_frame_known(uint8_t type, uint32_t len)
{
    if (type < RT_HELLO || type > RT_TYPE_MAX)
        return false;
    return len >= rules[type].min && len <= rules[type].max;
}

int repl_frame_dispatch(enum repl_role receiver, void *link, const struct repl_hdr *h,
                        const uint8_t *payload, const char **why)
{
    frame_fn fn = h->type <= RT_TYPE_MAX ? rules[h->type].on[receiver] : NULL;
    if (!fn) {
        *why = receiver == ROLE_PRIMARY ? "unexpected frame from a secondary"
                                        : "unexpected frame type from a primary";
        return -1;
    }
    return fn(link, h, payload);
}
