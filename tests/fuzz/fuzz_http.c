/*
 * fuzz_http.c - libFuzzer harness for the HTTP GET response parser
 * (moat/http.h): moat_http_input() and moat_http_eof() on hostile responses.
 *
 * Input: byte 0 configures the request (bits 0-1: range_from 0, 6, 100 or
 * 2^40; bit 2: range_len 4; bit 3: max_total 64; bits 4-5: header limit
 * 4096, 64, 200 or 1; bit 6: end the stream with eof), byte 1 seeds the
 * chunk sizes, the rest is the server's response.
 *
 * The response is parsed twice: whole, and in chunks of 1 to 17 bytes.
 * Oracles, besides ASan/UBSan on exactly sized copies of every chunk:
 *  - both parses agree: the same result, status, body bytes and offsets
 *    (the network's cuts never change the meaning); when both refuse the
 *    response, the reasons may differ (see the comment at the check);
 *  - results are the documented ones; after MOAT_OK or an error every call
 *    answers the same and delivers nothing more;
 *  - body pieces are contiguous from the offset on_start saw, never more
 *    than a stated length, never past max_total, never before on_start;
 *  - MOAT_OK means status 200, 206 or 304; a 206 starts at range_from and
 *    ends within the range asked for; a 200 starts at 0;
 *  - no more than the header limit is consumed before the headers end;
 *  - every error has words.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moat/http.h"

#include "fuzz_check.h"

#define BODY_MAX 65536u

typedef struct run {
    moat_http_request rq;
    uint64_t first, next;
    size_t body_len;
    unsigned starts;
    bool finished;        /* a final result was seen */
    uint8_t body[BODY_MAX];
} run;

static moat_err on_start(void *user, const moat_http_get *g)
{
    run *r = user;
    int st = moat_http_status(g);
    CHECK(r->starts == 0);
    CHECK(st == 200 || st == 206 || st == 304);
    r->starts++;
    r->first = r->next = moat_http_body_offset(g);
    if (st == 200)
        CHECK(r->first == 0);
    if (st == 206)
        CHECK(r->first == r->rq.range_from);
    if (moat_http_total(g) != MOAT_HTTP_UNKNOWN && r->rq.max_total != 0)
        CHECK(moat_http_total(g) <= r->rq.max_total);
    return MOAT_OK;
}

static moat_err on_body(void *user, uint64_t offset, const uint8_t *d, size_t n)
{
    run *r = user;
    CHECK(r->starts == 1);
    CHECK(!r->finished);
    CHECK(n > 0);
    CHECK(offset == r->next);
    if (r->rq.max_total != 0)
        CHECK(offset + n <= r->rq.max_total);
    if (r->rq.range_len != 0 && r->first == r->rq.range_from && r->rq.range_from > 0)
        CHECK(offset + n <= r->rq.range_from + r->rq.range_len);
    r->next += n;
    if (r->body_len + n <= BODY_MAX)
        memcpy(r->body + r->body_len, d, n);
    r->body_len += n;
    return MOAT_OK;
}

static bool documented(moat_err e)
{
    return e == MOAT_OK || e == MOAT_ERR_WOULD_BLOCK || e == MOAT_ERR_MALFORMED ||
           e == MOAT_ERR_TOO_LARGE || e == MOAT_ERR_PROTOCOL || e == MOAT_ERR_CLOSED;
}

