/* The node: this daemon's one replication object. Its role is state, not a
 * start-time choice: `promote` plugs the stream into the request lifecycle
 * and tells every peer; `demote` drains, flushes, confirms with every peer
 * and unplugs it. What belongs to the node whatever its role: the disk and
 * its state, the metadata (generation ids, a bitmap per peer slot, the
 * activity log), and the links (src/repl/link.c).
 *
 * Crash rule (DESIGN.md): after any crash, the on-disk bitmaps plus the
 * extents named in the activity log cover every block a peer may lack. So a
 * write to a cold extent waits until the activity log names it; the log
 * forgets an extent only after the bitmap pages covering it are on disk; and
 * a node that finds META_F_PRIMARY still set at start (it crashed while
 * primary) marks every logged extent out of sync with every peer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "repl-int.h"

#define BM_FLUSH_MS 5000     /* dirty bitmap pages reach the disk this often */
#define BM_FLUSH_PAGES 16    /* ... at most this many per loop turn */
#define DEMOTE_ACK_MS 5000   /* peers have this long to confirm a demote */

struct node N;

static uint64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---- the metadata ---- */

static void metadata_failed(const char *what, int err)
{
    if (N.meta_failed)
        return;
    N.meta_failed = true;
    N.disk = DS_FAILED;
    log_err("cannot write the metadata (%s): %s; disk Failed, replication stops until "
            "nbdmirror is restarted", what, strerror(-err));
    for (int i = 0; i < REPL_MAX_PEERS; i++)
        if (N.peers[i].used && N.peers[i].st != LK_IDLE)
            link_kill(&N.peers[i], "the metadata cannot be written");
}

int node_save_meta(const char *what)
{
    if (N.meta_failed)
        return -1;
    int r = meta_save(N.self.meta_fd, N.meta);
    if (r < 0) {
        metadata_failed(what, r);
        return -1;
    }
    return 0;
}

/* Records the disk's state durably: after a crash the node must come back
 * knowing whether it is behind or half-synced. If that cannot be written,
 * nothing more may be acknowledged: the disk is Failed, every link closes
 * and none is accepted until a restart. */
int persist(enum disk_state st)
{
    if (N.meta_failed)
        return -1;
    N.meta->disk_state = st;
    return node_save_meta("the disk state");
}

void node_set_disk(enum disk_state st)
{
    N.disk = st;
    persist(st == DS_FAILED ? DS_INCONSISTENT : st);
}

void node_disk_failed(const char *why)
{
    if (N.disk == DS_FAILED)
        return;
    log_err("%s: disk Failed; it needs a full sync from a peer", why);
    N.meta->flags |= META_F_FULL_SYNC;
    node_set_disk(DS_FAILED);
}

void node_adopt_gen(uint64_t gen, const char *why)
{
    if (N.meta->current_gen == gen)
        return;
    gen_adopt(N.meta, gen);
    if (node_save_meta("a generation id") == 0)
        log_info("generation id %016llx (%s)", (unsigned long long)gen, why);
}

/* ---- slots and bitmaps ---- */

static int bm_open(int slot)
{
    char why[200] = "";
    if (N.bm_on[slot])
        return 0;
    if (bm_init(&N.bm[slot], N.self.data_size) < 0)
        return -ENOMEM;
    int r = bm_load(N.self.meta_fd, N.meta, slot, &N.bm[slot], why, sizeof why);
    if (r < 0) {
        bm_free(&N.bm[slot]);
        return r;
    }
    if (r > 0)
        log_err("bitmap of peer slot %d: %d damaged page%s (%s); the blocks they cover are "
                "treated as out of sync", slot, r, r == 1 ? "" : "s", why);
    N.bm_on[slot] = true;
    return 0;
}

int node_slot_for(uint64_t node_id)
{
    int free_slot = -1;
    for (int s = 0; s < (int)META_MAX_PEERS; s++) {
        if (N.meta->peer_node_id[s] == node_id)
            return bm_open(s) < 0 ? -1 : s;
        if (!N.meta->peer_node_id[s] && free_slot < 0)
            free_slot = s;
    }
    if (free_slot < 0)
        return -1;
    /* a node met for the first time: a clean slot */
    N.meta->peer_node_id[free_slot] = node_id;
    N.meta->peer_bitmap_gen[free_slot] = 0;
    if (bm_open(free_slot) < 0)
        return -1;
    bm_clear_all(&N.bm[free_slot]);
    if (node_save_meta("a new peer slot") < 0)
        return -1;
    return free_slot;
}

