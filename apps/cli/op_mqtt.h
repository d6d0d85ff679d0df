/*
 * op_mqtt.h - the operator's MQTT session of the `moat` CLI: mutual TLS
 * (src/tls) to the broker with an operator certificate, the sans-I/O MQTT
 * engine, and a poll() loop step. Used by `moat ota push` and
 * `moat cert rotate`.
 *
 * The session subscribes to its filters after every (re)connection and
 * rides out a lost link (the engine's backoff); only a failure before the
 * first connection (refused certificate, refused CONNECT, no broker) ends
 * the run. One session per process: the engine's buffers are static.
 */
#ifndef MOAT_CLI_OP_MQTT_H
#define MOAT_CLI_OP_MQTT_H

#include "cli.h"

#include <stdbool.h>
#include <stdint.h>

#include "moat/mqtt.h"
#include "moat/posix.h"
#include "moat/tls.h"

/* Connection options shared by the commands that talk to the broker. */
typedef struct op_opts {
    const char *host;     /* --host, default localhost */
    const char *port;     /* --port, default 8883 */
    const char *cafile;   /* --cafile, default <pki>/ca.crt */
    const char *certfile; /* --cert, default <pki>/operators/<name>.crt */
    const char *keyfile;  /* --key, default <pki>/operators/<name>.key */
    const char *operator_name; /* --operator NAME; default: the only operator */
    const char *dir;      /* --dir, the PKI directory */
} op_opts;

#define OP_CLI_OPTS(o)                                                                     \
    {"host", CLI_OPT_VALUE, &(o).host}, {"port", CLI_OPT_VALUE, &(o).port},                \
        {"cafile", CLI_OPT_VALUE, &(o).cafile}, {"cert", CLI_OPT_VALUE, &(o).certfile},    \
        {"key", CLI_OPT_VALUE, &(o).keyfile}, {"operator", CLI_OPT_VALUE, &(o).operator_name}, \
        {"dir", CLI_OPT_VALUE, &(o).dir}

/* The usage lines of OP_CLI_OPTS. */
extern const char op_usage_conn[];

typedef void (*op_message_fn)(void *app, const moat_mqtt_event *ev);

#define OP_MAX_FILTERS 4

typedef struct op_mqtt {
    char host[256];
    uint16_t port;
    char cafile[PATH_MAX], certfile[PATH_MAX], keyfile[PATH_MAX];
    char client_id[40];
    moat_mqtt_config cfg;
    moat_mqtt_client c;
    moat_tls_config tcfg;
    moat_tls tls;
    bool tls_ready;
    moat_tcp tcp;
    moat_transport tcp_t, tls_t;
    int link;                 /* OP_LINK_* */
    uint32_t opened_ms;
    const char *filters[OP_MAX_FILTERS];
    size_t nfilters;
    uint16_t sub_id;
    bool subscribed;          /* SUBACK for this connection came */
    bool ever_subscribed;
    bool fatal;
    bool closing;             /* op_close: a lost link is expected */
    unsigned long dropped;    /* QoS 1 messages a lost session dropped */
    op_message_fn on_message;
    void *app;
    char why[300];
} op_mqtt;

/* Fill the file names from the options and the PKI; errors are printed. */
int op_resolve(op_mqtt *m, const op_opts *o);

/*
 * Connect (mutual TLS, clean session), subscribe to filters (QoS 1), and
 * return once the broker granted them (CLI_OK), or CLI_FAIL after printing
 * why (the broker refused our certificate, the subscription, or did not
 * answer within timeout_ms). filters must outlive the session.
 */
int op_connect(op_mqtt *m, const char *const *filters, size_t n, op_message_fn fn, void *app,
               uint32_t timeout_ms);

/* One loop turn: move bytes, run timers, reconnect when due, then wait for
 * the socket or at most wait_ms. CLI_FAIL (printed) only for a fatal error. */
int op_step(op_mqtt *m, uint32_t wait_ms);

/* Publish at QoS 1 (QoS 0 when qos is 0). MOAT_ERR_WINDOW_FULL or
 * MOAT_ERR_WOULD_BLOCK: step and try again. */
moat_err op_publish(op_mqtt *m, const char *topic, const void *payload, size_t len, uint8_t qos);

/* Connected and subscribed now. */
bool op_online(const op_mqtt *m);
/* Every QoS 1 message was acknowledged and nothing waits to go out. */
bool op_drained(const op_mqtt *m);

/* DISCONNECT (waiting up to 2 s for it to go out), close, free. */
void op_close(op_mqtt *m);

#endif
