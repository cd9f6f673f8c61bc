/* The io engine: asynchronous reads, writes, flushes and discards on the
 * local disk. io_uring first, libaio as the fallback, one interface. */
#ifndef NM_IO_H
#define NM_IO_H

#include <stdbool.h>
#include <stdint.h>

enum io_op {
    IO_READ,
    IO_WRITE,
    IO_FSYNC,     /* fdatasync */
    IO_FALLOCATE, /* mode in io_cmd.mode: punch hole / zero range */
    IO_ZEROOUT,   /* zeroes any byte range of a block device, see below */
};

/* IO_ZEROOUT: io_cmd.mode is the granularity g in bytes (the device's
 * logical block size, a multiple of 512; 0: ask the device), optionally
 * | IO_ZEROOUT_PUNCH. The whole blocks of g inside the range are zeroed by
 * BLKZEROOUT (allocation kept), or with IO_ZEROOUT_PUNCH by
 * fallocate(PUNCH_HOLE) (may deallocate; EOPNOTSUPP, with nothing changed,
 * when the device cannot promise zeroes that way). A partial block at
 * either end is read, cleared and written back whole through io_cmd.fd
 * (O_DIRECT is fine). Caller's contract: no other request that overlaps
 * [off, off + len) widened outward to g runs at the same time, since the
 * read-modify-write rewrites the rest of those end blocks. */
#define IO_ZEROOUT_PUNCH 1

/* IO_FALLOCATE and IO_ZEROOUT with len 0 complete with 0 and touch nothing. */

struct io_cmd;
typedef void (*io_done_fn)(struct io_cmd *cmd, int res); /* res: bytes or -errno */

/* Embedded in its owner (no allocation per request). */
struct io_cmd {
    enum io_op op;
    int fd;
    int mode;          /* fallocate mode, or RWF_* flags for reads/writes */
    void *buf;
    uint32_t len;
    uint32_t done;     /* bytes already transferred (short read/write resume) */
    uint64_t off;
    io_done_fn cb;
    struct io_cmd *next;
    _Alignas(8) unsigned char priv[64]; /* the engine's per-command state */
};

struct disk {
    const char *path;
    int fd;          /* O_DIRECT when direct */
    int fd_buffered; /* for requests O_DIRECT cannot take (unaligned) */
    uint64_t size;   /* whole file or device */
    bool is_blockdev, direct, read_only;
    unsigned align;  /* O_DIRECT alignment, 1 when buffered */
};
int disk_open(struct disk *d, const char *path, bool direct, bool read_only);
void disk_close(struct disk *d);
/* The fd a request should use: the O_DIRECT one only when it is aligned. */
int disk_fd_for(const struct disk *d, const void *buf, uint64_t off, uint32_t len);
/* RWF_* flags (io_cmd.mode) for bulk reads and writes this node will not
 * touch again soon: resync and online verify. On a buffered file that is
 * RWF_DONTCACHE (Linux 6.14): the data pass through the page cache but do
 * not stay. Without it a full sync leaves the whole image cached in large
 * folios, and on ext4 every later 4 KiB write into one walks all of its
 * block buffers (2.4x the CPU per write here; bench/README.md). 0 for
 * O_DIRECT. A kernel or filesystem that refuses the flag (EOPNOTSUPP) gets
 * the same command again without it, from the io engine. */
int disk_bulk_flags(const struct disk *d);
/* How a trim and a zero write reach this disk (op, fd, mode, range), so the
 * primary and its secondaries always do the same.
 * Trim: a trim reads back as zeroes wherever it took effect, so that peers
 * that all trim hold the same bytes. Files: PUNCH_HOLE over the whole range.
 * Devices: fallocate(PUNCH_HOLE), which the kernel does only where the
 * device guarantees zeroes (else EOPNOTSUPP, nothing changed), and only over
 * the whole logical blocks inside the range: c->off/c->len are shrunk
 * inward to d->align, and may end with len 0 (then the command succeeds
 * without touching the disk). c->off/c->len are the range to replicate
 * (nothing when len is 0: a peer refuses an empty trim).
 * Zero: keeps allocation when keep_allocated (ZERO_RANGE on files,
 * IO_ZEROOUT on devices), else punches (files: PUNCH_HOLE; devices: aligned
 * ranges fallocate(PUNCH_HOLE), EOPNOTSUPP when the device cannot guarantee
 * zeroes; unaligned ranges IO_ZEROOUT | IO_ZEROOUT_PUNCH: the whole blocks
 * punched the same way, the partial end blocks rewritten). c->off/c->len
 * stay the caller's range, and an IO_ZEROOUT carries the caller's contract
 * above: no concurrent request overlapping the range widened to d->align. */
void disk_trim_cmd(const struct disk *d, struct io_cmd *c, uint64_t off, uint32_t len);
void disk_zero_cmd(const struct disk *d, struct io_cmd *c, uint64_t off, uint32_t len,
                   bool keep_allocated);

struct io_engine;
/* kind: "uring", "aio" or NULL (io_uring, else libaio). On success *why
 * says why a fallback happened (or NULL). */
int io_engine_open(struct io_engine **out, const char *kind, const char **why);
const char *io_engine_name(const struct io_engine *e);
void io_queue(struct io_engine *e, struct io_cmd *cmd);
/* Once per loop turn: submits what io_queue left prepared (backends submit
 * every few commands as they are queued, so a burst's first ones need not
 * wait for the turn to end), then runs callbacks for everything completed.
 * Callbacks never run inside io_queue. */
void io_run(struct io_engine *e);
unsigned io_inflight(const struct io_engine *e);
/* True when io_run has commands to submit or completions to deliver. */
bool io_pending(const struct io_engine *e);
/* At most depth commands of the backend (reads, writes, flushes; trims on
 * io_uring) at the disk at once (0, the default: as many as its queue
 * takes); the rest wait here, in order. The offload thread's are not
 * counted. */
void io_set_depth(struct io_engine *e, unsigned depth);
/* For status: the limit, what is at the disk and waiting now, and how many
 * commands have waited (for the limit or for a full ring) since the start. */
struct io_queue_counts {
    unsigned depth, at_disk, waiting;
    uint64_t waited;
};
void io_queue_counts(const struct io_engine *e, struct io_queue_counts *q);
/* Small writes to fd run synchronously in the loop thread. For buffered files on
 * filesystems without non-blocking buffered writes (ext4), io_uring would
 * hand every write to a kernel worker thread: a context switch per write
 * that costs more than the page-cache copy itself. Large writes still go
 * to the worker, which copies in parallel with the loop. */
void io_set_inline_writes(struct io_engine *e, int fd);
void io_engine_close(struct io_engine *e);

#endif
