/*
 * json.c - JSON reading over jsmn, and a small JSON writer (moat/json.h).
 *
 * jsmn tokenizes but does not validate: even in strict mode it takes
 * {"a" "b"}, [1,,2], tru, 01 and raw control characters. So a document is
 * first checked by check_text(), a non-recursive pushdown scan of the RFC
 * 8259 grammar that also finds the exact byte of a fault (for "line 3"
 * messages), and only then tokenized. This file holds the one jsmn
 * implementation in moat.
 */
#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#include "moat/json.h"

#include "mem.h"

/* Nesting the checker follows: one bit per level in a uint64_t. */
#define MAX_NESTING 64u

/* --------------------------------------------------------- validation -- */

typedef struct scan {
    const char *s;
    size_t len;
    size_t pos;
    moat_err err;
} scan;

static bool fail(scan *sc, moat_err e)
{
    sc->err = e;
    return false;
}

static void skip_ws(scan *sc)
{
    while (sc->pos < sc->len) {
        char c = sc->s[sc->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        sc->pos++;
    }
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

/* Four hex digits at p (the caller checked they exist); -1 if not hex. */
static long hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Length of the valid UTF-8 sequence at p[0..n), or 0 (overlong forms,
 * surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t need;
    unsigned long cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((p[i] & 0xC0u) != 0x80u)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return need;
}

/* A string; sc->pos is at the opening quote. Leaves pos after the closing
 * one, or at the fault. */
static bool check_string(scan *sc)
{
    sc->pos++;
    while (sc->pos < sc->len) {
        unsigned char c = (unsigned char)sc->s[sc->pos];
        if (c == '"') {
            sc->pos++;
            return true;
        }
        if (c < 0x20)
            return fail(sc, MOAT_ERR_MALFORMED);
        if (c == '\\') {
            char e;
            if (sc->pos + 1 >= sc->len)
                break;
            e = sc->s[sc->pos + 1];
            if (e == 'u') {
                long u;
                if (sc->len - sc->pos < 6)
                    break;
                u = hex4(sc->s + sc->pos + 2);
                if (u < 0)
                    return fail(sc, MOAT_ERR_MALFORMED);
                if (u >= 0xDC00 && u <= 0xDFFF)
                    return fail(sc, MOAT_ERR_UTF8); /* lone low surrogate */
                if (u >= 0xD800 && u <= 0xDBFF) {
                    long lo;
                    if (sc->len - sc->pos < 12 || sc->s[sc->pos + 6] != '\\' ||
                        sc->s[sc->pos + 7] != 'u')
                        return fail(sc, MOAT_ERR_UTF8);
                    lo = hex4(sc->s + sc->pos + 8);
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return fail(sc, MOAT_ERR_UTF8);
                    sc->pos += 12;
                } else {
                    sc->pos += 6;
                }
                continue;
            }
            if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' &&
                e != 'r' && e != 't')
                return fail(sc, MOAT_ERR_MALFORMED);
            sc->pos += 2;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_len((const unsigned char *)sc->s + sc->pos, sc->len - sc->pos);
            if (n == 0)
                return fail(sc, MOAT_ERR_UTF8);
            sc->pos += n;
            continue;
        }
        sc->pos++;
    }
    sc->pos = sc->len;
    return fail(sc, MOAT_ERR_MALFORMED); /* unterminated */
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool digits(scan *sc)
{
    size_t start = sc->pos;
    while (sc->pos < sc->len && is_digit(sc->s[sc->pos]))
        sc->pos++;
    return sc->pos > start || fail(sc, MOAT_ERR_MALFORMED);
}

/* A number, true, false or null, ending at a delimiter. */
static bool check_primitive(scan *sc)
{
    const char *s = sc->s;
    char c = s[sc->pos];

    if (c == 't' || c == 'f' || c == 'n') {
        const char *lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t n = strlen(lit);
        if (sc->len - sc->pos < n || memcmp(s + sc->pos, lit, n) != 0)
            return fail(sc, MOAT_ERR_MALFORMED);
        sc->pos += n;
    } else {
        if (c == '-')
            sc->pos++;
        if (sc->pos < sc->len && s[sc->pos] == '0')
            sc->pos++;
        else if (!digits(sc))
            return false;
        if (sc->pos < sc->len && s[sc->pos] == '.') {
            sc->pos++;
            if (!digits(sc))
                return false;
        }
        if (sc->pos < sc->len && (s[sc->pos] == 'e' || s[sc->pos] == 'E')) {
            sc->pos++;
            if (sc->pos < sc->len && (s[sc->pos] == '+' || s[sc->pos] == '-'))
                sc->pos++;
            if (!digits(sc))
                return false;
        }
    }
    /* jsmn's delimiters: anything else glued on (01, truex) is a fault */
    if (sc->pos < sc->len) {
        c = s[sc->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != ',' && c != ']' &&
            c != '}')
            return fail(sc, MOAT_ERR_MALFORMED);
    }
    return true;
}

/*
 * The whole text against the JSON grammar, without recursion: `stack` holds
 * one bit per open container (1 = object). After a value, the next token
 * must close the container or be a comma; inside an object a value is
 * preceded by a string key and a colon.
 */
static bool check_text(scan *sc)
{
    uint64_t stack = 0;
    unsigned depth = 0;

    for (;;) {
        char c;
        /* expect a value */
        skip_ws(sc);
        if (sc->pos >= sc->len)
            return fail(sc, MOAT_ERR_MALFORMED);
        c = sc->s[sc->pos];
        if (c == '{' || c == '[') {
            if (depth == MAX_NESTING)
                return fail(sc, MOAT_ERR_MALFORMED);
            stack = (stack << 1) | (c == '{' ? 1u : 0u);
            depth++;
            sc->pos++;
            skip_ws(sc);
            if (sc->pos < sc->len && sc->s[sc->pos] == (c == '{' ? '}' : ']')) {
                sc->pos++;
                stack >>= 1;
                depth--;
                goto after_value;
            }
            if (c == '[')
                continue;
            goto key;
        }
        if (c == '"') {
            if (!check_string(sc))
                return false;
        } else if (c == '-' || is_digit(c) || c == 't' || c == 'f' || c == 'n') {
            if (!check_primitive(sc))
                return false;
        } else {
            return fail(sc, MOAT_ERR_MALFORMED);
        }
    after_value:
        skip_ws(sc);
        if (depth == 0) {
            if (sc->pos != sc->len)
                return fail(sc, MOAT_ERR_MALFORMED); /* data after the value */
            return true;
        }
        if (sc->pos >= sc->len)
            return fail(sc, MOAT_ERR_MALFORMED);
        c = sc->s[sc->pos];
        if (c == (stack & 1u ? '}' : ']')) {
            sc->pos++;
            stack >>= 1;
            depth--;
            goto after_value;
        }
        if (c != ',')
            return fail(sc, MOAT_ERR_MALFORMED);
        sc->pos++;
        if (!(stack & 1u))
            continue;
    key:
        skip_ws(sc);
        if (sc->pos >= sc->len || sc->s[sc->pos] != '"')
            return fail(sc, MOAT_ERR_MALFORMED);
        if (!check_string(sc))
            return false;
        skip_ws(sc);
        if (sc->pos >= sc->len || sc->s[sc->pos] != ':')
            return fail(sc, MOAT_ERR_MALFORMED);
        sc->pos++;
    }
}

/* ------------------------------------------------------------ parsing -- */

moat_err moat_json_parse(moat_json *doc, const char *text, size_t len,
                         moat_json_tok *tok, unsigned cap, size_t *err_pos)
{
    scan sc;
    jsmn_parser p;
    int r;

    if (err_pos)
        *err_pos = 0;
    if (doc == NULL || text == NULL || tok == NULL || cap == 0 || len > 0x7FFFFFFFu)
        return MOAT_ERR_ARG;
    doc->text = text;
    doc->len = len;
    doc->tok = tok;
    doc->count = 0;

    sc.s = text;
    sc.len = len;
    sc.pos = 0;
    sc.err = MOAT_OK;
    if (!check_text(&sc)) {
        if (err_pos)
            *err_pos = sc.pos;
        return sc.err;
    }

    jsmn_init(&p);
    r = jsmn_parse(&p, text, len, tok, cap);
    if (r == JSMN_ERROR_NOMEM)
        return MOAT_ERR_NO_SPACE;
    if (r == JSMN_ERROR_PART && p.toknext == 0) {
        /* A bare number or literal at the top level: strict jsmn wants a
         * delimiter after it. The checker has passed it: one token. */
        size_t a = 0, b = len;
        while (a < b && (text[a] == ' ' || text[a] == '\t' || text[a] == '\n' ||
                         text[a] == '\r'))
            a++;
        while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' ||
                         text[b - 1] == '\n' || text[b - 1] == '\r'))
            b--;
        tok[0].type = JSMN_PRIMITIVE;
        tok[0].start = (int)a;
        tok[0].end = (int)b;
        tok[0].size = 0;
        r = 1;
    }
    if (r <= 0) {
        /* cannot happen after check_text(); refuse rather than trust it */
        if (err_pos)
            *err_pos = p.pos;
        return MOAT_ERR_MALFORMED;
    }
    doc->count = r;
    return MOAT_OK;
}

