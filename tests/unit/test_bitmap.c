/* Dirty bitmaps: set, clear and count across word and page boundaries,
 * exact byte counts with a partial last block, searching, the stored page
 * format (round trip, and refusal of torn, misplaced, foreign-slot and forged
 * pages), and loading a slot whose pages are damaged: their blocks come back
 * all set, never lost. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common.h"
#include "meta.h"

/* a slow but obvious model: one byte per block */
static uint64_t model_count(const uint8_t *m, uint64_t n)
{
    uint64_t c = 0;
    for (uint64_t i = 0; i < n; i++)
        c += m[i];
    return c;
}

static void test_ranges(void)
{
    struct bitmap b;
    uint64_t data = 3ull * BM_PAGE_BITS * 4096 + 12345; /* 3 pages and a partial block */
    CHECK(bm_init(&b, data) == 0);
    CHECK(b.nbits == 3ull * BM_PAGE_BITS + 4 && b.npages == 4);
    uint8_t *m = calloc(b.nbits, 1);
    unsigned seed = 7;

    for (int round = 0; round < 4000; round++) {
        seed = seed * 1103515245 + 12345;
        uint64_t first = (seed >> 4) % b.nbits;
        seed = seed * 1103515245 + 12345;
        uint64_t n = (seed >> 4) % (round % 10 == 0 ? 2 * BM_PAGE_BITS : 300) + 1;
        bool on = round % 3 != 0;
        uint64_t expect = 0;
        for (uint64_t i = first; i < first + n && i < b.nbits; i++) {
            expect += m[i] != on;
            m[i] = on;
        }
        uint64_t got = on ? bm_set_blocks(&b, first, n) : bm_clear_blocks(&b, first, n);
        CHECK(got == expect);
    }
    CHECK(b.set == model_count(m, b.nbits));
    bool same = true;
    for (uint64_t i = 0; i < b.nbits; i++)
        same &= bm_test(&b, i) == m[i];
    CHECK(same);
    /* search agrees with the model */
    uint64_t i = bm_next_set(&b, 0), seen = 0;
    bool order = true;
    while (i < b.nbits) {
        order &= m[i] == 1;
        seen++;
        i = bm_next_set(&b, i + 1);
    }
    CHECK(order && seen == b.set);
    CHECK(bm_next_clear(&b, b.nbits) == b.nbits);

    /* bytes: widened outward, and the partial last block counts exactly */
    bm_clear_all(&b);
    CHECK(b.set == 0 && bm_bytes(&b) == 0);
    CHECK(bm_set_bytes(&b, 4095, 2) == 2);          /* straddles two blocks */
    CHECK(bm_bytes(&b) == 8192);
    CHECK(bm_set_bytes(&b, data - 1, 1) == 1);      /* the partial block */
    CHECK(bm_bytes(&b) == 8192 + 12345 % 4096);
    bm_set_all(&b);
    CHECK(bm_bytes(&b) == data);
    CHECK(bm_set_bytes(&b, 0, data) == 0);          /* nothing changed */
    CHECK(bm_clear_blocks(&b, b.nbits - 1, 100) == 1); /* clamped at the end */
    CHECK(bm_set_blocks(&b, b.nbits + 5, 1) == 0);
    free(m);
    bm_free(&b);
}

static void test_pages(void)
{
    struct bitmap b, c;
    uint8_t page[META_SB_SIZE];
    const char *why = NULL;
    uint64_t data = 2ull * BM_PAGE_BITS * 4096 + 4096 * 10; /* 3 pages, the last short */

    bm_init(&b, data);
    bm_init(&c, data);
    /* bits around both page boundaries */
    bm_set_blocks(&b, BM_PAGE_BITS - 3, 6);
    bm_set_blocks(&b, 2 * BM_PAGE_BITS - 1, 4);
    bm_set_blocks(&b, 17, 1);
    CHECK(b.ndirty == 3);
    for (uint32_t p = 0; p < b.npages; p++) {
        bm_page_encode(&b, p, 5, page);
        CHECK(bm_page_decode(&c, p, 5, page, &why) == 0);
    }
    CHECK(c.set == b.set && c.set == 11 && c.ndirty == 0);
    CHECK(bm_test(&c, BM_PAGE_BITS - 3) && bm_test(&c, BM_PAGE_BITS + 2) &&
          !bm_test(&c, BM_PAGE_BITS + 3) && bm_test(&c, 2 * BM_PAGE_BITS + 2));

    bm_page_encode(&b, 1, 5, page);
    page[100] ^= 1; /* torn or damaged */
    CHECK(bm_page_decode(&c, 1, 5, page, &why) == -EBADMSG && strstr(why, "checksum"));
    page[100] ^= 1;
    CHECK(bm_page_decode(&c, 1, 6, page, &why) == -EBADMSG);  /* another slot's page */
    CHECK(bm_page_decode(&c, 0, 5, page, &why) == -EBADMSG);  /* another position */
    CHECK(bm_page_decode(&c, 9, 5, page, &why) == -EBADMSG && strstr(why, "beyond"));
    memset(page, 0, sizeof page); /* as create-md leaves it: empty, valid */
    CHECK(bm_page_decode(&c, 1, 5, page, &why) == 0 && !bm_test(&c, BM_PAGE_BITS));
    /* a forged last page with bits past the end of the data area */
    bm_page_encode(&b, 2, 5, page);
    page[20] = 0x80; /* block 2*BM_PAGE_BITS + 167 does not exist */
    put_le32(page + META_SB_SIZE - 4, crc32c(6, page, META_SB_SIZE - 4));
    CHECK(bm_page_decode(&c, 2, 5, page, &why) == -EBADMSG && strstr(why, "past the end"));
    bm_free(&b);
    bm_free(&c);
}

