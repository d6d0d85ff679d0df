/*
 * mqtt_client.c - the sans-I/O MQTT 3.1.1 client: connection state, the
 * in-flight window, QoS 1/2 flows in both directions, keep-alive, streaming
 * of large messages, and the reconnect policy.
 *
 * Invariants kept by every function here:
 *  - win[0..win_used) are the in-flight slots, oldest first.
 *  - Slots of kind PUB1/PUB2 own len bytes of store; those byte ranges are in
 *    slot order and packed from store[0], so a slot's offset is the sum of
 *    the lengths before it, and store_len is the sum of all.
 *  - F_TX is set on a slot whose packet is in tx or was sent on this link;
 *    F_SENT on one that was ever sent, which makes a resend carry DUP.
 *  - tx[0..tx_len) are whole packets; the caller removes sent bytes from the
 *    front with moat_mqtt_output_done().
 */
#include "mqtt_internal.h"

enum slot_kind {
    K_PUB1 = 1, /* our QoS 1 PUBLISH, awaiting PUBACK */
    K_PUB2,     /* our QoS 2 PUBLISH, awaiting PUBREC */
    K_REL,      /* our PUBREL, awaiting PUBCOMP */
    K_IN2,      /* their QoS 2 PUBLISH, PUBREC sent, awaiting PUBREL */
    K_SUB,      /* our SUBSCRIBE (len = filter count), awaiting SUBACK */
    K_UNSUB     /* our UNSUBSCRIBE, awaiting UNSUBACK */
};

#define F_TX 0x01u
#define F_SENT 0x02u
#define F_PARTIAL 0x04u /* K_IN2 whose streamed payload is still arriving */

/* c->flags */
#define CF_PING 0x01u  /* PINGREQ queued, PINGRESP awaited by deadline_ms */
#define CF_LARGE 0x02u /* the packet in rx is the head of a streamed PUBLISH */

enum rx_state {
    RX_HDR = 0, /* next byte is a fixed header's first byte */
    RX_LEN,     /* reading the remaining length */
    RX_BODY,    /* buffering a whole packet in rx */
    RX_HEAD,    /* buffering the variable header of a PUBLISH larger than rx */
    RX_STREAM,  /* passing its payload to the application in pieces */
    RX_SKIP,    /* skipping its payload (refused, or a QoS 2 duplicate) */
    RX_READY    /* a packet is complete and waits for room to reply */
};

#define ACK_SIZE 4u

static void emit(moat_mqtt_client *c, moat_mqtt_event *ev)
{
    if (c->cfg->on_event)
        c->cfg->on_event(c->cfg->user, ev);
}

static void emit_simple(moat_mqtt_client *c, moat_mqtt_event_type type, moat_err err,
                        uint16_t packet_id)
{
    moat_mqtt_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.err = err;
    ev.packet_id = packet_id;
    emit(c, &ev);
}

static uint32_t tx_free(const moat_mqtt_client *c)
{
    uint32_t free = c->tx_size - c->tx_len;
    return free > c->tx_reserve ? free - c->tx_reserve : 0;
}

/* ---- in-flight slots ---------------------------------------------------- */

static moat_mqtt_inflight *slot_find(moat_mqtt_client *c, uint8_t kind, uint16_t id)
{
    for (uint16_t i = 0; i < c->win_used; i++)
        if (c->win[i].packet_id == id && c->win[i].kind == kind)
            return &c->win[i];
    return NULL;
}

static bool holds_store(const moat_mqtt_inflight *s)
{
    return s->kind == K_PUB1 || s->kind == K_PUB2;
}

/* Where a slot's bytes start in the store. */
static uint32_t store_off(const moat_mqtt_client *c, const moat_mqtt_inflight *s)
{
    uint32_t off = 0;
    for (const moat_mqtt_inflight *t = c->win; t < s; t++)
        off += holds_store(t) ? t->len : 0;
    return off;
}

/* Give back a slot's store bytes, keeping the store packed. */
static void store_release(moat_mqtt_client *c, moat_mqtt_inflight *s)
{
    uint32_t off = store_off(c, s);
    if (!holds_store(s))
        return;
    memmove(c->store + off, c->store + off + s->len, c->store_len - off - s->len);
    c->store_len -= s->len;
    s->len = 0;
}

static void slot_remove(moat_mqtt_client *c, moat_mqtt_inflight *s)
{
    size_t i = (size_t)(s - c->win);
    store_release(c, s);
    memmove(&c->win[i], &c->win[i + 1], (c->win_used - i - 1) * sizeof(*s));
    c->win_used--;
}

static moat_mqtt_inflight *slot_add(moat_mqtt_client *c, uint8_t kind, uint16_t id, uint32_t len)
{
    moat_mqtt_inflight *s;
    if (c->win_used >= c->win_count)
        return NULL;
    s = &c->win[c->win_used++];
    s->kind = kind;
    s->packet_id = id;
    s->len = len;
    s->flags = 0;
    return s;
}

