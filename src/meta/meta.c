/* Metadata format: layout planning, superblock encoding and validation. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common.h"
#include "meta.h"

#define ROUND_UP(x, a) (((x) + (a) - 1) / (a) * (a))
#define MIN_DATA (1u << 20)
#define SB_AREA ((uint64_t)META_SB_COPIES * META_SB_SIZE) /* both copies */

uint64_t meta_bm_slot_bytes(uint64_t data_size)
{
    /* no data_size + 4095: it would wrap for sizes near 2^64 */
    uint64_t bits = data_size / META_BM_BLOCK + (data_size % META_BM_BLOCK != 0);
    uint64_t pages = bits / BM_PAGE_BITS + (bits % BM_PAGE_BITS != 0);
    return (pages ? pages : 1) * META_SB_SIZE;
}

int meta_plan(struct meta *m, uint64_t disk_size, bool internal)
{
    memset(m, 0, sizeof *m);
    m->version = META_VERSION;
    m->flags = internal ? META_F_INTERNAL : 0;
    m->disk_size = disk_size;
    m->al_size = META_AL_SIZE;
    m->max_peers = META_MAX_PEERS;
    m->node_id = random_id();
    m->current_gen = GEN_JUST_CREATED; /* no data anyone relies on yet */
    m->al_extents = AL_DEFAULT;
    m->created = (uint64_t)time(NULL);
    if (internal) {
        /* Size the bitmaps for the whole disk: a little more than the data
         * area needs, and no circular dependency between the two. */
        uint64_t d4 = disk_size / 4096 * 4096;
        m->bm_slot_bytes = meta_bm_slot_bytes(d4);
        m->meta_size = SB_AREA + META_AL_SIZE + META_MAX_PEERS * m->bm_slot_bytes;
        if (d4 < m->meta_size + MIN_DATA)
            return -ENOSPC;
        m->meta_offset = d4 - m->meta_size;
        m->data_size = m->meta_offset;
        m->bm_offset = 0;
        m->al_offset = META_MAX_PEERS * m->bm_slot_bytes;
    } else {
        if (disk_size < MIN_DATA)
            return -ENOSPC;
        m->data_size = disk_size;
        m->bm_slot_bytes = meta_bm_slot_bytes(disk_size);
        m->meta_size = SB_AREA + META_AL_SIZE + META_MAX_PEERS * m->bm_slot_bytes;
        m->meta_offset = 0;
        m->al_offset = SB_AREA;
        m->bm_offset = SB_AREA + META_AL_SIZE;
    }
    return 0;
}

uint64_t meta_sb_offset(uint64_t disk_size, bool internal, unsigned copy)
{
    /* internal: copy A is the disk's last full 4 KiB, copy B just before it;
     * external: A first, then B */
    return internal ? disk_size / 4096 * 4096 - (copy + 1) * (uint64_t)META_SB_SIZE
                    : copy * (uint64_t)META_SB_SIZE;
}

/* Field offsets in the superblock; the CRC32C covers all bytes before it. */
enum {
    O_MAGIC = 0, O_VERSION = 8, O_SBSIZE = 12, O_FLAGS = 16, O_BMBLOCK = 20,
    O_DISK = 24, O_DATA = 32, O_MOFF = 40, O_MSIZE = 48, O_ALOFF = 56,
    O_ALSIZE = 64, O_PEERS = 68, O_BMOFF = 72, O_BMSLOT = 80, O_NODE = 88,
    O_CURGEN = 96, O_HIST = 104, O_PEERGEN = O_HIST + 8 * META_HISTORY,
    O_PEERNODE = O_PEERGEN + 8 * META_MAX_PEERS,
    O_CREATED = O_PEERNODE + 8 * META_MAX_PEERS,
    O_DSTATE = O_CREATED + 8, O_SEQ = O_DSTATE + 8, /* 4 bytes between: zero */
    O_ALEXT = O_SEQ + 8, O_PSINCE = O_ALEXT + 8,   /* 4 bytes between: zero */
    O_CRC = META_SB_SIZE - 4,
};

