/*
 * moat/sntp.h - sans-I/O SNTP client (RFC 4330 / RFC 5905 client mode).
 *
 * Time before trust: no certificate is checked before the clock is valid,
 * and this engine is how the clock becomes valid. It asks one server (the
 * configured `ntpserver`) for the time over UDP port 123, with a timeout per
 * request, retries with a doubling timeout, a backoff between failed rounds,
 * and a poll interval after a success.
 *
 * Like every moat engine it never reads a clock, never touches a socket,
 * never allocates and never sleeps. The caller owns the context, moves the
 * datagrams, and passes now_ms (a wrapping uint32_t count of monotonic
 * milliseconds, as in moat/timer.h) to every call that needs it.
 *
 * Driving it:
 *
 *     moat_sntp_init(&s, &cfg);
 *     moat_sntp_start(&s, now);
 *     for (;;) {
 *         now = clock_ms();
 *         e = moat_sntp_output(&s, buf, sizeof buf, &len, now);
 *         if (len)                          send buf[0..len) to ntpserver:123
 *         if (e != MOAT_OK)                 report e (a round gave up)
 *         while (a datagram d arrived)      moat_sntp_input(&s, d, n, now);
 *         sleep until I/O or moat_sntp_next_timeout(&s, now);
 *     }
 *
 * Anti-spoofing: the transmit timestamp of each request is a fresh 64-bit
 * random nonce from cfg->random, not the (unknown) local time. A reply
 * counts only if its originate timestamp echoes that nonce, so an off-path
 * attacker who cannot see the request cannot forge an answer (or a
 * kiss-o'-death). The clock is computed from the server's timestamps and
 * the locally measured round trip, never from a local wall clock.
 *
 * Validity: the clock is valid only after a successful sync whose result is
 * not before MOAT_SNTP_VALID_FROM_S (2024-01-01T00:00:00Z, the project's
 * rule) nor before cfg->min_unix_s. Once valid it stays valid, running on
 * now_ms, until the context is initialised again.
 *
 * NTP era: 32-bit NTP seconds wrap in 2036. A server timestamp is placed in
 * the one 2^32-second window that starts at 2024-01-01, so times from
 * 2024-01-01 to 2160-02-07 are read correctly, before and after the wrap.
 */
#ifndef MOAT_SNTP_H
#define MOAT_SNTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An SNTP request and the smallest valid reply are 48 bytes. */
#define MOAT_SNTP_PACKET_SIZE 48u
#define MOAT_SNTP_PORT 123u

/* 2024-01-01T00:00:00Z: no valid clock is earlier (Unix seconds). */
#define MOAT_SNTP_VALID_FROM_S 1704067200
/* The same instant in NTP era-0 seconds (since 1900-01-01): the era pivot. */
#define MOAT_SNTP_ERA_PIVOT 3913056000u

/* Longest interval the engine accepts or schedules: timers stay well inside
 * the 2^31 ms horizon of moat/timer.h. */
#define MOAT_SNTP_MAX_INTERVAL_MS 0x40000000u

/* Caller-owned settings. moat_sntp_init() copies them; 0 means the default. */
typedef struct moat_sntp_config {
    uint32_t timeout_ms;   /* wait for a reply to the first request of a round;
                              doubles for each retry. 0 means 2000 */
    uint8_t tries;         /* requests per round before giving up. 0 means 4 */
    uint32_t retry_ms;     /* wait after a failed round; doubles for each
                              further failed round, up to poll_ms. 0 means 60000 */
    uint32_t poll_ms;      /* wait after a success before the next sync.
                              0 means 3600000 (one hour) */
    int64_t min_unix_s;    /* refuse any time before this (e.g. the firmware's
                              build time); anything before 2024-01-01 means
                              MOAT_SNTP_VALID_FROM_S */
    int64_t max_unix_s;    /* refuse any time after this; 0 means no limit.
                              A server answering 1970 or 2020 is read through
                              the era pivot as 2106 or 2156: a maximum such as
                              build time + 30 years refuses it */
    uint32_t (*random)(void *user); /* required: uniform 32-bit random values,
                                       for the request nonce */
    void *user;            /* passed to random */
} moat_sntp_config;

typedef enum moat_sntp_state {
    MOAT_SNTP_IDLE = 0, /* not started, or stopped by moat_sntp_stop() */
    MOAT_SNTP_DUE,      /* the next request is due at the deadline */
    MOAT_SNTP_WAIT,     /* a request went out; waiting for its reply */
    MOAT_SNTP_DENIED    /* the server sent kiss-o'-death DENY or RSTR: it must
                           not be asked again (RFC 4330 section 8); start()
                           again, e.g. with another server */
} moat_sntp_state;

/* The last successful sync, for status reports. */
typedef struct moat_sntp_sync {
    int64_t unix_ms;    /* the time the reply gave, at its arrival */
    int64_t offset_ms;  /* that minus the engine's clock at that moment
                           (0 at the first sync: there was no clock) */
    uint32_t delay_ms;  /* round-trip delay: the measured round trip less the
                           server's own processing time */
    uint32_t at_ms;     /* now_ms of the reply */
    uint8_t stratum;    /* of the server: 1 = primary */
} moat_sntp_sync;

