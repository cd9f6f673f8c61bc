/* The io engine front: picks a backend, keeps a backlog when the ring is
 * full, resumes short transfers, and runs what a backend cannot do
 * asynchronously (zeroing devices, fallocate on libaio) on one helper thread. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "io-int.h"

/* Above this, the copy into the page cache is worth a worker thread that
 * runs beside the loop (on the other core) instead of inside it. */
#define INLINE_WRITE_MAX (64u << 10)

/* Prepared commands go to the kernel once this many wait, not only at the
 * end of the loop's turn: when a client's burst of 32 requests is parsed in
 * one turn, the disk starts on the first ones while the rest are parsed
 * (4 KiB QD32 with --direct: 1.12-1.15x the IOPS of one submit per turn,
 * buffered rows unchanged; bench/README.md). */
#define SUBMIT_BATCH 4

const char *io_engine_name(const struct io_engine *e) { return e->be->name; }
unsigned io_inflight(const struct io_engine *e) { return e->inflight; }

/* Zeroes [off, off + len) of the block g that holds it (g bytes at blk) by
 * reading the whole block, clearing the range and writing it back. buf is a
 * bounce buffer of g bytes aligned to g, so O_DIRECT fds take it. */
static int zero_in_block(int fd, void *buf, uint64_t g, uint64_t blk, uint64_t off, uint64_t len)
{
    ssize_t n = pread(fd, buf, g, blk);
    if (n != (ssize_t)g)
        return n < 0 ? -errno : -EIO;
    memset((char *)buf + (off - blk), 0, len);
    n = pwrite(fd, buf, g, blk);
    if (n != (ssize_t)g)
        return n < 0 ? -errno : -EIO;
    return 0;
}

/* IO_ZEROOUT for any byte range: the whole blocks of granularity g in the
 * middle by one BLKZEROOUT (or a hole punch: IO_ZEROOUT_PUNCH), the partial
 * block at either end by read-modify-write. The middle goes first, so a
 * refused punch (EOPNOTSUPP) leaves the range untouched. The ends rewrite
 * the bytes of their block outside the range with what was just read:
 * callers must not run a request that overlaps the range widened to g
 * alongside this one (see io.h). */
static int zeroout(struct io_cmd *c)
{
    uint64_t g = c->mode & ~IO_ZEROOUT_PUNCH, off = c->off, end = c->off + c->len;
    uint64_t head, tail; /* off rounded up, end rounded down to g */
    void *buf = NULL;
    int r = 0, ssz;

    if (c->len == 0)
        return 0;
    if (g == 0 || g % 512) /* not given (or not usable): the device's own */
        g = ioctl(c->fd, BLKSSZGET, &ssz) == 0 && ssz > 0 ? (uint64_t)ssz : 512;
    head = (off + g - 1) / g * g;
    tail = end / g * g;
    if (head < tail) {
        if (c->mode & IO_ZEROOUT_PUNCH)
            r = fallocate(c->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, head, tail - head);
        else
            r = ioctl(c->fd, BLKZEROOUT, (uint64_t[2]){ head, tail - head });
        if (r < 0)
            return -errno;
    }
    if (off == head && end == tail)
        return 0;
    if (posix_memalign(&buf, g, g))
        return -ENOMEM;
    if (head > tail) /* both ends inside one block */
        r = zero_in_block(c->fd, buf, g, tail, off, end - off);
    else {
        if (off < head)
            r = zero_in_block(c->fd, buf, g, head - g, off, head - off);
        if (r == 0 && tail < end)
            r = zero_in_block(c->fd, buf, g, tail, tail, end - tail);
    }
    free(buf);
    return r;
}

int io_run_sync(struct io_cmd *c)
{
    ssize_t n;

    switch (c->op) {
    case IO_READ:
    case IO_WRITE: {
        /* preadv2/pwritev2 so that RWF_* flags (RWF_DSYNC for FUA) hold here too */
        struct iovec iov = { (char *)c->buf + c->done, c->len - c->done };
        n = c->op == IO_READ ? preadv2(c->fd, &iov, 1, c->off + c->done, c->mode)
                             : pwritev2(c->fd, &iov, 1, c->off + c->done, c->mode);
        return n < 0 ? -errno : (int)n;
    }
    case IO_FSYNC:
        return fdatasync(c->fd) < 0 ? -errno : 0;
    case IO_FALLOCATE:
        return fallocate(c->fd, c->mode, c->off, c->len) < 0 ? -errno : 0;
    case IO_ZEROOUT:
        return zeroout(c);
    }
    return -EINVAL;
}

