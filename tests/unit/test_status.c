/* Status record: the line format round-trips every field of a node with 31
 * peers, hostile strings included (newlines, quotes, backslashes, '=',
 * control bytes, bytes that are not UTF-8) without a value ever forging a
 * key; malformed records are refused; the JSON rendering escapes what it
 * must; and the control socket delivers an answer far larger than a socket
 * buffer whole. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common.h"
#include "ctl.h"
#include "status.h"

static const char hostile[] = "/dev/a\nrole=evil\n\"q\" \\b\\n=c\r\t\x01\x7f\xff\xc3\xa9 end";

static void sample(struct node_status *st)
{
    memset(st, 0, sizeof *st);
    strcpy(st->role, "primary");
    strcpy(st->disk, "UpToDate");
    strcpy(st->device, hostile);
    strcpy(st->export_name, "x=y\nend\npeer=1.2.3.4");
    st->size = UINT64_MAX;
    st->read_only = true;
    strcpy(st->engine, "io_uring");
    st->uptime_s = 12;
    st->clients = 3;
    st->connections_total = 99;
    st->reads = 1, st->writes = 2, st->flushes = 3, st->trims = 4, st->zero_writes = 5;
    st->block_status = 6, st->errors = 7, st->read_bytes = 8, st->write_bytes = 1ULL << 40;
    st->disk_depth = 24, st->disk_inflight = 23, st->disk_waiting = 8, st->disk_waited = 1ULL << 33;
    st->npeers = REPL_MAX_PEERS;
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct status_peer *p = &st->peers[i];
        struct peer_status ps = {
            .connection = i % 3 ? "Connected" : "Connecting",
            .replication = i % 2 ? "SyncSource" : "Established",
            .peer_disk = "Inconsistent",
            .protocol = i == 5 ? 0 : "ABC"[i % 3],
            .sent_bytes = 1000 + i, .acked_bytes = 900 + i, .received_bytes = i,
            .sent_requests = 10 + i, .acked_requests = 9 + i,
            .trimmed_bytes = 4096ULL * i, .zeroed_bytes = 8192ULL * i,
            .inflight = i, .out_of_sync_bytes = 1ULL << 30,
            .resync_sent_bytes = 77, .resync_eta_s = i % 2 ? 42 : 0,
            .resync_bytes_per_s = 5 << 20, .resync_percent = i % 2 ? i * 3 : -1,
            .send_queue_bytes = 3ULL * i, .lag_bytes = 4096ULL * i, .lag_ms = 1500ULL * i,
        };
        snprintf(ps.address, sizeof ps.address, "10.77.%d.2:7789", i + 1);
        if (i == 7)
            strcpy(ps.address, "evil\npeer=x\\");
        if (i == 30)
            strcpy(ps.last_error, "its disk failed a write:\n\"Input/output error\"=5");
        status_peer_from(p, &ps);
    }
}

static char *write_record(const struct node_status *st, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    CHECK(f && status_write(f, st) == 0);
    fclose(f);
    return buf;
}

/* how many lines of buf start with s */
static int lines_starting(const char *buf, const char *s)
{
    int n = 0;
    for (const char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
        n += !strncmp(p, s, strlen(s));
    return n;
}

static void test_round_trip(void)
{
    static struct node_status a, b;
    char why[128] = "", *buf;
    size_t len;

    sample(&a);
    buf = write_record(&a, &len);
    /* one line per field, one "peer=" per peer: no value made a line */
    CHECK(lines_starting(buf, "role=") == 1);
    CHECK(lines_starting(buf, "peer=") == REPL_MAX_PEERS);
    CHECK(lines_starting(buf, "end") == 1);
    CHECK(lines_starting(buf, "export=") == 1);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    CHECK(lines == 1 + 25 + REPL_MAX_PEERS * 28 + 1);
    CHECK(strstr(buf, "device=/dev/a\\nrole=evil\\n\"q\" \\\\b\\\\n=c\\r\\t\\x01\\x7f\xff\xc3\xa9 end\n"));
    CHECK(strstr(buf, "resync_percent=null\nresync_eta_s=null\n"));
    CHECK(strstr(buf, "resync_percent=3\nresync_eta_s=42\n"));

    CHECK(status_parse(buf, len, &b, why, sizeof why) == 0);
    if (why[0])
        fprintf(stderr, "parse: %s\n", why);
    /* a parsed record is the record (the eta of no sync reads back as 0,
     * which the sample already holds) */
    CHECK(!strcmp(b.device, hostile));
    CHECK(!strcmp(b.export_name, a.export_name));
    CHECK(b.size == UINT64_MAX && b.read_only && !b.direct);
    CHECK(b.npeers == REPL_MAX_PEERS);
    CHECK(!strcmp(b.peers[7].address, "evil\npeer=x\\"));
    CHECK(b.peers[5].protocol == 0 && b.peers[4].protocol == 'B');
    CHECK(b.peers[0].resync_percent == -1 && b.peers[1].resync_percent == 3);
    CHECK(!strcmp(b.peers[30].last_error, a.peers[30].last_error));
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    free(buf);

    /* an empty record: no peers, empty strings */
    memset(&a, 0, sizeof a);
    buf = write_record(&a, &len);
    CHECK(status_parse(buf, len, &b, why, sizeof why) == 0);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    free(buf);
}

static int parse_str(const char *s, char *why, size_t cap)
{
    static struct node_status st;
    return status_parse(s, strlen(s), &st, why, cap);
}

static void test_refusals(void)
{
    static struct node_status st;
    char why[128], big[8192];
    const char *bad[] = {
        "",
        "error: unknown command 'get' (try: status, status json)\n",
        "nbdmirror-status 2\nend\n",
        "nbdmirror-status 1\nrole=primary\n",                 /* no end: truncated */
        "nbdmirror-status 1\nrole=primary\nend",              /* the end line is cut */
        "nbdmirror-status 1\nend\nrole=x\n",
        "nbdmirror-status 1\nrole\nend\n",
        "nbdmirror-status 1\nrole=a\rb\nend\n",               /* raw control character */
        "nbdmirror-status 1\nrole=a\\qb\nend\n",              /* unknown escape */
        "nbdmirror-status 1\nrole=a\\\nend\n",                /* trailing backslash */
        "nbdmirror-status 1\nrole=\\x0\nend\n",
        "nbdmirror-status 1\nrole=\\x00\nend\n",              /* NUL */
        "nbdmirror-status 1\nrole=abcdefghijklmnop\nend\n",   /* longer than the field */
        "nbdmirror-status 1\nsize=18446744073709551616\nend\n",
        "nbdmirror-status 1\nsize=-1\nend\n",
        "nbdmirror-status 1\nsize=\nend\n",
        "nbdmirror-status 1\nsize=1 \nend\n",
        "nbdmirror-status 1\nread_only=yes\nend\n",
        "nbdmirror-status 1\npeer=a\nresync_percent=101\nend\n",
        "nbdmirror-status 1\npeer=a\nprotocol=AB\nend\n",
    };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        int r = parse_str(bad[i], why, sizeof why);
        CHECK(r == -EPROTO && why[0]);
        if (r == 0)
            fprintf(stderr, "accepted bad record %u\n", i);
    }
    CHECK(parse_str("nbdmirror-status 2\nend\n", why, sizeof why) < 0 && strstr(why, "version"));

    /* 32 peers are one too many */
    size_t n = snprintf(big, sizeof big, "nbdmirror-status 1\n");
    for (int i = 0; i <= REPL_MAX_PEERS; i++)
        n += snprintf(big + n, sizeof big - n, "peer=p%d\n", i);
    snprintf(big + n, sizeof big - n, "end\n");
    CHECK(parse_str(big, why, sizeof why) < 0 && strstr(why, "peers"));

    /* keys a newer daemon adds are skipped; a peer's keys stay with it */
    const char *ok = "nbdmirror-status 1\nrole=secondary\nfuture_key=\\q anything\n"
                     "peer=a\nsent_bytes=5\npeer=b\nsent_bytes=6\naddress=ignored\nend\n";
    CHECK(status_parse(ok, strlen(ok), &st, why, sizeof why) == 0);
    CHECK(!strcmp(st.role, "secondary") && st.npeers == 2);
    CHECK(st.peers[0].sent_bytes == 5 && st.peers[1].sent_bytes == 6);
    CHECK(!strcmp(st.peers[1].address, "b") && st.peers[1].resync_percent == -1);
}

