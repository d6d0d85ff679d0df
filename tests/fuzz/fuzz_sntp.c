/*
 * fuzz_sntp.c - libFuzzer harness for the SNTP client (moat/sntp.h), above
 * all moat_sntp_input() on hostile datagrams.
 *
 * The input is a script. Byte 0 configures the engine (see setup()); then
 * each operation is one byte whose low nibble selects it, followed by its
 * parameter bytes (missing bytes read as 0):
 *   0  output: take the due request (high nibble 0xF: a 47-byte buffer)
 *   1  time passes: now += u16 << min(high nibble, 14); output runs first
 *      if the engine would otherwise go 2^31 ms without it
 *   2  a datagram: length byte n, then n bytes. High nibble bit 0 writes the
 *      nonce of the last request into the originate field (so the fuzzer
 *      gets past the anti-spoofing check), bit 1 truncates it to 47 bytes
 *   3  start    4  stop    5  read the clock at a now_ms a little earlier
 *   other: ignored
 *
 * Oracles, besides ASan/UBSan on an exactly sized copy of every datagram:
 *  - every result is one the header documents for that call;
 *  - a request is 48 bytes: 0x23, zeros, a nonce; NO_SPACE only when short;
 *  - a datagram that is not an answer to the waiting request (no request,
 *    short, originate differs) changes nothing: state, deadline, errors,
 *    kiss code and clock stay as they were;
 *  - a refused answer leaves the request waiting and the clock as it was;
 *    a kiss-o'-death ends the round or stops the engine;
 *  - an accepted answer makes the clock valid, no earlier than 2024-01-01
 *    or the configured minimum, within half the round trip plus a second of
 *    the server's transmit timestamp, and schedules the next sync after the
 *    poll interval;
 *  - the clock then runs exactly with now_ms, and next_timeout never exceeds
 *    the longest interval the engine schedules.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moat/sntp.h"

#include "fuzz_check.h"

#define MAX_DGRAM 255u

typedef struct fuzz_state {
    const uint8_t *in;
    size_t left;
    uint32_t now;
    uint32_t rnd;
    moat_sntp_config cfg;
    moat_sntp s;
    uint64_t nonce;       /* of the last request handed out */
    bool have_nonce;
    int64_t min_ms;       /* the earliest valid time */
    uint32_t longest;     /* the longest wait the engine may schedule */
    /* the harness's model of the clock, after a sync */
    bool valid;
    int64_t sync_ms;
    uint32_t sync_at;
    uint64_t since;       /* ms since sync_at, counted without wrapping */
    uint64_t idle;        /* ms since output or start last ran */
} fuzz_state;

static fuzz_state F;

static uint8_t take(fuzz_state *f)
{
    if (f->left == 0)
        return 0;
    f->left--;
    return *f->in++;
}

