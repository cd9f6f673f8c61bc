/* The other end of a fuzzed connection, shared by the targets that run the
 * daemon's event loop: connects to a Unix socket, sends one input, reads
 * (and drops) the answers, and ends its side once everything the input
 * started is done; the daemon must then close the connection (a hang is
 * what libFuzzer's -timeout catches). */
#ifndef NM_FUZZ_PEER_H
#define NM_FUZZ_PEER_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char fuzz_sock_removed[108];

static void fuzz_sock_remove(void) { unlink(fuzz_sock_removed); }

/* A Unix socket path for the target NAME in $TMPDIR (default /tmp), removed
 * when the fuzzer exits: a test's files stay in its own directory, and
 * repeated runs leave nothing behind. CAP is at most sun_path's size. */
static void fuzz_sock_path(char *path, size_t cap, const char *name)
{
    const char *dir = getenv("TMPDIR");

    int n = snprintf(path, cap, "%s/nbdm-fuzz-%s.%d.sock", dir && *dir ? dir : "/tmp", name,
                     (int)getpid());
    if (n < 0 || (size_t)n >= cap) /* too long for a socket address */
        snprintf(path, cap, "/tmp/nbdm-fuzz-%s.%d.sock", name, (int)getpid());
    snprintf(fuzz_sock_removed, sizeof fuzz_sock_removed, "%s", path);
    atexit(fuzz_sock_remove);
}

/* turn(ms): one turn of the daemon's loop; busy(): work is in flight */
static void fuzz_peer_run(const char *path, const uint8_t *data, size_t size,
                          void (*turn)(int timeout_ms), bool (*busy)(void))
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    size_t off = 0;
    bool shut = false, eof = false;
    unsigned quiet = 0; /* turns with nothing to do, after the last byte went */
    static char sink[65536];

    strncpy(sa.sun_path, path, sizeof sa.sun_path - 1);
    if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof sa) < 0)
        abort();
    fcntl(c, F_SETFL, O_NONBLOCK);
    while (!eof) {
        if (off < size) {
            ssize_t n = send(c, data + off, size - off, MSG_NOSIGNAL);
            if (n > 0)
                off += n;
            else if (n < 0 && errno != EAGAIN)
                off = size; /* closed on us: fine */
        }
        /* all sent: the end of the input once everything it started is
         * done (an end of file now would cut short what is staged) */
        if (off == size && !shut && ++quiet > 3) {
            shutdown(c, SHUT_WR);
            shut = true;
        }
        if (busy())
            quiet = 0;
        turn(shut ? 10 : 0);
        for (;;) {
            ssize_t n = recv(c, sink, sizeof sink, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                eof = true;
                break;
            }
            if (n < 0)
                break;
        }
    }
    close(c);
    /* everything it started finishes before the next input */
    while (busy())
        turn(0);
    turn(0); /* frees what the last turn retired */
}

#endif
