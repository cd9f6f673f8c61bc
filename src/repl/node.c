/* The node: this daemon's one replication object. Its role is state, not
 * a start-time choice: each role (primary.c, secondary.c) is a table of
 * entry points, and the node dispatches through whichever is current. To
 * switch a running node (promote/demote), the node stops the current role
 * (its peers and stream), keeps what belongs to the node (the disk, the io
 * engine, the metadata and the disk state, the request lifecycle), and
 * starts the other role on the same struct repl_node. */
#include "repl-int.h"

static const struct role primary_role = {
    .name = "primary", .tick = primary_tick, .busy = primary_busy, .status = primary_status,
    .stop_begin = primary_stop_begin, .stop_done = primary_stop_done, .stop = primary_stop,
};
static const struct role secondary_role = {
    .name = "secondary", .tick = secondary_tick, .busy = secondary_busy,
    .status = secondary_status, .stop = secondary_stop, .disk = secondary_disk,
};

static struct {
    const struct role *role; /* NULL: standalone, no peers */
} node;

void repl_role_started(int primary) { node.role = primary ? &primary_role : &secondary_role; }

void repl_tick(void)
{
    if (node.role)
        node.role->tick();
}

bool repl_busy(void) { return node.role && node.role->busy(); }

int repl_peers_status(struct peer_status *out, int max)
{
    return node.role ? node.role->status(out, max) : 0;
}

/* A primary's disk is the reference: UpToDate by definition while it serves. */
enum disk_state repl_local_disk(void)
{
    return node.role && node.role->disk ? node.role->disk() : DS_UPTODATE;
}

void repl_stop_begin(void)
{
    if (node.role && node.role->stop_begin)
        node.role->stop_begin();
}

bool repl_stop_done(void)
{
    return !node.role || !node.role->stop_done || node.role->stop_done();
}

void repl_stop(void)
{
    if (node.role)
        node.role->stop();
}