void node_bits(int slot, uint64_t off, uint64_t len)
{
    if (slot < 0 || !N.bm_on[slot] || !len)
        return;
    /* the bits count from the current id (recorded with the pages) */
    if (!N.meta->peer_bitmap_gen[slot])
        gen_bitmap_start(N.meta, slot);
    bm_set_bytes(&N.bm[slot], off, len);
}

uint64_t node_bm_count(int slot)
{
    return slot >= 0 && N.bm_on[slot] ? N.bm[slot].set : 0;
}

uint32_t node_lost_slots(void)
{
    uint32_t lost = 0;
    for (int s = 0; s < (int)META_MAX_PEERS; s++)
        if (N.meta->peer_node_id[s] && N.bm_on[s])
            lost |= 1u << s;
    for (int i = 0; i < REPL_MAX_PEERS && lost; i++) {
        const struct peer *p = &N.peers[i];
        if (p->used && p->slot >= 0 && peer_sending(p))
            lost &= ~(1u << p->slot);
    }
    return lost;
}

/* Writes dirty page p of slot s now (durably). */
static int write_page(int s, uint32_t p)
{
    uint8_t page[META_SB_SIZE];
    struct bitmap *b = &N.bm[s];

    bm_page_encode(b, p, s, page);
    if (sender_mark_unconfirmed(s, p, page))
        bm_page_seal(p, s, page);
    int r = meta_write_durable(N.self.meta_fd, page, sizeof page, bm_page_offset(N.meta, s, p));
    if (r < 0) {
        metadata_failed("a bitmap page", r);
        return r;
    }
    if (b->dirty[p]) {
        b->dirty[p] = 0;
        b->ndirty--;
    }
    return 0;
}

static bool meta_ids_dirty(void)
{
    static uint64_t saved[META_MAX_PEERS];
    bool d = memcmp(saved, N.meta->peer_bitmap_gen, sizeof saved) != 0;
    memcpy(saved, N.meta->peer_bitmap_gen, sizeof saved);
    return d;
}

/* Every dirty page, then the ids they count from. */
void node_flush_bitmaps(void)
{
    for (int s = 0; s < (int)META_MAX_PEERS && !N.meta_failed; s++)
        for (uint32_t p = 0; N.bm_on[s] && N.bm[s].ndirty && p < N.bm[s].npages; p++)
            if (N.bm[s].dirty[p] && write_page(s, p) < 0)
                return;
    if (meta_ids_dirty())
        node_save_meta("bitmap ids");
    N.bm_flushed_ms = now_ms();
}

/* A few dirty pages a turn, every BM_FLUSH_MS: a crash then costs a resync
 * of the bits, not of whole logged extents. */
static void flush_some(uint64_t now)
{
    static bool flushing;
    int budget = BM_FLUSH_PAGES;

    if (!flushing && now - N.bm_flushed_ms < BM_FLUSH_MS)
        return;
    flushing = true;
    for (int s = 0; s < (int)META_MAX_PEERS && budget && !N.meta_failed; s++)
        for (uint32_t p = 0; N.bm_on[s] && N.bm[s].ndirty && p < N.bm[s].npages && budget; p++)
            if (N.bm[s].dirty[p]) {
                if (write_page(s, p) < 0)
                    return;
                budget--;
            }
    if (budget) { /* all written */
        flushing = false;
        if (meta_ids_dirty())
            node_save_meta("bitmap ids");
        N.bm_flushed_ms = now;
    }
}

/* ---- the activity log ---- */

bool node_al_begin(struct nm_req *r)
{
    bool starved;
    if (!N.al_on)
        return true;
    if (al_begin(&N.al, r->offset, r->len, &starved))
        return true;
    if (starved) {
        /* extents are held until their writes are confirmed durable on the
         * peers: ask for that now rather than at the next interval */
        sender_confirm_soon();
        static struct ratelimit rl;
        if (log_ratelimit(&rl))
            log_warn("activity log: all %u extents are in use; writes to new extents wait "
                     "(a larger --al-extents helps)", N.al.cap);
    }
    return false;
}

void node_al_end(uint64_t off, uint64_t len)
{
    if (N.al_on)
        al_end(&N.al, off, len);
}

