/*
 * update.c - signed firmware updates of moat-agent, end to end.
 *
 * On Linux the firmware is the agent program itself, run by moat-launch
 * from one of two A/B slots (moat/posix_slots.h, docs/SLOTS.md). A new
 * image reaches the device in one of two ways, and both stream it through
 * the same verifier (moat/ota.h) into the slot that is not running:
 *
 *   firmware   the agent asks the update server over HTTPS with mutual TLS
 *              (moat/http_fetch.h): GET <downloadpath>/firmware.bin
 *              ?curimage=<running version>; 200 streams the image, 304
 *              says the device runs the newest; a cut connection goes on
 *              with Range.
 *   MQTT       the operator's `moat ota push` offers an image and the
 *              agent asks for it in blocks (moat/otamqtt.h); a block map
 *              next to the slots resumes it after a cut or a restart.
 *
 * Nothing in the slot directory is touched before the image's header and
 * signature verified: the verifier writes through a "lazy" flash area that
 * begins the install (record: slot WRITING, slot erased) at the verifier's
 * one erase, which comes only after every check of the header passed. So
 * a forged, replayed, older or foreign image costs a signature check, and
 * never a slot. The running slot is never written at all.
 *
 * Once the payload's hash matched, moat_slots_install_finish() makes the
 * slot pending and the agent restarts (exit code 5); moat-launch then runs
 * the new image on trial. That image confirms itself (the boot record's
 * confirm raises the security counter) only after it has reached the
 * broker and published its status; if it never does, the launcher goes
 * back to the previous image by itself after 3 starts, and the status of
 * that image says why.
 *
 * The device's security counter (anti-rollback) is the boot record's; the
 * running version is the launcher's MOAT_SLOT_VERSION (the signed header's
 * version, kept in the record), or the build's version for an agent that
 * was started directly.
 *
 * config with an empty payload fetches config.json from the same server
 * with the same client; commands.c checks and applies it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moat/http_fetch.h"
#include "moat/ota.h"
#include "moat/otamqtt.h"
#include "moat/posix_slots.h"
#include "moat/slots.h"
#include "moat/timer.h"
#include "agent.h"

#define UP_MAP_SIZE 65536u        /* block map: 64-byte header + 65472 blocks */
#define UP_CHECKPOINT (1024u * 1024u) /* payload bytes between download checkpoints */
#define UP_WORDS 400u
#define UP_QUERY_MAX 80u

enum { FETCH_NONE = 0, FETCH_FIRMWARE, FETCH_CONFIG };

typedef struct up_state {
    /* settings */
    const char *product;
    uint8_t keys[MOAT_OTA_MAX_KEYS][MOAT_OTA_PUB_SIZE];
    unsigned nkeys;
    bool have_slots;
    bool launched;             /* started by moat-launch (MOAT_SLOT) */
    uint8_t run_slot;          /* the slot we run from, or MOAT_BOOT_NONE */
    bool trial;                /* this start is a trial start ... */
    bool confirmed;            /* ... and it has confirmed */
    bool confirm_due;          /* a status went out: confirm once it is written */
    bool confirm_failed;
    char version[MOAT_BOOT_VERSION_MAX];
    moat_ota_version running;
    char slot_name[2];

    /* the boot record, as last read */
    moat_slots slots;
    moat_boot_status bst;
    bool have_bst;

    /* the verifier, and the slot it writes */
    moat_ota v;
    moat_ota_config vcfg;
    uint8_t vbuf[MOAT_OTA_BUF_MAX];
    moat_flash_area lazy;      /* what the verifier writes through */
    const moat_flash_area *area; /* the slot's area once the install began */
    uint8_t slot;              /* the slot being written, or MOAT_BOOT_NONE */
    char slot_words[UP_WORDS]; /* why the slots refused, "" if they did not */

    /* a download from the update server */
    int fetch_job;
    bool stage_only;           /* firmware stage: install, restart later */
    moat_tls_config tcfg;
    moat_tls tls;
    bool tls_ready;
    moat_http_fetch fetch;
    char path[MOAT_CONFIG_PATH_MAX + UP_QUERY_MAX];
    char query[UP_QUERY_MAX];
    uint64_t total;            /* of the resource, once known */
    /* a download that survives a restart: <slot dir>/download.state holds
     * the image's ETag and the payload bytes durable in the slot */
    char state_path[MOAT_SLOTS_PATH_MAX + 32];
    char etag[96];             /* of the image being downloaded */
    bool header_phase;         /* resuming: fetching the header again */
    uint32_t durable;          /* payload bytes the last checkpoint made durable */
    uint32_t ckpt_at;          /* image offset of the last checkpoint attempt */
    uint32_t resumed_at;       /* image offset this run resumed at, 0 if none */
    uint32_t fetch_started_ms;
    char cfgbuf[AG_CONFIG_FILE_MAX];
    size_t cfglen;

    /* updates over MQTT */
    moat_otamqtt ota;
    moat_otamqtt_config ocfg;
    bool ota_ready;            /* the engine is initialised */
    bool ota_granted;          /* the broker granted its filters */
    bool mqtt_begun;           /* the sink holds a transfer */
    char ota_base[MOAT_OTAMQTT_BASE_MAX];
    char f_offer[MOAT_OTAMQTT_TOPIC_MAX];
    char f_blk[MOAT_OTAMQTT_TOPIC_MAX];
    moat_file_area map_file;
    moat_flash_area map;
    int shown;                 /* engine state last logged ... */
    unsigned offers, shown_offers; /* ... and for which offer */
    uint32_t mqtt_bytes;       /* written by the sink in this run */

    /* the restart into a new image */
    bool restart_due;
    char restart_why[200];
} up_state;

static up_state U;

static void copy_text(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? src : "");
}

/* -------------------------------------------------------- boot record -- */

/* Read the record again (for the counter, the status, the checks). */
static void refresh_boot(void)
{
    if (!U.have_slots)
        return;
    if (moat_slots_status(&U.slots, &U.bst) == MOAT_OK) {
        U.have_bst = true;
    } else {
        U.have_bst = false;
        ag_log(AG_LOG_ERROR, "slots: %s", moat_slots_error(&U.slots));
    }
}

static uint32_t device_counter(void)
{
    return U.have_bst ? U.bst.security_counter : 0;
}

/* "1.2.3" (anything after the patch number is ignored) into v. */
static bool parse_version(const char *s, moat_ota_version *v)
{
    unsigned long p[3];
    char *end;
    int i;

    for (i = 0; i < 3; i++) {
        if (*s < '0' || *s > '9')
            return false;
        errno = 0;
        p[i] = strtoul(s, &end, 10);
        if (errno != 0 || p[i] > 65535)
            return false;
        s = end;
        if (i < 2) {
            if (*s != '.')
                return false;
            s++;
        }
    }
    v->major = (uint16_t)p[0];
    v->minor = (uint16_t)p[1];
    v->patch = (uint16_t)p[2];
    return true;
}

