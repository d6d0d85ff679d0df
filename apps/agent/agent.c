/*
 * agent.c - the connection state machine of moat-agent, and what it does
 * once online.
 *
 *   TIME -> CREDENTIALS -> BACKOFF -> TLS -> MQTT -> SUBSCRIBE -> READY
 *                             ^                                    |
 *                             +------------ link lost -------------+
 *
 * TIME waits for a valid clock (timesrc.c): no certificate is checked, and
 * no TCP connection to the broker is even opened, before it. CREDENTIALS
 * loads the CA, certificate and key once; a failure is retried with backoff.
 * From BACKOFF on the MQTT engine's reconnect policy decides when the next
 * attempt is due (exponential backoff with full jitter, retrytimeout as the
 * base), so a lost link redoes TCP, TLS (resuming the session), CONNECT and
 * SUBSCRIBE only. Every step is non-blocking; the loop in main.c sleeps in
 * poll() until a descriptor or the next deadline of any engine.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moat/timer.h"
#include "moat/wifi.h"
#include "agent.h"

#ifndef MOAT_AGENT_BUILD
#define MOAT_AGENT_BUILD "unknown"
#endif

static uint8_t tx_buf[AG_TX_SIZE];
static uint8_t rx_buf[AG_RX_SIZE];
static uint8_t store_buf[AG_STORE_SIZE];
static moat_mqtt_inflight window[AG_INFLIGHT];

static const char *const phase_names[] = {"time", "credentials", "backoff", "tls",
                                          "mqtt", "subscribe", "online", "closing"};

const char *ag_phase_name(ag_phase p)
{
    return (unsigned)p < sizeof phase_names / sizeof phase_names[0] ? phase_names[p] : "?";
}

static uint32_t until(uint32_t now_ms, uint32_t deadline_ms)
{
    return moat_time_reached(now_ms, deadline_ms) ? 0 : deadline_ms - now_ms;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* Copy as much of src as fits, NUL-terminated. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);

    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void ag_set_error(agent *a, int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(a->error, sizeof a->error, fmt, ap);
    va_end(ap);
    ag_log(level, "%s", a->error);
}

/* The state in words for systemd (`systemctl status`). */
static void notify_phase(agent *a)
{
    char s[1024];

    switch (a->phase) {
    case AG_PHASE_TIME:
        snprintf(s, sizeof s, "waiting for a valid clock (%s%s%s): %s", a->clock.source,
                 a->clock.kind == AG_TIME_SNTP ? " " : "",
                 a->clock.kind == AG_TIME_SNTP ? a->clock.host : "",
                 a->clock.why[0] ? a->clock.why : "no answer yet");
        break;
    case AG_PHASE_READY:
        snprintf(s, sizeof s, "online as %s at %s:%u", a->id, a->cfg.mqttserver,
                 a->cfg.mqttport);
        break;
    default:
        snprintf(s, sizeof s, "%s: connecting to %s:%u as %s%s%s", ag_phase_name(a->phase),
                 a->cfg.mqttserver, a->cfg.mqttport, a->id, a->error[0] ? "; last error: " : "",
                 a->error);
        break;
    }
    ag_notify_status(s);
}

static void set_phase(agent *a, ag_phase p, uint32_t now_ms)
{
    if (a->phase == p)
        return;
    ag_log(AG_LOG_DEBUG, "state %s -> %s", ag_phase_name(a->phase), ag_phase_name(p));
    a->phase = p;
    a->phase_ms = now_ms;
    notify_phase(a);
    ag_write_status_file(a, now_ms);
}

/* ------------------------------------------------------- publishing -- */

moat_err ag_publish(agent *a, const char *topic, const void *payload, size_t len,
                    uint8_t qos, bool retain, uint32_t now_ms)
{
    moat_mqtt_message m;
    moat_err err;

    if (topic == NULL || topic[0] == '\0')
        return MOAT_OK; /* this topic is not used by the config */
    m.topic = topic;
    m.payload = payload;
    m.len = len;
    m.qos = qos;
    m.retain = retain;
    err = moat_mqtt_publish(&a->mqtt, &m, NULL, now_ms);
    if (err != MOAT_OK)
        ag_log(AG_LOG_WARN, "cannot publish on %s: %s", topic, moat_strerror(err));
    return err;
}

static uint64_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long long kb = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return (uint64_t)kb * 1024u;
}

/* Room for the agent's own status members (the rollback reason is up to
 * 200 characters, escaped). */
#define AG_STATUS_EXTRA 1536u

