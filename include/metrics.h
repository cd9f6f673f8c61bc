/* Prometheus metrics: `serve --metrics HOST:PORT` answers GET /metrics
 * (and HEAD) over HTTP/1.x with the text exposition format 0.0.4, rendered
 * from the node's status record (status.h), the one `nbdmirror status`
 * shows, and the NBD front end's latency histograms (hist.h).
 *
 * It runs on the daemon's event loop with the connection layer's listener
 * and streams: one request per connection, answered and closed. A request
 * (line and headers) is at most METRICS_REQ_MAX bytes, a connection lives at
 * most METRICS_TIMEOUT_MS, at most METRICS_CLIENTS are served at once (a
 * newcomer takes the place of the oldest that has not finished its
 * request), so strangers cannot hold the daemon or its memory.
 *
 * Every series may carry a label resource="NAME" (metrics_set_resource);
 * each peer's carry peer="ADDRESS". The names are listed in nbdmirror(8). */
#ifndef NM_METRICS_H
#define NM_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define METRICS_REQ_MAX    8192
#define METRICS_TIMEOUT_MS 10000
#define METRICS_CLIENTS    8
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct hist;
struct node_status;

/* The front end's histograms, from decode to reply (NULL: none yet). */
struct metrics_hists {
    const struct hist *read, *write, *flush;
};

/* Writes the exposition of st and h; resource: the label's value ("" or
 * NULL: no such label). 0, or -EIO if f failed. Pure: no clock, no globals. */
int metrics_render(FILE *f, const struct node_status *st, const struct metrics_hists *h,
                   const char *resource);

/* The daemon fills both at every scrape. */
typedef void (*metrics_fill_fn)(struct node_status *st, struct metrics_hists *h);
/* spec: "HOST:PORT", "[V6]:PORT", or "unix:PATH" (a local proxy, curl
 * --unix-socket, the fuzzer). 0 or -errno (-EINVAL: not such an address). */
int metrics_start(const char *spec, metrics_fill_fn fill);
void metrics_stop(void);
/* The resource="NAME" label from now on (copied; "" for none, the default). */
void metrics_set_resource(const char *name);

/* For tests: what the server answers to the request bytes p[0..len) seen so
 * far. 0: wait for more; else the HTTP status (200, 400, 404, 405, 414, 431)
 * and *head (true: HEAD, no body). */
int metrics_parse_request(const char *p, size_t len, bool *head);

#endif
