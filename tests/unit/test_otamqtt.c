/*
 * test_otamqtt.c - the image-over-MQTT block engine (moat/otamqtt.h): the
 * messages of both sides with their exact bytes and words, and the device
 * engine against a recording sink and a RAM flash area with flash rules
 * (erase to 0xFF, each byte written at most once): requests and the window,
 * repeats, gaps, timeouts and stalls, a cut link, a restart that resumes
 * from the block map, a sink that jumps (the verifier after a resume), and
 * every way a transfer fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/otamqtt.h"

#define BASE "moat/dev1/ota"

/* ---- a flash area in RAM that enforces flash rules ---- */

typedef struct ram_flash {
    uint8_t mem[4096];
    uint32_t size;
    unsigned erases, syncs, writes;
    int fail_reads;
    int fail_writes;
} ram_flash;

static moat_err rf_read(void *ctx, uint32_t off, void *buf, size_t len)
{
    ram_flash *f = ctx;
    if (f->fail_reads)
        return MOAT_ERR_IO;
    assert_true(off + len <= f->size);
    memcpy(buf, f->mem + off, len);
    return MOAT_OK;
}

static moat_err rf_write(void *ctx, uint32_t off, const void *buf, size_t len)
{
    ram_flash *f = ctx;
    size_t i;
    if (f->fail_writes)
        return MOAT_ERR_STATE; /* say, a file area not erased in this run */
    assert_true(off + len <= f->size);
    for (i = 0; i < len; i++)
        assert_int_equal(f->mem[off + i], 0xFF); /* written once after erase */
    memcpy(f->mem + off, buf, len);
    f->writes++;
    return MOAT_OK;
}

static moat_err rf_erase(void *ctx)
{
    ram_flash *f = ctx;
    memset(f->mem, 0xFF, f->size);
    f->erases++;
    return MOAT_OK;
}

static moat_err rf_sync(void *ctx)
{
    ((ram_flash *)ctx)->syncs++;
    return MOAT_OK;
}

static ram_flash flash;
static moat_flash_area area;

static void flash_setup(uint32_t size)
{
    memset(&flash, 0xFF, sizeof flash);
    flash.size = size;
    flash.erases = flash.syncs = flash.writes = 0;
    flash.fail_reads = 0;
    flash.fail_writes = 0;
    area.read = rf_read;
    area.write = rf_write;
    area.erase = rf_erase;
    area.sync = rf_sync;
    area.size = size;
    area.ctx = &flash;
}

/* ---- a recording sink ---- */

#define IMAGE_MAX 65536u

typedef struct sink {
    uint8_t data[IMAGE_MAX];
    uint32_t offset;       /* next offset it wants */
    uint32_t written_end;  /* highest byte written + 1 */
    uint32_t durable;      /* what checkpoint reports */
    unsigned begins, writes, checkpoints, finishes, aborts;
    uint32_t begin_resume;
    moat_err begin_err;     /* refuse begin */
    int refuse_resume;      /* refuse begin with resume > 0 */
    moat_err write_err;
    moat_err finish_err;
    /* verifier-like: after a resume, want [0, header) first, then jump to jump_to */
    int verifier;
    uint32_t header;
    uint32_t jump_to;
} sink;

static sink sk;
static uint8_t image[IMAGE_MAX];

static moat_err s_begin(void *ctx, const moat_otamqtt_offer *o, uint32_t resume, char *why,
                        size_t cap)
{
    sink *s = ctx;
    s->begins++;
    s->begin_resume = resume;
    if (s->begin_err != MOAT_OK) {
        snprintf(why, cap, "the slot is busy");
        return s->begin_err;
    }
    if (resume > 0 && s->refuse_resume) {
        snprintf(why, cap, "cannot resume");
        return MOAT_ERR_STATE;
    }
    assert_true(o->size <= IMAGE_MAX);
    if (s->verifier && resume > 0) {
        s->offset = 0;
        s->jump_to = resume > s->header ? resume - s->header : 0;
    } else {
        s->offset = resume;
        s->jump_to = 0;
    }
    s->written_end = s->offset;
    s->durable = resume;
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
    assert_int_equal(off, s->offset); /* always where the sink wants */
    assert_true(len > 0);
    s->writes++;
    if (s->write_err != MOAT_OK) {
        snprintf(why, cap, "flash write failed at %u", (unsigned)off);
        return s->write_err;
    }
    memcpy(s->data + off, d, len);
    s->offset = off + (uint32_t)len;
    if (s->offset > s->written_end)
        s->written_end = s->offset;
    if (s->verifier && s->jump_to > 0 && s->offset >= s->header) {
        s->offset = s->jump_to; /* the header is in: continue the payload */
        s->jump_to = 0;
    }
    return MOAT_OK;
}

static moat_err s_checkpoint(void *ctx, uint32_t *durable)
{
    sink *s = ctx;
    s->checkpoints++;
    s->durable = s->offset > s->durable ? s->offset : s->durable;
    *durable = s->durable;
    return MOAT_OK;
}

static moat_err s_finish(void *ctx, const moat_otamqtt_offer *o, char *why, size_t cap)
{
    sink *s = ctx;
    s->finishes++;
    if (s->finish_err != MOAT_OK) {
        snprintf(why, cap, "image signature does not verify");
        return s->finish_err;
    }
    assert_memory_equal(s->data, image, o->size);
    return MOAT_OK;
}

static void s_abort(void *ctx)
{
    ((sink *)ctx)->aborts++;
}

/* ---- the engine under test ---- */

static moat_otamqtt eng;
static moat_otamqtt_config cfg;
static moat_otamqtt_offer offer;

typedef struct outmsg {
    char topic[MOAT_OTAMQTT_TOPIC_MAX];
    char payload[MOAT_OTAMQTT_PAYLOAD_MAX];
} outmsg;

static outmsg out[64];
static size_t nout;

