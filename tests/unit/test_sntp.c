/*
 * test_sntp.c - the sans-I/O SNTP client (moat/sntp.h), byte for byte.
 *
 * Requests are checked byte for byte. Replies are built here field by field
 * from RFC 5905 figure 8, not with the code under test; timestamps come from
 * Unix milliseconds through a reference conversion (ntp_ts) written from the
 * RFC. The clock is a fake now_ms; the random source is a counter, so every
 * nonce is known.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/sntp.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Instants used below, in Unix seconds (checked with a calendar). */
#define UNIX_2024 1704067200LL       /* 2024-01-01T00:00:00Z */
#define UNIX_2025_06 1748736000LL    /* 2025-06-01T00:00:00Z */
#define UNIX_2026 1767225600LL       /* 2026-01-01T00:00:00Z */
#define UNIX_2026_11 1795168800LL    /* 2026-11-20T10:00:00Z */
#define UNIX_2035_12 2082672000LL    /* 2035-12-31T00:00:00Z */
#define UNIX_ERA1 2085978496LL       /* 2036-02-07T06:28:16Z: NTP seconds wrap */
#define UNIX_2040 2208988800LL       /* 2040-01-01T00:00:00Z */
#define NTP_DELTA 2208988800LL       /* 1900-01-01 to 1970-01-01 */

/* ---- reference NTP encoding ------------------------------------------ */

/* Unix ms -> NTP 32.32 timestamp (seconds modulo 2^32: the era is lost, as
 * on the wire). The fraction is rounded up, so that truncating it back to
 * milliseconds gives exactly ms again. */
static uint64_t ntp_ts(int64_t unix_ms)
{
    int64_t s = unix_ms / 1000, r = unix_ms % 1000;
    uint32_t sec = (uint32_t)((uint64_t)(s + NTP_DELTA) & 0xFFFFFFFFu);
    uint32_t frac = (uint32_t)((((uint64_t)r << 32) + 999u) / 1000u);
    return ((uint64_t)sec << 32) | frac;
}

typedef struct reply {
    uint8_t li, vn, mode, stratum;
    uint8_t poll, precision;
    uint32_t root_delay, root_disp; /* NTP short format, 16.16 */
    uint8_t refid[4];
    uint64_t ref, orig, recv, xmit;
} reply;

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static void encode(const reply *r, uint8_t out[48])
{
    memset(out, 0, 48);
    out[0] = (uint8_t)((r->li << 6) | (r->vn << 3) | r->mode);
    out[1] = r->stratum;
    out[2] = r->poll;
    out[3] = r->precision;
    put32(out + 4, r->root_delay);
    put32(out + 8, r->root_disp);
    memcpy(out + 12, r->refid, 4);
    put64(out + 16, r->ref);
    put64(out + 24, r->orig);
    put64(out + 32, r->recv);
    put64(out + 40, r->xmit);
}

/* ---- the bench ---------------------------------------------------------- */

typedef struct T {
    moat_sntp s;
    moat_sntp_config cfg;
    uint32_t rnd;       /* next value of the random source */
    uint32_t rnd_step;
    unsigned rnd_calls;
    uint32_t now;
    uint8_t req[48];    /* the last request */
    uint64_t nonce;     /* its transmit timestamp */
} T;

static uint32_t t_random(void *user)
{
    T *t = (T *)user;
    uint32_t v = t->rnd;
    t->rnd += t->rnd_step;
    t->rnd_calls++;
    return v;
}

static T *t_new(void)
{
    T *t = (T *)calloc(1, sizeof(*t));
    assert_non_null(t);
    t->cfg.random = t_random;
    t->cfg.user = t;
    t->rnd = 0xA1B2C3D4u;
    t->rnd_step = 0x01010101u;
    t->now = 1000;
    return t;
}

static void t_init(T *t)
{
    assert_int_equal(moat_sntp_init(&t->s, &t->cfg), MOAT_OK);
    assert_int_equal(moat_sntp_get_state(&t->s), MOAT_SNTP_IDLE);
}

