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
};

#endif