static void fake_sha(uint8_t sha[32], uint8_t seed)
{
    int i;
    for (i = 0; i < 32; i++)
        sha[i] = (uint8_t)(seed * 31 + i * 7);
}

static void make_image(uint32_t size, uint32_t block, uint8_t seed)
{
    uint32_t i;
    for (i = 0; i < size; i++)
        image[i] = (uint8_t)(i * 13 + seed);
    memset(&offer, 0, sizeof offer);
    offer.size = size;
    offer.block = block;
    fake_sha(offer.sha256, seed);
    assert_int_equal(moat_otamqtt_offer_check(&offer), MOAT_OK);
}

static void cfg_setup(bool with_map)
{
    memset(&sk, 0, sizeof sk);
    memset(&cfg, 0, sizeof cfg);
    cfg.base = BASE;
    cfg.state = with_map ? &area : NULL;
    cfg.sink.begin = s_begin;
    cfg.sink.offset = s_offset;
    cfg.sink.write = s_write;
    cfg.sink.checkpoint = s_checkpoint;
    cfg.sink.finish = s_finish;
    cfg.sink.abort = s_abort;
    cfg.sink.ctx = &sk;
    cfg.max_size = IMAGE_MAX;
    cfg.max_block = 4096;
    cfg.window = 4;
    cfg.checkpoint = 8;
    cfg.timeout_ms = 1000;
    cfg.max_retries = 3;
    nout = 0;
}

static void start(bool with_map)
{
    flash_setup(2048);
    cfg_setup(with_map);
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, 0), MOAT_OK);
}

/* Take every message the engine has, as if published. */
static size_t drain(uint32_t now)
{
    moat_otamqtt_msg m;
    size_t before = nout;
    while (moat_otamqtt_output(&eng, &m)) {
        assert_true(nout < sizeof out / sizeof out[0]);
        assert_true(m.len < MOAT_OTAMQTT_PAYLOAD_MAX);
        snprintf(out[nout].topic, sizeof out[nout].topic, "%s", m.topic);
        memcpy(out[nout].payload, m.payload, m.len);
        out[nout].payload[m.len] = '\0';
        nout++;
        moat_otamqtt_output_done(&eng, now);
    }
    return nout - before;
}

static void send_offer(const moat_otamqtt_offer *o, uint32_t now)
{
    char json[MOAT_OTAMQTT_PAYLOAD_MAX];
    size_t len;
    assert_int_equal(moat_otamqtt_offer_json(o, json, sizeof json, &len), MOAT_OK);
    assert_int_equal(moat_otamqtt_message(&eng, BASE "/offer", strlen(BASE "/offer"),
                                          (const uint8_t *)json, len, false, now),
                     MOAT_OK);
}

static void send_block_len(uint32_t n, uint32_t len, uint32_t now)
{
    char topic[MOAT_OTAMQTT_TOPIC_MAX];
    assert_int_equal(moat_otamqtt_block_topic(topic, sizeof topic, BASE, offer.sha256, n),
                     MOAT_OK);
    assert_int_equal(moat_otamqtt_message(&eng, topic, strlen(topic), image + n * offer.block,
                                          len, false, now),
                     MOAT_OK);
}

static uint32_t blen(uint32_t n)
{
    uint32_t start = n * offer.block;
    return offer.size - start < offer.block ? offer.size - start : offer.block;
}

static void send_block(uint32_t n, uint32_t now)
{
    send_block_len(n, blen(n), now);
}

static moat_otamqtt_request req_at(size_t i)
{
    moat_otamqtt_request r;
    assert_string_equal(out[i].topic, BASE "/req");
    assert_int_equal(moat_otamqtt_parse_request((const uint8_t *)out[i].payload,
                                                strlen(out[i].payload), &r, NULL, 0),
                     MOAT_OK);
    assert_memory_equal(r.sha256, offer.sha256, 32);
    return r;
}

static moat_otamqtt_status status_at(size_t i)
{
    moat_otamqtt_status s;
    char why[200];
    assert_string_equal(out[i].topic, BASE "/status");
    assert_int_equal(moat_otamqtt_parse_status((const uint8_t *)out[i].payload,
                                               strlen(out[i].payload), &s, why, sizeof why),
                     MOAT_OK);
    return s;
}

/* Serve requests in order until none is open or the image is in. */
static void serve_all(uint32_t *now)
{
    size_t i = 0;
    while (i < nout) {
        if (strcmp(out[i].topic, BASE "/req") == 0) {
            moat_otamqtt_request r = req_at(i);
            uint32_t b;
            for (b = r.block; b < r.block + r.count; b++) {
                *now += 1;
                send_block(b, *now);
                drain(*now);
            }
        }
        i++;
    }
}

/* ------------------------------------------------------------ messages -- */

static void test_offer_json(void **state)
{
    char json[MOAT_OTAMQTT_PAYLOAD_MAX], why[200];
    size_t len;
    moat_otamqtt_offer o, back;
    (void)state;
    memset(&o, 0, sizeof o);
    o.size = 1048576;
    o.block = 1024;
    memset(o.sha256, 0xAB, 32);
    assert_int_equal(moat_otamqtt_offer_json(&o, json, sizeof json, &len), MOAT_OK);
    assert_string_equal(json, "{\"size\":1048576,\"block\":1024,\"sha256\":"
                              "\"abababababababababababababababababababababababababababababababab\"}");
    assert_int_equal(len, strlen(json));
    assert_int_equal(moat_otamqtt_parse_offer((const uint8_t *)json, len, &back, why, sizeof why),
                     MOAT_OK);
    assert_int_equal(back.size, 1048576);
    assert_int_equal(back.block, 1024);
    assert_int_equal(back.blocks, 1024);
    assert_memory_equal(back.sha256, o.sha256, 32);
    /* too small a buffer */
    assert_int_equal(moat_otamqtt_offer_json(&o, json, 20, &len), MOAT_ERR_NO_SPACE);
}

static moat_err parse_offer_text(const char *t, char *why, size_t cap)
{
    moat_otamqtt_offer o;
    return moat_otamqtt_parse_offer((const uint8_t *)t, strlen(t), &o, why, cap);
}

