/*
 * monitor.c - the observer. One more mutual-TLS MQTT connection on the same
 * loop, with the operator identity of the `moat pki` directory (the ACL of
 * `moat broker-config` gives operators moat/#). It subscribes to every
 * device's status and results, so a status message counts as delivered
 * only when it has gone device -> broker -> subscriber; and it sends the
 * fleet commands (moat/<id>/cmd/ping) at --cmd-rate, round robin over the
 * connected devices, timing each round trip to its result.
 *
 * Its session is persistent (clean_session false), so should its own link
 * drop, the broker keeps its QoS 1 messages and nothing is counted lost
 * that a reconnecting subscriber would still get.
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "moat/timer.h"

#define MON_TX (64u * 1024u)
#define MON_RX (16u * 1024u)
#define MON_STORE (64u * 1024u)
#define MON_WINDOW 256u

static void set_out(sim *s, bool want)
{
    sim_monitor *m = &s->mon;
    if (m->tcp.fd >= 0)
        sim_set_out(s, m->tcp.fd, SIM_TAG_MONITOR, &m->ev_out, want);
}

static void mon_failed(sim *s, moat_err e, bool tls_words)
{
    sim_monitor *m = &s->mon;
    const char *why = tls_words && moat_tls_last_error(&m->tls)[0] != '\0'
                          ? moat_tls_last_error(&m->tls)
                          : moat_strerror(e);
    sim_note_error(s, "monitor: %s", why);
    moat_tls_close(&m->tls);
    moat_tcp_close(&m->tcp);
    m->ev_out = false;
    moat_mqtt_link_down(&m->mqtt, e, s->now);
    m->phase = PH_DOWN;
}

static void pump(sim *s)
{
    sim_monitor *m = &s->mon;
    moat_transport t;
    size_t out;
    moat_err e;

    moat_tls_transport(&m->tls, &t);
    /* A burst of status messages: keep reading while TLS holds records. */
    for (int i = 0; i < 16; i++) {
        e = moat_mqtt_pump(&m->mqtt, &t, s->now);
        if (e != MOAT_OK) {
            mon_failed(s, e, e != MOAT_ERR_CLOSED);
            return;
        }
        if (!moat_tls_pending(&m->tls))
            break;
    }
    if (moat_tls_pending(&m->tls))
        sim_again(s, SIM_TAG_MONITOR);
    moat_mqtt_output(&m->mqtt, &out);
    set_out(s, out > 0);
}

static void connect_now(sim *s)
{
    sim_monitor *m = &s->mon;
    moat_err e = moat_tcp_connect_start(&m->tcp, s->o.host, s->o.port);

    m->phase = PH_TCP;
    if (e != MOAT_OK && e != MOAT_ERR_WOULD_BLOCK) {
        mon_failed(s, e, false);
        return;
    }
    sim_watch(s, m->tcp.fd, SIM_TAG_MONITOR, true, true);
    m->ev_out = true;
    if (e == MOAT_OK)
        sim_mon_io(s, EPOLLOUT);
}

static uint32_t parse_u32(const uint8_t *p, const uint8_t *end, const uint8_t **next)
{
    uint32_t v = 0;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10u + (uint32_t)(*p++ - '0');
    if (next != NULL)
        *next = p;
    return v;
}

/* moat/<id>/status: count it against the device, by its seq. */
static void on_status(sim_dev *d, const moat_mqtt_event *ev)
{
    static const char key[] = "\"seq\":";
    const uint8_t *p = ev->payload, *end = p + ev->len;
    uint32_t seq;

    for (; p + sizeof key - 1 <= end; p++)
        if (memcmp(p, key, sizeof key - 1) == 0)
            break;
    if (p + sizeof key - 1 > end)
        return;
    seq = parse_u32(p + sizeof key - 1, end, NULL);
    if (seq > d->mon_last) {
        d->mon_recv++;
        d->mon_last = seq;
    } else {
        d->mon_dup++;
    }
}

/* moat/<id>/result/ping: "<n> <sent at ms>" comes back. */
static void on_result(sim *s, const moat_mqtt_event *ev)
{
    sim_monitor *m = &s->mon;
    const uint8_t *p = ev->payload, *end = p + ev->len;
    uint32_t sent_at;

    m->res_recv++;
    parse_u32(p, end, &p);
    if (p >= end || *p != ' ')
        return;
    sent_at = parse_u32(p + 1, end, NULL);
    if (m->rtt_n == m->rtt_cap) {
        size_t cap = m->rtt_cap ? m->rtt_cap * 2 : 1024;
        uint32_t *bigger = realloc(m->rtt, cap * sizeof *bigger);
        if (bigger == NULL)
            return;
        m->rtt = bigger;
        m->rtt_cap = cap;
    }
    m->rtt[m->rtt_n++] = moat_clock_ms() - sent_at;
}

