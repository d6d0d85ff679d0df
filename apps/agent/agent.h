/*
 * agent.h - the pieces of moat-agent shared by its files.
 *
 *   main.c      options, exit codes, signals, the poll() loop
 *   agent.c     the connection state machine: time -> credentials -> TLS ->
 *               MQTT -> subscribe -> ready, and what happens when ready
 *   commands.c  the command table, results, reconfiguration
 *   config.c    reading config.json, identity (device id or MAC)
 *   timesrc.c   the clock: SNTP over UDP, or the kernel-synchronised clock
 *   link.c      TCP + mutual TLS to the broker
 *   relay.c     the simulated relay driver (--relay-file)
 *   relay_spi.c the relays on the moat-avr co-processor (--relay-driver)
 *   update.c    signed firmware updates: A/B slots, the image verifier, the
 *               download over HTTPS, the transfer over MQTT, trial and
 *               confirmation; config.json from the update server
 *   creds.c     credential rotation: csr, cert, ca, key, the trial
 *               connection, commit and rollback
 *   watchdog.c  the loop stall check (SIGALRM) and the exit codes it uses
 *   notify.c    systemd's sd_notify datagrams, without libsystemd
 *   log.c       levelled log lines on stderr
 */
#ifndef MOAT_AGENT_H
#define MOAT_AGENT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/command.h"
#include "moat/config.h"
#include "moat/credstore.h"
#include "moat/error.h"
#include "moat/mqtt.h"
#include "moat/posix.h"
#include "moat/sntp.h"
#include "moat/status.h"
#include "moat/tls.h"
#include "moat/tls_link.h"
#include "moat/zones.h"

#ifndef MOAT_AGENT_VERSION
#define MOAT_AGENT_VERSION "0.0.0"
#endif

/* Exit codes (docs/AGENT.md). systemd restarts the agent after every one
 * but AG_EXIT_CONFIG (RestartPreventExitStatus=2 in the unit). */
#define AG_EXIT_OK 0        /* stopped by SIGTERM or SIGINT */
#define AG_EXIT_ERROR 1     /* a runtime failure at start (memory, sockets) */
#define AG_EXIT_CONFIG 2    /* usage error, or config.json invalid or unreadable */
#define AG_EXIT_WATCHDOG 3  /* the loop stalled past its limit */
#define AG_EXIT_LINK_DOWN 4 /* no broker connection for longer than waittimeout */
#define AG_EXIT_REBOOT 5    /* the reboot command, or a new image to start on trial */

/* ------------------------------------------------------------- log.c -- */

enum { AG_LOG_ERROR = 0, AG_LOG_WARN, AG_LOG_INFO, AG_LOG_DEBUG };

void ag_log_set_level(int level);
bool ag_log_enabled(int level);
void ag_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------- notify.c -- */

bool ag_notify_init(void);
void ag_notify(const char *msg);
void ag_notify_status(const char *status);
/* systemd's watchdog period for us in ms ($WATCHDOG_USEC), 0 if none. */
uint32_t ag_notify_watchdog_ms(void);

/* --------------------------------------------------------- timesrc.c -- */

typedef enum ag_time_kind { AG_TIME_SYSTEM = 1, AG_TIME_SNTP } ag_time_kind;

typedef struct ag_time {
    ag_time_kind kind;
    char source[8];           /* "sntp" or "system" */
    char host[MOAT_CONFIG_HOST_MAX];
    uint16_t port;
    int fd;                   /* UDP socket to the server, -1 until needed */
    struct moat_lookup *lookup; /* the server's name, being looked up */
    moat_sntp sntp;
    moat_sntp_config sntp_cfg;
    bool valid;
    bool hold;                /* an implausible answer: wait, then start over */
    uint32_t hold_until_ms;
    uint32_t started_ms;      /* when the wait for a valid clock began */
    uint32_t valid_at_ms;
    uint32_t next_check_ms;   /* system clock: next ntp_adjtime() */
    uint32_t last_log_ms;
    unsigned requests;
    moat_err last_err;
    char why[512];            /* why the clock is not valid yet */
} ag_time;

/* ntpserver is "host", "host:port", "[v6]:port", or "" / "system" for the
 * kernel-synchronised system clock. MOAT_ERR_ARG for a bad port. */
moat_err ag_time_init(ag_time *t, const char *ntpserver, uint32_t retry_ms,
                      uint32_t now_ms);
