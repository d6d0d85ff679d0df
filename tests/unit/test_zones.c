/*
 * test_zones.c - the zone controller (moat/zones.h): relay writes through a
 * recording fake driver, run timers on a fake clock (no sleeps, across the
 * 32-bit wrap), exclusivity, maximum run time, faults, the zones document,
 * and the payload parser with its exact words.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/zones.h"

/* ---- a relay driver that records every write and fails on demand ---- */

typedef struct fake_relays {
    uint8_t writes[64];
    size_t n;
    uint8_t relays;    /* what the board shows */
    int fail_next;     /* fail this many writes */
    moat_err fail_with;
} fake_relays;

static moat_err fake_set(void *ctx, uint8_t bitmap)
{
    fake_relays *f = ctx;
    if (f->n < sizeof f->writes)
        f->writes[f->n] = bitmap;
    f->n++;
    if (f->fail_next > 0) {
        f->fail_next--;
        return f->fail_with;
    }
    f->relays = bitmap;
    return MOAT_OK;
}

static fake_relays relays;
static moat_zones z;

static void setup_cfg(const moat_zones_config *cfg)
{
    moat_relay_driver d = {fake_set, &relays};
    memset(&relays, 0, sizeof relays);
    relays.relays = 0xFF; /* power-on garbage: init must clear it */
    relays.fail_with = MOAT_ERR_IO;
    assert_int_equal(moat_zones_init(&z, cfg, &d), MOAT_OK);
    assert_true(moat_zones_take_changed(&z));
}

static void setup8(void)
{
    moat_zones_config cfg = {0};
    setup_cfg(&cfg);
}

static void cmd_ok(uint8_t zone, uint32_t s, uint32_t now)
{
    assert_int_equal(moat_zones_command(&z, zone, s, now), MOAT_OK);
    assert_string_equal(moat_zones_error(&z), "");
}

/* ---- control ---------------------------------------------------------- */

static void all_off_at_start(void **state)
{
    (void)state;
    setup8();
    assert_int_equal(relays.n, 1);
    assert_int_equal(relays.writes[0], 0x00);
    assert_int_equal(relays.relays, 0x00);
    assert_int_equal(moat_zones_bitmap(&z), 0);
    assert_int_equal(moat_zones_next_timeout(&z, 0), UINT32_MAX);
    assert_false(moat_zones_fault(&z));
}

static void init_refuses_bad_config(void **state)
{
    moat_relay_driver d = {fake_set, &relays}, none = {NULL, NULL};
    moat_zones_config cfg = {0};
    (void)state;
    memset(&relays, 0, sizeof relays);

    cfg.count = 9;
    assert_int_equal(moat_zones_init(&z, &cfg, &d), MOAT_ERR_ARG);
    assert_string_equal(moat_zones_error(&z), "zones: count 9 is over the 8 relays");
    cfg.count = 8;
    cfg.zone_max_s[7] = 86401;
    assert_int_equal(moat_zones_init(&z, &cfg, &d), MOAT_ERR_ARG);
    assert_string_equal(moat_zones_error(&z),
                        "zone 8: maximum run time over the limit of 86400 seconds");
    cfg.zone_max_s[7] = 0;
    cfg.max_s = 86401;
    assert_int_equal(moat_zones_init(&z, &cfg, &d), MOAT_ERR_ARG);
    assert_int_equal(moat_zones_init(&z, NULL, &d), MOAT_ERR_ARG);
    assert_int_equal(moat_zones_init(&z, &cfg, &none), MOAT_ERR_ARG);
    assert_string_equal(moat_zones_error(&z), "zones: no configuration or no relay driver");
    assert_int_equal(moat_zones_init(&z, &cfg, NULL), MOAT_ERR_ARG);
    assert_int_equal(relays.n, 0); /* nothing written on a refused config */

    cfg.max_s = 86400; /* the limit itself is allowed */
    assert_int_equal(moat_zones_init(&z, &cfg, &d), MOAT_OK);
}

