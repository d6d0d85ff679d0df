/*
 * fuzz_mqtt_topic.c - libFuzzer harness for the MQTT string rules
 * (mqtt_topic.c): UTF-8, topic names, topic filters and matching.
 *
 * Byte 0 splits the rest of the input into a filter and a topic. Each rule is
 * checked against a plain reference written from MQTT 3.1.1 sections 1.5.3
 * and 4.7, and matching also against filters derived from the topic ("#",
 * every level "+", the topic itself), which must match by construction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moat/mqtt.h"

#include "fuzz_check.h"

/* Well-formed UTF-8 (Unicode table 3-7), decoded code point by code point,
 * with no surrogates and no U+0000. */
static bool ref_utf8(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n, k;
        if (s[i] < 0x80) {
            cp = s[i];
            n = 1;
        } else if ((s[i] & 0xE0) == 0xC0) {
            cp = s[i] & 0x1Fu;
            n = 2;
        } else if ((s[i] & 0xF0) == 0xE0) {
            cp = s[i] & 0x0Fu;
            n = 3;
        } else if ((s[i] & 0xF8) == 0xF0) {
            cp = s[i] & 0x07u;
            n = 4;
        } else {
            return false;
        }
        if (len - i < n)
            return false;
        for (k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000))
            return false; /* overlong */
        if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return false;
        i += n;
    }
    return true;
}

static bool ref_topic(const uint8_t *s, size_t len)
{
    return len >= 1 && len <= 65535 && !memchr(s, '+', len) && !memchr(s, '#', len) &&
           ref_utf8(s, len);
}

/* Levels are split at '/'; a level holding a wildcard is exactly "+" or "#",
 * and "#" is the last level. */
static bool ref_filter(const uint8_t *s, size_t len)
{
    size_t start = 0, i;
    if (len < 1 || len > 65535 || !ref_utf8(s, len))
        return false;
    for (i = 0; i <= len; i++) {
        if (i == len || s[i] == '/') {
            size_t n = i - start;
            const uint8_t *lv = s + start;
            bool wild = memchr(lv, '+', n) || memchr(lv, '#', n);
            if (wild && !(n == 1 && (lv[0] == '+' || (lv[0] == '#' && i == len))))
                return false;
            start = i + 1;
        }
    }
    return true;
}

/* Length of the level starting at s[at]. */
static size_t level_len(const uint8_t *s, size_t len, size_t at)
{
    size_t i = at;
    while (i < len && s[i] != '/')
        i++;
    return i - at;
}

/* Level by level; at == len + 1 means "no levels left". */
static bool ref_match_from(const uint8_t *f, size_t flen, size_t fi, const uint8_t *t,
                           size_t tlen, size_t ti)
{
    for (;;) {
        size_t fl, tl;
        if (fi > flen)
            return ti > tlen;
        fl = level_len(f, flen, fi);
        if (fl == 1 && f[fi] == '#')
            return true; /* also the parent level: "a/#" matches "a" */
        if (ti > tlen)
            return false;
        tl = level_len(t, tlen, ti);
        if (!(fl == 1 && f[fi] == '+') && (fl != tl || memcmp(f + fi, t + ti, fl) != 0))
            return false;
        fi += fl + 1;
        ti += tl + 1;
    }
}

static bool ref_match(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen)
{
    if ((f[0] == '+' || f[0] == '#') && t[0] == '$')
        return false; /* MQTT-4.7.2-1 */
    return ref_match_from(f, flen, 0, t, tlen, 0);
}

static void check_match(const uint8_t *f, size_t flen, const uint8_t *t, size_t tlen)
{
    bool got = moat_mqtt_topic_match(f, flen, t, tlen);
    bool want = ref_match(f, flen, t, tlen);
    if (got != want)
        fprintf(stderr, "harness: match(\"%.*s\", \"%.*s\") is %d, not %d\n", (int)flen,
                (const char *)f, (int)tlen, (const char *)t, got, want);
    CHECK(got == want);
}

/* Filters built from a valid topic, which must (or must not) match it. */
static void derived(const uint8_t *t, size_t tlen)
{
    uint8_t *f = malloc(2 * tlen + 4); /* "+" and "/+" per "/", then "/#" */
    size_t i, n = 0;
    bool dollar = t[0] == '$';

    CHECK(f != NULL);
    CHECK(moat_mqtt_topic_match(t, tlen, t, tlen));              /* itself */
    CHECK(moat_mqtt_topic_match((const uint8_t *)"#", 1, t, tlen) == !dollar);

    /* every level "+" */
    f[n++] = '+';
    for (i = 0; i < tlen; i++) {
        if (t[i] == '/') {
            f[n++] = '/';
            f[n++] = '+';
        }
    }
    CHECK(moat_mqtt_filter_valid(f, n));
    CHECK(moat_mqtt_topic_match(f, n, t, tlen) == !dollar);
    /* one level more is too many, unless it is "#" */
    f[n++] = '/';
    f[n++] = '+';
    CHECK(!moat_mqtt_topic_match(f, n, t, tlen));
    f[n - 1] = '#';
    CHECK(moat_mqtt_topic_match(f, n, t, tlen) == !dollar);

    /* the topic itself, then "/#": matches the parent level too */
    memcpy(f, t, tlen);
    f[tlen] = '/';
    f[tlen + 1] = '#';
    CHECK(moat_mqtt_topic_match(f, tlen + 2, t, tlen));
    free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *f, *t;
    size_t flen, tlen;
    bool fv, tv;

    if (size < 1)
        return 0;
    flen = data[0] < size - 1 ? data[0] : size - 1;
    f = data + 1;
    t = f + flen;
    tlen = size - 1 - flen;

    CHECK(moat_mqtt_utf8_valid(f, flen) == ref_utf8(f, flen));
    CHECK(moat_mqtt_utf8_valid(t, tlen) == ref_utf8(t, tlen));
    fv = moat_mqtt_filter_valid(f, flen);
    tv = moat_mqtt_topic_valid(t, tlen);
    CHECK(fv == ref_filter(f, flen));
    CHECK(tv == ref_topic(t, tlen));
    CHECK(moat_mqtt_topic_valid(f, flen) == ref_topic(f, flen));
    CHECK(moat_mqtt_filter_valid(t, tlen) == ref_filter(t, tlen));
    /* every topic name is also a filter that matches exactly itself */
    if (tv)
        CHECK(moat_mqtt_filter_valid(t, tlen));

    if (fv && tv)
        check_match(f, flen, t, tlen);
    else if (flen && tlen) /* invalid input never matches */
        CHECK(!moat_mqtt_topic_match(f, flen, t, tlen));
    if (tv)
        derived(t, tlen);
    return 0;
}
