/* Metrics: the histogram's buckets take each bound on the right side; the
 * exposition of a node with 31 peers names every family once (HELP, then
 * TYPE, then only its own samples), shows states as one series per value,
 * histograms cumulative with +Inf equal to _count, seconds as exact
 * decimals, and hostile strings as valid, escaped label values; the HTTP
 * request parser answers each kind of request with its status. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hist.h"
#include "metrics.h"
#include "status.h"

static char *render(const struct node_status *st, const struct metrics_hists *h,
                    const char *resource)
{
    char *buf = NULL;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f && metrics_render(f, st, h, resource) == 0);
    fclose(f);
    return buf;
}

static void test_hist(void)
{
    struct hist h = { 0 };
    hist_add(&h, 0);
    hist_add(&h, 25000);              /* on a bound: that bucket (le is <=) */
    hist_add(&h, 25001);
    hist_add(&h, 10000000000ULL);     /* 10 s: the last bound */
    hist_add(&h, 10000000001ULL);     /* above every bound */
    CHECK(h.bucket[0] == 2 && h.bucket[1] == 1);
    CHECK(h.bucket[HIST_BUCKETS - 1] == 1 && h.bucket[HIST_BUCKETS] == 1);
    CHECK(h.sum_ns == 25000 + 25001 + 20000000001ULL);
    for (int i = 1; i < HIST_BUCKETS; i++)
        CHECK(hist_bounds_ns[i] > hist_bounds_ns[i - 1]);
    uint64_t a = hist_now_ns(), b = hist_now_ns();
    CHECK(a > 0 && b >= a);
}

static void sample(struct node_status *st)
{
    memset(st, 0, sizeof *st);
    strcpy(st->role, "primary");
    strcpy(st->disk, "UpToDate");
    /* a quote, a backslash, a newline, a tab, a byte that is not UTF-8, é */
    strcpy(st->device, "/dev/\"a\\b\nc\td\xff\xc3\xa9");
    strcpy(st->export_name, "exp");
    strcpy(st->engine, "io_uring");
    st->size = 1 << 30;
    st->writes = 12, st->reads = 34, st->flushes = 5, st->zero_writes = 6;
    st->write_bytes = 12 * 4096, st->read_bytes = 34 * 4096, st->errors = 1;
    st->disk_depth = 24, st->disk_inflight = 20, st->disk_waiting = 3, st->disk_waited = 77;
    st->npeers = REPL_MAX_PEERS;
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct status_peer *p = &st->peers[i];
        snprintf(p->address, sizeof p->address, "10.77.%d.2:7789", i + 1);
        strcpy(p->connection, "Connected");
        strcpy(p->replication, i == 1 ? "SyncSource" : "Established");
        strcpy(p->peer_disk, i == 1 ? "Inconsistent" : "UpToDate");
        strcpy(p->peer_role, "Secondary");
        p->resync_percent = i == 1 ? 42 : -1;
        p->lag_ms = i == 0 ? 1500 : i == 2 ? 7 : 0;
        p->lag_bytes = 8192ULL * i;
        p->out_of_sync_bytes = i == 1 ? 1ULL << 20 : 0;
    }
    strcpy(st->peers[3].replication, "SomethingNew"); /* a newer state: shown too */
    strcpy(st->peers[4].address, "evil\"} 1\nnbdmirror_forged 1");
}

/* Every sample belongs to the family last announced, and each family is
 * announced once, HELP before TYPE. Returns how many there are. */
static int check_families(const char *text)
{
    char fam[128] = "", type[32] = "";
    char seen[64][128];
    int nseen = 0;
    const char *p = text;

    while (*p) {
        const char *nl = strchr(p, '\n');
        CHECK(nl != NULL);
        if (!nl)
            return nseen;
        char line[1024];
        size_t n = (size_t)(nl - p) < sizeof line - 1 ? (size_t)(nl - p) : sizeof line - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        if (!strncmp(line, "# HELP ", 7)) {
            CHECK(sscanf(line + 7, "%127s", fam) == 1);
            for (int i = 0; i < nseen; i++)
                CHECK(strcmp(seen[i], fam) != 0);
            if (nseen < 64)
                strcpy(seen[nseen++], fam);
            type[0] = '\0';
        } else if (!strncmp(line, "# TYPE ", 7)) {
            char name[128];
            CHECK(sscanf(line + 7, "%127s %31s", name, type) == 2);
            CHECK(!strcmp(name, fam));
        } else {
            size_t l = strcspn(line, "{ ");
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)l, line);
            bool ok = !strcmp(name, fam);
            if (!strcmp(type, "histogram")) {
                char b[160];
                for (const char *suf = "_bucket\0_sum\0_count\0"; *suf; suf += strlen(suf) + 1) {
                    snprintf(b, sizeof b, "%s%s", fam, suf);
                    ok |= !strcmp(name, b);
                }
            }
            CHECK(ok && type[0]);
            if (!ok)
                fprintf(stderr, "sample outside its family %s: %s\n", fam, line);
            /* a counter's name ends in _total, nothing else's does */
            size_t fl = strlen(fam);
            CHECK(!strcmp(type, "counter") == (fl > 6 && !strcmp(fam + fl - 6, "_total")));
        }
        p = nl + 1;
    }
    return nseen;
}

