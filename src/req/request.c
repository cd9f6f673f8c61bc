/* The request lifecycle (see include/request.h): when a request may start,
 * when it completes, when it may be freed. References are bits, so each
 * condition is taken once and dropped once whatever order events come in. */
#include <errno.h>
#include <stddef.h>

#include "request.h"

static const struct req_stream *stream;

void req_set_stream(const struct req_stream *s) { stream = s; }

void req_init(struct nm_req *r, const struct req_owner *owner)
{
    r->owner = owner;
    r->err = 0;
    r->seq = 0;
    r->epoch = 0;
    r->stream_off = r->offset;
    r->stream_len = r->len;
    r->stream_flags = 0;
    r->wait_peers = r->queued_peers = 0;
    r->local_pending = false;
    r->front_holds = true;
    r->completed = r->released = r->submitted = false;
    r->ov_active = false;
}

bool req_stream_after_local(const struct nm_req *r)
{
    return r->op == REQ_TRIM || (r->op == REQ_ZERO && (r->flags & REQ_F_FAST_ZERO));
}

static bool streamed(const struct nm_req *r)
{
    return stream && (req_is_write(r) || r->op == REQ_FLUSH);
}

/* The last completion reference went: reply. The last holder: free. */
static void settle(struct nm_req *r)
{
    if (!r->completed && !r->local_pending && !r->wait_peers) {
        r->completed = true;
        r->owner->complete(r); /* may call req_replied(r) right away */
        return;                /* (which settles again, from inside) */
    }
    if (r->completed && !r->released && !r->front_holds && !r->queued_peers) {
        r->released = true;
        r->owner->release(r);
    }
}

void req_submit(struct nm_req *r)
{
    if (r->owner->gone && r->owner->gone(r)) {
        /* nobody to answer: do nothing at all */
        if (streamed(r) && stream->cancel)
            stream->cancel(r);
        req_write_end(r);
        req_fail(r, ECANCELED);
        return;
    }
    /* overlapping writes first: once in flight here it keeps its place
     * while the stream holds it, so later overlapping ones queue behind */
    if (req_is_write(r) && !r->ov_active && !req_write_begin(r))
        return; /* overlaps a write in flight; req_tick brings it back */
    if (streamed(r) && stream->may_start && !stream->may_start(r))
        return; /* parked by the stream; req_resume brings it back */
    r->submitted = true;
    r->local_pending = true; /* held until the local disk is done */
    r->stream_off = r->offset;
    r->stream_len = r->len;
    if (streamed(r) && !req_stream_after_local(r))
        stream->submit(r); /* before the local I/O: it cannot complete first */
    r->owner->io(r);       /* r may be complete (even released) after this */
}

void req_fail(struct nm_req *r, int err)
{
    r->err = err;
    settle(r);
}

void req_resume(struct nm_req *r) { req_submit(r); }

void req_wait_peer(struct nm_req *r, int peer) { r->wait_peers |= 1u << peer; }
void req_hold_buf(struct nm_req *r, int peer) { r->queued_peers |= 1u << peer; }

static void local_done(struct nm_req *r, int err)
{
    if (!r->local_pending)
        return;
    /* what only happens once it worked here goes to the peers now, while
     * the local reference still holds the completion back */
    if (!err && streamed(r) && req_stream_after_local(r) && r->stream_len)
        stream->submit(r);
    if (streamed(r))
        stream->local_done(r, err);
    req_write_end(r); /* overlapping writes waiting for this one may go */
    r->err = err;
    r->local_pending = false;
}

void req_event(struct nm_req *r, enum req_event ev, int peer, int err)
{
    uint32_t bit = peer >= 0 && peer < 32 ? 1u << peer : 0;

    switch (ev) {
    case REQ_EV_LOCAL_DONE:
        local_done(r, err);
        break;
    case REQ_EV_PEER_ACKED:
    case REQ_EV_PEER_LOST:
        if (!(r->wait_peers & bit))
            return;
        r->wait_peers &= ~bit;
        break;
    case REQ_EV_UNQUEUED:
        if (!(r->queued_peers & bit))
            return;
        r->queued_peers &= ~bit;
        break;
    case REQ_EV_REPLIED:
        if (!r->front_holds)
            return;
        r->front_holds = false;
        break;
    }
    settle(r);
}

static bool ticking;

void req_tick(void)
{
    if (!ticking) {
        ticking = true;
        req_conflict_resume(req_submit);
        ticking = false;
    }
}

bool req_busy(void) { return req_conflict_pending(); }
