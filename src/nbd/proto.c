/* NBD wire encoding and decoding, free of I/O so it can be unit tested. */
#include <errno.h>

#include "common.h"
#include "nbd.h"

int nbd_decode_request(const uint8_t *p, struct nbd_request *r)
{
    if (get_be32(p) != NBD_REQUEST_MAGIC)
        return -EPROTO;
    r->flags = get_be16(p + 4);
    r->type = get_be16(p + 6);
    r->cookie = get_be64(p + 8);
    r->offset = get_be64(p + 16);
    r->len = get_be32(p + 24);
    return 0;
}

void nbd_encode_request(uint8_t *p, const struct nbd_request *r)
{
    put_be32(p, NBD_REQUEST_MAGIC);
    put_be16(p + 4, r->flags);
    put_be16(p + 6, r->type);
    put_be64(p + 8, r->cookie);
    put_be64(p + 16, r->offset);
    put_be32(p + 24, r->len);
}

int nbd_errno(int err)
{
    switch (err) {
    case 0: return 0;
    case EPERM: case EROFS: return NBD_EPERM;
    case ENOMEM: return NBD_ENOMEM;
    case EINVAL: return NBD_EINVAL;
    case ENOSPC: case EDQUOT: case EFBIG: return NBD_ENOSPC;
    case EOVERFLOW: return NBD_EOVERFLOW;
    case ENOTSUP: return NBD_ENOTSUP;
    case ESHUTDOWN: return NBD_ESHUTDOWN;
    default: return NBD_EIO;
    }
}

void nbd_encode_simple(struct nm_req *r)
{
    put_be32(r->hdr, NBD_SIMPLE_MAGIC);
    put_be32(r->hdr + 4, nbd_errno(r->err));
    put_be64(r->hdr + 8, r->cookie);
    r->hdr_len = NBD_SIMPLE_SIZE;
    if (r->err)
        r->buf_len = 0;
}

static void chunk(struct nm_req *r, uint16_t type, uint32_t len)
{
    put_be32(r->hdr, NBD_STRUCT_MAGIC);
    put_be16(r->hdr + 4, NBD_REPLY_FLAG_DONE);
    put_be16(r->hdr + 6, type);
    put_be64(r->hdr + 8, r->cookie);
    put_be32(r->hdr + 16, len);
}

void nbd_encode_read_chunk(struct nm_req *r)
{
    chunk(r, NBD_REPLY_TYPE_OFFSET_DATA, 8 + r->buf_len);
    put_be64(r->hdr + 20, r->offset);
    r->hdr_len = NBD_STRUCT_SIZE + 8;
}

void nbd_encode_error_chunk(struct nm_req *r)
{
    chunk(r, NBD_REPLY_TYPE_ERROR, 6);
    put_be32(r->hdr + 20, nbd_errno(r->err));
    put_be16(r->hdr + 24, 0); /* no message: the error code says it */
    r->hdr_len = NBD_STRUCT_SIZE + 6;
    r->buf_len = 0;
}

void nbd_encode_status_chunk(struct nm_req *r)
{
    chunk(r, NBD_REPLY_TYPE_BLOCK_STATUS, 4 + r->buf_len);
    put_be32(r->hdr + 20, NBD_META_ALLOC_ID);
    r->hdr_len = NBD_STRUCT_SIZE + 4;
}

void nbd_encode_opt_reply(uint8_t *p, uint32_t opt, uint32_t type, uint32_t len)
{
    put_be64(p, NBD_REP_MAGIC);
    put_be32(p + 8, opt);
    put_be32(p + 12, type);
    put_be32(p + 16, len);
}