/* Why no image can be installed now ("" when one can). */
static bool can_install(char *why, size_t cap)
{
    if (U.nkeys == 0) {
        snprintf(why, cap, "no trusted update key: start moat-agent with --update-key FILE");
        return false;
    }
    if (!U.have_slots) {
        snprintf(why, cap, "no slot directory: moat-agent was not started by moat-launch "
                 "(and has no --slots-dir), so there is no slot to install into");
        return false;
    }
    if (U.trial && !U.confirmed) {
        snprintf(why, cap, "slot %s (version %s) runs on trial and has not confirmed yet: "
                 "no other image until it has", U.slot_name, U.version);
        return false;
    }
    return true;
}

/* ---------------------------------------------- the slot being written -- */

static void slot_close(void)
{
    if (U.area != NULL && U.slot < MOAT_BOOT_SLOTS)
        moat_file_area_close(&U.slots.file[2 + U.slot]);
    U.area = NULL;
    U.slot = MOAT_BOOT_NONE;
}

/*
 * The verifier's slot. Its erase comes once, after the header and
 * signature verified: only then does the install begin (the record marks
 * the inactive slot WRITING and the slot is erased). Before that, reads see
 * erased flash and writes are refused.
 */
static moat_err lazy_read(void *ctx, uint32_t off, void *buf, size_t len)
{
    (void)ctx;
    if (U.area == NULL) {
        memset(buf, 0xFF, len);
        return MOAT_OK;
    }
    return U.area->read(U.area->ctx, off, buf, len);
}

static moat_err lazy_write(void *ctx, uint32_t off, const void *buf, size_t len)
{
    (void)ctx;
    return U.area != NULL ? U.area->write(U.area->ctx, off, buf, len) : MOAT_ERR_STATE;
}

static moat_err lazy_erase(void *ctx)
{
    moat_err e;

    (void)ctx;
    if (U.area != NULL)
        return U.area->erase(U.area->ctx);
    ag_log(AG_LOG_INFO, "update: the image's header and signature verified; the install "
           "begins (boot record)");
    e = moat_slots_install_begin(&U.slots, &U.slot, &U.area);
    if (e != MOAT_OK) {
        copy_text(U.slot_words, sizeof U.slot_words, moat_slots_error(&U.slots));
        U.area = NULL;
        U.slot = MOAT_BOOT_NONE;
        return e;
    }
    ag_log(AG_LOG_INFO, "update: writing slot %c", moat_boot_slot_name(U.slot));
    return MOAT_OK; /* install_begin erased it */
}

static moat_err lazy_sync(void *ctx)
{
    (void)ctx;
    return U.area != NULL ? U.area->sync(U.area->ctx) : MOAT_OK;
}

/*
 * A new verifier for one image. resume_bytes > 0: after a restart, the
 * install begun before it goes on (nothing is erased) and the slot's first
 * resume_bytes payload bytes are hashed again instead of fetched.
 */
static moat_err verifier_begin(uint32_t resume_bytes, char *why, size_t cap)
{
    moat_err e;

    slot_close();
    U.slot_words[0] = '\0';
    refresh_boot();
    if (resume_bytes > 0) {
        e = moat_slots_install_resume(&U.slots, &U.slot, &U.area);
        if (e != MOAT_OK) {
            snprintf(why, cap, "%s", moat_slots_error(&U.slots));
            U.area = NULL;
            U.slot = MOAT_BOOT_NONE;
            return e;
        }
    }
    memset(&U.vcfg, 0, sizeof U.vcfg);
    U.vcfg.product = U.product;
    U.vcfg.keys[0] = U.keys[0];
    U.vcfg.keys[1] = U.nkeys > 1 ? U.keys[1] : NULL;
    U.vcfg.counter = device_counter();
    U.vcfg.running = U.running;
    U.lazy.read = lazy_read;
    U.lazy.write = lazy_write;
    U.lazy.erase = lazy_erase;
    U.lazy.sync = lazy_sync;
    U.lazy.size = MOAT_SLOTS_SLOT_MAX;
    U.lazy.ctx = NULL;
    U.vcfg.slot = &U.lazy;
    U.vcfg.crypto = &moat_ota_crypto_mbedtls;
    U.vcfg.buf = U.vbuf;
    U.vcfg.buf_size = sizeof U.vbuf;
    e = moat_ota_init(&U.v, &U.vcfg);
    if (e == MOAT_OK && resume_bytes > 0)
        e = moat_ota_resume(&U.v, resume_bytes);
    if (e != MOAT_OK) {
        snprintf(why, cap, "%s", moat_ota_error(&U.v)[0] ? moat_ota_error(&U.v)
                                                         : moat_strerror(e));
        slot_close();
    }
    return e;
}

/* Words for a verifier failure: the slots' words when they refused. */
static const char *verifier_words(moat_err e)
{
    if (U.slot_words[0] != '\0')
        return U.slot_words;
    if (moat_ota_error(&U.v)[0] != '\0')
        return moat_ota_error(&U.v);
    return moat_strerror(e);
}

static moat_err feed(uint64_t offset, const uint8_t *data, size_t len)
{
    if (offset != moat_ota_offset(&U.v)) {
        snprintf(U.slot_words, sizeof U.slot_words,
                 "image bytes came from offset %llu, expected %lu",
                 (unsigned long long)offset, (unsigned long)moat_ota_offset(&U.v));
        return MOAT_ERR_PROTOCOL;
    }
    return moat_ota_feed(&U.v, data, len);
}

/*
 * Every byte is in: the verifier's verdict, then the slot becomes pending.
 * image_size: what the transport carried (0: not known). On success
 * *img says what was installed where (U.slot).
 */
static moat_err verifier_finish(uint32_t image_size, moat_boot_image *img, char *why,
                                size_t cap)
{
    moat_ota_result r;
    moat_err e = moat_ota_finish(&U.v, &r);

    if (e != MOAT_OK) {
        snprintf(why, cap, "%s", verifier_words(e));
        slot_close();
        return e;
    }
    if (image_size != 0 && moat_ota_total(&U.v) != image_size) {
        snprintf(why, cap, "the image is %lu bytes, but %lu bytes came",
                 (unsigned long)moat_ota_total(&U.v), (unsigned long)image_size);
        slot_close();
        return MOAT_ERR_OTA_FORMAT;
    }
    memset(img, 0, sizeof *img);
    img->size = r.header.payload_size;
    memcpy(img->sha256, r.header.payload_sha256, sizeof img->sha256);
    img->security_counter = r.header.counter;
    snprintf(img->version, sizeof img->version, "%u.%u.%u", r.header.version.major,
             r.header.version.minor, r.header.version.patch);
    ag_log(AG_LOG_INFO, "update: the payload's SHA-256 matches; slot %c becomes pending "
           "(boot record)", moat_boot_slot_name(U.slot));
    e = moat_slots_install_finish(&U.slots, U.slot, img, 0, 0);
    if (e != MOAT_OK) {
        snprintf(why, cap, "%s", moat_slots_error(&U.slots));
        slot_close();
        return e;
    }
    if (r.rotated) {
        char id[17];
        moat_ota_key_id_hex(r.new_key_id, id);
        ag_log(AG_LOG_WARN, "update: the image introduces signing key %s: add it to "
               "--update-key before images signed by it alone arrive", id);
    }
    U.area = NULL; /* install_finish closed it */
    refresh_boot();
    return MOAT_OK;
}

