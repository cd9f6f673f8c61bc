/* The status record: its line format (written by the daemon, parsed by the
 * CLI) and its text and JSON renderings. One table per level names every
 * field once, in the order the JSON has always shown them, so the wire
 * format and the JSON cannot drift apart. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

enum ftype {
    F_STR,   /* char array */
    F_U64,
    F_BOOL,
    F_PROTO, /* char; 0 = none, shown as "-" */
    F_PCT,   /* int; < 0 = null */
    F_ETA,   /* uint64_t; null while resync_percent is */
};
struct field {
    const char *key;
    enum ftype type;
    size_t off, size;
};
#define FLD(T, type, m, key) { key, type, offsetof(T, m), sizeof(((T *)0)->m) }
#define N(type, m, key) FLD(struct node_status, type, m, key)
#define P(type, m) FLD(struct status_peer, type, m, #m)

static const struct field node_fields[] = {
    N(F_STR, role, "role"), N(F_STR, disk, "disk"), N(F_STR, generation, "generation"),
    N(F_STR, device, "device"),
    N(F_STR, export_name, "export"), N(F_U64, size, "size"),
    N(F_BOOL, read_only, "read_only"), N(F_STR, engine, "engine"), N(F_BOOL, direct, "direct"),
    N(F_U64, uptime_s, "uptime_s"), N(F_U64, clients, "clients"),
    N(F_U64, connections_total, "connections_total"), N(F_U64, reads, "reads"),
    N(F_U64, writes, "writes"), N(F_U64, flushes, "flushes"), N(F_U64, trims, "trims"),
    N(F_U64, zero_writes, "zero_writes"), N(F_U64, block_status, "block_status"),
    N(F_U64, errors, "errors"), N(F_U64, read_bytes, "read_bytes"),
    N(F_U64, write_bytes, "write_bytes"), N(F_U64, disk_depth, "disk_depth"),
    N(F_U64, disk_inflight, "disk_inflight"), N(F_U64, disk_waiting, "disk_waiting"),
    N(F_U64, disk_waited, "disk_waited"),
};
/* the first one, address, is the "peer=" line that starts a peer */
static const struct field peer_fields[] = {
    P(F_STR, address), P(F_STR, connection), P(F_STR, replication), P(F_STR, peer_disk),
    P(F_PROTO, protocol), P(F_U64, sent_bytes), P(F_U64, acked_bytes),
    P(F_U64, received_bytes), P(F_U64, sent_requests), P(F_U64, acked_requests),
    P(F_U64, inflight), P(F_U64, out_of_sync_bytes), P(F_U64, resync_sent_bytes),
    P(F_PCT, resync_percent), P(F_ETA, resync_eta_s), P(F_U64, resync_bytes_per_s),
    P(F_U64, trimmed_bytes), P(F_U64, zeroed_bytes), P(F_STR, last_error),
    P(F_STR, peer_role), P(F_STR, last_resync_reason), P(F_U64, last_resync_bytes),
    P(F_U64, last_resync_ms), P(F_U64, last_resync_skipped_bytes),
    P(F_U64, verify_mismatch_bytes), P(F_U64, send_queue_bytes), P(F_U64, lag_bytes),
    P(F_U64, lag_ms),
};
#define NFIELDS(a) (sizeof a / sizeof a[0])

static void copy_str(char *d, size_t cap, const char *s)
{
    snprintf(d, cap, "%s", s ? s : "");
}