/* Build the status document; moat's extra fields after the core's. */
static moat_err status_json(agent *a, uint32_t now_ms, char *buf, size_t cap, size_t *len)
{
    moat_status st;
    int64_t unix_ms = 0;
    moat_status_mode mode =
        a->cfg.statusfields == MOAT_STATUSFIELDS_SEED ? MOAT_STATUS_SEED : MOAT_STATUS_FULL;
    char extra[AG_STATUS_EXTRA];
    moat_json_writer w;
    size_t n = 0;
    moat_err err;

    memset(&st, 0, sizeof st);
    st.uptime_ms = a->uptime_ms;
    st.max_loop_ms = a->max_loop_ms;
    st.mqtt_ms = a->mqtt_ms;
    st.name = a->hostname;
    st.image = "moat-agent";
    st.build = MOAT_AGENT_BUILD;
    if (a->phase >= AG_PHASE_MQTT)
        ag_link_local_ip(&a->link, a->ip, sizeof a->ip);
    st.ip = a->ip;
    st.free_mem = mem_available();
    /* Wi-Fi signal, on machines that have Wi-Fi (/proc/net/wireless) */
    st.has_rssi = moat_wifi_rssi(NULL, NULL, &st.rssi);
    st.error = a->error;
    st.device_id = a->id;
    st.state = ag_phase_name(a->phase);
    st.version = ag_update_version();
    st.slot = ag_update_slot();
    st.has_cert_expiry = a->link.loaded && a->link.has_expiry;
    st.cert_expiry_unix_s = a->link.cert_expiry_s;
    if (ag_time_unix_ms(&a->clock, now_ms, &unix_ms) == MOAT_OK) {
        st.time_source = a->clock.kind == AG_TIME_SNTP ? MOAT_TIME_SNTP : MOAT_TIME_SYSTEM;
        st.has_time = true;
        st.time_unix_s = unix_ms / 1000;
    }
    st.reconnects = a->reconnects;
    err = moat_status_json(&st, mode, buf, cap - AG_STATUS_EXTRA, len);
    if (err != MOAT_OK || mode != MOAT_STATUS_FULL || *len < 2 || buf[*len - 1] != '}')
        return err;
    /* moat-agent's own members, spliced in before the closing brace: how
     * long the clock took to become valid (or has been waiting), then the
     * update and credential state. */
    moat_json_writer_init(&w, extra, sizeof extra);
    moat_json_begin_object(&w, NULL);
    moat_json_put_uint(&w, "clockwaitms", ag_time_valid(&a->clock)
                                              ? a->clock_wait_ms
                                              : moat_elapsed(a->clock.started_ms, now_ms));
    ag_update_status_members(&w);
    ag_creds_status_members(&w);
    moat_json_end_object(&w);
    if (moat_json_finish(&w, &n) != MOAT_OK || n < 2 || *len + n > cap)
        return MOAT_ERR_NO_SPACE;
    buf[*len - 1] = ',';
    memcpy(buf + *len, extra + 1, n); /* with its NUL */
    *len += n - 1;
    return MOAT_OK;
}

void ag_publish_status(agent *a, uint32_t now_ms)
{
    char buf[MOAT_STATUS_JSON_MAX + AG_STATUS_EXTRA];
    size_t len = 0;

    a->status_now = false;
    a->status_due_ms = now_ms + a->cfg.statusinterval_ms;
    if (status_json(a, now_ms, buf, sizeof buf, &len) != MOAT_OK) {
        ag_log(AG_LOG_ERROR, "the status document does not fit in %zu bytes", sizeof buf);
        return;
    }
    ag_write_status_file(a, now_ms);
    if (a->phase != AG_PHASE_READY)
        return;
    if (ag_publish(a, a->topics.status, buf, len, 0, false, now_ms) == MOAT_OK) {
        ag_log(AG_LOG_DEBUG, "status published on %s", a->topics.status);
        ag_update_status_published(a, now_ms); /* a trial start confirms now */
    }
    a->max_loop_ms = 0;
}

void ag_write_status_file(agent *a, uint32_t now_ms)
{
    char buf[MOAT_STATUS_JSON_MAX + AG_STATUS_EXTRA], msg[256];
    size_t len = 0;

    if (a->opts.status_file == NULL || a->id[0] == '\0')
        return;
    if (status_json(a, now_ms, buf, sizeof buf, &len) != MOAT_OK)
        return;
    buf[len++] = '\n';
    if (ag_write_atomic(a->opts.status_file, buf, len, 0644, false, msg, sizeof msg) != MOAT_OK)
        ag_log(AG_LOG_WARN, "status file: %s", msg);
}

static void publish_zones(agent *a, uint32_t now_ms)
{
    char buf[MOAT_ZONES_JSON_MAX];
    size_t len = 0;

    if (moat_zones_to_json(&a->zones, now_ms, buf, sizeof buf, &len) != MOAT_OK)
        return;
    if (ag_publish(a, a->topics.zones, buf, len, 1, true, now_ms) == MOAT_OK)
        a->zones_dirty = false;
}

/* ----------------------------------------------------------- events -- */

static bool engine_has_output(const agent *a);

static void subscribe(agent *a, uint32_t now_ms)
{
    moat_mqtt_sub subs[4];
    size_t n = 0, k;
    moat_err err;

    subs[n].filter = a->topics.cmd_filter;
    subs[n++].qos = 1;
    if (a->topics.zonecmd[0] != '\0') {
        subs[n].filter = a->topics.zonecmd;
        subs[n++].qos = 1;
    }
    k = ag_update_filters(a, subs + n, sizeof subs / sizeof subs[0] - n);
    a->sub_ota_at = k > 0 ? n : 0;
    n += k;
    a->sub_refused = false;
    err = moat_mqtt_subscribe(&a->mqtt, subs, n, &a->sub_id, now_ms);
    if (err != MOAT_OK) {
        ag_set_error(a, AG_LOG_ERROR, "cannot subscribe to %s: %s", a->topics.cmd_filter,
                     moat_strerror(err));
        return;
    }
    set_phase(a, AG_PHASE_SUBSCRIBE, now_ms);
}

