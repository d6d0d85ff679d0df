/*
 * test_pubsub.c - publish and subscribe at QoS 0, 1 and 2 through a real
 * Mosquitto, moat publisher -> moat subscriber.
 *
 * Payloads are compared byte for byte: empty, text, every byte value, random
 * bytes, one that nearly fills the subscriber's 4 KB receive buffer and one
 * larger than it (delivered in pieces, MOAT_MQTT_LARGE_STREAM). Order,
 * topic, QoS and flags of every delivery are checked too.
 */
#include "broker.h"
#include "client.h"
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_PAYLOADS 9

typedef struct payload {
    uint8_t *data;
    size_t len;
} payload;

static payload payloads[N_PAYLOADS];

static uint32_t rng_state = 0x9e3779b9u;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void make_payloads(void)
{
    size_t lens[N_PAYLOADS] = { 0, 5, 256, 1, 1000, 3000, 4000, 10000, 40 };
    for (size_t i = 0; i < N_PAYLOADS; i++) {
        payloads[i].len = lens[i];
        payloads[i].data = malloc(lens[i] + 1);
        ITEST_CHECK(payloads[i].data != NULL, "out of memory");
        for (size_t k = 0; k < lens[i]; k++)
            payloads[i].data[k] = (uint8_t)rng();
    }
    memcpy(payloads[1].data, "hello", 5);
    for (size_t k = 0; k < 256; k++)
        payloads[2].data[k] = (uint8_t)k;
    payloads[3].data[0] = 0;
    /* UTF-8 text with multi-byte characters, padded to 40 bytes. */
    const char *utf8 = "gr\xc3\xbc\xc3\x9f dich, \xe2\x82\xac 42 \xf0\x9f\x8c\xb1";
    memset(payloads[8].data, '.', 40);
    memcpy(payloads[8].data, utf8, strlen(utf8));
}

typedef struct wait_pub {
    itest_client *sub, *pub;
    size_t want_msgs;
    unsigned want_published;
} wait_pub;

static bool cond_delivered(void *arg)
{
    wait_pub *w = arg;
    return w->sub->n_msgs >= w->want_msgs && w->pub->n_published >= w->want_published;
}

/* Publish, driving the clients while the engine says "not now". */
static void publish(itest_client *const *all, size_t n, itest_client *c, const char *topic,
                    const payload *p, uint8_t qos)
{
    uint32_t start = moat_clock_ms();
    for (;;) {
        moat_err r = itest_publish(c, topic, p->data, p->len, qos, false, NULL);
        if (r == MOAT_OK)
            return;
        ITEST_CHECK(r == MOAT_ERR_WOULD_BLOCK || r == MOAT_ERR_WINDOW_FULL,
                    "publish %zu bytes at QoS %u on %s: %s", p->len, (unsigned)qos, topic,
                    moat_strerror(r));
        ITEST_CHECK(moat_clock_ms() - start < 5000,
                    "publish of %zu bytes at QoS %u still refused after 5 s: %s", p->len,
                    (unsigned)qos, moat_strerror(r));
        itest_run_until(all, n, 5, NULL, NULL);
    }
}

