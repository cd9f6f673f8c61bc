/* Listening and dialling: the two ways a stream socket comes to be. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"

/* An fd held back for the day the process runs out of them: given up for
 * a moment, it lets us accept the waiting connection and close it. */
static int spare_fd = -1;

static void shed(struct listener *ls)
{
    static uint64_t last_warn;
    uint64_t now = now_ms();

    if (now - last_warn > 10000) {
        last_warn = now;
        log_warn("accept: %s: refusing connections until some close", strerror(errno));
    }
    if (spare_fd < 0)
        return;
    close(spare_fd);
    int fd = accept4(ls->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_listen(struct handler *h, uint32_t ev)
{
    struct listener *ls = (struct listener *)h;

    (void)ev;
    /* bounded: a flood of connects cannot keep the loop here */
    for (int i = 0; i < LISTEN_BURST && ls->fd >= 0; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char peer[128];
        int one = 1;
        int fd = accept4(ls->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                shed(ls); /* else the pending connection wakes us forever */
            else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            net_peer_name(&ss, peer, sizeof peer);
        } else {
            snprintf(peer, sizeof peer, "unix#%llu", (unsigned long long)++ls->unix_count);
        }
        ls->fn(ls, fd, peer);
    }
}

int listener_adopt(struct listener *ls, int fd, const char *unix_path, listener_fn fn, void *arg)
{
    int r;

    if (spare_fd < 0)
        spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ls->fd = fd;
    ls->fn = fn;
    ls->arg = arg;
    ls->unix_count = 0;
    snprintf(ls->unix_path, sizeof ls->unix_path, "%s", unix_path ? unix_path : "");
    ls->h.fn = on_listen;
    if ((r = loop_add(fd, EPOLLIN, &ls->h)) < 0) {
        close(fd);
        if (ls->unix_path[0])
            unlink(ls->unix_path);
        ls->fd = -1;
    }
    return r;
}

int listener_open(struct listener *ls, const char *spec, listener_fn fn, void *arg)
{
    int fd = net_listen(spec);

    ls->fd = -1;
    if (fd < 0)
        return fd;
    return listener_adopt(ls, fd, !strncmp(spec, "unix:", 5) ? spec + 5 : NULL, fn, arg);
}

void listener_close(struct listener *ls)
{
    if (ls->fd < 0)
        return;
    loop_del(ls->fd);
    close(ls->fd);
    ls->fd = -1;
    if (ls->unix_path[0])
        unlink(ls->unix_path);
}

void dialer_init(struct dialer *d)
{
    d->backoff_ms = DIAL_MIN_MS;
    d->next_try = 0;
}

bool dialer_due(const struct dialer *d, uint64_t now) { return now >= d->next_try; }

int dialer_connect(struct dialer *d, const char *spec, uint64_t now)
{
    d->next_try = now + d->backoff_ms;
    d->backoff_ms = d->backoff_ms * 2 > DIAL_MAX_MS ? DIAL_MAX_MS : d->backoff_ms * 2;
    return net_connect(spec);
}

void dialer_lost(struct dialer *d, uint64_t now) { d->next_try = now + d->backoff_ms; }

void dialer_reset(struct dialer *d) { d->backoff_ms = DIAL_MIN_MS; }

void dialer_slow(struct dialer *d, uint64_t now)
{
    d->backoff_ms = DIAL_MAX_MS;
    d->next_try = now + DIAL_MAX_MS;
}