static void al_written(struct io_cmd *cmd, int res)
{
    (void)cmd;
    N.al_writing = false;
    if (res < 0) {
        metadata_failed("the activity log", res);
        return;
    }
    al_committed(&N.al);
    sender_retry(); /* writes waiting for their extents go on */
}

/* One transaction a turn at most: every extent that became needed since
 * the last one. The pages of the bitmap that cover extents it forgets are
 * written first (synchronously: this only happens while a peer is away). */
static void al_commit(void)
{
    uint64_t off;

    if (!N.al_on || !al_due(&N.al) || N.al_writing || N.meta_failed)
        return;
    al_shrink(&N.al); /* after a wide request: back to its size */
    for (unsigned i = 0; i < N.al.ngone; i++) {
        uint64_t first = ((uint64_t)N.al.gone[i] << AL_EXTENT_SHIFT) / META_BM_BLOCK;
        uint64_t last = first + AL_EXTENT / META_BM_BLOCK - 1;
        for (int s = 0; s < (int)META_MAX_PEERS; s++) {
            if (!N.bm_on[s] || !N.bm[s].ndirty)
                continue;
            for (uint64_t p = first / BM_PAGE_BITS; p <= last / BM_PAGE_BITS && p < N.bm[s].npages; p++)
                if (N.bm[s].dirty[p] && write_page(s, p) < 0)
                    return;
        }
    }
    if (N.al.ngone && meta_ids_dirty() && node_save_meta("bitmap ids") < 0)
        return;
    uint32_t n = al_encode(&N.al, N.al_buf, &off);
    N.al_io = (struct io_cmd){ .op = IO_WRITE, .fd = N.self.meta_fd, .buf = N.al_buf, .len = n,
                               .off = N.meta->meta_offset + N.meta->al_offset + off,
                               .mode = RWF_DSYNC, .cb = al_written };
    N.al_writing = true;
    io_queue(N.self.io, &N.al_io);
}

/* A node that crashed while primary: every extent its log names may hold
 * writes some peer lacks (or it lacks what they have): out of sync with
 * every peer it knows. */
static int replay_activity_log(void)
{
    uint8_t *area = malloc(META_AL_SIZE);
    uint32_t *ext = malloc(AL_MAX * sizeof *ext);
    unsigned n = 0, half = 1;
    uint64_t seq = 0;
    const char *why = NULL;
    int r = -ENOMEM;

    if (area && ext)
        r = full_pread(N.self.meta_fd, area, META_AL_SIZE, N.meta->meta_offset + N.meta->al_offset);
    if (r == 0)
        r = al_decode(area, ext, AL_MAX, &n, &seq, &half, &why);
    bool crashed = N.meta->flags & META_F_PRIMARY;
    if (r < 0 && crashed) {
        log_err("%s; this node crashed while primary: the whole disk is out of sync with every "
                "peer", why ? why : strerror(-r));
    }
    for (int s = 0; crashed && s < (int)META_MAX_PEERS; s++) {
        if (!N.meta->peer_node_id[s] || bm_open(s) < 0)
            continue;
        gen_bitmap_start(N.meta, s);
        if (r < 0) {
            bm_set_all(&N.bm[s]);
            continue;
        }
        for (unsigned i = 0; i < n; i++) {
            uint64_t off = (uint64_t)ext[i] << AL_EXTENT_SHIFT;
            if (off < N.self.data_size) {
                uint64_t len = N.self.data_size - off < AL_EXTENT ? N.self.data_size - off : AL_EXTENT;
                bm_set_bytes(&N.bm[s], off, len);
            }
        }
    }
    if (crashed && r >= 0)
        log_warn("this node crashed while primary: the %u extents of its activity log (%llu MiB) "
                 "are out of sync with every peer", n, (unsigned long long)((uint64_t)n * AL_EXTENT >> 20));
    al_resume(&N.al, seq, half);
    free(area);
    free(ext);
    if (crashed) {
        node_flush_bitmaps();
        N.meta->flags &= ~META_F_PRIMARY; /* the marks are on disk now */
        return node_save_meta("after the activity log replay");
    }
    return 0;
}

/* ---- roles ---- */

/* at_start: serve --role primary (nobody is connected yet: the new id waits
 * for the first write); else a promotion, which moves on from every node
 * not connected now, as DRBD does: one promoted while apart counts as a
 * change even before it writes (so after-sb-0pri sees it). */
