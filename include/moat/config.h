/*
 * moat/config.h - moat-agent's config.json: keys, defaults, checks, topic
 * templates.
 *
 * moat_config_parse() reads a JSON text from memory (the caller reads the
 * file) into a caller-owned moat_config. The seeds' keys keep their
 * meanings (mqttserver, mqttport, mqtttls, ntpserver, statusinterval,
 * waittimeout, retrytimeout, downloadserver, downloadport, downloadpath);
 * moat adds its own (deviceid, interface, cafile, certfile, keyfile, topics,
 * preset, zones, statusfields). docs/CONFIG.md is the reference.
 *
 * Nothing is lost: the text is parsed into work->tmp, and *cfg is written
 * only when the whole file is good. An agent that reloads its config keeps
 * the old one in force when the new one is bad:
 *
 *     static moat_config_work work;       // caller-owned scratch
 *     moat_config_diag diag;
 *     if (moat_config_parse(&cfg, path, text, len, &work, &diag) != MOAT_OK)
 *         log(diag.message);              // cfg is exactly as it was
 *     for (i = 0; i < diag.warning_count && i < MOAT_CONFIG_MAX_WARNINGS; i++)
 *         log(diag.warnings[i]);          // unknown keys: warned, not fatal
 *
 * Topic templates: a template is a topic name with placeholders. {id} is the
 * device id; {name} is a command name and must fill a whole topic level of
 * the cmd and result templates (so the agent can subscribe with + in its
 * place and read the name back from an incoming topic). No other
 * placeholder, no + or # and no empty template is accepted.
 *
 * TLS has no off switch: "mqtttls": false is refused with an error.
 *
 * No heap, no I/O, no clock: this is core code.
 */
#ifndef MOAT_CONFIG_H
#define MOAT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"
#include "moat/json.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Field sizes, NUL included. A value that does not fit is an error. */
#define MOAT_CONFIG_HOST_MAX 254u   /* host name (253) or IP address */
#define MOAT_CONFIG_PATH_MAX 256u   /* file and URL paths */
#define MOAT_CONFIG_ID_MAX 65u      /* device id: [A-Za-z0-9_-]{1,64} */
#define MOAT_CONFIG_IFNAME_MAX 16u  /* network interface name (IFNAMSIZ) */
#define MOAT_CONFIG_TOPIC_MAX 128u  /* a topic template */
#define MOAT_CONFIG_TOPIC_BUF 256u  /* an expanded topic: every template is
                                       checked to fit with a 64-byte id and
                                       a 32-byte name */
#define MOAT_CONFIG_NAME_MAX 33u    /* a command name read from a topic */
#define MOAT_CONFIG_MAX_ZONES 8u
#define MOAT_CONFIG_MAX_TOKENS 160u /* JSON tokens a config.json may use */

/* The command name a message on topics.zonecmd is given ("<zone> <seconds>"
 * payload, as in the Secure_ESP8266_MQTT_poc's irrigation/zone/on). */
#define MOAT_CONFIG_ZONE_COMMAND "zone"

/* Defaults. */
#define MOAT_CONFIG_DEFAULT_MQTTPORT 8883u
#define MOAT_CONFIG_DEFAULT_NTPSERVER "pool.ntp.org"
#define MOAT_CONFIG_DEFAULT_STATUSINTERVAL_MS 60000u
#define MOAT_CONFIG_DEFAULT_WAITTIMEOUT_MS 120000u
#define MOAT_CONFIG_DEFAULT_RETRYTIMEOUT_MS 1000u
#define MOAT_CONFIG_DEFAULT_DOWNLOADPORT 443u
#define MOAT_CONFIG_DEFAULT_DOWNLOADPATH "/"
#define MOAT_CONFIG_DEFAULT_ZONE_MAXSECONDS 3600u

