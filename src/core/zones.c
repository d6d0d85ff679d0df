/*
 * zones.c - the irrigation zone controller (moat/zones.h): logical zone
 * state, run timers, exclusivity, the relay driver write with fault handling,
 * the zone payload parser (seed text and JSON) and the zones document.
 */
#include "moat/zones.h"

#include "mem.h"
#include "strbuf.h"
#include "moat/json.h"
#include "moat/timer.h"


/* ------------------------------------------------------------- words -- */

static void say(moat_zones *z, const char *text)
{
    moat_sb_say(z->error, sizeof z->error, text, 0, NULL, 0, NULL);
}

static void say_no_zone(char *why, size_t cap, uint32_t zone, uint8_t count)
{
    moat_sb_say(why, cap, "zone ", zone, " does not exist (zones are 1 to ", count, ")");
}

/* ------------------------------------------------------------- relays -- */

static uint8_t all_bits(uint8_t count)
{
    return (uint8_t)((1u << count) - 1u);
}

static void stop_timers(moat_zones *z, uint8_t keep)
{
    uint8_t i;
    for (i = 0; i < MOAT_ZONES_MAX; i++)
        if (!(keep & (1u << i)))
            z->run_ms[i] = 0;
}

/* Write bitmap to the relays. On failure: all off, fault, words. */
static moat_err relay_write(moat_zones *z, uint8_t bitmap)
{
    moat_err e = z->driver.set(z->driver.ctx, bitmap);
    moat_sb sb;

    if (e == MOAT_OK) {
        if (z->on != bitmap)
            z->changed = true;
        z->on = bitmap;
        z->fault = false;
        stop_timers(z, bitmap);
        return MOAT_OK;
    }
    if (e > 0)
        e = MOAT_ERR_IO; /* a driver that broke its contract is still a fault */
    z->fault = true;
    z->on = 0;
    z->changed = true;
    stop_timers(z, 0);
    (void)z->driver.set(z->driver.ctx, 0); /* best effort: water must stop */
    moat_sb_init(&sb, z->error, sizeof z->error);
    moat_sb_str(&sb, "relay driver failed (");
    moat_sb_str(&sb, moat_strerror(e));
    moat_sb_str(&sb, "): all zones off");
    moat_sb_words(&sb);
    return e;
}

/* ------------------------------------------------------------ control -- */

moat_err moat_zones_init(moat_zones *z, const moat_zones_config *cfg,
                         const moat_relay_driver *driver)
{
    uint32_t max_s;
    uint8_t i, count;

    if (z == NULL)
        return MOAT_ERR_ARG;
    memset(z, 0, sizeof *z);
    if (cfg == NULL || driver == NULL || driver->set == NULL) {
        say(z, "zones: no configuration or no relay driver");
        return MOAT_ERR_ARG;
    }
    count = cfg->count ? cfg->count : MOAT_ZONES_MAX;
    if (count > MOAT_ZONES_MAX) {
        moat_sb_say(z->error, sizeof z->error, "zones: count ", count,
              " is over the 8 relays", 0, NULL);
        return MOAT_ERR_ARG;
    }
    max_s = cfg->max_s ? cfg->max_s : MOAT_ZONES_DEFAULT_MAX_S;
    for (i = 0; i < count; i++) {
        uint32_t m = cfg->zone_max_s[i] ? cfg->zone_max_s[i] : max_s;
        if (m > MOAT_ZONES_LIMIT_S) {
            moat_sb_say(z->error, sizeof z->error, "zone ", i + 1u,
                  ": maximum run time over the limit of 86400 seconds", 0, NULL);
            memset(z->max_ms, 0, sizeof z->max_ms);
            return MOAT_ERR_ARG;
        }
        z->max_ms[i] = m * 1000u;
    }
    z->driver = *driver;
    z->count = count;
    z->exclusive = !cfg->not_exclusive;
    z->changed = true;
    return relay_write(z, 0);
}

