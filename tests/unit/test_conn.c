/* The connection layer on real sockets and the real event loop: many queued
 * items with payloads arrive intact through a small socket buffer (partial
 * sends resumed), every completion runs exactly once (sent, or discarded at
 * close), frames are parsed with payloads received straight into a user
 * buffer, input held and resumed, a closed peer is noticed, a listener
 * accepts and names a dialled connection, a failed dial is reported. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "conn.h"

#define NITEMS 3000

static int sent_calls[NITEMS], dropped_calls[NITEMS];
static int closes;
static const char *close_why;
static bool close_connecting;

static void item_done(struct stream *s, void *arg, bool sent)
{
    (void)s;
    int i = (int)(intptr_t)arg;
    if (sent)
        sent_calls[i]++;
    else
        dropped_calls[i]++;
}

static void on_close(struct stream *s, const char *why)
{
    closes++;
    close_why = why;
    close_connecting = s->connecting;
}

/* ---- framing: [4-byte length][payload], payload into frames[] ---- */
#define NFRAMES 6
static uint32_t frame_len[NFRAMES] = { 10, 70000, 1, 5000, 200000, 3 };
static uint8_t *frames[NFRAMES];
static int nframes, hold_at = -1;
static uint32_t cur_len;

static size_t fr_data(struct stream *s, uint8_t *p, size_t len)
{
    if (len < 4)
        return 0;
    cur_len = get_be32(p);
    if (nframes >= NFRAMES || cur_len != frame_len[nframes]) {
        stream_close(s, "bad frame");
        return 0;
    }
    frames[nframes] = malloc(cur_len);
    stream_recv_into(s, frames[nframes], cur_len);
    return 4;
}

static void fr_payload(struct stream *s, void *buf, uint32_t len)
{
    CHECK(buf == frames[nframes] && len == frame_len[nframes]);
    if (nframes++ == hold_at)
        stream_hold(s);
}

static const struct stream_ops fr_ops = { .on_data = fr_data, .on_payload = fr_payload,
                                          .on_close = on_close };

static size_t sink_data(struct stream *s, uint8_t *p, size_t len)
{
    (void)s, (void)p;
    return len;
}
static const struct stream_ops sink_ops = { .on_data = sink_data, .on_close = on_close };

static void pair(int sv[2], int sndbuf)
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    if (sndbuf)
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
}

