/* The request lifecycle: one client command on its way through the node.
 *
 * A front end (the NBD server) decodes a command once into a request with
 * our own operation and flags, and hands it to req_submit(). From there this
 * module owns *when* the request completes:
 *
 *   - before anything is submitted it holds one reference per completion
 *     condition: the local disk, and each peer the stream says the reply
 *     waits for (req_wait_peer); and one reference per holder of the
 *     request's buffer: the front end, and each peer send queue pointing at
 *     it (req_hold_buf);
 *   - every event comes through req_event(): local done (or failed), peer
 *     acknowledged, peer lost, unqueued, replied;
 *   - when the last completion reference goes, owner->complete() runs once
 *     (the reply); when the last holder goes, owner->release() runs once
 *     (free the buffer and the slot).
 *
 * So the order in which the local disk and the peers finish does not matter.
 * The replication stream plugs in through struct req_stream and sees only
 * requests; the front end never calls into replication, nor the other way.
 *
 * Overlapping writes (src/req/conflict.c): a write, trim or zero write that
 * overlaps one still in flight waits until that one is done on the local
 * disk, so the local disk and every peer (which apply overlapping writes in
 * stream order) see them in the same order. */
#ifndef NM_REQUEST_H
#define NM_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "io.h"

enum req_op {
    REQ_READ, REQ_WRITE, REQ_TRIM, REQ_ZERO, REQ_FLUSH, REQ_BLOCK_STATUS,
    REQ_NONE, /* a command we do not run: only ever failed */
};

#define REQ_F_FUA       (1u << 0) /* durable (locally and on waited-for peers) before done */
#define REQ_F_NO_HOLE   (1u << 1) /* ZERO: keep the range allocated */
#define REQ_F_FAST_ZERO (1u << 2) /* ZERO: fail with ENOTSUP rather than be slow */
#define REQ_F_DF        (1u << 3) /* READ: one chunk (front end only) */
#define REQ_F_REQ_ONE   (1u << 4) /* BLOCK_STATUS: one extent (front end only) */

struct nm_req;

/* What the owner of a request (the front end) provides. */
struct req_owner {
    void (*io)(struct nm_req *r);       /* run the local I/O; ends in req_local_done */
    void (*complete)(struct nm_req *r); /* every condition met: reply with r->err */
    void (*release)(struct nm_req *r);  /* nobody holds r or its buffer any more */
    bool (*gone)(struct nm_req *r);     /* the client left: do not start it at all */
};

/* What the replication stream provides (none on a node without peers). */
struct req_stream {
    /* false: r must wait (it is parked) and comes back through req_resume */
    bool (*may_start)(struct nm_req *r);
    /* stream r to the peers: sets r->seq, calls req_wait_peer/req_hold_buf */
    void (*submit)(struct nm_req *r);
    /* r is done on the local disk (err: failed); r->seq is 0 if it was
     * never streamed (a trim that trimmed nothing, a failed fast zero) */
    void (*local_done)(struct nm_req *r, int err);
    /* r leaves before it was submitted (its client is gone): drop what
     * may_start took for it */
    void (*cancel)(struct nm_req *r);
};

struct nm_req {
    /* the operation, as the front end translated it */
    enum req_op op;
    uint16_t flags;    /* REQ_F_* */
    uint64_t offset;   /* byte offset in the exported data area */
    uint32_t len;      /* bytes */
    int err;           /* 0 or positive errno, set when the request fails */
    uint8_t *buf;      /* payload (write data, read result, block status) */
    uint32_t buf_len;  /* bytes of buf that go into the reply payload */
    uint32_t buf_cap;  /* allocated size of buf (for buf_put) */
    struct io_cmd io;  /* the local disk operation (embedded: no allocation) */

    /* the front end's own (opaque here) */
    const struct req_owner *owner;
    void *conn;
    uint64_t cookie;
    uint64_t t_ns;     /* when it was decoded (latency histograms) */
    uint32_t done;     /* progress within a multi-step local I/O */
    uint8_t step;
    uint8_t hdr[32];   /* encoded reply header(s) */
    uint8_t hdr_len;
    struct nm_req *next; /* the holder's list (reply queue, a wait list) */

