/*
 * client.c - drive moat MQTT clients over real TCP and record what they
 * report (see client.h).
 */
#include "client.h"

#include "itest.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POLL_MS 50u
#define TCP_CONNECT_TIMEOUT_MS 5000u

const char *itest_event_name(int type)
{
    switch (type) {
    case MOAT_MQTT_EV_CONNECTED: return "CONNECTED";
    case MOAT_MQTT_EV_DISCONNECTED: return "DISCONNECTED";
    case MOAT_MQTT_EV_MESSAGE: return "MESSAGE";
    case MOAT_MQTT_EV_PUBLISHED: return "PUBLISHED";
    case MOAT_MQTT_EV_DROPPED: return "DROPPED";
    case MOAT_MQTT_EV_SUBACK: return "SUBACK";
    case MOAT_MQTT_EV_UNSUBACK: return "UNSUBACK";
    case MOAT_MQTT_EV_ERROR: return "ERROR";
    case ITEST_EV_ATTEMPT: return "tcp-connect";
    default: return "?";
    }
}

const char *itest_state_name(int state)
{
    switch (state) {
    case MOAT_MQTT_IDLE: return "IDLE";
    case MOAT_MQTT_BACKOFF: return "BACKOFF";
    case MOAT_MQTT_WAIT_CONNACK: return "WAIT_CONNACK";
    case MOAT_MQTT_CONNECTED: return "CONNECTED";
    case MOAT_MQTT_CLOSING: return "CLOSING";
    default: return "?";
    }
}

const char *itest_hex(const void *p, size_t len)
{
    static char buf[3 * 64 + 8];
    const uint8_t *b = p;
    size_t n = len < 64 ? len : 64, o = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%02x", b[i]);
    if (n < len)
        snprintf(buf + o, sizeof(buf) - o, "...");
    if (len == 0)
        snprintf(buf, sizeof(buf), "(empty)");
    return buf;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL)
        ITEST_FAIL("out of memory (%zu bytes)", n);
    return q;
}

static void record_event(itest_client *c, int type, int err, uint16_t id, bool sp)
{
    if (c->n_events == c->cap_events) {
        c->cap_events = c->cap_events ? c->cap_events * 2 : 64;
        c->events = xrealloc(c->events, c->cap_events * sizeof(*c->events));
    }
    itest_event *e = &c->events[c->n_events++];
    e->type = type;
    e->err = err;
    e->packet_id = id;
    e->session_present = sp;
    e->at_ms = moat_clock_ms();
}

static void free_msg(itest_msg *m)
{
    free(m->topic);
    free(m->payload);
    memset(m, 0, sizeof(*m));
}

static void finish_message(itest_client *c, itest_msg *m)
{
    c->n_messages++;
    if (c->on_message != NULL)
        c->on_message(c, m, c->on_message_arg);
    if (!c->keep_messages) {
        free_msg(m);
        return;
    }
    if (c->n_msgs == c->cap_msgs) {
        c->cap_msgs = c->cap_msgs ? c->cap_msgs * 2 : 64;
        c->msgs = xrealloc(c->msgs, c->cap_msgs * sizeof(*c->msgs));
    }
    c->msgs[c->n_msgs++] = *m;
    memset(m, 0, sizeof(*m));
}

static void on_message_piece(itest_client *c, const moat_mqtt_event *ev)
{
    if (ev->offset == 0) {
        if (c->in_partial)
            ITEST_FAIL("%s: a new message on '%.*s' began before the previous one on "
                       "'%s' was complete (%zu bytes so far)", c->id, (int)ev->topic.len,
                       (const char *)ev->topic.data, c->partial.topic, c->partial.len);
        itest_msg *m = &c->partial;
        memset(m, 0, sizeof(*m));
        m->topic = xrealloc(NULL, (size_t)ev->topic.len + 1);
        memcpy(m->topic, ev->topic.data, ev->topic.len);
        m->topic[ev->topic.len] = '\0';
        m->payload = xrealloc(NULL, ev->total > 0 ? ev->total : 1);
        m->qos = ev->qos;
        m->retain = ev->retain;
        m->dup = ev->dup;
        m->at_ms = moat_clock_ms();
        c->in_partial = true;
    } else if (!c->in_partial || ev->offset != c->partial.len) {
        ITEST_FAIL("%s: message piece at offset %zu, expected %zu (total %zu)", c->id,
                   ev->offset, c->in_partial ? c->partial.len : 0, ev->total);
    }
    if (ev->offset + ev->len > ev->total)
        ITEST_FAIL("%s: message piece %zu+%zu goes past its total %zu", c->id, ev->offset,
                   ev->len, ev->total);
    if (ev->len > 0)
        memcpy(c->partial.payload + ev->offset, ev->payload, ev->len);
    c->partial.len = ev->offset + ev->len;
    if (c->partial.len == ev->total) {
        c->in_partial = false;
        finish_message(c, &c->partial);
    }
}

