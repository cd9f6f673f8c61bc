/* Connections and shutdown of the NBD front end. Listening, reading and
 * sending are the connection layer's (src/conn). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd-int.h"

#define MAX_CONNS 1024
#define SHUTDOWN_GRACE_MS 5000

struct server srv = { .ls = { .fd = -1 } };
static char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

const struct nbd_stats *nbd_server_stats(void) { return &srv.stats; }

uint16_t export_flags(const struct conn *c)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 /* one process, one disk, FLUSH syncs it all: multi-conn is safe */
                 NBD_FLAG_CAN_MULTI_CONN;
    if (srv.exp->read_only)
        f |= NBD_FLAG_READ_ONLY;
    else
        f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    if (c->structured)
        f |= NBD_FLAG_SEND_DF; /* reads are always one chunk */
    return f;
}

int nbd_listen(const char *spec)
{
    int fd = net_listen(spec);
    if (fd >= 0 && !strncmp(spec, "unix:", 5))
        snprintf(unix_path, sizeof unix_path, "%s", spec + 5); /* unlinked at shutdown */
    return fd;
}

void conn_out(struct conn *c, const void *p, uint32_t len)
{
    /* options wait while replies are unsent (hs_data), so only a client
     * that reads none of them can fill the stream's buffer */
    if (stream_write(&c->s, p, len) < 0)
        conn_kill(c, "client does not read option replies");
}

void conn_kill(struct conn *c, const char *why) { stream_close(&c->s, why); }

void conn_pause(struct conn *c)
{
    c->paused = true;
    stream_hold(&c->s);
}

/* The stream closed: every queued reply was handed back (req_replied). */
static void conn_closed(struct stream *s, const char *why)
{
    struct conn *c = s->arg;

    if (why == STREAM_EOF) {
        if (s->tls_creds && !s->tls_up) /* a client that rejects our certificate just leaves */
            why = "client left during the TLS handshake (does it trust our CA?)";
        else if (c->rd || s->pl_on)
            why = "client disconnected in the middle of a request";
        else if (c->closing || c->paused || (c->state == CS_TRANSMIT && !c->inflight))
            why = NULL; /* after DISC, or while we did not read: nothing lost */
        else
            why = "client disconnected";
    }
    if (why)
        log_warn("client %s: %s; closing the connection", s->peer, why);
    if (c->state == CS_TRANSMIT)
        srv.stats.clients_now--;
    if (c->rd) {
        req_release(c->rd); /* never submitted: nothing else holds it */
        c->rd = NULL;
    }
    /* slots still in the io engine come back through req_release later */
}

static size_t conn_data(struct stream *s, uint8_t *p, size_t len)
{
    struct conn *c = s->arg;
    return c->state == CS_TRANSMIT ? tx_data(c, p, len) : hs_data(c, p, len);
}

static void conn_payload(struct stream *s, void *buf, uint32_t len)
{
    (void)buf, (void)len;
    tx_payload(s->arg);
}

static void conn_secure(struct stream *s)
{
    char d[128];
    tls_describe(s->tls, d, sizeof d);
    log_info("client %s: TLS (%s) %s", s->peer,
             tls_creds_are_psk(srv.exp->tls_creds) ? "pre-shared key" : "X.509", d);
}

static const struct stream_ops conn_ops = { .on_data = conn_data, .on_payload = conn_payload,
                                            .on_secure = conn_secure,
                                            .on_close = conn_closed };

static void conn_free(struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        srv.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv.nconns--;
    loop_free_later(c);
}

static void on_accept(struct listener *ls, int fd, const char *peer)
{
    struct conn *c;

    (void)ls;
    if (srv.nconns >= MAX_CONNS) {
        /* full: the stranger silent longest in its handshake makes room,
         * so idle connections cannot lock real clients out */
        struct conn *oldest = NULL;
        for (struct conn *o = srv.conns; o; o = o->next)
            if (!o->s.dead && o->state != CS_TRANSMIT && (!oldest || o->born_ms < oldest->born_ms))
                oldest = o;
        if (oldest) {
            conn_kill(oldest, "handshake not completed; its place is needed");
            if (oldest->inflight == 0)
                conn_free(oldest);
        }
    }
    if (srv.nconns >= MAX_CONNS || !(c = calloc(1, sizeof *c))) {
        close(fd); /* bounded memory beats one more client */
        return;
    }
    /* options wait while HS_QUEUED replies are unsent; replies do not */
    if (stream_init(&c->s, fd, peer, &conn_ops, c, IN_CAP, CONN_QUEUE, HS_QUEUED, false) < 0) {
        free(c);
        return;
    }
    c->born_ms = now_ms();
    for (int i = CONN_SLOTS - 1; i >= 0; i--) {
        c->slots[i].next = c->free_slots;
        c->free_slots = &c->slots[i];
    }
    c->next = srv.conns;
    if (srv.conns)
        srv.conns->prev = c;
    srv.conns = c;
    srv.nconns++;
    srv.stats.connections++;
    hs_start(c);
}

