/* The event loop: level-triggered epoll; each fd carries a handler. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common.h"
#include "hist.h"

static int epfd = -1, tickfd = -1;
static struct handler tick_h;

/* Adaptive polling, as QEMU's IOThreads do it (poll-max-ns). On a virtual
 * machine each sleep and wake-up of the loop costs exits to the hypervisor
 * (the halt, the waker's wake-up interrupt), often more than the request's
 * own work. When the next event comes within the window (a QD1 client's next
 * request, a peer's acknowledgement), polling catches it awake: buffered
 * 4 KiB writes at QD1 took 27 us instead of 65, protocol C's 28 instead of
 * 85 (window 100 us against none caught at 50). When it does not, polling
 * stops, so an idle loop costs no CPU.
 *
 * The caller does not poll while disk requests are in flight (may_poll):
 * a virtual disk's completion comes after the window anyway, and a loop that
 * spins through it keeps its CPU busy, so the scheduler puts the client on
 * the other virtual CPU, and every reply then costs a wake-up across CPUs.
 * 4 KiB O_DIRECT writes at QD1 took 115 us that way, 75 us sleeping. */
#define POLL_START_NS 4000u
static uint64_t poll_max_ns = POLL_US_DEFAULT * 1000ull, poll_ns;

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

static void on_tick(struct handler *h, uint32_t ev)
{
    uint64_t n;
    (void)h, (void)ev;
    if (read(tickfd, &n, sizeof n) < 0) {
        /* EAGAIN: a spurious wake-up; the wake-up was the point anyway */
    }
}

int loop_init(void)
{
    struct itimerspec every = { { 0, LOOP_TICK_MS * 1000000L }, { 0, LOOP_TICK_MS * 1000000L } };

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return -errno;
    /* one periodic timer instead of a timeout armed at every epoll_wait */
    tickfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    tick_h.fn = on_tick;
    if (tickfd < 0 || timerfd_settime(tickfd, 0, &every, NULL) < 0 ||
        loop_add(tickfd, EPOLLIN, &tick_h) < 0)
        return -errno;
    return 0;
}

void loop_set_poll(unsigned max_us)
{
    poll_max_ns = (uint64_t)max_us * 1000;
    poll_ns = 0;
}

int loop_wait_next(bool may_poll)
{
    uint64_t t0 = hist_now_ns(), waited;
    int n;

    if (poll_ns && may_poll) {
        do {
            if ((n = loop_wait(0)) != 0)
                return n; /* caught while polling: the window is right */
            /* let a task that shares this CPU (a local client or peer) run */
            sched_yield();
        } while (hist_now_ns() - t0 < poll_ns);
    }
    n = loop_wait(-1);
    /* only waits that could have polled teach the window: a disk wait
     * would close it for the client and peer waits that follow */
    if (!may_poll)
        return n;
    /* QEMU's rule (with its default shrink): a wait longer than the maximum
     * means polling would not have helped, so stop; a wait the maximum would
     * have caught doubles the window */
    waited = hist_now_ns() - t0;
    if (waited > poll_max_ns)
        poll_ns = 0;
    else if (poll_ns < poll_max_ns)
        poll_ns = poll_ns ? (poll_ns * 2 < poll_max_ns ? poll_ns * 2 : poll_max_ns)
                          : (POLL_START_NS < poll_max_ns ? POLL_START_NS : poll_max_ns);
    return n;
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
