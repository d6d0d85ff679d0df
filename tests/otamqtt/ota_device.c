/*
 * ota_device.c - a test device for the MQTT update path and credential
 * rotation, against a real broker: mutual TLS with a device certificate,
 * the MQTT engine, the block engine (moat/otamqtt.h) writing the image to a
 * file with a block map in another, and the csr/cert/ca commands over the
 * credential store (moat/credstore.h) with trial, commit and rollback.
 * It does what docs/OTA.md asks of moat-agent, in one file, so the operator
 * side (`moat ota push`, `moat cert rotate`) is tested end to end.
 *
 * usage: ota_device --host H --port P --id ID --cafile F --cert F --key F
 *                   --out IMAGE --map MAP [--store DIR] [--max-block N]
 *                   [--window N] [--cut-after N] [--exit-after N]
 *
 *   --cut-after N   after N blocks in this run, cut the TCP link (once)
 *   --exit-after N  after N blocks in this run, exit at once (code 3), as a
 *                   power cut would: nothing after the last checkpoint stays
 *
 * Log lines on stderr (the test reads them): "online", "ota: <state> ...",
 * "ota: resumed at N", "creds: ...". SIGTERM ends it (exit 0).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

#include "moat/credstore.h"
#include "moat/json.h"
#include "moat/mqtt.h"
#include "moat/otamqtt.h"
#include "moat/posix.h"
#include "moat/timer.h"
#include "moat/tls.h"

#define MAP_SIZE 65536u
#define RESULT_MAX 4096u

enum { L_CLOSED, L_TCP, L_TLS, L_UP };

typedef struct dev {
    const char *host, *id, *cafile, *certfile, *keyfile, *out, *map_path, *store;
    uint16_t port;
    unsigned long cut_after, exit_after, max_block, window;
    /* link */
    moat_tls_config tcfg;
    moat_tls tls;
    bool tls_ready;
    moat_tcp tcp;
    moat_transport tcp_t, tls_t;
    int link;
    uint32_t opened_ms;
    /* MQTT */
    moat_mqtt_config mcfg;
    moat_mqtt_client c;
    uint16_t sub_id;
    char base[MOAT_OTAMQTT_BASE_MAX], f_offer[MOAT_OTAMQTT_TOPIC_MAX],
        f_blk[MOAT_OTAMQTT_TOPIC_MAX], f_cmd[MOAT_OTAMQTT_TOPIC_MAX];
    /* OTA */
    moat_otamqtt ota;
    moat_otamqtt_config ocfg;
    moat_flash_area map;
    int map_fd;
    int img_fd;
    uint32_t img_offset, img_size;
    unsigned long blocks_run;
    unsigned long bytes_run;
    bool cut_done;
    int shown_state;
    /* credentials */
    moat_credstore cs;
    bool switch_creds;     /* reconnect with another set once output is out */
    bool trying;           /* connected with the pending set, not yet accepted */
    bool cert_result_due;
    bool cert_ok;
    char cert_error[400];
} dev;

static dev D;
static volatile sig_atomic_t stop;

static void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ota_device: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---------------------------------------------------- the block map -- */

/* A flash area over one file: erase truncates (reads past the end give 0xFF). */
static moat_err map_read(void *ctx, uint32_t off, void *buf, size_t len)
{
    dev *d = ctx;
    ssize_t n = pread(d->map_fd, buf, len, off);
    if (n < 0)
        return MOAT_ERR_IO;
    memset((uint8_t *)buf + n, 0xFF, len - (size_t)n);
    return MOAT_OK;
}

static moat_err map_write(void *ctx, uint32_t off, const void *buf, size_t len)
{
    dev *d = ctx;
    return pwrite(d->map_fd, buf, len, off) == (ssize_t)len ? MOAT_OK : MOAT_ERR_IO;
}

static moat_err map_erase(void *ctx)
{
    dev *d = ctx;
    return ftruncate(d->map_fd, 0) == 0 ? MOAT_OK : MOAT_ERR_IO;
}

static moat_err map_sync(void *ctx)
{
    dev *d = ctx;
    return fsync(d->map_fd) == 0 ? MOAT_OK : MOAT_ERR_IO;
}

/* ----------------------------------------------------------- the sink -- */

