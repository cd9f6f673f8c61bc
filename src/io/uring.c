/* io_uring backend: one ring, commands prepared as they come and submitted
 * when the engine says (every few commands, and at the end of a turn),
 * completions reaped in batches. */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>

#include "io-int.h"

#define RING_DEPTH 256
#define CQ_DEPTH 4096

struct uring {
    struct io_uring ring;
    unsigned prepared; /* sqes not yet submitted */
};

static int u_init(struct io_engine *e)
{
    /* COOP_TASKRUN: completions do not interrupt the loop thread (an EINTR
     * out of epoll_wait each time); they are posted at the next io_uring_enter
     * or when the loop polls the ring. */
    struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN,
                                 .cq_entries = CQ_DEPTH };
    struct uring *u = calloc(1, sizeof *u);
    int r;

    if (!u)
        return -ENOMEM;
    r = io_uring_queue_init_params(RING_DEPTH, &u->ring, &p);
    if (r < 0) {
        free(u);
        return r;
    }
    e->priv = u;
    e->pollfd = u->ring.ring_fd;
    return 0;
}

static bool u_native(enum io_op op)
{
    return op != IO_ZEROOUT; /* ioctls and read-modify-write: offload thread */
}

static int u_prep(struct io_engine *e, struct io_cmd *c)
{
    struct uring *u = e->priv;
    struct io_uring_sqe *sqe;

    /* completions in flight must fit the CQ ring */
    if (e->inflight > CQ_DEPTH)
        return -EAGAIN;
    sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        io_uring_submit(&u->ring);
        u->prepared = 0;
        sqe = io_uring_get_sqe(&u->ring);
        if (!sqe)
            return -EAGAIN;
    }
    switch (c->op) {
    case IO_READ:
        io_uring_prep_read(sqe, c->fd, (char *)c->buf + c->done, c->len - c->done, c->off + c->done);
        sqe->rw_flags = c->mode;
        break;
    case IO_WRITE:
        io_uring_prep_write(sqe, c->fd, (char *)c->buf + c->done, c->len - c->done, c->off + c->done);
        sqe->rw_flags = c->mode;
        break;
    case IO_FSYNC:
        io_uring_prep_fsync(sqe, c->fd, IORING_FSYNC_DATASYNC);
        break;
    case IO_FALLOCATE:
        io_uring_prep_fallocate(sqe, c->fd, c->mode, c->off, c->len);
        break;
    default:
        return -EINVAL;
    }
    io_uring_sqe_set_data(sqe, c);
    u->prepared++;
    return 0;
}

static void u_submit(struct io_engine *e)
{
    struct uring *u = e->priv;
    if (u->prepared) {
        io_uring_submit(&u->ring);
        u->prepared = 0;
    }
}

static int u_reap(struct io_engine *e)
{
    struct uring *u = e->priv;
    struct io_uring_cqe *cqes[64];
    int total = 0;
    unsigned n;

    while ((n = io_uring_peek_batch_cqe(&u->ring, cqes, 64)) > 0) {
        struct io_cmd *done[64];
        int res[64];
        for (unsigned i = 0; i < n; i++) {
            done[i] = io_uring_cqe_get_data(cqes[i]);
            res[i] = cqes[i]->res;
        }
        /* free the CQ slots before callbacks queue more work */
        io_uring_cq_advance(&u->ring, n);
        for (unsigned i = 0; i < n; i++)
            io_disk_done(e, done[i], res[i]);
        total += n;
    }
    return total;
}

static void u_fini(struct io_engine *e)
{
    struct uring *u = e->priv;
    io_uring_queue_exit(&u->ring);
    free(u);
}

const struct io_backend io_backend_uring = {
    .name = "io_uring",
    .init = u_init,
    .native = u_native,
    .prep = u_prep,
    .submit = u_submit,
    .reap = u_reap,
    .fini = u_fini,
};
