/* Replication: the node, its links to peers, the wire format between them.
 *
 * One node object per daemon (src/repl/node.c). Its role, primary or
 * secondary, is state: `promote` and `demote` change it while it runs. Each
 * peer is a link (src/repl/link.c) that both sides may dial or accept; after
 * HELLO and GENS (generation ids, include/gen.h) the two nodes agree on what
 * moves: nothing, a bitmap resync, a full sync, or nothing because of split
 * brain. A primary streams every write to its connected peers in sequence
 * order (src/repl/sender.c) and sets bits in the dirty bitmap of every peer
 * that is not connected; a peer applies the stream in order
 * (src/repl/receiver.c). Resync runs from a primary (src/resync/).
 *
 * Every frame is a 32-byte header, then `len` bytes of payload:
 *   0 magic "NMRP" | 4 version u8 | 5 type u8 | 6 flags u16 | 8 len u32 |
 *   12 epoch u32 | 16 seq u64 | 24 aux u32 | 28 CRC32C of bytes 0..27
 * big endian, like NBD. A frame that fails any check closes the link with a
 * log line, and the bitmap takes over. */
#ifndef NM_REPL_H
#define NM_REPL_H

#include <stdbool.h>
#include <stdint.h>

#include "gen.h"
#include "meta.h"
#include "request.h"

struct tls_creds;

#define REPL_MAGIC   0x4E4D5250u /* "NMRP" */
#define REPL_VERSION 2           /* 2: generation ids, bitmaps, roles at run time */
#define REPL_HDR     32
#define REPL_MAX_PAYLOAD (8u + (64u << 20)) /* offset + the NBD maximum block */
#define REPL_MAX_PEERS 31
#define REPL_HASH    16          /* bytes of a block's hash (checksum resync, verify) */
#define REPL_CSUM_MAX (1u << 20) /* bytes one checksum request covers */

enum repl_type {
    RT_HELLO = 1,   /* who I am: struct repl_hello */
    RT_WRITE,       /* offset u64 + data; flags: RF_FUA, RF_RESYNC */
    RT_TRIM,        /* offset u64 + length u32 */
    RT_ZERO,        /* offset u64 + length u32; flags: RF_NO_HOLE */
    RT_BARRIER,     /* closes `epoch`: everything before it is on disk before
                     * the ack, nothing after it starts before that (with
                     * RF_CONFIRM only the first); payload: an optional
                     * generation id (u64) for RF_SYNC_START / RF_SYNC_DONE,
                     * and for RF_SYNC_START the bytes to come (u64) */
    RT_ACK_RECV,    /* protocol B: seq arrived */
    RT_ACK_WRITE,   /* seq is on the peer's disk; aux = errno or 0; epoch = its
                     * byte count; flags = the acked frame's type << 8, plus
                     * RF_RESYNC if it was resync data */
    RT_BARRIER_ACK, /* the barrier's epoch is flushed; aux = errno or 0 */
    RT_PING,
    RT_PONG,
    RT_GENS,        /* my generation ids for you: struct gen_view */
    RT_BITMAP,      /* a sync target's bitmap for its source: first block u64 +
                     * bits (LSB first); RF_LAST on the last one */
    RT_STATE,       /* aux = enum repl_state_kind, payload u64 value */
    RT_CSUM_REQ,    /* offset u64 + length u32: hash your blocks there;
                     * RF_VERIFY: for online verify */
    RT_CSUM_REPLY,  /* offset u64 + length u32 + REPL_HASH bytes per 4 KiB */
    RT_TYPE_MAX = RT_CSUM_REPLY,
};
#define RF_FUA        (1u << 0)
#define RF_NO_HOLE    (1u << 1)
#define RF_RESYNC     (1u << 2) /* WRITE: resync data, not a client write */
#define RF_SYNC_START (1u << 3) /* BARRIER: a resync begins: mark Inconsistent, take the id */
#define RF_SYNC_DONE  (1u << 4) /* BARRIER: the resync is complete: UpToDate, take the id */
#define RF_CLEAN      (1u << 5) /* BARRIER: the primary stops or demotes, all is sent */
#define RF_LAST       (1u << 6) /* BITMAP: the last piece */
#define RF_VERIFY     (1u << 7) /* CSUM_REQ/REPLY: online verify */
#define RF_CONFIRM    (1u << 8) /* BARRIER: only confirm that everything before it
                                 * is durable; later frames need not wait */

enum repl_state_kind {
    ST_ROLE = 1,    /* value: enum repl_role, the sender's role from now on */
    ST_GEN,         /* value: my new current id: take it (you are in sync) */
    ST_OUTDATE,     /* the primary disconnects you: you are Outdated */
};

struct repl_hdr {
    uint8_t type;
    uint16_t flags;
    uint32_t len, epoch, aux;
    uint64_t seq;
};

/* HELLO payload: who each side is, before anything else. */
#define REPL_HELLO_SIZE 48
enum repl_role { ROLE_SECONDARY = 0, ROLE_PRIMARY = 1 };
struct repl_hello {
    uint64_t data_size;
    uint64_t node_id;
    uint32_t block_size;
    uint8_t role, protocol, disk_state;
};
#define REPL_GENS_SIZE (12 * 8)

