/* The event stream (ctl.h has the format, nbdmirror(8) the objects): the
 * node's state, sampled and compared with the sample before, as lines for
 * every subscriber.
 *
 * While anyone listens, each loop turn takes the daemon's snapshot (at most
 * once a millisecond, so a busy loop pays little; a one-shot timer brings
 * back a turn that was skipped) and turns what differs into create, change
 * and destroy lines. They are built once and queued to every subscriber by
 * reference. Without subscribers nothing is sampled. A subscriber that does
 * not read is dropped once its queue passes a bound: the daemon never waits
 * for one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common.h"
#include "conn.h"
#include "ctl.h"
#include "ctl-int.h"
#include "status.h"

#define SUB_ITEMS    256   /* chunks queued to a subscriber at most */
#define SUB_DRAIN_MS 5000  /* a dropped subscriber has this long to take its last line */

struct sub {
    struct stream s;
    int slot;
    bool fresh;            /* has not had the current state yet */
    bool dropped;
    uint64_t drop_at;
};

/* One turn's lines, shared by every subscriber's queue. */
struct chunk {
    unsigned refs;
    size_t len;
    char text[];
};

/* What the stream keeps of a peer's resync between samples. */
struct track {
    char address[128];     /* "" = free */
    uint64_t start_ms;     /* when we saw it begin (0: it ran before we looked) */
    uint64_t seen_ms, seen_done; /* when we first saw it, and how far it was then */
    uint64_t total;        /* bytes it has to bring in sync (a resync) */
    uint64_t last_ms;      /* our last line about it */
    int pct;
    uint64_t done;
};

static ctl_snapshot_fn snapshot;
static struct sub *subs[CTL_MAX_SUBSCRIBERS];
static unsigned nsubs, nlive;     /* in their slots; of those, not dropped */
static struct node_status snap[2];
static int cur;                   /* snap[cur]: the newest sample ... */
static bool have;                 /* ... if any */
static uint64_t sampled_ms;
static struct track tracks[REPL_MAX_PEERS];
static int tfd = -1;
static bool timer_armed;
static struct handler h_timer;

/* ---- lines ---- */