/* Packet identifiers for our packets: 1..65535, skipping those in flight. */
static uint16_t next_packet_id(moat_mqtt_client *c)
{
    for (;;) {
        uint16_t id = c->next_id++;
        if (c->next_id == 0)
            c->next_id = 1;
        bool used = false;
        for (uint16_t i = 0; i < c->win_used; i++)
            used |= c->win[i].kind != K_IN2 && c->win[i].packet_id == id;
        if (!used)
            return id;
    }
}

/* Incoming QoS 2 awaiting PUBREL: in the bit set if there is one, else in
 * a window slot. mark: 1 set, 0 clear, -1 query only. */
static bool in2_mark(moat_mqtt_client *c, uint16_t id, int mark)
{
    uint8_t *byte, bit = (uint8_t)(1u << (id & 7u));
    moat_mqtt_inflight *s;
    bool was;
    if (!c->qos2_set) {
        s = slot_find(c, K_IN2, id);
        if (s && mark == 0)
            slot_remove(c, s);
        return s != NULL;
    }
    byte = &c->qos2_set[id >> 3];
    was = (*byte & bit) != 0;
    if (mark >= 0)
        *byte = (uint8_t)(mark ? (*byte | bit) : (*byte & ~bit));
    return was;
}

/* ---- output ------------------------------------------------------------- */

static bool queue_ack(moat_mqtt_client *c, uint8_t type, uint16_t id)
{
    size_t n;
    if (c->state == MOAT_MQTT_CLOSING)
        return true; /* a callback sent DISCONNECT: nothing may follow it */
    if (c->tx_size - c->tx_len < ACK_SIZE)
        return false;
    moat_mqtt_encode_ack(c->tx + c->tx_len, ACK_SIZE, &n, type, id);
    c->tx_len += ACK_SIZE;
    return true;
}

/* Copy slots not yet sent on this link into tx, oldest first, while they fit. */
static void flush_queue(moat_mqtt_client *c)
{
    uint16_t limit = c->cfg->max_inflight ? c->cfg->max_inflight : 20u, out = 0;
    uint32_t next = 0; /* store offset of the slot after this one */
    if (c->state != MOAT_MQTT_CONNECTED)
        return;
    for (uint16_t i = 0; i < c->win_used; i++) {
        moat_mqtt_inflight *s = &c->win[i];
        bool ours = holds_store(s) || s->kind == K_REL;
        uint32_t off = next;
        next += holds_store(s) ? s->len : 0;
        if (s->flags & F_TX) {
            out += ours;
            continue;
        }
        if (ours && out++ >= limit)
            return;
        if (holds_store(s)) {
            if (s->len > tx_free(c))
                return;
            memcpy(c->tx + c->tx_len, c->store + off, s->len);
            if (s->flags & F_SENT)
                c->tx[c->tx_len] |= 0x08u; /* DUP: MQTT-3.3.1-1 */
            c->tx_len += s->len;
        } else if (s->kind == K_REL) {
            if (tx_free(c) < ACK_SIZE)
                return;
            queue_ack(c, MOAT_MQTT_PUBREL, s->packet_id);
        }
        s->flags |= F_TX | F_SENT;
    }
}

const uint8_t *moat_mqtt_output(const moat_mqtt_client *c, size_t *len)
{
    *len = c->tx_len;
    return c->tx;
}

void moat_mqtt_output_done(moat_mqtt_client *c, size_t n, uint32_t now_ms)
{
    if (n > c->tx_len)
        n = c->tx_len;
    if (n == 0)
        return;
    memmove(c->tx, c->tx + n, c->tx_len - n);
    c->tx_len -= (uint32_t)n;
    c->last_tx_ms = now_ms;
    flush_queue(c);
}

/* ---- life cycle --------------------------------------------------------- */

moat_err moat_mqtt_init(moat_mqtt_client *c, const moat_mqtt_config *cfg,
                        const moat_mqtt_buffers *b)
{
    if (!b->tx || !b->rx || !cfg->random || !cfg->client_id || b->tx_size < 16 ||
        b->rx_size < 8 || b->inflight_count > 0xFFFEu || (b->inflight_count && !b->inflight) ||
        (b->store_size && !b->store) ||
        ((b->tx_size | b->rx_size | b->store_size) >> 31))
        return MOAT_ERR_ARG; /* the will and strings are checked at link_up */
    memset(c, 0, sizeof(*c));
    c->cfg = cfg;
    c->tx = b->tx;
    c->tx_size = (uint32_t)b->tx_size;
    c->rx = b->rx;
    c->rx_size = (uint32_t)b->rx_size;
    c->store = b->store;
    c->store_size = (uint32_t)b->store_size;
    c->win = b->inflight;
    c->win_count = (uint16_t)b->inflight_count;
    c->qos2_set = b->qos2_set;
    if (c->qos2_set)
        memset(c->qos2_set, 0, MOAT_MQTT_QOS2_SET_SIZE);
    c->next_id = 1; /* and state IDLE, by the memset */
    return MOAT_OK;
}

