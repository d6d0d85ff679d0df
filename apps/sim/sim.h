/*
 * sim.h - moat-sim: many virtual moat devices in one process, on one poll
 * loop, against a real broker.
 *
 *   main.c    options, setup, the run's phases, the report
 *   ident.c   identities: the fleet CA loaded from a `moat pki` directory,
 *             one fresh P-256 key and certificate per device, made in memory
 *   device.c  one virtual device: TCP, mutual TLS, the MQTT engine, its
 *             status timer and its command handling
 *   monitor.c the observer: an operator connection that counts every status
 *             message and sends commands, so loss is measured end to end
 *   loop.c    the epoll loop, the ramp, the timer scan
 *   stats.c   percentiles, RSS, the mbedTLS heap count
 *
 * Every device is a moat_tls + moat_mqtt_client pair with its own identity;
 * nothing about a session is shared except the CA's public certificate
 * bytes (each device still parses its own copy, as a real one would) and
 * one random generator.
 */
#ifndef MOAT_SIM_H
#define MOAT_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/mqtt.h"
#include "moat/posix.h"
#include "moat/tls.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#define SIM_ID_LEN 12          /* 12 lowercase hex digits, like a MAC */
#define SIM_MAX_ERRORS 8       /* distinct failure messages kept for the report */

/* ---------------------------------------------------------------- options */

typedef struct sim_opts {
    const char *host;          /* broker address (default 127.0.0.1) */
    const char *tls_name;      /* name checked against the broker cert (default: host) */
    uint16_t port;
    const char *pki;           /* `moat pki` directory: ca.crt, ca.key, operators/ */
    const char *monitor;       /* operator name of the monitor (default moat-sim) */
    uint32_t count;            /* devices */
    double rate;               /* new connections per second */
    uint32_t max_pending;      /* connections being set up at once */
    uint32_t interval_ms;      /* status interval */
    uint32_t payload;          /* status payload bytes */
    uint32_t duration_ms;      /* steady phase, after every device connected */
    uint64_t seed;             /* device ids, where the commands begin */
    double cmd_rate;           /* commands per second to the fleet (0: none) */
    uint32_t progress_ms;      /* progress line interval (0: none) */
    uint32_t drain_ms;         /* longest wait for outstanding messages at the end */
    uint32_t ramp_grace_ms;    /* extra time for stragglers before the steady phase */
    uint16_t keepalive_s;
    uint32_t cert_days;
} sim_opts;

/* ------------------------------------------------------------- identities */

typedef struct sim_ca {
    mbedtls_x509_crt crt;      /* the CA certificate, parsed */
    mbedtls_pk_context key;    /* the CA key, to sign device certificates */
    char issuer[512];          /* its subject, as mbedTLS writes names */
    char not_after[15];        /* its end of validity, YYYYMMDDhhmmss */
    uint8_t *ca_pem;           /* ca.crt bytes, for every device's trust store */
    size_t ca_pem_len;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;  /* the one random source of the process */
} sim_ca;

/* A device's credentials, DER, alive only until its moat_tls is initialised. */
typedef struct sim_ident {
    uint8_t cert[1024];
    size_t cert_len;
    uint8_t key[256];
    size_t key_len;
} sim_ident;

int sim_ca_load(sim_ca *ca, const char *pki_dir, char *err, size_t err_size);
void sim_ca_free(sim_ca *ca);
/* Make a P-256 key and a clientAuth certificate with CN=id, signed by the CA. */
int sim_ident_make(sim_ca *ca, const char *id, uint32_t days, sim_ident *out, char *err,
                   size_t err_size);
/* mbedTLS-compatible random function over the CA's generator. */
int sim_rng(void *ctx, unsigned char *out, size_t len);
/* Read a whole file (mode checks are the OS's). Caller frees. */
uint8_t *sim_read_file(const char *path, size_t *len);

/* ---------------------------------------------------------------- devices */

typedef enum sim_phase {
    PH_NEW = 0,   /* not started: no identity yet */
    PH_TCP,       /* TCP connect in progress */
    PH_TLS,       /* TLS handshake */
    PH_MQTT,      /* TLS up, MQTT session (WAIT_CONNACK or CONNECTED) */
    PH_DOWN,      /* link lost; the engine's backoff decides the next try */
    PH_DONE       /* stopped at the end of the run */
} sim_phase;

struct sim;

typedef struct sim_dev {
    moat_tls tls;
    moat_mqtt_client mqtt;
    moat_mqtt_config mcfg;
    moat_tcp tcp;
    struct sim *sim;
    uint8_t *mem;              /* tx | rx | store | window, one block */
    uint32_t index;
    uint32_t t_start;          /* this connection attempt began (ms) */
    uint32_t t_up;             /* first CONNACK (ms since run start), 0 if never */
    uint32_t connect_ms;       /* TCP + TLS + CONNACK of the first connection */
    uint32_t next_status;      /* when the next status is due */
    uint32_t t_connected;      /* clock at the current CONNACK, for uptime */
    /* counts, as the device sees them */
    uint32_t st_sent;          /* status messages published (= last seq) */
    uint32_t st_skipped;       /* status not published: window full or not connected */
    uint32_t pub_acked;        /* PUBACKs (status and results) */
    uint32_t pub_dropped;      /* QoS 1 messages the engine discarded (clean session) */
    uint32_t res_sent;         /* command results published */
    uint32_t cmds;             /* commands received */
    uint16_t reconnects;
    /* counts, as the monitor sees them */
    uint32_t mon_recv;         /* distinct status seqs received */
    uint32_t mon_last;         /* highest seq received */
    uint32_t mon_dup;          /* duplicates or out of order */
    uint8_t phase;             /* sim_phase */
    bool ev_out;               /* registered for EPOLLOUT */
    bool subscribed;
    bool tls_ready;            /* moat_tls_init done */
    bool setting_up;           /* counted in sim.pending */
    bool up;                   /* CONNACK seen on the current link */
    char id[SIM_ID_LEN + 1];
} sim_dev;

