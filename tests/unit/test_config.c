/*
 * test_config.c - moat/config.h: every key of config.json good and bad with
 * the exact words of its error, defaults, presets, topic templates and
 * command topics, unknown-key warnings, broken JSON with line numbers, and
 * the rule that a bad file leaves the caller's config untouched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/config.h"

#define BASE "\"mqttserver\":\"broker.example\",\"cafile\":\"/etc/moat/ca.crt\"," \
             "\"certfile\":\"/etc/moat/device.crt\",\"keyfile\":\"/etc/moat/device.key\""
#define BASE_ID BASE ",\"deviceid\":\"a4cf12345678\""

static moat_config_work work;
static moat_config cfg;
static moat_config_diag diag;
static char text[8192];

static moat_err parse_text(const char *t)
{
    return moat_config_parse(&cfg, NULL, t, strlen(t), &work, &diag);
}

/* The base members, each left out when extra gives that key. */
static const char *const base_members[] = {
    "\"mqttserver\":\"broker.example\"", "\"cafile\":\"/etc/moat/ca.crt\"",
    "\"certfile\":\"/etc/moat/device.crt\"", "\"keyfile\":\"/etc/moat/device.key\"",
    "\"deviceid\":\"a4cf12345678\"",
};

static void build(char *t, size_t cap, const char *extra)
{
    size_t n = 0;
    n += (size_t)snprintf(t + n, cap - n, "{");
    for (size_t i = 0; i < sizeof(base_members) / sizeof(base_members[0]); i++) {
        const char *colon = strchr(base_members[i], ':');
        char key[32];
        memcpy(key, base_members[i], (size_t)(colon - base_members[i] + 1));
        key[colon - base_members[i] + 1] = '\0';
        if (strstr(extra, key) == extra || (strstr(extra, key) && strstr(extra, key)[-1] == ','))
            continue;
        n += (size_t)snprintf(t + n, cap - n, "%s%s", n > 1 ? "," : "", base_members[i]);
    }
    snprintf(t + n, cap - n, "%s%s}", extra[0] ? "," : "", extra);
}

/* the base and extra; a key in extra replaces the base's */
static moat_err parse_with(const char *extra)
{
    build(text, sizeof(text), extra);
    return parse_text(text);
}

static void good(const char *extra)
{
    moat_err e = parse_with(extra);
    if (e != MOAT_OK)
        fail_msg("refused %s: %s", extra, diag.message);
    assert_string_equal(diag.message, "");
}

/* The error, its exact words, and the config untouched. */
static void bad_text(const char *t, moat_err want, const char *msg)
{
    moat_config before;
    moat_err e;
    memset(&cfg, 0x5A, sizeof(cfg));
    memcpy(&before, &cfg, sizeof(cfg));
    e = parse_text(t);
    if (e != want || strcmp(diag.message, msg) != 0)
        fail_msg("for %s\n got %d '%s'\nwant %d '%s'", t, e, diag.message, want, msg);
    assert_memory_equal(&cfg, &before, sizeof(cfg));
}

static void bad(const char *extra, const char *msg)
{
    char t[sizeof(text)];
    build(t, sizeof(t), extra);
    bad_text(t, MOAT_ERR_ARG, msg);
}

/* ------------------------------------------------------------ defaults -- */

static void defaults(void **state)
{
    (void)state;
    good("");
    assert_string_equal(cfg.mqttserver, "broker.example");
    assert_int_equal(cfg.mqttport, 8883);
    assert_true(cfg.mqtttls);
    assert_string_equal(cfg.ntpserver, "pool.ntp.org");
    assert_int_equal(cfg.statusinterval_ms, 60000);
    assert_int_equal(cfg.waittimeout_ms, 120000);
    assert_int_equal(cfg.retrytimeout_ms, 1000);
    assert_string_equal(cfg.downloadserver, "");
    assert_int_equal(cfg.downloadport, 443);
    assert_string_equal(cfg.downloadpath, "/");
    assert_string_equal(cfg.deviceid, "a4cf12345678");
    assert_string_equal(cfg.interface, "");
    assert_string_equal(cfg.cafile, "/etc/moat/ca.crt");
    assert_string_equal(cfg.certfile, "/etc/moat/device.crt");
    assert_string_equal(cfg.keyfile, "/etc/moat/device.key");
    assert_int_equal(cfg.preset, MOAT_PRESET_MOAT);
    assert_int_equal(cfg.statusfields, MOAT_STATUSFIELDS_MOAT);
    assert_string_equal(cfg.topics.state, "moat/{id}/state");
    assert_string_equal(cfg.topics.status, "moat/{id}/status");
    assert_string_equal(cfg.topics.cmd, "moat/{id}/cmd/{name}");
    assert_string_equal(cfg.topics.result, "moat/{id}/result/{name}");
    assert_string_equal(cfg.topics.zones, "moat/{id}/zones");
    assert_string_equal(cfg.topics.zonecmd, "");
    assert_int_equal(cfg.zone_count, 8);
    assert_true(cfg.zones_exclusive);
    assert_int_equal(cfg.zone_maxseconds, 3600);
    assert_int_equal(diag.warning_count, 0);

    /* moat_config_defaults() gives the same, with the required keys "" */
    {
        moat_config d;
        moat_config_defaults(&d);
        assert_string_equal(d.mqttserver, "");
        assert_int_equal(d.mqttport, 8883);
        assert_string_equal(d.topics.cmd, "moat/{id}/cmd/{name}");
        assert_int_equal(d.zone_count, 8);
    }
}