moat_err moat_mqtt_start(moat_mqtt_client *c, uint32_t now_ms)
{
    if (c->state != MOAT_MQTT_IDLE)
        return MOAT_ERR_STATE;
    c->state = MOAT_MQTT_BACKOFF;
    c->deadline_ms = now_ms;
    c->attempt = 0;
    return MOAT_OK;
}

bool moat_mqtt_connect_due(const moat_mqtt_client *c, uint32_t now_ms)
{
    return c->state == MOAT_MQTT_BACKOFF && moat_time_reached(now_ms, c->deadline_ms);
}

/* A C string as an MQTT string; false if it is longer than 65535 bytes. */
static bool cstr(moat_mqtt_str *r, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    r->data = (const uint8_t *)s;
    r->len = (uint16_t)n;
    return n <= 65535;
}

moat_err moat_mqtt_link_up(moat_mqtt_client *c, uint32_t now_ms)
{
    const moat_mqtt_config *cfg = c->cfg;
    moat_mqtt_connect_pkt p;
    size_t n;
    moat_err e;

    if (c->state != MOAT_MQTT_BACKOFF)
        return MOAT_ERR_STATE;
    memset(&p, 0, sizeof(p));
    p.version = MOAT_MQTT_V311;
    p.clean_session = cfg->clean_session;
    p.keepalive_s = cfg->keepalive_s;
    p.has_will = cfg->will_topic != NULL;
    if (!cstr(&p.client_id, cfg->client_id) || !cstr(&p.will_topic, cfg->will_topic) ||
        !cstr(&p.username, cfg->username))
        return MOAT_ERR_ARG;
    p.will_payload.data = cfg->will_payload;
    p.will_payload.len = cfg->will_len;
    p.will_qos = cfg->will_qos; /* set without a will topic: refused by the encoder */
    p.will_retain = cfg->will_retain;
    p.has_username = cfg->username != NULL;
    p.has_password = cfg->password != NULL;
    p.password.data = cfg->password;
    p.password.len = cfg->password_len;

    c->tx_len = 0;
    c->tx_reserve = 0;
    c->rx_state = RX_HDR;
    c->flags = 0;
    e = moat_mqtt_encode_connect(c->tx, c->tx_size, &n, &p);
    if (e != MOAT_OK)
        return e;
    c->tx_len = (uint32_t)n;
    c->state = MOAT_MQTT_WAIT_CONNACK;
    c->deadline_ms = now_ms + (cfg->connack_timeout_ms ? cfg->connack_timeout_ms : 10000u);
    c->last_tx_ms = now_ms;
    return MOAT_OK;
}

/* Full jitter: uniform in [0, min(cap, base * 2^attempt)]. */
static uint32_t backoff_delay(moat_mqtt_client *c)
{
    const moat_mqtt_config *cfg = c->cfg;
    uint32_t cap = cfg->backoff_cap_ms ? cfg->backoff_cap_ms : 60000u;
    uint32_t ceil = cfg->backoff_base_ms ? cfg->backoff_base_ms : 1000u;
    for (uint8_t k = 0; k < c->attempt && ceil < cap; k++)
        ceil = ceil > cap / 2 ? cap : ceil * 2;
    if (ceil > cap)
        ceil = cap;
    if (c->attempt < 31)
        c->attempt++;
    if (ceil == UINT32_MAX)
        return cfg->random(cfg->user);
    return cfg->random(cfg->user) % (ceil + 1u);
}

void moat_mqtt_link_down(moat_mqtt_client *c, moat_err err, uint32_t now_ms)
{
    uint8_t was = c->state;
    uint32_t stable = c->cfg->backoff_stable_ms ? c->cfg->backoff_stable_ms : 30000u;
    uint16_t i = 0;

    /* In BACKOFF only a due attempt can fail: a second call for a link the
     * client already took down (after a fatal error) changes nothing. */
    if (was == MOAT_MQTT_IDLE || (was == MOAT_MQTT_BACKOFF && !moat_mqtt_connect_due(c, now_ms)))
        return;
    /* Our DISCONNECT is out: the peer closing is the end we asked for. */
    if (was == MOAT_MQTT_CLOSING && c->tx_len == 0)
        err = MOAT_OK;
    c->tx_len = 0;
    c->tx_reserve = 0;
    c->rx_state = RX_HDR;
    c->flags = 0;
    while (i < c->win_used) {
        moat_mqtt_inflight *s = &c->win[i];
        if (s->kind == K_SUB || s->kind == K_UNSUB) {
            uint8_t type = s->kind == K_SUB ? MOAT_MQTT_EV_SUBACK : MOAT_MQTT_EV_UNSUBACK;
            uint16_t id = s->packet_id;
            slot_remove(c, s);
            emit_simple(c, (moat_mqtt_event_type)type, MOAT_ERR_CLOSED, id);
            continue;
        }
        if (s->kind == K_IN2 && (s->flags & F_PARTIAL)) {
            slot_remove(c, s);
            continue;
        }
        s->flags &= (uint8_t)~F_TX;
        i++;
    }
    if (was == MOAT_MQTT_CLOSING || err == MOAT_OK) {
        c->state = MOAT_MQTT_IDLE;
    } else {
        if (was == MOAT_MQTT_CONNECTED && moat_elapsed(c->connected_ms, now_ms) >= stable)
            c->attempt = 0;
        c->state = MOAT_MQTT_BACKOFF;
        c->deadline_ms = now_ms + backoff_delay(c);
    }
    emit_simple(c, MOAT_MQTT_EV_DISCONNECTED, err, 0);
}