static void on_event(void *user, const moat_mqtt_event *ev)
{
    itest_client *c = user;
    record_event(c, (int)ev->type, (int)ev->err, ev->packet_id, ev->session_present);
    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED:
        c->n_connected++;
        c->session_present = ev->session_present;
        break;
    case MOAT_MQTT_EV_DISCONNECTED:
        c->n_disconnected++;
        c->last_disconnect_err = (int)ev->err;
        if (c->in_partial) {
            /* The rest of the message comes again (QoS 1/2) or never. */
            free_msg(&c->partial);
            c->in_partial = false;
        }
        break;
    case MOAT_MQTT_EV_MESSAGE:
        on_message_piece(c, ev);
        break;
    case MOAT_MQTT_EV_PUBLISHED:
        c->n_published++;
        break;
    case MOAT_MQTT_EV_DROPPED:
        c->n_dropped++;
        break;
    case MOAT_MQTT_EV_SUBACK:
        c->n_suback++;
        c->suback_err = (int)ev->err;
        c->suback_count = ev->count < sizeof(c->suback_codes) ? ev->count
                                                              : sizeof(c->suback_codes);
        if (ev->codes != NULL)
            memcpy(c->suback_codes, ev->codes, c->suback_count);
        break;
    case MOAT_MQTT_EV_UNSUBACK:
        c->n_unsuback++;
        break;
    case MOAT_MQTT_EV_ERROR:
        c->n_errors++;
        c->last_error_err = (int)ev->err;
        break;
    }
}

static void dump_client(void *arg)
{
    itest_client *c = arg;
    fprintf(stderr, "----- client %s: state %s, %zu window slots used, socket %s -----\n",
            c->id, itest_state_name(moat_mqtt_get_state(&c->mqtt)),
            moat_mqtt_inflight_used(&c->mqtt),
            c->tcp.fd < 0 ? "closed" : c->linked ? "linked" : "connecting");
    fprintf(stderr, "  attempts %u, connected %u, disconnected %u, published %u, "
                    "dropped %u, suback %u, errors %u, messages %u\n",
            c->n_attempts, c->n_connected, c->n_disconnected, c->n_published, c->n_dropped,
            c->n_suback, c->n_errors, c->n_messages);
    /* Events other than the bulk ones, last 40. */
    size_t shown = 0;
    uint32_t now = moat_clock_ms();
    for (size_t i = c->n_events; i-- > 0 && shown < 40;) {
        const itest_event *e = &c->events[i];
        if (e->type == MOAT_MQTT_EV_MESSAGE || e->type == MOAT_MQTT_EV_PUBLISHED)
            continue;
        fprintf(stderr, "  %7.3f s ago: %s err=%d (%s) id=%u sp=%d\n",
                (double)(now - e->at_ms) / 1000.0, itest_event_name(e->type), e->err,
                moat_strerror(e->err), (unsigned)e->packet_id, (int)e->session_present);
        shown++;
    }
}

