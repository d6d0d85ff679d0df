/*
 * test_connect.c - connect to a real Mosquitto and disconnect cleanly.
 *
 * Checks what the broker saw (protocol 3.1.1, clean session flag, keep-alive,
 * a DISCONNECT before the close), that the engine ends IDLE after a
 * requested DISCONNECT and can be started again, and that session_present
 * follows the clean_session flag across connections.
 */
#include "broker.h"
#include "client.h"
#include "itest.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static itest_broker broker;

static void connect_once(const char *id, bool clean, bool want_session_present)
{
    itest_client c;
    itest_client_opts o;
    memset(&o, 0, sizeof(o));
    o.client_id = id;
    o.clean_session = clean;
    o.keepalive_s = 30;
    itest_client_init(&c, &o, broker.port);
    itest_client *all[] = { &c };
    itest_client_start(&c);
    itest_wait_connected(all, 1, &c, 5000);
    ITEST_EXPECT(c.session_present == want_session_present,
                "%s (clean_session=%d): CONNACK session_present=%d, expected %d", id,
                (int)clean, (int)c.session_present, (int)want_session_present);
    itest_disconnect(all, 1, &c, 5000);
    itest_client_free(&c);
}

int main(void)
{
    char id[64], line[160];
    itest_begin("integration_connect", 50);
    itest_broker_start(&broker, NULL);
    snprintf(id, sizeof(id), "itest-conn-%ld", (long)getpid());

    itest_client c;
    itest_client_opts o;
    memset(&o, 0, sizeof(o));
    o.client_id = id;
    o.clean_session = true;
    o.keepalive_s = 30;
    itest_client_init(&c, &o, broker.port);
    itest_client *all[] = { &c };

    itest_client_start(&c);
    ITEST_CHECK(moat_mqtt_get_state(&c.mqtt) == MOAT_MQTT_BACKOFF,
                "after moat_mqtt_start the engine is %s, not BACKOFF",
                itest_state_name(moat_mqtt_get_state(&c.mqtt)));
    uint32_t t0 = moat_clock_ms();
    itest_wait_connected(all, 1, &c, 5000);
    itest_log("connected in %u ms", moat_clock_ms() - t0);
    ITEST_CHECK(c.n_attempts == 1, "%u TCP attempts to connect to a running broker", c.n_attempts);
    ITEST_CHECK(c.n_connected == 1, "%u CONNECTED events", c.n_connected);
    ITEST_CHECK(!c.session_present, "clean session, yet CONNACK says session present");

    /* The broker saw a 3.1.1 CONNECT (p2) with clean session and keep-alive 30. */
    snprintf(line, sizeof(line), "as %s (p2, c1, k30)", id);
    ITEST_CHECK(itest_broker_log_wait(&broker, line, 1, 3000),
                "the broker log has no line with \"%s\"", line);
    ITEST_CHECK(itest_broker_log_count(&broker, "No will message specified") == 1,
                "the broker saw a will that was not configured");

    /* Stay connected a moment: nothing should happen. */
    itest_run_until(all, 1, 500, NULL, NULL);
    ITEST_CHECK(moat_mqtt_get_state(&c.mqtt) == MOAT_MQTT_CONNECTED && c.n_disconnected == 0,
                "the link dropped while idle: state %s, last error %s",
                itest_state_name(moat_mqtt_get_state(&c.mqtt)),
                moat_strerror(c.last_disconnect_err));

    t0 = moat_clock_ms();
    itest_disconnect(all, 1, &c, 5000);
    itest_log("disconnected in %u ms", moat_clock_ms() - t0);
    ITEST_CHECK(c.n_disconnected == 1, "%u DISCONNECTED events for one requested DISCONNECT",
                c.n_disconnected);
    /* mqtt.h: link_down(MOAT_OK) marks the requested close; the event
     * should say so rather than blame the peer. */
    ITEST_EXPECT(c.last_disconnect_err == MOAT_OK,
                 "DISCONNECTED after a requested DISCONNECT carries %s (%d), expected MOAT_OK: "
                 "an application cannot tell its own close from a lost link",
                 moat_strerror(c.last_disconnect_err), c.last_disconnect_err);
    snprintf(line, sizeof(line), "Received DISCONNECT from %s", id);
    ITEST_CHECK(itest_broker_log_wait(&broker, line, 1, 3000),
                "the broker never received a DISCONNECT from %s", id);
    snprintf(line, sizeof(line), "Client %s disconnected.", id);
    ITEST_CHECK(itest_broker_log_wait(&broker, line, 1, 3000),
                "the broker did not log a clean disconnect (\"%s\")", line);
    ITEST_CHECK(c.n_errors == 0, "%u ERROR events, last %s", c.n_errors,
                moat_strerror(c.last_error_err));

    /* IDLE stays IDLE: no reconnect attempt on its own. */
    c.active = true;
    itest_run_until(all, 1, 1500, NULL, NULL);
    ITEST_CHECK(c.n_attempts == 1 && moat_mqtt_get_state(&c.mqtt) == MOAT_MQTT_IDLE,
                "after a requested DISCONNECT the client reconnected by itself "
                "(%u attempts, state %s)",
                c.n_attempts, itest_state_name(moat_mqtt_get_state(&c.mqtt)));

    /* The same client object can be started again. */
    itest_client_start(&c);
    itest_wait_connected(all, 1, &c, 5000);
    ITEST_CHECK(c.n_connected == 2, "%u CONNECTED events after the restart", c.n_connected);
    itest_disconnect(all, 1, &c, 5000);
    itest_client_free(&c);

    /* session_present follows clean_session. */
    snprintf(id, sizeof(id), "itest-conn-persist-%ld", (long)getpid());
    connect_once(id, false, false);
    connect_once(id, false, true);
    connect_once(id, true, false);
    connect_once(id, false, false);

    itest_broker_destroy(&broker);
    return itest_pass();
}
