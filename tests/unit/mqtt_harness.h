/*
 * mqtt_harness.h - a test bench for the sans-I/O MQTT client: a fake clock
 * (h->now), a deterministic random function, an event recorder, and
 * reference encoders written from the MQTT 3.1.1 specification (not from
 * the code under test) to build expected bytes.
 *
 * Header-only so that each test file stays one executable.
 */
#ifndef MOAT_TEST_MQTT_HARNESS_H
#define MOAT_TEST_MQTT_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/mqtt.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAXEV 1024

typedef struct ev_rec {
    moat_mqtt_event_type type;
    moat_err err;
    uint16_t packet_id;
    bool session_present;
    bool has_topic;
    char topic[160];
    size_t topic_len;
    uint8_t data[256];
    size_t len, offset, total;
    uint8_t qos;
    bool retain, dup;
    uint8_t codes[16];
    size_t count;
} ev_rec;

typedef struct H {
    moat_mqtt_client c;
    moat_mqtt_config cfg;
    uint8_t tx[2048];
    uint8_t rx[512];
    uint8_t store[4096];
    moat_mqtt_inflight win[16];
    uint8_t *qos2_set;      /* optional incoming QoS 2 id set (NULL: slots) */
    size_t tx_size, rx_size, store_size, win_count;
    ev_rec ev[MAXEV];
    size_t nev;
    size_t per_type[16];
    uint8_t msg[8192];      /* EV_MESSAGE pieces placed at their offset */
    uint32_t rng;
    uint32_t rng_calls;
    uint32_t now;
    uint8_t out[16384];     /* output drained by the last drain() */
    size_t out_len;
    /* optional: called after each event is recorded (the application's
     * reaction from inside the callback) */
    void (*hook)(struct H *h, const moat_mqtt_event *e);
} H;

static inline uint32_t h_random(void *user)
{
    H *h = (H *)user;
    uint32_t x = h->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    h->rng = x;
    h->rng_calls++;
    return x;
}

static inline void h_on_event(void *user, const moat_mqtt_event *e)
{
    H *h = (H *)user;
    assert_non_null(e);
    if ((unsigned)e->type < 16)
        h->per_type[e->type]++;
    if (e->type == MOAT_MQTT_EV_MESSAGE && e->len && e->payload &&
        e->offset + e->len <= sizeof h->msg)
        memcpy(h->msg + e->offset, e->payload, e->len);
    if (h->nev >= MAXEV) {
        if (h->hook)
            h->hook(h, e);
        return;
    }
    ev_rec *r = &h->ev[h->nev++];
    memset(r, 0, sizeof *r);
    r->type = e->type;
    r->err = e->err;
    r->packet_id = e->packet_id;
    r->session_present = e->session_present;
    if (e->topic.data && e->topic.len) {
        r->has_topic = true;
        r->topic_len = e->topic.len;
        memcpy(r->topic, e->topic.data,
               e->topic.len < sizeof r->topic - 1 ? e->topic.len : sizeof r->topic - 1);
    }
    r->len = e->len;
    r->offset = e->offset;
    r->total = e->total;
    if (e->payload && e->len)
        memcpy(r->data, e->payload, e->len < sizeof r->data ? e->len : sizeof r->data);
    r->qos = e->qos;
    r->retain = e->retain;
    r->dup = e->dup;
    r->count = e->count;
    if (e->codes && e->count)
        memcpy(r->codes, e->codes, e->count < sizeof r->codes ? e->count : sizeof r->codes);
    if (h->hook)
        h->hook(h, e);
}

/* Defaults: client "dev1", clean session, no keep-alive, every buffer at its
 * full size. Change h->cfg or the sizes, then call h_init(). */
static inline H *h_new(void)
{
    H *h = (H *)calloc(1, sizeof *h);
    assert_non_null(h);
    h->cfg.client_id = "dev1";
    h->cfg.clean_session = true;
    h->cfg.random = h_random;
    h->cfg.on_event = h_on_event;
    h->cfg.user = h;
    h->tx_size = sizeof h->tx;
    h->rx_size = sizeof h->rx;
    h->store_size = sizeof h->store;
    h->win_count = 8;
    h->rng = 0x9E3779B9u;
    h->now = 1000000;
    return h;
}

static inline void h_init(H *h)
{
    moat_mqtt_buffers b;
    memset(&b, 0, sizeof(b));
    b.qos2_set = h->qos2_set;
    b.tx = h->tx;
    b.tx_size = h->tx_size;
    b.rx = h->rx;
    b.rx_size = h->rx_size;
    b.store = h->store;
    b.store_size = h->store_size;
    b.inflight = h->win;
    b.inflight_count = h->win_count;
    assert_int_equal(moat_mqtt_init(&h->c, &h->cfg, &b), MOAT_OK);
    assert_int_equal(moat_mqtt_get_state(&h->c), MOAT_MQTT_IDLE);
}