unsigned moat_json_line(const char *text, size_t len, size_t pos)
{
    unsigned line = 1;
    if (text == NULL)
        return 0;
    if (pos > len)
        pos = len;
    for (size_t i = 0; i < pos; i++)
        if (text[i] == '\n')
            line++;
    return line;
}

static const moat_json_tok *tok_at(const moat_json *doc, int i)
{
    if (doc == NULL || i < 0 || i >= doc->count)
        return NULL;
    return &doc->tok[i];
}

moat_json_type moat_json_type_of(const moat_json *doc, int i)
{
    const moat_json_tok *t = tok_at(doc, i);
    if (t == NULL)
        return MOAT_JSON_INVALID;
    switch (t->type) {
    case JSMN_OBJECT: return MOAT_JSON_OBJECT;
    case JSMN_ARRAY: return MOAT_JSON_ARRAY;
    case JSMN_STRING: return MOAT_JSON_STRING;
    case JSMN_PRIMITIVE:
        switch (doc->text[t->start]) {
        case 't': return MOAT_JSON_TRUE;
        case 'f': return MOAT_JSON_FALSE;
        case 'n': return MOAT_JSON_NULL;
        default: return MOAT_JSON_NUMBER;
        }
    default: return MOAT_JSON_INVALID;
    }
}

