/*
 * otamqtt.c - an update image over MQTT, in blocks the device asks for
 * (moat/otamqtt.h): the messages of both sides, and the device engine with
 * its block map.
 *
 * The engine keeps one number that matters, `want`: the image offset the
 * sink asks for next. Blocks are asked for from the one holding `want`, at
 * most `window` blocks ahead; a block is taken only when it holds `want`,
 * and only its bytes from `want` on reach the sink. So the sink sees every
 * byte once and in order, whatever the broker repeats or reorders.
 */
#include "moat/otamqtt.h"

#include "moat/json.h"
#include "moat/slots.h" /* moat_boot_crc32 */
#include "moat/timer.h"

#include "mem.h"
#include "le.h"
#include "strbuf.h"

#define DEF_WINDOW 8u
#define DEF_CHECKPOINT 32u
#define DEF_TIMEOUT_MS 5000u
#define DEF_RETRIES 6u
#define MAX_TIMEOUT_MS 0x40000000u

/* Block map header: "MOTM", version, 3 zero bytes, size, block (LE),
 * sha256, zeros, CRC-32 of bytes [0, 60) at 60. */
#define MAP_VERSION 1u
#define MAP_CRC_AT 60u

enum { OUT_NONE = 0, OUT_STATUS, OUT_REQUEST };

static const char *const state_names[] = {"idle", "receiving", "stalled", "done", "failed"};

/* ------------------------------------------------------------ helpers -- */

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