static void on_runs_for_its_time(void **state)
{
    (void)state;
    setup8();
    cmd_ok(3, 60, 1000);
    assert_int_equal(relays.relays, 0x04);
    assert_true(moat_zones_take_changed(&z));
    assert_false(moat_zones_take_changed(&z));
    assert_int_equal(moat_zones_next_timeout(&z, 1000), 60000);
    assert_int_equal(moat_zones_remaining_s(&z, 3, 1000), 60);
    assert_int_equal(moat_zones_remaining_s(&z, 3, 1001), 60); /* rounded up */
    assert_int_equal(moat_zones_remaining_s(&z, 3, 2000), 59);

    assert_int_equal(moat_zones_tick(&z, 60999), MOAT_OK);
    assert_int_equal(relays.relays, 0x04);
    assert_false(moat_zones_take_changed(&z));
    assert_int_equal(moat_zones_next_timeout(&z, 60999), 1);
    assert_int_equal(moat_zones_remaining_s(&z, 3, 60999), 1);

    assert_int_equal(moat_zones_tick(&z, 61000), MOAT_OK);
    assert_int_equal(relays.relays, 0x00);
    assert_true(moat_zones_take_changed(&z));
    assert_int_equal(moat_zones_next_timeout(&z, 61000), UINT32_MAX);
    assert_int_equal(moat_zones_remaining_s(&z, 3, 61000), 0);
    /* a late tick does nothing more */
    relays.n = 0;
    assert_int_equal(moat_zones_tick(&z, 90000), MOAT_OK);
    assert_int_equal(relays.n, 0);
}

static void late_tick_still_stops(void **state)
{
    (void)state;
    setup8();
    cmd_ok(1, 10, 0);
    assert_int_equal(moat_zones_next_timeout(&z, 50000), 0);
    assert_int_equal(moat_zones_tick(&z, 50000), MOAT_OK);
    assert_int_equal(relays.relays, 0);
}

static void timers_wrap(void **state)
{
    uint32_t start = UINT32_MAX - 5000; /* 5 s before now_ms wraps */
    (void)state;
    setup8();
    cmd_ok(2, 30, start);
    assert_int_equal(moat_zones_next_timeout(&z, start + 10000u), 20000);
    assert_int_equal(moat_zones_tick(&z, start + 29999u), MOAT_OK);
    assert_int_equal(relays.relays, 0x02);
    assert_int_equal(moat_zones_tick(&z, start + 30000u), MOAT_OK); /* = 24994 */
    assert_int_equal(relays.relays, 0x00);
}

static void exclusive_start_stops_others_in_one_write(void **state)
{
    (void)state;
    setup8();
    cmd_ok(1, 100, 0);
    relays.n = 0;
    cmd_ok(5, 100, 10);
    assert_int_equal(relays.n, 1); /* never two zones on, not even briefly */
    assert_int_equal(relays.writes[0], 0x10);
    assert_int_equal(moat_zones_remaining_s(&z, 1, 10), 0);
    /* zone 1's old timer must not switch zone 5 off */
    assert_int_equal(moat_zones_tick(&z, 100000), MOAT_OK);
    assert_int_equal(relays.relays, 0x10);
    assert_int_equal(moat_zones_tick(&z, 100010), MOAT_OK);
    assert_int_equal(relays.relays, 0x00);
}

static void not_exclusive_runs_together(void **state)
{
    moat_zones_config cfg = {0};
    (void)state;
    cfg.count = 4;
    cfg.not_exclusive = true;
    setup_cfg(&cfg);
    cmd_ok(1, 10, 0);
    cmd_ok(4, 20, 0);
    assert_int_equal(relays.relays, 0x09);
    assert_int_equal(moat_zones_next_timeout(&z, 0), 10000);
    assert_int_equal(moat_zones_tick(&z, 10000), MOAT_OK);
    assert_int_equal(relays.relays, 0x08);
    assert_int_equal(moat_zones_next_timeout(&z, 10000), 10000);
    cmd_ok(4, 0, 12000); /* off */
    assert_int_equal(relays.relays, 0x00);
}

static void restart_extends(void **state)
{
    (void)state;
    setup8();
    cmd_ok(2, 10, 0);
    cmd_ok(2, 10, 8000);
    assert_int_equal(moat_zones_tick(&z, 10000), MOAT_OK);
    assert_int_equal(relays.relays, 0x02);
    assert_int_equal(moat_zones_tick(&z, 18000), MOAT_OK);
    assert_int_equal(relays.relays, 0x00);
}

