/*
 * sntp.c - the sans-I/O SNTP client: request with a random nonce, strict
 * reply validation, clock from the server's timestamps and the measured
 * round trip, timeouts, retries, backoff, and the valid-clock rule.
 *
 * Invariants kept by every function here:
 *  - state WAIT: a request with transmit timestamp nonce_hi:nonce_lo was
 *    handed out at sent_ms and expires at deadline_ms; try_no >= 1 requests
 *    of this round were made. state DUE: the next request is due at
 *    deadline_ms.
 *  - valid: base_unix_ms was the wall time at monotonic base_ms, and it is
 *    not before min_unix_ms. base_ms is never more than 2^31 ms behind the
 *    latest now_ms the engine saw, because every call re-anchors it.
 *  - round_err holds the most telling reason for failure in this round
 *    (MOAT_OK while nothing but silence was seen).
 *
 * No 64-bit division is used: NTP fractions become milliseconds by a
 * multiply and a shift.
 */
#include "moat/sntp.h"

#include "mem.h"
#include "moat/timer.h"

/* Seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (Unix). */
#define NTP_UNIX_DELTA 2208988800u

#define LI_ALARM 3u
#define MODE_CLIENT 3u
#define MODE_SERVER 4u
#define STRATUM_KOD 0u
#define STRATUM_UNSYNC 16u
/* RFC 5905 MAXDISP, 16 s, in NTP short format (16.16). */
#define MAX_ROOT_DISTANCE (16ul << 16)
/* Timestamps that claim the server took this much longer than our whole
 * round trip are not a measurement error. */
#define MAX_INCONSISTENCY_MS 1000

/* Field offsets in the 48-byte header (RFC 5905 figure 8). */
#define OFF_STRATUM 1
#define OFF_ROOT_DELAY 4
#define OFF_ROOT_DISP 8
#define OFF_REFID 12
#define OFF_REF 16
#define OFF_ORIGINATE 24
#define OFF_RECEIVE 32
#define OFF_TRANSMIT 40

