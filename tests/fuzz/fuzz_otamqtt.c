/*
 * fuzz_otamqtt.c - libFuzzer harness for the image-over-MQTT block engine
 * (moat/otamqtt.h): the offer, request and status parsers and the block
 * topic parser on arbitrary bytes, and the device engine driven by a script
 * of offers, blocks, raw messages, link changes, timer ticks and restarts.
 *
 * Input layout (missing bytes read as 0):
 *   byte 0   engine config: bit 0 block map, bits 1-3 window - 1,
 *            bits 4-6 checkpoint - 1, bit 7 a verifier-like sink (after a
 *            resume it wants the first 100 bytes again, then jumps)
 *   then ops, each an op byte (mod 10) and its arguments:
 *     0 offer      size (u16 + 1), block (u8 * 64, at least 64), seed (u8)
 *     1 block      n (u8), length delta (u8: 0 = exact), tag ok (u8 & 1)
 *     2 raw        topic length (u8), topic bytes (appended to the base),
 *                  payload length (u8), payload bytes
 *     3 link up    4 link down   5 tick (u16 ms)   6 drain output
 *     7 restart    (a new engine over the same block map and sink data)
 *     8 parse      length (u8), bytes: through all three message parsers
 *                  and the block topic parser
 *     9 abort or reset (u8 & 1)
 *
 * Oracles, besides ASan/UBSan on exactly sized copies:
 *  - the sink is written only at the offset it asked for, never past the
 *    image, and finish is called only when every byte is in;
 *  - the block map is written as flash: erased to 0xFF, each byte once;
 *  - every message the engine publishes parses back: a request asks for
 *    1..window blocks inside the image, a status names the offer's image;
 *  - a message a parser accepts encodes and parses back to the same values.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moat/otamqtt.h"

#include "fuzz_check.h"

#define BASE "moat/fuzz/ota"
#define IMG_MAX 65536u
#define MAP_SIZE 1024u

typedef struct input {
    const uint8_t *p;
    size_t n, i;
} input;

static unsigned next_u8(input *in)
{
    return in->i < in->n ? in->p[in->i++] : 0u;
}

static unsigned next_u16(input *in)
{
    unsigned hi = next_u8(in);
    return hi << 8 | next_u8(in);
}

/* ---- flash with flash rules ---- */

static uint8_t map_mem[MAP_SIZE];

static moat_err f_read(void *ctx, uint32_t off, void *buf, size_t len)
{
    (void)ctx;
    CHECK(off + len <= MAP_SIZE);
    memcpy(buf, map_mem + off, len);
    return MOAT_OK;
}

static moat_err f_write(void *ctx, uint32_t off, const void *buf, size_t len)
{
    size_t i;
    (void)ctx;
    CHECK(off + len <= MAP_SIZE);
    for (i = 0; i < len; i++)
        CHECK(map_mem[off + i] == 0xFF);
    memcpy(map_mem + off, buf, len);
    return MOAT_OK;
}

static moat_err f_erase(void *ctx)
{
    (void)ctx;
    memset(map_mem, 0xFF, sizeof map_mem);
    return MOAT_OK;
}

static moat_err f_sync(void *ctx)
{
    (void)ctx;
    return MOAT_OK;
}

/* ---- a checking sink ---- */

typedef struct sink {
    uint32_t size, offset, jump_to, durable;
    bool verifier, active;
} sink;

static sink sk;

static moat_err s_begin(void *ctx, const moat_otamqtt_offer *o, uint32_t resume, char *why,
                        size_t cap)
{
    sink *s = ctx;
    CHECK(o->size >= 1 && o->blocks >= 1);
    CHECK(resume <= o->size);
    CHECK(resume == o->size || resume % o->block == 0);
    if (o->size % 7 == 3) {
        snprintf(why, cap, "refused");
        return MOAT_ERR_STATE;
    }
    s->size = o->size;
    s->active = true;
    s->durable = resume;
    if (s->verifier && resume > 100) {
        s->offset = 0;
        s->jump_to = resume - 100;
    } else {
        s->offset = resume;
        s->jump_to = 0;
    }
    return MOAT_OK;
}

