/*
 * test_http.c - the sans-I/O HTTP GET engine (moat/http.h), byte for byte.
 *
 * Requests are compared with exact bytes. Responses are exact bytes too,
 * fed whole, one byte at a time and split at every position, so no answer
 * depends on how the network cuts the stream. The body callback records
 * what it got and at which offsets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/http.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- a recording receiver -------------------------------------------- */

typedef struct sink {
    uint8_t data[4096];
    size_t len;
    uint64_t first_offset;   /* offset of the first piece */
    uint64_t next_offset;    /* where the next piece must start */
    unsigned pieces;
    unsigned starts;
    int start_status;
    uint64_t start_offset, start_total;
    moat_err fail_body;      /* return this from on_body when set */
    moat_err fail_start;
} sink;

static moat_err on_body(void *user, uint64_t offset, const uint8_t *d, size_t n)
{
    sink *s = user;
    if (s->fail_body != MOAT_OK)
        return s->fail_body;
    if (s->pieces == 0)
        s->first_offset = s->next_offset = offset;
    assert_int_equal(offset, s->next_offset); /* contiguous, never repeated */
    assert_true(s->len + n <= sizeof s->data);
    memcpy(s->data + s->len, d, n);
    s->len += n;
    s->next_offset += n;
    s->pieces++;
    return MOAT_OK;
}

static moat_err on_start(void *user, const moat_http_get *g)
{
    sink *s = user;
    s->starts++;
    s->start_status = moat_http_status(g);
    s->start_offset = moat_http_body_offset(g);
    s->start_total = moat_http_total(g);
    return s->fail_start;
}

static moat_http_request req(sink *s, uint64_t from)
{
    moat_http_request rq;
    memset(&rq, 0, sizeof rq);
    rq.host = "updates.example";
    rq.port = 8443;
    rq.path = "/fw/firmware.bin?curimage=1.2.0";
    rq.range_from = from;
    rq.on_body = on_body;
    rq.on_start = on_start;
    rq.user = s;
    return rq;
}

static void start(moat_http_get *g, sink *s, const moat_http_request *rq)
{
    uint8_t buf[512];
    size_t len;
    memset(s, 0, sizeof *s);
    assert_int_equal(moat_http_get_init(g, rq, buf, sizeof buf, &len), MOAT_OK);
}

/* Feed resp in pieces of `step` bytes (0: whole); the result of the last call. */
static moat_err feed(moat_http_get *g, const char *resp, size_t len, size_t step,
                     size_t *used_total)
{
    size_t at = 0;
    moat_err e = MOAT_ERR_WOULD_BLOCK;
    if (step == 0)
        step = len;
    *used_total = 0;
    while (at < len) {
        size_t n = len - at < step ? len - at : step, used = 0;
        e = moat_http_input(g, (const uint8_t *)resp + at, n, &used);
        *used_total += used;
        if (e != MOAT_ERR_WOULD_BLOCK)
            return e;
        assert_int_equal(used, n);
        at += n;
    }
    return e;
}

/* Every chunking of resp: whole, byte by byte, and split in two at each
 * position. check() runs after each. */
typedef void (*check_fn)(moat_http_get *g, sink *s, moat_err e, size_t used);

static void each_split(const moat_http_request *rq0, const char *resp, size_t len,
                       check_fn check, bool eof)
{
    size_t split;
    for (split = 0; split <= len + 1; split++) {
        moat_http_get g;
        sink s;
        moat_http_request rq = *rq0;
        size_t used = 0, u2 = 0;
        moat_err e;
        rq.user = &s;
        start(&g, &s, &rq);
        if (split == len + 1) {
            e = feed(&g, resp, len, 1, &used);
        } else {
            e = feed(&g, resp, split, 0, &used);
            if (e == MOAT_ERR_WOULD_BLOCK) {
                e = feed(&g, resp + split, len - split, 0, &u2);
                used += u2;
            }
        }
        if (eof && e == MOAT_ERR_WOULD_BLOCK)
            e = moat_http_eof(&g);
        check(&g, &s, e, used);
    }
}

#define S(x) x, sizeof(x) - 1

/* ---- requests --------------------------------------------------------- */