static void every_key_set(void **state)
{
    (void)state;
    bad_text("{}", MOAT_ERR_ARG,
             "config.json: key 'mqttserver': missing: it is required (the MQTT broker's "
             "host name)");
    assert_int_equal(parse_text(
                         "{\n"
                         "  \"mqttserver\": \"mqtt.example.org\",\n"
                         "  \"mqttport\": 18883,\n"
                         "  \"mqtttls\": true,\n"
                         "  \"ntpserver\": \"192.168.1.1\",\n"
                         "  \"statusinterval\": 1000,\n"
                         "  \"waittimeout\": 86400000,\n"
                         "  \"retrytimeout\": 100,\n"
                         "  \"downloadserver\": \"updates.example.org\",\n"
                         "  \"downloadport\": 8443,\n"
                         "  \"downloadpath\": \"/firmware/moat.bin?v=1\",\n"
                         "  \"deviceid\": \"pump-house_2\",\n"
                         "  \"interface\": \"wlan0\",\n"
                         "  \"cafile\": \"ca.crt\",\n"
                         "  \"certfile\": \"d\\u00e9vice.crt\",\n"
                         "  \"keyfile\": \"device.key\",\n"
                         "  \"preset\": \"moat\",\n"
                         "  \"statusfields\": \"seed\",\n"
                         "  \"topics\": {\"state\": \"s/{id}\", \"status\": \"t/{id}\",\n"
                         "     \"cmd\": \"c/{id}/{name}\", \"result\": \"{name}/r/{id}\",\n"
                         "     \"zones\": \"z\", \"zonecmd\": \"zc/{id}\"},\n"
                         "  \"zones\": {\"count\": 1, \"exclusive\": false, \"maxseconds\": 86400}\n"
                         "}\n"),
                     MOAT_OK);
    assert_string_equal(diag.message, "");
    assert_string_equal(cfg.mqttserver, "mqtt.example.org");
    assert_int_equal(cfg.mqttport, 18883);
    assert_string_equal(cfg.ntpserver, "192.168.1.1");
    assert_int_equal(cfg.statusinterval_ms, 1000);
    assert_int_equal(cfg.waittimeout_ms, 86400000);
    assert_int_equal(cfg.retrytimeout_ms, 100);
    assert_string_equal(cfg.downloadserver, "updates.example.org");
    assert_int_equal(cfg.downloadport, 8443);
    assert_string_equal(cfg.downloadpath, "/firmware/moat.bin?v=1");
    assert_string_equal(cfg.deviceid, "pump-house_2");
    assert_string_equal(cfg.interface, "wlan0");
    assert_string_equal(cfg.cafile, "ca.crt");
    assert_string_equal(cfg.certfile, "d\xc3\xa9vice.crt");
    assert_string_equal(cfg.keyfile, "device.key");
    assert_int_equal(cfg.statusfields, MOAT_STATUSFIELDS_SEED);
    assert_string_equal(cfg.topics.state, "s/{id}");
    assert_string_equal(cfg.topics.status, "t/{id}");
    assert_string_equal(cfg.topics.cmd, "c/{id}/{name}");
    assert_string_equal(cfg.topics.result, "{name}/r/{id}");
    assert_string_equal(cfg.topics.zones, "z");
    assert_string_equal(cfg.topics.zonecmd, "zc/{id}");
    assert_int_equal(cfg.zone_count, 1);
    assert_false(cfg.zones_exclusive);
    assert_int_equal(cfg.zone_maxseconds, 86400);
}

/* ---------------------------------------------------- the seed's keys -- */

static void key_mqttserver(void **state)
{
    char extra[400];
    (void)state;
    good("\"mqttserver\":\"10.0.0.1\"");
    /* BASE_ID already holds mqttserver: test on a file without it */
    bad_text("{\"mqttserver\":\"\",\"cafile\":\"a\",\"certfile\":\"b\",\"keyfile\":\"c\","
             "\"deviceid\":\"x\"}",
             MOAT_ERR_ARG, "config.json: key 'mqttserver': must not be empty");
    bad_text("{\"mqttserver\":\"bad host\"}", MOAT_ERR_ARG,
             "config.json: key 'mqttserver': must be a host name or IP address (letters, "
             "digits, '.', '-', '_', ':'), got \"bad host\"");
    bad_text("{\"mqttserver\":5}", MOAT_ERR_ARG,
             "config.json: key 'mqttserver': must be a string, got 5");
    bad_text("{\"mqttserver\":null}", MOAT_ERR_ARG,
             "config.json: key 'mqttserver': must be a string, got null");
    bad_text("{\"mqttserver\":[\"a\"]}", MOAT_ERR_ARG,
             "config.json: key 'mqttserver': must be a string, got an array");
    /* 253 bytes fit, 254 do not */
    memset(extra, 0, sizeof(extra));
    strcpy(extra, "{\"mqttserver\":\"");
    memset(extra + strlen(extra), 'h', 253);
    strcat(extra, "\",\"cafile\":\"a\",\"certfile\":\"b\",\"keyfile\":\"c\",\"deviceid\":\"x\"}");
    assert_int_equal(parse_text(extra), MOAT_OK);
    assert_int_equal(strlen(cfg.mqttserver), 253);
    memset(extra, 0, sizeof(extra));
    strcpy(extra, "{\"mqttserver\":\"");
    memset(extra + strlen(extra), 'h', 254);
    strcat(extra, "\"}");
    bad_text(extra, MOAT_ERR_ARG, "config.json: key 'mqttserver': too long: at most 253 bytes");
}