static void test_send_queue(void)
{
    static uint8_t payload[NITEMS + 64];
    static struct stream s;
    size_t total = 0, got = 0;
    uint8_t *expect, *recvd;
    bool partial = false;
    int sv[2];

    pair(sv, 4096);
    CHECK(stream_init(&s, sv[0], "a", &sink_ops, NULL, 4096, NITEMS, 0, false) == 0);
    for (int i = 0; i < NITEMS + 64; i++)
        payload[i] = (uint8_t)(i * 7 + 1);
    for (int i = 0; i < NITEMS; i++)
        total += 8 + i % 40 + i % 97;
    expect = malloc(total);
    recvd = malloc(total);
    size_t off = 0;
    for (int i = 0; i < NITEMS; i++) {
        uint8_t hdr[8 + 40];
        unsigned hl = 8 + i % 40, dl = i % 97;
        put_be64(hdr, i);
        memset(hdr + 8, 0xa5, hl - 8);
        CHECK(stream_queue(&s, hdr, hl, payload + i % 64, dl, item_done, (void *)(intptr_t)i) == 0);
        memcpy(expect + off, hdr, hl);
        memcpy(expect + off + hl, payload + i % 64, dl);
        off += hl + dl;
    }
    CHECK(stream_queued(&s) == NITEMS && stream_queued_bytes(&s) == total);
    CHECK(stream_queue(&s, "x", 1, NULL, 0, NULL, NULL) == -ENOBUFS); /* the ring is full */
    CHECK(stream_any_dirty());
    for (int turn = 0; got < total && turn < 100000; turn++) {
        stream_flush_dirty();
        loop_wait(0);
        partial |= s.out_waiting && s.q_count > 0;
        /* the reader takes little at a time: the writer must resume */
        ssize_t n = read(sv[1], recvd + got, total - got < 3000 ? total - got : 3000);
        if (n > 0)
            got += n;
    }
    CHECK(got == total && memcmp(expect, recvd, total) == 0);
    CHECK(partial);
    loop_wait(0);
    int once = 0;
    for (int i = 0; i < NITEMS; i++)
        once += sent_calls[i] == 1 && dropped_calls[i] == 0;
    CHECK(once == NITEMS);
    CHECK(stream_queued(&s) == 0 && stream_queued_bytes(&s) == 0);
    CHECK(!(s.events & EPOLLOUT)); /* no write interest with nothing queued */

    /* a small blob is copied: the caller's buffer may change at once */
    char blob[300];
    memset(blob, 'b', sizeof blob);
    CHECK(stream_write(&s, blob, sizeof blob) == 0);
    memset(blob, 'X', sizeof blob);
    stream_flush_dirty();
    char back[400];
    ssize_t n = read(sv[1], back, sizeof back);
    CHECK(n == 300 && back[0] == 'b' && back[299] == 'b');

    /* discarded at close: the peer reads nothing more */
    memset(sent_calls, 0, sizeof sent_calls);
    memset(dropped_calls, 0, sizeof dropped_calls);
    for (int i = 0; i < 1000; i++)
        CHECK(stream_queue(&s, "hdr", 3, payload, 64, item_done, (void *)(intptr_t)i) == 0);
    stream_flush_dirty();
    CHECK(s.q_count > 0); /* not all of it fits the socket */
    closes = 0;
    stream_close(&s, "test over");
    stream_close(&s, "twice");
    CHECK(closes == 1 && close_why && !strcmp(close_why, "test over"));
    int each = 0, sent = 0;
    for (int i = 0; i < 1000; i++) {
        each += sent_calls[i] + dropped_calls[i] == 1;
        sent += sent_calls[i];
    }
    CHECK(each == 1000 && sent > 0 && sent < 1000);
    CHECK(stream_queue(&s, "x", 1, NULL, 0, NULL, NULL) == -EPIPE);
    close(sv[1]);
    free(expect);
    free(recvd);
}

static void test_framing(void)
{
    static struct stream s;
    int sv[2];
    uint8_t *wire;
    size_t total = 0, put = 0;

    pair(sv, 0);
    CHECK(stream_init(&s, sv[0], "f", &fr_ops, NULL, 4096, 16, 0, false) == 0);
    for (int i = 0; i < NFRAMES; i++)
        total += 4 + frame_len[i];
    wire = malloc(total);
    for (int i = 0; i < NFRAMES; i++) {
        put_be32(wire + put, frame_len[i]);
        for (uint32_t j = 0; j < frame_len[i]; j++)
            wire[put + 4 + j] = (uint8_t)(i * 31 + j);
        put += 4 + frame_len[i];
    }
    hold_at = 2; /* after the third frame input waits */
    size_t sent = 0;
    for (int turn = 0; turn < 100000 && nframes < 3; turn++) {
        ssize_t n = sent < total ? write(sv[1], wire + sent, total - sent) : 0;
        if (n > 0)
            sent += n;
        loop_wait(0);
    }
    CHECK(nframes == 3 && s.held);
    for (int turn = 0; turn < 200; turn++) { /* held: nothing more is parsed */
        ssize_t n = sent < total ? write(sv[1], wire + sent, total - sent) : 0;
        if (n > 0)
            sent += n;
        loop_wait(0);
    }
    CHECK(nframes == 3);
    stream_unhold(&s);
    for (int turn = 0; turn < 100000 && nframes < NFRAMES; turn++) {
        ssize_t n = sent < total ? write(sv[1], wire + sent, total - sent) : 0;
        if (n > 0)
            sent += n;
        loop_wait(0);
    }
    CHECK(nframes == NFRAMES);
    int good = 0;
    for (int i = 0; i < nframes; i++) {
        bool ok = true;
        for (uint32_t j = 0; j < frame_len[i]; j++)
            ok &= frames[i][j] == (uint8_t)(i * 31 + j);
        good += ok;
        free(frames[i]);
    }
    CHECK(good == NFRAMES);

    /* the peer goes away: noticed, reported once, as the peer's doing */
    closes = 0;
    close(sv[1]);
    for (int turn = 0; turn < 1000 && !closes; turn++)
        loop_wait(10);
    loop_wait(0);
    CHECK(closes == 1 && close_why == STREAM_EOF && s.dead);
    free(wire);
}