static void off_and_all_off(void **state)
{
    moat_zones_config cfg = {0};
    (void)state;
    cfg.not_exclusive = true;
    setup_cfg(&cfg);
    cmd_ok(1, 10, 0);
    cmd_ok(2, 10, 0);
    cmd_ok(8, 10, 0);
    assert_int_equal(relays.relays, 0x83);
    cmd_ok(2, 0, 1);
    assert_int_equal(relays.relays, 0x81);
    assert_int_equal(moat_zones_all_off(&z, 2), MOAT_OK);
    assert_int_equal(relays.relays, 0x00);
    assert_true(moat_zones_take_changed(&z));
    /* off when already off is fine */
    cmd_ok(3, 0, 3);
    assert_int_equal(moat_zones_command(&z, 0, 5, 3), MOAT_ERR_ARG);
    assert_string_equal(moat_zones_error(&z), "zone 0 (all zones) can only be switched off");
}

static void max_run_time_refused(void **state)
{
    moat_zones_config cfg = {0};
    (void)state;
    cfg.count = 4;
    cfg.max_s = 600;
    cfg.zone_max_s[2] = 1200;
    setup_cfg(&cfg);
    cmd_ok(1, 600, 0);
    relays.n = 0;
    assert_int_equal(moat_zones_command(&z, 1, 601, 5), MOAT_ERR_ARG);
    assert_string_equal(moat_zones_error(&z), "zone 1: 601 seconds is over the maximum of 600");
    /* refused: nothing written, zone 1 keeps its first run */
    assert_int_equal(relays.n, 0);
    assert_int_equal(moat_zones_remaining_s(&z, 1, 5), 600);
    cmd_ok(3, 1200, 10);
    assert_int_equal(moat_zones_command(&z, 3, 1201, 10), MOAT_ERR_ARG);
    assert_string_equal(moat_zones_error(&z), "zone 3: 1201 seconds is over the maximum of 1200");
    assert_int_equal(moat_zones_command(&z, 2, UINT32_MAX, 10), MOAT_ERR_ARG);
    assert_string_equal(moat_zones_error(&z),
                        "zone 2: 4294967295 seconds is over the maximum of 600");
}

static void default_max_is_an_hour(void **state)
{
    (void)state;
    setup8();
    cmd_ok(1, 3600, 0);
    assert_int_equal(moat_zones_command(&z, 1, 3601, 0), MOAT_ERR_ARG);
    assert_string_equal(moat_zones_error(&z), "zone 1: 3601 seconds is over the maximum of 3600");
}

static void zone_out_of_range(void **state)
{
    moat_zones_config cfg = {0};
    (void)state;
    cfg.count = 3;
    setup_cfg(&cfg);
    relays.n = 0;
    assert_int_equal(moat_zones_command(&z, 4, 10, 0), MOAT_ERR_ARG);
    assert_string_equal(moat_zones_error(&z), "zone 4 does not exist (zones are 1 to 3)");
    assert_int_equal(moat_zones_command(&z, 255, 10, 0), MOAT_ERR_ARG);
    assert_int_equal(relays.n, 0);
    /* bits above count are never written */
    cmd_ok(3, 1, 0);
    assert_int_equal(relays.writes[0], 0x04);
}

static void driver_fault_all_off(void **state)
{
    (void)state;
    setup8();
    cmd_ok(2, 100, 0);
    relays.n = 0;
    relays.fail_next = 1;
    assert_int_equal(moat_zones_command(&z, 4, 100, 10), MOAT_ERR_IO);
    assert_string_equal(moat_zones_error(&z),
                        "relay driver failed (transport I/O error): all zones off");
    assert_true(moat_zones_fault(&z));
    assert_int_equal(moat_zones_bitmap(&z), 0);
    assert_int_equal(relays.n, 2); /* the failed write, then all off */
    assert_int_equal(relays.writes[0], 0x08);
    assert_int_equal(relays.writes[1], 0x00);
    assert_int_equal(relays.relays, 0x00);
    assert_true(moat_zones_take_changed(&z));
    assert_int_equal(moat_zones_next_timeout(&z, 10), UINT32_MAX);
    /* the next good write clears the fault */
    cmd_ok(4, 100, 20);
    assert_false(moat_zones_fault(&z));
    assert_int_equal(relays.relays, 0x08);
}