static void key_mqttport(void **state)
{
    (void)state;
    good("\"mqttport\":1");
    assert_int_equal(cfg.mqttport, 1);
    good("\"mqttport\":65535");
    assert_int_equal(cfg.mqttport, 65535);
    good("\"mqttport\":\"8884\""); /* seed files may quote numbers */
    assert_int_equal(cfg.mqttport, 8884);
    bad("\"mqttport\":70000",
        "config.json: key 'mqttport': must be an integer from 1 to 65535, got 70000");
    bad("\"mqttport\":0", "config.json: key 'mqttport': must be an integer from 1 to 65535, got 0");
    bad("\"mqttport\":-1",
        "config.json: key 'mqttport': must be an integer from 1 to 65535, got -1");
    bad("\"mqttport\":8883.5",
        "config.json: key 'mqttport': must be an integer from 1 to 65535, got 8883.5");
    bad("\"mqttport\":1e3",
        "config.json: key 'mqttport': must be an integer from 1 to 65535, got 1e3");
    bad("\"mqttport\":\"88a\"",
        "config.json: key 'mqttport': must be an integer from 1 to 65535, got \"88a\"");
    bad("\"mqttport\":\"\"",
        "config.json: key 'mqttport': must be an integer from 1 to 65535, got \"\"");
    bad("\"mqttport\":true",
        "config.json: key 'mqttport': must be an integer from 1 to 65535, got true");
    bad("\"mqttport\":99999999999999999999999",
        "config.json: key 'mqttport': must be an integer from 1 to 65535, got "
        "99999999999999999999999");
    bad("\"mqttport\":\"99999999999999999999999\"",
        "config.json: key 'mqttport': must be an integer from 1 to 65535, got "
        "\"99999999999999999999999\"");
}

static void key_mqtttls(void **state)
{
    (void)state;
    good("\"mqtttls\":true");
    assert_true(cfg.mqtttls);
    good("\"mqtttls\":\"true\"");
    bad("\"mqtttls\":false", "config.json: key 'mqtttls': false is not allowed: moat always uses TLS");
    bad("\"mqtttls\":\"false\"",
        "config.json: key 'mqtttls': false is not allowed: moat always uses TLS");
    bad("\"mqtttls\":0", "config.json: key 'mqtttls': must be true (moat always uses TLS), got 0");
    bad("\"mqtttls\":null",
        "config.json: key 'mqtttls': must be true (moat always uses TLS), got null");
}

static void key_ntpserver(void **state)
{
    (void)state;
    good("\"ntpserver\":\"time.example\"");
    assert_string_equal(cfg.ntpserver, "time.example");
    good("\"ntpserver\":\"fe80::1\"");
    bad("\"ntpserver\":\"\"", "config.json: key 'ntpserver': must not be empty");
    bad("\"ntpserver\":\"a/b\"",
        "config.json: key 'ntpserver': must be a host name or IP address (letters, digits, "
        "'.', '-', '_', ':'), got \"a/b\"");
}

static void keys_intervals(void **state)
{
    (void)state;
    good("\"statusinterval\":1000,\"waittimeout\":1000,\"retrytimeout\":3600000");
    assert_int_equal(cfg.statusinterval_ms, 1000);
    assert_int_equal(cfg.waittimeout_ms, 1000);
    assert_int_equal(cfg.retrytimeout_ms, 3600000);
    good("\"statusinterval\":86400000");
    bad("\"statusinterval\":999",
        "config.json: key 'statusinterval': must be an integer from 1000 to 86400000, got 999");
    bad("\"statusinterval\":86400001",
        "config.json: key 'statusinterval': must be an integer from 1000 to 86400000, got "
        "86400001");
    bad("\"waittimeout\":0",
        "config.json: key 'waittimeout': must be an integer from 1000 to 86400000, got 0");
    bad("\"retrytimeout\":99",
        "config.json: key 'retrytimeout': must be an integer from 100 to 3600000, got 99");
    bad("\"retrytimeout\":{}",
        "config.json: key 'retrytimeout': must be an integer from 100 to 3600000, got an "
        "object");
}

static void keys_download(void **state)
{
    (void)state;
    good("\"downloadserver\":\"\"");
    assert_string_equal(cfg.downloadserver, "");
    good("\"downloadserver\":\"dl.example\",\"downloadport\":\"8443\",\"downloadpath\":\"/u\"");
    assert_string_equal(cfg.downloadserver, "dl.example");
    assert_int_equal(cfg.downloadport, 8443);
    assert_string_equal(cfg.downloadpath, "/u");
    bad("\"downloadserver\":\"dl example\"",
        "config.json: key 'downloadserver': must be a host name or IP address (letters, "
        "digits, '.', '-', '_', ':'), got \"dl example\"");
    bad("\"downloadport\":65536",
        "config.json: key 'downloadport': must be an integer from 1 to 65535, got 65536");
    bad("\"downloadpath\":\"update.bin\"",
        "config.json: key 'downloadpath': must be a URL path: '/' then printable characters "
        "without spaces, got \"update.bin\"");
    bad("\"downloadpath\":\"/a b\"",
        "config.json: key 'downloadpath': must be a URL path: '/' then printable characters "
        "without spaces, got \"/a b\"");
    bad("\"downloadpath\":\"\"",
        "config.json: key 'downloadpath': must be a URL path: '/' then printable characters "
        "without spaces, got \"\"");
}

/* ------------------------------------------------------- moat's keys -- */