const char *moat_json_type_name(moat_json_type t)
{
    switch (t) {
    case MOAT_JSON_OBJECT: return "an object";
    case MOAT_JSON_ARRAY: return "an array";
    case MOAT_JSON_STRING: return "a string";
    case MOAT_JSON_NUMBER: return "a number";
    case MOAT_JSON_TRUE: return "true";
    case MOAT_JSON_FALSE: return "false";
    case MOAT_JSON_NULL: return "null";
    default: return "nothing";
    }
}

int moat_json_skip(const moat_json *doc, int i)
{
    int pending = 1;
    if (tok_at(doc, i) == NULL)
        return i + 1;
    while (pending > 0 && i < doc->count) {
        pending += doc->tok[i].size;
        pending--;
        i++;
    }
    return i;
}

bool moat_json_next(const moat_json *doc, int obj, int *it, int *key, int *val)
{
    const moat_json_tok *t = tok_at(doc, obj);
    int i;

    if (t == NULL || (t->type != JSMN_OBJECT && t->type != JSMN_ARRAY) || it == NULL)
        return false;
    i = *it == 0 ? obj + 1 : *it;
    /* children lie inside the container's text */
    if (i >= doc->count || doc->tok[i].start >= t->end)
        return false;
    if (t->type == JSMN_OBJECT) {
        if (key)
            *key = i;
        i++;
        if (i >= doc->count)
            return false;
    } else if (key) {
        *key = -1;
    }
    if (val)
        *val = i;
    *it = moat_json_skip(doc, i);
    return true;
}

