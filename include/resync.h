/* Resync: bringing a peer's disk level with ours while clients write.
 *
 * The source walks the peer's dirty bitmap (a full sync is the same walk
 * with every bit set) and coalesces runs of set bits into chunks of up to
 * 1 MiB. A chunk is locked (client writes to it wait, see resync_locked),
 * read once the local writes already under way there are done
 * (resync_write_begin/end), and handed to the peer's ordered stream, then
 * unlocked: so the peer never overwrites a client write with older data.
 * A chunk's bits are cleared when the peer acknowledges it (resync_acked);
 * if the link drops first, the transfer log sets them again.
 *
 * Checksum resync (RK_CSUM): instead of the data, the source asks the peer
 * for a hash of every block of the chunk, keeps the chunk locked until the
 * answer, and sends only the blocks that differ. Online verify (RK_VERIFY)
 * walks every block, compares hashes only, and marks those that differ in
 * the bitmap. */
#ifndef NM_RESYNC_H
#define NM_RESYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "io.h"
#include "meta.h"

#define RESYNC_CHUNK (1u << 20)
#define RESYNC_CHUNKS 64             /* chunks per peer at once */
#define RESYNC_INFLIGHT (8u << 20)   /* bytes per peer read or queued at once */
#define RESYNC_YIELD (128u << 10)    /* ... ahead of client writes on the link, */
#define RESYNC_SMALL (32u << 10)     /* ... in chunks this small */

enum resync_kind { RK_BITMAP, RK_FULL, RK_CSUM, RK_VERIFY };

struct resync;
struct resync_chunk {
    struct io_cmd io;
    struct resync *rs;
    uint64_t off;
    uint32_t len, gen;
    uint8_t *buf;       /* our data */
    uint8_t *hash;      /* checksum and verify: our hashes, REPL_HASH per block */
    uint64_t seq;       /* checksum and verify: the request, for its answer */
    unsigned frames;    /* data frames still pointing at buf */
    enum { CK_FREE, CK_LOCKED, CK_READING, CK_HASH_WAIT, CK_VERIFY_WAIT, CK_QUEUED } st;
};

/* One peer's sync or verify, embedded in the peer. */
struct resync {
    bool active;
    enum resync_kind kind;
    struct bitmap *bm;      /* the peer's bitmap: walked, cleared, or marked */
    uint64_t cursor;        /* next block to look at */
    uint64_t total;         /* bytes to sync when it began (verify: the data size) */
    uint64_t sent, skipped; /* bytes of data sent; bytes found equal by hash */
    uint64_t mismatched;    /* verify: bytes found different */
    uint64_t unacked;       /* bytes sent, not yet acknowledged */
    uint64_t start_ms, done_seq, queued_at;
    uint32_t gen;
    unsigned inflight;      /* bytes of chunks not free */
    void *peer;
    struct resync_chunk chunks[RESYNC_CHUNKS];
};

/* What the replication side provides. */
struct resync_env {
    uint64_t data_size;
    uint64_t rate;           /* bytes/s; 0 = no cap */
    struct disk *dev;
    struct io_engine *io;
    /* queue [off, off + len) of chunk c's data as one frame; false: the
     * peer is gone. resync_frame_done follows for each one queued. */
    bool (*queue_data)(void *peer, struct resync_chunk *c, uint64_t off, uint32_t len);
    /* ask the peer for hashes of chunk c (sets c->seq); false: gone */
    bool (*queue_hash)(void *peer, struct resync_chunk *c, bool verify);
    /* the controller: how large the next chunk may be now (0: none yet) */
    uint32_t (*budget)(void *peer, uint32_t inflight);
    /* queue the barrier that ends a sync; its sequence number, 0 if gone */
    uint64_t (*queue_done)(void *peer);
    void (*verified)(void *peer);                 /* a verify walked everything */
    void (*failed)(void *peer, const char *why);  /* drop the peer */
};

int resync_init(const struct resync_env *env);
void resync_set_rate(uint64_t rate); /* bytes/s; 0 = no cap */
void resync_begin(struct resync *rs, void *peer, enum resync_kind kind, struct bitmap *bm);
void resync_step(struct resync *rs, uint64_t now_ms);
void resync_abort(struct resync *rs);
/* Chunks still in the io engine or a send queue (the struct must stay). */
bool resync_busy(const struct resync *rs);
/* A data frame of chunk c left the send queue: sent (counts) or discarded. */
void resync_frame_done(struct resync_chunk *c, bool sent);
/* The peer has [off, off + len) on its disk. */
void resync_acked(struct resync *rs, uint64_t off, uint32_t len);
/* The peer's hashes for the request seq: 0, or -1 if they do not fit it. */
int resync_hashes(struct resync *rs, uint64_t seq, uint64_t off, uint32_t len,
                  const uint8_t *hashes);
/* A client write to [off, off+len) must wait: a sync is copying it. */
bool resync_locked(uint64_t off, uint32_t len);
/* Local client writes in flight, so a chunk is read only after them. */
void resync_write_begin(uint64_t off, uint32_t len);
void resync_write_end(uint64_t off, uint32_t len);
/* True once after a chunk was unlocked: parked writes may try again. */
bool resync_unlocked(void);
/* Progress for status. */
int resync_percent(const struct resync *rs);
uint64_t resync_eta_s(const struct resync *rs, uint64_t now_ms);
uint64_t resync_bytes_per_s(const struct resync *rs, uint64_t now_ms);

#endif