static int accepted;
static char accepted_name[128];
static int accepted_fd = -1;
static void on_accept(struct listener *ls, int fd, const char *peer)
{
    (void)ls;
    accepted++;
    snprintf(accepted_name, sizeof accepted_name, "%s", peer);
    accepted_fd = fd;
}

static int connected;
static void on_connected(struct stream *s)
{
    (void)s;
    connected++;
}
static const struct stream_ops dial_ops = { .on_data = sink_data, .on_connected = on_connected,
                                            .on_close = on_close };

static void test_listen_dial(void)
{
    static struct listener ls;
    static struct stream s;
    struct dialer d;
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    char spec[64];

    CHECK(listener_open(&ls, "127.0.0.1:0", on_accept, NULL) == 0);
    CHECK(getsockname(ls.fd, (struct sockaddr *)&sa, &sl) == 0);
    snprintf(spec, sizeof spec, "127.0.0.1:%u", ntohs(sa.sin_port));

    dialer_init(&d);
    CHECK(dialer_due(&d, 0));
    int fd = dialer_connect(&d, spec, 1000);
    CHECK(fd >= 0 && d.next_try == 1100 && d.backoff_ms == 200);
    CHECK(!dialer_due(&d, 1099) && dialer_due(&d, 1100));
    CHECK(stream_init(&s, fd, spec, &dial_ops, NULL, 1024, 8, 0, true) == 0);
    for (int turn = 0; turn < 1000 && (!accepted || !connected); turn++)
        loop_wait(10);
    CHECK(accepted == 1 && connected == 1 && !s.connecting);
    CHECK(!strncmp(accepted_name, "127.0.0.1:", 10));
    /* ping through both ends */
    CHECK(stream_write(&s, "ping", 4) == 0);
    stream_flush_dirty();
    char b[8];
    ssize_t n = -1;
    for (int turn = 0; turn < 1000 && n < 0; turn++) {
        n = read(accepted_fd, b, sizeof b);
        if (n < 0)
            loop_wait(10);
    }
    CHECK(n == 4 && !memcmp(b, "ping", 4));
    closes = 0;
    stream_close(&s, NULL);
    CHECK(closes == 1 && close_why == NULL);
    close(accepted_fd);

    /* nobody listens any more: the dial fails and says so */
    listener_close(&ls);
    for (int i = 0; i < 10; i++) { /* backoff doubles to its cap */
        int f = dialer_connect(&d, "127.0.0.1:1", 0);
        if (f >= 0)
            close(f);
    }
    CHECK(d.backoff_ms == DIAL_MAX_MS);
    dialer_reset(&d);
    CHECK(d.backoff_ms == DIAL_MIN_MS);
    fd = dialer_connect(&d, spec, 0);
    closes = 0;
    if (fd >= 0) {
        CHECK(stream_init(&s, fd, spec, &dial_ops, NULL, 1024, 8, 0, true) == 0);
        for (int turn = 0; turn < 1000 && !closes; turn++)
            loop_wait(10);
        CHECK(closes == 1 && close_connecting && close_why && close_why != STREAM_EOF);
    }
    CHECK(connected == 1);
}

int main(void)
{
    nm_log_init("test_conn");
    CHECK(loop_init() == 0);
    test_send_queue();
    test_framing();
    test_listen_dial();
    return check_summary();
}