/* ----------------------------------------------------- string decoding -- */

static size_t put_utf8(unsigned long cp, unsigned char out[4])
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Decode one unit of raw string text at *p (before end) into out: one byte,
 * or one escape as UTF-8. Advances *p. Returns the byte count, 0 for a
 * broken escape (a hand-made doc; moat_json_parse() never yields one).
 */
static size_t decode_one(const char **p, const char *end, unsigned char out[4])
{
    const char *s = *p;
    long cp;

    if (*s != '\\') {
        out[0] = (unsigned char)*s;
        *p = s + 1;
        return 1;
    }
    if (end - s < 2)
        return 0;
    switch (s[1]) {
    case 'b': out[0] = '\b'; break;
    case 'f': out[0] = '\f'; break;
    case 'n': out[0] = '\n'; break;
    case 'r': out[0] = '\r'; break;
    case 't': out[0] = '\t'; break;
    case 'u':
        if (end - s < 6 || (cp = hex4(s + 2)) < 0)
            return 0;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            long lo;
            if (end - s < 12 || s[6] != '\\' || s[7] != 'u' || (lo = hex4(s + 8)) < 0xDC00 ||
                lo > 0xDFFF)
                return 0;
            *p = s + 12;
            return put_utf8(0x10000ul + (((unsigned long)cp - 0xD800) << 10) +
                                ((unsigned long)lo - 0xDC00),
                            out);
        }
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return 0;
        *p = s + 6;
        return put_utf8((unsigned long)cp, out);
    default: out[0] = (unsigned char)s[1]; break; /* " \ / */
    }
    *p = s + 2;
    return 1;
}

bool moat_json_eq(const moat_json *doc, int i, const char *s)
{
    const moat_json_tok *t = tok_at(doc, i);
    const char *p, *end;
    size_t k = 0;

    if (t == NULL || t->type != JSMN_STRING || s == NULL)
        return false;
    p = doc->text + t->start;
    end = doc->text + t->end;
    while (p < end) {
        unsigned char u[4];
        size_t n = decode_one(&p, end, u);
        if (n == 0)
            return false;
        for (size_t j = 0; j < n; j++, k++)
            if (s[k] == '\0' || (unsigned char)s[k] != u[j])
                return false;
    }
    return s[k] == '\0';
}

int moat_json_find(const moat_json *doc, int obj, const char *key)
{
    int it = 0, k, v;
    if (moat_json_type_of(doc, obj) != MOAT_JSON_OBJECT)
        return -1;
    while (moat_json_next(doc, obj, &it, &k, &v))
        if (moat_json_eq(doc, k, key))
            return v;
    return -1;
}

const char *moat_json_raw(const moat_json *doc, int i, size_t *n)
{
    const moat_json_tok *t = tok_at(doc, i);
    if (t == NULL) {
        if (n)
            *n = 0;
        return "";
    }
    if (n)
        *n = (size_t)(t->end - t->start);
    return doc->text + t->start;
}

moat_err moat_json_get_string(const moat_json *doc, int i, char *buf, size_t cap,
                              size_t *len)
{
    const moat_json_tok *t = tok_at(doc, i);
    const char *p, *end;
    size_t k = 0;
    moat_err e = MOAT_OK;

    if (len)
        *len = 0;
    if (buf == NULL || cap == 0)
        return MOAT_ERR_NO_SPACE;
    buf[0] = '\0';
    if (t == NULL || t->type != JSMN_STRING)
        return MOAT_ERR_ARG;
    p = doc->text + t->start;
    end = doc->text + t->end;
    while (p < end) {
        unsigned char u[4];
        size_t n = decode_one(&p, end, u);
        if (n == 0) {
            e = MOAT_ERR_MALFORMED;
            break;
        }
        if (n == 1 && u[0] == 0) {
            e = MOAT_ERR_UTF8;
            break;
        }
        if (n >= cap - k) {
            e = MOAT_ERR_NO_SPACE;
            break;
        }
        memcpy(buf + k, u, n);
        k += n;
    }
    if (e != MOAT_OK) {
        buf[0] = '\0';
        return e;
    }
    buf[k] = '\0';
    if (len)
        *len = k;
    return MOAT_OK;
}

