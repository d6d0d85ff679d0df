/*
 * mqtt_codec.c - the MQTT 3.1.1 serializer: what a client writes and what it
 * reads. Pure functions over caller buffers; no state, no I/O.
 *
 * Decoding is strict: a packet is accepted only if every reserved bit, length,
 * string and identifier is as the specification says. The broker direction
 * lives in mqtt_codec_server.c so a device does not carry it.
 */
#include "mqtt_internal.h"

size_t moat_mqtt_header_size(uint32_t remaining)
{
    return remaining < 128u ? 2 : remaining < 16384u ? 3 : remaining < 2097152u ? 4 : 5;
}

uint8_t *moat_mqtt__wr_header(uint8_t *p, uint8_t first, uint32_t remaining)
{
    *p++ = first;
    do {
        uint8_t b = (uint8_t)(remaining & 0x7Fu);
        remaining >>= 7;
        *p++ = remaining ? (uint8_t)(b | 0x80u) : b;
    } while (remaining);
    return p;
}

moat_err moat_mqtt__fits(size_t cap, uint32_t remaining, size_t *len)
{
    size_t need;
    if (remaining > MOAT_MQTT_MAX_REMAINING)
        return MOAT_ERR_REMAINING_LENGTH;
    need = moat_mqtt_header_size(remaining) + remaining;
    if (need > cap)
        return MOAT_ERR_NO_SPACE;
    *len = need;
    return MOAT_OK;
}

/* ---- encoders ---------------------------------------------------------- */

static moat_err check_will(const moat_mqtt_connect_pkt *c)
{
    if (!c->has_will)
        return (c->will_qos || c->will_retain) ? MOAT_ERR_ARG : MOAT_OK;
    if (c->will_qos > 2)
        return MOAT_ERR_QOS;
    return topic_check(c->will_topic.data, c->will_topic.len);
}

moat_err moat_mqtt_encode_connect(uint8_t *buf, size_t cap, size_t *len,
                                  const moat_mqtt_connect_pkt *c)
{
    uint32_t rl = 10u + 2u + c->client_id.len;
    uint8_t cflags = 0;
    uint8_t *p;
    moat_err e;

    if (c->version != MOAT_MQTT_V311)
        return MOAT_ERR_ARG;
    if (c->has_password && !c->has_username)
        return MOAT_ERR_ARG; /* MQTT-3.1.2-22 */
    if (c->client_id.len == 0 && !c->clean_session)
        return MOAT_ERR_ARG; /* MQTT-3.1.3-7 */
    if ((e = str_check(&c->client_id)) != MOAT_OK || (e = check_will(c)) != MOAT_OK)
        return e;
    if (c->has_username && (e = str_check(&c->username)) != MOAT_OK)
        return e;
    if (c->has_will) {
        rl += 4u + c->will_topic.len + c->will_payload.len;
        cflags |= (uint8_t)(0x04u | (c->will_qos << 3) | (c->will_retain ? 0x20u : 0));
    }
    if (c->has_username) {
        rl += 2u + c->username.len;
        cflags |= 0x80u;
    }
    if (c->has_password) {
        rl += 2u + c->password.len;
        cflags |= 0x40u;
    }
    if (c->clean_session)
        cflags |= 0x02u;
    if ((e = moat_mqtt__fits(cap, rl, len)) != MOAT_OK)
        return e;

    p = moat_mqtt__wr_header(buf, MOAT_MQTT_CONNECT << 4, rl);
    p = wr_bin(p, "MQTT", 4);
    *p++ = MOAT_MQTT_V311;
    *p++ = cflags;
    p = wr_u16(p, c->keepalive_s);
    p = wr_bin(p, c->client_id.data, c->client_id.len);
    if (c->has_will) {
        p = wr_bin(p, c->will_topic.data, c->will_topic.len);
        p = wr_bin(p, c->will_payload.data, c->will_payload.len);
    }
    if (c->has_username)
        p = wr_bin(p, c->username.data, c->username.len);
    if (c->has_password)
        wr_bin(p, c->password.data, c->password.len);
    return MOAT_OK;
}

