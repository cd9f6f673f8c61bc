/* Inside replication: the node object, its peer links, and what the files
 * of src/repl/ share.
 *
 *   node.c      the node: role, disk state, generation ids, bitmaps and the
 *               activity log (their writes), promote/demote and the other
 *               control commands, status, stop
 *   link.c      one link per peer: dial/accept, HELLO/GENS and the decision,
 *               STATE, ping and timeouts, dropping, frame dispatch
 *   sender.c    the stream to peers while primary: sequence, transfer log,
 *               acknowledgements, barriers, bits for peers not connected,
 *               resync frames
 *   receiver.c  applying a peer's stream: writes in order, barriers, acks,
 *               hashes for checksum resync and verify
 *   frames.c    the table of frame types
 */
#ifndef NM_REPL_INT_H
#define NM_REPL_INT_H

#include "common.h"
#include "conn.h"
#include "io.h"
#include "repl.h"
#include "resync.h"

#define HELLO_TIMEOUT_MS 5000      /* a connection must finish its handshake within this */
#define LINK_IN_CAP  (256u << 10)  /* staged input per link */
#define LINK_SQ_MAX  8192          /* frames queued per link */
/* A peer further behind than this is dropped (one maximum request always
 * fits an empty queue): 64 requests per client connection hold their
 * buffers until every queue has sent them, so a larger limit would let a
 * slow peer hold the client back instead of being dropped. */
#define LINK_SQ_BYTES_MAX (64u << 20)
#define RX_OPS       256           /* a peer's frames applied at once */
#define BM_PIECE     4096u         /* bitmap bytes per BITMAP frame */

enum link_st { LK_IDLE, LK_CONNECTING, LK_HELLO, LK_UP };
enum peer_repl {
    PR_OFF, PR_ESTABLISHED,
    PR_SYNC_SOURCE, PR_SYNC_TARGET,   /* a resync runs */
    PR_PAUSED_SOURCE, PR_PAUSED_TARGET, /* decided, waiting (for a primary, for the bitmap) */
    PR_VERIFY,                        /* an online verify runs (from us) */
    PR_SPLIT_BRAIN,
};

struct peer;
struct rx_op {
    struct io_cmd io;
    struct peer *p;
    uint64_t seq, off;
    uint64_t cgen;            /* confirm barriers seen when it started */
    uint32_t len, done;
    uint8_t type, step;
    uint16_t flags;
    uint8_t *buf;
    bool busy;
};

/* Receiving a peer's stream (receiver.c). */
struct rx {
    bool frame_waiting;       /* fh and its payload are here; ordering says wait */
    bool buf_waiting;         /* no buffer for a WRITE yet: input waits */
    bool barrier_running;
    struct repl_hdr fh;
    uint8_t small[16];        /* the payload of a frame applied in order (WRITE: its offset) */
    uint8_t *data;            /* WRITE data, received straight into it */
    unsigned inflight;        /* ops in the io engine (the entry is not reused before 0) */
    struct rx_op ops[RX_OPS];
    struct rx_op barrier;
    /* confirm barriers (RF_CONFIRM): each waits for the ops that started
     * before it, then a flush; later ops go on meanwhile */
    uint64_t cgen;            /* confirms dispatched so far */
    struct rx_op confirm[8];  /* .cgen: its number; .step 0 waiting, 1 flushing */
    unsigned nconfirm;
    uint64_t rx_bytes, acked_bytes, trimmed_bytes, zeroed_bytes, acked_reqs, resync_rx;
    uint64_t resync_total;    /* bytes the source said it will send (status) */
};

struct rs_unconfirmed {
    uint64_t seq, off;
    uint32_t len;
};
#define RSQ_CAP (1u << 16)
/* Resync data confirmed durable at least this often: what an interrupted
 * sync sends again, and what a crash of the source costs beyond its last
 * bitmap write-out. */
#define RSQ_CONFIRM_BYTES (32u << 20)

struct last_sync {
    char reason[32];
    uint64_t bytes, ms, skipped;
};

