/*
 * test_mqtt_pump_batch.c - how moat_mqtt_pump() groups its sends: what the
 * caller queued leaves first, then everything readable is read, and the
 * replies to all of it leave together in one send (over TLS, one record),
 * not one send per read. The fake transport returns at most one chunk per
 * recv, as TLS returns at most one record.
 */
#include "mqtt_harness.h"

#define CHUNKS 64

typedef struct chunked {
    uint8_t in[8192];
    size_t in_len, in_pos;
    size_t ends[CHUNKS];   /* a recv never crosses one of these offsets */
    size_t nends;
    uint8_t sent[8192];
    size_t sent_len;
    size_t send_at[CHUNKS];  /* sent_len before each send call */
    size_t recvs_before_send[CHUNKS]; /* recv calls made before each send */
    int send_calls, recv_calls;
} chunked;

static long c_send(void *ctx, const uint8_t *buf, size_t len)
{
    chunked *f = (chunked *)ctx;
    assert_true(len > 0);
    assert_true(f->send_calls < CHUNKS);
    assert_true(f->sent_len + len <= sizeof f->sent);
    f->send_at[f->send_calls] = f->sent_len;
    f->recvs_before_send[f->send_calls] = (size_t)f->recv_calls;
    f->send_calls++;
    memcpy(f->sent + f->sent_len, buf, len);
    f->sent_len += len;
    return (long)len;
}

static long c_recv(void *ctx, uint8_t *buf, size_t len)
{
    chunked *f = (chunked *)ctx;
    size_t end = f->in_len;
    assert_true(len > 0);
    f->recv_calls++;
    for (size_t i = 0; i < f->nends; i++) {
        if (f->ends[i] > f->in_pos) {
            end = f->ends[i];
            break;
        }
    }
    if (f->in_pos == f->in_len)
        return MOAT_ERR_WOULD_BLOCK;
    size_t n = end - f->in_pos;
    if (n > len)
        n = len;
    memcpy(buf, f->in + f->in_pos, n);
    f->in_pos += n;
    return (long)n;
}

static void push_chunk(chunked *f, const uint8_t *b, size_t n)
{
    assert_true(f->in_len + n <= sizeof f->in);
    assert_true(f->nends < CHUNKS);
    memcpy(f->in + f->in_len, b, n);
    f->in_len += n;
    f->ends[f->nends++] = f->in_len;
}

static chunked *online(H *h, moat_transport *t)
{
    chunked *f = (chunked *)calloc(1, sizeof *f);
    assert_non_null(f);
    t->send = c_send;
    t->recv = c_recv;
    t->ctx = f;
    h_init(h);
    h_connect(h);
    return f;
}

static void push_qos1(chunked *f, uint16_t id)
{
    uint8_t b[64];
    size_t n = ref_publish(b, "a/b", "hello", 5, 1, false, false, id);
    push_chunk(f, b, n);
}

/* Five QoS 1 messages, one per recv: one pump answers all five in one send. */
static void pump_acks_in_one_send(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    chunked *f = online(h, &t);
    uint8_t exp[5 * 4];

    for (uint16_t i = 1; i <= 5; i++) {
        push_qos1(f, i);
        ref_ack(exp + 4 * (i - 1), 0x40, i);
    }
    assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(ev_count(h, MOAT_MQTT_EV_MESSAGE), 5);
    assert_int_equal(f->in_pos, f->in_len);
    assert_int_equal(f->send_calls, 1);
    assert_int_equal(f->sent_len, sizeof exp);
    assert_memory_equal(f->sent, exp, sizeof exp);
    /* every read came before the send */
    assert_int_equal(f->recvs_before_send[0], 6);
    free(f);
    free(h);
}

/* What the caller queued goes out before anything is read, so a publisher's
 * messages are not held back behind the reads. */
static void pump_sends_queued_output_first(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    chunked *f = online(h, &t);
    uint8_t ack[4];

    uint16_t id = pub(h, "t/x", "v", 1, false);
    push_qos1(f, 7);
    assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(f->send_calls, 2);
    assert_int_equal(f->recvs_before_send[0], 0);
    uint8_t p[32];
    size_t n = ref_publish(p, "t/x", "v", 1, 1, false, false, id);
    assert_int_equal(f->send_at[1], n);
    assert_memory_equal(f->sent, p, n);
    ref_ack(ack, 0x40, 7);
    assert_int_equal(f->sent_len, n + 4);
    assert_memory_equal(f->sent + n, ack, 4);
    free(f);
    free(h);
}

