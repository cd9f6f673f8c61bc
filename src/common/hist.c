/* The latency histograms' bucket bounds (include/hist.h): 1, 2.5, 5 per
 * decade, as Prometheus's default buckets, from 25 us for fast disks and
 * the page cache to 10 s for a peer that stops answering. */
#include "hist.h"

const uint64_t hist_bounds_ns[HIST_BUCKETS] = {
    25000,     50000,     100000,     250000,     500000,     1000000,
    2500000,   5000000,   10000000,   25000000,   50000000,   100000000,
    250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};