static moat_err fail(moat_mqtt_client *c, moat_err err, uint32_t now_ms)
{
    moat_mqtt_link_down(c, err, now_ms);
    return err;
}

moat_err moat_mqtt_disconnect(moat_mqtt_client *c, uint32_t now_ms)
{
    size_t n;
    (void)now_ms;
    if (c->state == MOAT_MQTT_IDLE || c->state == MOAT_MQTT_CLOSING)
        return MOAT_OK;
    if (c->state == MOAT_MQTT_BACKOFF) {
        c->state = MOAT_MQTT_IDLE;
        return MOAT_OK;
    }
    if (moat_mqtt_encode_empty(c->tx + c->tx_len, c->tx_size - c->tx_len, &n,
                               MOAT_MQTT_DISCONNECT) != MOAT_OK)
        return MOAT_ERR_WOULD_BLOCK;
    c->tx_len += (uint32_t)n;
    c->state = MOAT_MQTT_CLOSING;
    return MOAT_OK;
}

moat_mqtt_state moat_mqtt_get_state(const moat_mqtt_client *c)
{
    return (moat_mqtt_state)c->state;
}

size_t moat_mqtt_inflight_used(const moat_mqtt_client *c)
{
    return c->win_used;
}

/* ---- application requests ----------------------------------------------- */

/* A packet that did not fit tx may fit once tx drains. */
static moat_err space_err(const moat_mqtt_client *c, moat_err e)
{
    return e == MOAT_ERR_NO_SPACE && c->tx_len > 0 ? MOAT_ERR_WOULD_BLOCK : e;
}

static bool linked(const moat_mqtt_client *c)
{
    return c->state == MOAT_MQTT_CONNECTED;
}

moat_err moat_mqtt_publish(moat_mqtt_client *c, const moat_mqtt_message *m,
                           uint16_t *packet_id, uint32_t now_ms)
{
    moat_mqtt_publish_pkt p;
    uint8_t *dst = c->tx + c->tx_len;
    uint32_t room = tx_free(c);
    size_t n;
    moat_err e;
    (void)now_ms;

    memset(&p, 0, sizeof(p));
    if (!cstr(&p.topic, m->topic))
        return MOAT_ERR_TOPIC;
    p.qos = m->qos;
    p.retain = m->retain;
    p.payload = m->payload;
    p.payload_len = m->len;
    /* QoS 0 goes straight to tx, connected only. QoS 1/2 goes to the store,
     * also while the link is down, and is sent from there. */
    if (m->qos == 0 ? !linked(c) : c->state == MOAT_MQTT_IDLE || c->state == MOAT_MQTT_CLOSING)
        return MOAT_ERR_STATE;
    if (m->qos > 0) {
        if (c->win_used >= c->win_count)
            return MOAT_ERR_WINDOW_FULL;
        p.packet_id = next_packet_id(c);
        dst = c->store + c->store_len;
        room = c->store_size - c->store_len;
    }
    e = moat_mqtt_encode_publish(dst, room, &n, &p);
    if (e != MOAT_OK)
        return m->qos == 0 ? space_err(c, e) : e == MOAT_ERR_NO_SPACE ? MOAT_ERR_WINDOW_FULL : e;
    if (packet_id)
        *packet_id = p.packet_id;
    if (m->qos == 0) {
        c->tx_len += (uint32_t)n;
        return MOAT_OK;
    }
    if (n > c->tx_size)
        return MOAT_ERR_NO_SPACE; /* could never be sent */
    slot_add(c, m->qos == 1 ? K_PUB1 : K_PUB2, p.packet_id, (uint32_t)n);
    c->store_len += (uint32_t)n;
    flush_queue(c);
    return MOAT_OK;
}

static moat_err sublist_request(moat_mqtt_client *c, uint8_t kind, const moat_mqtt_sub *subs,
                                size_t count, uint16_t *packet_id)
{
    uint16_t id;
    size_t n;
    moat_err e;
    if (!linked(c))
        return MOAT_ERR_STATE;
    if (c->win_used >= c->win_count)
        return MOAT_ERR_WINDOW_FULL;
    id = next_packet_id(c);
    e = (kind == K_SUB ? moat_mqtt_encode_subscribe : moat_mqtt_encode_unsubscribe)(
        c->tx + c->tx_len, tx_free(c), &n, id, subs, count);
    if (e != MOAT_OK)
        return space_err(c, e);
    c->tx_len += (uint32_t)n;
    slot_add(c, kind, id, (uint32_t)count)->flags = F_TX | F_SENT;
    if (packet_id)
        *packet_id = id;
    return MOAT_OK;
}

