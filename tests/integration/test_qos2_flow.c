/*
 * test_qos2_flow.c - QoS 2 bursts larger than the other side's limit.
 *
 * MQTT 3.1.1 has no flow control, but both ends have limits:
 *  A. Outgoing: Mosquitto 2.0 accepts at most max_inflight_messages (20 by
 *     default) incomplete incoming QoS 2 messages per client and silently
 *     drops the rest (PUBREC reason 0x97, which 3.1.1 cannot carry). A moat
 *     publisher with a 32-slot window and the default send window
 *     (max_inflight) sends 100 QoS 2 messages as fast as it can; every one
 *     of them must reach the subscriber.
 *  B. Incoming: a persistent subscriber with a 16-slot window comes back to
 *     100 queued QoS 2 messages; Mosquitto sends up to 20 at once, more than
 *     the window holds. Every one must arrive exactly once, in bounded time;
 *     how often the link was dropped on the way is reported.
 *  C. The same, but the link dies after the queued messages were received
 *     and before any PUBREC left (read by hand, replies never sent). The
 *     broker then sends them again with DUP set; QoS 2 still means each
 *     arrives once, also those beyond the window.
 */
#include "broker.h"
#include "client.h"
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define N_MSGS 100u

static itest_broker broker;
static char pid_str[32];
static char topic_a[128], topic_b[128], topic_c[128];

typedef struct tally {
    unsigned counts[N_MSGS];
    unsigned distinct, duplicates;
} tally;

static tally ta, tb, tc;

static void on_message(itest_client *c, const itest_msg *m, void *arg)
{
    tally *t = arg;
    char buf[16];
    size_t n = m->len < sizeof(buf) - 1 ? m->len : sizeof(buf) - 1;
    memcpy(buf, m->payload, n);
    buf[n] = '\0';
    char *end;
    unsigned long v = strtoul(buf, &end, 10);
    ITEST_CHECK(end != buf && *end == '\0' && v < N_MSGS && m->qos == 2,
                "%s got an unexpected message: %s at QoS %u", c->id, itest_hex(m->payload, m->len),
                (unsigned)m->qos);
    if (t->counts[v]++ == 0)
        t->distinct++;
    else
        t->duplicates++;
}

static void make_client(itest_client *c, const char *role, bool clean, size_t window)
{
    char id[96];
    itest_client_opts o;
    memset(&o, 0, sizeof(o));
    snprintf(id, sizeof(id), "itest-q2flow-%s-%s", role, pid_str);
    o.client_id = id;
    o.clean_session = clean;
    o.window = window;
    o.backoff_base_ms = 100;
    o.backoff_cap_ms = 1000;
    itest_client_init(c, &o, broker.port);
}

typedef struct pub_job {
    itest_client *pub;
    const char *topic;
    unsigned next;
} pub_job;

static bool publish_all(void *arg)
{
    pub_job *j = arg;
    char buf[16];
    while (j->next < N_MSGS) {
        int n = snprintf(buf, sizeof(buf), "%u", j->next);
        moat_err r = itest_publish(j->pub, j->topic, buf, (size_t)n, 2, false, NULL);
        if (r == MOAT_ERR_WINDOW_FULL)
            break;
        ITEST_CHECK(r == MOAT_OK, "publish %u: %s", j->next, moat_strerror(r));
        j->next++;
    }
    return j->next == N_MSGS && j->pub->n_published == N_MSGS;
}

static bool cond_all(void *arg)
{
    tally *t = arg;
    return t->distinct == N_MSGS;
}

static void part_a(void)
{
    itest_client sub, pub;
    make_client(&sub, "a-sub", true, 64);
    make_client(&pub, "a-pub", true, 32);
    sub.on_message = on_message;
    sub.on_message_arg = &ta;
    itest_client *all[] = { &sub, &pub };
    itest_client_start(&sub);
    itest_client_start(&pub);
    itest_wait_connected(all, 2, &sub, 5000);
    itest_wait_connected(all, 2, &pub, 5000);
    itest_subscribe(all, 2, &sub, topic_a, 2, 5000);

    pub_job j = { &pub, topic_a, 0 };
    uint32_t t0 = moat_clock_ms();
    ITEST_CHECK(itest_run_until(all, 2, 20000, publish_all, &j),
                "A: %u of %u QoS 2 messages completed (PUBCOMP) in 20 s", pub.n_published, N_MSGS);
    itest_run_until(all, 2, 3000, cond_all, &ta);
    size_t refused = itest_broker_log_count(&broker, "rc151)");
    itest_log("A: publisher window 32: %u of %u delivered in %u ms, %u duplicates; the broker "
              "answered %zu PUBLISH with PUBREC reason 0x97 (quota exceeded)",
              ta.distinct, N_MSGS, moat_clock_ms() - t0, ta.duplicates, refused);
    ITEST_EXPECT(ta.distinct == N_MSGS,
                 "A: the engine reported all %u QoS 2 messages PUBLISHED (PUBCOMP), but only %u "
                 "reached the subscriber. Mosquitto refused %zu of them with PUBREC reason 0x97 "
                 "(quota exceeded), which MQTT 3.1.1 cannot carry, because more than its "
                 "max_inflight_messages (20) QoS 2 messages were in flight from one client "
                 "(window 32, max_inflight default): the messages were lost silently",
                 N_MSGS, ta.distinct, refused);
    ITEST_EXPECT(ta.duplicates == 0, "A: %u duplicates at QoS 2", ta.duplicates);
    itest_disconnect(all, 2, &sub, 5000);
    itest_disconnect(all, 2, &pub, 5000);
    itest_client_free(&sub);
    itest_client_free(&pub);
}

