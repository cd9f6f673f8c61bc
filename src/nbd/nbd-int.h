/* Inside the NBD front end: the connection and what its files share. */
#ifndef NM_NBD_INT_H
#define NM_NBD_INT_H

#include "common.h"
#include "io.h"
#include "nbd.h"

#define CONN_SLOTS   64            /* requests in flight per connection */
#define IN_CAP       (64u << 10)   /* receive staging buffer */
#define MAX_OPT_LEN  (16u << 10)   /* longest option payload we accept */
#define MAX_OPTS     4096          /* options per handshake */
#define OUT_CAP      (64u << 10)   /* handshake replies not yet sent */
#define HANDSHAKE_TIMEOUT_MS 30000

enum conn_state { CS_FLAGS, CS_OPTIONS, CS_TRANSMIT };

struct conn {
    struct handler h;
    int fd;
    enum conn_state state;
    bool dead;       /* socket closed; freed when no request is in the io engine */
    bool closing;    /* DISC or shutdown: read no more, close once replies are out */
    bool paused;     /* out of slots or buffers: stop reading until some return */
    bool no_zeroes, structured, meta_alloc;
    uint32_t events; /* what epoll watches now */
    unsigned nopts;
    uint64_t born_ms;
    char peer[64];

    /* input: staging buffer, then payload read straight into its buffer */
    uint8_t *in;
    uint32_t in_start, in_end;
    struct nm_req *rd;     /* write whose payload is still arriving */
    uint32_t rd_have;
    uint32_t drain;        /* payload bytes of a refused write to discard */

    /* output: handshake bytes, then the reply queue */
    uint8_t *out;
    uint32_t out_len, out_off;
    struct nm_req *rq_head, *rq_tail;
    size_t rq_off;         /* bytes of rq_head already sent */

    unsigned inflight;     /* slots in use */
    struct nm_req *free_slots;
    struct nm_req slots[CONN_SLOTS];

    struct conn *next, *prev;  /* all connections */
    struct conn *next_dirty;   /* has replies to send this turn */
    bool on_dirty;
};

struct server {
    const struct nbd_export *exp;
    int listen_fd;
    struct handler h_listen;
    struct conn *conns;
    struct conn *dirty;
    unsigned nconns;
    bool shutting_down, resume_all;
    uint64_t shutdown_deadline, last_sweep;
    struct nbd_stats stats;
};

extern struct server srv;

/* handshake.c */
void hs_start(struct conn *c);
void hs_parse(struct conn *c);
/* transmit.c */
void tx_parse(struct conn *c);
void tx_read_payload(struct conn *c, int *progress);
void req_release(struct nm_req *r); /* frees the slot and buffer */
/* server.c */
void conn_kill(struct conn *c, const char *why);
void conn_out(struct conn *c, const void *p, uint32_t len);
void conn_mark_dirty(struct conn *c);
void conn_update_events(struct conn *c);
uint16_t export_flags(const struct conn *c);

#endif
