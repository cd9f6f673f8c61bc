/* A connected stream socket: staged input handed to a parser, payloads
 * received straight into the user's buffer, a ring of output items sent
 * with one sendmsg, epoll interest kept in step, and one close. */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conn.h"

#define STREAM_IOV 256 /* iovecs per sendmsg */

const char STREAM_EOF[] = "closed by the peer";

static struct stream *dirty; /* queued to since their last flush */

#define TLS_READ_AHEAD (32u << 10) /* tls_pull's: about two records */

static void tls_maybe_begin(struct stream *s);
static void tls_check_pending(struct stream *s);

static bool over_limit(const struct stream *s) { return s->q_limit && s->q_count >= s->q_limit; }

/* the parser may be handed bytes (with TLS, once its handshake is done) */
static bool parsing(const struct stream *s)
{
    return !s->dead && !s->held && !s->linger && !s->connecting && !over_limit(s) &&
           (!s->tls || s->tls_up);
}

static bool tls_handshaking(const struct stream *s) { return s->tls && !s->tls_up; }

static bool want_read(const struct stream *s)
{
    return parsing(s) && (s->pl_on || s->in_end - s->in_start < s->in_cap);
}

static void sync_events(struct stream *s)
{
    if (s->dead)
        return;
    uint32_t ev = (want_read(s) ? EPOLLIN : 0) |
                  (s->connecting || (s->q_count && s->out_waiting) || s->tls_uncork ? EPOLLOUT : 0);
    if (tls_handshaking(s) && !s->tls_begin) /* the handshake says which way */
        ev = s->tls_hs_write ? EPOLLOUT : EPOLLIN;
    if (ev != s->events && loop_mod(s->fd, ev, &s->h) == 0)
        s->events = ev;
}

/* Reports the close once nothing of the layer is on the stack for s. Returns
 * true when s may be gone (the user's on_close may have freed it). */
static bool leave(struct stream *s)
{
    if (--s->depth)
        return s->dead;
    if (s->dead) {
        if (!s->notified) {
            s->notified = true;
            s->ops->on_close(s, s->why_p);
        }
        return true;
    }
    sync_events(s);
    return false;
}

static void mark_dirty(struct stream *s)
{
    if (!s->on_dirty) {
        s->on_dirty = true;
        s->next_dirty = dirty;
        dirty = s;
    }
}

static void undirty(struct stream *s)
{
    for (struct stream **pp = &dirty; *pp; pp = &(*pp)->next_dirty)
        if (*pp == s) {
            *pp = s->next_dirty;
            break;
        }
    s->on_dirty = s->unflushed = s->rx_pending = false;
}

void stream_close(struct stream *s, const char *why)
{
    if (s->dead)
        return;
    s->dead = true;
    if (why == NULL || why == STREAM_EOF || why == s->why) {
        s->why_p = why;
    } else {
        snprintf(s->why, sizeof s->why, "%s", why); /* why may live on the caller's stack */
        s->why_p = s->why;
    }
    if (s->tls) {
        if (s->tls_up && !why)
            gnutls_bye(s->tls, GNUTLS_SHUT_WR); /* a clean close: close_notify, best effort */
        gnutls_deinit(s->tls);
        s->tls = NULL;
    }
    free(s->tls_pre);
    s->tls_pre = NULL;
    loop_del(s->fd);
    close(s->fd);
    s->fd = -1;
    if (s->on_dirty)
        undirty(s);
    s->depth++;
    /* what will never be sent is handed back, oldest first */
    while (s->q_count) {
        struct stream_item *it = &s->q[s->q_head];
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_count--;
        if (it->done)
            it->done(s, it->arg, false);
    }
    s->q_off = s->q_bytes = 0;
    free(s->in);
    free(s->q);
    free(s->blob);
    s->in = NULL;
    s->q = NULL;
    s->blob = NULL;
    s->in_start = s->in_end = 0;
    leave(s);
}