static void schedule_restart(const moat_boot_image *img, uint8_t slot, const char *how)
{
    U.restart_due = true;
    snprintf(U.restart_why, sizeof U.restart_why,
             "%s: version %s (counter %lu) is in slot %c; restarting into it on trial", how,
             img->version, (unsigned long)img->security_counter, moat_boot_slot_name(slot));
}

/* ------------------------------------------- results with more members -- */

static void result_doc(agent *a, const char *name, const char *k1, const char *v1,
                       const char *k2, const char *v2, const char *k3, const char *v3,
                       uint32_t now_ms)
{
    char doc[768];
    moat_json_writer w;
    size_t len = 0;

    moat_json_writer_init(&w, doc, sizeof doc);
    moat_json_begin_object(&w, NULL);
    moat_json_put_bool(&w, "ok", true);
    if (k1 != NULL)
        moat_json_put_string(&w, k1, v1);
    if (k2 != NULL)
        moat_json_put_string(&w, k2, v2);
    if (k3 != NULL)
        moat_json_put_string(&w, k3, v3);
    moat_json_end_object(&w);
    if (moat_json_finish(&w, &len) == MOAT_OK)
        ag_publish_result(a, name, doc, len, now_ms);
}

/* ------------------------------------------------ the update server -- */

/* The download's resume state: "moat-download 1\netag E\ndurable N\n". */
static void dl_clear(void)
{
    U.durable = 0;
    if (U.have_slots && unlink(U.state_path) != 0 && errno != ENOENT)
        ag_log(AG_LOG_WARN, "firmware: cannot remove %s: %s", U.state_path, strerror(errno));
}

static bool dl_load(char *etag, size_t cap, uint32_t *durable)
{
    char text[256], e[100];
    unsigned long n = 0;
    FILE *f;
    size_t len;

    if (!U.have_slots || (f = fopen(U.state_path, "r")) == NULL)
        return false;
    len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    if (sscanf(text, "moat-download 1\netag %99s\ndurable %lu\n", e, &n) != 2 || n == 0 ||
        n > MOAT_SLOTS_SLOT_MAX || strlen(e) >= cap)
        return false;
    snprintf(etag, cap, "%s", e);
    *durable = (uint32_t)n;
    return true;
}

/* Make the slot durable and remember how far, so that a restart resumes. */
static void dl_checkpoint(const char *why)
{
    char text[256], msg[256];
    uint32_t durable = 0;
    int n;

    if (!U.have_slots || U.etag[0] == '\0' || moat_ota_header_of(&U.v) == NULL ||
        moat_ota_offset(&U.v) == U.ckpt_at)
        return;
    U.ckpt_at = moat_ota_offset(&U.v);
    if (moat_ota_checkpoint(&U.v, &durable) != MOAT_OK || durable == 0 || durable == U.durable)
        return;
    n = snprintf(text, sizeof text, "moat-download 1\netag %s\ndurable %lu\n", U.etag,
                 (unsigned long)durable);
    if (ag_write_atomic(U.state_path, text, (size_t)n, 0600, true, msg, sizeof msg) != MOAT_OK) {
        ag_log(AG_LOG_WARN, "firmware: %s", msg);
        return;
    }
    U.durable = durable;
    ag_log(AG_LOG_INFO, "firmware: %s: %lu payload bytes are durable in slot %c (a restart "
           "resumes from there)", why, (unsigned long)durable, moat_boot_slot_name(U.slot));
}

static void fetch_end(void)
{
    moat_http_fetch_abort(&U.fetch);
    if (U.tls_ready)
        moat_tls_free(&U.tls);
    U.tls_ready = false;
    U.fetch_job = FETCH_NONE;
    U.header_phase = false;
}

