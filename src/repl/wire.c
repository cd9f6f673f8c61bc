/* Replication wire format: encoding and strict decoding of frame headers. */
#include <errno.h>
#include <string.h>

#include "common.h"
#include "repl-int.h"

void repl_encode_hdr(uint8_t *p, const struct repl_hdr *h)
{
    put_be32(p, REPL_MAGIC);
    p[4] = REPL_VERSION;
    p[5] = h->type;
    put_be16(p + 6, h->flags);
    put_be32(p + 8, h->len);
    put_be32(p + 12, h->epoch);
    put_be64(p + 16, h->seq);
    put_be32(p + 24, h->aux);
    put_be32(p + 28, crc32c(0, p, 28));
}

int repl_decode_hdr(const uint8_t *p, struct repl_hdr *h, const char **why)
{
    if (get_be32(p) != REPL_MAGIC) {
        *why = "bad magic (not an nbdmirror peer)";
        return -EPROTO;
    }
    if (get_be32(p + 28) != crc32c(0, p, 28)) {
        *why = "header checksum mismatch";
        return -EPROTO;
    }
    if (p[4] != REPL_VERSION) {
        *why = "unsupported replication protocol version";
        return -EPROTO;
    }
    h->type = p[5];
    h->flags = get_be16(p + 6);
    h->len = get_be32(p + 8);
    h->epoch = get_be32(p + 12);
    h->seq = get_be64(p + 16);
    h->aux = get_be32(p + 24);
    if (h->type < RT_HELLO || h->type > RT_TYPE_MAX) {
        *why = "unknown frame type";
        return -EPROTO;
    }
    if (!repl_frame_known(h->type, h->len)) {
        *why = "frame length not valid for its type";
        return -EPROTO;
    }
    return 0;
}

int repl_frame_start(const uint8_t *p, size_t len, struct repl_hdr *h, const char **why)
{
    if (len < REPL_HDR)
        return 0;
    return repl_decode_hdr(p, h, why) < 0 ? -EPROTO : 1;
}

void repl_encode_hello(uint8_t *p, const struct repl_hello *h)
{
    memset(p, 0, REPL_HELLO_SIZE);
    put_be64(p, h->data_size);
    put_be64(p + 8, h->node_id);
    put_be64(p + 16, h->current_gen);
    put_be32(p + 24, h->block_size);
    p[28] = h->role;
    p[29] = h->protocol;
    p[30] = h->disk_state;
}

int repl_decode_hello(const uint8_t *p, uint32_t len, struct repl_hello *h, const char **why)
{
    if (len != REPL_HELLO_SIZE) {
        *why = "HELLO of the wrong size";
        return -EPROTO;
    }
    h->data_size = get_be64(p);
    h->node_id = get_be64(p + 8);
    h->current_gen = get_be64(p + 16);
    h->block_size = get_be32(p + 24);
    h->role = p[28];
    h->protocol = p[29];
    h->disk_state = p[30];
    if (h->block_size != 4096 || h->role > ROLE_PRIMARY || h->disk_state > DS_UPTODATE ||
        (h->protocol && (h->protocol < 'A' || h->protocol > 'C')) || h->node_id == 0) {
        *why = "HELLO with invalid fields";
        return -EPROTO;
    }
    return 0;
}

const char *disk_state_name(enum disk_state s)
{
    static const char *names[] = { "Unknown", "Inconsistent", "Outdated", "UpToDate", "Failed" };
    return s <= DS_FAILED ? names[s] : "Unknown";
}