void meta_encode(const struct meta *m, uint8_t *sb)
{
    memset(sb, 0, META_SB_SIZE);
    put_le64(sb + O_MAGIC, META_MAGIC);
    put_le32(sb + O_VERSION, m->version);
    put_le32(sb + O_SBSIZE, META_SB_SIZE);
    put_le32(sb + O_FLAGS, m->flags);
    put_le32(sb + O_BMBLOCK, META_BM_BLOCK);
    put_le64(sb + O_DISK, m->disk_size);
    put_le64(sb + O_DATA, m->data_size);
    put_le64(sb + O_MOFF, m->meta_offset);
    put_le64(sb + O_MSIZE, m->meta_size);
    put_le64(sb + O_ALOFF, m->al_offset);
    put_le32(sb + O_ALSIZE, m->al_size);
    put_le32(sb + O_PEERS, m->max_peers);
    put_le64(sb + O_BMOFF, m->bm_offset);
    put_le64(sb + O_BMSLOT, m->bm_slot_bytes);
    put_le64(sb + O_NODE, m->node_id);
    put_le64(sb + O_CURGEN, m->current_gen);
    for (unsigned i = 0; i < META_HISTORY; i++)
        put_le64(sb + O_HIST + 8 * i, m->history_gen[i]);
    for (unsigned i = 0; i < META_MAX_PEERS; i++) {
        put_le64(sb + O_PEERGEN + 8 * i, m->peer_bitmap_gen[i]);
        put_le64(sb + O_PEERNODE + 8 * i, m->peer_node_id[i]);
    }
    put_le64(sb + O_CREATED, m->created);
    put_le32(sb + O_DSTATE, m->disk_state);
    put_le64(sb + O_SEQ, m->seq);
    put_le32(sb + O_ALEXT, m->al_extents);
    put_le64(sb + O_PSINCE, m->primary_since);
    put_le32(sb + O_CRC, crc32c(0, sb, O_CRC));
}

/* Do [a, a + alen) and [b, b + blen) overlap? Only for ranges already known
 * to end within meta_size, so that neither sum can wrap. */
static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* The geometry of a decoded superblock. Every check is written so that no
 * sum or product can wrap around 2^64: a bound y is checked before x is
 * compared with limit - y (a forged al_offset of 2^64 - 1 must not pass as
 * a small one). */
static int check_layout(const struct meta *m, const char **why)
{
    const uint64_t fixed = SB_AREA + META_AL_SIZE;
    bool internal = m->flags & META_F_INTERNAL;
    uint64_t bm_bytes, sb_off, d4 = m->disk_size / 4096 * 4096;

    if (m->max_peers != META_MAX_PEERS || m->al_size != META_AL_SIZE ||
        m->data_size == 0 || m->data_size > m->disk_size)
        goto bad;
    /* bitmap slots: big enough for the data, and 31 of them plus the rest
     * still fit in 64 bits */
    if (m->bm_slot_bytes % 4096 || m->bm_slot_bytes < meta_bm_slot_bytes(m->data_size) ||
        m->bm_slot_bytes > (UINT64_MAX - fixed) / META_MAX_PEERS)
        goto bad;
    bm_bytes = META_MAX_PEERS * m->bm_slot_bytes; /* cannot wrap, see above */
    if (m->meta_size != fixed + bm_bytes)         /* nor can this sum */
        goto bad;
    /* each area lies within [0, meta_size) */
    if (m->al_offset > m->meta_size || m->al_size > m->meta_size - m->al_offset ||
        m->bm_offset > m->meta_size || bm_bytes > m->meta_size - m->bm_offset)
        goto bad;
    if (m->meta_offset % 4096 || m->al_offset % 4096 || m->bm_offset % 4096)
        goto bad;
    /* and no two of them overlap (so they tile the area exactly) */
    sb_off = internal ? m->meta_size - SB_AREA : 0; /* meta_size > SB_AREA */
    if (overlap(m->al_offset, m->al_size, m->bm_offset, bm_bytes) ||
        overlap(m->al_offset, m->al_size, sb_off, SB_AREA) ||
        overlap(m->bm_offset, bm_bytes, sb_off, SB_AREA))
        goto bad;
    if (internal) {
        if (m->meta_size > d4 || m->meta_offset != d4 - m->meta_size ||
            m->data_size != m->meta_offset) {
            *why = "metadata is corrupt (internal area does not end the disk)";
            return -EBADMSG;
        }
    } else if (m->meta_offset != 0) { /* the copies are at 0 and 4096 */
        goto bad;
    }
    return 0;
bad:
    *why = "metadata is corrupt (inconsistent layout)";
    return -EBADMSG;
}

