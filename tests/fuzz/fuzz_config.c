/*
 * fuzz_config.c - libFuzzer harness for config.json parsing (moat/config.h)
 * and the JSON reader and writer under it (moat/json.h).
 *
 * The input is the text of a config.json, so the seed corpus is readable
 * JSON. Oracles, besides ASan/UBSan on an exactly sized copy:
 *  - moat_config_parse() returns only the documented values, twice the same;
 *  - on an error the caller's config is byte for byte as it was, and the
 *    message names the file, is one printable line and is NUL-terminated;
 *  - on success every field holds what the header promises: required keys
 *    set, numbers in range, TLS on, an id or an interface, templates that
 *    expand with the longest id and name into MOAT_CONFIG_TOPIC_BUF, and a
 *    cmd topic made from the template matches back to its name;
 *  - for the JSON layer: a parsed document's tokens nest inside one another,
 *    every string reads back, and a string written by moat_json_writer
 *    parses back to the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moat/config.h"
#include "moat/json.h"

#include "fuzz_check.h"

#define MAX_INPUT 65536u

static moat_config_work work;
static moat_config cfg, before, again;
static moat_config_diag diag, diag2;

static bool terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static void check_message(const char *m)
{
    CHECK(terminated(m, MOAT_CONFIG_MESSAGE_MAX));
    CHECK(strncmp(m, "config.json: ", 13) == 0);
    for (const char *p = m; *p; p++)
        CHECK((unsigned char)*p >= 0x20 && *p != 0x7F);
}

static void check_template(const char *t, bool with_name, bool may_be_empty)
{
    static const char long_id[] =
        "0123456789012345678901234567890123456789012345678901234567890123";
    static const char long_name[] = "abcdefghijklmnopqrstuvwxyz012345";
    char out[MOAT_CONFIG_TOPIC_BUF], name[MOAT_CONFIG_NAME_MAX];

    CHECK(terminated(t, MOAT_CONFIG_TOPIC_MAX));
    if (t[0] == '\0') {
        CHECK(may_be_empty);
        return;
    }
    CHECK(strchr(t, '+') == NULL && strchr(t, '#') == NULL);
    CHECK(moat_config_topic(t, long_id, with_name ? long_name : NULL, out, sizeof(out)) ==
          MOAT_OK);
    if (with_name) {
        CHECK(moat_config_topic_match(t, long_id, out, strlen(out), name, sizeof(name)) ==
              MOAT_OK);
        CHECK(strcmp(name, long_name) == 0);
        CHECK(moat_config_topic(t, "id", "+", out, sizeof(out)) == MOAT_OK);
    } else {
        CHECK(moat_config_topic(t, long_id, "x", out, sizeof(out)) == MOAT_OK);
    }
}

static void check_config(const moat_config *c)
{
    CHECK(terminated(c->mqttserver, sizeof(c->mqttserver)) && c->mqttserver[0]);
    CHECK(c->mqttport >= 1 && c->mqtttls);
    CHECK(terminated(c->ntpserver, sizeof(c->ntpserver)) && c->ntpserver[0]);
    CHECK(c->statusinterval_ms >= MOAT_CONFIG_STATUSINTERVAL_MIN_MS &&
          c->statusinterval_ms <= MOAT_CONFIG_INTERVAL_MAX_MS);
    CHECK(c->waittimeout_ms >= MOAT_CONFIG_WAITTIMEOUT_MIN_MS &&
          c->waittimeout_ms <= MOAT_CONFIG_INTERVAL_MAX_MS);
    CHECK(c->retrytimeout_ms >= MOAT_CONFIG_RETRYTIMEOUT_MIN_MS &&
          c->retrytimeout_ms <= MOAT_CONFIG_RETRYTIMEOUT_MAX_MS);
    CHECK(terminated(c->downloadserver, sizeof(c->downloadserver)));
    CHECK(c->downloadport >= 1);
    CHECK(terminated(c->downloadpath, sizeof(c->downloadpath)) && c->downloadpath[0] == '/');
    CHECK(terminated(c->deviceid, sizeof(c->deviceid)));
    CHECK(terminated(c->interface, sizeof(c->interface)));
    CHECK(c->deviceid[0] ? moat_config_id_valid(c->deviceid) : c->interface[0] != '\0');
    CHECK(terminated(c->cafile, sizeof(c->cafile)) && c->cafile[0]);
    CHECK(terminated(c->certfile, sizeof(c->certfile)) && c->certfile[0]);
    CHECK(terminated(c->keyfile, sizeof(c->keyfile)) && c->keyfile[0]);
    CHECK(c->preset <= MOAT_PRESET_POC && c->statusfields <= MOAT_STATUSFIELDS_SEED);
    CHECK(c->zone_count >= 1 && c->zone_count <= MOAT_CONFIG_MAX_ZONES);
    CHECK(c->zone_maxseconds >= 1 && c->zone_maxseconds <= MOAT_CONFIG_ZONE_MAXSECONDS_MAX);
    check_template(c->topics.state, false, false);
    check_template(c->topics.status, false, false);
    check_template(c->topics.cmd, true, false);
    check_template(c->topics.result, true, false);
    check_template(c->topics.zones, false, false);
    check_template(c->topics.zonecmd, false, true);
}

/* The JSON layer on the same text. */
static void check_json(const char *text, size_t size)
{
    static moat_json_tok tok[512];
    static char s[MAX_INPUT + 1], s2[MAX_INPUT + 1], out[6 * MAX_INPUT + 16];
    moat_json d, d2;
    size_t pos = 0, n;
    moat_err e = moat_json_parse(&d, text, size, tok, 512, &pos);

    CHECK(e == MOAT_OK || e == MOAT_ERR_NO_SPACE || e == MOAT_ERR_MALFORMED ||
          e == MOAT_ERR_UTF8 || e == MOAT_ERR_ARG);
    if (e != MOAT_OK) {
        CHECK(pos <= size);
        CHECK(moat_json_line(text, size, pos) >= 1);
        return;
    }
    CHECK(d.count >= 1 && moat_json_skip(&d, 0) == d.count);
    for (int i = 0; i < d.count; i++) {
        moat_json_type t = moat_json_type_of(&d, i);
        CHECK(t != MOAT_JSON_INVALID);
        CHECK(tok[i].start >= 0 && tok[i].end >= tok[i].start && (size_t)tok[i].end <= size);
        if (t == MOAT_JSON_STRING) {
            moat_json_writer w;
            moat_json_tok t2[2];
            e = moat_json_get_string(&d, i, s, sizeof(s), &n);
            CHECK(e == MOAT_OK || e == MOAT_ERR_UTF8); /* UTF8: holds \u0000 */
            if (e != MOAT_OK)
                continue;
            CHECK(strlen(s) == n);
            CHECK(moat_json_eq(&d, i, s));
            /* write it, read it back */
            moat_json_writer_init(&w, out, sizeof(out));
            moat_json_put_string(&w, NULL, s);
            CHECK(moat_json_finish(&w, &n) == MOAT_OK);
            CHECK(moat_json_parse(&d2, out, n, t2, 2, NULL) == MOAT_OK);
            CHECK(moat_json_get_string(&d2, 0, s2, sizeof(s2), NULL) == MOAT_OK);
            CHECK(strcmp(s2, s) == 0);
        } else if (t == MOAT_JSON_NUMBER) {
            int64_t v;
            e = moat_json_get_int(&d, i, INT64_MIN, INT64_MAX, &v);
            CHECK(e == MOAT_OK || e == MOAT_ERR_ARG || e == MOAT_ERR_TOO_LARGE);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text;
    moat_err e, e2;

    if (size > MAX_INPUT)
        return 0;
    text = malloc(size ? size : 1u); /* exactly sized: ASan sees any overread */
    CHECK(text != NULL);
    memcpy(text, data, size);

    memset(&cfg, 0xA5, sizeof(cfg));
    memcpy(&before, &cfg, sizeof(cfg));
    e = moat_config_parse(&cfg, NULL, text, size, &work, &diag);
    CHECK(e == MOAT_OK || e == MOAT_ERR_MALFORMED || e == MOAT_ERR_NO_SPACE ||
          e == MOAT_ERR_ARG);
    CHECK(diag.warning_count <= MOAT_CONFIG_MAX_TOKENS);
    for (unsigned i = 0; i < diag.warning_count && i < MOAT_CONFIG_MAX_WARNINGS; i++)
        check_message(diag.warnings[i]);
    if (e == MOAT_OK) {
        CHECK(diag.message[0] == '\0');
        check_config(&cfg);
    } else {
        CHECK(memcmp(&cfg, &before, sizeof(cfg)) == 0);
        check_message(diag.message);
        CHECK(diag.message[13] != '\0');
    }
    /* deterministic */
    memcpy(&again, &before, sizeof(again));
    e2 = moat_config_parse(&again, NULL, text, size, &work, &diag2);
    CHECK(e2 == e && strcmp(diag.message, diag2.message) == 0);
    CHECK(memcmp(&again, &cfg, sizeof(cfg)) == 0);

    check_json(text, size);
    free(text);
    return 0;
}
