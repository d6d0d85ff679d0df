/*
 * test_mqtt_topic.c - MQTT 3.1.1 topic rules (spec sections 1.5.3 and 4.7):
 * UTF-8 validity, topic names, topic filters and matching, including the
 * '$' rule of 4.7.2.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/mqtt.h"

#define U8(s) ((const uint8_t *)(s))

static bool utf8(const char *s, size_t n) { return moat_mqtt_utf8_valid(U8(s), n); }
static bool topic(const char *s) { return moat_mqtt_topic_valid(U8(s), strlen(s)); }
static bool filter(const char *s) { return moat_mqtt_filter_valid(U8(s), strlen(s)); }
static bool match(const char *f, const char *t)
{
    return moat_mqtt_topic_match(U8(f), strlen(f), U8(t), strlen(t));
}

/* ------------------------------------------------------------- UTF-8 -- */

static void utf8_valid_strings(void **state)
{
    (void)state;
    assert_true(utf8("", 0));
    assert_true(utf8("a", 1));
    assert_true(utf8("hello/world", 11));
    assert_true(utf8("\x7F", 1));                 /* U+007F, last 1-byte */
    assert_true(utf8("\xC2\x80", 2));             /* U+0080, first 2-byte */
    assert_true(utf8("\xC3\xA9", 2));             /* e acute */
    assert_true(utf8("\xDF\xBF", 2));             /* U+07FF */
    assert_true(utf8("\xE0\xA0\x80", 3));         /* U+0800, first 3-byte */
    assert_true(utf8("\xE2\x82\xAC", 3));         /* euro sign */
    assert_true(utf8("\xED\x9F\xBF", 3));         /* U+D7FF, just below surrogates */
    assert_true(utf8("\xEE\x80\x80", 3));         /* U+E000, just above surrogates */
    assert_true(utf8("\xEF\xBB\xBF", 3));         /* U+FEFF: valid, must not be skipped */
    assert_true(utf8("\xF0\x90\x80\x80", 4));     /* U+10000, first 4-byte */
    assert_true(utf8("\xF0\x9D\x84\x9E", 4));     /* musical G clef */
    assert_true(utf8("\xF4\x8F\xBF\xBF", 4));     /* U+10FFFF, last code point */
    assert_true(utf8("A\xF0\xAA\x9B\x94", 5));    /* spec 1.5.3.1 example: U+2A6D4 */
}

static void utf8_rejects_nul(void **state)
{
    (void)state;
    assert_false(utf8("\0", 1));
    assert_false(utf8("a\0b", 3));
    assert_false(utf8("ab\0", 3));
    /* the length is what counts, not a terminator */
    assert_true(utf8("ab\0", 2));
}

static void utf8_rejects_overlong(void **state)
{
    (void)state;
    assert_false(utf8("\xC0\x80", 2));           /* U+0000 overlong */
    assert_false(utf8("\xC0\xAF", 2));           /* '/' overlong */
    assert_false(utf8("\xC1\xBF", 2));           /* U+007F overlong */
    assert_false(utf8("\xE0\x80\x80", 3));       /* U+0000 in 3 bytes */
    assert_false(utf8("\xE0\x9F\xBF", 3));       /* U+07FF in 3 bytes */
    assert_false(utf8("\xF0\x80\x80\x80", 4));   /* U+0000 in 4 bytes */
    assert_false(utf8("\xF0\x8F\xBF\xBF", 4));   /* U+FFFF in 4 bytes */
}

static void utf8_rejects_surrogates(void **state)
{
    (void)state;
    assert_false(utf8("\xED\xA0\x80", 3));       /* U+D800 */
    assert_false(utf8("\xED\xAD\xBF", 3));       /* U+DB7F */
    assert_false(utf8("\xED\xB0\x80", 3));       /* U+DC00 */
    assert_false(utf8("\xED\xBF\xBF", 3));       /* U+DFFF */
    assert_false(utf8("a\xED\xA0\x80\xED\xB0\x80", 7)); /* CESU-8 pair */
}

static void utf8_rejects_truncated_and_stray(void **state)
{
    (void)state;
    assert_false(utf8("\xC3", 1));               /* lead byte at the end */
    assert_false(utf8("\xE2\x82", 2));           /* 3-byte cut after 2 */
    assert_false(utf8("\xF0\x9D\x84", 3));       /* 4-byte cut after 3 */
    assert_false(utf8("\xE2\x82" "a", 3));       /* continuation replaced */
    assert_false(utf8("\x80", 1));               /* lone continuation */
    assert_false(utf8("a\xBF", 2));
    assert_false(utf8("\xC3\xA9\xA9", 3));       /* one continuation too many */
    /* the length bounds the scan: a valid sequence cut by len is invalid */
    assert_false(utf8("\xE2\x82\xAC", 2));
}