    /* the stream's: the same object, and buffer, go to every peer */
    uint64_t seq;          /* stream order; 0 = not streamed */
    uint32_t epoch;
    uint64_t stream_off;   /* the range streamed: a trim's is what the local */
    uint32_t stream_len;   /* disk really trimmed (0: nothing to stream) */
    uint8_t stream_flags;  /* the stream's own (0 at req_init) */
    uint64_t stream_pos;   /* the stream's own: where it keeps track of r */

    /* lifecycle state (src/req/request.c): references as bits */
    uint32_t wait_peers;   /* peers whose acknowledgement completion waits for */
    uint32_t queued_peers; /* peers whose send queue points at buf */
    bool local_pending;    /* the local disk has not finished */
    bool front_holds;      /* the front end has not let go (reply not out yet) */
    bool completed, released, submitted;

    /* overlapping writes (src/req/conflict.c) */
    struct nm_req *ov_prev, *ov_next;
    bool ov_active;        /* counted as in flight */
};

enum req_event {
    REQ_EV_LOCAL_DONE,  /* the local disk finished; err: 0 or errno */
    REQ_EV_PEER_ACKED,  /* peer confirmed what completion waited for */
    REQ_EV_PEER_LOST,   /* peer gone: completion no longer waits for it */
    REQ_EV_UNQUEUED,    /* peer's send queue no longer points at buf */
    REQ_EV_REPLIED,     /* the front end is done with r (reply sent or dropped) */
};

/* Plug the stream in (NULL: no replication). */
void req_set_stream(const struct req_stream *s);
/* Fresh lifecycle state for a request the owner filled in. */
void req_init(struct nm_req *r, const struct req_owner *owner);
/* Start it: it may wait (an overlapping write is in flight; then the stream
 * may hold it: a sync copies its range, its extent is not in the activity
 * log yet) and then runs owner->io; streamed writes go to the peers first. */
void req_submit(struct nm_req *r);
/* Fail it before any I/O (a bad request): complete() runs with err. */
void req_fail(struct nm_req *r, int err);
/* The one entry point for everything that happens to a request. */
void req_event(struct nm_req *r, enum req_event ev, int peer, int err);
static inline void req_local_done(struct nm_req *r, int err)
{
    req_event(r, REQ_EV_LOCAL_DONE, -1, err);
}
static inline void req_replied(struct nm_req *r) { req_event(r, REQ_EV_REPLIED, -1, 0); }

/* For the stream, inside submit(): the completion waits for peer; peer's
 * send queue points at r->buf (until REQ_EV_UNQUEUED). */
void req_wait_peer(struct nm_req *r, int peer);
void req_hold_buf(struct nm_req *r, int peer);
/* A request the stream parked may try again. */
void req_resume(struct nm_req *r);
/* Streamed after the local disk did it: a trim (only what was really
 * trimmed goes out), and a fast zero (which the local disk may refuse). */
bool req_stream_after_local(const struct nm_req *r);
static inline bool req_is_write(const struct nm_req *r)
{
    return r->op == REQ_WRITE || r->op == REQ_TRIM || r->op == REQ_ZERO;
}

/* Once per loop turn: requests that waited for an overlapping write go on. */
void req_tick(void);
bool req_busy(void); /* req_tick has work: do not sleep */

/* ---- overlapping writes (src/req/conflict.c; used by request.c) ---- */
/* grain: ranges are widened to it (the O_DIRECT block size; 1 if buffered). */
void req_conflict_init(unsigned grain);
/* True: r is in flight from now on. False: r waits (linked through r->next)
 * and is handed back by req_conflict_resume once it may try again. */
bool req_write_begin(struct nm_req *r);
/* r is done on the local disk (successfully or not). */
void req_write_end(struct nm_req *r);
bool req_conflict_pending(void); /* waiters may go: call req_conflict_resume */
void req_conflict_resume(void (*resume)(struct nm_req *r));

#endif