static void request_bytes(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    uint8_t buf[512];
    size_t len;
    moat_http_request rq = req(&s, 0);
    static const char want[] =
        "GET /fw/firmware.bin?curimage=1.2.0 HTTP/1.1\r\n"
        "Host: updates.example:8443\r\n"
        "Connection: close\r\nUser-Agent: moat\r\n\r\n";
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_OK);
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(buf, want, len);
}

static void request_with_range_and_headers(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    uint8_t buf[512];
    size_t len;
    const char *const hdrs[] = {"X-Moat-Device: a0b1c2d3e4f5", "Accept: */*", NULL};
    moat_http_request rq = req(&s, 123456789012ull);
    static const char want[] =
        "GET /fw/firmware.bin?curimage=1.2.0 HTTP/1.1\r\n"
        "Host: 10.0.0.1\r\n"
        "Range: bytes=123456789012-\r\n"
        "X-Moat-Device: a0b1c2d3e4f5\r\nAccept: */*\r\n"
        "Connection: close\r\nUser-Agent: moat\r\n\r\n";
    rq.host = "10.0.0.1";
    rq.port = 443;
    rq.headers = hdrs;
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_OK);
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(buf, want, len);
}

static void request_range_len_and_ipv6(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    uint8_t buf[512];
    size_t len;
    moat_http_request rq = req(&s, 0);
    static const char want[] =
        "GET /c.json HTTP/1.1\r\n"
        "Host: [::1]:8443\r\n"
        "Range: bytes=0-191\r\n"
        "Connection: close\r\nUser-Agent: moat\r\n\r\n";
    rq.host = "::1";
    rq.path = "/c.json";
    rq.range_len = 192;
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_OK);
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(buf, want, len);
}

static void request_refuses_bad_input(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    uint8_t buf[512];
    size_t len;
    moat_http_request rq;
    const char *const crlf[] = {"X-A: b\r\nEvil: 1", NULL};
    const char *const noname[] = {": v", NULL};
    const char *const nocolon[] = {"Novalue", NULL};

    rq = req(&s, 0);
    rq.path = "firmware.bin";
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_ERR_ARG);
    rq = req(&s, 0);
    rq.path = "/a b";
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_ERR_ARG);
    rq = req(&s, 0);
    rq.path = "/a\r\nX: y";
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_ERR_ARG);
    rq = req(&s, 0);
    rq.host = "evil\r\nX: 1";
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_ERR_ARG);
    rq = req(&s, 0);
    rq.host = "";
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_ERR_ARG);
    rq = req(&s, 0);
    rq.on_body = NULL;
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_ERR_ARG);
    rq = req(&s, 0);
    rq.headers = crlf;
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_ERR_ARG);
    assert_non_null(strstr(moat_http_last_error(&g), "not a clean"));
    rq.headers = noname;
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_ERR_ARG);
    rq.headers = nocolon;
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_ERR_ARG);
    rq = req(&s, UINT64_MAX - 5);
    rq.range_len = 10;
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_ERR_ARG);
    /* an engine that failed init refuses input */
    assert_int_equal(moat_http_input(&g, (const uint8_t *)"HTTP/1.1 200 OK\r\n", 17, NULL),
                     MOAT_ERR_ARG);
}

static void request_too_big_for_buffer(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    uint8_t buf[40];
    size_t len;
    moat_http_request rq = req(&s, 0);
    assert_int_equal(moat_http_get_init(&g, &rq, buf, sizeof buf, &len), MOAT_ERR_NO_SPACE);
    assert_int_equal(len, 113); /* what it needs */
    assert_int_equal(moat_http_get_init(&g, &rq, NULL, 0, &len), MOAT_ERR_NO_SPACE);
    assert_int_equal(len, 113);
}

/* ---- 200 ---------------------------------------------------------------- */