static T *t_started(void)
{
    T *t = t_new();
    t_init(t);
    assert_int_equal(moat_sntp_start(&t->s, t->now), MOAT_OK);
    return t;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Take the request that is due now; check its fixed bytes. */
static void t_send(T *t)
{
    uint8_t buf[64];
    size_t len = 99;
    memset(buf, 0xEE, sizeof(buf));
    assert_int_equal(moat_sntp_output(&t->s, buf, sizeof(buf), &len, t->now), MOAT_OK);
    assert_int_equal(len, 48);
    assert_int_equal(buf[0], 0x23); /* LI 0, VN 4, mode 3 */
    for (int i = 1; i < 40; i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(buf[48], 0xEE); /* nothing past the packet */
    memcpy(t->req, buf, 48);
    t->nonce = get64(buf + 40);
    assert_int_equal(moat_sntp_get_state(&t->s), MOAT_SNTP_WAIT);
}

/* A good reply to the last request: the server received it at
 * xmit_ms - proc_ms and answered at xmit_ms (Unix ms). */
static reply good(const T *t, int64_t xmit_ms, int64_t proc_ms)
{
    reply r;
    memset(&r, 0, sizeof(r));
    r.li = 0;
    r.vn = 4;
    r.mode = 4;
    r.stratum = 2;
    r.poll = 6;
    r.precision = 0xEC; /* -20 */
    r.root_delay = 0x00000C00u; /* 47 ms */
    r.root_disp = 0x00000800u;
    memcpy(r.refid, "\xC0\x00\x02\x01", 4);
    r.ref = ntp_ts(xmit_ms - 64000);
    r.orig = t->nonce;
    r.recv = ntp_ts(xmit_ms - proc_ms);
    r.xmit = ntp_ts(xmit_ms);
    return r;
}

static moat_err t_input(T *t, const reply *r)
{
    uint8_t b[48];
    encode(r, b);
    return moat_sntp_input(&t->s, b, sizeof(b), t->now);
}

static int64_t t_time(T *t)
{
    int64_t ms = -1;
    assert_int_equal(moat_sntp_time(&t->s, t->now, &ms), MOAT_OK);
    return ms;
}

/* Sync once: request at now, reply rtt ms later, the server's transmit time
 * xmit_ms, no processing time. */
static void t_sync(T *t, int64_t xmit_ms, uint32_t rtt)
{
    t_send(t);
    reply r = good(t, xmit_ms, 0);
    t->now += rtt;
    assert_int_equal(t_input(t, &r), MOAT_OK);
}

/* ---- init and the request ------------------------------------------------ */

static void init_checks_config(void **state)
{
    (void)state;
    T *t = t_new();
    t->cfg.random = NULL;
    assert_int_equal(moat_sntp_init(&t->s, &t->cfg), MOAT_ERR_ARG);
    t->cfg.random = t_random;
    assert_int_equal(moat_sntp_init(NULL, &t->cfg), MOAT_ERR_ARG);
    assert_int_equal(moat_sntp_init(&t->s, NULL), MOAT_ERR_ARG);
    t->cfg.timeout_ms = MOAT_SNTP_MAX_INTERVAL_MS + 1;
    assert_int_equal(moat_sntp_init(&t->s, &t->cfg), MOAT_ERR_ARG);
    t->cfg.timeout_ms = MOAT_SNTP_MAX_INTERVAL_MS;
    assert_int_equal(moat_sntp_init(&t->s, &t->cfg), MOAT_OK);
    t->cfg.retry_ms = MOAT_SNTP_MAX_INTERVAL_MS + 1;
    assert_int_equal(moat_sntp_init(&t->s, &t->cfg), MOAT_ERR_ARG);
    t->cfg.retry_ms = 0;
    t->cfg.poll_ms = 0xFFFFFFFFu;
    assert_int_equal(moat_sntp_init(&t->s, &t->cfg), MOAT_ERR_ARG);
    t->cfg.poll_ms = 0;
    t->cfg.min_unix_s = ((int64_t)1 << 40) + 1;
    assert_int_equal(moat_sntp_init(&t->s, &t->cfg), MOAT_ERR_ARG);
    t->cfg.min_unix_s = -5; /* earlier than 2024: means 2024 */
    assert_int_equal(moat_sntp_init(&t->s, &t->cfg), MOAT_OK);
    free(t);
}

static void idle_engine_does_nothing(void **state)
{
    (void)state;
    T *t = t_new();
    uint8_t buf[48];
    size_t len = 7;
    int64_t ms = 5;
    t_init(t);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), UINT32_MAX);
    assert_int_equal(moat_sntp_output(&t->s, buf, sizeof(buf), &len, t->now), MOAT_OK);
    assert_int_equal(len, 0);
    assert_int_equal(t->rnd_calls, 0);
    assert_false(moat_sntp_valid(&t->s));
    assert_int_equal(moat_sntp_time(&t->s, t->now, &ms), MOAT_ERR_CLOCK);
    assert_int_equal(ms, 0);
    assert_null(moat_sntp_last_sync(&t->s));
    assert_int_equal(moat_sntp_last_error(&t->s), MOAT_OK);
    assert_string_equal(moat_sntp_kiss(&t->s), "");
    /* a datagram with no request out is not ours */
    reply r = good(t, UNIX_2026_11 * 1000, 0);
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_NOT_OURS);
    assert_false(moat_sntp_valid(&t->s));
    free(t);
}

static void request_exact_bytes(void **state)
{
    (void)state;
    T *t = t_started();
    static const uint8_t want[48] = {
        0x23, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* LI VN mode, stratum, poll, prec, delay, disp */
        0, 0, 0, 0,                            /* reference ID */
        0, 0, 0, 0, 0, 0, 0, 0,                /* reference timestamp */
        0, 0, 0, 0, 0, 0, 0, 0,                /* originate */
        0, 0, 0, 0, 0, 0, 0, 0,                /* receive */
        0xA1, 0xB2, 0xC3, 0xD4, 0xA2, 0xB3, 0xC4, 0xD5, /* transmit: the nonce */
    };
    assert_int_equal(moat_sntp_get_state(&t->s), MOAT_SNTP_DUE);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 0);
    t_send(t);
    assert_memory_equal(t->req, want, 48);
    assert_int_equal(t->rnd_calls, 2);
    /* nothing more until the timeout */
    uint8_t buf[48];
    size_t len = 1;
    assert_int_equal(moat_sntp_output(&t->s, buf, sizeof(buf), &len, t->now + 1999), MOAT_OK);
    assert_int_equal(len, 0);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 2000);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now + 1500), 500);
    free(t);
}

static void request_nonce_never_zero(void **state)
{
    (void)state;
    T *t = t_new();
    t->rnd = 0;
    t->rnd_step = 0;
    t_init(t);
    moat_sntp_start(&t->s, t->now);
    t_send(t);
    assert_int_equal(t->nonce, 1);
    /* a reply with originate 0 does not match it */
    reply r = good(t, UNIX_2026_11 * 1000, 0);
    r.orig = 0;
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_NOT_OURS);
    r.orig = 1;
    assert_int_equal(t_input(t, &r), MOAT_OK);
    free(t);
}

static void request_needs_48_bytes(void **state)
{
    (void)state;
    T *t = t_started();
    uint8_t buf[48];
    size_t len = 3;
    assert_int_equal(moat_sntp_output(&t->s, buf, 47, &len, t->now), MOAT_ERR_NO_SPACE);
    assert_int_equal(len, 0);
    assert_int_equal(moat_sntp_output(&t->s, NULL, 48, &len, t->now), MOAT_ERR_NO_SPACE);
    assert_int_equal(moat_sntp_get_state(&t->s), MOAT_SNTP_DUE);
    assert_int_equal(t->rnd_calls, 0);
    assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, t->now), MOAT_OK);
    assert_int_equal(len, 48);
    free(t);
}

