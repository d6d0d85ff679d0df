/*
 * mqtt_codec_server.c - the broker direction of the MQTT 3.1.1 codec:
 * decoding what clients send (CONNECT, SUBSCRIBE, ...) and encoding what
 * only a server sends (CONNACK, SUBACK). A device never links this file;
 * tests, fuzzers and tools do.
 */
#include "mqtt_internal.h"

#define CLIENT_TYPES ((1u << MOAT_MQTT_CONNECT) | (1u << MOAT_MQTT_PUBLISH) |       \
                      (1u << MOAT_MQTT_PUBACK) | (1u << MOAT_MQTT_PUBREC) |         \
                      (1u << MOAT_MQTT_PUBREL) | (1u << MOAT_MQTT_PUBCOMP) |        \
                      (1u << MOAT_MQTT_SUBSCRIBE) | (1u << MOAT_MQTT_UNSUBSCRIBE) | \
                      (1u << MOAT_MQTT_PINGREQ) | (1u << MOAT_MQTT_DISCONNECT))

moat_err moat_mqtt_encode_connack(uint8_t *buf, size_t cap, size_t *len, bool session_present,
                                  uint8_t return_code)
{
    moat_err e;
    if (session_present && return_code != 0)
        return MOAT_ERR_ARG; /* MQTT-3.2.2-4 */
    if ((e = moat_mqtt__fits(cap, 2, len)) != MOAT_OK)
        return e;
    buf[0] = MOAT_MQTT_CONNACK << 4;
    buf[1] = 2;
    buf[2] = session_present ? 1u : 0u;
    buf[3] = return_code;
    return MOAT_OK;
}

moat_err moat_mqtt_encode_suback(uint8_t *buf, size_t cap, size_t *len, uint16_t packet_id,
                                 const uint8_t *codes, size_t count)
{
    moat_err e;
    uint8_t *p;
    size_t i;
    if (packet_id == 0)
        return MOAT_ERR_PACKET_ID;
    if (count == 0 || count > MOAT_MQTT_MAX_REMAINING - 2)
        return MOAT_ERR_ARG;
    for (i = 0; i < count; i++)
        if (codes[i] > 2 && codes[i] != MOAT_MQTT_SUBACK_FAILURE)
            return MOAT_ERR_ARG;
    if ((e = moat_mqtt__fits(cap, (uint32_t)(2 + count), len)) != MOAT_OK)
        return e;
    p = moat_mqtt__wr_header(buf, MOAT_MQTT_SUBACK << 4, (uint32_t)(2 + count));
    p = wr_u16(p, packet_id);
    memcpy(p, codes, count);
    return MOAT_OK;
}

static moat_err decode_connect(const uint8_t *body, uint32_t remaining, moat_mqtt_packet *out)
{
    mqtt_rd r = {body, remaining};
    moat_mqtt_connect_pkt *c = &out->u.connect;
    moat_mqtt_str name;
    uint8_t cf;
    moat_err e;

    memset(c, 0, sizeof(*c));
    if (!rd_bin(&r, &name) || !rd_u8(&r, &c->version) || !rd_u8(&r, &cf) ||
        !rd_u16(&r, &c->keepalive_s))
        return MOAT_ERR_REMAINING_LENGTH;
    if (name.len != 4 || memcmp(name.data, "MQTT", 4) != 0)
        return MOAT_ERR_MALFORMED; /* MQTT-3.1.2-1 */
    if (c->version != MOAT_MQTT_V311)
        return MOAT_ERR_CONNACK_VERSION;
    if (cf & 0x01u)
        return MOAT_ERR_FLAGS; /* MQTT-3.1.2-3 */
    c->clean_session = (cf & 0x02u) != 0;
    c->has_will = (cf & 0x04u) != 0;
    c->will_qos = (uint8_t)((cf >> 3) & 3u);
    c->will_retain = (cf & 0x20u) != 0;
    c->has_password = (cf & 0x40u) != 0;
    c->has_username = (cf & 0x80u) != 0;
    if (!c->has_will && (c->will_qos || c->will_retain))
        return MOAT_ERR_FLAGS; /* MQTT-3.1.2-11, -13, -15 */
    if (c->will_qos == 3)
        return MOAT_ERR_QOS;
    if (c->has_password && !c->has_username)
        return MOAT_ERR_FLAGS; /* MQTT-3.1.2-22 */
    if (!rd_bin(&r, &c->client_id))
        return MOAT_ERR_REMAINING_LENGTH;
    if ((e = str_check(&c->client_id)) != MOAT_OK)
        return e;
    if (c->has_will) {
        if (!rd_bin(&r, &c->will_topic) || !rd_bin(&r, &c->will_payload))
            return MOAT_ERR_REMAINING_LENGTH;
        if ((e = topic_check(c->will_topic.data, c->will_topic.len)) != MOAT_OK)
            return e;
    }
    if (c->has_username) {
        if (!rd_bin(&r, &c->username))
            return MOAT_ERR_REMAINING_LENGTH;
        if ((e = str_check(&c->username)) != MOAT_OK)
            return e;
    }
    if (c->has_password && !rd_bin(&r, &c->password))
        return MOAT_ERR_REMAINING_LENGTH;
    return r.left == 0 ? MOAT_OK : MOAT_ERR_REMAINING_LENGTH;
}