static const char resp_200[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Length: 10\r\n"
    "\r\n"
    "0123456789";

static void check_200(moat_http_get *g, sink *s, moat_err e, size_t used)
{
    assert_int_equal(e, MOAT_OK);
    assert_int_equal(used, sizeof resp_200 - 1);
    assert_true(moat_http_done(g));
    assert_int_equal(moat_http_status(g), 200);
    assert_int_equal(s->len, 10);
    assert_memory_equal(s->data, "0123456789", 10);
    assert_int_equal(s->first_offset, 0);
    assert_int_equal(s->starts, 1);
    assert_int_equal(s->start_status, 200);
    assert_int_equal(s->start_total, 10);
    assert_int_equal(moat_http_total(g), 10);
    assert_int_equal(moat_http_received(g), 10);
    assert_int_equal(moat_http_next_offset(g), 10);
}

static void ok_200_content_length(void **state)
{
    (void)state;
    sink s;
    moat_http_request rq = req(&s, 0);
    each_split(&rq, S(resp_200), check_200, false);
}

static void ok_200_ignores_bytes_after_response(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcGARBAGE";
    size_t used;
    start(&g, &s, &rq);
    assert_int_equal(moat_http_input(&g, (const uint8_t *)resp, sizeof resp - 1, &used),
                     MOAT_OK);
    assert_int_equal(used, sizeof resp - 1 - 7);
    assert_int_equal(s.len, 3);
    /* done stays done */
    assert_int_equal(moat_http_input(&g, (const uint8_t *)"x", 1, &used), MOAT_OK);
    assert_int_equal(used, 0);
    assert_int_equal(moat_http_eof(&g), MOAT_OK);
}

static const char resp_chunked[] =
    "HTTP/1.1 200 OK\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "4\r\nabcd\r\n"
    "A;ext=1\r\n0123456789\r\n"
    "0\r\nX-Trailer: t\r\n\r\n";

static void check_chunked(moat_http_get *g, sink *s, moat_err e, size_t used)
{
    assert_int_equal(e, MOAT_OK);
    assert_int_equal(used, sizeof resp_chunked - 1);
    assert_int_equal(moat_http_status(g), 200);
    assert_int_equal(s->len, 14);
    assert_memory_equal(s->data, "abcd0123456789", 14);
    assert_int_equal(s->start_total, MOAT_HTTP_UNKNOWN);
}

static void ok_200_chunked(void **state)
{
    (void)state;
    sink s;
    moat_http_request rq = req(&s, 0);
    each_split(&rq, S(resp_chunked), check_chunked, false);
}

static void chunked_cut_is_truncation(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    size_t used;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, resp_chunked, 55, 0, &used), MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(moat_http_eof(&g), MOAT_ERR_CLOSED);
    assert_non_null(strstr(moat_http_last_error(&g), "inside the chunked body"));
    assert_int_equal(moat_http_next_offset(&g), s.len);
}

static const char resp_until_eof[] = "HTTP/1.0 200 OK\r\n\r\nall of it";

static void check_until_eof(moat_http_get *g, sink *s, moat_err e, size_t used)
{
    (void)used;
    assert_int_equal(e, MOAT_OK);
    assert_true(moat_http_done(g));
    assert_int_equal(s->len, 9);
    assert_memory_equal(s->data, "all of it", 9);
}

static void ok_200_body_until_close(void **state)
{
    (void)state;
    sink s;
    moat_http_request rq = req(&s, 0);
    each_split(&rq, S(resp_until_eof), check_until_eof, true);
}

static void interim_100_is_skipped(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    static const char resp[] = "HTTP/1.1 100 Continue\r\n\r\n"
                               "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    size_t used;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(resp), 1, &used), MOAT_OK);
    assert_int_equal(moat_http_status(&g), 200);
    assert_int_equal(s.starts, 1);
    assert_memory_equal(s.data, "hi", 2);
}

/* ---- truncation -------------------------------------------------------- */

static void truncated_body(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    size_t used;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, resp_200, sizeof resp_200 - 1 - 4, 0, &used),
                     MOAT_ERR_WOULD_BLOCK);
    assert_false(moat_http_done(&g));
    assert_int_equal(moat_http_eof(&g), MOAT_ERR_CLOSED);
    assert_string_equal(moat_http_last_error(&g),
                        "update server closed the connection after 6 of 10 body "
                        "bytes of /fw/firmware.bin");
    assert_int_equal(moat_http_next_offset(&g), 6);
    /* sticky */
    assert_int_equal(moat_http_input(&g, (const uint8_t *)"6789", 4, &used), MOAT_ERR_CLOSED);
    assert_int_equal(moat_http_eof(&g), MOAT_ERR_CLOSED);
}

