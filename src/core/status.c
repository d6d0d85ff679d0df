/*
 * status.c - the status document (the seed's field names, then moat's) and
 * command result documents, with exact JSON escaping and ISO dates written
 * without printf or a C library clock.
 */
#include "moat/status.h"

#include "mem.h"
#include "moat/json.h"

/* Unix day 0 .. 9999-12-31: the years a four-digit date can hold. */
#define MIN_UNIX_S (-62167219200LL) /* 0000-01-01T00:00:00Z */
#define MAX_UNIX_S 253402300799LL   /* 9999-12-31T23:59:59Z */

static void digits(char *out, uint32_t v, int n)
{
    while (n-- > 0) {
        out[n] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    }
}

/* Civil date of a Unix day (H. Hinnant's days_from_civil, inverted). */
static void civil(int64_t days, uint32_t *y, uint32_t *m, uint32_t *d)
{
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    uint32_t doe = (uint32_t)(z - era * 146097);
    uint32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    uint32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    uint32_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (uint32_t)(yoe + era * 400 + (*m <= 2));
}

static moat_err iso(int64_t unix_s, char *out, bool with_time)
{
    int64_t days, secs;
    uint32_t y, m, d;

    if (unix_s < MIN_UNIX_S || unix_s > MAX_UNIX_S)
        return MOAT_ERR_ARG;
    days = unix_s / 86400;
    secs = unix_s % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    civil(days, &y, &m, &d);
    digits(out, y, 4);
    out[4] = '-';
    digits(out + 5, m, 2);
    out[7] = '-';
    digits(out + 8, d, 2);
    if (!with_time) {
        out[10] = '\0';
        return MOAT_OK;
    }
    out[10] = 'T';
    digits(out + 11, (uint32_t)(secs / 3600), 2);
    out[13] = ':';
    digits(out + 14, (uint32_t)(secs / 60 % 60), 2);
    out[16] = ':';
    digits(out + 17, (uint32_t)(secs % 60), 2);
    out[19] = 'Z';
    out[20] = '\0';
    return MOAT_OK;
}

moat_err moat_status_iso_date(int64_t unix_s, char out[11])
{
    return iso(unix_s, out, false);
}

moat_err moat_status_iso_time(int64_t unix_s, char out[21])
{
    return iso(unix_s, out, true);
}

const char *moat_time_source_name(moat_time_source src)
{
    switch (src) {
    case MOAT_TIME_SNTP: return "sntp";
    case MOAT_TIME_SYSTEM: return "system";
    default: return "none";
    }
}

/* errormessage and result errors: cut after MOAT_STATUS_ERROR_MAX bytes,
 * before a character that would straddle the cut, and marked with "...". */
static void put_error(moat_json_writer *w, const char *key, const char *error)
{
    char cut[MOAT_STATUS_ERROR_MAX + 3];
    size_t n, back = 0;

    if (error == NULL)
        error = "";
    n = strlen(error);
    if (n <= MOAT_STATUS_ERROR_MAX) {
        moat_json_put_string_n(w, key, error, n);
        return;
    }
    n = MOAT_STATUS_ERROR_MAX;
    while (back < 3 && n > 0 && ((uint8_t)error[n] & 0xC0u) == 0x80u) {
        n--;
        back++;
    }
    memcpy(cut, error, n);
    memcpy(cut + n, "...", 3);
    moat_json_put_string_n(w, key, cut, n + 3);
}

static void put_str(moat_json_writer *w, const char *key, const char *s)
{
    moat_json_put_string(w, key, s != NULL ? s : "");
}

moat_err moat_status_json(const moat_status *st, moat_status_mode mode, char *buf,
                          size_t cap, size_t *len)
{
    moat_json_writer w;
    char date[21];

    if (len != NULL)
        *len = 0;
    if (st == NULL || buf == NULL)
        return MOAT_ERR_ARG;
    moat_json_writer_init(&w, buf, cap);
    moat_json_begin_object(&w, NULL);
    moat_json_put_uint(&w, "uptimemillis", st->uptime_ms);
    moat_json_put_uint(&w, "maxmillis", st->max_loop_ms);
    moat_json_put_uint(&w, "mqttmillis", st->mqtt_ms);
    put_str(&w, "espname", st->name);
    put_str(&w, "espimage", st->image);
    put_str(&w, "espbuild", st->build);
    put_str(&w, "espip", st->ip);
    if (st->has_rssi)
        moat_json_put_int(&w, "rssi", st->rssi);
    moat_json_put_uint(&w, "espfreeheap", st->free_mem);
    put_error(&w, "errormessage", st->error);
    if (mode != MOAT_STATUS_SEED) {
        put_str(&w, "deviceid", st->device_id);
        put_str(&w, "state", st->state);
        put_str(&w, "version", st->version);
        put_str(&w, "slot", st->slot);
        if (st->has_cert_expiry && moat_status_iso_date(st->cert_expiry_unix_s, date) == MOAT_OK)
            put_str(&w, "certexpiry", date);
        put_str(&w, "timesource", moat_time_source_name(st->time_source));
        if (st->has_time && moat_status_iso_time(st->time_unix_s, date) == MOAT_OK)
            put_str(&w, "time", date);
        moat_json_put_uint(&w, "reconnects", st->reconnects);
    }
    moat_json_end_object(&w);
    return moat_json_finish(&w, len);
}

moat_err moat_result_json(char *buf, size_t cap, bool ok, const char *error, size_t *len)
{
    moat_json_writer w;

    moat_json_writer_init(&w, buf, cap);
    moat_json_begin_object(&w, NULL);
    moat_json_put_bool(&w, "ok", ok);
    if (!ok)
        put_error(&w, "error", error);
    moat_json_end_object(&w);
    return moat_json_finish(&w, len);
}
