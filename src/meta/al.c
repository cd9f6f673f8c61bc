/* The activity log (see include/meta.h): a bounded set of hot 4 MiB
 * extents, least recently used first out, recorded on disk before the first
 * write to an extent that was cold.
 *
 * Transaction (one half of the log area, little endian):
 *   0 magic "NMAL" | 4 CRC32C of bytes 8..end | 8 seq u64 | 16 count u32 |
 *   20 capacity u32 | 24 zero | 32 extents u32[count] | zero up to 4 KiB
 * Halves alternate: a transaction goes to the half that does not hold the
 * newest valid one. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "meta.h"

#define AL_MAGIC 0x4c414d4eu /* "NMAL" read as LE */
#define HALF (META_AL_SIZE / 2)

struct al_entry {
    uint32_t ext;
    uint32_t refs;
    uint64_t hot_gen;            /* hot once done_gen >= this (0: hot) */
    bool used;
    struct al_entry *prev, *next; /* LRU */
    struct al_entry *hnext;
};

int al_init(struct al *a, unsigned cap)
{
    memset(a, 0, sizeof *a);
    a->cap = cap;
    a->hash_size = 1;
    while (a->hash_size < 2 * AL_MAX)
        a->hash_size <<= 1;
    /* room for AL_MAX: one request larger than the set may grow it (a trim
     * of a whole disk); the set shrinks back to cap as extents go idle */
    a->e = calloc(AL_MAX, sizeof *a->e);
    a->hash = calloc(a->hash_size, sizeof *a->hash);
    a->gone = calloc(AL_MAX, sizeof *a->gone);
    if (!a->e || !a->hash || !a->gone) {
        al_free(a);
        return -ENOMEM;
    }
    return 0;
}

void al_free(struct al *a)
{
    free(a->e);
    free(a->hash);
    free(a->gone);
    a->e = NULL;
    a->hash = NULL;
    a->gone = NULL;
}

static unsigned hash_of(const struct al *a, uint32_t ext)
{
    return (uint32_t)(ext * 2654435761u) & (a->hash_size - 1);
}

static struct al_entry *find(const struct al *a, uint32_t ext)
{
    for (struct al_entry *e = a->hash[hash_of(a, ext)]; e; e = e->hnext)
        if (e->ext == ext)
            return e;
    return NULL;
}

