/* Metadata format: layout, round trip, and refusal of corrupt, foreign and
 * mismatched metadata; superblocks with a valid checksum over impossible
 * geometry (offsets that wrap around 2^64, overlapping areas, unknown flags,
 * version 1); and the two superblock copies: a corrupt or torn newest copy
 * falls back to the previous state, two bad copies are refused. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common.h"
#include "meta.h"

static void test_plan(void)
{
    struct meta m;
    uint64_t gib = 1ULL << 30;

    /* 1 bit per 4 KiB, 32704 bits per 4 KiB page: 262144 bits take 9 pages */
    CHECK(meta_bm_slot_bytes(gib) == 9 * 4096);
    CHECK(meta_bm_slot_bytes(4096) == 4096);       /* rounded up to a page */
    CHECK(meta_bm_slot_bytes(32704ull * 4096) == 4096);
    CHECK(meta_bm_slot_bytes(32704ull * 4096 + 1) == 8192);
    CHECK(meta_plan(&m, gib, true) == 0);
    CHECK(m.meta_size == 2 * 4096 + 32768 + 31 * 36864);
    CHECK(m.bm_offset == 0 && m.al_offset == 31 * 36864);
    CHECK(m.data_size == gib - m.meta_size);
    CHECK(m.data_size % 4096 == 0);
    CHECK(m.meta_offset + m.meta_size == gib);
    CHECK(m.node_id != 0 && m.current_gen != 0);
    CHECK(meta_plan(&m, gib, false) == 0 && m.data_size == gib && m.meta_offset == 0);
    CHECK(m.al_offset == 8192 && m.bm_offset == 8192 + 32768);
    CHECK(m.current_gen == GEN_JUST_CREATED && m.al_extents == AL_DEFAULT);
    /* copy A ends the disk (internal) or starts the file (external) */
    CHECK(meta_sb_offset(gib + 1000, true, 0) == gib - 4096);
    CHECK(meta_sb_offset(gib, true, 1) == gib - 8192);
    CHECK(meta_sb_offset(gib, false, 0) == 0 && meta_sb_offset(gib, false, 1) == 4096);
    /* no wraparound in the bitmap size of a disk near 2^64 bytes */
    uint64_t bits = (UINT64_MAX >> 12) + 1, pages = (bits + 32703) / 32704;
    CHECK(meta_bm_slot_bytes(UINT64_MAX) == pages * 4096);
    CHECK(meta_plan(&m, 100 << 10, true) == -ENOSPC);
    /* a size that is not a multiple of 4 KiB: the tail is not used */
    CHECK(meta_plan(&m, gib + 1000, true) == 0 && m.meta_offset + m.meta_size == gib);
}

static void test_roundtrip_and_corruption(void)
{
    struct meta m, d;
    uint8_t sb[META_SB_SIZE];
    const char *why = NULL;

    meta_plan(&m, 1ULL << 30, true);
    m.peer_bitmap_gen[30] = 0xabcdef;
    m.history_gen[3] = 77;
    m.seq = 0x123456789abULL;
    meta_encode(&m, sb);
    CHECK(meta_decode(&d, sb, &why) == 0);
    CHECK(d.data_size == m.data_size && d.node_id == m.node_id && d.seq == m.seq);
    CHECK(d.peer_bitmap_gen[30] == 0xabcdef && d.history_gen[3] == 77);

    sb[200] ^= 0x40; /* one flipped bit */
    CHECK(meta_decode(&d, sb, &why) == -EBADMSG && strstr(why, "checksum"));
    sb[200] ^= 0x40;

    uint8_t foreign[META_SB_SIZE];
    memset(foreign, 0x5a, sizeof foreign);
    CHECK(meta_decode(&d, foreign, &why) == -ENOENT && strstr(why, "no nbdmirror metadata"));

    /* a valid checksum over an impossible layout is still refused */
    m.data_size = m.disk_size + 4096;
    meta_encode(&m, sb);
    CHECK(meta_decode(&d, sb, &why) == -EBADMSG && strstr(why, "inconsistent"));

    meta_plan(&m, 1ULL << 30, true);
    m.version = 99;
    meta_encode(&m, sb);
    CHECK(meta_decode(&d, sb, &why) == -EPROTONOSUPPORT);
}

/* Encodes m with a valid checksum (a forger's superblock): decode refuses it
 * with error r and a reason that contains what. */
