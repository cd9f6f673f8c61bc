/* The request lifecycle: whatever order the local disk, the peers' acks,
 * peer losses and the send queues finish in, a request is answered exactly
 * once (with the right error) and freed exactly once, and only after every
 * condition it waited for. Also: overlapping writes wait for each other, and
 * what is streamed after the local disk (trims, fast zeroes) is streamed
 * only when that worked. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "request.h"

/* ---- a front end and a stream that record what happens ---- */
static int n_io, n_complete, n_release, n_submit, n_stream_done;
static int complete_err, release_before_complete, complete_early;
static bool reply_at_once;   /* the owner replies inside complete() */
static struct nm_req *deferred;
static uint32_t stream_waits = 0x3, stream_holds = 0x3; /* peers 0 and 1 */

static void o_io(struct nm_req *r) { (void)r; n_io++; }
static void o_complete(struct nm_req *r)
{
    n_complete++;
    complete_err = r->err;
    if (r->local_pending || r->wait_peers)
        complete_early++;
    if (reply_at_once)
        req_replied(r);
    else
        deferred = r;
}
static void o_release(struct nm_req *r)
{
    n_release++;
    if (!r->completed || r->front_holds || r->queued_peers)
        release_before_complete++;
}
static const struct req_owner owner = { .io = o_io, .complete = o_complete, .release = o_release };

static bool s_may_start(struct nm_req *r) { (void)r; return true; }
static void s_submit(struct nm_req *r)
{
    n_submit++;
    r->seq = 1;
    for (int p = 0; p < 32; p++) {
        if (stream_waits & (1u << p))
            req_wait_peer(r, p);
        if ((stream_holds & (1u << p)) && r->op == REQ_WRITE)
            req_hold_buf(r, p);
    }
}
static void s_local_done(struct nm_req *r, int err) { (void)r, (void)err; n_stream_done++; }
static const struct req_stream stream = { s_may_start, s_submit, s_local_done, NULL };

static void reset(void)
{
    n_io = n_complete = n_release = n_submit = n_stream_done = 0;
    complete_err = release_before_complete = complete_early = 0;
    deferred = NULL;
}

static void new_req(struct nm_req *r, enum req_op op, uint64_t off, uint32_t len)
{
    memset(r, 0, sizeof *r);
    r->op = op;
    r->offset = off;
    r->len = len;
    req_init(r, &owner);
}

/* ---- every order of five events, with acks or losses, errors or not ---- */
enum { E_LOCAL, E_P0, E_P1, E_U0, E_U1, NEV };

static void fire(struct nm_req *r, int e, bool lose0, int local_err)
{
    switch (e) {
    case E_LOCAL: req_local_done(r, local_err); break;
    case E_P0: req_event(r, lose0 ? REQ_EV_PEER_LOST : REQ_EV_PEER_ACKED, 0, 0); break;
    case E_P1: req_event(r, REQ_EV_PEER_ACKED, 1, 0); break;
    case E_U0: req_event(r, REQ_EV_UNQUEUED, 0, 0); break;
    case E_U1: req_event(r, REQ_EV_UNQUEUED, 1, 0); break;
    }
}

static int orders_checked;

static void check_order(const int *ord, bool lose0, int local_err, bool at_once)
{
    struct nm_req r;
    bool seen[NEV] = { 0 };

    reset();
    reply_at_once = at_once;
    new_req(&r, REQ_WRITE, 0, 4096);
    req_submit(&r);
    CHECK(n_submit == 1 && n_io == 1 && n_complete == 0);
    for (int i = 0; i < NEV; i++) {
        fire(&r, ord[i], lose0, local_err);
        fire(&r, ord[i], lose0, local_err); /* a repeated event changes nothing */
        seen[ord[i]] = true;
        bool due = seen[E_LOCAL] && seen[E_P0] && seen[E_P1];
        CHECK(n_complete == (due ? 1 : 0));
        if (deferred && i == NEV - 1) {
            req_replied(deferred); /* the reply went out at the end */
            req_replied(deferred);
        }
    }
    CHECK(n_complete == 1 && complete_err == local_err && complete_early == 0);
    CHECK(n_release == 1 && release_before_complete == 0);
    CHECK(n_stream_done == 1);
    orders_checked++;
}

