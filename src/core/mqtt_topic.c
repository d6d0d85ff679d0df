/*
 * mqtt_topic.c - MQTT string rules: UTF-8, topic names, topic filters and
 * matching a filter against a topic (MQTT 3.1.1 sections 1.5.3 and 4.7).
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

/* End of the level that starts at i. */
static size_t level_end(const uint8_t *s, size_t len, size_t i)
{
    while (i < len && s[i] != '/')
        i++;
    return i;
}

bool moat_mqtt_topic_match(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen)
{
    size_t fi = 0, ti = 0;
    bool topic_done = false;
    if (!moat_mqtt_filter_valid(f, flen) || !moat_mqtt_topic_valid(t, tlen))
        return false;
    if ((f[0] == '+' || f[0] == '#') && t[0] == '$')
        return false;
    for (;;) {
        size_t fe = level_end(f, flen, fi);
        if (fe - fi == 1 && f[fi] == '#')
            return true; /* this level and all below, or the parent level */
        if (topic_done)
            return false;
        size_t te = level_end(t, tlen, ti);
        if (!(fe - fi == 1 && f[fi] == '+')) {
            if (fe - fi != te - ti)
                return false;
            for (size_t k = 0; k < fe - fi; k++)
                if (f[fi + k] != t[ti + k])
                    return false;
        }
        topic_done = te == tlen;
        if (fe == flen)
            return topic_done;
        fi = fe + 1;
        ti = te + 1;
    }
}