moat_err moat_zones_command(moat_zones *z, uint8_t zone, uint32_t seconds,
                            uint32_t now_ms)
{
    uint8_t bit, next;

    z->error[0] = '\0';
    if (zone == 0) {
        if (seconds != 0) {
            say(z, "zone 0 (all zones) can only be switched off");
            return MOAT_ERR_ARG;
        }
        z->changed = true;
        return relay_write(z, 0);
    }
    if (zone > z->count) {
        say_no_zone(z->error, sizeof z->error, zone, z->count);
        return MOAT_ERR_ARG;
    }
    bit = (uint8_t)(1u << (zone - 1u));
    if (seconds == 0) {
        next = (uint8_t)(z->on & ~bit);
    } else {
        uint32_t max_s = z->max_ms[zone - 1u] / 1000u;
        if (seconds > max_s) {
            moat_sb sb;
            moat_sb_init(&sb, z->error, sizeof z->error);
            moat_sb_str(&sb, "zone ");
            moat_sb_u64(&sb, zone);
            moat_sb_str(&sb, ": ");
            moat_sb_u64(&sb, seconds);
            moat_sb_str(&sb, " seconds is over the maximum of ");
            moat_sb_u64(&sb, max_s);
            moat_sb_words(&sb);
            return MOAT_ERR_ARG;
        }
        next = z->exclusive ? bit : (uint8_t)(z->on | bit);
    }
    z->changed = true; /* even a repeat: the operator sees the new remaining */
    if (seconds != 0) {
        z->start_ms[zone - 1u] = now_ms;
        z->run_ms[zone - 1u] = seconds * 1000u;
    }
    return relay_write(z, (uint8_t)(next & all_bits(z->count)));
}

moat_err moat_zones_all_off(moat_zones *z, uint32_t now_ms)
{
    return moat_zones_command(z, 0, 0, now_ms);
}

moat_err moat_zones_tick(moat_zones *z, uint32_t now_ms)
{
    uint8_t i, done = 0;

    z->error[0] = '\0';
    for (i = 0; i < z->count; i++)
        if ((z->on & (1u << i)) && moat_elapsed(z->start_ms[i], now_ms) >= z->run_ms[i])
            done |= (uint8_t)(1u << i);
    if (done == 0)
        return MOAT_OK;
    return relay_write(z, (uint8_t)(z->on & ~done));
}

uint32_t moat_zones_next_timeout(const moat_zones *z, uint32_t now_ms)
{
    uint32_t best = UINT32_MAX;
    uint8_t i;

    for (i = 0; i < z->count; i++) {
        if (z->on & (1u << i)) {
            uint32_t e = moat_elapsed(z->start_ms[i], now_ms);
            uint32_t left = e >= z->run_ms[i] ? 0 : z->run_ms[i] - e;
            if (left < best)
                best = left;
        }
    }
    return best;
}

bool moat_zones_take_changed(moat_zones *z)
{
    bool c = z->changed;
    z->changed = false;
    return c;
}

uint8_t moat_zones_bitmap(const moat_zones *z)
{
    return z->on;
}

uint32_t moat_zones_remaining_s(const moat_zones *z, uint8_t zone, uint32_t now_ms)
{
    uint32_t e, left;

    if (zone == 0 || zone > z->count || !(z->on & (1u << (zone - 1u))))
        return 0;
    e = moat_elapsed(z->start_ms[zone - 1u], now_ms);
    left = e >= z->run_ms[zone - 1u] ? 0 : z->run_ms[zone - 1u] - e;
    return left / 1000u + (left % 1000u != 0);
}

bool moat_zones_fault(const moat_zones *z)
{
    return z->fault;
}

const char *moat_zones_error(const moat_zones *z)
{
    return z->error;
}