static void truncated_headers(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    size_t used;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, resp_200, 20, 0, &used), MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(moat_http_eof(&g), MOAT_ERR_CLOSED);
    assert_non_null(strstr(moat_http_last_error(&g), "before the response headers ended"));
    assert_int_equal(moat_http_next_offset(&g), 0);
    assert_int_equal(s.starts, 0);
}

static void eof_before_anything(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 77);
    start(&g, &s, &rq);
    assert_int_equal(moat_http_eof(&g), MOAT_ERR_CLOSED);
    assert_int_equal(moat_http_next_offset(&g), 77);
}

/* ---- 206 ---------------------------------------------------------------- */

static const char resp_206[] =
    "HTTP/1.1 206 Partial Content\r\n"
    "Content-Range: bytes 6-9/10\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "6789";

static void check_206(moat_http_get *g, sink *s, moat_err e, size_t used)
{
    assert_int_equal(e, MOAT_OK);
    assert_int_equal(used, sizeof resp_206 - 1);
    assert_int_equal(moat_http_status(g), 206);
    assert_int_equal(s->first_offset, 6);
    assert_int_equal(s->len, 4);
    assert_memory_equal(s->data, "6789", 4);
    assert_int_equal(s->start_offset, 6);
    assert_int_equal(s->start_total, 10);
    assert_int_equal(moat_http_body_offset(g), 6);
    assert_int_equal(moat_http_next_offset(g), 10);
}

static void ok_206_matching_range(void **state)
{
    (void)state;
    sink s;
    moat_http_request rq = req(&s, 6);
    each_split(&rq, S(resp_206), check_206, false);
}

static void ok_206_chunked_unknown_total(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 6);
    static const char resp[] = "HTTP/1.1 206 Partial Content\r\n"
                               "content-range:   bytes 6-9/*  \r\n"
                               "Transfer-Encoding: chunked\r\n\r\n"
                               "2\r\n67\r\n2\r\n89\r\n0\r\n\r\n";
    size_t used;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(resp), 0, &used), MOAT_OK);
    assert_int_equal(s.first_offset, 6);
    assert_memory_equal(s.data, "6789", 4);
    assert_int_equal(moat_http_total(&g), MOAT_HTTP_UNKNOWN);
}

static void range_len_206(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    static const char ok[] = "HTTP/1.1 206 Partial Content\r\n"
                             "Content-Range: bytes 0-3/10\r\nContent-Length: 4\r\n\r\n0123";
    static const char over[] = "HTTP/1.1 206 Partial Content\r\n"
                               "Content-Range: bytes 0-4/10\r\nContent-Length: 5\r\n\r\n01234";
    size_t used;
    rq.range_len = 4;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(ok), 0, &used), MOAT_OK);
    assert_int_equal(s.len, 4);
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(over), 0, &used), MOAT_ERR_PROTOCOL);
    assert_string_equal(moat_http_last_error(&g),
                        "update server answered with bytes up to 4 when asked for "
                        "bytes up to 3 of /fw/firmware.bin");
    assert_int_equal(s.len, 0);
}

/* A 206 that must be refused before any body byte reaches the receiver. */
static void refused_206(uint64_t from, const char *resp, const char *words)
{
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, from);
    size_t used;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, resp, strlen(resp), 0, &used), MOAT_ERR_PROTOCOL);
    assert_int_equal(s.len, 0);
    assert_int_equal(s.starts, 0);
    if (words != NULL)
        assert_string_equal(moat_http_last_error(&g), words);
}

static void bad_206_mismatching_range(void **state)
{
    (void)state;
    refused_206(6, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/10\r\n"
                   "Content-Length: 10\r\n\r\n0123456789",
                "update server answered with bytes from 0 when asked for bytes "
                "from 6 of /fw/firmware.bin");
    refused_206(6, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 7-9/10\r\n"
                   "Content-Length: 3\r\n\r\n789",
                NULL);
}

