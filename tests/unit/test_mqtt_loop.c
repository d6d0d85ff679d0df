/*
 * test_mqtt_loop.c - moat_mqtt_pump() against a scripted fake transport:
 * partial sends, would-block, peer close, transport errors, keep-alive run
 * from the pump, and the requested DISCONNECT.
 */
#include "mqtt_harness.h"

typedef struct fake {
    uint8_t in[16384];
    size_t in_len, in_pos;
    size_t recv_max;       /* most bytes per recv call (0: no limit) */
    long recv_end;         /* returned once input is used up */
    uint8_t sent[16384];
    size_t sent_len;
    size_t send_max;       /* most bytes per send call (0: no limit) */
    long send_err;         /* when non-zero, send returns it */
    int recv_calls, send_calls;
} fake;

static long f_send(void *ctx, const uint8_t *buf, size_t len)
{
    fake *f = (fake *)ctx;
    f->send_calls++;
    assert_true(len > 0);
    if (f->send_err)
        return f->send_err;
    size_t n = f->send_max && len > f->send_max ? f->send_max : len;
    assert_true(f->sent_len + n <= sizeof f->sent);
    memcpy(f->sent + f->sent_len, buf, n);
    f->sent_len += n;
    return (long)n;
}

static long f_recv(void *ctx, uint8_t *buf, size_t len)
{
    fake *f = (fake *)ctx;
    f->recv_calls++;
    assert_true(len > 0);
    if (f->in_pos == f->in_len)
        return f->recv_end;
    size_t n = f->in_len - f->in_pos;
    if (n > len)
        n = len;
    if (f->recv_max && n > f->recv_max)
        n = f->recv_max;
    memcpy(buf, f->in + f->in_pos, n);
    f->in_pos += n;
    return (long)n;
}

static fake *fake_new(moat_transport *t)
{
    fake *f = (fake *)calloc(1, sizeof *f);
    assert_non_null(f);
    f->recv_end = MOAT_ERR_WOULD_BLOCK;
    t->send = f_send;
    t->recv = f_recv;
    t->ctx = f;
    return f;
}

static void fake_push(fake *f, const uint8_t *b, size_t n)
{
    assert_true(f->in_len + n <= sizeof f->in);
    memcpy(f->in + f->in_len, b, n);
    f->in_len += n;
}

static const uint8_t CONNECT_DEV1[] = {
    0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00,
    0x00, 0x04, 'd', 'e', 'v', '1'
};
static const uint8_t CONNACK[] = { 0x20, 0x02, 0x00, 0x00 };

/* Start, link up, pump CONNECT out and CONNACK in. */
static void pump_online(H *h, fake *f, const moat_transport *t)
{
    assert_int_equal(moat_mqtt_start(&h->c, h->now), MOAT_OK);
    assert_int_equal(moat_mqtt_link_up(&h->c, h->now), MOAT_OK);
    fake_push(f, CONNACK, sizeof CONNACK);
    for (int i = 0; i < 50 && moat_mqtt_get_state(&h->c) != MOAT_MQTT_CONNECTED; i++)
        assert_int_equal(moat_mqtt_pump(&h->c, t, h->now), MOAT_OK);
    assert_int_equal(moat_mqtt_get_state(&h->c), MOAT_MQTT_CONNECTED);
    for (int i = 0; i < 50 && f->sent_len < sizeof CONNECT_DEV1; i++)
        assert_int_equal(moat_mqtt_pump(&h->c, t, h->now), MOAT_OK);
    uint8_t exp[sizeof CONNECT_DEV1];
    memcpy(exp, CONNECT_DEV1, sizeof exp);
    exp[10] = (uint8_t)(h->cfg.keepalive_s >> 8);
    exp[11] = (uint8_t)h->cfg.keepalive_s;
    assert_int_equal(f->sent_len, sizeof exp);
    assert_memory_equal(f->sent, exp, sizeof exp);
    f->sent_len = 0;
}