static void driver_fault_in_tick(void **state)
{
    moat_zones_config cfg = {0};
    (void)state;
    cfg.not_exclusive = true;
    setup_cfg(&cfg);
    cmd_ok(1, 10, 0);
    cmd_ok(2, 20, 0);
    relays.fail_next = 2; /* even the all-off retry fails */
    relays.fail_with = MOAT_ERR_TIMEOUT;
    assert_int_equal(moat_zones_tick(&z, 10000), MOAT_ERR_TIMEOUT);
    assert_string_equal(moat_zones_error(&z),
                        "relay driver failed (operation timed out): all zones off");
    assert_true(moat_zones_fault(&z));
    assert_int_equal(moat_zones_bitmap(&z), 0); /* no timers left to run */
    assert_int_equal(moat_zones_next_timeout(&z, 10000), UINT32_MAX);
    /* the agent can try again */
    assert_int_equal(moat_zones_all_off(&z, 10001), MOAT_OK);
    assert_int_equal(relays.relays, 0);
    assert_false(moat_zones_fault(&z));
}

static moat_err positive_set(void *ctx, uint8_t bitmap)
{
    (void)ctx;
    (void)bitmap;
    return (moat_err)1;
}

static void driver_fault_at_init(void **state)
{
    moat_relay_driver d = {fake_set, &relays}, bad = {positive_set, NULL};
    moat_zones_config cfg = {0};
    (void)state;
    memset(&relays, 0, sizeof relays);
    relays.fail_next = 1;
    relays.fail_with = MOAT_ERR_IO;
    assert_int_equal(moat_zones_init(&z, &cfg, &d), MOAT_ERR_IO);
    assert_true(moat_zones_fault(&z));
    assert_int_equal(relays.relays, 0); /* the retry cleared the board */
    cmd_ok(1, 5, 0);                    /* usable after a fault */
    /* a driver returning a positive value is a fault too */
    assert_int_equal(moat_zones_init(&z, &cfg, &bad), MOAT_ERR_IO);
}

static void zones_document(void **state)
{
    moat_zones_config cfg = {0};
    char buf[MOAT_ZONES_JSON_MAX];
    size_t len = 99;
    (void)state;
    cfg.count = 3;
    setup_cfg(&cfg);
    cmd_ok(2, 120, 500);
    assert_int_equal(moat_zones_to_json(&z, 500, buf, sizeof buf, &len), MOAT_OK);
    assert_string_equal(buf, "{\"zones\":[{\"zone\":1,\"on\":false,\"remaining\":0},"
                             "{\"zone\":2,\"on\":true,\"remaining\":120},"
                             "{\"zone\":3,\"on\":false,\"remaining\":0}],"
                             "\"exclusive\":true,\"fault\":false}");
    assert_int_equal(len, strlen(buf));
    /* exactly the size needed, and one less */
    assert_int_equal(moat_zones_to_json(&z, 500, buf, len + 1, NULL), MOAT_OK);
    assert_int_equal(moat_zones_to_json(&z, 500, buf, len, &len), MOAT_ERR_NO_SPACE);
    assert_string_equal(buf, "");
    assert_int_equal(len, 0);
    assert_int_equal(moat_zones_to_json(&z, 500, NULL, 0, NULL), MOAT_ERR_NO_SPACE);
}

static void zones_document_fits_max(void **state)
{
    moat_zones_config cfg = {0};
    char buf[MOAT_ZONES_JSON_MAX];
    uint8_t i;
    (void)state;
    cfg.not_exclusive = true;
    cfg.max_s = 86400;
    setup_cfg(&cfg);
    for (i = 1; i <= 8; i++)
        cmd_ok(i, 86400, 0);
    relays.fail_next = 0;
    z.fault = true; /* the longest document: every field at its widest */
    assert_int_equal(moat_zones_to_json(&z, 0, buf, sizeof buf, NULL), MOAT_OK);
    assert_non_null(strstr(buf, "{\"zone\":8,\"on\":true,\"remaining\":86400}"));
    assert_non_null(strstr(buf, "\"exclusive\":false,\"fault\":true}"));
}

/* ---- payloads ---------------------------------------------------------- */

#define SYNTAX "zone payload: expected \"<zone> <seconds>\", \"<zone> off\", " \
               "\"off\" or JSON {\"zone\":N,\"seconds\":S}"

static void parse_good_n(const char *p, size_t n, uint8_t count, uint8_t zone,
                         uint32_t seconds)
{
    uint8_t zz = 99;
    uint32_t ss = 99;
    char why[128] = "x";
    if (moat_zones_parse_payload((const uint8_t *)p, n, count, &zz, &ss, why,
                                 sizeof why) != MOAT_OK)
        fail_msg("'%s' refused: %s", p, why);
    assert_string_equal(why, "");
    assert_int_equal(zz, zone);
    assert_int_equal(ss, seconds);
}

