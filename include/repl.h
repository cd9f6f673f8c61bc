/* Replication: the wire format between nodes, the primary's stream to its
 * peers, and the secondary's receiver.
 *
 * Every frame is a 32-byte header, then `len` bytes of payload:
 *   0 magic "NMRP" | 4 version u8 | 5 type u8 | 6 flags u16 | 8 len u32 |
 *   12 epoch u32 | 16 seq u64 | 24 aux u32 | 28 CRC32C of bytes 0..27
 * big endian, like NBD. Payloads: WRITE = offset u64 + data; TRIM and ZERO =
 * offset u64 + length u32; HELLO = struct repl_hello. A frame that fails any
 * check closes the link with a log line. */
#ifndef NM_REPL_H
#define NM_REPL_H

#include <stdbool.h>
#include <stdint.h>

#include "meta.h"
#include "request.h"

#define REPL_MAGIC   0x4E4D5250u /* "NMRP" */
#define REPL_VERSION 1
#define REPL_HDR     32
#define REPL_MAX_PAYLOAD (8u + (64u << 20)) /* offset + the NBD maximum block */
#define REPL_MAX_PEERS 31

enum repl_type {
    RT_HELLO = 1,
    RT_WRITE,       /* flags: RF_FUA */
    RT_TRIM,
    RT_ZERO,        /* flags: RF_NO_HOLE */
    RT_BARRIER,     /* closes `epoch`: everything before it is on disk before the ack */
    RT_ACK_RECV,    /* protocol B: seq arrived */
    RT_ACK_WRITE,   /* seq is on the peer's disk; aux = errno or 0; epoch = its
                     * byte count; flags = the acked frame's type << 8, plus
                     * RF_RESYNC if it was full-sync data */
    RT_BARRIER_ACK, /* the barrier's epoch is flushed; aux = errno or 0 */
    RT_PING,
    RT_PONG,
    RT_TYPE_MAX = RT_PONG,
};
#define RF_FUA       (1u << 0)
#define RF_NO_HOLE   (1u << 1)
#define RF_RESYNC    (1u << 2) /* WRITE: full-sync data, not a client write */
#define RF_SYNC_START (1u << 3) /* BARRIER: a full sync begins: mark Inconsistent */
#define RF_SYNC_DONE (1u << 4) /* BARRIER: the full sync is complete */
#define RF_CLEAN     (1u << 5) /* BARRIER: the primary stops cleanly, all is sent */

struct repl_hdr {
    uint8_t type;
    uint16_t flags;
    uint32_t len, epoch, aux;
    uint64_t seq;
};

/* HELLO payload: what each side tells the other before anything else. */
#define REPL_HELLO_SIZE 48
enum repl_role { ROLE_SECONDARY = 0, ROLE_PRIMARY = 1 };
struct repl_hello {
    uint64_t data_size;
    uint64_t node_id;
    uint64_t current_gen;
    uint32_t block_size;
    uint8_t role, protocol, disk_state;
};

/* This node, as the replication code sees it. */
struct disk;
struct io_engine;
struct repl_node {
    uint64_t data_size, node_id, current_gen;
    enum disk_state disk;
    struct disk *dev;
    struct io_engine *io;
    struct meta *meta;  /* the secondary persists state changes here */
    int meta_fd;
};

/* What `status` shows of one peer (the primary, seen from a secondary). */
struct peer_status {
    char address[128];
    const char *connection;  /* StandAlone / Connecting / Connected */
    const char *replication; /* Off / Established / SyncSource / SyncTarget */
    const char *peer_disk;
    char protocol;
    /* client write data bytes (no headers, no sync data); trim and zero
     * ranges confirmed by the peer; replicated client requests */
    uint64_t sent_bytes, acked_bytes, received_bytes, sent_requests, acked_requests;
    uint64_t trimmed_bytes, zeroed_bytes;
    char last_error[128];    /* "" if none */
    uint64_t inflight, out_of_sync_bytes;
    uint64_t resync_sent_bytes, resync_eta_s, resync_bytes_per_s;
    int resync_percent;      /* -1: no sync running */
};

/* secondary.c: apply a primary's stream to the local disk. listen may be
 * NULL; dial lists primaries to connect to (may be empty). */
int repl_secondary_start(const struct repl_node *self, const char *listen, char **dial, int ndial);
/* primary.c: stream every write to the peers. */
struct repl_primary_config {
    char **peers;      /* addresses to connect to */
    int npeers;
    const char *listen; /* secondaries may also connect to us (or NULL) */
    char protocol;      /* 'A', 'B' or 'C' */
    unsigned timeout_ms;
    uint64_t resync_rate; /* bytes/s for full sync; 0 = no cap */
};
int repl_primary_start(const struct repl_node *self, const struct repl_primary_config *cfg);
/* Client requests reach the primary's stream through the request lifecycle
 * (include/request.h): repl_primary_start plugs it in with req_set_stream. */
enum disk_state repl_local_disk(void);      /* this node's disk, as status shows it */

int repl_peers_status(struct peer_status *out, int max);
void repl_tick(void);   /* once per loop turn: sends, reconnects, timeouts */
bool repl_busy(void);   /* output waits to be sent */
/* Stopping: a primary first tells in-sync peers that it stops cleanly. */
void repl_stop_begin(void);
bool repl_stop_done(void);
void repl_stop(void);

void repl_encode_hdr(uint8_t *p, const struct repl_hdr *h);
/* Checks magic, version, CRC, type and length; -EPROTO with *why on error. */
int repl_decode_hdr(const uint8_t *p, struct repl_hdr *h, const char **why);
/* For a stream parser: the header of the frame at p, of which len bytes
 * are staged. 1: decoded into h; 0: not all of it is here yet; -EPROTO: not
 * a valid header (why says how). */
int repl_frame_start(const uint8_t *p, size_t len, struct repl_hdr *h, const char **why);
void repl_encode_hello(uint8_t *p, const struct repl_hello *h);
int repl_decode_hello(const uint8_t *p, uint32_t len, struct repl_hello *h, const char **why);
const char *disk_state_name(enum disk_state s);

#endif