/* Ranges (inclusive). */
#define MOAT_CONFIG_STATUSINTERVAL_MIN_MS 1000u
#define MOAT_CONFIG_INTERVAL_MAX_MS 86400000u  /* one day, for every ms key */
#define MOAT_CONFIG_WAITTIMEOUT_MIN_MS 1000u
#define MOAT_CONFIG_RETRYTIMEOUT_MIN_MS 100u
#define MOAT_CONFIG_RETRYTIMEOUT_MAX_MS 3600000u
#define MOAT_CONFIG_ZONE_MAXSECONDS_MAX 86400u

typedef enum moat_config_preset {
    MOAT_PRESET_MOAT = 0,      /* moat/{id}/state, .../status, .../cmd/{name}, ... */
    MOAT_PRESET_SECUREESP8266, /* /will/{id}, /status/{id}, /command/{id}/{name} */
    MOAT_PRESET_POC            /* moat topics, plus zone commands on irrigation/zone/on */
} moat_config_preset;

typedef enum moat_config_statusfields {
    MOAT_STATUSFIELDS_MOAT = 0, /* moat's status field names */
    MOAT_STATUSFIELDS_SEED      /* secureESP8266's: uptimemillis, espname, rssi, ... */
} moat_config_statusfields;

/* Topic templates (see the top of this file). "" means "not used" where
 * the text says so. */
typedef struct moat_config_topics {
    char state[MOAT_CONFIG_TOPIC_MAX];  /* retained online/offline; the will */
    char status[MOAT_CONFIG_TOPIC_MAX]; /* the periodic status document */
    char cmd[MOAT_CONFIG_TOPIC_MAX];    /* incoming commands; holds {name} */
    char result[MOAT_CONFIG_TOPIC_MAX]; /* command results; holds {name} */
    char zones[MOAT_CONFIG_TOPIC_MAX];  /* retained zone state */
    char zonecmd[MOAT_CONFIG_TOPIC_MAX]; /* "" or an extra topic whose messages
                                            are the command MOAT_CONFIG_ZONE_COMMAND */
} moat_config_topics;

typedef struct moat_config {
    /* the seed's keys */
    char mqttserver[MOAT_CONFIG_HOST_MAX];  /* required */
    uint16_t mqttport;                      /* 1..65535, default 8883 */
    bool mqtttls;                           /* always true */
    char ntpserver[MOAT_CONFIG_HOST_MAX];   /* default pool.ntp.org */
    uint32_t statusinterval_ms;             /* default 60000, 1000..86400000 */
    uint32_t waittimeout_ms;                /* connection down longer than this
                                               restarts the agent; default 120000 */
    uint32_t retrytimeout_ms;               /* reconnect backoff base; default 1000 */
    char downloadserver[MOAT_CONFIG_HOST_MAX]; /* "" = none configured */
    uint16_t downloadport;                  /* default 443 */
    char downloadpath[MOAT_CONFIG_PATH_MAX]; /* starts with '/'; default "/" */
    /* moat's keys */
    char deviceid[MOAT_CONFIG_ID_MAX];      /* "" = the MAC of `interface` */
    char interface[MOAT_CONFIG_IFNAME_MAX]; /* its MAC is the id when deviceid
                                               is ""; one of the two is required */
    char cafile[MOAT_CONFIG_PATH_MAX];      /* required */
    char certfile[MOAT_CONFIG_PATH_MAX];    /* required */
    char keyfile[MOAT_CONFIG_PATH_MAX];     /* required */
    moat_config_topics topics;
    uint8_t preset;                         /* moat_config_preset */
    uint8_t statusfields;                   /* moat_config_statusfields */
    uint8_t zone_count;                     /* 1..8, default 8 */
    bool zones_exclusive;                   /* one zone on at a time; default true */
    uint32_t zone_maxseconds;               /* longest run; default 3600 */
} moat_config;

#define MOAT_CONFIG_MAX_WARNINGS 8u
#define MOAT_CONFIG_MESSAGE_MAX 256u