/* The context. Opaque to the caller: allocate it, pass it to every call. */
typedef struct moat_sntp {
    uint32_t (*random)(void *user);
    void *user;
    int64_t min_unix_ms;  /* earliest acceptable time */
    int64_t max_unix_ms;  /* latest acceptable time; 0: no limit */
    int64_t base_unix_ms; /* the clock: base_unix_ms at monotonic base_ms */
    moat_sntp_sync last;
    uint32_t base_ms;
    uint32_t timeout_ms, retry_ms, poll_ms;
    uint32_t deadline_ms; /* DUE: when to send; WAIT: when the request expires */
    uint32_t sent_ms;     /* WAIT: when the request was handed to the caller */
    uint32_t nonce_hi, nonce_lo; /* WAIT: transmit timestamp of the request */
    int16_t round_err;    /* the most telling failure of this round */
    int16_t last_err;     /* the last error the engine reported, or MOAT_OK */
    uint8_t tries;
    uint8_t try_no;       /* requests sent in this round */
    uint8_t failed;       /* rounds failed in a row (backoff exponent) */
    uint8_t state;        /* moat_sntp_state */
    bool valid;
    char kiss[5];         /* the last kiss code, NUL-terminated ("" if none) */
} moat_sntp;

/* Check cfg and make an IDLE engine with no valid clock. MOAT_ERR_ARG when
 * random is missing or an interval is over MOAT_SNTP_MAX_INTERVAL_MS. */
moat_err moat_sntp_init(moat_sntp *s, const moat_sntp_config *cfg);

/* Begin a round now: the first request is due at once. From any state:
 * calling it while running restarts the round (say, when the network came
 * back). The clock, if valid, is kept. */
moat_err moat_sntp_start(moat_sntp *s, uint32_t now_ms);

/* Stop asking: IDLE. The clock, if valid, is kept. */
void moat_sntp_stop(moat_sntp *s);

/*
 * The next request, when one is due: writes the 48-byte request into
 * buf[0..cap) and sets *len to 48; the caller sends it as one UDP datagram
 * to the server. Otherwise *len is 0.
 *
 * Also runs the timers. When a request has gone unanswered past its timeout
 * a new one is made (with a new nonce and twice the timeout). When the last
 * try of a round expires the round gives up: *len is 0, the next round is
 * scheduled after the backoff, and the round's error is returned once -
 * MOAT_ERR_SNTP_TIMEOUT, or the reason the server's replies were refused
 * (e.g. MOAT_ERR_SNTP_UNSYNC) if it did answer.
 *
 * Returns MOAT_OK, that error, or MOAT_ERR_NO_SPACE when cap < 48 (nothing
 * changes: call again with a larger buffer).
 */
moat_err moat_sntp_output(moat_sntp *s, uint8_t *buf, size_t cap, size_t *len,
                          uint32_t now_ms);

/*
 * One datagram received from the server's port. Returns:
 *  MOAT_OK                 a valid answer: the clock is set, valid, and the
 *                          next sync is due after poll_ms
 *  MOAT_ERR_SNTP_NOT_OURS  no request is waiting, or the originate timestamp
 *                          is not our nonce (stale, duplicate or spoofed):
 *                          ignored
 *  MOAT_ERR_SNTP_BAD_REPLY shorter than 48 bytes, mode not 4 (server),
 *                          version not 3 or 4, a zero or inconsistent
 *                          timestamp: ignored
 *  MOAT_ERR_SNTP_UNSYNC    the server is not synchronised (leap indicator 3,
 *                          stratum 16 or more, no reference time, root
 *                          distance 16 s or more): refused
 *  MOAT_ERR_SNTP_EARLY     the time is before 2024-01-01 or min_unix_s:
 *                          refused, the clock is unchanged
 *  MOAT_ERR_SNTP_LATE      the time is after max_unix_s: refused, the clock
 *                          is unchanged
 *  MOAT_ERR_SNTP_RATE      kiss-o'-death RATE: the round ends and the next
 *                          one waits two backoff steps longer
 *  MOAT_ERR_SNTP_KOD       another kiss-o'-death code: the same
 *  MOAT_ERR_SNTP_DENY      kiss-o'-death DENY or RSTR: the engine stops
 *                          (MOAT_SNTP_DENIED)
 * An ignored or refused reply leaves the request waiting: the real answer
 * may still come before the timeout. Kiss codes are read only from replies
 * that echo our nonce. moat_sntp_kiss() gives the code. Never touches data
 * beyond len.
 */
moat_err moat_sntp_input(moat_sntp *s, const uint8_t *data, size_t len, uint32_t now_ms);

/* Milliseconds until moat_sntp_output() has something to do: 0 when it has
 * now, UINT32_MAX when IDLE or DENIED. As for every moat timer, output must
 * run by then, and at least once every 2^31 ms (24 days): a deadline left
 * further behind reads as one in the future. */
uint32_t moat_sntp_next_timeout(const moat_sntp *s, uint32_t now_ms);

/*
 * The current wall time in Unix milliseconds: the last sync plus the
 * monotonic milliseconds since. MOAT_ERR_CLOCK (and *unix_ms = 0) while the
 * clock is not valid. The engine re-anchors the clock whenever it is called
 * with a later now_ms, so it stays right for as long as the caller drives
 * the engine (at least once every 24 days; the engine's own timers ask for
 * more than that).
 */
moat_err moat_sntp_time(moat_sntp *s, uint32_t now_ms, int64_t *unix_ms);

/* True after a successful sync with a result not before the minimum. */
bool moat_sntp_valid(const moat_sntp *s);

moat_sntp_state moat_sntp_get_state(const moat_sntp *s);

/* The last successful sync; NULL before the first. */
const moat_sntp_sync *moat_sntp_last_sync(const moat_sntp *s);

/* The last error the engine returned from output or input, or MOAT_OK after
 * a success; for the status document's error message. */
moat_err moat_sntp_last_error(const moat_sntp *s);

/* The last kiss-o'-death code received ("RATE", "DENY", ...; printable ASCII
 * only, other bytes as '?'), or "" if none. */
const char *moat_sntp_kiss(const moat_sntp *s);

#ifdef __cplusplus
}
#endif
#endif