/* One parse, in chunks from `seed` (0: whole). Returns the final result. */
static moat_err parse(run *r, moat_http_get *g, const uint8_t *resp, size_t len,
                      unsigned seed, bool eof)
{
    uint8_t req[512];
    size_t rlen, at = 0;
    moat_err e = MOAT_ERR_WOULD_BLOCK;

    r->rq.on_body = on_body;
    r->rq.on_start = on_start;
    r->rq.user = r;
    CHECK(moat_http_get_init(g, &r->rq, req, sizeof req, &rlen) == MOAT_OK);
    while (at < len) {
        size_t n = seed == 0 ? len - at : (size_t)(seed % 17u) + 1u, used = 0;
        uint8_t *copy;
        if (n > len - at)
            n = len - at;
        seed = seed * 1103515245u + 12345u;
        if (seed == 0)
            seed = 1;
        copy = malloc(n);
        CHECK(copy != NULL);
        memcpy(copy, resp + at, n);
        e = moat_http_input(g, copy, n, &used);
        free(copy);
        CHECK(documented(e));
        CHECK(used <= n);
        if (e == MOAT_ERR_WOULD_BLOCK) {
            CHECK(used == n);
            at += n;
            if (moat_http_status(g) == 0)
                CHECK(at <= g->header_max);
            continue;
        }
        break;
    }
    if (e == MOAT_ERR_WOULD_BLOCK && eof) {
        e = moat_http_eof(g);
        CHECK(documented(e) && e != MOAT_ERR_WOULD_BLOCK);
    }
    if (e != MOAT_ERR_WOULD_BLOCK) {
        size_t used = 9;
        uint64_t got = r->body_len;
        r->finished = true;
        /* final: the same answer again, nothing more delivered */
        CHECK(moat_http_input(g, (const uint8_t *)"X", 1, &used) == e);
        CHECK(used == 0);
        CHECK(moat_http_eof(g) == e);
        CHECK(r->body_len == got);
    }
    if (e == MOAT_OK) {
        int st = moat_http_status(g);
        CHECK(moat_http_done(g));
        CHECK(st == 200 || st == 206 || st == 304);
        CHECK(r->starts == 1);
        CHECK(moat_http_received(g) == r->body_len);
        CHECK(moat_http_next_offset(g) == r->first + r->body_len);
        if (st == 304)
            CHECK(r->body_len == 0);
    } else if (e != MOAT_ERR_WOULD_BLOCK) {
        CHECK(!moat_http_done(g));
        CHECK(moat_http_last_error(g)[0] != '\0');
    }
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static run a, b;
    static moat_http_get ga, gb;
    static const uint64_t froms[4] = {0, 6, 100, 1ull << 40};
    static const uint32_t limits[4] = {4096, 64, 200, 1};
    moat_http_request rq;
    moat_err ea, eb;
    unsigned seed;
    bool eof;

    if (size < 2)
        return 0;
    memset(&rq, 0, sizeof rq);
    rq.host = "updates.example";
    rq.port = 8443;
    rq.path = "/fw/firmware.bin?curimage=1.2.0";
    rq.range_from = froms[data[0] & 3u];
    rq.range_len = (data[0] & 4u) ? 4u : 0u;
    rq.max_total = (data[0] & 8u) ? 64u : 0u;
    rq.max_header_bytes = limits[(data[0] >> 4) & 3u];
    eof = (data[0] & 0x40u) != 0;
    seed = data[1] + 1u;

    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.rq = rq;
    b.rq = rq;
    ea = parse(&a, &ga, data + 2, size - 2, 0, eof);
    eb = parse(&b, &gb, data + 2, size - 2, seed, eof);

    /* http-parser reports a header's bytes when the header or the buffer
     * ends, so of two faults in one response either may be seen first: two
     * refusals may differ in kind. Anything else must match exactly. */
    if (ea != MOAT_OK && ea != MOAT_ERR_WOULD_BLOCK && eb != MOAT_OK &&
        eb != MOAT_ERR_WOULD_BLOCK)
        return 0;
    CHECK(ea == eb);
    CHECK(moat_http_status(&ga) == moat_http_status(&gb));
    CHECK(a.starts == b.starts);
    CHECK(a.first == b.first);
    CHECK(a.body_len == b.body_len);
    CHECK(memcmp(a.body, b.body, a.body_len < BODY_MAX ? a.body_len : BODY_MAX) == 0);
    return 0;
}