/* What went wrong, in words that name the file and the key. */
typedef struct moat_config_diag {
    char message[MOAT_CONFIG_MESSAGE_MAX]; /* the error, or "" on success, e.g.
        "config.json: key 'mqttport': must be an integer from 1 to 65535, got 70000" */
    char key[48];       /* the key at fault ("zones.count"), "" for a syntax error */
    unsigned line;      /* the line of the fault (1-based), 0 if none */
    unsigned warning_count; /* unknown keys seen; may exceed MOAT_CONFIG_MAX_WARNINGS */
    char warnings[MOAT_CONFIG_MAX_WARNINGS][MOAT_CONFIG_MESSAGE_MAX];
        /* "config.json: line 7: unknown key 'mqttuser' ignored" */
} moat_config_diag;

/* Caller-owned scratch for moat_config_parse(): one config and the tokens.
 * Large (about 5 KB): make it static or put it in the agent's context. */
typedef struct moat_config_work {
    moat_config tmp;
    moat_json_tok tok[MOAT_CONFIG_MAX_TOKENS];
} moat_config_work;

/* Every default, with the moat preset. The required keys are "". */
void moat_config_defaults(moat_config *cfg);

/*
 * Parse config.json text[0..len) into *cfg. source names the file in
 * messages (NULL: "config.json"). diag may be NULL. Returns:
 *  MOAT_OK             *cfg holds the new config; diag->warnings lists the
 *                      unknown keys
 *  MOAT_ERR_MALFORMED  not valid JSON ("config.json: line 3: not valid
 *                      JSON"), or the top level is not an object
 *  MOAT_ERR_NO_SPACE   more than MOAT_CONFIG_MAX_TOKENS tokens
 *  MOAT_ERR_ARG        a key is missing, has the wrong type, is out of
 *                      range or too long, or is refused (mqtttls false);
 *                      also NULL cfg, text or work
 * On any error *cfg is untouched and diag->message says what and where.
 * A key given twice is an error. Integer keys also accept a string of
 * decimal digits ("8883") and mqtttls also "true", as seed files may hold.
 */
moat_err moat_config_parse(moat_config *cfg, const char *source, const char *text,
                           size_t len, moat_config_work *work, moat_config_diag *diag);

/* True when id is a valid device id: [A-Za-z0-9_-]{1,64}. */
bool moat_config_id_valid(const char *id);

/* The seed's id: the MAC as 12 lowercase hex digits, into out[13]. */
void moat_config_id_from_mac(const uint8_t mac[6], char out[13]);

/*
 * Expand a topic template: {id} becomes id and {name} becomes name into
 * out[0..cap) with a NUL. name may be NULL when the template has no {name};
 * pass "+" to make the subscription filter of the cmd template. Returns
 * MOAT_ERR_ARG for an unknown placeholder, a {name} without a name, or an
 * id or name that holds '/', '+', '#' or is empty (name "+" alone is
 * allowed); MOAT_ERR_NO_SPACE when the topic does not fit (out is "").
 */
moat_err moat_config_topic(const char *tmpl, const char *id, const char *name,
                           char *out, size_t cap);

/*
 * Match an incoming topic (topic[0..len), not NUL-terminated) against a
 * template that holds {name} as a whole level, for this id. On a match the
 * name (the level in {name}'s place) goes to name[0..cap) with a NUL.
 * Returns MOAT_OK, MOAT_ERR_TOPIC when the topic does not match (or the
 * level is empty), MOAT_ERR_NO_SPACE when the name does not fit in cap.
 */
moat_err moat_config_topic_match(const char *tmpl, const char *id, const char *topic,
                                 size_t len, char *name, size_t cap);

/*
 * The command an incoming topic carries under cfg: the cmd template first,
 * then topics.zonecmd (whose messages are MOAT_CONFIG_ZONE_COMMAND).
 * Returns as moat_config_topic_match().
 */
moat_err moat_config_command_of(const moat_config *cfg, const char *id,
                                const char *topic, size_t len, char *name, size_t cap);

/* The preset's name ("moat", "secureesp8266", "poc"). */
const char *moat_config_preset_name(moat_config_preset p);

#ifdef __cplusplus
}
#endif
#endif
