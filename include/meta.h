/* Metadata: superblock, generation ids, per-peer dirty bitmaps and the
 * activity log, on disk. Internal metadata sits at the end of DISK; external
 * metadata has a file of its own. All integers are little endian.
 *
 * Internal layout (end of DISK, 4 KiB aligned):
 *   data area | bitmaps (31 slots) | activity log | copy B | copy A (last 4 KiB)
 * External layout (own file):
 *   copy A | copy B | activity log | bitmaps (31 slots)
 *
 * The superblock is kept twice, so that a write torn by a crash or power
 * loss never leaves a node without metadata: each save bumps a sequence
 * number and writes the copy that does not hold the newest valid state, and
 * a load uses the valid copy with the higher sequence number. meta_create
 * writes copy A with seq 1 and copy B with seq 0 (otherwise equal), so saves
 * go to B, A, B, ... (A holds odd sequence numbers, B even ones).
 */
#ifndef NM_META_H
#define NM_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define META_MAGIC       0x444d52494d44424eULL /* "NBDMIRMD" read as LE */
#define META_VERSION     2  /* 2: two superblock copies and a seq field */
#define META_SB_SIZE     4096u
#define META_SB_COPIES   2u     /* copy A (0) and copy B (1) */
#define META_AL_SIZE     (32u << 10)
#define META_MAX_PEERS   31u
#define META_BM_BLOCK    4096u  /* bytes of data per bitmap bit */
#define META_HISTORY     4u
#define META_F_INTERNAL  (1u << 0)
#define META_F_SKIP_SYNC (1u << 1) /* created with --skip-initial-sync */
#define META_F_KNOWN     (META_F_INTERNAL | META_F_SKIP_SYNC) /* others: refused */

/* A disk's state, as DRBD names them; persisted so a restart knows it. */
enum disk_state { DS_UNKNOWN = 0, DS_INCONSISTENT, DS_OUTDATED, DS_UPTODATE,
                  /* in memory only: the disk failed an I/O (or its metadata
                   * could not be written); persisted as Inconsistent */
                  DS_FAILED };

struct meta {
    uint32_t version;
    uint32_t flags;
    uint64_t disk_size;      /* DISK's size when the metadata was made */
    uint64_t data_size;      /* exported bytes: [0, data_size) of DISK */
    uint64_t meta_offset;    /* where the metadata area starts (DISK or FILE) */
    uint64_t meta_size;
    uint64_t al_offset;      /* relative to meta_offset */
    uint64_t bm_offset;      /* relative to meta_offset */
    uint64_t bm_slot_bytes;  /* bitmap bytes per peer slot */
    uint32_t al_size;
    uint32_t max_peers;
    uint64_t node_id;
    uint64_t current_gen;
    uint64_t history_gen[META_HISTORY];
    uint64_t peer_bitmap_gen[META_MAX_PEERS];
    uint64_t peer_node_id[META_MAX_PEERS];
    uint64_t created;        /* unix seconds */
    uint32_t disk_state;     /* enum disk_state (repl.h), as of the last change */
    uint64_t seq;            /* bumped by every save; the higher valid copy wins */
    /* In memory only, not in the superblock: */
    unsigned sb_copy;        /* the copy (0 = A, 1 = B) holding this state;
                              * meta_save writes the other one */
    bool one_copy_bad;       /* meta_load: the other copy is unreadable or
                              * invalid (why says which and why); the next
                              * meta_save rewrites it */
};

/* Bytes of bitmap per peer slot for a data area of data_size bytes. */
uint64_t meta_bm_slot_bytes(uint64_t data_size);
/* Plans a fresh layout for a disk of disk_size bytes. -ENOSPC if too small. */
int meta_plan(struct meta *m, uint64_t disk_size, bool internal);
/* Superblock <-> bytes (META_SB_SIZE bytes, CRC32C in the last 4). */
void meta_encode(const struct meta *m, uint8_t *sb);
/* Returns 0, or a negative errno with *why describing what is wrong:
 * -ENOENT no metadata (foreign), -EBADMSG corrupt, -EPROTONOSUPPORT version. */
int meta_decode(struct meta *m, const uint8_t *sb, const char **why);
/* Where superblock copy `copy` (0 = A, 1 = B) lives: internal A is DISK's
 * last full 4 KiB and B the 4 KiB before it; external A at 0, B at 4096.
 * Internal needs disk_size >= 8 KiB. */
uint64_t meta_sb_offset(uint64_t disk_size, bool internal, unsigned copy);
/* Writes a fresh metadata area (zeroed bitmaps and log, then both superblock
 * copies: A with seq 1, B with seq 0) and makes it durable; on success m->seq
 * is 1 and m->sb_copy is A, so m can be given to meta_save. */
int meta_create(int fd, struct meta *m);
/* Reads and validates both superblock copies for DISK of disk_size bytes and
 * keeps the valid one with the higher seq. fd is DISK (internal) or FILE
 * (external). On error why says what is wrong (of two invalid copies, the
 * more telling reason). If only one copy is valid it still succeeds, sets
 * m->one_copy_bad, puts a warning in why and logs it. */
int meta_load(int fd, uint64_t disk_size, bool internal, struct meta *m,
              char *why, size_t why_len);
/* Records a state change: bumps m->seq, writes the copy that does not hold
 * the newest valid state and makes it durable (fdatasync), so a torn save
 * leaves the other copy intact. On success m->sb_copy is the copy written. */
int meta_save(int fd, struct meta *m);

#endif