bool ag_time_server_valid(const char *ntpserver);
/* A new ntpserver from a new config: SNTP to SNTP keeps the valid clock and
 * asks the new server at once; a change of kind starts over. */
void ag_time_set_server(ag_time *t, const char *ntpserver, uint32_t retry_ms,
                        uint32_t now_ms);
void ag_time_free(ag_time *t);
int ag_time_fd(const ag_time *t);
/* Send, receive, run timers. True when the clock became valid just now. */
bool ag_time_service(ag_time *t, uint32_t now_ms);
uint32_t ag_time_next_timeout(const ag_time *t, uint32_t now_ms);
bool ag_time_valid(const ag_time *t);
moat_err ag_time_unix_ms(ag_time *t, uint32_t now_ms, int64_t *unix_ms);
/* moat_tls_time_fn over an ag_time: 0 ("not valid") until it is. */
int64_t ag_time_tls_now(void *user);

/* ------------------------------------------------------------ link.c -- */

typedef struct ag_link {
    const char *host;         /* into the agent's config */
    uint16_t port;
    moat_link net;            /* TCP, then mutual TLS (moat/tls_link.h): its
                                 fd, want_write, pending and error words are
                                 moat_link's */
    bool loaded;              /* credentials loaded (moat_tls_init done) */
    bool draining;            /* shut down; reading until the broker closes */
    moat_tls_config tls_cfg;
    moat_tls tls;             /* kept across reconnects: resumption */
    bool has_expiry;
    int64_t cert_expiry_s;    /* our certificate's notAfter */
    char cert_cn[65];
    /* TLS reads a record's header and body apart: one recv() for both, or
     * for several records (moat_tcp_set_readahead) */
    uint8_t readahead[2048];
} ag_link;

void ag_link_init(ag_link *l);
/* Load cafile, certfile, keyfile (moat_tls_init). Words: moat_link_error. */
moat_err ag_link_load(ag_link *l, const moat_config *cfg, ag_time *clock);
/* The same with other credential files (the pending set of creds.c). */
moat_err ag_link_load_files(ag_link *l, const moat_config *cfg, const char *cafile,
                            const char *certfile, const char *keyfile, ag_time *clock);
/* Read the expiry and CN of our certificate again (after a commit). */
void ag_link_read_cert(ag_link *l, const char *certfile);
void ag_link_unload(ag_link *l);
/* MOAT_OK (open), MOAT_ERR_WOULD_BLOCK (poll when the fd is ready), or an
 * error. The TLS handshake is part of opening. */
moat_err ag_link_open(ag_link *l);
moat_err ag_link_poll(ag_link *l);
void ag_link_local_ip(const ag_link *l, char *out, size_t cap);
void ag_link_close(ag_link *l);
/* After DISCONNECT: close_notify and shutdown(SHUT_WR); then poll for input
 * and call ag_link_drained() until it is true (the broker closed). */
void ag_link_shutdown(ag_link *l);
bool ag_link_drained(ag_link *l);

/* ----------------------------------------------------------- relay.c -- */

typedef struct ag_relay {
    const char *file;         /* --relay-file, or NULL */
    char tmp[300];            /* file + ".tmp", made once: the watchdog's
                                 signal handler writes through it */
    uint8_t last;
    bool written;
} ag_relay;

void ag_relay_init(ag_relay *r, const char *file);
moat_err ag_relay_set(void *ctx, uint8_t bitmap);
/* Async-signal-safe: every relay off (the watchdog's last act). */
void ag_relay_off_from_signal(const ag_relay *r);

/* ------------------------------------------------------- relay_spi.c -- */

/* --relay-driver spidev:PATH[@HZ] or simavr:ELF: the moat-avr co-processor. */
bool ag_relay_spi_open(const char *spec, char *why, size_t cap);
bool ag_relay_spi_active(void);
moat_err ag_relay_spi_set(void *ctx, uint8_t bitmap); /* ctx: the ag_relay */
moat_err ag_relay_spi_poll(void); /* the heartbeat; a new failure is returned once */
const char *ag_relay_spi_error(void);
uint32_t ag_relay_spi_next_timeout(void);
void ag_relay_spi_close(void);

/* -------------------------------------------------------- watchdog.c -- */

/* Arm the stall check: if ag_watchdog_kick() is not called for limit_ms,
 * SIGALRM switches the relays off and exits AG_EXIT_WATCHDOG. */
