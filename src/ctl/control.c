/* Control socket: one command per connection, answered and closed. The
 * answer (the status record of up to 31 peers) may be larger than the
 * socket's buffer: what one send does not take is sent when the socket is
 * writable again, and the connection is closed only once all is out. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"
#include "ctl.h"

#define CTL_MAX_CLIENTS 16

struct ctl_client {
    struct handler h;
    int fd;
    uint64_t born;
    char cmd[128];
    size_t len;
    char *out;            /* the answer being sent, or NULL while reading */
    size_t out_len, out_off;
};

static int lfd = -1;
static char sock_path[108];
static ctl_answer_fn answer;
static struct handler h_listen;
static struct ctl_client *clients[CTL_MAX_CLIENTS];

static void client_close(struct ctl_client *cl)
{
    for (int i = 0; i < CTL_MAX_CLIENTS; i++)
        if (clients[i] == cl)
            clients[i] = NULL;
    loop_del(cl->fd);
    close(cl->fd);
    free(cl->out);
    free(cl);
}

/* Sends what is left of the answer; closes the connection when all is out
 * or the client is gone, else waits for the socket to take more. */
static void send_answer(struct ctl_client *cl)
{
    while (cl->out_off < cl->out_len) {
        ssize_t n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            cl->out_off += n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (loop_mod(cl->fd, EPOLLOUT, &cl->h) == 0)
                return;
        }
        break; /* the client went away; nothing to tell anyone */
    }
    client_close(cl);
}

static void on_client(struct handler *h, uint32_t ev)
{
    struct ctl_client *cl = (struct ctl_client *)h;
    char *nl;
    ssize_t n;

    (void)ev;
    if (cl->out) {
        send_answer(cl);
        return;
    }
    n = recv(cl->fd, cl->cmd + cl->len, sizeof cl->cmd - 1 - cl->len, MSG_DONTWAIT);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        client_close(cl);
        return;
    }
    cl->len += n;
    cl->cmd[cl->len] = '\0';
    nl = strchr(cl->cmd, '\n');
    if (!nl && cl->len < sizeof cl->cmd - 1)
        return;
    if (nl)
        *nl = '\0';
    cl->out = answer(cl->cmd, &cl->out_len);
    if (!cl->out) {
        client_close(cl);
        return;
    }
    send_answer(cl);
}

static void on_listen(struct handler *h, uint32_t ev)
{
    (void)h, (void)ev;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), slot = -1;
        if (fd < 0)
            return;
        uint64_t now = now_ms();
        for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
            if (clients[i] && now - clients[i]->born > 5000)
                client_close(clients[i]); /* a silent or stalled client loses its place */
            if (!clients[i] && slot < 0)
                slot = i;
        }
        struct ctl_client *cl = slot < 0 ? NULL : calloc(1, sizeof *cl);
        if (!cl) {
            close(fd);
            continue;
        }
        cl->fd = fd;
        cl->born = now;
        cl->h.fn = on_client;
        if (loop_add(fd, EPOLLIN, &cl->h) < 0) {
            close(fd);
            free(cl);
            continue;
        }
        clients[slot] = cl;
    }
}

int ctl_start(const char *path, ctl_answer_fn fn)
{
    char spec[sizeof sock_path + 5];

    if (strlen(path) >= sizeof sock_path)
        return -ENAMETOOLONG;
    snprintf(spec, sizeof spec, "unix:%s", path);
    lfd = net_listen(spec);
    if (lfd < 0)
        return lfd;
    chmod(path, 0600); /* status today, promote/demote tomorrow: root only */
    strcpy(sock_path, path);
    answer = fn;
    h_listen.fn = on_listen;
    return loop_add(lfd, EPOLLIN, &h_listen);
}

void ctl_stop(void)
{
    if (lfd < 0)
        return;
    for (int i = 0; i < CTL_MAX_CLIENTS; i++)
        if (clients[i])
            client_close(clients[i]);
    loop_del(lfd);
    close(lfd);
    unlink(sock_path);
    lfd = -1;
}

int ctl_query(const char *path, const char *cmd, char **out, size_t *len)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t cap = 64u << 10, n = 0;
    char *buf;
    ssize_t r;
    int fd, e = 0;

    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        dprintf(fd, "%s\n", cmd) < 0) {
        e = -errno;
        close(fd);
        return e;
    }
    buf = malloc(cap);
    /* the daemon closes the connection after the whole answer */
    while (buf) {
        if (n + 1 == cap) {
            char *b = cap >= CTL_ANSWER_MAX ? NULL : realloc(buf, cap * 2);
            if (!b) {
                e = cap >= CTL_ANSWER_MAX ? -EFBIG : -ENOMEM;
                break;
            }
            buf = b;
            cap *= 2;
        }
        r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            e = r < 0 ? -errno : 0;
            break;
        }
        n += r;
    }
    close(fd);
    if (!buf)
        return -ENOMEM;
    if (e < 0) {
        free(buf);
        return e;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}
