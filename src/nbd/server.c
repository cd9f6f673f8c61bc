/* Listening, connections, sending, and shutdown of the NBD front end. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd-int.h"

#define MAX_CONNS 1024
#define SHUTDOWN_GRACE_MS 5000
#define MAX_IOV 256

struct server srv = { .listen_fd = -1 };
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

void conn_update_events(struct conn *c)
{
    uint32_t ev = 0;

    if (c->dead)
        return;
    if (!c->closing && !c->paused)
        ev |= EPOLLIN;
    if (c->out_len > c->out_off || c->rq_head)
        ev |= EPOLLOUT;
    if (ev != c->events) {
        loop_mod(c->fd, ev, &c->h);
        c->events = ev;
    }
}

void conn_mark_dirty(struct conn *c)
{
    if (!c->on_dirty) {
        c->on_dirty = true;
        c->next_dirty = srv.dirty;
        srv.dirty = c;
    }
}

void conn_out(struct conn *c, const void *p, uint32_t len)
{
    if (c->out_len - c->out_off + len > OUT_CAP) {
        conn_kill(c, "client does not read option replies");
        return;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + len > OUT_CAP) { /* unsent bytes to the front */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    memcpy(c->out + c->out_len, p, len);
    c->out_len += len;
    conn_mark_dirty(c);
}

void conn_kill(struct conn *c, const char *why)
{
    if (c->dead)
        return;
    if (why)
        log_warn("client %s: %s; closing the connection", c->peer, why);
    loop_del(c->fd);
    close(c->fd);
    c->dead = true;
    if (c->state == CS_TRANSMIT)
        srv.stats.clients_now--;
    /* replies nobody will read, and a payload that will never complete */
    while (c->rq_head) {
        struct nm_req *r = c->rq_head;
        c->rq_head = r->next;
        req_replied(r);
    }
    c->rq_tail = NULL;
    if (c->rd) {
        req_release(c->rd); /* never submitted: nothing else holds it */
        c->rd = NULL;
    }
    /* slots still in the io engine come back through req_release later */
}

static void conn_free(struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        srv.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv.nconns--;
    free(c->in);
    free(c->out);
    free(c);
}

/* Sends handshake bytes, then as many queued replies as the socket takes,
 * gathered into one sendmsg. */
static void conn_send(struct conn *c)
{
    while (!c->dead && c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                conn_kill(c, strerror(errno));
            goto out;
        }
        c->out_off += n;
    }
    if (!c->dead && c->out && c->state == CS_TRANSMIT && c->out_off == c->out_len) {
        free(c->out); /* handshake over: replies use the request queue */
        c->out = NULL;
        c->out_off = c->out_len = 0;
    }
    while (!c->dead && c->rq_head) {
        struct iovec iov[MAX_IOV];
        int k = 0;
        size_t skip = c->rq_off;
        for (struct nm_req *r = c->rq_head; r && k < MAX_IOV - 1; r = r->next) {
            if (skip < r->hdr_len) {
                iov[k++] = (struct iovec){ r->hdr + skip, r->hdr_len - skip };
                skip = 0;
            } else {
                skip -= r->hdr_len;
            }
            if (r->buf_len)
                iov[k++] = (struct iovec){ r->buf + skip, r->buf_len - skip };
            skip = 0;
        }
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = k };
        ssize_t n = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                conn_kill(c, strerror(errno));
            break;
        }
        size_t left = c->rq_off + n;
        while (c->rq_head && left >= (size_t)c->rq_head->hdr_len + c->rq_head->buf_len) {
            struct nm_req *r = c->rq_head;
            left -= r->hdr_len + r->buf_len;
            c->rq_head = r->next;
            req_replied(r);
        }
        if (!c->rq_head)
            c->rq_tail = NULL;
        c->rq_off = left;
        if (c->rq_head)
            break; /* partial: wait for EPOLLOUT */
    }
out:
    /* option replies drained: options that waited for room may go on */
    if (!c->dead && c->state != CS_TRANSMIT && c->out_off == c->out_len &&
        c->in_end > c->in_start)
        hs_parse(c);
    if (!c->dead && c->closing && !c->rq_head && c->out_off == c->out_len &&
        c->inflight == 0)
        conn_kill(c, NULL);
    else
        conn_update_events(c);
}

static void on_conn(struct handler *h, uint32_t ev)
{
    struct conn *c = (struct conn *)h;
    int progress;

    if (c->dead)
        return;
    if ((ev & (EPOLLHUP | EPOLLERR)) && (c->closing || c->paused)) {
        conn_kill(c, NULL); /* gone; nothing more can be read or delivered */
        return;
    }
    if (ev & EPOLLOUT)
        conn_send(c);
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) || c->closing || c->paused)
        return;
    /* a few rounds at most, so one busy client cannot starve the others */
    for (int round = 0; round < 8 && !c->dead && !c->closing && !c->paused; round++) {
        if (c->rd || c->drain) {
            tx_read_payload(c, &progress);
            if (c->dead || c->rd || c->drain)
                break;
            if (c->state == CS_TRANSMIT)
                tx_parse(c);
            continue;
        }
        if (c->in_start > 0) { /* keep the unparsed tail at the front */
            memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
            c->in_end -= c->in_start;
            c->in_start = 0;
        }
        uint32_t room = IN_CAP - c->in_end;
        if (room == 0)
            break;
        ssize_t n = recv(c->fd, c->in + c->in_end, room, MSG_DONTWAIT);
        if (n == 0) {
            conn_kill(c, c->state == CS_TRANSMIT && c->in_end == 0 && !c->inflight
                             ? NULL : "client disconnected");
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                conn_kill(c, strerror(errno));
            break;
        }
        c->in_end += n;
        if (c->state == CS_TRANSMIT)
            tx_parse(c);
        else
            hs_parse(c);
        if ((uint32_t)n < room)
            break; /* the socket is empty for now */
    }
}

