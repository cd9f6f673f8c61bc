/* The Prometheus text exposition (format 0.0.4) of a node's status record
 * and latency histograms: every family once, with HELP and TYPE, then its
 * samples (a peer family has one per peer). States are "state set" gauges:
 * one series per possible value, 1 for the current one, so a series does
 * not vanish when the state changes and an alert can test for 0. */
#include <errno.h>
#include <stddef.h>
#include <stdio_ext.h>
#include <string.h>

#include "hist.h"
#include "metrics.h"
#include "status.h"

struct ctx {
    FILE *f;
    const char *resource; /* NULL: no such label */
};

/* A label value: backslash, quote and newline escaped as the format says;
 * other control characters and bytes that are not UTF-8 (a device path may
 * hold any) become U+FFFD, so any scraper can parse it. */
static void put_value(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);

    for (size_t i = 0; i < n;) {
        size_t l = 0;
        while (i + l < n && p[i + l] >= 0x20 && p[i + l] < 0x7f && p[i + l] != '\\' &&
               p[i + l] != '"')
            l++;
        if (l) { /* plain ASCII: the common case, in one piece */
            fwrite(p + i, 1, l, f);
            i += l;
            continue;
        }
        if (p[i] == '\\' || p[i] == '"')
            fprintf(f, "\\%c", p[i]);
        else if (p[i] == '\n')
            fputs("\\n", f);
        else if (p[i] < 0x20 || p[i] == 0x7f)
            fputs("\xef\xbf\xbd", f);
        else if ((l = utf8_len(p + i, n - i)) > 0) {
            fwrite(p + i, 1, l, f);
            i += l;
            continue;
        } else
            fputs("\xef\xbf\xbd", f);
        i++;
    }
}

static void label(FILE *f, bool *any, const char *k, const char *v)
{
    fprintf(f, "%s%s=\"", *any ? "," : "{", k);
    put_value(f, v);
    fputc('"', f);
    *any = true;
}

/* name{resource="..",peer="..",k="v",...} (no braces without labels), then
 * a space: the value follows. kv: more keys and values, NULL at the end. */
static void series(const struct ctx *x, const char *name, const char *peer,
                   const char *const *kv)
{
    bool any = false;

    fputs(name, x->f);
    if (x->resource)
        label(x->f, &any, "resource", x->resource);
    if (peer)
        label(x->f, &any, "peer", peer);
    for (; kv && kv[0]; kv += 2)
        label(x->f, &any, kv[0], kv[1]);
    fputs(any ? "} " : " ", x->f);
}