/* Hands staged bytes to the payload or the parser while it takes them. */
static void deliver(struct stream *s)
{
    if (s->delivering)
        return; /* called back from inside: the outer loop goes on */
    s->delivering = true;
    while (parsing(s)) {
        if (s->pl_on) {
            uint32_t avail = s->in_end - s->in_start, want = s->pl_len - s->pl_have;
            uint32_t k = avail < want ? avail : want;
            if (k && s->pl)
                memcpy(s->pl + s->pl_have, s->in + s->in_start, k);
            s->pl_have += k;
            s->in_start += k;
            if (s->pl_have < s->pl_len)
                break;
            s->pl_on = false;
            s->ops->on_payload(s, s->pl, s->pl_len);
            continue;
        }
        if (s->in_start == s->in_end)
            break;
        size_t n = s->ops->on_data(s, s->in + s->in_start, s->in_end - s->in_start);
        if (s->dead)
            break;
        s->in_start += n;
        if (n == 0 && !s->pl_on)
            break; /* it waits for more bytes */
    }
    if (!s->dead && s->in_start == s->in_end)
        s->in_start = s->in_end = 0;
    s->delivering = false;
    if (s->tls_begin)
        tls_maybe_begin(s);
}

/* A fatal TLS error closes the stream, GnuTLS's words as the reason. */
static void tls_fail(struct stream *s, int err)
{
    tls_failure(s->tls, err, s->why, sizeof s->why);
    stream_close(s, s->why);
}

/* recv(), or TLS records once it is up: bytes, 0 at the end, -1 with
 * errno, -2 when TLS failed (the stream is closed) */
static ssize_t get(struct stream *s, void *buf, size_t len)
{
    if (!s->tls)
        return recv(s->fd, buf, len, MSG_DONTWAIT);
    ssize_t n = gnutls_record_recv(s->tls, buf, len);
    if (n >= 0)
        return n;
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
        errno = EAGAIN;
        return -1;
    }
    if (n == GNUTLS_E_PREMATURE_TERMINATION)
        return 0; /* closed without close_notify: an end all the same */
    tls_fail(s, (int)n);
    return -2;
}

/* A few reads per wakeup, straight into the payload when one is due. */
static void pump(struct stream *s)
{
    bool got = false;

    deliver(s);
    /* TLS reads are a record each: as many bytes per wakeup takes more */
    int rounds = s->tls ? 4 * STREAM_ROUNDS : STREAM_ROUNDS;
    for (int round = 0; round < rounds && want_read(s); round++) {
        size_t room;
        ssize_t n;
        bool direct = s->pl_on && s->in_start == s->in_end;
        if (direct) {
            room = s->pl_len - s->pl_have;
            if (s->pl) {
                n = get(s, s->pl + s->pl_have, room);
            } else { /* discarded: the empty staging buffer is scratch */
                room = room < s->in_cap ? room : s->in_cap;
                n = get(s, s->in, room);
            }
        } else {
            if (s->in_start > 0) { /* the unparsed tail to the front */
                memmove(s->in, s->in + s->in_start, s->in_end - s->in_start);
                s->in_end -= s->in_start;
                s->in_start = 0;
            }
            room = s->in_cap - s->in_end;
            n = get(s, s->in + s->in_end, room);
        }
        if (n == 0) {
            stream_close(s, STREAM_EOF);
            return;
        }
        if (n == -2)
            return; /* TLS failed: closed with the reason */
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                stream_close(s, strerror(errno));
            break;
        }
        got = true;
        if (direct)
            s->pl_have += n;
        else
            s->in_end += n;
        deliver(s);
        /* a short read empties the socket, but TLS hands over one record
         * (16 KiB) at a time: there the next read says (EAGAIN) */
        if ((size_t)n < room && !s->tls)
            break; /* the socket is empty for now */
    }
    if (got && !s->dead)
        s->last_rx = now_ms();
    tls_check_pending(s);
}

/* Bytes GnuTLS decrypted but nobody read wake no epoll: read them at the
 * end of this loop turn (stream_flush_dirty), or now that input may go on. */
static void tls_check_pending(struct stream *s)
{
    if (s->tls && s->tls_up && !s->dead &&
        (gnutls_record_check_pending(s->tls) || s->tls_pre_off < s->tls_pre_len)) {
        s->rx_pending = true;
        mark_dirty(s);
    }
}

