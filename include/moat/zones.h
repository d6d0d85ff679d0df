/*
 * moat/zones.h - the irrigation zone controller: up to 8 relay zones, each
 * switched on for a number of seconds, sans-I/O.
 *
 * The controller keeps the logical state (which zones are on, since when, for
 * how long) and writes it to the relays through a small driver interface:
 * one call that sets all relays from one bitmap byte, bit n = zone n+1 on.
 * That is exactly what the ATmega168 co-processor takes over SPI (8
 * active-low relays on PORTD; the driver does the inversion), so a change of
 * several zones - an exclusive start that stops another zone - is a single
 * write and never leaves two zones on, even for a moment.
 *
 * Like every moat engine it never reads a clock and never allocates: the
 * caller owns the context and passes now_ms (moat/timer.h) to each call.
 *
 * Safety rules it keeps:
 *  - all zones are off after moat_zones_init() (it writes 0 to the relays);
 *  - a run longer than the zone's maximum is REFUSED, not clamped: a typo
 *    ("3 36000" for "3 3600") must not water for ten hours, and the operator
 *    learns the limit from the error words;
 *  - when exclusive (the default), starting a zone stops every other zone in
 *    the same relay write;
 *  - a driver failure is a fault: the logical state becomes all off, the
 *    driver is asked once more to switch everything off, and the error is
 *    returned with words (moat_zones_error()). The next command tries the
 *    driver again; moat_zones_fault() says whether the last write failed.
 *
 * Driving it (the agent):
 *
 *     moat_zones_init(&z, &cfg, &driver);           all off
 *     on moat/<id>/cmd/zone:
 *         e = moat_zones_apply_payload(&z, payload, len, now);
 *         result = {"ok": e == MOAT_OK, "error": moat_zones_error(&z)}
 *     each loop:
 *         moat_zones_tick(&z, now);                 runs end on time
 *         if (moat_zones_take_changed(&z))
 *             moat_zones_to_json(&z, now, buf, ...) -> moat/<id>/zones, retained
 *         sleep no longer than moat_zones_next_timeout(&z, now)
 *
 * Payloads (moat_zones_parse_payload(), strict: the whole payload, no
 * leading or trailing spaces or newlines):
 *   "<zone> <seconds>"           the seed's format: two unsigned decimal
 *                                integers separated by one space;
 *                                seconds 0 switches the zone off
 *   "<zone> off"                 switch that zone off
 *   "off"                        switch all zones off
 *   {"zone":2,"seconds":120}     JSON: zone and seconds, unsigned integers
 *   {"zone":2,"off":true}        JSON: switch that zone off
 *   {"off":true}                 JSON: switch all zones off
 * JSON objects take exactly these keys, each at most once, in any order;
 * anything else (another key, a string or fraction or sign where an integer
 * belongs, "off":false, trailing bytes) is refused with words.
 */
#ifndef MOAT_ZONES_H
#define MOAT_ZONES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The relay board has 8 relays: one bitmap byte. */
#define MOAT_ZONES_MAX 8u

/* Default maximum run time of a zone, in seconds (one hour). */
#define MOAT_ZONES_DEFAULT_MAX_S 3600u

/* No zone may be configured to run longer than a day: keeps every timer far
 * inside the 2^31 ms horizon of moat/timer.h. */
#define MOAT_ZONES_LIMIT_S 86400u

/* Room for any moat_zones_error() text, including the NUL. */
#define MOAT_ZONES_ERROR_MAX 96u

/*
 * The relay driver: the one thing that touches hardware.
 *
 * set(ctx, bitmap) switches every relay at once: bit n set = zone n+1 on,
 * bits at or above the configured count are always 0. It returns MOAT_OK
 * once the relays are in that state, or an error (MOAT_ERR_IO for a failed
 * transfer, MOAT_ERR_TIMEOUT for no answer, ...) when it cannot say they
 * are. It must not call back into the zone controller. It is called from
 * moat_zones_init(), from commands and from moat_zones_tick(), never
 * otherwise; it should be quick (an SPI transfer of a byte or two).
 */
typedef struct moat_relay_driver {
    moat_err (*set)(void *ctx, uint8_t bitmap);
    void *ctx;
} moat_relay_driver;

/* Caller-owned settings; moat_zones_init() copies them. */
typedef struct moat_zones_config {
    uint8_t count;         /* zones in use, 1..8; 0 means 8 */
    bool not_exclusive;    /* false (default): at most one zone on at a time;
                              true: zones run independently */
    uint32_t max_s;        /* longest run of any zone in seconds, 1..86400;
                              0 means MOAT_ZONES_DEFAULT_MAX_S */
    uint32_t zone_max_s[MOAT_ZONES_MAX]; /* per zone (index 0 = zone 1), 1..86400;
                                            0 means max_s */
} moat_zones_config;

/* The context. Opaque to the caller: allocate it, pass it to every call. */
typedef struct moat_zones {
    moat_relay_driver driver;
    uint32_t max_ms[MOAT_ZONES_MAX];
    uint32_t start_ms[MOAT_ZONES_MAX]; /* when zone n+1 was switched on */
    uint32_t run_ms[MOAT_ZONES_MAX];   /* and for how long */
    uint8_t count;
    uint8_t on;          /* bitmap of the zones on (as last written) */
    bool exclusive;
    bool changed;        /* a change not yet taken by moat_zones_take_changed() */
    bool fault;          /* the last driver write failed */
    char error[MOAT_ZONES_ERROR_MAX];
} moat_zones;