static void key_deviceid_interface(void **state)
{
    char t[512];
    (void)state;
    /* 64 characters fit */
    good("\"deviceid\":\"0123456789012345678901234567890123456789012345678901234567890123\"");
    assert_int_equal(strlen(cfg.deviceid), 64);
    bad("\"deviceid\":\"01234567890123456789012345678901234567890123456789012345678901234\"",
        "config.json: key 'deviceid': must be 1 to 64 of A-Z a-z 0-9 _ - (or 12 lowercase "
        "hex digits, the MAC), got \"0123456789012345678901234567890123456789...\"");
    bad("\"deviceid\":\"AB:CD\"",
        "config.json: key 'deviceid': must be 1 to 64 of A-Z a-z 0-9 _ - (or 12 lowercase "
        "hex digits, the MAC), got \"AB:CD\"");
    bad("\"deviceid\":\"a/b\"",
        "config.json: key 'deviceid': must be 1 to 64 of A-Z a-z 0-9 _ - (or 12 lowercase "
        "hex digits, the MAC), got \"a/b\"");
    bad("\"deviceid\":\"a+\"",
        "config.json: key 'deviceid': must be 1 to 64 of A-Z a-z 0-9 _ - (or 12 lowercase "
        "hex digits, the MAC), got \"a+\"");
    bad("\"deviceid\":12", "config.json: key 'deviceid': must be a string, got 12");

    /* the MAC of an interface instead */
    snprintf(t, sizeof(t), "{" BASE ",\"interface\":\"eth0\"}");
    assert_int_equal(parse_text(t), MOAT_OK);
    assert_string_equal(cfg.deviceid, "");
    assert_string_equal(cfg.interface, "eth0");
    /* "" counts as absent */
    snprintf(t, sizeof(t), "{" BASE ",\"deviceid\":\"\",\"interface\":\"enp0s3.1\"}");
    assert_int_equal(parse_text(t), MOAT_OK);
    /* neither */
    snprintf(t, sizeof(t), "{" BASE "}");
    bad_text(t, MOAT_ERR_ARG,
             "config.json: key 'deviceid': missing: give 'deviceid', or 'interface' whose MAC "
             "becomes the id");
    snprintf(t, sizeof(t), "{" BASE ",\"deviceid\":\"\",\"interface\":\"\"}");
    bad_text(t, MOAT_ERR_ARG,
             "config.json: key 'deviceid': missing: give 'deviceid', or 'interface' whose MAC "
             "becomes the id");
    bad("\"interface\":\"eth 0\"",
        "config.json: key 'interface': must be a network interface name (letters, digits, "
        "'.', '-', '_', ':'), got \"eth 0\"");
    bad("\"interface\":\"0123456789abcdef\"",
        "config.json: key 'interface': too long: at most 15 bytes");
}

static void id_helpers(void **state)
{
    static const uint8_t mac[6] = {0xA4, 0xCF, 0x12, 0x0B, 0x00, 0xFF};
    char id[13];
    (void)state;
    moat_config_id_from_mac(mac, id);
    assert_string_equal(id, "a4cf120b00ff");
    assert_true(moat_config_id_valid(id));
    assert_true(moat_config_id_valid("A-z_9"));
    assert_false(moat_config_id_valid(""));
    assert_false(moat_config_id_valid(NULL));
    assert_false(moat_config_id_valid("a b"));
    assert_false(moat_config_id_valid("a#"));
    assert_true(moat_config_id_valid(
        "0123456789012345678901234567890123456789012345678901234567890123"));
    assert_false(moat_config_id_valid(
        "01234567890123456789012345678901234567890123456789012345678901234"));
}

static void keys_files(void **state)
{
    char t[1024];
    static const char *const keys[] = {"cafile", "certfile", "keyfile"};
    (void)state;
    for (size_t i = 0; i < 3; i++) {
        char want[256];
        /* missing */
        snprintf(t, sizeof(t), "{\"mqttserver\":\"m\",\"deviceid\":\"x\"%s%s%s}",
                 i != 0 ? ",\"cafile\":\"a\"" : "", i != 1 ? ",\"certfile\":\"b\"" : "",
                 i != 2 ? ",\"keyfile\":\"c\"" : "");
        snprintf(want, sizeof(want), "config.json: key '%s': missing: it is required (%s)",
                 keys[i],
                 i == 0   ? "the CA certificate that signed the broker's certificate"
                 : i == 1 ? "this device's certificate file"
                          : "this device's private key file");
        bad_text(t, MOAT_ERR_ARG, want);
        assert_string_equal(diag.key, keys[i]);
        /* empty, control character, too long, wrong type */
        snprintf(t, sizeof(t), "\"%s\":\"\"", keys[i]);
        snprintf(want, sizeof(want), "config.json: key '%s': must not be empty", keys[i]);
        bad(t, want);
        snprintf(t, sizeof(t), "\"%s\":\"a\\nb\"", keys[i]);
        snprintf(want, sizeof(want), "config.json: key '%s': must not hold control characters",
                 keys[i]);
        bad(t, want);
        snprintf(t, sizeof(t), "\"%s\":\"a\\u0000b\"", keys[i]);
        snprintf(want, sizeof(want), "config.json: key '%s': must not hold \\u0000", keys[i]);
        bad(t, want);
        snprintf(t, sizeof(t), "\"%s\":\"/%0255d\"", keys[i], 0);
        snprintf(want, sizeof(want), "config.json: key '%s': too long: at most 255 bytes",
                 keys[i]);
        bad(t, want);
        snprintf(t, sizeof(t), "\"%s\":false", keys[i]);
        snprintf(want, sizeof(want), "config.json: key '%s': must be a string, got false",
                 keys[i]);
        bad(t, want);
    }
    /* 255 bytes fit */
    snprintf(t, sizeof(t), "\"keyfile\":\"%0255d\"", 0);
    good(t);
    assert_int_equal(strlen(cfg.keyfile), 255);
}

static void key_zones(void **state)
{
    (void)state;
    good("\"zones\":{}");
    assert_int_equal(cfg.zone_count, 8);
    good("\"zones\":{\"count\":\"3\",\"exclusive\":\"false\",\"maxseconds\":1}");
    assert_int_equal(cfg.zone_count, 3);
    assert_false(cfg.zones_exclusive);
    assert_int_equal(cfg.zone_maxseconds, 1);
    bad("\"zones\":{\"count\":9}",
        "config.json: key 'zones.count': must be an integer from 1 to 8, got 9");
    assert_string_equal(diag.key, "zones.count");
    bad("\"zones\":{\"count\":0}",
        "config.json: key 'zones.count': must be an integer from 1 to 8, got 0");
    bad("\"zones\":{\"exclusive\":\"yes\"}",
        "config.json: key 'zones.exclusive': must be true or false, got \"yes\"");
    bad("\"zones\":{\"maxseconds\":86401}",
        "config.json: key 'zones.maxseconds': must be an integer from 1 to 86400, got 86401");
    bad("\"zones\":8", "config.json: key 'zones': must be an object, got 8");
    bad("\"zones\":{\"count\":1,\"count\":2}",
        "config.json: key 'zones.count': given twice (lines 1 and 1)");
}