static void permute(int *a, int k, void (*fn)(const int *))
{
    if (k == NEV) {
        fn(a);
        return;
    }
    for (int i = k; i < NEV; i++) {
        int t = a[k]; a[k] = a[i]; a[i] = t;
        permute(a, k + 1, fn);
        t = a[k]; a[k] = a[i]; a[i] = t;
    }
}

static void all_variants(const int *ord)
{
    for (int v = 0; v < 8; v++)
        check_order(ord, v & 1, v & 2 ? EIO : 0, v & 4);
}

/* ---- a FLUSH under protocol C: done only after every peer's barrier ack ---- */
static void test_flush(void)
{
    struct nm_req r;

    reset();
    reply_at_once = true;
    stream_waits = 0x7; /* three connected peers */
    new_req(&r, REQ_FLUSH, 0, 0);
    req_submit(&r);
    CHECK(n_submit == 1);
    req_local_done(&r, 0);
    req_event(&r, REQ_EV_PEER_ACKED, 0, 0);
    req_event(&r, REQ_EV_PEER_ACKED, 2, 0);
    req_event(&r, REQ_EV_PEER_ACKED, 5, 0); /* not waited for: ignored */
    CHECK(n_complete == 0);
    req_event(&r, REQ_EV_PEER_ACKED, 1, 0);
    CHECK(n_complete == 1 && complete_err == 0 && n_release == 1);
    stream_waits = 0x3;
}

/* ---- streamed after the local disk: only what worked there ---- */
static void test_after_local(void)
{
    struct nm_req r;

    reply_at_once = true;
    reset();
    new_req(&r, REQ_TRIM, 0, 8192);
    req_submit(&r);
    CHECK(n_io == 1 && n_submit == 0); /* not before the local trim */
    req_local_done(&r, 0);
    CHECK(n_submit == 1 && n_complete == 0); /* streamed; now waits for peers */
    req_event(&r, REQ_EV_PEER_ACKED, 0, 0);
    req_event(&r, REQ_EV_PEER_ACKED, 1, 0);
    CHECK(n_complete == 1 && n_release == 1);

    reset();
    new_req(&r, REQ_TRIM, 0, 8192);
    req_submit(&r);
    r.stream_len = 0; /* the disk could not trim: nothing happened anywhere */
    req_local_done(&r, 0);
    CHECK(n_submit == 0 && n_complete == 1 && complete_err == 0 && n_release == 1);

    reset();
    new_req(&r, REQ_ZERO, 0, 8192);
    r.flags = REQ_F_FAST_ZERO;
    req_submit(&r);
    req_local_done(&r, ENOTSUP); /* refused here: never streamed */
    CHECK(n_submit == 0 && n_complete == 1 && complete_err == ENOTSUP && n_release == 1);

    reset();
    new_req(&r, REQ_READ, 0, 4096); /* reads are never streamed */
    req_submit(&r);
    req_local_done(&r, 0);
    CHECK(n_submit == 0 && n_complete == 1 && n_release == 1);
}

/* ---- a request refused before any I/O ---- */
static void test_fail(void)
{
    struct nm_req r;

    reset();
    reply_at_once = false;
    new_req(&r, REQ_WRITE, 0, 4096);
    req_fail(&r, EINVAL);
    CHECK(n_io == 0 && n_submit == 0 && n_complete == 1 && complete_err == EINVAL);
    CHECK(n_release == 0);
    req_replied(&r);
    CHECK(n_release == 1);
}