static void parse_good(const char *p, uint8_t count, uint8_t zone, uint32_t seconds)
{
    parse_good_n(p, strlen(p), count, zone, seconds);
}

static void parse_bad(const char *p, size_t n, uint8_t count, moat_err e, const char *words)
{
    uint8_t zz = 99;
    uint32_t ss = 99;
    char why[160];
    moat_err got = moat_zones_parse_payload((const uint8_t *)p, n, count, &zz, &ss, why,
                                            sizeof why);
    if (got != e)
        fail_msg("'%.*s': got %d (%s), want %d", (int)n, p, got, why, e);
    if (strcmp(why, words) != 0)
        fail_msg("'%.*s': got '%s', want '%s'", (int)n, p, why, words);
}

#define BAD(p, e, w) parse_bad(p, strlen(p), 8, e, w)

static void payload_seed_text(void **state)
{
    (void)state;
    parse_good("1 60", 8, 1, 60);
    parse_good("8 3600", 8, 8, 3600);
    parse_good("3 0", 8, 3, 0);
    parse_good("3 off", 8, 3, 0);
    parse_good("off", 8, 0, 0);
    parse_good("2 4294967295", 8, 2, UINT32_MAX); /* the command refuses it */
    parse_good("02 060", 8, 2, 60);               /* as the seed's atoi() */
    parse_good("4 10", 0, 4, 10);                 /* count 0 means 8 */
}