void itest_client_init(itest_client *c, const itest_client_opts *o, uint16_t port)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", o->client_id);
    snprintf(c->host, sizeof(c->host), "127.0.0.1");
    c->port = port;
    c->keep_messages = o->keep_messages;
    moat_tcp_init(&c->tcp);
    moat_tcp_transport(&c->tcp, &c->tr);

    moat_mqtt_config *cfg = &c->cfg;
    cfg->client_id = c->id;
    cfg->clean_session = o->clean_session;
    cfg->keepalive_s = o->keepalive_s ? o->keepalive_s : 30;
    if (o->will_topic != NULL) {
        snprintf(c->will_topic, sizeof(c->will_topic), "%s", o->will_topic);
        snprintf(c->will_payload, sizeof(c->will_payload), "%s",
                 o->will_payload != NULL ? o->will_payload : "");
        cfg->will_topic = c->will_topic;
        cfg->will_payload = (const uint8_t *)c->will_payload;
        cfg->will_len = (uint16_t)strlen(c->will_payload);
        cfg->will_qos = o->will_qos;
        cfg->will_retain = o->will_retain;
    }
    cfg->connack_timeout_ms = o->connack_timeout_ms;
    cfg->ping_timeout_ms = o->ping_timeout_ms;
    cfg->backoff_base_ms = o->backoff_base_ms ? o->backoff_base_ms : 100;
    cfg->backoff_cap_ms = o->backoff_cap_ms ? o->backoff_cap_ms : 1000;
    cfg->backoff_stable_ms = o->backoff_stable_ms;
    cfg->random = moat_random32;
    cfg->on_event = on_event;
    cfg->user = c;
    cfg->large = o->large;

    c->bufs.tx_size = o->tx_size ? o->tx_size : 16384;
    c->bufs.rx_size = o->rx_size ? o->rx_size : 4096;
    c->bufs.store_size = o->store_size ? o->store_size : 65536;
    c->bufs.inflight_count = o->window ? o->window : 32;
    c->bufs.tx = xrealloc(NULL, c->bufs.tx_size);
    c->bufs.rx = xrealloc(NULL, c->bufs.rx_size);
    c->bufs.store = xrealloc(NULL, c->bufs.store_size);
    c->bufs.inflight = xrealloc(NULL, c->bufs.inflight_count * sizeof(moat_mqtt_inflight));
    c->bufs.qos2_set = xrealloc(NULL, MOAT_MQTT_QOS2_SET_SIZE); /* init zeroes it */

    moat_err r = moat_mqtt_init(&c->mqtt, cfg, &c->bufs);
    ITEST_CHECK(r == MOAT_OK, "moat_mqtt_init(%s): %s (%d)", c->id, moat_strerror(r), r);
    ITEST_CHECK(moat_mqtt_get_state(&c->mqtt) == MOAT_MQTT_IDLE,
                "a new client is %s, not IDLE", itest_state_name(moat_mqtt_get_state(&c->mqtt)));
    itest_on_failure(dump_client, c);
}

void itest_client_start(itest_client *c)
{
    moat_err r = moat_mqtt_start(&c->mqtt, moat_clock_ms());
    ITEST_CHECK(r == MOAT_OK, "moat_mqtt_start(%s): %s", c->id, moat_strerror(r));
    c->active = true;
}

void itest_client_kill(itest_client *c)
{
    moat_tcp_close(&c->tcp);
    c->linked = false;
    c->active = false;
}

void itest_client_free(itest_client *c)
{
    itest_remove_on_failure(dump_client, c);
    moat_tcp_close(&c->tcp);
    for (size_t i = 0; i < c->n_msgs; i++)
        free_msg(&c->msgs[i]);
    if (c->in_partial)
        free_msg(&c->partial);
    free(c->msgs);
    free(c->events);
    free(c->bufs.tx);
    free(c->bufs.rx);
    free(c->bufs.store);
    free(c->bufs.inflight);
    free(c->bufs.qos2_set);
    memset(c, 0, sizeof(*c));
    c->tcp.fd = -1;
}

static void link_up(itest_client *c, uint32_t now)
{
    c->linked = true;
    moat_err r = moat_mqtt_link_up(&c->mqtt, now);
    ITEST_CHECK(r == MOAT_OK, "%s: moat_mqtt_link_up: %s", c->id, moat_strerror(r));
}

static void connect_failed(itest_client *c, moat_err err, uint32_t now)
{
    moat_tcp_close(&c->tcp);
    c->linked = false;
    moat_mqtt_link_down(&c->mqtt, err, now);
    moat_mqtt_state st = moat_mqtt_get_state(&c->mqtt);
    ITEST_CHECK(st == MOAT_MQTT_BACKOFF,
                "%s: after link_down(%s) on a failed connect the engine is %s, not BACKOFF",
                c->id, moat_strerror(err), itest_state_name(st));
}

