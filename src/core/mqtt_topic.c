/*
 * mqtt_topic.c - MQTT string rules: UTF-8, topic names and topic filters
 * (MQTT 3.1.1 sections 1.5.3 and 4.7). The engine validates with these.
 */
#include "moat/mqtt.h"

/* Length of the UTF-8 sequence starting at s[0], 0 if it is invalid.
 * Rejects overlong forms, surrogates (U+D800..DFFF), > U+10FFFF and U+0000. */
static size_t utf8_seq(const uint8_t *s, size_t len)
{
    uint8_t b = s[0];
    if (b == 0)
        return 0;
    if (b < 0x80)
        return 1;
    if (b < 0xC2 || b > 0xF4)
        return 0; /* continuation byte, overlong 2-byte lead, or > U+10FFFF */
    size_t n = b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if (b == 0xE0 && s[1] < 0xA0)
        return 0; /* overlong 3-byte */
    if (b == 0xED && s[1] >= 0xA0)
        return 0; /* surrogate */
    if (b == 0xF0 && s[1] < 0x90)
        return 0; /* overlong 4-byte */
    if (b == 0xF4 && s[1] >= 0x90)
        return 0; /* above U+10FFFF */
    return n;
}

bool moat_mqtt_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

bool moat_mqtt_topic_valid(const uint8_t *s, size_t len)
{
    if (len == 0 || len > 65535)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '+' || s[i] == '#')
            return false;
    return moat_mqtt_utf8_valid(s, len);
}

bool moat_mqtt_filter_valid(const uint8_t *s, size_t len)
{
    if (len == 0 || len > 65535)
        return false;
    for (size_t i = 0; i < len; i++) {
        bool level_start = i == 0 || s[i - 1] == '/';
        bool level_end = i + 1 == len || s[i + 1] == '/';
        if (s[i] == '+' && !(level_start && level_end))
            return false;
        if (s[i] == '#' && !(level_start && i + 1 == len))
            return false;
    }
    return moat_mqtt_utf8_valid(s, len);
}