moat_err moat_zones_to_json(const moat_zones *z, uint32_t now_ms, char *buf, size_t cap,
                            size_t *len)
{
    moat_json_writer w;
    uint8_t i;

    moat_json_writer_init(&w, buf, cap);
    moat_json_begin_object(&w, NULL);
    moat_json_begin_array(&w, "zones");
    for (i = 1; i <= z->count; i++) {
        moat_json_begin_object(&w, NULL);
        moat_json_put_uint(&w, "zone", i);
        moat_json_put_bool(&w, "on", (z->on & (1u << (i - 1u))) != 0);
        moat_json_put_uint(&w, "remaining", moat_zones_remaining_s(z, i, now_ms));
        moat_json_end_object(&w);
    }
    moat_json_end_array(&w);
    moat_json_put_bool(&w, "exclusive", z->exclusive);
    moat_json_put_bool(&w, "fault", z->fault);
    moat_json_end_object(&w);
    return moat_json_finish(&w, len);
}

/* ------------------------------------------------------------ payload -- */

#define SYNTAX "zone payload: expected \"<zone> <seconds>\", \"<zone> off\", " \
               "\"off\" or JSON {\"zone\":N,\"seconds\":S}"

/* Unsigned decimal p[0..n), n >= 1, all digits. False when over UINT32_MAX. */
static bool parse_u32(const uint8_t *p, size_t n, uint32_t *out)
{
    uint32_t v = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        uint32_t d = (uint32_t)(p[i] - '0');
        if (v > (UINT32_MAX - d) / 10u)
            return false;
        v = v * 10u + d;
    }
    *out = v;
    return true;
}

static size_t digits(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9')
        i++;
    return i;
}

static bool equals(const uint8_t *p, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(p, s, n) == 0;
}

static moat_err check_zone(uint32_t zone, uint8_t count, char *why, size_t cap)
{
    if (zone == 0 || zone > count) {
        say_no_zone(why, cap, zone, count);
        return MOAT_ERR_ARG;
    }
    return MOAT_OK;
}

static moat_err too_large(char *why, size_t cap)
{
    moat_sb_say(why, cap, "zone payload: number too large (over 4294967295)", 0, NULL, 0, NULL);
    return MOAT_ERR_ARG;
}

static moat_err malformed(char *why, size_t cap, const char *text)
{
    moat_sb_say(why, cap, text, 0, NULL, 0, NULL);
    return MOAT_ERR_MALFORMED;
}

/* "<zone> <seconds>", "<zone> off", "off" */
static moat_err parse_text(const uint8_t *p, size_t n, uint8_t count, uint8_t *zone,
                           uint32_t *seconds, char *why, size_t cap)
{
    size_t a, b;
    uint32_t zv, sv = 0;
    moat_err e;

    if (equals(p, n, "off")) {
        *zone = 0;
        *seconds = 0;
        return MOAT_OK;
    }
    a = digits(p, n);
    if (a == 0 || a + 1 >= n || p[a] != ' ')
        return malformed(why, cap, SYNTAX);
    b = digits(p + a + 1, n - a - 1);
    if (!(b == n - a - 1 || equals(p + a + 1, n - a - 1, "off")))
        return malformed(why, cap, SYNTAX);
    if (!parse_u32(p, a, &zv) || (b != 0 && !parse_u32(p + a + 1, b, &sv)))
        return too_large(why, cap);
    if ((e = check_zone(zv, count, why, cap)) != MOAT_OK)
        return e;
    *zone = (uint8_t)zv;
    *seconds = sv;
    return MOAT_OK;
}

/* A member's unsigned integer: digits only (JSON has no leading zeros).
 * 1 = ok, 0 = not such a number, -1 = too large. */
static int json_uint(const moat_json *doc, int i, uint32_t *out)
{
    size_t n;
    const char *raw = moat_json_raw(doc, i, &n);
    int64_t v;
    if (moat_json_type_of(doc, i) != MOAT_JSON_NUMBER || digits((const uint8_t *)raw, n) != n)
        return 0;
    if (moat_json_get_int(doc, i, 0, UINT32_MAX, &v) != MOAT_OK)
        return -1;
    *out = (uint32_t)v;
    return 1;
}

#define NOT_OBJECT "zone payload: not a JSON object of zone, seconds or off"