moat_err moat_json_get_int(const moat_json *doc, int i, int64_t min, int64_t max,
                           int64_t *out)
{
    size_t n, k = 0;
    const char *s;
    bool neg = false;
    uint64_t mag = 0;
    bool big = false;
    int64_t v;

    if (moat_json_type_of(doc, i) != MOAT_JSON_NUMBER)
        return MOAT_ERR_ARG;
    s = moat_json_raw(doc, i, &n);
    if (n > 0 && s[0] == '-') {
        neg = true;
        k = 1;
    }
    if (k == n)
        return MOAT_ERR_ARG;
    for (; k < n; k++) {
        unsigned d;
        if (!is_digit(s[k]))
            return MOAT_ERR_ARG; /* fraction or exponent */
        d = (unsigned)(s[k] - '0');
        if (mag > (UINT64_MAX - d) / 10u)
            big = true;
        else
            mag = mag * 10u + d;
    }
    if (big || (!neg && mag > (uint64_t)INT64_MAX) ||
        (neg && mag > (uint64_t)INT64_MAX + 1u))
        return MOAT_ERR_TOO_LARGE;
    if (neg)
        v = mag == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag;
    else
        v = (int64_t)mag;
    if (v < min || v > max)
        return MOAT_ERR_TOO_LARGE;
    if (out)
        *out = v;
    return MOAT_OK;
}

moat_err moat_json_get_bool(const moat_json *doc, int i, bool *out)
{
    moat_json_type t = moat_json_type_of(doc, i);
    if (t != MOAT_JSON_TRUE && t != MOAT_JSON_FALSE)
        return MOAT_ERR_ARG;
    if (out)
        *out = t == MOAT_JSON_TRUE;
    return MOAT_OK;
}

/* ------------------------------------------------------------- writing -- */

void moat_json_writer_init(moat_json_writer *w, char *buf, size_t cap)
{
    memset(w, 0, sizeof(*w));
    w->buf = buf;
    w->cap = cap;
    w->err = buf == NULL && cap > 0 ? MOAT_ERR_ARG : MOAT_OK;
    if (buf && cap)
        buf[0] = '\0';
}