static void key_preset_and_statusfields(void **state)
{
    (void)state;
    good("\"preset\":\"secureesp8266\"");
    assert_int_equal(cfg.preset, MOAT_PRESET_SECUREESP8266);
    assert_string_equal(cfg.topics.state, "/will/{id}");
    assert_string_equal(cfg.topics.status, "/status/{id}");
    assert_string_equal(cfg.topics.cmd, "/command/{id}/{name}");
    assert_string_equal(cfg.topics.result, "/result/{id}/{name}");
    assert_string_equal(cfg.topics.zones, "/zones/{id}");
    assert_string_equal(cfg.topics.zonecmd, "");
    assert_int_equal(cfg.statusfields, MOAT_STATUSFIELDS_SEED);
    /* case does not matter */
    good("\"preset\":\"secureESP8266\"");
    assert_int_equal(cfg.preset, MOAT_PRESET_SECUREESP8266);
    /* the preset applies first, wherever it is: later keys override it */
    good("\"topics\":{\"status\":\"x/{id}\"},\"statusfields\":\"moat\",\"preset\":"
         "\"secureesp8266\"");
    assert_string_equal(cfg.topics.status, "x/{id}");
    assert_string_equal(cfg.topics.state, "/will/{id}");
    assert_int_equal(cfg.statusfields, MOAT_STATUSFIELDS_MOAT);
    good("\"preset\":\"poc\"");
    assert_int_equal(cfg.preset, MOAT_PRESET_POC);
    assert_string_equal(cfg.topics.cmd, "moat/{id}/cmd/{name}");
    assert_string_equal(cfg.topics.zonecmd, "irrigation/zone/on");
    assert_int_equal(cfg.statusfields, MOAT_STATUSFIELDS_MOAT);
    good("\"preset\":\"poc\",\"topics\":{\"zonecmd\":\"\"}");
    assert_string_equal(cfg.topics.zonecmd, "");
    good("\"preset\":\"moat\",\"statusfields\":\"SEED\"");
    assert_int_equal(cfg.statusfields, MOAT_STATUSFIELDS_SEED);
    bad("\"preset\":\"esp\"",
        "config.json: key 'preset': must be \"moat\", \"secureesp8266\" or \"poc\", got \"esp\"");
    bad("\"preset\":1",
        "config.json: key 'preset': must be \"moat\", \"secureesp8266\" or \"poc\", got 1");
    bad("\"statusfields\":\"both\"",
        "config.json: key 'statusfields': must be \"moat\" or \"seed\", got \"both\"");
    assert_string_equal(moat_config_preset_name(MOAT_PRESET_POC), "poc");
    assert_string_equal(moat_config_preset_name(MOAT_PRESET_SECUREESP8266), "secureesp8266");
    assert_string_equal(moat_config_preset_name((moat_config_preset)7), "unknown");
}

static void key_topics(void **state)
{
    (void)state;
    good("\"topics\":{\"cmd\":\"dev/{id}/{name}/go\",\"result\":\"{name}\"}");
    assert_string_equal(cfg.topics.cmd, "dev/{id}/{name}/go");
    bad("\"topics\":[]", "config.json: key 'topics': must be an object, got an array");
    bad("\"topics\":{\"cmd\":\"moat/{id}/cmd\"}",
        "config.json: key 'topics.cmd': must hold {name} as a whole topic level, as in "
        "moat/{id}/cmd/{name}, got \"moat/{id}/cmd\"");
    bad("\"topics\":{\"result\":\"moat/{id}/cmd-{name}\"}",
        "config.json: key 'topics.result': {name} must fill a whole topic level, as in "
        "moat/{id}/cmd/{name}, got \"moat/{id}/cmd-{name}\"");
    bad("\"topics\":{\"cmd\":\"moat/{name}x\"}",
        "config.json: key 'topics.cmd': {name} must fill a whole topic level, as in "
        "moat/{id}/cmd/{name}, got \"moat/{name}x\"");
    bad("\"topics\":{\"cmd\":\"a/{name}/{name}\"}",
        "config.json: key 'topics.cmd': must hold {name} only once, got \"a/{name}/{name}\"");
    bad("\"topics\":{\"state\":\"moat/{id}/+\"}",
        "config.json: key 'topics.state': must not hold the wildcards + or #, got "
        "\"moat/{id}/+\"");
    bad("\"topics\":{\"cmd\":\"moat/{id}/#\"}",
        "config.json: key 'topics.cmd': must not hold the wildcards + or #, got \"moat/{id}/#\"");
    bad("\"topics\":{\"status\":\"moat/{mac}/status\"}",
        "config.json: key 'topics.status': '{' may only start {id} or {name}, got "
        "\"moat/{mac}/status\"");
    bad("\"topics\":{\"status\":\"moat/id}/status\"}",
        "config.json: key 'topics.status': '}' may only end {id} or {name}, got "
        "\"moat/id}/status\"");
    bad("\"topics\":{\"zones\":\"moat/{name}\"}",
        "config.json: key 'topics.zones': must not hold {name}: only cmd and result have a "
        "command name, got \"moat/{name}\"");
    bad("\"topics\":{\"zonecmd\":\"z/{name}\"}",
        "config.json: key 'topics.zonecmd': must not hold {name}: only cmd and result have a "
        "command name, got \"z/{name}\"");
    bad("\"topics\":{\"state\":\"\"}",
        "config.json: key 'topics.state': must not be empty, got \"\"");
    bad("\"topics\":{\"state\":1}", "config.json: key 'topics.state': must be a string, got 1");
    /* 127 bytes fit the template; expanded with long ids it must fit too */
    bad("\"topics\":{\"state\":\"{id}/{id}/{id}/{id}\"}",
        "config.json: key 'topics.state': too long: with a 64-character id it exceeds the "
        "topic buffer, got \"{id}/{id}/{id}/{id}\"");
    good("\"topics\":{\"state\":\"{id}/{id}/{id}\"}");
    {
        char t[300];
        snprintf(t, sizeof(t), "\"topics\":{\"zones\":\"%0128d\"}", 0);
        bad(t, "config.json: key 'topics.zones': too long: at most 127 bytes");
    }
}

