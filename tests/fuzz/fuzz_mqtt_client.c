/*
 * fuzz_mqtt_client.c - libFuzzer harness for the MQTT client's receive path.
 *
 * A client with small buffers (rx 128, tx 256, store 512, 4 window slots) is
 * connected with a valid CONNACK; then the input is a script of operations:
 * feed broker bytes in chunks whose sizes come from the input, publish,
 * subscribe, tick, send output in pieces, drop or close the link, pump a fake
 * transport. When the client reports a fatal error it reconnects and goes on.
 *
 * Input layout: byte 0 configures the client (see setup()), then each
 * operation is one byte whose low nibble selects it (see LLVMFuzzerTestOneInput)
 * followed by its parameter bytes. Missing bytes read as 0. Feeding or pumping
 * while the link is down first reconnects with a plain CONNACK; operation 0xA
 * reconnects without one, so the script can play the broker's answer.
 *
 * Oracles, besides ASan/UBSan on exactly sized heap buffers:
 *  - the window never holds more than its slots; output never exceeds tx;
 *  - no output while IDLE or BACKOFF, and a fatal error leaves the client
 *    in BACKOFF or IDLE;
 *  - every byte the client sends decodes as a valid client packet: CONNECT
 *    first, exactly once per link, and nothing after DISCONNECT;
 *  - events are well formed: valid topics, pieces of a streamed message in
 *    order and within its total, whole messages when large ones are refused;
 *  - the transport contract: a send that would block is retried with the
 *    same bytes and at least the same length.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moat/mqtt.h"

#include "fuzz_check.h"

#define RX_SIZE 128u
#define TX_SIZE 256u
#define STORE_SIZE 512u
#define SLOTS 4u
#define WIRE_SIZE 2048u

static const char *const topics[8] = {
    "moat/0123456789ab/status",
    "a",
    "moat/0123456789ab/result/reboot",
    ("moat/0123456789ab/a/topic/long/enough/to/use/a/good/part/of/the/receive/"
     "and/transmit/buffers/of/this/client"),
    "$SYS/broker/uptime",
    "bad/+/topic",
    "",
    "/",
};

static const char *const filters[8] = {
    "moat/0123456789ab/cmd/#",
    "moat/+/zones",
    "#",
    "a/b",
    "bad/#/x",
    "",
    "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+",
    "sport/tennis/+",
};

static const moat_err link_errors[4] = {
    MOAT_ERR_IO, MOAT_ERR_CLOSED, MOAT_ERR_TIMEOUT, MOAT_ERR_CONNECT,
};

typedef struct fuzz_state {
    const uint8_t *in;
    size_t left;
    uint32_t now;
    uint32_t rnd;
    bool zero_random;
    bool app_replies;
    moat_mqtt_config cfg;
    moat_mqtt_buffers bufs;
    moat_mqtt_client c;

    /* What the client sent on the current link, not yet decoded. */
    uint8_t wire[WIRE_SIZE];
    size_t wire_len;
    unsigned wire_packets;
    bool wire_disconnected;

    /* A send that returned MOAT_ERR_WOULD_BLOCK, to check the retry. */
    uint8_t blocked[TX_SIZE + STORE_SIZE];
    size_t blocked_len;

    /* The streamed message being delivered. */
    bool msg_open;
    size_t msg_next;
    size_t msg_total;
    unsigned events;
} fuzz_state;

static fuzz_state S;
static uint8_t qos2_set[MOAT_MQTT_QOS2_SET_SIZE];
static uint8_t pattern[1024];
static volatile uint8_t sink;

static uint8_t take(fuzz_state *f)
{
    if (f->left == 0)
        return 0;
    f->left--;
    return *f->in++;
}

static uint32_t fuzz_random(void *user)
{
    fuzz_state *f = user;
    if (f->zero_random)
        return 0;
    f->rnd = f->rnd * 1103515245u + 12345u;
    return f->rnd;
}

