/*
 * fuzz_command.c - libFuzzer harness for the command path of the agent:
 * the zone payload parser (moat_zones_parse_payload), command dispatch
 * (moat_command_dispatch) with arbitrary names and payloads, the zone
 * controller behind the "zone" command, and JSON escaping of arbitrary bytes
 * in result and status documents.
 *
 * Input layout (missing bytes read as 0):
 *   byte 0   zones config: count = (b & 7) + 1, bit 3 not exclusive,
 *            bit 4 the relay driver fails its next write, bits 5-7 pick
 *            the maximum run time
 *   byte 1   name length n (mod 48), then n bytes of command name
 *   rest     the payload
 *
 * Oracles, besides ASan/UBSan on exactly sized copies of name and payload:
 *  - the parser accepts only the documented forms: "off", "<digits> off",
 *    "<digits> <digits>" or a text starting with '{'; it gives a zone in
 *    0..count and always words on failure, none on success;
 *  - dispatch returns a documented value and, unless deferred, a result
 *    document that is exactly {"ok":true} or {"ok":false,"error":"<valid
 *    JSON string>"} (valid UTF-8, no raw control character or quote);
 *  - the zones stay within count, at most one on when exclusive, the relays
 *    show what the controller believes, and everything is off after the
 *    longest run time or a driver fault;
 *  - the status document with the payload as errormessage stays valid JSON
 *    text in that field and fits MOAT_STATUS_JSON_MAX.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moat/command.h"
#include "moat/status.h"
#include "moat/zones.h"

#include "fuzz_check.h"

typedef struct relays {
    uint8_t shown;
    bool fail_next;
} relays;

static moat_err relay_set(void *ctx, uint8_t bitmap)
{
    relays *r = ctx;
    if (r->fail_next) {
        r->fail_next = false;
        return MOAT_ERR_IO;
    }
    r->shown = bitmap;
    return MOAT_OK;
}

typedef struct world {
    moat_zones z;
    relays r;
    uint32_t now;
} world;

static moat_err zone_cmd(const moat_command *self, void *user, const uint8_t *payload,
                         size_t len, char *why, size_t why_cap)
{
    world *w = user;
    moat_err e;
    (void)self;
    e = moat_zones_apply_payload(&w->z, payload, len, w->now);
    if (e != MOAT_OK) {
        CHECK(moat_zones_error(&w->z)[0] != '\0');
        strncpy(why, moat_zones_error(&w->z), why_cap - 1);
    } else {
        CHECK(moat_zones_error(&w->z)[0] == '\0');
    }
    return e;
}

static moat_err later(const moat_command *self, void *user, const uint8_t *payload,
                      size_t len, char *why, size_t why_cap)
{
    (void)self, (void)user, (void)why, (void)why_cap;
    return len > 0 && payload[0] == 'L' ? MOAT_ERR_WOULD_BLOCK : MOAT_OK;
}

static const moat_command table[] = {
    {"zone", zone_cmd, 64},
    {"config", later, 4096},
    {"status", later, 0},
    {"reboot", later, 0},
    {"firmware", moat_command_not_supported, 0},
    {"key", moat_command_not_supported, 0},
};

/* Length of the valid UTF-8 sequence at s, 0 if invalid (reference version,
 * written from RFC 3629's table). */
static size_t utf8_len(const uint8_t *s, size_t n)
{
    uint32_t cp;
    size_t k, i;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0) k = 2, cp = s[0] & 0x1Fu;
    else if ((s[0] & 0xF0) == 0xE0) k = 3, cp = s[0] & 0x0Fu;
    else if ((s[0] & 0xF8) == 0xF0) k = 4, cp = s[0] & 0x07u;
    else return 0;
    if (n < k)
        return 0;
    for (i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return k;
}

/* s[0..n) is a JSON string body: valid UTF-8, no raw control or quote,
 * only the escapes moat writes. */
