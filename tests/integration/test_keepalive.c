/*
 * test_keepalive.c - keep-alive against a live and a frozen broker.
 *
 * With keep-alive 2 s the engine must ping an idle link so that Mosquitto
 * (which drops a client silent for 1.5 x keep-alive) keeps it. Then the
 * broker is frozen with SIGSTOP - its sockets stay open, so only the missing
 * PINGRESP can tell - and the engine must declare the link dead with
 * MOAT_ERR_KEEPALIVE within keep-alive + ping timeout (+ margin). After
 * SIGCONT the client must connect again by itself.
 */
#include "broker.h"
#include "client.h"
#include "itest.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define KEEPALIVE_S 2u
#define PING_TIMEOUT_MS 1000u
#define MARGIN_MS 1000u

static itest_broker broker;

static bool cond_disconnected(void *arg)
{
    itest_client *c = arg;
    return c->n_disconnected > 0;
}

int main(void)
{
    char id[64], line[160];
    itest_begin("integration_keepalive", 50);
    snprintf(id, sizeof(id), "itest-ka-%ld", (long)getpid());
    itest_broker_start(&broker, NULL);

    itest_client c;
    itest_client_opts o;
    memset(&o, 0, sizeof(o));
    o.client_id = id;
    o.clean_session = true;
    o.keepalive_s = KEEPALIVE_S;
    o.ping_timeout_ms = PING_TIMEOUT_MS;
    o.connack_timeout_ms = 3000;
    o.backoff_base_ms = 200;
    o.backoff_cap_ms = 1000;
    itest_client_init(&c, &o, broker.port);
    itest_client *all[] = { &c };
    itest_client_start(&c);
    itest_wait_connected(all, 1, &c, 5000);

    /* Idle for 3 keep-alive periods: the link must stay up through pings. */
    uint32_t idle_ms = 3u * KEEPALIVE_S * 1000u;
    itest_run_until(all, 1, idle_ms, cond_disconnected, &c);
    ITEST_CHECK(c.n_disconnected == 0,
                "an idle link with keep-alive %u s dropped after %u ms: %s", KEEPALIVE_S,
                c.events[c.n_events - 1].at_ms - c.events[0].at_ms,
                moat_strerror(c.last_disconnect_err));
    snprintf(line, sizeof(line), "Received PINGREQ from %s", id);
    size_t pings = itest_broker_log_count(&broker, line);
    ITEST_CHECK(pings >= 2, "the broker saw %zu PINGREQ in %u ms of idle time with keep-alive %u s",
                pings, idle_ms, KEEPALIVE_S);
    snprintf(line, sizeof(line), "Sending PINGRESP to %s", id);
    ITEST_CHECK(itest_broker_log_count(&broker, line) >= 2, "the broker sent no PINGRESP");
    itest_log("idle %u ms with keep-alive %u s: link up, %zu PINGREQ", idle_ms, KEEPALIVE_S, pings);

    /* Freeze the broker. */
    itest_broker_pause(&broker);
    uint32_t t_stop = moat_clock_ms();
    uint32_t bound = KEEPALIVE_S * 1000u + PING_TIMEOUT_MS + MARGIN_MS;
    if (!itest_run_until(all, 1, bound + 2000u, cond_disconnected, &c))
        ITEST_FAIL("the engine did not declare the link dead within %u ms of SIGSTOP "
                   "(keep-alive %u s, ping timeout %u ms); state %s",
                   bound + 2000u, KEEPALIVE_S, PING_TIMEOUT_MS,
                   itest_state_name(moat_mqtt_get_state(&c.mqtt)));
    const itest_event *e = itest_last_event(&c, MOAT_MQTT_EV_DISCONNECTED);
    uint32_t dead_after = e->at_ms - t_stop;
    itest_log("link declared dead %u ms after SIGSTOP: %s", dead_after, moat_strerror(e->err));
    ITEST_CHECK(e->err == MOAT_ERR_KEEPALIVE, "the link died with %s (%d), expected MOAT_ERR_KEEPALIVE",
                moat_strerror(e->err), e->err);
    ITEST_CHECK(dead_after <= bound,
                "dead after %u ms, more than keep-alive %u ms + ping timeout %u ms + %u ms margin",
                dead_after, KEEPALIVE_S * 1000u, PING_TIMEOUT_MS, MARGIN_MS);
    /* The last packet went out at most one keep-alive before SIGSTOP, so a
     * PINGRESP cannot be late before one ping timeout has passed. */
    ITEST_CHECK(dead_after + 50u >= PING_TIMEOUT_MS,
                "dead after only %u ms, before the ping timeout of %u ms could pass", dead_after,
                PING_TIMEOUT_MS);
    moat_mqtt_state st = moat_mqtt_get_state(&c.mqtt);
    ITEST_CHECK(st == MOAT_MQTT_BACKOFF || st == MOAT_MQTT_WAIT_CONNACK,
                "after the keep-alive failure the engine is %s", itest_state_name(st));

    /* Frozen broker: the kernel still accepts TCP, so attempts hang waiting
     * for CONNACK. Thaw it; the client must be back within the CONNACK
     * timeout plus a backoff cap. */
    itest_run_until(all, 1, 1000, NULL, NULL);
    itest_broker_resume(&broker);
    uint32_t t_cont = moat_clock_ms();
    itest_wait_connected(all, 1, &c, 3000 + 1000 + 2000);
    itest_log("connected again %u ms after SIGCONT (%u TCP attempts in all)", moat_clock_ms() - t_cont,
              c.n_attempts);
    ITEST_CHECK(c.n_connected == 2, "%u CONNECTED events", c.n_connected);

    itest_disconnect(all, 1, &c, 5000);
    itest_client_free(&c);
    itest_broker_destroy(&broker);
    return itest_pass();
}