static void bad_206_content_range_forms(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "bytes 6-9/9",          /* last beyond total */
        "bytes 6-5/10",         /* backwards */
        "bytes6-9/10",
        "items 6-9/10",
        "bytes 6-9",
        "bytes 6-9/",
        "bytes -9/10",
        "bytes 6-/10",
        "bytes 6-9/10x",
        "bytes 6-9/1*",
        "bytes 6-99999999999999999999/*",
        "bytes */10",
    };
    size_t i;
    for (i = 0; i < LEN(bad); i++) {
        char resp[256];
        snprintf(resp, sizeof resp,
                 "HTTP/1.1 206 Partial Content\r\nContent-Range: %s\r\n\r\n6789", bad[i]);
        refused_206(6, resp, NULL);
    }
    refused_206(6, "HTTP/1.1 206 Partial Content\r\nContent-Length: 4\r\n\r\n6789",
                "update server answered 206 without Content-Range for /fw/firmware.bin");
    refused_206(6, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 6-9/10\r\n"
                   "Content-Range: bytes 6-9/10\r\nContent-Length: 4\r\n\r\n6789",
                "update server sent two Content-Range headers for /fw/firmware.bin");
    refused_206(6, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 6-9/10\r\n"
                   "Content-Length: 3\r\n\r\n678",
                "update server sent Content-Length 3 for a range of 4 bytes of "
                "/fw/firmware.bin");
    refused_206(6, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 6-9/10"
                   "                                                          "
                   "                   \r\n\r\n6789",
                "update server sent an overlong Content-Range for /fw/firmware.bin");
    /* a 206 to a request without Range */
    refused_206(0, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-3/10\r\n"
                   "Content-Length: 4\r\n\r\n0123",
                "update server answered 206 to a request without Range for "
                "/fw/firmware.bin");
}

static void chunked_206_longer_than_range(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 6);
    static const char resp[] = "HTTP/1.1 206 Partial Content\r\n"
                               "Content-Range: bytes 6-9/10\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n"
                               "6\r\n678999\r\n0\r\n\r\n";
    size_t used;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(resp), 0, &used), MOAT_ERR_PROTOCOL);
    assert_int_equal(s.len, 0);
    assert_non_null(strstr(moat_http_last_error(&g), "more than the 4 bytes"));
}

static void range_ignored_restarts_at_zero(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 6);
    size_t used;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(resp_200), 0, &used), MOAT_OK);
    assert_int_equal(s.start_offset, 0);
    assert_int_equal(s.first_offset, 0);
    assert_int_equal(s.len, 10);
}

static void etag_kept_for_if_range(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    size_t used;
    static const char with[] = "HTTP/1.1 200 OK\r\nETag: \"a1-100\"\r\nContent-Length: 1\r\n\r\nx";
    static const char weak[] = "HTTP/1.1 200 OK\r\netag: W/\"v2\"\r\nContent-Length: 1\r\n\r\nx";
    static const char spaced[] = "HTTP/1.1 200 OK\r\nETag: \"a b\"\r\nContent-Length: 1\r\n\r\nx";
    static const char twice[] = "HTTP/1.1 200 OK\r\nETag: \"a b\"\r\nETag: \"c\"\r\n"
                                "Content-Length: 1\r\n\r\nx";
    static const char etagx[] = "HTTP/1.1 200 OK\r\nETagX: \"no\"\r\nContent-Length: 1\r\n\r\nx";
    char big[256];

    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(with), 1, &used), MOAT_OK);
    assert_string_equal(moat_http_etag(&g), "\"a1-100\"");
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(weak), 0, &used), MOAT_OK);
    assert_string_equal(moat_http_etag(&g), "W/\"v2\"");
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(spaced), 0, &used), MOAT_OK);
    assert_string_equal(moat_http_etag(&g), "");
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(twice), 3, &used), MOAT_OK);
    assert_string_equal(moat_http_etag(&g), "\"c\"");
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(etagx), 0, &used), MOAT_OK);
    assert_string_equal(moat_http_etag(&g), "");
    snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nETag: \"%080d\"\r\nContent-Length: 1\r\n\r\nx", 7);
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, big, strlen(big), 0, &used), MOAT_OK);
    assert_string_equal(moat_http_etag(&g), "");
}

/* ---- 304 and errors ------------------------------------------------------ */