static moat_err s_begin(void *ctx, const moat_otamqtt_offer *o, uint32_t resume, char *why,
                        size_t cap)
{
    dev *d = ctx;
    if (d->img_fd >= 0)
        close(d->img_fd);
    d->img_fd = open(d->out, O_RDWR | O_CREAT | (resume == 0 ? O_TRUNC : 0) | O_CLOEXEC, 0644);
    if (d->img_fd < 0) {
        snprintf(why, cap, "cannot open %s: %s", d->out, strerror(errno));
        return MOAT_ERR_FILE;
    }
    d->img_offset = resume;
    d->img_size = o->size;
    if (resume > 0)
        logf_("ota: resumed at %lu of %lu", (unsigned long)resume, (unsigned long)o->size);
    else
        logf_("ota: starting %lu bytes in blocks of %lu", (unsigned long)o->size,
              (unsigned long)o->block);
    return MOAT_OK;
}

static uint32_t s_offset(void *ctx)
{
    return ((dev *)ctx)->img_offset;
}

static moat_err s_write(void *ctx, uint32_t off, const uint8_t *data, size_t len, char *why,
                        size_t cap)
{
    dev *d = ctx;
    if (pwrite(d->img_fd, data, len, off) != (ssize_t)len) {
        snprintf(why, cap, "cannot write %s: %s", d->out, strerror(errno));
        return MOAT_ERR_IO;
    }
    d->img_offset = off + (uint32_t)len;
    d->blocks_run++;
    d->bytes_run += len;
    if (d->exit_after != 0 && d->blocks_run >= d->exit_after) {
        logf_("exit after %lu blocks (power cut)", d->blocks_run);
        _exit(3);
    }
    return MOAT_OK;
}

static moat_err s_checkpoint(void *ctx, uint32_t *durable)
{
    dev *d = ctx;
    if (fsync(d->img_fd) != 0)
        return MOAT_ERR_IO;
    *durable = d->img_offset;
    return MOAT_OK;
}

static moat_err s_finish(void *ctx, const moat_otamqtt_offer *o, char *why, size_t cap)
{
    dev *d = ctx;
    mbedtls_sha256_context sha;
    uint8_t buf[65536], sum[32];
    uint32_t off = 0;
    ssize_t n;

    if (fsync(d->img_fd) != 0 || ftruncate(d->img_fd, o->size) != 0) {
        snprintf(why, cap, "cannot sync %s", d->out);
        return MOAT_ERR_IO;
    }
    mbedtls_sha256_init(&sha);
    mbedtls_sha256_starts_ret(&sha, 0);
    while (off < o->size && (n = pread(d->img_fd, buf, sizeof buf, off)) > 0) {
        mbedtls_sha256_update_ret(&sha, buf, (size_t)n);
        off += (uint32_t)n;
    }
    mbedtls_sha256_finish_ret(&sha, sum);
    mbedtls_sha256_free(&sha);
    if (off != o->size || memcmp(sum, o->sha256, 32) != 0) {
        snprintf(why, cap, "the image's SHA-256 does not match the offer");
        return MOAT_ERR_OTA_HASH;
    }
    return MOAT_OK;
}

static void s_abort(void *ctx)
{
    dev *d = ctx;
    logf_("ota: transfer abandoned");
    if (d->img_fd >= 0)
        close(d->img_fd);
    d->img_fd = -1;
}

/* ------------------------------------------------------------ the link -- */

static moat_err tls_load(dev *d)
{
    bool pending = d->trying;
    moat_err err;

    if (d->tls_ready)
        moat_tls_free(&d->tls);
    d->tls_ready = false;
    memset(&d->tcfg, 0, sizeof d->tcfg);
    if (d->store != NULL) {
        d->tcfg.ca.path = moat_credstore_path(&d->cs, MOAT_CRED_CA, pending);
        d->tcfg.cert.path = moat_credstore_path(&d->cs, MOAT_CRED_CERT, pending);
        d->tcfg.key.path = moat_credstore_path(&d->cs, MOAT_CRED_KEY, pending);
    } else {
        d->tcfg.ca.path = d->cafile;
        d->tcfg.cert.path = d->certfile;
        d->tcfg.key.path = d->keyfile;
    }
    d->tcfg.time_now = moat_tls_os_time;
    err = moat_tls_init(&d->tls, &d->tcfg);
    if (err != MOAT_OK) {
        logf_("creds: cannot load %s: %s", pending ? "the pending set" : "the active set",
              moat_tls_last_error(&d->tls));
        return err;
    }
    d->tls_ready = true;
    moat_tls_transport(&d->tls, &d->tls_t);
    return MOAT_OK;
}

