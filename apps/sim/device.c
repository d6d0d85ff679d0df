/*
 * device.c - one virtual moat device: its own identity, TCP socket, mutual
 * TLS session (moat_tls) and MQTT engine (moat_mqtt_client), a status timer
 * and command handling, driven by the shared epoll loop.
 *
 * It behaves as moat-agent does on the wire: CONNECT with the device id as
 * client id (the broker takes the user name from the certificate CN),
 * SUBSCRIBE moat/<id>/cmd/#, a QoS 1 JSON status on moat/<id>/status every
 * interval, and a QoS 1 result on moat/<id>/result/<name> for each command.
 * A lost link is retried with the engine's backoff; the TLS session saved
 * by moat_tls makes the retry a resumed handshake.
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <mbedtls/platform_util.h>

#include "moat/timer.h"

/* Slack over the status payload in tx and store: a status PUBLISH header
 * and topic (~30 bytes) plus one command result (~60), acks and SUBSCRIBE. */
#define DEV_SLACK 112u
#define DEV_RX 128u        /* one command; larger ones are refused in words */
#define DEV_WINDOW 4u      /* status, result, SUBSCRIBE, one spare */
#define DEV_SETUP_LIMIT_MS 30000u

static uint32_t round16(uint32_t n)
{
    return (n + 15u) & ~15u;
}

void sim_id_of(const sim *s, uint32_t index, char out[SIM_ID_LEN + 1])
{
    uint64_t v = (uint64_t)s->id_base + index;
    snprintf(out, SIM_ID_LEN + 1, "%012llx", (unsigned long long)(v & 0xFFFFFFFFFFFFull));
}

bool sim_index_of(const sim *s, const uint8_t *id, size_t len, uint32_t *index)
{
    uint64_t v = 0;
    if (len != SIM_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = id[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint64_t)(c - 'a' + 10);
        else
            return false;
    }
    if (v < s->id_base || v - s->id_base >= s->o.count)
        return false;
    *index = (uint32_t)(v - s->id_base);
    return true;
}

static uint32_t tag_of(const sim *s, const sim_dev *d)
{
    return (uint32_t)(d - s->dev);
}

/* ------------------------------------------------------------- links -- */

static void set_out(sim *s, sim_dev *d, bool want)
{
    if (d->tcp.fd >= 0)
        sim_set_out(s, d->tcp.fd, tag_of(s, d), &d->ev_out, want);
}

static void left_setup(sim *s, sim_dev *d)
{
    if (d->setting_up) {
        d->setting_up = false;
        s->pending--;
    }
}

static void close_link(sim_dev *d)
{
    if (d->tls_ready)
        moat_tls_close(&d->tls); /* one try at close_notify, if open */
    moat_tcp_close(&d->tcp); /* close() also leaves the epoll set */
    d->ev_out = false;
}

/* A connection attempt or a session failed: close it, and let the engine
 * schedule the next try (calling link_down for a link it already took down
 * itself changes nothing). */
static void link_failed(sim *s, sim_dev *d, moat_err e, bool tls_words)
{
    const char *why = tls_words && moat_tls_last_error(&d->tls)[0] != '\0'
                          ? moat_tls_last_error(&d->tls)
                          : moat_strerror(e);

    sim_note_error(s, "%s (%s)", why,
                   d->phase == PH_TCP   ? "connecting"
                   : d->phase == PH_TLS ? "TLS handshake"
                   : d->up              ? "session"
                                        : "waiting for CONNACK");
    if (d->phase == PH_TCP)
        s->conn_fail++;
    else if (d->phase == PH_TLS)
        s->tls_fail++;
    left_setup(s, d);
    if (d->up)
        s->up_now--;
    d->up = false;
    close_link(d);
    moat_mqtt_link_down(&d->mqtt, e, s->now);
    d->phase = PH_DOWN;
}

static void pump(sim *s, sim_dev *d)
{
    moat_transport t;
    size_t out;
    moat_err e;

    moat_tls_transport(&d->tls, &t);
    e = moat_mqtt_pump(&d->mqtt, &t, s->now);
    if (e != MOAT_OK) {
        link_failed(s, d, e, e != MOAT_ERR_CLOSED);
        return;
    }
    if (moat_tls_pending(&d->tls))
        sim_again(s, tag_of(s, d));
    moat_mqtt_output(&d->mqtt, &out);
    set_out(s, d, out > 0);
}

