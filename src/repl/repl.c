/* Replication entry points: a node runs one role at a time. */
#include "repl-int.h"

enum { NONE, PRIMARY, SECONDARY };
static int role = NONE;

void repl_role_started(int primary) { role = primary ? PRIMARY : SECONDARY; }

void repl_tick(void)
{
    if (role == PRIMARY)
        primary_tick();
    else if (role == SECONDARY)
        secondary_tick();
}

bool repl_busy(void)
{
    return role == PRIMARY ? primary_busy() : role == SECONDARY ? secondary_busy() : false;
}

int repl_peers_status(struct peer_status *out, int max)
{
    return role == PRIMARY ? primary_status(out, max)
         : role == SECONDARY ? secondary_status(out, max) : 0;
}

enum disk_state repl_local_disk(void)
{
    return role == SECONDARY ? secondary_disk() : DS_UPTODATE;
}

void repl_stop_begin(void)
{
    if (role == PRIMARY)
        primary_stop_begin();
}

bool repl_stop_done(void)
{
    return role == PRIMARY ? primary_stop_done() : true;
}

void repl_stop(void)
{
    if (role == PRIMARY)
        primary_stop();
    else if (role == SECONDARY)
        secondary_stop();
}
