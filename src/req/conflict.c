/* Overlapping writes: a write, trim or zero write that overlaps one still
 * in flight waits until that one is done on the local disk. The peers apply
 * overlapping writes in stream (sequence) order, so the local disk must see
 * them in that order too, or the two would end up different (DRBD calls this
 * conflict detection).
 *
 * Cheap when nothing overlaps: a hashed count of in-flight writes per 1 MiB
 * stripe answers "nothing here" without looking at any request; only when a
 * stripe is busy is the list of in-flight writes scanned. */
#include <stddef.h>

#include "common.h"
#include "request.h"

#define STRIPE_SHIFT 20
#define BUCKETS 4096 /* power of two */

static struct {
    uint32_t count[BUCKETS];  /* in-flight writes touching a stripe, by hash */
    struct nm_req *active;    /* in-flight writes (doubly linked) */
    struct nm_req *wait_head, *wait_tail; /* waiting, oldest first */
    unsigned grain;           /* ranges are widened to this (O_DIRECT block) */
    bool recheck;             /* a write ended: waiters may go */
} C = { .grain = 1 };

void req_conflict_init(unsigned grain) { C.grain = grain ? grain : 1; }

static unsigned bucket(uint64_t stripe)
{
    return (unsigned)((stripe * 0x9E3779B97F4A7C15ull) >> 52) & (BUCKETS - 1);
}

/* The range a request occupies: widened to the grain, because a partial
 * block goes through a read-modify-write (page cache, or the zero-out
 * helper) and touches its neighbours' bytes. */
static void span(const struct nm_req *r, uint64_t *lo, uint64_t *hi)
{
    *lo = r->offset / C.grain * C.grain;
    *hi = (r->offset + r->len + C.grain - 1) / C.grain * C.grain;
}

static bool overlaps_active(const struct nm_req *r)
{
    uint64_t lo, hi;
    bool busy = false;

    span(r, &lo, &hi);
    for (uint64_t s = lo >> STRIPE_SHIFT; s <= (hi - 1) >> STRIPE_SHIFT && !busy; s++)
        busy = C.count[bucket(s)] != 0;
    if (!busy)
        return false;
    for (const struct nm_req *a = C.active; a; a = a->ov_next) {
        uint64_t alo, ahi;
        span(a, &alo, &ahi);
        if (lo < ahi && alo < hi)
            return true;
    }
    return false;
}

static void count(const struct nm_req *r, int delta)
{
    uint64_t lo, hi;
    span(r, &lo, &hi);
    for (uint64_t s = lo >> STRIPE_SHIFT; s <= (hi - 1) >> STRIPE_SHIFT; s++)
        C.count[bucket(s)] += delta;
}

bool req_write_begin(struct nm_req *r)
{
    if (r->len == 0)
        return true;
    if (overlaps_active(r)) {
        r->next = NULL;
        if (C.wait_tail)
            C.wait_tail->next = r;
        else
            C.wait_head = r;
        C.wait_tail = r;
        return false;
    }
    count(r, 1);
    r->ov_prev = NULL;
    r->ov_next = C.active;
    if (C.active)
        C.active->ov_prev = r;
    C.active = r;
    r->ov_active = true;
    return true;
}

void req_write_end(struct nm_req *r)
{
    if (!r->ov_active)
        return;
    r->ov_active = false;
    count(r, -1);
    if (r->ov_prev)
        r->ov_prev->ov_next = r->ov_next;
    else
        C.active = r->ov_next;
    if (r->ov_next)
        r->ov_next->ov_prev = r->ov_prev;
    if (C.wait_head)
        C.recheck = true;
}

bool req_conflict_pending(void) { return C.recheck; }

void req_conflict_resume(void (*resume)(struct nm_req *r))
{
    struct nm_req *list = C.wait_head;

    if (!C.recheck)
        return;
    C.recheck = false;
    C.wait_head = C.wait_tail = NULL;
    /* oldest first: a waiter that resumes is in flight before the next one
     * is looked at, so overlapping waiters keep their order */
    while (list) {
        struct nm_req *r = list;
        list = r->next;
        resume(r); /* waits again (appended) if it still overlaps */
    }
}
