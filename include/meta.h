/* Metadata: superblock, generation ids, per-peer dirty bitmaps and the
 * activity log, on disk. Internal metadata sits at the end of DISK; external
 * metadata has a file of its own. All integers are little endian.
 *
 * Internal layout (end of DISK, 4 KiB aligned):
 *   data area | bitmaps (31 slots) | activity log | superblock (last 4 KiB)
 * External layout (own file):
 *   superblock | activity log | bitmaps (31 slots)
 */
#ifndef NM_META_H
#define NM_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define META_MAGIC       0x444d52494d44424eULL /* "NBDMIRMD" read as LE */
#define META_VERSION     1
#define META_SB_SIZE     4096u
#define META_AL_SIZE     (32u << 10)
#define META_MAX_PEERS   31u
#define META_BM_BLOCK    4096u  /* bytes of data per bitmap bit */
#define META_HISTORY     4u
#define META_F_INTERNAL  (1u << 0)
#define META_F_SKIP_SYNC (1u << 1) /* created with --skip-initial-sync */

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
/* Where the superblock lives: internal at DISK's last 4 KiB, external at 0. */
uint64_t meta_sb_offset(uint64_t disk_size, bool internal);
/* Writes a fresh metadata area (zeroed bitmaps and log, then superblock). */
int meta_create(int fd, const struct meta *m);
/* Reads and validates the superblock for DISK of disk_size bytes.
 * fd is DISK (internal) or FILE (external). why is set on error. */
int meta_load(int fd, uint64_t disk_size, bool internal, struct meta *m,
              char *why, size_t why_len);
/* Rewrites the superblock (state changes) and makes it durable. */
int meta_save(int fd, const struct meta *m);

#endif
