/* Dirty bitmaps: a bit per 4 KiB block, kept in memory, written out a page
 * at a time (see include/meta.h for the on-disk page). Counting is kept
 * exact as bits change, so status can show out-of-sync bytes at any time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "meta.h"

#define PAGE_BYTES (BM_PAGE_BITS / 8) /* 4088 bytes of bits per page */

int bm_init(struct bitmap *b, uint64_t data_size)
{
    memset(b, 0, sizeof *b);
    b->data_size = data_size;
    b->nbits = data_size / META_BM_BLOCK + (data_size % META_BM_BLOCK != 0);
    b->npages = b->nbits / BM_PAGE_BITS + (b->nbits % BM_PAGE_BITS != 0);
    b->w = calloc(b->nbits / 64 + 1, sizeof *b->w);
    b->dirty = calloc(b->npages + 1, 1);
    if (!b->w || !b->dirty) {
        bm_free(b);
        return -ENOMEM;
    }
    return 0;
}

void bm_free(struct bitmap *b)
{
    free(b->w);
    free(b->dirty);
    b->w = NULL;
    b->dirty = NULL;
}

bool bm_test(const struct bitmap *b, uint64_t block)
{
    return block < b->nbits && (b->w[block / 64] >> (block % 64) & 1);
}

static void mark_dirty(struct bitmap *b, uint64_t first, uint64_t last)
{
    for (uint64_t p = first / BM_PAGE_BITS; p <= last / BM_PAGE_BITS; p++)
        if (!b->dirty[p]) {
            b->dirty[p] = 1;
            b->ndirty++;
        }
}

/* Sets (on) or clears blocks [first, first + n): the number that changed. */
static uint64_t change(struct bitmap *b, uint64_t first, uint64_t n, bool on)
{
    uint64_t changed = 0, end;

    if (first >= b->nbits || n == 0)
        return 0;
    end = n > b->nbits - first ? b->nbits : first + n;
    for (uint64_t i = first; i < end;) {
        unsigned bit = i % 64;
        uint64_t take = end - i < 64 - bit ? end - i : 64 - bit;
        uint64_t mask = (take == 64 ? ~0ull : ((1ull << take) - 1)) << bit;
        uint64_t *w = &b->w[i / 64];
        uint64_t diff = on ? mask & ~*w : mask & *w;
        if (diff) {
            changed += __builtin_popcountll(diff);
            *w = on ? *w | mask : *w & ~mask;
        }
        i += take;
    }
    if (changed) {
        b->set = on ? b->set + changed : b->set - changed;
        mark_dirty(b, first, end - 1);
    }
    return changed;
}

uint64_t bm_set_blocks(struct bitmap *b, uint64_t first, uint64_t n)
{
    return change(b, first, n, true);
}

uint64_t bm_clear_blocks(struct bitmap *b, uint64_t first, uint64_t n)
{
    return change(b, first, n, false);
}

uint64_t bm_set_bytes(struct bitmap *b, uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    uint64_t first = off / META_BM_BLOCK, last = (off + len - 1) / META_BM_BLOCK;
    return change(b, first, last - first + 1, true);
}

void bm_set_all(struct bitmap *b) { change(b, 0, b->nbits, true); }
void bm_clear_all(struct bitmap *b) { change(b, 0, b->nbits, false); }

static uint64_t next(const struct bitmap *b, uint64_t from, bool want)
{
    while (from < b->nbits) {
        uint64_t w = b->w[from / 64];
        if (!want)
            w = ~w;
        w &= ~0ull << (from % 64);
        if (w) {
            uint64_t i = from / 64 * 64 + __builtin_ctzll(w);
            return i < b->nbits ? i : b->nbits;
        }
        from = from / 64 * 64 + 64;
    }
    return b->nbits;
}

uint64_t bm_next_set(const struct bitmap *b, uint64_t from) { return next(b, from, true); }
uint64_t bm_next_clear(const struct bitmap *b, uint64_t from) { return next(b, from, false); }

uint64_t bm_bytes(const struct bitmap *b)
{
    uint64_t bytes = b->set * META_BM_BLOCK;
    uint64_t tail = b->data_size % META_BM_BLOCK;
    if (tail && bm_test(b, b->nbits - 1))
        bytes -= META_BM_BLOCK - tail; /* the last block is partial */
    return bytes;
}

/* Page layout: PAGE_BYTES of bits (LSB first), page number u32, CRC32C u32
 * of the rest seeded with the slot, so a page written for another slot or
 * position does not pass as this one. A page starts at a multiple of 8 bits
 * (32704 = 8 * 4088), so it is a byte range of the bitmap. */
static uint8_t get_byte(const struct bitmap *b, uint64_t k)
{
    return (uint8_t)(b->w[k / 8] >> (8 * (k % 8)));
}

static void put_byte(struct bitmap *b, uint64_t k, uint8_t v)
{
    uint64_t *w = &b->w[k / 8];
    unsigned sh = 8 * (k % 8);
    b->set += __builtin_popcount(v) - __builtin_popcount((uint8_t)(*w >> sh));
    *w = (*w & ~(0xffull << sh)) | (uint64_t)v << sh;
}