/* ---- good replies ---------------------------------------------------------- */

static void good_reply_sets_exact_time(void **state)
{
    (void)state;
    T *t = t_started();
    const int64_t t3 = UNIX_2026_11 * 1000 + 500; /* 10:00:00.500 */
    t_send(t);
    t->now += 40; /* round trip 40 ms, server processing 0 */
    reply r = good(t, t3, 0);
    r.stratum = 1;
    memcpy(r.refid, "GPS\0", 4);
    assert_int_equal(t_input(t, &r), MOAT_OK);
    assert_true(moat_sntp_valid(&t->s));
    /* the reply left the server at t3 and took half the round trip */
    assert_int_equal(t_time(t), t3 + 20);
    const moat_sntp_sync *y = moat_sntp_last_sync(&t->s);
    assert_non_null(y);
    assert_int_equal(y->unix_ms, t3 + 20);
    assert_int_equal(y->delay_ms, 40);
    assert_int_equal(y->offset_ms, 0);
    assert_int_equal(y->at_ms, 1040);
    assert_int_equal(y->stratum, 1);
    assert_int_equal(moat_sntp_last_error(&t->s), MOAT_OK);
    /* the clock runs on now_ms */
    t->now += 123456;
    assert_int_equal(t_time(t), t3 + 20 + 123456);
    /* next sync after the poll interval (default one hour) */
    assert_int_equal(moat_sntp_get_state(&t->s), MOAT_SNTP_DUE);
    assert_int_equal(moat_sntp_next_timeout(&t->s, 1040), 3600000);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 3600000 - 123456);
    /* the same reply again is not an answer to anything */
    t->now += 1;
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_NOT_OURS);
    assert_int_equal(t_time(t), t3 + 20 + 123457);
    free(t);
}

static void good_reply_with_server_processing(void **state)
{
    (void)state;
    T *t = t_started();
    const int64_t t3 = UNIX_2026_11 * 1000;
    t_send(t);
    t->now += 100; /* round trip 100, of which 30 in the server: delay 70 */
    reply r = good(t, t3, 30);
    assert_int_equal(t_input(t, &r), MOAT_OK);
    assert_int_equal(t_time(t), t3 + 35);
    assert_int_equal(moat_sntp_last_sync(&t->s)->delay_ms, 70);
    free(t);
}

static void version3_and_leap_warnings_accepted(void **state)
{
    (void)state;
    for (uint8_t li = 0; li < 3; li++) {
        T *t = t_started();
        t_send(t);
        reply r = good(t, UNIX_2026_11 * 1000, 0);
        r.vn = 3;
        r.li = li;
        r.stratum = 15;
        r.root_delay = 0;
        r.root_disp = 0x000FFFFFu; /* root distance just under 16 s */
        assert_int_equal(t_input(t, &r), MOAT_OK);
        assert_true(moat_sntp_valid(&t->s));
        free(t);
    }
}

static void longer_datagram_accepted(void **state)
{
    (void)state;
    T *t = t_started();
    uint8_t b[68];
    t_send(t);
    reply r = good(t, UNIX_2026_11 * 1000, 0);
    encode(&r, b);
    memset(b + 48, 0x5A, 20); /* an extension field or MAC: not read */
    assert_int_equal(moat_sntp_input(&t->s, b, sizeof(b), t->now), MOAT_OK);
    assert_int_equal(t_time(t), UNIX_2026_11 * 1000);
    free(t);
}

/* The offset and delay of RFC 5905 section 8 with chosen T1..T4, against the
 * clock set by an earlier sync: T1 and T4 are that clock's readings at the
 * request and at the reply. */
static void offset_and_delay_from_four_timestamps(void **state)
{
    (void)state;
    T *t = t_started();
    const int64_t base = UNIX_2026_11 * 1000;
    t_sync(t, base, 0); /* the engine's clock reads base at now = 1000 */
    assert_int_equal(t_time(t), base);

    t->now = 1000 + 3600000; /* the poll interval later */
    const int64_t T1 = base + 3600000;
    t_send(t);
    /* the server is 1000 ms ahead of us; 15 ms each way, 5 ms inside */
    const int64_t T2 = T1 + 1000 + 15, T3 = T2 + 5;
    t->now += 35;
    const int64_t T4 = T1 + 35;
    reply r = good(t, T3, T3 - T2);
    assert_int_equal(t_input(t, &r), MOAT_OK);
    const moat_sntp_sync *y = moat_sntp_last_sync(&t->s);
    /* offset ((T2 - T1) + (T3 - T4)) / 2, delay (T4 - T1) - (T3 - T2) */
    assert_int_equal(y->offset_ms, ((T2 - T1) + (T3 - T4)) / 2);
    assert_int_equal(y->offset_ms, 1000);
    assert_int_equal(y->delay_ms, (T4 - T1) - (T3 - T2));
    assert_int_equal(y->delay_ms, 30);
    assert_int_equal(t_time(t), T4 + 1000);

    /* asymmetric path and a clock behind: 10 ms out, 40 ms back, 2 ms in
     * the server, server 250 ms behind us */
    t->now += 3600000;
    int64_t U1 = t_time(t);
    t_send(t);
    int64_t U2 = U1 - 250 + 10, U3 = U2 + 2, U4 = U1 + 52;
    t->now += 52;
    r = good(t, U3, 2);
    assert_int_equal(t_input(t, &r), MOAT_OK);
    y = moat_sntp_last_sync(&t->s);
    assert_int_equal(y->offset_ms, ((U2 - U1) + (U3 - U4)) / 2); /* -265: the asymmetry */
    assert_int_equal(y->offset_ms, -265);
    assert_int_equal(y->delay_ms, 50);
    assert_int_equal(t_time(t), U4 - 265);
    free(t);
}

/* ---- replies that are not ours or not valid --------------------------- */

