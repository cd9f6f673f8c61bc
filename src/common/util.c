/* Small utilities: time, size parsing, whole-buffer I/O, device size. */
#include <errno.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

uint64_t random_id(void)
{
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "re");
    if (f) {
        if (fread(&v, sizeof v, 1, f) != 1)
            v = 0;
        fclose(f);
    }
    if (!v)
        v = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid() << 32;
    return v | 1; /* never 0: 0 means "no id" */
}

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    int shift = 0;

    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    }
    if (*end || (shift && v > (~0ULL >> shift)))
        return -EINVAL;
    *out = v << shift;
    return 0;
}

int full_pread(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO; /* short file */
        p += n, len -= n, off += n;
    }
    return 0;
}

int full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    const char *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n, len -= n, off += n;
    }
    return 0;
}

int fd_size(int fd, uint64_t *size, bool *is_blockdev)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return -errno;
    *is_blockdev = S_ISBLK(st.st_mode);
    if (*is_blockdev)
        return ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    *size = st.st_size;
    return 0;
}