static void on_connected(agent *a, const moat_mqtt_event *ev, uint32_t now_ms)
{
    static const char online[] = "online";

    if (a->ever_ready)
        a->reconnects++;
    a->retained_refused = 0; /* the new session's SUBSCRIBE brings them again */
    ag_log(AG_LOG_INFO, "connected to %s:%u as %s (%s)", a->cfg.mqttserver,
           a->cfg.mqttport, a->id, ev->session_present ? "session present" : "new session");
    ag_publish(a, a->topics.state, online, sizeof online - 1, 1, true, now_ms);
    /* Always subscribe: the session may hold an older config's filters, and
     * a repeated SUBSCRIBE only replaces the same subscription. */
    subscribe(a, now_ms);
}

/* Did the broker grant filters [from, to) of our SUBSCRIBE? */
static bool granted(const moat_mqtt_event *ev, size_t from, size_t to)
{
    size_t i;

    for (i = from; i < to; i++)
        if (ev->codes == NULL || i >= ev->count || ev->codes[i] == MOAT_MQTT_SUBACK_FAILURE)
            return false;
    return true;
}

static void on_suback(agent *a, const moat_mqtt_event *ev, uint32_t now_ms)
{
    size_t cmds = a->sub_ota_at != 0 ? a->sub_ota_at : ev->count;

    if (ev->packet_id != a->sub_id || a->phase != AG_PHASE_SUBSCRIBE)
        return;
    if (ev->err != MOAT_OK && !granted(ev, 0, cmds) && ag_creds_trying()) {
        /* the new credentials connect, but not as this device: the loop
         * ends the attempt (no link calls from an event callback) */
        a->trial_refused = true;
        return;
    }
    if (ev->err != MOAT_OK && !granted(ev, 0, cmds)) {
        a->sub_refused = true;
        ag_set_error(a, AG_LOG_ERROR, "the broker refused the subscription to %s%s%s: "
                     "commands cannot arrive (does the broker ACL allow it?)",
                     a->topics.cmd_filter, a->topics.zonecmd[0] ? " or " : "",
                     a->topics.zonecmd);
    } else if (strncmp(a->error, "the broker refused", 18) == 0) {
        a->error[0] = '\0';
    }
    a->mqtt_ms = moat_elapsed(a->attempt_ms, now_ms);
    a->ever_ready = true;
    set_phase(a, AG_PHASE_READY, now_ms);
    if (!a->sub_refused && strncmp(a->error, "cannot connect", 14) == 0)
        a->error[0] = '\0';
    ag_log(AG_LOG_INFO, "online: commands on %s%s%s", a->topics.cmd_filter,
           a->topics.zonecmd[0] ? " and " : "", a->topics.zonecmd);
    publish_zones(a, now_ms);
    a->status_now = true;
    ag_creds_online(a, now_ms);
    if (a->sub_ota_at != 0)
        ag_update_online(a, granted(ev, a->sub_ota_at, ev->count), now_ms);
}

static void on_event(void *user, const moat_mqtt_event *ev)
{
    agent *a = user;
    uint32_t now_ms = a->now_ms;

    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED:
        on_connected(a, ev, now_ms);
        break;
    case MOAT_MQTT_EV_SUBACK:
        on_suback(a, ev, now_ms);
        break;
    case MOAT_MQTT_EV_MESSAGE:
        if (!ag_update_message(a, ev, now_ms))
            ag_commands_message(a, ev, now_ms);
        break;
    case MOAT_MQTT_EV_ERROR:
        if (ev->err == MOAT_ERR_TOO_LARGE && ev->topic.len > 0)
            ag_commands_too_large(a, ev, now_ms);
        else
            ag_log(AG_LOG_WARN, "MQTT: %s", moat_strerror(ev->err));
        break;
    case MOAT_MQTT_EV_DROPPED:
        ag_log(AG_LOG_WARN, "MQTT: message %u was dropped with the old session",
               ev->packet_id);
        break;
    case MOAT_MQTT_EV_DISCONNECTED:
    case MOAT_MQTT_EV_PUBLISHED:
    case MOAT_MQTT_EV_UNSUBACK:
        break;
    }
}

/* -------------------------------------------------------- the chain -- */

static moat_err derive_topics(const moat_config *cfg, const char *id, ag_topics *t,
                              char *msg, size_t cap)
{
    struct {
        const char *key, *tmpl, *name;
        char *out;
    } list[] = {
        {"topics.state", cfg->topics.state, NULL, t->state},
        {"topics.status", cfg->topics.status, NULL, t->status},
        {"topics.zones", cfg->topics.zones, NULL, t->zones},
        {"topics.cmd", cfg->topics.cmd, "+", t->cmd_filter},
        {"topics.zonecmd", cfg->topics.zonecmd, NULL, t->zonecmd},
    };
    size_t i;

    memset(t, 0, sizeof *t);
    for (i = 0; i < sizeof list / sizeof list[0]; i++) {
        if (list[i].tmpl[0] == '\0')
            continue;
        if (moat_config_topic(list[i].tmpl, id, list[i].name, list[i].out,
                              MOAT_CONFIG_TOPIC_MAX) != MOAT_OK) {
            snprintf(msg, cap, "key '%s': '%s' does not make a valid topic for device "
                     "id '%s'", list[i].key, list[i].tmpl, id);
            return MOAT_ERR_ARG;
        }
    }
    if (t->cmd_filter[0] == '\0') {
        snprintf(msg, cap, "key 'topics.cmd': no command topic");
        return MOAT_ERR_ARG;
    }
    return MOAT_OK;
}