static void pump_connects(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    fake *f = fake_new(&t);
    h_init(h);
    pump_online(h, f, &t);
    assert_int_equal(ev_count(h, MOAT_MQTT_EV_CONNECTED), 1);
    /* nothing more to do: no bytes, still fine */
    assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(f->sent_len, 0);
    free(f);
    free(h);
}

static void pump_partial_sends(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    fake *f = fake_new(&t);
    f->send_max = 3;
    h_init(h);
    assert_int_equal(moat_mqtt_start(&h->c, h->now), MOAT_OK);
    assert_int_equal(moat_mqtt_link_up(&h->c, h->now), MOAT_OK);
    for (int i = 0; i < 40; i++)
        assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(f->sent_len, sizeof CONNECT_DEV1);
    assert_memory_equal(f->sent, CONNECT_DEV1, sizeof CONNECT_DEV1);
    free(f);
    free(h);
}

static void pump_send_would_block_loses_nothing(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    fake *f = fake_new(&t);
    f->send_err = MOAT_ERR_WOULD_BLOCK;
    h_init(h);
    assert_int_equal(moat_mqtt_start(&h->c, h->now), MOAT_OK);
    assert_int_equal(moat_mqtt_link_up(&h->c, h->now), MOAT_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(f->sent_len, 0);
    assert_int_equal(moat_mqtt_get_state(&h->c), MOAT_MQTT_WAIT_CONNACK);
    f->send_err = 0;
    for (int i = 0; i < 5; i++)
        assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(f->sent_len, sizeof CONNECT_DEV1);
    assert_memory_equal(f->sent, CONNECT_DEV1, sizeof CONNECT_DEV1);
    free(f);
    free(h);
}

static void pump_peer_closed(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    fake *f = fake_new(&t);
    h_init(h);
    pump_online(h, f, &t);
    f->recv_end = MOAT_ERR_CLOSED;
    moat_err e = moat_mqtt_pump(&h->c, &t, h->now);
    assert_int_equal(e, MOAT_ERR_CLOSED);
    assert_int_equal(moat_mqtt_get_state(&h->c), MOAT_MQTT_BACKOFF);
    assert_int_equal(ev_count(h, MOAT_MQTT_EV_DISCONNECTED), 1);
    assert_int_equal(ev_nth(h, MOAT_MQTT_EV_DISCONNECTED, 0)->err, MOAT_ERR_CLOSED);
    free(f);
    free(h);
}

static void pump_transport_errors(void **state)
{
    (void)state;
    for (int which = 0; which < 2; which++) {
        H *h = h_new();
        moat_transport t;
        fake *f = fake_new(&t);
        h_init(h);
        pump_online(h, f, &t);
        if (which == 0) {
            f->recv_end = MOAT_ERR_IO;
        } else {
            f->send_err = MOAT_ERR_IO;
            pub(h, "a", "b", 0, false);
        }
        assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_ERR_IO);
        assert_int_equal(moat_mqtt_get_state(&h->c), MOAT_MQTT_BACKOFF);
        assert_int_equal(ev_count(h, MOAT_MQTT_EV_DISCONNECTED), 1);
        assert_int_equal(ev_nth(h, MOAT_MQTT_EV_DISCONNECTED, 0)->err, MOAT_ERR_IO);
        free(f);
        free(h);
    }
}

static void pump_malformed_input(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    fake *f = fake_new(&t);
    h_init(h);
    pump_online(h, f, &t);
    static const uint8_t bad[] = { 0x41, 0x02, 0x00, 0x01 };
    fake_push(f, bad, sizeof bad);
    assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_ERR_FLAGS);
    assert_int_equal(moat_mqtt_get_state(&h->c), MOAT_MQTT_BACKOFF);
    free(f);
    free(h);
}

