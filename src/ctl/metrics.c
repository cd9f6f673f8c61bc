/* The metrics endpoint: HTTP/1.x on the daemon's event loop, one request
 * per connection. The answer is rendered by metrics_render (metrics_text.c)
 * from what the daemon's fill function gathers at that moment.
 *
 * A connection ends the way HTTP servers end them gracefully: once the
 * answer has left, our side is shut down and the client's bytes are read and
 * dropped until it closes (closing with unread input would reset the
 * connection, and the client could lose the answer to an over-long request).
 * A 1 s timer closes every connection older than METRICS_TIMEOUT_MS. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common.h"
#include "conn.h"
#include "metrics.h"
#include "status.h"

struct mclient {
    struct stream s;
    uint64_t born;
    int slot;
    uint32_t seen;  /* request bytes already looked at for a newline */
    bool answered;  /* the rest of its input is dropped */
};

static struct listener ls = { .fd = -1 };
static metrics_fill_fn fill;
static struct mclient *clients[METRICS_CLIENTS];
static char resource[256];
static int tfd = -1;
static struct handler h_timer;

void metrics_set_resource(const char *name)
{
    snprintf(resource, sizeof resource, "%s", name ? name : "");
}

/* ---- the request ---- */

static bool tchar(char c) /* RFC 9110's token characters */
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

int metrics_parse_request(const char *p, size_t len, bool *head)
{
    const char *nl = memchr(p, '\n', len), *end = p + len;
    size_t n, i = 0, t0, tlen, mlen;

    *head = false;
    if (!nl)
        return len >= METRICS_REQ_MAX ? 414 : 0;
    /* METHOD SP TARGET SP HTTP/1.x CRLF (a bare LF is tolerated) */
    n = nl - p;
    if (n && p[n - 1] == '\r')
        n--;
    while (i < n && tchar(p[i]))
        i++;
    mlen = i;
    if (!mlen || i == n || p[i] != ' ')
        return 400;
    *head = mlen == 4 && !memcmp(p, "HEAD", 4);
    t0 = ++i;
    while (i < n && p[i] > ' ' && p[i] < 0x7f)
        i++;
    tlen = i - t0;
    if (!tlen || i == n || p[i] != ' ')
        return 400;
    i++;
    if (n - i != 8 || memcmp(p + i, "HTTP/1.", 7) || p[i + 7] < '0' || p[i + 7] > '9')
        return 400;
    /* the headers (not needed) end with an empty line */
    const char *q = nl + 1;
    for (;;) {
        const char *e = q < end ? memchr(q, '\n', end - q) : NULL;
        if (!e)
            return len >= METRICS_REQ_MAX ? 431 : 0;
        if (e == q || (e == q + 1 && *q == '\r'))
            break;
        q = e + 1;
    }
    const char *t = p + t0;
    if (!(tlen == 8 && !memcmp(t, "/metrics", 8)) && !(tlen > 8 && !memcmp(t, "/metrics?", 9)))
        return 404;
    if (!*head && !(mlen == 3 && !memcmp(p, "GET", 3)))
        return 405;
    return 200;
}

/* ---- the answer ---- */

static const char *reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    default: return "Internal Server Error";
    }
}

static const char *explain(int code)
{
    switch (code) {
    case 400: return "not an HTTP/1.x request line (try: GET /metrics HTTP/1.1)";
    case 404: return "only /metrics is served here";
    case 405: return "/metrics answers GET and HEAD";
    case 414: return "the request line is longer than 8192 bytes";
    case 431: return "the request is longer than 8192 bytes";
    default: return "the metrics could not be rendered";
    }
}

static void freed(struct stream *s, void *buf, bool sent)
{
    (void)s, (void)sent;
    free(buf);
}

/* The whole answer has left: end our side; the client's close ends it. */
static void last_sent(struct stream *s, void *buf, bool sent)
{
    free(buf);
    if (sent && !s->dead)
        shutdown(s->fd, SHUT_WR);
}

