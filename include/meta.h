/* Metadata: superblock, generation ids, per-peer dirty bitmaps and the
 * activity log, on disk. Internal metadata sits at the end of DISK; external
 * metadata has a file of its own. All integers are little endian.
 *
 * The crash rule (DESIGN.md): after any crash, the on-disk bitmaps plus the
 * extents named in the activity log cover every block a peer may lack. The
 * live bitmaps are kept in memory (a bit per 4 KiB of data, per peer slot)
 * and written out in batches; before the activity log forgets an extent,
 * the bitmap pages are on disk (see al.c and the node's commit).
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
#define META_VERSION     3  /* 2: two superblock copies and a seq field;
                             * 3: bitmap pages with a checksum, the activity
                             * log's format, role and full-sync flags */
#define META_SB_SIZE     4096u
#define META_SB_COPIES   2u     /* copy A (0) and copy B (1) */
#define META_AL_SIZE     (32u << 10)
#define META_MAX_PEERS   31u
#define META_BM_BLOCK    4096u  /* bytes of data per bitmap bit */
#define META_HISTORY     4u
#define META_F_INTERNAL  (1u << 0)
#define META_F_SKIP_SYNC (1u << 1) /* created with --skip-initial-sync */
#define META_F_PRIMARY   (1u << 2) /* the node is primary: its activity log is live;
                                    * still set at start = it crashed as primary */
#define META_F_FULL_SYNC (1u << 3) /* this disk needs a full sync from a peer
                                    * (it failed an I/O, or was invalidated) */
#define META_F_KNOWN     (META_F_INTERNAL | META_F_SKIP_SYNC | META_F_PRIMARY | META_F_FULL_SYNC)

/* Generation ids (see src/repl/gen.c). A brand-new disk has no data anyone
 * relies on; disks made with --skip-initial-sync share one well-known id,
 * so that a new set starts equal without a sync. */
#define GEN_JUST_CREATED 4u
#define GEN_SKIP_SYNC    0x4e4d534b49505331ull /* "NMSKIPS1" */

/* Activity log: 4 MiB extents; the hot set's size. */
#define AL_EXTENT_SHIFT  22
#define AL_EXTENT        (1u << AL_EXTENT_SHIFT)
#define AL_DEFAULT       1016u /* one 4 KiB log block: about 4 GiB hot */
#define AL_MIN           64u
#define AL_MAX           4088u /* a half of the log area (16 KiB) */

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
    uint32_t al_extents;     /* the activity log's hot set at the last start */
    uint64_t primary_since;  /* unix ms of the last promotion (split-brain policy) */
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
/* The same, telling progress (bytes of the area written so far, of total)
 * after each MiB; the area is written back every META_SYNC_STEP bytes. */
#define META_SYNC_STEP (32u << 20)
typedef void (*meta_progress_fn)(void *arg, uint64_t done, uint64_t total);
int meta_create_progress(int fd, struct meta *m, meta_progress_fn progress, void *arg);
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
/* Writes buf at off and makes that range durable (RWF_DSYNC). 0 or -errno. */
int meta_write_durable(int fd, const void *buf, size_t len, uint64_t off);

/* ---- dirty bitmaps (src/meta/bitmap.c) ----
 * One bit per 4 KiB block of the data area. On disk a slot is a run of 4 KiB
 * pages, each holding BM_PAGE_BITS bits, its page number and a CRC32C, so a
 * page torn by a crash or damaged later is recognised (an all-zero page is a
 * valid empty one: that is what create-md writes). */
#define BM_PAGE_BITS ((META_SB_SIZE - 8u) * 8u) /* 32704 blocks per page */

struct bitmap {
    uint64_t nbits;     /* blocks of the data area */
    uint64_t data_size;
    uint64_t set;       /* bits set now */
    uint64_t *w;
    uint32_t npages;
    uint8_t *dirty;     /* per page: changed since last written out */
    uint32_t ndirty;
};
int bm_init(struct bitmap *b, uint64_t data_size); /* all clear; 0 or -ENOMEM */
void bm_free(struct bitmap *b);
bool bm_test(const struct bitmap *b, uint64_t block);
/* Bytes [off, off + len), widened outward to whole blocks; the number of
 * bits that changed. */
uint64_t bm_set_bytes(struct bitmap *b, uint64_t off, uint64_t len);
/* Blocks [first, first + n). */
uint64_t bm_set_blocks(struct bitmap *b, uint64_t first, uint64_t n);
uint64_t bm_clear_blocks(struct bitmap *b, uint64_t first, uint64_t n);
void bm_set_all(struct bitmap *b);
void bm_clear_all(struct bitmap *b);
/* The first set (clear) block at or after from; nbits if none. */
uint64_t bm_next_set(const struct bitmap *b, uint64_t from);
uint64_t bm_next_clear(const struct bitmap *b, uint64_t from);
/* Out-of-sync bytes, exact to the byte (the last block may be partial). */
uint64_t bm_bytes(const struct bitmap *b);
/* Page p as stored for peer slot `slot` (META_SB_SIZE bytes at out). */
void bm_page_encode(const struct bitmap *b, uint32_t p, unsigned slot, uint8_t *out);
/* Marks, in page p as bm_page_encode made it, the blocks of bytes [off,
 * off + len) that fall in it; true if any was clear. bm_page_seal then
 * makes its checksum right again. */
