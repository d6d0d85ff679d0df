/*
 * fuzz_mqtt_decode.c - libFuzzer harness for the MQTT codec.
 *
 * Decodes arbitrary bytes as a run of packets with moat_mqtt_decode(). Every
 * packet that decodes is re-encoded with the matching moat_mqtt_encode_*()
 * into a buffer of exactly the right size, decoded again and compared field by
 * field: the codec must agree with itself. It must also refuse, with
 * MOAT_ERR_NO_SPACE, a buffer one byte short. Any disagreement aborts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moat/mqtt.h"

#include "fuzz_check.h"

static bool str_eq(moat_mqtt_str a, moat_mqtt_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static bool sublist_eq(const moat_mqtt_packet *a, const moat_mqtt_packet *b)
{
    size_t pa = 0, pb = 0, n = 0;
    moat_mqtt_str fa, fb;
    uint8_t qa = 0, qb = 0;

    if (a->u.sublist.packet_id != b->u.sublist.packet_id ||
        a->u.sublist.count != b->u.sublist.count)
        return false;
    while (moat_mqtt_sublist_next(a, &pa, &fa, &qa)) {
        if (!moat_mqtt_sublist_next(b, &pb, &fb, &qb) || !str_eq(fa, fb))
            return false;
        if (a->type == MOAT_MQTT_SUBSCRIBE && qa != qb)
            return false;
        n++;
    }
    return n == a->u.sublist.count && !moat_mqtt_sublist_next(b, &pb, &fb, &qb);
}

static bool packet_eq(const moat_mqtt_packet *a, const moat_mqtt_packet *b)
{
    if (a->type != b->type || a->flags != b->flags || a->remaining != b->remaining ||
        a->props.len != b->props.len)
        return false;
    switch (a->type) {
    case MOAT_MQTT_CONNECT: {
        const moat_mqtt_connect_pkt *x = &a->u.connect, *y = &b->u.connect;
        if (x->version != y->version || x->clean_session != y->clean_session ||
            x->keepalive_s != y->keepalive_s || !str_eq(x->client_id, y->client_id) ||
            x->has_will != y->has_will || x->has_username != y->has_username ||
            x->has_password != y->has_password)
            return false;
        if (x->has_will && (x->will_qos != y->will_qos || x->will_retain != y->will_retain ||
                            !str_eq(x->will_topic, y->will_topic) ||
                            !str_eq(x->will_payload, y->will_payload)))
            return false;
        if (x->has_username && !str_eq(x->username, y->username))
            return false;
        return !x->has_password || str_eq(x->password, y->password);
    }
    case MOAT_MQTT_CONNACK:
        return a->u.connack.session_present == b->u.connack.session_present &&
               a->u.connack.return_code == b->u.connack.return_code;
    case MOAT_MQTT_PUBLISH: {
        const moat_mqtt_publish_pkt *x = &a->u.publish, *y = &b->u.publish;
        return str_eq(x->topic, y->topic) && x->packet_id == y->packet_id &&
               x->qos == y->qos && x->retain == y->retain && x->dup == y->dup &&
               x->payload_len == y->payload_len &&
               (x->payload_len == 0 || memcmp(x->payload, y->payload, x->payload_len) == 0);
    }
    case MOAT_MQTT_PUBACK:
    case MOAT_MQTT_PUBREC:
    case MOAT_MQTT_PUBREL:
    case MOAT_MQTT_PUBCOMP:
    case MOAT_MQTT_UNSUBACK:
        return a->u.packet_id == b->u.packet_id;
    case MOAT_MQTT_SUBACK:
        return a->u.suback.packet_id == b->u.suback.packet_id &&
               a->u.suback.count == b->u.suback.count &&
               memcmp(a->u.suback.codes, b->u.suback.codes, a->u.suback.count) == 0;
    case MOAT_MQTT_SUBSCRIBE:
    case MOAT_MQTT_UNSUBSCRIBE:
        return sublist_eq(a, b);
    default: /* PINGREQ PINGRESP DISCONNECT: nothing but the header */
        return true;
    }
}

/* The filters of a decoded (UN)SUBSCRIBE as the NUL-terminated list the
 * encoder takes. Every filter is valid UTF-8 without U+0000, so it has no NUL
 * inside. */
static moat_mqtt_sub *sublist_copy(const moat_mqtt_packet *p, char **text)
{
    size_t n = p->u.sublist.count, pos = 0, at = 0, i = 0;
    moat_mqtt_sub *subs = malloc(n * sizeof(*subs));
    char *t = malloc(p->u.sublist.list_len + 1);
    moat_mqtt_str f;
    uint8_t q = 0;

    CHECK(subs != NULL && t != NULL);
    while (moat_mqtt_sublist_next(p, &pos, &f, &q)) {
        CHECK(i < n);
        CHECK(memchr(f.data, 0, f.len) == NULL);
        memcpy(t + at, f.data, f.len);
        t[at + f.len] = '\0';
        subs[i].filter = t + at;
        subs[i].qos = p->type == MOAT_MQTT_SUBSCRIBE ? q : 0;
        at += f.len + 1u;
        i++;
    }
    CHECK(i == n);
    *text = t;
    return subs;
}

