/*
 * test_json.c - moat/json.h: validation on top of jsmn (with the offset of
 * every fault), navigation, string unescaping into bounded buffers,
 * integers with ranges, booleans, and the writer's escaping and overflow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "moat/json.h"

#define NTOK 64

static moat_json_tok toks[NTOK];

static moat_err parse(moat_json *d, const char *s, size_t *pos)
{
    return moat_json_parse(d, s, strlen(s), toks, NTOK, pos);
}

static void parse_ok(moat_json *d, const char *s)
{
    size_t pos = 99;
    assert_int_equal(parse(d, s, &pos), MOAT_OK);
    assert_int_equal(pos, 0);
}

/* ------------------------------------------------------------ parsing -- */

static void valid_documents(void **state)
{
    static const char *const good[] = {
        "{}", "[]", " { } ", "{\"a\":1}", "{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}",
        "[true,false,null]", "\"str\"", "0", "-0", "12", "-1.5e+3", "1E-2", "0.0",
        "\n\t{\r\n\"k\" : \"v\" }\n", "[\"\\u00e9\\ud83d\\ude00\\n\\\"\\\\\\/\"]",
        "{\"\xc3\xa9\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"}", "[[[[[]]]]]", "true",
    };
    moat_json d;
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        size_t pos = 99;
        moat_err e = parse(&d, good[i], &pos);
        if (e != MOAT_OK)
            fail_msg("refused valid JSON %s: %d at %zu", good[i], e, pos);
        assert_true(d.count >= 1);
    }
}

typedef struct bad_case {
    const char *text;
    size_t pos;     /* expected fault offset */
    moat_err err;
} bad_case;

static void invalid_documents_with_offsets(void **state)
{
    static const bad_case bad[] = {
        {"", 0, MOAT_ERR_MALFORMED},
        {"   ", 3, MOAT_ERR_MALFORMED},
        {"{", 1, MOAT_ERR_MALFORMED},
        {"{\"a\":1", 6, MOAT_ERR_MALFORMED},
        {"{\"a\" \"b\"}", 5, MOAT_ERR_MALFORMED},     /* missing colon */
        {"{\"a\":1 \"b\":2}", 7, MOAT_ERR_MALFORMED}, /* missing comma */
        {"{\"a\":1,}", 7, MOAT_ERR_MALFORMED},        /* trailing comma */
        {"[1,,2]", 3, MOAT_ERR_MALFORMED},
        {"[1,]", 3, MOAT_ERR_MALFORMED},
        {"{a:1}", 1, MOAT_ERR_MALFORMED},             /* unquoted key */
        {"{1:1}", 1, MOAT_ERR_MALFORMED},
        {"[tru]", 1, MOAT_ERR_MALFORMED},
        {"[truex]", 5, MOAT_ERR_MALFORMED},
        {"[nul]", 1, MOAT_ERR_MALFORMED},
        {"[01]", 2, MOAT_ERR_MALFORMED},
        {"[1.]", 3, MOAT_ERR_MALFORMED},
        {"[.5]", 1, MOAT_ERR_MALFORMED},
        {"[-]", 2, MOAT_ERR_MALFORMED},
        {"[1e]", 3, MOAT_ERR_MALFORMED},
        {"[+1]", 1, MOAT_ERR_MALFORMED},
        {"[1]]", 3, MOAT_ERR_MALFORMED},
        {"{}{}", 2, MOAT_ERR_MALFORMED},               /* data after the value */
        {"{\"a\":1} x", 8, MOAT_ERR_MALFORMED},
        {"[}", 1, MOAT_ERR_MALFORMED},
        {"{]", 1, MOAT_ERR_MALFORMED},
        {"[\"a\tb\"]", 3, MOAT_ERR_MALFORMED},         /* raw control character */
        {"[\"a\\x\"]", 3, MOAT_ERR_MALFORMED},         /* unknown escape */
        {"[\"\\u12G4\"]", 2, MOAT_ERR_MALFORMED},
        {"[\"\\u12\"]", 2, MOAT_ERR_MALFORMED},
        {"[\"abc", 5, MOAT_ERR_MALFORMED},             /* unterminated */
        {"[\"\\ud800\"]", 2, MOAT_ERR_UTF8},            /* lone high surrogate */
        {"[\"\\udc00\"]", 2, MOAT_ERR_UTF8},            /* lone low surrogate */
        {"[\"\\ud800\\u0041\"]", 2, MOAT_ERR_UTF8},
        {"[\"\xff\"]", 2, MOAT_ERR_UTF8},
        {"[\"\xc0\xaf\"]", 2, MOAT_ERR_UTF8},           /* overlong '/' */
        {"[\"\xed\xa0\x80\"]", 2, MOAT_ERR_UTF8},       /* UTF-8 surrogate */
        {"[\"\xe2\x82\"]", 2, MOAT_ERR_UTF8},           /* cut sequence */
        {"{'a':1}", 1, MOAT_ERR_MALFORMED},
    };
    moat_json d;
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t pos = 99;
        moat_err e = parse(&d, bad[i].text, &pos);
        if (e != bad[i].err || pos != bad[i].pos)
            fail_msg("case %zu '%s': got %d at %zu, want %d at %zu", i, bad[i].text, e, pos,
                     bad[i].err, bad[i].pos);
    }
}