static void pump_runs_keepalive(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    fake *f = fake_new(&t);
    h->cfg.keepalive_s = 1;
    h_init(h);
    uint32_t t0 = h->now;
    pump_online(h, f, &t);
    assert_int_equal(moat_mqtt_pump(&h->c, &t, t0 + 999), MOAT_OK);
    assert_int_equal(f->sent_len, 0);
    /* a pump at the deadline sends PINGREQ (possibly on the next pump) */
    assert_int_equal(moat_mqtt_pump(&h->c, &t, t0 + 1000), MOAT_OK);
    assert_int_equal(moat_mqtt_pump(&h->c, &t, t0 + 1000), MOAT_OK);
    assert_int_equal(f->sent_len, 2);
    assert_memory_equal(f->sent, "\xC0\x00", 2);
    /* no PINGRESP: the pump reports the dead link */
    assert_int_equal(moat_mqtt_pump(&h->c, &t, t0 + 1999), MOAT_OK);
    assert_int_equal(moat_mqtt_pump(&h->c, &t, t0 + 2000), MOAT_ERR_KEEPALIVE);
    assert_int_equal(moat_mqtt_get_state(&h->c), MOAT_MQTT_BACKOFF);
    free(f);
    free(h);
}

static void pump_reads_large_input(void **state)
{
    (void)state;
    /* 120 messages, about 10 KB, more than one I/O chunk */
    H *h = h_new();
    moat_transport t;
    fake *f = fake_new(&t);
    h_init(h);
    pump_online(h, f, &t);
    uint8_t pl[80];
    memset(pl, 'm', sizeof pl);
    for (int i = 0; i < 120; i++) {
        uint8_t b[128];
        pl[0] = (uint8_t)i;
        size_t n = ref_publish(b, "x/y", pl, sizeof pl, 0, false, false, 0);
        fake_push(f, b, n);
    }
    for (int i = 0; i < 200 && f->in_pos < f->in_len; i++)
        assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(f->in_pos, f->in_len);
    assert_int_equal(ev_count(h, MOAT_MQTT_EV_MESSAGE), 120);
    for (int i = 0; i < 120; i++)
        assert_int_equal(ev_nth(h, MOAT_MQTT_EV_MESSAGE, (size_t)i)->data[0], i);
    free(f);
    free(h);
}

static void pump_small_reads(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    fake *f = fake_new(&t);
    f->recv_max = 1;
    h_init(h);
    pump_online(h, f, &t);
    static const uint8_t m[] = { 0x32, 0x07, 0x00, 0x01, 'k', 0x00, 0x05, 'o', 'k' };
    fake_push(f, m, sizeof m);
    for (int i = 0; i < 100 && f->in_pos < f->in_len; i++)
        assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(ev_count(h, MOAT_MQTT_EV_MESSAGE), 1);
    assert_int_equal(f->sent_len, 4);
    assert_memory_equal(f->sent, "\x40\x02\x00\x05", 4);
    free(f);
    free(h);
}

static void pump_requested_disconnect(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    fake *f = fake_new(&t);
    h_init(h);
    pump_online(h, f, &t);
    assert_int_equal(moat_mqtt_disconnect(&h->c, h->now), MOAT_OK);
    moat_err e = MOAT_OK;
    for (int i = 0; i < 10 && e == MOAT_OK; i++)
        e = moat_mqtt_pump(&h->c, &t, h->now);
    /* once DISCONNECT is out the link is no longer usable */
    assert_int_not_equal(e, MOAT_OK);
    assert_int_equal(f->sent_len, 2);
    assert_memory_equal(f->sent, "\xE0\x00", 2);
    assert_int_equal(moat_mqtt_get_state(&h->c), MOAT_MQTT_IDLE);
    assert_int_equal(ev_count(h, MOAT_MQTT_EV_DISCONNECTED), 1);
    free(f);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pump_connects),
        cmocka_unit_test(pump_partial_sends),
        cmocka_unit_test(pump_send_would_block_loses_nothing),
        cmocka_unit_test(pump_peer_closed),
        cmocka_unit_test(pump_transport_errors),
        cmocka_unit_test(pump_malformed_input),
        cmocka_unit_test(pump_runs_keepalive),
        cmocka_unit_test(pump_reads_large_input),
        cmocka_unit_test(pump_small_reads),
        cmocka_unit_test(pump_requested_disconnect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