void status_peer_from(struct status_peer *d, const struct peer_status *s)
{
    copy_str(d->address, sizeof d->address, s->address);
    copy_str(d->connection, sizeof d->connection, s->connection);
    copy_str(d->replication, sizeof d->replication, s->replication);
    copy_str(d->peer_disk, sizeof d->peer_disk, s->peer_disk);
    copy_str(d->peer_role, sizeof d->peer_role, s->peer_role);
    copy_str(d->last_resync_reason, sizeof d->last_resync_reason, s->last_resync_reason);
    d->last_resync_bytes = s->last_resync_bytes;
    d->last_resync_ms = s->last_resync_ms;
    d->last_resync_skipped_bytes = s->last_resync_skipped_bytes;
    d->verify_mismatch_bytes = s->verify_mismatch_bytes;
    d->protocol = s->protocol;
    d->sent_bytes = s->sent_bytes;
    d->acked_bytes = s->acked_bytes;
    d->received_bytes = s->received_bytes;
    d->sent_requests = s->sent_requests;
    d->acked_requests = s->acked_requests;
    d->trimmed_bytes = s->trimmed_bytes;
    d->zeroed_bytes = s->zeroed_bytes;
    copy_str(d->last_error, sizeof d->last_error, s->last_error);
    d->inflight = s->inflight;
    d->out_of_sync_bytes = s->out_of_sync_bytes;
    d->resync_sent_bytes = s->resync_sent_bytes;
    d->resync_eta_s = s->resync_eta_s;
    d->resync_bytes_per_s = s->resync_bytes_per_s;
    d->resync_percent = s->resync_percent;
    d->send_queue_bytes = s->send_queue_bytes;
    d->lag_bytes = s->lag_bytes;
    d->lag_ms = s->lag_ms;
}

/* ---- the line format ---- */

static void put_escaped(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", f);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\r')
            fputs("\\r", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
}

static int pct_of(const void *base, const struct field *fl)
{
    /* F_ETA is null exactly when the same peer's resync_percent is */
    (void)fl;
    return ((const struct status_peer *)base)->resync_percent;
}

/* resync_percent and resync_eta_s: null while no sync runs (the same in the
 * record and in JSON). */
static void put_sync_number(FILE *f, const void *base, const struct field *fl, const char *p)
{
    if (pct_of(base, fl) < 0)
        fputs("null", f);
    else if (fl->type == F_PCT)
        fprintf(f, "%d", *(const int *)p);
    else
        fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p);
}

static void write_fields(FILE *f, const void *base, const struct field *fl, size_t n,
                         const char *first_key)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = (const char *)base + fl[i].off;
        fprintf(f, "%s=", i == 0 && first_key ? first_key : fl[i].key);
        switch (fl[i].type) {
        case F_STR: put_escaped(f, p); break;
        case F_U64: fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p); break;
        case F_BOOL: fputs(*(const bool *)p ? "true" : "false", f); break;
        case F_PROTO:
            if (*p > ' ' && *p < 0x7f) /* one printable character, or nothing */
                fputc(*p, f);
            break;
        case F_PCT:
        case F_ETA:
            put_sync_number(f, base, &fl[i], p);
            break;
        }
        fputc('\n', f);
    }
}

int status_write(FILE *f, const struct node_status *st)
{
    fprintf(f, "%s %d\n", NM_STATUS_MAGIC, NM_STATUS_VERSION);
    write_fields(f, st, node_fields, NFIELDS(node_fields), NULL);
    for (int i = 0; i < st->npeers && i < REPL_MAX_PEERS; i++)
        write_fields(f, &st->peers[i], peer_fields, NFIELDS(peer_fields), "peer");
    fputs("end\n", f);
    return fflush(f) == EOF || ferror(f) ? -EIO : 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Undoes put_escaped into d (cap bytes with the NUL); NULL if fine, else why. */
static const char *unescape(char *d, size_t cap, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if ((unsigned char)c < 0x20 || c == 0x7f)
            return "a raw control character in a value";
        if (c == '\\') {
            if (++i == len)
                return "a value ends in a backslash";
            switch (s[i]) {
            case '\\': c = '\\'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'x': {
                int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
                int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
                if (lo < 0 || (hi << 4 | lo) == 0)
                    return "a bad \\x escape";
                c = (char)(hi << 4 | lo);
                i += 2;
                break;
            }
            default: return "an unknown escape";
            }
        }
        if (o + 1 >= cap)
            return "a value too long";
        d[o++] = c;
    }
    d[o] = '\0';
    return NULL;
}

