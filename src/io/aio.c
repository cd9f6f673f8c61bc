/* libaio backend, for kernels or sandboxes without io_uring. Reads, writes
 * and fdatasync are native; fallocate and ioctls go to the offload thread.
 * (Buffered Linux AIO runs synchronously inside io_submit: it is correct,
 * but only --direct makes it truly asynchronous.) */
#include <errno.h>
#include <libaio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "io-int.h"

#define AIO_DEPTH 1024

struct aio {
    io_context_t ctx;
    int efd;
    struct iocb *pending[AIO_DEPTH];
    unsigned npending, running;
};

_Static_assert(sizeof(struct iocb) <= sizeof(((struct io_cmd *)0)->priv), "iocb fits priv");

static int a_init(struct io_engine *e)
{
    struct aio *a = calloc(1, sizeof *a);
    int r;

    if (!a)
        return -ENOMEM;
    r = io_setup(AIO_DEPTH, &a->ctx);
    if (r < 0) {
        free(a);
        return r;
    }
    a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->efd < 0) {
        io_destroy(a->ctx);
        free(a);
        return -errno;
    }
    e->priv = a;
    e->pollfd = a->efd;
    return 0;
}

static bool a_native(enum io_op op)
{
    return op == IO_READ || op == IO_WRITE || op == IO_FSYNC;
}

static int a_prep(struct io_engine *e, struct io_cmd *c)
{
    struct aio *a = e->priv;
    struct iocb *cb = (struct iocb *)c->priv;

    if (a->npending + a->running >= AIO_DEPTH)
        return -EAGAIN;
    switch (c->op) {
    case IO_READ:
        io_prep_pread(cb, c->fd, (char *)c->buf + c->done, c->len - c->done, c->off + c->done);
        cb->aio_rw_flags = c->mode;
        break;
    case IO_WRITE:
        io_prep_pwrite(cb, c->fd, (char *)c->buf + c->done, c->len - c->done, c->off + c->done);
        cb->aio_rw_flags = c->mode;
        break;
    case IO_FSYNC:
        io_prep_fdsync(cb, c->fd);
        break;
    default:
        return -EINVAL;
    }
    io_set_eventfd(cb, a->efd);
    cb->data = c;
    a->pending[a->npending++] = cb;
    return 0;
}

static void a_submit(struct io_engine *e)
{
    struct aio *a = e->priv;
    unsigned off = 0;

    while (off < a->npending) {
        int r = io_submit(a->ctx, a->npending - off, a->pending + off);
        if (r > 0) {
            a->running += r;
            off += r;
            continue;
        }
        if (r == -EAGAIN || r == -EINTR)
            break; /* try again next turn */
        /* the first iocb was refused: fail it alone (from io_run: this may
         * run inside io_queue), go on with the rest */
        struct io_cmd *c = a->pending[off]->data;
        off++;
        io_disk_done_later(e, c, r);
    }
    for (unsigned i = off; i < a->npending; i++)
        a->pending[i - off] = a->pending[i];
    a->npending -= off;
}

static int a_reap(struct io_engine *e)
{
    struct aio *a = e->priv;
    struct io_event evs[128];
    struct timespec zero = { 0, 0 };
    uint64_t v;
    int total = 0, n;

    if (!a->running)
        return 0; /* nothing submitted: no syscall */
    if (read(a->efd, &v, sizeof v) < 0) {
        /* EAGAIN: no completion signalled; still poll below */
    }
    while (a->running && (n = io_getevents(a->ctx, 0, 128, evs, &zero)) > 0) {
        a->running -= n;
        for (int i = 0; i < n; i++)
            io_disk_done(e, evs[i].data, (int)(long)evs[i].res);
        total += n;
    }
    return total;
}

static void a_fini(struct io_engine *e)
{
    struct aio *a = e->priv;
    io_destroy(a->ctx);
    close(a->efd);
    free(a);
}

const struct io_backend io_backend_aio = {
    .name = "libaio",
    .init = a_init,
    .native = a_native,
    .prep = a_prep,
    .submit = a_submit,
    .reap = a_reap,
    .fini = a_fini,
};