static char *render(void (*fn)(FILE *, const struct node_status *), const struct node_status *st)
{
    char *buf = NULL;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    fn(f, st);
    fclose(f);
    return buf;
}

static void test_renderings(void)
{
    static struct node_status st;
    char *j, *t;

    sample(&st);
    j = render(status_print_json, &st);
    /* the JSON is one line: every control character is escaped, quotes and
     * backslashes too, the byte that is not UTF-8 is U+FFFD, é stays */
    CHECK(strchr(j, '\n') == j + strlen(j) - 1);
    const unsigned char *c = (const unsigned char *)j;
    while (*c >= 0x20)
        c++;
    CHECK(*c == '\n' && c[1] == '\0');
    CHECK(strstr(j, "\"device\":\"/dev/a\\nrole=evil\\n\\\"q\\\" \\\\b\\\\n=c\\r\\t\\u0001\x7f"
                    "\\ufffd\xc3\xa9 end\","));
    CHECK(!strncmp(j, "{\"role\":\"primary\",\"disk\":\"UpToDate\",", 36));
    CHECK(strstr(j, "\"size\":18446744073709551615,\"read_only\":true,\"engine\":\"io_uring\","
                    "\"direct\":false,\"uptime_s\":12,"));
    CHECK(strstr(j, "\"write_bytes\":1099511627776,\"disk_depth\":24,\"disk_inflight\":23,"
                    "\"disk_waiting\":8,\"disk_waited\":8589934592,\"peers\":[{\"address\":\"10.77.1.2:7789\","
                    "\"connection\":\"Connecting\",\"replication\":\"Established\","
                    "\"peer_disk\":\"Inconsistent\",\"protocol\":\"A\",\"sent_bytes\":1000,"));
    CHECK(strstr(j, "\"resync_percent\":null,\"resync_eta_s\":null,\"resync_bytes_per_s\":5242880,"
                    "\"trimmed_bytes\":0,\"zeroed_bytes\":0,\"last_error\":\"\","));
    CHECK(strstr(j, "\"last_resync_reason\":\"\",\"last_resync_bytes\":0,\"last_resync_ms\":0,"
                    "\"last_resync_skipped_bytes\":0,\"verify_mismatch_bytes\":0,"
                    "\"send_queue_bytes\":0,\"lag_bytes\":0,\"lag_ms\":0}"));
    CHECK(strstr(j, "\"resync_percent\":3,\"resync_eta_s\":42,"));
    CHECK(strstr(j, "\"protocol\":\"-\""));
    CHECK(strstr(j, "\"last_error\":\"its disk failed a write:\\n\\\"Input/output error\\\"=5\","));
    CHECK(strstr(j, "\"lag_ms\":45000}]}\n"));
    free(j);

    t = render(status_print_text, &st);
    /* control characters are shown, not obeyed: no forged lines */
    CHECK(lines_starting(t, "role:") == 1);
    CHECK(strstr(t, "device: /dev/a\\nrole=evil\\n\"q\" \\b\\n=c\\r\\t\\x01\\x7f"));
    CHECK(strstr(t, "    sync: 3%, 0.0 MiB done, 5.0 MiB/s, eta 42s\n"));
    CHECK(strstr(t, "\ndisk queue: 23 at the disk, 8 waiting, 8589934592 waited since start "
                    "(--disk-depth 24)\n"));
    CHECK(strstr(t, "    last error: its disk failed a write:\\n\"Input/output error\"=5\n"));
    CHECK(strstr(t, "\n10.77.1.2:7789         Connecting Established Inconsistent A        0.0        0.0        0\n"));
    free(t);

    st.npeers = 0;
    t = render(status_print_text, &st);
    CHECK(strstr(t, "\npeers: none\n"));
    CHECK(strstr(t, "waited since start (--disk-depth 24)\n"));
    st.disk_depth = 0;
    free(t);
    t = render(status_print_text, &st);
    CHECK(strstr(t, "waited since start (no --disk-depth)\n"));
    free(t);
}