static void become_primary(bool at_start)
{
    /* which peers miss our writes is asked as the primary we become: a
     * peer connected and in sync receives them (peer_sending needs
     * N.primary), so it is not lost and needs no new id nor bitmap */
    N.primary = true;
    uint32_t lost = node_lost_slots();
    N.meta->flags |= META_F_PRIMARY; /* the log is live: a crash from now on replays it */
    N.meta->primary_since = wall_ms();
    bool rotated = !at_start && lost;
    if (rotated) {
        gen_rotate(N.meta, lost);
        log_info("new generation id %016llx (primary without every peer)",
                 (unsigned long long)N.meta->current_gen);
    }
    node_save_meta("the role");
    N.al_on = true;
    N.primary = true;
    N.rotate_pending = at_start; /* nodes away now must not look equal after our writes */
    sender_start();
    link_role_changed();
    link_start_pending_syncs();
    if (rotated)
        sender_send_gen(); /* the peers in sync take it */
    if (N.hooks && N.hooks->role_changed)
        N.hooks->role_changed(true);
}

static void become_secondary(void)
{
    sender_stop();
    N.primary = false;
    N.rotate_pending = false;
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        if (!p->used || p->st != LK_UP)
            continue;
        /* a resync goes on (a secondary may be a source); a verify ends */
        if (p->sync.active && p->sync.kind == RK_VERIFY) {
            resync_abort(&p->sync);
            p->rs = PR_ESTABLISHED;
        }
    }
    node_flush_bitmaps();
    N.al_on = false;
    N.meta->flags &= ~META_F_PRIMARY; /* flushed and confirmed: nothing to replay */
    node_save_meta("the role");
    link_role_changed();
    if (N.hooks && N.hooks->role_changed)
        N.hooks->role_changed(false);
}

/* ---- start ---- */

void repl_adjust(const struct repl_config *cfg)
{
    N.cfg.timeout_ms = cfg->timeout_ms;
    N.cfg.resync_rate = cfg->resync_rate;
    N.cfg.resync_csums = cfg->resync_csums;
    N.cfg.no_resync_control = cfg->no_resync_control;
    N.cfg.after_sb_0pri = cfg->after_sb_0pri;
    resync_set_rate(cfg->resync_rate);
}

int repl_start(const struct repl_node_init *init, const struct repl_config *cfg,
               const struct repl_hooks *hooks, bool primary, bool force, char *err,
               size_t errlen)
{
    N.on = true;
    N.self = *init;
    N.cfg = *cfg;
    N.hooks = hooks;
    N.meta = init->meta;
    N.disk = (enum disk_state)N.meta->disk_state;
    if (N.meta->flags & META_F_FULL_SYNC)
        N.disk = DS_INCONSISTENT;
    N.bm_flushed_ms = now_ms();
    if (N.cfg.al_extents && N.cfg.al_extents != N.meta->al_extents) {
        N.meta->al_extents = N.cfg.al_extents;
        if (node_save_meta("the activity log size") < 0)
            return snprintf(err, errlen, "cannot write the metadata"), -1;
    }
    if (al_init(&N.al, N.meta->al_extents) < 0 ||
        posix_memalign((void **)&N.al_buf, 4096, META_AL_SIZE / 2)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int s = 0; s < (int)META_MAX_PEERS; s++)
        if (N.meta->peer_node_id[s] && bm_open(s) < 0) {
            snprintf(err, errlen, "cannot read the bitmap of peer slot %d", s);
            return -1;
        }
    meta_ids_dirty();
    if (replay_activity_log() < 0) {
        snprintf(err, errlen, "cannot write the metadata after replaying the activity log");
        return -1;
    }
    if (primary) {
        if (N.disk != DS_UPTODATE && !force) {
            snprintf(err, errlen,
                     "the disk is %s: it may lack writes another node has. Start it as a "
                     "secondary to be resynced, or give --force to make this disk's data the "
                     "reference (writes only the other nodes have are then lost, or end in a "
                     "split brain)", disk_state_name(N.disk));
            return -1;
        }
        if (N.disk != DS_UPTODATE) {
            log_warn("--force: the %s disk becomes UpToDate and the reference for every peer",
                     disk_state_name(N.disk));
            N.meta->flags &= ~META_F_FULL_SYNC;
            gen_rotate(N.meta, node_lost_slots());
            node_set_disk(DS_UPTODATE);
        }
    }
    sender_init();
    int r = link_start();
    if (r < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen, strerror(-r));
        return -1;
    }
    if (primary)
        become_primary(true);
    return 0;
}