int nbd_server_start(const struct nbd_export *exp, int listen_fd)
{
    srv.exp = exp;
    /* O_DIRECT: a partial block is a read-modify-write somewhere, so writes
     * sharing a block (or a page) are treated as overlapping */
    req_conflict_init(exp->disk->direct ? (exp->disk->align > 4096 ? exp->disk->align : 4096) : 1);
    return listener_adopt(&srv.ls, listen_fd, unix_path[0] ? unix_path : NULL, on_accept, NULL);
}

/* During shutdown (or a demote, for connections that may write): a
 * connection with nothing in flight closes once what is queued has left;
 * after the grace period every one closes. */
static void shutdown_sweep(uint64_t now)
{
    for (struct conn *c = srv.conns; c; c = c->next) {
        if (c->s.dead || (!srv.shutting_down && !c->writable))
            continue;
        if (now > srv.shutdown_deadline)
            conn_kill(c, "shutdown grace period over");
        else if (c->inflight == 0 && !c->rd && !c->s.pl_on)
            stream_close_when_sent(&c->s);
    }
}

void nbd_server_shutdown(void)
{
    if (srv.shutting_down)
        return;
    srv.shutting_down = true;
    srv.shutdown_deadline = now_ms() + SHUTDOWN_GRACE_MS;
    listener_close(&srv.ls); /* unlinks a Unix socket */
    for (struct conn *c = srv.conns; c; c = c->next)
        if (c->state != CS_TRANSMIT)
            conn_kill(c, NULL);
    shutdown_sweep(now_ms());
}

void nbd_server_quiesce(void)
{
    if (srv.quiescing || srv.shutting_down)
        return;
    srv.quiescing = true;
    srv.shutdown_deadline = now_ms() + SHUTDOWN_GRACE_MS;
    shutdown_sweep(now_ms());
}

bool nbd_server_quiesced(void)
{
    for (struct conn *c = srv.conns; c; c = c->next)
        if (c->writable && (!c->s.dead || c->inflight))
            return false;
    return true;
}

void nbd_server_resume(void) { srv.quiescing = false; }

bool nbd_server_busy(void) { return srv.resume_all || req_busy(); }

/* Done: every connection closed, and what is left of their requests waits
 * only for peers (a send queue behind a slow link, an ack). The node's stop
 * marks those writes for the peers that lack them, so a slow link cannot
 * hold a stop for minutes. A reply still due is waited for until the grace
 * period is over; a local write in flight always is. */
bool nbd_server_done(void)
{
    if (!srv.shutting_down)
        return false;
    bool grace_over = now_ms() > srv.shutdown_deadline;
    for (struct conn *c = srv.conns; c; c = c->next) {
        if (!c->s.dead)
            return false;
        for (unsigned i = 0; i < CONN_SLOTS && c->inflight; i++) {
            const struct nm_req *r = &c->slots[i];
            if (r->conn != c || r->released)
                continue; /* free */
            if (r->local_pending || c->rd == r ||
                (!grace_over && (!r->completed || r->front_holds)))
                return false;
        }
    }
    return true;
}

void nbd_server_tick(void)
{
    uint64_t now = now_ms();

    /* Writes that waited for an overlapping one try again. */
    req_tick();
    /* Connections that were waiting for slots or buffers try again: what
     * is staged first, then the socket (epoll says when). */
    if (srv.resume_all) {
        srv.resume_all = false;
        for (struct conn *c = srv.conns; c; c = c->next) {
            if (c->paused && !c->s.dead && !c->closing) {
                c->paused = false;
                stream_unhold(&c->s);
            }
        }
    }
    if (srv.shutting_down || srv.quiescing)
        shutdown_sweep(now);
    if (now - srv.last_sweep >= 1000) {
        srv.last_sweep = now;
        for (struct conn *c = srv.conns; c; c = c->next)
            if (!c->s.dead && c->state != CS_TRANSMIT && now - c->born_ms > HANDSHAKE_TIMEOUT_MS)
                conn_kill(c, "handshake timed out");
    }
    /* Free connections whose last request has left the io engine. */
    for (struct conn *c = srv.conns, *next; c; c = next) {
        next = c->next;
        if (c->s.dead && c->inflight == 0)
            conn_free(c);
    }
}
