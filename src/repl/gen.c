/* Generation ids: the decision table (see include/gen.h) and the changes a
 * node makes to its own ids. */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "gen.h"

static bool has_data(const struct gen_view *v)
{
    return v->current != GEN_JUST_CREATED && !v->want_full;
}

static bool can_source(const struct gen_view *v) { return v->disk == DS_UPTODATE; }

static bool in_history(const struct gen_view *v, uint64_t id)
{
    for (unsigned i = 0; id && i < META_HISTORY; i++)
        if (v->history[i] == id)
            return true;
    return false;
}

/* Both moved on from one id: each side's base (its B, or an older id) is
 * the other's B or in its history. */
static bool parted(const struct gen_view *a, const struct gen_view *b)
{
    return (a->bitmap && (a->bitmap == b->bitmap || in_history(b, a->bitmap))) ||
           (b->bitmap && in_history(a, b->bitmap));
}

/* Split brain with neither side primary: the after-sb-0pri policy, if both
 * sides have the same one, may name a victim. */
static enum gen_decision after_sb_0pri(const struct gen_view *me, const struct gen_view *peer,
                                       const char **why)
{
    if (me->sb_policy != peer->sb_policy) {
        *why = "split brain; the nodes have different --after-sb-0pri policies";
        return GD_SPLIT_BRAIN;
    }
    switch (me->sb_policy) {
    case SB_DISCARD_ZERO_CHANGES:
        if (me->bits == 0 && peer->bits == 0) {
            /* nothing written on either side: any direction is right */
            *why = "split brain without changes on either side (discard-zero-changes)";
            return me->node_id > peer->node_id ? GD_BITMAP_SOURCE : GD_BITMAP_TARGET;
        }
        if (me->bits == 0 || peer->bits == 0) {
            *why = "split brain resolved: the side without changes discards (discard-zero-changes)";
            return me->bits == 0 ? GD_BITMAP_TARGET : GD_BITMAP_SOURCE;
        }
        *why = "split brain: both sides changed data (discard-zero-changes cannot choose)";
        return GD_SPLIT_BRAIN;
    case SB_DISCARD_YOUNGER_PRIMARY:
        if (me->primary_since != peer->primary_since) {
            *why = "split brain resolved: the younger primary discards (discard-younger-primary)";
            return me->primary_since > peer->primary_since ? GD_BITMAP_TARGET : GD_BITMAP_SOURCE;
        }
        *why = "split brain: both became primary at the same time (discard-younger-primary cannot choose)";
        return GD_SPLIT_BRAIN;
    default:
        *why = "split brain: both nodes wrote since they parted";
        return GD_SPLIT_BRAIN;
    }
}

/* The table, before roles are looked at. */
static enum gen_decision by_ids(const struct gen_view *me, const struct gen_view *peer,
                                const char **why)
{
    if (me->discard_my_data && peer->discard_my_data) {
        *why = "both nodes were told to discard their data";
        return GD_REFUSED;
    }
    if (!has_data(me) && !has_data(peer)) {
        *why = "neither disk holds data the other may take (start one with --force)";
        return GD_NO_SOURCE;
    }
    if (!has_data(me) || !has_data(peer)) {
        bool mine = !has_data(peer);
        const struct gen_view *src = mine ? me : peer;
        if (!can_source(src)) {
            *why = "the disk with data is not UpToDate";
            return GD_NO_SOURCE;
        }
        *why = (mine ? peer : me)->want_full ? "a disk that needs a full sync"
                                            : "a brand-new disk";
        return mine ? GD_FULL_SOURCE : GD_FULL_TARGET;
    }
    bool mine = me->bitmap && me->bitmap == peer->current;
    bool theirs = peer->bitmap && peer->bitmap == me->current;
    if (mine && theirs && me->current != peer->current) {
        /* each says the other did not move on, yet they differ: no honest
         * history gives this, and either answer would be a guess (the two
         * sides must not guess differently) */
        *why = "contradictory generation ids (damaged or forged metadata; connect "
               "--discard-my-data on the node to overwrite)";
        return me->discard_my_data ? GD_FULL_TARGET
               : peer->discard_my_data ? GD_FULL_SOURCE : GD_REFUSED;
    }
    if (mine && !theirs) {
        *why = "the peer did not write since my bitmap for it began";
        return GD_BITMAP_SOURCE;
    }
    if (theirs && !mine) {
        *why = "I did not write since the peer's bitmap for me began";
        return GD_BITMAP_TARGET;
    }
    /* (both, with equal ids: neither moved on; the marked blocks decide) */
    if (me->current == peer->current) {
        /* bits with no new id: writes a peer may lack were marked when it
         * went away (an unconfirmed id change, a crashed primary's log) */
        if (me->bits || peer->bits) {
            if (me->bits && peer->bits) {
                *why = "equal ids, but both sides marked blocks the other lacks";
                return GD_SPLIT_BRAIN;
            }
            bool mine = me->bits != 0;
            if (!can_source(mine ? me : peer)) {
                *why = "equal ids, but the side with marked blocks is not UpToDate";
                return GD_NO_SOURCE;
            }
            *why = "equal ids, blocks marked out of sync";
            return mine ? GD_BITMAP_SOURCE : GD_BITMAP_TARGET;
        }
        /* the same data, unless one side is half-synced from elsewhere */
        if (me->disk == DS_INCONSISTENT || peer->disk == DS_INCONSISTENT) {
            bool mine = peer->disk == DS_INCONSISTENT;
            if (!can_source(mine ? me : peer)) {
                *why = "both disks are Inconsistent";
                return GD_NO_SOURCE;
            }
            *why = "equal ids but an Inconsistent disk";
            return mine ? GD_FULL_SOURCE : GD_FULL_TARGET;
        }
        *why = "equal generation ids";
        return GD_NONE;
    }
    if (parted(me, peer)) {
        bool mine = peer->discard_my_data, theirs = me->discard_my_data;
        if (mine || theirs) {
            /* the victim's changes are overwritten: both bitmaps, if they
             * start from the same id, cover every block that differs */
            bool same_base = me->bitmap && me->bitmap == peer->bitmap;
            *why = same_base ? "split brain resolved by --discard-my-data (bitmap)"
                             : "split brain resolved by --discard-my-data (no common bitmap: full)";
            if (!can_source(mine ? me : peer)) {
                *why = "split brain: the surviving disk is not UpToDate";
                return GD_SPLIT_BRAIN;
            }
            return mine ? (same_base ? GD_BITMAP_SOURCE : GD_FULL_SOURCE)
                        : (same_base ? GD_BITMAP_TARGET : GD_FULL_TARGET);
        }
        if (!me->primary && !peer->primary && me->bitmap == peer->bitmap)
            return after_sb_0pri(me, peer, why);
        *why = "split brain: both nodes wrote since they parted";
        return GD_SPLIT_BRAIN;
    }
    if (in_history(me, peer->current)) {
        *why = "the peer is behind and my bitmap for it is gone";
        return can_source(me) ? GD_FULL_SOURCE : GD_NO_SOURCE;
    }
    if (in_history(peer, me->current)) {
        *why = "I am behind and the peer's bitmap for me is gone";
        return can_source(peer) ? GD_FULL_TARGET : GD_NO_SOURCE;
    }
    if (can_source(me) != can_source(peer)) {
        *why = "no common history; only one disk is UpToDate";
        return can_source(me) ? GD_FULL_SOURCE : GD_FULL_TARGET;
    }
    *why = "unrelated data: no common history (connect --discard-my-data on the node to overwrite)";
    return me->discard_my_data ? GD_FULL_TARGET : peer->discard_my_data ? GD_FULL_SOURCE
                                                                        : GD_REFUSED;
}

