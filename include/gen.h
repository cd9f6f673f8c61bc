/* Generation ids: which way data moves when two nodes meet.
 *
 * Every node has a current id (C), one bitmap id per peer slot (B) and a
 * short history of older ids (H). A primary takes a new C the first time it
 * writes after it may have lost a peer; a peer that was not connected then
 * keeps the old C as its B: the peer's bitmap slot holds every block written
 * since that id. When two nodes connect, each sends its C, its B for the
 * other, its H and a few flags (GENS), and both run gen_decide() on the same
 * two views, so they reach the same decision from the two sides:
 *
 *   one side has no data (a brand-new disk, or one that needs a full sync)
 *       -> full sync from the other
 *   my B for you == your C (you did not move on since)
 *       -> bitmap resync, me to you (and the mirror rule)
 *   C equal -> nothing to do
 *   both moved on from the same id -> split brain (never resolved silently:
 *       --discard-my-data on one side, or an after-sb-0pri policy)
 *   your C is in my history (my bitmap for you is gone) -> full sync from me
 *   nothing in common -> refused (unrelated data), unless one side is not
 *       UpToDate: then full sync from the side that is
 * and finally the roles: a primary is never made a sync target, two
 * primaries are never connected. (DRBD's drbd_uuid_compare works the same
 * way; this is our own, smaller table.) */
#ifndef NM_GEN_H
#define NM_GEN_H

#include <stdbool.h>
#include <stdint.h>

#include "meta.h"

enum sb_policy { SB_DISCONNECT = 0, SB_DISCARD_ZERO_CHANGES, SB_DISCARD_YOUNGER_PRIMARY };

/* One side as it tells the other (the GENS frame). */
struct gen_view {
    uint64_t node_id;
    uint64_t current;
    uint64_t bitmap;              /* my B for the other side (0: none) */
    uint64_t history[META_HISTORY];
    uint64_t bits;                /* blocks set in my bitmap for the other side */
    uint64_t primary_since;       /* unix ms of my last promotion */
    uint8_t disk;                 /* enum disk_state */
    bool primary;                 /* my role now */
    bool want_full;               /* my disk needs a full sync (failed, invalidated) */
    bool discard_my_data;         /* connect --discard-my-data */
    uint8_t sb_policy;            /* enum sb_policy: --after-sb-0pri */
};

enum gen_decision {
    GD_NONE,           /* equal: nothing moves */
    GD_BITMAP_SOURCE,  /* I send the blocks of both bitmaps */
    GD_BITMAP_TARGET,
    GD_FULL_SOURCE,    /* I send everything */
    GD_FULL_TARGET,
    GD_SPLIT_BRAIN,    /* both wrote since they parted: the link stays down */
    GD_REFUSED,        /* not now: why says what to do (both primary, unrelated data,
                        * a primary behind its peer, both discard their data) */
    GD_NO_SOURCE,      /* neither side has data the other may take: nothing moves */
};

/* The decision from my side; why says in a few words why (for the log). */
enum gen_decision gen_decide(const struct gen_view *me, const struct gen_view *peer,
                             const char **why);
const char *gen_decision_name(enum gen_decision d);
/* The same decision seen from the other side. */
enum gen_decision gen_mirror(enum gen_decision d);

/* ---- changing the ids in the superblock (m is saved by the caller) ---- */
uint64_t gen_new_id(void);
/* A new current id; the slots in `lost` (bit per slot) that have no bitmap
 * id yet keep the old one as it. */
void gen_rotate(struct meta *m, uint32_t lost);
/* Take the current id of the node we are now equal to. */
void gen_adopt(struct meta *m, uint64_t current);
/* Bits are about to be set for slot: they count from the current id. */
void gen_bitmap_start(struct meta *m, unsigned slot);
/* Slot's bitmap is empty again (a resync to it completed). */
void gen_bitmap_clear(struct meta *m, unsigned slot);

#endif
