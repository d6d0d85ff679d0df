/*
 * test_status.c - the status document and result documents (moat/status.h):
 * exact bytes, the seed's field names in the seed's order, JSON escaping of
 * any bytes (control characters, quotes, invalid UTF-8), cutting long error
 * messages, ISO dates, and buffers of exactly the needed size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/status.h"

static moat_status example(void)
{
    moat_status st;
    memset(&st, 0, sizeof st);
    st.uptime_ms = 123456;
    st.max_loop_ms = 12;
    st.mqtt_ms = 3;
    st.name = "pump";
    st.image = "moat-agent";
    st.build = "2025-02-23";
    st.ip = "10.0.0.7";
    st.free_mem = 51234;
    st.error = "";
    st.device_id = "a0b1c2d3e4f5";
    st.state = "online";
    st.version = "0.3.0";
    st.slot = "a";
    st.has_cert_expiry = true;
    st.cert_expiry_unix_s = 1771804800; /* 2026-02-23T00:00:00Z */
    st.time_source = MOAT_TIME_SNTP;
    st.has_time = true;
    st.time_unix_s = 1740314096; /* 2025-02-23T12:34:56Z */
    st.reconnects = 0;
    return st;
}

#define SEED_PART                                                                        \
    "{\"uptimemillis\":123456,\"maxmillis\":12,\"mqttmillis\":3,\"espname\":\"pump\","   \
    "\"espimage\":\"moat-agent\",\"espbuild\":\"2025-02-23\",\"espip\":\"10.0.0.7\","    \
    "\"espfreeheap\":51234,\"errormessage\":\"\""

static void full_document(void **state)
{
    moat_status st = example();
    char buf[MOAT_STATUS_JSON_MAX];
    size_t len = 0;
    (void)state;
    assert_int_equal(moat_status_json(&st, MOAT_STATUS_FULL, buf, sizeof buf, &len), MOAT_OK);
    assert_string_equal(buf, SEED_PART
                        ",\"deviceid\":\"a0b1c2d3e4f5\",\"state\":\"online\","
                        "\"version\":\"0.3.0\",\"slot\":\"a\",\"certexpiry\":\"2026-02-23\","
                        "\"timesource\":\"sntp\",\"time\":\"2025-02-23T12:34:56Z\","
                        "\"reconnects\":0}");
    assert_int_equal(len, strlen(buf));
}

static void seed_document(void **state)
{
    moat_status st = example();
    char buf[MOAT_STATUS_JSON_MAX];
    (void)state;
    assert_int_equal(moat_status_json(&st, MOAT_STATUS_SEED, buf, sizeof buf, NULL), MOAT_OK);
    assert_string_equal(buf, SEED_PART "}");
}

static void optional_fields(void **state)
{
    moat_status st;
    char buf[MOAT_STATUS_JSON_MAX];
    (void)state;
    memset(&st, 0, sizeof st); /* NULL strings, nothing known */
    assert_int_equal(moat_status_json(&st, MOAT_STATUS_FULL, buf, sizeof buf, NULL), MOAT_OK);
    assert_string_equal(buf, "{\"uptimemillis\":0,\"maxmillis\":0,\"mqttmillis\":0,"
                             "\"espname\":\"\",\"espimage\":\"\",\"espbuild\":\"\","
                             "\"espip\":\"\",\"espfreeheap\":0,\"errormessage\":\"\","
                             "\"deviceid\":\"\",\"state\":\"\",\"version\":\"\",\"slot\":\"\","
                             "\"timesource\":\"none\",\"reconnects\":0}");
    st.has_rssi = true;
    st.rssi = -67;
    st.uptime_ms = UINT64_MAX;
    st.max_loop_ms = UINT32_MAX;
    st.free_mem = 8ull << 30;
    st.time_source = MOAT_TIME_SYSTEM;
    st.reconnects = UINT32_MAX;
    assert_int_equal(moat_status_json(&st, MOAT_STATUS_SEED, buf, sizeof buf, NULL), MOAT_OK);
    assert_string_equal(buf, "{\"uptimemillis\":18446744073709551615,\"maxmillis\":4294967295,"
                             "\"mqttmillis\":0,\"espname\":\"\",\"espimage\":\"\","
                             "\"espbuild\":\"\",\"espip\":\"\",\"rssi\":-67,"
                             "\"espfreeheap\":8589934592,\"errormessage\":\"\"}");
    st.rssi = INT32_MIN;
    assert_int_equal(moat_status_json(&st, MOAT_STATUS_FULL, buf, sizeof buf, NULL), MOAT_OK);
    assert_non_null(strstr(buf, ",\"rssi\":-2147483648,"));
    assert_non_null(strstr(buf, ",\"timesource\":\"system\",\"reconnects\":4294967295}"));
}

