/* The activity log: extents become usable only after the transaction that
 * records them is durable; references keep an extent in the log; the least
 * recently used idle extent makes room; a set full of busy extents starves;
 * transactions alternate halves (wrap-around of the sequence) and a replay
 * takes the newest valid one, also when the newest write was torn; a
 * corrupt log is refused with a reason. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common.h"
#include "meta.h"

#define MB (1ull << 20)
static uint8_t area[META_AL_SIZE];

/* writes the next transaction into area, as the node would */
static void commit(struct al *a)
{
    /* (the node writes the bitmap pages of a->gone here) */
    uint8_t buf[META_AL_SIZE / 2];
    uint64_t off;
    uint32_t n = al_encode(a, buf, &off);
    memcpy(area + off, buf, n);
    al_committed(a);
}

static bool has(const uint32_t *ext, unsigned n, uint32_t x)
{
    for (unsigned i = 0; i < n; i++)
        if (ext[i] == x)
            return true;
    return false;
}

static void test_hot_and_refs(void)
{
    struct al a;
    bool starved;

    CHECK(al_init(&a, 64) == 0);
    /* a cold extent: queued, not usable yet */
    CHECK(!al_begin(&a, 5 * AL_EXTENT + 10, 4096, &starved) && !starved && al_due(&a));
    CHECK(!al_begin(&a, 5 * AL_EXTENT, 4096, &starved)); /* still not durable */
    commit(&a);
    CHECK(!al_due(&a));
    CHECK(al_begin(&a, 5 * AL_EXTENT, 4096, &starved)); /* hot: no transaction */
    CHECK(!al_due(&a));
    /* a write across two extents needs both */
    CHECK(!al_begin(&a, 6 * AL_EXTENT - 4096, 8192, &starved));
    commit(&a);
    CHECK(al_begin(&a, 6 * AL_EXTENT - 4096, 8192, &starved));
    CHECK(a.used == 2 && a.transitions == 2);

    /* fill the set: 62 more extents, all in use */
    for (uint32_t x = 100; x < 162; x++)
        al_begin(&a, (uint64_t)x * AL_EXTENT, 1, &starved);
    commit(&a);
    for (uint32_t x = 100; x < 162; x++)
        CHECK(al_begin(&a, (uint64_t)x * AL_EXTENT, 1, &starved));
    CHECK(a.used == 64);
    /* no idle extent: a new one starves */
    CHECK(!al_begin(&a, 500 * AL_EXTENT, 1, &starved) && starved);
    /* extent 100 goes idle (every reference gone): it makes room, and the
     * next transaction no longer names it */
    al_end(&a, 100 * AL_EXTENT, 1);
    CHECK(!al_begin(&a, 500 * AL_EXTENT, 1, &starved) && !starved);
    CHECK(a.dropped);
    commit(&a);
    uint32_t ext[AL_MAX];
    unsigned n;
    uint64_t seq;
    unsigned half;
    const char *why;
    CHECK(al_decode(area, ext, AL_MAX, &n, &seq, &half, &why) == 0);
    CHECK(n == 64 && has(ext, n, 500) && !has(ext, n, 100) && has(ext, n, 5) && has(ext, n, 161));
    /* extent 5 still has a reference: it is never the one to go */
    al_end(&a, 6 * AL_EXTENT - 4096, 8192);
    CHECK(!al_begin(&a, 501 * AL_EXTENT, 1, &starved) && !starved); /* takes 6 (idle, oldest) */
    commit(&a);
    CHECK(al_decode(area, ext, AL_MAX, &n, &seq, &half, &why) == 0);
    CHECK(has(ext, n, 5) && !has(ext, n, 6) && has(ext, n, 501));
    al_free(&a);
}

