/* The connection layer: every stream socket (NBD clients, replication links,
 * the control socket) is listened for, dialled, read and written here.
 *
 *  - listener: a listening socket; accepts up to a bound per wakeup, names
 *    the peer ("HOST:PORT", "[V6]:PORT", or "unix#N") and hands fd + name on.
 *  - dialer: when to try a connect again (100 ms doubling to 5 s).
 *  - stream: one connected socket. Input is staged in a buffer and handed
 *    to the user's parser (on_data), which says how many bytes it took; it
 *    can ask for a payload to be received straight into its own buffer
 *    (stream_recv_into). Output is a ring of items (inline header bytes +
 *    an optional payload pointer + a completion callback) flushed with one
 *    sendmsg. epoll interest follows the state: read while the parser may
 *    take more, write only while output is queued.
 *
 * Callbacks of a stream never see it freed under them: a close from inside
 * one is reported (on_close) when the outermost layer call returns. The
 * memory of a stream belongs to its user; free it with loop_free_later()
 * (an event for it may still be waiting in the current epoll batch). */
#ifndef NM_CONN_H
#define NM_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define STREAM_INLINE    48         /* header bytes copied into an item */
#define STREAM_BLOB_CAP  (64u << 10) /* bytes of stream_write() not yet sent */
#define STREAM_ROUNDS    8          /* reads per wakeup: a busy peer cannot starve others */
#define LISTEN_BURST     64         /* accepts per wakeup */
#define DIAL_MIN_MS      100
#define DIAL_MAX_MS      5000

/* ---- listening ---- */
struct listener;
/* fd is non-blocking, close-on-exec, TCP_NODELAY on TCP; the callback owns it. */
typedef void (*listener_fn)(struct listener *ls, int fd, const char *peer);
struct listener {
    struct handler h;
    int fd;
    listener_fn fn;
    void *arg;                /* the user's */
    uint64_t unix_count;      /* names unix peers "unix#N" */
    char unix_path[108];      /* unlinked by listener_close */
};
/* spec: "unix:PATH", "HOST:PORT", "[V6]:PORT". 0 or -errno. */
int listener_open(struct listener *ls, const char *spec, listener_fn fn, void *arg);
/* The same for a socket that already listens (unix_path may be NULL). */
int listener_adopt(struct listener *ls, int fd, const char *unix_path, listener_fn fn, void *arg);
void listener_close(struct listener *ls);

/* ---- dialling with backoff ---- */
struct dialer {
    uint64_t backoff_ms, next_try;
};
void dialer_init(struct dialer *d);
bool dialer_due(const struct dialer *d, uint64_t now);
/* Starts a non-blocking connect (finish it with stream_init(..., true)) and
 * schedules the next try after the backoff, which doubles up to 5 s.
 * Returns the fd or -errno. */
int dialer_connect(struct dialer *d, const char *spec, uint64_t now);
void dialer_lost(struct dialer *d, uint64_t now);  /* a link ended: wait the backoff */
void dialer_reset(struct dialer *d);               /* a link worked: back to 100 ms */
void dialer_slow(struct dialer *d, uint64_t now);  /* retry at the slowest pace */

/* ---- streams ---- */
struct stream;
/* A queued item left the socket entirely (sent) or was dropped at close. */
typedef void (*stream_done_fn)(struct stream *s, void *arg, bool sent);

struct stream_ops {
    /* bytes p[0..len) are staged; returns how many it consumed (0: wait
     * for more). Called again while it consumes and bytes remain. */
    size_t (*on_data)(struct stream *s, uint8_t *p, size_t len);
    /* the payload asked for with stream_recv_into has fully arrived */
    void (*on_payload)(struct stream *s, void *buf, uint32_t len);
    /* a dialled stream is connected (optional) */
    void (*on_connected)(struct stream *s);
    /* the TLS handshake started by stream_start_tls completed (optional; a
     * failed one closes the stream with the reason) */
    void (*on_secure)(struct stream *s);
    /* closed, once: why is the reason (NULL: closed by us without one,
     * STREAM_EOF: by the peer); s->connecting tells a failed connect. The
     * fd is closed and every queued item completed (sent=false) by now. */
    void (*on_close)(struct stream *s, const char *why);
};

extern const char STREAM_EOF[];

struct stream_item {
    uint8_t hdr[STREAM_INLINE];
    uint8_t hdr_len;
    uint32_t data_len;
    const uint8_t *data;
    stream_done_fn done;
    void *arg;
};