static void test_render(void)
{
    static struct node_status st;
    struct hist r = { 0 }, w = { 0 };
    char *t;

    sample(&st);
    for (int i = 0; i < 12; i++)
        hist_add(&w, 30000 + i);     /* all in the 50 us bucket */
    hist_add(&r, 2000000);           /* 2 ms */
    struct metrics_hists h = { &r, &w, NULL };

    t = render(&st, &h, NULL);
    CHECK(check_families(t) == 41);
    CHECK(strstr(t, "# TYPE nbdmirror_requests_total counter\n"));
    CHECK(strstr(t, "\nnbdmirror_requests_total{op=\"write\"} 12\n"));
    CHECK(strstr(t, "\nnbdmirror_disk_depth_limit 24\n"));
    CHECK(strstr(t, "\nnbdmirror_disk_inflight_requests 20\n"));
    CHECK(strstr(t, "# TYPE nbdmirror_disk_waited_requests_total counter\n"));
    CHECK(strstr(t, "\nnbdmirror_disk_waiting_requests 3\n"));
    CHECK(strstr(t, "\nnbdmirror_disk_waited_requests_total 77\n"));
    CHECK(strstr(t, "\nnbdmirror_requests_total{op=\"block_status\"} 0\n"));
    CHECK(strstr(t, "\nnbdmirror_written_bytes_total 49152\n"));
    CHECK(strstr(t, "\nnbdmirror_role{role=\"primary\"} 1\nnbdmirror_role{role=\"secondary\"} 0\n"));
    CHECK(strstr(t, "\nnbdmirror_disk_state{state=\"UpToDate\"} 1\n"));
    /* the histogram: cumulative, exact bounds, the sum in seconds */
    CHECK(strstr(t, "# TYPE nbdmirror_request_duration_seconds histogram\n"));
    CHECK(strstr(t, "\nnbdmirror_request_duration_seconds_bucket{op=\"write\",le=\"0.000025\"} 0\n"
                    "nbdmirror_request_duration_seconds_bucket{op=\"write\",le=\"0.00005\"} 12\n"));
    CHECK(strstr(t, "\nnbdmirror_request_duration_seconds_bucket{op=\"write\",le=\"10\"} 12\n"
                    "nbdmirror_request_duration_seconds_bucket{op=\"write\",le=\"+Inf\"} 12\n"
                    "nbdmirror_request_duration_seconds_sum{op=\"write\"} 0.000360066\n"
                    "nbdmirror_request_duration_seconds_count{op=\"write\"} 12\n"));
    CHECK(strstr(t, "\nnbdmirror_request_duration_seconds_bucket{op=\"read\",le=\"0.001\"} 0\n"
                    "nbdmirror_request_duration_seconds_bucket{op=\"read\",le=\"0.0025\"} 1\n"));
    CHECK(strstr(t, "\nnbdmirror_request_duration_seconds_sum{op=\"read\"} 0.002\n"));
    /* no flushes yet: a histogram of zeros, not a missing one */
    CHECK(strstr(t, "\nnbdmirror_request_duration_seconds_count{op=\"flush\"} 0\n"));
    CHECK(strstr(t, "\nnbdmirror_request_duration_seconds_sum{op=\"flush\"} 0\n"));
    /* the device path escaped; what is not UTF-8 or a control byte is U+FFFD */
    CHECK(strstr(t, "nbdmirror_info{device=\"/dev/\\\"a\\\\b\\nc\xef\xbf\xbd" "d\xef\xbf\xbd\xc3\xa9\","
                    "export=\"exp\",engine=\"io_uring\",direct=\"false\"} 1\n"));
    /* peers */
    CHECK(strstr(t, "\nnbdmirror_peer_lag_seconds{peer=\"10.77.1.2:7789\"} 1.5\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_lag_seconds{peer=\"10.77.2.2:7789\"} 0\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_lag_seconds{peer=\"10.77.3.2:7789\"} 0.007\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_lag_bytes{peer=\"10.77.3.2:7789\"} 16384\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_resync_progress_ratio{peer=\"10.77.2.2:7789\"} 0.42\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_resync_progress_ratio{peer=\"10.77.1.2:7789\"} 0\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_resync_active{peer=\"10.77.2.2:7789\"} 1\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_out_of_sync_bytes{peer=\"10.77.2.2:7789\"} 1048576\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_replication_state{peer=\"10.77.2.2:7789\",state=\"SyncSource\"} 1\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_replication_state{peer=\"10.77.2.2:7789\",state=\"Established\"} 0\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_replication_state{peer=\"10.77.4.2:7789\",state=\"SomethingNew\"} 1\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_disk_state{peer=\"10.77.1.2:7789\",state=\"UpToDate\"} 1\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_connection_state{peer=\"10.77.1.2:7789\",state=\"Connected\"} 1\n"));
    /* a hostile address stays inside its label */
    CHECK(strstr(t, "{peer=\"evil\\\"} 1\\nnbdmirror_forged 1\"}"));
    CHECK(!strstr(t, "\nnbdmirror_forged"));
    /* 31 peers: one series each per plain family */
    int n = 0;
    for (const char *p = t; (p = strstr(p, "\nnbdmirror_peer_lag_bytes{")); p++)
        n++;
    CHECK(n == REPL_MAX_PEERS);
    free(t);

    /* the resource label comes first on every series */
    t = render(&st, &h, "r0");
    CHECK(check_families(t) == 41);
    CHECK(strstr(t, "\nnbdmirror_read_only{resource=\"r0\"} 0\n"));
    CHECK(strstr(t, "\nnbdmirror_requests_total{resource=\"r0\",op=\"read\"} 34\n"));
    CHECK(strstr(t, "\nnbdmirror_peer_lag_seconds{resource=\"r0\",peer=\"10.77.1.2:7789\"} 1.5\n"));
    CHECK(strstr(t, "{resource=\"r0\",op=\"flush\",le=\"+Inf\"} 0\n"));
    free(t);

    /* no peers, no histograms: no peer families, empty histograms */
    st.npeers = 0;
    t = render(&st, NULL, "");
    CHECK(check_families(t) == 17);
    CHECK(!strstr(t, "nbdmirror_peer_"));
    CHECK(!strstr(t, "resource="));
    CHECK(strstr(t, "\nnbdmirror_request_duration_seconds_count{op=\"read\"} 0\n"));
    free(t);
}