static void check_json_string_body(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_len(s + i, n - i);
        CHECK(k > 0);
        CHECK(s[i] >= 0x20 && s[i] != '"');
        if (s[i] == '\\') {
            CHECK(i + 1 < n);
            if (s[i + 1] == 'u') {
                CHECK(i + 5 < n && s[i + 2] == '0' && s[i + 3] == '0');
                i += 6;
                continue;
            }
            CHECK(strchr("\"\\bfnrt", s[i + 1]) != NULL && s[i + 1] != '\0');
            i += 2;
            continue;
        }
        i += k;
    }
}

static void check_result(const char *r, size_t len)
{
    static const char head[] = "{\"ok\":false,\"error\":\"";
    CHECK(strlen(r) == len);
    if (strcmp(r, "{\"ok\":true}") == 0)
        return;
    CHECK(len >= sizeof head + 1 && memcmp(r, head, sizeof head - 1) == 0);
    CHECK(r[len - 2] == '"' && r[len - 1] == '}');
    check_json_string_body((const uint8_t *)r + sizeof head - 1, len - (sizeof head - 1) - 2);
}

static bool all_digits(const uint8_t *p, size_t n)
{
    size_t i;
    if (n == 0)
        return false;
    for (i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

/* The text forms the header documents. */
static bool text_form(const uint8_t *p, size_t n)
{
    const uint8_t *sp = memchr(p, ' ', n);
    size_t a, b;
    if (n == 3 && memcmp(p, "off", 3) == 0)
        return true;
    if (sp == NULL)
        return false;
    a = (size_t)(sp - p);
    b = n - a - 1;
    return all_digits(p, a) &&
           (all_digits(sp + 1, b) || (b == 3 && memcmp(sp + 1, "off", 3) == 0));
}

static void check_zones(const world *w)
{
    uint8_t on = moat_zones_bitmap(&w->z);
    char doc[MOAT_ZONES_JSON_MAX];
    size_t len;
    CHECK((on & ~((1u << w->z.count) - 1u)) == 0);
    if (w->z.exclusive)
        CHECK((on & (on - 1u)) == 0);
    if (!moat_zones_fault(&w->z))
        CHECK(w->r.shown == on);
    else
        CHECK(on == 0);
    CHECK(moat_zones_to_json(&w->z, w->now, doc, sizeof doc, &len) == MOAT_OK);
    CHECK(len == strlen(doc) && doc[0] == '{' && doc[len - 1] == '}');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t max_s[8] = {0, 1, 60, 600, 3600, 7200, 43200, 86400};
    uint8_t b0 = size > 0 ? data[0] : 0;
    size_t nlen = size > 1 ? data[1] % 48u : 0, off = 2, plen;
    char *name, *err;
    uint8_t *payload;
    char result[MOAT_RESULT_JSON_MAX], why[MOAT_ZONES_ERROR_MAX], status[MOAT_STATUS_JSON_MAX];
    moat_zones_config cfg;
    moat_relay_driver drv;
    moat_status st;
    world w;
    size_t rlen, slen;
    uint8_t zone = 0xEE;
    uint32_t seconds = 0xEEEEEEEE;
    moat_err e;

    if (nlen > (size > off ? size - off : 0))
        nlen = size > off ? size - off : 0;
    name = malloc(nlen ? nlen : 1);
    CHECK(name != NULL);
    if (nlen)
        memcpy(name, data + off, nlen);
    off += nlen;
    plen = size > off ? size - off : 0;
    payload = malloc(plen ? plen : 1);
    CHECK(payload != NULL);
    if (plen)
        memcpy(payload, data + off, plen);

    memset(&w, 0, sizeof w);
    memset(&cfg, 0, sizeof cfg);
    cfg.count = (uint8_t)((b0 & 7u) + 1u);
    cfg.not_exclusive = (b0 & 8u) != 0;
    cfg.max_s = max_s[b0 >> 5];
    drv.set = relay_set;
    drv.ctx = &w.r;
    w.now = 0xFFFFF000u; /* runs cross the wrap of now_ms */
    CHECK(moat_zones_init(&w.z, &cfg, &drv) == MOAT_OK);
    CHECK(w.r.shown == 0 && moat_zones_bitmap(&w.z) == 0);
    w.r.fail_next = (b0 & 16u) != 0;

    /* the parser alone */
    e = moat_zones_parse_payload(payload, plen, cfg.count, &zone, &seconds, why, sizeof why);
    if (e == MOAT_OK) {
        CHECK(why[0] == '\0');
        CHECK(zone <= cfg.count);
        CHECK(plen > 0 && (payload[0] == '{' || text_form(payload, plen)));
    } else {
        CHECK(e == MOAT_ERR_MALFORMED || e == MOAT_ERR_ARG);
        CHECK(why[0] != '\0' && strlen(why) < sizeof why);
    }

    /* dispatch: the "zone" entry runs the controller */
    e = moat_command_dispatch(table, sizeof table / sizeof table[0], &w, name, nlen, payload,
                              plen, result, sizeof result, &rlen);
    CHECK(e == MOAT_OK || e == MOAT_ERR_TOPIC || e == MOAT_ERR_ARG || e == MOAT_ERR_TOO_LARGE ||
          e == MOAT_ERR_WOULD_BLOCK || e == MOAT_ERR_MALFORMED || e == MOAT_ERR_STATE ||
          e == MOAT_ERR_IO);
    if (e == MOAT_ERR_WOULD_BLOCK)
        CHECK(rlen == 0);
    else
        check_result(result, rlen);
    CHECK((e == MOAT_OK) == (e != MOAT_ERR_WOULD_BLOCK && strcmp(result, "{\"ok\":true}") == 0));
    if (nlen == 4 && memcmp(name, "zone", 4) == 0 && plen <= 64) {
        uint32_t limit = cfg.max_s ? cfg.max_s : MOAT_ZONES_DEFAULT_MAX_S;
        bool good = moat_zones_parse_payload(payload, plen, cfg.count, &zone, &seconds, NULL,
                                             0) == MOAT_OK && seconds <= limit;
        if (!good)
            CHECK(e == MOAT_ERR_MALFORMED || e == MOAT_ERR_ARG);
        else if (b0 & 16u)
            CHECK(e == MOAT_ERR_IO && moat_zones_fault(&w.z) && moat_zones_bitmap(&w.z) == 0);
        else
            CHECK(e == MOAT_OK && moat_zones_remaining_s(&w.z, zone, w.now) == seconds &&
                  (seconds == 0) == (zone == 0 || !(moat_zones_bitmap(&w.z) & (1u << (zone - 1)))));
    }
    check_zones(&w);

    /* time passes: every run ends by its maximum, and nothing before that
     * is left unscheduled */
    if (moat_zones_bitmap(&w.z) != 0)
        CHECK(moat_zones_next_timeout(&w.z, w.now) <= 86400000u);
    w.now += 86400000u;
    CHECK(moat_zones_tick(&w.z, w.now) == MOAT_OK);
    CHECK(moat_zones_bitmap(&w.z) == 0 && w.r.shown == 0);
    CHECK(moat_zones_next_timeout(&w.z, w.now) == UINT32_MAX);
    check_zones(&w);

    /* the payload as an error message, in a status and a result */
    err = malloc(plen + 1);
    CHECK(err != NULL);
    if (plen)
        memcpy(err, payload, plen);
    err[plen] = '\0';
    memset(&st, 0, sizeof st);
    st.error = err;
    st.name = name[0] && nlen ? "n" : "";
    CHECK(moat_status_json(&st, MOAT_STATUS_FULL, status, sizeof status, &slen) == MOAT_OK);
    {
        const char *f = strstr(status, "\"errormessage\":\"");
        const char *end;
        CHECK(f != NULL);
        f += strlen("\"errormessage\":\"");
        end = strstr(f, "\",\"deviceid\":");
        CHECK(end != NULL);
        check_json_string_body((const uint8_t *)f, (size_t)(end - f));
    }
    CHECK(moat_result_json(result, sizeof result, false, err, &rlen) == MOAT_OK);
    check_result(result, rlen);

    free(err);
    free(payload);
    free(name);
    return 0;
}
