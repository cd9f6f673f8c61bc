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

/* frames.c: one table of frame types. A handler returns 1 when the frame is
 * done with, 0 when it must wait (ordering: offered again later), -1 when it
 * closed the link. */
typedef int (*frame_fn)(void *link, const struct repl_hdr *h, const uint8_t *payload);
bool repl_frame_known(uint8_t type, uint32_t len); /* type exists, length fits it */
/* Runs the receiver role's handler; -1 with *why if that role may not receive it. */
int repl_frame_dispatch(enum repl_role receiver, void *link, const struct repl_hdr *h,
                        const uint8_t *payload, const char **why);
int secondary_on_hello(void *link, const struct repl_hdr *h, const uint8_t *payload);
int secondary_on_data(void *link, const struct repl_hdr *h, const uint8_t *payload);
int secondary_on_barrier(void *link, const struct repl_hdr *h, const uint8_t *payload);
int secondary_on_ping(void *link, const struct repl_hdr *h, const uint8_t *payload);
int primary_on_hello(void *link, const struct repl_hdr *h, const uint8_t *payload);
int primary_on_ack(void *link, const struct repl_hdr *h, const uint8_t *payload);
int primary_on_pong(void *link, const struct repl_hdr *h, const uint8_t *payload);

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