/* Reads every byte so that ASan sees an access out of bounds. */
static void touch(const uint8_t *p, size_t n)
{
    uint8_t x = 0;
    size_t i;
    for (i = 0; i < n; i++)
        x ^= p[i];
    sink = x;
}

/* An application that answers commands from the callback, as moat-agent
 * does: a result for every message, and DISCONNECT when a topic says "bye". */
static void app_reply(fuzz_state *f, const moat_mqtt_event *ev)
{
    moat_mqtt_message m;
    size_t i;
    moat_err e;

    m.topic = "moat/0123456789ab/result/x";
    m.payload = ev->payload;
    m.len = ev->len < 16 ? ev->len : 16;
    m.qos = ev->qos;
    m.retain = false;
    e = moat_mqtt_publish(&f->c, &m, NULL, f->now);
    CHECK(e <= 0 && e >= MOAT_ERR_DROPPED);
    for (i = 0; i + 3 <= ev->topic.len; i++) {
        if (memcmp(ev->topic.data + i, "bye", 3) == 0) {
            e = moat_mqtt_disconnect(&f->c, f->now);
            CHECK(e <= 0 && e >= MOAT_ERR_DROPPED);
            break;
        }
    }
}

static void on_event(void *user, const moat_mqtt_event *ev)
{
    fuzz_state *f = user;

    f->events++;
#ifdef FUZZ_TRACE /* -DFUZZ_TRACE: follow a reproducer event by event */
    fprintf(stderr, "  event %d err %d id %u len %zu offset %zu total %zu state %d\n",
            (int)ev->type, (int)ev->err, ev->packet_id, ev->len, ev->offset, ev->total,
            (int)moat_mqtt_get_state(&f->c));
#endif
    CHECK(ev->type >= MOAT_MQTT_EV_CONNECTED && ev->type <= MOAT_MQTT_EV_ERROR);
    CHECK(ev->err <= 0 && ev->err >= MOAT_ERR_DROPPED);
    switch (ev->type) {
    case MOAT_MQTT_EV_MESSAGE:
        CHECK(ev->topic.data != NULL);
        CHECK(moat_mqtt_topic_valid(ev->topic.data, ev->topic.len));
        CHECK(ev->qos <= 2);
        CHECK(ev->len <= ev->total && ev->offset <= ev->total - ev->len);
        CHECK(ev->len == 0 || ev->payload != NULL);
        touch(ev->topic.data, ev->topic.len);
        touch(ev->payload, ev->len);
        if (f->cfg.large == MOAT_MQTT_LARGE_REFUSE)
            CHECK(ev->offset == 0 && ev->len == ev->total);
        if (ev->offset == 0) {
            f->msg_total = ev->total;
            f->msg_next = 0;
        } else {
            CHECK(f->msg_open);
            CHECK(ev->total == f->msg_total && ev->offset == f->msg_next);
        }
        f->msg_next += ev->len;
        f->msg_open = f->msg_next < f->msg_total;
        if (f->app_replies && !f->msg_open)
            app_reply(f, ev);
        break;
    case MOAT_MQTT_EV_ERROR:
        CHECK(ev->err < 0);
        if (ev->topic.len)
            touch(ev->topic.data, ev->topic.len);
        break;
    case MOAT_MQTT_EV_SUBACK:
        /* A SUBSCRIBE cut off by a lost link completes with MOAT_ERR_CLOSED
         * and no codes. */
        if (ev->err == MOAT_OK || ev->err == MOAT_ERR_SUBACK_FAILURE)
            CHECK(ev->count >= 1 && ev->codes != NULL);
        if (ev->count)
            touch(ev->codes, ev->count);
        CHECK(ev->packet_id != 0);
        break;
    case MOAT_MQTT_EV_PUBLISHED:
    case MOAT_MQTT_EV_DROPPED:
    case MOAT_MQTT_EV_UNSUBACK:
        CHECK(ev->packet_id != 0);
        break;
    case MOAT_MQTT_EV_DISCONNECTED:
        f->msg_open = false;
        break;
    default:
        break;
    }
}