moat_err moat_mqtt_subscribe(moat_mqtt_client *c, const moat_mqtt_sub *subs, size_t count,
                             uint16_t *packet_id, uint32_t now_ms)
{
    (void)now_ms;
    return sublist_request(c, K_SUB, subs, count, packet_id);
}

moat_err moat_mqtt_unsubscribe(moat_mqtt_client *c, const moat_mqtt_sub *subs, size_t count,
                               uint16_t *packet_id, uint32_t now_ms)
{
    (void)now_ms;
    return sublist_request(c, K_UNSUB, subs, count, packet_id);
}

/* ---- timers ------------------------------------------------------------- */

static uint32_t ping_timeout(const moat_mqtt_client *c)
{
    uint32_t t = c->cfg->ping_timeout_ms;
    if (t == 0) {
        t = (uint32_t)c->cfg->keepalive_s * 500u;
        if (t < 1000u)
            t = 1000u;
    }
    return t;
}

moat_err moat_mqtt_tick(moat_mqtt_client *c, uint32_t now_ms)
{
    uint32_t ka = (uint32_t)c->cfg->keepalive_s * 1000u;
    bool connack = c->state == MOAT_MQTT_WAIT_CONNACK;
    bool waiting = connack || (c->flags & CF_PING);

    if (waiting && moat_time_reached(now_ms, c->deadline_ms))
        return fail(c, connack ? MOAT_ERR_CONNACK_TIMEOUT : MOAT_ERR_KEEPALIVE, now_ms);
    if (c->state != MOAT_MQTT_CONNECTED || ka == 0 || waiting ||
        moat_elapsed(c->last_tx_ms, now_ms) < ka)
        return MOAT_OK;
    /* Idle for keepalive_s: PINGREQ. When tx cannot take even that, nothing
     * has left for keepalive_s: the deadline runs all the same, so a stalled
     * link is declared dead within keepalive + ping timeout. */
    if (c->tx_size - c->tx_len >= 2) {
        c->tx[c->tx_len++] = MOAT_MQTT_PINGREQ << 4;
        c->tx[c->tx_len++] = 0;
    }
    c->flags |= CF_PING;
    c->deadline_ms = now_ms + ping_timeout(c);
    return MOAT_OK;
}

static uint32_t until(uint32_t now_ms, uint32_t deadline_ms)
{
    return moat_time_reached(now_ms, deadline_ms) ? 0 : deadline_ms - now_ms;
}

uint32_t moat_mqtt_next_timeout(const moat_mqtt_client *c, uint32_t now_ms)
{
    uint32_t ka = (uint32_t)c->cfg->keepalive_s * 1000u;
    switch (c->state) {
    case MOAT_MQTT_BACKOFF:
    case MOAT_MQTT_WAIT_CONNACK:
        return until(now_ms, c->deadline_ms);
    case MOAT_MQTT_CONNECTED:
        if (ka == 0)
            return UINT32_MAX;
        if (c->flags & CF_PING)
            return until(now_ms, c->deadline_ms);
        return until(now_ms, c->last_tx_ms + ka);
    default:
        return UINT32_MAX;
    }
}

/* ---- input: packet handlers --------------------------------------------- */

static moat_err on_connack(moat_mqtt_client *c, const moat_mqtt_packet *p, uint32_t now_ms)
{
    static const moat_err refused[] = {
        MOAT_ERR_CONNACK_VERSION, MOAT_ERR_CONNACK_ID, MOAT_ERR_CONNACK_UNAVAILABLE,
        MOAT_ERR_CONNACK_CREDENTIALS, MOAT_ERR_CONNACK_AUTH};
    bool sp = p->u.connack.session_present;
    uint8_t rc = p->u.connack.return_code;
    uint16_t i = 0;
    moat_mqtt_event ev;

    if (c->state != MOAT_MQTT_WAIT_CONNACK)
        return MOAT_ERR_PROTOCOL; /* MQTT-3.2.0-1: CONNACK once, first */
    if (rc != 0)
        return refused[rc - 1]; /* the codec refused codes above 5 */
    if (sp && c->cfg->clean_session)
        return MOAT_ERR_PROTOCOL; /* MQTT-3.2.2-1 */
    c->state = MOAT_MQTT_CONNECTED;
    c->connected_ms = now_ms;
    if (!sp && c->qos2_set)
        memset(c->qos2_set, 0, MOAT_MQTT_QOS2_SET_SIZE);
    while (i < c->win_used) {
        moat_mqtt_inflight *s = &c->win[i];
        bool sent_out = s->kind != K_IN2 && (s->flags & F_SENT);
        if (s->kind == K_IN2 && !sp) {
            slot_remove(c, s); /* the broker forgot them; so do we */
        } else if (sent_out && c->cfg->clean_session) {
            uint16_t id = s->packet_id;
            slot_remove(c, s);
            emit_simple(c, MOAT_MQTT_EV_DROPPED, MOAT_ERR_DROPPED, id);
        } else {
            i++;
        }
    }
    memset(&ev, 0, sizeof(ev));
    ev.type = MOAT_MQTT_EV_CONNECTED;
    ev.session_present = sp;
    emit(c, &ev);
    flush_queue(c);
    return MOAT_OK;
}