void ag_watchdog_init(uint32_t limit_ms, const ag_relay *relay);
void ag_watchdog_kick(void);
void ag_watchdog_stop(void);

/* ---------------------------------------------------------- config.c -- */

#define AG_CONFIG_FILE_MAX 16384u

/* Read and parse a config file. On failure, msg holds words that name the
 * file and the key; *cfg is untouched. Warnings are logged. */
moat_err ag_config_load(const char *path, moat_config *cfg, moat_config_work *work,
                        char *msg, size_t cap);
/* Parse config text (the config command's payload). */
moat_err ag_config_parse(const char *source, const char *text, size_t len,
                         moat_config *cfg, moat_config_work *work, char *msg, size_t cap,
                         bool log_warnings);
/* The device id: cfg->deviceid, or the MAC of cfg->interface. */
moat_err ag_config_identity(const moat_config *cfg, char id[MOAT_CONFIG_ID_MAX],
                            char *msg, size_t cap);
/* Write text to path atomically: a temporary file in the same directory,
 * renamed over path. durable: fsync the file and the directory too (the
 * config; not the status file, which changes often). */
moat_err ag_write_atomic(const char *path, const char *text, size_t len, int mode,
                         bool durable, char *msg, size_t cap);

/* ------------------------------------------------------------ agent.c -- */

typedef enum ag_phase {
    AG_PHASE_TIME = 0,     /* waiting for a valid clock */
    AG_PHASE_CREDENTIALS,  /* loading CA, certificate, key */
    AG_PHASE_BACKOFF,      /* waiting for the next connection attempt */
    AG_PHASE_TLS,          /* TCP connect and TLS handshake */
    AG_PHASE_MQTT,         /* CONNECT sent, waiting for CONNACK */
    AG_PHASE_SUBSCRIBE,    /* SUBSCRIBE sent, waiting for SUBACK */
    AG_PHASE_READY,        /* online: status, commands */
    AG_PHASE_CLOSING       /* DISCONNECT going out before an exit or a new config */
} ag_phase;

const char *ag_phase_name(ag_phase p);

/* What to do once the link is closed in AG_PHASE_CLOSING. */
typedef enum ag_after {
    AG_AFTER_NONE = 0,
    AG_AFTER_EXIT,         /* exit with exit_code */
    AG_AFTER_RECONFIGURE,  /* apply next_cfg */
    AG_AFTER_RELINK        /* connect again with other credentials (creds.c) */
} ag_after;

typedef struct ag_opts {
    const char *config_path;
    const char *relay_file;
    const char *relay_driver;
    const char *status_file;
    uint32_t stall_limit_ms;
    bool verbose;
    const char *slots_dir;            /* --slots-dir, else $MOAT_SLOTS_DIR */
    const char *update_keys[2];       /* --update-key: trusted signing keys */
    unsigned update_key_count;
    const char *product;              /* --product: the image product id */
    const char *credstore;            /* --credstore: the pending set's dir */
} ag_opts;

/* Product id of images when there is no --product. */
#define AG_DEFAULT_PRODUCT "moat-agent"

/* Expanded topics for the current id and config ("" when unused). */
typedef struct ag_topics {
    char state[MOAT_CONFIG_TOPIC_MAX];
    char status[MOAT_CONFIG_TOPIC_MAX];
    char zones[MOAT_CONFIG_TOPIC_MAX];
    char cmd_filter[MOAT_CONFIG_TOPIC_MAX];
    char zonecmd[MOAT_CONFIG_TOPIC_MAX];
} ag_topics;

/* MQTT memory: commands up to AG_CONFIG_FILE_MAX bytes (config) must fit
 * rx, and so must update blocks of AG_OTA_MAX_BLOCK bytes with their topic. */
#define AG_TX_SIZE (24u * 1024u)
#define AG_RX_SIZE (AG_CONFIG_FILE_MAX + 1024u)
#define AG_OTA_MAX_BLOCK 16384u
#define AG_STORE_SIZE (32u * 1024u)
#define AG_INFLIGHT 32u

#define AG_KEEPALIVE_S 30u
#define AG_CONNECT_TIMEOUT_MS 15000u /* TCP connect + TLS handshake */
#define AG_CLOSE_GRACE_MS 3000u      /* to get the last messages out */