static void accept_one(int fd, const struct sockaddr_storage *ss)
{
    struct conn *c;
    int one = 1;

    if (srv.nconns >= MAX_CONNS) {
        close(fd); /* bounded memory beats one more client */
        return;
    }
    c = calloc(1, sizeof *c);
    if (!c || !(c->in = malloc(IN_CAP)) || !(c->out = malloc(OUT_CAP))) {
        if (c)
            free(c->in);
        free(c);
        close(fd);
        return;
    }
    c->fd = fd;
    c->h.fn = on_conn;
    c->born_ms = now_ms();
    if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6) {
        char host[INET6_ADDRSTRLEN];
        const void *a = ss->ss_family == AF_INET
                            ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                            : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        uint16_t port = ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                                       : ((const struct sockaddr_in6 *)ss)->sin6_port);
        inet_ntop(ss->ss_family, a, host, sizeof host);
        snprintf(c->peer, sizeof c->peer, "%s:%u", host, port);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    } else {
        snprintf(c->peer, sizeof c->peer, "unix#%llu", (unsigned long long)srv.stats.connections + 1);
    }
    for (int i = CONN_SLOTS - 1; i >= 0; i--) {
        c->slots[i].next = c->free_slots;
        c->free_slots = &c->slots[i];
    }
    c->events = EPOLLIN;
    if (loop_add(fd, EPOLLIN, &c->h) < 0) {
        free(c->in);
        free(c->out);
        free(c);
        close(fd);
        return;
    }
    c->next = srv.conns;
    if (srv.conns)
        srv.conns->prev = c;
    srv.conns = c;
    srv.nconns++;
    srv.stats.connections++;
    hs_start(c);
    conn_send(c);
}

static void on_listen(struct handler *h, uint32_t ev)
{
    (void)h, (void)ev;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(srv.listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        accept_one(fd, &ss);
    }
}

int nbd_server_start(const struct nbd_export *exp, int listen_fd)
{
    srv.exp = exp;
    srv.listen_fd = listen_fd;
    /* O_DIRECT: a partial block is a read-modify-write somewhere, so writes
     * sharing a block (or a page) are treated as overlapping */
    req_conflict_init(exp->disk->direct ? (exp->disk->align > 4096 ? exp->disk->align : 4096) : 1);
    srv.h_listen.fn = on_listen;
    return loop_add(listen_fd, EPOLLIN, &srv.h_listen);
}

void nbd_server_shutdown(void)
{
    if (srv.shutting_down)
        return;
    srv.shutting_down = true;
    srv.shutdown_deadline = now_ms() + SHUTDOWN_GRACE_MS;
    if (srv.listen_fd >= 0) {
        loop_del(srv.listen_fd);
        close(srv.listen_fd);
        srv.listen_fd = -1;
        if (unix_path[0])
            unlink(unix_path);
    }
    for (struct conn *c = srv.conns; c; c = c->next) {
        if (c->state != CS_TRANSMIT)
            conn_kill(c, NULL);
        else
            conn_mark_dirty(c); /* idle ones close at the next tick */
    }
}

bool nbd_server_busy(void) { return srv.dirty || srv.resume_all || req_busy(); }

bool nbd_server_done(void)
{
    return srv.shutting_down && srv.conns == NULL;
}

void nbd_server_tick(void)
{
    uint64_t now = now_ms();

    /* Writes that waited for an overlapping one try again. */
    req_tick();
    /* Connections that were waiting for slots or buffers try again. */
    if (srv.resume_all) {
        srv.resume_all = false;
        for (struct conn *c = srv.conns; c; c = c->next) {
            if (c->paused && !c->dead) {
                c->paused = false;
                tx_parse(c);
                if (!c->paused)
                    on_conn(&c->h, EPOLLIN); /* read what waited in the socket */
            }
        }
    }
    while (srv.dirty) {
        struct conn *c = srv.dirty;
        srv.dirty = c->next_dirty;
        c->on_dirty = false;
        conn_send(c);
    }
    if (srv.shutting_down) {
        for (struct conn *c = srv.conns; c; c = c->next) {
            if (c->dead)
                continue;
            bool idle = c->inflight == 0 && !c->rq_head && !c->rd && !c->drain;
            if (idle || now > srv.shutdown_deadline)
                conn_kill(c, idle ? NULL : "shutdown grace period over");
        }
    }
    if (now - srv.last_sweep >= 1000) {
        srv.last_sweep = now;
        for (struct conn *c = srv.conns; c; c = c->next)
            if (!c->dead && c->state != CS_TRANSMIT && now - c->born_ms > HANDSHAKE_TIMEOUT_MS)
                conn_kill(c, "handshake timed out");
    }
    /* Free connections whose last request has left the io engine. */
    for (struct conn *c = srv.conns, *next; c; c = next) {
        next = c->next;
        if (c->dead && c->inflight == 0)
            conn_free(c);
    }
}