moat_err ag_agent_check(const moat_config *cfg, char id[MOAT_CONFIG_ID_MAX],
                        ag_topics *topics, char *msg, size_t cap)
{
    moat_err err = ag_config_identity(cfg, id, msg, cap);

    if (err == MOAT_OK)
        err = derive_topics(cfg, id, topics, msg, cap);
    return err;
}

/* Everything a new config needs before it may replace the running one:
 * an id, topics, and credentials that load (into a probe, not ours). */
moat_err ag_agent_check_next(agent *a, char *msg, size_t cap)
{
    static ag_link probe;
    char id[MOAT_CONFIG_ID_MAX];
    ag_topics topics;
    moat_err err = ag_agent_check(&a->next_cfg, id, &topics, msg, cap);

    if (err != MOAT_OK)
        return err;
    ag_link_init(&probe);
    err = ag_link_load(&probe, &a->next_cfg, &a->clock);
    if (err != MOAT_OK)
        snprintf(msg, cap, "credentials: %s", moat_link_error(&probe.net, err));
    ag_link_unload(&probe);
    return err;
}

static void mqtt_setup(agent *a)
{
    static const char offline[] = "offline";
    moat_mqtt_config *m = &a->mcfg;
    moat_mqtt_buffers b;
    uint32_t cap = a->cfg.waittimeout_ms / 2;

    memset(m, 0, sizeof *m);
    m->client_id = a->id;
    if (a->topics.state[0] != '\0') {
        m->will_topic = a->topics.state;
        m->will_payload = (const uint8_t *)offline;
        m->will_len = sizeof offline - 1;
        m->will_qos = 1;
        m->will_retain = true;
    }
    m->clean_session = false;  /* commands sent during a short outage wait */
    m->keepalive_s = AG_KEEPALIVE_S;
    m->connack_timeout_ms = 10000;
    m->backoff_base_ms = a->cfg.retrytimeout_ms;
    if (cap > 60000u)
        cap = 60000u;
    m->backoff_cap_ms = cap > a->cfg.retrytimeout_ms ? cap : a->cfg.retrytimeout_ms;
    m->random = moat_random32;
    m->on_event = on_event;
    m->user = a;
    m->large = MOAT_MQTT_LARGE_REFUSE;
    memset(&b, 0, sizeof b);
    b.tx = tx_buf;
    b.tx_size = sizeof tx_buf;
    b.rx = rx_buf;
    b.rx_size = sizeof rx_buf;
    b.store = store_buf;
    b.store_size = sizeof store_buf;
    b.inflight = window;
    b.inflight_count = AG_INFLIGHT;
    moat_mqtt_init(&a->mqtt, m, &b); /* the sizes above are valid */
    a->mqtt_started = false;
}

static void zones_setup(agent *a, uint32_t now_ms)
{
    moat_zones_config zc;
    moat_relay_driver d;

    (void)now_ms;
    memset(&zc, 0, sizeof zc);
    zc.count = a->cfg.zone_count;
    zc.not_exclusive = !a->cfg.zones_exclusive;
    zc.max_s = a->cfg.zone_maxseconds;
    d.set = ag_relay_spi_active() ? ag_relay_spi_set : ag_relay_set;
    d.ctx = &a->relay;
    if (moat_zones_init(&a->zones, &zc, &d) != MOAT_OK)
        ag_set_error(a, AG_LOG_ERROR, "zones: %s", moat_zones_error(&a->zones));
    a->zones_dirty = true;
}

/* Everything that follows from a->cfg (already checked by ag_agent_check). */
static void setup(agent *a, bool new_clock, uint32_t now_ms)
{
    char msg[256];

    ag_agent_check(&a->cfg, a->id, &a->topics, msg, sizeof msg);
    ag_link_unload(&a->link);
    ag_update_setup(a, now_ms);
    if (new_clock)
        ag_time_set_server(&a->clock, a->cfg.ntpserver, a->cfg.retrytimeout_ms, now_ms);
    mqtt_setup(a);
    zones_setup(a, now_ms);
    a->down_since_ms = now_ms;
    a->status_due_ms = now_ms + a->cfg.statusinterval_ms;
    a->creds_retry_ms = now_ms;
    a->creds_failures = 0;
    a->phase = AG_PHASE_TIME;
    a->phase_ms = now_ms;
    ag_log(AG_LOG_INFO, "device %s, broker %s:%u, time from %s, %u zones, topics %s %s %s",
           a->id, a->cfg.mqttserver, a->cfg.mqttport,
           a->clock.kind == AG_TIME_SNTP ? a->cfg.ntpserver : "the system clock",
           a->cfg.zone_count, a->topics.state, a->topics.status, a->topics.cmd_filter);
    notify_phase(a);
}

