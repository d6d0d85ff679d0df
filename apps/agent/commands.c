/*
 * commands.c - moat-agent's remote commands.
 *
 * A message on the cmd topic (moat/<id>/cmd/<name>, or the preset's form)
 * is looked up in the table below by moat_command_dispatch(), and its result
 * goes to the result topic of the same name as {"ok":true} or
 * {"ok":false,"error":"..."}. An unknown command, an invalid name, an
 * oversized or malformed payload and a retained command all get an error
 * result; none of them can crash the agent or change its state.
 *
 * Actions that end the connection (reboot, config) are only noted here and
 * carried out by the loop after the result has been queued, so the operator
 * always sees the answer first.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"

#define AG_ZONE_PAYLOAD_MAX 64u

static moat_err cmd_reboot(const moat_command *self, void *user, const uint8_t *payload,
                           size_t len, char *why, size_t cap)
{
    agent *a = user;

    (void)self, (void)payload, (void)len, (void)why, (void)cap;
    a->reboot_pending = true;
    return MOAT_OK;
}

static moat_err cmd_status(const moat_command *self, void *user, const uint8_t *payload,
                           size_t len, char *why, size_t cap)
{
    agent *a = user;

    (void)self, (void)payload, (void)len, (void)why, (void)cap;
    a->status_now = true;
    return MOAT_OK;
}

static moat_err cmd_zone(const moat_command *self, void *user, const uint8_t *payload,
                         size_t len, char *why, size_t cap)
{
    agent *a = user;
    moat_err err = moat_zones_apply_payload(&a->zones, payload, len, a->now_ms);

    (void)self;
    if (err != MOAT_OK)
        snprintf(why, cap, "%s", moat_zones_error(&a->zones));
    return err;
}

/*
 * A new config.json from the config command or the update server. It must
 * parse, give a device id and topics, and its credentials must load; only
 * then is it written over the config file (temp + rename) and applied.
 * Until then the old config stays in force, in memory and on disk.
 */
moat_err ag_config_apply(agent *a, const char *source, const char *text, size_t len,
                         char *msg, size_t cap)
{
    struct stat st;
    moat_err err;
    int mode = 0600;

    err = ag_config_parse(source, text, len, &a->next_cfg, &a->work, msg, cap, true);
    if (err == MOAT_OK)
        err = ag_agent_check_next(a, msg, cap);
    if (err != MOAT_OK)
        return err;
    if (stat(a->opts.config_path, &st) == 0)
        mode = (int)(st.st_mode & 0777);
    err = ag_write_atomic(a->opts.config_path, text, len, mode, true, msg, cap);
    if (err != MOAT_OK)
        return err;
    ag_log(AG_LOG_INFO, "%s: %zu bytes accepted and written to %s", source, len,
           a->opts.config_path);
    a->reconfigure_pending = true;
    return MOAT_OK;
}

/* config: the payload is a whole new config.json; an empty payload asks the
 * update server for this device's config.json (the result comes later). */
static moat_err cmd_config(const moat_command *self, void *user, const uint8_t *payload,
                           size_t len, char *why, size_t cap)
{
    agent *a = user;
    char msg[512];
    moat_err err;

    (void)self;
    if (len == 0)
        return ag_update_fetch_config(a, why, cap);
    err = ag_config_apply(a, "config command", (const char *)payload, len, msg, sizeof msg);
    if (err != MOAT_OK)
        snprintf(why, cap, "%s", msg);
    return err;
}

#define AG_CRED_PAYLOAD_MAX 8192u

static const moat_command table[] = {
    {"reboot", cmd_reboot, 0},
    {"status", cmd_status, 0},
    {"config", cmd_config, AG_CONFIG_FILE_MAX},
    {MOAT_CONFIG_ZONE_COMMAND, cmd_zone, AG_ZONE_PAYLOAD_MAX},
    {"firmware", ag_cmd_firmware, 0},
    {"flash", ag_cmd_flash, 0},
    {"csr", ag_cmd_csr, 0},
    {"ca", ag_cmd_cred, AG_CRED_PAYLOAD_MAX},
    {"cert", ag_cmd_cred, AG_CRED_PAYLOAD_MAX},
    {"key", ag_cmd_cred, AG_CRED_PAYLOAD_MAX},
};
/* agent.retained_refused has a bit for each */
typedef char ag_table_fits_retained_bits[sizeof table / sizeof table[0] <= 16 ? 1 : -1];

void ag_publish_result(agent *a, const char *name, const char *doc, size_t len,
                       uint32_t now_ms)
{
    char topic[MOAT_CONFIG_TOPIC_MAX];

    if (moat_config_topic(a->cfg.topics.result, a->id, name, topic, sizeof topic) != MOAT_OK) {
        ag_log(AG_LOG_WARN, "no result topic for command '%s'", name);
        return;
    }
    ag_publish(a, topic, doc, len, 1, false, now_ms);
}

