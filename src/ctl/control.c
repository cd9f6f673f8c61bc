/* Control socket: one command per connection, answered and closed once the
 * answer has left; "events" hands the connection to the event stream
 * (events.c). The sockets are the connection layer's (src/conn/). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"
#include "conn.h"
#include "ctl.h"
#include "ctl-int.h"

#define CTL_MAX_CLIENTS 16
#define CTL_CMD_MAX 128
#define CTL_SILENT_MS 5000

struct ctl_client {
    struct stream s;
    uint64_t born;
    int slot;
    uint32_t gen;
    bool waiting;   /* its answer comes later (ctl_reply) */
};

static struct listener ls = { .fd = -1 };
static ctl_answer_fn answer;
static struct ctl_client *clients[CTL_MAX_CLIENTS];
static struct ctl_client *answering; /* inside answer(): who asked */
static uint32_t next_gen;

static void answer_sent(struct stream *s, void *buf, bool sent)
{
    (void)s, (void)sent;
    free(buf);
}

/* "events": the connection becomes a subscriber, which has its own places
 * and no silence timeout. The socket moves on as a duplicate (the stream
 * here removes its epoll entry before closing its own descriptor). */
static void subscribe(struct stream *s)
{
    static const char full[] = "error: too many event subscribers; try again later\n";
    int fd;

    if (!events_room()) {
        if (stream_queue(s, NULL, 0, full, sizeof full - 1, NULL, NULL) == 0)
            stream_close_when_sent(s);
        else
            stream_close(s, NULL);
        return;
    }
    fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0);
    stream_close(s, NULL);
    if (fd >= 0)
        events_subscribe(fd, s->peer);
}

/* A command is one line; a longer one is cut where the buffer ends. */
static size_t on_data(struct stream *s, uint8_t *p, size_t len)
{
    char cmd[CTL_CMD_MAX], *out;
    size_t olen = 0;
    uint8_t *nl = memchr(p, '\n', len);

    if (!nl && len < CTL_CMD_MAX - 1)
        return 0;
    size_t n = nl ? (size_t)(nl - p) : CTL_CMD_MAX - 1;
    memcpy(cmd, p, n);
    cmd[n] = '\0';
    if (!strcmp(cmd, CTL_CMD_EVENTS)) {
        subscribe(s);
        return len;
    }
    /* the answer (a status record of up to 31 peers) may be larger than the
     * socket's buffer: the connection closes once all of it has left */
    answering = s->arg;
    out = answer(cmd, &olen);
    answering = NULL;
    if (((struct ctl_client *)s->arg)->waiting) {
        free(out); /* the answer comes later (ctl_reply) */
        stream_hold(s); /* nothing more to read */
        return len;
    }
    if (out && (!olen || stream_queue(s, NULL, 0, out, olen, answer_sent, out) < 0))
        free(out);
    stream_close_when_sent(s);
    return len;
}

ctl_ticket ctl_later(void)
{
    if (!answering)
        return 0;
    answering->waiting = true;
    return (uint64_t)answering->gen << 8 | (unsigned)answering->slot;
}

void ctl_reply(ctl_ticket t, const char *text)
{
    struct ctl_client *cl = t ? clients[t & 0xff] : NULL;
    if (!cl || cl->gen != (uint32_t)(t >> 8) || !cl->waiting)
        return; /* it went away */
    cl->waiting = false;
    char *out = strdup(text);
    if (out && stream_queue(&cl->s, NULL, 0, out, strlen(out), answer_sent, out) < 0)
        free(out);
    stream_close_when_sent(&cl->s);
}

static void on_close(struct stream *s, const char *why)
{
    struct ctl_client *cl = s->arg;
    (void)why; /* a client that went away: nothing to tell anyone */
    clients[cl->slot] = NULL;
    loop_free_later(cl);
}

static const struct stream_ops ctl_ops = { .on_data = on_data, .on_close = on_close };

static void on_accept(struct listener *l, int fd, const char *peer)
{
    uint64_t now = now_ms();
    int slot = -1;

    (void)l;
    for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
        if (clients[i] && !clients[i]->waiting && now - clients[i]->born > CTL_SILENT_MS)
            stream_close(&clients[i]->s, NULL); /* a silent client loses its place */
        if (!clients[i] && slot < 0)
            slot = i;
    }
    struct ctl_client *cl = slot < 0 ? NULL : malloc(sizeof *cl);
    if (!cl) {
        close(fd);
        return;
    }
    cl->born = now;
    cl->slot = slot;
    cl->gen = ++next_gen;
    cl->waiting = false;
    if (stream_init(&cl->s, fd, peer, &ctl_ops, cl, CTL_CMD_MAX, 4, 0, false) < 0) {
        free(cl);
        return;
    }
    clients[slot] = cl;
}

int ctl_start(const char *path, ctl_answer_fn fn)
{
    char spec[sizeof ls.unix_path + 5];
    int r;

    if (strlen(path) >= sizeof ls.unix_path)
        return -ENAMETOOLONG;
    snprintf(spec, sizeof spec, "unix:%s", path);
    answer = fn;
    if ((r = listener_open(&ls, spec, on_accept, NULL)) < 0)
        return r;
    chmod(path, 0600); /* status today, promote/demote tomorrow: root only */
    return 0;
}

void ctl_stop(void)
{
    if (ls.fd < 0)
        return;
    events_stop();
    for (int i = 0; i < CTL_MAX_CLIENTS; i++)
        if (clients[i])
            stream_close(&clients[i]->s, NULL);
    listener_close(&ls); /* unlinks the socket */
}

int ctl_connect(const char *path, const char *cmd)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, e;

    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* MSG_NOSIGNAL: a daemon that closed the connection unanswered (it is
     * stopping) is an error to report, not a SIGPIPE that kills the caller
     * without a word ('down' polls a stopping daemon) */
    struct iovec iov[2] = { { (void *)cmd, strlen(cmd) }, { (void *)"\n", 1 } };
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
    ssize_t n;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        (n = sendmsg(fd, &mh, MSG_NOSIGNAL)) < 0) {
        e = -errno;
        close(fd);
        return e;
    }
    if ((size_t)n != iov[0].iov_len + 1) { /* cut short by a signal */
        close(fd);
        return -EINTR;
    }
    return fd;
}

int ctl_query(const char *path, const char *cmd, char **out, size_t *len)
{
    size_t cap = 64u << 10, n = 0;
    char *buf;
    ssize_t r;
    int fd, e = 0;

    if ((fd = ctl_connect(path, cmd)) < 0)
        return fd;
    buf = malloc(cap);
    /* the daemon closes the connection after the whole answer */
    while (buf) {
        if (n + 1 == cap) {
            char *b = cap >= CTL_ANSWER_MAX ? NULL : realloc(buf, cap * 2);
            if (!b) {
                e = cap >= CTL_ANSWER_MAX ? -EFBIG : -ENOMEM;
                break;
            }
            buf = b;
            cap *= 2;
        }
        r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            e = r < 0 ? -errno : 0;
            break;
        }
        n += r;
    }
    close(fd);
    if (!buf)
        return -ENOMEM;
    if (e < 0) {
        free(buf);
        return e;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}