static void on_message(sim *s, const moat_mqtt_event *ev)
{
    const uint8_t *t = ev->topic.data;
    size_t tl = ev->topic.len;
    uint32_t index;

    if (tl < 5 + SIM_ID_LEN + 1 || memcmp(t, "moat/", 5) != 0 ||
        !sim_index_of(s, t + 5, SIM_ID_LEN, &index) || t[5 + SIM_ID_LEN] != '/') {
        s->mon.st_foreign++;
        return;
    }
    t += 5 + SIM_ID_LEN;
    tl -= 5 + SIM_ID_LEN;
    if (tl == 7 && memcmp(t, "/status", 7) == 0) {
        s->mon.st_recv++;
        on_status(&s->dev[index], ev);
    } else if (tl > 8 && memcmp(t, "/result/", 8) == 0) {
        on_result(s, ev);
    }
}

static void mon_event(void *user, const moat_mqtt_event *ev)
{
    sim *s = user;
    sim_monitor *m = &s->mon;

    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED:
        if (!ev->session_present) {
            static const moat_mqtt_sub subs[] = { { "moat/+/status", 1 },
                                                  { "moat/+/result/#", 1 } };
            m->subacks = 0;
            if (moat_mqtt_subscribe(&m->mqtt, subs, 2, NULL, s->now) != MOAT_OK)
                sim_note_error(s, "monitor: could not queue its SUBSCRIBE");
        }
        if (m->ready)
            m->reconnects++;
        break;
    case MOAT_MQTT_EV_SUBACK:
        if (ev->err != MOAT_OK)
            sim_note_error(s, "monitor: the broker refused moat/+/status or moat/+/result/# "
                              "(is '%s' an operator in the broker's ACL?)", m->cn);
        else
            m->ready = true;
        break;
    case MOAT_MQTT_EV_MESSAGE:
        on_message(s, ev);
        break;
    case MOAT_MQTT_EV_PUBLISHED:
        m->cmd_acked++;
        break;
    case MOAT_MQTT_EV_ERROR:
        sim_note_error(s, "monitor: %s", moat_strerror(ev->err));
        break;
    default:
        break;
    }
}

moat_err sim_mon_start(sim *s)
{
    sim_monitor *m = &s->mon;
    char path[2][1024];
    moat_mqtt_buffers b;
    moat_err e;

    memset(m, 0, sizeof *m);
    moat_tcp_init(&m->tcp);
    m->cmd_next = sim_rand(s) % s->o.count; /* where the commands' round robin begins */
    snprintf(m->cn, sizeof m->cn, "%s", s->o.monitor);
    snprintf(path[0], sizeof path[0], "%s/operators/%s.crt", s->o.pki, s->o.monitor);
    snprintf(path[1], sizeof path[1], "%s/operators/%s.key", s->o.pki, s->o.monitor);
    m->tcfg = s->dev_tls;
    m->tcfg.cert = (moat_tls_source){ .path = path[0] };
    m->tcfg.key = (moat_tls_source){ .path = path[1] };
    e = moat_tls_init(&m->tls, &m->tcfg);
    m->tcfg.cert = (moat_tls_source){ 0 };
    m->tcfg.key = (moat_tls_source){ 0 };
    if (e != MOAT_OK) {
        fprintf(stderr, "moat-sim: monitor (operator '%s'; make it with `moat pki operator %s`): %s\n",
                s->o.monitor, s->o.monitor, moat_tls_last_error(&m->tls));
        return e;
    }
    m->mem = malloc(MON_TX + MON_RX + MON_STORE + MON_WINDOW * sizeof(moat_mqtt_inflight));
    if (m->mem == NULL)
        return MOAT_ERR_NO_SPACE;
    b = (moat_mqtt_buffers){
        .inflight = (moat_mqtt_inflight *)m->mem,
        .inflight_count = MON_WINDOW,
        .tx = m->mem + MON_WINDOW * sizeof(moat_mqtt_inflight),
        .tx_size = MON_TX,
        .rx_size = MON_RX,
        .store_size = MON_STORE,
    };
    b.rx = b.tx + MON_TX;
    b.store = b.rx + MON_RX;
    /* A client id of its own per run: no old session, and two simulators on
     * one broker do not take each other's. */
    static char client_id[64];
    snprintf(client_id, sizeof client_id, "%s-%ld", s->o.monitor, (long)getpid());
    m->mcfg = (moat_mqtt_config){
        .client_id = client_id,
        .clean_session = false,
        .keepalive_s = 30,
        .random = moat_random32,
        .on_event = mon_event,
        .user = s,
        .max_inflight = 64,
        .large = MOAT_MQTT_LARGE_REFUSE,
    };
    if ((e = moat_mqtt_init(&m->mqtt, &m->mcfg, &b)) != MOAT_OK ||
        (e = moat_mqtt_start(&m->mqtt, s->now)) != MOAT_OK)
        return e;
    connect_now(s);
    return MOAT_OK;
}

