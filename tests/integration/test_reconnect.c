/*
 * test_reconnect.c - the broker goes away and comes back.
 *
 * The broker is stopped (SIGTERM: it closes every connection). The engine
 * must report DISCONNECTED, go to BACKOFF, retry with delays within the
 * backoff bound (full jitter: each delay in [0, min(cap, base * 2^n)]), and
 * connect again by itself within one backoff cap of the broker's return.
 * A clean session is used, so the subscription must be made again: the
 * test then checks the new link carries messages.
 */
#include "broker.h"
#include "client.h"
#include "itest.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BASE_MS 100u
#define CAP_MS 800u
#define DOWN_MS 3000u
#define SLACK_MS 300u

static itest_broker broker;

static bool cond_backoff(void *arg)
{
    itest_client *c = arg;
    return c->n_disconnected > 0 && moat_mqtt_get_state(&c->mqtt) == MOAT_MQTT_BACKOFF;
}

static bool cond_has_msg(void *arg)
{
    itest_client *c = arg;
    return c->n_msgs > 0;
}

int main(void)
{
    char id[64], topic[128];
    itest_begin("integration_reconnect", 50);
    snprintf(id, sizeof(id), "itest-reconnect-%ld", (long)getpid());
    snprintf(topic, sizeof(topic), "itest/%ld/reconnect", (long)getpid());
    itest_broker_start(&broker, NULL);

    itest_client c;
    itest_client_opts o;
    memset(&o, 0, sizeof(o));
    o.client_id = id;
    o.clean_session = true;
    o.keepalive_s = 30;
    o.backoff_base_ms = BASE_MS;
    o.backoff_cap_ms = CAP_MS;
    o.keep_messages = true;
    itest_client_init(&c, &o, broker.port);
    itest_client *all[] = { &c };
    itest_client_start(&c);
    itest_wait_connected(all, 1, &c, 5000);
    unsigned attempts0 = c.n_attempts;

    uint32_t t_stop = moat_clock_ms();
    itest_broker_stop(&broker);
    if (!itest_run_until(all, 1, 2000, cond_backoff, &c))
        ITEST_FAIL("2 s after the broker closed the link the engine is %s with %u DISCONNECTED "
                   "events", itest_state_name(moat_mqtt_get_state(&c.mqtt)), c.n_disconnected);
    /* A copy: the event array grows (and moves) while the client runs. */
    const itest_event lost = *itest_last_event(&c, MOAT_MQTT_EV_DISCONNECTED);
    const itest_event *e = &lost;
    itest_log("DISCONNECTED %u ms after the broker stopped: %s", e->at_ms - t_stop,
              moat_strerror(e->err));
    ITEST_CHECK(e->err == MOAT_ERR_CLOSED || e->err == MOAT_ERR_IO,
                "the broker closed the connection, but the engine reports %s (%d)",
                moat_strerror(e->err), e->err);
    ITEST_CHECK(c.n_disconnected == 1, "%u DISCONNECTED events for one lost link",
                c.n_disconnected);

    /* Keep it down: refused attempts, spaced by the backoff. */
    itest_run_until(all, 1, DOWN_MS, NULL, NULL);
    unsigned refused = c.n_attempts - attempts0;
    ITEST_CHECK(refused >= 3,
                "only %u connection attempts in %u ms with backoff base %u ms, cap %u ms", refused,
                DOWN_MS, BASE_MS, CAP_MS);
    /* The engine reports each refused attempt as DISCONNECTED too; they must
     * say why. */
    for (size_t i = 0; i < c.n_events; i++) {
        const itest_event *d = &c.events[i];
        if (d->type == MOAT_MQTT_EV_DISCONNECTED && d->at_ms > e->at_ms)
            ITEST_CHECK(d->err == MOAT_ERR_CONNECT,
                        "a refused attempt reported DISCONNECTED with %s (%d), expected "
                        "MOAT_ERR_CONNECT", moat_strerror(d->err), d->err);
    }
    uint32_t prev = e->at_ms, max_gap = 0;
    unsigned k = 0;
    for (size_t i = 0; i < c.n_events; i++) {
        const itest_event *a = &c.events[i];
        if (a->type != ITEST_EV_ATTEMPT || a->at_ms < e->at_ms)
            continue;
        uint32_t gap = a->at_ms - prev;
        /* Delay n is at most min(cap, base * 2^n); allow n counted from 1. */
        uint32_t limit = BASE_MS << (k + 1 < 10 ? k + 1 : 10);
        if (limit > CAP_MS)
            limit = CAP_MS;
        ITEST_CHECK(gap <= limit + SLACK_MS,
                    "attempt %u came %u ms after the previous one; the backoff bound for it is "
                    "min(cap %u, base %u * 2^%u) = %u ms",
                    k, gap, CAP_MS, BASE_MS, k + 1, limit);
        if (gap > max_gap)
            max_gap = gap;
        prev = a->at_ms;
        k++;
    }
    ITEST_CHECK(moat_mqtt_get_state(&c.mqtt) == MOAT_MQTT_BACKOFF, "state %s while the broker is down",
                itest_state_name(moat_mqtt_get_state(&c.mqtt)));
    itest_log("%u refused attempts while the broker was down, largest gap %u ms (cap %u ms)",
              refused, max_gap, CAP_MS);

    itest_broker_restart(&broker);
    uint32_t t_up = moat_clock_ms();
    itest_wait_connected(all, 1, &c, CAP_MS + SLACK_MS + 500u);
    uint32_t back = moat_clock_ms() - t_up;
    itest_log("connected again %u ms after the broker was back (bound %u ms)", back, CAP_MS + SLACK_MS);
    ITEST_CHECK(back <= CAP_MS + SLACK_MS, "reconnected %u ms after the broker was back; bound %u ms",
                back, CAP_MS + SLACK_MS);
    ITEST_CHECK(c.n_connected == 2, "%u CONNECTED events", c.n_connected);

    /* The new link works. */
    itest_subscribe(all, 1, &c, topic, 1, 5000);
    ITEST_CHECK(itest_publish(&c, topic, "again", 5, 1, false, NULL) == MOAT_OK, "publish refused");
    ITEST_CHECK(itest_run_until(all, 1, 5000, cond_has_msg, &c), "no message over the new link");
    ITEST_CHECK(c.msgs[0].len == 5 && memcmp(c.msgs[0].payload, "again", 5) == 0,
                "got %s", itest_hex(c.msgs[0].payload, c.msgs[0].len));

    itest_disconnect(all, 1, &c, 5000);
    itest_client_free(&c);
    itest_broker_destroy(&broker);
    return itest_pass();
}