static bool linked(const fuzz_state *f)
{
    moat_mqtt_state st = moat_mqtt_get_state(&f->c);
    return st == MOAT_MQTT_WAIT_CONNACK || st == MOAT_MQTT_CONNECTED || st == MOAT_MQTT_CLOSING;
}

static void check_invariants(fuzz_state *f)
{
    moat_mqtt_state st = moat_mqtt_get_state(&f->c);
    const uint8_t *out;
    size_t len = 0;

    CHECK(st <= MOAT_MQTT_CLOSING);
    CHECK(moat_mqtt_inflight_used(&f->c) <= SLOTS);
    out = moat_mqtt_output(&f->c, &len);
    CHECK(len <= TX_SIZE);
    if (len) {
        CHECK(out != NULL);
        CHECK((out >= f->bufs.tx && out + len <= f->bufs.tx + TX_SIZE) ||
              (out >= f->bufs.store && out + len <= f->bufs.store + STORE_SIZE));
        touch(out, len);
    }
    if (st == MOAT_MQTT_IDLE || st == MOAT_MQTT_BACKOFF)
        CHECK(len == 0);
    (void)moat_mqtt_next_timeout(&f->c, f->now);
}

/* A new link: what was on the wire before belongs to the old one. */
static void wire_reset(fuzz_state *f)
{
    f->wire_len = 0;
    f->wire_packets = 0;
    f->wire_disconnected = false;
    f->blocked_len = 0;
}

/* Bytes the client sent: each complete packet must be a valid client packet. */
static void wire_add(fuzz_state *f, const uint8_t *p, size_t n)
{
    size_t at = 0;

    CHECK(n <= WIRE_SIZE - f->wire_len);
    memcpy(f->wire + f->wire_len, p, n);
    f->wire_len += n;
    for (;;) {
        moat_mqtt_packet pkt;
        size_t used = 0;
        moat_err e = moat_mqtt_decode(MOAT_MQTT_V311, f->wire + at, f->wire_len - at, &pkt,
                                      &used);
        if (e == MOAT_ERR_WOULD_BLOCK)
            break;
        if (e != MOAT_OK)
            fprintf(stderr, "harness: client sent a malformed packet: %s\n", moat_strerror(e));
        CHECK(e == MOAT_OK);
        CHECK(pkt.type != MOAT_MQTT_CONNACK && pkt.type != MOAT_MQTT_SUBACK &&
              pkt.type != MOAT_MQTT_UNSUBACK && pkt.type != MOAT_MQTT_PINGRESP);
        CHECK((pkt.type == MOAT_MQTT_CONNECT) == (f->wire_packets == 0));
        CHECK(!f->wire_disconnected);
        if (pkt.type == MOAT_MQTT_DISCONNECT)
            f->wire_disconnected = true;
        f->wire_packets++;
        at += used;
    }
    memmove(f->wire, f->wire + at, f->wire_len - at);
    f->wire_len -= at;
}

/* Send up to max bytes of the client's output, as a transport would. */
static void send_output(fuzz_state *f, size_t max)
{
    size_t len = 0;
    const uint8_t *out = moat_mqtt_output(&f->c, &len);

    if (len == 0)
        return;
    if (len > max)
        len = max;
    wire_add(f, out, len);
    f->blocked_len = 0;
    moat_mqtt_output_done(&f->c, len, f->now);
    check_invariants(f);
    /* mqtt.h: once a DISCONNECT is drained, close and report MOAT_OK. */
    if (moat_mqtt_get_state(&f->c) == MOAT_MQTT_CLOSING) {
        moat_mqtt_output(&f->c, &len);
        if (len == 0) {
            CHECK(f->wire_disconnected);
            moat_mqtt_link_down(&f->c, MOAT_OK, f->now);
            CHECK(moat_mqtt_get_state(&f->c) == MOAT_MQTT_IDLE);
            check_invariants(f);
        }
    }
}

