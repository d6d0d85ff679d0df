/*
 * mqtt_internal.h - byte readers and writers shared by the codec files.
 *
 * A reader never reads past `left`; a writer is only used after the caller
 * has checked that the whole packet fits, so it does not check again.
 */
#ifndef MOAT_MQTT_INTERNAL_H
#define MOAT_MQTT_INTERNAL_H

#include "moat/mqtt.h"
#include "mem.h"
#include "moat/timer.h"

typedef struct mqtt_rd {
    const uint8_t *p;
    uint32_t left;
} mqtt_rd;

static inline bool rd_u8(mqtt_rd *r, uint8_t *v)
{
    if (r->left < 1)
        return false;
    *v = *r->p++;
    r->left--;
    return true;
}

static inline bool rd_u16(mqtt_rd *r, uint16_t *v)
{
    if (r->left < 2)
        return false;
    *v = (uint16_t)((r->p[0] << 8) | r->p[1]);
    r->p += 2;
    r->left -= 2;
    return true;
}

/* A length-prefixed field (string or binary). */
static inline bool rd_bin(mqtt_rd *r, moat_mqtt_str *s)
{
    uint16_t n;
    if (!rd_u16(r, &n) || r->left < n)
        return false;
    s->data = r->p;
    s->len = n;
    r->p += n;
    r->left -= n;
    return true;
}

static inline uint8_t *wr_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static inline uint8_t *wr_bin(uint8_t *p, const void *data, uint16_t len)
{
    p = wr_u16(p, len);
    if (len)
        memcpy(p, data, len);
    return p + len;
}

/* Writes the fixed header; returns the position after it. */
uint8_t *moat_mqtt__wr_header(uint8_t *p, uint8_t first, uint32_t remaining);

/* Checks that header + remaining fits cap; on success sets *len. */
moat_err moat_mqtt__fits(size_t cap, uint32_t remaining, size_t *len);

/* Validates a UTF-8 string field: MOAT_OK or MOAT_ERR_UTF8. */
static inline moat_err str_check(const moat_mqtt_str *s)
{
    return moat_mqtt_utf8_valid(s->data, s->len) ? MOAT_OK : MOAT_ERR_UTF8;
}

/* Validates a topic name: MOAT_ERR_UTF8 before MOAT_ERR_TOPIC. */
static inline moat_err topic_check(const uint8_t *s, size_t len)
{
    if (!moat_mqtt_utf8_valid(s, len))
        return MOAT_ERR_UTF8;
    return moat_mqtt_topic_valid(s, len) ? MOAT_OK : MOAT_ERR_TOPIC;
}

static inline moat_err filter_check(const uint8_t *s, size_t len)
{
    if (!moat_mqtt_utf8_valid(s, len))
        return MOAT_ERR_UTF8;
    return moat_mqtt_filter_valid(s, len) ? MOAT_OK : MOAT_ERR_FILTER;
}

/* Required low nibble of the first byte for every type but PUBLISH. */
static inline uint8_t fixed_flags(uint8_t type)
{
    return (type == MOAT_MQTT_PUBREL || type == MOAT_MQTT_SUBSCRIBE ||
            type == MOAT_MQTT_UNSUBSCRIBE) ? 2u : 0u;
}

/* Shared by both decode directions. decode_start checks the version, the
 * type against the allowed set (bit n = type n) and the fixed flags, and
 * fills the common fields of out. */
static inline moat_err moat_mqtt__decode_start(uint8_t version, uint8_t type, uint8_t flags,
                                 uint32_t remaining, uint32_t allowed, moat_mqtt_packet *out)
{
    if (version != MOAT_MQTT_V311)
        return MOAT_ERR_ARG;
    out->type = type;
    out->flags = flags;
    out->remaining = remaining;
    out->props.data = NULL;
    out->props.len = 0;
    if (!(allowed & (1u << type)))
        return MOAT_ERR_PROTOCOL;
    if (type != MOAT_MQTT_PUBLISH && flags != fixed_flags(type))
        return MOAT_ERR_FLAGS;
    return MOAT_OK;
}

moat_err moat_mqtt__decode_publish(uint8_t flags, const uint8_t *body,
                                   uint32_t remaining, moat_mqtt_packet *out);
moat_err moat_mqtt__decode_ack(const uint8_t *body, uint32_t remaining,
                               moat_mqtt_packet *out);

#endif
