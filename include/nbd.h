/* NBD protocol (NetworkBlockDevice/nbd doc/proto.md): constants, the pure
 * encoders/decoders, and the front end's entry points. */
#ifndef NM_NBD_H
#define NM_NBD_H

#include <stdbool.h>
#include <stdint.h>

#include "hist.h"
#include "request.h"

#define NBD_MAGIC          0x4e42444d41474943ULL /* "NBDMAGIC" */
#define NBD_IHAVEOPT       0x49484156454F5054ULL
#define NBD_REP_MAGIC      0x0003e889045565a9ULL
#define NBD_REQUEST_MAGIC  0x25609513u
#define NBD_SIMPLE_MAGIC   0x67446698u
#define NBD_STRUCT_MAGIC   0x668e33efu

/* handshake flags (server) and client flags */
#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* options */
#define NBD_OPT_EXPORT_NAME       1
#define NBD_OPT_ABORT             2
#define NBD_OPT_LIST              3
#define NBD_OPT_STARTTLS          5
#define NBD_OPT_INFO              6
#define NBD_OPT_GO                7
#define NBD_OPT_STRUCTURED_REPLY  8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT  10

/* option replies */
#define NBD_REP_ACK           1
#define NBD_REP_SERVER        2
#define NBD_REP_INFO          3
#define NBD_REP_META_CONTEXT  4
#define NBD_REP_ERR           (1u << 31)
#define NBD_REP_ERR_UNSUP     (NBD_REP_ERR | 1)
#define NBD_REP_ERR_POLICY    (NBD_REP_ERR | 2)
#define NBD_REP_ERR_INVALID   (NBD_REP_ERR | 3)
#define NBD_REP_ERR_UNKNOWN   (NBD_REP_ERR | 6)
#define NBD_REP_ERR_TLS_REQD  (NBD_REP_ERR | 5)
#define NBD_REP_ERR_SHUTDOWN  (NBD_REP_ERR | 7)
#define NBD_REP_ERR_TOO_BIG   (NBD_REP_ERR | 9)

/* info types */
#define NBD_INFO_EXPORT      0
#define NBD_INFO_NAME        1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE  3

/* transmission flags */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

/* commands and their flags */
#define NBD_CMD_READ         0
#define NBD_CMD_WRITE        1
#define NBD_CMD_DISC         2
#define NBD_CMD_FLUSH        3
#define NBD_CMD_TRIM         4
#define NBD_CMD_CACHE        5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7
#define NBD_CMD_FLAG_FUA       (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1)
#define NBD_CMD_FLAG_DF        (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* structured replies */
#define NBD_REPLY_FLAG_DONE          (1u << 0)
#define NBD_REPLY_TYPE_NONE          0
#define NBD_REPLY_TYPE_OFFSET_DATA   1
#define NBD_REPLY_TYPE_BLOCK_STATUS  5
#define NBD_REPLY_TYPE_ERROR         ((1u << 15) + 1)

/* base:allocation */
#define NBD_STATE_HOLE 1u
#define NBD_STATE_ZERO 2u

/* errors on the wire */
#define NBD_EPERM     1
#define NBD_EIO       5
#define NBD_ENOMEM    12
#define NBD_EINVAL    22
#define NBD_ENOSPC    28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP   95
#define NBD_ESHUTDOWN 108

#define NBD_REQ_SIZE        28
#define NBD_SIMPLE_SIZE     16
#define NBD_STRUCT_SIZE     20
#define NBD_OPT_HDR_SIZE    16
#define NBD_MAX_NAME        4096
#define NBD_MAX_BLOCK       (64u << 20) /* as nbdkit: clients that were told nothing send up to this */
#define NBD_META_ALLOC_ID   1   /* our id for base:allocation */

/* ---- pure encode / decode (src/nbd/proto.c) ---- */
struct nbd_request {
    uint16_t flags, type;
    uint64_t cookie, offset;
    uint32_t len;
};
/* Decodes a 28-byte request; -EPROTO on a bad magic. */
int nbd_decode_request(const uint8_t *p, struct nbd_request *r);
void nbd_encode_request(uint8_t *p, const struct nbd_request *r);
int nbd_errno(int err); /* host errno -> wire error */
/* Fills req->hdr with the reply header for the current state of req. */
void nbd_encode_simple(struct nm_req *req);
void nbd_encode_read_chunk(struct nm_req *req);  /* OFFSET_DATA|DONE */
void nbd_encode_error_chunk(struct nm_req *req); /* ERROR|DONE */
void nbd_encode_status_chunk(struct nm_req *req); /* BLOCK_STATUS|DONE */
/* Option reply header (20 bytes). */
void nbd_encode_opt_reply(uint8_t *p, uint32_t opt, uint32_t type, uint32_t len);

/* ---- the server (src/nbd/server.c) ---- */
struct io_engine;
struct disk;
enum nbd_tls { NBD_TLS_OFF, NBD_TLS_ON, NBD_TLS_REQUIRE };
struct tls_creds;
struct nbd_export {
    const char *name;        /* "" is allowed; the empty name always selects it */
    enum nbd_tls tls;        /* STARTTLS: refused, offered, or required */
    const struct tls_creds *tls_creds;
    const char *description; /* may be NULL */
    uint64_t size;
    bool read_only;
    bool (*readable)(void);  /* NULL, or false while reads would be no answer
                              * (a secondary's disk mid-sync): EIO */
    struct disk *disk;
    struct io_engine *io;
};
struct nbd_stats {
    uint64_t connections, clients_now;
    uint64_t reads, writes, flushes, trims, zeroes, block_status, errors;
    uint64_t read_bytes, write_bytes;
    /* from a request's decode to its reply (include/hist.h) */
    struct hist lat_read, lat_write, lat_flush;
};
int nbd_listen(const char *spec); /* "unix:PATH" or "HOST:PORT"; fd or -errno */
int nbd_server_start(const struct nbd_export *exp, int listen_fd);
/* Stop accepting; answer new requests with ESHUTDOWN; flush; close clients. */
void nbd_server_shutdown(void);
bool nbd_server_done(void);   /* true once everything is flushed and closed */
/* A demote: requests on connections that may write fail with ESHUTDOWN, and
 * those connections close once their requests are answered (read-only ones
 * stay). quiesced: they are all gone. resume: writable ones may come again. */
void nbd_server_quiesce(void);
bool nbd_server_quiesced(void);
void nbd_server_resume(void);
void nbd_server_tick(void);   /* once per loop turn, after io_run: sends, resumes, timers */
bool nbd_server_busy(void);   /* work waits for the next turn: do not sleep */
const struct nbd_stats *nbd_server_stats(void);

#endif