#define LABELS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static void family(const struct ctx *x, const char *name, const char *type, const char *help)
{
    fprintf(x->f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* n / 10^digits as an exact decimal without trailing zeros ("0.000025"). */
static const char *fixed(char *b, size_t cap, uint64_t n, unsigned digits)
{
    uint64_t scale = 1;
    for (unsigned i = 0; i < digits; i++)
        scale *= 10;
    uint64_t whole = n / scale, frac = n % scale;
    if (!frac) {
        snprintf(b, cap, "%llu", (unsigned long long)whole);
        return b;
    }
    for (; frac % 10 == 0; frac /= 10)
        digits--;
    snprintf(b, cap, "%llu.%0*llu", (unsigned long long)whole, (int)digits,
             (unsigned long long)frac);
    return b;
}

static void put_fixed(FILE *f, uint64_t n, unsigned digits)
{
    char b[48];
    fprintf(f, "%s\n", fixed(b, sizeof b, n, digits));
}

static void put_u64(FILE *f, uint64_t v) { fprintf(f, "%llu\n", (unsigned long long)v); }

/* One series per value of a state; 1 for the current one (also when it is
 * none of the known ones, e.g. from a newer daemon). */
static void state_set(const struct ctx *x, const char *name, const char *peer, const char *key,
                      const char *const *values, const char *now)
{
    bool known = false;
    for (int i = 0; values[i]; i++) {
        series(x, name, peer, LABELS(key, values[i]));
        put_u64(x->f, !strcmp(values[i], now));
        known |= !strcmp(values[i], now);
    }
    if (!known && now[0]) {
        series(x, name, peer, LABELS(key, now));
        put_u64(x->f, 1);
    }
}

static const char *const roles[] = { "primary", "secondary", "standalone", NULL };
static const char *const disk_states[] = { "UpToDate", "Outdated", "Inconsistent", "Failed",
                                           "Unknown", NULL };
static const char *const conn_states[] = { "StandAlone", "Connecting", "Connected", NULL };
static const char *const repl_states[] = { "Off", "Established", "SyncSource", "SyncTarget",
                                           "PausedSyncS", "PausedSyncT", "VerifyS",
                                           "split-brain", NULL };
static const char *const peer_roles[] = { "Primary", "Secondary", "Unknown", NULL };

/* ---- the node ---- */

struct num {
    const char *name, *type, *help;
    size_t off;
};
#define NODE(name, type, m, help) { name, type, help, offsetof(struct node_status, m) }
static const struct num node_nums[] = {
    NODE("nbdmirror_size_bytes", "gauge", size, "Bytes the export holds."),
    NODE("nbdmirror_uptime_seconds", "gauge", uptime_s, "Seconds since the daemon started."),
    NODE("nbdmirror_clients", "gauge", clients, "NBD clients connected now."),
    NODE("nbdmirror_client_connections_total", "counter", connections_total,
         "NBD client connections accepted."),
    NODE("nbdmirror_read_bytes_total", "counter", read_bytes, "Bytes read by NBD clients."),
    NODE("nbdmirror_written_bytes_total", "counter", write_bytes,
         "Bytes written by NBD clients (write requests)."),
    NODE("nbdmirror_request_errors_total", "counter", errors,
         "NBD requests answered with an error."),
    NODE("nbdmirror_disk_depth_limit", "gauge", disk_depth,
         "Most requests at the disk at once (--disk-depth; 0: no limit)."),
    NODE("nbdmirror_disk_inflight_requests", "gauge", disk_inflight,
         "Reads, writes, flushes and trims at the disk now."),
    NODE("nbdmirror_disk_waiting_requests", "gauge", disk_waiting,
         "Requests held back from the disk now (--disk-depth or a full ring)."),
    NODE("nbdmirror_disk_waited_requests_total", "counter", disk_waited,
         "Requests that were held back from the disk."),
};

static void node_metrics(const struct ctx *x, const struct node_status *st)
{
    family(x, "nbdmirror_info", "gauge",
           "The node's device, export name and io engine (always 1).");
    series(x, "nbdmirror_info", NULL,
           LABELS("device", st->device, "export", st->export_name, "engine", st->engine,
                  "direct", st->direct ? "true" : "false"));
    put_u64(x->f, 1);

    family(x, "nbdmirror_role", "gauge", "The node's role: 1 for the current one.");
    state_set(x, "nbdmirror_role", NULL, "role", roles, st->role);
    family(x, "nbdmirror_disk_state", "gauge", "This node's disk state: 1 for the current one.");
    state_set(x, "nbdmirror_disk_state", NULL, "state", disk_states, st->disk);
    family(x, "nbdmirror_read_only", "gauge", "1 if the export refuses writes.");
    series(x, "nbdmirror_read_only", NULL, NULL);
    put_u64(x->f, st->read_only);

    for (size_t i = 0; i < sizeof node_nums / sizeof node_nums[0]; i++) {
        const struct num *n = &node_nums[i];
        family(x, n->name, n->type, n->help);
        series(x, n->name, NULL, NULL);
        put_u64(x->f, *(const uint64_t *)((const char *)st + n->off));
    }

    static const struct {
        const char *op;
        size_t off;
    } ops[] = {
        { "read", offsetof(struct node_status, reads) },
        { "write", offsetof(struct node_status, writes) },
        { "flush", offsetof(struct node_status, flushes) },
        { "trim", offsetof(struct node_status, trims) },
        { "zero", offsetof(struct node_status, zero_writes) },
        { "block_status", offsetof(struct node_status, block_status) },
    };
    family(x, "nbdmirror_requests_total", "counter", "NBD requests started, by operation.");
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        series(x, "nbdmirror_requests_total", NULL, LABELS("op", ops[i].op));
        put_u64(x->f, *(const uint64_t *)((const char *)st + ops[i].off));
    }
}

static void histogram(const struct ctx *x, const char *name, const char *op,
                      const struct hist *h)
{
    static const struct hist none;
    char bname[128], le[48];
    uint64_t cum = 0;

    if (!h)
        h = &none;
    snprintf(bname, sizeof bname, "%s_bucket", name);
    for (int i = 0; i <= HIST_BUCKETS; i++) {
        cum += h->bucket[i]; /* kept apart, shown cumulative */
        if (i < HIST_BUCKETS)
            fixed(le, sizeof le, hist_bounds_ns[i], 9); /* seconds: "0.000025" */
        else
            snprintf(le, sizeof le, "+Inf");
        series(x, bname, NULL, LABELS("op", op, "le", le));
        put_u64(x->f, cum);
    }
    snprintf(bname, sizeof bname, "%s_sum", name);
    series(x, bname, NULL, LABELS("op", op));
    put_fixed(x->f, h->sum_ns, 9);
    snprintf(bname, sizeof bname, "%s_count", name);
    series(x, bname, NULL, LABELS("op", op));
    put_u64(x->f, cum); /* the +Inf bucket, as the format requires */
}

/* ---- peers ---- */

enum vkind { V_U64, V_MS /* milliseconds shown as seconds */ };
struct pnum {
    const char *name, *type, *help;
    size_t off;
    enum vkind kind;
};
#define PEER(name, type, m, kind, help) \
    { name, type, help, offsetof(struct status_peer, m), kind }
static const struct pnum peer_nums[] = {
    PEER("nbdmirror_peer_inflight_requests", "gauge", inflight, V_U64,
         "Requests sent to the peer (or received from it) not yet done there."),
    PEER("nbdmirror_peer_out_of_sync_bytes", "gauge", out_of_sync_bytes, V_U64,
         "Bytes marked out of sync with the peer (its bitmap, or what a sync target still "
         "awaits)."),
    PEER("nbdmirror_peer_send_queue_bytes", "gauge", send_queue_bytes, V_U64,
         "Bytes queued to the peer here and in the socket, not yet taken by its TCP."),
    PEER("nbdmirror_peer_lag_bytes", "gauge", lag_bytes, V_U64,
         "Bytes of client writes, trims and zero writes sent or queued to the peer that it "
         "has not acknowledged (0 unless it takes our stream)."),
    PEER("nbdmirror_peer_lag_seconds", "gauge", lag_ms, V_MS,
         "Age of the oldest client write the peer has not acknowledged (0 when none)."),
    PEER("nbdmirror_peer_resync_sent_bytes", "gauge", resync_sent_bytes, V_U64,
         "Bytes the running resync has moved (the last one's while none runs)."),
    PEER("nbdmirror_peer_resync_rate_bytes_per_second", "gauge", resync_bytes_per_s, V_U64,
         "Recent speed of the running resync (0 while none runs)."),
    PEER("nbdmirror_peer_resync_eta_seconds", "gauge", resync_eta_s, V_U64,
         "Estimated seconds until the running resync is done (0 while none runs)."),
    PEER("nbdmirror_peer_last_resync_bytes", "gauge", last_resync_bytes, V_U64,
         "Bytes the last finished resync moved."),
    PEER("nbdmirror_peer_last_resync_seconds", "gauge", last_resync_ms, V_MS,
         "How long the last finished resync or verify took."),
    PEER("nbdmirror_peer_verify_mismatch_bytes", "gauge", verify_mismatch_bytes, V_U64,
         "Bytes the last online verify found different."),
    PEER("nbdmirror_peer_sent_bytes_total", "counter", sent_bytes, V_U64,
         "Client write data sent to the peer."),
    PEER("nbdmirror_peer_acked_bytes_total", "counter", acked_bytes, V_U64,
         "Client write data written by the peer (as primary: acknowledged by it; as "
         "secondary: acknowledged to it)."),
    PEER("nbdmirror_peer_received_bytes_total", "counter", received_bytes, V_U64,
         "Client write data received from the peer."),
    PEER("nbdmirror_peer_trimmed_bytes_total", "counter", trimmed_bytes, V_U64,
         "Bytes of trims done on the peer's side of the stream."),
    PEER("nbdmirror_peer_zeroed_bytes_total", "counter", zeroed_bytes, V_U64,
         "Bytes of zero writes done on the peer's side of the stream."),
    PEER("nbdmirror_peer_sent_requests_total", "counter", sent_requests, V_U64,
         "Client writes, trims and zero writes sent to the peer."),
    PEER("nbdmirror_peer_acked_requests_total", "counter", acked_requests, V_U64,
         "Client writes, trims and zero writes acknowledged (see acked_bytes)."),
};

static void peer_metrics(const struct ctx *x, const struct node_status *st)
{
    int n = st->npeers < REPL_MAX_PEERS ? st->npeers : REPL_MAX_PEERS;
    const struct status_peer *ps = st->peers;

    if (n <= 0)
        return;
    family(x, "nbdmirror_peer_connection_state", "gauge",
           "The link to the peer: 1 for the current state.");
    for (int i = 0; i < n; i++)
        state_set(x, "nbdmirror_peer_connection_state", ps[i].address, "state", conn_states,
                  ps[i].connection);
    family(x, "nbdmirror_peer_replication_state", "gauge",
           "Replication with the peer: 1 for the current state.");
    for (int i = 0; i < n; i++)
        state_set(x, "nbdmirror_peer_replication_state", ps[i].address, "state", repl_states,
                  ps[i].replication);
    family(x, "nbdmirror_peer_disk_state", "gauge",
           "The peer's disk, as this node knows it: 1 for the current state.");
    for (int i = 0; i < n; i++)
        state_set(x, "nbdmirror_peer_disk_state", ps[i].address, "state", disk_states,
                  ps[i].peer_disk);
    family(x, "nbdmirror_peer_role", "gauge", "The peer's role: 1 for the current one.");
    for (int i = 0; i < n; i++)
        state_set(x, "nbdmirror_peer_role", ps[i].address, "role", peer_roles, ps[i].peer_role);
    family(x, "nbdmirror_peer_resync_active", "gauge",
           "1 while a resync or verify with the peer runs.");
    for (int i = 0; i < n; i++) {
        series(x, "nbdmirror_peer_resync_active", ps[i].address, NULL);
        put_u64(x->f, ps[i].resync_percent >= 0);
    }
    family(x, "nbdmirror_peer_resync_progress_ratio", "gauge",
           "How much of the running resync is done, 0 to 1 (0 while none runs).");
    for (int i = 0; i < n; i++) {
        int pct = ps[i].resync_percent < 0 ? 0 : ps[i].resync_percent > 100 ? 100
                                                                              : ps[i].resync_percent;
        series(x, "nbdmirror_peer_resync_progress_ratio", ps[i].address, NULL);
        put_fixed(x->f, (uint64_t)pct, 2);
    }
    for (size_t k = 0; k < sizeof peer_nums / sizeof peer_nums[0]; k++) {
        const struct pnum *m = &peer_nums[k];
        family(x, m->name, m->type, m->help);
        for (int i = 0; i < n; i++) {
            uint64_t v = *(const uint64_t *)((const char *)&ps[i] + m->off);
            series(x, m->name, ps[i].address, NULL);
            if (m->kind == V_MS)
                put_fixed(x->f, v, 3);
            else
                put_u64(x->f, v);
        }
    }
}

int metrics_render(FILE *f, const struct node_status *st, const struct metrics_hists *h,
                   const char *resource)
{
    struct ctx x = { f, resource && resource[0] ? resource : NULL };
    static const struct metrics_hists none;
    static const char name[] = "nbdmirror_request_duration_seconds";

    if (!h)
        h = &none;
    __fsetlocking(f, FSETLOCKING_BYCALLER); /* one thread: thousands of calls, no locks */
    node_metrics(&x, st);
    family(&x, name, "histogram",
           "Seconds from an NBD request's decode to its reply, for reads, writes and flushes.");
    histogram(&x, name, "read", h->read);
    histogram(&x, name, "write", h->write);
    histogram(&x, name, "flush", h->flush);
    peer_metrics(&x, st);
    return fflush(f) == EOF || ferror(f) ? -EIO : 0;
}