/*
 * Check cfg, make a context with all zones off, and write 0 to the relays.
 * Returns MOAT_ERR_ARG (nothing written, words in z->error) for a missing
 * driver, a count over 8, or a maximum over 86400 seconds;
 * or the driver's error: the context is then usable, all off, in fault.
 * Also the way to apply a new configuration: every zone goes off.
 * The changed flag is set, so the first zones document gets published.
 */
moat_err moat_zones_init(moat_zones *z, const moat_zones_config *cfg,
                         const moat_relay_driver *driver);

/*
 * Switch zone (1..count) on for seconds, or off when seconds is 0.
 * zone 0 with seconds 0 switches all zones off.
 * On: the zone's timer (re)starts at now_ms; when exclusive, every other zone
 * goes off in the same relay write. Returns:
 *   MOAT_OK        done (the changed flag is set)
 *   MOAT_ERR_ARG   zone 0 with seconds, zone over count, or seconds over the
 *                  zone's maximum: refused, nothing changes. Words, e.g.
 *                  "zone 3: 7200 seconds is over the maximum of 3600"
 *   driver error   a fault: all off, words "relay driver failed (...):
 *                  all zones off"
 */
moat_err moat_zones_command(moat_zones *z, uint8_t zone, uint32_t seconds,
                            uint32_t now_ms);

/* Switch every zone off (the agent calls it on any fault of its own). The
 * same as moat_zones_command(z, 0, 0, now_ms). */
moat_err moat_zones_all_off(moat_zones *z, uint32_t now_ms);

/*
 * Parse a zone command payload (formats in the header comment) against
 * count zones (1..8; 0 means 8). On MOAT_OK, *zone is 1..count or 0 for all,
 * and *seconds the run time, 0 for off ("off" forms give 0). The maximum run
 * time is not checked here but by moat_zones_command(), which knows it.
 * MOAT_ERR_MALFORMED (or MOAT_ERR_ARG for zone 0 or over count, a number over
 * 4294967295) with words in why[0..why_cap) (NUL-terminated, truncated to
 * fit; why may be NULL), e.g. "zone payload: expected \"<zone> <seconds>\",
 * \"<zone> off\", \"off\" or JSON {\"zone\":N,\"seconds\":S}".
 * Reads exactly payload[0..len); payload need not be NUL-terminated.
 */
moat_err moat_zones_parse_payload(const uint8_t *payload, size_t len, uint8_t count,
                                  uint8_t *zone, uint32_t *seconds,
                                  char *why, size_t why_cap);

/* moat_zones_parse_payload() with the context's count, then
 * moat_zones_command(). Words of a failure in moat_zones_error(). */
moat_err moat_zones_apply_payload(moat_zones *z, const uint8_t *payload, size_t len,
                                  uint32_t now_ms);

/*
 * Switch off every zone whose time is up, in one relay write. Call it each
 * loop, by moat_zones_next_timeout() at the latest, and at least once every
 * 2^31 ms. Returns MOAT_OK, or the driver's error (a fault, as above).
 */
moat_err moat_zones_tick(moat_zones *z, uint32_t now_ms);

/* Milliseconds until moat_zones_tick() has a zone to switch off: 0 when one
 * is due now, UINT32_MAX when no zone is on. */
uint32_t moat_zones_next_timeout(const moat_zones *z, uint32_t now_ms);

/* True once after each change of the zone state (command, run ended, fault,
 * init): the caller publishes the retained zones document then. */
bool moat_zones_take_changed(moat_zones *z);

/* Bitmap of the zones on: bit n = zone n+1. */
uint8_t moat_zones_bitmap(const moat_zones *z);

/* Seconds zone (1..count) still runs, rounded up; 0 when off or no such zone. */
uint32_t moat_zones_remaining_s(const moat_zones *z, uint8_t zone, uint32_t now_ms);

/* True when the last relay write failed (cleared by the next good write). */
bool moat_zones_fault(const moat_zones *z);

/* Words for the failure of the last call that changes state (init, command,
 * all_off, apply_payload, tick); "" when it succeeded. Never NULL. */
const char *moat_zones_error(const moat_zones *z);

/*
 * The zones document, NUL-terminated, into buf[0..cap); *len (may be NULL)
 * gets its length without the NUL. For count 3, zone 2 on for 2 more minutes:
 *   {"zones":[{"zone":1,"on":false,"remaining":0},
 *             {"zone":2,"on":true,"remaining":120},
 *             {"zone":3,"on":false,"remaining":0}],
 *    "exclusive":true,"fault":false}
 * (on one line, no spaces). remaining is in seconds, rounded up.
 * MOAT_ERR_NO_SPACE when it does not fit (buf then holds "" if cap > 0);
 * 8 zones always fit in 400 bytes (MOAT_ZONES_JSON_MAX).
 */
#define MOAT_ZONES_JSON_MAX 400u
moat_err moat_zones_to_json(const moat_zones *z, uint32_t now_ms, char *buf, size_t cap,
                            size_t *len);

#ifdef __cplusplus
}
#endif
#endif
