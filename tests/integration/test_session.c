/*
 * test_session.c QOS - persistent sessions survive a broker restart.
 *
 * A subscriber (clean_session=false, subscribed at QOS) and a publisher
 * (clean_session=false) exchange N numbered messages at QOS. Half way, the
 * publisher fills its window in one burst and the broker is stopped with
 * SIGTERM at once, so messages are in flight in every direction: in the
 * publisher's window, in socket buffers, in the broker's queue for the
 * subscriber and in the subscriber's QoS 2 state. The broker is started
 * again on the same port and persistence directory; both clients must
 * reconnect by themselves (engine backoff) with session_present=1, and in
 * the end every number must have arrived: none lost, and at QoS 2 none
 * twice. At QoS 1 duplicates are allowed and counted.
 */
#include "broker.h"
#include "client.h"
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_MSGS 400u
#define DOWN_MS 1500u
#define BACKOFF_CAP_MS 1000u
#define DRAIN_MS 60000u
#define STALL_MS 15000u
#define STALL_TEXT "15 s"

static itest_broker broker;
static uint8_t qos;
static char topic[128];
static unsigned counts[N_MSGS];
static unsigned distinct, duplicates;
static unsigned next_num;   /* next number to publish */
static unsigned limit;      /* publish up to here for now */
static itest_client sub, pub;

static size_t make_payload(unsigned num, uint8_t *buf)
{
    int n = snprintf((char *)buf, 16, "%u|", num);
    size_t len = (size_t)n + 8u + num % 97u;
    for (size_t k = (size_t)n; k < len; k++)
        buf[k] = (uint8_t)(num * 31u + k);
    return len;
}

static void on_message(itest_client *c, const itest_msg *m, void *arg)
{
    (void)c;
    (void)arg;
    char head[16];
    size_t h = m->len < sizeof(head) - 1 ? m->len : sizeof(head) - 1;
    memcpy(head, m->payload, h);
    head[h] = '\0';
    char *end;
    unsigned long num = strtoul(head, &end, 10);
    ITEST_CHECK(end != head && *end == '|' && num < N_MSGS,
                "the subscriber got a message that is not one of ours: %s",
                itest_hex(m->payload, m->len));
    uint8_t want[160];
    size_t wlen = make_payload((unsigned)num, want);
    ITEST_CHECK(m->len == wlen && memcmp(m->payload, want, wlen) == 0,
                "message %lu is corrupt: %zu bytes %s", num, m->len, itest_hex(m->payload, m->len));
    ITEST_CHECK(m->qos == qos && strcmp(m->topic, topic) == 0,
                "message %lu arrived on %s at QoS %u", num, m->topic, (unsigned)m->qos);
    if (counts[num]++ == 0)
        distinct++;
    else
        duplicates++;
}

/* Publish as far as the window allows, up to `limit`. */
static void publish_more(void)
{
    uint8_t buf[160];
    while (next_num < limit) {
        size_t len = make_payload(next_num, buf);
        moat_err r = itest_publish(&pub, topic, buf, len, qos, false, NULL);
        if (r == MOAT_ERR_WINDOW_FULL)
            return;
        ITEST_CHECK(r == MOAT_OK, "publish of message %u at QoS %u: %s (state %s)", next_num,
                    (unsigned)qos, moat_strerror(r),
                    itest_state_name(moat_mqtt_get_state(&pub.mqtt)));
        next_num++;
    }
}

static bool cond_published_half(void *arg)
{
    (void)arg;
    publish_more();
    return next_num >= limit && distinct >= N_MSGS / 4;
}

static bool cond_both_down(void *arg)
{
    (void)arg;
    publish_more();
    return moat_mqtt_get_state(&pub.mqtt) == MOAT_MQTT_BACKOFF &&
           moat_mqtt_get_state(&sub.mqtt) == MOAT_MQTT_BACKOFF;
}

static bool cond_both_connected(void *arg)
{
    (void)arg;
    publish_more();
    return moat_mqtt_get_state(&pub.mqtt) == MOAT_MQTT_CONNECTED &&
           moat_mqtt_get_state(&sub.mqtt) == MOAT_MQTT_CONNECTED;
}

static bool cond_all_done(void *arg)
{
    (void)arg;
    publish_more();
    return distinct == N_MSGS && pub.n_published >= N_MSGS;
}

static void make_client(itest_client *c, const char *role, const char *pid_str, size_t window)
{
    char id[96];
    itest_client_opts o;
    memset(&o, 0, sizeof(o));
    snprintf(id, sizeof(id), "itest-sess-%s-q%u-%s", role, (unsigned)qos, pid_str);
    o.client_id = id;
    o.clean_session = false;
    o.keepalive_s = 10;
    o.backoff_base_ms = 200;
    o.backoff_cap_ms = BACKOFF_CAP_MS;
    o.window = window;
    o.store_size = window * 256;
    itest_client_init(c, &o, broker.port);
}

