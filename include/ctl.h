/* Control socket: a Unix stream socket that answers one command per
 * connection, then closes it. "get" answers the node's status record (see
 * status.h), which `nbdmirror status` renders; the others act on the node
 * (promote, demote, connect, disconnect, verify, invalidate) and answer one
 * line, "ok: ..." or "error: ...". "events" is the exception: the connection
 * stays open and carries the event stream (below). */
#ifndef NM_CTL_H
#define NM_CTL_H

#include <stddef.h>
#include <stdint.h>

#define CTL_CMD_GET "get"
/* The longest answer a client accepts. */
#define CTL_ANSWER_MAX (16u << 20)

/* Returns the answer to cmd in a malloc'd buffer and its length in *len,
 * or NULL if there is nothing to say (no memory), or NULL after taking a
 * ticket with ctl_later() if the answer comes later (ctl_reply). */
typedef char *(*ctl_answer_fn)(const char *cmd, size_t *len);
typedef uint64_t ctl_ticket;
ctl_ticket ctl_later(void);                      /* only inside the answer function */
void ctl_reply(ctl_ticket t, const char *text);  /* the client may have gone: then nothing */
int ctl_start(const char *path, ctl_answer_fn fn);
void ctl_stop(void);
/* Client side: sends cmd to the daemon at path and reads its answer until
 * the daemon closes the connection; *out is malloc'd and NUL-terminated.
 * Returns 0 or -errno (-EFBIG past CTL_ANSWER_MAX). */
int ctl_query(const char *path, const char *cmd, char **out, size_t *len);
/* Connects to the daemon at path and sends cmd: the connected socket
 * (blocking, close-on-exec), or -errno. */
int ctl_connect(const char *path, const char *cmd);

/* ---- the event stream ----
 * A client that sends "events" subscribes: its connection stays open (no
 * silence timeout; at most CTL_MAX_SUBSCRIBERS, apart from the command
 * clients) and the daemon writes lines to it:
 *
 *   nbdmirror-events 1            the format's name and version
 *   exists OBJECT KEY=VALUE...    the current state, one line per object
 *   exists -                      ... complete
 *   create|change|destroy OBJECT KEY=VALUE...   each change, as it happens
 *
 * OBJECT is node, peer, resync or split-brain (keys in nbdmirror(8)); a
 * change line carries the object's whole state after the change. A VALUE
 * is bare (no space, quote, backslash or control character in it) or in
 * double quotes with \" \\ \n \r \t \xHH escapes. A subscriber that
 * falls more than CTL_EVENTS_BACKLOG bytes behind (beyond what the socket
 * holds) gets a last line "error: ..." and is dropped: the daemon neither
 * waits for it nor buffers without bound. When the daemon stops, the
 * connection closes. */
#define CTL_CMD_EVENTS      "events"
#define CTL_EVENTS_MAGIC    "nbdmirror-events"
#define CTL_EVENTS_VERSION  1
#define CTL_MAX_SUBSCRIBERS 16
#define CTL_EVENTS_BACKLOG  (64u << 10)
#define CTL_EVENTS_PROGRESS_MS 1000 /* resync progress: at most this often per peer */

struct node_status;
/* Fills in the node's state now (the daemon's status record). */
typedef void (*ctl_snapshot_fn)(struct node_status *st);
/* The source of the event stream's state; call before ctl_start. */
void ctl_events_init(ctl_snapshot_fn fn);
/* Once per loop turn: while anyone listens, samples the state (at most once
 * a millisecond) and writes what changed to every subscriber. Nothing to do
 * without subscribers. */
void ctl_events_tick(void);

#endif