static void answer(struct mclient *c, int code, bool head)
{
    static struct node_status st; /* 31 peers: too large for the stack */
    struct metrics_hists h = { 0 };
    char *body = NULL, *hdr = NULL;
    size_t blen = 0;

    if (code == 200) {
        FILE *f = open_memstream(&body, &blen);
        int r = -ENOMEM;
        if (f) {
            fill(&st, &h);
            r = metrics_render(f, &st, &h, resource);
            if (fclose(f) != 0)
                r = -EIO;
        }
        if (r < 0) {
            free(body);
            body = NULL;
            code = 500;
        }
    }
    if (code != 200) {
        int l = asprintf(&body, "%d %s: %s\n", code, reason(code), explain(code));
        blen = l < 0 ? 0 : (size_t)l;
        if (l < 0)
            body = NULL;
    }
    int hl = asprintf(&hdr,
                      "HTTP/1.1 %d %s\r\n"
                      "Content-Type: %s\r\n"
                      "Content-Length: %zu\r\n"
                      "%s"
                      "Connection: close\r\n"
                      "\r\n",
                      code, reason(code),
                      code == 200 ? METRICS_CONTENT_TYPE : "text/plain; charset=utf-8", blen,
                      code == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (hl < 0 || !body) { /* out of memory: nothing sensible to say */
        if (hl >= 0)
            free(hdr);
        free(body);
        stream_close(&c->s, NULL);
        return;
    }
    bool with_body = !head && blen;
    if (stream_queue(&c->s, NULL, 0, hdr, hl, with_body ? freed : last_sent, hdr) < 0) {
        free(hdr);
        free(body);
        stream_close(&c->s, NULL);
        return;
    }
    if (!with_body) {
        free(body);
    } else if (stream_queue(&c->s, NULL, 0, body, blen, last_sent, body) < 0) {
        free(body);
        stream_close(&c->s, NULL);
    }
}

static size_t on_data(struct stream *s, uint8_t *p, size_t len)
{
    struct mclient *c = s->arg;
    bool head;

    if (c->answered)
        return len; /* dropped: only its close is awaited */
    /* the request is staged whole (nothing is consumed before the answer);
     * it can be complete only once a newline came */
    if (c->seen > len)
        c->seen = 0;
    bool nl = memchr(p + c->seen, '\n', len - c->seen) != NULL;
    c->seen = len;
    if (!nl && len < METRICS_REQ_MAX)
        return 0;
    int code = metrics_parse_request((const char *)p, len, &head);
    if (!code)
        return 0;
    c->answered = true;
    answer(c, code, head);
    return len;
}

static void on_close(struct stream *s, const char *why)
{
    struct mclient *c = s->arg;
    (void)why; /* a scraper that went away: nothing to tell anyone */
    clients[c->slot] = NULL;
    loop_free_later(c);
}

static const struct stream_ops m_ops = { .on_data = on_data, .on_close = on_close };

static void sweep(uint64_t now)
{
    for (int i = 0; i < METRICS_CLIENTS; i++)
        if (clients[i] && now - clients[i]->born > METRICS_TIMEOUT_MS)
            stream_close(&clients[i]->s, NULL);
}

static void on_timer(struct handler *h, uint32_t ev)
{
    uint64_t ticks;
    (void)h, (void)ev;
    if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
        return;
    sweep(now_ms());
}

static void on_accept(struct listener *l, int fd, const char *peer)
{
    uint64_t now = now_ms();
    int slot = -1, victim = -1;

    (void)l;
    sweep(now);
    for (int i = 0; i < METRICS_CLIENTS; i++) {
        struct mclient *o = clients[i];
        if (!o) {
            if (slot < 0)
                slot = i;
        } else if (!stream_queued(&o->s) && (victim < 0 || o->born < clients[victim]->born)) {
            victim = i; /* not receiving an answer: still asking, or done */
        }
    }
    if (slot < 0 && victim >= 0) {
        /* full: the oldest that is not being answered makes room, so idle
         * connections cannot lock a real scraper out */
        stream_close(&clients[victim]->s, NULL);
        slot = victim;
    }
    struct mclient *c = slot < 0 ? NULL : calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->born = now;
    c->slot = slot;
    if (stream_init(&c->s, fd, peer, &m_ops, c, METRICS_REQ_MAX, 4, 0, false) < 0) {
        free(c);
        return;
    }
    clients[slot] = c;
}

int metrics_start(const char *spec, metrics_fill_fn fn)
{
    struct itimerspec its = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
    int r;

    fill = fn;
    if ((r = listener_open(&ls, spec, on_accept, NULL)) < 0)
        return r;
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    h_timer.fn = on_timer;
    if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) < 0 ||
        loop_add(tfd, EPOLLIN, &h_timer) < 0) {
        r = -errno;
        if (tfd >= 0)
            close(tfd);
        tfd = -1;
        listener_close(&ls);
        return r;
    }
    return 0;
}

void metrics_stop(void)
{
    if (ls.fd < 0)
        return;
    for (int i = 0; i < METRICS_CLIENTS; i++)
        if (clients[i])
            stream_close(&clients[i]->s, NULL);
    listener_close(&ls);
    loop_del(tfd);
    close(tfd);
    tfd = -1;
}