static void drain(fuzz_state *f)
{
    int i;
    for (i = 0; i < 64; i++)
        send_output(f, SIZE_MAX);
}

/*
 * Feed bytes from the broker. When a reply does not fit tx, input stops with
 * MOAT_ERR_WOULD_BLOCK: drain the output and feed the rest, as mqtt.h says.
 * On a fatal error the client is already down.
 */
static void feed(fuzz_state *f, const uint8_t *data, size_t n)
{
    bool drained = false;

    for (;;) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees overreads */
        size_t used = SIZE_MAX;
        moat_err e;

        CHECK(copy != NULL);
        memcpy(copy, data, n);
        e = moat_mqtt_input(&f->c, copy, n, &used, f->now);
        free(copy);
        CHECK(e <= 0 && e >= MOAT_ERR_DROPPED);
        CHECK(used <= n);
        check_invariants(f);
        if (e == MOAT_OK) {
            CHECK(used == n);
            return;
        }
        if (e != MOAT_ERR_WOULD_BLOCK) {
            CHECK(!linked(f));
            return;
        }
        CHECK(linked(f));
        /* With tx just emptied, a reply always fits: input must move on. */
        CHECK(!drained || used > 0);
        data += used;
        n -= used;
        drain(f);
        if (!linked(f))
            return; /* the drain completed a DISCONNECT and closed */
        drained = true;
    }
}

static void feed_connack(fuzz_state *f, bool session_present)
{
    const uint8_t connack[4] = {0x20, 0x02, session_present ? 1u : 0u, 0x00};
    CHECK(moat_mqtt_get_state(&f->c) == MOAT_MQTT_WAIT_CONNACK);
    feed(f, connack, sizeof(connack));
    CHECK(moat_mqtt_get_state(&f->c) == MOAT_MQTT_CONNECTED);
}

/* Open a new link once the backoff allows it, and send CONNECT. */
static void link_up(fuzz_state *f)
{
    int i;

    if (moat_mqtt_get_state(&f->c) == MOAT_MQTT_IDLE)
        CHECK(moat_mqtt_start(&f->c, f->now) == MOAT_OK);
    CHECK(moat_mqtt_get_state(&f->c) == MOAT_MQTT_BACKOFF);
    for (i = 0; i < 4 && !moat_mqtt_connect_due(&f->c, f->now); i++) {
        uint32_t t = moat_mqtt_next_timeout(&f->c, f->now);
        CHECK(t != UINT32_MAX);
        f->now += t;
    }
    CHECK(moat_mqtt_connect_due(&f->c, f->now));
    CHECK(moat_mqtt_link_up(&f->c, f->now) == MOAT_OK);
    CHECK(moat_mqtt_get_state(&f->c) == MOAT_MQTT_WAIT_CONNACK);
    wire_reset(f);
    check_invariants(f);
    drain(f);
    CHECK(f->wire_packets >= 1); /* CONNECT went out */
}

/* A new link if there is none; bit 0 of how: feed a CONNACK (with session
 * present if bit 1 and the session is persistent). */
static void reconnect(fuzz_state *f, uint8_t how)
{
    if (linked(f))
        return;
    link_up(f);
    if (how & 1)
        feed_connack(f, (how & 2) && !f->cfg.clean_session);
}

static void op_publish(fuzz_state *f)
{
    uint8_t p = take(f);
    uint8_t n = take(f);
    moat_mqtt_message m;
    uint16_t id = 0;
    bool was_connected = moat_mqtt_get_state(&f->c) == MOAT_MQTT_CONNECTED;
    moat_err e;

    m.qos = p & 3u;
    m.topic = topics[(p >> 2) & 7u];
    m.retain = (p >> 5) & 1u;
    m.len = (size_t)n << ((p >> 6) & 3u); /* up to 2040 bytes */
    m.payload = m.len <= sizeof(pattern) ? pattern : NULL;
    if (m.payload == NULL)
        m.len = 0;
    e = moat_mqtt_publish(&f->c, &m, &id, f->now);
    CHECK(e <= 0 && e >= MOAT_ERR_DROPPED);
    if (e == MOAT_OK) {
        CHECK(m.qos <= 2);
        CHECK(moat_mqtt_topic_valid((const uint8_t *)m.topic, strlen(m.topic)));
        if (m.qos == 0)
            CHECK(was_connected);
        else
            CHECK(id != 0);
    }
    check_invariants(f);
}