static void close_link(dev *d)
{
    if (d->link == L_UP)
        moat_tls_close(&d->tls);
    moat_tcp_close(&d->tcp);
    d->link = L_CLOSED;
}

/* The trial failed: back to the active set, and say so once online. */
static void trial_failed(dev *d, const char *why)
{
    moat_err err = moat_credstore_rollback(&d->cs);
    d->trying = false;
    d->cert_result_due = true;
    d->cert_ok = false;
    snprintf(d->cert_error, sizeof d->cert_error,
             "the broker did not accept the new credentials (%s); back on the old ones%s%s", why,
             err != MOAT_OK ? ": " : "", err != MOAT_OK ? moat_credstore_error(&d->cs) : "");
    logf_("creds: rolled back: %s", why);
    tls_load(d);
}

static void link_failed(dev *d, moat_err err, bool engine_knows, uint32_t now)
{
    const char *words = moat_tls_last_error(&d->tls);
    char why[300];

    snprintf(why, sizeof why, "%s", words[0] ? words : moat_strerror(err));
    if (!engine_knows)
        moat_mqtt_link_down(&d->c, err, now);
    close_link(d);
    moat_otamqtt_link_down(&d->ota, now);
    logf_("link down: %s", why);
    if (d->trying)
        trial_failed(d, why);
}

static void advance(dev *d, uint32_t now)
{
    moat_err err;

    if (d->link == L_CLOSED && d->tls_ready && moat_mqtt_connect_due(&d->c, now)) {
        d->opened_ms = now;
        err = moat_tcp_connect_start(&d->tcp, d->host, d->port);
        if (err == MOAT_OK || err == MOAT_ERR_WOULD_BLOCK)
            d->link = L_TCP;
        else
            link_failed(d, err, false, now);
    }
    if (d->link == L_TCP) {
        err = moat_tcp_connect_poll(&d->tcp);
        if (err == MOAT_OK) {
            moat_tcp_transport(&d->tcp, &d->tcp_t);
            err = moat_tls_connect_start(&d->tls, &d->tcp_t, d->host);
            if (err == MOAT_OK)
                d->link = L_TLS;
            else
                link_failed(d, err, false, now);
        } else if (err != MOAT_ERR_WOULD_BLOCK) {
            link_failed(d, err, false, now);
        }
    }
    if (d->link == L_TLS) {
        err = moat_tls_connect_step(&d->tls);
        if (err == MOAT_OK) {
            d->link = L_UP;
            if (moat_mqtt_link_up(&d->c, now) != MOAT_OK)
                link_failed(d, MOAT_ERR_STATE, false, now);
        } else if (err != MOAT_ERR_WOULD_BLOCK) {
            link_failed(d, err, false, now);
        }
    }
    if ((d->link == L_TCP || d->link == L_TLS) && moat_elapsed(d->opened_ms, now) >= 10000)
        link_failed(d, MOAT_ERR_TIMEOUT, false, now);
    if (d->link == L_UP) {
        err = moat_mqtt_pump(&d->c, &d->tls_t, now);
        if (err != MOAT_OK)
            link_failed(d, err, true, now);
    }
}

/* ------------------------------------------------------------ commands -- */

static void publish(dev *d, const char *topic, const void *p, size_t len, uint32_t now)
{
    moat_mqtt_message m = {topic, p, len, 1, false};
    moat_err err = moat_mqtt_publish(&d->c, &m, NULL, now);
    if (err != MOAT_OK)
        logf_("cannot publish on %s: %s", topic, moat_strerror(err));
}

static void result(dev *d, const char *name, bool ok, const char *member, const char *text,
                   uint32_t now)
{
    char topic[200], doc[RESULT_MAX];
    moat_json_writer w;
    size_t len = 0;

    snprintf(topic, sizeof topic, "moat/%s/result/%s", d->id, name);
    moat_json_writer_init(&w, doc, sizeof doc);
    moat_json_begin_object(&w, NULL);
    moat_json_put_bool(&w, "ok", ok);
    if (!ok)
        moat_json_put_string(&w, "error", text);
    else if (member != NULL)
        moat_json_put_string(&w, member, text);
    moat_json_end_object(&w);
    if (moat_json_finish(&w, &len) == MOAT_OK)
        publish(d, topic, doc, len, now);
}

