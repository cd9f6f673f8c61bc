/* The event loop: level-triggered epoll; each fd carries a handler. */
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common.h"

static int epfd = -1;

int loop_init(void)
{
    epfd = epoll_create1(EPOLL_CLOEXEC);
    return epfd < 0 ? -errno : 0;
}

int loop_add(int fd, uint32_t events, struct handler *h)
{
    struct epoll_event ev = { .events = events, .data.ptr = h };
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int loop_mod(int fd, uint32_t events, struct handler *h)
{
    struct epoll_event ev = { .events = events, .data.ptr = h };
    return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void loop_del(int fd) { epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int loop_wait(int timeout_ms)
{
    struct epoll_event evs[64];
    int n = epoll_wait(epfd, evs, 64, timeout_ms);

    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        struct handler *h = evs[i].data.ptr;
        h->fn(h, evs[i].events);
    }
    return n;
}