/* Append n bytes; room for the final NUL is always kept. */
static void emit(moat_json_writer *w, const char *s, size_t n)
{
    if (w->err != MOAT_OK)
        return;
    if (w->cap == 0 || n >= w->cap - w->len) {
        w->err = MOAT_ERR_NO_SPACE;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void emit_c(moat_json_writer *w, char c)
{
    emit(w, &c, 1);
}

static void emit_str(moat_json_writer *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    emit_c(w, '"');
    while (i < n && w->err == MOAT_OK) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            emit(w, e, 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            switch (c) {
            case '\b': emit(w, "\\b", 2); break;
            case '\f': emit(w, "\\f", 2); break;
            case '\n': emit(w, "\\n", 2); break;
            case '\r': emit(w, "\\r", 2); break;
            case '\t': emit(w, "\\t", 2); break;
            default: emit(w, e, 6); break;
            }
        } else if (c >= 0x80) {
            size_t k = utf8_len(p + i, n - i);
            if (k == 0) {
                emit(w, "\xEF\xBF\xBD", 3); /* U+FFFD */
                i++;
                continue;
            }
            emit(w, s + i, k);
            i += k;
            continue;
        } else {
            emit_c(w, (char)c);
        }
        i++;
    }
    emit_c(w, '"');
}

/* Comma and key before a value; checks the key belongs here. */
static void prefix(moat_json_writer *w, const char *key)
{
    bool in_obj, in_arr;
    uint16_t bit;

    if (w->err != MOAT_OK)
        return;
    if (w->depth == 0) {
        if (key != NULL || w->root_done)
            w->err = MOAT_ERR_STATE;
        return;
    }
    bit = (uint16_t)(1u << (w->depth - 1));
    in_arr = (w->in_array & bit) != 0;
    in_obj = !in_arr;
    if ((in_obj && key == NULL) || (in_arr && key != NULL)) {
        w->err = MOAT_ERR_STATE;
        return;
    }
    if (w->has_items & bit)
        emit_c(w, ',');
    w->has_items |= bit;
    if (key) {
        emit_str(w, key, strlen(key));
        emit_c(w, ':');
    }
}

/* After a complete value at the top level. */
static void done_value(moat_json_writer *w)
{
    if (w->depth == 0)
        w->root_done = true;
}

static void begin(moat_json_writer *w, const char *key, bool array)
{
    uint16_t bit;
    prefix(w, key);
    if (w->err != MOAT_OK)
        return;
    if (w->depth >= MOAT_JSON_MAX_DEPTH) {
        w->err = MOAT_ERR_STATE;
        return;
    }
    emit_c(w, array ? '[' : '{');
    bit = (uint16_t)(1u << w->depth);
    w->depth++;
    if (array)
        w->in_array |= bit;
    else
        w->in_array &= (uint16_t)~bit;
    w->has_items &= (uint16_t)~bit;
}

static void end(moat_json_writer *w, bool array)
{
    uint16_t bit;
    if (w->err != MOAT_OK)
        return;
    if (w->depth == 0) {
        w->err = MOAT_ERR_STATE;
        return;
    }
    bit = (uint16_t)(1u << (w->depth - 1));
    if (((w->in_array & bit) != 0) != array) {
        w->err = MOAT_ERR_STATE;
        return;
    }
    emit_c(w, array ? ']' : '}');
    w->depth--;
    done_value(w);
}

void moat_json_begin_object(moat_json_writer *w, const char *key) { begin(w, key, false); }
void moat_json_end_object(moat_json_writer *w) { end(w, false); }
void moat_json_begin_array(moat_json_writer *w, const char *key) { begin(w, key, true); }
void moat_json_end_array(moat_json_writer *w) { end(w, true); }

void moat_json_put_string_n(moat_json_writer *w, const char *key, const char *s, size_t n)
{
    prefix(w, key);
    if (s == NULL && n > 0 && w->err == MOAT_OK)
        w->err = MOAT_ERR_ARG;
    emit_str(w, s ? s : "", s ? n : 0);
    done_value(w);
}

void moat_json_put_string(moat_json_writer *w, const char *key, const char *s)
{
    moat_json_put_string_n(w, key, s, s ? strlen(s) : 0);
}

static void put_digits(moat_json_writer *w, const char *key, bool neg, uint64_t v)
{
    char d[21];
    size_t i = sizeof(d);
    do {
        d[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    if (neg)
        d[--i] = '-';
    prefix(w, key);
    emit(w, d + i, sizeof(d) - i);
    done_value(w);
}

void moat_json_put_int(moat_json_writer *w, const char *key, int64_t v)
{
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    put_digits(w, key, v < 0, mag);
}

void moat_json_put_uint(moat_json_writer *w, const char *key, uint64_t v)
{
    put_digits(w, key, false, v);
}

void moat_json_put_bool(moat_json_writer *w, const char *key, bool v)
{
    prefix(w, key);
    emit(w, v ? "true" : "false", v ? 4 : 5);
    done_value(w);
}

void moat_json_put_null(moat_json_writer *w, const char *key)
{
    prefix(w, key);
    emit(w, "null", 4);
    done_value(w);
}

moat_err moat_json_finish(moat_json_writer *w, size_t *len)
{
    if (len)
        *len = 0;
    if (w->err == MOAT_OK && (w->depth != 0 || !w->root_done))
        w->err = MOAT_ERR_STATE;
    if (w->err != MOAT_OK) {
        if (w->buf && w->cap)
            w->buf[0] = '\0';
        return w->err;
    }
    w->buf[w->len] = '\0';
    if (len)
        *len = w->len;
    return MOAT_OK;
}
