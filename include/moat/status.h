/*
 * moat/status.h - the status document and command result documents.
 *
 * The agent publishes a status document on moat/<id>/status every
 * statusinterval ms. It carries the seed's fields under the seed's names,
 * so dashboards built for secureESP8266 keep working:
 *
 *   uptimemillis  milliseconds since start (64-bit here: no wrap at 49 days)
 *   maxmillis     longest loop iteration since the last status, ms
 *   mqttmillis    the seed's MQTT timing figure, ms (as the agent defines it)
 *   espname       device name (host name)
 *   espimage      firmware image name
 *   espbuild      build id / build time
 *   espip         IP address as text
 *   rssi          Wi-Fi signal in dBm, only where the platform has it
 *   espfreeheap   free heap on an MCU, available memory on Linux, bytes
 *   errormessage  the last error in words, "" when none
 *
 * and moat's own fields after them (omitted in MOAT_STATUS_SEED mode):
 *
 *   deviceid      the device id (certificate CN)
 *   state         agent state in a word ("online", ...)
 *   version       firmware version
 *   slot          active A/B slot ("a", "b")
 *   certexpiry    device certificate notAfter as an ISO date "2026-02-23",
 *                 only when known
 *   timesource    "sntp", "system" or "none"
 *   time          wall time as "2025-02-23T12:34:56Z", only when known
 *   reconnects    broker reconnections since start
 *
 * Example (one line, no spaces):
 *   {"uptimemillis":123456,"maxmillis":12,"mqttmillis":3,"espname":"pump",
 *    "espimage":"moat-agent","espbuild":"2025-02-23","espip":"10.0.0.7",
 *    "espfreeheap":51234,"errormessage":"","deviceid":"a0b1c2d3e4f5",
 *    "state":"online","version":"0.3.0","slot":"a","certexpiry":"2026-02-23",
 *    "timesource":"sntp","time":"2025-02-23T12:34:56Z","reconnects":0}
 *
 * Strings are escaped for JSON: quote, backslash and control characters are
 * escaped, and bytes that are not valid UTF-8 become U+FFFD, so an error
 * message holding any bytes still gives a valid document. A NULL string is
 * written as "". errormessage is cut (at a character boundary, with "...")
 * after MOAT_STATUS_ERROR_MAX bytes so a long error cannot crowd out the
 * status.
 *
 * Nothing here allocates, reads a clock or does I/O.
 */
#ifndef MOAT_STATUS_H
#define MOAT_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of errormessage kept (before escaping). */
#define MOAT_STATUS_ERROR_MAX 256u

/* A buffer of this size holds any status whose strings (other than
 * errormessage) total at most 256 bytes before escaping, even if every byte
 * needs a 6-byte escape. A typical status is under 500 bytes. */
#define MOAT_STATUS_JSON_MAX 4096u

typedef enum moat_time_source {
    MOAT_TIME_NONE = 0,  /* no valid wall clock */
    MOAT_TIME_SYSTEM,    /* the operating system's clock */
    MOAT_TIME_SNTP       /* moat's SNTP engine */
} moat_time_source;

typedef enum moat_status_mode {
    MOAT_STATUS_FULL = 0, /* the seed's fields, then moat's */
    MOAT_STATUS_SEED      /* only the seed's fields */
} moat_status_mode;

/* The values of one status document; the caller fills it. */
typedef struct moat_status {
    /* the seed's fields */
    uint64_t uptime_ms;        /* uptimemillis */
    uint32_t max_loop_ms;      /* maxmillis */
    uint32_t mqtt_ms;          /* mqttmillis */
    const char *name;          /* espname */
    const char *image;         /* espimage */
    const char *build;         /* espbuild */
    const char *ip;            /* espip */
    bool has_rssi;
    int32_t rssi;              /* rssi, dBm, when has_rssi */
    uint64_t free_mem;         /* espfreeheap, bytes */
    const char *error;         /* errormessage; NULL or "" when none */
    /* moat's fields */
    const char *device_id;     /* deviceid */
    const char *state;         /* state */
    const char *version;       /* version */
    const char *slot;          /* slot */
    bool has_cert_expiry;
    int64_t cert_expiry_unix_s; /* certexpiry, as a date (UTC) */
    moat_time_source time_source; /* timesource */
    bool has_time;
    int64_t time_unix_s;       /* time (UTC) */
    uint32_t reconnects;       /* reconnects */
} moat_status;

/*
 * Write the status document, NUL-terminated, into buf[0..cap); *len (may be
 * NULL) gets its length without the NUL. MOAT_ERR_NO_SPACE when it does not
 * fit (buf then holds "" if cap > 0); MOAT_ERR_ARG for a NULL status or buf.
 */
moat_err moat_status_json(const moat_status *st, moat_status_mode mode, char *buf,
                          size_t cap, size_t *len);

/*
 * A command result document, as published on moat/<id>/result/<name>:
 *   ok:     {"ok":true}
 *   not ok: {"ok":false,"error":"<error, escaped>"}   (NULL error: "")
 * NUL-terminated into buf[0..cap), *len (may be NULL) without the NUL.
 * The error text is cut after MOAT_STATUS_ERROR_MAX bytes, as in the status.
 * MOAT_ERR_NO_SPACE when it does not fit (buf then holds "" if cap > 0);
 * MOAT_RESULT_JSON_MAX bytes always suffice.
 */
#define MOAT_RESULT_JSON_MAX (32u + 6u * MOAT_STATUS_ERROR_MAX)
moat_err moat_result_json(char *buf, size_t cap, bool ok, const char *error, size_t *len);

/* "YYYY-MM-DD" (11 bytes with the NUL) for Unix seconds, UTC, proleptic
 * Gregorian; years 0000..9999, MOAT_ERR_ARG outside. */
moat_err moat_status_iso_date(int64_t unix_s, char out[11]);

/* "YYYY-MM-DDTHH:MM:SSZ" (21 bytes with the NUL), as above. */
moat_err moat_status_iso_time(int64_t unix_s, char out[21]);

/* "sntp", "system" or "none". */
const char *moat_time_source_name(moat_time_source src);

#ifdef __cplusplus
}
#endif
#endif