/* ---------------------------------------------------------- templates -- */

static void template_expand(void **state)
{
    char out[MOAT_CONFIG_TOPIC_BUF];
    char small[10];
    (void)state;
    assert_int_equal(moat_config_topic("moat/{id}/cmd/{name}", "a4cf", "reboot", out,
                                       sizeof(out)),
                     MOAT_OK);
    assert_string_equal(out, "moat/a4cf/cmd/reboot");
    /* the subscription filter */
    assert_int_equal(moat_config_topic("moat/{id}/cmd/{name}", "a4cf", "+", out, sizeof(out)),
                     MOAT_OK);
    assert_string_equal(out, "moat/a4cf/cmd/+");
    assert_int_equal(moat_config_topic("/will/{id}", "a4cf", NULL, out, sizeof(out)), MOAT_OK);
    assert_string_equal(out, "/will/a4cf");
    assert_int_equal(moat_config_topic("irrigation/zone/on", "a4cf", NULL, out, sizeof(out)),
                     MOAT_OK);
    assert_string_equal(out, "irrigation/zone/on");
    /* refusals */
    assert_int_equal(moat_config_topic("m/{id}/{name}", "a4cf", NULL, out, sizeof(out)),
                     MOAT_ERR_ARG);
    assert_int_equal(moat_config_topic("m/{id}/{name}", "a4cf", "", out, sizeof(out)),
                     MOAT_ERR_ARG);
    assert_int_equal(moat_config_topic("m/{id}/{name}", "a4cf", "a/b", out, sizeof(out)),
                     MOAT_ERR_ARG);
    assert_int_equal(moat_config_topic("m/{id}/{name}", "a4cf", "#", out, sizeof(out)),
                     MOAT_ERR_ARG);
    assert_int_equal(moat_config_topic("m/{id}", "+", NULL, out, sizeof(out)), MOAT_ERR_ARG);
    assert_int_equal(moat_config_topic("m/{id}", "", NULL, out, sizeof(out)), MOAT_ERR_ARG);
    assert_int_equal(moat_config_topic("m/{idx}", "a", NULL, out, sizeof(out)), MOAT_ERR_ARG);
    assert_int_equal(moat_config_topic("m/{i", "a", NULL, out, sizeof(out)), MOAT_ERR_ARG);
    /* overflow: "m/123456" + NUL needs 9 */
    assert_int_equal(moat_config_topic("m/{id}", "123456", NULL, small, 9), MOAT_OK);
    assert_string_equal(small, "m/123456");
    assert_int_equal(moat_config_topic("m/{id}", "1234567", NULL, small, 9), MOAT_ERR_NO_SPACE);
    assert_string_equal(small, "");
    assert_int_equal(moat_config_topic("m/{id}", "1", NULL, small, 0), MOAT_ERR_NO_SPACE);
}

static void template_match(void **state)
{
    const char *t;
    char name[MOAT_CONFIG_NAME_MAX];
    char tiny[4];
    (void)state;
#define MATCH(tmpl, id, topic) \
    moat_config_topic_match(tmpl, id, topic, strlen(topic), name, sizeof(name))
    assert_int_equal(MATCH("moat/{id}/cmd/{name}", "a4cf", "moat/a4cf/cmd/reboot"), MOAT_OK);
    assert_string_equal(name, "reboot");
    assert_int_equal(MATCH("/command/{id}/{name}", "a4cf", "/command/a4cf/zone"), MOAT_OK);
    assert_string_equal(name, "zone");
    assert_int_equal(MATCH("d/{id}/{name}/go", "x", "d/x/ota/go"), MOAT_OK);
    assert_string_equal(name, "ota");
    assert_int_equal(MATCH("{name}", "x", "ping"), MOAT_OK);
    assert_string_equal(name, "ping");
    /* not ours */
    assert_int_equal(MATCH("moat/{id}/cmd/{name}", "a4cf", "moat/a4cg/cmd/reboot"),
                     MOAT_ERR_TOPIC);
    assert_int_equal(MATCH("moat/{id}/cmd/{name}", "a4cf", "moat/a4cf0/cmd/reboot"),
                     MOAT_ERR_TOPIC);
    assert_int_equal(MATCH("moat/{id}/cmd/{name}", "a4cf", "moat/a4cf/cmd/"), MOAT_ERR_TOPIC);
    assert_int_equal(MATCH("moat/{id}/cmd/{name}", "a4cf", "moat/a4cf/cmd"), MOAT_ERR_TOPIC);
    assert_int_equal(MATCH("moat/{id}/cmd/{name}", "a4cf", "moat/a4cf/cmd/a/b"),
                     MOAT_ERR_TOPIC);
    assert_int_equal(MATCH("moat/{id}/cmd/{name}", "a4cf", "moat/a4cf/result/reboot"),
                     MOAT_ERR_TOPIC);
    assert_int_equal(MATCH("d/{id}/{name}/go", "x", "d/x/ota/gone"), MOAT_ERR_TOPIC);
    assert_int_equal(MATCH("d/{id}/{name}/go", "x", "d/x/ota"), MOAT_ERR_TOPIC);
    assert_int_equal(MATCH("moat/{id}/state", "a4cf", "moat/a4cf/state"), MOAT_ERR_TOPIC);
    assert_int_equal(MATCH("moat/{id}/cmd/{name}", "", "moat//cmd/x"), MOAT_ERR_TOPIC);
    /* the topic is a slice: bytes past len are not read */
    t = "moat/a4cf/cmd/rebootXYZ";
    assert_int_equal(moat_config_topic_match("moat/{id}/cmd/{name}", "a4cf", t, strlen(t) - 3,
                                              name, sizeof(name)),
                     MOAT_OK);
    assert_string_equal(name, "reboot");
    /* a NUL inside the slice never matches */
    assert_int_equal(moat_config_topic_match("moat/{id}/cmd/{name}", "a4cf",
                                             "moat/a4cf/cmd/a\0b", 17, name, sizeof(name)),
                     MOAT_ERR_TOPIC);
    /* the name must fit */
    assert_int_equal(moat_config_topic_match("m/{name}", "x", "m/abc", 5, tiny, sizeof(tiny)),
                     MOAT_OK);
    assert_string_equal(tiny, "abc");
    assert_int_equal(moat_config_topic_match("m/{name}", "x", "m/abcd", 6, tiny, sizeof(tiny)),
                     MOAT_ERR_NO_SPACE);
#undef MATCH
}

