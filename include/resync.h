/* Resync: bringing a peer's disk level with ours while clients write. For
 * now the full sync: a cursor walks the data area in 1 MiB chunks, at most
 * two in flight per peer. A chunk is locked (client writes to it wait, see
 * resync_locked), read once the local writes already under way there are
 * done (resync_write_begin/end), and handed to the peer's ordered stream,
 * then unlocked. So the peer never overwrites a client write with older
 * sync data. The bitmap resync will walk dirty bits instead of a cursor. */
#ifndef NM_RESYNC_H
#define NM_RESYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "io.h"

#define RESYNC_CHUNK (1u << 20)
#define RESYNC_CHUNKS 2 /* in flight per peer: a sync yields to client I/O */

struct resync;
struct resync_chunk {
    struct io_cmd io;
    struct resync *rs;
    uint64_t off;
    uint32_t len, gen;
    uint8_t *buf;       /* the payload to send: released by resync_chunk_done */
    enum { CK_FREE, CK_LOCKED, CK_READING, CK_QUEUED } st;
};

/* One peer's sync, embedded in the primary's peer. */
struct resync {
    bool active;
    uint64_t cursor, sent, start_ms, done_seq;
    uint32_t gen;
    void *peer;
    struct resync_chunk chunks[RESYNC_CHUNKS];
};

/* What the replication side provides. */
struct resync_env {
    uint64_t data_size;
    uint64_t rate;           /* bytes/s; 0 = no cap */
    struct disk *dev;
    struct io_engine *io;
    /* queue chunk c in the peer's stream; false: the peer is gone */
    bool (*queue_chunk)(void *peer, struct resync_chunk *c);
    /* queue the barrier that ends the sync; its sequence number, 0 if gone */
    uint64_t (*queue_done)(void *peer);
    void (*failed)(void *peer, const char *why); /* drop the peer */
};

int resync_init(const struct resync_env *env);
void resync_begin(struct resync *rs, void *peer);
void resync_step(struct resync *rs, uint64_t now_ms);
void resync_abort(struct resync *rs);
/* The chunk left the send queue: sent (counts) or discarded. */
void resync_chunk_done(struct resync_chunk *c, bool sent);
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