static void tls_begin(struct stream *s);

/* The handshake begins once nothing is queued in the clear and the parser
 * has returned (what it took is no longer staged). */
static void tls_maybe_begin(struct stream *s)
{
    if (s->tls_begin && !s->dead && !s->q_count && !s->delivering)
        tls_begin(s);
}

/* Hands the head item back (left in full). false if the stream died. */
static bool pop_item(struct stream *s)
{
    struct stream_item *it = &s->q[s->q_head];
    s->q_bytes -= (size_t)it->hdr_len + it->data_len;
    s->q_head = (s->q_head + 1) % s->q_cap;
    s->q_count--;
    if (it->done)
        it->done(s, it->arg, true);
    return !s->dead;
}

/* Bytes corked into records before they go: what GnuTLS holds per
 * connection (a 64 MiB read reply goes in pieces, not in one copy). */
#define TLS_BATCH (256u << 10)

/* TLS: items are copied into records (corked, so many small ones share a
 * record and a send), then the records go; what the socket does not take
 * now waits for EPOLLOUT. false: stop (waiting, or dead). */
static bool tls_flush(struct stream *s)
{
    if (s->tls_uncork) {
        int r = gnutls_record_uncork(s->tls, 0);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            return false;
        s->tls_uncork = false;
        if (r < 0) {
            tls_fail(s, r);
            return false;
        }
        s->last_tx = now_ms();
    }
    if (!s->q_count)
        return false;
    size_t corked = 0;
    gnutls_record_cork(s->tls);
    while (s->q_count && corked < TLS_BATCH) {
        const struct stream_item *it = &s->q[s->q_head];
        size_t total = (size_t)it->hdr_len + it->data_len, off = s->q_off;
        ssize_t r = 0;
        if (off < it->hdr_len) {
            r = gnutls_record_send(s->tls, it->hdr + off, it->hdr_len - off);
            off = it->hdr_len;
        }
        if (r >= 0 && off < total) { /* as much as this batch has room for */
            size_t n = total - off, room = TLS_BATCH - corked;
            n = n < room ? n : room;
            r = gnutls_record_send(s->tls, it->data + (off - it->hdr_len), n);
            off += n;
        }
        if (r < 0) {
            tls_fail(s, (int)r);
            return false;
        }
        corked += off - s->q_off;
        s->q_off = off;
        if (off < total)
            break; /* the rest of this item in the next batch */
        s->q_off = 0;
        if (!pop_item(s)) /* copied into records: the buffer is free */
            return false;
    }
    int r = gnutls_record_uncork(s->tls, 0);
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
        s->tls_uncork = true; /* the rest when the socket has room */
        return false;
    }
    if (r < 0) {
        tls_fail(s, r);
        return false;
    }
    s->last_tx = now_ms();
    return true;
}

static void flush(struct stream *s)
{
    bool was_over = over_limit(s);

    s->unflushed = false;
    if (tls_handshaking(s) && !s->tls_begin)
        return; /* nothing more in the clear; the rest after the handshake */
    if (s->tls && s->tls_up) {
        while (!s->dead && tls_flush(s))
            ;
        if (s->dead)
            return;
        s->out_waiting = s->tls_uncork;
        goto done;
    }
    while (!s->dead && !s->connecting && s->q_count) {
        struct iovec iov[STREAM_IOV];
        int k = 0;
        size_t skip = s->q_off, batch = 0;
        for (unsigned i = 0; i < s->q_count && k < STREAM_IOV - 1; i++) {
            const struct stream_item *it = &s->q[(s->q_head + i) % s->q_cap];
            if (skip < it->hdr_len) {
                iov[k++] = (struct iovec){ (void *)(it->hdr + skip), it->hdr_len - skip };
                batch += it->hdr_len - skip;
                skip = 0;
            } else {
                skip -= it->hdr_len;
            }
            if (it->data_len) {
                iov[k++] = (struct iovec){ (void *)(it->data + skip), it->data_len - skip };
                batch += it->data_len - skip;
            }
            skip = 0;
        }
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = k };
        ssize_t n = sendmsg(s->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                s->out_waiting = true;
            else
                stream_close(s, strerror(errno));
            break;
        }
        s->last_tx = now_ms();
        size_t left = s->q_off + n;
        while (s->q_count) {
            struct stream_item *it = &s->q[s->q_head];
            size_t sz = (size_t)it->hdr_len + it->data_len;
            if (left < sz)
                break;
            left -= sz;
            if (!pop_item(s))
                return;
        }
        s->q_off = left;
        if ((size_t)n < batch) {
            s->out_waiting = true; /* the socket is full: EPOLLOUT says when to go on */
            break;
        }
    }
    if (s->dead)
        return;
    if (s->tls_begin) {
        tls_maybe_begin(s); /* the last reply in the clear may have left */
        return;
    }
