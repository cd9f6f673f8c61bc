/* Inside the io engine: what a backend (io_uring, libaio) provides. */
#ifndef NM_IO_INT_H
#define NM_IO_INT_H

#include <pthread.h>

#include "common.h"
#include "io.h"

#include <linux/fs.h>
#ifndef RWF_DONTCACHE
#define RWF_DONTCACHE 0x00000080 /* Linux 6.14; newer than Debian 12's headers */
#endif

struct io_engine;

struct io_backend {
    const char *name;
    int (*init)(struct io_engine *e);
    bool (*native)(enum io_op op); /* false: the offload thread runs it */
    int (*prep)(struct io_engine *e, struct io_cmd *c); /* -EAGAIN: full */
    void (*submit)(struct io_engine *e);
    /* Calls io_complete() for each finished command; returns how many. */
    int (*reap)(struct io_engine *e);
    void (*fini)(struct io_engine *e);
};

struct io_engine {
    const struct io_backend *be;
    void *priv;
    int pollfd;                 /* readable when completions wait */
    struct handler h_backend, h_offload;
    unsigned inflight;          /* queued or running, all paths */
    struct io_cmd *backlog, *backlog_tail; /* waiting for a ring slot or --disk-depth */
    unsigned depth;             /* most native commands at the disk at once; 0: no limit */
    unsigned at_disk;           /* native commands prepared and not yet reaped */
    unsigned waiting;           /* in the backlog */
    uint64_t waited;            /* commands that went through the backlog */
    bool queued;                /* io_queue ran since the last io_run */
    unsigned unsubmitted;       /* prepared by io_queue since the last submit */
    int inline_fd;              /* writes to it run synchronously */
    bool no_dontcache;          /* the kernel refused RWF_DONTCACHE once */
    struct io_cmd *inline_done, *inline_tail; /* their completions, for io_run */

    /* offload thread: ops a backend cannot run asynchronously */
    pthread_t thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct io_cmd *todo, *todo_tail, *finished;
    int offload_efd;
    bool stopping, thr_started;
};

void io_complete(struct io_engine *e, struct io_cmd *c, int res);
/* What a backend calls for each command it prepared: the result the disk
 * gave (reap), or one it learned where no callback may run (_later). */
void io_disk_done(struct io_engine *e, struct io_cmd *c, int res);
void io_disk_done_later(struct io_engine *e, struct io_cmd *c, int res);
/* Completes c with res from the next io_run (c->priv is reused): for a
 * backend that learns a result where no callback may run. */
void io_complete_later(struct io_engine *e, struct io_cmd *c, int res);
/* Runs one command synchronously (offload thread); returns res. */
int io_run_sync(struct io_cmd *c);

extern const struct io_backend io_backend_uring, io_backend_aio;

#endif