static bool refused(const struct meta *m, int r, const char *what)
{
    uint8_t sb[META_SB_SIZE];
    struct meta d;
    const char *why = NULL;

    meta_encode(m, sb);
    return meta_decode(&d, sb, &why) == r && why && strstr(why, what);
}

static bool accepted(const struct meta *m)
{
    uint8_t sb[META_SB_SIZE];
    struct meta d;
    const char *why = NULL;

    meta_encode(m, sb);
    return meta_decode(&d, sb, &why) == 0;
}

static const char *bad = "metadata is corrupt";

static void test_al_offset_wraps(void)
{
    struct meta m;
    meta_plan(&m, 1ULL << 30, true);
    CHECK(accepted(&m));
    m.al_offset = UINT64_MAX; /* al_offset + al_size wraps to 32 KiB - 1 */
    CHECK(refused(&m, -EBADMSG, bad));
}

static void test_bm_offset_wraps(void)
{
    struct meta m;
    meta_plan(&m, 1ULL << 30, true);
    m.bm_offset = UINT64_MAX - 5; /* + 31 slots wraps to just under a MiB */
    CHECK(refused(&m, -EBADMSG, bad));
    m.bm_offset = UINT64_MAX - 4095; /* the same, 4 KiB aligned */
    CHECK(refused(&m, -EBADMSG, bad));
    meta_plan(&m, 1ULL << 30, false);
    CHECK(accepted(&m));
    m.bm_offset = UINT64_MAX - 4095;
    CHECK(refused(&m, -EBADMSG, bad));
}

static void test_huge_bm_slot(void)
{
    struct meta m;
    uint64_t d = UINT64_MAX / 4096 * 4096;

    /* an external layout for a disk of almost 2^64 bytes is possible... */
    meta_plan(&m, d, false);
    CHECK(accepted(&m));
    /* ...but not with slots whose 31 copies overflow 64 bits, with
     * meta_size computed the way a forger would (wrapping) */
    m.bm_slot_bytes = UINT64_MAX / 31 / 4096 * 4096;
    m.meta_size = 2 * 4096 + (32 << 10) + 31 * m.bm_slot_bytes;
    CHECK(refused(&m, -EBADMSG, bad));
    m.bm_slot_bytes = 1ULL << 60;
    m.meta_size = 2 * 4096 + (32 << 10) + 31 * m.bm_slot_bytes;
    CHECK(refused(&m, -EBADMSG, bad));
    m.bm_slot_bytes = UINT64_MAX / 4096 * 4096;
    m.meta_size = 2 * 4096 + (32 << 10) + 31 * m.bm_slot_bytes;
    CHECK(refused(&m, -EBADMSG, bad));
    /* slots smaller than the data needs */
    meta_plan(&m, 1ULL << 30, false);
    m.bm_slot_bytes -= 4096;
    m.meta_size -= 31 * 4096;
    CHECK(refused(&m, -EBADMSG, bad));
}

static void test_overlapping_areas(void)
{
    struct meta m;

    /* activity log over bitmap slot 0 */
    meta_plan(&m, 1ULL << 30, true);
    m.al_offset = m.bm_offset;
    CHECK(refused(&m, -EBADMSG, bad));
    /* activity log over the superblock copies at the end */
    meta_plan(&m, 1ULL << 30, true);
    m.al_offset = m.meta_size - META_AL_SIZE;
    CHECK(refused(&m, -EBADMSG, bad));
    /* bitmaps and log swapped is fine: no overlap */
    meta_plan(&m, 1ULL << 30, true);
    m.al_offset = 0;
    m.bm_offset = META_AL_SIZE;
    CHECK(accepted(&m));
    /* external: bitmaps over the superblock copies at the start */
    meta_plan(&m, 1ULL << 30, false);
    m.bm_offset = 0;
    CHECK(refused(&m, -EBADMSG, bad));
    /* internal metadata that does not end its disk */
    meta_plan(&m, 1ULL << 30, true);
    m.disk_size += 8192;
    CHECK(refused(&m, -EBADMSG, "does not end the disk"));
    /* external: log over copy B */
    meta_plan(&m, 1ULL << 30, false);
    m.al_offset = 4096;
    CHECK(refused(&m, -EBADMSG, bad));
}