#define SHA64 "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef"

static void test_offer_parse_errors(void **state)
{
    char why[200];
    moat_otamqtt_offer o;
    (void)state;
    assert_int_equal(parse_offer_text("[1]", why, sizeof why), MOAT_ERR_MALFORMED);
    assert_string_equal(why, "offer: is not a JSON object");
    assert_int_equal(parse_offer_text("{\"size\":1", why, sizeof why), MOAT_ERR_MALFORMED);
    assert_int_equal(parse_offer_text("{\"block\":1024,\"sha256\":\"" SHA64 "\"}", why, sizeof why),
                     MOAT_ERR_MALFORMED);
    assert_string_equal(why, "offer: member 'size' is missing");
    assert_int_equal(parse_offer_text("{\"size\":0,\"block\":1024,\"sha256\":\"" SHA64 "\"}", why,
                                      sizeof why),
                     MOAT_ERR_MALFORMED);
    assert_string_equal(why, "offer: member 'size' is not an integer from 1 to 4294967295");
    assert_int_equal(parse_offer_text("{\"size\":4294967296,\"block\":1024,\"sha256\":\"" SHA64
                                      "\"}", why, sizeof why),
                     MOAT_ERR_MALFORMED);
    assert_int_equal(parse_offer_text("{\"size\":1.5,\"block\":1024,\"sha256\":\"" SHA64 "\"}",
                                      why, sizeof why),
                     MOAT_ERR_MALFORMED);
    assert_int_equal(parse_offer_text("{\"size\":10,\"block\":1024,\"sha256\":\"abc\"}", why,
                                      sizeof why),
                     MOAT_ERR_MALFORMED);
    assert_string_equal(why, "offer: member 'sha256' is not 64 hex digits");
    assert_int_equal(parse_offer_text("{\"size\":10,\"block\":1024,\"sha256\":\"" SHA64 "\","
                                      "\"sha\":1}",
                                      why, sizeof why),
                     MOAT_OK); /* unknown members are ignored */
    assert_int_equal(parse_offer_text("{\"size\":10,\"block\":1024,\"sha256\":\"g" SHA64 "\"}",
                                      why, sizeof why),
                     MOAT_ERR_MALFORMED);
    assert_int_equal(parse_offer_text("{\"size\":10,\"block\":32,\"sha256\":\"" SHA64 "\"}", why,
                                      sizeof why),
                     MOAT_ERR_ARG);
    assert_string_equal(why, "offer: block size 32 is outside the limits (64 to 65536)");
    assert_int_equal(parse_offer_text("{\"size\":10,\"block\":65537,\"sha256\":\"" SHA64 "\"}",
                                      why, sizeof why),
                     MOAT_ERR_ARG);
    /* NULL payload, and no words buffer */
    assert_int_equal(moat_otamqtt_parse_offer(NULL, 0, &o, NULL, 0), MOAT_ERR_MALFORMED);
    assert_int_equal(moat_otamqtt_parse_offer((const uint8_t *)"{}", 2, NULL, why, sizeof why),
                     MOAT_ERR_ARG);
}

static void test_request_and_status_json(void **state)
{
    char json[MOAT_OTAMQTT_PAYLOAD_MAX], why[200];
    size_t len;
    moat_otamqtt_request r, rb;
    moat_otamqtt_status s, sb;
    (void)state;
    memset(&r, 0, sizeof r);
    memset(r.sha256, 0x01, 32);
    r.block = 7;
    r.count = 4;
    assert_int_equal(moat_otamqtt_request_json(&r, json, sizeof json, &len), MOAT_OK);
    assert_string_equal(json, "{\"sha256\":\"0101010101010101010101010101010101010101010101010101"
                              "010101010101\",\"block\":7,\"count\":4}");
    assert_int_equal(moat_otamqtt_parse_request((const uint8_t *)json, len, &rb, why, sizeof why),
                     MOAT_OK);
    assert_int_equal(rb.block, 7);
    assert_int_equal(rb.count, 4);
    {
        const char *t = "{\"sha256\":\"" SHA64 "\",\"block\":0,\"count\":0}";
        assert_int_equal(moat_otamqtt_parse_request((const uint8_t *)t, strlen(t), &rb, why,
                                                    sizeof why),
                         MOAT_ERR_MALFORMED);
    }
    assert_string_equal(why, "request: member 'count' is not an integer from 1 to 4294967295");

    memset(&s, 0, sizeof s);
    memset(s.sha256, 0xFE, 32);
    s.state = MOAT_OTAMQTT_FAILED;
    s.received = 2048;
    s.size = 9000;
    snprintf(s.error, sizeof s.error, "block 3 has the \"wrong\" size");
    assert_int_equal(moat_otamqtt_status_json(&s, json, sizeof json, &len), MOAT_OK);
    assert_string_equal(json, "{\"sha256\":\"fefefefefefefefefefefefefefefefefefefefefefefefefefe"
                              "fefefefefefe\",\"state\":\"failed\",\"received\":2048,\"size\":9000,"
                              "\"error\":\"block 3 has the \\\"wrong\\\" size\"}");
    assert_int_equal(moat_otamqtt_parse_status((const uint8_t *)json, len, &sb, why, sizeof why),
                     MOAT_OK);
    assert_int_equal(sb.state, MOAT_OTAMQTT_FAILED);
    assert_int_equal(sb.received, 2048);
    assert_int_equal(sb.size, 9000);
    assert_string_equal(sb.error, "block 3 has the \"wrong\" size");
    s.state = MOAT_OTAMQTT_DONE;
    s.error[0] = '\0';
    assert_int_equal(moat_otamqtt_status_json(&s, json, sizeof json, &len), MOAT_OK);
    assert_null(strstr(json, "error"));
    assert_int_equal(moat_otamqtt_parse_status((const uint8_t *)json, len, &sb, why, sizeof why),
                     MOAT_OK);
    assert_int_equal(sb.state, MOAT_OTAMQTT_DONE);
    assert_string_equal(sb.error, "");
    {
        const char *t = "{\"sha256\":\"" SHA64 "\",\"state\":\"idle\",\"received\":0,\"size\":0}";
        assert_int_equal(moat_otamqtt_parse_status((const uint8_t *)t, strlen(t), &sb, why,
                                                   sizeof why),
                         MOAT_ERR_MALFORMED);
    }
    assert_string_equal(why, "status: member 'state' is not receiving, stalled, done or failed");
}