static const char *parse_u64(const char *s, size_t len, uint64_t *v)
{
    uint64_t x = 0;
    if (len == 0 || len > 20)
        return "a bad number";
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return "a bad number";
        unsigned d = s[i] - '0';
        if (x > (UINT64_MAX - d) / 10)
            return "a number out of range";
        x = x * 10 + d;
    }
    *v = x;
    return NULL;
}

static bool is(const char *s, size_t len, const char *word)
{
    return len == strlen(word) && !memcmp(s, word, len);
}

static const char *parse_value(void *base, const struct field *fl, const char *v, size_t len)
{
    char *p = (char *)base + fl->off;
    uint64_t x;
    const char *why;

    switch (fl->type) {
    case F_STR: return unescape(p, fl->size, v, len);
    case F_U64: return parse_u64(v, len, (uint64_t *)p);
    case F_BOOL:
        if (!is(v, len, "true") && !is(v, len, "false"))
            return "a bad boolean";
        *(bool *)p = len == 4;
        return NULL;
    case F_PROTO:
        if (len > 1 || (len == 1 && (v[0] <= ' ' || v[0] == 0x7f)))
            return "a bad protocol";
        *p = len ? v[0] : 0;
        return NULL;
    case F_PCT:
        if (is(v, len, "null")) {
            *(int *)p = -1;
            return NULL;
        }
        if ((why = parse_u64(v, len, &x)) || x > 100)
            return why ? why : "a percentage over 100";
        *(int *)p = (int)x;
        return NULL;
    case F_ETA:
        if (is(v, len, "null")) {
            *(uint64_t *)p = 0;
            return NULL;
        }
        return parse_u64(v, len, (uint64_t *)p);
    }
    return "a bad field";
}

static void init_peer(struct status_peer *p)
{
    memset(p, 0, sizeof *p);
    p->resync_percent = -1;
}

int status_parse(const char *buf, size_t len, struct node_status *st, char *why, size_t whylen)
{
    const char *p = buf, *end = buf + len, *err = NULL;
    char head[64];
    int line = 0;
    bool done = false;

    memset(st, 0, sizeof *st);
    snprintf(head, sizeof head, "%s %d", NM_STATUS_MAGIC, NM_STATUS_VERSION);
    while (p < end && !err) {
        const char *nl = memchr(p, '\n', end - p);
        if (!nl) {
            err = "the last line is incomplete";
            break;
        }
        size_t n = nl - p;
        line++;
        if (done) {
            err = "lines after the end";
        } else if (line == 1) {
            if (!is(p, n, head))
                err = n > strlen(NM_STATUS_MAGIC) && !memcmp(p, NM_STATUS_MAGIC " ", strlen(NM_STATUS_MAGIC) + 1)
                          ? "an unknown version of the status format"
                          : "not a status record";
        } else if (is(p, n, "end")) {
            done = true;
        } else {
            const char *eq = memchr(p, '=', n);
            if (!eq) {
                err = "a line without '='";
                break;
            }
            const char *v = eq + 1;
            size_t klen = eq - p, vlen = nl - v;
            const struct field *fl = NULL;
            void *base;
            if (is(p, klen, "peer")) {
                if (st->npeers == REPL_MAX_PEERS) {
                    err = "too many peers";
                    break;
                }
                base = &st->peers[st->npeers];
                init_peer(base);
                st->npeers++;
                fl = &peer_fields[0];
            } else {
                const struct field *tab = st->npeers ? peer_fields : node_fields;
                size_t nt = st->npeers ? NFIELDS(peer_fields) : NFIELDS(node_fields);
                base = st->npeers ? (void *)&st->peers[st->npeers - 1] : (void *)st;
                /* a peer's address comes only with "peer=" */
                for (size_t i = st->npeers ? 1 : 0; i < nt; i++)
                    if (is(p, klen, tab[i].key))
                        fl = &tab[i];
            }
            if (fl) /* keys from a newer daemon are skipped */
                err = parse_value(base, fl, v, vlen);
        }
        p = nl + 1;
    }
    if (!err && !done)
        err = line ? "the record is incomplete (no end line)" : "an empty answer";
    if (err) {
        if (line > 1)
            snprintf(why, whylen, "line %d: %s", line, err);
        else
            snprintf(why, whylen, "%s", err);
        return -EPROTO;
    }
    return 0;
}

