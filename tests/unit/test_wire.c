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
        { .type = RT_TRIM, .len = 11 }, { .type = RT_ACK_WRITE, .len = 4 },
        { .type = RT_HELLO, .len = 0 },
    };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        repl_encode_hdr(b, &bad[i]);
        CHECK(repl_decode_hdr(b, &d, &why) < 0);
    }
    b[4] = 2; /* a future version, with a correct checksum */
    put_be32(b + 28, crc32c(0, b, 28));
    CHECK(repl_decode_hdr(b, &d, &why) < 0 && strstr(why, "version"));

    struct repl_hello hi = { .data_size = 1 << 30, .node_id = 99, .current_gen = 5,
                             .block_size = 4096, .role = ROLE_PRIMARY, .protocol = 'C',
                             .disk_state = DS_UPTODATE }, ho;
    uint8_t p[REPL_HELLO_SIZE];
    repl_encode_hello(p, &hi);
    CHECK(repl_decode_hello(p, sizeof p, &ho, &why) == 0);
    CHECK(ho.data_size == hi.data_size && ho.node_id == 99 && ho.protocol == 'C');
    CHECK(ho.role == ROLE_PRIMARY && ho.disk_state == DS_UPTODATE);
    p[29] = 'Z';
    CHECK(repl_decode_hello(p, sizeof p, &ho, &why) < 0);
    return check_summary();
}