static void test_topics(void **state)
{
    char t[MOAT_OTAMQTT_TOPIC_MAX];
    uint8_t sha[32], tag[8];
    uint32_t n;
    (void)state;
    memset(sha, 0, 32);
    sha[0] = 0xDE;
    sha[7] = 0x42;
    assert_int_equal(moat_otamqtt_block_topic(t, sizeof t, BASE, sha, 4294967295u), MOAT_OK);
    assert_string_equal(t, BASE "/blk/de00000000000042/4294967295");
    assert_int_equal(moat_otamqtt_parse_block_topic(BASE, t, strlen(t), tag, &n), MOAT_OK);
    assert_int_equal(n, 4294967295u);
    assert_memory_equal(tag, sha, 8);
#define BAD(s) assert_int_equal(moat_otamqtt_parse_block_topic(BASE, s, strlen(s), tag, &n), \
                                MOAT_ERR_TOPIC)
    BAD(BASE "/blk/de00000000000042/4294967296");
    BAD(BASE "/blk/de00000000000042/01");
    BAD(BASE "/blk/de00000000000042/");
    BAD(BASE "/blk/de00000000000042/1a");
    BAD(BASE "/blk/de0000000000004/1");
    BAD(BASE "/blk/de00000000000042x1");
    BAD(BASE "/blk/zz00000000000042/1");
    BAD("moat/dev2/ota/blk/de00000000000042/1");
    BAD(BASE "/blk/de00000000000042/12345678901");
#undef BAD
    assert_int_equal(moat_otamqtt_parse_block_topic(BASE, BASE "/blk/DE00000000000042/0",
                                                    strlen(BASE "/blk/DE00000000000042/0"), tag,
                                                    &n),
                     MOAT_OK);
    assert_int_equal(n, 0);
    assert_int_equal(tag[0], 0xDE);
    assert_int_equal(moat_otamqtt_topic(t, sizeof t, "moat/+/ota", "offer"), MOAT_ERR_TOPIC);
    assert_int_equal(moat_otamqtt_topic(t, sizeof t, "", "offer"), MOAT_ERR_TOPIC);
    assert_int_equal(moat_otamqtt_topic(t, 10, BASE, "offer"), MOAT_ERR_NO_SPACE);
    assert_string_equal(t, "");
    assert_int_equal(moat_otamqtt_topic(t, sizeof t, BASE, "blk/#"), MOAT_OK);
    assert_string_equal(t, BASE "/blk/#");
}

/* -------------------------------------------------------------- engine -- */

static void test_init_checks(void **state)
{
    (void)state;
    flash_setup(2048);
    cfg_setup(true);
    cfg.base = "moat/+/ota";
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, 0), MOAT_ERR_ARG);
    cfg_setup(true);
    cfg.sink.finish = NULL;
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, 0), MOAT_ERR_ARG);
    cfg_setup(true);
    cfg.sink.checkpoint = NULL;
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, 0), MOAT_ERR_ARG);
    cfg_setup(false);
    cfg.sink.checkpoint = NULL;
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, 0), MOAT_OK);
    cfg_setup(true);
    cfg.max_size = 0;
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, 0), MOAT_ERR_ARG);
    cfg_setup(true);
    cfg.max_block = 32;
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, 0), MOAT_ERR_ARG);
    cfg_setup(true);
    area.size = MOAT_OTAMQTT_HEADER_SIZE;
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, 0), MOAT_ERR_ARG);
    /* a blank map: nothing to resume */
    flash_setup(2048);
    cfg_setup(true);
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, 0), MOAT_OK);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_IDLE);
    assert_null(moat_otamqtt_current(&eng));
    /* an unreadable map: usable, idle, and said */
    flash.fail_reads = 1;
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, 0), MOAT_ERR_IO);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_IDLE);
    assert_non_null(strstr(moat_otamqtt_error(&eng), "cannot read the block map"));
}

static void test_whole_transfer(void **state)
{
    uint32_t now = 100;
    moat_otamqtt_request r;
    moat_otamqtt_status st;
    uint32_t b;
    (void)state;
    start(true);
    make_image(10000, 1024, 1); /* 10 blocks, the last 784 bytes */
    /* nothing goes out while offline */
    send_offer(&offer, now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_RECEIVING);
    assert_int_equal(drain(now), 0);
    moat_otamqtt_link_up(&eng, now);
    assert_int_equal(drain(now), 3); /* status, then two requests of window/2 */
    st = status_at(0);
    assert_int_equal(st.state, MOAT_OTAMQTT_RECEIVING);
    assert_int_equal(st.received, 0);
    assert_int_equal(st.size, 10000);
    r = req_at(1);
    assert_int_equal(r.block, 0);
    assert_int_equal(r.count, 2);
    r = req_at(2);
    assert_int_equal(r.block, 2);
    assert_int_equal(r.count, 2);
    assert_int_equal(sk.begins, 1);
    assert_int_equal(sk.begin_resume, 0);
    /* the block map holds the header; no marks yet */
    assert_memory_equal(flash.mem, "MOTM", 4);
    assert_int_equal(flash.mem[MOAT_OTAMQTT_HEADER_SIZE], 0xFF);
    /* the window slides: one block in, no new request until two are in */
    send_block(0, ++now);
    assert_int_equal(drain(now), 0);
    send_block(1, ++now);
    assert_int_equal(drain(now), 1);
    r = req_at(3);
    assert_int_equal(r.block, 4);
    for (b = 2; b < 10; b++) {
        send_block(b, ++now);
        drain(now);
    }
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);
    assert_int_equal(sk.finishes, 1);
    assert_int_equal(sk.aborts, 0);
    assert_memory_equal(sk.data, image, 10000);
    st = status_at(nout - 1);
    assert_int_equal(st.state, MOAT_OTAMQTT_DONE);
    assert_int_equal(st.received, 10000);
    /* a checkpoint came after 8 blocks; the map is erased at the end */
    assert_true(sk.checkpoints >= 1);
    assert_int_equal(flash.mem[0], 0xFF);
    /* every request covered blocks < 10 */
    for (b = 0; b < nout; b++)
        if (strcmp(out[b].topic, BASE "/req") == 0) {
            r = req_at(b);
            assert_true(r.block + r.count <= 10);
        }
    /* the same offer again says done again; reset goes idle */
    nout = 0;
    send_offer(&offer, ++now);
    assert_int_equal(drain(now), 1);
    assert_int_equal(status_at(0).state, MOAT_OTAMQTT_DONE);
    assert_int_equal(sk.begins, 1);
    moat_otamqtt_reset(&eng);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_IDLE);
    assert_int_equal(moat_otamqtt_received(&eng), 0);
}