/* The errormessage value of a document built with error e. */
static const char *error_value(const char *e, char *buf, size_t cap)
{
    moat_status st;
    char *start, *end;
    memset(&st, 0, sizeof st);
    st.error = e;
    assert_int_equal(moat_status_json(&st, MOAT_STATUS_SEED, buf, cap, NULL), MOAT_OK);
    start = strstr(buf, "\"errormessage\":");
    assert_non_null(start);
    start += strlen("\"errormessage\":");
    end = buf + strlen(buf) - 1;
    assert_int_equal(*end, '}');
    *end = '\0';
    return start;
}

static void escaping(void **state)
{
    char buf[MOAT_STATUS_JSON_MAX];
    (void)state;
    assert_string_equal(error_value("say \"hi\" \\ back/slash", buf, sizeof buf),
                        "\"say \\\"hi\\\" \\\\ back/slash\"");
    assert_string_equal(error_value("\b\f\n\r\t\x01\x1f\x7f", buf, sizeof buf),
                        "\"\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\"");
    /* valid UTF-8 passes: 2, 3 and 4 bytes */
    assert_string_equal(error_value("\xc3\xa9\xe2\x82\xac\xf0\x9f\x92\xa7", buf, sizeof buf),
                        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x92\xa7\"");
    /* invalid UTF-8: each bad byte becomes U+FFFD */
    assert_string_equal(error_value("a\xff" "b", buf, sizeof buf), "\"a\xef\xbf\xbd" "b\"");
    assert_string_equal(error_value("\xc0\xaf", buf, sizeof buf), /* overlong '/' */
                        "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_string_equal(error_value("\xed\xa0\x80", buf, sizeof buf), /* surrogate */
                        "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_string_equal(error_value("\xf4\x90\x80\x80", buf, sizeof buf), /* > U+10FFFF */
                        "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_string_equal(error_value("x\xe2\x82", buf, sizeof buf), /* cut short */
                        "\"x\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_string_equal(error_value("\xe0\x9f\xbf", buf, sizeof buf), /* overlong */
                        "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_string_equal(error_value("\xf0\x8f\xbf\xbf", buf, sizeof buf), /* overlong */
                        "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    assert_string_equal(error_value("\xef\xbf\xbf\xf4\x8f\xbf\xbf", buf, sizeof buf), /* edges */
                        "\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"");
}

static void long_error_is_cut(void **state)
{
    char err[600], want[300], buf[MOAT_STATUS_JSON_MAX];
    (void)state;
    memset(err, 'e', sizeof err - 1);
    err[sizeof err - 1] = '\0';
    want[0] = '"';
    memset(want + 1, 'e', MOAT_STATUS_ERROR_MAX);
    strcpy(want + 1 + MOAT_STATUS_ERROR_MAX, "...\"");
    assert_string_equal(error_value(err, buf, sizeof buf), want);
    /* exactly the maximum: not cut */
    err[MOAT_STATUS_ERROR_MAX] = '\0';
    want[1 + MOAT_STATUS_ERROR_MAX] = '"';
    want[2 + MOAT_STATUS_ERROR_MAX] = '\0';
    assert_string_equal(error_value(err, buf, sizeof buf), want);
    /* cut before a character that would straddle the limit */
    memset(err, 'e', sizeof err);
    memcpy(err + MOAT_STATUS_ERROR_MAX - 1, "\xc3\xa9", 2);
    err[MOAT_STATUS_ERROR_MAX + 1] = '\0';
    memset(want + 1, 'e', MOAT_STATUS_ERROR_MAX - 1);
    strcpy(want + MOAT_STATUS_ERROR_MAX, "...\"");
    assert_string_equal(error_value(err, buf, sizeof buf), want);
}

static void exact_buffer(void **state)
{
    moat_status st = example();
    char buf[MOAT_STATUS_JSON_MAX];
    size_t len, n;
    (void)state;
    assert_int_equal(moat_status_json(&st, MOAT_STATUS_FULL, buf, sizeof buf, &len), MOAT_OK);
    for (n = 0; n <= len; n++) {
        size_t got = 7;
        memset(buf, 'x', sizeof buf);
        assert_int_equal(moat_status_json(&st, MOAT_STATUS_FULL, buf, n, &got), MOAT_ERR_NO_SPACE);
        assert_int_equal(got, 0);
        if (n > 0)
            assert_int_equal(buf[0], '\0');
        assert_int_equal(buf[n], 'x'); /* nothing written past cap */
    }
    assert_int_equal(moat_status_json(&st, MOAT_STATUS_FULL, buf, len + 1, &n), MOAT_OK);
    assert_int_equal(n, len);
    assert_int_equal(moat_status_json(NULL, MOAT_STATUS_FULL, buf, sizeof buf, NULL), MOAT_ERR_ARG);
    assert_int_equal(moat_status_json(&st, MOAT_STATUS_FULL, NULL, 10, NULL), MOAT_ERR_ARG);
}

static void worst_case_fits_max(void **state)
{
    moat_status st;
    char err[MOAT_STATUS_ERROR_MAX + 1], s[65], buf[MOAT_STATUS_JSON_MAX];
    (void)state;
    memset(&st, 0xFF, sizeof st);
    memset(err, 0x01, sizeof err - 1); /* 6 bytes each when escaped */
    err[sizeof err - 1] = '\0';
    memset(s, 0x02, sizeof s - 1); /* 4 strings of 64: 256 bytes */
    s[sizeof s - 1] = '\0';
    st.name = st.image = st.build = st.ip = s;
    st.device_id = st.state = st.version = st.slot = "";
    st.error = err;
    st.has_rssi = st.has_cert_expiry = st.has_time = true;
    st.rssi = INT32_MIN;
    st.cert_expiry_unix_s = st.time_unix_s = 253402300799LL;
    st.time_source = MOAT_TIME_SYSTEM;
    assert_int_equal(moat_status_json(&st, MOAT_STATUS_FULL, buf, sizeof buf, NULL), MOAT_OK);
}

static void results(void **state)
{
    char buf[MOAT_RESULT_JSON_MAX], err[MOAT_STATUS_ERROR_MAX + 1];
    size_t len = 0;
    (void)state;
    assert_int_equal(moat_result_json(buf, sizeof buf, true, "ignored", &len), MOAT_OK);
    assert_string_equal(buf, "{\"ok\":true}");
    assert_int_equal(len, 11);
    assert_int_equal(moat_result_json(buf, sizeof buf, false, "unknown command 'x'", &len),
                     MOAT_OK);
    assert_string_equal(buf, "{\"ok\":false,\"error\":\"unknown command 'x'\"}");
    assert_int_equal(len, strlen(buf));
    assert_int_equal(moat_result_json(buf, sizeof buf, false, NULL, NULL), MOAT_OK);
    assert_string_equal(buf, "{\"ok\":false,\"error\":\"\"}");
    assert_int_equal(moat_result_json(buf, sizeof buf, false, "a\"b\n\xff", NULL), MOAT_OK);
    assert_string_equal(buf, "{\"ok\":false,\"error\":\"a\\\"b\\n\xef\xbf\xbd\"}");
    /* the worst error fits MOAT_RESULT_JSON_MAX */
    memset(err, 0x1f, sizeof err - 1);
    err[sizeof err - 1] = '\0';
    assert_int_equal(moat_result_json(buf, sizeof buf, false, err, NULL), MOAT_OK);
    /* too small: "" and NO_SPACE */
    assert_int_equal(moat_result_json(buf, 11, true, NULL, &len), MOAT_ERR_NO_SPACE);
    assert_string_equal(buf, "");
    assert_int_equal(len, 0);
    assert_int_equal(moat_result_json(buf, 12, true, NULL, &len), MOAT_OK);
    assert_int_equal(moat_result_json(NULL, 0, true, NULL, NULL), MOAT_ERR_NO_SPACE);
}

static void dates(void **state)
{
    char d[11], t[21];
    (void)state;
    assert_int_equal(moat_status_iso_date(0, d), MOAT_OK);
    assert_string_equal(d, "1970-01-01");
    assert_int_equal(moat_status_iso_time(0, t), MOAT_OK);
    assert_string_equal(t, "1970-01-01T00:00:00Z");
    assert_int_equal(moat_status_iso_time(951782400, t), MOAT_OK); /* leap day 2000 */
    assert_string_equal(t, "2000-02-29T00:00:00Z");
    assert_int_equal(moat_status_iso_time(1709251199, t), MOAT_OK);
    assert_string_equal(t, "2024-02-29T23:59:59Z");
    assert_int_equal(moat_status_iso_time(4107542400LL, t), MOAT_OK); /* 2100: not leap */
    assert_string_equal(t, "2100-03-01T00:00:00Z");
    assert_int_equal(moat_status_iso_time(-1, t), MOAT_OK);
    assert_string_equal(t, "1969-12-31T23:59:59Z");
    assert_int_equal(moat_status_iso_time(253402300799LL, t), MOAT_OK);
    assert_string_equal(t, "9999-12-31T23:59:59Z");
    assert_int_equal(moat_status_iso_date(-62167219200LL, d), MOAT_OK);
    assert_string_equal(d, "0000-01-01");
    assert_int_equal(moat_status_iso_date(253402300800LL, d), MOAT_ERR_ARG);
    assert_int_equal(moat_status_iso_date(-62167219201LL, d), MOAT_ERR_ARG);
    assert_int_equal(moat_status_iso_date(INT64_MIN, d), MOAT_ERR_ARG);
    assert_string_equal(moat_time_source_name(MOAT_TIME_NONE), "none");
    assert_string_equal(moat_time_source_name(MOAT_TIME_SYSTEM), "system");
    assert_string_equal(moat_time_source_name(MOAT_TIME_SNTP), "sntp");
    assert_string_equal(moat_time_source_name((moat_time_source)42), "none");
}

static void unknown_dates_are_omitted(void **state)
{
    moat_status st = example();
    char buf[MOAT_STATUS_JSON_MAX];
    (void)state;
    st.has_cert_expiry = false;
    st.has_time = false;
    assert_int_equal(moat_status_json(&st, MOAT_STATUS_FULL, buf, sizeof buf, NULL), MOAT_OK);
    assert_null(strstr(buf, "certexpiry"));
    assert_null(strstr(buf, "\"time\""));
    st.has_cert_expiry = true;
    st.cert_expiry_unix_s = INT64_MAX; /* beyond year 9999: omitted, not garbage */
    assert_int_equal(moat_status_json(&st, MOAT_STATUS_FULL, buf, sizeof buf, NULL), MOAT_OK);
    assert_null(strstr(buf, "certexpiry"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_document),
        cmocka_unit_test(seed_document),
        cmocka_unit_test(optional_fields),
        cmocka_unit_test(escaping),
        cmocka_unit_test(long_error_is_cut),
        cmocka_unit_test(exact_buffer),
        cmocka_unit_test(worst_case_fits_max),
        cmocka_unit_test(results),
        cmocka_unit_test(dates),
        cmocka_unit_test(unknown_dates_are_omitted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
