/* Generation ids: every row of the decision table (include/gen.h), each
 * checked from both sides (the two nodes must agree: one's decision is the
 * mirror of the other's), and whole histories replayed through the id
 * changes a node makes (rotate, adopt, bitmap start/clear): a restart after
 * a clean stop, a dropped secondary, a crashed primary, failover, split
 * brain, a full sync interrupted and resumed. */
#include <string.h>

#include "check.h"
#include "gen.h"

static const char *why;

/* the decision from a's side, after checking b's side agrees */
static enum gen_decision decide(const struct gen_view *a, const struct gen_view *b)
{
    const char *w2;
    enum gen_decision d = gen_decide(a, b, &why), e = gen_decide(b, a, &w2);
    CHECK(e == gen_mirror(d));
    return d;
}

static struct gen_view view(uint64_t node, uint64_t c, uint64_t b, uint8_t disk, bool primary)
{
    return (struct gen_view){ .node_id = node, .current = c, .bitmap = b, .disk = disk,
                              .primary = primary };
}

static void test_rows(void)
{
    struct gen_view a, b;

    /* no data on either side */
    a = view(1, GEN_JUST_CREATED, 0, DS_INCONSISTENT, false);
    b = view(2, GEN_JUST_CREATED, 0, DS_INCONSISTENT, false);
    CHECK(decide(&a, &b) == GD_NO_SOURCE);
    /* a brand-new disk takes everything from an UpToDate one */
    b = view(2, 0x100, 0, DS_UPTODATE, true);
    CHECK(decide(&a, &b) == GD_FULL_TARGET && strstr(why, "brand-new"));
    /* ... but not from one that is not UpToDate */
    b.disk = DS_OUTDATED;
    b.primary = false;
    CHECK(decide(&a, &b) == GD_NO_SOURCE);
    /* a disk that needs a full sync (failed, invalidated) */
    a = view(1, 0x100, 0, DS_INCONSISTENT, false);
    a.want_full = true;
    b = view(2, 0x100, 0, DS_UPTODATE, true);
    CHECK(decide(&a, &b) == GD_FULL_TARGET && strstr(why, "full sync"));
    /* equal ids: nothing */
    a = view(1, 0x100, 0, DS_UPTODATE, false);
    CHECK(decide(&a, &b) == GD_NONE);
    /* equal ids, but blocks marked for the other side (an id change it
     * never confirmed, a crashed primary's log): bitmap from that side */
    b.bits = 12; /* b is the primary */
    CHECK(decide(&b, &a) == GD_BITMAP_SOURCE && strstr(why, "marked"));
    a.bits = 3;
    CHECK(decide(&a, &b) == GD_SPLIT_BRAIN);
    a.bits = b.bits = 0;
    /* equal ids and an Inconsistent disk: full sync to it */
    a.disk = DS_INCONSISTENT;
    CHECK(decide(&a, &b) == GD_FULL_TARGET);
    b.disk = DS_INCONSISTENT;
    b.primary = false;
    CHECK(decide(&a, &b) == GD_NO_SOURCE);
    /* my bitmap for you starts at your current id: bitmap resync from me */
    a = view(1, 0x200, 0x100, DS_UPTODATE, true);
    b = view(2, 0x100, 0, DS_UPTODATE, false);
    CHECK(decide(&a, &b) == GD_BITMAP_SOURCE);
    CHECK(decide(&b, &a) == GD_BITMAP_TARGET);
    /* the same with my bitmap based on my own current id (bits set at a
     * drop or from the activity log, no write since) */
    a = view(1, 0x100, 0x100, DS_UPTODATE, true);
    CHECK(decide(&a, &b) == GD_BITMAP_SOURCE);
    /* both moved on from the same id: split brain */
    a = view(1, 0x200, 0x100, DS_UPTODATE, true);
    b = view(2, 0x300, 0x100, DS_UPTODATE, true);
    CHECK(decide(&a, &b) == GD_SPLIT_BRAIN);
    /* deeper: one side's base is in the other's history */
    b = view(2, 0x400, 0x300, DS_UPTODATE, false);
    b.history[0] = 0x100;
    CHECK(decide(&a, &b) == GD_SPLIT_BRAIN);
    /* resolved by --discard-my-data on the secondary: bitmap, both sides */
    b = view(2, 0x300, 0x100, DS_UPTODATE, false);
    b.discard_my_data = true;
    CHECK(decide(&b, &a) == GD_BITMAP_TARGET && strstr(why, "discard-my-data (bitmap)"));
    /* but never on a primary (it must be demoted first) */
    b.primary = true;
    CHECK(decide(&b, &a) == GD_REFUSED);
    /* with no common bitmap id: full */
    b = view(2, 0x400, 0x300, DS_UPTODATE, false);
    b.history[0] = 0x100;
    b.discard_my_data = true;
    CHECK(decide(&b, &a) == GD_FULL_TARGET);
    /* both told to discard */
    a.discard_my_data = true;
    CHECK(decide(&a, &b) == GD_REFUSED && strstr(why, "both"));
    /* history: your current id is in my history (bitmap gone): full from me */
    a = view(1, 0x500, 0, DS_UPTODATE, true);
    a.history[2] = 0x100;
    b = view(2, 0x100, 0, DS_UPTODATE, false);
    CHECK(decide(&a, &b) == GD_FULL_SOURCE && strstr(why, "gone"));
    /* unrelated data: refused, unless told which side to overwrite, or
     * only one side is UpToDate */
    a = view(1, 0x700, 0, DS_UPTODATE, false);
    b = view(2, 0x800, 0, DS_UPTODATE, false);
    CHECK(decide(&a, &b) == GD_REFUSED && strstr(why, "unrelated"));
    b.discard_my_data = true;
    CHECK(decide(&a, &b) == GD_FULL_SOURCE);
    b.discard_my_data = false;
    b.disk = DS_OUTDATED;
    CHECK(decide(&a, &b) == GD_FULL_SOURCE);
    /* roles: two primaries never connect */
    a = view(1, 0x100, 0, DS_UPTODATE, true);
    b = view(2, 0x100, 0, DS_UPTODATE, true);
    CHECK(decide(&a, &b) == GD_REFUSED && strstr(why, "both nodes are primary"));
    /* a primary is never a sync target */
    a = view(1, 0x100, 0, DS_UPTODATE, true);
    b = view(2, 0x200, 0x100, DS_UPTODATE, false);
    CHECK(decide(&a, &b) == GD_REFUSED && strstr(why, "demote this node"));
    /* each side's bitmap starts at the other's current id, and the ids
     * differ: no honest history gives this (fuzz_repl found that each side
     * then called itself the source); both refuse, or obey a discard */
    a = view(1, 0x900, 0xa00, DS_UPTODATE, false);
    b = view(2, 0xa00, 0x900, DS_UPTODATE, false);
    CHECK(decide(&a, &b) == GD_REFUSED && strstr(why, "contradictory"));
    a.primary = true;
    b.discard_my_data = true;
    CHECK(decide(&a, &b) == GD_FULL_SOURCE);
    a.primary = b.discard_my_data = false;
    /* ... and with equal ids neither moved on: the marked blocks decide */
    a = view(1, 0x900, 0x900, DS_UPTODATE, false);
    b = view(2, 0x900, 0x900, DS_UPTODATE, false);
    CHECK(decide(&a, &b) == GD_NONE);
    b.bits = 5;
    CHECK(decide(&a, &b) == GD_BITMAP_TARGET);
}