/* ---- overlapping writes wait for the one in flight ---- */
static void test_overlap(void)
{
    struct nm_req a, b, c, d;

    reset();
    reply_at_once = true;
    req_set_stream(NULL);
    req_conflict_init(1);
    new_req(&a, REQ_WRITE, 0, 1 << 20);
    new_req(&b, REQ_WRITE, 4096, 4096);       /* inside a */
    new_req(&c, REQ_ZERO, 8 << 20, 4096);     /* elsewhere */
    new_req(&d, REQ_TRIM, (1 << 20) - 1, 2);  /* a's last byte */
    req_submit(&a);
    req_submit(&b);
    req_submit(&c);
    req_submit(&d);
    CHECK(n_io == 2); /* a and c run; b and d wait */
    CHECK(!req_busy());
    req_local_done(&c, 0);
    req_tick();
    CHECK(n_io == 2); /* c's end lets nobody go: b and d wait for a */
    req_local_done(&a, 0);
    CHECK(req_busy());
    req_tick();
    CHECK(n_io == 4 && !req_busy()); /* b and d do not overlap each other */
    req_local_done(&b, 0);
    req_local_done(&d, 0);
    CHECK(n_complete == 4 && n_release == 4);

    /* widened to the O_DIRECT block: sharing a block is overlapping */
    reset();
    req_conflict_init(4096);
    new_req(&a, REQ_WRITE, 0, 100);
    new_req(&b, REQ_WRITE, 200, 100);
    req_submit(&a);
    req_submit(&b);
    CHECK(n_io == 1);
    req_local_done(&a, 0);
    req_tick();
    CHECK(n_io == 2);
    req_local_done(&b, 0);
    req_conflict_init(1);
    req_set_stream(&stream);
}

/* ---- a write the stream holds (its extent is not in the activity log
 * yet, a sync copies its range) keeps its place among overlapping writes;
 * one whose client went away meanwhile is cancelled, never run ---- */
static int holds, n_cancel;
static bool client_gone;
static bool h_may_start(struct nm_req *r) { (void)r; return holds-- <= 0; }
static void h_cancel(struct nm_req *r) { (void)r; n_cancel++; }
static bool h_gone(struct nm_req *r) { (void)r; return client_gone; }

static void test_held(void)
{
    static const struct req_stream held = { h_may_start, s_submit, s_local_done, h_cancel };
    static const struct req_owner gone_owner = { .io = o_io, .complete = o_complete,
                                                 .release = o_release, .gone = h_gone };
    struct nm_req a, b;

    reset();
    reply_at_once = true;
    stream_waits = stream_holds = 0;
    req_set_stream(&held);
    req_conflict_init(1);
    holds = 1;
    new_req(&a, REQ_WRITE, 0, 8192);
    new_req(&b, REQ_WRITE, 4096, 8192); /* overlaps a */
    req_submit(&a);                     /* held by the stream */
    CHECK(n_io == 0 && a.ov_active);
    req_submit(&b);                     /* must queue behind a, not pass it */
    CHECK(n_io == 0 && !b.ov_active);
    req_resume(&a);                     /* the stream lets it go */
    CHECK(n_io == 1 && n_submit == 1);
    req_tick();
    CHECK(n_io == 1);                   /* b still waits for a */
    req_local_done(&a, 0);
    req_tick();
    CHECK(n_io == 2);
    req_local_done(&b, 0);
    CHECK(n_complete == 2 && n_release == 2 && n_cancel == 0);

    /* held, then its client leaves: cancelled once, no I/O, its place freed */
    reset();
    n_cancel = 0;
    holds = 1;
    client_gone = false;
    memset(&a, 0, sizeof a);
    a.op = REQ_WRITE;
    a.len = 4096;
    req_init(&a, &gone_owner);
    req_submit(&a);
    CHECK(n_io == 0 && a.ov_active);
    client_gone = true;
    req_resume(&a);
    CHECK(n_io == 0 && n_cancel == 1 && !a.ov_active);
    CHECK(n_complete == 1 && complete_err == ECANCELED && n_release == 1);
    client_gone = false;
    stream_waits = stream_holds = 0x3;
    req_set_stream(&stream);
}

int main(void)
{
    int ord[NEV] = { E_LOCAL, E_P0, E_P1, E_U0, E_U1 };

    req_set_stream(&stream);
    permute(ord, 0, all_variants);
    CHECK(orders_checked == 120 * 8);
    test_flush();
    test_after_local();
    test_fail();
    test_overlap();
    test_held();
    return check_summary();
}
