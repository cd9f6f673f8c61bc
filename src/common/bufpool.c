/* Payload buffers in power-of-two size classes, recycled through free lists
 * so the hot path does not call malloc, and counted against one budget so
 * that memory stays bounded whatever clients send. Single threaded.
 *
 * The budget covers buffers in use and buffers cached in the free lists
 * together: a request that needs room evicts cached buffers of other classes
 * before it is refused. The caches are small besides: at most
 * CACHE_BYTES_PER_CLASS per class and CACHE_BYTES_TOTAL in all, so a buffer
 * larger than the per-class cap (the 64 MiB class) is never cached, it goes
 * back to the system as soon as its request is done. */
#include <stdlib.h>

#include "common.h"

#define NCLASS (BUF_MAX_SHIFT - BUF_MIN_SHIFT + 1)
#define CACHE_BYTES_PER_CLASS (32u << 20)
#define CACHE_BYTES_TOTAL (64u << 20)

struct free_buf { struct free_buf *next; };

static struct free_buf *free_list[NCLASS];
static size_t cached[NCLASS]; /* bytes sitting in each free list */
static size_t budget = 512u << 20, in_use, cached_all;

void bufpool_init(size_t budget_bytes) { budget = budget_bytes; }

static int class_of(uint32_t len)
{
    int c = 0;
    while ((1u << (c + BUF_MIN_SHIFT)) < len)
        c++;
    return c;
}

static size_t class_size(int c) { return (size_t)1 << (c + BUF_MIN_SHIFT); }

static void *pop(int c)
{
    struct free_buf *f = free_list[c];
    free_list[c] = f->next;
    cached[c] -= class_size(c);
    cached_all -= class_size(c);
    return f;
}

/* Frees cached buffers, largest classes first, until `need` more bytes fit
 * in the budget beside what is in use and cached. */
static void evict(size_t need)
{
    for (int c = NCLASS - 1; c >= 0 && in_use + cached_all + need > budget; c--)
        while (free_list[c] && in_use + cached_all + need > budget)
            free(pop(c));
}

void *buf_get(uint32_t len)
{
    int c;
    size_t sz;
    void *p;

    if (len > BUF_MAX)
        return NULL;
    c = class_of(len ? len : 1);
    sz = class_size(c);
    if (in_use + sz > budget)
        return NULL;
    if (free_list[c]) {
        p = pop(c);
    } else {
        evict(sz);
        if (posix_memalign(&p, 4096, sz))
            return NULL;
    }
    in_use += sz;
    return p;
}

void buf_put(void *p, uint32_t len)
{
    int c;
    size_t sz;
    struct free_buf *f = p;

    if (!p)
        return;
    c = class_of(len ? len : 1);
    sz = class_size(c);
    in_use -= sz;
    if (cached[c] + sz > CACHE_BYTES_PER_CLASS || cached_all + sz > CACHE_BYTES_TOTAL) {
        free(p);
        return;
    }
    f->next = free_list[c];
    free_list[c] = f;
    cached[c] += sz;
    cached_all += sz;
}
