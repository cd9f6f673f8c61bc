/* Control socket: a Unix stream socket that answers one command per
 * connection ("status" or "status json") with a text or JSON report. */
#ifndef NM_CTL_H
#define NM_CTL_H

#include <stddef.h>

/* Writes the report for cmd into buf; returns its length. */
typedef size_t (*ctl_report_fn)(const char *cmd, char *buf, size_t cap);
int ctl_start(const char *path, ctl_report_fn fn);
void ctl_stop(void);
/* Client side: sends cmd to the daemon at path, prints the answer. */
int ctl_query(const char *path, const char *cmd);

#endif