/* What `status` shows of one peer. */
struct peer_status {
    char address[128];
    const char *connection;  /* StandAlone / Connecting / Connected */
    const char *replication; /* Off / Established / SyncSource / SyncTarget /
                              * PausedSyncS / PausedSyncT / VerifyS / split-brain */
    const char *peer_disk;
    const char *peer_role;   /* Primary / Secondary / Unknown */
    char protocol;
    /* client write data bytes (no headers, no sync data); trim and zero
     * ranges confirmed by the peer; replicated client requests */
    uint64_t sent_bytes, acked_bytes, received_bytes, sent_requests, acked_requests;
    uint64_t trimmed_bytes, zeroed_bytes;
    char last_error[160];    /* "" if none */
    uint64_t inflight, out_of_sync_bytes;
    uint64_t resync_sent_bytes, resync_eta_s, resync_bytes_per_s;
    int resync_percent;      /* -1: no sync running */
    /* the last resync that ended (kept until the next one starts) */
    char last_resync_reason[32]; /* "" if none yet */
    uint64_t last_resync_bytes, last_resync_ms, last_resync_skipped_bytes;
    uint64_t verify_mismatch_bytes; /* found by the last online verify */
    /* bytes queued to it here and in our socket, not yet taken by its TCP */
    uint64_t send_queue_bytes;
    /* how far it is behind us, while it takes our stream (0 otherwise):
     * bytes of client writes, trims and zero writes queued or sent to it
     * that it has not acknowledged, and the age of the oldest of them */
    uint64_t lag_bytes, lag_ms;
};

/* How a node replicates (serve's options). */
struct repl_config {
    char **peers;         /* addresses to dial */
    int npeers;
    const char *listen;   /* peers may dial us here (or NULL) */
    char protocol;        /* 'A', 'B' or 'C' */
    unsigned timeout_ms;
    uint64_t resync_rate; /* bytes/s cap for resync; 0 = none */
    bool resync_csums;    /* checksum-based resync */
    bool no_resync_control; /* no latency controller (benchmarks) */
    uint8_t after_sb_0pri; /* enum sb_policy */
    unsigned al_extents;
    const struct tls_creds *peer_tls; /* links authenticated and encrypted, or NULL */
};

/* What the node needs of the daemon. */
struct disk;
struct io_engine;
struct repl_node_init {
    uint64_t data_size;
    struct disk *dev;
    struct io_engine *io;
    struct meta *meta;
    int meta_fd;
};
/* What the daemon (its front end) does for the node: the node never calls
 * the NBD front end itself. */
struct repl_hooks {
    void (*role_changed)(bool primary);
    void (*quiesce)(void);   /* demote: new writes fail, clients leave */
    bool (*quiesced)(void);  /* ... they have */
};

/* Starts the node (replicating: --role given). primary: start as primary
 * (refused unless the disk is UpToDate or force). 0, or -1 with err. */
int repl_start(const struct repl_node_init *init, const struct repl_config *cfg,
               const struct repl_hooks *hooks, bool primary, bool force, char *err,
               size_t errlen);
/* Takes the options a running node can change from cfg (timeout_ms,
 * resync_rate, resync_csums, no_resync_control, after_sb_0pri); the others
 * stay. The timeout applies at once, the resync rate to running syncs too,
 * the rest from the next sync or connection. */
void repl_adjust(const struct repl_config *cfg);
bool repl_is_primary(void);
enum disk_state repl_local_disk(void);      /* this node's disk, as status shows it */
uint64_t repl_current_gen(void);
int repl_peers_status(struct peer_status *out, int max);
void repl_tick(void);   /* once per loop turn: sends, reconnects, timeouts, resync */
bool repl_busy(void);   /* work waits for the next turn: do not sleep */
/* Stopping: a primary first tells in-sync peers that it stops cleanly. */
void repl_stop_begin(void);
bool repl_stop_done(void);
void repl_stop(void);

/* Control commands. Each returns 0 with a message in msg, or -1 with the
 * reason; demote may finish later: 1 = pending, and done() is called with
 * the final result. */
typedef void (*repl_done_fn)(void *arg, int rc, const char *msg);
int repl_promote(bool force, char *msg, size_t len);
int repl_demote(repl_done_fn done, void *arg, char *msg, size_t len);
int repl_connect(const char *peer, bool discard_my_data, char *msg, size_t len);
int repl_disconnect(const char *peer, char *msg, size_t len);
int repl_verify(const char *peer, char *msg, size_t len);
int repl_invalidate(char *msg, size_t len);

/* ---- wire (src/repl/wire.c) ---- */
void repl_encode_hdr(uint8_t *p, const struct repl_hdr *h);
/* Checks magic, version, CRC, type and length; -EPROTO with *why on error. */
int repl_decode_hdr(const uint8_t *p, struct repl_hdr *h, const char **why);
/* For a stream parser: the header of the frame at p, of which len bytes
 * are staged. 1: decoded into h; 0: not all of it is here yet; -EPROTO: not
 * a valid header (why says how). */
int repl_frame_start(const uint8_t *p, size_t len, struct repl_hdr *h, const char **why);
void repl_encode_hello(uint8_t *p, const struct repl_hello *h);
int repl_decode_hello(const uint8_t *p, uint32_t len, struct repl_hello *h, const char **why);
void repl_encode_gens(uint8_t *p, const struct gen_view *v);
int repl_decode_gens(const uint8_t *p, uint32_t len, struct gen_view *v, const char **why);
const char *disk_state_name(enum disk_state s);
/* A block's hash for checksum resync and verify (REPL_HASH bytes). */
void repl_hash_block(const void *data, uint32_t len, uint8_t *out);

#endif