static void nul_byte_and_nesting(void **state)
{
    moat_json d;
    size_t pos;
    char deep[200];
    (void)state;
    /* a NUL inside the given length is not JSON (jsmn would stop there) */
    assert_int_equal(moat_json_parse(&d, "{}\0{}", 5, toks, NTOK, &pos), MOAT_ERR_MALFORMED);
    assert_int_equal(pos, 2);
    assert_int_equal(moat_json_parse(&d, "[\"a\0\"]", 6, toks, NTOK, &pos),
                     MOAT_ERR_MALFORMED);
    assert_int_equal(pos, 3);
    /* 64 levels are fine, 65 are refused at the 65th bracket */
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = '\0';
    assert_int_equal(parse(&d, deep, &pos), MOAT_OK);
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = '\0';
    assert_int_equal(parse(&d, deep, &pos), MOAT_ERR_MALFORMED);
    assert_int_equal(pos, 64);
}

static void token_space_and_arguments(void **state)
{
    moat_json d;
    moat_json_tok few[3];
    size_t pos;
    (void)state;
    assert_int_equal(moat_json_parse(&d, "[1,2]", 5, few, 3, &pos), MOAT_OK);
    assert_int_equal(d.count, 3);
    assert_int_equal(moat_json_parse(&d, "[1,2,3]", 7, few, 3, &pos), MOAT_ERR_NO_SPACE);
    assert_int_equal(moat_json_parse(&d, "{}", 2, few, 0, &pos), MOAT_ERR_ARG);
    assert_int_equal(moat_json_parse(&d, NULL, 2, few, 3, &pos), MOAT_ERR_ARG);
    assert_int_equal(moat_json_parse(NULL, "{}", 2, few, 3, NULL), MOAT_ERR_ARG);
    /* a bare top-level number: strict jsmn wants a delimiter, we do not */
    assert_int_equal(moat_json_parse(&d, " 42 ", 4, few, 3, &pos), MOAT_OK);
    assert_int_equal(d.count, 1);
    assert_int_equal(moat_json_type_of(&d, 0), MOAT_JSON_NUMBER);
    {
        int64_t v;
        assert_int_equal(moat_json_get_int(&d, 0, 0, 100, &v), MOAT_OK);
        assert_int_equal(v, 42);
    }
}

