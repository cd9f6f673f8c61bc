/* Metadata format: layout planning, superblock encoding and validation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "meta.h"

#define ROUND_UP(x, a) (((x) + (a) - 1) / (a) * (a))
#define MIN_DATA (1u << 20)

uint64_t meta_bm_slot_bytes(uint64_t data_size)
{
    uint64_t bits = (data_size + META_BM_BLOCK - 1) / META_BM_BLOCK;
    return ROUND_UP((bits + 7) / 8, 4096);
}

static uint64_t random_id(void)
{
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "re");
    if (f) {
        if (fread(&v, sizeof v, 1, f) != 1)
            v = 0;
        fclose(f);
    }
    if (!v)
        v = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
    return v | 1; /* never 0: 0 means "no id" */
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
    m->current_gen = random_id();
    m->created = (uint64_t)time(NULL);
    if (internal) {
        /* Size the bitmaps for the whole disk: a little more than the data
         * area needs, and no circular dependency between the two. */
        uint64_t d4 = disk_size / 4096 * 4096;
        m->bm_slot_bytes = meta_bm_slot_bytes(d4);
        m->meta_size = META_SB_SIZE + META_AL_SIZE + META_MAX_PEERS * m->bm_slot_bytes;
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
        m->meta_size = META_SB_SIZE + META_AL_SIZE + META_MAX_PEERS * m->bm_slot_bytes;
        m->meta_offset = 0;
        m->al_offset = META_SB_SIZE;
        m->bm_offset = META_SB_SIZE + META_AL_SIZE;
    }
    return 0;
}

uint64_t meta_sb_offset(uint64_t disk_size, bool internal)
{
    return internal ? disk_size / 4096 * 4096 - META_SB_SIZE : 0;
}

/* Field offsets in the superblock; the CRC32C covers all bytes before it. */
enum {
    O_MAGIC = 0, O_VERSION = 8, O_SBSIZE = 12, O_FLAGS = 16, O_BMBLOCK = 20,
    O_DISK = 24, O_DATA = 32, O_MOFF = 40, O_MSIZE = 48, O_ALOFF = 56,
    O_ALSIZE = 64, O_PEERS = 68, O_BMOFF = 72, O_BMSLOT = 80, O_NODE = 88,
    O_CURGEN = 96, O_HIST = 104, O_PEERGEN = O_HIST + 8 * META_HISTORY,
    O_PEERNODE = O_PEERGEN + 8 * META_MAX_PEERS,
    O_CREATED = O_PEERNODE + 8 * META_MAX_PEERS,
    O_DSTATE = O_CREATED + 8,
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
    put_le32(sb + O_CRC, crc32c(0, sb, O_CRC));
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

    /* A valid CRC with impossible geometry means a bug or a forgery: refuse. */
    if (m->max_peers != META_MAX_PEERS || m->al_size != META_AL_SIZE ||
        m->data_size == 0 || m->data_size > m->disk_size ||
        m->bm_slot_bytes < meta_bm_slot_bytes(m->data_size) ||
        m->bm_slot_bytes > (UINT64_MAX / 64) ||
        m->meta_size != META_SB_SIZE + META_AL_SIZE + META_MAX_PEERS * m->bm_slot_bytes ||
        m->al_offset + m->al_size > m->meta_size ||
        m->bm_offset + META_MAX_PEERS * m->bm_slot_bytes > m->meta_size) {
        *why = "metadata is corrupt (inconsistent layout)";
        return -EBADMSG;
    }
    if ((m->flags & META_F_INTERNAL) &&
        (m->meta_offset != m->data_size ||
         m->meta_offset + m->meta_size != m->disk_size / 4096 * 4096)) {
        *why = "metadata is corrupt (internal area does not end the disk)";
        return -EBADMSG;
    }
    return 0;
}

int meta_create(int fd, const struct meta *m)
{
    uint8_t *buf = calloc(1, 1 << 20);
    uint64_t off = m->meta_offset, end = m->meta_offset + m->meta_size - META_SB_SIZE;
    uint64_t sb_off = (m->flags & META_F_INTERNAL) ? end : m->meta_offset;
    int r = 0;

    if (!buf)
        return -ENOMEM;
    /* External: superblock first, so zero everything after it. */
    if (!(m->flags & META_F_INTERNAL)) {
        off += META_SB_SIZE;
        end += META_SB_SIZE;
    }
    while (r == 0 && off < end) {
        uint64_t n = end - off < (1 << 20) ? end - off : (1 << 20);
        r = full_pwrite(fd, buf, n, off);
        off += n;
    }
    if (r == 0) {
        meta_encode(m, buf);
        r = full_pwrite(fd, buf, META_SB_SIZE, sb_off);
    }
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    free(buf);
    return r;
}

int meta_load(int fd, uint64_t disk_size, bool internal, struct meta *m,
              char *why, size_t why_len)
{
    uint8_t sb[META_SB_SIZE];
    const char *w = NULL;
    int r;

    if (internal && disk_size < 2 * META_SB_SIZE) {
        snprintf(why, why_len, "disk is too small to hold metadata");
        return -ENOENT;
    }
    r = full_pread(fd, sb, sizeof sb, meta_sb_offset(disk_size, internal));
    if (r < 0) {
        snprintf(why, why_len, "cannot read superblock: %s", strerror(-r));
        return r == -EIO ? -ENOENT : r;
    }
    r = meta_decode(m, sb, &w);
    if (r < 0) {
        snprintf(why, why_len, "%s", w);
        return r;
    }
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
    return 0;
}

int meta_save(int fd, const struct meta *m)
{
    uint8_t sb[META_SB_SIZE];
    bool internal = m->flags & META_F_INTERNAL;
    int r;

    meta_encode(m, sb);
    r = full_pwrite(fd, sb, sizeof sb, meta_sb_offset(m->disk_size, internal));
    if (r == 0 && fdatasync(fd) < 0)
        r = -errno;
    return r;
}