static uint32_t s_offset(void *ctx)
{
    return ((sink *)ctx)->offset;
}

static moat_err s_write(void *ctx, uint32_t off, const uint8_t *d, size_t len, char *why,
                        size_t cap)
{
    sink *s = ctx;
    (void)why, (void)cap;
    CHECK(s->active);
    CHECK(off == s->offset);
    CHECK(len >= 1 && off + len <= s->size);
    CHECK(d != NULL);
    s->offset = off + (uint32_t)len;
    if (s->jump_to > 0 && s->offset >= 100) {
        s->offset = s->jump_to;
        s->jump_to = 0;
    }
    return MOAT_OK;
}

static moat_err s_checkpoint(void *ctx, uint32_t *durable)
{
    sink *s = ctx;
    CHECK(s->active);
    if (s->offset > s->durable)
        s->durable = s->offset;
    *durable = s->durable;
    return MOAT_OK;
}

static moat_err s_finish(void *ctx, const moat_otamqtt_offer *o, char *why, size_t cap)
{
    sink *s = ctx;
    CHECK(s->active);
    CHECK(s->offset == o->size);
    s->active = false;
    if (o->sha256[0] & 1) {
        snprintf(why, cap, "bad signature");
        return MOAT_ERR_OTA_SIGNATURE;
    }
    return MOAT_OK;
}

static void s_abort(void *ctx)
{
    ((sink *)ctx)->active = false;
}

/* ---- the parsers on arbitrary bytes ---- */

static void parse_all(const uint8_t *p, size_t n)
{
    uint8_t *copy = malloc(n > 0 ? n : 1);
    char why[200], json[MOAT_OTAMQTT_PAYLOAD_MAX];
    size_t len;
    moat_otamqtt_offer o, o2;
    moat_otamqtt_request r, r2;
    moat_otamqtt_status s, s2;
    uint8_t tag[8];
    uint32_t blk;

    CHECK(copy != NULL);
    memcpy(copy, p, n);
    if (moat_otamqtt_parse_offer(copy, n, &o, why, sizeof why) == MOAT_OK) {
        CHECK(moat_otamqtt_offer_json(&o, json, sizeof json, &len) == MOAT_OK);
        CHECK(moat_otamqtt_parse_offer((const uint8_t *)json, len, &o2, NULL, 0) == MOAT_OK);
        CHECK(memcmp(&o, &o2, sizeof o) == 0);
    } else {
        CHECK(why[0] != '\0');
    }
    if (moat_otamqtt_parse_request(copy, n, &r, why, sizeof why) == MOAT_OK) {
        CHECK(r.count >= 1);
        CHECK(moat_otamqtt_request_json(&r, json, sizeof json, &len) == MOAT_OK);
        CHECK(moat_otamqtt_parse_request((const uint8_t *)json, len, &r2, NULL, 0) == MOAT_OK);
        CHECK(memcmp(&r, &r2, sizeof r) == 0);
    }
    if (moat_otamqtt_parse_status(copy, n, &s, why, sizeof why) == MOAT_OK) {
        CHECK(s.state >= MOAT_OTAMQTT_RECEIVING && s.state <= MOAT_OTAMQTT_FAILED);
        CHECK(strlen(s.error) < sizeof s.error);
        if (moat_otamqtt_status_json(&s, json, sizeof json, &len) == MOAT_OK &&
            moat_otamqtt_parse_status((const uint8_t *)json, len, &s2, NULL, 0) == MOAT_OK) {
            CHECK(s2.state == s.state && s2.received == s.received && s2.size == s.size);
        }
    }
    if (moat_otamqtt_parse_block_topic(BASE, (const char *)copy, n, tag, &blk) == MOAT_OK) {
        char topic[MOAT_OTAMQTT_TOPIC_MAX];
        uint8_t sha[32];
        memset(sha, 0, sizeof sha);
        memcpy(sha, tag, 8);
        CHECK(moat_otamqtt_block_topic(topic, sizeof topic, BASE, sha, blk) == MOAT_OK);
        CHECK(strlen(topic) == n);
    }
    free(copy);
}