int ag_agent_init(agent *a, const ag_opts *o, uint32_t now_ms)
{
    char msg[512];

    memset(a, 0, sizeof *a);
    a->opts = *o;
    a->start_ms = now_ms;
    a->last_ms = now_ms;
    if (gethostname(a->hostname, sizeof a->hostname - 1) != 0)
        snprintf(a->hostname, sizeof a->hostname, "unknown");
    if (ag_config_load(o->config_path, &a->cfg, &a->work, msg, sizeof msg) != MOAT_OK) {
        ag_log(AG_LOG_ERROR, "%s", msg);
        return AG_EXIT_CONFIG;
    }
    if (ag_agent_check(&a->cfg, a->id, &a->topics, msg, sizeof msg) != MOAT_OK) {
        ag_log(AG_LOG_ERROR, "%s: %s", o->config_path, msg);
        return AG_EXIT_CONFIG;
    }
    ag_relay_init(&a->relay, o->relay_file);
    if (o->relay_driver != NULL && !ag_relay_spi_open(o->relay_driver, msg, sizeof msg)) {
        ag_log(AG_LOG_ERROR, "%s", msg);
        return AG_EXIT_CONFIG;
    }
    if (ag_update_init(a, msg, sizeof msg) != AG_EXIT_OK) {
        ag_log(AG_LOG_ERROR, "%s", msg);
        return AG_EXIT_CONFIG;
    }
    ag_creds_init(a);
    ag_link_init(&a->link);
    ag_time_init(&a->clock, a->cfg.ntpserver, a->cfg.retrytimeout_ms, now_ms);
    setup(a, false, now_ms);
    return AG_EXIT_OK;
}

void ag_agent_free(agent *a)
{
    ag_update_free(a);
    ag_link_unload(&a->link);
    ag_time_free(&a->clock);
    ag_relay_spi_close();
}

static void creds_step(agent *a, uint32_t now_ms)
{
    const char *ca, *cert, *key;
    uint32_t d;
    moat_err err;

    if (!moat_time_reached(now_ms, a->creds_retry_ms))
        return;
    ag_creds_paths(a, &ca, &cert, &key);
    err = ag_link_load_files(&a->link, &a->cfg, ca, cert, key, &a->clock);
    if (err != MOAT_OK && ag_creds_attempt_failed(a, moat_link_error(&a->link.net, err), now_ms)) {
        ag_creds_paths(a, &ca, &cert, &key); /* the active set again */
        err = ag_link_load_files(&a->link, &a->cfg, ca, cert, key, &a->clock);
    }
    if (err != MOAT_OK) {
        a->creds_failures++;
        d = a->cfg.retrytimeout_ms << (a->creds_failures < 6 ? a->creds_failures : 6);
        d = min_u32(d, 60000u);
        d = d / 2 + moat_random32(NULL) % (d / 2 + 1);
        a->creds_retry_ms = now_ms + d;
        ag_set_error(a, AG_LOG_ERROR, "cannot load the credentials: %s; trying again in "
                     "%lu ms", moat_link_error(&a->link.net, err), (unsigned long)d);
        return;
    }
    if (a->link.has_expiry && a->link.cert_cn[0] && strcmp(a->link.cert_cn, a->id) != 0)
        ag_log(AG_LOG_WARN, "certificate %s has CN '%s' but the device id is '%s': the "
               "broker knows this device as '%s'", cert, a->link.cert_cn, a->id,
               a->link.cert_cn);
    ag_log(AG_LOG_INFO, "credentials loaded (certificate %s)", cert);
    if (!a->mqtt_started) {
        moat_mqtt_start(&a->mqtt, now_ms);
        a->mqtt_started = true;
    }
    set_phase(a, AG_PHASE_BACKOFF, now_ms);
}

/* The link is gone and the engine knows (it scheduled the next attempt). */
static void lost(agent *a, moat_err err, uint32_t now_ms)
{
    const char *words = moat_link_error(&a->link.net, err);
    uint32_t next;
    bool tls = err <= MOAT_ERR_TLS && err >= MOAT_ERR_CERT_FORMAT;

    ag_link_close(&a->link);
    ag_update_offline(a, now_ms);
    next = moat_mqtt_next_timeout(&a->mqtt, now_ms);
    if (ag_creds_attempt_failed(a, words, now_ms)) {
        /* the trial of new credentials failed: back to the active set */
        ag_link_unload(&a->link);
        a->creds_retry_ms = now_ms;
        if (a->phase == AG_PHASE_READY)
            a->down_since_ms = now_ms;
        set_phase(a, AG_PHASE_CREDENTIALS, now_ms);
        return;
    }
    if (a->phase == AG_PHASE_READY) {
        a->down_since_ms = now_ms;
        ag_set_error(a, AG_LOG_WARN, "lost the connection to %s:%u: %s; reconnecting in "
                     "%lu ms", a->cfg.mqttserver, a->cfg.mqttport, words, (unsigned long)next);
    } else {
        ag_set_error(a, tls ? AG_LOG_ERROR : AG_LOG_WARN,
                     "cannot connect to %s:%u: %s; next attempt in %lu ms",
                     a->cfg.mqttserver, a->cfg.mqttport, words, (unsigned long)next);
    }
    set_phase(a, AG_PHASE_BACKOFF, now_ms);
}