/* bytes of the bitmap that page p covers */
static uint64_t page_len(const struct bitmap *b, uint32_t p)
{
    uint64_t first = (uint64_t)p * PAGE_BYTES, total = (b->nbits + 7) / 8;
    return total - first < PAGE_BYTES ? total - first : PAGE_BYTES;
}

void bm_page_encode(const struct bitmap *b, uint32_t p, unsigned slot, uint8_t *out)
{
    uint64_t first = (uint64_t)p * PAGE_BYTES, n = p < b->npages ? page_len(b, p) : 0;

    memset(out, 0, META_SB_SIZE);
    for (uint64_t k = 0; k < n; k++)
        out[k] = get_byte(b, first + k);
    bm_page_seal(p, slot, out);
}

void bm_page_seal(uint32_t p, unsigned slot, uint8_t *out)
{
    put_le32(out + PAGE_BYTES, p);
    put_le32(out + PAGE_BYTES + 4, crc32c(slot + 1, out, PAGE_BYTES + 4));
}

bool bm_page_mark_bytes(const struct bitmap *b, uint32_t p, uint8_t *out, uint64_t off,
                        uint64_t len)
{
    uint64_t base = (uint64_t)p * BM_PAGE_BITS, first, end;
    bool changed = false;

    if (len == 0)
        return false;
    first = off / META_BM_BLOCK;
    end = (off + len - 1) / META_BM_BLOCK + 1;
    if (first < base)
        first = base;
    if (end > base + BM_PAGE_BITS)
        end = base + BM_PAGE_BITS;
    if (end > b->nbits)
        end = b->nbits;
    for (uint64_t i = first; i < end; i++) {
        uint64_t j = i - base;
        changed |= !(out[j / 8] >> (j % 8) & 1);
        out[j / 8] |= (uint8_t)(1u << (j % 8));
    }
    return changed;
}

void bm_touch_bytes(struct bitmap *b, uint64_t off, uint64_t len)
{
    if (len == 0 || off / META_BM_BLOCK >= b->nbits)
        return;
    uint64_t last = (off + len - 1) / META_BM_BLOCK;
    mark_dirty(b, off / META_BM_BLOCK, last < b->nbits ? last : b->nbits - 1);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

int bm_page_decode(struct bitmap *b, uint32_t p, unsigned slot, const uint8_t *in,
                   const char **why)
{
    uint64_t first = (uint64_t)p * PAGE_BYTES, n;

    if (p >= b->npages) {
        *why = "bitmap page beyond the data area";
        return -EBADMSG;
    }
    if (!all_zero(in, META_SB_SIZE)) {
        if (get_le32(in + PAGE_BYTES + 4) != crc32c(slot + 1, in, PAGE_BYTES + 4)) {
            *why = "bitmap page checksum mismatch (torn or damaged)";
            return -EBADMSG;
        }
        if (get_le32(in + PAGE_BYTES) != p) {
            *why = "bitmap page holds another page's bits";
            return -EBADMSG;
        }
    }
    /* bits past the data area must be clear: anything else is forged */
    n = page_len(b, p);
    uint64_t used_bits = b->nbits - (uint64_t)p * BM_PAGE_BITS; /* in this page, if < all */
    for (uint64_t j = used_bits; j < BM_PAGE_BITS; j++)
        if (in[j / 8] >> (j % 8) & 1) {
            *why = "bitmap page marks blocks past the end of the data area";
            return -EBADMSG;
        }
    for (uint64_t k = 0; k < n; k++)
        put_byte(b, first + k, in[k]);
    if (b->dirty[p]) { /* as on disk now */
        b->dirty[p] = 0;
        b->ndirty--;
    }
    return 0;
}

uint64_t bm_page_offset(const struct meta *m, unsigned slot, uint32_t p)
{
    return m->meta_offset + m->bm_offset + slot * m->bm_slot_bytes + (uint64_t)p * META_SB_SIZE;
}

int bm_load(int fd, const struct meta *m, unsigned slot, struct bitmap *b, char *why,
            size_t why_len)
{
    uint8_t page[META_SB_SIZE];
    int bad = 0;

    for (uint32_t p = 0; p < b->npages; p++) {
        const char *w = NULL;
        int r = full_pread(fd, page, sizeof page, bm_page_offset(m, slot, p));
        if (r < 0)
            return r;
        if (bm_page_decode(b, p, slot, page, &w) < 0) {
            if (!bad++)
                snprintf(why, why_len, "page %u: %s", p, w);
            /* what it said is unknown: every block it covers is resynced */
            change(b, (uint64_t)p * BM_PAGE_BITS, BM_PAGE_BITS, true);
        }
    }
    return bad;
}

int bm_store(int fd, const struct meta *m, unsigned slot, struct bitmap *b)
{
    uint8_t page[META_SB_SIZE];

    for (uint32_t p = 0; p < b->npages && b->ndirty; p++) {
        if (!b->dirty[p])
            continue;
        bm_page_encode(b, p, slot, page);
        int r = meta_write_durable(fd, page, sizeof page, bm_page_offset(m, slot, p));
        if (r < 0)
            return r;
        b->dirty[p] = 0;
        b->ndirty--;
    }
    return 0;
}
