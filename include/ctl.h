/* Control socket: a Unix stream socket that answers one command per
 * connection, then closes it. The one command today is "get": the answer
 * is the node's status record (see status.h), which `nbdmirror status`
 * renders. */
#ifndef NM_CTL_H
#define NM_CTL_H

#include <stddef.h>

#define CTL_CMD_GET "get"
/* The longest answer a client accepts. */
#define CTL_ANSWER_MAX (16u << 20)

/* Returns the answer to cmd in a malloc'd buffer and its length in *len,
 * or NULL if there is nothing to say (no memory). */
typedef char *(*ctl_answer_fn)(const char *cmd, size_t *len);
int ctl_start(const char *path, ctl_answer_fn fn);
void ctl_stop(void);
/* Client side: sends cmd to the daemon at path and reads its answer until
 * the daemon closes the connection; *out is malloc'd and NUL-terminated.
 * Returns 0 or -errno (-EFBIG past CTL_ANSWER_MAX). */
int ctl_query(const char *path, const char *cmd, char **out, size_t *len);

#endif