static void attempt_failed(agent *a, moat_err err, uint32_t now_ms)
{
    moat_mqtt_link_down(&a->mqtt, err, now_ms);
    lost(a, err, now_ms);
}

static void link_opened(agent *a, uint32_t now_ms)
{
    moat_err err = moat_mqtt_link_up(&a->mqtt, now_ms);

    if (err != MOAT_OK) {
        attempt_failed(a, err, now_ms);
        return;
    }
    set_phase(a, AG_PHASE_MQTT, now_ms);
}

static void connect_step(agent *a, uint32_t now_ms)
{
    moat_err err;

    if (!moat_mqtt_connect_due(&a->mqtt, now_ms))
        return;
    if (!ag_time_valid(&a->clock)) { /* cannot happen: TIME comes first */
        set_phase(a, AG_PHASE_TIME, now_ms);
        return;
    }
    ag_log(AG_LOG_DEBUG, "connecting to %s:%u", a->cfg.mqttserver, a->cfg.mqttport);
    a->attempt_ms = now_ms;
    a->link_opened_ms = now_ms;
    set_phase(a, AG_PHASE_TLS, now_ms);
    err = ag_link_open(&a->link);
    if (err == MOAT_OK)
        link_opened(a, now_ms);
    else if (err != MOAT_ERR_WOULD_BLOCK)
        attempt_failed(a, err, now_ms);
}

static void tls_step(agent *a, uint32_t now_ms)
{
    moat_err err = ag_link_poll(&a->link);

    if (err == MOAT_OK)
        link_opened(a, now_ms);
    else if (err != MOAT_ERR_WOULD_BLOCK)
        attempt_failed(a, err, now_ms);
    else if (moat_elapsed(a->link_opened_ms, now_ms) >= AG_CONNECT_TIMEOUT_MS)
        attempt_failed(a, MOAT_ERR_TIMEOUT, now_ms);
}

static void finish_close(agent *a, uint32_t now_ms);

static void pump(agent *a, uint32_t now_ms)
{
    moat_err err;
    moat_mqtt_state st;

    if (a->link.draining) {
        if (ag_link_drained(&a->link) || moat_time_reached(now_ms, a->close_by_ms))
            finish_close(a, now_ms);
        return;
    }
    err = moat_mqtt_pump(&a->mqtt, &a->link.net.t, now_ms);
    st = moat_mqtt_get_state(&a->mqtt);
    if (a->phase == AG_PHASE_CLOSING) {
        if (moat_time_reached(now_ms, a->close_by_ms) || (err != MOAT_OK && st != MOAT_MQTT_IDLE)) {
            finish_close(a, now_ms);
        } else if (st == MOAT_MQTT_IDLE) {
            ag_link_shutdown(&a->link); /* DISCONNECT is out */
            if (ag_link_drained(&a->link))
                finish_close(a, now_ms);
        }
        return;
    }
    if (err != MOAT_OK)
        lost(a, err, now_ms);
}

/* ------------------------------------------------ stopping, reconfig -- */

void ag_agent_stop(agent *a, int code, const char *why, uint32_t now_ms)
{
    static const char offline[] = "offline";

    if (a->phase == AG_PHASE_CLOSING && a->after == AG_AFTER_EXIT)
        return;
    ag_log(code == AG_EXIT_OK || code == AG_EXIT_REBOOT ? AG_LOG_INFO : AG_LOG_ERROR,
           "stopping: %s (exit code %d)", why, code);
    a->exit_code = code;
    a->after = AG_AFTER_EXIT;
    moat_zones_all_off(&a->zones, now_ms);
    ag_update_abort(a, "the agent stops");
    ag_update_offline(a, now_ms);
    if (moat_mqtt_get_state(&a->mqtt) == MOAT_MQTT_CONNECTED) {
        publish_zones(a, now_ms);
        ag_publish(a, a->topics.state, offline, sizeof offline - 1, 1, true, now_ms);
        if (moat_mqtt_disconnect(&a->mqtt, now_ms) == MOAT_OK) {
            a->close_by_ms = now_ms + AG_CLOSE_GRACE_MS;
            set_phase(a, AG_PHASE_CLOSING, now_ms);
            return;
        }
    }
    finish_close(a, now_ms);
}

void ag_agent_reconfigure(agent *a, uint32_t now_ms)
{
    static const char offline[] = "offline";
    char id[MOAT_CONFIG_ID_MAX], msg[256];
    ag_topics t;

    if (a->phase == AG_PHASE_CLOSING)
        return;
    a->after = AG_AFTER_RECONFIGURE;
    moat_zones_all_off(&a->zones, now_ms);
    ag_update_abort(a, "a new configuration is applied");
    ag_update_offline(a, now_ms);
    if (moat_mqtt_get_state(&a->mqtt) == MOAT_MQTT_CONNECTED) {
        publish_zones(a, now_ms);
        /* The new config may name another state topic: leave no stale
         * "online" behind on the old one. */
        if (ag_agent_check(&a->next_cfg, id, &t, msg, sizeof msg) != MOAT_OK ||
            strcmp(t.state, a->topics.state) != 0)
            ag_publish(a, a->topics.state, offline, sizeof offline - 1, 1, true, now_ms);
        if (moat_mqtt_disconnect(&a->mqtt, now_ms) == MOAT_OK) {
            a->close_by_ms = now_ms + AG_CLOSE_GRACE_MS;
            set_phase(a, AG_PHASE_CLOSING, now_ms);
            return;
        }
    }
    finish_close(a, now_ms);
}