static void wrong_originate_is_ignored(void **state)
{
    (void)state;
    T *t = t_started();
    t_send(t);
    reply r = good(t, UNIX_2026_11 * 1000, 0);
    for (int bit = 0; bit < 64; bit += 7) {
        r.orig = t->nonce ^ ((uint64_t)1 << bit);
        assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_NOT_OURS);
    }
    r.orig = 0;
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_NOT_OURS);
    /* a kiss-o'-death that is not ours is ignored too */
    r.stratum = 0;
    memcpy(r.refid, "DENY", 4);
    r.orig = t->nonce + 1;
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_NOT_OURS);
    assert_string_equal(moat_sntp_kiss(&t->s), "");
    /* our own request reflected back */
    assert_int_equal(moat_sntp_input(&t->s, t->req, 48, t->now), MOAT_ERR_SNTP_NOT_OURS);
    /* nothing changed: still waiting, no error recorded, the answer counts */
    assert_int_equal(moat_sntp_get_state(&t->s), MOAT_SNTP_WAIT);
    assert_int_equal(moat_sntp_last_error(&t->s), MOAT_OK);
    assert_false(moat_sntp_valid(&t->s));
    r = good(t, UNIX_2026_11 * 1000, 0);
    assert_int_equal(t_input(t, &r), MOAT_OK);
    free(t);
}

static void wrong_mode_or_version_refused(void **state)
{
    (void)state;
    static const uint8_t modes[] = {0, 1, 2, 3, 5, 6, 7};
    static const uint8_t versions[] = {0, 1, 2, 5, 6, 7};
    T *t = t_started();
    t_send(t);
    for (size_t i = 0; i < LEN(modes); i++) {
        reply r = good(t, UNIX_2026_11 * 1000, 0);
        r.mode = modes[i];
        assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_BAD_REPLY);
    }
    for (size_t i = 0; i < LEN(versions); i++) {
        reply r = good(t, UNIX_2026_11 * 1000, 0);
        r.vn = versions[i];
        assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_BAD_REPLY);
    }
    assert_false(moat_sntp_valid(&t->s));
    assert_int_equal(moat_sntp_get_state(&t->s), MOAT_SNTP_WAIT);
    assert_int_equal(moat_sntp_last_error(&t->s), MOAT_ERR_SNTP_BAD_REPLY);
    reply r = good(t, UNIX_2026_11 * 1000, 0);
    assert_int_equal(t_input(t, &r), MOAT_OK);
    assert_int_equal(moat_sntp_last_error(&t->s), MOAT_OK);
    free(t);
}

static void leap_alarm_is_unsynchronised(void **state)
{
    (void)state;
    T *t = t_started();
    t_send(t);
    reply r = good(t, UNIX_2026_11 * 1000, 0);
    r.li = 3;
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_UNSYNC);
    assert_false(moat_sntp_valid(&t->s));
    assert_int_equal(moat_sntp_get_state(&t->s), MOAT_SNTP_WAIT);
    assert_int_equal(moat_sntp_last_error(&t->s), MOAT_ERR_SNTP_UNSYNC);
    assert_string_equal(moat_strerror(MOAT_ERR_SNTP_UNSYNC),
                        "time server is not synchronised (leap alarm, stratum 16 or too uncertain)");
    free(t);
}

static void unsynchronised_server_refused(void **state)
{
    (void)state;
    T *t = t_started();
    t_send(t);
    reply r = good(t, UNIX_2026_11 * 1000, 0);
    for (unsigned st = 16; st < 256; st += 16) {
        r.stratum = (uint8_t)st;
        assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_UNSYNC);
    }
    r = good(t, UNIX_2026_11 * 1000, 0);
    r.ref = 0; /* never synchronised */
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_UNSYNC);
    r = good(t, UNIX_2026_11 * 1000, 0);
    r.root_delay = 0;
    r.root_disp = 16u << 16; /* root distance 16 s */
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_UNSYNC);
    r.root_disp = 15u << 16;
    r.root_delay = 2u << 16; /* 15 + 2/2 = 16 s */
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_UNSYNC);
    r.root_delay = 0xFFFFFFFFu;
    r.root_disp = 0xFFFFFFFFu;
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_UNSYNC);
    assert_false(moat_sntp_valid(&t->s));
    free(t);
}

static void short_packet_refused(void **state)
{
    (void)state;
    T *t = t_started();
    uint8_t b[48];
    t_send(t);
    reply r = good(t, UNIX_2026_11 * 1000, 0);
    encode(&r, b);
    for (size_t n = 0; n < 48; n++)
        assert_int_equal(moat_sntp_input(&t->s, b, n, t->now), MOAT_ERR_SNTP_BAD_REPLY);
    assert_int_equal(moat_sntp_input(&t->s, NULL, 0, t->now), MOAT_ERR_SNTP_BAD_REPLY);
    /* not ours to judge yet: no error recorded */
    assert_int_equal(moat_sntp_last_error(&t->s), MOAT_OK);
    assert_int_equal(moat_sntp_input(&t->s, b, 48, t->now), MOAT_OK);
    free(t);
}