static void put_value(FILE *f, const char *v)
{
    bool bare = *v != '\0';
    for (const unsigned char *p = (const unsigned char *)v; *p && bare; p++)
        bare = *p > ' ' && *p != '"' && *p != '\\' && *p != 0x7f;
    if (bare) {
        fputs(v, f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\r')
            fputs("\\r", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void kv(FILE *f, const char *key, const char *v)
{
    fprintf(f, " %s=", key);
    put_value(f, v);
}

static void kn(FILE *f, const char *key, uint64_t v)
{
    fprintf(f, " %s=%llu", key, (unsigned long long)v);
}

static void line_node(FILE *f, const char *verb, const struct node_status *st)
{
    fprintf(f, "%s node", verb);
    kv(f, "role", st->role);
    kv(f, "disk", st->disk);
    fputc('\n', f);
}

static void line_peer(FILE *f, const char *verb, const struct status_peer *p)
{
    fprintf(f, "%s peer", verb);
    kv(f, "name", p->address);
    kv(f, "connection", p->connection);
    kv(f, "replication", p->replication);
    kv(f, "peer-disk", p->peer_disk);
    kv(f, "peer-role", p->peer_role);
    if (p->last_error[0])
        kv(f, "error", p->last_error);
    fputc('\n', f);
}

static bool peer_changed(const struct status_peer *a, const struct status_peer *b)
{
    return strcmp(a->connection, b->connection) || strcmp(a->replication, b->replication) ||
           strcmp(a->peer_disk, b->peer_disk) || strcmp(a->peer_role, b->peer_role) ||
           strcmp(a->last_error, b->last_error);
}

static bool split(const struct status_peer *p) { return !strcmp(p->replication, "split-brain"); }

static void line_split(FILE *f, const char *verb, const struct status_peer *p)
{
    fprintf(f, "%s split-brain", verb);
    kv(f, "peer", p->address);
    if (strcmp(verb, "destroy") && p->last_error[0])
        kv(f, "error", p->last_error);
    fputc('\n', f);
}

/* ---- resync ---- */

static bool syncing(const struct status_peer *p) { return p->resync_percent >= 0; }
static bool verifying(const struct status_peer *p) { return !strcmp(p->replication, "VerifyS"); }
/* a verify and the resync that follows it are two */
static bool same_sync(const struct status_peer *a, const struct status_peer *b)
{
    return syncing(a) && syncing(b) && verifying(a) == verifying(b);
}
static bool last_changed(const struct status_peer *a, const struct status_peer *b)
{
    return strcmp(a->last_resync_reason, b->last_resync_reason) ||
           a->last_resync_bytes != b->last_resync_bytes || a->last_resync_ms != b->last_resync_ms;
}

static struct track *track_of(const char *address, bool make)
{
    static struct track spare; /* more peers than slots: cannot happen; lines stay right */
    struct track *free_one = NULL;
    for (int i = 0; i < REPL_MAX_PEERS; i++) {
        if (!strcmp(tracks[i].address, address))
            return &tracks[i];
        if (!free_one && !tracks[i].address[0])
            free_one = &tracks[i];
    }
    if (!make)
        return NULL;
    struct track *t = free_one ? free_one : &spare;
    memset(t, 0, sizeof *t);
    snprintf(t->address, sizeof t->address, "%s", address);
    return t;
}

static void track_forget(const char *address)
{
    struct track *t = track_of(address, false);
    if (t)
        memset(t, 0, sizeof *t);
}

/* How far a sync is: a verify walks the whole disk; a resync has brought
 * in sync what is no longer out of sync of what it began with (what was
 * sent but is not acknowledged yet is not done). rate and eta are the
 * daemon's where it knows them (a sync source), else ours since we first
 * saw this sync. */
static void progress(const struct node_status *st, const struct status_peer *p,
                     struct track *t, uint64_t now, uint64_t *done, uint64_t *left,
                     uint64_t *rate, uint64_t *eta)
{
    if (verifying(p)) {
        *done = st->size / 100 * (uint64_t)p->resync_percent;
        *left = st->size - *done;
    } else {
        uint64_t total = t && t->total ? t->total : p->resync_sent_bytes + p->out_of_sync_bytes;
        *left = p->out_of_sync_bytes;
        if (total < *left)
            total = *left; /* more became out of sync meanwhile */
        if (t)
            t->total = total;
        *done = total - *left;
    }
    *rate = p->resync_bytes_per_s;
    *eta = p->resync_eta_s;
    if (!*rate && t && t->seen_ms && now > t->seen_ms && *done > t->seen_done) {
        *rate = (*done - t->seen_done) * 1000 / (now - t->seen_ms);
        *eta = *rate ? *left / *rate : 0;
    }
}

static void line_resync(FILE *f, const char *verb, const struct node_status *st,
                        const struct status_peer *p, struct track *t, uint64_t now)
{
    uint64_t done, left, rate, eta;

    progress(st, p, t, now, &done, &left, &rate, &eta);
    fprintf(f, "%s resync", verb);
    kv(f, "peer", p->address);
    kv(f, "replication", p->replication);
    kn(f, "percent", (uint64_t)p->resync_percent);
    kn(f, "done", done);
    kn(f, "remaining", left);
    kn(f, "rate", rate);
    kn(f, "eta", eta);
    fputc('\n', f);
    t->last_ms = now;
    t->pct = p->resync_percent;
    t->done = done;
}

static void resync_begin(FILE *f, const char *verb, const struct node_status *st,
                         const struct status_peer *p, uint64_t now)
{
    struct track *t = track_of(p->address, true);
    uint64_t done, left, rate, eta;

    t->start_ms = strcmp(verb, "exists") ? now : 0;
    t->seen_ms = now;
    progress(st, p, t, now, &done, &left, &rate, &eta);
    t->seen_done = done;
    line_resync(f, verb, st, p, t, now);
}

/* A sync that was a (old st) ended; b is the peer now (NULL: gone). */
static void resync_end(FILE *f, const struct node_status *ast, const struct status_peer *a,
                       const struct status_peer *b, uint64_t now)
{
    struct track *t = track_of(a->address, true);
    bool ok = b && !strcmp(b->connection, "Connected") && !split(b);
    bool told = b && last_changed(a, b); /* a source records each sync that ends */
    uint64_t done, left, rate, eta;

    progress(ast, a, t, now, &done, &left, &rate, &eta);
    fprintf(f, "destroy resync");
    kv(f, "peer", a->address);
    kv(f, "replication", a->replication);
    kv(f, "result", ok ? "done" : "aborted");
    kn(f, "percent", ok ? 100 : (uint64_t)a->resync_percent);
    if (verifying(a)) {
        kn(f, "done", ok ? ast->size : done);
        if (ok)
            kn(f, "mismatch", b->verify_mismatch_bytes);
    } else {
        kn(f, "done", ok ? done + left : done);
    }
    if (told)
        kn(f, "time-ms", b->last_resync_ms);
    else if (t->start_ms)
        kn(f, "time-ms", now - t->start_ms);
    fputc('\n', f);
    memset(t, 0, sizeof *t);
}

/* A whole sync began and ended between two samples: the source's record
 * of the last one says so. */
static void resync_unseen(FILE *f, const struct status_peer *b)
{
    bool verify = !strcmp(b->last_resync_reason, "verify");
    const char *repl = verify ? "VerifyS" : "SyncSource";

    fprintf(f, "create resync");
    kv(f, "peer", b->address);
    kv(f, "replication", repl);
    fprintf(f, " percent=0 done=0 remaining=%llu rate=0 eta=0\n",
            (unsigned long long)b->last_resync_bytes);
    fprintf(f, "destroy resync");
    kv(f, "peer", b->address);
    kv(f, "replication", repl);
    fprintf(f, " result=done percent=100");
    kn(f, "done", b->last_resync_bytes);
    if (verify)
        kn(f, "mismatch", b->verify_mismatch_bytes);
    kn(f, "time-ms", b->last_resync_ms);
    fputc('\n', f);
}

/* ---- the state, whole and as a difference ---- */

static const struct status_peer *find(const struct node_status *st, const char *address)
{
    for (int i = 0; i < st->npeers; i++)
        if (!strcmp(st->peers[i].address, address))
            return &st->peers[i];
    return NULL;
}

static void dump(FILE *f, const struct node_status *st, uint64_t now)
{
    line_node(f, "exists", st);
    for (int i = 0; i < st->npeers; i++)
        line_peer(f, "exists", &st->peers[i]);
    for (int i = 0; i < st->npeers; i++)
        if (split(&st->peers[i]))
            line_split(f, "exists", &st->peers[i]);
    for (int i = 0; i < st->npeers; i++) {
        const struct status_peer *p = &st->peers[i];
        struct track *t = syncing(p) ? track_of(p->address, false) : NULL;
        if (t)
            line_resync(f, "exists", st, p, t, now); /* others already follow it */
        else if (syncing(p))
            resync_begin(f, "exists", st, p, now);
    }
    fputs("exists -\n", f);
}

static void diff(FILE *f, const struct node_status *ast, const struct node_status *bst,
                 uint64_t now)
{
    for (int i = 0; i < ast->npeers; i++) {
        const struct status_peer *a = &ast->peers[i];
        if (find(bst, a->address))
            continue;
        if (syncing(a))
            resync_end(f, ast, a, NULL, now);
        if (split(a))
            line_split(f, "destroy", a);
        fprintf(f, "destroy peer");
        kv(f, "name", a->address);
        fputc('\n', f);
        track_forget(a->address);
    }
    if (strcmp(ast->role, bst->role) || strcmp(ast->disk, bst->disk))
        line_node(f, "change", bst);
    for (int i = 0; i < bst->npeers; i++) {
        const struct status_peer *b = &bst->peers[i], *a = find(ast, b->address);
        if (!a) {
            line_peer(f, "create", b);
            if (split(b))
                line_split(f, "create", b);
            if (syncing(b))
                resync_begin(f, "create", bst, b, now);
            continue;
        }
        bool same = same_sync(a, b);
        if (syncing(a) && !same)
            resync_end(f, ast, a, b, now);
        else if (!syncing(a) && !syncing(b) && last_changed(a, b) && b->last_resync_reason[0])
            resync_unseen(f, b);
        if (split(a) && !split(b))
            line_split(f, "destroy", a);
        if (peer_changed(a, b))
            line_peer(f, "change", b);
        if (!split(a) && split(b))
            line_split(f, "create", b);
        if (syncing(b) && !same) {
            resync_begin(f, "create", bst, b, now);
        } else if (same) {
            struct track *t = track_of(b->address, true);
            uint64_t done, left, rate, eta;
            progress(bst, b, t, now, &done, &left, &rate, &eta);
            /* paused or resumed: at once; progress: once a second at most */
            if (strcmp(a->replication, b->replication) ||
                (now - t->last_ms >= CTL_EVENTS_PROGRESS_MS &&
                 (t->pct != b->resync_percent || t->done != done)))
                line_resync(f, "change", bst, b, t, now);
        }
    }
}

/* ---- subscribers ---- */

static void chunk_done(struct stream *s, void *arg, bool sent)
{
    struct chunk *c = arg;
    (void)s, (void)sent;
    if (--c->refs == 0)
        free(c);
}

static void drop(struct sub *u, uint64_t now)
{
    static const char last[] = "error: this subscriber fell too far behind and is dropped\n";

    log_warn("events: subscriber %s fell more than %u KiB behind: dropped", u->s.peer,
             CTL_EVENTS_BACKLOG >> 10);
    u->dropped = true;
    u->drop_at = now + SUB_DRAIN_MS;
    nlive--;
    /* the queue keeps one item free for this line */
    if (stream_queue(&u->s, NULL, 0, last, sizeof last - 1, NULL, NULL) < 0) {
        stream_close(&u->s, NULL);
        return;
    }
    stream_close_when_sent(&u->s);
}

static void send_chunk(struct sub *u, struct chunk *c, uint64_t now)
{
    if (u->dropped)
        return;
    if (stream_queued_bytes(&u->s) + c->len > CTL_EVENTS_BACKLOG ||
        stream_queued(&u->s) >= SUB_ITEMS - 1 ||
        stream_queue(&u->s, NULL, 0, c->text, c->len, chunk_done, c) < 0) {
        drop(u, now);
        return;
    }
    c->refs++;
}

/* Queues what f holds to every subscriber whose fresh flag is `fresh`. */
static void broadcast(char *buf, size_t len, bool fresh, uint64_t now)
{
    struct chunk *c = len ? malloc(sizeof *c + len) : NULL;

    if (!c)
        return; /* nothing to say, or no memory: the next difference says it */
    c->refs = 1; /* ours, while queueing */
    c->len = len;
    memcpy(c->text, buf, len);
    for (int i = 0; i < CTL_MAX_SUBSCRIBERS; i++)
        if (subs[i] && subs[i]->fresh == fresh)
            send_chunk(subs[i], c, now);
    chunk_done(NULL, c, false);
}

static void on_timer(struct handler *h, uint32_t ev)
{
    uint64_t n;
    (void)h, (void)ev;
    if (read(tfd, &n, sizeof n) < 0) {
        /* nothing waited: the turn this wakeup brings samples anyway */
    }
    timer_armed = false;
}

/* A turn was skipped: make sure another one comes soon. */
static void arm_timer(void)
{
    struct itimerspec its = { .it_value = { 0, 2000000 } };
    if (timer_armed)
        return;
    if (tfd < 0) {
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        h_timer.fn = on_timer;
        if (tfd >= 0 && loop_add(tfd, EPOLLIN, &h_timer) < 0) {
            close(tfd);
            tfd = -1;
        }
        if (tfd < 0)
            return; /* the loop's own 200 ms wakeups remain */
    }
    if (timerfd_settime(tfd, 0, &its, NULL) == 0)
        timer_armed = true;
}

void ctl_events_init(ctl_snapshot_fn fn) { snapshot = fn; }

void ctl_events_tick(void)
{
    char *buf = NULL;
    size_t len = 0;
    bool fresh = false;
    FILE *f;

    if (!nsubs)
        return;
    uint64_t now = now_ms();
    for (int i = 0; i < CTL_MAX_SUBSCRIBERS; i++) {
        if (subs[i] && subs[i]->dropped && now >= subs[i]->drop_at)
            stream_close(&subs[i]->s, NULL); /* it never took its last line */
        else if (subs[i] && subs[i]->fresh)
            fresh = true;
    }
    if (!nlive || !snapshot) {
        have = false;
        return;
    }
    if (have && now == sampled_ms) {
        arm_timer();
        return;
    }
    sampled_ms = now;
    snapshot(&snap[cur ^ 1]);
    if (have) {
        if ((f = open_memstream(&buf, &len))) {
            diff(f, &snap[cur], &snap[cur ^ 1], now);
            if (fclose(f) == 0)
                broadcast(buf, len, false, now);
        }
        free(buf);
    } else {
        memset(tracks, 0, sizeof tracks);
    }
    cur ^= 1;
    have = true;
    if (!fresh)
        return;
    buf = NULL;
    if (!(f = open_memstream(&buf, &len)))
        return; /* no memory: they get the state on a later turn */
    dump(f, &snap[cur], now);
    if (fclose(f) == 0) {
        broadcast(buf, len, true, now);
        for (int i = 0; i < CTL_MAX_SUBSCRIBERS; i++)
            if (subs[i])
                subs[i]->fresh = false;
    }
    free(buf);
}

/* A subscriber says nothing more: what it sends is read and dropped, so
 * that its leaving is seen. */
static size_t on_data(struct stream *s, uint8_t *p, size_t len)
{
    (void)s, (void)p;
    return len;
}

static void on_close(struct stream *s, const char *why)
{
    struct sub *u = s->arg;
    (void)why;
    subs[u->slot] = NULL;
    nsubs--;
    if (!u->dropped)
        nlive--;
    loop_free_later(u);
}

static const struct stream_ops sub_ops = { .on_data = on_data, .on_close = on_close };

bool events_room(void) { return nsubs < CTL_MAX_SUBSCRIBERS; }

int events_subscribe(int fd, const char *peer)
{
    char hello[32];
    int slot = -1, r, n;

    for (int i = 0; i < CTL_MAX_SUBSCRIBERS && slot < 0; i++)
        if (!subs[i])
            slot = i;
    struct sub *u = slot < 0 ? NULL : calloc(1, sizeof *u);
    if (!u) {
        close(fd);
        return slot < 0 ? -EBUSY : -ENOMEM;
    }
    if ((r = stream_init(&u->s, fd, peer, &sub_ops, u, 256, SUB_ITEMS, 0, false)) < 0) {
        free(u);
        return r;
    }
    u->slot = slot;
    u->fresh = true;
    subs[slot] = u;
    nsubs++;
    nlive++;
    n = snprintf(hello, sizeof hello, "%s %d\n", CTL_EVENTS_MAGIC, CTL_EVENTS_VERSION);
    stream_write(&u->s, hello, n);
    return 0;
}

void events_stop(void)
{
    for (int i = 0; i < CTL_MAX_SUBSCRIBERS; i++) {
        if (!subs[i])
            continue;
        stream_flush(&subs[i]->s); /* what is queued, if the socket takes it */
        stream_close(&subs[i]->s, NULL);
    }
    if (tfd >= 0) {
        loop_del(tfd);
        close(tfd);
        tfd = -1;
    }
    timer_armed = have = false;
}
