/* Latency histograms: a fixed set of buckets from 25 us to 10 s, counts and
 * a sum in integer nanoseconds, cheap enough to update on every request
 * (two clock reads and a short scan); the count is the buckets' sum. Rendered as Prometheus histograms by
 * src/ctl/metrics.c; the counts per bucket are kept apart (not cumulative). */
#ifndef NM_HIST_H
#define NM_HIST_H

#include <stdint.h>
#include <time.h>

#define HIST_BUCKETS 18 /* upper bounds; one more bucket counts what is above */
extern const uint64_t hist_bounds_ns[HIST_BUCKETS];

struct hist {
    uint64_t sum_ns;
    uint64_t bucket[HIST_BUCKETS + 1]; /* bucket[i]: bounds[i-1] < ns <= bounds[i] */
};

static inline uint64_t hist_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void hist_add(struct hist *h, uint64_t ns)
{
    unsigned i = 0;
    while (i < HIST_BUCKETS && ns > hist_bounds_ns[i]) /* most requests stop early */
        i++;
    h->bucket[i]++;
    h->sum_ns += ns;
}

#endif