int meta_decode(struct meta *m, const uint8_t *sb, const char **why)
{
    if (get_le64(sb + O_MAGIC) != META_MAGIC) {
        *why = "no nbdmirror metadata (magic number not found)";
        return -ENOENT;
    }
    if (get_le32(sb + O_CRC) != crc32c(0, sb, O_CRC)) {
        *why = "metadata is corrupt (superblock checksum mismatch)";
        return -EBADMSG;
    }
    memset(m, 0, sizeof *m);
    m->version = get_le32(sb + O_VERSION);
    if (m->version != META_VERSION) {
        *why = "metadata format version is not supported by this nbdmirror";
        return -EPROTONOSUPPORT;
    }
    if (get_le32(sb + O_SBSIZE) != META_SB_SIZE || get_le32(sb + O_BMBLOCK) != META_BM_BLOCK) {
        *why = "metadata is corrupt (unexpected superblock or bitmap block size)";
        return -EBADMSG;
    }
    m->flags = get_le32(sb + O_FLAGS);
    m->disk_size = get_le64(sb + O_DISK);
    m->data_size = get_le64(sb + O_DATA);
    m->meta_offset = get_le64(sb + O_MOFF);
    m->meta_size = get_le64(sb + O_MSIZE);
    m->al_offset = get_le64(sb + O_ALOFF);
    m->al_size = get_le32(sb + O_ALSIZE);
    m->max_peers = get_le32(sb + O_PEERS);
    m->bm_offset = get_le64(sb + O_BMOFF);
    m->bm_slot_bytes = get_le64(sb + O_BMSLOT);
    m->node_id = get_le64(sb + O_NODE);
    m->current_gen = get_le64(sb + O_CURGEN);
    for (unsigned i = 0; i < META_HISTORY; i++)
        m->history_gen[i] = get_le64(sb + O_HIST + 8 * i);
    for (unsigned i = 0; i < META_MAX_PEERS; i++) {
        m->peer_bitmap_gen[i] = get_le64(sb + O_PEERGEN + 8 * i);
        m->peer_node_id[i] = get_le64(sb + O_PEERNODE + 8 * i);
    }
    m->created = get_le64(sb + O_CREATED);
    m->disk_state = get_le32(sb + O_DSTATE);
    m->seq = get_le64(sb + O_SEQ);
    m->al_extents = get_le32(sb + O_ALEXT);
    m->primary_since = get_le64(sb + O_PSINCE);

    /* A valid CRC with impossible contents means a bug or a forgery. */
    if (m->flags & ~META_F_KNOWN) {
        *why = "metadata uses flags this nbdmirror does not know";
        return -EPROTONOSUPPORT;
    }
    if (m->disk_state > DS_UPTODATE) { /* DS_FAILED is never written */
        *why = "metadata is corrupt (unknown disk state)";
        return -EBADMSG;
    }
    if (m->al_extents < AL_MIN || m->al_extents > AL_MAX) {
        *why = "metadata is corrupt (activity log size out of range)";
        return -EBADMSG;
    }
    return check_layout(m, why);
}

int meta_create(int fd, struct meta *m) { return meta_create_progress(fd, m, NULL, NULL); }