static uint32_t fuzz_random(void *user)
{
    fuzz_state *f = user;
    f->rnd = f->rnd * 1103515245u + 12345u;
    return f->rnd;
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Byte 0: bits 0-1 tries (1..4); bit 2 a minimum of 2026-01-01; bits 3-4 the
 * timeout (default, 1 ms, 500 ms, the maximum); bit 5 start near the now_ms
 * wrap; bits 6-7 retry/poll (defaults, 1 ms/1 ms, 1000/500, maximum both). */
static void setup(fuzz_state *f, uint8_t c)
{
    static const uint32_t timeouts[4] = {0, 1, 500, MOAT_SNTP_MAX_INTERVAL_MS};
    static const uint32_t retries[4] = {0, 1, 1000, MOAT_SNTP_MAX_INTERVAL_MS};
    static const uint32_t polls[4] = {0, 1, 500, MOAT_SNTP_MAX_INTERVAL_MS};

    memset(&f->cfg, 0, sizeof(f->cfg));
    f->cfg.tries = (uint8_t)(1u + (c & 3u));
    f->cfg.min_unix_s = (c & 4u) ? 1767225600 : 0;
    f->cfg.timeout_ms = timeouts[(c >> 3) & 3u];
    f->cfg.retry_ms = retries[c >> 6];
    f->cfg.poll_ms = polls[c >> 6];
    f->cfg.random = fuzz_random;
    f->cfg.user = f;
    f->now = (c & 0x20u) ? 0xFFFFF000u : 1000u;
    f->rnd = c;
    f->min_ms = ((c & 4u) ? 1767225600LL : MOAT_SNTP_VALID_FROM_S) * 1000;
    f->longest = MOAT_SNTP_MAX_INTERVAL_MS;
    CHECK(moat_sntp_init(&f->s, &f->cfg) == MOAT_OK);
    CHECK(moat_sntp_start(&f->s, f->now) == MOAT_OK);
}

static void check_clock(fuzz_state *f)
{
    int64_t ms = 1;
    moat_err e = moat_sntp_time(&f->s, f->now, &ms);
    CHECK(moat_sntp_valid(&f->s) == f->valid);
    if (!f->valid) {
        CHECK(e == MOAT_ERR_CLOCK && ms == 0);
        CHECK(moat_sntp_last_sync(&f->s) == NULL);
        return;
    }
    CHECK(e == MOAT_OK);
    CHECK(ms == f->sync_ms + (int64_t)f->since);
    CHECK(ms >= f->min_ms);
}

static void check_timeout(fuzz_state *f)
{
    uint32_t t = moat_sntp_next_timeout(&f->s, f->now);
    moat_sntp_state st = moat_sntp_get_state(&f->s);
    if (st == MOAT_SNTP_IDLE || st == MOAT_SNTP_DENIED)
        CHECK(t == UINT32_MAX);
    else
        CHECK(t <= f->longest);
}

static void op_output(fuzz_state *f, bool short_buf)
{
    uint8_t buf[64];
    size_t len = 77;
    moat_sntp_state before = moat_sntp_get_state(&f->s);
    moat_err e;

    memset(buf, 0xA5, sizeof(buf));
    e = moat_sntp_output(&f->s, buf, short_buf ? 47u : 48u, &len, f->now);
    if (e != MOAT_ERR_NO_SPACE)
        f->idle = 0; /* a request refused for want of room is still due */
    CHECK(e == MOAT_OK || e == MOAT_ERR_NO_SPACE || e == MOAT_ERR_SNTP_TIMEOUT ||
          e == MOAT_ERR_SNTP_BAD_REPLY || e == MOAT_ERR_SNTP_UNSYNC || e == MOAT_ERR_SNTP_EARLY);
    CHECK(len == 0 || len == MOAT_SNTP_PACKET_SIZE);
    CHECK(buf[48] == 0xA5);
    if (e == MOAT_ERR_NO_SPACE)
        CHECK(short_buf && len == 0);
    if (e != MOAT_OK) {
        CHECK(len == 0 && moat_sntp_get_state(&f->s) == MOAT_SNTP_DUE);
        if (e != MOAT_ERR_NO_SPACE)
            CHECK(before == MOAT_SNTP_WAIT && moat_sntp_last_error(&f->s) == e);
    }
    if (len) {
        CHECK(!short_buf);
        CHECK(buf[0] == 0x23);
        for (int i = 1; i < 40; i++)
            CHECK(buf[i] == 0);
        f->nonce = be64(buf + 40);
        CHECK(f->nonce != 0);
        f->have_nonce = true;
        CHECK(moat_sntp_get_state(&f->s) == MOAT_SNTP_WAIT);
    }
    if (before == MOAT_SNTP_IDLE || before == MOAT_SNTP_DENIED)
        CHECK(e == MOAT_OK && len == 0 && moat_sntp_get_state(&f->s) == before);
}

typedef struct snapshot {
    moat_sntp_state state;
    uint32_t next;
    moat_err last_err;
    char kiss[5];
    bool valid;
    moat_sntp_sync last;
} snapshot;

static void snap(fuzz_state *f, snapshot *p)
{
    memset(p, 0, sizeof(*p));
    p->state = moat_sntp_get_state(&f->s);
    p->next = moat_sntp_next_timeout(&f->s, f->now);
    p->last_err = moat_sntp_last_error(&f->s);
    memcpy(p->kiss, moat_sntp_kiss(&f->s), strlen(moat_sntp_kiss(&f->s)) + 1);
    p->valid = moat_sntp_valid(&f->s);
    if (moat_sntp_last_sync(&f->s))
        p->last = *moat_sntp_last_sync(&f->s);
}

static bool same(const snapshot *a, const snapshot *b)
{
    return a->state == b->state && a->next == b->next && a->last_err == b->last_err &&
           strcmp(a->kiss, b->kiss) == 0 && a->valid == b->valid &&
           memcmp(&a->last, &b->last, sizeof(a->last)) == 0;
}

/* The server's transmit timestamp in Unix ms, era window from 2024. */
static int64_t t3_ms(const uint8_t *p)
{
    uint64_t t = be64(p + 40);
    uint32_t sec = (uint32_t)(t >> 32);
    int64_t s = (int64_t)sec - 2208988800LL + (sec < MOAT_SNTP_ERA_PIVOT ? 4294967296LL : 0);
    return s * 1000 + (int64_t)(((t & 0xFFFFFFFFu) * 1000u) >> 32);
}

static void op_input(fuzz_state *f, uint8_t hi)
{
    uint8_t n = take(f), tmp[MAX_DGRAM];
    uint8_t *d;
    size_t len;
    snapshot before, after;
    moat_err e;
    bool ours;

    for (unsigned i = 0; i < n; i++)
        tmp[i] = take(f);
    len = n;
    if ((hi & 1u) && len >= 32 && f->have_nonce)
        for (int i = 0; i < 8; i++)
            tmp[24 + i] = (uint8_t)(f->nonce >> (56 - 8 * i));
    if ((hi & 2u) && len > 47)
        len = 47;
    d = malloc(len ? len : 1u); /* exactly sized: ASan sees any overread */
    CHECK(d != NULL);
    memcpy(d, tmp, len);

    snap(f, &before);
    ours = before.state == MOAT_SNTP_WAIT && len >= 48 && f->have_nonce &&
           be64(d + 24) == f->nonce;
    e = moat_sntp_input(&f->s, d, len, f->now);
    snap(f, &after);

    if (!ours) {
        CHECK(e == MOAT_ERR_SNTP_NOT_OURS || e == MOAT_ERR_SNTP_BAD_REPLY);
        CHECK(same(&before, &after));
    } else if (e == MOAT_OK) {
        const moat_sntp_sync *y = moat_sntp_last_sync(&f->s);
        int64_t t3 = t3_ms(d);
        CHECK(y != NULL && after.valid);
        CHECK(y->unix_ms >= f->min_ms);
        CHECK(y->at_ms == f->now);
        CHECK(y->stratum >= 1 && y->stratum <= 15);
        /* within half the round trip and the allowed inconsistency */
        CHECK(y->unix_ms - t3 <= (int64_t)y->delay_ms / 2 + 1);
        CHECK(t3 - y->unix_ms <= 501);
        CHECK(after.state == MOAT_SNTP_DUE && after.last_err == MOAT_OK);
        CHECK(after.next == (f->cfg.poll_ms ? f->cfg.poll_ms : 3600000u));
        f->valid = true;
        f->sync_ms = y->unix_ms;
        f->sync_at = f->now;
        f->since = 0;
    } else if (e == MOAT_ERR_SNTP_BAD_REPLY || e == MOAT_ERR_SNTP_UNSYNC ||
               e == MOAT_ERR_SNTP_EARLY) {
        CHECK(after.state == MOAT_SNTP_WAIT && after.next == before.next);
        CHECK(after.last_err == e && after.valid == before.valid);
        CHECK(memcmp(&after.last, &before.last, sizeof(after.last)) == 0);
    } else if (e == MOAT_ERR_SNTP_RATE || e == MOAT_ERR_SNTP_KOD) {
        CHECK(d[1] == 0);
        CHECK(after.state == MOAT_SNTP_DUE && after.last_err == e);
        CHECK(e != MOAT_ERR_SNTP_RATE || strcmp(after.kiss, "RATE") == 0);
    } else {
        CHECK(e == MOAT_ERR_SNTP_DENY);
        CHECK(d[1] == 0);
        CHECK(after.state == MOAT_SNTP_DENIED && after.next == UINT32_MAX);
        CHECK(strcmp(after.kiss, "DENY") == 0 || strcmp(after.kiss, "RSTR") == 0);
    }
    for (const char *k = after.kiss; *k; k++)
        CHECK(*k >= 0x20 && *k < 0x7F);
    CHECK(strlen(after.kiss) <= 4);
    free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_state *f = &F;
    unsigned ops = 0;

    memset(f, 0, sizeof(*f));
    f->in = data;
    f->left = size;
    setup(f, take(f));

    while (f->left > 0 && ops++ < 4096) {
        uint8_t op = take(f), hi = (uint8_t)(op >> 4);
        switch (op & 0x0Fu) {
        case 0:
            op_output(f, hi == 0xFu);
            break;
        case 1: {
            uint32_t lo = take(f), hi8 = take(f);
            uint32_t step = ((hi8 << 8) | lo) << (hi > 14 ? 14 : hi); /* < 2^30 */
            /* The caller's side of the timer contract (moat/timer.h): a
             * deadline is never left 2^31 ms behind, because a loop calls
             * output at least when next_timeout says. */
            if (f->idle + step >= 0x80000000u)
                op_output(f, false);
            f->now += step;
            f->since += step;
            f->idle += step;
            break;
        }
        case 2:
            op_input(f, hi);
            break;
        case 3:
            CHECK(moat_sntp_start(&f->s, f->now) == MOAT_OK);
            CHECK(moat_sntp_get_state(&f->s) == MOAT_SNTP_DUE);
            f->idle = 0;
            CHECK(moat_sntp_next_timeout(&f->s, f->now) == 0);
            break;
        case 4:
            moat_sntp_stop(&f->s);
            CHECK(moat_sntp_get_state(&f->s) == MOAT_SNTP_IDLE);
            break;
        case 5:
            if (f->valid) {
                int64_t ms = 0;
                uint32_t back = (uint32_t)take(f) << hi;
                CHECK(moat_sntp_time(&f->s, f->now - back, &ms) == MOAT_OK);
                CHECK(ms == f->sync_ms + (int64_t)f->since - back);
            }
            break;
        default:
            break;
        }
        check_clock(f);
        check_timeout(f);
    }
    return 0;
}