/* ---- the loop ---- */

static void demote_flushed(struct io_cmd *cmd, int res)
{
    (void)cmd;
    N.demote_err = res < 0 ? -res : 0;
    N.demote = DM_BARRIER;
    N.demote_barrier = 0;
}

static void demote_finish(int err, const char *msg)
{
    repl_done_fn done = N.demote_done;
    N.demote = DM_NONE;
    if (!err)
        become_secondary();
    if (done)
        done(N.demote_arg, err ? -1 : 0, msg);
}

/* demote: clients out and writes done, the disk flushed, every peer has
 * it all durably; then the role goes */
static void demote_step(uint64_t now)
{
    switch (N.demote) {
    case DM_DRAIN:
        if ((N.hooks && N.hooks->quiesced && !N.hooks->quiesced()) || !sender_clients_idle())
            return;
        N.demote = DM_FLUSH;
        N.demote_io = (struct io_cmd){ .op = IO_FSYNC, .fd = N.self.dev->fd, .cb = demote_flushed };
        io_queue(N.self.io, &N.demote_io);
        return;
    case DM_BARRIER:
        if (N.demote_err) {
            log_err("demote: the final flush failed: %s; still primary", strerror(N.demote_err));
            demote_finish(EIO, "the final flush failed: still primary");
            return;
        }
        if (!N.demote_barrier) {
            sender_stop_begin();
            N.demote_barrier = 1;
            N.demote_deadline = now + DEMOTE_ACK_MS;
        }
        if (!sender_stop_done() && now < N.demote_deadline)
            return;
        for (int i = 0; i < REPL_MAX_PEERS; i++) {
            struct peer *p = &N.peers[i];
            if (p->used && p->st == LK_UP && p->clean_seq && !p->clean_acked)
                peer_drop(p, "did not confirm the demote in time");
            p->clean_seq = 0;
        }
        log_info("demoted: secondary now");
        demote_finish(0, "demoted: secondary now");
        return;
    default:
        return;
    }
}

void repl_tick(void)
{
    uint64_t now = now_ms();

    if (!N.on)
        return;
    link_tick();
    sender_tick();
    al_commit();
    flush_some(now);
    if (N.demote != DM_NONE)
        demote_step(now);
}

bool repl_busy(void) { return N.on && sender_busy(); }

bool repl_is_primary(void) { return N.primary; }

/* A primary's disk is the reference: UpToDate by definition while it serves. */
enum disk_state repl_local_disk(void) { return N.on ? N.disk : DS_UPTODATE; }

uint64_t repl_current_gen(void) { return N.on ? N.meta->current_gen : 0; }

int repl_peers_status(struct peer_status *out, int max)
{
    return N.on ? link_status(out, max) : 0;
}

void repl_stop_begin(void)
{
    if (N.on && N.primary)
        sender_stop_begin();
}

bool repl_stop_done(void) { return !N.on || !N.primary || sender_stop_done(); }

void repl_stop(void)
{
    if (!N.on)
        return;
    link_stop(); /* links we streamed to: bits for whatever they did not confirm */
    node_flush_bitmaps();
    if (N.primary && !N.meta_failed) {
        /* our own disk durable, the bits on disk: the log is not needed */
        if (fdatasync(N.self.dev->fd) == 0) {
            N.meta->flags &= ~META_F_PRIMARY;
            node_save_meta("a clean stop");
        }
    }
}

/* ---- control commands ---- */

static struct peer *connected_primary(void)
{
    for (int i = 0; i < REPL_MAX_PEERS; i++)
        if (N.peers[i].used && N.peers[i].st == LK_UP && N.peers[i].primary)
            return &N.peers[i];
    return NULL;
}

