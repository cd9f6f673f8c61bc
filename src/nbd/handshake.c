/* Fixed newstyle handshake and option haggling, as a state machine over the
 * connection's input buffer, so a slow or hostile client blocks nobody. */
#include <string.h>

#include "nbd-int.h"

#define SERVER_HS_FLAGS (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)

void hs_start(struct conn *c)
{
    uint8_t g[18];
    put_be64(g, NBD_MAGIC);
    put_be64(g + 8, NBD_IHAVEOPT);
    put_be16(g + 16, SERVER_HS_FLAGS);
    conn_out(c, g, sizeof g);
    c->state = CS_FLAGS;
}

#define REPLY_MAX (20 + 4 + 4096) /* the longest: a LIST entry or a name */
#define HS_ROOM   (6 * REPLY_MAX) /* what one option's replies may need */

/* One write per reply: header and data. */
static void reply(struct conn *c, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
    uint8_t b[REPLY_MAX];
    nbd_encode_opt_reply(b, opt, type, len);
    if (len)
        memcpy(b + 20, data, len);
    conn_out(c, b, 20 + len);
}

/* The empty name always selects the (one) export. */
static bool name_matches(const uint8_t *name, uint32_t len)
{
    const char *ours = srv.exp->name;
    return len == 0 || (strlen(ours) == len && memcmp(ours, name, len) == 0);
}

static void reply_info_export(struct conn *c, uint32_t opt)
{
    uint8_t b[12];
    put_be16(b, NBD_INFO_EXPORT);
    put_be64(b + 2, srv.exp->size);
    put_be16(b + 10, export_flags(c));
    reply(c, opt, NBD_REP_INFO, b, 12);
}

static void reply_info_block_size(struct conn *c, uint32_t opt)
{
    uint8_t b[14];
    put_be16(b, NBD_INFO_BLOCK_SIZE);
    put_be32(b + 2, srv.exp->disk->align);   /* minimum: O_DIRECT alignment, else 1 */
    put_be32(b + 6, 4096);                   /* preferred */
    put_be32(b + 10, NBD_MAX_BLOCK);         /* maximum */
    _Static_assert(NBD_MAX_BLOCK <= BUF_MAX, "a maximum request must fit in one buffer");
    reply(c, opt, NBD_REP_INFO, b, 14);
}

static void reply_info_string(struct conn *c, uint32_t opt, uint16_t type, const char *s)
{
    uint8_t b[2 + 4096];
    size_t n = strlen(s);
    if (n > 4096)
        n = 4096;
    put_be16(b, type);
    memcpy(b + 2, s, n);
    reply(c, opt, NBD_REP_INFO, b, 2 + n);
}

/* INFO and GO: name, then a list of requested info items. */
static bool opt_info_go(struct conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    uint32_t nlen;
    uint16_t nreq;
    bool want_name = false, want_desc = false;

    if (len < 6 || (nlen = get_be32(d)) > len - 6 ||
        (nreq = get_be16(d + 4 + nlen), len != 6 + nlen + 2u * nreq)) {
        reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
        return false;
    }
    if (!name_matches(d + 4, nlen)) {
        reply(c, opt, NBD_REP_ERR_UNKNOWN, "no such export", 14);
        return false;
    }
    if (srv.shutting_down) {
        reply(c, opt, NBD_REP_ERR_SHUTDOWN, NULL, 0);
        return false;
    }
    for (uint16_t i = 0; i < nreq; i++) {
        uint16_t t = get_be16(d + 6 + nlen + 2 * i);
        want_name |= t == NBD_INFO_NAME;
        want_desc |= t == NBD_INFO_DESCRIPTION;
    }
    reply_info_export(c, opt);
    reply_info_block_size(c, opt);
    if (want_name)
        reply_info_string(c, opt, NBD_INFO_NAME, srv.exp->name);
    if (want_desc && srv.exp->description)
        reply_info_string(c, opt, NBD_INFO_DESCRIPTION, srv.exp->description);
    reply(c, opt, NBD_REP_ACK, NULL, 0);
    return opt == NBD_OPT_GO;
}

/* LIST_META_CONTEXT and SET_META_CONTEXT: we offer base:allocation only. */
static void opt_meta(struct conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    static const char ctx[] = "base:allocation";
    uint32_t nlen, nq, pos;
    bool match = false;

    if (len < 8 || (nlen = get_be32(d)) > len - 8) {
        reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
        return;
    }
    if (opt == NBD_OPT_SET_META_CONTEXT && !c->structured) {
        reply(c, opt, NBD_REP_ERR_INVALID, "structured replies first", 24);
        return;
    }
    if (!name_matches(d + 4, nlen)) {
        reply(c, opt, NBD_REP_ERR_UNKNOWN, "no such export", 14);
        return;
    }
    nq = get_be32(d + 4 + nlen);
    pos = 8 + nlen;
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t ql;
        if (len - pos < 4 || (ql = get_be32(d + pos)) > len - pos - 4) {
            reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
            return;
        }
        const char *q = (const char *)d + pos + 4;
        /* "base:allocation" itself, or (LIST only) the "base:" namespace */
        if ((ql == sizeof ctx - 1 && !memcmp(q, ctx, ql)) ||
            (opt == NBD_OPT_LIST_META_CONTEXT && ql == 5 && !memcmp(q, "base:", 5)))
            match = true;
        pos += 4 + ql;
    }
    if (pos != len) {
        reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
        return;
    }
    if (nq == 0 && opt == NBD_OPT_LIST_META_CONTEXT)
        match = true; /* an empty query lists everything */
    if (opt == NBD_OPT_SET_META_CONTEXT)
        c->meta_alloc = match;
    if (match) {
        uint8_t b[4 + sizeof ctx - 1];
        put_be32(b, NBD_META_ALLOC_ID);
        memcpy(b + 4, ctx, sizeof ctx - 1);
        reply(c, opt, NBD_REP_META_CONTEXT, b, sizeof b);
    }
    reply(c, opt, NBD_REP_ACK, NULL, 0);
}