void ag_result_error(agent *a, const char *name, const char *error, uint32_t now_ms)
{
    char doc[MOAT_RESULT_JSON_MAX];
    size_t len = 0;

    ag_log(AG_LOG_WARN, "command '%s': %s", name, error);
    if (moat_result_json(doc, sizeof doc, false, error, &len) == MOAT_OK)
        ag_publish_result(a, name, doc, len, now_ms);
}

/* The command name of a topic, or false when the topic is no command. A
 * name that is too long or invalid is answered under "invalid". */
static bool command_name(agent *a, const moat_mqtt_event *ev, char *name, size_t cap,
                         uint32_t now_ms)
{
    moat_err err = moat_config_command_of(&a->cfg, a->id, (const char *)ev->topic.data,
                                          ev->topic.len, name, cap);

    if (err == MOAT_OK && moat_command_name_valid(name, strlen(name)))
        return true;
    if (err == MOAT_ERR_TOPIC) {
        ag_log(AG_LOG_DEBUG, "ignoring a message on %.*s", (int)ev->topic.len,
               (const char *)ev->topic.data);
        return false;
    }
    ag_result_error(a, "invalid", "invalid command name (1..32 of A-Z a-z 0-9 _ . -)", now_ms);
    return false;
}

/* The index of a command in the table, or -1. */
static int command_index(const char *name)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* {"ok":true,"note":"..."}: an empty message taken as the clearing of the
 * retained command refused earlier in this session. */
static void cleared_note(agent *a, const char *name, uint32_t now_ms)
{
    char doc[MOAT_RESULT_JSON_MAX], note[200];
    moat_json_writer w;
    size_t len = 0;

    snprintf(note, sizeof note, "taken as the clearing of the retained '%s' refused in this "
             "session, not run: send it again to run it", name);
    ag_log(AG_LOG_INFO, "command '%s': %s", name, note);
    moat_json_writer_init(&w, doc, sizeof doc);
    moat_json_begin_object(&w, NULL);
    moat_json_put_bool(&w, "ok", true);
    moat_json_put_string(&w, "note", note);
    moat_json_end_object(&w);
    if (moat_json_finish(&w, &len) == MOAT_OK)
        ag_publish_result(a, name, doc, len, now_ms);
}

void ag_commands_message(agent *a, const moat_mqtt_event *ev, uint32_t now_ms)
{
    char name[MOAT_CONFIG_NAME_MAX], doc[MOAT_RESULT_JSON_MAX];
    size_t len = 0;
    moat_err err;
    int idx;

    if (ev->offset != 0 || ev->len != ev->total)
        return; /* pieces come only in stream mode, which the agent does not use */
    if (!command_name(a, ev, name, sizeof name, now_ms))
        return;
    idx = command_index(name);
    if (ev->retain) {
        /* A retained command would run again at every connection (a
         * retained reboot: forever). */
        if (idx >= 0)
            a->retained_refused |= (uint16_t)(1u << idx);
        ag_result_error(a, name, "retained commands are refused: clear it with an empty "
                     "retained message", now_ms);
        return;
    }
    if (ev->len == 0 && idx >= 0 && (a->retained_refused & (1u << idx)) != 0) {
        /* The empty retained message that clears it reaches us live, as
         * an empty command (MQTT clears the retain flag for subscribers
         * that are already there): an empty reboot must not reboot. */
        a->retained_refused &= (uint16_t) ~(1u << idx);
        cleared_note(a, name, now_ms);
        return;
    }
    ag_log(AG_LOG_INFO, "command '%s' (%zu bytes%s%s)", name, ev->len,
           ev->dup ? ", duplicate" : "", ev->retain ? ", retained" : "");
    err = moat_command_dispatch(table, sizeof table / sizeof table[0], a, name, strlen(name),
                                ev->payload, ev->len, doc, sizeof doc, &len);
    if (len == 0)
        return;
    if (err == MOAT_OK)
        ag_log(AG_LOG_INFO, "command '%s': ok", name);
    else
        ag_log(AG_LOG_WARN, "command '%s': %s", name, doc);
    ag_publish_result(a, name, doc, len, now_ms);
}

void ag_commands_too_large(agent *a, const moat_mqtt_event *ev, uint32_t now_ms)
{
    char name[MOAT_CONFIG_NAME_MAX], why[160];

    if (!command_name(a, ev, name, sizeof name, now_ms))
        return;
    snprintf(why, sizeof why, "payload of %zu bytes is larger than the receive buffer "
             "(%u bytes) for command '%s'", ev->total, AG_RX_SIZE, name);
    ag_result_error(a, name, why, now_ms);
}