static void deliver(moat_mqtt_client *c, const moat_mqtt_publish_pkt *p, const uint8_t *piece,
                    size_t len, size_t offset, size_t total, moat_mqtt_event_type type,
                    moat_err err)
{
    moat_mqtt_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.err = err;
    ev.packet_id = p->packet_id;
    ev.topic = p->topic;
    ev.payload = piece;
    ev.len = len;
    ev.offset = offset;
    ev.total = total;
    ev.qos = p->qos;
    ev.retain = p->retain;
    ev.dup = p->dup;
    emit(c, &ev);
}

/* Acknowledge an incoming PUBLISH whose payload has been fully delivered. */
static void ack_publish(moat_mqtt_client *c, const moat_mqtt_publish_pkt *p)
{
    moat_mqtt_inflight *s;
    if (p->qos == 1)
        queue_ack(c, MOAT_MQTT_PUBACK, p->packet_id);
    if (p->qos == 2) {
        if (c->qos2_set)
            in2_mark(c, p->packet_id, 1); /* set only once fully delivered */
        else if ((s = slot_find(c, K_IN2, p->packet_id)) != NULL)
            s->flags &= (uint8_t)~F_PARTIAL;
        queue_ack(c, MOAT_MQTT_PUBREC, p->packet_id);
    }
}

static void deliver(moat_mqtt_client *c, const moat_mqtt_publish_pkt *p, const uint8_t *piece,
                    size_t len, size_t offset, size_t total, moat_mqtt_event_type type,
                    moat_err err);

/* Before any delivery: a QoS 2 PUBLISH we already hold is a duplicate and is
 * not delivered again; a new one takes a window slot until PUBREL. A slot
 * taken for a streamed payload stays F_PARTIAL until the last piece, and is
 * forgotten if the link drops first, so that the broker's resend is delivered
 * whole. With no slot free the message is still delivered and acknowledged,
 * untracked, after an ERROR event (MOAT_ERR_WINDOW_FULL): refusing it would
 * stall the stream, since the PUBRELs that free slots come after it. */
static void publish_admit(moat_mqtt_client *c, const moat_mqtt_publish_pkt *p, bool partial,
                          bool *dup)
{
    moat_mqtt_inflight *s;
    *dup = false;
    if (p->qos != 2)
        return;
    if (in2_mark(c, p->packet_id, -1)) {
        *dup = true;
        return;
    }
    if (c->qos2_set)
        return; /* marked once delivered, in ack_publish */
    if ((s = slot_add(c, K_IN2, p->packet_id, 0)) == NULL)
        deliver(c, p, NULL, 0, 0, 0, MOAT_MQTT_EV_ERROR, MOAT_ERR_WINDOW_FULL);
    else
        s->flags = partial ? F_PARTIAL : 0;
}

static moat_err on_publish(moat_mqtt_client *c, const moat_mqtt_packet *p)
{
    const moat_mqtt_publish_pkt *pk = &p->u.publish;
    bool dup;
    publish_admit(c, pk, false, &dup);
    if (!dup)
        deliver(c, pk, pk->payload, pk->payload_len, 0, pk->payload_len,
                MOAT_MQTT_EV_MESSAGE, MOAT_OK);
    ack_publish(c, pk);
    return MOAT_OK;
}

