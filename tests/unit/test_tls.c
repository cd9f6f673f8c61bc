/* TLS in the connection layer, on real sockets and the real event loop,
 * with a pre-shared key: two streams complete the handshake (on_secure on
 * both), frames with payloads cross intact both ways, and input the
 * receiver takes a little at a time is all delivered. That last case
 * found a stall: GnuTLS holds the rest of a decrypted record where no epoll
 * event announces it, so a reader that stopped after its rounds per wakeup
 * waited for bytes that had already arrived. A wrong key fails the
 * handshake on both sides with a reason; a close is a close_notify. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdio.h>

#include "check.h"
#include "conn.h"

static int secured, closed;
static const char *why_closed[2];

struct side {
    struct stream s;
    int idx;
    size_t got;      /* bytes of frames received */
    uint8_t *buf;    /* the current frame's payload */
    uint32_t len;
    uint64_t sum;    /* of every payload byte, in order, weighted */
};

static size_t on_data(struct stream *s, uint8_t *p, size_t len)
{
    struct side *d = s->arg;
    if (len < 4)
        return 0;
    d->len = get_be32(p);
    d->buf = malloc(d->len);
    stream_recv_into(s, d->buf, d->len);
    return 4;
}

static void on_payload(struct stream *s, void *buf, uint32_t len)
{
    struct side *d = s->arg;
    for (uint32_t i = 0; i < len; i++)
        d->sum = d->sum * 31 + ((uint8_t *)buf)[i];
    d->got += 4 + len;
    free(buf);
}

static void on_secure(struct stream *s) { (void)s, secured++; }

static void on_close(struct stream *s, const char *why)
{
    struct side *d = s->arg;
    closed++;
    why_closed[d->idx] = why;
}

static const struct stream_ops ops = { .on_data = on_data, .on_payload = on_payload,
                                       .on_secure = on_secure, .on_close = on_close };

static struct tls_creds *creds(const char *dir, const char *line)
{
    char path[256], err[256];
    struct tls_creds *c = NULL;
    snprintf(path, sizeof path, "%s/keys-%c.psk", dir, line[0]);
    FILE *f = fopen(path, "w");
    fputs(line, f);
    fclose(f);
    CHECK(tls_creds_psk(&c, path, err, sizeof err) == 0);
    return c;
}

static void spin(int turns, bool (*done)(void))
{
    for (int i = 0; i < turns && !done(); i++) {
        loop_wait(1);
        stream_flush_dirty();
    }
}

static struct side a, b;
static size_t want;
static bool both_secure(void) { return secured == 2 || closed; }
static bool all_there(void) { return (a.got == want && b.got == want) || closed; }
static bool both_closed(void) { return closed == 2; }

static void start(int in_cap_b, const struct tls_creds *ca, const struct tls_creds *cb)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.idx = 0, b.idx = 1;
    secured = closed = 0;
    CHECK(stream_init(&a.s, sv[0], "a", &ops, &a, 4096, 256, 0, false) == 0);
    CHECK(stream_init(&b.s, sv[1], "b", &ops, &b, in_cap_b, 256, 0, false) == 0);
    CHECK(stream_start_tls(&a.s, ca, false) == 0);
    CHECK(stream_start_tls(&b.s, cb, true) == 0);
    spin(20000, both_secure);
}

/* n frames of `size` bytes each way, queued at once */
static void exchange(int n, uint32_t size)
{
    static uint8_t data[1 << 20], hdr[4];
    uint64_t expect = 0;
    for (uint32_t i = 0; i < size; i++)
        data[i] = (uint8_t)(i * 13 + 5);
    for (int k = 0; k < n; k++)
        for (uint32_t i = 0; i < size; i++)
            expect = expect * 31 + data[i];
    put_be32(hdr, size);
    want = (size_t)n * (4 + size);
    a.got = b.got = 0;
    a.sum = b.sum = 0;
    /* as fast as the queues take them (256 items each) */
    for (int ka = 0, kb = 0, turns = 0; (ka < n || kb < n) && turns < 20000; turns++) {
        while (ka < n && stream_queue(&a.s, hdr, 4, data, size, NULL, NULL) == 0)
            ka++;
        while (kb < n && stream_queue(&b.s, hdr, 4, data, size, NULL, NULL) == 0)
            kb++;
        loop_wait(1);
        stream_flush_dirty();
    }
    spin(20000, all_there);
    if (a.got != want || b.got != want)
        fprintf(stderr, "%d x %u: a got %zu, b got %zu of %zu (closed %d)\n", n, size, a.got, b.got, want, closed);
    CHECK(a.got == want && b.got == want);
    CHECK(a.sum == expect && b.sum == expect);
}

int main(void)
{
    char dir[] = "/tmp/nbdm-test-tls.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(loop_init() == 0);
    struct tls_creds *k1 = creds(dir, "alice:00112233445566778899aabbccddeeff\n");
    struct tls_creds *k2 = creds(dir, "bob:ffeeddccbbaa99887766554433221100\n");

    /* the right key: up both ways, frames cross */
    start(4096, k1, k1);
    CHECK(secured == 2 && closed == 0 && a.s.tls_up && b.s.tls_up);
    exchange(200, 1000);
    exchange(10, 60000);
    exchange(3, 1000000); /* longer than a batch of records: sent in pieces */
    /* a receiver that stages 64 bytes reads a record of many small frames
     * in many small pieces, more than its rounds per wakeup: all of it must
     * arrive, though the socket is empty once GnuTLS has the record */
    stream_close(&a.s, NULL);
    stream_close(&b.s, NULL);
    spin(10, both_closed);
    start(64, k1, k1);
    exchange(1, 16000);
    exchange(1000, 5);
    stream_close(&a.s, NULL); /* a close_notify: an end of file there */
    spin(20000, both_closed);
    CHECK(closed == 2 && why_closed[1] == STREAM_EOF);

    /* the wrong key: both sides fail the handshake, and say why */
    start(4096, k2, k1);
    spin(20000, both_closed);
    CHECK(secured == 0 && closed == 2);
    CHECK(why_closed[1] && why_closed[1] != STREAM_EOF && !strncmp(why_closed[1], "TLS: ", 5));

    tls_creds_free(k1);
    tls_creds_free(k2);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_summary();
}