static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t rd64(const uint8_t *p)
{
    return ((uint64_t)rd32(p) << 32) | rd32(p + 4);
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* 32.32 fixed point below 2^52 to milliseconds, rounded to the nearest. */
static uint32_t frac_to_ms(uint64_t v)
{
    return (uint32_t)((v * 1000u + 0x80000000u) >> 32);
}

/* An NTP timestamp (32.32 fixed point) as Unix milliseconds, in the era
 * window that starts at 2024-01-01. */
static int64_t ntp_to_unix_ms(uint64_t ts)
{
    uint32_t sec = (uint32_t)(ts >> 32);
    int64_t unix_s = (int64_t)sec - (int64_t)NTP_UNIX_DELTA;
    if (sec < MOAT_SNTP_ERA_PIVOT)
        unix_s += (int64_t)1 << 32; /* era 1: after 2036-02-07 */
    return unix_s * 1000 + (int64_t)(frac_to_ms(ts & 0xFFFFFFFFu));
}

/* a - b for two now_ms values less than 2^31 ms apart, with its sign. */
static int64_t ms_between(uint32_t b, uint32_t a)
{
    uint32_t d = a - b;
    return d < 0x80000000u ? (int64_t)d : -(int64_t)(uint32_t)(0u - d);
}

/* base << k, saturated at cap (base, cap <= MOAT_SNTP_MAX_INTERVAL_MS). */
static uint32_t doubled(uint32_t base, unsigned k, uint32_t cap)
{
    while (k-- > 0 && base < cap)
        base = base > cap / 2 ? cap : base * 2;
    return base < cap ? base : cap;
}

/* Move the clock's anchor up to now_ms, so elapsed time never nears 2^31. */
static void reanchor(moat_sntp *s, uint32_t now_ms)
{
    uint32_t e = moat_elapsed(s->base_ms, now_ms);
    if (s->valid && e < 0x80000000u) {
        s->base_unix_ms += e;
        s->base_ms = now_ms;
    }
}

static void new_round(moat_sntp *s, uint32_t due_ms)
{
    s->state = MOAT_SNTP_DUE;
    s->deadline_ms = due_ms;
    s->try_no = 0;
    s->round_err = MOAT_OK;
}

/* The round failed: wait retry_ms doubled once per failed round (steps more
 * rounds counted), up to the larger of retry_ms and poll_ms. */
static moat_err round_failed(moat_sntp *s, moat_err err, unsigned steps, uint32_t now_ms)
{
    uint32_t cap = s->poll_ms > s->retry_ms ? s->poll_ms : s->retry_ms;
    s->failed = (uint8_t)(s->failed + steps > 31u ? 31u : s->failed + steps);
    new_round(s, now_ms + doubled(s->retry_ms, s->failed - 1u, cap));
    s->last_err = (int16_t)err;
    return err;
}

moat_err moat_sntp_init(moat_sntp *s, const moat_sntp_config *cfg)
{
    int64_t min_s;

    if (s == NULL || cfg == NULL || cfg->random == NULL ||
        cfg->timeout_ms > MOAT_SNTP_MAX_INTERVAL_MS || cfg->retry_ms > MOAT_SNTP_MAX_INTERVAL_MS ||
        cfg->poll_ms > MOAT_SNTP_MAX_INTERVAL_MS || cfg->min_unix_s > ((int64_t)1 << 40) ||
        cfg->max_unix_s < 0 || cfg->max_unix_s > ((int64_t)1 << 40) ||
        (cfg->max_unix_s && cfg->max_unix_s <= cfg->min_unix_s))
        return MOAT_ERR_ARG;
    memset(s, 0, sizeof(*s));
    s->random = cfg->random;
    s->user = cfg->user;
    s->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 2000u;
    s->tries = cfg->tries ? cfg->tries : 4u;
    s->retry_ms = cfg->retry_ms ? cfg->retry_ms : 60000u;
    s->poll_ms = cfg->poll_ms ? cfg->poll_ms : 3600000u;
    min_s = cfg->min_unix_s > MOAT_SNTP_VALID_FROM_S ? cfg->min_unix_s : MOAT_SNTP_VALID_FROM_S;
    s->min_unix_ms = min_s * 1000;
    s->max_unix_ms = cfg->max_unix_s * 1000;
    s->state = MOAT_SNTP_IDLE;
    return MOAT_OK;
}

moat_err moat_sntp_start(moat_sntp *s, uint32_t now_ms)
{
    reanchor(s, now_ms);
    s->failed = 0;
    new_round(s, now_ms);
    return MOAT_OK;
}

void moat_sntp_stop(moat_sntp *s)
{
    s->state = MOAT_SNTP_IDLE;
}

/* The request: LI 0, VN 4, mode 3 (0x23), all else zero but the nonce in
 * the transmit timestamp (RFC 5905 section 9.1: a client may put any value
 * there; the server copies it to the originate timestamp of its reply). */
static void make_request(moat_sntp *s, uint8_t *buf)
{
    s->nonce_hi = s->random(s->user);
    s->nonce_lo = s->random(s->user);
    if ((s->nonce_hi | s->nonce_lo) == 0)
        s->nonce_lo = 1; /* a zero originate is what an unanswered peer sends */
    memset(buf, 0, MOAT_SNTP_PACKET_SIZE);
    buf[0] = (uint8_t)((4u << 3) | MODE_CLIENT);
    wr32(buf + OFF_TRANSMIT, s->nonce_hi);
    wr32(buf + OFF_TRANSMIT + 4, s->nonce_lo);
}

moat_err moat_sntp_output(moat_sntp *s, uint8_t *buf, size_t cap, size_t *len,
                          uint32_t now_ms)
{
    *len = 0;
    reanchor(s, now_ms);
    if (s->state == MOAT_SNTP_WAIT && moat_time_reached(now_ms, s->deadline_ms)) {
        if (s->try_no >= s->tries)
            return round_failed(s, s->round_err ? (moat_err)s->round_err : MOAT_ERR_SNTP_TIMEOUT,
                                1, now_ms);
        s->state = MOAT_SNTP_DUE;
        s->deadline_ms = now_ms;
    }
    if (s->state != MOAT_SNTP_DUE || !moat_time_reached(now_ms, s->deadline_ms))
        return MOAT_OK;
    if (buf == NULL || cap < MOAT_SNTP_PACKET_SIZE)
        return MOAT_ERR_NO_SPACE;
    make_request(s, buf);
    s->state = MOAT_SNTP_WAIT;
    s->sent_ms = now_ms;
    s->deadline_ms = now_ms + doubled(s->timeout_ms, s->try_no, MOAT_SNTP_MAX_INTERVAL_MS);
    s->try_no++;
    *len = MOAT_SNTP_PACKET_SIZE;
    return MOAT_OK;
}

/* Kiss code from the reference ID: printable ASCII, up to the first NUL. */
static void read_kiss(moat_sntp *s, const uint8_t *p)
{
    unsigned i;
    for (i = 0; i < 4 && p[i] != 0; i++)
        s->kiss[i] = (p[i] >= 0x20 && p[i] < 0x7F) ? (char)p[i] : '?';
    s->kiss[i] = '\0';
}

static moat_err kiss_of_death(moat_sntp *s, const uint8_t *p, uint32_t now_ms)
{
    read_kiss(s, p + OFF_REFID);
    if (memcmp(p + OFF_REFID, "DENY", 4) == 0 || memcmp(p + OFF_REFID, "RSTR", 4) == 0) {
        s->state = MOAT_SNTP_DENIED;
        s->last_err = MOAT_ERR_SNTP_DENY;
        return MOAT_ERR_SNTP_DENY;
    }
    /* RATE, or a code we do not know: poll less, as RATE asks. */
    return round_failed(s, memcmp(p + OFF_REFID, "RATE", 4) == 0 ? MOAT_ERR_SNTP_RATE
                                                                   : MOAT_ERR_SNTP_KOD,
                        2, now_ms);
}

/* A reply to our request was refused: remember why, keep waiting. */
static moat_err refuse(moat_sntp *s, moat_err err)
{
    s->round_err = (int16_t)err;
    s->last_err = (int16_t)err;
    return err;
}

/* Checks after the nonce matched; on MOAT_OK, *unix_ms and *delay_ms. */
static moat_err check_reply(moat_sntp *s, const uint8_t *p, uint32_t now_ms,
                            int64_t *unix_ms, uint32_t *delay_ms)
{
    uint8_t li = (uint8_t)(p[0] >> 6), vn = (uint8_t)((p[0] >> 3) & 7u);
    uint64_t t2 = rd64(p + OFF_RECEIVE), t3 = rd64(p + OFF_TRANSMIT), proc;
    uint64_t distance = (uint64_t)(rd32(p + OFF_ROOT_DELAY) >> 1) + rd32(p + OFF_ROOT_DISP);
    uint32_t rtt = moat_elapsed(s->sent_ms, now_ms), proc_ms;

    if ((p[0] & 7u) != MODE_SERVER || (vn != 3 && vn != 4))
        return MOAT_ERR_SNTP_BAD_REPLY;
    if (p[OFF_STRATUM] == STRATUM_KOD)
        return MOAT_ERR_SNTP_KOD; /* the caller handles it */
    if (li == LI_ALARM || p[OFF_STRATUM] >= STRATUM_UNSYNC || rd64(p + OFF_REF) == 0 ||
        distance >= MAX_ROOT_DISTANCE)
        return MOAT_ERR_SNTP_UNSYNC;
    if (t3 == 0 || t2 == 0)
        return MOAT_ERR_SNTP_BAD_REPLY;
    /* Server processing time T3 - T2, modulo 2^64 so that an era wrap
     * between them does no harm (RFC 5905 section 6). */
    proc = t3 - t2;
    if (proc >= ((uint64_t)1 << 52)) /* negative, or over 12 days */
        return MOAT_ERR_SNTP_BAD_REPLY;
    proc_ms = frac_to_ms(proc);
    if (proc_ms > rtt && proc_ms - rtt > MAX_INCONSISTENCY_MS)
        return MOAT_ERR_SNTP_BAD_REPLY;
    /* At arrival the time is (T2 + T3) / 2 + round trip / 2, which is
     * T3 + (rtt - proc) / 2: no local wall clock is needed (T1, T4 cancel). */
    *unix_ms = ntp_to_unix_ms(t3) + ((int64_t)rtt - (int64_t)proc_ms) / 2;
    *delay_ms = rtt > proc_ms ? rtt - proc_ms : 0;
    if (*unix_ms < s->min_unix_ms)
        return MOAT_ERR_SNTP_EARLY;
    if (s->max_unix_ms && *unix_ms > s->max_unix_ms)
        return MOAT_ERR_SNTP_LATE;
    return MOAT_OK;
}

moat_err moat_sntp_input(moat_sntp *s, const uint8_t *data, size_t len, uint32_t now_ms)
{
    int64_t unix_ms = 0;
    uint32_t delay_ms = 0;
    moat_err e;

    reanchor(s, now_ms);
    if (s->state != MOAT_SNTP_WAIT)
        return MOAT_ERR_SNTP_NOT_OURS;
    if (data == NULL || len < MOAT_SNTP_PACKET_SIZE)
        return MOAT_ERR_SNTP_BAD_REPLY;
    if (rd32(data + OFF_ORIGINATE) != s->nonce_hi || rd32(data + OFF_ORIGINATE + 4) != s->nonce_lo)
        return MOAT_ERR_SNTP_NOT_OURS;

    /* From here the datagram answers our request. */
    e = check_reply(s, data, now_ms, &unix_ms, &delay_ms);
    if (e == MOAT_ERR_SNTP_KOD)
        return kiss_of_death(s, data, now_ms);
    if (e != MOAT_OK)
        return refuse(s, e);

    s->last.offset_ms =
        s->valid ? unix_ms - (s->base_unix_ms + ms_between(s->base_ms, now_ms)) : 0;
    s->last.unix_ms = unix_ms;
    s->last.delay_ms = delay_ms;
    s->last.at_ms = now_ms;
    s->last.stratum = data[OFF_STRATUM];
    s->base_unix_ms = unix_ms;
    s->base_ms = now_ms;
    s->valid = true;
    s->failed = 0;
    s->last_err = MOAT_OK;
    new_round(s, now_ms + s->poll_ms);
    return MOAT_OK;
}

uint32_t moat_sntp_next_timeout(const moat_sntp *s, uint32_t now_ms)
{
    if (s->state != MOAT_SNTP_DUE && s->state != MOAT_SNTP_WAIT)
        return UINT32_MAX;
    if (moat_time_reached(now_ms, s->deadline_ms))
        return 0;
    return s->deadline_ms - now_ms;
}

moat_err moat_sntp_time(moat_sntp *s, uint32_t now_ms, int64_t *unix_ms)
{
    if (!s->valid) {
        *unix_ms = 0;
        return MOAT_ERR_CLOCK;
    }
    reanchor(s, now_ms);
    /* now_ms may be a little older than the anchor: signed difference. */
    *unix_ms = s->base_unix_ms + ms_between(s->base_ms, now_ms);
    return MOAT_OK;
}

bool moat_sntp_valid(const moat_sntp *s)
{
    return s->valid;
}

moat_sntp_state moat_sntp_get_state(const moat_sntp *s)
{
    return (moat_sntp_state)s->state;
}

const moat_sntp_sync *moat_sntp_last_sync(const moat_sntp *s)
{
    return s->valid ? &s->last : NULL;
}

moat_err moat_sntp_last_error(const moat_sntp *s)
{
    return (moat_err)s->last_err;
}

const char *moat_sntp_kiss(const moat_sntp *s)
{
    return s->kiss;
}