/* ---- the engine ---- */

static moat_otamqtt eng;
static moat_otamqtt_config cfg;
static moat_otamqtt_offer cur; /* the last offer sent */
static bool have_cur;
static uint8_t image[IMG_MAX];

static void drain(uint32_t now)
{
    moat_otamqtt_msg m;
    int guard = 0;

    while (moat_otamqtt_output(&eng, &m)) {
        CHECK(++guard < 1000);
        CHECK(m.len < MOAT_OTAMQTT_PAYLOAD_MAX);
        if (strcmp(m.topic, BASE "/req") == 0) {
            moat_otamqtt_request r;
            const moat_otamqtt_offer *o = moat_otamqtt_current(&eng);
            CHECK(moat_otamqtt_parse_request(m.payload, m.len, &r, NULL, 0) == MOAT_OK);
            CHECK(o != NULL);
            CHECK(memcmp(r.sha256, o->sha256, 32) == 0);
            CHECK(r.count >= 1 && r.count <= cfg.window);
            CHECK(r.block + r.count <= o->blocks);
        } else {
            moat_otamqtt_status s;
            CHECK(strcmp(m.topic, BASE "/status") == 0);
            CHECK(moat_otamqtt_parse_status(m.payload, m.len, &s, NULL, 0) == MOAT_OK);
            CHECK(s.received <= s.size);
        }
        moat_otamqtt_output_done(&eng, now);
    }
}

static void message(const char *topic, const uint8_t *p, size_t n, uint32_t now)
{
    uint8_t *copy = malloc(n > 0 ? n : 1);
    moat_err err;

    CHECK(copy != NULL);
    memcpy(copy, p, n);
    err = moat_otamqtt_message(&eng, topic, strlen(topic), n > 0 ? copy : NULL, n, false, now);
    CHECK(err == MOAT_OK || err == MOAT_ERR_TOPIC || err == MOAT_ERR_MALFORMED);
    free(copy);
}

static void send_offer(input *in, uint32_t now)
{
    char json[MOAT_OTAMQTT_PAYLOAD_MAX];
    size_t len;
    unsigned seed, i;

    memset(&cur, 0, sizeof cur);
    cur.size = next_u16(in) + 1u;
    cur.block = next_u8(in) * 64u;
    if (cur.block < 64u)
        cur.block = 64u;
    seed = next_u8(in);
    for (i = 0; i < 32; i++)
        cur.sha256[i] = (uint8_t)(seed + i * 3u);
    CHECK(moat_otamqtt_offer_check(&cur) == MOAT_OK);
    have_cur = true;
    for (i = 0; i < cur.size; i++)
        image[i] = (uint8_t)(i + seed);
    CHECK(moat_otamqtt_offer_json(&cur, json, sizeof json, &len) == MOAT_OK);
    message(BASE "/offer", (const uint8_t *)json, len, now);
}

static void send_block(input *in, uint32_t now)
{
    char topic[MOAT_OTAMQTT_TOPIC_MAX];
    unsigned n = next_u8(in), delta = next_u8(in), tag_ok = next_u8(in) & 1u;
    uint8_t sha[32];
    uint32_t start, len;

    if (!have_cur || n >= cur.blocks)
        return;
    memcpy(sha, cur.sha256, 32);
    if (!tag_ok)
        sha[3] ^= 0x10;
    start = n * cur.block;
    len = cur.size - start < cur.block ? cur.size - start : cur.block;
    len = delta == 0 ? len : (len + delta) % (cur.block + 2u);
    if (start + len > IMG_MAX)
        len = IMG_MAX - start;
    CHECK(moat_otamqtt_block_topic(topic, sizeof topic, BASE, sha, n) == MOAT_OK);
    message(topic, image + start, len, now);
}