static void opt_list(struct conn *c, uint32_t len)
{
    uint8_t b[4 + 4096];
    uint32_t n = strlen(srv.exp->name);

    if (len) {
        reply(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID, NULL, 0);
        return;
    }
    if (n > 4096)
        n = 4096;
    put_be32(b, n);
    memcpy(b + 4, srv.exp->name, n);
    reply(c, NBD_OPT_LIST, NBD_REP_SERVER, b, 4 + n);
    reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

/* The oldest way in: no error path; an unknown name closes the connection. */
static bool opt_export_name(struct conn *c, const uint8_t *d, uint32_t len)
{
    uint8_t b[10 + 124] = { 0 };

    if (!name_matches(d, len) || srv.shutting_down) {
        conn_kill(c, "NBD_OPT_EXPORT_NAME for an unknown export");
        return false;
    }
    put_be64(b, srv.exp->size);
    put_be16(b + 8, export_flags(c));
    conn_out(c, b, c->no_zeroes ? 10 : sizeof b);
    return true;
}

static void enter_transmission(struct conn *c)
{
    c->state = CS_TRANSMIT;
    c->writable = !srv.exp->read_only; /* as its export flags said */
    stream_set_limit(&c->s, 0); /* replies are bounded by the slots */
    stream_drop_blob(&c->s);    /* option replies are over */
    srv.stats.clients_now++;
    log_info("client %s: transmission phase (%s replies%s)", c->s.peer,
             c->structured ? "structured" : "simple",
             c->meta_alloc ? ", base:allocation" : "");
}

/* One step of the handshake from the staged bytes; returns what it took
 * (0: wait for more). Options wait while HS_QUEUED replies are unsent (the
 * stream's q_limit), or while the stream's buffer for them lacks room for
 * one option's replies: then until every reply has left (limit 1). */
size_t hs_data(struct conn *c, const uint8_t *p, size_t avail)
{
    if (c->state == CS_FLAGS) {
        if (avail < 4)
            return 0;
        uint32_t f = get_be32(p);
        if (f & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
            conn_kill(c, "unknown client flags (not an NBD client?)");
            return 0;
        }
        c->no_zeroes = f & NBD_FLAG_C_NO_ZEROES;
        c->state = CS_OPTIONS;
        return 4;
    }
    if (avail < NBD_OPT_HDR_SIZE)
        return 0;
    if (get_be64(p) != NBD_IHAVEOPT) {
        conn_kill(c, "bad option magic");
        return 0;
    }
    uint32_t opt = get_be32(p + 8), len = get_be32(p + 12);
    if (len > MAX_OPT_LEN) {
        conn_kill(c, "option length too large");
        return 0;
    }
    if (avail < NBD_OPT_HDR_SIZE + len)
        return 0;
    if (stream_write_room(&c->s) < HS_ROOM) {
        stream_set_limit(&c->s, 1);
        return 0;
    }
    stream_set_limit(&c->s, HS_QUEUED);
    if (++c->nopts > MAX_OPTS) {
        conn_kill(c, "too many options");
        return 0;
    }
    const uint8_t *d = p + NBD_OPT_HDR_SIZE;
    if (srv.exp->tls == NBD_TLS_REQUIRE && !c->s.tls && opt != NBD_OPT_STARTTLS &&
        opt != NBD_OPT_ABORT) {
        /* FORCEDTLS: nothing but STARTTLS before TLS; EXPORT_NAME cannot
         * be answered with an error */
        if (opt == NBD_OPT_EXPORT_NAME) {
            conn_kill(c, "NBD_OPT_EXPORT_NAME before TLS (--tls require)");
            return 0;
        }
        reply(c, opt, NBD_REP_ERR_TLS_REQD, NULL, 0);
        return NBD_OPT_HDR_SIZE + len;
    }
    switch (opt) {
    case NBD_OPT_STARTTLS:
        if (srv.exp->tls == NBD_TLS_OFF) {
            reply(c, opt, NBD_REP_ERR_UNSUP, NULL, 0); /* the client may go on without */
        } else if (len || c->s.tls) {
            reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0); /* a payload, or TLS already */
        } else {
            reply(c, opt, NBD_REP_ACK, NULL, 0);
            /* what was negotiated in the clear does not carry over */
            c->structured = c->meta_alloc = false;
            stream_start_tls(&c->s, srv.exp->tls_creds, true); /* after the ACK */
        }
        break;
    case NBD_OPT_EXPORT_NAME:
        if (opt_export_name(c, d, len))
            enter_transmission(c);
        break;
    case NBD_OPT_ABORT:
        reply(c, opt, NBD_REP_ACK, NULL, 0);
        stream_close_when_sent(&c->s); /* closed once the ACK is out */
        break;
    case NBD_OPT_LIST:
        opt_list(c, len);
        break;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        if (opt_info_go(c, opt, d, len))
            enter_transmission(c);
        break;
    case NBD_OPT_STRUCTURED_REPLY:
        if (len) {
            reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
        } else {
            c->structured = true;
            reply(c, opt, NBD_REP_ACK, NULL, 0);
        }
        break;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        opt_meta(c, opt, d, len);
        break;
    default:
        reply(c, opt, NBD_REP_ERR_UNSUP, NULL, 0);
        break;
    }
    return NBD_OPT_HDR_SIZE + len; /* requests may follow GO in the same packet */
}