/* ---- renderings ---- */

size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0], need, min;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        need = 1, min = 0x80, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        need = 2, min = 0x800, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        need = 3, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if (n < need + 1)
        return 0;
    for (unsigned i = 1; i <= need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need + 1;
}

/* A JSON string: quotes, backslashes and control characters escaped; bytes
 * that are not UTF-8 (a device path may hold any) become U+FFFD, so the
 * output is always valid JSON. */
void status_json_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);

    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t l;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\r')
            fputs("\\r", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else if ((l = utf8_len(p + i, n - i)) > 0) {
            fwrite(p + i, 1, l, f);
            i += l;
            continue;
        } else
            fputs("\\ufffd", f);
        i++;
    }
    fputc('"', f);
}

static void json_fields(FILE *f, const void *base, const struct field *fl, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = (const char *)base + fl[i].off;
        fprintf(f, "%s\"%s\":", i ? "," : "", fl[i].key);
        switch (fl[i].type) {
        case F_STR: status_json_str(f, p); break;
        case F_U64: fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p); break;
        case F_BOOL: fputs(*(const bool *)p ? "true" : "false", f); break;
        case F_PROTO: fprintf(f, "\"%c\"", *p > ' ' && *p < 0x7f ? *p : '-'); break;
        case F_PCT:
        case F_ETA:
            put_sync_number(f, base, &fl[i], p);
            break;
        }
    }
}

/* one line, the same keys and value types as always, plus a newline */
void status_print_json(FILE *f, const struct node_status *st)
{
    fputc('{', f);
    json_fields(f, st, node_fields, NFIELDS(node_fields));
    fputs(",\"peers\":[", f);
    for (int i = 0; i < st->npeers && i < REPL_MAX_PEERS; i++) {
        fputs(i ? ",{" : "{", f);
        json_fields(f, &st->peers[i], peer_fields, NFIELDS(peer_fields));
        fputc('}', f);
    }
    fputs("]}\n", f);
}

/* For people: a control character in a value is shown escaped, so a
 * device name cannot forge lines of the report. */
static const char *vis(char *b, size_t cap, const char *s)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 5 < cap; p++) {
        if (*p == '\n')
            o += snprintf(b + o, cap - o, "\\n");
        else if (*p == '\r')
            o += snprintf(b + o, cap - o, "\\r");
        else if (*p == '\t')
            o += snprintf(b + o, cap - o, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            o += snprintf(b + o, cap - o, "\\x%02x", *p);
        else
            b[o++] = *p;
    }
    b[o] = '\0';
    return b;
}

