/* Socket reference figures for bench/repl, measured in the same run as the
 * benchmark they explain:
 *
 *   netbench rtt N            mean round trip, in microseconds, of a 4 KiB
 *                             message over TCP on loopback answered with 32
 *                             bytes (a replicated write and its ack), N times
 *   netbench send N PEERS ZC  sender CPU per MiB (microseconds) sending N MiB
 *                             in 1 MiB messages to each of PEERS receivers on
 *                             loopback, with MSG_ZEROCOPY when ZC is 1
 *
 * Receivers run as threads of this process; CPU is the sending thread's own
 * (RUSAGE_THREAD), so what the receivers spend is not counted. */
#include <errno.h>
#include <time.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* a connected pair over 127.0.0.1: *a the client end, *b the accepted end */
static void tcp_pair(int *a, int *b)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&sa, &len) < 0)
        die("listen");
    *a = socket(AF_INET, SOCK_STREAM, 0);
    if (*a < 0 || connect(*a, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect");
    *b = accept(l, NULL, NULL);
    if (*b < 0)
        die("accept");
    close(l);
    setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void full(int fd, void *buf, size_t len, int rd)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = rd ? read(fd, (char *)buf + done, len - done) : write(fd, (char *)buf + done, len - done);
        if (n <= 0)
            die(rd ? "read" : "write");
        done += n;
    }
}

static void *echo(void *arg)
{
    int fd = *(int *)arg;
    char buf[4096], ack[32] = { 0 };
    for (;;) {
        for (size_t done = 0; done < sizeof buf;) {
            ssize_t n = read(fd, buf + done, sizeof buf - done);
            if (n <= 0)
                return NULL;
            done += n;
        }
        full(fd, ack, sizeof ack, 0);
    }
}

static int rtt(long n)
{
    int a, b;
    pthread_t t;
    char msg[4096], ack[32];

    memset(msg, 7, sizeof msg);
    tcp_pair(&a, &b);
    pthread_create(&t, NULL, echo, &b);
    for (int i = 0; i < 1000; i++) { /* warm up */
        full(a, msg, sizeof msg, 0);
        full(a, ack, sizeof ack, 1);
    }
    double t0 = now_us();
    for (long i = 0; i < n; i++) {
        full(a, msg, sizeof msg, 0);
        full(a, ack, sizeof ack, 1);
    }
    printf("%.1f\n", (now_us() - t0) / n);
    close(a);
    pthread_join(t, NULL);
    return 0;
}

static void *drain(void *arg)
{
    int fd = *(int *)arg;
    static char sink[1 << 20];
    while (read(fd, sink, sizeof sink) > 0)
        ;
    return NULL;
}

/* reaps MSG_ZEROCOPY completions; returns how many sends they cover */
static long reap_zc(int fd, int *copied)
{
    char control[128];
    struct msghdr mh = { .msg_control = control, .msg_controllen = sizeof control };
    long covered = 0;

    while (recvmsg(fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT) >= 0) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            struct sock_extended_err *e = (struct sock_extended_err *)CMSG_DATA(c);
            if (e->ee_origin != SO_EE_ORIGIN_ZEROCOPY)
                continue;
            covered += e->ee_data - e->ee_info + 1;
            if (e->ee_code & SO_EE_CODE_ZEROCOPY_COPIED)
                *copied = 1;
        }
        mh.msg_controllen = sizeof control;
    }
    return covered;
}

static int send_bench(long mib, int peers, int zc)
{
    int a[32], b[32], one = 1, copied = 0;
    pthread_t t[32];
    char *buf;
    struct rusage r0, r1;
    long sent[32] = { 0 }, done[32] = { 0 };

    if (peers < 1 || peers > 32 || posix_memalign((void **)&buf, 4096, 1 << 20))
        return 2;
    memset(buf, 1, 1 << 20);
    for (int i = 0; i < peers; i++) {
        tcp_pair(&a[i], &b[i]);
        if (zc && setsockopt(a[i], SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one) < 0)
            die("SO_ZEROCOPY");
        pthread_create(&t[i], NULL, drain, &b[i]);
    }
    getrusage(RUSAGE_THREAD, &r0);
    double t0 = now_us();
    for (long m = 0; m < mib; m++) {
        for (int i = 0; i < peers; i++) {
            ssize_t n = send(a[i], buf, 1 << 20, zc ? MSG_ZEROCOPY : 0);
            if (n < 0 && errno == ENOBUFS) { /* too many pending notifications */
                done[i] += reap_zc(a[i], &copied);
                i--;
                continue;
            }
            if (n != 1 << 20) { /* a blocking socket sends it whole */
                perror("send");
                return 1;
            }
            sent[i]++;
            if (zc)
                done[i] += reap_zc(a[i], &copied);
        }
    }
    /* the buffer is reusable only when every notification is in */
    for (int i = 0; zc && i < peers; i++)
        while (done[i] < sent[i]) {
            usleep(100);
            done[i] += reap_zc(a[i], &copied);
        }
    double wall = now_us() - t0;
    getrusage(RUSAGE_THREAD, &r1);
    double cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e6 +
                 (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
    for (int i = 0; i < peers; i++) {
        shutdown(a[i], SHUT_WR);
        pthread_join(t[i], NULL);
    }
    /* cpu per MiB sent (to all peers), MiB/s per peer, whether the kernel copied anyway */
    printf("%.1f %.0f %s\n", cpu / (mib * peers), mib / (wall / 1e6), zc ? (copied ? "copied" : "zerocopy") : "-");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "rtt"))
        return rtt(atol(argv[2]));
    if (argc == 5 && !strcmp(argv[1], "send"))
        return send_bench(atol(argv[2]), atoi(argv[3]), atoi(argv[4]));
    fprintf(stderr, "usage: netbench rtt N | netbench send MIB PEERS ZC\n");
    return 2;
}
