/* Small shared helpers: logging, byte order, CRC32C, buffers, event loop. */
#ifndef NM_COMMON_H
#define NM_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- logging: one line per event, to stderr, with a timestamp ---- */
void nm_log_init(const char *prog);
void nm_log_silence(bool on); /* fuzzing: millions of connections, no lines */
void nm_log(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* For errors that can repeat per request: one line a second, then a count. */
struct ratelimit {
    uint64_t last_ms;
    unsigned suppressed;
};
bool log_ratelimit(struct ratelimit *rl); /* true: log now (and report suppressed) */
#define log_info(...) nm_log("info", __VA_ARGS__)
#define log_warn(...) nm_log("warning", __VA_ARGS__)
#define log_err(...) nm_log("error", __VA_ARGS__)

/* ---- byte order (the NBD wire and our metadata are big/little endian) ---- */
static inline void put_be16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static inline void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static inline void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, v >> 32);
    put_be32(p + 4, (uint32_t)v);
}
static inline uint16_t get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}
static inline void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}
static inline void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, v >> 32);
}
static inline uint32_t get_le32(const uint8_t *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_le64(const uint8_t *p)
{
    return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* ---- CRC32C (Castagnoli), as used by our metadata and replication headers ---- */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* ---- misc ---- */
uint64_t now_ms(void);                       /* CLOCK_MONOTONIC */
uint64_t random_id(void);                    /* from /dev/urandom, odd (never 0) */
int parse_size(const char *s, uint64_t *out); /* "4096", "64K", "1G"; 0 or -EINVAL */
int full_pread(int fd, void *buf, size_t len, uint64_t off);
int full_pwrite(int fd, const void *buf, size_t len, uint64_t off);
int fd_size(int fd, uint64_t *size, bool *is_blockdev);

/* ---- sockets: "unix:PATH", "HOST:PORT", "[V6]:PORT" ---- */
int net_listen(const char *spec);  /* non-blocking listening fd or -errno */
int net_connect(const char *spec); /* non-blocking TCP connect in progress, or -errno */
struct sockaddr_storage;
void net_peer_name(const struct sockaddr_storage *ss, char *buf, size_t len);

/* Tells the service manager (sd_notify(3) protocol: "READY=1", "STOPPING=1",
 * "STATUS=..."); 0 also when not run by one. */
int notify_service(const char *text);

/* ---- payload buffers: size classes, recycled, with a global byte budget so
 * that memory stays bounded whatever clients send ---- */
#define BUF_MIN_SHIFT 12          /* 4 KiB */
#define BUF_MAX_SHIFT 26          /* 64 MiB: also the NBD maximum block size */
#define BUF_MAX (1u << BUF_MAX_SHIFT)
void bufpool_init(size_t budget_bytes);
/* Returns a 4 KiB-aligned buffer of at least len bytes, or NULL when the
 * budget is spent (the caller waits for buffers to come back). */
void *buf_get(uint32_t len);
void buf_put(void *p, uint32_t len);

/* ---- event loop: epoll, level triggered, one loop per thread ---- */
struct handler {
    void (*fn)(struct handler *h, uint32_t events);
};
int loop_init(void);
int loop_add(int fd, uint32_t events, struct handler *h);
int loop_mod(int fd, uint32_t events, struct handler *h);
void loop_del(int fd);
int loop_wait(int timeout_ms); /* dispatches handlers; returns events or -errno */
/* The loop wakes at least every LOOP_TICK_MS for timers, without arming a
 * timer at each sleep (on a virtual machine, programming and cancelling
 * one is two exits to the hypervisor per sleep). */
#define LOOP_TICK_MS 200
/* Waits for the next event: first, if may_poll, polls for it for up to an
 * adaptive window (at most the loop_set_poll maximum), then sleeps until it
 * comes or the next tick. Returns events handled or -errno. */
int loop_wait_next(bool may_poll);
/* Busy-poll window maximum in microseconds; 0 turns polling off. */
void loop_set_poll(unsigned max_us);
/* Long enough for the gap between a reply and a client's next request, or a
 * peer's acknowledgement, on a VM (50-60 us on the test VM, where a window of
 * 50 caught almost none of them; bench/README.md, "A 100 us polling window"). Also
 * the resource file's default. */
#define POLL_US_DEFAULT 100
#define POLL_US_MAX 10000
#define DISK_DEPTH_MAX 4096 /* --disk-depth */
#define NM_STR_(x) #x
#define NM_STR(x) NM_STR_(x)
/* Frees p once the handlers of the current epoll batch have run: an event
 * for a closed socket may still be waiting in it. */
void loop_free_later(void *p);

#endif
