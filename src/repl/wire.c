/* Replication wire format: encoding and strict decoding of frame headers,
 * HELLO and GENS; the block hash of checksum resync and verify. */
#include <errno.h>
#include <gnutls/crypto.h>
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

/* GENS: current | bitmap | history[4] | bits | primary_since | node_id |
 * flags u32 | disk u8 | policy u8 | zero */
#define GF_PRIMARY   (1u << 0)
#define GF_WANT_FULL (1u << 1)
#define GF_DISCARD   (1u << 2)

void repl_encode_gens(uint8_t *p, const struct gen_view *v)
{
    memset(p, 0, REPL_GENS_SIZE);
    put_be64(p, v->current);
    put_be64(p + 8, v->bitmap);
    for (unsigned i = 0; i < META_HISTORY; i++)
        put_be64(p + 16 + 8 * i, v->history[i]);
    put_be64(p + 48, v->bits);
    put_be64(p + 56, v->primary_since);
    put_be64(p + 64, v->node_id);
    put_be32(p + 72, (v->primary ? GF_PRIMARY : 0) | (v->want_full ? GF_WANT_FULL : 0) |
                         (v->discard_my_data ? GF_DISCARD : 0));
    p[76] = v->disk;
    p[77] = v->sb_policy;
}

int repl_decode_gens(const uint8_t *p, uint32_t len, struct gen_view *v, const char **why)
{
    if (len != REPL_GENS_SIZE) {
        *why = "GENS of the wrong size";
        return -EPROTO;
    }
    memset(v, 0, sizeof *v);
    v->current = get_be64(p);
    v->bitmap = get_be64(p + 8);
    for (unsigned i = 0; i < META_HISTORY; i++)
        v->history[i] = get_be64(p + 16 + 8 * i);
    v->bits = get_be64(p + 48);
    v->primary_since = get_be64(p + 56);
    v->node_id = get_be64(p + 64);
    uint32_t f = get_be32(p + 72);
    v->primary = f & GF_PRIMARY;
    v->want_full = f & GF_WANT_FULL;
    v->discard_my_data = f & GF_DISCARD;
    v->disk = p[76];
    v->sb_policy = p[77];
    if ((f & ~(GF_PRIMARY | GF_WANT_FULL | GF_DISCARD)) || v->disk > DS_UPTODATE ||
        v->sb_policy > SB_DISCARD_YOUNGER_PRIMARY || v->current == 0 || v->node_id == 0) {
        *why = "GENS with invalid fields";
        return -EPROTO;
    }
    return 0;
}

void repl_hash_block(const void *data, uint32_t len, uint8_t *out)
{
    uint8_t d[32];
    /* SHA-256 cut to 128 bits: strong enough that equal hashes mean equal
     * blocks, and the CPU's SHA instructions make it cheap */
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, d) < 0) {
        static uint64_t n; /* never equal to the other side's: the block is sent */
        memset(d, 0, sizeof d);
        put_be64(d, ++n);
        put_be64(d + 8, (uint64_t)(uintptr_t)data ^ 0x5a5a5a5a5a5a5a5aull);
    }
    memcpy(out, d, REPL_HASH);
}

const char *disk_state_name(enum disk_state s)
{
    static const char *names[] = { "Unknown", "Inconsistent", "Outdated", "UpToDate", "Failed" };
    return s <= DS_FAILED ? names[s] : "Unknown";
}