static void test_after_sb_0pri(void)
{
    struct gen_view a = view(1, 0x200, 0x100, DS_UPTODATE, false);
    struct gen_view b = view(2, 0x300, 0x100, DS_UPTODATE, false);

    /* disconnect (the default) */
    CHECK(decide(&a, &b) == GD_SPLIT_BRAIN);
    /* discard-zero-changes: the side that wrote nothing is the target */
    a.sb_policy = b.sb_policy = SB_DISCARD_ZERO_CHANGES;
    a.bits = 0;
    b.bits = 25;
    CHECK(decide(&a, &b) == GD_BITMAP_TARGET);
    a.bits = 3;
    CHECK(decide(&a, &b) == GD_SPLIT_BRAIN && strstr(why, "both sides changed"));
    a.bits = b.bits = 0;
    CHECK(decide(&a, &b) == GD_BITMAP_TARGET); /* node 2 is the source: same data anyway */
    /* not when a node is primary (that is not the 0pri case) */
    a.bits = 0;
    b.bits = 25;
    b.primary = true;
    CHECK(decide(&a, &b) == GD_SPLIT_BRAIN);
    b.primary = false;
    /* discard-younger-primary */
    a.sb_policy = b.sb_policy = SB_DISCARD_YOUNGER_PRIMARY;
    a.primary_since = 5000;
    b.primary_since = 4000;
    CHECK(decide(&a, &b) == GD_BITMAP_TARGET);
    b.primary_since = 5000;
    CHECK(decide(&a, &b) == GD_SPLIT_BRAIN);
    /* policies that differ: nobody is overwritten */
    b.primary_since = 1;
    b.sb_policy = SB_DISCONNECT;
    CHECK(decide(&a, &b) == GD_SPLIT_BRAIN && strstr(why, "different"));
}

/* ---- histories: metadata changed as the node does, views from it ---- */

static struct gen_view of(const struct meta *m, unsigned slot, uint8_t disk, bool primary,
                          uint64_t bits)
{
    struct gen_view v = view(m->node_id, m->current_gen, m->peer_bitmap_gen[slot], disk, primary);
    memcpy(v.history, m->history_gen, sizeof v.history);
    v.bits = bits;
    return v;
}

