/*
 * http_get.c - the sans-I/O HTTP/1.1 GET client: builds one request, parses
 * its response with http-parser, streams the body to the caller with offsets,
 * and checks every length the server states (moat/http.h).
 *
 * Invariants:
 *  - state HEAD: no final response has been accepted; header_seen counts every
 *    byte fed to http-parser so far and never exceeds header_max.
 *  - state BODY: the final response was accepted (200/206/304); received
 *    body bytes were delivered at body_offset + 0 .. received, and received
 *    never exceeds body_len when that is known, nor max_total - body_offset.
 *  - state DONE / ERR are final: input and eof answer the same from then on.
 * http-parser runs with no heap and keeps its state in g->parser; its
 * callbacks reach g through parser.data.
 */
#include "moat/http.h"

#include "mem.h"
#include "strbuf.h"

enum { ST_HEAD = 0, ST_BODY, ST_DONE, ST_ERR };
enum { F_NONE = 0, F_CONTENT_RANGE, F_ETAG, F_OTHER };

#define NAME_CONTENT_RANGE "content-range"
#define NAME_ETAG "etag"

static moat_http_get *ctx_of(http_parser *p)
{
    return (moat_http_get *)p->data;
}

/* ---------------------------------------------------------------- words -- */

/* Start an error message "<peer> ..." and keep err sticky. Returns err. */
static moat_err fail(moat_http_get *g, moat_err err, const char *a,
                     const char *b, const char *c)
{
    moat_sb sb;
    moat_sb_init(&sb, g->msg, sizeof g->msg);
    moat_sb_str(&sb, g->peer);
    moat_sb_str(&sb, " ");
    moat_sb_str(&sb, a);
    moat_sb_str(&sb, b);
    moat_sb_str(&sb, c);
    moat_sb_words(&sb);
    g->err = err;
    g->state = ST_ERR;
    return err;
}

/* "<peer> <what>: <n> of <m> body bytes for <path>" style messages. */
static moat_err fail_n(moat_http_get *g, moat_err err, const char *a,
                       uint64_t n, const char *b, uint64_t m, const char *c)
{
    moat_sb sb;
    moat_sb_init(&sb, g->msg, sizeof g->msg);
    moat_sb_str(&sb, g->peer);
    moat_sb_str(&sb, " ");
    moat_sb_str(&sb, a);
    moat_sb_u64(&sb, n);
    if (b != NULL) {
        moat_sb_str(&sb, b);
        moat_sb_u64(&sb, m);
    }
    moat_sb_str(&sb, c);
    moat_sb_str(&sb, g->what);
    moat_sb_words(&sb);
    g->err = err;
    g->state = ST_ERR;
    return err;
}