static void command_topics(void **state)
{
    char name[MOAT_CONFIG_NAME_MAX], filter[MOAT_CONFIG_TOPIC_BUF];
    const char *t;
    (void)state;
    good("\"preset\":\"poc\"");
    t = "moat/a4cf12345678/cmd/reboot";
    assert_int_equal(moat_config_command_of(&cfg, "a4cf12345678", t, strlen(t), name,
                                            sizeof(name)),
                     MOAT_OK);
    assert_string_equal(name, "reboot");
    t = "irrigation/zone/on";
    assert_int_equal(moat_config_command_of(&cfg, "a4cf12345678", t, strlen(t), name,
                                            sizeof(name)),
                     MOAT_OK);
    assert_string_equal(name, MOAT_CONFIG_ZONE_COMMAND);
    t = "irrigation/zone/off";
    assert_int_equal(moat_config_command_of(&cfg, "a4cf12345678", t, strlen(t), name,
                                            sizeof(name)),
                     MOAT_ERR_TOPIC);
    /* the filters the agent subscribes to */
    assert_int_equal(moat_config_topic(cfg.topics.cmd, "a4cf12345678", "+", filter,
                                       sizeof(filter)),
                     MOAT_OK);
    assert_string_equal(filter, "moat/a4cf12345678/cmd/+");
    /* the seed's topics */
    good("\"preset\":\"secureesp8266\"");
    t = "/command/a4cf12345678/status";
    assert_int_equal(moat_config_command_of(&cfg, "a4cf12345678", t, strlen(t), name,
                                            sizeof(name)),
                     MOAT_OK);
    assert_string_equal(name, "status");
    t = "irrigation/zone/on"; /* not configured here */
    assert_int_equal(moat_config_command_of(&cfg, "a4cf12345678", t, strlen(t), name,
                                            sizeof(name)),
                     MOAT_ERR_TOPIC);
    assert_int_equal(moat_config_topic(cfg.topics.state, "a4cf12345678", NULL, filter,
                                       sizeof(filter)),
                     MOAT_OK);
    assert_string_equal(filter, "/will/a4cf12345678");
    assert_int_equal(moat_config_topic(cfg.topics.status, "a4cf12345678", NULL, filter,
                                       sizeof(filter)),
                     MOAT_OK);
    assert_string_equal(filter, "/status/a4cf12345678");
    assert_int_equal(moat_config_command_of(NULL, "x", "a", 1, name, sizeof(name)),
                     MOAT_ERR_TOPIC);
}

/* ------------------------------------------------ warnings and syntax -- */

static void unknown_keys_warn(void **state)
{
    (void)state;
    assert_int_equal(parse_text("{" BASE_ID ",\n\"mqttuser\":\"x\",\n\"topics\":{\"stat\":\"a\"},"
                                "\"zones\":{\"count\":2,\"pins\":[1,2]}}"),
                     MOAT_OK);
    assert_string_equal(diag.message, "");
    assert_int_equal(diag.warning_count, 3);
    assert_string_equal(diag.warnings[0], "config.json: line 2: unknown key 'mqttuser' ignored");
    assert_string_equal(diag.warnings[1],
                        "config.json: line 3: unknown key 'topics.stat' ignored");
    assert_string_equal(diag.warnings[2], "config.json: line 3: unknown key 'zones.pins' ignored");
    assert_int_equal(cfg.zone_count, 2);
    /* more than the list holds: all counted, the first kept */
    {
        char extra[512] = "";
        for (int i = 0; i < 12; i++) {
            char one[32];
            snprintf(one, sizeof(one), "%s\"k%d\":%d", i ? "," : "", i, i);
            strcat(extra, one);
        }
        good(extra);
        assert_int_equal(diag.warning_count, 12);
        assert_string_equal(diag.warnings[7], "config.json: line 1: unknown key 'k7' ignored");
    }
    /* a control character in an unknown key stays out of the message */
    good("\"a\\u0001b\":1");
    assert_string_equal(diag.warnings[0], "config.json: line 1: unknown key 'a\\u0001b' ignored");
}