static void part_b(void)
{
    itest_client sub, pub;
    make_client(&sub, "b-sub", false, 16);
    make_client(&pub, "b-pub", true, 10);
    sub.on_message = on_message;
    sub.on_message_arg = &tb;
    itest_client *all[] = { &sub, &pub };
    itest_client_start(&sub);
    itest_wait_connected(all, 2, &sub, 5000);
    itest_subscribe(all, 2, &sub, topic_b, 2, 5000);
    itest_disconnect(all, 2, &sub, 5000);

    /* Queue 100 QoS 2 messages for the offline subscriber. */
    itest_client_start(&pub);
    itest_wait_connected(all, 2, &pub, 5000);
    pub_job j = { &pub, topic_b, 0 };
    ITEST_CHECK(itest_run_until(all, 2, 20000, publish_all, &j),
                "B: %u of %u QoS 2 messages completed in 20 s", pub.n_published, N_MSGS);

    unsigned conn0 = sub.n_connected, attempts0 = sub.n_attempts;
    uint32_t t0 = moat_clock_ms();
    itest_client_start(&sub);
    bool ok = itest_run_until(all, 2, 30000, cond_all, &tb);
    itest_run_until(all, 2, 500, NULL, NULL);
    unsigned window_full = 0;
    for (size_t i = 0; i < sub.n_events; i++)
        if (sub.events[i].type == MOAT_MQTT_EV_DISCONNECTED &&
            sub.events[i].err == MOAT_ERR_WINDOW_FULL)
            window_full++;
    itest_log("B: subscriber window 16, 100 queued: %u delivered in %u ms, %u duplicates, "
              "%u connections (%u dropped with MOAT_ERR_WINDOW_FULL), %u TCP attempts, "
              "%u ERROR events (%s)",
              tb.distinct, moat_clock_ms() - t0, tb.duplicates, sub.n_connected - conn0,
              window_full, sub.n_attempts - attempts0, sub.n_errors,
              sub.n_errors ? moat_strerror(sub.last_error_err) : "none");
    ITEST_EXPECT(ok, "B: only %u of %u queued QoS 2 messages arrived within 30 s", tb.distinct,
                 N_MSGS);
    ITEST_EXPECT(tb.duplicates == 0, "B: %u duplicates at QoS 2", tb.duplicates);
    if (moat_mqtt_get_state(&sub.mqtt) == MOAT_MQTT_CONNECTED)
        itest_disconnect(all, 2, &sub, 5000);
    itest_disconnect(all, 2, &pub, 5000);
    itest_client_free(&sub);
    itest_client_free(&pub);
}

typedef struct count_wait {
    itest_client *c;
    unsigned n;
} count_wait;

/* Open the link by hand, send CONNECT, then only read: feed everything to
 * the engine and never send its replies (PUBRECs), until `want` messages
 * were delivered. Then the link "dies". */