static void bad_timestamps_refused(void **state)
{
    (void)state;
    T *t = t_started();
    const int64_t t3 = UNIX_2026_11 * 1000;
    t_send(t);
    t->now += 50;
    reply r = good(t, t3, 0);
    r.xmit = 0;
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_BAD_REPLY);
    r = good(t, t3, 0);
    r.recv = 0;
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_BAD_REPLY);
    /* sent before it was received */
    r = good(t, t3, -1);
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_BAD_REPLY);
    /* took more than our round trip (50 ms) plus a second */
    r = good(t, t3, 1051);
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_BAD_REPLY);
    r = good(t, t3, (int64_t)30 * 86400 * 1000);
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_BAD_REPLY);
    assert_false(moat_sntp_valid(&t->s));
    /* transmit 0 is refused even where it would read as a time: received
     * 4 ms before the 2036 wrap, "sent" at NTP 0.0, which is 2036-02-07 */
    r = good(t, t3, 0);
    r.recv = 0xFFFFFFFFFF000000ull;
    r.xmit = 0;
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_BAD_REPLY);
    /* received 49.7 days after it was sent: a difference that, taken as a
     * positive processing time, would come to 0 ms modulo 2^64 */
    r = good(t, t3, 0);
    r.recv = r.xmit + 18446744073709551ull;
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_BAD_REPLY);
    assert_false(moat_sntp_valid(&t->s));
    /* a little more than the round trip: rounding, accepted with delay 0
     * and the midpoint (T2 + T3) / 2 + rtt / 2 */
    r = good(t, t3, 60);
    assert_int_equal(t_input(t, &r), MOAT_OK);
    assert_int_equal(moat_sntp_last_sync(&t->s)->delay_ms, 0);
    assert_int_equal(t_time(t), t3 - 5);
    free(t);
}

/* ---- kiss-o'-death ------------------------------------------------------- */

static reply kod(const T *t, const char code[4])
{
    reply r = good(t, 0, 0);
    r.li = 3;
    r.stratum = 0;
    memcpy(r.refid, code, 4);
    r.ref = r.recv = r.xmit = 0;
    return r;
}

static void kod_rate_backs_off(void **state)
{
    (void)state;
    T *t = t_started();
    t_send(t);
    reply r = kod(t, "RATE");
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_RATE);
    assert_string_equal(moat_sntp_kiss(&t->s), "RATE");
    assert_string_equal(moat_strerror(MOAT_ERR_SNTP_RATE),
                        "time server sent kiss-o'-death RATE (asking too often): backing off");
    assert_int_equal(moat_sntp_last_error(&t->s), MOAT_ERR_SNTP_RATE);
    /* the round is over: no retry at the timeout, the next round after two
     * backoff steps (retry 60 s doubled) */
    assert_int_equal(moat_sntp_get_state(&t->s), MOAT_SNTP_DUE);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 120000);
    uint8_t buf[48];
    size_t len = 0;
    assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, t->now + 2000), MOAT_OK);
    assert_int_equal(len, 0);
    assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, t->now + 119999), MOAT_OK);
    assert_int_equal(len, 0);
    /* a second RATE: four steps, 60 s * 8 */
    t->now += 120000;
    t_send(t);
    r = kod(t, "RATE");
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_RATE);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 480000);
    /* a success resets the backoff: the next failed round waits 60 s */
    t->now += 480000;
    t_sync(t, UNIX_2026_11 * 1000, 10);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 3600000);
    t->now += 3600000;
    t_send(t);
    r = kod(t, "RATE");
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_RATE);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 120000);
    /* and so does start() */
    assert_int_equal(moat_sntp_start(&t->s, t->now), MOAT_OK);
    t_send(t);
    r = kod(t, "RATE");
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_RATE);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 120000);
    free(t);
}

static void kod_deny_and_rstr_stop(void **state)
{
    (void)state;
    static const char *codes[] = {"DENY", "RSTR"};
    for (size_t i = 0; i < LEN(codes); i++) {
        T *t = t_started();
        t_send(t);
        reply r = kod(t, codes[i]);
        assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_DENY);
        assert_string_equal(moat_sntp_kiss(&t->s), codes[i]);
        assert_int_equal(moat_sntp_get_state(&t->s), MOAT_SNTP_DENIED);
        assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), UINT32_MAX);
        assert_int_equal(moat_sntp_last_error(&t->s), MOAT_ERR_SNTP_DENY);
        assert_string_equal(moat_strerror(MOAT_ERR_SNTP_DENY),
                            "time server refused access (kiss-o'-death DENY or RSTR): stopped asking it");
        uint8_t buf[48];
        size_t len = 0;
        assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, t->now + 100000000u), MOAT_OK);
        assert_int_equal(len, 0);
        /* the caller may start again (with another server) */
        assert_int_equal(moat_sntp_start(&t->s, t->now), MOAT_OK);
        t_send(t);
        free(t);
    }
}

static void kod_other_codes(void **state)
{
    (void)state;
    T *t = t_started();
    t_send(t);
    reply r = kod(t, "INIT");
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_KOD);
    assert_string_equal(moat_sntp_kiss(&t->s), "INIT");
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 120000);
    assert_string_equal(moat_strerror(MOAT_ERR_SNTP_KOD),
                        "time server sent a kiss-o'-death: backing off");
    t->now += 120000;
    t_send(t);
    r = kod(t, "AB\0\0");
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_KOD);
    assert_string_equal(moat_sntp_kiss(&t->s), "AB");
    t->now += 480000;
    t_send(t);
    r = kod(t, "\x01" "B\x7F" "C");
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_KOD);
    assert_string_equal(moat_sntp_kiss(&t->s), "?B?C");
    free(t);
}

/* ---- timeouts, retries, backoff ------------------------------------------ */