/* Called between expensive steps of the devices (a handshake or an
 * identity costs milliseconds): the monitor reads what has come, so the
 * broker's window to it never fills while the devices keep the loop busy. */
void sim_mon_poke(sim *s)
{
    if (s->mon.phase == PH_MQTT)
        pump(s);
}

bool sim_mon_up(const sim *s)
{
    return s->mon.ready && moat_mqtt_get_state(&s->mon.mqtt) == MOAT_MQTT_CONNECTED;
}

void sim_mon_io(sim *s, uint32_t events)
{
    sim_monitor *m = &s->mon;
    moat_transport lower;
    moat_err e;

    (void)events;
    switch (m->phase) {
    case PH_TCP:
        e = moat_tcp_connect_poll(&m->tcp);
        if (e == MOAT_ERR_WOULD_BLOCK)
            return;
        if (e != MOAT_OK) {
            mon_failed(s, e, false);
            return;
        }
        moat_tcp_transport(&m->tcp, &lower);
        if ((e = moat_tls_connect_start(&m->tls, &lower, s->o.tls_name)) != MOAT_OK) {
            mon_failed(s, e, true);
            return;
        }
        m->phase = PH_TLS;
        /* fall through */
    case PH_TLS:
        e = moat_tls_connect_step(&m->tls);
        if (e == MOAT_ERR_WOULD_BLOCK) {
            set_out(s, moat_tls_want_write(&m->tls));
            return;
        }
        if (e != MOAT_OK) {
            mon_failed(s, e, true);
            return;
        }
        m->phase = PH_MQTT;
        if ((e = moat_mqtt_link_up(&m->mqtt, s->now)) != MOAT_OK) {
            mon_failed(s, e, false);
            return;
        }
        pump(s);
        break;
    case PH_MQTT:
        pump(s);
        break;
    default:
        break;
    }
}

/* Commands at cmd_rate per second, one at a time to the next connected
 * device; the window bounds how many wait for their PUBACK. */
static void send_commands(sim *s)
{
    sim_monitor *m = &s->mon;
    double since = (double)(s->now - s->t_steady) / 1000.0;
    uint64_t due = (uint64_t)(since * s->o.cmd_rate);
    char topic[48], body[32];

    if (s->o.count == 0)
        return;
    while (m->cmd_sent < due) {
        sim_dev *d = NULL;
        for (uint32_t tries = 0; tries < s->o.count && d == NULL; tries++) {
            sim_dev *c = &s->dev[m->cmd_next];
            m->cmd_next = (m->cmd_next + 1) % s->o.count;
            if (c->up && c->subscribed)
                d = c;
        }
        if (d == NULL)
            return;
        snprintf(topic, sizeof topic, "moat/%s/cmd/ping", d->id);
        int n = snprintf(body, sizeof body, "%llu %u", (unsigned long long)m->cmd_sent,
                         (unsigned)moat_clock_ms());
        moat_mqtt_message msg = { .topic = topic, .payload = body, .len = (size_t)n, .qos = 1 };
        if (moat_mqtt_publish(&m->mqtt, &msg, NULL, s->now) != MOAT_OK) {
            m->cmd_next = (uint32_t)(d - s->dev); /* this one again, later */
            return;
        }
        m->cmd_sent++;
    }
}

void sim_mon_timers(sim *s)
{
    sim_monitor *m = &s->mon;

    switch (m->phase) {
    case PH_DOWN:
        if (moat_mqtt_connect_due(&m->mqtt, s->now))
            connect_now(s);
        break;
    case PH_MQTT:
        if (s->steady && !s->stopping && s->o.cmd_rate > 0 &&
            moat_mqtt_get_state(&m->mqtt) == MOAT_MQTT_CONNECTED)
            send_commands(s);
        pump(s);
        break;
    default:
        break;
    }
}

void sim_mon_stop(sim *s)
{
    sim_monitor *m = &s->mon;
    if (m->phase == PH_MQTT && moat_mqtt_get_state(&m->mqtt) == MOAT_MQTT_CONNECTED &&
        moat_mqtt_disconnect(&m->mqtt, s->now) == MOAT_OK) {
        moat_transport t;
        moat_tls_transport(&m->tls, &t);
        moat_mqtt_pump(&m->mqtt, &t, s->now);
    }
    moat_tls_close(&m->tls);
    moat_tcp_close(&m->tcp);
    moat_tls_free(&m->tls);
    free(m->mem);
    m->mem = NULL;
    m->phase = PH_DONE; /* m->rtt stays for the report */
}