static void utf8_rejects_out_of_range(void **state)
{
    (void)state;
    assert_false(utf8("\xF4\x90\x80\x80", 4));   /* U+110000 */
    assert_false(utf8("\xF5\x80\x80\x80", 4));
    assert_false(utf8("\xF8\x88\x80\x80\x80", 5)); /* old 5-byte form */
    assert_false(utf8("\xFE", 1));
    assert_false(utf8("\xFF", 1));
}

/* ------------------------------------------------------- topic names -- */

static void topic_names(void **state)
{
    (void)state;
    assert_true(topic("a"));
    assert_true(topic("/"));
    assert_true(topic("a/b"));
    assert_true(topic("a//b"));
    assert_true(topic("/a/"));
    assert_true(topic(" "));
    assert_true(topic("sport/tennis/player1"));
    assert_true(topic("$SYS/broker/load"));
    assert_true(topic("moat/0123456789ab/state"));
    assert_true(topic("caf\xC3\xA9/t"));

    assert_false(moat_mqtt_topic_valid(U8(""), 0));
    assert_false(topic("+"));
    assert_false(topic("#"));
    assert_false(topic("a/+"));
    assert_false(topic("a/#"));
    assert_false(topic("a+b"));
    assert_false(topic("a#"));
    assert_false(moat_mqtt_topic_valid(U8("a\0b"), 3));
    assert_false(topic("a/\xC0\xAF"));
    assert_false(topic("\xED\xA0\x80"));
}

static void topic_length_limit(void **state)
{
    (void)state;
    uint8_t *big = malloc(65536);
    assert_non_null(big);
    memset(big, 'x', 65536);
    assert_true(moat_mqtt_topic_valid(big, 65535));
    assert_false(moat_mqtt_topic_valid(big, 65536));
    assert_true(moat_mqtt_filter_valid(big, 65535));
    assert_false(moat_mqtt_filter_valid(big, 65536));
    free(big);
}

/* ----------------------------------------------------- topic filters -- */

static void filters_valid(void **state)
{
    (void)state;
    assert_true(filter("a"));
    assert_true(filter("a/b"));
    assert_true(filter("#"));
    assert_true(filter("+"));
    assert_true(filter("/#"));
    assert_true(filter("a/#"));
    assert_true(filter("a/+"));
    assert_true(filter("+/+"));
    assert_true(filter("+/"));
    assert_true(filter("/+"));
    assert_true(filter("a/+/b"));
    assert_true(filter("+/tennis/#"));
    assert_true(filter("sport/tennis/#"));
    assert_true(filter("sport/+/player1"));
    assert_true(filter("//"));
    assert_true(filter("$SYS/#"));
    assert_true(filter("a/+/#"));
}

static void filters_invalid(void **state)
{
    (void)state;
    assert_false(moat_mqtt_filter_valid(U8(""), 0));
    assert_false(filter("a/#/b"));
    assert_false(filter("#/a"));
    assert_false(filter("a+"));
    assert_false(filter("+a"));
    assert_false(filter("a/b+"));
    assert_false(filter("a/+b/c"));
    assert_false(filter("#a"));
    assert_false(filter("a#"));
    assert_false(filter("a/b#"));
    assert_false(filter("sport/tennis#"));
    assert_false(filter("##"));
    assert_false(filter("++"));
    assert_false(filter("+#"));
    assert_false(moat_mqtt_filter_valid(U8("a/\0"), 3));
    assert_false(filter("a/\xE2\x82"));
}

/* ---------------------------------------------------------- matching -- */

static void match_exact(void **state)
{
    (void)state;
    assert_true(match("a", "a"));
    assert_true(match("a/b", "a/b"));
    assert_true(match("/", "/"));
    assert_false(match("a/b", "a/b/"));
    assert_false(match("a/b/", "a/b"));
    assert_false(match("a", "a/b"));
    assert_false(match("a/b", "a"));
    assert_false(match("a/b", "a/c"));
    assert_false(match("ab", "a"));
    assert_false(match("a", "ab"));
    /* 4.7.3: topics are case sensitive */
    assert_false(match("ACCOUNTS", "Accounts"));
    /* 4.7.3: "/finance" and "finance" are distinct */
    assert_false(match("finance", "/finance"));
}