done:
    if (!s->q_count && !s->tls_uncork) {
        s->out_waiting = false;
        if (s->linger) {
            stream_close(s, NULL);
            return;
        }
    }
    if (was_over && !over_limit(s)) {
        deliver(s); /* input waited for the queue to shrink */
        tls_check_pending(s);
    }
}

void stream_flush(struct stream *s)
{
    if (s->dead)
        return;
    s->depth++;
    flush(s);
    leave(s);
}

void stream_flush_dirty(void)
{
    while (dirty) {
        struct stream *s = dirty;
        dirty = s->next_dirty;
        s->on_dirty = false;
        if (s->rx_pending && !s->dead) {
            s->rx_pending = false;
            s->depth++;
            if (want_read(s))
                pump(s); /* else held: stream_unhold reads them */
            leave(s);
        }
        if (s->unflushed)
            stream_flush(s);
    }
}

bool stream_any_dirty(void) { return dirty != NULL; }

/* ---- TLS: the transport under GnuTLS, and the handshake ---- */

/* GnuTLS reads a record's 5-byte header, then its body: two recv calls a
 * record. Once up, one recv takes what is there (up to 32 KiB) and the
 * rest is served from it. Bytes staged before the handshake come first. */
static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
    struct stream *s = p;
    if (s->tls_pre_off == s->tls_pre_len && s->tls_up && len < TLS_READ_AHEAD) {
        if (!s->tls_pre && !(s->tls_pre = malloc(TLS_READ_AHEAD))) {
            gnutls_transport_set_errno(s->tls, ENOMEM);
            return -1;
        }
        ssize_t n = recv(s->fd, s->tls_pre, TLS_READ_AHEAD, MSG_DONTWAIT);
        if (n <= 0) {
            if (n < 0)
                gnutls_transport_set_errno(s->tls, errno);
            return n;
        }
        s->tls_pre_len = n;
        s->tls_pre_off = 0;
    }
    if (s->tls_pre_off < s->tls_pre_len) {
        size_t n = s->tls_pre_len - s->tls_pre_off < len ? s->tls_pre_len - s->tls_pre_off : len;
        memcpy(buf, s->tls_pre + s->tls_pre_off, n);
        s->tls_pre_off += n;
        return n;
    }
    ssize_t n = recv(s->fd, buf, len, MSG_DONTWAIT);
    if (n < 0)
        gnutls_transport_set_errno(s->tls, errno);
    return n;
}

static ssize_t tls_push(gnutls_transport_ptr_t p, const giovec_t *iov, int iovcnt)
{
    struct stream *s = p;
    struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt };
    ssize_t n = sendmsg(s->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0)
        gnutls_transport_set_errno(s->tls, errno);
    return n;
}

static void tls_step(struct stream *s)
{
    int r = gnutls_handshake(s->tls);
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED ||
        (r < 0 && !gnutls_error_is_fatal(r))) {
        s->tls_hs_write = gnutls_record_get_direction(s->tls) == 1;
        return;
    }
    if (r == GNUTLS_E_PREMATURE_TERMINATION) { /* the other end left: the owner says why */
        stream_close(s, STREAM_EOF);
        return;
    }
    if (r < 0) {
        /* best effort: the other end logs why too (a bad certificate, not
         * a connection that merely broke) */
        gnutls_alert_send_appropriate(s->tls, r);
        tls_fail(s, r);
        return;
    }
    s->tls_up = true; /* (tls_pre: what is left of it is still to be read) */
    s->last_rx = s->last_tx = now_ms();
    if (s->ops->on_secure)
        s->ops->on_secure(s);
    if (!s->dead) {
        deliver(s);
        if (s->q_count)
            flush(s);
    }
}