static void send_raw(input *in, uint32_t now)
{
    char topic[MOAT_OTAMQTT_TOPIC_MAX];
    uint8_t payload[256];
    size_t tl = next_u8(in) % 40u, pl, i;

    memcpy(topic, BASE "/", sizeof BASE);
    for (i = 0; i < tl; i++) {
        unsigned c = next_u8(in);
        topic[sizeof BASE + i] = (char)(c == 0 ? 'x' : c);
    }
    topic[sizeof BASE + tl] = '\0';
    pl = next_u8(in);
    for (i = 0; i < pl; i++)
        payload[i] = (uint8_t)next_u8(in);
    message(topic, payload, pl, now);
}

static void engine_init(uint32_t now)
{
    moat_err err = moat_otamqtt_init(&eng, &cfg, now);
    CHECK(err == MOAT_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in = {data, size, 0};
    unsigned c = next_u8(&in);
    static moat_flash_area area;
    uint32_t now = 1000;
    int ops = 0;

    memset(map_mem, 0xFF, sizeof map_mem);
    memset(&sk, 0, sizeof sk);
    sk.verifier = (c & 0x80u) != 0;
    have_cur = false;
    area.read = f_read;
    area.write = f_write;
    area.erase = f_erase;
    area.sync = f_sync;
    area.size = MAP_SIZE;
    area.ctx = NULL;
    memset(&cfg, 0, sizeof cfg);
    cfg.base = BASE;
    cfg.state = (c & 1u) ? &area : NULL;
    cfg.sink.begin = s_begin;
    cfg.sink.offset = s_offset;
    cfg.sink.write = s_write;
    cfg.sink.checkpoint = s_checkpoint;
    cfg.sink.finish = s_finish;
    cfg.sink.abort = s_abort;
    cfg.sink.ctx = &sk;
    cfg.max_size = 40000;
    cfg.max_block = 4096;
    cfg.window = (uint16_t)(((c >> 1) & 7u) + 1u);
    cfg.checkpoint = (uint16_t)(((c >> 4) & 7u) + 1u);
    cfg.timeout_ms = 500;
    cfg.max_retries = 2;
    engine_init(now);

    while (in.i < in.n && ops++ < 4000) {
        unsigned op = next_u8(&in) % 10u;
        now += 7;
        switch (op) {
        case 0:
            send_offer(&in, now);
            break;
        case 1:
            send_block(&in, now);
            break;
        case 2:
            send_raw(&in, now);
            break;
        case 3:
            moat_otamqtt_link_up(&eng, now);
            break;
        case 4:
            moat_otamqtt_link_down(&eng, now);
            break;
        case 5:
            now += next_u16(&in);
            moat_otamqtt_tick(&eng, now);
            CHECK(moat_otamqtt_next_timeout(&eng, now) == UINT32_MAX ||
                  moat_otamqtt_next_timeout(&eng, now) <= 500);
            break;
        case 6:
            drain(now);
            break;
        case 7:
            sk.active = false; /* the sink's state is lost with the run */
            engine_init(now);
            break;
        case 8: {
            size_t n = next_u8(&in), i;
            uint8_t buf[256];
            for (i = 0; i < n; i++)
                buf[i] = (uint8_t)next_u8(&in);
            parse_all(buf, n);
            break;
        }
        case 9:
            if (next_u8(&in) & 1u)
                moat_otamqtt_abort(&eng);
            else
                moat_otamqtt_reset(&eng);
            break;
        }
        CHECK(moat_otamqtt_get_state(&eng) <= MOAT_OTAMQTT_FAILED);
        if (moat_otamqtt_current(&eng) != NULL)
            CHECK(moat_otamqtt_received(&eng) <= moat_otamqtt_current(&eng)->size);
        CHECK(strlen(moat_otamqtt_error(&eng)) < MOAT_OTAMQTT_ERROR_MAX);
    }
    drain(now);
    /* the whole input through the parsers too */
    parse_all(data, size);
    return 0;
}