int main(void)
{
    static itest_broker broker;
    char sid[64], pid_str[32], topic[128];
    snprintf(pid_str, sizeof(pid_str), "%ld", (long)getpid());
    itest_begin("integration_pubsub", 80);
    make_payloads();
    itest_broker_start(&broker, NULL);

    itest_client sub, pub;
    itest_client_opts o;
    memset(&o, 0, sizeof(o));
    snprintf(sid, sizeof(sid), "itest-ps-sub-%s", pid_str);
    o.client_id = sid;
    o.clean_session = true;
    o.rx_size = 4096;
    o.large = MOAT_MQTT_LARGE_STREAM;
    o.keep_messages = true;
    itest_client_init(&sub, &o, broker.port);
    char pidn[64];
    snprintf(pidn, sizeof(pidn), "itest-ps-pub-%s", pid_str);
    memset(&o, 0, sizeof(o));
    o.client_id = pidn;
    o.clean_session = true;
    o.tx_size = 32768;
    o.store_size = 131072;
    o.keep_messages = true;
    itest_client_init(&pub, &o, broker.port);
    itest_client *all[] = { &sub, &pub };
    itest_client_start(&sub);
    itest_client_start(&pub);
    itest_wait_connected(all, 2, &sub, 5000);
    itest_wait_connected(all, 2, &pub, 5000);

    for (uint8_t qos = 0; qos <= 2; qos++) {
        snprintf(topic, sizeof(topic), "itest/%s/pubsub/q%u", pid_str, (unsigned)qos);
        itest_subscribe(all, 2, &sub, topic, qos, 5000);
        size_t first = sub.n_msgs;
        unsigned published_before = pub.n_published;
        uint32_t t0 = moat_clock_ms();
        for (size_t i = 0; i < N_PAYLOADS; i++)
            publish(all, 2, &pub, topic, &payloads[i], qos);
        wait_pub w = { &sub, &pub, first + N_PAYLOADS,
                       published_before + (qos > 0 ? N_PAYLOADS : 0) };
        if (!itest_run_until(all, 2, 10000, cond_delivered, &w))
            ITEST_FAIL("QoS %u: after 10 s the subscriber has %zu of %d messages and the "
                       "publisher %u of %d acknowledgements",
                       (unsigned)qos, sub.n_msgs - first, N_PAYLOADS,
                       pub.n_published - published_before, qos > 0 ? N_PAYLOADS : 0);
        /* Wait a little longer for anything extra (duplicates). */
        itest_run_until(all, 2, 200, NULL, NULL);
        ITEST_CHECK(sub.n_msgs == first + N_PAYLOADS,
                    "QoS %u: %zu messages delivered for %d published", (unsigned)qos,
                    sub.n_msgs - first, N_PAYLOADS);
        for (size_t i = 0; i < N_PAYLOADS; i++) {
            const itest_msg *m = &sub.msgs[first + i];
            const payload *p = &payloads[i];
            ITEST_CHECK(strcmp(m->topic, topic) == 0, "QoS %u message %zu: topic '%s', sent '%s'",
                        (unsigned)qos, i, m->topic, topic);
            ITEST_CHECK(m->len == p->len,
                        "QoS %u message %zu: %zu bytes delivered, %zu sent (out of order or "
                        "truncated?)",
                        (unsigned)qos, i, m->len, p->len);
            if (memcmp(m->payload, p->data, p->len) != 0) {
                size_t k = 0;
                while (m->payload[k] == p->data[k])
                    k++;
                ITEST_FAIL("QoS %u message %zu (%zu bytes): first difference at byte %zu: "
                           "got %02x, sent %02x",
                           (unsigned)qos, i, p->len, k, m->payload[k], p->data[k]);
            }
            ITEST_CHECK(m->qos == qos, "QoS %u message %zu delivered at QoS %u", (unsigned)qos, i,
                        (unsigned)m->qos);
            ITEST_CHECK(!m->retain && !m->dup, "QoS %u message %zu: retain=%d dup=%d",
                        (unsigned)qos, i, (int)m->retain, (int)m->dup);
        }
        itest_log("QoS %u: %d payloads (0..10000 bytes) delivered intact in %u ms",
                  (unsigned)qos, N_PAYLOADS, moat_clock_ms() - t0);
    }
    ITEST_CHECK(sub.n_errors == 0 && pub.n_errors == 0, "ERROR events: sub %u (%s), pub %u (%s)",
                sub.n_errors, moat_strerror(sub.last_error_err), pub.n_errors,
                moat_strerror(pub.last_error_err));
    ITEST_CHECK(sub.n_disconnected == 0 && pub.n_disconnected == 0,
                "the link dropped: sub %u times (%s), pub %u times (%s)", sub.n_disconnected,
                moat_strerror(sub.last_disconnect_err), pub.n_disconnected,
                moat_strerror(pub.last_disconnect_err));
    ITEST_CHECK(moat_mqtt_inflight_used(&pub.mqtt) == 0,
                "%zu window slots still used after every publish was acknowledged",
                moat_mqtt_inflight_used(&pub.mqtt));

    itest_disconnect(all, 2, &sub, 5000);
    itest_disconnect(all, 2, &pub, 5000);
    itest_client_free(&sub);
    itest_client_free(&pub);
    for (size_t i = 0; i < N_PAYLOADS; i++)
        free(payloads[i].data);
    itest_broker_destroy(&broker);
    return itest_pass();
}
