/* libFuzzer target: what nbdmirror reads back from its metadata area, with
 * the daemon's own decoders: the superblock (meta_decode), a bitmap page
 * (bm_page_decode) and the activity log (al_decode). The first input byte
 * picks the structure; if it is odd, the checksums are fixed up first so
 * the fuzzer reaches the checks behind them. (A bitmap page is preceded by
 * its slot and page number, the log by the hot set's size / 16.) A decoded superblock must
 * describe a layout that fits: the data, the log and every bitmap slot
 * inside the disk it names, without overlap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "meta.h"

#define AL_HALF (META_AL_SIZE / 2)

static uint8_t area[META_AL_SIZE];

static void superblock(const uint8_t *d, size_t n, bool fix)
{
    struct meta m;
    const char *why;

    memset(area, 0, META_SB_SIZE);
    memcpy(area, d, n < META_SB_SIZE ? n : META_SB_SIZE);
    if (fix)
        put_le32(area + META_SB_SIZE - 4, crc32c(0, area, META_SB_SIZE - 4));
    if (meta_decode(&m, area, &why) < 0)
        return;
    /* what the daemon then relies on, in arithmetic that cannot wrap */
    typedef unsigned __int128 u128;
    bool internal = m.flags & META_F_INTERNAL;
    u128 bm_end = (u128)m.bm_offset + (u128)META_MAX_PEERS * m.bm_slot_bytes;
    u128 al_end = (u128)m.al_offset + m.al_size;
    u128 meta_end = (u128)m.meta_offset + m.meta_size;
    if (bm_end > m.meta_size || al_end > m.meta_size || m.data_size == 0 ||
        m.data_size > m.disk_size || m.bm_slot_bytes < meta_bm_slot_bytes(m.data_size) ||
        (internal && (meta_end > m.disk_size || m.meta_offset < m.data_size))) {
        fprintf(stderr, "fuzz_meta: a superblock with an impossible layout was accepted\n");
        abort();
    }
}

static void bitmap_page(const uint8_t *d, size_t n, bool fix)
{
    static struct bitmap b;
    static bool ready;
    const char *why;

    if (!ready && bm_init(&b, 3ull << 30) < 0) /* 24 pages */
        abort();
    ready = true;
    if (n < 2)
        return;
    unsigned slot = d[0] % META_MAX_PEERS;
    uint32_t page = d[1] % (b.npages + 2); /* a little past the end too */
    d += 2, n -= 2;
    memset(area, 0, META_SB_SIZE);
    memcpy(area, d, n < META_SB_SIZE ? n : META_SB_SIZE);
    if (fix) {
        put_le32(area + META_SB_SIZE - 8, page);
        put_le32(area + META_SB_SIZE - 4, crc32c(slot + 1, area, META_SB_SIZE - 4));
    }
    if (page >= b.npages)
        return; /* the loader never asks for those */
    uint64_t before = b.set;
    if (bm_page_decode(&b, page, slot, area, &why) == 0 && b.set > b.nbits) {
        fprintf(stderr, "fuzz_meta: %llu bits set of %llu (was %llu)\n",
                (unsigned long long)b.set, (unsigned long long)b.nbits,
                (unsigned long long)before);
        abort();
    }
}

static void activity_log(const uint8_t *d, size_t n, bool fix)
{
    static uint32_t ext[AL_HALF / 4];
    unsigned cnt, half;
    uint64_t seq;
    const char *why;

    if (n < 1)
        return;
    unsigned max = d[0] * 16u; /* the hot set this node holds */
    d++, n--;
    memset(area, 0, sizeof area);
    memcpy(area, d, n < sizeof area ? n : sizeof area);
    for (unsigned h = 0; fix && h < 2; h++) {
        uint8_t *p = area + h * AL_HALF;
        uint32_t k = get_le32(p + 16), bytes;
        if (k > (AL_HALF - 32) / 4)
            continue;
        bytes = (32 + 4 * k + 4095) / 4096 * 4096;
        put_le32(p + 4, crc32c(0, p + 8, bytes - 8));
    }
    if (al_decode(area, ext, max, &cnt, &seq, &half, &why) == 0 && (cnt > max || half > 1)) {
        fprintf(stderr, "fuzz_meta: activity log: %u extents (max %u), half %u\n", cnt, max, half);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool fix = data[0] & 1;
    switch (data[0] >> 1 & 3) {
    case 0: superblock(data + 1, size - 1, fix); break;
    case 1: bitmap_page(data + 1, size - 1, fix); break;
    default: activity_log(data + 1, size - 1, fix); break;
    }
    return 0;
}
