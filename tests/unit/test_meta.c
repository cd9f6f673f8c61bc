/* Metadata format: layout, round trip, and refusal of corrupt, foreign and
 * mismatched metadata. */
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

    CHECK(meta_bm_slot_bytes(gib) == 32768);       /* 1 bit per 4 KiB */
    CHECK(meta_bm_slot_bytes(4096) == 4096);       /* rounded up to 4 KiB */
    CHECK(meta_bm_slot_bytes(gib + 4096) == 36864);
    CHECK(meta_plan(&m, gib, true) == 0);
    CHECK(m.meta_size == 4096 + 32768 + 31 * 32768);
    CHECK(m.data_size == gib - m.meta_size);
    CHECK(m.data_size % 4096 == 0);
    CHECK(m.meta_offset + m.meta_size == gib);
    CHECK(m.node_id != 0 && m.current_gen != 0);
    CHECK(meta_plan(&m, gib, false) == 0 && m.data_size == gib && m.meta_offset == 0);
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
    meta_encode(&m, sb);
    CHECK(meta_decode(&d, sb, &why) == 0);
    CHECK(d.data_size == m.data_size && d.node_id == m.node_id);
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
    test_create_load();
    return check_summary();
}