static void timeout_retries_with_doubling_then_gives_up(void **state)
{
    (void)state;
    T *t = t_new();
    t->now = 0;
    t_init(t);
    moat_sntp_start(&t->s, 0);
    uint8_t buf[48];
    size_t len;
    /* tries at 0, 2000, 6000, 14000 with timeouts 2, 4, 8, 16 s */
    static const uint32_t at[] = {0, 2000, 6000, 14000};
    uint64_t prev = 0;
    for (size_t i = 0; i < LEN(at); i++) {
        if (at[i]) {
            len = 1;
            assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, at[i] - 1), MOAT_OK);
            assert_int_equal(len, 0);
            assert_int_equal(moat_sntp_next_timeout(&t->s, at[i] - 1), 1);
        }
        t->now = at[i];
        t_send(t);
        assert_true(t->nonce != prev); /* a fresh nonce for each try */
        prev = t->nonce;
        assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 2000u << i);
    }
    /* a late answer to the first try is no longer ours */
    {
        T old = *t;
        old.nonce = 0xA1B2C3D4A2B3C4D5ull;
        reply r = good(&old, UNIX_2026_11 * 1000, 0);
        assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_NOT_OURS);
    }
    len = 1;
    assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, 29999), MOAT_OK);
    assert_int_equal(len, 0);
    len = 1;
    assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, 30000), MOAT_ERR_SNTP_TIMEOUT);
    assert_int_equal(len, 0);
    assert_int_equal(moat_sntp_last_error(&t->s), MOAT_ERR_SNTP_TIMEOUT);
    assert_string_equal(moat_strerror(MOAT_ERR_SNTP_TIMEOUT),
                        "time server did not answer (SNTP request timed out on every try)");
    assert_int_equal(moat_sntp_get_state(&t->s), MOAT_SNTP_DUE);
    assert_int_equal(moat_sntp_next_timeout(&t->s, 30000), 60000);
    /* reported once */
    assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, 30001), MOAT_OK);
    assert_int_equal(len, 0);
    /* the next round starts again at 2 s, and its failure waits 120 s */
    t->now = 90000;
    t_send(t);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 2000);
    t->now += 2000;
    t_send(t);
    t->now += 4000;
    t_send(t);
    t->now += 8000;
    t_send(t);
    t->now += 16000;
    assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, t->now), MOAT_ERR_SNTP_TIMEOUT);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 120000);
    assert_false(moat_sntp_valid(&t->s));
    free(t);
}

static void round_error_names_what_the_server_said(void **state)
{
    (void)state;
    T *t = t_new();
    t->cfg.tries = 2;
    t->cfg.timeout_ms = 500;
    t->cfg.retry_ms = 10000;
    t_init(t);
    moat_sntp_start(&t->s, t->now);
    uint8_t buf[48];
    size_t len;
    t_send(t);
    reply r = good(t, UNIX_2026_11 * 1000, 0);
    r.li = 3;
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_UNSYNC);
    t->now += 500;
    t_send(t); /* the retry, timeout 1000 */
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 1000);
    t->now += 1000;
    assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, t->now), MOAT_ERR_SNTP_UNSYNC);
    assert_int_equal(len, 0);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 10000);
    /* the next round, silent: a plain timeout */
    t->now += 10000;
    t_send(t);
    t->now += 500;
    t_send(t);
    t->now += 1000;
    assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, t->now), MOAT_ERR_SNTP_TIMEOUT);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 20000);
    free(t);
}

static void backoff_is_capped(void **state)
{
    (void)state;
    T *t = t_new();
    t->cfg.tries = 1;
    t->cfg.timeout_ms = 1000;
    t->cfg.retry_ms = 1000;
    t->cfg.poll_ms = 5000;
    t_init(t);
    moat_sntp_start(&t->s, t->now);
    static const uint32_t waits[] = {1000, 2000, 4000, 5000, 5000, 5000};
    uint8_t buf[48];
    size_t len;
    for (size_t i = 0; i < LEN(waits); i++) {
        t_send(t);
        t->now += 1000;
        assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, t->now), MOAT_ERR_SNTP_TIMEOUT);
        assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), waits[i]);
        t->now += waits[i];
    }
    for (int i = 0; i < 40; i++) { /* the exponent saturates */
        t_send(t);
        t->now += 1000;
        assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, t->now), MOAT_ERR_SNTP_TIMEOUT);
        assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 5000);
        t->now += 5000;
    }
    free(t);

    /* retry longer than poll: the cap is retry itself */
    t = t_new();
    t->cfg.tries = 1;
    t->cfg.retry_ms = 7000;
    t->cfg.poll_ms = 1000;
    t_init(t);
    moat_sntp_start(&t->s, t->now);
    t_send(t);
    t->now += 2000;
    assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, t->now), MOAT_ERR_SNTP_TIMEOUT);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 7000);
    free(t);
}

static void timeout_doubling_saturates(void **state)
{
    (void)state;
    T *t = t_new();
    t->cfg.tries = 40;
    t->cfg.timeout_ms = 0x30000000u;
    t_init(t);
    moat_sntp_start(&t->s, t->now);
    t_send(t);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 0x30000000u);
    for (int i = 0; i < 38; i++) {
        t->now += moat_sntp_next_timeout(&t->s, t->now);
        t_send(t);
        assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), MOAT_SNTP_MAX_INTERVAL_MS);
    }
    free(t);
}

/* ---- the era and the valid-clock rule ------------------------------------ */