int meta_create_progress(int fd, struct meta *m, meta_progress_fn progress, void *arg)
{
    uint8_t *buf = calloc(1, 1 << 20);
    bool internal = m->flags & META_F_INTERNAL;
    /* zero the log and bitmaps: all but the two superblock copies, which
     * are the end (internal) or the start (external) of the area */
    uint64_t off = m->meta_offset + (internal ? 0 : SB_AREA);
    uint64_t end = off + m->meta_size - SB_AREA;
    struct meta c = *m;
    int r = 0;

    if (!buf)
        return -ENOMEM;
    uint64_t start = off, synced = off;
    while (r == 0 && off < end) {
        uint64_t n = end - off < (1 << 20) ? end - off : (1 << 20);
        r = full_pwrite(fd, buf, n, off);
        off += n;
        /* a large area (about 1 GiB for 1 TiB of data) goes to the disk as
         * it is written, so that progress is the disk's, not the page
         * cache's, and the final fsync has little left to do */
        if (r == 0 && off - synced >= META_SYNC_STEP) {
            sync_file_range(fd, synced, off - synced, SYNC_FILE_RANGE_WAIT_BEFORE |
                            SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
            synced = off;
        }
        if (r == 0 && progress)
            progress(arg, off - start, end - start);
    }
    /* copy B with seq 0, copy A with seq 1: A is the newer, saves go to B */
    for (int copy = 1; r == 0 && copy >= 0; copy--) {
        c.seq = copy == 0;
        meta_encode(&c, buf);
        r = full_pwrite(fd, buf, META_SB_SIZE, meta_sb_offset(m->disk_size, internal, copy));
    }
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (r == 0) {
        m->seq = 1;
        m->sb_copy = 0;
        m->one_copy_bad = false;
    }
    free(buf);
    return r;
}

/* How telling a reason for refusing a copy is: a newer format beats a
 * corrupt superblock beats a read error beats no metadata at all (which
 * would have serve advise create-md, wrongly if the other copy is ours). */
static int reason_rank(int r)
{
    switch (r) {
    case -EPROTONOSUPPORT: return 3;
    case -EBADMSG: return 2;
    case -ENOENT: return 0;
    default: return 1;
    }
}

int meta_load(int fd, uint64_t disk_size, bool internal, struct meta *m,
              char *why, size_t why_len)
{
    uint8_t sb[META_SB_SIZE];
    struct meta c[META_SB_COPIES];
    char reason[META_SB_COPIES][160];
    int rc[META_SB_COPIES], r;
    unsigned use;

    if (internal && disk_size / 4096 * 4096 < 2 * META_SB_SIZE) {
        snprintf(why, why_len, "disk is too small to hold metadata");
        return -ENOENT;
    }
    for (unsigned i = 0; i < META_SB_COPIES; i++) {
        const char *w = NULL;
        r = full_pread(fd, sb, sizeof sb, meta_sb_offset(disk_size, internal, i));
        if (r < 0) {
            snprintf(reason[i], sizeof reason[i], "cannot read superblock: %s", strerror(-r));
            rc[i] = r == -EIO ? -ENOENT : r;
            continue;
        }
        rc[i] = meta_decode(&c[i], sb, &w);
        snprintf(reason[i], sizeof reason[i], "%s", rc[i] < 0 ? w : "");
    }
    if (rc[0] < 0 && rc[1] < 0) {
        use = reason_rank(rc[1]) > reason_rank(rc[0]);
        snprintf(why, why_len, "%s", reason[use]);
        return rc[use];
    }
    /* the valid one, or of two the one with the higher seq (A on a tie) */
    use = rc[0] < 0 || (rc[1] == 0 && c[1].seq > c[0].seq);
    *m = c[use];
    m->sb_copy = use;
    m->one_copy_bad = rc[use ^ 1] < 0;
    if (!!(m->flags & META_F_INTERNAL) != internal) {
        snprintf(why, why_len, internal ? "metadata is external (give --meta FILE)"
                                        : "metadata in this file is internal to some disk");
        return -EINVAL;
    }
    if (m->disk_size != disk_size) {
        snprintf(why, why_len,
                 "metadata was made for a disk of %llu bytes, this disk has %llu",
                 (unsigned long long)m->disk_size, (unsigned long long)disk_size);
        return -EINVAL;
    }
    if (m->one_copy_bad) {
        snprintf(why, why_len,
                 "metadata superblock copy %c (offset %llu) is unusable: %s; using copy %c "
                 "(seq %llu); the next metadata update rewrites copy %c",
                 "AB"[use ^ 1], (unsigned long long)meta_sb_offset(disk_size, internal, use ^ 1),
                 reason[use ^ 1], "AB"[use], (unsigned long long)m->seq, "AB"[use ^ 1]);
        log_warn("%s", why);
    }
    return 0;
}

int meta_write_durable(int fd, const void *buf, size_t len, uint64_t off)
{
    /* RWF_DSYNC: durable when it returns, and only this range is written
     * back (fdatasync would flush a whole data file with internal metadata) */
    while (len) {
        struct iovec iov = { (void *)buf, len };
        ssize_t n = pwritev2(fd, &iov, 1, off, RWF_DSYNC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        buf = (const char *)buf + n;
        len -= n;
        off += n;
    }
    return 0;
}

int meta_save(int fd, struct meta *m)
{
    uint8_t sb[META_SB_SIZE];
    bool internal = m->flags & META_F_INTERNAL;
    unsigned copy = m->sb_copy ^ 1; /* never the newest valid state */
    int r;

    m->seq++;
    meta_encode(m, sb);
    r = meta_write_durable(fd, sb, sizeof sb, meta_sb_offset(m->disk_size, internal, copy));
    /* on failure the copy written may be torn: write it again next time,
     * the other one still holds the last durable state */
    if (r == 0) {
        m->sb_copy = copy;
        m->one_copy_bad = false;
    }
    return r;
}
