/* Inside replication: the two roles behind the public entry points. */
#ifndef NM_REPL_INT_H
#define NM_REPL_INT_H

#include "repl.h"

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