struct stream {
    struct handler h;
    int fd;
    const struct stream_ops *ops;
    void *arg;                  /* the user's */
    char peer[128];
    /* read-only for users */
    bool dead, connecting, held, linger, notified, delivering;
    uint32_t events;            /* what epoll watches now */
    unsigned depth;             /* layer calls on the stack (deferred on_close) */
    uint64_t last_rx, last_tx;  /* now_ms() of the last bytes in / out */
    /* input */
    uint8_t *in;
    uint32_t in_cap, in_start, in_end;
    uint8_t *pl;                /* payload target (NULL with pl_len: discard) */
    uint32_t pl_len, pl_have;
    bool pl_on;
    /* output */
    struct stream_item *q;
    unsigned q_cap, q_head, q_count, q_limit;
    size_t q_off;               /* bytes of the head item already sent */
    uint64_t q_bytes;           /* bytes queued, not yet sent */
    uint8_t *blob;
    uint32_t blob_used, blob_items;
    bool blob_drop;             /* free the blob once its bytes are sent */
    bool out_waiting;           /* a flush left bytes: EPOLLOUT wanted */
    bool unflushed;             /* queued to since the last flush */
    struct stream *next_dirty;
    bool on_dirty;
    const char *why_p;          /* the close reason handed to on_close */
    char why[160];
    /* TLS (stream_start_tls): a GnuTLS session, its handshake, its record
     * layer in place of recv/sendmsg */
    void *tls;
    const struct tls_creds *tls_creds;
    bool tls_begin, tls_up, tls_uncork, tls_hs_write;
    bool rx_pending;            /* decrypted input waits: read it this loop turn */
    uint8_t *tls_pre;           /* bytes read, not yet handed to GnuTLS: those
                                 * that came before the handshake, then a
                                 * read-ahead (tls_pull) */
    uint32_t tls_pre_len, tls_pre_off;
};

/* Takes fd (closed on failure). in_cap: staging bytes; q_cap: items;
 * q_limit: input waits while this many items are queued (0: no limit).
 * connecting: a dial in progress, completed on writability. 0 or -errno. */
int stream_init(struct stream *s, int fd, const char *peer, const struct stream_ops *ops,
                void *arg, uint32_t in_cap, unsigned q_cap, unsigned q_limit, bool connecting);
/* Closes now: discards the queue, then on_close (deferred inside a callback). */
void stream_close(struct stream *s, const char *why);
/* Reads no more; closes once the queue has left. */
void stream_close_when_sent(struct stream *s);

/* From on_data: the next len bytes after what it consumes go to buf (NULL:
 * discarded); on_payload follows when they are all there. */
void stream_recv_into(struct stream *s, void *buf, uint32_t len);
/* Input waits (no reads, no on_data) until stream_unhold, which parses what
 * is staged and reads again. */
void stream_hold(struct stream *s);
void stream_unhold(struct stream *s);

/* Queues hdr (copied) + data (not copied: it must stay until done runs).
 * 0, -ENOBUFS (ring full), -EINVAL (header too long), -EPIPE (closed); on
 * error done is not called. Sent by stream_flush / stream_flush_dirty. */
int stream_queue(struct stream *s, const void *hdr, unsigned hdr_len, const void *data,
                 uint32_t data_len, stream_done_fn done, void *arg);
/* Queues a copy of any small blob (handshake replies, HELLO). */
int stream_write(struct stream *s, const void *p, uint32_t len);
uint32_t stream_write_room(const struct stream *s);
/* Few stream_write() calls are expected from now on (a handshake is over):
 * the blob buffer is freed once its bytes have left (a later write
 * allocates it again). */
void stream_drop_blob(struct stream *s);
/* Changes q_limit (input waits while this many items are queued; 0: never). */
void stream_set_limit(struct stream *s, unsigned q_limit);
/* One sendmsg (more only while whole batches go); the rest waits for EPOLLOUT. */
void stream_flush(struct stream *s);
/* Flushes every stream queued to since the last flush: once per loop turn. */
void stream_flush_dirty(void);
bool stream_any_dirty(void);

/* Bytes queued here plus those the socket has not had acknowledged yet. */
uint64_t stream_backlog(const struct stream *s);
static inline unsigned stream_queued(const struct stream *s) { return s->q_count; }

/* ---- TLS (GnuTLS; src/conn/tls.c, the record layer in stream.c) ---- */
struct tls_creds;
/* X.509 from DIR: ca-cert.pem, server-cert.pem, server-key.pem (the layout
 * nbdkit and qemu use), and, for the side that dials, client-cert.pem and
 * client-key.pem if there (else the server's). verify: a server requires
 * the client's certificate; every client checks the server's against the
 * CA. 0, or -errno with err. */
int tls_creds_x509(struct tls_creds **out, const char *dir, bool verify, char *err, size_t len);
/* A pre-shared key, FILE in psktool's format (username:hexkey per line);
 * the first line is the identity used when dialling. */
int tls_creds_psk(struct tls_creds **out, const char *file, char *err, size_t len);
void tls_creds_free(struct tls_creds *c);
bool tls_creds_are_psk(const struct tls_creds *c);
int tls_session_new(void **out, const struct tls_creds *c, bool server, const char **why);
void tls_failure(void *session, int err, char *buf, size_t len); /* a failure, in words */
void tls_describe(void *session, char *buf, size_t len); /* version, key exchange, cipher */
/* TLS on s from now on (server or client side): once every queued item has
 * left in the clear (a STARTTLS reply), the handshake runs; input is not
 * parsed until it is done (on_secure), and everything after goes through
 * TLS. Bytes already staged are the handshake's. 0 or -errno. */
int stream_start_tls(struct stream *s, const struct tls_creds *c, bool server);
static inline uint64_t stream_queued_bytes(const struct stream *s) { return s->q_bytes; }

#endif