static void tls_step(sim *s, sim_dev *d)
{
    double c = sim_cpu_ms();
    moat_err e = moat_tls_connect_step(&d->tls);
    double spent = sim_cpu_ms() - c;

    s->hs_cpu_ms += spent;
    if (e == MOAT_OK)
        s->handshakes++;
    if (spent > 1.0)
        sim_mon_poke(s);
    if (e == MOAT_ERR_WOULD_BLOCK) {
        set_out(s, d, moat_tls_want_write(&d->tls));
        return;
    }
    if (e != MOAT_OK) {
        link_failed(s, d, e, true);
        return;
    }
    d->phase = PH_MQTT;
    if (s->suite[0] == '\0')
        snprintf(s->suite, sizeof s->suite, "%s, records up to %zu bytes",
                 moat_tls_ciphersuite(&d->tls), moat_tls_max_fragment(&d->tls));
    e = moat_mqtt_link_up(&d->mqtt, s->now);
    if (e != MOAT_OK) {
        link_failed(s, d, e, false);
        return;
    }
    pump(s, d);
}

static void tls_start(sim *s, sim_dev *d)
{
    moat_transport lower;
    moat_err e;

    moat_tcp_transport(&d->tcp, &lower);
    d->phase = PH_TLS;
    e = moat_tls_connect_start(&d->tls, &lower, s->o.tls_name);
    if (e != MOAT_OK) {
        link_failed(s, d, e, true);
        return;
    }
    tls_step(s, d);
}

void sim_dev_connect(sim *s, sim_dev *d)
{
    moat_err e;

    d->t_start = moat_clock_ms();
    if (!d->setting_up) {
        d->setting_up = true;
        s->pending++;
    }
    e = moat_tcp_connect_start(&d->tcp, s->o.host, s->o.port);
    if (e != MOAT_OK && e != MOAT_ERR_WOULD_BLOCK) {
        d->phase = PH_TCP;
        link_failed(s, d, e, false);
        return;
    }
    sim_watch(s, d->tcp.fd, tag_of(s, d), true, true);
    d->ev_out = true;
    d->phase = PH_TCP;
    if (e == MOAT_OK)
        tls_start(s, d);
}

/* ----------------------------------------------------------- engine -- */

static void publish_status(sim *s, sim_dev *d)
{
    char topic[48], body[4096];
    uint32_t want = s->o.payload, uptime = s->now - d->t_connected;
    int n;
    moat_mqtt_message m;
    moat_err e;

    snprintf(topic, sizeof topic, "moat/%s/status", d->id);
    n = snprintf(body, sizeof body, "{\"id\":\"%s\",\"seq\":%u,\"uptime\":%u,\"cmds\":%u", d->id,
                 (unsigned)(d->st_sent + 1), (unsigned)uptime, (unsigned)d->cmds);
    if (want > sizeof body - 1)
        want = sizeof body - 1;
    if ((uint32_t)n + 11u <= want) { /* ,"pad":"" and } */
        size_t pad = want - (uint32_t)n - 11u;
        memcpy(body + n, ",\"pad\":\"", 8);
        n += 8;
        memset(body + n, 'x', pad);
        n += (int)pad;
        memcpy(body + n, "\"}", 2);
        n += 2;
    } else {
        body[n++] = '}';
    }
    m = (moat_mqtt_message){ .topic = topic, .payload = body, .len = (size_t)n, .qos = 1 };
    e = moat_mqtt_publish(&d->mqtt, &m, NULL, s->now);
    if (e == MOAT_OK)
        d->st_sent++;
    else
        d->st_skipped++;
}

static void on_command(sim *s, sim_dev *d, const moat_mqtt_event *ev)
{
    static const char prefix[] = "moat/";
    char topic[96], body[160];
    const uint8_t *t = ev->topic.data;
    size_t tl = ev->topic.len, base = sizeof prefix - 1 + SIM_ID_LEN + 5; /* "/cmd/" */
    moat_mqtt_message m = { .topic = topic, .qos = 1 };
    int name_len;

    if (ev->offset != 0 || ev->len != ev->total) /* cannot happen: refused as too large */
        return;
    d->cmds++;
    if (tl <= base || memcmp(t, prefix, sizeof prefix - 1) != 0 ||
        memcmp(t + sizeof prefix - 1, d->id, SIM_ID_LEN) != 0 ||
        memcmp(t + base - 5, "/cmd/", 5) != 0)
        return;
    name_len = (int)(tl - base);
    if (name_len > 40)
        name_len = 40;
    snprintf(topic, sizeof topic, "moat/%s/result/%.*s", d->id, name_len,
             (const char *)t + base);
    if (name_len == 4 && memcmp(t + base, "ping", 4) == 0) {
        m.payload = ev->payload;
        m.len = ev->len;
    } else {
        int n = snprintf(body, sizeof body,
                         "{\"ok\":false,\"error\":\"command '%.*s' is not supported\"}", name_len,
                         (const char *)t + base);
        m.payload = body;
        m.len = (size_t)n;
    }
    if (moat_mqtt_publish(&d->mqtt, &m, NULL, s->now) == MOAT_OK)
        d->res_sent++;
}