typedef struct agent {
    ag_opts opts;
    moat_config cfg;
    moat_config next_cfg;             /* validated by the config command */
    moat_config_work work;
    char id[MOAT_CONFIG_ID_MAX];
    ag_topics topics;

    ag_time clock;
    ag_link link;
    ag_relay relay;
    moat_zones zones;
    bool zones_dirty;                 /* publish the zones document when online */

    moat_mqtt_config mcfg;
    moat_mqtt_client mqtt;
    bool mqtt_started;
    uint16_t sub_id;
    bool sub_refused;
    size_t sub_ota_at;                /* index of the update filters in the
                                         SUBSCRIBE, 0 when none */
    bool trial_refused;               /* SUBACK refused new credentials */

    ag_phase phase;
    uint32_t start_ms;
    uint32_t now_ms;                  /* of the current turn, for callbacks */
    uint32_t last_ms;
    uint64_t uptime_ms;
    uint32_t phase_ms;                /* when the phase began */
    uint32_t down_since_ms;           /* not ready since (waittimeout) */
    uint32_t link_opened_ms;          /* the attempt in AG_PHASE_TLS began */
    uint32_t attempt_ms;              /* the attempt began (for mqttmillis) */
    uint32_t creds_retry_ms;          /* AG_PHASE_CREDENTIALS: next try */
    unsigned creds_failures;
    uint32_t status_due_ms;
    bool status_now;                  /* publish a status at the next turn */
    uint32_t max_loop_ms;             /* longest loop turn since the last status */
    uint32_t mqtt_ms;                 /* the last connection took this long */
    uint32_t reconnects;
    uint16_t retained_refused;        /* commands (bits by table index) whose
                                         retained copy this session refused */
    bool ever_ready;
    uint32_t clock_wait_ms;           /* start until the clock was valid */
    char error[MOAT_STATUS_ERROR_MAX];

    bool reconfigure_pending;         /* the config command was accepted */
    bool reboot_pending;              /* the reboot command was accepted */
    ag_after after;                   /* AG_PHASE_CLOSING: then what */
    int exit_code;
    uint32_t close_by_ms;
    bool exit_now;                    /* main loop: leave with exit_code */
    char hostname[65];
    char ip[64];
} agent;

/* The device id and topics a config gives; words naming the key if bad. */
moat_err ag_agent_check(const moat_config *cfg, char id[MOAT_CONFIG_ID_MAX],
                        ag_topics *topics, char *msg, size_t cap);