static void op_subscribe(fuzz_state *f, bool subscribe)
{
    uint8_t p = take(f);
    moat_mqtt_sub subs[4];
    size_t count = 1u + (p & 3u), i;
    uint16_t id = 0;
    moat_err e;

    for (i = 0; i < count; i++) {
        subs[i].filter = filters[((p >> 2) + i) & 7u];
        subs[i].qos = (uint8_t)((p >> 5) & 3u);
    }
    if (subscribe)
        e = moat_mqtt_subscribe(&f->c, subs, count, &id, f->now);
    else
        e = moat_mqtt_unsubscribe(&f->c, subs, count, &id, f->now);
    CHECK(e <= 0 && e >= MOAT_ERR_DROPPED);
    if (e == MOAT_OK)
        CHECK(id != 0);
    check_invariants(f);
}

static void op_tick(fuzz_state *f, uint8_t op)
{
    uint32_t dt = (uint32_t)take(f) << (op >> 4);
    moat_err e;

    f->now += dt;
    e = moat_mqtt_tick(&f->c, f->now);
    CHECK(e <= 0 && e >= MOAT_ERR_DROPPED);
    if (e != MOAT_OK)
        CHECK(!linked(f));
    check_invariants(f);
}

/* Jump to the next deadline the client asks for, then tick. */
static void op_wait(fuzz_state *f)
{
    uint32_t t = moat_mqtt_next_timeout(&f->c, f->now);
    moat_err e;

    if (t == UINT32_MAX)
        return;
    f->now += t;
    e = moat_mqtt_tick(&f->c, f->now);
    CHECK(e <= 0 && e >= MOAT_ERR_DROPPED);
    if (e != MOAT_OK)
        CHECK(!linked(f));
    check_invariants(f);
}

/* mqtt.h: the next attempt comes after a random delay of at most the cap
 * (backoff_cap_ms, 60000 by default here). */
static void check_backoff(fuzz_state *f)
{
    if (moat_mqtt_get_state(&f->c) == MOAT_MQTT_BACKOFF)
        CHECK(moat_mqtt_next_timeout(&f->c, f->now) <= 60000u);
}

static void op_link_down(fuzz_state *f)
{
    moat_err err = link_errors[take(f) & 3u];
    moat_mqtt_state was = moat_mqtt_get_state(&f->c);
    if (!linked(f))
        return;
    moat_mqtt_link_down(&f->c, err, f->now);
    /* A link lost after a requested DISCONNECT ends in IDLE. */
    CHECK(moat_mqtt_get_state(&f->c) ==
          (was == MOAT_MQTT_CLOSING ? MOAT_MQTT_IDLE : MOAT_MQTT_BACKOFF));
    check_backoff(f);
    check_invariants(f);
}

/* The port could not open the transport when an attempt was due. */
static void op_attempt_fails(fuzz_state *f)
{
    moat_err err = link_errors[take(f) & 3u];
    int i;

    if (moat_mqtt_get_state(&f->c) != MOAT_MQTT_BACKOFF)
        return;
    for (i = 0; i < 4 && !moat_mqtt_connect_due(&f->c, f->now); i++)
        f->now += moat_mqtt_next_timeout(&f->c, f->now);
    CHECK(moat_mqtt_connect_due(&f->c, f->now));
    moat_mqtt_link_down(&f->c, err, f->now);
    CHECK(moat_mqtt_get_state(&f->c) == MOAT_MQTT_BACKOFF);
    check_backoff(f);
    check_invariants(f);
}