/* {"zone":N,"seconds":S}, {"zone":N,"off":true}, {"off":true} */
static moat_err parse_json(const uint8_t *p, size_t n, uint8_t count, uint8_t *zone,
                           uint32_t *seconds, char *why, size_t cap)
{
    moat_json_tok tok[8];
    moat_json doc;
    int it = 0, k, v, r;
    bool has_zone = false, has_seconds = false, has_off = false, off;
    uint32_t zv = 0, sv = 0;
    moat_err e;

    e = moat_json_parse(&doc, (const char *)p, n, tok, sizeof tok / sizeof tok[0], NULL);
    if (e == MOAT_ERR_NO_SPACE)
        return malformed(why, cap, "zone payload: too many values in JSON "
                                   "(keys are zone, seconds, off)");
    if (e != MOAT_OK)
        return malformed(why, cap, "zone payload: not valid JSON");
    if (p[n - 1] != '}') /* strict, as the text forms: nothing after the object */
        return malformed(why, cap, "zone payload: data after the JSON object");
    if (moat_json_type_of(&doc, 0) != MOAT_JSON_OBJECT)
        return malformed(why, cap, NOT_OBJECT);
    while (moat_json_next(&doc, 0, &it, &k, &v)) {
        bool is_zone = moat_json_eq(&doc, k, "zone");
        if (is_zone || moat_json_eq(&doc, k, "seconds")) {
            bool *seen = is_zone ? &has_zone : &has_seconds;
            if (*seen)
                return malformed(why, cap, is_zone ? "zone payload: duplicate key \"zone\""
                                                   : "zone payload: duplicate key \"seconds\"");
            *seen = true;
            r = json_uint(&doc, v, is_zone ? &zv : &sv);
            if (r == 0)
                return malformed(why, cap, is_zone
                                 ? "zone payload: \"zone\" must be an unsigned integer"
                                 : "zone payload: \"seconds\" must be an unsigned integer");
            if (r < 0)
                return too_large(why, cap);
        } else if (moat_json_eq(&doc, k, "off")) {
            if (has_off)
                return malformed(why, cap, "zone payload: duplicate key \"off\"");
            has_off = true;
            if (moat_json_get_bool(&doc, v, &off) != MOAT_OK || !off)
                return malformed(why, cap, "zone payload: \"off\" must be true");
        } else {
            return malformed(why, cap, "zone payload: unknown key in JSON "
                                       "(keys are zone, seconds, off)");
        }
    }
    if (has_seconds && has_off)
        return malformed(why, cap, "zone payload: give \"seconds\" or \"off\", not both");
    if (!has_zone && !has_off)
        return malformed(why, cap, "zone payload: \"zone\" is missing");
    if (!has_seconds && !has_off)
        return malformed(why, cap, "zone payload: give \"seconds\" or \"off\"");
    if (has_zone && (e = check_zone(zv, count, why, cap)) != MOAT_OK)
        return e;
    *zone = (uint8_t)zv;
    *seconds = has_off ? 0 : sv;
    return MOAT_OK;
}

moat_err moat_zones_parse_payload(const uint8_t *payload, size_t len, uint8_t count,
                                  uint8_t *zone, uint32_t *seconds,
                                  char *why, size_t why_cap)
{
    if (why != NULL && why_cap > 0)
        why[0] = '\0';
    if (count == 0 || count > MOAT_ZONES_MAX)
        count = MOAT_ZONES_MAX;
    if (zone == NULL || seconds == NULL || (payload == NULL && len > 0))
        return malformed(why, why_cap, "zone payload: invalid argument");
    if (len == 0)
        return malformed(why, why_cap, "zone payload is empty");
    if (payload[0] == '{')
        return parse_json(payload, len, count, zone, seconds, why, why_cap);
    return parse_text(payload, len, count, zone, seconds, why, why_cap);
}

moat_err moat_zones_apply_payload(moat_zones *z, const uint8_t *payload, size_t len,
                                  uint32_t now_ms)
{
    uint8_t zone;
    uint32_t seconds;
    moat_err e = moat_zones_parse_payload(payload, len, z->count, &zone, &seconds,
                                          z->error, sizeof z->error);
    if (e != MOAT_OK)
        return e;
    return moat_zones_command(z, zone, seconds, now_ms);
}