static void test_unknown_flags_and_version(void)
{
    struct meta m;

    meta_plan(&m, 1ULL << 30, true);
    m.flags |= META_F_SKIP_SYNC;
    CHECK(accepted(&m));
    m.flags |= META_F_PRIMARY | META_F_FULL_SYNC;
    CHECK(accepted(&m));
    m.flags |= 1u << 4;
    CHECK(refused(&m, -EPROTONOSUPPORT, "flags"));
    m.flags = META_F_INTERNAL | 1u << 31;
    CHECK(refused(&m, -EPROTONOSUPPORT, "flags"));
    /* versions 1 (a single superblock) and 2 (bitmap pages without
     * checksums) are not read as version 3 */
    meta_plan(&m, 1ULL << 30, true);
    m.version = 1;
    CHECK(refused(&m, -EPROTONOSUPPORT, "format version is not supported"));
    m.version = 2;
    CHECK(refused(&m, -EPROTONOSUPPORT, "format version is not supported"));
    /* an activity log size out of range */
    meta_plan(&m, 1ULL << 30, true);
    m.al_extents = AL_MAX + 1;
    CHECK(refused(&m, -EBADMSG, "activity log"));
    m.al_extents = 0;
    CHECK(refused(&m, -EBADMSG, "activity log"));
    /* a disk state that is never written */
    meta_plan(&m, 1ULL << 30, true);
    m.disk_state = DS_FAILED;
    CHECK(refused(&m, -EBADMSG, bad));
}

/* The state in superblock copy `copy` of the file, decoded (seq 0 if bad). */
static uint64_t copy_seq(int fd, uint64_t size, bool internal, unsigned copy)
{
    uint8_t sb[META_SB_SIZE];
    struct meta d;
    const char *why;

    if (full_pread(fd, sb, sizeof sb, meta_sb_offset(size, internal, copy)) < 0 ||
        meta_decode(&d, sb, &why) < 0)
        return 0;
    return d.seq;
}

static void flip_bytes(int fd, uint64_t off)
{
    uint8_t b[16];
    CHECK(full_pread(fd, b, sizeof b, off) == 0);
    for (unsigned i = 0; i < sizeof b; i++)
        b[i] ^= 0xa5;
    CHECK(full_pwrite(fd, b, sizeof b, off) == 0);
}

