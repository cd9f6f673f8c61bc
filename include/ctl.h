/* Control socket: a Unix stream socket that answers one command per
 * connection, then closes it. "get" answers the node's status record (see
 * status.h), which `nbdmirror status` renders; the others act on the node
 * (promote, demote, connect, disconnect, verify, invalidate) and answer one
 * line, "ok: ..." or "error: ...". */
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

#endif