static void test_single_block_and_exact_multiple(void **state)
{
    uint32_t now = 0;
    (void)state;
    start(false);
    make_image(64, 64, 2);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    drain(now);
    assert_int_equal(req_at(1).count, 1);
    send_block(0, ++now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);

    start(false);
    make_image(4096, 1024, 3);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    drain(now);
    serve_all(&now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);
    assert_memory_equal(sk.data, image, 4096);
}

static void test_repeats_stale_and_foreign(void **state)
{
    uint32_t now = 0;
    char topic[MOAT_OTAMQTT_TOPIC_MAX];
    uint8_t other[32];
    (void)state;
    start(true);
    make_image(5000, 1024, 4);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    drain(now);
    send_block(0, ++now);
    send_block(0, ++now); /* a repeat: ignored */
    assert_int_equal(sk.writes, 1);
    /* a block of another image with the same number */
    fake_sha(other, 99);
    moat_otamqtt_block_topic(topic, sizeof topic, BASE, other, 1);
    assert_int_equal(moat_otamqtt_message(&eng, topic, strlen(topic), image + 1024, 1024, false,
                                          ++now),
                     MOAT_OK);
    assert_int_equal(sk.writes, 1);
    /* a retained block is ignored */
    moat_otamqtt_block_topic(topic, sizeof topic, BASE, offer.sha256, 1);
    assert_int_equal(moat_otamqtt_message(&eng, topic, strlen(topic), image + 1024, 1024, true,
                                          ++now),
                     MOAT_OK);
    assert_int_equal(sk.writes, 1);
    /* a block number past the end is ignored */
    moat_otamqtt_block_topic(topic, sizeof topic, BASE, offer.sha256, 5);
    assert_int_equal(moat_otamqtt_message(&eng, topic, strlen(topic), image, 10, false, ++now),
                     MOAT_OK);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_RECEIVING);
    /* topics that are not this engine's */
    assert_int_equal(moat_otamqtt_message(&eng, "moat/dev1/cmd/reboot", 20, NULL, 0, false, now),
                     MOAT_ERR_TOPIC);
    assert_int_equal(moat_otamqtt_message(&eng, BASE "/req", strlen(BASE "/req"), NULL, 0, false,
                                          now),
                     MOAT_ERR_TOPIC);
    assert_int_equal(moat_otamqtt_message(&eng, BASE, strlen(BASE), NULL, 0, false, now),
                     MOAT_ERR_TOPIC);
    /* the rest still completes */
    send_block(1, ++now);
    send_block(2, ++now);
    send_block(3, ++now);
    send_block(4, ++now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);
}

static void test_gap_asks_again_at_once(void **state)
{
    uint32_t now = 0;
    moat_otamqtt_request r;
    (void)state;
    start(false);
    make_image(8192, 1024, 5);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    drain(now);
    nout = 0;
    send_block(0, ++now);
    send_block(2, ++now); /* block 1 is missing */
    assert_int_equal(drain(now), 2);
    r = req_at(0);
    assert_int_equal(r.block, 1);
    assert_int_equal(r.count, 2);
    r = req_at(1);
    assert_int_equal(r.block, 3);
    /* more blocks after the gap: asked once per gap */
    send_block(3, ++now);
    assert_int_equal(drain(now), 0);
    send_block(1, ++now);
    send_block(2, ++now);
    send_block(3, ++now);
    assert_int_equal(moat_otamqtt_received(&eng), 4096);
    assert_int_equal(sk.writes, 4);
}