static void payload_seed_text_bad(void **state)
{
    (void)state;
    BAD(" 1 60", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("1 60 ", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("1 60\n", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("1  60", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("1\t60", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("1 ", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("1", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("1 -60", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("-1 60", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("+1 60", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("1 6e1", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("1 60.0", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("1 0x10", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("1 OFF", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("1 offf", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("off ", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("Off", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("on", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("zone 1 60", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("", MOAT_ERR_MALFORMED, "zone payload is empty");
    BAD("0 60", MOAT_ERR_ARG, "zone 0 does not exist (zones are 1 to 8)");
    BAD("9 60", MOAT_ERR_ARG, "zone 9 does not exist (zones are 1 to 8)");
    BAD("1 4294967296", MOAT_ERR_ARG, "zone payload: number too large (over 4294967295)");
    BAD("4294967297 1", MOAT_ERR_ARG, "zone payload: number too large (over 4294967295)");
    BAD("1 99999999999999999999999999", MOAT_ERR_ARG,
        "zone payload: number too large (over 4294967295)");
    BAD("4294967295 1", MOAT_ERR_ARG, "zone 4294967295 does not exist (zones are 1 to 8)");
    parse_bad("4 10", 4, 3, MOAT_ERR_ARG, "zone 4 does not exist (zones are 1 to 3)");
    /* an embedded NUL is garbage, and nothing past len is read */
    parse_bad("1 6\0" "0", 5, 8, MOAT_ERR_MALFORMED, SYNTAX);
    parse_good_n("1 600", 4, 8, 1, 60);
}

static void payload_json(void **state)
{
    (void)state;
    parse_good("{\"zone\":2,\"seconds\":120}", 8, 2, 120);
    parse_good("{\"seconds\":120,\"zone\":2}", 8, 2, 120);
    parse_good("{ \"zone\" : 2 , \"seconds\" : 0 }", 8, 2, 0);
    parse_good("{\"zone\":8,\"off\":true}", 8, 8, 0);
    parse_good("{\"off\":true}", 8, 0, 0);
    parse_good("{\"off\":true,\"zone\":1}", 8, 1, 0);
    parse_good("{\"zone\":1,\"seconds\":4294967295}", 8, 1, UINT32_MAX);
    parse_good("{\"zo\\u006ee\":1,\"seconds\":7}", 8, 1, 7); /* keys are unescaped */
    parse_good("{\r\n\t\"zone\":1,\"seconds\":7\n}", 8, 1, 7);
}

#define BADJSON "zone payload: not valid JSON"
#define UNSIGNED_Z "zone payload: \"zone\" must be an unsigned integer"
#define UNSIGNED_S "zone payload: \"seconds\" must be an unsigned integer"
#define TOO_MANY "zone payload: too many values in JSON (keys are zone, seconds, off)"

static void payload_json_bad(void **state)
{
    (void)state;
    BAD("{", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{}", MOAT_ERR_MALFORMED, "zone payload: \"zone\" is missing");
    BAD("{\"zone\":2}", MOAT_ERR_MALFORMED, "zone payload: give \"seconds\" or \"off\"");
    BAD("{\"seconds\":2}", MOAT_ERR_MALFORMED, "zone payload: \"zone\" is missing");
    BAD("{\"zone\":2,\"seconds\":120} ", MOAT_ERR_MALFORMED,
        "zone payload: data after the JSON object");
    BAD("{\"zone\":2,\"seconds\":120}\n", MOAT_ERR_MALFORMED,
        "zone payload: data after the JSON object");
    BAD("{\"zone\":2,\"seconds\":120}x", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\":2,\"seconds\":120}{}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\":2,\"seconds\":120,}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{zone:2,seconds:120}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{,\"zone\":2,\"seconds\":120}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\":2,,\"seconds\":120}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\":2 \"seconds\":120}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\"::2,\"seconds\":120}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\",2,\"seconds\":120}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\":2:\"seconds\":120}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\":2,\"seconds\":120,\"off\"}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\":2,\"seconds\":12 0}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\":2,\"seconds\":120\v}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\":2,\"seconds\":120", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\":2,\"seconds\":012}", MOAT_ERR_MALFORMED, BADJSON);
    BAD("{\"zone\":2,\"seconds\":1}\xff", MOAT_ERR_MALFORMED, BADJSON);
    BAD(" {\"zone\":2,\"seconds\":120}", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("[2,120]", MOAT_ERR_MALFORMED, SYNTAX);
    BAD("{\"zone\":2,\"seconds\":{\"a\":1}}", MOAT_ERR_MALFORMED, UNSIGNED_S);
    BAD("{\"zone\":2,\"seconds\":[1]}", MOAT_ERR_MALFORMED, UNSIGNED_S);
    BAD("{\"zone\":{\"a\":[1,2,3]},\"seconds\":1}", MOAT_ERR_MALFORMED, TOO_MANY);
    BAD("{\"zone\":1,\"seconds\":1,\"off\":true,\"x\":1}", MOAT_ERR_MALFORMED, TOO_MANY);
    BAD("{\"zone\":-2,\"seconds\":120}", MOAT_ERR_MALFORMED, UNSIGNED_Z);
    BAD("{\"zone\":-0,\"seconds\":120}", MOAT_ERR_MALFORMED, UNSIGNED_Z);
    BAD("{\"zone\":\"2\",\"seconds\":120}", MOAT_ERR_MALFORMED, UNSIGNED_Z);
    BAD("{\"zone\":2,\"seconds\":1.5}", MOAT_ERR_MALFORMED, UNSIGNED_S);
    BAD("{\"zone\":2,\"seconds\":1e3}", MOAT_ERR_MALFORMED, UNSIGNED_S);
    BAD("{\"zone\":2,\"seconds\":true}", MOAT_ERR_MALFORMED, UNSIGNED_S);
    BAD("{\"zone\":2,\"seconds\":null}", MOAT_ERR_MALFORMED, UNSIGNED_S);
    BAD("{\"zone\":2,\"seconds\":4294967296}", MOAT_ERR_ARG,
        "zone payload: number too large (over 4294967295)");
    BAD("{\"zone\":2,\"seconds\":99999999999999999999999}", MOAT_ERR_ARG,
        "zone payload: number too large (over 4294967295)");
    BAD("{\"zone\":0,\"seconds\":1}", MOAT_ERR_ARG, "zone 0 does not exist (zones are 1 to 8)");
    BAD("{\"zone\":9,\"off\":true}", MOAT_ERR_ARG, "zone 9 does not exist (zones are 1 to 8)");
    BAD("{\"zone\":2,\"zone\":3,\"seconds\":1}", MOAT_ERR_MALFORMED,
        "zone payload: duplicate key \"zone\"");
    BAD("{\"zone\":2,\"seconds\":3,\"seconds\":1}", MOAT_ERR_MALFORMED,
        "zone payload: duplicate key \"seconds\"");
    BAD("{\"off\":true,\"off\":true}", MOAT_ERR_MALFORMED, "zone payload: duplicate key \"off\"");
    BAD("{\"zone\":2,\"off\":false}", MOAT_ERR_MALFORMED, "zone payload: \"off\" must be true");
    BAD("{\"zone\":2,\"off\":\"true\"}", MOAT_ERR_MALFORMED, "zone payload: \"off\" must be true");
    BAD("{\"zone\":2,\"off\":1}", MOAT_ERR_MALFORMED, "zone payload: \"off\" must be true");
    BAD("{\"zone\":2,\"seconds\":5,\"off\":true}", MOAT_ERR_MALFORMED,
        "zone payload: give \"seconds\" or \"off\", not both");
    BAD("{\"zone\":2,\"minutes\":5}", MOAT_ERR_MALFORMED,
        "zone payload: unknown key in JSON (keys are zone, seconds, off)");
    BAD("{\"Zone\":2,\"seconds\":5}", MOAT_ERR_MALFORMED,
        "zone payload: unknown key in JSON (keys are zone, seconds, off)");
    /* a NUL inside is not JSON */
    parse_bad("{\"zone\":2,\"seconds\":1}\0", 23, 8, MOAT_ERR_MALFORMED, BADJSON);
    parse_bad("{\"zone\":2,\0\"seconds\":1}", 23, 8, MOAT_ERR_MALFORMED, BADJSON);
}

static void parse_words_truncated_and_optional(void **state)
{
    char why[8];
    uint8_t zz;
    uint32_t ss;
    (void)state;
    assert_int_equal(moat_zones_parse_payload((const uint8_t *)"x", 1, 8, &zz, &ss, why,
                                              sizeof why), MOAT_ERR_MALFORMED);
    assert_string_equal(why, "zone pa");
    assert_int_equal(moat_zones_parse_payload((const uint8_t *)"x", 1, 8, &zz, &ss, NULL, 0),
                     MOAT_ERR_MALFORMED);
    assert_int_equal(moat_zones_parse_payload(NULL, 0, 8, &zz, &ss, NULL, 0),
                     MOAT_ERR_MALFORMED);
}

static void apply_payload(void **state)
{
    moat_zones_config cfg = {0};
    const char *p;
    (void)state;
    cfg.count = 4;
    cfg.max_s = 300;
    setup_cfg(&cfg);
    p = "2 120";
    assert_int_equal(moat_zones_apply_payload(&z, (const uint8_t *)p, strlen(p), 0), MOAT_OK);
    assert_string_equal(moat_zones_error(&z), "");
    assert_int_equal(relays.relays, 0x02);
    p = "{\"zone\":3,\"seconds\":301}";
    assert_int_equal(moat_zones_apply_payload(&z, (const uint8_t *)p, strlen(p), 0),
                     MOAT_ERR_ARG);
    assert_string_equal(moat_zones_error(&z), "zone 3: 301 seconds is over the maximum of 300");
    assert_int_equal(relays.relays, 0x02);
    p = "5 10";
    assert_int_equal(moat_zones_apply_payload(&z, (const uint8_t *)p, strlen(p), 0),
                     MOAT_ERR_ARG);
    assert_string_equal(moat_zones_error(&z), "zone 5 does not exist (zones are 1 to 4)");
    p = "off";
    assert_int_equal(moat_zones_apply_payload(&z, (const uint8_t *)p, strlen(p), 0), MOAT_OK);
    assert_int_equal(relays.relays, 0x00);
    assert_string_equal(moat_zones_error(&z), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(all_off_at_start),
        cmocka_unit_test(init_refuses_bad_config),
        cmocka_unit_test(on_runs_for_its_time),
        cmocka_unit_test(late_tick_still_stops),
        cmocka_unit_test(timers_wrap),
        cmocka_unit_test(exclusive_start_stops_others_in_one_write),
        cmocka_unit_test(not_exclusive_runs_together),
        cmocka_unit_test(restart_extends),
        cmocka_unit_test(off_and_all_off),
        cmocka_unit_test(max_run_time_refused),
        cmocka_unit_test(default_max_is_an_hour),
        cmocka_unit_test(zone_out_of_range),
        cmocka_unit_test(driver_fault_all_off),
        cmocka_unit_test(driver_fault_in_tick),
        cmocka_unit_test(driver_fault_at_init),
        cmocka_unit_test(zones_document),
        cmocka_unit_test(zones_document_fits_max),
        cmocka_unit_test(payload_seed_text),
        cmocka_unit_test(payload_seed_text_bad),
        cmocka_unit_test(payload_json),
        cmocka_unit_test(payload_json_bad),
        cmocka_unit_test(parse_words_truncated_and_optional),
        cmocka_unit_test(apply_payload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
