/* Inside the control part: how the command socket hands a subscriber to the
 * event stream (events.c). */
#ifndef NM_CTL_INT_H
#define NM_CTL_INT_H

#include <stdbool.h>

/* A subscriber may join now (fewer than CTL_MAX_SUBSCRIBERS). */
bool events_room(void);
/* Takes fd (a connected control client that asked for "events"; closed on
 * failure) as a subscriber named peer. 0 or -errno. */
int events_subscribe(int fd, const char *peer);
/* Closes every subscriber (the daemon stops). */
void events_stop(void);

#endif