/* Check a->next_cfg fully (id, topics, credentials); words in msg. */
moat_err ag_agent_check_next(agent *a, char *msg, size_t cap);
/* Set up everything from a loaded config; MOAT_OK or AG_EXIT_* words. */
int ag_agent_init(agent *a, const ag_opts *o, uint32_t now_ms);
/* One turn of work; sets a->exit_now to end the run. */
void ag_agent_service(agent *a, uint32_t now_ms);
/* Longest sleep before ag_agent_service must run again. */
uint32_t ag_agent_next_timeout(agent *a, uint32_t now_ms);
/* poll() descriptors of the agent (link, SNTP); returns how many. */
size_t ag_agent_pollfds(agent *a, struct pollfd *p, size_t cap);
/* Begin an orderly stop: offline state, DISCONNECT, exit with code. */
void ag_agent_stop(agent *a, int code, const char *why, uint32_t now_ms);
/* SIGHUP: read the config file again and apply it if it is good. */
void ag_agent_reload(agent *a, uint32_t now_ms);
void ag_agent_free(agent *a);
/* Record the last error, for the status document (and log it). */
void ag_set_error(agent *a, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Publish helpers; QoS 0 is dropped while offline. */
moat_err ag_publish(agent *a, const char *topic, const void *payload, size_t len,
                    uint8_t qos, bool retain, uint32_t now_ms);
void ag_publish_status(agent *a, uint32_t now_ms);
void ag_write_status_file(agent *a, uint32_t now_ms);
/* Begin applying next_cfg (closing the link first when it is up). */
void ag_agent_reconfigure(agent *a, uint32_t now_ms);
/* Close the link in order and connect again, loading the credentials
 * creds.c names (a trial of a pending set, or back to the active one). */
void ag_agent_relink(agent *a, uint32_t now_ms);
/* True when everything queued for the broker has been written out. */
bool ag_agent_output_drained(const agent *a);

/* --------------------------------------------------------- commands.c -- */

/* An incoming message: a command (reply on its result topic) or ignored. */
void ag_commands_message(agent *a, const moat_mqtt_event *ev, uint32_t now_ms);
/* A message too large for rx: the error result for its command. */
void ag_commands_too_large(agent *a, const moat_mqtt_event *ev, uint32_t now_ms);
/* Publish a result document on the result topic of command name (QoS 1). */
void ag_publish_result(agent *a, const char *name, const char *doc, size_t len,
                       uint32_t now_ms);
/* {"ok":false,"error":why} on the result topic of name, and a log line. */
void ag_result_error(agent *a, const char *name, const char *why, uint32_t now_ms);
/* The config command's checks and write, for a config from anywhere (the
 * payload, or the update server): parse, check, write, then reconfigure.
 * source names it in messages. Words of a refusal in msg. */
moat_err ag_config_apply(agent *a, const char *source, const char *text, size_t len,
                         char *msg, size_t cap);

/* ----------------------------------------------------------- update.c -- */

/* Settings from the options and launcher's environment: trusted keys,
 * product, slot directory, the running slot and version. AG_EXIT_CONFIG
 * with words in msg for a key or slot directory that cannot be used. */
int ag_update_init(agent *a, char *msg, size_t cap);
/* (Re)derive the update topics after the config changed. */
void ag_update_setup(agent *a, uint32_t now_ms);
/* The SUBSCRIBE filters of updates over MQTT (0, or 2 into subs). */
size_t ag_update_filters(agent *a, moat_mqtt_sub *subs, size_t cap);
/* The broker granted (or refused) those filters: the link is ready. */
void ag_update_online(agent *a, bool granted, uint32_t now_ms);
/* The link is going or gone. */
void ag_update_offline(agent *a, uint32_t now_ms);
/* An incoming message: true when it was an update message (taken). */
bool ag_update_message(agent *a, const moat_mqtt_event *ev, uint32_t now_ms);
/* A status document was published while online: confirm a trial start. */
void ag_update_status_published(agent *a, uint32_t now_ms);
/* Each loop turn: downloads, the MQTT transfer, a restart into a new slot. */
void ag_update_service(agent *a, uint32_t now_ms);
uint32_t ag_update_next_timeout(agent *a, uint32_t now_ms);
size_t ag_update_pollfds(agent *a, struct pollfd *p, size_t cap);
/* Stop whatever download runs (the agent stops or reconfigures). */
void ag_update_abort(agent *a, const char *why);
void ag_update_free(agent *a);
/* For the status document: the running version and slot ("a", "b", "-"),
 * and the update members (trial, bootstate, securitycounter, rollback,
 * update, updatepercent) into an open JSON object. */
const char *ag_update_version(void);
const char *ag_update_slot(void);
bool ag_update_on_trial(void);
void ag_update_status_members(moat_json_writer *w);
/* The config command with an empty payload: fetch config.json from the
 * update server; the result comes when it is applied or refused. */
moat_err ag_update_fetch_config(agent *a, char *why, size_t cap);
/* The firmware and flash commands. */
moat_err ag_cmd_firmware(const moat_command *self, void *user, const uint8_t *payload,
                         size_t len, char *why, size_t cap);
moat_err ag_cmd_flash(const moat_command *self, void *user, const uint8_t *payload,
                      size_t len, char *why, size_t cap);

/* ------------------------------------------------------------ creds.c -- */

/* Open the credential store (--credstore, else <keyfile's dir>/credstore)
 * and finish what a power cut interrupted. A store that cannot be opened
 * only turns rotation off (the commands say why). */
void ag_creds_init(agent *a);
/* The files to load for the broker link (the pending set during a trial). */
void ag_creds_paths(agent *a, const char **ca, const char **cert, const char **key);
bool ag_creds_trying(void);
/* The link is ready: commit a trial, publish a deferred result. */
void ag_creds_online(agent *a, uint32_t now_ms);
/* A connection attempt failed (words: why). During a trial: roll back and
 * return true; the caller loads the active set again. */
bool ag_creds_attempt_failed(agent *a, const char *words, uint32_t now_ms);
/* Each loop turn: start a staged trial once the command's PUBACK is out. */
void ag_creds_service(agent *a, uint32_t now_ms);
bool ag_creds_busy(void);
void ag_creds_status_members(moat_json_writer *w);
moat_err ag_cmd_csr(const moat_command *self, void *user, const uint8_t *payload,
                    size_t len, char *why, size_t cap);
moat_err ag_cmd_cred(const moat_command *self, void *user, const uint8_t *payload,
                     size_t len, char *why, size_t cap);

#endif