static void test_timeout_retries_and_stall(void **state)
{
    uint32_t now = 1000;
    moat_otamqtt_status st;
    moat_otamqtt_request r;
    (void)state;
    start(true);
    make_image(6000, 1024, 6);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    drain(now);
    send_block(0, ++now);
    drain(now);
    nout = 0;
    assert_int_equal(moat_otamqtt_next_timeout(&eng, now), 1000);
    moat_otamqtt_tick(&eng, now + 999);
    assert_int_equal(drain(now + 999), 0);
    now += 1000;
    moat_otamqtt_tick(&eng, now);
    assert_int_equal(drain(now), 2);
    r = req_at(0);
    assert_int_equal(r.block, 1); /* from where the sink wants */
    /* three asks in all (max_retries 3), then stalled */
    now += 1000;
    moat_otamqtt_tick(&eng, now);
    drain(now);
    now += 1000;
    moat_otamqtt_tick(&eng, now);
    drain(now);
    nout = 0;
    now += 1000;
    moat_otamqtt_tick(&eng, now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_STALLED);
    assert_int_equal(drain(now), 1);
    st = status_at(0);
    assert_int_equal(st.state, MOAT_OTAMQTT_STALLED);
    assert_int_equal(st.received, 1024);
    assert_string_equal(st.error, "no block came after 3 requests; progress kept at 1024 bytes: "
                                  "offer the image again");
    assert_int_equal(moat_otamqtt_next_timeout(&eng, now), UINT32_MAX);
    /* the progress was checkpointed: block 0 marked */
    assert_int_equal(flash.mem[MOAT_OTAMQTT_HEADER_SIZE], MOAT_OTAMQTT_MARK);
    assert_int_equal(flash.mem[MOAT_OTAMQTT_HEADER_SIZE + 1], 0xFF);
    /* the same offer again resumes where it stopped */
    nout = 0;
    send_offer(&offer, ++now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_RECEIVING);
    drain(now);
    st = status_at(0);
    assert_int_equal(st.state, MOAT_OTAMQTT_RECEIVING);
    assert_int_equal(st.received, 1024);
    assert_int_equal(req_at(1).block, 1);
    assert_int_equal(sk.begins, 1);
    serve_all(&now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);
    /* a block arriving while stalled also revives it (tested via a new run) */
    start(false);
    make_image(3000, 1024, 7);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    drain(now);
    for (int i = 0; i < 4; i++) {
        now += 1000;
        moat_otamqtt_tick(&eng, now);
    }
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_STALLED);
    send_block(0, ++now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_RECEIVING);
}

static void test_link_cut_resumes_without_starting_over(void **state)
{
    uint32_t now = 0, b;
    moat_otamqtt_status st;
    (void)state;
    start(true);
    make_image(20000, 1024, 8); /* 20 blocks */
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    drain(now);
    for (b = 0; b < 7; b++)
        send_block(b, ++now);
    moat_otamqtt_link_down(&eng, now);
    assert_int_equal(sk.checkpoints, 1);
    /* the map marks blocks 0..6 */
    for (b = 0; b < 7; b++)
        assert_int_equal(flash.mem[MOAT_OTAMQTT_HEADER_SIZE + b], MOAT_OTAMQTT_MARK);
    assert_int_equal(flash.mem[MOAT_OTAMQTT_HEADER_SIZE + 7], 0xFF);
    assert_int_equal(drain(now), 0);
    assert_int_equal(moat_otamqtt_next_timeout(&eng, now), UINT32_MAX);
    /* blocks still in flight from before the cut arrive after it */
    nout = 0;
    moat_otamqtt_link_up(&eng, ++now);
    drain(now);
    st = status_at(0);
    assert_int_equal(st.state, MOAT_OTAMQTT_RECEIVING);
    assert_int_equal(st.received, 7168);
    assert_int_equal(req_at(1).block, 7);
    assert_int_equal(sk.begins, 1); /* the same run: no new begin */
    serve_all(&now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);
    assert_memory_equal(sk.data, image, 20000);
}

static void test_restart_resumes_from_block_map(void **state)
{
    uint32_t now = 0, b;
    uint32_t writes_before;
    moat_otamqtt_status st;
    (void)state;
    start(true);
    make_image(30000, 1024, 9); /* 30 blocks */
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    drain(now);
    for (b = 0; b < 13; b++)
        send_block(b, ++now);
    /* checkpoint every 8: blocks 0..7 are marked; then the power goes */
    assert_int_equal(flash.mem[MOAT_OTAMQTT_HEADER_SIZE + 7], MOAT_OTAMQTT_MARK);
    assert_int_equal(flash.mem[MOAT_OTAMQTT_HEADER_SIZE + 8], 0xFF);
    writes_before = sk.writes;
    /* a new run over the same flash: the sink keeps its data (the slot) */
    nout = 0;
    memset(&eng, 0xA5, sizeof eng);
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, now), MOAT_OK);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_RECEIVING);
    assert_int_equal(moat_otamqtt_received(&eng), 8192);
    assert_non_null(moat_otamqtt_current(&eng));
    assert_memory_equal(moat_otamqtt_current(&eng)->sha256, offer.sha256, 32);
    assert_int_equal(sk.begins, 1); /* not yet */
    moat_otamqtt_link_up(&eng, ++now);
    assert_int_equal(sk.begins, 2);
    assert_int_equal(sk.begin_resume, 8192);
    drain(now);
    st = status_at(0);
    assert_int_equal(st.received, 8192);
    assert_int_equal(req_at(1).block, 8);
    serve_all(&now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);
    assert_memory_equal(sk.data, image, 30000);
    assert_int_equal(sk.writes - writes_before, 22); /* blocks 8..29 only */
    /* done: the map is blank, a new run has nothing to resume */
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, now), MOAT_OK);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_IDLE);
}

static void test_restart_with_verifier_like_sink(void **state)
{
    uint32_t now = 0, b;
    moat_otamqtt_request r;
    (void)state;
    start(true);
    make_image(40000, 1024, 10);
    sk.verifier = 1;
    sk.header = 300; /* the header must be fed again from 0 */
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    drain(now);
    for (b = 0; b < 20; b++)
        send_block(b, ++now);
    moat_otamqtt_link_down(&eng, now);
    /* restart: resume at 20480; the sink wants [0, 300) again, then 20180 */
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, now), MOAT_OK);
    nout = 0;
    moat_otamqtt_link_up(&eng, ++now);
    assert_int_equal(sk.begin_resume, 20480);
    assert_int_equal(sk.offset, 0);
    drain(now);
    assert_int_equal(status_at(0).received, 20480);
    r = req_at(1);
    assert_int_equal(r.block, 0);
    nout = 0;
    send_block(0, ++now); /* the sink takes the header from it and jumps */
    assert_int_equal(sk.offset, 20180);
    drain(now);
    r = req_at(0);
    assert_int_equal(r.block, 19); /* the block that holds 20180 */
    /* block 1 (asked for before the jump) comes: ignored */
    send_block(1, ++now);
    assert_int_equal(sk.offset, 20180);
    serve_all(&now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);
    assert_memory_equal(sk.data, image, 40000);
}