/* A page written with ranges marked beyond what memory says (resync data
 * not yet confirmed durable): those bits, and only those, read back set;
 * the other pages are untouched; a range past the data area marks nothing. */
static void test_page_marks(void)
{
    struct bitmap b, c;
    uint8_t page[META_SB_SIZE];
    const char *why = NULL;
    uint64_t data = 2ull * BM_PAGE_BITS * 4096 + 4096 * 10;
    uint64_t across = (BM_PAGE_BITS - 2) * 4096ull; /* 4 blocks over pages 0 and 1 */

    bm_init(&b, data);
    bm_init(&c, data);
    bm_set_blocks(&b, 5, 1);
    for (uint32_t p = 0; p < b.npages; p++) {
        bm_page_encode(&b, p, 3, page);
        bool m = bm_page_mark_bytes(&b, p, page, across, 4 * 4096);
        m |= bm_page_mark_bytes(&b, p, page, 5 * 4096, 4096); /* already set */
        m |= bm_page_mark_bytes(&b, p, page, data + 4096, 8192); /* past the end */
        CHECK(m == (p < 2));
        bm_page_seal(p, 3, page);
        CHECK(bm_page_decode(&c, p, 3, page, &why) == 0);
    }
    CHECK(c.set == 5 && bm_test(&c, 5) && bm_test(&c, BM_PAGE_BITS - 2) &&
          bm_test(&c, BM_PAGE_BITS + 1) && !bm_test(&c, BM_PAGE_BITS + 2) &&
          !bm_test(&c, BM_PAGE_BITS - 3));
    /* a page marked but not sealed again is refused, not believed */
    bm_page_encode(&b, 0, 3, page);
    bm_page_mark_bytes(&b, 0, page, 0, 4096);
    CHECK(bm_page_decode(&c, 0, 3, page, &why) == -EBADMSG);
    /* touching pages makes them dirty without changing a bit */
    bm_clear_all(&b);
    memset(b.dirty, 0, b.npages); /* as after a write-out */
    b.ndirty = 0;
    bm_touch_bytes(&b, across, 4 * 4096);
    CHECK(b.ndirty == 2 && b.dirty[0] && b.dirty[1] && !b.dirty[2] && b.set == 0);
    bm_touch_bytes(&b, data + 4096, 4096); /* past the end: nothing */
    CHECK(b.ndirty == 2);
    bm_free(&b);
    bm_free(&c);
}

static void test_load_store(void)
{
    char path[] = "/tmp/nbdm-bm.XXXXXX";
    int fd = mkstemp(path);
    struct meta m;
    struct bitmap b, c;
    char why[200] = "";
    uint8_t junk[64];

    CHECK(fd >= 0);
    unlink(path);
    CHECK(meta_plan(&m, 3ull << 30, false) == 0); /* external: 3 GiB of data */
    CHECK(ftruncate(fd, m.meta_size) == 0);
    bm_init(&b, m.data_size);
    bm_init(&c, m.data_size);
    CHECK(bm_load(fd, &m, 30, &c, why, sizeof why) == 0 && c.set == 0); /* zeroed area */
    bm_set_bytes(&b, 1ull << 30, 5 << 20);           /* page 8 */
    bm_set_bytes(&b, (2ull << 30) + 4096, 4096);     /* page 16 */
    CHECK(bm_store(fd, &m, 30, &b) == 0 && b.ndirty == 0);
    CHECK(bm_load(fd, &m, 30, &c, why, sizeof why) == 0 && c.set == b.set);
    CHECK(bm_load(fd, &m, 29, &c, why, sizeof why) == 0 && c.set == 0); /* slots apart */
    /* damage page 16 of slot 30: its blocks come back set, with a reason */
    memset(junk, 0x5a, sizeof junk);
    CHECK(pwrite(fd, junk, sizeof junk, bm_page_offset(&m, 30, 16) + 200) == sizeof junk);
    CHECK(bm_load(fd, &m, 30, &c, why, sizeof why) == 1 && strstr(why, "page 16"));
    CHECK(c.set == 1280 + BM_PAGE_BITS);
    CHECK(c.ndirty == 1); /* and it is rewritten at the next store */
    close(fd);
    bm_free(&b);
    bm_free(&c);
}

int main(void)
{
    test_ranges();
    test_pages();
    test_page_marks();
    test_load_store();
    return check_summary();
}
