/* NBD encoder/decoder: byte-exact headers, error mapping. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "common.h"
#include "nbd.h"

static void test_request_roundtrip(void)
{
    struct nbd_request in = { .flags = NBD_CMD_FLAG_FUA, .type = NBD_CMD_WRITE,
                              .cookie = 0x0102030405060708ULL, .offset = 1ULL << 40,
                              .len = 4096 }, out;
    uint8_t b[NBD_REQ_SIZE];
    static const uint8_t want[NBD_REQ_SIZE] = {
        0x25, 0x60, 0x95, 0x13, 0x00, 0x01, 0x00, 0x01, 1, 2, 3, 4, 5, 6, 7, 8,
        0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x00,
    };
    nbd_encode_request(b, &in);
    CHECK(memcmp(b, want, sizeof b) == 0);
    CHECK(nbd_decode_request(b, &out) == 0);
    CHECK(out.flags == in.flags && out.type == in.type && out.cookie == in.cookie);
    CHECK(out.offset == in.offset && out.len == in.len);
    b[0] ^= 1;
    CHECK(nbd_decode_request(b, &out) == -EPROTO);
}

static void test_simple_reply(void)
{
    struct nm_req r = { .cookie = 42, .err = ENOSPC, .buf_len = 4096 };
    nbd_encode_simple(&r);
    CHECK(r.hdr_len == 16);
    CHECK(get_be32(r.hdr) == NBD_SIMPLE_MAGIC);
    CHECK(get_be32(r.hdr + 4) == NBD_ENOSPC);
    CHECK(get_be64(r.hdr + 8) == 42);
    CHECK(r.buf_len == 0); /* no payload after an error */
}

static void test_chunks(void)
{
    struct nm_req r = { .cookie = 9, .offset = 65536, .buf_len = 512 };
    nbd_encode_read_chunk(&r);
    CHECK(r.hdr_len == 28);
    CHECK(get_be32(r.hdr) == NBD_STRUCT_MAGIC);
    CHECK(get_be16(r.hdr + 4) == NBD_REPLY_FLAG_DONE);
    CHECK(get_be16(r.hdr + 6) == NBD_REPLY_TYPE_OFFSET_DATA);
    CHECK(get_be32(r.hdr + 16) == 8 + 512);
    CHECK(get_be64(r.hdr + 20) == 65536);

    r.err = EIO;
    nbd_encode_error_chunk(&r);
    CHECK(r.hdr_len == 26 && r.buf_len == 0);
    CHECK(get_be16(r.hdr + 6) == NBD_REPLY_TYPE_ERROR);
    CHECK(get_be32(r.hdr + 16) == 6);
    CHECK(get_be32(r.hdr + 20) == NBD_EIO);

    struct nm_req s = { .cookie = 1, .buf_len = 16 };
    nbd_encode_status_chunk(&s);
    CHECK(s.hdr_len == 24);
    CHECK(get_be16(s.hdr + 6) == NBD_REPLY_TYPE_BLOCK_STATUS);
    CHECK(get_be32(s.hdr + 16) == 4 + 16);
    CHECK(get_be32(s.hdr + 20) == NBD_META_ALLOC_ID);
}

static void test_errno_map(void)
{
    CHECK(nbd_errno(0) == 0);
    CHECK(nbd_errno(EPERM) == NBD_EPERM && nbd_errno(EROFS) == NBD_EPERM);
    CHECK(nbd_errno(EDQUOT) == NBD_ENOSPC && nbd_errno(EFBIG) == NBD_ENOSPC);
    CHECK(nbd_errno(ESHUTDOWN) == NBD_ESHUTDOWN);
    CHECK(nbd_errno(ENOTSUP) == NBD_ENOTSUP);
    CHECK(nbd_errno(EBADF) == NBD_EIO); /* anything unexpected is an I/O error */
}

static void test_opt_reply(void)
{
    uint8_t b[20];
    nbd_encode_opt_reply(b, NBD_OPT_GO, NBD_REP_ERR_UNSUP, 7);
    CHECK(get_be64(b) == NBD_REP_MAGIC);
    CHECK(get_be32(b + 8) == NBD_OPT_GO);
    CHECK(get_be32(b + 12) == 0x80000001u);
    CHECK(get_be32(b + 16) == 7);
}

int main(void)
{
    test_request_roundtrip();
    test_simple_reply();
    test_chunks();
    test_errno_map();
    test_opt_reply();
    return check_summary();
}