/* A DISCONNECT the application asks for; the link closes once it is sent
 * (send_output), and the broker may still send until then. */
static void op_disconnect(fuzz_state *f)
{
    moat_mqtt_state was = moat_mqtt_get_state(&f->c);
    moat_err e = moat_mqtt_disconnect(&f->c, f->now);

    CHECK(e <= 0 && e >= MOAT_ERR_DROPPED);
    check_invariants(f);
    if (e != MOAT_OK)
        return;
    if (was == MOAT_MQTT_WAIT_CONNACK || was == MOAT_MQTT_CONNECTED)
        CHECK(moat_mqtt_get_state(&f->c) == MOAT_MQTT_CLOSING);
    else
        CHECK(moat_mqtt_get_state(&f->c) == MOAT_MQTT_IDLE || was == MOAT_MQTT_CLOSING);
}

/* ---- a fake transport for moat_mqtt_pump, driven by the input ---------- */

static long fake_recv(void *ctx, uint8_t *buf, size_t len)
{
    fuzz_state *f = ctx;
    uint8_t b;
    size_t n;

    CHECK(len > 0);
    if (f->left == 0)
        return MOAT_ERR_WOULD_BLOCK;
    b = take(f);
    if (b == 0)
        return MOAT_ERR_WOULD_BLOCK;
    if (b == 1)
        return MOAT_ERR_CLOSED;
    if (b == 2)
        return MOAT_ERR_IO;
    n = b;
    if (n > len)
        n = len;
    if (n > f->left)
        n = f->left;
    if (n == 0)
        return MOAT_ERR_WOULD_BLOCK;
    memcpy(buf, f->in, n);
    f->in += n;
    f->left -= n;
    return (long)n;
}

static long fake_send(void *ctx, const uint8_t *buf, size_t len)
{
    fuzz_state *f = ctx;
    uint8_t b;
    size_t n;

    CHECK(len > 0);
    touch(buf, len);
    if (f->blocked_len) {
        /* transport.h: retried with the same bytes and at least the same length */
        CHECK(len >= f->blocked_len);
        CHECK(memcmp(buf, f->blocked, f->blocked_len) == 0);
        f->blocked_len = 0;
    }
    b = take(f);
    if (b == 0) {
        CHECK(len <= sizeof(f->blocked));
        memcpy(f->blocked, buf, len);
        f->blocked_len = len;
        return MOAT_ERR_WOULD_BLOCK;
    }
    if (b == 1)
        return MOAT_ERR_IO;
    n = b == 0xFF ? len : b;
    if (n > len)
        n = len;
    wire_add(f, buf, n);
    return (long)n;
}

static void op_pump(fuzz_state *f)
{
    moat_transport t = {fake_send, fake_recv, f, NULL};
    moat_err e;

    f->now += take(f);
    e = moat_mqtt_pump(&f->c, &t, f->now);
    CHECK(e <= 0 && e >= MOAT_ERR_DROPPED);
    if (e != MOAT_OK)
        CHECK(!linked(f));
    check_invariants(f);
}

/* ---- the harness -------------------------------------------------------- */

/*
 * Byte 0: bit 0 large-message policy (1 stream, 0 refuse), bit 1 clean
 * session, bit 2 start just before the 32-bit millisecond clock wraps,
 * bits 3-4 keep-alive (0, 1, 5 or 60 s), bit 5 random() always 0, bit 6
 * the application publishes a result for every message from the callback,
 * bit 7 a send window (max_inflight) of 1.
 */