void ag_agent_relink(agent *a, uint32_t now_ms)
{
    if (a->phase == AG_PHASE_CLOSING)
        return;
    a->after = AG_AFTER_RELINK;
    ag_update_offline(a, now_ms);
    if (moat_mqtt_get_state(&a->mqtt) == MOAT_MQTT_CONNECTED &&
        moat_mqtt_disconnect(&a->mqtt, now_ms) == MOAT_OK) {
        a->close_by_ms = now_ms + AG_CLOSE_GRACE_MS;
        set_phase(a, AG_PHASE_CLOSING, now_ms);
        return;
    }
    finish_close(a, now_ms);
}

bool ag_agent_output_drained(const agent *a)
{
    return !engine_has_output(a);
}

static void finish_close(agent *a, uint32_t now_ms)
{
    bool new_clock;

    ag_link_close(&a->link);
    if (a->after == AG_AFTER_EXIT) {
        a->exit_now = true;
        return;
    }
    if (a->after == AG_AFTER_RELINK) {
        /* load the credentials creds.c names now, and connect at once */
        a->after = AG_AFTER_NONE;
        ag_link_unload(&a->link);
        if (moat_mqtt_get_state(&a->mqtt) != MOAT_MQTT_IDLE)
            moat_mqtt_link_down(&a->mqtt, MOAT_OK, now_ms);
        a->mqtt_started = moat_mqtt_get_state(&a->mqtt) != MOAT_MQTT_IDLE;
        a->creds_retry_ms = now_ms;
        a->down_since_ms = now_ms;
        set_phase(a, AG_PHASE_CREDENTIALS, now_ms);
        return;
    }
    if (a->after != AG_AFTER_RECONFIGURE)
        return;
    a->after = AG_AFTER_NONE;
    new_clock = strcmp(a->cfg.ntpserver, a->next_cfg.ntpserver) != 0;
    a->cfg = a->next_cfg;
    a->error[0] = '\0';
    setup(a, new_clock, now_ms);
    ag_log(AG_LOG_INFO, "new configuration applied");
}

void ag_agent_reload(agent *a, uint32_t now_ms)
{
    char msg[512];

    if (ag_config_load(a->opts.config_path, &a->next_cfg, &a->work, msg, sizeof msg) != MOAT_OK ||
        ag_agent_check_next(a, msg, sizeof msg) != MOAT_OK) {
        ag_set_error(a, AG_LOG_ERROR, "reload refused, the old config stays in force: %s",
                     msg);
        return;
    }
    ag_log(AG_LOG_INFO, "SIGHUP: reloading %s", a->opts.config_path);
    ag_agent_reconfigure(a, now_ms);
}

/* ------------------------------------------------------------ a turn -- */

void ag_agent_service(agent *a, uint32_t now_ms)
{
    if (a->exit_now)
        return;
    a->now_ms = now_ms;
    a->uptime_ms += moat_elapsed(a->last_ms, now_ms);
    a->last_ms = now_ms;

    if (ag_time_service(&a->clock, now_ms))
        a->clock_wait_ms = moat_elapsed(a->clock.started_ms, now_ms);
    if (a->phase == AG_PHASE_TIME) {
        if (!ag_time_valid(&a->clock)) {
            if (strncmp(a->error, a->clock.why, sizeof a->error - 1) != 0 && a->clock.why[0] != '\0') {
                copy_text(a->error, sizeof a->error, a->clock.why);
                notify_phase(a);
                ag_write_status_file(a, now_ms);
            }
        } else {
            if (strncmp(a->error, a->clock.why, sizeof a->error - 1) == 0 || a->clock.why[0] == '\0')
                a->error[0] = '\0';
            set_phase(a, AG_PHASE_CREDENTIALS, now_ms);
        }
    }
    if (a->phase == AG_PHASE_CREDENTIALS)
        creds_step(a, now_ms);
    if (a->phase == AG_PHASE_BACKOFF)
        connect_step(a, now_ms);
    if (a->phase == AG_PHASE_TLS)
        tls_step(a, now_ms);
    if (a->phase >= AG_PHASE_MQTT)
        pump(a, now_ms);
    if (a->trial_refused) {
        a->trial_refused = false;
        if (a->phase == AG_PHASE_SUBSCRIBE)
            attempt_failed(a, MOAT_ERR_SUBACK_FAILURE, now_ms);
    }
    if (a->exit_now)
        return;

    if (moat_zones_tick(&a->zones, now_ms) != MOAT_OK)
        ag_set_error(a, AG_LOG_ERROR, "zones: %s", moat_zones_error(&a->zones));
    if (ag_relay_spi_poll() != MOAT_OK) {
        ag_set_error(a, AG_LOG_ERROR, "relays: %s", ag_relay_spi_error());
        moat_zones_all_off(&a->zones, now_ms);
    }
    if (moat_zones_take_changed(&a->zones))
        a->zones_dirty = true;
    if (a->phase != AG_PHASE_CLOSING) {
        ag_update_service(a, now_ms);
        ag_creds_service(a, now_ms);
        if (a->exit_now)
            return;
    }
    if (a->phase == AG_PHASE_READY) {
        if (a->zones_dirty)
            publish_zones(a, now_ms);
        if (a->reconfigure_pending) {
            a->reconfigure_pending = false;
            ag_agent_reconfigure(a, now_ms);
        } else if (a->reboot_pending) {
            a->reboot_pending = false;
            ag_agent_stop(a, AG_EXIT_REBOOT, "reboot command", now_ms);
        }
        if (a->phase == AG_PHASE_READY && moat_mqtt_get_state(&a->mqtt) == MOAT_MQTT_CONNECTED) {
            if (a->status_now || moat_time_reached(now_ms, a->status_due_ms))
                ag_publish_status(a, now_ms);
            pump(a, now_ms); /* send what was queued now, not at the next wake-up */
        }
    } else if (a->phase != AG_PHASE_CLOSING) {
        if (moat_time_reached(now_ms, a->status_due_ms)) {
            a->status_due_ms = now_ms + a->cfg.statusinterval_ms;
            ag_write_status_file(a, now_ms);
        }
        if (moat_elapsed(a->down_since_ms, now_ms) >= a->cfg.waittimeout_ms) {
            char why[160];
            snprintf(why, sizeof why, "no broker connection for %lu ms (waittimeout %lu ms)",
                     (unsigned long)moat_elapsed(a->down_since_ms, now_ms),
                     (unsigned long)a->cfg.waittimeout_ms);
            moat_zones_all_off(&a->zones, now_ms);
            ag_link_close(&a->link);
            ag_log(AG_LOG_ERROR, "watchdog: %s; relays off, exiting (code %d)", why,
                   AG_EXIT_LINK_DOWN);
            a->exit_code = AG_EXIT_LINK_DOWN;
            a->exit_now = true;
        }
    }
}