static inline void h_clear(H *h)
{
    h->nev = 0;
    memset(h->per_type, 0, sizeof h->per_type);
}

static inline size_t ev_count(const H *h, moat_mqtt_event_type t)
{
    return h->per_type[t];
}

/* The n-th recorded event of type t (0-based), or NULL. */
static inline const ev_rec *ev_nth(const H *h, moat_mqtt_event_type t, size_t n)
{
    for (size_t i = 0; i < h->nev; i++)
        if (h->ev[i].type == t && n-- == 0)
            return &h->ev[i];
    return NULL;
}

/* Take everything the client wants to send and report it sent at h->now. */
static inline size_t drain(H *h)
{
    h->out_len = 0;
    for (int i = 0; i < 256; i++) {
        size_t n = 0;
        const uint8_t *p = moat_mqtt_output(&h->c, &n);
        if (n == 0)
            break;
        assert_non_null(p);
        assert_true(h->out_len + n <= sizeof h->out);
        memcpy(h->out + h->out_len, p, n);
        h->out_len += n;
        moat_mqtt_output_done(&h->c, n, h->now);
    }
    return h->out_len;
}

static inline void expect_out(H *h, const uint8_t *exp, size_t n)
{
    drain(h);
    assert_int_equal(h->out_len, n);
    if (n)
        assert_memory_equal(h->out, exp, n);
}

#define EXPECT_OUT(h, ...)                                                        \
    do {                                                                          \
        static const uint8_t e_[] = { __VA_ARGS__ };                              \
        expect_out(h, e_, sizeof e_);                                             \
    } while (0)

static inline void expect_no_out(H *h)
{
    drain(h);
    assert_int_equal(h->out_len, 0);
}

static inline moat_err feed(H *h, const uint8_t *b, size_t n)
{
    size_t consumed = 0xDEAD;
    moat_err e = moat_mqtt_input(&h->c, b, n, &consumed, h->now);
    if (e == MOAT_OK)
        assert_int_equal(consumed, n);
    return e;
}

#define FEED_OK(h, ...)                                                           \
    do {                                                                          \
        static const uint8_t f_[] = { __VA_ARGS__ };                              \
        assert_int_equal(feed(h, f_, sizeof f_), MOAT_OK);                        \
    } while (0)

#define FEED_ERR(h, err, ...)                                                     \
    do {                                                                          \
        static const uint8_t f_[] = { __VA_ARGS__ };                              \
        assert_int_equal(feed(h, f_, sizeof f_), err);                            \
    } while (0)

/* ---------------------------------------------- reference encoders -- */

static inline size_t ref_len(uint8_t *b, uint32_t v)
{
    size_t n = 0;
    do {
        uint8_t d = (uint8_t)(v % 128u);
        v /= 128u;
        if (v)
            d |= 0x80u;
        b[n++] = d;
    } while (v);
    return n;
}

static inline size_t ref_publish(uint8_t *b, const char *topic, const void *pl,
                                 size_t pl_len, uint8_t qos, bool retain, bool dup,
                                 uint16_t id)
{
    size_t tl = strlen(topic);
    uint32_t rem = (uint32_t)(2 + tl + (qos ? 2 : 0) + pl_len);
    size_t n = 0;
    b[n++] = (uint8_t)(0x30u | (dup ? 0x08u : 0u) | (unsigned)(qos << 1) |
                       (retain ? 0x01u : 0u));
    n += ref_len(b + n, rem);
    b[n++] = (uint8_t)(tl >> 8);
    b[n++] = (uint8_t)tl;
    memcpy(b + n, topic, tl);
    n += tl;
    if (qos) {
        b[n++] = (uint8_t)(id >> 8);
        b[n++] = (uint8_t)id;
    }
    if (pl_len)
        memcpy(b + n, pl, pl_len);
    return n + pl_len;
}

/* PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP 0x70, UNSUBACK 0xB0 */
static inline size_t ref_ack(uint8_t *b, uint8_t first, uint16_t id)
{
    b[0] = first;
    b[1] = 2;
    b[2] = (uint8_t)(id >> 8);
    b[3] = (uint8_t)id;
    return 4;
}

static inline moat_err feed_ack(H *h, uint8_t first, uint16_t id)
{
    uint8_t b[4];
    ref_ack(b, first, id);
    return feed(h, b, 4);
}

static inline void expect_ack_out(H *h, uint8_t first, uint16_t id)
{
    uint8_t b[4];
    ref_ack(b, first, id);
    expect_out(h, b, 4);
}