static int parse(const char *s, bool *head)
{
    return metrics_parse_request(s, strlen(s), head);
}

static void test_requests(void)
{
    static char big[METRICS_REQ_MAX + 1];
    bool head = true;

    /* incomplete: wait */
    CHECK(parse("", &head) == 0);
    CHECK(parse("GET /metr", &head) == 0);
    CHECK(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n", &head) == 0);
    /* complete */
    CHECK(parse("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", &head) == 200 && !head);
    CHECK(parse("GET /metrics HTTP/1.0\r\n\r\n", &head) == 200);
    CHECK(parse("GET /metrics HTTP/1.1\n\n", &head) == 200);
    CHECK(parse("GET /metrics?name[]=x HTTP/1.1\r\n\r\n", &head) == 200);
    CHECK(parse("HEAD /metrics HTTP/1.1\r\n\r\n", &head) == 200 && head);
    CHECK(parse("GET / HTTP/1.1\r\n\r\n", &head) == 404);
    CHECK(parse("GET /metricsx HTTP/1.1\r\n\r\n", &head) == 404);
    CHECK(parse("GET /metrics/ HTTP/1.1\r\n\r\n", &head) == 404);
    CHECK(parse("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", &head) == 405);
    CHECK(parse("DELETE /metrics HTTP/1.1\r\n\r\n", &head) == 405);
    CHECK(parse("get /metrics HTTP/1.1\r\n\r\n", &head) == 405); /* methods are case-sensitive */
    /* garbage is answered as soon as its first line is there */
    CHECK(parse("\r\n", &head) == 400);
    CHECK(parse("hello\r\n", &head) == 400);
    CHECK(parse("GET /metrics\r\n\r\n", &head) == 400);          /* HTTP/0.9 */
    CHECK(parse("GET  /metrics HTTP/1.1\r\n\r\n", &head) == 400);
    CHECK(parse("GET /metrics HTTP/2.0\r\n\r\n", &head) == 400);
    CHECK(parse("GET /metrics HTTP/1.1 \r\n\r\n", &head) == 400);
    CHECK(parse("GET /met\x01rics HTTP/1.1\r\n\r\n", &head) == 400);
    static const char hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n"; /* TLS */
    CHECK(metrics_parse_request(hello, sizeof hello - 1, &head) == 400);
    /* too long: the line, or the headers */
    memset(big, 'a', METRICS_REQ_MAX);
    memcpy(big, "GET /", 5);
    CHECK(metrics_parse_request(big, METRICS_REQ_MAX, &head) == 414);
    CHECK(metrics_parse_request(big, METRICS_REQ_MAX - 1, &head) == 0);
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    CHECK(metrics_parse_request(big, METRICS_REQ_MAX, &head) == 431);
}

int main(void)
{
    test_hist();
    test_render();
    test_requests();
    return check_summary();
}