struct peer {
    int idx;                  /* bit in a request's wait_peers / queued_peers */
    bool used, dial;
    bool standalone;          /* disconnected by the admin or by split brain */
    char addr[128];
    struct stream *s;         /* allocated per link: an event for a closed one may
                                 still be on its way */
    enum link_st st;
    struct dialer dialer;
    uint64_t born;
    int slot;                 /* its node's metadata slot, -1 before HELLO */
    uint64_t node_id;
    struct repl_hello hello;
    struct gen_view gens;     /* its ids for us (GENS) */
    struct gen_view my_gens;  /* ours for it, as sent */
    bool got_hello, got_gens, sent_gens;
    enum gen_decision decision;
    enum peer_repl rs;
    bool primary;             /* its role, as it last told us */
    enum disk_state disk;     /* its disk, as we know it */
    bool failed;              /* its disk failed: redialled slowly */
    char last_error[160];
    char refused[160];        /* the last refusal logged (logged once) */
    /* sending to it (we are primary) */
    unsigned waiting;         /* requests whose reply waits for it */
    uint64_t barrier_acked;   /* every frame before this seq is durable there */
    uint64_t clean_seq, done_seq;
    /* the current id it is known to hold: a drop makes that its bitmap id
     * (an id change it did not confirm is one it may not have) */
    uint64_t gen_confirmed, gen_sent, gen_barrier;
    bool clean_acked;
    uint64_t sent_bytes, acked_bytes, trimmed_bytes, zeroed_bytes, sent_reqs, acked_reqs;
    uint64_t unacked;         /* frames sent that await their ACK_WRITE */
    uint64_t lag_bytes;       /* client write bytes queued or sent, not yet acknowledged */
    uint64_t lag_pos;         /* transfer log: nothing before this awaits its ack */
    uint64_t ack_pos;         /* transfer log: where its next ack is looked for first */
    bool bm_in_done;          /* as a sync source: the target's bitmap is all here */
    /* resync data sent whose bits were cleared (acknowledged) but that no
     * barrier has confirmed durable yet: set again if the link drops, and
     * still set in every bitmap page written meanwhile */
    struct rs_unconfirmed *rsq;
    uint64_t rsq_head, rsq_tail, rsq_confirm;
    uint64_t rsq_since;       /* bytes queued since the last confirm was asked for */
    struct last_sync last;
    uint64_t verify_mismatch;
    /* as a sync target: our bitmap for it, being sent */
    uint64_t bm_out_pos;
    bool bm_out;
    /* kept when an accepted entry is reused (chunks or ops may still be in
     * the io engine): */
    struct resync sync;       /* SyncSource / verify */
    struct rx rx;             /* receiving its stream */
};

enum demote_step { DM_NONE, DM_DRAIN, DM_FLUSH, DM_BARRIER };

struct node {
    bool on;                  /* replicating (serve --role) */
    struct repl_node_init self;
    struct repl_config cfg;
    const struct repl_hooks *hooks;
    struct meta *meta;
    bool primary;
    enum disk_state disk;
    bool meta_failed;         /* the metadata cannot be written: no replication */
    bool rotate_pending;      /* a new current id before the next write */
    bool discard_my_data;     /* connect --discard-my-data, until a handshake uses it */
    struct peer peers[REPL_MAX_PEERS];
    struct listener ls;
    /* bitmaps, per metadata slot (allocated for known slots) */
    struct bitmap bm[META_MAX_PEERS];
    bool bm_on[META_MAX_PEERS];
    uint64_t bm_flushed_ms;
    /* the activity log (while primary) */
    struct al al;
    bool al_on;
    struct io_cmd al_io;
    uint8_t *al_buf;
    bool al_writing;
    /* bitmap pages being written before an activity log transaction */
    struct io_cmd bm_io;
    uint8_t *bm_buf;
    bool bm_writing;
    unsigned bm_write_slot;
    uint32_t bm_write_page;
    /* demote */
    enum demote_step demote;
    struct io_cmd demote_io;
    int demote_err;
    repl_done_fn demote_done;
    void *demote_arg;
    uint64_t demote_barrier;
    uint64_t demote_deadline;
};
extern struct node N;

/* ---- node.c ---- */
int persist(enum disk_state st);                 /* 0, or -1: metadata failed */
int node_save_meta(const char *what);            /* meta_save with a log line on failure */
int node_slot_for(uint64_t node_id);             /* a slot for this node id (new if
                                                  * needed), -1 when all are taken */
void node_bits(int slot, uint64_t off, uint64_t len); /* mark out of sync with slot */
uint32_t node_lost_slots(void);                  /* known slots no link streams to */
bool node_al_begin(struct nm_req *r);            /* false: r waits for the log */
void node_al_end(uint64_t off, uint64_t len);
void node_disk_failed(const char *why);          /* a replicated write or flush failed here */
void node_adopt_gen(uint64_t gen, const char *why);
void node_set_disk(enum disk_state st);          /* in memory and persisted as it should be */
uint64_t node_bm_count(int slot);
void node_flush_bitmaps(void);                   /* synchronous (drop, stop) */

/* ---- link.c ---- */
int link_start(void);
int link_status(struct peer_status *out, int max);
int link_connect(const char *addr, char *msg, size_t len);
int link_disconnect(const char *addr, char *msg, size_t len);
struct peer *peer_of(struct stream *s);
void peer_drop(struct peer *p, const char *why);
bool peer_sending(const struct peer *p);         /* our stream goes to it */
bool peer_receiving(const struct peer *p);       /* its stream comes to us */
void link_kill(struct peer *p, const char *why); /* from receiver code: close the link */
/* Queues a frame: header + up to 16 inline extra bytes, then data (not
 * copied). */