static void command(dev *d, const char *name, const uint8_t *p, size_t len, uint32_t now)
{
    char csr[MOAT_CRED_CSR_MAX];
    size_t n = 0;
    moat_err err;
    moat_cred_kind kind;

    if (d->store == NULL) {
        result(d, name, false, NULL, "no credential store", now);
        return;
    }
    if (strcmp(name, "csr") == 0) {
        err = moat_credstore_make_csr(&d->cs, d->id, csr, sizeof csr, &n);
        logf_("creds: csr: %s", err == MOAT_OK ? "new key made" : moat_credstore_error(&d->cs));
        result(d, name, err == MOAT_OK, "csr", err == MOAT_OK ? csr : moat_credstore_error(&d->cs),
               now);
        return;
    }
    if (strcmp(name, "cert") == 0)
        kind = MOAT_CRED_CERT;
    else if (strcmp(name, "ca") == 0)
        kind = MOAT_CRED_CA;
    else {
        result(d, name, false, NULL, "unknown command", now);
        return;
    }
    err = moat_credstore_stage(&d->cs, kind, p, len, d->id);
    if (err == MOAT_OK)
        err = moat_credstore_begin_trial(&d->cs);
    if (err != MOAT_OK) {
        logf_("creds: %s refused: %s", name, moat_credstore_error(&d->cs));
        if (!moat_credstore_in_trial(&d->cs) && kind == MOAT_CRED_CERT &&
            moat_credstore_staged(&d->cs, MOAT_CRED_CERT))
            moat_credstore_rollback(&d->cs);
        result(d, name, false, NULL, moat_credstore_error(&d->cs), now);
        return;
    }
    /* The result comes after the trial: committed, or rolled back. */
    logf_("creds: %s staged; reconnecting with the pending set", name);
    d->switch_creds = true;
}

/* ---------------------------------------------------------------- events -- */

static void subscribe(dev *d, uint32_t now)
{
    moat_mqtt_sub subs[3] = {{d->f_offer, 1}, {d->f_blk, 1}, {d->f_cmd, 1}};
    moat_mqtt_subscribe(&d->c, subs, d->store != NULL ? 3 : 2, &d->sub_id, now);
}

static void on_event(void *user, const moat_mqtt_event *ev)
{
    dev *d = user;
    uint32_t now = moat_clock_ms();
    char prefix[200];
    size_t pl;

    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED:
        subscribe(d, now);
        break;
    case MOAT_MQTT_EV_SUBACK:
        if (ev->packet_id != d->sub_id)
            break;
        if (ev->err != MOAT_OK) {
            logf_("subscription refused");
            break;
        }
        if (d->trying) {
            moat_err err = moat_credstore_commit(&d->cs);
            d->trying = false;
            d->cert_result_due = true;
            d->cert_ok = err == MOAT_OK;
            snprintf(d->cert_error, sizeof d->cert_error, "%s", moat_credstore_error(&d->cs));
            logf_("creds: %s", err == MOAT_OK ? "committed" : moat_credstore_error(&d->cs));
        }
        logf_("online");
        moat_otamqtt_link_up(&d->ota, now);
        if (d->cert_result_due) {
            d->cert_result_due = false;
            result(d, "cert", d->cert_ok, NULL, d->cert_error, now);
        }
        break;
    case MOAT_MQTT_EV_MESSAGE:
        if (ev->offset != 0 || ev->len != ev->total)
            break;
        if (moat_otamqtt_message(&d->ota, (const char *)ev->topic.data, ev->topic.len,
                                 ev->payload, ev->len, ev->retain, now) != MOAT_ERR_TOPIC)
            break;
        pl = (size_t)snprintf(prefix, sizeof prefix, "moat/%s/cmd/", d->id);
        if (ev->topic.len > pl && memcmp(ev->topic.data, prefix, pl) == 0 && !ev->retain) {
            char name[40];
            snprintf(name, sizeof name, "%.*s", (int)(ev->topic.len - pl),
                     (const char *)ev->topic.data + pl);
            command(d, name, ev->payload, ev->len, now);
        }
        break;
    case MOAT_MQTT_EV_ERROR:
        logf_("MQTT: %s", moat_strerror(ev->err));
        break;
    default:
        break;
    }
}