int repl_promote(bool force, char *msg, size_t len)
{
    struct peer *q;

    if (!N.on)
        return snprintf(msg, len, "not replicating (serve without --role)"), -1;
    if (N.primary)
        return snprintf(msg, len, "already primary"), 0;
    if (N.demote != DM_NONE)
        return snprintf(msg, len, "a demote is in progress"), -1;
    if (N.meta_failed)
        return snprintf(msg, len, "the metadata cannot be written: restart first"), -1;
    if ((q = connected_primary()))
        return snprintf(msg, len, "refused: %s is primary and connected (demote it first; "
                        "two primaries are never connected)", q->addr), -1;
    if (N.disk != DS_UPTODATE && !force)
        return snprintf(msg, len, "refused: the disk is %s: it may lack writes another node has "
                        "(promote --force makes this disk's data the reference: writes only the "
                        "other nodes have are then lost, or end in a split brain)",
                        disk_state_name(N.disk)), -1;
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        if (p->used && p->st == LK_UP && p->hello.data_size < N.self.data_size)
            return snprintf(msg, len, "refused: %s has a smaller disk than this one", p->addr), -1;
    }
    if (N.disk != DS_UPTODATE) {
        log_warn("promote --force: the %s disk becomes UpToDate and the reference for every "
                 "peer", disk_state_name(N.disk));
        for (int i = 0; i < REPL_MAX_PEERS; i++) {
            struct peer *p = &N.peers[i];
            if (p->used && p->st == LK_UP &&
                (p->rs == PR_PAUSED_TARGET || p->rs == PR_SYNC_TARGET))
                peer_drop(p, "this node was forced primary: deciding again");
        }
        N.meta->flags &= ~META_F_FULL_SYNC;
        gen_rotate(N.meta, node_lost_slots());
        node_set_disk(DS_UPTODATE);
    }
    become_primary(false);
    log_info("promoted: primary now");
    snprintf(msg, len, "primary now");
    return 0;
}

int repl_demote(repl_done_fn done, void *arg, char *msg, size_t len)
{
    if (!N.on)
        return snprintf(msg, len, "not replicating (serve without --role)"), -1;
    if (!N.primary)
        return snprintf(msg, len, "already secondary"), 0;
    if (N.demote != DM_NONE)
        return snprintf(msg, len, "a demote is in progress"), -1;
    log_info("demote: new writes fail, clients are closed once their requests are done");
    N.demote = DM_DRAIN;
    N.demote_done = done;
    N.demote_arg = arg;
    if (N.hooks && N.hooks->quiesce)
        N.hooks->quiesce();
    snprintf(msg, len, "demoting");
    return 1;
}

int repl_connect(const char *peer, bool discard_my_data, char *msg, size_t len)
{
    if (!N.on)
        return snprintf(msg, len, "not replicating (serve without --role)"), -1;
    if (discard_my_data && N.primary)
        return snprintf(msg, len, "refused: a primary cannot discard its data (demote it first)"), -1;
    if (discard_my_data)
        N.discard_my_data = true;
    return link_connect(peer, msg, len);
}

int repl_disconnect(const char *peer, char *msg, size_t len)
{
    if (!N.on)
        return snprintf(msg, len, "not replicating (serve without --role)"), -1;
    return link_disconnect(peer, msg, len);
}

int repl_verify(const char *peer, char *msg, size_t len)
{
    int n = 0;
    if (!N.on || !N.primary)
        return snprintf(msg, len, "refused: run verify on the primary"), -1;
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        struct peer *p = &N.peers[i];
        if (!p->used || (peer && *peer && strcmp(peer, p->addr)))
            continue;
        if (p->st != LK_UP || p->rs != PR_ESTABLISHED || p->disk != DS_UPTODATE) {
            if (peer && *peer)
                return snprintf(msg, len, "refused: %s is not connected and in sync", p->addr), -1;
            continue;
        }
        sender_sync_start(p, RK_VERIFY, "online verify");
        n++;
    }
    if (!n)
        return snprintf(msg, len, "no connected peer in sync to verify"), -1;
    snprintf(msg, len, "verifying %d peer%s (see status and the log)", n, n == 1 ? "" : "s");
    return 0;
}

int repl_invalidate(char *msg, size_t len)
{
    if (!N.on)
        return snprintf(msg, len, "not replicating (serve without --role)"), -1;
    if (N.primary)
        return snprintf(msg, len, "refused: a primary's data is the reference (demote it first)"), -1;
    log_warn("invalidate: this disk's data is thrown away; a full sync from a peer replaces it");
    N.meta->flags |= META_F_FULL_SYNC;
    node_set_disk(DS_INCONSISTENT);
    /* every link decides again: we need a full sync */
    for (int i = 0; i < REPL_MAX_PEERS; i++)
        if (N.peers[i].used && N.peers[i].st != LK_IDLE)
            peer_drop(&N.peers[i], "invalidated: deciding again");
    snprintf(msg, len, "invalidated: a full sync from a peer follows");
    return 0;
}