static void test_sink_asks_again_inside_block(void **state)
{
    uint32_t now = 0;
    (void)state;
    start(true);
    make_image(5000, 1024, 26);
    sk.verifier = 1;
    sk.header = 300;
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    send_block(0, ++now);
    moat_otamqtt_link_down(&eng, now); /* block 0 durable */
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, now), MOAT_OK);
    moat_otamqtt_link_up(&eng, ++now);
    assert_int_equal(sk.begin_resume, 1024);
    sk.writes = 0;
    /* block 0 again: [0, 1024) for the header, then the sink wants 724,
     * inside the same block: the engine gives [724, 1024) from it */
    send_block(0, ++now);
    assert_int_equal(sk.writes, 2);
    assert_int_equal(sk.offset, 1024);
    nout = 0;
    drain(now);
    serve_all(&now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);
    assert_memory_equal(sk.data, image, 5000);
}

static void test_refused_resume_starts_over(void **state)
{
    uint32_t now = 0, b;
    (void)state;
    start(true);
    make_image(12000, 1024, 11);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    drain(now);
    for (b = 0; b < 9; b++)
        send_block(b, ++now);
    moat_otamqtt_link_down(&eng, now);
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, now), MOAT_OK);
    sk.refuse_resume = 1;
    nout = 0;
    moat_otamqtt_link_up(&eng, ++now);
    assert_int_equal(sk.begin_resume, 0);
    assert_int_equal(flash.mem[MOAT_OTAMQTT_HEADER_SIZE], 0xFF); /* map started over */
    drain(now);
    assert_int_equal(status_at(0).received, 0);
    assert_int_equal(req_at(1).block, 0);
    serve_all(&now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);
}

static void test_failures(void **state)
{
    uint32_t now = 0;
    moat_otamqtt_status st;
    (void)state;
    /* a block of the wrong size */
    start(true);
    make_image(5000, 1024, 12);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    drain(now);
    nout = 0;
    send_block_len(0, 1000, ++now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_FAILED);
    assert_int_equal(sk.aborts, 1);
    assert_int_equal(flash.mem[0], 0xFF);
    drain(now);
    st = status_at(0);
    assert_int_equal(st.state, MOAT_OTAMQTT_FAILED);
    assert_string_equal(st.error, "block 0 has the wrong size (1000 bytes)");
    /* blocks after a failure are ignored; the offer again starts over */
    send_block(0, ++now);
    assert_int_equal(sk.writes, 0);
    send_offer(&offer, ++now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_RECEIVING);
    assert_int_equal(sk.begins, 2);

    /* the sink cannot write */
    start(false);
    make_image(5000, 1024, 13);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    sk.write_err = MOAT_ERR_IO;
    send_block(0, ++now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_FAILED);
    assert_string_equal(moat_otamqtt_error(&eng), "flash write failed at 0");

    /* the image is refused at the end */
    start(false);
    make_image(2000, 1024, 14);
    sk.finish_err = MOAT_ERR_OTA_SIGNATURE;
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    send_block(0, ++now);
    send_block(1, ++now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_FAILED);
    assert_int_equal(sk.aborts, 1);
    nout = 0;
    drain(now);
    assert_string_equal(status_at(nout - 1).error, "image signature does not verify");

    /* the sink refuses to begin */
    start(true);
    make_image(2000, 1024, 15);
    sk.begin_err = MOAT_ERR_STATE;
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_FAILED);
    assert_int_equal(sk.aborts, 0);
    nout = 0;
    drain(now);
    assert_int_equal(nout, 1);
    assert_string_equal(status_at(0).error, "the slot is busy");
}

static void test_offer_limits(void **state)
{
    uint32_t now = 0;
    char why[200];
    (void)state;
    start(true);
    cfg.max_size = 10000;
    moat_otamqtt_link_up(&eng, now);
    make_image(10001, 1024, 16);
    send_offer(&offer, now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_FAILED);
    assert_string_equal(moat_otamqtt_error(&eng),
                        "image of 10001 bytes is larger than this device takes (10000 bytes)");
    assert_int_equal(sk.begins, 0);
    make_image(10000, 8192, 17);
    send_offer(&offer, now);
    assert_string_equal(moat_otamqtt_error(&eng),
                        "block size 8192 is larger than this device takes whole (4096 bytes)");
    /* a map of 2048 bytes holds 1984 blocks */
    memset(&offer, 0, sizeof offer);
    offer.size = 1985u * 64u;
    offer.block = 64;
    fake_sha(offer.sha256, 18);
    moat_otamqtt_offer_check(&offer);
    cfg.max_size = 1985u * 64u;
    send_offer(&offer, now);
    assert_string_equal(moat_otamqtt_error(&eng),
                        "image of 1985 blocks does not fit the block map (at most 1984): use "
                        "larger blocks");
    nout = 0;
    drain(now);
    assert_int_equal(status_at(0).state, MOAT_OTAMQTT_FAILED);
    /* a malformed offer: no status (no SHA-256 to answer), words for the log */
    nout = 0;
    assert_int_equal(moat_otamqtt_message(&eng, BASE "/offer", strlen(BASE "/offer"),
                                          (const uint8_t *)"{\"size\":1}", 10, false, now),
                     MOAT_ERR_MALFORMED);
    snprintf(why, sizeof why, "%s", moat_otamqtt_error(&eng));
    assert_string_equal(why, "offer: member 'block' is missing");
    /* a retained offer is ignored */
    make_image(100, 64, 19);
    {
        char json[MOAT_OTAMQTT_PAYLOAD_MAX];
        size_t len;
        moat_otamqtt_offer_json(&offer, json, sizeof json, &len);
        assert_int_equal(moat_otamqtt_message(&eng, BASE "/offer", strlen(BASE "/offer"),
                                              (const uint8_t *)json, len, true, now),
                         MOAT_OK);
    }
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_FAILED);
    assert_non_null(strstr(moat_otamqtt_error(&eng), "retained offer"));
}