moat_err moat_mqtt_encode_publish(uint8_t *buf, size_t cap, size_t *len,
                                  const moat_mqtt_publish_pkt *pk)
{
    uint32_t rl;
    uint8_t first;
    uint8_t *p;
    moat_err e;

    if (pk->qos > 2)
        return MOAT_ERR_QOS;
    if (pk->qos == 0 && pk->dup)
        return MOAT_ERR_FLAGS; /* MQTT-3.3.1-2 */
    if (pk->qos > 0 && pk->packet_id == 0)
        return MOAT_ERR_PACKET_ID;
    if ((e = topic_check(pk->topic.data, pk->topic.len)) != MOAT_OK)
        return e;
    if (pk->payload_len > MOAT_MQTT_MAX_REMAINING)
        return MOAT_ERR_REMAINING_LENGTH;
    rl = (uint32_t)(2u + pk->topic.len + (pk->qos ? 2u : 0u) + pk->payload_len);
    if (rl < pk->payload_len)
        return MOAT_ERR_REMAINING_LENGTH;
    if ((e = moat_mqtt__fits(cap, rl, len)) != MOAT_OK)
        return e;

    first = (uint8_t)((MOAT_MQTT_PUBLISH << 4) | (pk->dup ? 0x08u : 0) |
                      (pk->qos << 1) | (pk->retain ? 0x01u : 0));
    p = moat_mqtt__wr_header(buf, first, rl);
    p = wr_bin(p, pk->topic.data, pk->topic.len);
    if (pk->qos)
        p = wr_u16(p, pk->packet_id);
    if (pk->payload_len)
        memcpy(p, pk->payload, pk->payload_len);
    return MOAT_OK;
}

moat_err moat_mqtt_encode_ack(uint8_t *buf, size_t cap, size_t *len, uint8_t type,
                              uint16_t packet_id)
{
    moat_err e;
    if (type != MOAT_MQTT_PUBACK && type != MOAT_MQTT_PUBREC && type != MOAT_MQTT_PUBREL &&
        type != MOAT_MQTT_PUBCOMP && type != MOAT_MQTT_UNSUBACK)
        return MOAT_ERR_ARG;
    if (packet_id == 0)
        return MOAT_ERR_PACKET_ID;
    if ((e = moat_mqtt__fits(cap, 2, len)) != MOAT_OK)
        return e;
    buf[0] = (uint8_t)((type << 4) | fixed_flags(type));
    buf[1] = 2;
    wr_u16(buf + 2, packet_id);
    return MOAT_OK;
}

/* SUBSCRIBE and UNSUBSCRIBE: same shape, QoS bytes only for SUBSCRIBE. */
static moat_err encode_sublist(uint8_t *buf, size_t cap, size_t *len, uint8_t type,
                               uint16_t packet_id, const moat_mqtt_sub *subs, size_t count)
{
    uint32_t rl = 2;
    uint8_t *p;
    moat_err e;
    size_t i;

    if (packet_id == 0)
        return MOAT_ERR_PACKET_ID;
    if (count == 0 || subs == NULL)
        return MOAT_ERR_ARG; /* MQTT-3.8.3-3, MQTT-3.10.3-2 */
    for (i = 0; i < count; i++) {
        size_t fl = strlen(subs[i].filter);
        if (fl > 65535)
            return MOAT_ERR_FILTER;
        if ((e = filter_check((const uint8_t *)subs[i].filter, fl)) != MOAT_OK)
            return e;
        if (type == MOAT_MQTT_SUBSCRIBE && subs[i].qos > 2)
            return MOAT_ERR_QOS;
        rl += 2u + (uint32_t)fl + (type == MOAT_MQTT_SUBSCRIBE ? 1u : 0u);
        if (rl > MOAT_MQTT_MAX_REMAINING)
            return MOAT_ERR_REMAINING_LENGTH;
    }
    if ((e = moat_mqtt__fits(cap, rl, len)) != MOAT_OK)
        return e;
    p = moat_mqtt__wr_header(buf, (uint8_t)((type << 4) | 2u), rl);
    p = wr_u16(p, packet_id);
    for (i = 0; i < count; i++) {
        p = wr_bin(p, subs[i].filter, (uint16_t)strlen(subs[i].filter));
        if (type == MOAT_MQTT_SUBSCRIBE)
            *p++ = subs[i].qos;
    }
    return MOAT_OK;
}

moat_err moat_mqtt_encode_subscribe(uint8_t *buf, size_t cap, size_t *len, uint16_t packet_id,
                                    const moat_mqtt_sub *subs, size_t count)
{
    return encode_sublist(buf, cap, len, MOAT_MQTT_SUBSCRIBE, packet_id, subs, count);
}

moat_err moat_mqtt_encode_unsubscribe(uint8_t *buf, size_t cap, size_t *len, uint16_t packet_id,
                                      const moat_mqtt_sub *subs, size_t count)
{
    return encode_sublist(buf, cap, len, MOAT_MQTT_UNSUBSCRIBE, packet_id, subs, count);
}

moat_err moat_mqtt_encode_empty(uint8_t *buf, size_t cap, size_t *len, uint8_t type)
{
    moat_err e;
    if (type != MOAT_MQTT_PINGREQ && type != MOAT_MQTT_PINGRESP && type != MOAT_MQTT_DISCONNECT)
        return MOAT_ERR_ARG;
    if ((e = moat_mqtt__fits(cap, 0, len)) != MOAT_OK)
        return e;
    buf[0] = (uint8_t)(type << 4);
    buf[1] = 0;
    return MOAT_OK;
}

/* ---- decoders: the client direction ------------------------------------ */

