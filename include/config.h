/* Resource files: one file describes a replicated resource for every node
 * that holds it, the same file on all of them (nbdmirror.conf(5)).
 *
 *   [resource]            options of the whole resource; node keys given
 *   protocol = C          here are defaults for every node
 *   [node alpha]          one section per node, named as `uname -n` prints
 *   address = 10.0.0.1:7789
 *   disk = /dev/sdb1
 *
 * The parser is strict: an unknown key or section, a key given twice, a bad
 * value or a missing required key is an error naming the file and line.
 * Values are kept as text, checked once; callers read them by key. */
#ifndef NM_CONFIG_H
#define NM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define RES_MAX_NODES 32          /* a primary and up to 31 peers */
#define RES_NAME_MAX 64
#define RES_VALUE_MAX 1024
#define RES_DEFAULT_DIR "/etc/nbdmirror"
#define RES_DIR_ENV "NBDMIRROR_CONFDIR" /* another directory (tests) */

/* Every key, in the order dump and adjust show them. */
enum res_key {
    /* the whole resource */
    RK_PROTOCOL, RK_TIMEOUT, RK_RESYNC_RATE, RK_RESYNC_CSUMS, RK_RESYNC_CONTROL,
    RK_AL_EXTENTS, RK_AFTER_SB_0PRI, RK_PEER_PSK, RK_PEER_CERTIFICATES, RK_TLS,
    RK_TLS_CERTIFICATES, RK_TLS_PSK, RK_TLS_VERIFY_PEER, RK_EXPORT_NAME,
    /* per node (a value in [resource] is every node's default) */
    RK_ADDRESS, RK_NBD, RK_DISK, RK_META, RK_CONTROL, RK_METRICS, RK_LOG, RK_ENGINE,
    RK_DIRECT, RK_POLL_US, RK_DISK_DEPTH,
    RK_COUNT
};

struct res_section {
    char name[RES_NAME_MAX];   /* node name; "" for [resource] */
    int line;                  /* where the section starts */
    char *val[RK_COUNT];       /* NULL: not given */
    int at[RK_COUNT];          /* the line it was given on */
};

struct resource {
    char name[RES_NAME_MAX];
    char path[RES_VALUE_MAX];
    char control_default[RES_VALUE_MAX + 32], log_default[RES_VALUE_MAX + 32];
    struct res_section common;
    int nnodes;
    struct res_section nodes[RES_MAX_NODES];
};

/* Parses the file at path into *r (name: the resource's name, from the
 * file name if NULL). 0, or -1 with "FILE:LINE: reason" in err. */
int res_load(struct resource *r, const char *path, const char *name, char *err, size_t errlen);
/* Parses text (for tests and res_load). */
int res_parse(struct resource *r, const char *text, size_t len, char *err, size_t errlen);
void res_free(struct resource *r);

/* Finds NAME's file: --config FILE if given, else $NBDMIRROR_CONFDIR or
 * /etc/nbdmirror, + NAME.res. */
void res_path(char *out, size_t len, const char *name, const char *config);
/* A word that names a resource rather than an address or a path. */
bool res_is_name(const char *word);

/* This node: the one named node (or, if NULL, `uname -n`). NULL with a
 * reason in err if the file has no such node. */
const struct res_section *res_this_node(const struct resource *r, const char *node, char *err,
                                        size_t errlen);
/* The value of key for node n (its own, else the resource's, else the
 * built-in default); never NULL ("" when there is none). */
const char *res_get(const struct resource *r, const struct res_section *n, enum res_key k);
bool res_get_bool(const struct resource *r, const struct res_section *n, enum res_key k);
const char *res_key_name(enum res_key k);
/* Options that a running node can change (adjust). */
bool res_key_runtime(enum res_key k);

/* The parsed resource as one JSON object (dump). */
void res_dump_json(FILE *f, const struct resource *r, const struct res_section *self);
/* Node n's settings as "key=value" lines, every key in order, and last a
 * line "peers=ADDR,ADDR" (the other nodes' addresses): what a running
 * daemon reports and adjust compares. */
void res_settings(FILE *f, const struct resource *r, const struct res_section *n);

#endif