/* n hex digits (n even) into n/2 bytes. */
static bool unhex(const char *s, size_t n, uint8_t *out)
{
    size_t i;

    for (i = 0; i < n; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

void moat_otamqtt_hex(const uint8_t sha256[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < 32; i++) {
        out[2 * i] = digits[sha256[i] >> 4];
        out[2 * i + 1] = digits[sha256[i] & 15u];
    }
    out[64] = '\0';
}

static void copy_words(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);

    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static uint32_t until(uint32_t now_ms, uint32_t deadline_ms)
{
    return moat_time_reached(now_ms, deadline_ms) ? 0 : deadline_ms - now_ms;
}

/* ------------------------------------------------------------- topics -- */

static bool has_wildcard(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (s[i] == '+' || s[i] == '#')
            return true;
    return false;
}

moat_err moat_otamqtt_topic(char *buf, size_t cap, const char *base, const char *leaf)
{
    moat_sb sb;
    size_t n;

    if (buf == NULL || cap == 0 || base == NULL || leaf == NULL)
        return MOAT_ERR_ARG;
    buf[0] = '\0';
    n = strlen(base);
    if (n == 0 || has_wildcard(base, n))
        return MOAT_ERR_TOPIC;
    moat_sb_init(&sb, buf, cap);
    moat_sb_mem(&sb, base, n);
    moat_sb_str(&sb, "/");
    moat_sb_str(&sb, leaf);
    if (sb.over) {
        buf[0] = '\0';
        return MOAT_ERR_NO_SPACE;
    }
    moat_sb_words(&sb);
    return MOAT_OK;
}

moat_err moat_otamqtt_block_topic(char *buf, size_t cap, const char *base,
                                  const uint8_t sha256[32], uint32_t n)
{
    char leaf[4 + MOAT_OTAMQTT_TAG_LEN + 1 + 10 + 1], hex[65];
    moat_sb sb;

    if (sha256 == NULL)
        return MOAT_ERR_ARG;
    moat_otamqtt_hex(sha256, hex);
    moat_sb_init(&sb, leaf, sizeof leaf);
    moat_sb_str(&sb, "blk/");
    moat_sb_mem(&sb, hex, MOAT_OTAMQTT_TAG_LEN);
    moat_sb_str(&sb, "/");
    moat_sb_u64(&sb, n);
    moat_sb_words(&sb);
    return moat_otamqtt_topic(buf, cap, base, leaf);
}

moat_err moat_otamqtt_parse_block_topic(const char *base, const char *topic, size_t len,
                                        uint8_t tag[8], uint32_t *n)
{
    size_t bl, i, digits;
    uint64_t v = 0;

    if (base == NULL || topic == NULL || tag == NULL || n == NULL)
        return MOAT_ERR_ARG;
    bl = strlen(base);
    if (len < bl + 5 + MOAT_OTAMQTT_TAG_LEN + 2 || memcmp(topic, base, bl) != 0 ||
        memcmp(topic + bl, "/blk/", 5) != 0)
        return MOAT_ERR_TOPIC;
    i = bl + 5;
    if (!unhex(topic + i, MOAT_OTAMQTT_TAG_LEN, tag) || topic[i + MOAT_OTAMQTT_TAG_LEN] != '/')
        return MOAT_ERR_TOPIC;
    i += MOAT_OTAMQTT_TAG_LEN + 1;
    digits = len - i;
    if (digits < 1 || digits > 10 || (digits > 1 && topic[i] == '0'))
        return MOAT_ERR_TOPIC;
    for (; i < len; i++) {
        if (topic[i] < '0' || topic[i] > '9')
            return MOAT_ERR_TOPIC;
        v = v * 10u + (uint64_t)(topic[i] - '0');
    }
    if (v > 0xFFFFFFFFu)
        return MOAT_ERR_TOPIC;
    *n = (uint32_t)v;
    return MOAT_OK;
}

/* ----------------------------------------------------------- messages -- */

moat_err moat_otamqtt_offer_check(moat_otamqtt_offer *o)
{
    if (o == NULL || o->size == 0 || o->block < MOAT_OTAMQTT_BLOCK_MIN ||
        o->block > MOAT_OTAMQTT_BLOCK_MAX)
        return MOAT_ERR_ARG;
    o->blocks = o->size / o->block + (o->size % o->block != 0);
    return MOAT_OK;
}

static moat_err finish_json(moat_json_writer *w, size_t *len)
{
    size_t n = 0;
    moat_err err = moat_json_finish(w, &n);

    if (len != NULL)
        *len = n;
    return err;
}

moat_err moat_otamqtt_offer_json(const moat_otamqtt_offer *o, char *buf, size_t cap,
                                 size_t *len)
{
    moat_json_writer w;
    char hex[65];

    if (o == NULL)
        return MOAT_ERR_ARG;
    moat_otamqtt_hex(o->sha256, hex);
    moat_json_writer_init(&w, buf, cap);
    moat_json_begin_object(&w, NULL);
    moat_json_put_uint(&w, "size", o->size);
    moat_json_put_uint(&w, "block", o->block);
    moat_json_put_string(&w, "sha256", hex);
    moat_json_end_object(&w);
    return finish_json(&w, len);
}

moat_err moat_otamqtt_request_json(const moat_otamqtt_request *r, char *buf, size_t cap,
                                   size_t *len)
{
    moat_json_writer w;
    char hex[65];

    if (r == NULL)
        return MOAT_ERR_ARG;
    moat_otamqtt_hex(r->sha256, hex);
    moat_json_writer_init(&w, buf, cap);
    moat_json_begin_object(&w, NULL);
    moat_json_put_string(&w, "sha256", hex);
    moat_json_put_uint(&w, "block", r->block);
    moat_json_put_uint(&w, "count", r->count);
    moat_json_end_object(&w);
    return finish_json(&w, len);
}

moat_err moat_otamqtt_status_json(const moat_otamqtt_status *s, char *buf, size_t cap,
                                  size_t *len)
{
    moat_json_writer w;
    char hex[65];

    if (s == NULL || (unsigned)s->state > MOAT_OTAMQTT_FAILED)
        return MOAT_ERR_ARG;
    moat_otamqtt_hex(s->sha256, hex);
    moat_json_writer_init(&w, buf, cap);
    moat_json_begin_object(&w, NULL);
    moat_json_put_string(&w, "sha256", hex);
    moat_json_put_string(&w, "state", state_names[s->state]);
    moat_json_put_uint(&w, "received", s->received);
    moat_json_put_uint(&w, "size", s->size);
    if (s->error[0] != '\0')
        moat_json_put_string(&w, "error", s->error);
    moat_json_end_object(&w);
    return finish_json(&w, len);
}

#define MSG_TOKENS 32u

typedef struct msg_doc {
    moat_json doc;
    moat_json_tok tok[MSG_TOKENS];
    const char *what; /* "offer", "request", "status" for words */
    char *why;
    size_t cap;
} msg_doc;

static moat_err msg_fail(msg_doc *m, const char *member, const char *problem)
{
    moat_sb sb;

    if (m->why != NULL && m->cap > 0) {
        moat_sb_init(&sb, m->why, m->cap);
        moat_sb_str(&sb, m->what);
        if (member != NULL) {
            moat_sb_str(&sb, ": member '");
            moat_sb_str(&sb, member);
            moat_sb_str(&sb, "' ");
        } else {
            moat_sb_str(&sb, ": ");
        }
        moat_sb_str(&sb, problem);
        moat_sb_words(&sb);
    }
    return MOAT_ERR_MALFORMED;
}

/* Parse p as the JSON object of a `what` message; errors go to why. */
static moat_err msg_parse(msg_doc *m, const char *what, char *why, size_t cap, const uint8_t *p,
                          size_t len)
{
    moat_err err;

    m->what = what;
    m->why = why;
    m->cap = cap;
    if (m->why != NULL && m->cap > 0)
        m->why[0] = '\0';
    if (p == NULL)
        return msg_fail(m, NULL, "is empty");
    err = moat_json_parse(&m->doc, (const char *)p, len, m->tok, MSG_TOKENS, NULL);
    if (err == MOAT_ERR_NO_SPACE)
        return msg_fail(m, NULL, "has too many members");
    if (err != MOAT_OK || moat_json_type_of(&m->doc, 0) != MOAT_JSON_OBJECT)
        return msg_fail(m, NULL, "is not a JSON object");
    return MOAT_OK;
}

static moat_err msg_u32(msg_doc *m, const char *key, uint32_t min, uint32_t *out)
{
    int64_t v;
    int i = moat_json_find(&m->doc, 0, key);

    if (i < 0)
        return msg_fail(m, key, "is missing");
    if (moat_json_get_int(&m->doc, i, min, 0xFFFFFFFF, &v) != MOAT_OK)
        return msg_fail(m, key, min == 0 ? "is not an integer from 0 to 4294967295"
                                         : "is not an integer from 1 to 4294967295");
    *out = (uint32_t)v;
    return MOAT_OK;
}

static moat_err msg_sha(msg_doc *m, uint8_t out[32])
{
    char hex[65];
    size_t n = 0;
    int i = moat_json_find(&m->doc, 0, "sha256");

    if (i < 0)
        return msg_fail(m, "sha256", "is missing");
    if (moat_json_get_string(&m->doc, i, hex, sizeof hex, &n) != MOAT_OK || n != 64 ||
        !unhex(hex, 64, out))
        return msg_fail(m, "sha256", "is not 64 hex digits");
    return MOAT_OK;
}

moat_err moat_otamqtt_parse_offer(const uint8_t *p, size_t len, moat_otamqtt_offer *o,
                                  char *why, size_t cap)
{
    msg_doc m;
    moat_otamqtt_offer t;
    moat_err err;

    if (o == NULL)
        return MOAT_ERR_ARG;
    memset(&t, 0, sizeof t);
    err = msg_parse(&m, "offer", why, cap, p, len);
    if (err == MOAT_OK)
        err = msg_u32(&m, "size", 1, &t.size);
    if (err == MOAT_OK)
        err = msg_u32(&m, "block", 1, &t.block);
    if (err == MOAT_OK)
        err = msg_sha(&m, t.sha256);
    if (err != MOAT_OK)
        return err;
    if (moat_otamqtt_offer_check(&t) != MOAT_OK) {
        moat_sb_say(why, cap, "offer: block size ", t.block, " is outside the limits (64 to 65536)",
              0, NULL);
        return MOAT_ERR_ARG;
    }
    *o = t;
    return MOAT_OK;
}

moat_err moat_otamqtt_parse_request(const uint8_t *p, size_t len, moat_otamqtt_request *r,
                                    char *why, size_t cap)
{
    msg_doc m;
    moat_otamqtt_request t;
    moat_err err;

    if (r == NULL)
        return MOAT_ERR_ARG;
    memset(&t, 0, sizeof t);
    err = msg_parse(&m, "request", why, cap, p, len);
    if (err == MOAT_OK)
        err = msg_sha(&m, t.sha256);
    if (err == MOAT_OK)
        err = msg_u32(&m, "block", 0, &t.block);
    if (err == MOAT_OK)
        err = msg_u32(&m, "count", 1, &t.count);
    if (err == MOAT_OK)
        *r = t;
    return err;
}

moat_err moat_otamqtt_parse_status(const uint8_t *p, size_t len, moat_otamqtt_status *s,
                                   char *why, size_t cap)
{
    msg_doc m;
    moat_otamqtt_status t;
    moat_err err;
    int i;
    unsigned k;

    if (s == NULL)
        return MOAT_ERR_ARG;
    memset(&t, 0, sizeof t);
    err = msg_parse(&m, "status", why, cap, p, len);
    if (err == MOAT_OK)
        err = msg_sha(&m, t.sha256);
    if (err == MOAT_OK)
        err = msg_u32(&m, "received", 0, &t.received);
    if (err == MOAT_OK)
        err = msg_u32(&m, "size", 0, &t.size);
    if (err != MOAT_OK)
        return err;
    i = moat_json_find(&m.doc, 0, "state");
    for (k = MOAT_OTAMQTT_RECEIVING; k <= MOAT_OTAMQTT_FAILED; k++)
        if (moat_json_eq(&m.doc, i, state_names[k]))
            break;
    if (k > MOAT_OTAMQTT_FAILED)
        return msg_fail(&m, "state", "is not receiving, stalled, done or failed");
    t.state = (moat_otamqtt_state)k;
    i = moat_json_find(&m.doc, 0, "error");
    if (i >= 0 && moat_json_get_string(&m.doc, i, t.error, sizeof t.error, NULL) != MOAT_OK) {
        /* Too long or not a string: keep what can be said. */
        size_t n = 0;
        const char *raw = moat_json_raw(&m.doc, i, &n);
        if (n >= sizeof t.error)
            n = sizeof t.error - 1;
        memcpy(t.error, raw, n);
        t.error[n] = '\0';
    }
    *s = t;
    return MOAT_OK;
}

/* ---------------------------------------------------------- block map -- */

static bool same_offer(const moat_otamqtt_offer *a, const moat_otamqtt_offer *b)
{
    return a->size == b->size && a->block == b->block &&
           memcmp(a->sha256, b->sha256, 32) == 0;
}

/* Erase the map (nothing to resume). */
static void map_clear(moat_otamqtt *e)
{
    const moat_flash_area *fa = e->cfg->state;

    e->map_ok = false;
    e->persisted = 0;
    if (fa == NULL)
        return;
    if (fa->erase(fa->ctx) == MOAT_OK)
        fa->sync(fa->ctx);
}

/* Erase the map and write this transfer's header. */
static void map_start(moat_otamqtt *e)
{
    const moat_flash_area *fa = e->cfg->state;
    uint8_t h[MOAT_OTAMQTT_HEADER_SIZE];

    e->map_ok = false;
    e->persisted = 0;
    if (fa == NULL)
        return;
    memset(h, 0, sizeof h);
    memcpy(h, "MOTM", 4);
    h[4] = MAP_VERSION;
    moat_le_put32(h + 8, e->offer.size);
    moat_le_put32(h + 12, e->offer.block);
    memcpy(h + 16, e->offer.sha256, 32);
    moat_le_put32(h + MAP_CRC_AT, moat_boot_crc32(0, h, MAP_CRC_AT));
    /* Without a map the transfer still runs; only a restart starts over. */
    e->map_ok = fa->erase(fa->ctx) == MOAT_OK && fa->write(fa->ctx, 0, h, sizeof h) == MOAT_OK &&
                fa->sync(fa->ctx) == MOAT_OK;
}

/* Mark blocks [persisted, upto) durable. */
static void map_mark(moat_otamqtt *e, uint32_t upto)
{
    const moat_flash_area *fa = e->cfg->state;
    uint8_t marks[64];
    uint32_t b = e->persisted;

    if (fa == NULL || !e->map_ok || upto <= b)
        return;
    memset(marks, MOAT_OTAMQTT_MARK, sizeof marks);
    while (b < upto) {
        uint32_t n = upto - b < sizeof marks ? upto - b : (uint32_t)sizeof marks;
        if (fa->write(fa->ctx, MOAT_OTAMQTT_HEADER_SIZE + b, marks, n) != MOAT_OK) {
            e->map_ok = false;
            return;
        }
        b += n;
    }
    if (fa->sync(fa->ctx) != MOAT_OK) {
        e->map_ok = false;
        return;
    }
    e->persisted = upto;
}

/* Read a transfer from the map, if it holds one this config can take. */
static moat_err map_load(moat_otamqtt *e)
{
    const moat_flash_area *fa = e->cfg->state;
    uint8_t h[MOAT_OTAMQTT_HEADER_SIZE], marks[64];
    moat_otamqtt_offer o;
    uint32_t m = 0, i, n;
    moat_err err;

    err = fa->read(fa->ctx, 0, h, sizeof h);
    if (err != MOAT_OK)
        return err;
    if (memcmp(h, "MOTM", 4) != 0 || h[4] != MAP_VERSION || moat_le_get32(h + MAP_CRC_AT) != moat_boot_crc32(0, h, MAP_CRC_AT))
        return MOAT_OK;
    memset(&o, 0, sizeof o);
    o.size = moat_le_get32(h + 8);
    o.block = moat_le_get32(h + 12);
    memcpy(o.sha256, h + 16, 32);
    if (moat_otamqtt_offer_check(&o) != MOAT_OK || o.size > e->cfg->max_size ||
        o.block > e->max_block || o.blocks > fa->size - MOAT_OTAMQTT_HEADER_SIZE)
        return MOAT_OK;
    while (m < o.blocks) {
        n = o.blocks - m < sizeof marks ? o.blocks - m : (uint32_t)sizeof marks;
        err = fa->read(fa->ctx, MOAT_OTAMQTT_HEADER_SIZE + m, marks, n);
        if (err != MOAT_OK)
            return err;
        for (i = 0; i < n && marks[i] == MOAT_OTAMQTT_MARK; i++)
            ;
        m += i;
        if (i < n)
            break;
    }
    e->offer = o;
    e->have_offer = true;
    e->map_ok = true;
    e->persisted = m;
    e->resume = m == o.blocks ? o.size : m * o.block;
    e->want = e->resume;
    e->requested = m;
    e->state = MOAT_OTAMQTT_RECEIVING;
    return MOAT_OK;
}

/* ------------------------------------------------------------- engine -- */

static uint32_t block_of(const moat_otamqtt *e, uint32_t offset)
{
    return offset / e->offer.block;
}

static uint32_t block_len(const moat_otamqtt_offer *o, uint32_t n)
{
    uint32_t start = n * o->block;

    return o->size - start < o->block ? o->size - start : o->block;
}

static uint32_t sink_offset(moat_otamqtt *e, uint32_t fallback)
{
    const moat_otamqtt_sink *s = &e->cfg->sink;

    return s->offset != NULL ? s->offset(s->ctx) : fallback;
}

/* The transfer failed: give it up, say so. */
static void fail(moat_otamqtt *e, const char *why)
{
    const moat_otamqtt_sink *s = &e->cfg->sink;

    if (why != e->error)
        copy_words(e->error, sizeof e->error, why[0] != '\0' ? why : "the transfer failed");
    if (e->begun && s->abort != NULL)
        s->abort(s->ctx);
    e->begun = false;
    map_clear(e);
    e->state = MOAT_OTAMQTT_FAILED;
    e->want_status = true;
    e->want_request = false;
}

/* Drop whatever transfer runs, without a word (a new image replaces it). */
static void drop(moat_otamqtt *e)
{
    const moat_otamqtt_sink *s = &e->cfg->sink;

    if (e->begun && s->abort != NULL &&
        (e->state == MOAT_OTAMQTT_RECEIVING || e->state == MOAT_OTAMQTT_STALLED))
        s->abort(s->ctx);
    e->begun = false;
}

/* Call the sink's begin once per run; a refused resume starts over. */
static moat_err ensure_begun(moat_otamqtt *e)
{
    const moat_otamqtt_sink *s = &e->cfg->sink;
    char why[MOAT_OTAMQTT_ERROR_MAX];
    moat_err err;

    if (e->begun)
        return MOAT_OK;
    why[0] = '\0';
    err = s->begin(s->ctx, &e->offer, e->resume, why, sizeof why);
    if (err != MOAT_OK && e->resume > 0) {
        e->resume = 0;
        map_start(e);
        why[0] = '\0';
        err = s->begin(s->ctx, &e->offer, 0, why, sizeof why);
    }
    if (err != MOAT_OK) {
        fail(e, why[0] != '\0' ? why : moat_strerror(err));
        return err;
    }
    e->begun = true;
    e->want = sink_offset(e, e->resume);
    if (e->want > e->offer.size) {
        fail(e, "the sink asks for an offset past the end of the image");
        return MOAT_ERR_STATE;
    }
    e->requested = block_of(e, e->want);
    return MOAT_OK;
}

static void checkpoint(moat_otamqtt *e)
{
    const moat_otamqtt_sink *s = &e->cfg->sink;
    uint32_t durable = 0;

    e->since_checkpoint = 0;
    if (!e->begun || !e->map_ok || s->checkpoint == NULL)
        return;
    if (s->checkpoint(s->ctx, &durable) != MOAT_OK) {
        fail(e, "the image could not be made durable (checkpoint failed)");
        return;
    }
    map_mark(e, durable >= e->offer.size ? e->offer.blocks : durable / e->offer.block);
}

/* Ask for blocks again from the one the sink wants. */
static void ask_again(moat_otamqtt *e, uint32_t now_ms)
{
    e->requested = block_of(e, e->want);
    e->gap_asked = false;
    e->want_request = true;
    e->deadline_ms = now_ms + e->timeout_ms;
}

static void complete(moat_otamqtt *e)
{
    const moat_otamqtt_sink *s = &e->cfg->sink;
    char why[MOAT_OTAMQTT_ERROR_MAX];

    why[0] = '\0';
    if (s->finish(s->ctx, &e->offer, why, sizeof why) != MOAT_OK) {
        fail(e, why[0] != '\0' ? why : "the image was refused");
        return;
    }
    e->begun = false;
    map_clear(e); /* a restart must not take the image again */
    e->state = MOAT_OTAMQTT_DONE;
    e->error[0] = '\0';
    e->want_status = true;
    e->want_request = false;
}

moat_err moat_otamqtt_init(moat_otamqtt *e, const moat_otamqtt_config *cfg, uint32_t now_ms)
{
    const moat_otamqtt_sink *s;
    size_t n;
    moat_err err;

    (void)now_ms;
    if (e == NULL || cfg == NULL || cfg->base == NULL)
        return MOAT_ERR_ARG;
    s = &cfg->sink;
    n = strlen(cfg->base);
    if (n == 0 || n >= MOAT_OTAMQTT_BASE_MAX || has_wildcard(cfg->base, n) ||
        s->begin == NULL || s->write == NULL || s->finish == NULL || cfg->max_size == 0)
        return MOAT_ERR_ARG;
    if (cfg->max_block != 0 &&
        (cfg->max_block < MOAT_OTAMQTT_BLOCK_MIN || cfg->max_block > MOAT_OTAMQTT_BLOCK_MAX))
        return MOAT_ERR_ARG;
    if (cfg->state != NULL &&
        (s->checkpoint == NULL || cfg->state->read == NULL || cfg->state->write == NULL ||
         cfg->state->erase == NULL || cfg->state->sync == NULL ||
         cfg->state->size < MOAT_OTAMQTT_HEADER_SIZE + 1))
        return MOAT_ERR_ARG;
    memset(e, 0, sizeof *e);
    e->cfg = cfg;
    e->max_block = cfg->max_block != 0 ? cfg->max_block : MOAT_OTAMQTT_BLOCK_DEFAULT;
    e->window = cfg->window != 0 ? cfg->window : DEF_WINDOW;
    e->checkpoint = cfg->checkpoint != 0 ? cfg->checkpoint : DEF_CHECKPOINT;
    e->timeout_ms = cfg->timeout_ms != 0 ? cfg->timeout_ms : DEF_TIMEOUT_MS;
    if (e->timeout_ms > MAX_TIMEOUT_MS)
        e->timeout_ms = MAX_TIMEOUT_MS;
    e->max_retries = cfg->max_retries != 0 ? cfg->max_retries : DEF_RETRIES;
    if (cfg->state == NULL)
        return MOAT_OK;
    err = map_load(e);
    if (err != MOAT_OK) {
        e->state = MOAT_OTAMQTT_IDLE;
        e->have_offer = false;
        e->map_ok = false;
        moat_sb_say(e->error, sizeof e->error, "cannot read the block map: ", 0, NULL, 0, NULL);
        copy_words(e->error + strlen(e->error), sizeof e->error - strlen(e->error),
                   moat_strerror(err));
    }
    return err;
}

void moat_otamqtt_link_up(moat_otamqtt *e, uint32_t now_ms)
{
    e->online = true;
    if (e->state != MOAT_OTAMQTT_RECEIVING && e->state != MOAT_OTAMQTT_STALLED)
        return;
    if (ensure_begun(e) != MOAT_OK)
        return;
    e->state = MOAT_OTAMQTT_RECEIVING;
    e->retries = 0;
    e->want_status = true;
    ask_again(e, now_ms);
    if (e->want >= e->offer.size)
        complete(e);
}

void moat_otamqtt_link_down(moat_otamqtt *e, uint32_t now_ms)
{
    (void)now_ms;
    e->online = false;
    e->out_kind = OUT_NONE;
    if (e->state == MOAT_OTAMQTT_RECEIVING || e->state == MOAT_OTAMQTT_STALLED)
        checkpoint(e);
    if (e->have_offer && e->offer.block != 0)
        e->requested = block_of(e, e->want);
    e->want_request = false;
}

static moat_err on_offer(moat_otamqtt *e, const uint8_t *p, size_t len, uint32_t now_ms)
{
    const moat_flash_area *fa = e->cfg->state;
    moat_otamqtt_offer o;
    char why[MOAT_OTAMQTT_ERROR_MAX];
    moat_err err = moat_otamqtt_parse_offer(p, len, &o, why, sizeof why);

    if (err != MOAT_OK) {
        copy_words(e->error, sizeof e->error, why);
        return MOAT_ERR_MALFORMED; /* no SHA-256 to answer to: the caller logs it */
    }
    if (e->have_offer && same_offer(&o, &e->offer)) {
        if (e->state == MOAT_OTAMQTT_DONE) {
            e->want_status = true;
            return MOAT_OK;
        }
        if (e->state == MOAT_OTAMQTT_RECEIVING || e->state == MOAT_OTAMQTT_STALLED) {
            if (ensure_begun(e) != MOAT_OK)
                return MOAT_OK;
            e->state = MOAT_OTAMQTT_RECEIVING;
            e->retries = 0;
            e->error[0] = '\0';
            e->want_status = true;
            ask_again(e, now_ms);
            if (e->want >= e->offer.size)
                complete(e);
            return MOAT_OK;
        }
    }
    /* Another image, or this one again after a failure: start over. */
    drop(e);
    e->offer = o;
    e->have_offer = true;
    e->error[0] = '\0';
    e->resume = 0;
    e->want = 0;
    e->retries = 0;
    e->since_checkpoint = 0;
    if (o.size > e->cfg->max_size) {
        moat_sb_say(why, sizeof why, "image of ", o.size, " bytes is larger than this device takes (",
              e->cfg->max_size, " bytes)");
        fail(e, why);
        return MOAT_OK;
    }
    if (o.block > e->max_block) {
        moat_sb_say(why, sizeof why, "block size ", o.block,
              " is larger than this device takes whole (", e->max_block, " bytes)");
        fail(e, why);
        return MOAT_OK;
    }
    if (fa != NULL && o.blocks > fa->size - MOAT_OTAMQTT_HEADER_SIZE) {
        moat_sb_say(why, sizeof why, "image of ", o.blocks,
              " blocks does not fit the block map (at most ",
              fa->size - MOAT_OTAMQTT_HEADER_SIZE, "): use larger blocks");
        fail(e, why);
        return MOAT_OK;
    }
    e->state = MOAT_OTAMQTT_RECEIVING;
    map_start(e);
    if (ensure_begun(e) != MOAT_OK)
        return MOAT_OK;
    e->want_status = true;
    ask_again(e, now_ms);
    return MOAT_OK;
}

static void on_block(moat_otamqtt *e, const char *topic, size_t tlen, const uint8_t *p,
                     size_t len, uint32_t now_ms)
{
    const moat_otamqtt_sink *s = &e->cfg->sink;
    char why[MOAT_OTAMQTT_ERROR_MAX];
    uint8_t tag[8];
    uint32_t n, next, skip, before;
    moat_err err;

    if (e->state != MOAT_OTAMQTT_RECEIVING && e->state != MOAT_OTAMQTT_STALLED)
        return;
    if (moat_otamqtt_parse_block_topic(e->cfg->base, topic, tlen, tag, &n) != MOAT_OK ||
        memcmp(tag, e->offer.sha256, 8) != 0 || n >= e->offer.blocks)
        return; /* another image's block, or none of ours */
    if (ensure_begun(e) != MOAT_OK)
        return;
    next = block_of(e, e->want);
    if (n < next)
        return; /* a repeat */
    if (n > next) {
        /* A block is missing (its sender restarted?): ask again at once,
         * once per gap; the blocks after it come again in order. */
        if (!e->gap_asked) {
            ask_again(e, now_ms);
            e->gap_asked = true;
        }
        return;
    }
    if (p == NULL || len != block_len(&e->offer, n)) {
        moat_sb_say(why, sizeof why, "block ", n, " has the wrong size (", len, " bytes)");
        fail(e, why);
        return;
    }
    /* The sink may ask again for bytes of this block after the write (the
     * verifier, resumed, drops the rest of the chunk that ends the header):
     * give them from where it asks, as long as it moves on. */
    do {
        skip = e->want - n * e->offer.block;
        why[0] = '\0';
        err = s->write(s->ctx, e->want, p + skip, len - skip, why, sizeof why);
        if (err != MOAT_OK) {
            fail(e, why[0] != '\0' ? why : moat_strerror(err));
            return;
        }
        before = e->want;
        e->want = sink_offset(e, e->want + (uint32_t)(len - skip));
        if (e->want <= before || e->want > e->offer.size) {
            fail(e, "the sink asks for an offset outside the image");
            return;
        }
    } while (e->want < n * e->offer.block + len);
    e->state = MOAT_OTAMQTT_RECEIVING;
    e->retries = 0;
    e->gap_asked = false;
    e->deadline_ms = now_ms + e->timeout_ms;
    if (++e->since_checkpoint >= e->checkpoint)
        checkpoint(e);
    if (e->state != MOAT_OTAMQTT_RECEIVING)
        return;
    if (e->want >= e->offer.size) {
        complete(e);
        return;
    }
    if (e->requested < block_of(e, e->want))
        e->requested = block_of(e, e->want); /* the sink jumped ahead */
    e->want_request = true;
}

moat_err moat_otamqtt_message(moat_otamqtt *e, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t len, bool retain,
                              uint32_t now_ms)
{
    size_t bl;
    const char *leaf;
    size_t ll;

    if (e == NULL || e->cfg == NULL || topic == NULL)
        return MOAT_ERR_ARG;
    bl = strlen(e->cfg->base);
    if (topic_len <= bl + 1 || memcmp(topic, e->cfg->base, bl) != 0 || topic[bl] != '/')
        return MOAT_ERR_TOPIC;
    leaf = topic + bl + 1;
    ll = topic_len - bl - 1;
    if (ll == 5 && memcmp(leaf, "offer", 5) == 0) {
        if (retain) {
            copy_words(e->error, sizeof e->error,
                       "a retained offer was ignored: clear it with an empty retained message");
            return MOAT_OK;
        }
        return on_offer(e, payload, len, now_ms);
    }
    if (ll > 4 && memcmp(leaf, "blk/", 4) == 0) {
        if (!retain)
            on_block(e, topic, topic_len, payload, len, now_ms);
        return MOAT_OK;
    }
    return MOAT_ERR_TOPIC;
}

void moat_otamqtt_tick(moat_otamqtt *e, uint32_t now_ms)
{
    char why[MOAT_OTAMQTT_ERROR_MAX];

    if (e->state != MOAT_OTAMQTT_RECEIVING || !e->online ||
        !moat_time_reached(now_ms, e->deadline_ms))
        return;
    if (++e->retries > e->max_retries) {
        checkpoint(e);
        if (e->state != MOAT_OTAMQTT_RECEIVING)
            return;
        e->state = MOAT_OTAMQTT_STALLED;
        moat_sb_say(why, sizeof why, "no block came after ", e->max_retries,
              " requests; progress kept at ", e->want, " bytes: offer the image again");
        copy_words(e->error, sizeof e->error, why);
        e->want_status = true;
        e->want_request = false;
        return;
    }
    ask_again(e, now_ms);
}

uint32_t moat_otamqtt_next_timeout(const moat_otamqtt *e, uint32_t now_ms)
{
    if (e->state != MOAT_OTAMQTT_RECEIVING || !e->online)
        return UINT32_MAX;
    return until(now_ms, e->deadline_ms);
}

static bool build(moat_otamqtt *e, const char *leaf, moat_otamqtt_msg *m)
{
    if (moat_otamqtt_topic(e->topic, sizeof e->topic, e->cfg->base, leaf) != MOAT_OK)
        return false;
    m->topic = e->topic;
    m->payload = e->payload;
    return true;
}

bool moat_otamqtt_output(moat_otamqtt *e, moat_otamqtt_msg *m)
{
    uint32_t next, batch;
    size_t len = 0;

    e->out_kind = OUT_NONE;
    if (!e->online || m == NULL)
        return false;
    if (e->want_status && e->have_offer) {
        moat_otamqtt_status st;
        memset(&st, 0, sizeof st);
        memcpy(st.sha256, e->offer.sha256, 32);
        st.state = (moat_otamqtt_state)e->state;
        st.size = e->offer.size;
        st.received = e->state == MOAT_OTAMQTT_DONE ? e->offer.size
                      : e->want > e->resume        ? e->want
                                                   : e->resume;
        if (e->state == MOAT_OTAMQTT_FAILED || e->state == MOAT_OTAMQTT_STALLED)
            copy_words(st.error, sizeof st.error, e->error);
        if (moat_otamqtt_status_json(&st, (char *)e->payload, sizeof e->payload, &len) !=
                MOAT_OK ||
            !build(e, "status", m)) {
            e->want_status = false;
            return false;
        }
        m->len = len;
        e->out_kind = OUT_STATUS;
        return true;
    }
    e->want_status = false;
    if (!e->want_request || e->state != MOAT_OTAMQTT_RECEIVING || !e->begun)
        return false;
    next = block_of(e, e->want);
    if (e->requested < next)
        e->requested = next;
    batch = e->window / 2u != 0 ? e->window / 2u : 1u;
    if (e->requested >= e->offer.blocks || e->requested - next + batch > e->window) {
        e->want_request = false;
        return false;
    }
    {
        moat_otamqtt_request r;
        memcpy(r.sha256, e->offer.sha256, 32);
        r.block = e->requested;
        r.count = e->offer.blocks - e->requested < batch ? e->offer.blocks - e->requested : batch;
        if (moat_otamqtt_request_json(&r, (char *)e->payload, sizeof e->payload, &len) !=
                MOAT_OK ||
            !build(e, "req", m))
            return false;
        e->req_start = r.block;
        e->req_count = r.count;
    }
    m->len = len;
    e->out_kind = OUT_REQUEST;
    return true;
}

void moat_otamqtt_output_done(moat_otamqtt *e, uint32_t now_ms)
{
    if (e->out_kind == OUT_STATUS) {
        e->want_status = false;
    } else if (e->out_kind == OUT_REQUEST) {
        e->requested = e->req_start + e->req_count;
        e->deadline_ms = now_ms + e->timeout_ms;
    }
    e->out_kind = OUT_NONE;
}

void moat_otamqtt_abort(moat_otamqtt *e)
{
    drop(e);
    map_clear(e);
    e->state = MOAT_OTAMQTT_IDLE;
    e->have_offer = false;
    e->want_status = false;
    e->want_request = false;
}

void moat_otamqtt_reset(moat_otamqtt *e)
{
    if (e->state != MOAT_OTAMQTT_DONE && e->state != MOAT_OTAMQTT_FAILED)
        return;
    e->state = MOAT_OTAMQTT_IDLE;
    e->have_offer = false;
    e->want_status = false;
    e->want_request = false;
}

moat_otamqtt_state moat_otamqtt_get_state(const moat_otamqtt *e)
{
    return (moat_otamqtt_state)e->state;
}

uint32_t moat_otamqtt_received(const moat_otamqtt *e)
{
    if (!e->have_offer)
        return 0;
    if (e->state == MOAT_OTAMQTT_DONE)
        return e->offer.size;
    return e->want > e->resume ? e->want : e->resume;
}

const moat_otamqtt_offer *moat_otamqtt_current(const moat_otamqtt *e)
{
    return e->have_offer ? &e->offer : NULL;
}

const char *moat_otamqtt_error(const moat_otamqtt *e)
{
    return e->error;
}

const char *moat_otamqtt_state_name(moat_otamqtt_state s)
{
    return (unsigned)s <= MOAT_OTAMQTT_FAILED ? state_names[s] : "?";
}