/* Percent-encode what is not safe in a query value. */
static void query_value(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (; *s && n + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '-' || c == '_' || c == '~') {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
}

static moat_err fw_on_start(void *user, const moat_http_get *g)
{
    uint64_t at = moat_http_body_offset(g);
    char why[UP_WORDS];
    moat_err e;

    (void)user;
    if (moat_http_status(g) == 304)
        return MOAT_OK;
    U.total = moat_http_total(g);
    snprintf(U.etag, sizeof U.etag, "%s", moat_http_fetch_etag(&U.fetch));
    if (U.header_phase)
        return MOAT_OK; /* the header again, before the rest (a resume) */
    if (at == 0 && moat_ota_offset(&U.v) > 0) {
        /* the server sent it whole again (it changed meanwhile) */
        ag_log(AG_LOG_WARN, "firmware: the update server sent the whole image again; "
               "starting over");
        e = verifier_begin(0, why, sizeof why);
        if (e != MOAT_OK) {
            copy_text(U.slot_words, sizeof U.slot_words, why);
            return e;
        }
    } else if (at > 0) {
        ag_log(AG_LOG_INFO, "firmware: the download goes on at byte %llu of %llu "
               "(connection %lu)", (unsigned long long)at, (unsigned long long)U.total,
               (unsigned long)moat_http_fetch_connections(&U.fetch));
    }
    return MOAT_OK;
}

static moat_err fw_on_body(void *user, uint64_t offset, const uint8_t *data, size_t len)
{
    const moat_ota_header *h;
    moat_err e;

    (void)user;
    if (U.header_phase && moat_ota_header_of(&U.v) != NULL)
        return MOAT_OK; /* the verifier jumped past the slot's bytes */
    e = feed(offset, data, len);
    h = moat_ota_header_of(&U.v);
    if (e == MOAT_OK && !U.header_phase && h != NULL &&
        moat_ota_offset(&U.v) - h->header_size - MOAT_OTA_SIG_SIZE >= U.durable + UP_CHECKPOINT)
        dl_checkpoint("checkpoint");
    return e;
}

static moat_err cfg_on_start(void *user, const moat_http_get *g)
{
    (void)user;
    if (moat_http_body_offset(g) == 0)
        U.cfglen = 0;
    return MOAT_OK;
}

static moat_err cfg_on_body(void *user, uint64_t offset, const uint8_t *data, size_t len)
{
    (void)user;
    if (offset + len > sizeof U.cfgbuf) {
        snprintf(U.slot_words, sizeof U.slot_words,
                 "config.json from the update server is larger than %u bytes",
                 AG_CONFIG_FILE_MAX);
        return MOAT_ERR_TOO_LARGE;
    }
    memcpy(U.cfgbuf + offset, data, len);
    if (offset + len > U.cfglen)
        U.cfglen = (size_t)(offset + len);
    return MOAT_OK;
}

/* GET https://<downloadserver>:<downloadport><downloadpath><file><query>. */
static moat_err fetch_start(agent *a, int job, const char *file, const char *query,
                            uint64_t max_total, uint64_t from, uint64_t range_len,
                            const char *if_range, char *why, size_t cap)
{
    const moat_config *c = &a->cfg;
    moat_http_fetch_config fc;
    const char *ca, *cert, *key;
    size_t n = strlen(c->downloadpath);
    moat_err e;

    if (c->downloadserver[0] == '\0') {
        snprintf(why, cap, "config.json names no update server (downloadserver)");
        return MOAT_ERR_STATE;
    }
    snprintf(U.path, sizeof U.path, "%s%s%s%s", c->downloadpath,
             n > 0 && c->downloadpath[n - 1] == '/' ? "" : "/", file, query);
    ag_creds_paths(a, &ca, &cert, &key);
    memset(&U.tcfg, 0, sizeof U.tcfg);
    U.tcfg.ca.path = ca;
    U.tcfg.cert.path = cert;
    U.tcfg.key.path = key;
    U.tcfg.time_now = ag_time_tls_now;
    U.tcfg.time_user = &a->clock;
    U.tcfg.peer_name = "update server";
    e = moat_tls_init(&U.tls, &U.tcfg);
    if (e != MOAT_OK) {
        snprintf(why, cap, "credentials for the update server: %s",
                 moat_tls_last_error(&U.tls));
        return e;
    }
    U.tls_ready = true;
    memset(&fc, 0, sizeof fc);
    fc.tls = &U.tls;
    fc.host = c->downloadserver;
    fc.port = c->downloadport;
    fc.path = U.path;
    fc.max_total = max_total;
    fc.resume_from = from;
    fc.range_len = range_len;
    fc.if_range = if_range != NULL && if_range[0] != '\0' ? if_range : NULL;
    fc.on_body = job == FETCH_FIRMWARE ? fw_on_body : cfg_on_body;
    fc.on_start = job == FETCH_FIRMWARE ? fw_on_start : cfg_on_start;
    fc.user = a;
    fc.attempts = 5;
    fc.retry_ms = c->retrytimeout_ms;
    fc.idle_ms = 30000;
    U.total = 0;
    U.fetch_started_ms = moat_clock_ms();
    e = moat_http_fetch_start(&U.fetch, &fc, a->now_ms);
    if (e != MOAT_OK) {
        snprintf(why, cap, "%s", moat_http_fetch_error(&U.fetch));
        moat_tls_free(&U.tls);
        U.tls_ready = false;
        return e;
    }
    U.fetch_job = job;
    if (from > 0 || range_len > 0)
        ag_log(AG_LOG_INFO, "%s: GET https://%s:%u%s from byte %llu%s", job == FETCH_FIRMWARE
               ? "firmware" : "config", c->downloadserver, c->downloadport, U.path,
               (unsigned long long)from, range_len > 0 ? " (the header)" : "");
    else
        ag_log(AG_LOG_INFO, "%s: GET https://%s:%u%s", job == FETCH_FIRMWARE ? "firmware"
               : "config", c->downloadserver, c->downloadport, U.path);
    return MOAT_OK;
}

static void firmware_failed(agent *a, const char *words, uint32_t now_ms)
{
    ag_set_error(a, AG_LOG_ERROR, "firmware: %s", words);
    ag_result_error(a, "firmware", words, now_ms);
    slot_close();
    fetch_end();
    dl_clear(); /* a refused image is not resumed */
}

#define UP_IMAGE_MAX ((uint64_t)MOAT_SLOTS_SLOT_MAX + MOAT_OTA_HEADER_MAX + MOAT_OTA_SIG_SIZE)

/* The header came again: go on with the rest of the same image, or start
 * over when the server now has another one (its ETag changed). */
static void header_done(agent *a, const char *saved_etag, uint32_t now_ms)
{
    char why[UP_WORDS];
    uint32_t at = moat_ota_offset(&U.v);

    U.header_phase = false;
    fetch_end();
    if (moat_ota_header_of(&U.v) == NULL || strcmp(U.etag, saved_etag) != 0) {
        ag_log(AG_LOG_WARN, "firmware: the update server has another image now; the "
               "download starts over");
        dl_clear();
        if (verifier_begin(0, why, sizeof why) != MOAT_OK ||
            fetch_start(a, FETCH_FIRMWARE, "firmware.bin", U.query, UP_IMAGE_MAX, 0, 0, NULL,
                        why, sizeof why) != MOAT_OK)
            firmware_failed(a, why, now_ms);
        return;
    }
    U.resumed_at = at;
    ag_log(AG_LOG_INFO, "firmware: the header verified again; the download resumes at byte %lu "
           "(slot %c already holds the payload before it)", (unsigned long)at,
           moat_boot_slot_name(U.slot));
    if (fetch_start(a, FETCH_FIRMWARE, "firmware.bin", U.query, UP_IMAGE_MAX, at, 0, saved_etag,
                    why, sizeof why) != MOAT_OK)
        firmware_failed(a, why, now_ms);
}

static void firmware_done(agent *a, moat_err e, uint32_t now_ms)
{
    moat_boot_image img;
    char why[UP_WORDS];
    uint8_t slot;
    int status = moat_http_fetch_status(&U.fetch);
    uint32_t ms = moat_elapsed(U.fetch_started_ms, moat_clock_ms());

    if (e != MOAT_OK) {
        /* the verifier's words when it refused, else the download's */
        if (moat_ota_error(&U.v)[0] != '\0' || U.slot_words[0] != '\0') {
            firmware_failed(a, verifier_words(e), now_ms);
        } else {
            dl_checkpoint("the update server cannot be reached");
            copy_text(why, sizeof why, moat_http_fetch_error(&U.fetch));
            ag_set_error(a, AG_LOG_ERROR, "firmware: %s", why);
            ag_result_error(a, "firmware", why, now_ms);
            slot_close();
            fetch_end(); /* the next firmware command resumes */
        }
        return;
    }
    if (status == 304) {
        ag_log(AG_LOG_INFO, "firmware: the update server has nothing newer than %s", U.version);
        result_doc(a, "firmware", "firmware", "current", "version", U.version, NULL, NULL,
                   now_ms);
        slot_close();
        fetch_end();
        dl_clear();
        return;
    }
    if (U.header_phase) {
        char saved[sizeof U.etag];
        uint32_t durable;
        if (!dl_load(saved, sizeof saved, &durable))
            saved[0] = '\0';
        header_done(a, saved, now_ms);
        return;
    }
    if (verifier_finish(U.total <= UINT32_MAX ? (uint32_t)U.total : 0, &img, why, sizeof why) !=
        MOAT_OK) {
        firmware_failed(a, why, now_ms);
        return;
    }
    slot = U.slot;
    U.slot = MOAT_BOOT_NONE;
    dl_clear();
    ag_log(AG_LOG_INFO, "firmware: image %s (counter %lu, %lu payload bytes) verified and "
           "installed in slot %c in %lu ms (%lu connections, %llu bytes received)",
           img.version, (unsigned long)img.security_counter, (unsigned long)img.size,
           moat_boot_slot_name(slot), (unsigned long)ms,
           (unsigned long)moat_http_fetch_connections(&U.fetch),
           (unsigned long long)moat_http_fetch_delivered(&U.fetch));
    {
        char s[2] = {moat_boot_slot_name(slot), '\0'};
        result_doc(a, "firmware", "firmware", U.stage_only ? "staged" : "installed", "version",
                   img.version, "slot", s, now_ms);
    }
    if (strncmp(a->error, "firmware", 8) == 0)
        a->error[0] = '\0';
    fetch_end();
    if (!U.stage_only)
        schedule_restart(&img, slot, "firmware");
    else
        ag_log(AG_LOG_INFO, "firmware: staged; the flash command (or the next start of "
               "moat-launch) runs it on trial");
    a->status_now = true;
}

static void config_done(agent *a, moat_err e, uint32_t now_ms)
{
    char msg[512];

    if (e == MOAT_OK && moat_http_fetch_status(&U.fetch) != 200) {
        snprintf(msg, sizeof msg, "the update server answered %d for %s",
                 moat_http_fetch_status(&U.fetch), U.path);
        e = MOAT_ERR_PROTOCOL;
    } else if (e != MOAT_OK) {
        copy_text(msg, sizeof msg, U.slot_words[0] ? U.slot_words
                                                   : moat_http_fetch_error(&U.fetch));
    } else {
        e = ag_config_apply(a, "config.json from the update server", U.cfgbuf, U.cfglen, msg,
                            sizeof msg);
    }
    fetch_end();
    if (e != MOAT_OK) {
        ag_set_error(a, AG_LOG_ERROR, "config: %s; the old config stays in force", msg);
        ag_result_error(a, "config", msg, now_ms);
        return;
    }
    ag_log(AG_LOG_INFO, "config: %zu bytes from the update server accepted", U.cfglen);
    result_doc(a, "config", "config", "applied", NULL, NULL, NULL, NULL, now_ms);
}

moat_err ag_update_fetch_config(agent *a, char *why, size_t cap)
{
    if (U.fetch_job != FETCH_NONE) {
        snprintf(why, cap, "a download from the update server is in progress");
        return MOAT_ERR_STATE;
    }
    U.slot_words[0] = '\0';
    U.cfglen = 0;
    if (fetch_start(a, FETCH_CONFIG, "config.json", "", AG_CONFIG_FILE_MAX, 0, 0, NULL, why,
                    cap) != MOAT_OK)
        return MOAT_ERR_STATE;
    return MOAT_ERR_WOULD_BLOCK;
}

/* ---------------------------------------------------------- commands -- */

/*
 * firmware: ask the update server for the next image and install it.
 * Payload "" installs and restarts into it (on trial); "stage" installs
 * it only (the flash command, or the next start, runs it).
 */
moat_err ag_cmd_firmware(const moat_command *self, void *user, const uint8_t *payload,
                         size_t len, char *why, size_t cap)
{
    agent *a = user;
    char q[UP_QUERY_MAX], v[64], saved[sizeof U.etag];
    uint32_t durable = 0;
    bool stage = false;
    moat_err e;

    (void)self;
    if (len == 5 && memcmp(payload, "stage", 5) == 0) {
        stage = true;
    } else if (len != 0) {
        snprintf(why, cap, "the payload is empty (install the update server's next image "
                 "and restart into it) or \"stage\" (install it only)");
        return MOAT_ERR_ARG;
    }
    if (!can_install(why, cap))
        return MOAT_ERR_STATE;
    if (U.fetch_job != FETCH_NONE) {
        snprintf(why, cap, "a download from the update server is in progress");
        return MOAT_ERR_STATE;
    }
    if (!U.launched && !stage) {
        /* a restart would run this program again, not the slot */
        ag_log(AG_LOG_INFO, "firmware: not started by moat-launch: the image is staged, "
               "and runs at the next start of moat-launch");
        stage = true;
    }
    if (U.mqtt_begun) {
        if (moat_otamqtt_get_state(&U.ota) != MOAT_OTAMQTT_STALLED) {
            snprintf(why, cap, "an update over MQTT is in progress (%lu of %lu bytes)",
                     (unsigned long)moat_otamqtt_received(&U.ota),
                     (unsigned long)(moat_otamqtt_current(&U.ota)
                                         ? moat_otamqtt_current(&U.ota)->size : 0));
            return MOAT_ERR_STATE;
        }
        ag_log(AG_LOG_WARN, "firmware: the stalled update over MQTT is given up");
        moat_otamqtt_abort(&U.ota);
    }
    if (U.restart_due) {
        snprintf(why, cap, "a new image is installed; the agent is restarting into it");
        return MOAT_ERR_STATE;
    }
    query_value(v, sizeof v, U.version);
    snprintf(q, sizeof q, "?curimage=%s", v);
    copy_text(U.query, sizeof U.query, q);
    U.etag[0] = '\0';
    U.resumed_at = 0;
    U.ckpt_at = 0;
    U.durable = 0;
    U.header_phase = false;
    if (dl_load(saved, sizeof saved, &durable) &&
        verifier_begin(durable, why, cap) == MOAT_OK) {
        /* a download a restart cut: the header again, then the rest */
        ag_log(AG_LOG_INFO, "firmware: slot %c holds %lu payload bytes of an image a restart "
               "interrupted (ETag %s)", moat_boot_slot_name(U.slot), (unsigned long)durable,
               saved);
        U.durable = durable;
        U.header_phase = true;
        e = fetch_start(a, FETCH_FIRMWARE, "firmware.bin", q, UP_IMAGE_MAX, 0,
                        MOAT_OTA_HEADER_MAX + MOAT_OTA_SIG_SIZE, NULL, why, cap);
    } else {
        dl_clear();
        e = verifier_begin(0, why, cap);
        if (e == MOAT_OK)
            e = fetch_start(a, FETCH_FIRMWARE, "firmware.bin", q, UP_IMAGE_MAX, 0, 0, NULL, why,
                            cap);
    }
    if (e != MOAT_OK) {
        U.header_phase = false;
        slot_close();
        return e;
    }
    U.stage_only = stage;
    return MOAT_ERR_WOULD_BLOCK; /* the result comes with the download */
}

/* flash: restart into the verified image that waits for its trial start. */
moat_err ag_cmd_flash(const moat_command *self, void *user, const uint8_t *payload,
                      size_t len, char *why, size_t cap)
{
    const moat_boot_record *r;
    moat_boot_image img;
    uint8_t p;

    (void)self, (void)user, (void)payload, (void)len;
    if (!U.have_slots) {
        snprintf(why, cap, "no slot directory: moat-agent was not started by moat-launch "
                 "(and has no --slots-dir)");
        return MOAT_ERR_STATE;
    }
    if (U.fetch_job == FETCH_FIRMWARE || U.mqtt_begun) {
        snprintf(why, cap, "an update is being received: wait for it");
        return MOAT_ERR_STATE;
    }
    refresh_boot();
    r = moat_boot_record_get(&U.slots.boot);
    p = r != NULL ? r->pending : MOAT_BOOT_NONE;
    if (!U.have_bst || p >= MOAT_BOOT_SLOTS || (U.launched && p == U.run_slot)) {
        snprintf(why, cap, "no verified image waits for its trial start (install one with "
                 "'firmware stage' or moat ota push)");
        return MOAT_ERR_STATE;
    }
    if (!U.launched) {
        snprintf(why, cap, "not started by moat-launch: slot %c (version %s) runs on trial "
                 "at the next start of moat-launch", moat_boot_slot_name(p),
                 r->slot[p].image.version);
        return MOAT_ERR_STATE;
    }
    img = r->slot[p].image;
    schedule_restart(&img, p, "flash");
    return MOAT_OK;
}

/* ------------------------------------------------- updates over MQTT -- */

static moat_err sink_begin(void *ctx, const moat_otamqtt_offer *o, uint32_t resume, char *why,
                           size_t cap)
{
    uint32_t fixed = MOAT_OTA_HEADER_MAX + MOAT_OTA_SIG_SIZE;
    moat_err e;

    (void)ctx;
    if (!can_install(why, cap))
        return MOAT_ERR_STATE;
    if (U.fetch_job == FETCH_FIRMWARE) {
        snprintf(why, cap, "an update from the update server is in progress");
        return MOAT_ERR_STATE;
    }
    if (U.restart_due) {
        snprintf(why, cap, "a new image is installed; the agent is restarting into it");
        return MOAT_ERR_STATE;
    }
    /* The header's size is not known yet: resume from where the largest
     * header would leave the payload (the verifier rounds down further). */
    if (resume == 0)
        dl_clear(); /* another image goes into the slot now */
    e = verifier_begin(resume > fixed ? resume - fixed : 0, why, cap);
    if (e != MOAT_OK)
        return e;
    U.mqtt_begun = true;
    U.mqtt_bytes = 0;
    if (resume > 0)
        ag_log(AG_LOG_INFO, "update over MQTT: resumed at byte %lu of %lu (slot %c)",
               (unsigned long)resume, (unsigned long)o->size, moat_boot_slot_name(U.slot));
    else
        ag_log(AG_LOG_INFO, "update over MQTT: %lu bytes offered in blocks of %lu",
               (unsigned long)o->size, (unsigned long)o->block);
    return MOAT_OK;
}

static uint32_t sink_offset(void *ctx)
{
    (void)ctx;
    return moat_ota_offset(&U.v);
}

static moat_err sink_write(void *ctx, uint32_t off, const uint8_t *d, size_t n, char *why,
                           size_t cap)
{
    moat_err e = feed(off, d, n);

    (void)ctx;
    if (e != MOAT_OK)
        snprintf(why, cap, "%s", verifier_words(e));
    else
        U.mqtt_bytes += (uint32_t)n;
    return e;
}

static moat_err sink_checkpoint(void *ctx, uint32_t *durable)
{
    uint32_t payload = 0;
    moat_err e = moat_ota_checkpoint(&U.v, &payload);
    const moat_ota_header *h = moat_ota_header_of(&U.v);

    (void)ctx;
    *durable = e == MOAT_OK && h != NULL && payload > 0
                   ? h->header_size + MOAT_OTA_SIG_SIZE + payload : 0;
    return e;
}

static moat_err sink_finish(void *ctx, const moat_otamqtt_offer *o, char *why, size_t cap)
{
    moat_boot_image img;
    moat_err e = verifier_finish(o->size, &img, why, cap);

    (void)ctx;
    U.mqtt_begun = false;
    if (e != MOAT_OK)
        return e;
    ag_log(AG_LOG_INFO, "update over MQTT: image %s (counter %lu, %lu payload bytes) "
           "verified and installed in slot %c (%lu bytes received in this run)", img.version,
           (unsigned long)img.security_counter, (unsigned long)img.size,
           moat_boot_slot_name(U.slot), (unsigned long)U.mqtt_bytes);
    if (U.launched)
        schedule_restart(&img, U.slot, "update over MQTT");
    else
        ag_log(AG_LOG_INFO, "update over MQTT: not started by moat-launch: slot %c runs at "
               "the next start of moat-launch", moat_boot_slot_name(U.slot));
    U.slot = MOAT_BOOT_NONE;
    return MOAT_OK;
}

static void sink_abort(void *ctx)
{
    (void)ctx;
    slot_close();
    U.mqtt_begun = false;
}

void ag_update_setup(agent *a, uint32_t now_ms)
{
    char base[MOAT_OTAMQTT_BASE_MAX];
    const char *tmpl = a->cfg.preset == MOAT_PRESET_SECUREESP8266 ? "/ota/{id}" : "moat/{id}/ota";
    moat_err e;

    if (moat_config_topic(tmpl, a->id, NULL, base, sizeof base) != MOAT_OK) {
        ag_log(AG_LOG_WARN, "update over MQTT: no topic for device id %s", a->id);
        return;
    }
    if (U.ota_ready && strcmp(base, U.ota_base) == 0)
        return;
    if (U.ota_ready)
        moat_otamqtt_link_down(&U.ota, now_ms);
    if (U.mqtt_begun)
        sink_abort(NULL);
    copy_text(U.ota_base, sizeof U.ota_base, base);
    moat_otamqtt_topic(U.f_offer, sizeof U.f_offer, U.ota_base, "offer");
    moat_otamqtt_topic(U.f_blk, sizeof U.f_blk, U.ota_base, "blk/#");
    memset(&U.ocfg, 0, sizeof U.ocfg);
    U.ocfg.base = U.ota_base;
    U.ocfg.state = U.have_slots ? &U.map : NULL;
    U.ocfg.sink.begin = sink_begin;
    U.ocfg.sink.offset = sink_offset;
    U.ocfg.sink.write = sink_write;
    U.ocfg.sink.checkpoint = sink_checkpoint;
    U.ocfg.sink.finish = sink_finish;
    U.ocfg.sink.abort = sink_abort;
    U.ocfg.sink.ctx = a;
    U.ocfg.max_size = MOAT_SLOTS_SLOT_MAX;
    U.ocfg.max_block = AG_OTA_MAX_BLOCK;
    e = moat_otamqtt_init(&U.ota, &U.ocfg, now_ms);
    if (e != MOAT_OK && e != MOAT_ERR_ARG)
        ag_log(AG_LOG_WARN, "update over MQTT: %s", moat_otamqtt_error(&U.ota));
    U.ota_ready = e != MOAT_ERR_ARG;
    U.shown = -1;
    if (U.ota_ready && moat_otamqtt_current(&U.ota) != NULL)
        ag_log(AG_LOG_INFO, "update over MQTT: the block map holds a transfer at byte %lu of "
               "%lu; it goes on once online", (unsigned long)moat_otamqtt_received(&U.ota),
               (unsigned long)moat_otamqtt_current(&U.ota)->size);
}

size_t ag_update_filters(agent *a, moat_mqtt_sub *subs, size_t cap)
{
    (void)a;
    if (!U.ota_ready || cap < 2)
        return 0;
    subs[0].filter = U.f_offer;
    subs[0].qos = 1;
    subs[1].filter = U.f_blk;
    subs[1].qos = 1;
    return 2;
}

void ag_update_online(agent *a, bool granted, uint32_t now_ms)
{
    (void)a;
    if (!U.ota_ready)
        return;
    if (!granted) {
        ag_log(AG_LOG_WARN, "updates over MQTT are not available: the broker did not "
               "grant %s and %s (ACL)", U.f_offer, U.f_blk);
        U.ota_granted = false;
        return;
    }
    U.ota_granted = true;
    moat_otamqtt_link_up(&U.ota, now_ms);
}

void ag_update_offline(agent *a, uint32_t now_ms)
{
    (void)a;
    if (U.ota_ready && U.ota_granted)
        moat_otamqtt_link_down(&U.ota, now_ms);
    U.ota_granted = false;
}

bool ag_update_message(agent *a, const moat_mqtt_event *ev, uint32_t now_ms)
{
    moat_err e;

    if (!U.ota_ready || ev->offset != 0 || ev->len != ev->total)
        return false;
    if (ev->topic.len == strlen(U.f_offer) && memcmp(ev->topic.data, U.f_offer, ev->topic.len) == 0)
        U.offers++; /* its outcome is reported even if it is the same as the last */
    e = moat_otamqtt_message(&U.ota, (const char *)ev->topic.data, ev->topic.len, ev->payload,
                             ev->len, ev->retain, now_ms);
    if (e == MOAT_ERR_TOPIC)
        return false;
    if (e != MOAT_OK)
        ag_set_error(a, AG_LOG_WARN, "update over MQTT: offer refused: %s",
                     moat_otamqtt_error(&U.ota));
    return true;
}

/* The engine's state changes: log them, act on the outcome. */
static void mqtt_progress(agent *a)
{
    moat_otamqtt_state st = moat_otamqtt_get_state(&U.ota);
    const moat_otamqtt_offer *o = moat_otamqtt_current(&U.ota);

    if ((int)st == U.shown && U.offers == U.shown_offers)
        return;
    U.shown = (int)st;
    U.shown_offers = U.offers;
    switch (st) {
    case MOAT_OTAMQTT_STALLED:
        ag_log(AG_LOG_WARN, "update over MQTT stalled: %s", moat_otamqtt_error(&U.ota));
        break;
    case MOAT_OTAMQTT_FAILED:
        ag_set_error(a, AG_LOG_ERROR, "update over MQTT: %s", moat_otamqtt_error(&U.ota));
        break;
    case MOAT_OTAMQTT_DONE:
        if (strncmp(a->error, "update over MQTT", 16) == 0)
            a->error[0] = '\0';
        break;
    case MOAT_OTAMQTT_RECEIVING:
        if (o != NULL)
            ag_log(AG_LOG_DEBUG, "update over MQTT: receiving %lu bytes",
                   (unsigned long)o->size);
        break;
    default:
        break;
    }
}

/* ----------------------------------------------------------- the loop -- */

static void confirm(agent *a);

void ag_update_service(agent *a, uint32_t now_ms)
{
    moat_otamqtt_msg m;
    bool drained = true;
    moat_err e;

    if (U.fetch_job != FETCH_NONE) {
        e = moat_http_fetch_poll(&U.fetch, now_ms);
        if (e == MOAT_ERR_WOULD_BLOCK && U.fetch_job == FETCH_FIRMWARE && !U.header_phase &&
            moat_http_fetch_fd(&U.fetch) < 0)
            dl_checkpoint("the connection broke"); /* waiting to connect again */
        if (e != MOAT_ERR_WOULD_BLOCK) {
            if (U.fetch_job == FETCH_FIRMWARE)
                firmware_done(a, e, now_ms);
            else
                config_done(a, e, now_ms);
        }
    }
    if (U.ota_ready) {
        moat_otamqtt_tick(&U.ota, now_ms);
        if (a->phase == AG_PHASE_READY && moat_mqtt_get_state(&a->mqtt) == MOAT_MQTT_CONNECTED) {
            while (moat_otamqtt_output(&U.ota, &m)) {
                if (ag_publish(a, m.topic, m.payload, m.len, 1, false, now_ms) != MOAT_OK) {
                    drained = false;
                    break;
                }
                moat_otamqtt_output_done(&U.ota, now_ms);
            }
        }
        mqtt_progress(a);
        if (moat_otamqtt_get_state(&U.ota) == MOAT_OTAMQTT_DONE && drained && U.restart_due)
            moat_otamqtt_reset(&U.ota);
    }
    if (U.confirm_due && a->phase == AG_PHASE_READY && ag_agent_output_drained(a))
        confirm(a);
    if (U.restart_due && drained && a->phase != AG_PHASE_CLOSING) {
        U.restart_due = false;
        ag_agent_stop(a, AG_EXIT_REBOOT, U.restart_why, now_ms);
    }
}

uint32_t ag_update_next_timeout(agent *a, uint32_t now_ms)
{
    uint32_t t = UINT32_MAX, f;

    if (U.restart_due || (U.confirm_due && a->phase == AG_PHASE_READY &&
                          ag_agent_output_drained(a)))
        return 0;
    if (U.fetch_job != FETCH_NONE) {
        f = moat_http_fetch_next_timeout(&U.fetch, now_ms);
        t = f < t ? f : t;
    }
    if (U.ota_ready) {
        f = moat_otamqtt_next_timeout(&U.ota, now_ms);
        t = f < t ? f : t;
    }
    return t;
}

size_t ag_update_pollfds(agent *a, struct pollfd *p, size_t cap)
{
    int fd;

    (void)a;
    if (U.fetch_job == FETCH_NONE || cap == 0)
        return 0;
    fd = moat_http_fetch_fd(&U.fetch);
    if (fd < 0)
        return 0;
    p[0].fd = fd;
    p[0].events = (short)(POLLIN | (moat_http_fetch_want_write(&U.fetch) ? POLLOUT : 0));
    return 1;
}

/* -------------------------------------------------- trial and confirm -- */

void ag_update_status_published(agent *a, uint32_t now_ms)
{
    (void)a, (void)now_ms;
    if (U.trial && !U.confirmed && !U.confirm_failed)
        U.confirm_due = true;
}

/* The trial start reached the broker and its status is written out. */
static void confirm(agent *a)
{
    char why[MOAT_BOOT_WORDS_MAX + MOAT_SLOTS_PATH_MAX];

    U.confirm_due = false;
    if (moat_slots_confirm_running(why, sizeof why) != MOAT_OK) {
        U.confirm_failed = true;
        ag_set_error(a, AG_LOG_ERROR, "cannot confirm slot %s (version %s): %s", U.slot_name,
                     U.version, why);
        return;
    }
    U.confirmed = true;
    refresh_boot();
    ag_log(AG_LOG_INFO, "slot %s (version %s) reached the broker and confirmed: it is the "
           "active image now (security counter %lu)", U.slot_name, U.version,
           (unsigned long)device_counter());
    a->status_now = true; /* say so at once */
}

/* -------------------------------------------------------------- status -- */

const char *ag_update_version(void)
{
    return U.version;
}

const char *ag_update_slot(void)
{
    return U.slot_name;
}

bool ag_update_on_trial(void)
{
    return U.trial && !U.confirmed;
}

void ag_update_status_members(moat_json_writer *w)
{
    refresh_boot(); /* an operator may have used moat-launch meanwhile */
    moat_json_put_bool(w, "trial", U.trial && !U.confirmed);
    if (U.have_bst) {
        moat_json_put_string(w, "bootstate", U.bst.state);
        moat_json_put_uint(w, "securitycounter", U.bst.security_counter);
        moat_json_put_string(w, "rollback", U.bst.reason);
    }
    moat_json_put_string(w, "update", U.restart_due                   ? "restarting"
                                      : U.fetch_job == FETCH_FIRMWARE ? "downloading"
                                      : U.mqtt_begun ? moat_otamqtt_state_name(
                                                           moat_otamqtt_get_state(&U.ota))
                                                     : "idle");
    if (U.fetch_job == FETCH_FIRMWARE && U.total > 0 && U.total != MOAT_HTTP_UNKNOWN)
        moat_json_put_uint(w, "updatepercent", (uint64_t)moat_ota_offset(&U.v) * 100u / U.total);
    else if (U.mqtt_begun && moat_otamqtt_current(&U.ota) != NULL)
        moat_json_put_uint(w, "updatepercent",
                           (uint64_t)moat_otamqtt_received(&U.ota) * 100u /
                               moat_otamqtt_current(&U.ota)->size);
}

/* ----------------------------------------------------------- set up -- */

int ag_update_init(agent *a, char *msg, size_t cap)
{
    const char *dir = a->opts.slots_dir;
    const char *env_version;
    unsigned i;
    moat_err e;

    memset(&U, 0, sizeof U);
    U.slot = MOAT_BOOT_NONE;
    U.run_slot = MOAT_BOOT_NONE;
    U.product = a->opts.product != NULL ? a->opts.product : AG_DEFAULT_PRODUCT;
    if (strlen(U.product) == 0 || strlen(U.product) > MOAT_OTA_PRODUCT_MAX) {
        snprintf(msg, cap, "--product: 1 to %u characters, got '%s'", MOAT_OTA_PRODUCT_MAX,
                 U.product);
        return AG_EXIT_CONFIG;
    }
    for (i = 0; i < a->opts.update_key_count && i < MOAT_OTA_MAX_KEYS; i++) {
        e = moat_ota_load_pub(a->opts.update_keys[i], U.keys[i]);
        if (e != MOAT_OK) {
            snprintf(msg, cap, "--update-key %s: %s", a->opts.update_keys[i],
                     e == MOAT_ERR_FILE ? "cannot be read" : "not an ECDSA P-256 public key");
            return AG_EXIT_CONFIG;
        }
        U.nkeys++;
    }
    U.launched = moat_slots_running(&U.run_slot, &U.trial) == MOAT_OK;
    if (!U.launched) {
        U.trial = false;
        U.run_slot = MOAT_BOOT_NONE;
    }
    if (dir == NULL && U.launched)
        dir = getenv(MOAT_SLOTS_ENV_DIR);
    U.slot_name[0] = U.launched ? moat_boot_slot_name(U.run_slot) : '-';
    env_version = getenv(MOAT_SLOTS_ENV_VERSION);
    copy_text(U.version, sizeof U.version,
              U.launched && env_version != NULL && env_version[0] != '\0' ? env_version
                                                                          : MOAT_AGENT_VERSION);
    if (!parse_version(U.version, &U.running)) {
        ag_log(AG_LOG_WARN, "version '%s' is not X.Y.Z: images are judged by their "
               "security counter alone", U.version);
        memset(&U.running, 0, sizeof U.running);
    }
    if (dir != NULL && dir[0] != '\0') {
        if (moat_slots_open(&U.slots, dir, false) != MOAT_OK) {
            snprintf(msg, cap, "slots: %s", moat_slots_error(&U.slots));
            if (a->opts.slots_dir != NULL)
                return AG_EXIT_CONFIG;
            ag_log(AG_LOG_ERROR, "%s: updates are off", msg);
        } else {
            char map[MOAT_SLOTS_PATH_MAX + 16];
            U.have_slots = true;
            snprintf(U.state_path, sizeof U.state_path, "%s/download.state", dir);
            snprintf(map, sizeof map, "%s/ota.map", dir);
            if (moat_file_area_init(&U.map_file, &U.map, map, UP_MAP_SIZE, 0600) != MOAT_OK) {
                snprintf(msg, cap, "slots: %s: path too long", map);
                return AG_EXIT_CONFIG;
            }
            refresh_boot();
        }
    }
    /* The last resort (no confirmed image could run) confirms like a
     * trial start once it reached the broker, so the device has an active
     * image again. */
    if (U.launched && U.have_bst && strcmp(U.bst.state, "fallback") == 0)
        U.trial = true;
    if (U.launched)
        ag_log(AG_LOG_INFO, "running slot %s (version %s)%s%s%s", U.slot_name, U.version,
               U.trial ? " on trial: it confirms once it has reached the broker and "
                         "published its status" : "",
               U.have_bst && U.bst.reason[0] && !U.trial ? "; last rollback: " : "",
               U.have_bst && !U.trial ? U.bst.reason : "");
    if (U.nkeys == 0)
        ag_log(AG_LOG_INFO, "no --update-key: firmware updates are refused");
    else
        ag_log(AG_LOG_INFO, "updates: product %s, %u trusted key%s, %s, security counter %lu",
               U.product, U.nkeys, U.nkeys > 1 ? "s" : "",
               U.have_slots ? U.slots.dir : "no slot directory",
               (unsigned long)device_counter());
    return AG_EXIT_OK;
}

void ag_update_abort(agent *a, const char *why)
{
    const char *name = U.fetch_job == FETCH_FIRMWARE ? "firmware" : "config";
    char words[200];

    if (U.fetch_job == FETCH_NONE)
        return;
    snprintf(words, sizeof words, "the download was given up: %s", why);
    ag_result_error(a, name, words, a->now_ms); /* before the DISCONNECT */
    if (U.fetch_job == FETCH_FIRMWARE) {
        if (!U.header_phase)
            dl_checkpoint("the download was given up");
        slot_close();
    }
    U.header_phase = false;
    fetch_end();
}

void ag_update_free(agent *a)
{
    (void)a;
    if (U.fetch_job != FETCH_NONE) {
        moat_http_fetch_abort(&U.fetch);
        U.fetch_job = FETCH_NONE;
    }
    if (U.tls_ready)
        moat_tls_free(&U.tls);
    U.tls_ready = false;
    slot_close();
    if (U.have_slots) {
        moat_file_area_close(&U.map_file);
        moat_slots_close(&U.slots);
    }
}