static void test_two_copies(bool internal)
{
    char path[] = "/tmp/nbdm-unit-XXXXXX";
    int fd = mkstemp(path);
    uint64_t size = 64 << 20, off_a = meta_sb_offset(size, internal, 0),
             off_b = meta_sb_offset(size, internal, 1);
    struct meta m, l;
    char why[300];
    uint8_t old_a[META_SB_SIZE], new_a[META_SB_SIZE];

    CHECK(fd >= 0);
    if (internal)
        CHECK(ftruncate(fd, size) == 0);
    CHECK(meta_plan(&m, size, internal) == 0);
    m.disk_state = DS_INCONSISTENT;
    CHECK(meta_create(fd, &m) == 0);
    CHECK(m.seq == 1 && m.sb_copy == 0);
    CHECK(copy_seq(fd, size, internal, 0) == 1 && copy_seq(fd, size, internal, 1) == 0);
    CHECK(meta_load(fd, size, internal, &l, why, sizeof why) == 0);
    CHECK(l.seq == 1 && l.sb_copy == 0 && !l.one_copy_bad && l.node_id == m.node_id);

    /* saves alternate: B (seq 2), A (3), B (4), and a load sees the last */
    l.disk_state = DS_OUTDATED;
    CHECK(meta_save(fd, &l) == 0 && l.seq == 2 && l.sb_copy == 1);
    CHECK(copy_seq(fd, size, internal, 0) == 1 && copy_seq(fd, size, internal, 1) == 2);
    l.disk_state = DS_UPTODATE;
    CHECK(meta_save(fd, &l) == 0 && l.seq == 3 && l.sb_copy == 0);
    CHECK(copy_seq(fd, size, internal, 0) == 3 && copy_seq(fd, size, internal, 1) == 2);
    l.disk_state = DS_INCONSISTENT;
    CHECK(meta_save(fd, &l) == 0 && l.seq == 4 && l.sb_copy == 1);
    CHECK(meta_load(fd, size, internal, &l, why, sizeof why) == 0);
    CHECK(l.seq == 4 && l.disk_state == DS_INCONSISTENT && !l.one_copy_bad);

    /* (a) the newest copy (B) corrupt: the state before it, one copy bad */
    flip_bytes(fd, off_b + 600);
    CHECK(meta_load(fd, size, internal, &l, why, sizeof why) == 0);
    CHECK(l.seq == 3 && l.disk_state == DS_UPTODATE && l.sb_copy == 0);
    CHECK(l.one_copy_bad && strstr(why, "copy B") && strstr(why, "checksum"));
    /* the next save rewrites the bad copy, not the good one */
    l.disk_state = DS_OUTDATED;
    CHECK(meta_save(fd, &l) == 0 && l.seq == 4 && l.sb_copy == 1);
    CHECK(meta_load(fd, size, internal, &l, why, sizeof why) == 0);
    CHECK(l.seq == 4 && l.disk_state == DS_OUTDATED && !l.one_copy_bad);

    /* (b) a save torn halfway through copy A: the first half is new, the
     * second half still the old bytes */
    CHECK(full_pread(fd, old_a, sizeof old_a, off_a) == 0);
    l.disk_state = DS_UPTODATE;
    CHECK(meta_save(fd, &l) == 0 && l.seq == 5 && l.sb_copy == 0);
    CHECK(full_pread(fd, new_a, sizeof new_a, off_a) == 0);
    CHECK(memcmp(old_a, new_a, META_SB_SIZE / 2) != 0);
    memcpy(new_a + META_SB_SIZE / 2, old_a + META_SB_SIZE / 2, META_SB_SIZE / 2);
    CHECK(full_pwrite(fd, new_a, sizeof new_a, off_a) == 0);
    CHECK(meta_load(fd, size, internal, &l, why, sizeof why) == 0);
    CHECK(l.seq == 4 && l.disk_state == DS_OUTDATED && l.sb_copy == 1);
    CHECK(l.one_copy_bad && strstr(why, "copy A"));

    /* (c) both corrupt: refused, saying why */
    flip_bytes(fd, off_b + 100);
    CHECK(meta_load(fd, size, internal, &l, why, sizeof why) == -EBADMSG);
    CHECK(strstr(why, "checksum") != NULL);
    /* one without magic, one corrupt: the corruption is the reason given
     * (no magic would have serve advise create-md over our metadata) */
    memset(new_a, 0, sizeof new_a);
    CHECK(full_pwrite(fd, new_a, sizeof new_a, off_a) == 0);
    CHECK(meta_load(fd, size, internal, &l, why, sizeof why) == -EBADMSG);
    CHECK(strstr(why, "checksum") != NULL);
    CHECK(full_pwrite(fd, new_a, sizeof new_a, off_b) == 0);
    CHECK(meta_load(fd, size, internal, &l, why, sizeof why) == -ENOENT);
    close(fd);
    unlink(path);
}

static void test_create_load(void)
{
    char path[] = "/tmp/nbdm-unit-XXXXXX";
    int fd = mkstemp(path);
    struct meta m, l;
    char why[200];
    uint64_t size = 64 << 20;

    CHECK(fd >= 0);
    CHECK(ftruncate(fd, size) == 0);
    CHECK(meta_load(fd, size, true, &l, why, sizeof why) == -ENOENT);
    CHECK(meta_plan(&m, size, true) == 0);
    CHECK(meta_create(fd, &m) == 0);
    CHECK(meta_load(fd, size, true, &l, why, sizeof why) == 0);
    CHECK(l.node_id == m.node_id && l.data_size == m.data_size);
    /* a disk that changed size no longer matches (its superblock moved) */
    CHECK(ftruncate(fd, size + 4096) == 0);
    CHECK(meta_load(fd, size + 4096, true, &l, why, sizeof why) < 0);
    /* internal metadata read as external is refused with a reason */
    CHECK(ftruncate(fd, size) == 0);
    uint8_t sb[META_SB_SIZE];
    CHECK(full_pread(fd, sb, sizeof sb, size - 4096) == 0);
    CHECK(full_pwrite(fd, sb, sizeof sb, 0) == 0);
    CHECK(meta_load(fd, size, false, &l, why, sizeof why) == -EINVAL);
    CHECK(strstr(why, "internal") != NULL);
    close(fd);
    unlink(path);
}

int main(void)
{
    test_plan();
    test_roundtrip_and_corruption();
    test_al_offset_wraps();
    test_bm_offset_wraps();
    test_huge_bm_slot();
    test_overlapping_areas();
    test_unknown_flags_and_version();
    test_create_load();
    test_two_copies(true);
    test_two_copies(false);
    return check_summary();
}
