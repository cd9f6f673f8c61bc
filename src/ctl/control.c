/* Control socket: one command per connection, answered and closed. The
 * report is small (it fits a socket buffer), so one send is enough. */
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
#define REPORT_CAP (64u << 10)

struct ctl_client {
    struct handler h;
    int fd;
    uint64_t born;
    char cmd[128];
    size_t len;
};

static int lfd = -1;
static char sock_path[108];
static ctl_report_fn report;
static struct handler h_listen;
static struct ctl_client *clients[CTL_MAX_CLIENTS];

static void client_close(struct ctl_client *cl)
{
    for (int i = 0; i < CTL_MAX_CLIENTS; i++)
        if (clients[i] == cl)
            clients[i] = NULL;
    loop_del(cl->fd);
    close(cl->fd);
    free(cl);
}

static void on_client(struct handler *h, uint32_t ev)
{
    struct ctl_client *cl = (struct ctl_client *)h;
    ssize_t n = recv(cl->fd, cl->cmd + cl->len, sizeof cl->cmd - 1 - cl->len, MSG_DONTWAIT);
    char *nl, *out;
    size_t len;

    (void)ev;
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
    out = malloc(REPORT_CAP);
    if (out) {
        len = report(cl->cmd, out, REPORT_CAP);
        if (send(cl->fd, out, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            /* the client went away; nothing to tell anyone */
        }
        free(out);
    }
    client_close(cl);
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
                client_close(clients[i]); /* a silent client loses its place */
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

int ctl_start(const char *path, ctl_report_fn fn)
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
    report = fn;
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

int ctl_query(const char *path, const char *cmd)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char buf[4096];
    ssize_t n;
    int fd;

    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        dprintf(fd, "%s\n", cmd) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    while ((n = read(fd, buf, sizeof buf)) > 0)
        fwrite(buf, 1, n, stdout);
    close(fd);
    return n < 0 ? -errno : 0;
}