enum gen_decision gen_decide(const struct gen_view *me, const struct gen_view *peer,
                             const char **why)
{
    enum gen_decision d = by_ids(me, peer, why);

    if (d == GD_SPLIT_BRAIN || d == GD_REFUSED)
        return d;
    if (me->primary && peer->primary) {
        *why = "both nodes are primary (demote one)";
        return GD_REFUSED;
    }
    if ((d == GD_BITMAP_TARGET || d == GD_FULL_TARGET) && me->primary) {
        *why = "the peer has data this primary lacks (demote this node to resync it)";
        return GD_REFUSED;
    }
    if ((d == GD_BITMAP_SOURCE || d == GD_FULL_SOURCE) && peer->primary) {
        *why = "this node has data the primary lacks (demote the peer to resync it)";
        return GD_REFUSED;
    }
    return d;
}

const char *gen_decision_name(enum gen_decision d)
{
    static const char *names[] = { "nothing to do", "bitmap resync as source",
                                   "bitmap resync as target", "full sync as source",
                                   "full sync as target", "split brain", "refused",
                                   "no source" };
    return d <= GD_NO_SOURCE ? names[d] : "?";
}

enum gen_decision gen_mirror(enum gen_decision d)
{
    switch (d) {
    case GD_BITMAP_SOURCE: return GD_BITMAP_TARGET;
    case GD_BITMAP_TARGET: return GD_BITMAP_SOURCE;
    case GD_FULL_SOURCE: return GD_FULL_TARGET;
    case GD_FULL_TARGET: return GD_FULL_SOURCE;
    default: return d;
    }
}

uint64_t gen_new_id(void)
{
    uint64_t v = random_id();
    /* never one of the well-known ids */
    return v == GEN_JUST_CREATED + 1 || v == GEN_SKIP_SYNC ? v + 2 : v;
}

static void push_history(struct meta *m, uint64_t id)
{
    if (!id || id == GEN_JUST_CREATED)
        return;
    for (unsigned i = 0; i < META_HISTORY; i++)
        if (m->history_gen[i] == id)
            return;
    memmove(m->history_gen + 1, m->history_gen, (META_HISTORY - 1) * sizeof m->history_gen[0]);
    m->history_gen[0] = id;
}

void gen_rotate(struct meta *m, uint32_t lost)
{
    for (unsigned s = 0; s < META_MAX_PEERS; s++)
        if ((lost & (1u << s)) && !m->peer_bitmap_gen[s])
            m->peer_bitmap_gen[s] = m->current_gen;
    push_history(m, m->current_gen);
    m->current_gen = gen_new_id();
}

void gen_adopt(struct meta *m, uint64_t current)
{
    if (m->current_gen == current)
        return;
    push_history(m, m->current_gen);
    m->current_gen = current;
}

void gen_bitmap_start(struct meta *m, unsigned slot)
{
    if (slot < META_MAX_PEERS && !m->peer_bitmap_gen[slot])
        m->peer_bitmap_gen[slot] = m->current_gen;
}

void gen_bitmap_clear(struct meta *m, unsigned slot)
{
    if (slot >= META_MAX_PEERS)
        return;
    push_history(m, m->peer_bitmap_gen[slot]);
    m->peer_bitmap_gen[slot] = 0;
}