static void not_modified_304(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    static const char resp[] = "HTTP/1.1 304 Not Modified\r\nDate: x\r\n\r\n";
    size_t used;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(resp), 0, &used), MOAT_OK);
    assert_int_equal(used, sizeof resp - 1);
    assert_int_equal(moat_http_status(&g), 304);
    assert_int_equal(s.len, 0);
    assert_int_equal(s.starts, 1);
}

static void status_errors_in_words(void **state)
{
    (void)state;
    static const struct {
        const char *resp;
        int status;
        const char *words;
    } cases[] = {
        {"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", 404,
         "update server answered 404 Not Found for /fw/firmware.bin"},
        {"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", 500,
         "update server answered 500 Internal Server Error for /fw/firmware.bin"},
        {"HTTP/1.1 403 \r\n\r\n", 403, "update server answered 403 for /fw/firmware.bin"},
        {"HTTP/1.1 302 Found\r\nLocation: http://evil/\r\n\r\n", 302,
         "update server answered 302 Found for /fw/firmware.bin"},
        {"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */10\r\n\r\n", 416,
         "update server answered 416 Range Not Satisfiable for /fw/firmware.bin"},
        {"HTTP/1.1 503 Busy\x01\x7f\r\n\r\n", -1, NULL},
    };
    size_t i;
    for (i = 0; i < LEN(cases); i++) {
        moat_http_get g;
        sink s;
        moat_http_request rq = req(&s, 0);
        size_t used;
        moat_err e;
        start(&g, &s, &rq);
        e = feed(&g, cases[i].resp, strlen(cases[i].resp), 0, &used);
        if (cases[i].status < 0) {
            assert_true(e == MOAT_ERR_MALFORMED || e == MOAT_ERR_PROTOCOL);
            continue;
        }
        assert_int_equal(e, MOAT_ERR_PROTOCOL);
        assert_int_equal(moat_http_status(&g), cases[i].status);
        assert_string_equal(moat_http_last_error(&g), cases[i].words);
        assert_int_equal(s.len, 0);
        assert_int_equal(s.starts, 0);
    }
}

static void peer_name_in_words(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    size_t used;
    rq.peer_name = "config server";
    rq.path = "/cfg/config.json";
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S("HTTP/1.1 404 Not Found\r\n\r\n"), 0, &used),
                     MOAT_ERR_PROTOCOL);
    assert_string_equal(moat_http_last_error(&g),
                        "config server answered 404 Not Found for /cfg/config.json");
}

/* ---- limits and garbage ---------------------------------------------------- */

static void oversize_headers(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    char resp[600];
    size_t used, n;
    rq.max_header_bytes = 256;
    /* exactly at the limit is fine */
    n = (size_t)snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: ");
    memset(resp + n, 'a', 256 - n - 4);
    memcpy(resp + 256 - 4, "\r\n\r\nok", 6);
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, resp, 258, 0, &used), MOAT_OK);
    assert_int_equal(s.len, 2);
    /* one more header byte is not, however it is split */
    n = (size_t)snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: ");
    memset(resp + n, 'a', 257 - n - 4);
    memcpy(resp + 257 - 4, "\r\n\r\nok", 6);
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, resp, 259, 0, &used), MOAT_ERR_TOO_LARGE);
    assert_int_equal(used, 256);
    assert_string_equal(moat_http_last_error(&g),
                        "update server sent response headers over 256 bytes for "
                        "/fw/firmware.bin");
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, resp, 259, 7, &used), MOAT_ERR_TOO_LARGE);
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, resp, 256, 0, &used), MOAT_ERR_TOO_LARGE);
    assert_int_equal(s.len, 0);
}

static void default_header_limit(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    static char big[8192];
    size_t used, n;
    n = (size_t)snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nX: ");
    memset(big + n, 'b', sizeof big - n);
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, big, sizeof big, 1000, &used), MOAT_ERR_TOO_LARGE);
    assert_int_equal(used, MOAT_HTTP_HEADER_MAX_DEFAULT);
}