static void lru_unlink(struct al *a, struct al_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        a->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        a->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(struct al *a, struct al_entry *e)
{
    e->next = a->lru_head;
    e->prev = NULL;
    if (a->lru_head)
        a->lru_head->prev = e;
    a->lru_head = e;
    if (!a->lru_tail)
        a->lru_tail = e;
}

static void forget(struct al *a, struct al_entry *e)
{
    struct al_entry **pp = &a->hash[hash_of(a, e->ext)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(a, e);
    e->used = false;
    a->used--;
    a->changed = a->dropped = true;
    if (a->ngone < AL_MAX) /* more than that between two encodes cannot be: */
        a->gone[a->ngone++] = e->ext; /* each needs an entry made free */
}

/* A free entry, forgetting the least recently used idle hot extent if the
 * set is full (or grown past cap); NULL if every entry is in use or on its
 * way in, unless grow: then the set may exceed cap, up to AL_MAX. */
static struct al_entry *take_entry(struct al *a, bool grow)
{
    if (a->used >= a->cap) {
        struct al_entry *v = a->lru_tail;
        while (v && (v->refs || v->hot_gen > a->done_gen))
            v = v->prev;
        if (v) {
            forget(a, v);
            return v;
        }
        if (!grow || a->used >= AL_MAX)
            return NULL;
    }
    for (unsigned i = 0; i < AL_MAX; i++)
        if (!a->e[i].used)
            return &a->e[i];
    return NULL;
}

static struct al_entry *add(struct al *a, uint32_t ext, bool grow)
{
    struct al_entry *e = take_entry(a, grow);
    if (!e)
        return NULL;
    *e = (struct al_entry){ .ext = ext, .used = true, .hot_gen = a->commit_gen + 1 };
    unsigned h = hash_of(a, ext);
    e->hnext = a->hash[h];
    a->hash[h] = e;
    lru_front(a, e);
    a->used++;
    a->changed = true;
    a->transitions++;
    return e;
}

bool al_begin(struct al *a, uint64_t off, uint64_t len, bool *starved)
{
    uint32_t first = off >> AL_EXTENT_SHIFT, last = (off + (len ? len : 1) - 1) >> AL_EXTENT_SHIFT;
    bool ready = true;
    /* a request wider than half the set could wait for ever: it may grow it */
    bool grow = last - first + 1 > a->cap / 2;

    *starved = false;
    for (uint32_t x = first; x <= last; x++) {
        struct al_entry *e = find(a, x);
        if (!e && !(e = add(a, x, grow))) {
            *starved = true;
            return false;
        }
        if (e->hot_gen > a->done_gen)
            ready = false;
    }
    if (!ready)
        return false;
    for (uint32_t x = first; x <= last; x++) {
        struct al_entry *e = find(a, x);
        e->refs++;
        lru_unlink(a, e);
        lru_front(a, e);
    }
    return true;
}

void al_shrink(struct al *a)
{
    for (struct al_entry *v = a->lru_tail, *prev; v && a->used > a->cap; v = prev) {
        prev = v->prev;
        if (!v->refs && v->hot_gen <= a->done_gen)
            forget(a, v);
    }
}

void al_end(struct al *a, uint64_t off, uint64_t len)
{
    uint32_t first = off >> AL_EXTENT_SHIFT, last = (off + (len ? len : 1) - 1) >> AL_EXTENT_SHIFT;
    for (uint32_t x = first; x <= last; x++) {
        struct al_entry *e = find(a, x);
        if (e && e->refs && !--e->refs && a->used > a->cap)
            a->changed = true; /* a grown set shrinks at the next transaction */
    }
}

uint32_t al_encode(struct al *a, uint8_t *buf, uint64_t *off)
{
    uint32_t n = 0, bytes;

    for (struct al_entry *e = a->lru_head; e; e = e->next)
        put_le32(buf + AL_HDR + 4 * n++, e->ext);
    bytes = (AL_HDR + 4 * n + 4095) / 4096 * 4096;
    memset(buf + AL_HDR + 4 * n, 0, bytes - AL_HDR - 4 * n);
    a->seq++;
    a->half ^= 1;
    a->commit_gen++;
    a->changed = a->dropped = false;
    a->ngone = 0;
    put_le32(buf, AL_MAGIC);
    put_le64(buf + 8, a->seq);
    put_le32(buf + 16, n);
    put_le32(buf + 20, a->cap);
    memset(buf + 24, 0, 8);
    put_le32(buf + 4, crc32c(0, buf + 8, bytes - 8));
    *off = (uint64_t)a->half * HALF;
    return bytes;
}

void al_committed(struct al *a) { a->done_gen = a->commit_gen; }

void al_resume(struct al *a, uint64_t seq, unsigned half)
{
    a->seq = seq;
    a->half = half;
}

static int decode_half(const uint8_t *h, uint64_t *seq, unsigned *count, const char **why)
{
    if (get_le32(h) != AL_MAGIC) {
        *why = "activity log: no transaction (bad magic)";
        return -EBADMSG;
    }
    uint32_t n = get_le32(h + 16);
    if (n > (HALF - AL_HDR) / 4) {
        *why = "activity log: impossible extent count";
        return -EBADMSG;
    }
    uint32_t bytes = (AL_HDR + 4 * n + 4095) / 4096 * 4096;
    if (get_le32(h + 4) != crc32c(0, h + 8, bytes - 8)) {
        *why = "activity log: transaction checksum mismatch (torn or damaged)";
        return -EBADMSG;
    }
    *seq = get_le64(h + 8);
    *count = n;
    return 0;
}

static bool zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

int al_decode(const uint8_t *area, uint32_t *out, unsigned max, unsigned *n, uint64_t *seq,
              unsigned *half, const char **why)
{
    uint64_t s[2] = { 0, 0 };
    unsigned cnt[2] = { 0, 0 };
    const char *w[2] = { NULL, NULL };
    int r[2];

    for (unsigned i = 0; i < 2; i++)
        r[i] = decode_half(area + i * HALF, &s[i], &cnt[i], &w[i]);
    if (r[0] < 0 && r[1] < 0) {
        if (zero(area, META_AL_SIZE)) { /* as create-md leaves it */
            *n = 0;
            *seq = 0;
            *half = 1; /* the first transaction goes to half 0 */
            return 0;
        }
        *why = w[1] && !zero(area + HALF, HALF) ? w[1] : w[0];
        return -EBADMSG;
    }
    unsigned use = r[0] < 0 || (r[1] == 0 && s[1] > s[0]);
    if (cnt[use] > max) {
        *why = "activity log: more extents than this node can hold";
        return -EBADMSG;
    }
    for (unsigned i = 0; i < cnt[use]; i++)
        out[i] = get_le32(area + use * HALF + AL_HDR + 4 * i);
    *n = cnt[use];
    *seq = s[use];
    *half = use;
    return 0;
}
