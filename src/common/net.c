/* Socket addresses: "unix:PATH" or "HOST:PORT" / "[V6]:PORT", for listening
 * and (non-blocking) connecting. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"

/* Connections the kernel holds before we accept them: the system's maximum
 * (listen() clamps any larger value to net.core.somaxconn, 4096 on current
 * Linux), so a burst of clients is not refused with EAGAIN (Unix) or
 * dropped SYNs (TCP) while the loop is busy; 128 was too few. */
#define BACKLOG INT_MAX

static int resolve(const char *spec, bool passive, struct addrinfo **ai)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0 };
    const char *colon = strrchr(spec, ':');
    char host[256];
    size_t hl;

    if (!colon || colon[1] == '\0' || (hl = colon - spec) >= sizeof host)
        return -EINVAL;
    /* getaddrinfo takes a number past 65535 modulo 65536 (99999 is 34463) */
    if (strspn(colon + 1, "0123456789") == strlen(colon + 1) &&
        strtoul(colon + 1, NULL, 10) > 65535)
        return -EINVAL;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* [v6]:port */
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    return getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, ai) ? -EINVAL : 0;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    /* a socket left by a killed server is ours to replace; a live one, or
     * anything that is not a socket, is not */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0)
            close(probe);
        if (live)
            return -EADDRINUSE;
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, BACKLOG) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int net_listen(const char *spec)
{
    struct addrinfo *ai;
    int fd, one = 1, r;

    if (!strncmp(spec, "unix:", 5))
        return listen_unix(spec + 5);
    if ((r = resolve(spec, true, &ai)) < 0)
        return r;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, BACKLOG) < 0) {
        r = -errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return r;
    }
    freeaddrinfo(ai);
    return fd;
}

int net_connect(const char *spec)
{
    struct addrinfo *ai;
    int fd, one = 1, r;

    if ((r = resolve(spec, false, &ai)) < 0)
        return r;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return -errno;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    r = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (r < 0 && errno != EINPROGRESS) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

void net_peer_name(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
    } else {
        snprintf(buf, len, "unix");
        return;
    }
    snprintf(buf, len, ss->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
}