/* SUBSCRIBE (with_qos) or UNSUBSCRIBE: validate every entry once, so that
 * moat_mqtt_sublist_next() can walk the list without checks. */
static moat_err decode_sublist(const uint8_t *body, uint32_t remaining, bool with_qos,
                               moat_mqtt_packet *out)
{
    mqtt_rd r = {body, remaining};
    moat_err e;
    if (!rd_u16(&r, &out->u.sublist.packet_id))
        return MOAT_ERR_REMAINING_LENGTH;
    if (out->u.sublist.packet_id == 0)
        return MOAT_ERR_PACKET_ID;
    out->u.sublist.list = r.p;
    out->u.sublist.list_len = r.left;
    out->u.sublist.count = 0;
    if (r.left == 0)
        return MOAT_ERR_PROTOCOL; /* MQTT-3.8.3-3, MQTT-3.10.3-2 */
    while (r.left) {
        moat_mqtt_str f;
        uint8_t q;
        if (!rd_bin(&r, &f))
            return MOAT_ERR_REMAINING_LENGTH;
        if ((e = filter_check(f.data, f.len)) != MOAT_OK)
            return e;
        if (with_qos) {
            if (!rd_u8(&r, &q))
                return MOAT_ERR_REMAINING_LENGTH;
            if (q > 2)
                return q == 3 ? MOAT_ERR_QOS : MOAT_ERR_FLAGS; /* MQTT-3.8.3-4 */
        }
        out->u.sublist.count++;
    }
    return MOAT_OK;
}

bool moat_mqtt_sublist_next(const moat_mqtt_packet *p, size_t *pos, moat_mqtt_str *filter,
                            uint8_t *qos)
{
    const uint8_t *list = p->u.sublist.list;
    size_t at = *pos;
    if (at + 2 > p->u.sublist.list_len)
        return false;
    filter->len = (uint16_t)((list[at] << 8) | list[at + 1]);
    filter->data = list + at + 2;
    at += 2u + filter->len;
    if (p->type == MOAT_MQTT_SUBSCRIBE) {
        if (qos)
            *qos = list[at];
        at++;
    }
    *pos = at;
    return true;
}

moat_err moat_mqtt_decode_from_client(uint8_t version, uint8_t type, uint8_t flags,
                                      const uint8_t *body, uint32_t remaining,
                                      moat_mqtt_packet *out)
{
    moat_err e = moat_mqtt__decode_start(version, type, flags, remaining, CLIENT_TYPES, out);
    if (e != MOAT_OK)
        return e;
    switch (type) {
    case MOAT_MQTT_CONNECT:
        return decode_connect(body, remaining, out);
    case MOAT_MQTT_PUBLISH:
        return moat_mqtt__decode_publish(flags, body, remaining, out);
    case MOAT_MQTT_SUBSCRIBE:
        return decode_sublist(body, remaining, true, out);
    case MOAT_MQTT_UNSUBSCRIBE:
        return decode_sublist(body, remaining, false, out);
    case MOAT_MQTT_PINGREQ:
    case MOAT_MQTT_DISCONNECT:
        return remaining == 0 ? MOAT_OK : MOAT_ERR_REMAINING_LENGTH;
    default: /* PUBACK PUBREC PUBREL PUBCOMP */
        return moat_mqtt__decode_ack(body, remaining, out);
    }
}

moat_err moat_mqtt_decode_header(const uint8_t *buf, size_t len, uint8_t *type,
                                 uint8_t *flags, uint32_t *remaining, size_t *header_len)
{
    uint32_t value = 0;
    size_t i;
    if (len < 1)
        return MOAT_ERR_WOULD_BLOCK;
    if ((buf[0] >> 4) == 0 || (buf[0] >> 4) == 15)
        return MOAT_ERR_MALFORMED;
    for (i = 1; i <= 4; i++) {
        if (i >= len)
            return MOAT_ERR_WOULD_BLOCK;
        value |= (uint32_t)(buf[i] & 0x7Fu) << (7 * (i - 1));
        if (!(buf[i] & 0x80u)) {
            *type = (uint8_t)(buf[0] >> 4);
            *flags = (uint8_t)(buf[0] & 0x0Fu);
            *remaining = value;
            *header_len = i + 1;
            return MOAT_OK;
        }
    }
    return MOAT_ERR_REMAINING_LENGTH;
}

moat_err moat_mqtt_decode(uint8_t version, const uint8_t *buf, size_t len,
                          moat_mqtt_packet *out, size_t *consumed)
{
    uint8_t type, flags;
    uint32_t rl;
    size_t hl;
    moat_err e = moat_mqtt_decode_header(buf, len, &type, &flags, &rl, &hl);
    if (e != MOAT_OK)
        return e;
    if (len - hl < rl)
        return MOAT_ERR_WOULD_BLOCK;
    *consumed = hl + rl;
    if (CLIENT_TYPES & (1u << type))
        return moat_mqtt_decode_from_client(version, type, flags, buf + hl, rl, out);
    return moat_mqtt_decode_from_server(version, type, flags, buf + hl, rl, out);
}
