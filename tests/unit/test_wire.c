/* Replication wire format: round trip and refusal of every malformed header. */
#include <string.h>

#include "check.h"
#include "common.h"
#include "repl.h"

int main(void)
{
    struct repl_hdr h = { .type = RT_WRITE, .flags = RF_FUA, .len = 8 + 4096,
                          .epoch = 7, .seq = 1ULL << 40, .aux = 3 }, d;
    uint8_t b[REPL_HDR];
    const char *why;

    repl_encode_hdr(b, &h);
    CHECK(get_be32(b) == REPL_MAGIC);
    CHECK(repl_decode_hdr(b, &d, &why) == 0);
    CHECK(d.type == RT_WRITE && d.flags == RF_FUA && d.len == 4104);
    CHECK(d.epoch == 7 && d.seq == 1ULL << 40 && d.aux == 3);

    for (int i = 0; i < REPL_HDR; i++) { /* any flipped bit is caught */
        uint8_t c[REPL_HDR];
        memcpy(c, b, sizeof c);
        c[i] ^= 0x10;
        CHECK(repl_decode_hdr(c, &d, &why) < 0);
    }
    struct repl_hdr bad[] = {
        { .type = 0 }, { .type = RT_TYPE_MAX + 1 },
        { .type = RT_WRITE, .len = 8 },                     /* no data */
        { .type = RT_WRITE, .len = REPL_MAX_PAYLOAD + 1 },  /* huge */
        { .type = RT_TRIM, .len = 11 }, { .type = RT_ACK_WRITE, .len = 9 }, { .type = RT_STATE, .len = 0 },
        { .type = RT_BARRIER, .len = 17 }, { .type = RT_BITMAP, .len = 8 }, { .type = RT_GENS, .len = 8 },
        { .type = RT_HELLO, .len = 0 },
    };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        repl_encode_hdr(b, &bad[i]);
        CHECK(repl_decode_hdr(b, &d, &why) < 0);
    }
    b[4] = 3; /* a future version, with a correct checksum */
    put_be32(b + 28, crc32c(0, b, 28));
    CHECK(repl_decode_hdr(b, &d, &why) < 0 && strstr(why, "version"));

    struct repl_hello hi = { .data_size = 1 << 30, .node_id = 99, .block_size = 4096, .role = ROLE_PRIMARY, .protocol = 'C',
                             .disk_state = DS_UPTODATE }, ho;
    uint8_t p[REPL_HELLO_SIZE];
    repl_encode_hello(p, &hi);
    CHECK(repl_decode_hello(p, sizeof p, &ho, &why) == 0);
    CHECK(ho.data_size == hi.data_size && ho.node_id == 99 && ho.protocol == 'C');
    CHECK(ho.role == ROLE_PRIMARY && ho.disk_state == DS_UPTODATE);
    p[29] = 'Z';
    CHECK(repl_decode_hello(p, sizeof p, &ho, &why) < 0);

    /* GENS: round trip, and refusal of unknown flags, states and ids */
    struct gen_view g = { .node_id = 7, .current = 0x1111, .bitmap = 0x2222,
                          .history = { 1, 2, 3, 4 }, .bits = 99, .primary_since = 12345,
                          .disk = DS_OUTDATED, .primary = true, .discard_my_data = true,
                          .sb_policy = SB_DISCARD_YOUNGER_PRIMARY }, go;
    uint8_t q[REPL_GENS_SIZE];
    repl_encode_gens(q, &g);
    CHECK(repl_decode_gens(q, sizeof q, &go, &why) == 0);
    CHECK(go.node_id == 7 && go.current == 0x1111 && go.bitmap == 0x2222 && go.history[3] == 4);
    CHECK(go.bits == 99 && go.primary_since == 12345 && go.disk == DS_OUTDATED);
    CHECK(go.primary && go.discard_my_data && !go.want_full && go.sb_policy == SB_DISCARD_YOUNGER_PRIMARY);
    CHECK(repl_decode_gens(q, sizeof q - 1, &go, &why) < 0);
    q[75] |= 0x10; /* an unknown flag */
    CHECK(repl_decode_gens(q, sizeof q, &go, &why) < 0);
    repl_encode_gens(q, &g);
    q[76] = DS_FAILED; /* never sent */
    CHECK(repl_decode_gens(q, sizeof q, &go, &why) < 0);
    repl_encode_gens(q, &g);
    q[77] = 9;
    CHECK(repl_decode_gens(q, sizeof q, &go, &why) < 0);
    g.current = 0;
    repl_encode_gens(q, &g);
    CHECK(repl_decode_gens(q, sizeof q, &go, &why) < 0);

    /* the hash: equal blocks, equal hashes; one bit apart, not */
    static uint8_t blk[4096];
    uint8_t h1[REPL_HASH], h2[REPL_HASH];
    repl_hash_block(blk, sizeof blk, h1);
    repl_hash_block(blk, sizeof blk, h2);
    CHECK(!memcmp(h1, h2, REPL_HASH));
    blk[4000] ^= 1;
    repl_hash_block(blk, sizeof blk, h2);
    CHECK(memcmp(h1, h2, REPL_HASH));
    return check_summary();
}