static void receive_without_replies(itest_client *c, unsigned want)
{
    uint32_t start = moat_clock_ms();
    moat_err r = moat_tcp_connect_start(&c->tcp, "127.0.0.1", c->port);
    while (r == MOAT_ERR_WOULD_BLOCK && moat_clock_ms() - start < 5000) {
        moat_wait_fd(c->tcp.fd, true, 100);
        r = moat_tcp_connect_poll(&c->tcp);
    }
    ITEST_CHECK(r == MOAT_OK, "C: TCP connect: %s", moat_strerror(r));
    ITEST_CHECK(moat_mqtt_connect_due(&c->mqtt, moat_clock_ms()) ||
                    moat_mqtt_get_state(&c->mqtt) == MOAT_MQTT_BACKOFF,
                "C: the client is %s", itest_state_name(moat_mqtt_get_state(&c->mqtt)));
    ITEST_CHECK(moat_mqtt_link_up(&c->mqtt, moat_clock_ms()) == MOAT_OK, "C: link_up failed");
    size_t len;
    const uint8_t *out = moat_mqtt_output(&c->mqtt, &len);
    ITEST_CHECK(len > 0 && c->tr.send(c->tr.ctx, out, len) == (long)len, "C: CONNECT not sent");
    moat_mqtt_output_done(&c->mqtt, len, moat_clock_ms());
    uint8_t buf[4096];
    while (c->n_messages < want) {
        ITEST_CHECK(moat_clock_ms() - start < 10000, "C: only %u of %u messages in 10 s",
                    c->n_messages, want);
        moat_wait_fd(c->tcp.fd, false, 100);
        long n = c->tr.recv(c->tr.ctx, buf, sizeof(buf));
        if (n == MOAT_ERR_WOULD_BLOCK)
            continue;
        ITEST_CHECK(n > 0, "C: recv: %s", moat_strerror((int)n));
        size_t used = 0;
        r = moat_mqtt_input(&c->mqtt, buf, (size_t)n, &used, moat_clock_ms());
        ITEST_CHECK(r == MOAT_OK && used == (size_t)n, "C: input: %s (%zu of %ld used)",
                    moat_strerror(r), used, n);
    }
    moat_mqtt_output(&c->mqtt, &len);
    itest_log("C: %u messages delivered, %zu reply bytes never sent; the link dies now",
              c->n_messages, len);
    moat_tcp_close(&c->tcp);
    moat_mqtt_link_down(&c->mqtt, MOAT_ERR_CLOSED, moat_clock_ms());
}

static void part_c(void)
{
    itest_client sub, pub;
    make_client(&sub, "c-sub", false, 4);
    make_client(&pub, "c-pub", true, 10);
    sub.on_message = on_message;
    sub.on_message_arg = &tc;
    itest_client *all[] = { &sub, &pub };
    itest_client_start(&sub);
    itest_wait_connected(all, 2, &sub, 5000);
    itest_subscribe(all, 2, &sub, topic_c, 2, 5000);
    itest_disconnect(all, 2, &sub, 5000);
    itest_client_start(&pub);
    itest_wait_connected(all, 2, &pub, 5000);
    pub_job j = { &pub, topic_c, 0 };
    ITEST_CHECK(itest_run_until(all, 2, 20000, publish_all, &j),
                "C: %u of %u QoS 2 messages completed in 20 s", pub.n_published, N_MSGS);

    /* Back, by hand: 20 messages arrive (more than the 4 slots), no PUBREC
     * leaves, the link drops. */
    ITEST_CHECK(moat_mqtt_start(&sub.mqtt, moat_clock_ms()) == MOAT_OK, "C: start failed");
    receive_without_replies(&sub, 20);
    unsigned first = tc.distinct;
    /* Then the driver reconnects it and everything flows. */
    sub.active = true;
    bool ok = itest_run_until(all, 2, 20000, cond_all, &tc);
    itest_run_until(all, 2, 500, NULL, NULL);
    char dups[200];
    size_t o = 0;
    dups[0] = '\0';
    for (unsigned i = 0; i < N_MSGS && o < sizeof(dups) - 12; i++)
        if (tc.counts[i] > 1)
            o += (size_t)snprintf(dups + o, sizeof(dups) - o, " %u", i);
    itest_log("C: %u delivered before the drop, %u of %u in the end, %u duplicates%s%s", first,
              tc.distinct, N_MSGS, tc.duplicates, tc.duplicates ? ":" : "", dups);
    ITEST_EXPECT(ok, "C: only %u of %u queued QoS 2 messages arrived", tc.distinct, N_MSGS);
    ITEST_EXPECT(tc.duplicates == 0,
                 "C: %u QoS 2 messages were delivered twice (%s): they arrived while the "
                 "4-slot window was full, were delivered untracked, their PUBREC was lost with "
                 "the link, and the broker's resend (DUP) was not recognised",
                 tc.duplicates, dups);
    if (moat_mqtt_get_state(&sub.mqtt) == MOAT_MQTT_CONNECTED)
        itest_disconnect(all, 2, &sub, 5000);
    itest_disconnect(all, 2, &pub, 5000);
    itest_client_free(&sub);
    itest_client_free(&pub);
}

int main(void)
{
    itest_begin("integration_qos2_flow", 80);
    snprintf(pid_str, sizeof(pid_str), "%ld", (long)getpid());
    snprintf(topic_a, sizeof(topic_a), "itest/%s/q2flow/a", pid_str);
    snprintf(topic_b, sizeof(topic_b), "itest/%s/q2flow/b", pid_str);
    snprintf(topic_c, sizeof(topic_c), "itest/%s/q2flow/c", pid_str);
    itest_broker_start(&broker, NULL);
    part_a();
    part_b();
    part_c();
    itest_broker_destroy(&broker);
    return itest_pass();
}
