/* Resource files (config.h, nbdmirror.conf(5)): a strict line parser. Each
 * key has one scope and one check; every error names its line, so an admin
 * editing the file on one node finds the mistake before it reaches the rest. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "common.h"
#include "config.h"
#include "meta.h"
#include "nbd.h"
#include "status.h"

enum scope { SC_RESOURCE, SC_NODE, SC_BOTH };
typedef const char *(*check_fn)(const char *v); /* NULL: fine; else what is wrong */

struct key_def {
    const char *name;
    enum scope scope;
    check_fn check;
    const char *dflt;
    bool runtime;  /* a running node takes a new value (adjust) */
};

static const char *one_of(const char *v, const char *const *words, const char *say)
{
    for (; *words; words++)
        if (!strcmp(v, *words))
            return NULL;
    return say;
}

static const char *ck_protocol(const char *v)
{
    static const char *const w[] = { "A", "B", "C", NULL };
    return one_of(v, w, "is not A, B or C");
}

static const char *ck_timeout(const char *v)
{
    uint64_t n;
    return parse_size(v, &n) < 0 || n < 1 || n > 3600 ? "is not 1 to 3600 seconds" : NULL;
}

static const char *ck_size(const char *v)
{
    uint64_t n;
    return parse_size(v, &n) < 0 ? "is not a number of bytes per second (e.g. 50M; 0: no cap)"
                                  : NULL;
}

static const char *ck_bool(const char *v)
{
    static const char *const w[] = { "yes", "no", "true", "false", "on", "off", NULL };
    return one_of(v, w, "is not yes or no");
}

static const char *ck_al(const char *v)
{
    uint64_t n;
    return parse_size(v, &n) < 0 || n < AL_MIN || n > AL_MAX ? "is not 64 to 4088" : NULL;
}

static const char *ck_sb(const char *v)
{
    static const char *const w[] = { "disconnect", "discard-zero-changes",
                                     "discard-younger-primary", NULL };
    return one_of(v, w, "is not disconnect, discard-zero-changes or discard-younger-primary");
}

static const char *ck_tls(const char *v)
{
    static const char *const w[] = { "off", "on", "require", NULL };
    return one_of(v, w, "is not off, on or require");
}

static const char *ck_engine(const char *v)
{
    static const char *const w[] = { "auto", "uring", "aio", NULL };
    return one_of(v, w, "is not auto, uring or aio");
}

static const char *ck_poll(const char *v)
{
    uint64_t n;
    return parse_size(v, &n) < 0 || n > POLL_US_MAX ? "is not 0 to " NM_STR(POLL_US_MAX) : NULL;
}

static const char *ck_depth(const char *v)
{
    uint64_t n;
    return parse_size(v, &n) < 0 || n > DISK_DEPTH_MAX ? "is not 0 to " NM_STR(DISK_DEPTH_MAX) : NULL;
}

static const char *ck_path(const char *v)
{
    return v[0] != '/' ? "is not an absolute path" : NULL;
}

static const char *ck_meta(const char *v)
{
    return strcmp(v, "internal") && v[0] != '/' ? "is not 'internal' or an absolute path" : NULL;
}

static const char *ck_export(const char *v)
{
    return strlen(v) > NBD_MAX_NAME ? "is longer than 4096 bytes" : NULL;
}

/* HOST:PORT or [V6]:PORT with a port 1-65535 (names resolve when used) */
static const char *ck_hostport(const char *v)
{
    const char *c = strrchr(v, ':');
    char *end;
    long port;

    if (!c || c == v)
        return "is not HOST:PORT";
    errno = 0;
    port = strtol(c + 1, &end, 10);
    if (!c[1] || *end || errno || port < 1 || port > 65535)
        return "is not HOST:PORT (port 1-65535)";
    if (v[0] == '[' && c[-1] != ']')
        return "is not [IPv6]:PORT";
    return NULL;
}