static void *offload_main(void *arg)
{
    struct io_engine *e = arg;
    uint64_t one = 1;

    pthread_mutex_lock(&e->mu);
    for (;;) {
        struct io_cmd *c;
        while (!e->todo && !e->stopping)
            pthread_cond_wait(&e->cv, &e->mu);
        if (!e->todo)
            break;
        c = e->todo;
        e->todo = c->next;
        pthread_mutex_unlock(&e->mu);
        int res = io_run_sync(c);
        /* stash the result in the command until the loop thread reaps it */
        memcpy(c->priv, &res, sizeof res);
        pthread_mutex_lock(&e->mu);
        c->next = e->finished;
        e->finished = c;
        if (write(e->offload_efd, &one, sizeof one) < 0) {
            /* eventfd counter cannot overflow at our rates; nothing to do */
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static void offload_reap(struct io_engine *e)
{
    struct io_cmd *list, *next;
    uint64_t v;

    /* Clear the wake-up first, then take the list: a command finished in
     * between is either in the list or signals again, never lost. */
    if (read(e->offload_efd, &v, sizeof v) < 0) {
        /* EAGAIN: nothing was signalled */
    }
    pthread_mutex_lock(&e->mu);
    list = e->finished;
    e->finished = NULL;
    pthread_mutex_unlock(&e->mu);
    for (; list; list = next) {
        int res;
        next = list->next;
        memcpy(&res, list->priv, sizeof res);
        io_complete(e, list, res);
    }
}

static void offload_queue(struct io_engine *e, struct io_cmd *c)
{
    if (!e->thr_started) {
        if (pthread_create(&e->thr, NULL, offload_main, e)) {
            e->inflight++;
            io_complete(e, c, -ENOMEM);
            return;
        }
        e->thr_started = true;
    }
    pthread_mutex_lock(&e->mu);
    c->next = NULL;
    if (e->todo)
        e->todo_tail->next = c;
    else
        e->todo = c;
    e->todo_tail = c;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* --disk-depth: the disk gains nothing from more requests than it can work
 * on at once, and a request kept here can go to it the moment it completes
 * others. A virtual disk that completes a whole group together otherwise
 * sits idle while the client answers that group (bench/README.md). */
static bool disk_has_room(const struct io_engine *e) { return !e->depth || e->at_disk < e->depth; }

static int prep(struct io_engine *e, struct io_cmd *c)
{
    int r = e->be->prep(e, c);
    if (r == 0)
        e->at_disk++;
    return r;
}

void io_disk_done(struct io_engine *e, struct io_cmd *c, int res)
{
    e->at_disk--;
    io_complete(e, c, res);
}

void io_disk_done_later(struct io_engine *e, struct io_cmd *c, int res)
{
    e->at_disk--;
    io_complete_later(e, c, res);
}

void io_complete(struct io_engine *e, struct io_cmd *c, int res)
{
    e->inflight--;
    if (c->op == IO_READ || c->op == IO_WRITE) {
        if (res == -EOPNOTSUPP && (c->mode & RWF_DONTCACHE)) {
            /* a hint this kernel (before 6.14) or filesystem does not
             * take: the same command without it, and no more asking */
            e->no_dontcache = true;
            c->mode &= ~RWF_DONTCACHE;
            io_queue(e, c);
            return;
        }
        if (res == 0 && c->done < c->len)
            res = -EIO; /* end of file inside the data area */
        else if (res > 0 && c->done + (uint32_t)res < c->len) {
            c->done += res; /* short transfer: go on from where it stopped */
            io_queue(e, c);
            return;
        } else if (res > 0)
            res = c->len;
    }
    c->cb(c, res);
}

void io_set_inline_writes(struct io_engine *e, int fd) { e->inline_fd = fd; }

bool io_pending(const struct io_engine *e) { return e->queued || e->inline_done; }

void io_set_depth(struct io_engine *e, unsigned depth) { e->depth = depth; }

void io_queue_counts(const struct io_engine *e, struct io_queue_counts *q)
{
    q->depth = e->depth;
    q->at_disk = e->at_disk;
    q->waiting = e->waiting;
    q->waited = e->waited;
}

void io_complete_later(struct io_engine *e, struct io_cmd *c, int res)
{
    memcpy(c->priv, &res, sizeof res);
    c->next = NULL;
    if (e->inline_done)
        e->inline_tail->next = c;
    else
        e->inline_done = c;
    e->inline_tail = c;
}

void io_queue(struct io_engine *e, struct io_cmd *c)
{
    e->inflight++;
    e->queued = true;
    c->next = NULL;
    if (e->no_dontcache && (c->op == IO_READ || c->op == IO_WRITE))
        c->mode &= ~RWF_DONTCACHE;
    /* An empty range (a trim that shrank to nothing) succeeds without a
     * system call: fallocate would say EINVAL. Completed through io_run. */
    bool empty = (c->op == IO_FALLOCATE || c->op == IO_ZEROOUT) && c->len == 0;
    /* not FUA writes (c->mode has RWF_DSYNC): they wait for the device */
    if (empty || (c->op == IO_WRITE && c->fd == e->inline_fd && c->len <= INLINE_WRITE_MAX && !c->mode)) {
        /* done now; the callback runs from io_run like any other, so
         * callers never see a completion inside io_queue */
        io_complete_later(e, c, empty ? 0 : io_run_sync(c));
        return;
    }
    if (!e->be->native(c->op)) {
        offload_queue(e, c);
        return;
    }
    /* in order behind anything already waiting */
    if (e->backlog || !disk_has_room(e) || prep(e, c) == -EAGAIN) {
        if (e->backlog)
            e->backlog_tail->next = c;
        else
            e->backlog = c;
        e->backlog_tail = c;
        e->waiting++;
        e->waited++;
    } else if (++e->unsubmitted >= SUBMIT_BATCH) {
        e->be->submit(e);
        e->unsubmitted = 0;
    }
}

/* Backlogged commands to the backend, in order, while the ring and the
 * --disk-depth limit take them; then to the kernel. */
static void submit_backlog(struct io_engine *e)
{
    while (e->backlog && disk_has_room(e)) {
        struct io_cmd *c = e->backlog;
        if (prep(e, c) == -EAGAIN)
            break;
        e->backlog = c->next;
        e->waiting--;
    }
    e->be->submit(e);
    e->unsubmitted = 0;
}

void io_run(struct io_engine *e)
{
    /* Completions may queue follow-up commands (FUA flush, zero fill), so go
     * round while there is new work, but bounded: the loop must come back to
     * the sockets. */
    e->queued = false;
    for (int round = 0; round < 4; round++) {
        struct io_cmd *done = e->inline_done, *next;
        e->inline_done = NULL;
        for (; done; done = next) {
            int res;
            next = done->next;
            memcpy(&res, done->priv, sizeof res);
            io_complete(e, done, res);
        }
        submit_backlog(e);
        if (e->be->reap(e) == 0 && !e->inline_done)
            return; /* nothing new since the submit above */
    }
    /* The last round's completions may have made room under --disk-depth:
     * fill it now. Whatever still waits then waits for a completion, which
     * wakes the loop. */
    submit_backlog(e);
}

static void on_backend(struct handler *h, uint32_t ev)
{
    (void)h, (void)ev; /* completions are reaped by io_run once per turn */
}

static void on_offload(struct handler *h, uint32_t ev)
{
    struct io_engine *e = (struct io_engine *)((char *)h - offsetof(struct io_engine, h_offload));
    (void)ev;
    offload_reap(e);
}

static int try_backend(struct io_engine *e, const struct io_backend *be)
{
    e->be = be;
    return be->init(e);
}

int io_engine_open(struct io_engine **out, const char *kind, const char **why)
{
    static char reason[160];
    struct io_engine *e = calloc(1, sizeof *e);
    int r;

    if (!e)
        return -ENOMEM;
    *why = NULL;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (!kind || !strcmp(kind, "uring")) {
        r = try_backend(e, &io_backend_uring);
        if (r < 0 && !kind) {
            snprintf(reason, sizeof reason, "io_uring unavailable: %s", strerror(-r));
            *why = reason;
            r = try_backend(e, &io_backend_aio);
        }
    } else if (!strcmp(kind, "aio")) {
        r = try_backend(e, &io_backend_aio);
    } else {
        r = -EINVAL;
    }
    if (r < 0)
        goto fail;
    e->inline_fd = -1;
    e->offload_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->h_backend.fn = on_backend;
    e->h_offload.fn = on_offload;
    if (e->offload_efd < 0 || loop_add(e->offload_efd, EPOLLIN, &e->h_offload) < 0 ||
        loop_add(e->pollfd, EPOLLIN, &e->h_backend) < 0) {
        r = -errno;
        e->be->fini(e);
        goto fail;
    }
    *out = e;
    return 0;
fail:
    free(e);
    return r;
}

void io_engine_close(struct io_engine *e)
{
    if (!e)
        return;
    if (e->thr_started) {
        pthread_mutex_lock(&e->mu);
        e->stopping = true;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thr, NULL);
    }
    loop_del(e->pollfd);
    loop_del(e->offload_efd);
    close(e->offload_efd);
    e->be->fini(e);
    free(e);
}