static void pair(struct meta *p, struct meta *s, uint64_t c)
{
    memset(p, 0, sizeof *p);
    memset(s, 0, sizeof *s);
    p->node_id = 1;
    s->node_id = 2;
    p->current_gen = s->current_gen = c;
}

static void test_histories(void)
{
    struct meta p, s;
    struct gen_view vp, vs;

    /* clean stop of both; the primary restarts alone and writes: bitmap */
    pair(&p, &s, GEN_SKIP_SYNC);
    gen_rotate(&p, 1u << 0); /* slot 0 = s, not connected */
    vp = of(&p, 0, DS_UPTODATE, true, 10);
    vs = of(&s, 0, DS_UPTODATE, false, 0);
    CHECK(decide(&vp, &vs) == GD_BITMAP_SOURCE);

    /* a secondary dropped (bits from the transfer log), no write after:
     * the bits count from the current id */
    pair(&p, &s, 0x1234);
    gen_bitmap_start(&p, 0);
    vp = of(&p, 0, DS_UPTODATE, true, 3);
    vs = of(&s, 0, DS_UPTODATE, false, 0);
    CHECK(decide(&vp, &vs) == GD_BITMAP_SOURCE);
    /* ... then it writes: the rotation keeps the older bitmap id */
    gen_rotate(&p, 1u << 0);
    CHECK(p.peer_bitmap_gen[0] == 0x1234);
    vp = of(&p, 0, DS_UPTODATE, true, 9);
    CHECK(decide(&vp, &vs) == GD_BITMAP_SOURCE);
    /* after the resync the target takes the source's id; the source's
     * bitmap id goes to its history */
    gen_adopt(&s, p.current_gen);
    gen_bitmap_clear(&p, 0);
    vp = of(&p, 0, DS_UPTODATE, true, 0);
    vs = of(&s, 0, DS_UPTODATE, false, 0);
    CHECK(decide(&vp, &vs) == GD_NONE);
    CHECK(s.history_gen[0] == 0x1234 && p.history_gen[0] == 0x1234);

    /* the primary crashes; its activity log marks bits for the secondary
     * (no new id). Restarted as primary: it is the source. */
    pair(&p, &s, 0x5000);
    gen_bitmap_start(&p, 0);
    vp = of(&p, 0, DS_UPTODATE, true, 100);
    vs = of(&s, 0, DS_UPTODATE, false, 0);
    CHECK(decide(&vp, &vs) == GD_BITMAP_SOURCE);

    /* failover: the secondary is promoted and writes (rotating: the old
     * primary is not connected); the old primary comes back as secondary
     * with its activity log's bits: it is the target, by bitmap */
    pair(&p, &s, 0x6000);
    gen_bitmap_start(&p, 0); /* activity log */
    gen_rotate(&s, 1u << 0);
    vp = of(&p, 0, DS_UPTODATE, false, 100);
    vs = of(&s, 0, DS_UPTODATE, true, 500);
    CHECK(decide(&vp, &vs) == GD_BITMAP_TARGET);
    /* had the old primary written too after coming back (as primary): split brain */
    gen_rotate(&p, 1u << 0);
    vp = of(&p, 0, DS_UPTODATE, true, 120);
    CHECK(decide(&vp, &vs) == GD_SPLIT_BRAIN);
    /* demoted and told to discard its data: bitmap resync of both sides' bits */
    vp.primary = false;
    vp.discard_my_data = true;
    CHECK(decide(&vp, &vs) == GD_BITMAP_TARGET);

    /* a full sync: the source's bitmap id for the target is its current id
     * and the target takes it at the start; interrupted, then the source
     * writes on alone: resumed by bitmap, not from scratch */
    pair(&p, &s, 0x7000);
    s.current_gen = GEN_JUST_CREATED;
    vp = of(&p, 0, DS_UPTODATE, true, 0);
    vs = of(&s, 0, DS_INCONSISTENT, false, 0);
    CHECK(decide(&vp, &vs) == GD_FULL_SOURCE);
    gen_bitmap_start(&p, 0);
    gen_adopt(&s, p.peer_bitmap_gen[0]);
    gen_rotate(&p, 1u << 0);
    vp = of(&p, 0, DS_UPTODATE, true, 1000);
    vs = of(&s, 0, DS_INCONSISTENT, false, 0);
    CHECK(decide(&vp, &vs) == GD_BITMAP_SOURCE);
    /* the half-synced target forced to primary and written: split brain */
    gen_rotate(&s, 1u << 0);
    vs = of(&s, 0, DS_UPTODATE, true, 7);
    vp.primary = false;
    CHECK(decide(&vp, &vs) == GD_SPLIT_BRAIN);

    /* ids never repeat the well-known ones */
    for (int i = 0; i < 1000; i++) {
        uint64_t id = gen_new_id();
        CHECK(id != 0 && id != GEN_JUST_CREATED && id != GEN_SKIP_SYNC);
    }
}

int main(void)
{
    test_rows();
    test_after_sb_0pri();
    test_histories();
    return check_summary();
}
