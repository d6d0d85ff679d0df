/*
 * client.h - a moat MQTT client driven over real TCP, for tests.
 *
 * An itest_client wraps a moat_mqtt_client and a moat_tcp, and records what
 * the engine reports: every event with its time, and every complete incoming
 * message (pieces of a streamed message are joined and checked for order).
 * itest_run_until() drives any number of clients in one poll() loop, the way
 * an application would:
 *   connect_due -> moat_tcp_connect_start / moat_tcp_connect_poll -> link_up;
 *   moat_mqtt_pump while linked; on a pump error moat_tcp_close (the engine
 *   has already gone to BACKOFF); after a requested DISCONNECT is drained,
 *   moat_tcp_close + moat_mqtt_link_down(MOAT_OK);
 *   poll() bounded by moat_mqtt_next_timeout.
 */
#ifndef ITEST_CLIENT_H
#define ITEST_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/mqtt.h"
#include "moat/posix.h"

/* Pseudo event type recorded when the driver opens a TCP connection. */
#define ITEST_EV_ATTEMPT 100

typedef struct itest_event {
    int type;              /* moat_mqtt_event_type or ITEST_EV_ATTEMPT */
    int err;
    uint16_t packet_id;
    bool session_present;
    uint32_t at_ms;        /* moat_clock_ms() */
} itest_event;

typedef struct itest_msg {
    char *topic;           /* NUL-terminated copy */
    uint8_t *payload;      /* copy (never NULL) */
    size_t len;
    uint8_t qos;
    bool retain;
    bool dup;
    uint32_t at_ms;
} itest_msg;

typedef struct itest_client itest_client;

typedef void (*itest_msg_fn)(itest_client *c, const itest_msg *m, void *arg);

typedef struct itest_client_opts {
    const char *client_id;       /* required */
    bool clean_session;
    uint16_t keepalive_s;        /* 0: 30 */
    const char *will_topic;      /* NULL: no will */
    const char *will_payload;
    uint8_t will_qos;
    bool will_retain;
    uint32_t connack_timeout_ms; /* 0: engine default */
    uint32_t ping_timeout_ms;
    uint32_t backoff_base_ms;    /* 0: 100 (tests want quick retries) */
    uint32_t backoff_cap_ms;     /* 0: 1000 */
    uint32_t backoff_stable_ms;
    size_t tx_size;              /* 0: 16384 */
    size_t rx_size;              /* 0: 4096 */
    size_t store_size;           /* 0: 65536 */
    size_t window;               /* 0: 32 */
    uint8_t large;               /* moat_mqtt_large */
    bool keep_messages;          /* keep copies in msgs[] (else only the hook) */
} itest_client_opts;

struct itest_client {
    char id[128];
    moat_mqtt_config cfg;
    moat_mqtt_client mqtt;
    moat_mqtt_buffers bufs;
    moat_tcp tcp;
    moat_transport tr;
    char host[64];
    uint16_t port;
    char will_topic[256];
    char will_payload[256];
    bool linked;           /* link_up was called for the open socket */
    bool active;           /* driven by itest_run_until */
    bool keep_messages;
    uint32_t connect_started_ms;

    itest_event *events;
    size_t n_events, cap_events;
    itest_msg *msgs;
    size_t n_msgs, cap_msgs;
    itest_msg partial;     /* a streamed message being joined */
    bool in_partial;

    unsigned n_attempts, n_connected, n_disconnected, n_published, n_dropped;
    unsigned n_suback, n_unsuback, n_errors, n_messages;
    int last_disconnect_err;
    int last_error_err;
    bool session_present;  /* of the last CONNECTED */
    uint8_t suback_codes[16];
    size_t suback_count;
    int suback_err;

    itest_msg_fn on_message;
    void *on_message_arg;
};

/* Set up a client for 127.0.0.1:port; nothing is sent until start. Fails
 * the test if moat_mqtt_init refuses the settings. */
void itest_client_init(itest_client *c, const itest_client_opts *o, uint16_t port);

/* moat_mqtt_start: IDLE -> BACKOFF with the first attempt due now. */
void itest_client_start(itest_client *c);

/* Close the socket without DISCONNECT and stop driving the client, as if
 * the device lost power. The engine is not told. */
void itest_client_kill(itest_client *c);

/* Close the socket and free everything. */
void itest_client_free(itest_client *c);

/* Drive the clients until cond(arg) is true (checked after every round) or
 * timeout_ms passes; returns whether cond held. cond NULL: run the full time
 * and return true. */
typedef bool (*itest_cond)(void *arg);
bool itest_run_until(itest_client *const *cs, size_t n, uint32_t timeout_ms, itest_cond cond,
                     void *arg);

/* One round without waiting: connect/pump every client once. */
void itest_run_once(itest_client *const *cs, size_t n);

/* Conditions taking an itest_client *. */
bool itest_cond_connected(void *client);
bool itest_cond_idle(void *client);

/* Drive until c is CONNECTED; fails the test after timeout_ms. */
void itest_wait_connected(itest_client *const *cs, size_t n, itest_client *c,
                          uint32_t timeout_ms);

/* Subscribe c to one filter and drive until SUBACK; fails the test on a
 * refused filter, a granted QoS other than qos, or timeout. */
void itest_subscribe(itest_client *const *cs, size_t n, itest_client *c, const char *filter,
                     uint8_t qos, uint32_t timeout_ms);

/* Publish; returns the engine's result (does not fail the test). */
moat_err itest_publish(itest_client *c, const char *topic, const void *payload, size_t len,
                       uint8_t qos, bool retain, uint16_t *packet_id);

/* Queue DISCONNECT and drive until the client is IDLE with its socket
 * closed; fails the test after timeout_ms. */
void itest_disconnect(itest_client *const *cs, size_t n, itest_client *c, uint32_t timeout_ms);

/* The last event of this type (NULL if none). */
const itest_event *itest_last_event(const itest_client *c, int type);

/* Names for messages. */
const char *itest_event_name(int type);
const char *itest_state_name(int state);

/* Hex dump of at most 64 bytes, for failure messages (static buffer). */
const char *itest_hex(const void *p, size_t len);

#endif