/* ---------------------------------------------------------- waiting -- */

static bool engine_has_output(const agent *a)
{
    size_t len = 0;

    moat_mqtt_output(&a->mqtt, &len);
    return len > 0;
}

/* moat_mqtt_pump reads only while tx has room for the answers; polling for
 * input without that room would spin. */
static bool engine_can_read(const agent *a)
{
    size_t len = 0;

    moat_mqtt_output(&a->mqtt, &len);
    return AG_TX_SIZE - len > 64;
}

uint32_t ag_agent_next_timeout(agent *a, uint32_t now_ms)
{
    uint32_t t = ag_time_next_timeout(&a->clock, now_ms);

    if (a->status_now || a->reconfigure_pending || a->reboot_pending)
        return 0;
    if (a->phase == AG_PHASE_TIME && ag_time_valid(&a->clock))
        return 0; /* a new config was just set up: go on at once */
    switch (a->phase) {
    case AG_PHASE_TIME:
        break;
    case AG_PHASE_CREDENTIALS:
        t = min_u32(t, until(now_ms, a->creds_retry_ms));
        break;
    case AG_PHASE_TLS:
        t = min_u32(t, until(now_ms, a->link_opened_ms + AG_CONNECT_TIMEOUT_MS));
        /* a name lookup has no socket to wake us; a fallback is due */
        t = min_u32(t, moat_tcp_poll_in(&a->link.net.tcp, now_ms));
        break;
    case AG_PHASE_CLOSING:
        t = min_u32(t, until(now_ms, a->close_by_ms));
        /* fall through */
    default:
        t = min_u32(t, moat_mqtt_next_timeout(&a->mqtt, now_ms));
        break;
    }
    if (a->phase >= AG_PHASE_MQTT && moat_link_pending(&a->link.net) && engine_can_read(a))
        t = 0; /* bytes wait inside mbedTLS; the socket will not say so */
    t = min_u32(t, moat_zones_next_timeout(&a->zones, now_ms));
    t = min_u32(t, ag_relay_spi_next_timeout());
    t = min_u32(t, ag_update_next_timeout(a, now_ms));
    if (a->phase != AG_PHASE_CLOSING) {
        t = min_u32(t, until(now_ms, a->status_due_ms));
        if (a->phase != AG_PHASE_READY)
            t = min_u32(t, until(now_ms, a->down_since_ms + a->cfg.waittimeout_ms));
    }
    return t;
}

size_t ag_agent_pollfds(agent *a, struct pollfd *p, size_t cap)
{
    size_t n = 0;
    int fd = ag_time_fd(&a->clock);

    if (fd >= 0 && n < cap) {
        p[n].fd = fd;
        p[n++].events = POLLIN;
    }
    if (a->phase >= AG_PHASE_TLS && moat_link_fd(&a->link.net) >= 0 && n < cap) {
        bool out = engine_has_output(a);
        bool w = moat_link_want_write(&a->link.net, out);
        bool r = a->phase == AG_PHASE_TLS ? !w : (engine_can_read(a) || !w);
        if (a->link.draining)
            r = true, w = false;
        p[n].fd = moat_link_fd(&a->link.net);
        p[n++].events = (short)((r ? POLLIN : 0) | (w ? POLLOUT : 0));
    }
    n += ag_update_pollfds(a, p + n, cap - n);
    return n;
}