static void max_total(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    size_t used;
    static const char chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "6\r\n012345\r\n0\r\n\r\n";
    rq.max_total = 9;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(resp_200), 0, &used), MOAT_ERR_TOO_LARGE);
    assert_string_equal(moat_http_last_error(&g),
                        "update server offers 10 bytes, over the limit of 9 bytes, "
                        "for /fw/firmware.bin");
    assert_int_equal(s.len, 0);
    rq.max_total = 10;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(resp_200), 0, &used), MOAT_OK);
    /* without a length the limit holds byte by byte */
    rq.max_total = 5;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(chunked), 0, &used), MOAT_ERR_TOO_LARGE);
    assert_int_equal(s.len, 0);
    rq.max_total = 8;
    rq.range_from = 6;
    start(&g, &s, &rq);
    assert_int_equal(feed(&g, S(resp_206), 0, &used), MOAT_ERR_TOO_LARGE);
}

static void garbage(void **state)
{
    (void)state;
    static const char *const junk[] = {
        "SSH-2.0-OpenSSH_9.2\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
        "HTTP/2 200\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 1\n\n\x00",
    };
    size_t i;
    for (i = 0; i < LEN(junk); i++) {
        moat_http_get g;
        sink s;
        moat_http_request rq = req(&s, 0);
        size_t used, len = strlen(junk[i]);
        moat_err e;
        if (i == LEN(junk) - 1)
            len += 1; /* the NUL body byte: this one is valid (bare LF) */
        start(&g, &s, &rq);
        e = feed(&g, junk[i], len, 0, &used);
        if (i == LEN(junk) - 1) {
            assert_int_equal(e, MOAT_OK);
            continue;
        }
        if (e == MOAT_ERR_WOULD_BLOCK)
            e = moat_http_eof(&g);
        assert_true(e == MOAT_ERR_MALFORMED || e == MOAT_ERR_PROTOCOL ||
                    e == MOAT_ERR_CLOSED);
        assert_true(moat_http_last_error(&g)[0] != '\0');
        assert_false(moat_http_done(&g));
        assert_int_equal(s.len, 0);
    }
}

static void receiver_errors_stop_the_download(void **state)
{
    (void)state;
    moat_http_get g;
    sink s;
    moat_http_request rq = req(&s, 0);
    size_t used;
    start(&g, &s, &rq);
    s.fail_body = MOAT_ERR_IO;
    assert_int_equal(feed(&g, S(resp_200), 0, &used), MOAT_ERR_IO);
    assert_int_equal(moat_http_eof(&g), MOAT_ERR_IO);
    assert_non_null(strstr(moat_http_last_error(&g), "stopped by its receiver"));
    start(&g, &s, &rq);
    s.fail_start = MOAT_ERR_TOO_LARGE;
    assert_int_equal(feed(&g, S(resp_200), 0, &used), MOAT_ERR_TOO_LARGE);
    assert_int_equal(s.len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_bytes),
        cmocka_unit_test(request_with_range_and_headers),
        cmocka_unit_test(request_range_len_and_ipv6),
        cmocka_unit_test(request_refuses_bad_input),
        cmocka_unit_test(request_too_big_for_buffer),
        cmocka_unit_test(ok_200_content_length),
        cmocka_unit_test(ok_200_ignores_bytes_after_response),
        cmocka_unit_test(ok_200_chunked),
        cmocka_unit_test(chunked_cut_is_truncation),
        cmocka_unit_test(ok_200_body_until_close),
        cmocka_unit_test(interim_100_is_skipped),
        cmocka_unit_test(truncated_body),
        cmocka_unit_test(truncated_headers),
        cmocka_unit_test(eof_before_anything),
        cmocka_unit_test(ok_206_matching_range),
        cmocka_unit_test(ok_206_chunked_unknown_total),
        cmocka_unit_test(range_len_206),
        cmocka_unit_test(bad_206_mismatching_range),
        cmocka_unit_test(bad_206_content_range_forms),
        cmocka_unit_test(chunked_206_longer_than_range),
        cmocka_unit_test(range_ignored_restarts_at_zero),
        cmocka_unit_test(etag_kept_for_if_range),
        cmocka_unit_test(not_modified_304),
        cmocka_unit_test(status_errors_in_words),
        cmocka_unit_test(peer_name_in_words),
        cmocka_unit_test(oversize_headers),
        cmocka_unit_test(default_header_limit),
        cmocka_unit_test(max_total),
        cmocka_unit_test(garbage),
        cmocka_unit_test(receiver_errors_stop_the_download),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
