/* The request object: one client command on its way through the server.
 *
 * The NBD front end fills it, the io engine executes it against the local
 * disk, and (later) the replication stream carries the same object to each
 * peer, so it owns its payload buffer and knows nothing of sockets. */
#ifndef NM_REQUEST_H
#define NM_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "io.h"

struct conn;

struct nm_req {
    uint64_t cookie;   /* client's handle, echoed in the reply */
    uint64_t offset;   /* byte offset in the exported data area */
    uint32_t len;      /* bytes */
    uint16_t type;     /* NBD_CMD_* */
    uint16_t flags;    /* NBD_CMD_FLAG_* */
    int err;           /* 0 or positive errno, set when the request fails */
    uint8_t *buf;      /* payload (write data, read result, block status) */
    uint32_t buf_len;  /* bytes of buf that go into the reply payload */
    uint32_t buf_cap;  /* allocated size of buf (for buf_put) */
    uint32_t done;     /* progress within a multi-step request */
    uint8_t step;      /* which step of the request runs now */
    struct conn *conn; /* owner; the front end's business */
    struct nm_req *next;
    struct io_cmd io;  /* the local disk operation (embedded: no allocation) */
    uint8_t hdr[32];   /* encoded reply header(s) */
    uint8_t hdr_len;

    /* replication (src/repl): the same object, and buffer, go to every peer */
    uint64_t seq;          /* stream order; 0 = not replicated */
    uint32_t epoch;
    uint32_t wait_peers;   /* peers whose acknowledgement the reply waits for */
    uint32_t queued_peers; /* peers whose send queue still points at buf */
    bool local_done;       /* the local disk has finished (err says how) */
    bool released;         /* the front end is done; free once queued_peers is 0 */
    uint64_t stream_off;   /* the range streamed to peers: a trim's is what */
    uint32_t stream_len;   /* the local disk really trimmed */

    /* overlapping writes (src/req/conflict.c) */
    struct nm_req *ov_prev, *ov_next;
    bool ov_active;        /* counted as in flight */
};

/* ---- overlapping writes (src/req/conflict.c) ----
 * A write, trim or zero write that overlaps one in flight waits until that
 * one is done on the local disk, so the local disk and every peer (which
 * apply overlapping writes in stream order) see them in the same order. */
/* grain: ranges are widened to it (the O_DIRECT block size; 1 if buffered). */
void req_conflict_init(unsigned grain);
/* True: r is in flight from now on. False: r waits (linked through r->next)
 * and is handed back by req_conflict_resume once it may try again. */
bool req_write_begin(struct nm_req *r);
/* r is done on the local disk (successfully or not). */
void req_write_end(struct nm_req *r);
bool req_conflict_pending(void); /* waiters may go: call req_conflict_resume */
void req_conflict_resume(void (*resume)(struct nm_req *r));

#endif