void status_print_text(FILE *f, const struct node_status *st)
{
    static char v1[4 * sizeof st->device + 1], v2[4 * sizeof st->export_name + 1];
    char a[4 * 128 + 1], b[4 * 32 + 1], c[4 * 32 + 1], d[4 * 32 + 1];

    fprintf(f,
            "role: %s   disk: %s   %s%s%s\n"
            "device: %s   export: \"%s\"   size: %llu bytes\n"
            "engine: %s%s   uptime: %llus\n"
            "clients: %llu now, %llu since start\n"
            "requests: %llu reads (%llu bytes), %llu writes (%llu bytes), %llu flushes,\n"
            "          %llu trims, %llu zero writes, %llu block status, %llu errors\n",
            vis(a, sizeof a, st->role), vis(b, sizeof b, st->disk),
            st->read_only ? "read-only" : "read-write", st->generation[0] ? "   generation: " : "",
            vis(d, sizeof d, st->generation), vis(v1, sizeof v1, st->device),
            vis(v2, sizeof v2, st->export_name), (unsigned long long)st->size,
            vis(c, sizeof c, st->engine), st->direct ? " (O_DIRECT)" : " (buffered)",
            (unsigned long long)st->uptime_s, (unsigned long long)st->clients,
            (unsigned long long)st->connections_total, (unsigned long long)st->reads,
            (unsigned long long)st->read_bytes, (unsigned long long)st->writes,
            (unsigned long long)st->write_bytes, (unsigned long long)st->flushes,
            (unsigned long long)st->trims, (unsigned long long)st->zero_writes,
            (unsigned long long)st->block_status, (unsigned long long)st->errors);
    fprintf(f, "disk queue: %llu at the disk, %llu waiting, %llu waited since start",
            (unsigned long long)st->disk_inflight, (unsigned long long)st->disk_waiting,
            (unsigned long long)st->disk_waited);
    if (st->disk_depth)
        fprintf(f, " (--disk-depth %llu)\n", (unsigned long long)st->disk_depth);
    else
        fputs(" (no --disk-depth)\n", f);
    if (st->npeers == 0) {
        fputs("peers: none\n", f);
        return;
    }
    fprintf(f, "%-22s %-10s %-11s %-12s %s %10s %10s %8s\n", "peer", "connection",
            "replication", "peer disk", "p", "sent MiB", "acked MiB", "in flight");
    for (int i = 0; i < st->npeers && i < REPL_MAX_PEERS; i++) {
        const struct status_peer *p = &st->peers[i];
        fprintf(f, "%-22s %-10s %-11s %-12s %c %10.1f %10.1f %8llu\n",
                vis(a, sizeof a, p->address), vis(b, sizeof b, p->connection),
                vis(c, sizeof c, p->replication), vis(d, sizeof d, p->peer_disk),
                p->protocol > ' ' && p->protocol < 0x7f ? p->protocol : '-',
                (p->sent_bytes ? p->sent_bytes : p->received_bytes) / 1048576.0,
                p->acked_bytes / 1048576.0, (unsigned long long)p->inflight);
        if (p->resync_percent >= 0)
            fprintf(f, "    sync: %d%%, %.1f MiB done, %.1f MiB/s, eta %llus\n",
                    p->resync_percent, p->resync_sent_bytes / 1048576.0,
                    p->resync_bytes_per_s / 1048576.0, (unsigned long long)p->resync_eta_s);
        if (p->out_of_sync_bytes)
            fprintf(f, "    out of sync: %.1f MiB (%llu bytes)\n", p->out_of_sync_bytes / 1048576.0,
                    (unsigned long long)p->out_of_sync_bytes);
        if (p->lag_bytes || p->lag_ms)
            fprintf(f, "    behind: %.1f MiB not acknowledged, the oldest for %.1f s\n",
                    p->lag_bytes / 1048576.0, p->lag_ms / 1000.0);
        if (!strcmp(p->last_resync_reason, "verify"))
            fprintf(f, "    last verify: %.1f s, %llu bytes differed%s\n",
                    p->last_resync_ms / 1000.0, (unsigned long long)p->verify_mismatch_bytes,
                    p->verify_mismatch_bytes ? " (resynced)" : "");
        else if (p->last_resync_reason[0])
            fprintf(f, "    last %s: %.1f MiB sent in %.1f s%s\n",
                    vis(b, sizeof b, p->last_resync_reason), p->last_resync_bytes / 1048576.0,
                    p->last_resync_ms / 1000.0,
                    p->last_resync_skipped_bytes ? ", the rest equal by checksum" : "");
        if (p->trimmed_bytes || p->zeroed_bytes)
            fprintf(f, "    trimmed %.1f MiB, zeroed %.1f MiB\n", p->trimmed_bytes / 1048576.0,
                    p->zeroed_bytes / 1048576.0);
        if (p->last_error[0])
            fprintf(f, "    last error: %s\n", vis(a, sizeof a, p->last_error));
    }
}