static void show_ota(dev *d)
{
    int st = moat_otamqtt_get_state(&d->ota);

    if (st == d->shown_state)
        return;
    d->shown_state = st;
    logf_("ota: %s %lu bytes (%lu blocks, %lu bytes this run)%s%s",
          moat_otamqtt_state_name((moat_otamqtt_state)st),
          (unsigned long)moat_otamqtt_received(&d->ota), d->blocks_run, d->bytes_run,
          moat_otamqtt_error(&d->ota)[0] ? ": " : "", moat_otamqtt_error(&d->ota));
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: ota_device --host H --port P --id ID --cafile F --cert F --key F "
                    "--out IMAGE --map MAP [--store DIR] [--max-block N] [--window N] "
                    "[--cut-after N] [--exit-after N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    static uint8_t tx[32768], rx[70000], store[65536];
    static moat_mqtt_inflight win[32];
    dev *d = &D;
    moat_mqtt_buffers b;
    struct sigaction sa;
    moat_err err;

    memset(d, 0, sizeof *d);
    d->img_fd = -1;
    d->shown_state = -1;
    d->max_block = 4096;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--host") == 0) d->host = v;
        else if (strcmp(k, "--port") == 0) d->port = (uint16_t)atoi(v);
        else if (strcmp(k, "--id") == 0) d->id = v;
        else if (strcmp(k, "--cafile") == 0) d->cafile = v;
        else if (strcmp(k, "--cert") == 0) d->certfile = v;
        else if (strcmp(k, "--key") == 0) d->keyfile = v;
        else if (strcmp(k, "--out") == 0) d->out = v;
        else if (strcmp(k, "--map") == 0) d->map_path = v;
        else if (strcmp(k, "--store") == 0) d->store = v;
        else if (strcmp(k, "--max-block") == 0) d->max_block = strtoul(v, NULL, 10);
        else if (strcmp(k, "--window") == 0) d->window = strtoul(v, NULL, 10);
        else if (strcmp(k, "--cut-after") == 0) d->cut_after = strtoul(v, NULL, 10);
        else if (strcmp(k, "--exit-after") == 0) d->exit_after = strtoul(v, NULL, 10);
        else return usage();
    }
    if (!d->host || !d->port || !d->id || !d->cafile || !d->certfile || !d->keyfile || !d->out ||
        !d->map_path)
        return usage();
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    moat_tcp_init(&d->tcp);

    if (d->store != NULL) {
        err = moat_credstore_open(&d->cs, d->store, d->cafile, d->certfile, d->keyfile);
        if (err != MOAT_OK) {
            logf_("creds: %s", moat_credstore_error(&d->cs));
            return 1;
        }
        if (moat_credstore_recovery(&d->cs) != MOAT_CRED_CLEAN)
            logf_("creds: recovered: %s", moat_credstore_recovery(&d->cs) ==
                                                  MOAT_CRED_ROLLED_FORWARD
                                              ? "commit completed"
                                              : "trial abandoned, old set kept");
    }
    if (tls_load(d) != MOAT_OK)
        return 1;

    d->map_fd = open(d->map_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->map_fd < 0) {
        logf_("cannot open %s: %s", d->map_path, strerror(errno));
        return 1;
    }
    d->map.read = map_read;
    d->map.write = map_write;
    d->map.erase = map_erase;
    d->map.sync = map_sync;
    d->map.size = MAP_SIZE;
    d->map.ctx = d;
    snprintf(d->base, sizeof d->base, "moat/%s/ota", d->id);
    moat_otamqtt_topic(d->f_offer, sizeof d->f_offer, d->base, "offer");
    moat_otamqtt_topic(d->f_blk, sizeof d->f_blk, d->base, "blk/#");
    snprintf(d->f_cmd, sizeof d->f_cmd, "moat/%s/cmd/+", d->id);
    d->ocfg.base = d->base;
    d->ocfg.state = &d->map;
    d->ocfg.sink.begin = s_begin;
    d->ocfg.sink.offset = s_offset;
    d->ocfg.sink.write = s_write;
    d->ocfg.sink.checkpoint = s_checkpoint;
    d->ocfg.sink.finish = s_finish;
    d->ocfg.sink.abort = s_abort;
    d->ocfg.sink.ctx = d;
    d->ocfg.max_size = 256u * 1024u * 1024u;
    d->ocfg.max_block = (uint32_t)d->max_block;
    d->ocfg.window = (uint16_t)d->window;
    d->ocfg.timeout_ms = 2000;
    d->ocfg.max_retries = 5;
    err = moat_otamqtt_init(&d->ota, &d->ocfg, moat_clock_ms());
    if (err != MOAT_OK)
        logf_("ota: %s", moat_otamqtt_error(&d->ota));
    if (moat_otamqtt_current(&d->ota) != NULL)
        logf_("ota: block map holds a transfer at %lu bytes",
              (unsigned long)moat_otamqtt_received(&d->ota));

    d->mcfg.client_id = d->id;
    d->mcfg.clean_session = false;
    d->mcfg.keepalive_s = 30;
    d->mcfg.backoff_base_ms = 200;
    d->mcfg.backoff_cap_ms = 1000;
    d->mcfg.random = moat_random32;
    d->mcfg.on_event = on_event;
    d->mcfg.user = d;
    d->mcfg.large = MOAT_MQTT_LARGE_REFUSE;
    memset(&b, 0, sizeof b);
    b.tx = tx;
    b.tx_size = sizeof tx;
    b.rx = rx;
    b.rx_size = sizeof rx;
    b.store = store;
    b.store_size = sizeof store;
    b.inflight = win;
    b.inflight_count = sizeof win / sizeof win[0];
    if (moat_mqtt_init(&d->c, &d->mcfg, &b) != MOAT_OK ||
        moat_mqtt_start(&d->c, moat_clock_ms()) != MOAT_OK)
        return 1;

    while (!stop) {
        uint32_t now = moat_clock_ms(), t;
        struct pollfd p;
        size_t pending = 0;
        moat_otamqtt_msg m;

        advance(d, now);
        moat_otamqtt_tick(&d->ota, now);
        while (moat_mqtt_get_state(&d->c) == MOAT_MQTT_CONNECTED &&
               moat_otamqtt_output(&d->ota, &m)) {
            moat_mqtt_message msg = {m.topic, m.payload, m.len, 1, false};
            if (moat_mqtt_publish(&d->c, &msg, NULL, now) != MOAT_OK)
                break;
            moat_otamqtt_output_done(&d->ota, now);
        }
        show_ota(d);
        if (d->cut_after != 0 && !d->cut_done && d->blocks_run >= d->cut_after &&
            d->link == L_UP) {
            d->cut_done = true;
            logf_("cutting the link after %lu blocks", d->blocks_run);
            link_failed(d, MOAT_ERR_CLOSED, false, now);
        }
        moat_mqtt_output(&d->c, &pending);
        if (d->switch_creds && pending == 0 && d->link == L_UP) {
            /* everything acknowledged is out: reconnect with the pending set */
            d->switch_creds = false;
            close_link(d);
            moat_mqtt_link_down(&d->c, MOAT_ERR_CLOSED, now);
            moat_otamqtt_link_down(&d->ota, now);
            d->trying = true;
            if (tls_load(d) != MOAT_OK)
                trial_failed(d, "the pending set does not load");
        }
        advance(d, moat_clock_ms());
        t = moat_mqtt_next_timeout(&d->c, now);
        if (moat_otamqtt_next_timeout(&d->ota, now) < t)
            t = moat_otamqtt_next_timeout(&d->ota, now);
        if (t > 200)
            t = 200;
        moat_mqtt_output(&d->c, &pending);
        if (d->link != L_CLOSED) {
            bool w = d->link == L_TCP || (d->link == L_TLS && moat_tls_want_write(&d->tls)) ||
                     (d->link == L_UP && pending > 0);
            if (d->link == L_UP && moat_tls_pending(&d->tls))
                t = 0;
            p.fd = d->tcp.fd;
            p.events = (short)(POLLIN | (w ? POLLOUT : 0));
            poll(&p, 1, (int)t);
        } else {
            poll(NULL, 0, (int)(t > 50 ? 50 : t));
        }
    }
    show_ota(d);
    logf_("stopping");
    close_link(d);
    if (d->tls_ready)
        moat_tls_free(&d->tls);
    return 0;
}