static void match_multi_level(void **state)
{
    (void)state;
    /* 4.7.1.2 examples */
    assert_true(match("sport/tennis/player1/#", "sport/tennis/player1"));
    assert_true(match("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
    assert_true(match("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
    assert_false(match("sport/tennis/player1/#", "sport/tennis/player2"));
    assert_false(match("sport/tennis/player1/#", "sport/tennis"));
    /* "sport/#" also matches the singular "sport" */
    assert_true(match("sport/#", "sport"));
    assert_true(match("sport/#", "sport/"));
    assert_true(match("sport/#", "sport/a/b/c"));
    assert_false(match("sport/#", "sports"));
    assert_false(match("sport/#", "spor"));
    assert_true(match("#", "a"));
    assert_true(match("#", "a/b/c"));
    assert_true(match("#", "/"));
    assert_true(match("#", "/a"));
    assert_true(match("/#", "/a"));
    assert_false(match("/#", "a"));
}

static void match_single_level(void **state)
{
    (void)state;
    /* 4.7.1.3 examples */
    assert_true(match("sport/tennis/+", "sport/tennis/player1"));
    assert_true(match("sport/tennis/+", "sport/tennis/player2"));
    assert_false(match("sport/tennis/+", "sport/tennis/player1/ranking"));
    assert_false(match("sport/+", "sport"));
    assert_true(match("sport/+", "sport/"));
    assert_true(match("+/+", "/finance"));
    assert_true(match("/+", "/finance"));
    assert_false(match("+", "/finance"));
    assert_true(match("+", "a"));
    assert_false(match("+", "a/b"));
    assert_true(match("a/+/b", "a/x/b"));
    assert_true(match("a/+/b", "a//b"));
    assert_false(match("a/+/b", "a/x/y/b"));
    assert_true(match("+/+/+", "a/b/c"));
    assert_false(match("+/+/+", "a/b"));
    assert_true(match("+/tennis/#", "sport/tennis"));
    assert_true(match("+/tennis/#", "sport/tennis/x/y"));
    assert_true(match("a/+/#", "a/x"));
    assert_true(match("a/+/#", "a/x/y/z"));
    assert_false(match("a/+/#", "a"));
    assert_true(match("+/#", "a"));
    assert_true(match("a/$b", "a/$b"));
    assert_true(match("a/+", "a/$b"));
}

static void match_dollar_topics(void **state)
{
    (void)state;
    /* 4.7.2 */
    assert_false(match("#", "$SYS/broker"));
    assert_false(match("#", "$SYS"));
    assert_false(match("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert_false(match("+", "$SYS"));
    assert_false(match("+/#", "$SYS/x"));
    assert_true(match("$SYS/#", "$SYS/monitor/Clients"));
    assert_true(match("$SYS/#", "$SYS"));
    assert_true(match("$SYS/monitor/+", "$SYS/monitor/Clients"));
    assert_true(match("$SYS/monitor/Clients", "$SYS/monitor/Clients"));
    assert_false(match("$SYS/#", "SYS/x"));
}

static void match_refuses_invalid_input(void **state)
{
    (void)state;
    /* both must be valid: a bad filter or a wildcard topic never matches */
    assert_false(match("a/#/b", "a/x/b"));
    assert_false(match("a+", "a+"));
    assert_false(match("#a", "#a"));
    assert_false(match("a/+", "a/+"));
    assert_false(match("#", "a/#"));
    assert_false(moat_mqtt_topic_match(U8(""), 0, U8("a"), 1));
    assert_false(moat_mqtt_topic_match(U8("#"), 1, U8(""), 0));
    assert_false(moat_mqtt_topic_match(U8("#"), 1, U8("a\xC0\x80"), 3));
}

static void match_uses_lengths(void **state)
{
    (void)state;
    /* slices are not NUL-terminated: only flen/tlen bytes count */
    assert_true(moat_mqtt_topic_match(U8("a/bXXX"), 3, U8("a/bYYY"), 3));
    assert_false(moat_mqtt_topic_match(U8("a/b"), 3, U8("a/bc"), 4));
    assert_true(moat_mqtt_topic_match(U8("a/#garbage"), 3, U8("a/q"), 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(utf8_valid_strings),
        cmocka_unit_test(utf8_rejects_nul),
        cmocka_unit_test(utf8_rejects_overlong),
        cmocka_unit_test(utf8_rejects_surrogates),
        cmocka_unit_test(utf8_rejects_truncated_and_stray),
        cmocka_unit_test(utf8_rejects_out_of_range),
        cmocka_unit_test(topic_names),
        cmocka_unit_test(topic_length_limit),
        cmocka_unit_test(filters_valid),
        cmocka_unit_test(filters_invalid),
        cmocka_unit_test(match_exact),
        cmocka_unit_test(match_multi_level),
        cmocka_unit_test(match_single_level),
        cmocka_unit_test(match_dollar_topics),
        cmocka_unit_test(match_refuses_invalid_input),
        cmocka_unit_test(match_uses_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
