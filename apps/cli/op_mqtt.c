/*
 * op_mqtt.c - the operator's MQTT session of the `moat` CLI (op_mqtt.h):
 * TCP, mutual TLS with the operator certificate, the MQTT engine, and one
 * poll() turn at a time. Nothing blocks but poll().
 */
#include "op_mqtt.h"

#include "pki.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "moat/timer.h"

enum { OP_LINK_CLOSED = 0, OP_LINK_TCP, OP_LINK_TLS, OP_LINK_UP };

#define OP_CONNECT_TIMEOUT_MS 10000u

/* Sized for image blocks of up to 64 KB going out, a window of them kept
 * for resending, and small messages coming in. */
static uint8_t tx_buf[192u * 1024u];
static uint8_t rx_buf[64u * 1024u];
static uint8_t store_buf[1024u * 1024u];
static moat_mqtt_inflight window[64];

const char op_usage_conn[] =
    "  --host NAME          the broker (default localhost); its certificate must name it\n"
    "  --port N             the broker's TLS port (default 8883)\n"
    "  --operator NAME      connect as operators/NAME.crt and .key of the PKI (default:\n"
    "                       the PKI's only operator)\n"
    "  --cafile F --cert F --key F   or these files instead (default: the PKI's ca.crt)\n"
    "  --dir DIR            PKI directory (default $MOAT_PKI_DIR, else ./pki)\n";