/* --------------------------------------------------------------- monitor */

typedef struct sim_monitor {
    moat_tls tls;
    moat_tls_config tcfg;
    moat_mqtt_client mqtt;
    moat_mqtt_config mcfg;
    moat_tcp tcp;
    uint8_t *mem;
    uint8_t phase;
    bool ev_out;
    bool ready;                /* SUBACK seen for both filters */
    uint32_t subacks;
    uint64_t st_recv;          /* status messages, all */
    uint64_t st_foreign;       /* status from ids that are not ours */
    uint64_t res_recv;
    uint64_t cmd_sent;
    uint64_t cmd_acked;
    uint32_t cmd_next;         /* round robin over the devices */
    uint32_t *rtt;             /* command round trips, ms */
    size_t rtt_n, rtt_cap;
    uint32_t reconnects;
    char cn[65];
} sim_monitor;

/* ------------------------------------------------------------- the run */

typedef struct sim_stats_err {
    char msg[200];
    uint32_t n;
} sim_stats_err;

typedef struct sim {
    sim_opts o;
    sim_ca ca;
    moat_tls_config dev_tls;   /* shared: credentials are read only at init */
    sim_dev *dev;
    uint32_t *due;             /* per device: next time its timers need a look */
    sim_monitor mon;
    int ep;                    /* epoll fd */
    uint32_t t0;               /* run start (clock ms) */
    uint32_t now;
    uint64_t rng;              /* xorshift state from --seed */
    /* ramp */
    uint32_t started, pending, up_now, up_ever;
    uint64_t id_base;          /* numeric value of the first id */
    double ident_ms;           /* CPU time making identities */
    double hs_cpu_ms;          /* CPU time in TLS handshakes (client side) */
    uint32_t handshakes;
    uint32_t t_all_up;         /* ms since t0 when the last device came up */
    /* phases */
    bool steady, stopping, interrupted;
    uint32_t t_steady, t_stop;
    uint32_t up_at_steady;     /* devices up when the steady phase began */
    /* totals */
    uint32_t conn_fail, tls_fail;
    sim_stats_err errs[SIM_MAX_ERRORS];
    size_t nerrs;
    uint32_t *again;           /* devices whose TLS holds unread bytes */
    uint32_t *again_b;         /* the list being worked through */
    size_t again_n;
    uint8_t *again_mark;
    /* measured at the end of the steady phase */
    size_t rss_kb, hwm_kb, heap_steady, malloc_inuse;
    uint32_t engine_bytes;     /* MQTT buffers per device */
    char tls_lib[96];
    char suite[96];            /* what the first device negotiated */
    volatile int *stop_flag;   /* SIGINT/SIGTERM: drain and report now */
    bool ok;
} sim;

/* device.c */
moat_err sim_dev_setup(sim *s, sim_dev *d, uint32_t index);
moat_err sim_dev_start(sim *s, sim_dev *d);       /* identity + first connect */
void sim_dev_connect(sim *s, sim_dev *d);          /* (re)connect now */
void sim_dev_io(sim *s, sim_dev *d, uint32_t events);
void sim_dev_timers(sim *s, sim_dev *d);
void sim_dev_stop(sim *s, sim_dev *d);
void sim_dev_free(sim_dev *d);
uint32_t sim_dev_engine_bytes(const sim *s);
void sim_id_of(const sim *s, uint32_t index, char out[SIM_ID_LEN + 1]);
bool sim_index_of(const sim *s, const uint8_t *id, size_t len, uint32_t *index);

/* monitor.c */
moat_err sim_mon_start(sim *s);
void sim_mon_io(sim *s, uint32_t events);
void sim_mon_timers(sim *s);
void sim_mon_stop(sim *s);
bool sim_mon_up(const sim *s);
void sim_mon_poke(sim *s);

/* loop.c */
void sim_watch(sim *s, int fd, uint32_t tag, bool out, bool add);
void sim_set_out(sim *s, int fd, uint32_t tag, bool *cur, bool want);
void sim_again(sim *s, uint32_t tag);
void sim_note_error(sim *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int sim_run(sim *s);
uint32_t sim_rand(sim *s);
#define SIM_TAG_MONITOR 0xFFFFFFFFu

/* stats.c */
double sim_percentile(uint32_t *v, size_t n, double p); /* sorts v */
size_t sim_rss_kb(size_t *peak_kb);
void sim_heap_init(void);
size_t sim_heap_live(void);
size_t sim_heap_peak(void);
bool sim_heap_counted(void);
double sim_cpu_ms(void);       /* this process's CPU time */

#endif