static inline moat_err feed_connack(H *h, bool sp, uint8_t rc)
{
    uint8_t b[4] = { 0x20, 0x02, (uint8_t)(sp ? 1 : 0), rc };
    return feed(h, b, 4);
}

/* One packet of a byte stream. */
typedef struct pkt_ref {
    const uint8_t *p;
    size_t n;
} pkt_ref;

/* Split bytes into whole packets; fails the test on a torn packet. */
static inline size_t split_packets(const uint8_t *b, size_t n, pkt_ref *out, size_t max)
{
    size_t pos = 0, k = 0;
    while (pos < n) {
        uint32_t rem = 0, mul = 1;
        size_t i = pos + 1;
        for (;;) {
            assert_true(i < n);
            rem += (uint32_t)(b[i] & 0x7F) * mul;
            mul *= 128;
            if (!(b[i++] & 0x80))
                break;
            assert_true(i - pos <= 5);
        }
        assert_true(i + rem <= n);
        assert_true(k < max);
        out[k].p = b + pos;
        out[k].n = i + rem - pos;
        k++;
        pos = i + rem;
    }
    return k;
}

static inline bool pkt_is(const pkt_ref *p, const uint8_t *exp, size_t n)
{
    return p->n == n && memcmp(p->p, exp, n) == 0;
}

/* ------------------------------------------------------ life cycle -- */

/* Advance the clock to the next connection attempt. */
static inline void wait_due(H *h)
{
    if (moat_mqtt_connect_due(&h->c, h->now))
        return;
    uint32_t d = moat_mqtt_next_timeout(&h->c, h->now);
    assert_int_not_equal(d, UINT32_MAX);
    h->now += d;
    assert_true(moat_mqtt_connect_due(&h->c, h->now));
}

/* From BACKOFF: open the link, send CONNECT, get CONNACK(sp). Leaves in
 * h->out whatever came out after CONNECT (at link_up and after CONNACK). */
static inline void go_online(H *h, bool sp)
{
    static uint8_t after[16384];
    size_t after_len = 0;
    wait_due(h);
    assert_int_equal(moat_mqtt_link_up(&h->c, h->now), MOAT_OK);
    assert_int_equal(moat_mqtt_get_state(&h->c), MOAT_MQTT_WAIT_CONNACK);
    drain(h);
    assert_true(h->out_len >= 14);
    assert_int_equal(h->out[0], 0x10);
    {
        pkt_ref pk[64];
        size_t np = split_packets(h->out, h->out_len, pk, 64);
        assert_true(np >= 1);
        after_len = h->out_len - pk[0].n;
        memcpy(after, h->out + pk[0].n, after_len);
    }
    size_t connected_before = ev_count(h, MOAT_MQTT_EV_CONNECTED);
    assert_int_equal(feed_connack(h, sp, 0), MOAT_OK);
    assert_int_equal(moat_mqtt_get_state(&h->c), MOAT_MQTT_CONNECTED);
    assert_int_equal(ev_count(h, MOAT_MQTT_EV_CONNECTED), connected_before + 1);
    drain(h);
    memmove(h->out + after_len, h->out, h->out_len);
    memcpy(h->out, after, after_len);
    h->out_len += after_len;
}

static inline void h_connect(H *h)
{
    assert_int_equal(moat_mqtt_start(&h->c, h->now), MOAT_OK);
    go_online(h, false);
    assert_int_equal(h->out_len, 0);
    h_clear(h);
}

static inline uint16_t pub(H *h, const char *topic, const char *payload, uint8_t qos,
                           bool retain)
{
    moat_mqtt_message m;
    uint16_t id = 0xFFFF;
    m.topic = topic;
    m.payload = payload;
    m.len = strlen(payload);
    m.qos = qos;
    m.retain = retain;
    assert_int_equal(moat_mqtt_publish(&h->c, &m, &id, h->now), MOAT_OK);
    if (qos)
        assert_int_not_equal(id, 0);
    return id;
}

static inline moat_err pub_err(H *h, const char *topic, const void *payload, size_t len,
                               uint8_t qos)
{
    moat_mqtt_message m;
    uint16_t id;
    m.topic = topic;
    m.payload = payload;
    m.len = len;
    m.qos = qos;
    m.retain = false;
    return moat_mqtt_publish(&h->c, &m, &id, h->now);
}

static inline void expect_pub_out(H *h, const char *topic, const char *payload,
                                  uint8_t qos, bool retain, bool dup, uint16_t id)
{
    uint8_t b[1024];
    size_t n = ref_publish(b, topic, payload, strlen(payload), qos, retain, dup, id);
    expect_out(h, b, n);
}

#endif
