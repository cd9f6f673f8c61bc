/* The event loop: level-triggered epoll; each fd carries a handler. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common.h"

static int epfd = -1;

/* memory released after the batch that may still point at it */
struct later {
    struct later *next;
    void *p;
};
static struct later *graveyard;

void loop_free_later(void *p)
{
    struct later *l = malloc(sizeof *l);
    if (!l) {
        free(p); /* out of memory: freeing now is the lesser risk */
        return;
    }
    *l = (struct later){ graveyard, p };
    graveyard = l;
}

static void free_graveyard(void)
{
    while (graveyard) {
        struct later *l = graveyard;
        graveyard = l->next;
        free(l->p);
        free(l);
    }
}

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

    if (n < 0) {
        n = errno == EINTR ? 0 : -errno;
        free_graveyard();
        return n;
    }
    for (int i = 0; i < n; i++) {
        struct handler *h = evs[i].data.ptr;
        h->fn(h, evs[i].events);
    }
    free_graveyard();
    return n;
}