/* One step of one client: open the link when due, move bytes, close the
 * link when the engine says so. */
static void step(itest_client *c)
{
    uint32_t now = moat_clock_ms();
    if (!c->active)
        return;
    if (c->tcp.fd >= 0 && !c->linked) {
        moat_err r = moat_tcp_connect_poll(&c->tcp);
        if (r == MOAT_OK)
            link_up(c, now);
        else if (r != MOAT_ERR_WOULD_BLOCK)
            connect_failed(c, r, now);
        else if (now - c->connect_started_ms >= TCP_CONNECT_TIMEOUT_MS)
            connect_failed(c, MOAT_ERR_TIMEOUT, now);
    }
    if (c->tcp.fd < 0 && moat_mqtt_connect_due(&c->mqtt, now)) {
        c->n_attempts++;
        record_event(c, ITEST_EV_ATTEMPT, 0, 0, false);
        c->connect_started_ms = now;
        moat_err r = moat_tcp_connect_start(&c->tcp, c->host, c->port);
        if (r == MOAT_OK)
            link_up(c, now);
        else if (r != MOAT_ERR_WOULD_BLOCK)
            connect_failed(c, r, now);
    }
    if (!c->linked)
        return;
    moat_err r = moat_mqtt_pump(&c->mqtt, &c->tr, now);
    moat_mqtt_state st = moat_mqtt_get_state(&c->mqtt);
    if (r != MOAT_OK) {
        moat_tcp_close(&c->tcp);
        c->linked = false;
        ITEST_CHECK(st == MOAT_MQTT_BACKOFF || st == MOAT_MQTT_IDLE,
                    "%s: moat_mqtt_pump returned %s but left the engine in %s "
                    "(mqtt.h: it must already be in BACKOFF or IDLE)",
                    c->id, moat_strerror(r), itest_state_name(st));
        return;
    }
    size_t pending = 0;
    moat_mqtt_output(&c->mqtt, &pending);
    if (st == MOAT_MQTT_CLOSING && pending == 0) {
        moat_tcp_close(&c->tcp);
        c->linked = false;
        moat_mqtt_link_down(&c->mqtt, MOAT_OK, now);
    }
}

void itest_run_once(itest_client *const *cs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        step(cs[i]);
}

bool itest_run_until(itest_client *const *cs, size_t n, uint32_t timeout_ms, itest_cond cond,
                     void *arg)
{
    struct pollfd pfd[16];
    if (n > 16)
        ITEST_FAIL("itest_run_until: at most 16 clients");
    uint32_t start = moat_clock_ms();
    for (;;) {
        itest_run_once(cs, n);
        if (cond != NULL && cond(arg))
            return true;
        uint32_t now = moat_clock_ms();
        uint32_t elapsed = now - start;
        if (elapsed >= timeout_ms)
            return cond == NULL;
        uint32_t wait = timeout_ms - elapsed;
        if (wait > MAX_POLL_MS)
            wait = MAX_POLL_MS;
        size_t nfds = 0;
        for (size_t i = 0; i < n; i++) {
            itest_client *c = cs[i];
            if (!c->active)
                continue;
            /* While a TCP connect is pending, its socket says when to go on. */
            if (c->tcp.fd < 0 || c->linked) {
                uint32_t t = moat_mqtt_next_timeout(&c->mqtt, now);
                if (t < wait)
                    wait = t;
            }
            if (c->tcp.fd < 0)
                continue;
            short ev;
            if (!c->linked) {
                ev = POLLOUT;
            } else {
                size_t pending = 0;
                moat_mqtt_output(&c->mqtt, &pending);
                ev = (short)(POLLIN | (pending > 0 ? POLLOUT : 0));
            }
            pfd[nfds].fd = c->tcp.fd;
            pfd[nfds].events = ev;
            pfd[nfds].revents = 0;
            nfds++;
        }
        if (poll(pfd, (nfds_t)nfds, (int)wait) < 0 && errno != EINTR)
            ITEST_FAIL("poll: %s", strerror(errno));
    }
}