static void line_numbers(void **state)
{
    const char *t = "{\n\"a\": 1,\n\"b\": x\n}";
    moat_json d;
    size_t pos;
    (void)state;
    assert_int_equal(parse(&d, t, &pos), MOAT_ERR_MALFORMED);
    assert_int_equal(pos, 15);
    assert_int_equal(moat_json_line(t, strlen(t), pos), 3);
    assert_int_equal(moat_json_line(t, strlen(t), 0), 1);
    assert_int_equal(moat_json_line(t, strlen(t), 1), 1);
    assert_int_equal(moat_json_line(t, strlen(t), 2), 2);
    assert_int_equal(moat_json_line(t, strlen(t), 9999), 4);
    /* truncated: the fault is at the end, on the last line */
    t = "{\n\"a\": [1,\n2";
    assert_int_equal(parse(&d, t, &pos), MOAT_ERR_MALFORMED);
    assert_int_equal(pos, strlen(t));
    assert_int_equal(moat_json_line(t, strlen(t), pos), 3);
}

/* --------------------------------------------------------- navigation -- */

static void find_next_skip(void **state)
{
    moat_json d;
    int it = 0, k, v, n = 0;
    (void)state;
    parse_ok(&d, "{\"a\":{\"x\":[1,{\"y\":2}]},\"b\":[],\"c\\u0041\":\"z\",\"a\":5}");
    assert_int_equal(moat_json_type_of(&d, 0), MOAT_JSON_OBJECT);
    v = moat_json_find(&d, 0, "b");
    assert_int_equal(moat_json_type_of(&d, v), MOAT_JSON_ARRAY);
    /* an escaped key is compared by value */
    v = moat_json_find(&d, 0, "cA");
    assert_true(moat_json_eq(&d, v, "z"));
    /* the first of a duplicated key */
    assert_int_equal(moat_json_type_of(&d, moat_json_find(&d, 0, "a")), MOAT_JSON_OBJECT);
    /* nested keys are not found at the top */
    assert_int_equal(moat_json_find(&d, 0, "x"), -1);
    assert_int_equal(moat_json_find(&d, 0, "y"), -1);
    assert_int_equal(moat_json_find(&d, 0, ""), -1);
    assert_int_equal(moat_json_find(&d, 1, "a"), -1); /* token 1 is a key string */
    while (moat_json_next(&d, 0, &it, &k, &v))
        n++;
    assert_int_equal(n, 4);
    /* an array's elements */
    {
        int arr = moat_json_find(&d, moat_json_find(&d, 0, "a"), "x");
        int types[2];
        it = 0;
        n = 0;
        while (moat_json_next(&d, arr, &it, &k, &v)) {
            assert_int_equal(k, -1);
            types[n++] = moat_json_type_of(&d, v);
        }
        assert_int_equal(n, 2);
        assert_int_equal(types[0], MOAT_JSON_NUMBER);
        assert_int_equal(types[1], MOAT_JSON_OBJECT);
    }
    assert_int_equal(moat_json_skip(&d, 0), d.count);
    /* empty containers */
    parse_ok(&d, "{\"e\":{},\"f\":[]}");
    it = 0;
    assert_false(moat_json_next(&d, moat_json_find(&d, 0, "e"), &it, &k, &v));
    it = 0;
    assert_false(moat_json_next(&d, moat_json_find(&d, 0, "f"), &it, &k, &v));
    assert_int_equal(moat_json_type_of(&d, 99), MOAT_JSON_INVALID);
    assert_int_equal(moat_json_type_of(&d, -1), MOAT_JSON_INVALID);
}

static void types_and_names(void **state)
{
    moat_json d;
    (void)state;
    parse_ok(&d, "[{},[],\"s\",1,true,false,null]");
    assert_int_equal(moat_json_type_of(&d, 1), MOAT_JSON_OBJECT);
    assert_int_equal(moat_json_type_of(&d, 2), MOAT_JSON_ARRAY);
    assert_int_equal(moat_json_type_of(&d, 3), MOAT_JSON_STRING);
    assert_int_equal(moat_json_type_of(&d, 4), MOAT_JSON_NUMBER);
    assert_int_equal(moat_json_type_of(&d, 5), MOAT_JSON_TRUE);
    assert_int_equal(moat_json_type_of(&d, 6), MOAT_JSON_FALSE);
    assert_int_equal(moat_json_type_of(&d, 7), MOAT_JSON_NULL);
    assert_string_equal(moat_json_type_name(MOAT_JSON_OBJECT), "an object");
    assert_string_equal(moat_json_type_name(MOAT_JSON_STRING), "a string");
    assert_string_equal(moat_json_type_name(MOAT_JSON_NULL), "null");
}