static const itest_event *last_connected(const itest_client *c)
{
    return itest_last_event(c, MOAT_MQTT_EV_CONNECTED);
}

int main(int argc, char **argv)
{
    char pid_str[32], name[64];
    if (argc != 2 || (strcmp(argv[1], "1") != 0 && strcmp(argv[1], "2") != 0)) {
        fprintf(stderr, "usage: %s 1|2 (the QoS)\n", argv[0]);
        return 2;
    }
    qos = (uint8_t)atoi(argv[1]);
    snprintf(name, sizeof(name), "integration_session_qos%u", (unsigned)qos);
    itest_begin(name, 100);
    snprintf(pid_str, sizeof(pid_str), "%ld", (long)getpid());
    snprintf(topic, sizeof(topic), "itest/%s/session/q%u", pid_str, (unsigned)qos);
    itest_broker_start(&broker, NULL);

    /* The publisher's window (32) is larger than the engine's default send
     * window (max_inflight 20), so at the stop some messages are sent and
     * unacknowledged and others still wait in the store. */
    make_client(&sub, "sub", pid_str, 32);
    make_client(&pub, "pub", pid_str, 32);
    sub.on_message = on_message;
    itest_client *all[] = { &sub, &pub };

    itest_client_start(&sub);
    itest_wait_connected(all, 2, &sub, 5000);
    ITEST_CHECK(!sub.session_present, "a fresh broker reported a session for the subscriber");
    itest_subscribe(all, 2, &sub, topic, qos, 5000);
    itest_client_start(&pub);
    itest_wait_connected(all, 2, &pub, 5000);

    /* First half, steadily. */
    uint32_t t0 = moat_clock_ms();
    limit = N_MSGS / 2;
    if (!itest_run_until(all, 2, 20000, cond_published_half, NULL))
        ITEST_FAIL("first half: published %u of %u, the subscriber has %u after 20 s", next_num,
                   limit, distinct);

    /* Burst: fill the window, push it into the socket, kill the broker. */
    limit = N_MSGS;
    publish_more();
    itest_run_once(all, 2);
    size_t pub_inflight = moat_mqtt_inflight_used(&pub.mqtt);
    size_t sub_inflight = moat_mqtt_inflight_used(&sub.mqtt);
    unsigned acked_before = pub.n_published, got_before = distinct;
    itest_broker_stop(&broker);
    itest_log("broker stopped: publisher had published %u (%u acknowledged, %zu window slots in "
              "use), subscriber had %u distinct (%zu window slots in use)",
              next_num, acked_before, pub_inflight, got_before, sub_inflight);
    ITEST_CHECK(pub_inflight > 0 || next_num - acked_before > 0,
                "nothing was in flight when the broker stopped; the test proves nothing");

    /* Down: both must notice and back off; the publisher keeps queueing. */
    if (!itest_run_until(all, 2, 5000, cond_both_down, NULL))
        ITEST_FAIL("5 s after the broker stopped: publisher %s, subscriber %s (expected BACKOFF)",
                   itest_state_name(moat_mqtt_get_state(&pub.mqtt)),
                   itest_state_name(moat_mqtt_get_state(&sub.mqtt)));
    itest_log("both clients in BACKOFF (publisher: %s, subscriber: %s)",
              moat_strerror(pub.last_disconnect_err), moat_strerror(sub.last_disconnect_err));
    unsigned pub_conn = pub.n_connected, sub_conn = sub.n_connected;
    itest_run_until(all, 2, DOWN_MS, cond_all_done, NULL);

    uint32_t t_restart = moat_clock_ms();
    itest_broker_restart(&broker);
    /* The engines must come back on their own: at most one backoff cap
     * (plus a failed attempt's round trip) after the broker is up. */
    uint32_t bound = BACKOFF_CAP_MS + 2000u;
    if (!itest_run_until(all, 2, bound, cond_both_connected, NULL))
        ITEST_FAIL("%u ms after the broker restarted: publisher %s, subscriber %s", bound,
                   itest_state_name(moat_mqtt_get_state(&pub.mqtt)),
                   itest_state_name(moat_mqtt_get_state(&sub.mqtt)));
    itest_log("both reconnected %u ms after the restart (attempts: publisher %u, subscriber %u)",
              moat_clock_ms() - t_restart, pub.n_attempts, sub.n_attempts);
    ITEST_CHECK(pub.n_connected == pub_conn + 1 && sub.n_connected == sub_conn + 1,
                "CONNECTED counts: publisher %u -> %u, subscriber %u -> %u", pub_conn,
                pub.n_connected, sub_conn, sub.n_connected);
    ITEST_CHECK(last_connected(&pub)->session_present && last_connected(&sub)->session_present,
                "after the restart session_present: publisher %d, subscriber %d (the broker "
                "should have restored both sessions from %s/mosquitto.db)",
                (int)last_connected(&pub)->session_present,
                (int)last_connected(&sub)->session_present, broker.dir);

    /* Generous: after a restart Mosquitto 2.0.11 sends a restored session's
     * queue without regard to max_inflight_messages, and an engine that
     * drops the link when its window overflows needs many rounds. */
    uint32_t t_drain = moat_clock_ms(), t_progress = t_drain;
    unsigned seen = distinct + pub.n_published;
    bool done = false, stalled = false;
    while (!done && !stalled && moat_clock_ms() - t_drain < DRAIN_MS) {
        done = itest_run_until(all, 2, 1000, cond_all_done, NULL);
        if (distinct + pub.n_published != seen) {
            seen = distinct + pub.n_published;
            t_progress = moat_clock_ms();
        }
        stalled = moat_clock_ms() - t_progress >= STALL_MS;
    }
    if (!done) {
        unsigned shown = 0;
        char list[400];
        size_t o = 0;
        list[0] = '\0';
        for (unsigned i = 0; i < N_MSGS && shown < 40; i++) {
            if (counts[i] == 0) {
                o += (size_t)snprintf(list + o, sizeof(list) - o, " %u", i);
                shown++;
            }
        }
        ITEST_FAIL("%s %u ms after the reconnect: %u of %u numbers received, publisher published %u "
                   "with %u acknowledged (%zu window slots in use); the subscriber "
                   "connected %u times. Missing:%s",
                   stalled ? "stalled (no progress for " STALL_TEXT "):" : "too slow:",
                   moat_clock_ms() - t_drain,
                   distinct, N_MSGS, next_num, pub.n_published,
                   moat_mqtt_inflight_used(&pub.mqtt), sub.n_connected, list);
    }
    /* Let late duplicates show up. */
    itest_run_until(all, 2, 500, NULL, NULL);
    uint32_t total_ms = moat_clock_ms() - t0;

    ITEST_CHECK(distinct == N_MSGS, "%u of %u received", distinct, N_MSGS);
    ITEST_CHECK(pub.n_published == N_MSGS,
                "the publisher got %u PUBLISHED events for %u messages", pub.n_published, N_MSGS);
    ITEST_CHECK(pub.n_dropped == 0, "%u messages DROPPED with a persistent session", pub.n_dropped);
    ITEST_CHECK(moat_mqtt_inflight_used(&pub.mqtt) == 0 && moat_mqtt_inflight_used(&sub.mqtt) == 0,
                "window slots still used at the end: publisher %zu, subscriber %zu",
                moat_mqtt_inflight_used(&pub.mqtt), moat_mqtt_inflight_used(&sub.mqtt));
    if (qos == 2) {
        ITEST_CHECK(duplicates == 0, "QoS 2: %u duplicate deliveries across the restart", duplicates);
    }
    unsigned dup_list_n = 0;
    char dups[200];
    size_t o = 0;
    dups[0] = '\0';
    for (unsigned i = 0; i < N_MSGS && dup_list_n < 20; i++)
        if (counts[i] > 1) {
            o += (size_t)snprintf(dups + o, sizeof(dups) - o, " %u(x%u)", i, counts[i]);
            dup_list_n++;
        }
    unsigned window_full = 0, other = 0;
    for (size_t i = 0; i < sub.n_events; i++) {
        const itest_event *d = &sub.events[i];
        if (d->type != MOAT_MQTT_EV_DISCONNECTED || d->at_ms < t_restart)
            continue;
        if (d->err == MOAT_ERR_WINDOW_FULL)
            window_full++;
        else
            other++;
    }
    itest_log("subscriber after the restart: %u links dropped with MOAT_ERR_WINDOW_FULL, %u "
              "other disconnects, %u TCP attempts in all",
              window_full, other, sub.n_attempts);
    itest_log("RESULT QoS %u: %u/%u numbers received, none lost, %u duplicates%s%s; broker down "
              "%u+ ms; whole exchange %u ms",
              (unsigned)qos, distinct, N_MSGS, duplicates, duplicates ? ":" : "", dups, DOWN_MS,
              total_ms);

    itest_disconnect(all, 2, &sub, 5000);
    itest_disconnect(all, 2, &pub, 5000);
    itest_client_free(&sub);
    itest_client_free(&pub);
    itest_broker_destroy(&broker);
    return itest_pass();
}