static const char *ck_nbd(const char *v)
{
    if (!strncmp(v, "unix:", 5))
        return v[5] == '/' ? NULL : "is not unix:/ABSOLUTE/PATH or HOST:PORT";
    return ck_hostport(v) ? "is not unix:/ABSOLUTE/PATH or HOST:PORT" : NULL;
}

/* Indexed by enum res_key. Defaults are serve's. */
static const struct key_def keys[RK_COUNT] = {
    [RK_PROTOCOL]          = { "protocol", SC_RESOURCE, ck_protocol, "C", false },
    [RK_TIMEOUT]           = { "timeout", SC_RESOURCE, ck_timeout, "5", true },
    [RK_RESYNC_RATE]       = { "resync-rate", SC_RESOURCE, ck_size, "0", true },
    [RK_RESYNC_CSUMS]      = { "resync-csums", SC_RESOURCE, ck_bool, "no", true },
    [RK_RESYNC_CONTROL]    = { "resync-control", SC_RESOURCE, ck_bool, "yes", true },
    [RK_AL_EXTENTS]        = { "al-extents", SC_RESOURCE, ck_al, "1016", false },
    [RK_AFTER_SB_0PRI]     = { "after-sb-0pri", SC_RESOURCE, ck_sb, "disconnect", true },
    [RK_PEER_PSK]          = { "peer-psk", SC_BOTH, ck_path, "", false },
    [RK_PEER_CERTIFICATES] = { "peer-certificates", SC_BOTH, ck_path, "", false },
    [RK_TLS]               = { "tls", SC_RESOURCE, ck_tls, "off", false },
    [RK_TLS_CERTIFICATES]  = { "tls-certificates", SC_BOTH, ck_path, "", false },
    [RK_TLS_PSK]           = { "tls-psk", SC_BOTH, ck_path, "", false },
    [RK_TLS_VERIFY_PEER]   = { "tls-verify-peer", SC_RESOURCE, ck_bool, "no", false },
    [RK_EXPORT_NAME]       = { "export-name", SC_RESOURCE, ck_export, "", false },
    [RK_ADDRESS]           = { "address", SC_NODE, ck_hostport, "", false },
    [RK_NBD]               = { "nbd", SC_BOTH, ck_nbd, "", false },
    [RK_DISK]              = { "disk", SC_BOTH, ck_path, "", false },
    [RK_META]              = { "meta", SC_BOTH, ck_meta, "internal", false },
    [RK_CONTROL]           = { "control", SC_BOTH, ck_path, NULL, false },
    [RK_METRICS]           = { "metrics", SC_BOTH, ck_nbd, "", false },
    [RK_LOG]               = { "log", SC_BOTH, ck_path, NULL, false },
    [RK_ENGINE]            = { "engine", SC_BOTH, ck_engine, "auto", false },
    [RK_DIRECT]            = { "direct", SC_BOTH, ck_bool, "no", false },
    [RK_POLL_US]           = { "poll-us", SC_BOTH, ck_poll, NM_STR(POLL_US_DEFAULT), false },
    [RK_DISK_DEPTH]        = { "disk-depth", SC_BOTH, ck_depth, "0", true },
};

const char *res_key_name(enum res_key k) { return keys[k].name; }
bool res_key_runtime(enum res_key k) { return keys[k].runtime; }

static int fail(char *err, size_t len, const struct resource *r, int line, const char *fmt, ...)
{
    va_list ap;
    int n = line ? snprintf(err, len, "%s:%d: ", r->path, line) : snprintf(err, len, "%s: ", r->path);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < len)
        vsnprintf(err + n, len - n, fmt, ap);
    va_end(ap);
    return -1;
}

static char *trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