static void dev_event(void *user, const moat_mqtt_event *ev)
{
    sim_dev *d = user;
    sim *s = d->sim;

    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED: {
        char filter[40];
        moat_mqtt_sub sub = { .filter = filter, .qos = 1 };
        uint32_t now = moat_clock_ms();
        left_setup(s, d);
        s->up_now++;
        d->up = true;
        d->t_connected = s->now;
        if (d->t_up == 0) {
            d->connect_ms = now - d->t_start;
            d->t_up = now - s->t0 + 1;
            s->up_ever++;
            if (s->up_ever == s->o.count)
                s->t_all_up = now - s->t0;
        } else {
            d->reconnects++;
        }
        snprintf(filter, sizeof filter, "moat/%s/cmd/#", d->id);
        d->subscribed = false;
        if (moat_mqtt_subscribe(&d->mqtt, &sub, 1, NULL, s->now) != MOAT_OK)
            sim_note_error(s, "device could not queue its SUBSCRIBE");
        /* The first status goes out at once, as moat-agent's does. */
        d->next_status = s->now;
        break;
    }
    case MOAT_MQTT_EV_SUBACK:
        d->subscribed = ev->err == MOAT_OK;
        if (ev->err != MOAT_OK)
            sim_note_error(s, "the broker refused SUBSCRIBE moat/<id>/cmd/# (%s)",
                           moat_strerror(ev->err));
        break;
    case MOAT_MQTT_EV_MESSAGE:
        on_command(s, d, ev);
        break;
    case MOAT_MQTT_EV_PUBLISHED:
        d->pub_acked++;
        break;
    case MOAT_MQTT_EV_DROPPED:
        d->pub_dropped++;
        break;
    case MOAT_MQTT_EV_ERROR:
        sim_note_error(s, "device: %s", moat_strerror(ev->err));
        break;
    default:
        break;
    }
}

moat_err sim_dev_setup(sim *s, sim_dev *d, uint32_t index)
{
    memset(d, 0, sizeof *d);
    d->sim = s;
    d->index = index;
    moat_tcp_init(&d->tcp);
    sim_id_of(s, index, d->id);
    d->mcfg.client_id = d->id;
    d->mcfg.clean_session = true;
    d->mcfg.keepalive_s = s->o.keepalive_s;
    d->mcfg.random = moat_random32;
    d->mcfg.on_event = dev_event;
    d->mcfg.user = d;
    d->mcfg.max_inflight = DEV_WINDOW;
    d->mcfg.large = MOAT_MQTT_LARGE_REFUSE;
    return MOAT_OK;
}

static uint32_t dev_tx(const sim *s)
{
    return round16(s->o.payload + DEV_SLACK);
}

uint32_t sim_dev_engine_bytes(const sim *s)
{
    return 2 * dev_tx(s) + DEV_RX + DEV_WINDOW * (uint32_t)sizeof(moat_mqtt_inflight);
}

/* The engine's memory: made when the device starts, so a device that never
 * starts costs only its struct. */
static moat_err alloc_engine(sim *s, sim_dev *d)
{
    uint32_t tx = dev_tx(s), store = tx;
    moat_mqtt_buffers b;

    d->mem = malloc(sim_dev_engine_bytes(s));
    if (d->mem == NULL)
        return MOAT_ERR_NO_SPACE;
    b = (moat_mqtt_buffers){
        .inflight = (moat_mqtt_inflight *)d->mem,
        .inflight_count = DEV_WINDOW,
        .tx = d->mem + DEV_WINDOW * sizeof(moat_mqtt_inflight),
        .tx_size = tx,
    };
    b.rx = b.tx + tx;
    b.rx_size = DEV_RX;
    b.store = b.rx + DEV_RX;
    b.store_size = store;
    return moat_mqtt_init(&d->mqtt, &d->mcfg, &b);
}