/* Encode p into buf[0..cap) with the encoder that matches its type. */
static moat_err encode(const moat_mqtt_packet *p, uint8_t *buf, size_t cap, size_t *len)
{
    moat_mqtt_sub *subs;
    char *text;
    moat_err e;

    switch (p->type) {
    case MOAT_MQTT_CONNECT:
        return moat_mqtt_encode_connect(buf, cap, len, &p->u.connect);
    case MOAT_MQTT_CONNACK:
        return moat_mqtt_encode_connack(buf, cap, len, p->u.connack.session_present,
                                        p->u.connack.return_code);
    case MOAT_MQTT_PUBLISH:
        return moat_mqtt_encode_publish(buf, cap, len, &p->u.publish);
    case MOAT_MQTT_PUBACK:
    case MOAT_MQTT_PUBREC:
    case MOAT_MQTT_PUBREL:
    case MOAT_MQTT_PUBCOMP:
    case MOAT_MQTT_UNSUBACK:
        return moat_mqtt_encode_ack(buf, cap, len, p->type, p->u.packet_id);
    case MOAT_MQTT_SUBACK:
        return moat_mqtt_encode_suback(buf, cap, len, p->u.suback.packet_id,
                                       p->u.suback.codes, p->u.suback.count);
    case MOAT_MQTT_SUBSCRIBE:
    case MOAT_MQTT_UNSUBSCRIBE:
        subs = sublist_copy(p, &text);
        if (p->type == MOAT_MQTT_SUBSCRIBE)
            e = moat_mqtt_encode_subscribe(buf, cap, len, p->u.sublist.packet_id, subs,
                                           p->u.sublist.count);
        else
            e = moat_mqtt_encode_unsubscribe(buf, cap, len, p->u.sublist.packet_id, subs,
                                             p->u.sublist.count);
        free(subs);
        free(text);
        return e;
    default:
        return moat_mqtt_encode_empty(buf, cap, len, p->type);
    }
}

/* A packet a broker must be able to decode but a client may not send:
 * an empty client id without a clean session (the broker answers CONNACK
 * 0x02, MQTT-3.1.3-8; the encoder refuses it, MQTT-3.1.3-7). */
static bool decodable_only(const moat_mqtt_packet *p)
{
    return p->type == MOAT_MQTT_CONNECT && p->u.connect.client_id.len == 0 &&
           !p->u.connect.clean_session;
}

static void round_trip(const moat_mqtt_packet *p)
{
    size_t need = moat_mqtt_header_size(p->remaining) + p->remaining;
    uint8_t *out = malloc(need);
    uint8_t *small = malloc(need - 1);
    moat_mqtt_packet q, r;
    size_t len = 0, used = 0, len2 = 0;
    moat_err e;

    CHECK(out != NULL && small != NULL);
    e = encode(p, out, need, &len);
    if (e != MOAT_OK && decodable_only(p))
        goto done;
    if (e != MOAT_OK)
        fprintf(stderr, "harness: encoder refused a decoded packet of type %u: %s\n", p->type,
                moat_strerror(e));
    CHECK(e == MOAT_OK);
    CHECK(len == need);

    /* One byte short: refused, and nothing written past the end (ASan). */
    CHECK(encode(p, small, need - 1, &len2) == MOAT_ERR_NO_SPACE);

    memset(&q, 0, sizeof(q));
    e = moat_mqtt_decode(MOAT_MQTT_V311, out, len, &q, &used);
    if (e != MOAT_OK)
        fprintf(stderr, "harness: re-encoded packet of type %u does not decode: %s\n", p->type,
                moat_strerror(e));
    CHECK(e == MOAT_OK);
    CHECK(used == len);
    CHECK(packet_eq(p, &q));

    /* The direction-specific decoder agrees with the generic one. */
    {
        uint8_t type, flags;
        uint32_t rl;
        size_t hl;
        moat_err es, ec;
        CHECK(moat_mqtt_decode_header(out, len, &type, &flags, &rl, &hl) == MOAT_OK);
        CHECK(type == p->type && flags == p->flags && rl == p->remaining && hl + rl == len);
        memset(&r, 0, sizeof(r));
        es = moat_mqtt_decode_from_server(MOAT_MQTT_V311, type, flags, out + hl, rl, &r);
        CHECK(es == MOAT_OK || es == MOAT_ERR_PROTOCOL);
        if (es == MOAT_OK)
            CHECK(packet_eq(p, &r));
        memset(&r, 0, sizeof(r));
        ec = moat_mqtt_decode_from_client(MOAT_MQTT_V311, type, flags, out + hl, rl, &r);
        CHECK(ec == MOAT_OK || ec == MOAT_ERR_PROTOCOL);
        if (ec == MOAT_OK)
            CHECK(packet_eq(p, &r));
        CHECK(es == MOAT_OK || ec == MOAT_OK);
    }
done:
    free(small);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t at = 0;

    while (at < size) {
        moat_mqtt_packet p;
        size_t used = 0;
        moat_err e;

        memset(&p, 0, sizeof(p));
        e = moat_mqtt_decode(MOAT_MQTT_V311, data + at, size - at, &p, &used);
        CHECK(e <= 0 && e >= MOAT_ERR_DROPPED);
        CHECK(used <= size - at);
        if (e == MOAT_OK) {
            CHECK(used >= moat_mqtt_header_size(p.remaining) + p.remaining);
            round_trip(&p);
        }
        /* After a broken packet whose length is known, go on with the next;
         * a broken or incomplete fixed header ends the run. */
        if (used == 0)
            break;
        at += used;
    }

    /* Any version but 3.1.1 is refused before anything is read. */
    if (size > 0) {
        moat_mqtt_packet p;
        size_t used = 0;
        moat_err e = moat_mqtt_decode((uint8_t)(data[0] == MOAT_MQTT_V311 ? 5 : data[0]),
                                      data, size, &p, &used);
        CHECK(e != MOAT_OK);
    }
    return 0;
}