static int set_path(char *out, const char *what, const char *a, const char *b)
{
    int n = b != NULL ? snprintf(out, PATH_MAX, "%s/%s", a, b) : snprintf(out, PATH_MAX, "%s", a);
    if (n < 0 || n >= PATH_MAX) {
        cli_error("path too long for %s", what);
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* The PKI's only valid operator, for a default --operator. */
static int only_operator(const char *dir, char *name, size_t cap)
{
    pki p;
    time_t now = time(NULL);
    const char *found = NULL;
    int rc = CLI_FAIL;

    if (pki_open(&p, dir, 0, 0) != CLI_OK)
        return CLI_FAIL;
    for (size_t i = 0; i < p.n; i++) {
        const pki_entry *e = &p.entries[i];
        if (strcmp(e->kind, "operator") != 0 || strcmp(pki_entry_status(e, now), "valid") != 0)
            continue;
        if (found != NULL && strcmp(found, e->name) != 0) {
            cli_error("%s has several operators (%s, %s, ...): choose one with --operator", dir,
                      found, e->name);
            goto done;
        }
        found = e->name;
    }
    if (found == NULL) {
        cli_error("%s has no valid operator certificate: make one with `moat pki operator "
                  "<name>`, or give --cert and --key",
                  dir);
        goto done;
    }
    snprintf(name, cap, "%s", found);
    rc = CLI_OK;
done:
    pki_close(&p);
    return rc;
}

int op_resolve(op_mqtt *m, const op_opts *o)
{
    const char *dir = pki_dir_choice(o->dir);
    unsigned long port = 8883;
    char name[PKI_NAME_MAX], rel[PKI_NAME_MAX + 32];

    memset(m, 0, sizeof *m);
    moat_tcp_init(&m->tcp);
    snprintf(m->host, sizeof m->host, "%s", o->host != NULL ? o->host : "localhost");
    if (o->port != NULL && cli_parse_uint(o->port, 1, 65535, "--port", &port) != CLI_OK)
        return CLI_USAGE;
    m->port = (uint16_t)port;
    if ((o->certfile == NULL) != (o->keyfile == NULL)) {
        cli_error("give --cert and --key together");
        return CLI_USAGE;
    }
    if (o->certfile != NULL && o->operator_name != NULL) {
        cli_error("give --operator or --cert/--key, not both");
        return CLI_USAGE;
    }
    if (set_path(m->cafile, "--cafile", o->cafile != NULL ? o->cafile : dir,
                 o->cafile != NULL ? NULL : "ca.crt") != CLI_OK)
        return CLI_FAIL;
    if (o->certfile != NULL)
        return set_path(m->certfile, "--cert", o->certfile, NULL) == CLI_OK &&
                       set_path(m->keyfile, "--key", o->keyfile, NULL) == CLI_OK
                   ? CLI_OK
                   : CLI_FAIL;
    if (o->operator_name != NULL) {
        if (!cli_valid_id(o->operator_name)) {
            cli_error("--operator: '%s' is not a valid name", o->operator_name);
            return CLI_USAGE;
        }
        snprintf(name, sizeof name, "%s", o->operator_name);
    } else if (only_operator(dir, name, sizeof name) != CLI_OK) {
        return CLI_FAIL;
    }
    snprintf(rel, sizeof rel, "operators/%s.crt", name);
    if (set_path(m->certfile, "--cert", dir, rel) != CLI_OK)
        return CLI_FAIL;
    snprintf(rel, sizeof rel, "operators/%s.key", name);
    return set_path(m->keyfile, "--key", dir, rel);
}

/* ------------------------------------------------------------- events -- */

static void subscribe(op_mqtt *m, uint32_t now)
{
    moat_mqtt_sub subs[OP_MAX_FILTERS];

    for (size_t i = 0; i < m->nfilters; i++) {
        subs[i].filter = m->filters[i];
        subs[i].qos = 1;
    }
    if (moat_mqtt_subscribe(&m->c, subs, m->nfilters, &m->sub_id, now) != MOAT_OK) {
        cli_error("cannot subscribe at %s:%u", m->host, m->port);
        m->fatal = true;
    }
}

static void on_event(void *user, const moat_mqtt_event *ev)
{
    op_mqtt *m = user;

    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED:
        m->subscribed = false;
        subscribe(m, moat_clock_ms());
        break;
    case MOAT_MQTT_EV_SUBACK:
        if (ev->packet_id != m->sub_id)
            break;
        if (ev->err != MOAT_OK) {
            cli_error("the broker %s:%u refused the subscription to %s%s (does its ACL give "
                      "this operator moat/#?)",
                      m->host, m->port, m->filters[0], m->nfilters > 1 ? " and others" : "");
            m->fatal = true;
            break;
        }
        m->subscribed = m->ever_subscribed = true;
        break;
    case MOAT_MQTT_EV_MESSAGE:
        if (m->on_message != NULL && ev->offset == 0 && ev->len == ev->total)
            m->on_message(m->app, ev);
        break;
    case MOAT_MQTT_EV_DROPPED:
        m->dropped++;
        break;
    case MOAT_MQTT_EV_DISCONNECTED:
        m->subscribed = false;
        break;
    default:
        break;
    }
}

/* -------------------------------------------------------------- link -- */

static bool is_fatal_before_first(moat_err err)
{
    return (err <= MOAT_ERR_CONNACK_VERSION && err >= MOAT_ERR_CONNACK_UNKNOWN) ||
           (err <= MOAT_ERR_TLS && err >= MOAT_ERR_CLOCK);
}

static void close_link(op_mqtt *m)
{
    if (m->link == OP_LINK_UP)
        moat_tls_close(&m->tls);
    moat_tcp_close(&m->tcp);
    m->link = OP_LINK_CLOSED;
}

/* The link failed (the engine knows when pump said so: pass engine_knows). */
static void link_failed(op_mqtt *m, moat_err err, bool engine_knows, uint32_t now)
{
    const char *words = (err <= MOAT_ERR_TLS && err >= MOAT_ERR_CLOCK) ||
                                err == MOAT_ERR_CLOSED || err == MOAT_ERR_IO
                            ? moat_tls_last_error(&m->tls)
                            : "";
    snprintf(m->why, sizeof m->why, "%s", words[0] != '\0' ? words : moat_strerror(err));
    if (!engine_knows)
        moat_mqtt_link_down(&m->c, err, now);
    close_link(m);
    if (!m->ever_subscribed && is_fatal_before_first(err)) {
        cli_error("cannot connect to %s:%u: %s", m->host, m->port, m->why);
        m->fatal = true;
    } else if (m->ever_subscribed && !m->closing) {
        fprintf(stderr, "moat: connection to %s:%u lost (%s); reconnecting\n", m->host, m->port,
                m->why);
    }
}

static void tls_started(op_mqtt *m, uint32_t now)
{
    moat_tcp_transport(&m->tcp, &m->tcp_t);
    moat_err err = moat_tls_connect_start(&m->tls, &m->tcp_t, m->host);
    if (err != MOAT_OK) {
        link_failed(m, err, false, now);
        return;
    }
    m->link = OP_LINK_TLS;
}

static void advance(op_mqtt *m, uint32_t now)
{
    moat_err err;

    if (m->link == OP_LINK_CLOSED && moat_mqtt_connect_due(&m->c, now)) {
        m->opened_ms = now;
        err = moat_tcp_connect_start(&m->tcp, m->host, m->port);
        if (err == MOAT_OK)
            tls_started(m, now);
        else if (err == MOAT_ERR_WOULD_BLOCK)
            m->link = OP_LINK_TCP;
        else
            link_failed(m, err, false, now);
    }
    if (m->link == OP_LINK_TCP) {
        err = moat_tcp_connect_poll(&m->tcp);
        if (err == MOAT_OK)
            tls_started(m, now);
        else if (err != MOAT_ERR_WOULD_BLOCK)
            link_failed(m, err, false, now);
    }
    if (m->link == OP_LINK_TLS) {
        err = moat_tls_connect_step(&m->tls);
        if (err == MOAT_OK) {
            m->link = OP_LINK_UP;
            err = moat_mqtt_link_up(&m->c, now);
            if (err != MOAT_OK)
                link_failed(m, err, false, now);
        } else if (err != MOAT_ERR_WOULD_BLOCK) {
            link_failed(m, err, false, now);
        }
    }
    if ((m->link == OP_LINK_TCP || m->link == OP_LINK_TLS) &&
        moat_elapsed(m->opened_ms, now) >= OP_CONNECT_TIMEOUT_MS)
        link_failed(m, MOAT_ERR_TIMEOUT, false, now);
    if (m->link == OP_LINK_UP) {
        err = moat_mqtt_pump(&m->c, &m->tls_t, now);
        if (err != MOAT_OK)
            link_failed(m, err, true, now);
    }
}

int op_connect(op_mqtt *m, const char *const *filters, size_t n, op_message_fn fn, void *app,
               uint32_t timeout_ms)
{
    moat_mqtt_buffers b;
    uint32_t start = moat_clock_ms();
    moat_err err;

    if (n == 0 || n > OP_MAX_FILTERS)
        return CLI_FAIL;
    for (size_t i = 0; i < n; i++)
        m->filters[i] = filters[i];
    m->nfilters = n;
    m->on_message = fn;
    m->app = app;
    m->tcfg.ca.path = m->cafile;
    m->tcfg.cert.path = m->certfile;
    m->tcfg.key.path = m->keyfile;
    m->tcfg.time_now = moat_tls_os_time;
    err = moat_tls_init(&m->tls, &m->tcfg);
    if (err != MOAT_OK) {
        cli_error("cannot set up TLS for %s:%u: %s", m->host, m->port,
                  moat_tls_last_error(&m->tls));
        return CLI_FAIL;
    }
    m->tls_ready = true;
    moat_tls_transport(&m->tls, &m->tls_t);
    snprintf(m->client_id, sizeof m->client_id, "moat-cli-%ld", (long)getpid());
    m->cfg.client_id = m->client_id;
    m->cfg.clean_session = true;
    m->cfg.keepalive_s = 30;
    m->cfg.backoff_base_ms = 200;
    m->cfg.backoff_cap_ms = 2000;
    m->cfg.random = moat_random32;
    m->cfg.on_event = on_event;
    m->cfg.user = m;
    m->cfg.large = MOAT_MQTT_LARGE_REFUSE;
    memset(&b, 0, sizeof b);
    b.tx = tx_buf;
    b.tx_size = sizeof tx_buf;
    b.rx = rx_buf;
    b.rx_size = sizeof rx_buf;
    b.store = store_buf;
    b.store_size = sizeof store_buf;
    b.inflight = window;
    b.inflight_count = sizeof window / sizeof window[0];
    if (moat_mqtt_init(&m->c, &m->cfg, &b) != MOAT_OK ||
        moat_mqtt_start(&m->c, start) != MOAT_OK) {
        cli_error("cannot set up the MQTT client");
        return CLI_FAIL;
    }
    while (!m->subscribed) {
        if (op_step(m, 100) != CLI_OK)
            return CLI_FAIL;
        if (moat_elapsed(start, moat_clock_ms()) >= timeout_ms) {
            cli_error("cannot connect to %s:%u within %lu s%s%s", m->host, m->port,
                      (unsigned long)(timeout_ms / 1000), m->why[0] ? ": " : "", m->why);
            return CLI_FAIL;
        }
    }
    return CLI_OK;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

int op_step(op_mqtt *m, uint32_t wait_ms)
{
    struct pollfd p;
    uint32_t now = moat_clock_ms(), t;
    size_t pending = 0;
    bool r = false, w = false;

    advance(m, now);
    if (m->fatal)
        return CLI_FAIL;
    t = min_u32(wait_ms, moat_mqtt_next_timeout(&m->c, now));
    moat_mqtt_output(&m->c, &pending);
    switch (m->link) {
    case OP_LINK_TCP:
        w = true;
        t = min_u32(t, moat_tcp_poll_in(&m->tcp, now)); /* a lookup: no socket yet */
        break;
    case OP_LINK_TLS:
        w = moat_tls_want_write(&m->tls);
        r = !w;
        break;
    case OP_LINK_UP:
        w = pending > 0;
        r = sizeof tx_buf - pending > 64 || !w;
        if (r && moat_tls_pending(&m->tls))
            t = 0;
        break;
    default:
        break;
    }
    if (m->link != OP_LINK_CLOSED) {
        p.fd = m->tcp.fd;
        p.events = (short)((r ? POLLIN : 0) | (w ? POLLOUT : 0));
        p.revents = 0;
        if (poll(&p, 1, t > INT_MAX ? INT_MAX : (int)t) > 0 || m->link == OP_LINK_TCP)
            advance(m, moat_clock_ms());
    } else if (t > 0) {
        poll(NULL, 0, t > 100 ? 100 : (int)t);
    }
    return m->fatal ? CLI_FAIL : CLI_OK;
}

moat_err op_publish(op_mqtt *m, const char *topic, const void *payload, size_t len, uint8_t qos)
{
    moat_mqtt_message msg;

    msg.topic = topic;
    msg.payload = payload;
    msg.len = len;
    msg.qos = qos;
    msg.retain = false;
    return moat_mqtt_publish(&m->c, &msg, NULL, moat_clock_ms());
}

bool op_online(const op_mqtt *m)
{
    return m->link == OP_LINK_UP && m->subscribed;
}

bool op_drained(const op_mqtt *m)
{
    size_t pending = 0;

    moat_mqtt_output(&m->c, &pending);
    return pending == 0 && moat_mqtt_inflight_used(&m->c) == 0;
}

void op_close(op_mqtt *m)
{
    uint32_t start = moat_clock_ms();

    m->closing = true;
    if (m->link == OP_LINK_UP && moat_mqtt_get_state(&m->c) == MOAT_MQTT_CONNECTED &&
        moat_mqtt_disconnect(&m->c, start) == MOAT_OK) {
        while (m->link == OP_LINK_UP && moat_elapsed(start, moat_clock_ms()) < 2000) {
            size_t pending = 0;
            moat_mqtt_output(&m->c, &pending);
            if (pending == 0)
                break;
            op_step(m, 50);
        }
    }
    close_link(m);
    if (m->tls_ready)
        moat_tls_free(&m->tls);
    m->tls_ready = false;
}