/* Everything in the clear has left: the bytes staged so far are the
 * handshake's (a client may send its hello right behind STARTTLS). */
static void tls_begin(struct stream *s)
{
    uint32_t n = s->in_end - s->in_start;
    s->tls_begin = false;
    if (n) {
        /* (the same buffer is tls_pull's read-ahead later) */
        if (!(s->tls_pre = malloc(n > TLS_READ_AHEAD ? n : TLS_READ_AHEAD))) {
            stream_close(s, "out of memory");
            return;
        }
        memcpy(s->tls_pre, s->in + s->in_start, n);
        s->tls_pre_len = n;
    }
    s->in_start = s->in_end = 0;
    gnutls_transport_set_ptr(s->tls, s);
    gnutls_transport_set_pull_function(s->tls, tls_pull);
    gnutls_transport_set_vec_push_function(s->tls, tls_push);
    tls_step(s);
}

int stream_start_tls(struct stream *s, const struct tls_creds *c, bool server)
{
    const char *why;
    if (s->dead || s->tls)
        return -EINVAL;
    int r = tls_session_new(&s->tls, c, server, &why);
    if (r < 0) {
        stream_close(s, why);
        return r;
    }
    s->tls_creds = c;
    s->tls_up = false;
    s->tls_begin = true;
    s->depth++;
    tls_maybe_begin(s); /* else once the queue is out, or the parser returned */
    leave(s);
    return 0;
}

static void on_event(struct handler *h, uint32_t ev)
{
    struct stream *s = (struct stream *)h;

    if (s->dead)
        return; /* closed earlier in this epoll batch */
    s->depth++;
    if (tls_handshaking(s) && !s->tls_begin && !s->connecting) {
        tls_step(s);
        if (s->dead || !s->tls_up)
            goto out;
    }
    if (s->connecting) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err) {
            stream_close(s, strerror(err));
            goto out;
        }
        if (!(ev & (EPOLLOUT | EPOLLIN)))
            goto out;
        s->connecting = false;
        s->last_rx = s->last_tx = now_ms();
        if (s->ops->on_connected)
            s->ops->on_connected(s);
    }
    if (!s->dead && (ev & EPOLLOUT))
        flush(s);
    if (!s->dead && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        if (want_read(s)) {
            pump(s);
        } else if (ev & (EPOLLHUP | EPOLLERR)) {
            /* gone both ways while input waits: nothing can be delivered */
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            stream_close(s, err ? strerror(err) : STREAM_EOF);
        }
    }
    if (!s->dead && s->unflushed)
        flush(s); /* what this wakeup produced goes now */
out:
    leave(s);
}

int stream_init(struct stream *s, int fd, const char *peer, const struct stream_ops *ops,
                void *arg, uint32_t in_cap, unsigned q_cap, unsigned q_limit, bool connecting)
{
    int r;

    memset(s, 0, sizeof *s);
    s->fd = fd;
    s->ops = ops;
    s->arg = arg;
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    s->in_cap = in_cap;
    s->q_cap = q_cap;
    s->q_limit = q_limit;
    s->connecting = connecting;
    s->last_rx = s->last_tx = now_ms();
    s->h.fn = on_event;
    s->in = malloc(in_cap);
    s->q = malloc(q_cap * sizeof *s->q);
    if (!s->in || !s->q || !q_cap || !in_cap) {
        r = -ENOMEM;
        goto fail;
    }
    s->events = connecting ? EPOLLOUT : EPOLLIN;
    if ((r = loop_add(fd, s->events, &s->h)) < 0)
        goto fail;
    return 0;
fail:
    free(s->in);
    free(s->q);
    s->in = NULL;
    s->q = NULL;
    close(fd);
    s->fd = -1;
    s->dead = s->notified = true; /* never open: no on_close */
    return r;
}