static void test_new_image_replaces_transfer(void **state)
{
    uint32_t now = 0;
    moat_otamqtt_offer first;
    (void)state;
    start(true);
    make_image(5000, 1024, 20);
    first = offer;
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    send_block(0, ++now);
    send_block(1, ++now);
    make_image(3000, 512, 21);
    nout = 0;
    send_offer(&offer, ++now);
    assert_int_equal(sk.aborts, 1);
    assert_int_equal(sk.begins, 2);
    assert_int_equal(sk.begin_resume, 0);
    assert_memory_equal(moat_otamqtt_current(&eng)->sha256, offer.sha256, 32);
    assert_int_not_equal(memcmp(first.sha256, offer.sha256, 32), 0);
    drain(now);
    assert_int_equal(status_at(0).received, 0);
    serve_all(&now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);
    assert_memory_equal(sk.data, image, 3000);
    /* abort from the caller */
    make_image(5000, 1024, 22);
    send_offer(&offer, ++now);
    send_block(0, ++now);
    moat_otamqtt_abort(&eng);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_IDLE);
    assert_int_equal(sk.aborts, 2);
    assert_int_equal(flash.mem[0], 0xFF);
}

static void test_output_retried_until_done(void **state)
{
    moat_otamqtt_msg m, m2;
    uint32_t now = 0;
    (void)state;
    start(false);
    make_image(5000, 1024, 23);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    assert_true(moat_otamqtt_output(&eng, &m));
    assert_string_equal(m.topic, BASE "/status");
    /* the publish failed (window full): the same message comes back */
    assert_true(moat_otamqtt_output(&eng, &m2));
    assert_string_equal(m2.topic, BASE "/status");
    moat_otamqtt_output_done(&eng, now);
    assert_true(moat_otamqtt_output(&eng, &m));
    assert_string_equal(m.topic, BASE "/req");
    assert_true(moat_otamqtt_output(&eng, &m2));
    assert_string_equal(m2.topic, BASE "/req");
    assert_int_equal(m.len, m2.len);
    moat_otamqtt_output_done(&eng, now);
    /* output_done without an output does nothing */
    moat_otamqtt_output_done(&eng, now);
    assert_true(moat_otamqtt_output(&eng, &m));
    moat_otamqtt_output_done(&eng, now);
    assert_false(moat_otamqtt_output(&eng, &m));
    assert_string_equal(moat_otamqtt_state_name(MOAT_OTAMQTT_STALLED), "stalled");
    assert_string_equal(moat_otamqtt_state_name((moat_otamqtt_state)9), "?");
}

static void test_map_write_failure_keeps_going(void **state)
{
    uint32_t now = 0, b;
    (void)state;
    start(true);
    make_image(20000, 1024, 27);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    for (b = 0; b < 9; b++)
        send_block(b, ++now); /* 8 marked */
    moat_otamqtt_link_down(&eng, now);
    /* a restart whose map cannot take more marks */
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, now), MOAT_OK);
    flash.fail_writes = 1;
    moat_otamqtt_link_up(&eng, ++now);
    assert_int_equal(sk.begin_resume, 9216);
    nout = 0;
    drain(now);
    serve_all(&now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);
    assert_memory_equal(sk.data, image, 20000);
    /* a new transfer whose map cannot be written at all still runs */
    make_image(3000, 1024, 28);
    nout = 0;
    send_offer(&offer, ++now);
    drain(now);
    serve_all(&now);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_DONE);
}

static void test_torn_map_is_ignored(void **state)
{
    uint32_t now = 0;
    (void)state;
    start(true);
    make_image(5000, 1024, 24);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    send_block(0, ++now);
    moat_otamqtt_link_down(&eng, now);
    flash.mem[20] ^= 1; /* the header's CRC no longer holds */
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, now), MOAT_OK);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_IDLE);
    /* a map for a larger image than this config takes is ignored too */
    start(true);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    moat_otamqtt_link_down(&eng, now);
    cfg.max_size = 4000;
    assert_int_equal(moat_otamqtt_init(&eng, &cfg, now), MOAT_OK);
    assert_int_equal(moat_otamqtt_get_state(&eng), MOAT_OTAMQTT_IDLE);
}

static void test_wraparound_timers(void **state)
{
    uint32_t now = 0xFFFFFF00u;
    (void)state;
    start(false);
    make_image(3000, 1024, 25);
    moat_otamqtt_link_up(&eng, now);
    send_offer(&offer, now);
    drain(now);
    assert_int_equal(moat_otamqtt_next_timeout(&eng, now), 1000);
    now += 999; /* wrapped */
    moat_otamqtt_tick(&eng, now);
    nout = 0;
    assert_int_equal(drain(now), 0);
    now += 1;
    moat_otamqtt_tick(&eng, now);
    assert_int_equal(drain(now), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offer_json),
        cmocka_unit_test(test_offer_parse_errors),
        cmocka_unit_test(test_request_and_status_json),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_init_checks),
        cmocka_unit_test(test_whole_transfer),
        cmocka_unit_test(test_single_block_and_exact_multiple),
        cmocka_unit_test(test_repeats_stale_and_foreign),
        cmocka_unit_test(test_gap_asks_again_at_once),
        cmocka_unit_test(test_timeout_retries_and_stall),
        cmocka_unit_test(test_link_cut_resumes_without_starting_over),
        cmocka_unit_test(test_restart_resumes_from_block_map),
        cmocka_unit_test(test_restart_with_verifier_like_sink),
        cmocka_unit_test(test_sink_asks_again_inside_block),
        cmocka_unit_test(test_refused_resume_starts_over),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_offer_limits),
        cmocka_unit_test(test_new_image_replaces_transfer),
        cmocka_unit_test(test_output_retried_until_done),
        cmocka_unit_test(test_map_write_failure_keeps_going),
        cmocka_unit_test(test_torn_map_is_ignored),
        cmocka_unit_test(test_wraparound_timers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
