/* systemd's readiness protocol (sd_notify(3)) without libsystemd: one
 * datagram of "KEY=VALUE" lines to $NOTIFY_SOCKET, a path or, with a
 * leading '@', an abstract socket. Nothing happens outside systemd. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"

int notify_service(const char *text)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t pl;
    int fd, r = 0;

    if (!path || !*path)
        return 0;
    pl = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || pl >= sizeof sa.sun_path)
        return -EINVAL;
    memcpy(sa.sun_path, path, pl);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (sendto(fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               offsetof(struct sockaddr_un, sun_path) + pl) < 0)
        r = -errno;
    close(fd);
    return r;
}
