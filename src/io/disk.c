/* Opening the local disk: a regular file or a block device. Block devices
 * always get O_DIRECT (the page cache would only add a copy); files get it
 * with --direct. Unaligned requests go through a second, buffered fd: the
 * kernel keeps the two coherent (direct I/O writes back and invalidates
 * cached pages of the range it touches). */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io-int.h"
#include "common.h"

static unsigned dio_align(int fd, bool blockdev)
{
    int ssz;
#ifdef STATX_DIOALIGN
    struct statx stx;
    if (!blockdev && statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align)
        return stx.stx_dio_offset_align;
#endif
    if (blockdev && ioctl(fd, BLKSSZGET, &ssz) == 0 && ssz > 0)
        return ssz;
    return 4096; /* safe for every filesystem we know of */
}

int disk_open(struct disk *d, const char *path, bool direct, bool read_only)
{
    int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    int r;

    d->path = path;
    d->read_only = read_only;
    d->fd = d->fd_buffered = -1;
    d->fd_buffered = open(path, flags);
    if (d->fd_buffered < 0)
        return -errno;
    r = fd_size(d->fd_buffered, &d->size, &d->is_blockdev);
    if (r < 0)
        goto fail;
    d->direct = direct || d->is_blockdev;
    d->align = 1;
    if (!d->direct) {
        d->fd = d->fd_buffered;
        return 0;
    }
    d->fd = open(path, flags | O_DIRECT);
    if (d->fd < 0) {
        r = -errno;
        goto fail;
    }
    d->align = dio_align(d->fd, d->is_blockdev);
    return 0;
fail:
    close(d->fd_buffered);
    return r;
}

void disk_close(struct disk *d)
{
    if (d->fd >= 0 && d->fd != d->fd_buffered)
        close(d->fd);
    if (d->fd_buffered >= 0)
        close(d->fd_buffered);
    d->fd = d->fd_buffered = -1;
}

int disk_fd_for(const struct disk *d, const void *buf, uint64_t off, uint32_t len)
{
    uint64_t mask = d->align - 1;
    if (!d->direct || (((uintptr_t)buf | off | len) & mask) == 0)
        return d->fd;
    return d->fd_buffered;
}

int disk_bulk_flags(const struct disk *d)
{
    return d->direct ? 0 : RWF_DONTCACHE;
}

void disk_trim_cmd(const struct disk *d, struct io_cmd *c, uint64_t off, uint32_t len)
{
    c->op = IO_FALLOCATE;
    c->fd = d->fd;
    c->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    c->off = off;
    c->len = len;
    c->buf = NULL;
    c->done = 0;
    if (d->is_blockdev) {
        /* BLKDISCARD's read-back is up to the device; a punch on a device
         * reads zeroes or is refused, but only takes whole logical blocks:
         * keep those, drop the partial ends (a trim is advisory). */
        uint64_t a = d->align, start = (off + a - 1) / a * a, end = (off + len) / a * a;
        c->off = start < end ? start : off;
        c->len = start < end ? end - start : 0;
    }
}

/* Whole logical blocks only: a device's fallocate says EINVAL otherwise. */
static bool dev_aligned(const struct disk *d, uint64_t off, uint32_t len)
{
    return off % d->align == 0 && len % d->align == 0;
}

void disk_zero_cmd(const struct disk *d, struct io_cmd *c, uint64_t off, uint32_t len,
                   bool keep_allocated)
{
    c->fd = d->fd;
    c->off = off;
    c->len = len;
    c->buf = NULL;
    c->done = 0;
    if (!d->is_blockdev) {
        c->op = IO_FALLOCATE;
        c->mode = keep_allocated ? FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE
                                 : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    } else if (!keep_allocated && dev_aligned(d, off, len)) {
        c->op = IO_FALLOCATE; /* native on io_uring */
        c->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    } else {
        /* the engine zeroes partial end blocks by read-modify-write */
        c->op = IO_ZEROOUT;
        c->mode = (int)d->align | (keep_allocated ? 0 : IO_ZEROOUT_PUNCH);
    }
}