static void duplicate_keys(void **state)
{
    (void)state;
    bad_text("{" BASE_ID ",\n\"mqttport\":1,\n\n\"mqttport\":2}", MOAT_ERR_ARG,
             "config.json: key 'mqttport': given twice (lines 2 and 4)");
    assert_int_equal(diag.line, 4);
    /* an escaped spelling is the same key */
    bad("\"mqttport\":1,\"mqtt\\u0070ort\":2",
        "config.json: key 'mqttport': given twice (lines 1 and 1)");
}

static void broken_json(void **state)
{
    char t[4096];
    (void)state;
    bad_text("{\n\"mqttserver\": \"a\",\n\"mqttport\": 88 83\n}", MOAT_ERR_MALFORMED,
             "config.json: line 3: not valid JSON");
    assert_int_equal(diag.line, 3);
    assert_string_equal(diag.key, "");
    bad_text("{\n\"mqttserver\": \"a\",\n", MOAT_ERR_MALFORMED,
             "config.json: line 3: not valid JSON: the text ends too early");
    bad_text("{\"a\":\"\xff\"}", MOAT_ERR_MALFORMED,
             "config.json: line 1: not valid JSON: a string is not valid UTF-8");
    bad_text("", MOAT_ERR_MALFORMED, "config.json: line 1: not valid JSON: the text ends too early");
    bad_text("{\"a\":1,}", MOAT_ERR_MALFORMED, "config.json: line 1: not valid JSON");
    bad_text("\n[1]", MOAT_ERR_MALFORMED,
             "config.json: line 2: must be a JSON object { ... }, got an array");
    bad_text("\"x\"", MOAT_ERR_MALFORMED,
             "config.json: line 1: must be a JSON object { ... }, got a string");
    /* more values than MOAT_CONFIG_MAX_TOKENS */
    strcpy(t, "{\"x\":[");
    for (unsigned i = 0; i < MOAT_CONFIG_MAX_TOKENS; i++)
        strcat(t, i ? ",1" : "1");
    strcat(t, "]}");
    bad_text(t, MOAT_ERR_NO_SPACE, "config.json: too large: more than 160 JSON values and keys");
}

static void source_name_and_null_diag(void **state)
{
    const char *t = "{\"mqttport\":0}";
    moat_config before;
    (void)state;
    assert_int_equal(moat_config_parse(&cfg, "/etc/moat/config.json", t, strlen(t), &work,
                                       &diag),
                     MOAT_ERR_ARG);
    assert_string_equal(diag.message, "/etc/moat/config.json: key 'mqttport': must be an "
                                      "integer from 1 to 65535, got 0");
    assert_int_equal(diag.line, 1);
    /* diag is optional */
    memcpy(&before, &cfg, sizeof(cfg));
    assert_int_equal(moat_config_parse(&cfg, NULL, t, strlen(t), &work, NULL), MOAT_ERR_ARG);
    assert_memory_equal(&cfg, &before, sizeof(cfg));
    t = "{" BASE_ID "}";
    assert_int_equal(moat_config_parse(&cfg, NULL, t, strlen(t), &work, NULL), MOAT_OK);
    assert_int_equal(moat_config_parse(NULL, NULL, t, strlen(t), &work, &diag), MOAT_ERR_ARG);
    assert_string_equal(diag.message, "config.json: no config given");
    assert_int_equal(moat_config_parse(&cfg, NULL, t, strlen(t), NULL, &diag), MOAT_ERR_ARG);
    assert_int_equal(moat_config_parse(&cfg, NULL, NULL, 0, &work, &diag), MOAT_ERR_ARG);
}

static void old_config_kept(void **state)
{
    moat_config keep;
    (void)state;
    /* a good config in force, then a bad reload: nothing changes */
    good("\"mqttport\":1234,\"preset\":\"poc\"");
    memcpy(&keep, &cfg, sizeof(cfg));
    assert_int_equal(parse_with("\"mqttport\":4321,\"preset\":\"secureesp8266\","
                                "\"zones\":{\"count\":99}"),
                     MOAT_ERR_ARG);
    assert_memory_equal(&cfg, &keep, sizeof(cfg));
    assert_int_equal(cfg.mqttport, 1234);
    assert_string_equal(cfg.topics.zonecmd, "irrigation/zone/on");
}

static void example_file_parses(void **state)
{
    static char buf[16384];
    FILE *f = fopen(MOAT_SOURCE_DIR "/deploy/config.json.example", "rb");
    size_t n;
    (void)state;
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_true(n > 0 && n < sizeof(buf));
    if (moat_config_parse(&cfg, "config.json.example", buf, n, &work, &diag) != MOAT_OK)
        fail_msg("%s", diag.message);
    assert_int_equal(diag.warning_count, 0);
    assert_string_equal(cfg.topics.cmd, "moat/{id}/cmd/{name}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(every_key_set),
        cmocka_unit_test(key_mqttserver),
        cmocka_unit_test(key_mqttport),
        cmocka_unit_test(key_mqtttls),
        cmocka_unit_test(key_ntpserver),
        cmocka_unit_test(keys_intervals),
        cmocka_unit_test(keys_download),
        cmocka_unit_test(key_deviceid_interface),
        cmocka_unit_test(id_helpers),
        cmocka_unit_test(keys_files),
        cmocka_unit_test(key_zones),
        cmocka_unit_test(key_preset_and_statusfields),
        cmocka_unit_test(key_topics),
        cmocka_unit_test(template_expand),
        cmocka_unit_test(template_match),
        cmocka_unit_test(command_topics),
        cmocka_unit_test(unknown_keys_warn),
        cmocka_unit_test(duplicate_keys),
        cmocka_unit_test(broken_json),
        cmocka_unit_test(source_name_and_null_diag),
        cmocka_unit_test(old_config_kept),
        cmocka_unit_test(example_file_parses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