bool itest_cond_connected(void *client)
{
    itest_client *c = client;
    return moat_mqtt_get_state(&c->mqtt) == MOAT_MQTT_CONNECTED;
}

bool itest_cond_idle(void *client)
{
    itest_client *c = client;
    return moat_mqtt_get_state(&c->mqtt) == MOAT_MQTT_IDLE && c->tcp.fd < 0;
}

void itest_wait_connected(itest_client *const *cs, size_t n, itest_client *c,
                          uint32_t timeout_ms)
{
    if (!itest_run_until(cs, n, timeout_ms, itest_cond_connected, c))
        ITEST_FAIL("%s did not connect within %u ms: state %s, %u TCP attempts, last "
                   "disconnect error %s",
                   c->id, timeout_ms, itest_state_name(moat_mqtt_get_state(&c->mqtt)),
                   c->n_attempts, moat_strerror(c->last_disconnect_err));
}

typedef struct suback_wait {
    itest_client *c;
    unsigned before;
} suback_wait;

static bool cond_suback(void *arg)
{
    suback_wait *w = arg;
    return w->c->n_suback > w->before;
}

void itest_subscribe(itest_client *const *cs, size_t n, itest_client *c, const char *filter,
                     uint8_t qos, uint32_t timeout_ms)
{
    moat_mqtt_sub sub = { filter, qos };
    uint16_t id = 0;
    suback_wait w = { c, c->n_suback };
    moat_err r = moat_mqtt_subscribe(&c->mqtt, &sub, 1, &id, moat_clock_ms());
    ITEST_CHECK(r == MOAT_OK, "%s: moat_mqtt_subscribe('%s', QoS %u): %s", c->id, filter,
                (unsigned)qos, moat_strerror(r));
    if (!itest_run_until(cs, n, timeout_ms, cond_suback, &w))
        ITEST_FAIL("%s: no SUBACK for '%s' within %u ms", c->id, filter, timeout_ms);
    const itest_event *e = itest_last_event(c, MOAT_MQTT_EV_SUBACK);
    ITEST_CHECK(e != NULL && e->packet_id == id,
                "%s: SUBACK has packet id %u, SUBSCRIBE had %u", c->id,
                e != NULL ? (unsigned)e->packet_id : 0u, (unsigned)id);
    ITEST_CHECK(c->suback_count == 1, "%s: SUBACK reports %zu codes for 1 filter", c->id,
                c->suback_count);
    ITEST_CHECK(c->suback_err == MOAT_OK && c->suback_codes[0] == qos,
                "%s: SUBACK for '%s' QoS %u: code 0x%02x, err %s", c->id, filter,
                (unsigned)qos, c->suback_codes[0], moat_strerror(c->suback_err));
}

moat_err itest_publish(itest_client *c, const char *topic, const void *payload, size_t len,
                       uint8_t qos, bool retain, uint16_t *packet_id)
{
    moat_mqtt_message m;
    memset(&m, 0, sizeof(m));
    m.topic = topic;
    m.payload = payload;
    m.len = len;
    m.qos = qos;
    m.retain = retain;
    return moat_mqtt_publish(&c->mqtt, &m, packet_id, moat_clock_ms());
}

void itest_disconnect(itest_client *const *cs, size_t n, itest_client *c, uint32_t timeout_ms)
{
    moat_err r = moat_mqtt_disconnect(&c->mqtt, moat_clock_ms());
    ITEST_CHECK(r == MOAT_OK, "%s: moat_mqtt_disconnect: %s", c->id, moat_strerror(r));
    if (!itest_run_until(cs, n, timeout_ms, itest_cond_idle, c))
        ITEST_FAIL("%s: not IDLE with the socket closed %u ms after DISCONNECT: state %s",
                   c->id, timeout_ms, itest_state_name(moat_mqtt_get_state(&c->mqtt)));
    c->active = false;
}

const itest_event *itest_last_event(const itest_client *c, int type)
{
    for (size_t i = c->n_events; i-- > 0;)
        if (c->events[i].type == type)
            return &c->events[i];
    return NULL;
}