/* ---- the control socket sends a large answer whole ---- */

static size_t big_len;

static char *big_answer(const char *cmd, size_t *len)
{
    char *b = malloc(big_len);
    if (!b)
        return NULL;
    for (size_t i = 0; i < big_len; i++)
        b[i] = "0123456789abcdef\n"[i % 17];
    /* the command comes back at the start */
    memcpy(b, cmd, strlen(cmd));
    *len = big_len;
    return b;
}

struct query { const char *path; char *out; size_t len; int r; volatile int done; };

static void *query_thread(void *arg)
{
    struct query *q = arg;
    q->r = ctl_query(q->path, "get", &q->out, &q->len);
    q->done = 1;
    return NULL;
}

static int run_query(struct query *q)
{
    pthread_t t;
    if (pthread_create(&t, NULL, query_thread, q))
        return -1;
    /* the daemon's side runs in this thread's event loop */
    for (int i = 0; i < 600 && !q->done; i++)
        loop_wait(100);
    pthread_join(t, NULL);
    return q->r;
}

static void test_control_socket(void)
{
    char dir[] = "/tmp/nbdm-unit.XXXXXX", path[64];

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/ctl", dir);
    CHECK(loop_init() == 0);
    CHECK(ctl_start(path, big_answer) == 0);

    /* 4 MiB: many times any socket buffer, so most of it goes out on
     * EPOLLOUT after a short send */
    big_len = 4u << 20;
    struct query q = { .path = path };
    CHECK(run_query(&q) == 0);
    CHECK(q.len == big_len);
    if (q.out && q.len == big_len) {
        char *want = big_answer("get", &big_len);
        CHECK(memcmp(q.out, want, big_len) == 0);
        free(want);
    }
    free(q.out);

    /* past the client's cap: refused, not truncated silently */
    big_len = CTL_ANSWER_MAX + 1;
    struct query q2 = { .path = path };
    CHECK(run_query(&q2) == -EFBIG);

    ctl_stop();
    CHECK(access(path, F_OK) < 0); /* the socket is removed */
    rmdir(dir);
}

int main(void)
{
    test_round_trip();
    test_refusals();
    test_renderings();
    test_control_socket();
    return check_summary();
}