/* More readable input than one pump reads: nothing is lost, every message
 * is acknowledged once, in order, and the sends stay far fewer than the
 * reads. */
static void pump_many_chunks_over_calls(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    chunked *f = online(h, &t);
    uint8_t exp[40 * 4];

    for (uint16_t i = 1; i <= 40; i++) {
        push_qos1(f, i);
        ref_ack(exp + 4 * (i - 1), 0x40, i);
    }
    for (int i = 0; i < 40 && f->in_pos < f->in_len; i++)
        assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(f->in_pos, f->in_len);
    assert_int_equal(ev_count(h, MOAT_MQTT_EV_MESSAGE), 40);
    assert_int_equal(f->sent_len, sizeof exp);
    assert_memory_equal(f->sent, exp, sizeof exp);
    assert_true(f->send_calls * 4 <= 40);
    free(f);
    free(h);
}

/* A tx buffer too small for all the replies: reading stops while there is
 * room for the next reply, the replies go out, the next pump reads on. */
static void pump_small_tx_loses_nothing(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    h->tx_size = 64;
    chunked *f = online(h, &t);
    uint8_t exp[30 * 4];

    for (uint16_t i = 1; i <= 30; i++) {
        push_qos1(f, i);
        ref_ack(exp + 4 * (i - 1), 0x40, i);
    }
    for (int i = 0; i < 60 && f->in_pos < f->in_len; i++)
        assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(ev_count(h, MOAT_MQTT_EV_MESSAGE), 30);
    assert_int_equal(f->sent_len, sizeof exp);
    assert_memory_equal(f->sent, exp, sizeof exp);
    free(f);
    free(h);
}

/* The application subscribes when CONNACK arrives; the broker's queued
 * message follows CONNACK at once (a persistent session). The SUBSCRIBE
 * leaves before that message is handled, as it did when the pump sent
 * after every read. */
static void subscribe_on_connack(H *h, const moat_mqtt_event *e)
{
    if (e->type == MOAT_MQTT_EV_CONNECTED) {
        moat_mqtt_sub sub = { .filter = "cmd/#", .qos = 1 };
        assert_int_equal(moat_mqtt_subscribe(&h->c, &sub, 1, NULL, h->now), MOAT_OK);
    }
}

static void pump_sends_on_connack_before_reading_on(void **state)
{
    (void)state;
    H *h = h_new();
    moat_transport t;
    chunked *f = (chunked *)calloc(1, sizeof *f);
    static const uint8_t connack[] = { 0x20, 0x02, 0x00, 0x00 };
    assert_non_null(f);
    t.send = c_send;
    t.recv = c_recv;
    t.ctx = f;
    h->hook = subscribe_on_connack;
    h_init(h);
    assert_int_equal(moat_mqtt_start(&h->c, h->now), MOAT_OK);
    assert_int_equal(moat_mqtt_link_up(&h->c, h->now), MOAT_OK);
    push_chunk(f, connack, sizeof connack);
    push_qos1(f, 9);

    assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(moat_mqtt_get_state(&h->c), MOAT_MQTT_CONNECTED);
    assert_int_equal(ev_count(h, MOAT_MQTT_EV_MESSAGE), 0);
    assert_int_equal(f->send_calls, 2);           /* CONNECT, then SUBSCRIBE */
    assert_int_equal(f->sent[0], 0x10);
    assert_int_equal(f->sent[f->send_at[1]], 0x82);

    assert_int_equal(moat_mqtt_pump(&h->c, &t, h->now), MOAT_OK);
    assert_int_equal(ev_count(h, MOAT_MQTT_EV_MESSAGE), 1);
    assert_int_equal(f->send_calls, 3);
    assert_memory_equal(f->sent + f->send_at[2], "\x40\x02\x00\x09", 4);
    free(f);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pump_acks_in_one_send),
        cmocka_unit_test(pump_sends_queued_output_first),
        cmocka_unit_test(pump_many_chunks_over_calls),
        cmocka_unit_test(pump_small_tx_loses_nothing),
        cmocka_unit_test(pump_sends_on_connack_before_reading_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
