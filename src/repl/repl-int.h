/* Inside replication: the two roles behind the public entry points. */
#ifndef NM_REPL_INT_H
#define NM_REPL_INT_H

#include "repl.h"

/* A role: what the node does with its peers (node.c dispatches to it). */
struct role {
    const char *name;
    void (*tick)(void);                 /* once per loop turn */
    bool (*busy)(void);                 /* output waits: do not sleep */
    int (*status)(struct peer_status *out, int max);
    void (*stop_begin)(void);           /* optional: a clean stop's last words */
    bool (*stop_done)(void);            /* optional: ... have been answered */
    void (*stop)(void);
    enum disk_state (*disk)(void);      /* optional: this disk, if the role knows better */
};

void repl_role_started(int primary);

void secondary_tick(void);
bool secondary_busy(void);
int secondary_status(struct peer_status *out, int max);
void secondary_stop(void);
enum disk_state secondary_disk(void);

void primary_tick(void);
bool primary_busy(void);
int primary_status(struct peer_status *out, int max);
void primary_stop(void);
void primary_stop_begin(void);
bool primary_stop_done(void);

#endif