static void era1_timestamps_after_2036(void **state)
{
    (void)state;
    T *t = t_started();
    /* 2040-01-01: NTP seconds 123010304 on the wire */
    assert_int_equal(ntp_ts(UNIX_2040 * 1000) >> 32, 123010304u);
    t_sync(t, UNIX_2040 * 1000 + 250, 0);
    assert_int_equal(t_time(t), UNIX_2040 * 1000 + 250);
    free(t);

    /* the wrap itself: received at 06:28:15.990 in era 0, sent 20 ms later
     * in era 1 (NTP seconds 0) */
    t = t_started();
    t_send(t);
    t->now += 30;
    reply r = good(t, UNIX_ERA1 * 1000 + 10, 20);
    assert_int_equal(r.recv >> 32, 0xFFFFFFFFu);
    assert_int_equal(r.xmit >> 32, 0);
    assert_int_equal(t_input(t, &r), MOAT_OK);
    assert_int_equal(t_time(t), UNIX_ERA1 * 1000 + 10 + 5);
    assert_int_equal(moat_sntp_last_sync(&t->s)->delay_ms, 10);
    free(t);

    /* era 0 still reads as era 0 */
    t = t_started();
    t_sync(t, UNIX_2035_12 * 1000, 0);
    assert_int_equal(t_time(t), UNIX_2035_12 * 1000);
    free(t);

    /* the last second of the window, 2160-02-07T06:28:15Z */
    t = t_started();
    t_send(t);
    reply last = good(t, 0, 0);
    last.recv = last.xmit = ((uint64_t)(MOAT_SNTP_ERA_PIVOT - 1u) << 32);
    last.ref = last.xmit - ((uint64_t)64 << 32);
    assert_int_equal(t_input(t, &last), MOAT_OK);
    assert_int_equal(t_time(t), 5999034495LL * 1000);
    free(t);

    /* the first second of the window is the pivot, 2024-01-01 */
    t = t_started();
    t_send(t);
    reply first = good(t, 0, 0);
    first.recv = first.xmit = (uint64_t)MOAT_SNTP_ERA_PIVOT << 32;
    first.ref = first.xmit - ((uint64_t)64 << 32);
    assert_int_equal(t_input(t, &first), MOAT_OK);
    assert_int_equal(t_time(t), UNIX_2024 * 1000);
    free(t);

    /* so a server that claims 1999 (era 0) is read as 2135 (era 1): the
     * window is 2024..2160, nothing earlier exists for the engine */
    t = t_started();
    t_send(t);
    r = good(t, 915148800LL * 1000, 0); /* 1999-01-01 */
    assert_int_equal(t_input(t, &r), MOAT_OK);
    assert_int_equal(t_time(t), (915148800LL + 4294967296LL) * 1000);
    free(t);
}

static void result_before_2024_is_not_valid(void **state)
{
    (void)state;
    /* sent exactly at 2024-01-01T00:00:00.000 after 10 ms in the server, and
     * answered at once: the midpoint is 5 ms before 2024 */
    T *t = t_started();
    int64_t ms = 1;
    t_send(t);
    reply r = good(t, UNIX_2024 * 1000, 10);
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_EARLY);
    assert_false(moat_sntp_valid(&t->s));
    assert_int_equal(moat_sntp_time(&t->s, t->now, &ms), MOAT_ERR_CLOCK);
    assert_int_equal(ms, 0);
    assert_null(moat_sntp_last_sync(&t->s));
    assert_int_equal(moat_sntp_last_error(&t->s), MOAT_ERR_SNTP_EARLY);
    assert_string_equal(moat_strerror(MOAT_ERR_SNTP_EARLY),
                        "time server gave a time before 2024-01-01 or the configured minimum: refused");
    /* still waiting; 10 ms later the same reply lands exactly on 2024-01-01 */
    t->now += 10;
    assert_int_equal(t_input(t, &r), MOAT_OK);
    assert_true(moat_sntp_valid(&t->s));
    assert_int_equal(t_time(t), UNIX_2024 * 1000);
    free(t);
}

static void minimum_time_from_config(void **state)
{
    (void)state;
    T *t = t_new();
    t->cfg.min_unix_s = UNIX_2026; /* e.g. the firmware's build time */
    t_init(t);
    moat_sntp_start(&t->s, t->now);
    t_send(t);
    reply r = good(t, UNIX_2025_06 * 1000, 0);
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_EARLY);
    assert_false(moat_sntp_valid(&t->s));
    r = good(t, UNIX_2026 * 1000 - 1, 0);
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_EARLY);
    r = good(t, UNIX_2026 * 1000, 0);
    assert_int_equal(t_input(t, &r), MOAT_OK);
    assert_true(moat_sntp_valid(&t->s));

    /* a later early reply does not move a valid clock */
    t->now += 3600000;
    t_send(t);
    r = good(t, UNIX_2025_06 * 1000, 0);
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_EARLY);
    assert_true(moat_sntp_valid(&t->s));
    assert_int_equal(t_time(t), UNIX_2026 * 1000 + 3600000);
    free(t);
}

/* A server answering 1970 reads, through the era pivot, as 2106: only a
 * configured maximum tells it from the truth. */
static void maximum_time_from_config(void **state)
{
    (void)state;
    T *t = t_new();
    t->cfg.max_unix_s = UNIX_2026 + 30LL * 365 * 86400; /* build time + 30 years */
    t_init(t);
    moat_sntp_start(&t->s, t->now);
    t_send(t);
    reply r = good(t, (UNIX_2026 + 80LL * 365 * 86400) * 1000, 0); /* "2106" */
    assert_int_equal(t_input(t, &r), MOAT_ERR_SNTP_LATE);
    assert_false(moat_sntp_valid(&t->s));
    r = good(t, UNIX_2026 * 1000, 0);
    assert_int_equal(t_input(t, &r), MOAT_OK);
    assert_true(moat_sntp_valid(&t->s));
    free(t);
    /* a maximum not after the minimum is refused */
    t = t_new();
    t->cfg.min_unix_s = UNIX_2026;
    t->cfg.max_unix_s = UNIX_2026;
    assert_int_equal(moat_sntp_init(&t->s, &t->cfg), MOAT_ERR_ARG);
    free(t);
}

/* ---- time keeping and now_ms wrap ---------------------------------------- */

static void now_ms_wraps(void **state)
{
    (void)state;
    T *t = t_new();
    t->now = 0xFFFFF000u;
    t_init(t);
    moat_sntp_start(&t->s, t->now);
    t_send(t); /* deadline 0xFFFFF7D0 */
    uint8_t buf[48];
    size_t len;
    t->now = 0xFFFFF7D0u;
    t_send(t); /* second try, deadline 0x00000FA0 + ... across the wrap */
    assert_int_equal(moat_sntp_next_timeout(&t->s, 0xFFFFFFFFu), 4000 - 0x82F);
    assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, 0xFFFFFFFFu), MOAT_OK);
    assert_int_equal(len, 0);
    assert_int_equal(moat_sntp_output(&t->s, buf, 48, &len, 0x00000100u), MOAT_OK);
    assert_int_equal(len, 0);
    /* the reply arrives after the wrap: round trip 0x1000 - 0x7D0 + 0x30 */
    t->now = 0x00000030u;
    reply r = good(t, UNIX_2026_11 * 1000, 0);
    assert_int_equal(t_input(t, &r), MOAT_OK);
    uint32_t rtt = 0x1000u - 0x7D0u + 0x30u;
    assert_int_equal(moat_sntp_last_sync(&t->s)->delay_ms, rtt);
    assert_int_equal(t_time(t), UNIX_2026_11 * 1000 + rtt / 2);
    /* a now_ms a little older than the last one: a little earlier */
    int64_t ms;
    assert_int_equal(moat_sntp_time(&t->s, 0xFFFFFFF0u, &ms), MOAT_OK);
    assert_int_equal(ms, UNIX_2026_11 * 1000 + rtt / 2 - 0x40);
    assert_int_equal(moat_sntp_next_timeout(&t->s, 0x00000030u), 3600000);
    free(t);
}