moat_err sim_dev_start(sim *s, sim_dev *d)
{
    sim_ident id;
    char err[256];
    moat_err e;
    double t = sim_cpu_ms();

    if (sim_ident_make(&s->ca, d->id, s->o.cert_days, &id, err, sizeof err) != 0) {
        fprintf(stderr, "moat-sim: %s\n", err);
        return MOAT_ERR_TLS;
    }
    /* The shared TLS settings carry this device's credentials only for the
     * length of moat_tls_init, which is where moat_tls reads them. */
    s->dev_tls.cert = (moat_tls_source){ .data = id.cert, .len = id.cert_len };
    s->dev_tls.key = (moat_tls_source){ .data = id.key, .len = id.key_len };
    e = moat_tls_init(&d->tls, &s->dev_tls);
    s->dev_tls.cert = (moat_tls_source){ 0 };
    s->dev_tls.key = (moat_tls_source){ 0 };
    mbedtls_platform_zeroize(id.key, sizeof id.key);
    if (e != MOAT_OK) {
        fprintf(stderr, "moat-sim: device %s: %s\n", d->id, moat_tls_last_error(&d->tls));
        return e;
    }
    d->tls_ready = true;
    s->ident_ms += sim_cpu_ms() - t;
    if ((e = alloc_engine(s, d)) != MOAT_OK || (e = moat_mqtt_start(&d->mqtt, s->now)) != MOAT_OK) {
        fprintf(stderr, "moat-sim: device %s: %s\n", d->id, moat_strerror(e));
        return e;
    }
    sim_dev_connect(s, d);
    return MOAT_OK;
}

/* ----------------------------------------------------------- driving -- */

static void set_due(sim *s, sim_dev *d);

void sim_dev_io(sim *s, sim_dev *d, uint32_t events)
{
    moat_err e;

    if ((events & (EPOLLERR | EPOLLHUP)) && d->phase == PH_TCP)
        events |= EPOLLOUT; /* let connect_poll read the error */
    switch (d->phase) {
    case PH_TCP:
        e = moat_tcp_connect_poll(&d->tcp);
        if (e == MOAT_ERR_WOULD_BLOCK)
            return;
        if (e != MOAT_OK) {
            link_failed(s, d, e, false);
            return;
        }
        tls_start(s, d);
        break;
    case PH_TLS:
        tls_step(s, d);
        break;
    case PH_MQTT:
        pump(s, d);
        break;
    default:
        break;
    }
    set_due(s, d);
}

void sim_dev_timers(sim *s, sim_dev *d)
{

    switch (d->phase) {
    case PH_DOWN:
        if (!s->stopping && moat_mqtt_connect_due(&d->mqtt, s->now))
            sim_dev_connect(s, d);
        break;
    case PH_TCP:
    case PH_TLS:
        if (s->now - d->t_start >= DEV_SETUP_LIMIT_MS)
            link_failed(s, d, MOAT_ERR_TIMEOUT, false);
        break;
    case PH_MQTT: {
        size_t out;
        moat_err e;
        if (!s->stopping && moat_mqtt_get_state(&d->mqtt) == MOAT_MQTT_CONNECTED &&
            moat_time_reached(s->now, d->next_status)) {
            publish_status(s, d);
            d->next_status = s->now + s->o.interval_ms;
        }
        /* Keep-alive and CONNACK deadlines; the socket is read on events. */
        if ((e = moat_mqtt_tick(&d->mqtt, s->now)) != MOAT_OK) {
            link_failed(s, d, e, false);
            break;
        }
        moat_mqtt_output(&d->mqtt, &out);
        if (out > 0)
            pump(s, d);
        break;
    }
    default:
        break;
    }

    set_due(s, d);
}

/* When to look again: the engine's own timer, the status timer, the setup
 * limit; at least every 5 s. */
static void set_due(sim *s, sim_dev *d)
{
    uint32_t wait = d->phase == PH_TCP || d->phase == PH_TLS ? 1000 : 5000;
    if (d->phase == PH_MQTT || d->phase == PH_DOWN) {
        uint32_t t = moat_mqtt_next_timeout(&d->mqtt, s->now);
        if (t < wait)
            wait = t;
    }
    if (d->phase == PH_MQTT && !s->stopping &&
        moat_mqtt_get_state(&d->mqtt) == MOAT_MQTT_CONNECTED) {
        uint32_t t = moat_time_reached(s->now, d->next_status) ? 0 : d->next_status - s->now;
        if (t < wait)
            wait = t;
    }
    s->due[tag_of(s, d)] = s->now + wait;
}

void sim_dev_stop(sim *s, sim_dev *d)
{
    if (d->phase == PH_MQTT && moat_mqtt_get_state(&d->mqtt) == MOAT_MQTT_CONNECTED &&
        moat_mqtt_disconnect(&d->mqtt, s->now) == MOAT_OK) {
        moat_transport t;
        moat_tls_transport(&d->tls, &t);
        moat_mqtt_pump(&d->mqtt, &t, s->now); /* DISCONNECT, then the engine goes IDLE */
    }
    if (d->up)
        s->up_now--;
    d->up = false;
    left_setup(s, d);
    close_link(d);
    d->phase = PH_DONE;
}

void sim_dev_free(sim_dev *d)
{
    if (d->tls_ready)
        moat_tls_free(&d->tls);
    d->tls_ready = false;
    free(d->mem);
    d->mem = NULL;
}