static void test_halves_and_replay(void)
{
    struct al a;
    bool starved;
    uint32_t ext[AL_MAX];
    unsigned n, half;
    uint64_t seq;
    const char *why = NULL;

    memset(area, 0, sizeof area);
    /* an all-zero area is an empty log */
    CHECK(al_decode(area, ext, AL_MAX, &n, &seq, &half, &why) == 0 && n == 0 && seq == 0);
    al_init(&a, AL_MAX);
    al_resume(&a, seq, half);
    /* many transactions: the halves alternate, the newest always wins */
    for (uint32_t t = 0; t < 25; t++) {
        al_begin(&a, (uint64_t)t * 7 * AL_EXTENT, 1, &starved);
        uint64_t before = a.seq;
        commit(&a);
        CHECK(a.seq == before + 1);
        CHECK(al_decode(area, ext, AL_MAX, &n, &seq, &half, &why) == 0);
        CHECK(seq == a.seq && n == t + 1 && has(ext, n, t * 7) && half == a.half);
    }
    /* a log of the largest size needs more than one 4 KiB block */
    for (uint32_t x = 1000; a.used < AL_MAX; x++)
        al_begin(&a, (uint64_t)x * AL_EXTENT, 1, &starved);
    commit(&a);
    CHECK(al_decode(area, ext, AL_MAX, &n, &seq, &half, &why) == 0 && n == AL_MAX);
    CHECK(al_decode(area, ext, 100, &n, &seq, &half, &why) == -EBADMSG); /* too many for us */

    /* a torn newest transaction: the previous one (a superset of what was
     * safe to forget) is used */
    uint64_t prev = a.seq;
    al_begin(&a, 9999ull * AL_EXTENT, 1, &starved); /* evicts an idle extent */
    commit(&a);
    area[a.half * (META_AL_SIZE / 2) + AL_HDR + 12] ^= 0xff;
    CHECK(al_decode(area, ext, AL_MAX, &n, &seq, &half, &why) == 0);
    CHECK(seq == prev && !has(ext, n, 9999) && n == AL_MAX);
    /* a restart continues after the newest valid state, not over it */
    struct al b;
    al_init(&b, AL_MAX);
    al_resume(&b, seq, half);
    al_begin(&b, 1ull * AL_EXTENT, 1, &starved);
    uint8_t buf[META_AL_SIZE / 2];
    uint64_t off;
    al_encode(&b, buf, &off);
    CHECK(off == (uint64_t)(half ^ 1) * (META_AL_SIZE / 2) && b.seq == seq + 1);

    /* both halves damaged: refused with a reason */
    area[AL_HDR + 40] ^= 1;
    area[META_AL_SIZE / 2 + AL_HDR + 40] ^= 1;
    CHECK(al_decode(area, ext, AL_MAX, &n, &seq, &half, &why) == -EBADMSG && strstr(why, "checksum"));
    memset(area, 0x11, sizeof area);
    CHECK(al_decode(area, ext, AL_MAX, &n, &seq, &half, &why) == -EBADMSG && strstr(why, "magic"));
    al_free(&a);
    al_free(&b);
}

/* a request wider than the set (a trim of a whole disk) grows it rather
 * than wait for ever; the set shrinks back to its size as extents go idle */
static void test_wide(void)
{
    struct al a;
    bool starved;

    al_init(&a, AL_MIN);
    for (uint32_t x = 0; x < AL_MIN; x++) /* full, every extent in use */
        al_begin(&a, (uint64_t)x * AL_EXTENT, 1, &starved);
    commit(&a);
    for (uint32_t x = 0; x < AL_MIN; x++)
        CHECK(al_begin(&a, (uint64_t)x * AL_EXTENT, 1, &starved));
    CHECK(!al_begin(&a, 1000ull * AL_EXTENT, 1, &starved) && starved); /* narrow: waits */
    uint64_t wide = 256ull * AL_EXTENT;                                 /* 1 GiB */
    CHECK(!al_begin(&a, 2000ull * AL_EXTENT, wide, &starved) && !starved);
    commit(&a);
    CHECK(al_begin(&a, 2000ull * AL_EXTENT, wide, &starved));
    CHECK(a.used == AL_MIN + 256);
    uint32_t ext[AL_MAX];
    unsigned n, half;
    uint64_t seq;
    const char *why;
    CHECK(al_decode(area, ext, AL_MAX, &n, &seq, &half, &why) == 0 && n == AL_MIN + 256);
    /* all idle now: new extents take the place of old ones, one for one,
     * until the set is back to its size */
    al_end(&a, 2000ull * AL_EXTENT, wide);
    for (uint32_t x = 0; x < AL_MIN; x++)
        al_end(&a, (uint64_t)x * AL_EXTENT, 1);
    for (uint32_t x = 5000; x < 5010; x++)
        al_begin(&a, (uint64_t)x * AL_EXTENT, 1, &starved);
    commit(&a);
    CHECK(a.used == AL_MIN + 256); /* replaced, not added */
    al_shrink(&a);
    CHECK(a.used == AL_MIN && a.ngone > 0 && al_due(&a));
    commit(&a);
    CHECK(al_decode(area, ext, AL_MAX, &n, &seq, &half, &why) == 0 && n == AL_MIN);
    al_free(&a);
}

int main(void)
{
    test_wide();
    test_hot_and_refs();
    test_halves_and_replay();
    return check_summary();
}