/* A node or resource name: what a host name may hold. */
static bool good_name(const char *s)
{
    if (!*s || strlen(s) >= RES_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
            return false;
    return true;
}

bool res_is_name(const char *w) { return good_name(w) && w[0] != '.'; }

/* A value: the rest of the line; "double quoted" keeps spaces and '#'. A
 * '#' after a space starts a comment. NULL if the quotes do not close. */
static char *value_of(char *v)
{
    v = trim(v);
    if (*v == '"') {
        char *q = strchr(v + 1, '"');
        if (!q || (*trim(q + 1) && *trim(q + 1) != '#'))
            return NULL;
        *q = '\0';
        return v + 1;
    }
    for (char *p = v; *p; p++)
        if (*p == '#' && (p == v || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    return trim(v);
}

static int parse_line(struct resource *r, struct res_section **sec, char *s, int ln, char *err,
                      size_t errlen)
{
    if (*s == '[') {
        char *close = strchr(s, ']'), *w;
        if (!close || *trim(close + 1))
            return fail(err, errlen, r, ln, "a section header is '[resource]' or '[node NAME]'");
        *close = '\0';
        w = trim(s + 1);
        if (!strcmp(w, "resource")) {
            if (r->common.line)
                return fail(err, errlen, r, ln, "[resource] given twice (first on line %d)",
                            r->common.line);
            r->common.line = ln;
            *sec = &r->common;
            return 0;
        }
        if (strncmp(w, "node", 4) || (w[4] != ' ' && w[4] != '\t'))
            return fail(err, errlen, r, ln, "unknown section '[%s]' (sections: [resource], "
                                            "[node NAME])", w);
        w = trim(w + 4);
        if (!good_name(w))
            return fail(err, errlen, r, ln, "'%s' is not a node name (letters, digits, '-', '_', "
                                            "'.'; as uname -n prints it)", w);
        for (int i = 0; i < r->nnodes; i++)
            if (!strcmp(r->nodes[i].name, w))
                return fail(err, errlen, r, ln, "[node %s] given twice (first on line %d)", w,
                            r->nodes[i].line);
        if (r->nnodes == RES_MAX_NODES)
            return fail(err, errlen, r, ln, "more than %d nodes", RES_MAX_NODES);
        *sec = &r->nodes[r->nnodes++];
        snprintf((*sec)->name, sizeof (*sec)->name, "%s", w);
        (*sec)->line = ln;
        return 0;
    }
    char *eq = strchr(s, '='), *k, *v;
    if (!eq)
        return fail(err, errlen, r, ln, "expected 'key = value', '[resource]' or '[node NAME]'");
    *eq = '\0';
    k = trim(s);
    if (!(v = value_of(eq + 1)))
        return fail(err, errlen, r, ln, "%s: the quoted value does not end with '\"'", k);
    if (!*sec)
        return fail(err, errlen, r, ln, "'%s' before any section ([resource] or [node NAME])", k);
    const char *where = (*sec)->name[0] ? (*sec)->name : NULL;
    int i;
    for (i = 0; i < RK_COUNT && strcmp(keys[i].name, k); i++)
        ;
    if (i == RK_COUNT) {
        if (where)
            return fail(err, errlen, r, ln, "unknown key '%s' in [node %s]", k, where);
        return fail(err, errlen, r, ln, "unknown key '%s' in [resource]", k);
    }
    if (where && keys[i].scope == SC_RESOURCE)
        return fail(err, errlen, r, ln, "'%s' is the same for every node: give it in [resource]", k);
    if (!where && keys[i].scope == SC_NODE)
        return fail(err, errlen, r, ln, "'%s' differs between nodes: give it in [node NAME]", k);
    if ((*sec)->val[i])
        return fail(err, errlen, r, ln, "'%s' given twice (first on line %d)", k, (*sec)->at[i]);
    const char *bad = keys[i].check(v);
    if (bad)
        return fail(err, errlen, r, ln, "%s: '%s' %s", k, v, bad);
    if (!((*sec)->val[i] = strdup(v)))
        return fail(err, errlen, r, ln, "out of memory");
    (*sec)->at[i] = ln;
    return 0;
}

/* What no single line shows: required keys, clashes between nodes. */
static int check_whole(struct resource *r, char *err, size_t errlen)
{
    static const enum res_key required[] = { RK_ADDRESS, RK_DISK, RK_NBD };
    if (!r->nnodes)
        return fail(err, errlen, r, 0, "no [node NAME] section");
    for (int i = 0; i < r->nnodes; i++) {
        const struct res_section *n = &r->nodes[i];
        for (unsigned k = 0; k < sizeof required / sizeof required[0]; k++)
            if (!*res_get(r, n, required[k]))
                return fail(err, errlen, r, n->line, "[node %s] has no '%s'%s", n->name,
                            keys[required[k]].name,
                            keys[required[k]].scope == SC_BOTH ? " (nor has [resource])" : "");
        for (int j = 0; j < i; j++)
            if (!strcmp(res_get(r, n, RK_ADDRESS), res_get(r, &r->nodes[j], RK_ADDRESS)))
                return fail(err, errlen, r, n->at[RK_ADDRESS],
                            "address: %s is node %s's address too", res_get(r, n, RK_ADDRESS),
                            r->nodes[j].name);
        if (*res_get(r, n, RK_PEER_PSK) && *res_get(r, n, RK_PEER_CERTIFICATES))
            return fail(err, errlen, r, n->line, "[node %s]: peer-psk or peer-certificates, "
                                                 "not both", n->name);
        bool tls = strcmp(res_get(r, n, RK_TLS), "off");
        bool x509 = *res_get(r, n, RK_TLS_CERTIFICATES), psk = *res_get(r, n, RK_TLS_PSK);
        if (tls && x509 == psk)
            return fail(err, errlen, r, n->line, "[node %s]: tls = %s needs tls-certificates or "
                        "tls-psk (one of them)", n->name, res_get(r, n, RK_TLS));
        if (!tls && (x509 || psk))
            return fail(err, errlen, r, n->line, "[node %s]: tls-certificates and tls-psk need "
                        "tls = on or require", n->name);
        if (res_get_bool(r, n, RK_TLS_VERIFY_PEER) && !x509)
            return fail(err, errlen, r, n->line, "[node %s]: tls-verify-peer needs "
                        "tls-certificates", n->name);
    }
    return 0;
}

int res_parse(struct resource *r, const char *text, size_t len, char *err, size_t errlen)
{
    struct res_section *sec = NULL;
    char line[4 * RES_VALUE_MAX];
    int ln = 0;

    /* one socket and log per resource, so several resources can run */
    snprintf(r->control_default, sizeof r->control_default, "/run/nbdmirror/%s.ctl", r->name);
    snprintf(r->log_default, sizeof r->log_default, "/var/log/nbdmirror/%s.log", r->name);
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - text - pos) : len - pos;
        ln++;
        if (n >= sizeof line)
            return fail(err, errlen, r, ln, "line longer than %zu bytes", sizeof line - 1);
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos += n + 1;
        if (memchr(line, '\0', n))
            return fail(err, errlen, r, ln, "a NUL byte (is this a text file?)");
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (parse_line(r, &sec, s, ln, err, errlen) < 0)
            return -1;
    }
    return check_whole(r, err, errlen);
}

int res_load(struct resource *r, const char *path, const char *name, char *err, size_t errlen)
{
    FILE *f;
    char *buf;
    size_t len;

    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    if (!name) { /* r0 from /etc/nbdmirror/r0.res */
        const char *b = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        size_t bl = strcspn(b, ".");
        snprintf(r->name, sizeof r->name, "%.*s", (int)(bl < RES_NAME_MAX ? bl : RES_NAME_MAX - 1), b);
    } else {
        snprintf(r->name, sizeof r->name, "%s", name);
    }
    if (!(f = fopen(path, "re")))
        return fail(err, errlen, r, 0, "%s", strerror(errno));
    buf = malloc(1 << 20);
    len = buf ? fread(buf, 1, 1 << 20, f) : 0;
    bool big = buf && len == 1 << 20, bad = ferror(f);
    fclose(f);
    if (!buf || big || bad) {
        free(buf);
        return fail(err, errlen, r, 0, "%s", !buf ? "out of memory" : big ? "larger than 1 MiB"
                                                                      : "read error");
    }
    int rc = res_parse(r, buf, len, err, errlen);
    free(buf);
    if (rc < 0)
        res_free(r);
    return rc;
}

void res_free(struct resource *r)
{
    for (int k = 0; k < RK_COUNT; k++) {
        free(r->common.val[k]);
        r->common.val[k] = NULL;
        for (int i = 0; i < r->nnodes; i++) {
            free(r->nodes[i].val[k]);
            r->nodes[i].val[k] = NULL;
        }
    }
}

void res_path(char *out, size_t len, const char *name, const char *config)
{
    const char *dir = getenv(RES_DIR_ENV);
    if (config)
        snprintf(out, len, "%s", config);
    else
        snprintf(out, len, "%s/%s.res", dir && *dir ? dir : RES_DEFAULT_DIR, name);
}

const struct res_section *res_this_node(const struct resource *r, const char *node, char *err,
                                        size_t errlen)
{
    struct utsname u;
    char names[512] = "";
    size_t o = 0;
    bool from_uname = !node;

    if (!node) {
        if (uname(&u) < 0) {
            snprintf(err, errlen, "uname: %s", strerror(errno));
            return NULL;
        }
        node = u.nodename;
    }
    for (int i = 0; i < r->nnodes; i++) {
        if (!strcmp(r->nodes[i].name, node))
            return &r->nodes[i];
        if (o < sizeof names)
            o += snprintf(names + o, sizeof names - o, "%s%s", i ? ", " : "", r->nodes[i].name);
    }
    snprintf(err, errlen, "%s: no [node %s] (this node's name%s); its nodes are %s", r->path, node,
             from_uname ? ", from uname -n; give --node NAME if it differs" : "", names);
    return NULL;
}

const char *res_get(const struct resource *r, const struct res_section *n, enum res_key k)
{
    if (n && n->val[k])
        return n->val[k];
    if (r->common.val[k])
        return r->common.val[k];
    if (k == RK_CONTROL)
        return r->control_default;
    if (k == RK_LOG)
        return r->log_default;
    return keys[k].dflt;
}

bool res_get_bool(const struct resource *r, const struct res_section *n, enum res_key k)
{
    const char *v = res_get(r, n, k);
    return !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on");
}

static void json_keys(FILE *f, const struct resource *r, const struct res_section *n,
                      enum scope want)
{
    bool first = true;
    for (int k = 0; k < RK_COUNT; k++) {
        if (keys[k].scope != want && !(want == SC_NODE && keys[k].scope == SC_BOTH))
            continue;
        fprintf(f, "%s\"%s\": ", first ? "" : ", ", keys[k].name);
        if (keys[k].check == ck_bool)
            fputs(res_get_bool(r, n, k) ? "true" : "false", f);
        else
            status_json_str(f, res_get(r, n, k));
        first = false;
    }
}

void res_dump_json(FILE *f, const struct resource *r, const struct res_section *self)
{
    fputs("{\"resource\": ", f);
    status_json_str(f, r->name);
    fputs(", \"file\": ", f);
    status_json_str(f, r->path);
    fputs(", \"this_node\": ", f);
    if (self)
        status_json_str(f, self->name);
    else
        fputs("null", f);
    fputs(", \"options\": {", f);
    json_keys(f, r, NULL, SC_RESOURCE);
    fputs("}, \"nodes\": [", f);
    for (int i = 0; i < r->nnodes; i++) {
        fprintf(f, "%s{\"name\": ", i ? ", " : "");
        status_json_str(f, r->nodes[i].name);
        fputs(", ", f);
        json_keys(f, r, &r->nodes[i], SC_NODE);
        fputc('}', f);
    }
    fputs("]}\n", f);
}

void res_settings(FILE *f, const struct resource *r, const struct res_section *n)
{
    for (int k = 0; k < RK_COUNT; k++)
        fprintf(f, "%s=%s\n", keys[k].name, res_get(r, n, k));
    fputs("peers=", f);
    for (int i = 0, first = 1; i < r->nnodes; i++)
        if (&r->nodes[i] != n) {
            fprintf(f, "%s%s", first ? "" : ",", res_get(r, &r->nodes[i], RK_ADDRESS));
            first = 0;
        }
    fputc('\n', f);
}
