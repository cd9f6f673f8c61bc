/* Payload buffers in power-of-two size classes, recycled through free lists
 * so the hot path does not call malloc, and counted against one budget so
 * that memory stays bounded whatever clients send. Single threaded. */
#include <stdlib.h>

#include "common.h"

#define NCLASS (BUF_MAX_SHIFT - BUF_MIN_SHIFT + 1)
#define CACHE_BYTES_PER_CLASS (32u << 20)

struct free_buf { struct free_buf *next; };

static struct free_buf *free_list[NCLASS];
static size_t cached[NCLASS]; /* bytes sitting in each free list */
static size_t budget = 512u << 20, in_use;

void bufpool_init(size_t budget_bytes) { budget = budget_bytes; }

static int class_of(uint32_t len)
{
    int c = 0;
    while ((1u << (c + BUF_MIN_SHIFT)) < len)
        c++;
    return c;
}

void *buf_get(uint32_t len)
{
    int c;
    size_t sz;
    void *p;

    if (len > BUF_MAX)
        return NULL;
    c = class_of(len ? len : 1);
    sz = (size_t)1 << (c + BUF_MIN_SHIFT);
    if (in_use + sz > budget)
        return NULL;
    if (free_list[c]) {
        p = free_list[c];
        free_list[c] = free_list[c]->next;
        cached[c] -= sz;
    } else if (posix_memalign(&p, 4096, sz)) {
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
    sz = (size_t)1 << (c + BUF_MIN_SHIFT);
    in_use -= sz;
    if (cached[c] + sz > CACHE_BYTES_PER_CLASS) {
        free(p);
        return;
    }
    f->next = free_list[c];
    free_list[c] = f;
    cached[c] += sz;
}