/* 60 days without an answer, the engine driven at its own deadlines: the
 * clock keeps counting past the 49.7-day wrap of now_ms, and the backoff
 * stays at the poll interval. */
static void clock_runs_for_months(void **state)
{
    (void)state;
    T *t = t_started();
    const int64_t base = UNIX_2026_11 * 1000;
    t_sync(t, base, 0);
    uint64_t elapsed = 0;
    const uint64_t total = (uint64_t)60 * 86400 * 1000;
    uint8_t buf[48];
    size_t len;
    while (elapsed < total) {
        uint32_t step = moat_sntp_next_timeout(&t->s, t->now);
        assert_true(step <= 3600000u);
        t->now += step;
        elapsed += step;
        moat_err e = moat_sntp_output(&t->s, buf, 48, &len, t->now);
        assert_true(e == MOAT_OK || e == MOAT_ERR_SNTP_TIMEOUT);
    }
    assert_int_equal(t_time(t), base + (int64_t)elapsed);
    free(t);
}

static void start_restarts_and_stop_keeps_clock(void **state)
{
    (void)state;
    T *t = t_started();
    t_send(t);
    reply old = good(t, UNIX_2026_11 * 1000, 0);
    /* restart while waiting: a new request due now, with a new nonce */
    assert_int_equal(moat_sntp_start(&t->s, t->now), MOAT_OK);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), 0);
    t_send(t);
    assert_true(t->nonce != old.orig);
    assert_int_equal(t_input(t, &old), MOAT_ERR_SNTP_NOT_OURS);
    reply r = good(t, UNIX_2026_11 * 1000, 0);
    assert_int_equal(t_input(t, &r), MOAT_OK);

    moat_sntp_stop(&t->s);
    assert_int_equal(moat_sntp_get_state(&t->s), MOAT_SNTP_IDLE);
    assert_int_equal(moat_sntp_next_timeout(&t->s, t->now), UINT32_MAX);
    assert_true(moat_sntp_valid(&t->s));
    t->now += 5000;
    assert_int_equal(t_time(t), UNIX_2026_11 * 1000 + 5000);
    free(t);
}

static void error_words(void **state)
{
    (void)state;
    static const moat_err errs[] = {
        MOAT_ERR_SNTP_TIMEOUT, MOAT_ERR_SNTP_BAD_REPLY, MOAT_ERR_SNTP_NOT_OURS,
        MOAT_ERR_SNTP_UNSYNC,  MOAT_ERR_SNTP_EARLY,     MOAT_ERR_SNTP_KOD,
        MOAT_ERR_SNTP_RATE,    MOAT_ERR_SNTP_DENY,
    };
    for (size_t i = 0; i < LEN(errs); i++) {
        assert_true(errs[i] < 0);
        assert_string_not_equal(moat_strerror(errs[i]), "unknown error");
        for (size_t j = 0; j < i; j++) {
            assert_true(errs[i] != errs[j]);
            assert_string_not_equal(moat_strerror(errs[i]), moat_strerror(errs[j]));
        }
    }
    assert_string_equal(moat_strerror(MOAT_ERR_SNTP_NOT_OURS),
                        "datagram is not an answer to our SNTP request "
                        "(originate timestamp differs): ignored");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(init_checks_config),
        cmocka_unit_test(idle_engine_does_nothing),
        cmocka_unit_test(request_exact_bytes),
        cmocka_unit_test(request_nonce_never_zero),
        cmocka_unit_test(request_needs_48_bytes),
        cmocka_unit_test(good_reply_sets_exact_time),
        cmocka_unit_test(good_reply_with_server_processing),
        cmocka_unit_test(version3_and_leap_warnings_accepted),
        cmocka_unit_test(longer_datagram_accepted),
        cmocka_unit_test(offset_and_delay_from_four_timestamps),
        cmocka_unit_test(wrong_originate_is_ignored),
        cmocka_unit_test(wrong_mode_or_version_refused),
        cmocka_unit_test(leap_alarm_is_unsynchronised),
        cmocka_unit_test(unsynchronised_server_refused),
        cmocka_unit_test(short_packet_refused),
        cmocka_unit_test(bad_timestamps_refused),
        cmocka_unit_test(kod_rate_backs_off),
        cmocka_unit_test(kod_deny_and_rstr_stop),
        cmocka_unit_test(kod_other_codes),
        cmocka_unit_test(timeout_retries_with_doubling_then_gives_up),
        cmocka_unit_test(round_error_names_what_the_server_said),
        cmocka_unit_test(backoff_is_capped),
        cmocka_unit_test(timeout_doubling_saturates),
        cmocka_unit_test(era1_timestamps_after_2036),
        cmocka_unit_test(result_before_2024_is_not_valid),
        cmocka_unit_test(minimum_time_from_config),
        cmocka_unit_test(maximum_time_from_config),
        cmocka_unit_test(now_ms_wraps),
        cmocka_unit_test(clock_runs_for_months),
        cmocka_unit_test(start_restarts_and_stop_keeps_clock),
        cmocka_unit_test(error_words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
