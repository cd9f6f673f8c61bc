/* Inside the NBD front end: the connection and what its files share. */
#ifndef NM_NBD_INT_H
#define NM_NBD_INT_H

#include "common.h"
#include "conn.h"
#include "io.h"
#include "nbd.h"

#define CONN_SLOTS   64            /* requests in flight per connection */
#define IN_CAP       (64u << 10)   /* receive staging buffer */
#define MAX_OPT_LEN  (16u << 10)   /* longest option payload we accept */
#define MAX_OPTS     4096          /* options per handshake */
#define HS_QUEUED    8             /* handshake: options wait while this many replies are unsent */
#define CONN_QUEUE   (CONN_SLOTS + 32) /* output items: the replies, and the handshake's */
#define HANDSHAKE_TIMEOUT_MS 30000

enum conn_state { CS_FLAGS, CS_OPTIONS, CS_TRANSMIT };

/* A client connection: a stream of the connection layer (src/conn), which
 * stages input, receives write payloads into their buffers and sends the
 * reply queue (one item a reply: header inline, r->buf as payload). */
struct conn {
    struct stream s; /* s.dead: closed; freed once no request is in the io engine */
    enum conn_state state;
    bool closing;    /* DISC: read no more, close once replies are out */
    bool paused;     /* out of slots or buffers: input held until some return */
    bool no_zeroes, structured, meta_alloc;
    bool writable;   /* negotiated without NBD_FLAG_READ_ONLY */
    unsigned nopts;
    uint64_t born_ms;

    struct nm_req *rd;     /* write whose payload is still arriving */

    unsigned inflight;     /* slots in use */
    struct nm_req *free_slots;
    struct nm_req slots[CONN_SLOTS];

    struct conn *next, *prev;  /* all connections */
};

struct server {
    const struct nbd_export *exp;
    struct listener ls;
    struct conn *conns;
    unsigned nconns;
    bool shutting_down, resume_all;
    bool quiescing;  /* a demote: writable connections finish and close */
    uint64_t shutdown_deadline, last_sweep;
    struct nbd_stats stats;
};

extern struct server srv;

/* handshake.c */
void hs_start(struct conn *c);
size_t hs_data(struct conn *c, const uint8_t *p, size_t len);
/* transmit.c */
size_t tx_data(struct conn *c, const uint8_t *p, size_t len);
void tx_payload(struct conn *c);
void req_release(struct nm_req *r); /* frees the slot and buffer */
/* server.c */
void conn_kill(struct conn *c, const char *why);
void conn_out(struct conn *c, const void *p, uint32_t len);
void conn_pause(struct conn *c);
uint16_t export_flags(const struct conn *c);

#endif