/* ------------------------------------------------------------ strings -- */

static void string_unescape(void **state)
{
    moat_json d;
    char buf[64];
    size_t n;
    (void)state;
    parse_ok(&d, "[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\",\"\\u00e9\\u20AC\\ud83d\\ude00\",\"\","
                 "\"\\u0000\",\"x\\u0041y\"]");
    assert_int_equal(moat_json_get_string(&d, 1, buf, sizeof(buf), &n), MOAT_OK);
    assert_string_equal(buf, "a\"b\\c/d\b\f\n\r\t");
    assert_int_equal(n, 12);
    assert_int_equal(moat_json_get_string(&d, 2, buf, sizeof(buf), &n), MOAT_OK);
    assert_string_equal(buf, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    assert_int_equal(n, 9);
    assert_int_equal(moat_json_get_string(&d, 3, buf, sizeof(buf), &n), MOAT_OK);
    assert_string_equal(buf, "");
    assert_int_equal(n, 0);
    /* U+0000 cannot live in a C string */
    assert_int_equal(moat_json_get_string(&d, 4, buf, sizeof(buf), &n), MOAT_ERR_UTF8);
    assert_string_equal(buf, "");
    assert_true(moat_json_eq(&d, 5, "xAy"));
    assert_false(moat_json_eq(&d, 5, "xAyz"));
    assert_false(moat_json_eq(&d, 5, "xA"));
    assert_false(moat_json_eq(&d, 0, "xAy")); /* not a string */
    /* not a string */
    assert_int_equal(moat_json_get_string(&d, 0, buf, sizeof(buf), &n), MOAT_ERR_ARG);
}

static void string_overflow(void **state)
{
    moat_json d;
    char buf[8];
    size_t n = 77;
    (void)state;
    parse_ok(&d, "[\"1234567\",\"12345678\",\"123456\\u00e9\"]");
    /* 7 bytes and the NUL fit exactly */
    assert_int_equal(moat_json_get_string(&d, 1, buf, sizeof(buf), &n), MOAT_OK);
    assert_string_equal(buf, "1234567");
    assert_int_equal(n, 7);
    /* one more byte does not: refused, buffer emptied */
    assert_int_equal(moat_json_get_string(&d, 2, buf, sizeof(buf), &n), MOAT_ERR_NO_SPACE);
    assert_string_equal(buf, "");
    assert_int_equal(n, 0);
    /* a 2-byte UTF-8 character is never cut in half */
    assert_int_equal(moat_json_get_string(&d, 3, buf, sizeof(buf), &n), MOAT_ERR_NO_SPACE);
    assert_string_equal(buf, "");
    assert_int_equal(moat_json_get_string(&d, 1, buf, 0, &n), MOAT_ERR_NO_SPACE);
    assert_int_equal(moat_json_get_string(&d, 1, NULL, 8, &n), MOAT_ERR_NO_SPACE);
}

static void raw_text(void **state)
{
    moat_json d;
    size_t n;
    const char *p;
    (void)state;
    parse_ok(&d, "{\"k\":\"a\\nb\",\"n\":-12.5}");
    p = moat_json_raw(&d, moat_json_find(&d, 0, "k"), &n);
    assert_int_equal(n, 4);
    assert_memory_equal(p, "a\\nb", 4);
    p = moat_json_raw(&d, moat_json_find(&d, 0, "n"), &n);
    assert_memory_equal(p, "-12.5", 5);
    p = moat_json_raw(&d, 99, &n);
    assert_int_equal(n, 0);
    assert_string_equal(p, "");
}

/* ------------------------------------------------------ numbers, bools -- */

static void integers(void **state)
{
    moat_json d;
    int64_t v = 7;
    (void)state;
    parse_ok(&d, "[0,-0,65535,70000,-1,1.5,1e3,\"5\",true,9223372036854775807,"
                 "-9223372036854775808,9223372036854775808,99999999999999999999999]");
    assert_int_equal(moat_json_get_int(&d, 1, 0, 10, &v), MOAT_OK);
    assert_int_equal(v, 0);
    assert_int_equal(moat_json_get_int(&d, 2, 0, 10, &v), MOAT_OK);
    assert_int_equal(v, 0);
    assert_int_equal(moat_json_get_int(&d, 3, 1, 65535, &v), MOAT_OK);
    assert_int_equal(v, 65535);
    v = 7;
    assert_int_equal(moat_json_get_int(&d, 4, 1, 65535, &v), MOAT_ERR_TOO_LARGE);
    assert_int_equal(v, 7); /* untouched */
    assert_int_equal(moat_json_get_int(&d, 5, 0, 10, &v), MOAT_ERR_TOO_LARGE);
    assert_int_equal(moat_json_get_int(&d, 5, -1, 10, &v), MOAT_OK);
    assert_int_equal(v, -1);
    assert_int_equal(moat_json_get_int(&d, 6, 0, 10, &v), MOAT_ERR_ARG);
    assert_int_equal(moat_json_get_int(&d, 7, 0, 10000, &v), MOAT_ERR_ARG);
    assert_int_equal(moat_json_get_int(&d, 8, 0, 10, &v), MOAT_ERR_ARG);
    assert_int_equal(moat_json_get_int(&d, 9, 0, 10, &v), MOAT_ERR_ARG);
    assert_int_equal(moat_json_get_int(&d, 10, INT64_MIN, INT64_MAX, &v), MOAT_OK);
    assert_true(v == INT64_MAX);
    assert_int_equal(moat_json_get_int(&d, 11, INT64_MIN, INT64_MAX, &v), MOAT_OK);
    assert_true(v == INT64_MIN);
    assert_int_equal(moat_json_get_int(&d, 12, INT64_MIN, INT64_MAX, &v), MOAT_ERR_TOO_LARGE);
    assert_int_equal(moat_json_get_int(&d, 13, INT64_MIN, INT64_MAX, &v), MOAT_ERR_TOO_LARGE);
    assert_int_equal(moat_json_get_int(&d, 0, 0, 10, &v), MOAT_ERR_ARG); /* the array */
}

static void booleans(void **state)
{
    moat_json d;
    bool b = false;
    (void)state;
    parse_ok(&d, "[true,false,\"true\",1,null]");
    assert_int_equal(moat_json_get_bool(&d, 1, &b), MOAT_OK);
    assert_true(b);
    assert_int_equal(moat_json_get_bool(&d, 2, &b), MOAT_OK);
    assert_false(b);
    assert_int_equal(moat_json_get_bool(&d, 3, &b), MOAT_ERR_ARG);
    assert_int_equal(moat_json_get_bool(&d, 4, &b), MOAT_ERR_ARG);
    assert_int_equal(moat_json_get_bool(&d, 5, &b), MOAT_ERR_ARG);
}

/* ------------------------------------------------------------ writing -- */

static void writer_document(void **state)
{
    char buf[256];
    size_t n = 0;
    moat_json_writer w;
    moat_json d;
    char s[64];
    (void)state;
    moat_json_writer_init(&w, buf, sizeof(buf));
    moat_json_begin_object(&w, NULL);
    moat_json_put_string(&w, "name", "pump \"A\"\\\n\t\x01\x1f");
    moat_json_put_int(&w, "neg", -42);
    moat_json_put_int(&w, "min", INT64_MIN);
    moat_json_put_uint(&w, "big", UINT64_MAX);
    moat_json_put_bool(&w, "on", true);
    moat_json_put_bool(&w, "off", false);
    moat_json_put_null(&w, "none");
    moat_json_begin_array(&w, "zones");
    moat_json_put_int(&w, NULL, 1);
    moat_json_begin_object(&w, NULL);
    moat_json_end_object(&w);
    moat_json_begin_array(&w, NULL);
    moat_json_end_array(&w);
    moat_json_end_array(&w);
    moat_json_put_string(&w, "utf8", "\xc3\xa9");
    moat_json_end_object(&w);
    assert_int_equal(moat_json_finish(&w, &n), MOAT_OK);
    assert_string_equal(buf,
                        "{\"name\":\"pump \\\"A\\\"\\\\\\n\\t\\u0001\\u001f\",\"neg\":-42,"
                        "\"min\":-9223372036854775808,\"big\":18446744073709551615,"
                        "\"on\":true,\"off\":false,\"none\":null,\"zones\":[1,{},[]],"
                        "\"utf8\":\"\xc3\xa9\"}");
    assert_int_equal(n, strlen(buf));
    /* it reads back */
    parse_ok(&d, buf);
    assert_int_equal(moat_json_get_string(&d, moat_json_find(&d, 0, "name"), s, sizeof(s),
                                          NULL),
                     MOAT_OK);
    assert_string_equal(s, "pump \"A\"\\\n\t\x01\x1f");
}

static void writer_invalid_utf8_and_nul(void **state)
{
    char buf[64];
    moat_json_writer w;
    moat_json d;
    (void)state;
    moat_json_writer_init(&w, buf, sizeof(buf));
    moat_json_begin_array(&w, NULL);
    moat_json_put_string(&w, NULL, "a\xff" "b\xe2\x82");
    moat_json_put_string_n(&w, NULL, "x\0y", 3);
    moat_json_end_array(&w);
    assert_int_equal(moat_json_finish(&w, NULL), MOAT_OK);
    assert_string_equal(buf, "[\"a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd\",\"x\\u0000y\"]");
    parse_ok(&d, buf);
}

static void writer_overflow_exact(void **state)
{
    char buf[32];
    size_t n;
    moat_json_writer w;
    const char *want = "{\"k\":\"0123456789\"}"; /* 18 bytes */
    (void)state;
    /* 19 bytes: the document and its NUL */
    moat_json_writer_init(&w, buf, 19);
    moat_json_begin_object(&w, NULL);
    moat_json_put_string(&w, "k", "0123456789");
    moat_json_end_object(&w);
    assert_int_equal(moat_json_finish(&w, &n), MOAT_OK);
    assert_string_equal(buf, want);
    /* 18: no room for the NUL: refused whole, never cut */
    memset(buf, 'Z', sizeof(buf));
    moat_json_writer_init(&w, buf, 18);
    moat_json_begin_object(&w, NULL);
    moat_json_put_string(&w, "k", "0123456789");
    moat_json_end_object(&w);
    assert_int_equal(moat_json_finish(&w, &n), MOAT_ERR_NO_SPACE);
    assert_int_equal(n, 0);
    assert_string_equal(buf, "");
    assert_int_equal(buf[18], 'Z'); /* nothing beyond cap */
    /* every smaller size fails too, and stays inside its buffer */
    for (size_t cap = 0; cap < 18; cap++) {
        memset(buf, 'Z', sizeof(buf));
        moat_json_writer_init(&w, cap ? buf : NULL, cap);
        moat_json_begin_object(&w, NULL);
        moat_json_put_string(&w, "k", "0123456789");
        moat_json_end_object(&w);
        assert_int_not_equal(moat_json_finish(&w, &n), MOAT_OK);
        assert_int_equal(buf[cap], 'Z');
    }
    /* escapes count: "\u0001" is 6 bytes */
    moat_json_writer_init(&w, buf, 9);
    moat_json_put_string(&w, NULL, "\x01"); /* "\u0001" = 8 bytes + NUL */
    assert_int_equal(moat_json_finish(&w, &n), MOAT_OK);
    assert_int_equal(n, 8);
    moat_json_writer_init(&w, buf, 8);
    moat_json_put_string(&w, NULL, "\x01");
    assert_int_equal(moat_json_finish(&w, &n), MOAT_ERR_NO_SPACE);
}

static void writer_misuse(void **state)
{
    char buf[64];
    moat_json_writer w;
    (void)state;
    /* a key at the top level */
    moat_json_writer_init(&w, buf, sizeof(buf));
    moat_json_put_int(&w, "k", 1);
    assert_int_equal(moat_json_finish(&w, NULL), MOAT_ERR_STATE);
    /* no key inside an object */
    moat_json_writer_init(&w, buf, sizeof(buf));
    moat_json_begin_object(&w, NULL);
    moat_json_put_int(&w, NULL, 1);
    moat_json_end_object(&w);
    assert_int_equal(moat_json_finish(&w, NULL), MOAT_ERR_STATE);
    /* a key inside an array */
    moat_json_writer_init(&w, buf, sizeof(buf));
    moat_json_begin_array(&w, NULL);
    moat_json_put_int(&w, "k", 1);
    moat_json_end_array(&w);
    assert_int_equal(moat_json_finish(&w, NULL), MOAT_ERR_STATE);
    /* unclosed, mismatched, extra end, nothing, two roots */
    moat_json_writer_init(&w, buf, sizeof(buf));
    moat_json_begin_object(&w, NULL);
    assert_int_equal(moat_json_finish(&w, NULL), MOAT_ERR_STATE);
    assert_string_equal(buf, "");
    moat_json_writer_init(&w, buf, sizeof(buf));
    moat_json_begin_object(&w, NULL);
    moat_json_end_array(&w);
    assert_int_equal(moat_json_finish(&w, NULL), MOAT_ERR_STATE);
    moat_json_writer_init(&w, buf, sizeof(buf));
    moat_json_end_object(&w);
    assert_int_equal(moat_json_finish(&w, NULL), MOAT_ERR_STATE);
    moat_json_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(moat_json_finish(&w, NULL), MOAT_ERR_STATE);
    moat_json_writer_init(&w, buf, sizeof(buf));
    moat_json_put_int(&w, NULL, 1);
    moat_json_put_int(&w, NULL, 2);
    assert_int_equal(moat_json_finish(&w, NULL), MOAT_ERR_STATE);
    /* too deep */
    moat_json_writer_init(&w, buf, sizeof(buf));
    for (unsigned i = 0; i <= MOAT_JSON_MAX_DEPTH; i++)
        moat_json_begin_array(&w, NULL);
    assert_int_equal(moat_json_finish(&w, NULL), MOAT_ERR_STATE);
    /* exactly the maximum depth works */
    moat_json_writer_init(&w, buf, sizeof(buf));
    for (unsigned i = 0; i < MOAT_JSON_MAX_DEPTH; i++)
        moat_json_begin_array(&w, NULL);
    for (unsigned i = 0; i < MOAT_JSON_MAX_DEPTH; i++)
        moat_json_end_array(&w);
    assert_int_equal(moat_json_finish(&w, NULL), MOAT_OK);
    assert_string_equal(buf, "[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_documents),
        cmocka_unit_test(invalid_documents_with_offsets),
        cmocka_unit_test(nul_byte_and_nesting),
        cmocka_unit_test(token_space_and_arguments),
        cmocka_unit_test(line_numbers),
        cmocka_unit_test(find_next_skip),
        cmocka_unit_test(types_and_names),
        cmocka_unit_test(string_unescape),
        cmocka_unit_test(string_overflow),
        cmocka_unit_test(raw_text),
        cmocka_unit_test(integers),
        cmocka_unit_test(booleans),
        cmocka_unit_test(writer_document),
        cmocka_unit_test(writer_invalid_utf8_and_nul),
        cmocka_unit_test(writer_overflow_exact),
        cmocka_unit_test(writer_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