int link_frame(struct peer *p, uint8_t type, uint16_t flags, uint64_t seq, uint32_t epoch,
               uint32_t aux, const uint8_t *extra, uint8_t extra_len, const void *data,
               uint32_t data_len, stream_done_fn done, void *arg);
/* A small frame copied whole (acks, STATE, hashes, bitmap pieces). */
int link_write(struct peer *p, uint8_t type, uint16_t flags, uint64_t seq, uint32_t epoch,
               uint32_t aux, const void *pay, uint32_t len);
void link_send_state(struct peer *p, uint32_t kind, uint64_t value);
void link_tick(void);
void link_start_pending_syncs(void);             /* after promote */
void link_role_changed(void);                    /* tell every connected peer */
void link_stop(void);
const char *peer_repl_name(enum peer_repl rs);

/* ---- sender.c ---- */
void sender_init(void);                          /* at start: resync, sequence */
void sender_start(void);                         /* becoming primary: client writes */
void sender_stop(void);                          /* no longer primary */
bool sender_idle(void);                          /* nothing in flight or held */
void sender_retry(void);                         /* held writes may try again */
void sender_confirm_soon(void);                  /* a confirm now frees log extents */
bool sender_mark_unconfirmed(int slot, uint32_t page, uint8_t *buf); /* into a page being written */
bool sender_clients_idle(void);                  /* no client write in flight or held */
bool sender_busy(void);                          /* held writes wait for the next turn */
void sender_link_up(struct peer *p);             /* p now takes our stream */
void sender_link_down(struct peer *p);           /* p no longer does: bits for what it may lack */
void sender_tick(void);
/* A barrier to p; gen: the id it carries (RF_SYNC_START/DONE), 0 none. Its
 * seq, 0 if p was dropped. */
uint64_t sender_barrier(struct peer *p, uint16_t flags, uint64_t gen);
void sender_sync_start(struct peer *p, enum resync_kind kind, const char *reason);
void sender_send_gen(void);                      /* after a rotation: in-sync peers take it */
bool sender_client_busy(void);                   /* client writes right now (resync yields) */
/* How far p is behind (struct peer_status): unacknowledged bytes, and the
 * age of the oldest unacknowledged client write (0 when none). */
void sender_lag(struct peer *p, uint64_t now, uint64_t *bytes, uint64_t *ms);
void sender_stop_begin(void);
bool sender_stop_done(void);

/* ---- receiver.c ---- */
size_t rx_parse(struct peer *p, uint8_t *b, size_t len, const struct repl_hdr *h);
void rx_payload(struct peer *p);
void rx_closed(struct peer *p);                  /* the link went down */
bool rx_idle(const struct peer *p);              /* nothing of it in the io engine */
void rx_tick(struct peer *p);
void rx_reset(struct peer *p);

/* ---- frames.c: one table of frame types. A handler returns 1 when the
 * frame is done with, 0 when it must wait (ordering: offered again later),
 * -1 when it closed the link. ---- */
typedef int (*frame_fn)(struct peer *p, const struct repl_hdr *h, const uint8_t *payload);
bool repl_frame_known(uint8_t type, uint32_t len); /* type exists, length fits it */
bool repl_frame_allowed(const struct peer *p, const struct repl_hdr *h, const char **why);
/* A frame the receiver applies in stream order (it may have to wait). */
bool repl_frame_waits(uint8_t type);
/* Runs the handler if the link's state allows this frame; -1 with *why if not. */
int repl_frame_dispatch(struct peer *p, const struct repl_hdr *h, const uint8_t *payload,
                        const char **why);
int link_on_hello(struct peer *p, const struct repl_hdr *h, const uint8_t *payload);
int link_on_gens(struct peer *p, const struct repl_hdr *h, const uint8_t *payload);
int link_on_bitmap(struct peer *p, const struct repl_hdr *h, const uint8_t *payload);
int link_on_state(struct peer *p, const struct repl_hdr *h, const uint8_t *payload);
int link_on_ping(struct peer *p, const struct repl_hdr *h, const uint8_t *payload);
int link_on_pong(struct peer *p, const struct repl_hdr *h, const uint8_t *payload);
int rx_on_data(struct peer *p, const struct repl_hdr *h, const uint8_t *payload);
int rx_on_barrier(struct peer *p, const struct repl_hdr *h, const uint8_t *payload);
int rx_on_csum(struct peer *p, const struct repl_hdr *h, const uint8_t *payload);
int tx_on_ack(struct peer *p, const struct repl_hdr *h, const uint8_t *payload);
int tx_on_csum(struct peer *p, const struct repl_hdr *h, const uint8_t *payload);

#endif