void stream_close_when_sent(struct stream *s)
{
    if (s->dead)
        return;
    s->linger = true;
    if (!s->q_count) {
        stream_close(s, NULL);
        return;
    }
    if (!s->depth)
        sync_events(s);
}

void stream_recv_into(struct stream *s, void *buf, uint32_t len)
{
    s->pl = buf;
    s->pl_len = len;
    s->pl_have = 0;
    s->pl_on = true;
}

void stream_hold(struct stream *s)
{
    s->held = true;
    if (!s->depth)
        sync_events(s);
}

void stream_unhold(struct stream *s)
{
    if (s->dead)
        return;
    s->held = false;
    s->depth++;
    deliver(s); /* what is staged first; epoll says when more can be read */
    /* ... except what TLS already decrypted: no event will say it is there */
    tls_check_pending(s);
    leave(s);
}

int stream_queue(struct stream *s, const void *hdr, unsigned hdr_len, const void *data,
                 uint32_t data_len, stream_done_fn done, void *arg)
{
    if (s->dead)
        return -EPIPE;
    if (hdr_len > STREAM_INLINE || hdr_len + data_len == 0)
        return -EINVAL;
    if (s->q_count == s->q_cap)
        return -ENOBUFS;
    struct stream_item *it = &s->q[(s->q_head + s->q_count++) % s->q_cap];
    if (hdr_len) /* hdr may be NULL then: memcpy must not see it */
        memcpy(it->hdr, hdr, hdr_len);
    it->hdr_len = hdr_len;
    it->data = data;
    it->data_len = data_len;
    it->done = done;
    it->arg = arg;
    s->q_bytes += hdr_len + data_len;
    if (!s->unflushed) {
        s->unflushed = true;
        mark_dirty(s);
    }
    return 0;
}

static void blob_done(struct stream *s, void *arg, bool sent)
{
    (void)arg, (void)sent;
    if (--s->blob_items == 0) {
        s->blob_used = 0; /* all sent: the buffer starts over */
        if (s->blob_drop) {
            free(s->blob);
            s->blob = NULL;
        }
    }
}

void stream_drop_blob(struct stream *s)
{
    s->blob_drop = true;
    if (!s->blob_items) {
        free(s->blob);
        s->blob = NULL;
    }
}

void stream_set_limit(struct stream *s, unsigned q_limit)
{
    bool was_over = over_limit(s);

    s->q_limit = q_limit;
    if (s->dead || s->depth)
        return; /* the layer call on the stack picks it up */
    s->depth++;
    if (was_over && !over_limit(s))
        deliver(s);
    leave(s);
}

uint32_t stream_write_room(const struct stream *s)
{
    return s->blob_items ? STREAM_BLOB_CAP - s->blob_used : STREAM_BLOB_CAP;
}

int stream_write(struct stream *s, const void *p, uint32_t len)
{
    if (s->dead)
        return -EPIPE;
    if (len <= STREAM_INLINE)
        return stream_queue(s, p, len, NULL, 0, NULL, NULL);
    if (len > stream_write_room(s))
        return -ENOBUFS;
    if (!s->blob && !(s->blob = malloc(STREAM_BLOB_CAP)))
        return -ENOMEM;
    if (!s->blob_items)
        s->blob_used = 0;
    uint8_t *dst = s->blob + s->blob_used;
    memcpy(dst, p, len);
    int r = stream_queue(s, NULL, 0, dst, len, blob_done, NULL);
    if (r == 0) {
        s->blob_used += len;
        s->blob_items++;
    }
    return r;
}

uint64_t stream_backlog(const struct stream *s)
{
    int n = 0;
    /* what the kernel holds too: a frame queued now waits behind all of it */
    if (s->fd >= 0 && ioctl(s->fd, SIOCOUTQ, &n) < 0)
        n = 0;
    return s->q_bytes + (n > 0 ? (uint64_t)n : 0);
}