/* Copy printable ASCII of s[0..n) onto dst (cap includes the NUL). */
static void copy_printable(char *dst, size_t cap, size_t *len, const char *s,
                           size_t n)
{
    size_t i;
    for (i = 0; i < n && *len + 1 < cap; i++) {
        char c = s[i];
        dst[(*len)++] = (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    dst[*len] = '\0';
}

/* ------------------------------------------------------------- request -- */

/* Bytes a request line, Host value or header line may hold: visible ASCII,
 * space and tab only where allowed. */
static bool clean(const char *s, bool allow_space)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == ' ' || c == '\t') {
            if (!allow_space)
                return false;
        } else if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

/* A header line "Name: value": a token name, then ':'. */
static bool header_line_ok(const char *h)
{
    size_t i = 0;
    if (!clean(h, true))
        return false;
    while (h[i] != '\0' && h[i] != ':' && h[i] != ' ' && h[i] != '\t')
        i++;
    return i > 0 && h[i] == ':';
}

static void put(uint8_t *buf, size_t cap, size_t *at, const char *s, size_t n)
{
    if (*at < cap) {
        size_t k = cap - *at < n ? cap - *at : n;
        memcpy(buf + *at, s, k);
    }
    *at += n;
}

static void put_s(uint8_t *buf, size_t cap, size_t *at, const char *s)
{
    put(buf, cap, at, s, strlen(s));
}

static void put_u64(uint8_t *buf, size_t cap, size_t *at, uint64_t v)
{
    char d[20];
    size_t i = sizeof d;
    do {
        d[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0);
    put(buf, cap, at, d + i, sizeof d - i);
}

/* --------------------------------------------------- parser callbacks -- */

static int on_message_begin(http_parser *p)
{
    moat_http_get *g = ctx_of(p);
    g->status = 0;
    g->reason[0] = '\0';
    g->field = F_NONE;
    g->field_done = true;
    g->range_seen = false;
    g->value_len = 0;
    g->value[0] = '\0';
    g->etag_len = 0;
    g->etag[0] = '\0';
    return 0;
}

static int on_status(http_parser *p, const char *at, size_t len)
{
    moat_http_get *g = ctx_of(p);
    size_t n = strlen(g->reason);
    copy_printable(g->reason, sizeof g->reason, &n, at, len);
    return 0;
}

/* Header names arrive in pieces: the first bytes of the name, lower case,
 * collect in g->name; name_len past its size means "longer than ours". */
static int on_header_field(http_parser *p, const char *at, size_t len)
{
    moat_http_get *g = ctx_of(p);
    size_t i;
    if (g->field_done) {
        g->field_done = false;
        g->field = F_OTHER;
        g->name_len = 0;
    }
    for (i = 0; i < len && g->name_len <= sizeof g->name; i++) {
        char c = at[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (g->name_len < sizeof g->name)
            g->name[g->name_len] = c;
        g->name_len++;
    }
    return 0;
}

static bool name_is(const moat_http_get *g, const char *name)
{
    size_t n = strlen(name);
    return g->name_len == n && memcmp(g->name, name, n) == 0;
}

/* The first value piece of a header decides what it is. */
static int header_begins(moat_http_get *g)
{
    g->field = F_OTHER;
    if (name_is(g, NAME_CONTENT_RANGE)) {
        if (g->range_seen) {
            fail(g, MOAT_ERR_PROTOCOL, "sent two Content-Range headers for ", g->what, "");
            return -1;
        }
        g->field = F_CONTENT_RANGE;
        g->range_seen = true;
        g->value_len = 0;
        g->value[0] = '\0';
    } else if (name_is(g, NAME_ETAG)) {
        /* the last one counts; an unusable one is forgotten */
        g->field = F_ETAG;
        g->etag_len = 0;
        g->etag[0] = '\0';
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    moat_http_get *g = ctx_of(p);
    size_t i;
    if (!g->field_done) {
        g->field_done = true;
        if (header_begins(g) != 0)
            return -1;
    }
    if (g->field == F_CONTENT_RANGE) {
        if (len > sizeof g->value - 1u - g->value_len) {
            fail(g, MOAT_ERR_PROTOCOL, "sent an overlong Content-Range for ",
                 g->what, "");
            return -1;
        }
        memcpy(g->value + g->value_len, at, len);
        g->value_len = (uint8_t)(g->value_len + len);
        g->value[g->value_len] = '\0';
    } else if (g->field == F_ETAG) {
        /* kept only if it can be sent back in If-Range as it is */
        for (i = 0; i < len; i++) {
            unsigned char c = (unsigned char)at[i];
            if (c < 0x21 || c > 0x7e || g->etag_len + 1u >= sizeof g->etag) {
                g->field = F_OTHER;
                g->etag_len = 0;
                break;
            }
            g->etag[g->etag_len++] = (char)c;
        }
        g->etag[g->etag_len] = '\0';
    }
    return 0;
}

/* Digits at *s into *v; false on none or overflow. */
static bool parse_u64(const char **s, uint64_t *v)
{
    const char *c = *s;
    uint64_t x = 0;
    if (*c < '0' || *c > '9')
        return false;
    while (*c >= '0' && *c <= '9') {
        unsigned d = (unsigned)(*c - '0');
        if (x > (UINT64_MAX - d) / 10u)
            return false;
        x = x * 10u + d;
        c++;
    }
    *s = c;
    *v = x;
    return true;
}

/* "bytes <first>-<last>/<total|*>" (RFC 9110 14.4) into the response's
 * offset, length and total, checked against the request. */
static moat_err check_content_range(moat_http_get *g)
{
    const char *s = g->value;
    uint64_t first, last, total = MOAT_HTTP_UNKNOWN, cl;
    size_t n = g->value_len;

    if (!g->range_seen)
        return fail(g, MOAT_ERR_PROTOCOL, "answered 206 without Content-Range for ",
                    g->what, "");
    while (n > 0 && (g->value[n - 1] == ' ' || g->value[n - 1] == '\t'))
        g->value[--n] = '\0';
    if (strlen(s) < 6 || memcmp(s, "bytes ", 6) != 0)
        goto bad;
    s += 6;
    if (!parse_u64(&s, &first) || *s++ != '-' || !parse_u64(&s, &last) ||
        *s++ != '/')
        goto bad;
    if (*s == '*' && s[1] == '\0') {
        s++;
    } else if (!parse_u64(&s, &total) || last >= total) {
        goto bad;
    }
    if (*s != '\0' || last < first)
        goto bad;
    if (first != g->range_from)
        return fail_n(g, MOAT_ERR_PROTOCOL, "answered with bytes from ", first,
                      " when asked for bytes from ", g->range_from, " of ");
    cl = (g->parser.flags & F_CONTENTLENGTH) ? g->parser.content_length
                                              : MOAT_HTTP_UNKNOWN;
    if (last - first == UINT64_MAX)
        goto bad;
    if (g->range_last != MOAT_HTTP_UNKNOWN && last > g->range_last)
        return fail_n(g, MOAT_ERR_PROTOCOL, "answered with bytes up to ", last,
                      " when asked for bytes up to ", g->range_last, " of ");
    if (cl != MOAT_HTTP_UNKNOWN && cl != last - first + 1u)
        return fail_n(g, MOAT_ERR_PROTOCOL, "sent Content-Length ", cl,
                      " for a range of ", last - first + 1u, " bytes of ");
    g->body_offset = first;
    g->body_len = last - first + 1u;
    g->total = total;
    return MOAT_OK;
bad:
    fail(g, MOAT_ERR_PROTOCOL, "sent a bad Content-Range '", g->value, "' for ");
    /* fail() ends with the third piece; add the path the same way */
    {
        moat_sb sb;
        moat_sb_init(&sb, g->msg, sizeof g->msg);
        sb.len = strlen(g->msg);
        moat_sb_str(&sb, g->what);
        moat_sb_words(&sb);
    }
    return g->err;
}

/* Accept or refuse the final response's head. */
static moat_err accept_head(moat_http_get *g)
{
    http_parser *p = &g->parser;
    moat_err e;

    if (p->http_major != 1)
        return fail(g, MOAT_ERR_MALFORMED, "does not speak HTTP/1.x for ",
                    g->what, "");
    if (p->upgrade || (p->flags & F_UPGRADE))
        return fail(g, MOAT_ERR_PROTOCOL, "asked to upgrade the connection for ",
                    g->what, "");
    if (p->uses_transfer_encoding && !(p->flags & F_CHUNKED))
        return fail(g, MOAT_ERR_MALFORMED,
                    "sent a Transfer-Encoding other than chunked for ", g->what, "");

    switch (g->status) {
    case 200:
        g->body_offset = 0;
        g->body_len = (p->flags & F_CONTENTLENGTH) ? p->content_length
                                                   : MOAT_HTTP_UNKNOWN;
        g->total = g->body_len;
        break;
    case 206:
        if (!g->ranged)
            return fail(g, MOAT_ERR_PROTOCOL,
                        "answered 206 to a request without Range for ", g->what, "");
        e = check_content_range(g);
        if (e != MOAT_OK)
            return e;
        break;
    case 304:
        g->body_offset = g->range_from;
        g->body_len = 0;
        g->total = MOAT_HTTP_UNKNOWN;
        break;
    default: {
        moat_sb sb;
        moat_sb_init(&sb, g->msg, sizeof g->msg);
        moat_sb_str(&sb, g->peer);
        moat_sb_str(&sb, " answered ");
        moat_sb_u64(&sb, g->status);
        if (g->reason[0] != '\0') {
            moat_sb_str(&sb, " ");
            moat_sb_str(&sb, g->reason);
        }
        moat_sb_str(&sb, " for ");
        moat_sb_str(&sb, g->what);
        moat_sb_words(&sb);
        g->err = MOAT_ERR_PROTOCOL;
        g->state = ST_ERR;
        return g->err;
    }
    }

    if (g->max_total != 0) {
        uint64_t end = g->body_len == MOAT_HTTP_UNKNOWN ? 0
                                                        : g->body_offset + g->body_len;
        if (g->total != MOAT_HTTP_UNKNOWN && g->total > g->max_total)
            return fail_n(g, MOAT_ERR_TOO_LARGE, "offers ", g->total,
                          " bytes, over the limit of ", g->max_total, " bytes, for ");
        if (end > g->max_total || end < g->body_offset)
            return fail_n(g, MOAT_ERR_TOO_LARGE, "offers bytes up to ", end,
                          ", over the limit of ", g->max_total, " bytes, for ");
    }
    g->state = ST_BODY;
    if (g->on_start != NULL) {
        e = g->on_start(g->user, g);
        if (e != MOAT_OK) {
            if (g->state != ST_ERR) {
                fail(g, e, "download of ", g->what, " stopped by its receiver");
            }
            g->err = e;
            g->state = ST_ERR;
            return e;
        }
    }
    return MOAT_OK;
}

static int on_headers_complete(http_parser *p)
{
    moat_http_get *g = ctx_of(p);
    g->status = (uint16_t)p->status_code;
    if (g->status >= 100 && g->status < 200 && g->status != 101)
        return 0; /* interim: http-parser reads the next message */
    return accept_head(g) == MOAT_OK ? 0 : -1;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    moat_http_get *g = ctx_of(p);
    uint64_t off = g->body_offset + g->received;
    moat_err e;

    if (g->state != ST_BODY)
        return -1;
    if (g->body_len != MOAT_HTTP_UNKNOWN && len > g->body_len - g->received) {
        fail_n(g, MOAT_ERR_PROTOCOL, "sent more than the ", g->body_len,
               NULL, 0, " bytes it announced for ");
        return -1;
    }
    if (g->max_total != 0 && (off > g->max_total || len > g->max_total - off)) {
        fail_n(g, MOAT_ERR_TOO_LARGE, "sent more than the limit of ", g->max_total,
               NULL, 0, " bytes for ");
        return -1;
    }
    e = g->on_body(g->user, off, (const uint8_t *)at, len);
    if (e != MOAT_OK) {
        if (g->state != ST_ERR)
            fail(g, e, "download of ", g->what, " stopped by its receiver");
        g->err = e;
        g->state = ST_ERR;
        return -1;
    }
    g->received += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    moat_http_get *g = ctx_of(p);
    if (g->state == ST_HEAD)
        return 0; /* an interim 1xx ended; the final response follows */
    if (g->body_len != MOAT_HTTP_UNKNOWN && g->received != g->body_len) {
        fail_n(g, MOAT_ERR_CLOSED, "ended the body after ", g->received,
               " of ", g->body_len, " bytes of ");
        return -1;
    }
    g->state = ST_DONE;
    http_parser_pause(p, 1); /* stop here: anything after is not ours */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ------------------------------------------------------------------ API -- */

moat_err moat_http_get_init(moat_http_get *g, const moat_http_request *rq,
                            uint8_t *buf, size_t cap, size_t *len)
{
    size_t at = 0, i, n;
    const char *peer;

    if (len != NULL)
        *len = 0;
    if (g == NULL || rq == NULL || len == NULL || (buf == NULL && cap != 0))
        return MOAT_ERR_ARG;
    memset(g, 0, sizeof *g);
    g->err = MOAT_ERR_ARG;
    g->state = ST_ERR;
    peer = rq->peer_name != NULL ? rq->peer_name : "update server";
    n = 0;
    copy_printable(g->peer, sizeof g->peer, &n, peer, strlen(peer));

    if (rq->on_body == NULL || rq->host == NULL || rq->host[0] == '\0' ||
        rq->path == NULL || rq->path[0] != '/' || !clean(rq->host, false) ||
        !clean(rq->path, false)) {
        fail(g, MOAT_ERR_ARG, "request needs a body callback, a host and a path "
             "starting with '/', without spaces or control bytes", "", "");
        return MOAT_ERR_ARG;
    }
    for (i = 0; rq->headers != NULL && rq->headers[i] != NULL; i++) {
        if (!header_line_ok(rq->headers[i])) {
            fail(g, MOAT_ERR_ARG, "request header '", rq->headers[i],
                 "' is not a clean \"Name: value\" line");
            return MOAT_ERR_ARG;
        }
    }

    /* the path without its query names the resource in messages */
    for (n = 0; rq->path[n] != '\0' && rq->path[n] != '?'; n++)
        ;
    i = 0;
    copy_printable(g->what, sizeof g->what, &i, rq->path, n);

    put_s(buf, cap, &at, "GET ");
    put_s(buf, cap, &at, rq->path);
    put_s(buf, cap, &at, " HTTP/1.1\r\nHost: ");
    for (n = 0; rq->host[n] != '\0' && rq->host[n] != ':'; n++)
        ;
    if (rq->host[n] == ':') { /* IPv6 literal */
        put_s(buf, cap, &at, "[");
        put_s(buf, cap, &at, rq->host);
        put_s(buf, cap, &at, "]");
    } else {
        put_s(buf, cap, &at, rq->host);
    }
    if (rq->port != 0 && rq->port != 443) {
        put_s(buf, cap, &at, ":");
        put_u64(buf, cap, &at, rq->port);
    }
    put_s(buf, cap, &at, "\r\n");
    if (rq->range_len > 0 && rq->range_len - 1u > UINT64_MAX - rq->range_from) {
        fail(g, MOAT_ERR_ARG, "request range for ", g->what, " overflows");
        return MOAT_ERR_ARG;
    }
    if (rq->range_from > 0 || rq->range_len > 0) {
        put_s(buf, cap, &at, "Range: bytes=");
        put_u64(buf, cap, &at, rq->range_from);
        put_s(buf, cap, &at, "-");
        if (rq->range_len > 0)
            put_u64(buf, cap, &at, rq->range_from + rq->range_len - 1u);
        put_s(buf, cap, &at, "\r\n");
    }
    for (i = 0; rq->headers != NULL && rq->headers[i] != NULL; i++) {
        put_s(buf, cap, &at, rq->headers[i]);
        put_s(buf, cap, &at, "\r\n");
    }
    put_s(buf, cap, &at, "Connection: close\r\nUser-Agent: moat\r\n\r\n");
    *len = at;
    if (at > cap) {
        fail(g, MOAT_ERR_NO_SPACE, "request for ", g->what,
             " does not fit the request buffer");
        return MOAT_ERR_NO_SPACE;
    }

    http_parser_init(&g->parser, HTTP_RESPONSE);
    g->parser.data = g;
    g->on_body = rq->on_body;
    g->on_start = rq->on_start;
    g->user = rq->user;
    g->range_from = rq->range_from;
    g->ranged = rq->range_from > 0 || rq->range_len > 0;
    g->range_last = rq->range_len > 0 ? rq->range_from + rq->range_len - 1u
                                      : MOAT_HTTP_UNKNOWN;
    g->max_total = rq->max_total;
    g->header_max = rq->max_header_bytes != 0 ? rq->max_header_bytes
                                              : MOAT_HTTP_HEADER_MAX_DEFAULT;
    g->body_offset = rq->range_from;
    g->body_len = MOAT_HTTP_UNKNOWN;
    g->total = MOAT_HTTP_UNKNOWN;
    g->field_done = true;
    g->err = MOAT_OK;
    g->state = ST_HEAD;
    g->msg[0] = '\0';
    return MOAT_OK;
}

/* After http_parser_execute stopped with an error: our words, or its. */
static moat_err parser_failed(moat_http_get *g)
{
    enum http_errno he = HTTP_PARSER_ERRNO(&g->parser);
    if (g->state == ST_ERR)
        return g->err;
    if (he == HPE_HEADER_OVERFLOW)
        return fail_n(g, MOAT_ERR_TOO_LARGE, "sent response headers over ",
                      g->header_max, NULL, 0, " bytes for ");
    fail(g, MOAT_ERR_MALFORMED, "sent a malformed response (",
         http_errno_description(he), ") for ");
    {
        moat_sb sb;
        moat_sb_init(&sb, g->msg, sizeof g->msg);
        sb.len = strlen(g->msg);
        moat_sb_str(&sb, g->what);
        moat_sb_words(&sb);
    }
    return g->err;
}

moat_err moat_http_input(moat_http_get *g, const uint8_t *data, size_t len,
                         size_t *used)
{
    size_t done = 0;

    if (used != NULL)
        *used = 0;
    if (g == NULL || (data == NULL && len != 0))
        return MOAT_ERR_ARG;
    if (g->state == ST_DONE)
        return MOAT_OK;
    if (g->state == ST_ERR)
        return g->err;

    while (done < len) {
        size_t chunk = len - done, n;
        bool head = g->state == ST_HEAD;
        if (head) {
            size_t room = g->header_max - g->header_seen;
            if (room == 0)
                return fail_n(g, MOAT_ERR_TOO_LARGE, "sent response headers over ",
                              g->header_max, NULL, 0, " bytes for ");
            if (chunk > room)
                chunk = room;
        }
        n = http_parser_execute(&g->parser, &settings, (const char *)data + done,
                                chunk);
        done += n;
        if (head)
            g->header_seen += (uint32_t)n;
        if (used != NULL)
            *used = done;
        if (g->state == ST_DONE)
            return MOAT_OK;
        if (HTTP_PARSER_ERRNO(&g->parser) != HPE_OK || g->state == ST_ERR)
            return parser_failed(g);
        if (g->parser.upgrade)
            return fail(g, MOAT_ERR_PROTOCOL, "asked to upgrade the connection for ",
                        g->what, "");
        if (n < chunk)
            return fail(g, MOAT_ERR_MALFORMED, "sent a response the parser stopped in, for ",
                        g->what, "");
    }
    if (g->state == ST_HEAD && g->header_seen >= g->header_max)
        return fail_n(g, MOAT_ERR_TOO_LARGE, "sent response headers over ",
                      g->header_max, NULL, 0, " bytes for ");
    return MOAT_ERR_WOULD_BLOCK;
}

moat_err moat_http_eof(moat_http_get *g)
{
    if (g == NULL)
        return MOAT_ERR_ARG;
    if (g->state == ST_DONE)
        return MOAT_OK;
    if (g->state == ST_ERR)
        return g->err;
    if (g->state == ST_HEAD)
        return fail(g, MOAT_ERR_CLOSED, "closed the connection before the response "
                    "headers ended, for ", g->what, "");
    if (g->body_len != MOAT_HTTP_UNKNOWN)
        return fail_n(g, MOAT_ERR_CLOSED, "closed the connection after ",
                      g->received, " of ", g->body_len, " body bytes of ");
    if (g->parser.flags & F_CHUNKED)
        return fail_n(g, MOAT_ERR_CLOSED, "closed the connection inside the chunked "
                      "body after ", g->received, NULL, 0, " bytes of ");
    /* the body runs to the end of the stream: this is its end */
    http_parser_execute(&g->parser, &settings, NULL, 0);
    if (g->state == ST_DONE)
        return MOAT_OK;
    return parser_failed(g);
}

int moat_http_status(const moat_http_get *g)
{
    return g->state == ST_HEAD ? 0 : g->status; /* not an interim 1xx */
}

bool moat_http_done(const moat_http_get *g)
{
    return g->state == ST_DONE;
}

uint64_t moat_http_body_offset(const moat_http_get *g)
{
    return g->body_offset;
}

uint64_t moat_http_total(const moat_http_get *g)
{
    return g->total;
}

uint64_t moat_http_received(const moat_http_get *g)
{
    return g->received;
}

uint64_t moat_http_next_offset(const moat_http_get *g)
{
    return g->body_offset + g->received;
}

const char *moat_http_etag(const moat_http_get *g)
{
    return g->etag;
}

const char *moat_http_last_error(const moat_http_get *g)
{
    return g->msg;
}