static moat_err on_suback(moat_mqtt_client *c, const moat_mqtt_packet *p, bool sub)
{
    uint16_t id = sub ? p->u.suback.packet_id : p->u.packet_id;
    moat_mqtt_inflight *s = slot_find(c, sub ? K_SUB : K_UNSUB, id);
    moat_mqtt_event ev;
    if (!s)
        return MOAT_OK; /* unsolicited: nothing to complete */
    if (sub && p->u.suback.count != s->len)
        return MOAT_ERR_PROTOCOL; /* MQTT-3.8.4-5: one code per filter */
    slot_remove(c, s);
    memset(&ev, 0, sizeof(ev));
    ev.type = sub ? MOAT_MQTT_EV_SUBACK : MOAT_MQTT_EV_UNSUBACK;
    ev.packet_id = id;
    if (sub) {
        ev.codes = p->u.suback.codes;
        ev.count = p->u.suback.count;
        for (size_t i = 0; i < ev.count; i++)
            if (ev.codes[i] == MOAT_MQTT_SUBACK_FAILURE)
                ev.err = MOAT_ERR_SUBACK_FAILURE;
    }
    emit(c, &ev);
    return MOAT_OK;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP. Unknown identifiers are answered as the
 * specification asks (PUBREC -> PUBREL, PUBREL -> PUBCOMP) or ignored. */
static void on_ack(moat_mqtt_client *c, uint8_t type, uint16_t id)
{
    moat_mqtt_inflight *s;
    switch (type) {
    case MOAT_MQTT_PUBACK:
    case MOAT_MQTT_PUBCOMP:
        s = slot_find(c, type == MOAT_MQTT_PUBACK ? K_PUB1 : K_REL, id);
        if (s) {
            slot_remove(c, s);
            emit_simple(c, MOAT_MQTT_EV_PUBLISHED, MOAT_OK, id);
            flush_queue(c); /* the send window moved */
        }
        break;
    case MOAT_MQTT_PUBREC:
        s = slot_find(c, K_PUB2, id);
        if (s) {
            store_release(c, s);
            s->kind = K_REL; /* from now on only PUBREL is ever resent */
            s->flags |= F_TX | F_SENT;
        }
        queue_ack(c, MOAT_MQTT_PUBREL, id);
        break;
    default: /* PUBREL */
        in2_mark(c, id, 0);
        queue_ack(c, MOAT_MQTT_PUBCOMP, id);
        break;
    }
}

static bool needs_reply(uint8_t type, uint8_t flags)
{
    return type == MOAT_MQTT_PUBREC || type == MOAT_MQTT_PUBREL ||
           (type == MOAT_MQTT_PUBLISH && (flags & 0x06u));
}

/* The packet in rx is complete: decode it and act. */
static moat_err dispatch(moat_mqtt_client *c, uint32_t now_ms)
{
    uint8_t type = (uint8_t)(c->rx_hdr >> 4), flags = (uint8_t)(c->rx_hdr & 0x0Fu);
    moat_mqtt_packet p;
    moat_err e;

    if (needs_reply(type, flags) && c->tx_size - c->tx_len < ACK_SIZE)
        return MOAT_ERR_WOULD_BLOCK;
    if (c->flags & CF_LARGE) {
        /* the rest of a streamed PUBLISH: only its acknowledgement is left */
        moat_mqtt__decode_publish(flags, c->rx, c->rx_len, &p);
        c->flags &= (uint8_t)~CF_LARGE;
        ack_publish(c, &p.u.publish);
        return MOAT_OK;
    }
    e = moat_mqtt_decode_from_server(MOAT_MQTT_V311, type, flags, c->rx, c->rx_remaining, &p);
    if (e != MOAT_OK)
        return e;
    if (type != MOAT_MQTT_CONNACK && c->state == MOAT_MQTT_WAIT_CONNACK)
        return MOAT_ERR_PROTOCOL; /* nothing may come before CONNACK */
    switch (type) {
    case MOAT_MQTT_CONNACK:
        return on_connack(c, &p, now_ms);
    case MOAT_MQTT_PUBLISH:
        return on_publish(c, &p);
    case MOAT_MQTT_SUBACK:
    case MOAT_MQTT_UNSUBACK:
        return on_suback(c, &p, type == MOAT_MQTT_SUBACK);
    case MOAT_MQTT_PINGRESP:
        c->flags &= (uint8_t)~CF_PING;
        return MOAT_OK;
    default:
        on_ack(c, type, p.u.packet_id);
        return MOAT_OK;
    }
}

/* ---- input: the byte-level parser --------------------------------------- */

/* The fixed header is read: decide how the body will be taken. */
static moat_err begin_body(moat_mqtt_client *c)
{
    c->rx_len = 0;
    c->rx_body = 0;
    if (c->rx_remaining <= c->rx_size) {
        c->rx_state = c->rx_remaining ? RX_BODY : RX_READY;
        return MOAT_OK;
    }
    if ((c->rx_hdr >> 4) != MOAT_MQTT_PUBLISH)
        return MOAT_ERR_TOO_LARGE;
    c->rx_state = RX_HEAD;
    return MOAT_OK;
}

/* Size of a PUBLISH variable header once its first two bytes are in rx. */
static uint32_t head_size(const moat_mqtt_client *c)
{
    uint32_t n = 2u + (uint32_t)((c->rx[0] << 8) | c->rx[1]);
    return (c->rx_hdr & 0x06u) ? n + 2u : n;
}

/* The variable header of a large PUBLISH is in rx: validate, then stream,
 * refuse or skip its payload. */
static moat_err begin_large(moat_mqtt_client *c)
{
    moat_mqtt_packet p;
    bool dup;
    uint32_t total = c->rx_remaining - c->rx_len;
    moat_err e = moat_mqtt__decode_publish((uint8_t)(c->rx_hdr & 0x0Fu), c->rx, c->rx_len, &p);
    if (e != MOAT_OK)
        return e;
    if (c->state == MOAT_MQTT_WAIT_CONNACK)
        return MOAT_ERR_PROTOCOL;
    publish_admit(c, &p.u.publish, true, &dup);
    c->rx_body = c->rx_len;
    c->flags |= CF_LARGE;
    if (!dup && c->cfg->large == MOAT_MQTT_LARGE_STREAM) {
        c->rx_state = RX_STREAM;
        return MOAT_OK;
    }
    if (!dup)
        deliver(c, &p.u.publish, NULL, 0, 0, total, MOAT_MQTT_EV_ERROR, MOAT_ERR_TOO_LARGE);
    c->rx_state = RX_SKIP;
    return MOAT_OK;
}

/* Consume bytes for the current state; returns how many, or sets *err. */
static size_t rx_step(moat_mqtt_client *c, const uint8_t *d, size_t len, moat_err *err)
{
    uint32_t want;
    size_t n;
    switch (c->rx_state) {
    case RX_HDR:
        if ((d[0] >> 4) == 0 || (d[0] >> 4) == 15) {
            *err = MOAT_ERR_MALFORMED;
            return 0;
        }
        c->rx_hdr = d[0];
        c->rx_remaining = 0;
        c->rx_lenbytes = 0;
        c->rx_state = RX_LEN;
        return 1;
    case RX_LEN:
        c->rx_remaining |= (uint32_t)(d[0] & 0x7Fu) << (7 * c->rx_lenbytes++);
        if (!(d[0] & 0x80u))
            *err = begin_body(c);
        else if (c->rx_lenbytes == 4)
            *err = MOAT_ERR_REMAINING_LENGTH;
        return 1;
    case RX_BODY:
    case RX_HEAD:
        want = c->rx_state == RX_BODY ? c->rx_remaining : c->rx_len < 2 ? 2 : head_size(c);
        if (c->rx_state == RX_HEAD && (want > c->rx_size || want > c->rx_remaining)) {
            *err = want > c->rx_remaining ? MOAT_ERR_REMAINING_LENGTH : MOAT_ERR_TOO_LARGE;
            return 0;
        }
        n = want - c->rx_len < len ? want - c->rx_len : len;
        memcpy(c->rx + c->rx_len, d, n);
        c->rx_len += (uint32_t)n;
        if (c->rx_len == want && c->rx_state == RX_BODY)
            c->rx_state = RX_READY;
        else if (c->rx_len == want && head_size(c) == want)
            *err = begin_large(c); /* the whole variable header is in */
        return n;
    default: /* RX_STREAM, RX_SKIP */
        n = c->rx_remaining - c->rx_body < len ? c->rx_remaining - c->rx_body : len;
        if (c->rx_state == RX_STREAM) {
            moat_mqtt_packet p;
            moat_mqtt__decode_publish((uint8_t)(c->rx_hdr & 0x0Fu), c->rx, c->rx_len, &p);
            deliver(c, &p.u.publish, d, n, c->rx_body - c->rx_len, c->rx_remaining - c->rx_len,
                    MOAT_MQTT_EV_MESSAGE, MOAT_OK);
        }
        c->rx_body += (uint32_t)n;
        if (c->rx_body == c->rx_remaining)
            c->rx_state = RX_READY;
        return n;
    }
}

moat_err moat_mqtt_input(moat_mqtt_client *c, const uint8_t *data, size_t len,
                         size_t *consumed, uint32_t now_ms)
{
    size_t i = 0;
    moat_err e = MOAT_OK;

    if (consumed)
        *consumed = c->state == MOAT_MQTT_CLOSING ? len : 0;
    if (c->state == MOAT_MQTT_CLOSING)
        return MOAT_OK; /* MQTT-3.14.4-2: after DISCONNECT nothing more is sent,
                           so nothing is taken: the broker keeps it for later */
    if (c->state != MOAT_MQTT_WAIT_CONNACK && c->state != MOAT_MQTT_CONNECTED)
        return MOAT_ERR_STATE;
    for (;;) {
        if (c->rx_state == RX_READY) {
            c->tx_reserve = (uint32_t)(len - i) + ACK_SIZE;
            e = dispatch(c, now_ms);
            c->tx_reserve = 0;
            if (e == MOAT_ERR_WOULD_BLOCK)
                break;
            if (e != MOAT_OK)
                return fail(c, e, now_ms);
            c->rx_state = RX_HDR;
            if (c->state == MOAT_MQTT_CLOSING) {
                i = len; /* a callback sent DISCONNECT: take nothing more */
                break;
            }
        }
        if (i == len)
            break;
        c->tx_reserve = (uint32_t)(len - i) + ACK_SIZE;
        i += rx_step(c, data + i, len - i, &e);
        c->tx_reserve = 0;
        if (e != MOAT_OK) {
            if (consumed)
                *consumed = i;
            return fail(c, e, now_ms);
        }
    }
    if (consumed)
        *consumed = i;
    return e;
}
