/* Status: one structured record of a node, produced once by the daemon and
 * rendered by `nbdmirror status` as text or JSON.
 *
 * On the control socket the record travels as versioned lines, so neither
 * side needs a JSON parser:
 *
 *   nbdmirror-status 1        the format's name and version
 *   role=primary              node fields, key=value
 *   ...
 *   peer=10.77.1.2:7789       starts a peer; its fields follow
 *   connection=Connected
 *   ...
 *   end                       the record is complete
 *
 * A key is up to the first '='; the value is the rest of the line. Numbers
 * are plain decimal, booleans true/false, resync_percent and resync_eta_s
 * are null while no sync runs. In string values a backslash, every control
 * character and DEL are escaped (\\ \n \r \t \xHH), so no value can end its
 * line or start another key. A reader ignores keys it does not know. */
#ifndef NM_STATUS_H
#define NM_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "repl.h"

#define NM_STATUS_VERSION 1
#define NM_STATUS_MAGIC   "nbdmirror-status"

/* struct peer_status with its strings held in place, so a parsed record
 * owns everything it shows */
struct status_peer {
    char address[128];
    char connection[32], replication[32], peer_disk[32], peer_role[16];
    char protocol;           /* 0: none yet */
    uint64_t sent_bytes, acked_bytes, received_bytes, sent_requests, acked_requests;
    uint64_t trimmed_bytes, zeroed_bytes;
    char last_error[160];    /* "" if none */
    uint64_t inflight, out_of_sync_bytes;
    uint64_t resync_sent_bytes, resync_eta_s, resync_bytes_per_s;
    int resync_percent;      /* -1: no sync running */
    char last_resync_reason[32]; /* the last resync or verify that ended; "" none */
    uint64_t last_resync_bytes, last_resync_ms, last_resync_skipped_bytes;
    uint64_t verify_mismatch_bytes;
    uint64_t send_queue_bytes, lag_bytes, lag_ms;
};

struct node_status {
    char role[16], disk[16];
    char generation[17];     /* the current generation id, hex ("" standalone) */
    char device[4096];
    char export_name[4097];  /* NBD_MAX_NAME + 1 */
    uint64_t size;
    bool read_only, direct;
    char engine[16];
    uint64_t uptime_s, clients, connections_total;
    uint64_t reads, writes, flushes, trims, zero_writes, block_status, errors;
    uint64_t read_bytes, write_bytes;
    uint64_t disk_depth, disk_inflight, disk_waiting, disk_waited; /* io_queue_counts */
    int npeers;
    struct status_peer peers[REPL_MAX_PEERS];
};

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
size_t utf8_len(const unsigned char *s, size_t n);
/* s as a JSON string, quoted; always valid JSON (bytes that are not UTF-8
 * become U+FFFD) */
void status_json_str(FILE *f, const char *s);
/* Copies what the replication code reports of one peer. */
void status_peer_from(struct status_peer *d, const struct peer_status *s);
/* Writes the record in the line format; returns 0 or -errno. */
int status_write(FILE *f, const struct node_status *st);
/* Parses len bytes of the line format into *st; 0, or -EPROTO with a
 * reason in why. */
int status_parse(const char *buf, size_t len, struct node_status *st, char *why, size_t whylen);
/* The two renderings of `nbdmirror status`. */
void status_print_text(FILE *f, const struct node_status *st);
void status_print_json(FILE *f, const struct node_status *st);

#endif