static void setup(fuzz_state *f, uint8_t cfg)
{
    static const uint16_t keepalive[4] = {0, 1, 5, 60};

    f->cfg.client_id = "0123456789ab";
    f->cfg.username = "0123456789ab";
    f->cfg.will_topic = "moat/0123456789ab/state";
    f->cfg.will_payload = (const uint8_t *)"offline";
    f->cfg.will_len = 7;
    f->cfg.will_qos = 1;
    f->cfg.will_retain = true;
    f->cfg.large = (cfg & 1u) ? MOAT_MQTT_LARGE_STREAM : MOAT_MQTT_LARGE_REFUSE;
    f->cfg.clean_session = (cfg >> 1) & 1u;
    f->now = (cfg & 4u) ? 0xFFFFF000u : 1000u;
    f->cfg.keepalive_s = keepalive[(cfg >> 3) & 3u];
    f->zero_random = (cfg >> 5) & 1u;
    f->app_replies = (cfg >> 6) & 1u;
    f->cfg.max_inflight = (cfg & 0x80u) ? 1u : 0u;
    f->cfg.random = fuzz_random;
    f->cfg.on_event = on_event;
    f->cfg.user = f;
    f->rnd = 1;

    f->bufs.tx = malloc(TX_SIZE);
    f->bufs.tx_size = TX_SIZE;
    f->bufs.rx = malloc(RX_SIZE);
    f->bufs.rx_size = RX_SIZE;
    f->bufs.store = malloc(STORE_SIZE);
    f->bufs.store_size = STORE_SIZE;
    f->bufs.inflight = malloc(SLOTS * sizeof(moat_mqtt_inflight));
    f->bufs.inflight_count = SLOTS;
    f->bufs.qos2_set = (cfg & 0x80u) ? qos2_set : NULL; /* both QoS 2 trackers */
    CHECK(f->bufs.tx && f->bufs.rx && f->bufs.store && f->bufs.inflight);

    CHECK(moat_mqtt_init(&f->c, &f->cfg, &f->bufs) == MOAT_OK);
    CHECK(moat_mqtt_get_state(&f->c) == MOAT_MQTT_IDLE);
    check_invariants(f);
    link_up(f);
    feed_connack(f, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_state *f = &S;
    size_t i;

    if (size == 0)
        return 0;
    for (i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)(i * 7u + 1u);
    memset(f, 0, sizeof(*f));
    f->in = data + 1;
    f->left = size - 1;
    setup(f, data[0]);

    while (f->left) {
        uint8_t op = take(f);
        size_t n;

        switch (op & 0x0Fu) {
        case 0x0: /* feed a chunk of the next byte's size */
        case 0x1: /* feed (op >> 4) + 1 bytes */
            n = (op & 0x0Fu) == 0 ? take(f) : (size_t)(op >> 4) + 1u;
            if (n > f->left)
                n = f->left;
            if (!linked(f))
                reconnect(f, 1);
            feed(f, f->in, n);
            f->in += n;
            f->left -= n;
            break;
        case 0x2: /* send part of the output */
            n = take(f);
            send_output(f, n == 0xFF ? SIZE_MAX : n);
            break;
        case 0x3:
            drain(f);
            break;
        case 0x4:
            op_tick(f, op);
            break;
        case 0x5:
            op_publish(f);
            break;
        case 0x6:
            op_subscribe(f, true);
            break;
        case 0x7:
            op_subscribe(f, false);
            break;
        case 0x8:
            op_link_down(f);
            break;
        case 0x9:
            op_disconnect(f);
            break;
        case 0xA:
            reconnect(f, take(f));
            break;
        case 0xB:
            if (!linked(f))
                reconnect(f, 1);
            op_pump(f);
            break;
        case 0xC:
            op_wait(f);
            break;
        case 0xD:
            op_attempt_fails(f);
            break;
        default: /* 0xE-0xF: feed 16 * ((op >> 4) + 1) bytes */
            n = 16u * ((size_t)(op >> 4) + 1u);
            if (n > f->left)
                n = f->left;
            if (!linked(f))
                reconnect(f, 1);
            feed(f, f->in, n);
            f->in += n;
            f->left -= n;
            break;
        }
    }

    free(f->bufs.tx);
    free(f->bufs.rx);
    free(f->bufs.store);
    free(f->bufs.inflight);
    return 0;
}