bool bm_page_mark_bytes(const struct bitmap *b, uint32_t p, uint8_t *out, uint64_t off,
                        uint64_t len);
void bm_page_seal(uint32_t p, unsigned slot, uint8_t *out);
/* The pages that cover bytes [off, off + len) are written again at the next
 * write-out, as they are now. */
void bm_touch_bytes(struct bitmap *b, uint64_t off, uint64_t len);
/* Loads page p from its stored form: 0, or -EBADMSG with *why (the page's
 * bits are then left as they were). */
int bm_page_decode(struct bitmap *b, uint32_t p, unsigned slot, const uint8_t *in,
                   const char **why);
/* Where page p of slot `slot` lives in the metadata fd. */
uint64_t bm_page_offset(const struct meta *m, unsigned slot, uint32_t p);
/* Reads slot `slot` from fd into b (bm_init'ed). A page that fails to decode
 * is taken as all set (whatever it said is unknown: resync it); returns the
 * number of such pages (and the first reason in why), or -errno on a read
 * error. */
int bm_load(int fd, const struct meta *m, unsigned slot, struct bitmap *b, char *why,
            size_t why_len);
/* Writes every dirty page of slot `slot` and makes it durable (used where a
 * synchronous write is right: start, a clean stop, tests). 0 or -errno. */
int bm_store(int fd, const struct meta *m, unsigned slot, struct bitmap *b);

/* ---- activity log (src/meta/al.c) ----
 * The set of "hot" 4 MiB extents that may be written to right now. A write
 * to a cold extent waits until the extent is recorded on disk; the log forgets
 * an extent only once nobody holds it (every write there is done locally and
 * durable on every connected peer, or its bits are set for the others).
 *
 * On disk the log area (META_AL_SIZE) is two halves; every transaction
 * writes the whole hot set into the half not holding the newest valid state
 * (as the superblock copies do), so a torn write loses nothing: the other
 * half is a superset of what was safe to forget. */
#define AL_HDR 32u
struct al_entry;
struct al {
    unsigned cap, used;
    struct al_entry *e;         /* cap entries */
    struct al_entry **hash;     /* by extent number */
    unsigned hash_size;
    struct al_entry *lru_head, *lru_tail; /* most and least recently used */
    uint64_t seq;               /* of the last transaction written (or read) */
    unsigned half;              /* the half holding seq */
    uint64_t commit_gen;        /* transactions started so far */
    uint64_t done_gen;          /* transactions durable so far */
    bool changed;               /* the hot set differs from what is on disk */
    bool dropped;               /* extents were forgotten since the last encode */
    uint32_t *gone;             /* ... which ones (their bitmap pages must be on
                                 * disk before the transaction that forgets them) */
    unsigned ngone;
    uint64_t transitions;       /* extents made hot since start (status) */
};
int al_init(struct al *a, unsigned cap);
void al_free(struct al *a);
/* Takes one reference on every extent of [off, off + len) if all of them are
 * hot (durably recorded): true. Otherwise the missing ones are queued to be
 * recorded by the next transaction (evicting unused ones), nothing is held,
 * and false: try again once that transaction is durable (al_committed).
 * *starved: the set is full of extents in use (wait for references to go).
 * A request wider than half the set may grow it past cap (up to AL_MAX, as
 * many as a 4 GiB trim needs); it shrinks back as extents go idle. */
bool al_begin(struct al *a, uint64_t off, uint64_t len, bool *starved);
void al_end(struct al *a, uint64_t off, uint64_t len);
/* A set grown past cap forgets idle extents until it is back to cap (call
 * before writing the bitmap pages of al->gone and encoding). */
void al_shrink(struct al *a);
/* A transaction is due (al_encode writes it). */
static inline bool al_due(const struct al *a) { return a->changed; }
/* Encodes the next transaction (the whole set, pending extents included)
 * into buf (META_AL_SIZE / 2 bytes at least): returns the bytes to write
 * and sets *off to where, relative to the log area. */
uint32_t al_encode(struct al *a, uint8_t *buf, uint64_t *off);
/* The transaction last encoded is durable: its pending extents are hot. */
void al_committed(struct al *a);
/* Decodes the log area (META_AL_SIZE bytes): the extents of the newest
 * valid transaction into out (up to max), their number in *n. 0; or
 * -EBADMSG with *why when neither half is valid (an all-zero area is a
 * valid empty log). */
int al_decode(const uint8_t *area, uint32_t *out, unsigned max, unsigned *n, uint64_t *seq,
              unsigned *half, const char **why);
/* Starts a log that continues after seq/half (so the next write does not
 * overwrite the newest state). */
void al_resume(struct al *a, uint64_t seq, unsigned half);

#endif