moat_err moat_mqtt__decode_publish(uint8_t flags, const uint8_t *body, uint32_t remaining,
                                   moat_mqtt_packet *out)
{
    mqtt_rd r = {body, remaining};
    moat_mqtt_publish_pkt *pk = &out->u.publish;
    moat_err e;

    pk->qos = (uint8_t)((flags >> 1) & 3u);
    pk->dup = (flags & 0x08u) != 0;
    pk->retain = (flags & 0x01u) != 0;
    pk->packet_id = 0;
    if (pk->qos == 3)
        return MOAT_ERR_QOS;
    if (pk->qos == 0 && pk->dup)
        return MOAT_ERR_FLAGS;
    if (!rd_bin(&r, &pk->topic))
        return MOAT_ERR_REMAINING_LENGTH;
    if ((e = topic_check(pk->topic.data, pk->topic.len)) != MOAT_OK)
        return e;
    if (pk->qos) {
        if (!rd_u16(&r, &pk->packet_id))
            return MOAT_ERR_REMAINING_LENGTH;
        if (pk->packet_id == 0)
            return MOAT_ERR_PACKET_ID;
    }
    pk->payload = r.p;
    pk->payload_len = r.left;
    return MOAT_OK;
}

moat_err moat_mqtt__decode_ack(const uint8_t *body, uint32_t remaining, moat_mqtt_packet *out)
{
    if (remaining != 2)
        return MOAT_ERR_REMAINING_LENGTH;
    out->u.packet_id = (uint16_t)((body[0] << 8) | body[1]);
    return out->u.packet_id ? MOAT_OK : MOAT_ERR_PACKET_ID;
}

static moat_err decode_connack(const uint8_t *body, uint32_t remaining, moat_mqtt_packet *out)
{
    if (remaining != 2)
        return MOAT_ERR_REMAINING_LENGTH;
    if (body[0] & 0xFEu)
        return MOAT_ERR_FLAGS; /* MQTT-3.2.2-1: bits 7-1 reserved */
    out->u.connack.session_present = body[0] & 1u;
    out->u.connack.return_code = body[1];
    if (body[1] != 0 && out->u.connack.session_present)
        return MOAT_ERR_MALFORMED; /* MQTT-3.2.2-4 */
    if (body[1] > 5)
        return MOAT_ERR_CONNACK_UNKNOWN; /* 6-255 are reserved */
    return MOAT_OK;
}

static moat_err decode_suback(const uint8_t *body, uint32_t remaining, moat_mqtt_packet *out)
{
    uint32_t i;
    if (remaining < 3)
        return MOAT_ERR_REMAINING_LENGTH;
    out->u.suback.packet_id = (uint16_t)((body[0] << 8) | body[1]);
    out->u.suback.codes = body + 2;
    out->u.suback.count = remaining - 2;
    if (out->u.suback.packet_id == 0)
        return MOAT_ERR_PACKET_ID;
    for (i = 2; i < remaining; i++)
        if (body[i] > 2 && body[i] != MOAT_MQTT_SUBACK_FAILURE)
            return MOAT_ERR_MALFORMED;
    return MOAT_OK;
}

/* Packet types a server may send, as a bit set. */
#define SERVER_TYPES ((1u << MOAT_MQTT_CONNACK) | (1u << MOAT_MQTT_PUBLISH) |       \
                      (1u << MOAT_MQTT_PUBACK) | (1u << MOAT_MQTT_PUBREC) |         \
                      (1u << MOAT_MQTT_PUBREL) | (1u << MOAT_MQTT_PUBCOMP) |        \
                      (1u << MOAT_MQTT_SUBACK) | (1u << MOAT_MQTT_UNSUBACK) |       \
                      (1u << MOAT_MQTT_PINGRESP))

moat_err moat_mqtt_decode_from_server(uint8_t version, uint8_t type, uint8_t flags,
                                      const uint8_t *body, uint32_t remaining,
                                      moat_mqtt_packet *out)
{
    moat_err e = moat_mqtt__decode_start(version, type, flags, remaining, SERVER_TYPES, out);
    if (e != MOAT_OK)
        return e;
    switch (type) {
    case MOAT_MQTT_CONNACK:
        return decode_connack(body, remaining, out);
    case MOAT_MQTT_PUBLISH:
        return moat_mqtt__decode_publish(flags, body, remaining, out);
    case MOAT_MQTT_PUBACK:
    case MOAT_MQTT_PUBREC:
    case MOAT_MQTT_PUBREL:
    case MOAT_MQTT_PUBCOMP:
    case MOAT_MQTT_UNSUBACK:
        return moat_mqtt__decode_ack(body, remaining, out);
    case MOAT_MQTT_SUBACK:
        return decode_suback(body, remaining, out);
    case MOAT_MQTT_PINGRESP:
        return remaining == 0 ? MOAT_OK : MOAT_ERR_REMAINING_LENGTH;
    default:
        return MOAT_ERR_PROTOCOL;
    }
}
