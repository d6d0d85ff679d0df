/*
 * ota_push.c - `moat ota push <id> <image>`: send an update image to one
 * device over MQTT, on the connection it already has (moat/otamqtt.h,
 * docs/OTA.md).
 *
 * The operator publishes an offer (size, block size, SHA-256) on
 * moat/<id>/ota/offer, then serves the blocks the device asks for on
 * moat/<id>/ota/req, each on moat/<id>/ota/blk/<tag>/<n>, until the device
 * reports "done" or "failed" on moat/<id>/ota/status. The device asks; the
 * operator only answers, so a device that restarts, or whose link is cut,
 * asks again from where it stopped, and this command needs no state of its
 * own: run it again with the same image and the device resumes.
 */
#include "op_mqtt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/sha256.h>

#include "moat/otamqtt.h"
#include "moat/timer.h"

#define PUSH_DEFAULT_TIMEOUT_S 60u
#define PUSH_MAX_IMAGE (1024ul * 1024ul * 1024ul)
#define PUSH_QUEUE 4096u            /* blocks asked for and not yet sent */
#define PUSH_MAX_COUNT 256u         /* blocks one request may ask for */

static const char usage[] =
    "usage: moat ota push <id> <image> [options]\n"
    "Sends an update image to device <id> over MQTT, in blocks the device asks for\n"
    "(moat/<id>/ota/...), and waits until the device says the image is complete\n"
    "and verified, or refused. A transfer that was cut resumes where it stopped:\n"
    "run the same command again.\n"
    "  --block N            block size in bytes, 64 to 65536 (default 1024); the\n"
    "                       device refuses blocks larger than it takes whole\n"
    "  --timeout S          give up when the device says nothing for S seconds\n"
    "                       (default 60)\n";

typedef struct push {
    const char *id;
    char base[MOAT_OTAMQTT_BASE_MAX];
    char req_topic[MOAT_OTAMQTT_TOPIC_MAX], status_topic[MOAT_OTAMQTT_TOPIC_MAX];
    char offer_topic[MOAT_OTAMQTT_TOPIC_MAX];
    unsigned char *image;
    moat_otamqtt_offer offer;
    char hex[65];
    uint32_t queue[PUSH_QUEUE];
    size_t q_head, q_len;
    uint32_t last_heard_ms, start_ms;
    unsigned long blocks_sent, bytes_sent;
    int shown_pct;
    uint32_t resumed_at;
    bool heard, done, failed, reoffer;
    char error[MOAT_OTAMQTT_ERROR_MAX];
    op_mqtt m;
} push;

static push P;

static int read_image(const char *path, unsigned char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        cli_error("cannot read image %s: %s", path, strerror(errno));
        if (f != NULL)
            fclose(f);
        return CLI_FAIL;
    }
    if (n == 0 || (unsigned long)n > PUSH_MAX_IMAGE) {
        cli_error("image %s: %ld bytes (must be 1 byte to 1 GiB)", path, n);
        fclose(f);
        return CLI_FAIL;
    }
    *buf = malloc((size_t)n);
    if (*buf == NULL || fread(*buf, 1, (size_t)n, f) != (size_t)n) {
        cli_error("cannot read image %s: %s", path, *buf == NULL ? "out of memory" : "short read");
        free(*buf);
        fclose(f);
        return CLI_FAIL;
    }
    fclose(f);
    *len = (size_t)n;
    return CLI_OK;
}

static void enqueue(push *p, uint32_t block)
{
    if (p->q_len == PUSH_QUEUE)
        return; /* the device asks again after its timeout */
    p->queue[(p->q_head + p->q_len) % PUSH_QUEUE] = block;
    p->q_len++;
}

static void on_request(push *p, const moat_mqtt_event *ev)
{
    moat_otamqtt_request r;
    char why[200];

    if (moat_otamqtt_parse_request(ev->payload, ev->len, &r, why, sizeof why) != MOAT_OK) {
        fprintf(stderr, "moat: ota: ignoring a request from %s: %s\n", p->id, why);
        return;
    }
    if (memcmp(r.sha256, p->offer.sha256, 32) != 0)
        return; /* for another image */
    if (r.block >= p->offer.blocks || r.count > p->offer.blocks - r.block ||
        r.count > PUSH_MAX_COUNT) {
        fprintf(stderr, "moat: ota: ignoring a request for blocks %lu+%lu of %lu\n",
                (unsigned long)r.block, (unsigned long)r.count, (unsigned long)p->offer.blocks);
        return;
    }
    for (uint32_t i = 0; i < r.count; i++)
        enqueue(p, r.block + i);
}

static void on_status(push *p, const moat_mqtt_event *ev)
{
    moat_otamqtt_status s;
    char why[200];

    if (moat_otamqtt_parse_status(ev->payload, ev->len, &s, why, sizeof why) != MOAT_OK) {
        fprintf(stderr, "moat: ota: ignoring a status from %s: %s\n", p->id, why);
        return;
    }
    if (memcmp(s.sha256, p->offer.sha256, 32) != 0)
        return;
    switch (s.state) {
    case MOAT_OTAMQTT_RECEIVING:
        if (s.received > 0) {
            printf("device %s resumes at byte %lu of %lu\n", p->id, (unsigned long)s.received,
                   (unsigned long)s.size);
            p->resumed_at = s.received;
        } else {
            printf("device %s takes the image: %lu bytes in %lu blocks of %lu\n", p->id,
                   (unsigned long)s.size, (unsigned long)p->offer.blocks,
                   (unsigned long)p->offer.block);
        }
        break;
    case MOAT_OTAMQTT_STALLED:
        /* It asked and got nothing (a session lost in between): offer again. */
        fprintf(stderr, "moat: ota: device %s stalled (%s); offering again\n", p->id, s.error);
        p->reoffer = true;
        break;
    case MOAT_OTAMQTT_DONE:
        p->done = true;
        break;
    case MOAT_OTAMQTT_FAILED:
        p->failed = true;
        snprintf(p->error, sizeof p->error, "%s", s.error[0] ? s.error : "no reason given");
        break;
    default:
        break;
    }
    fflush(stdout);
}

static void on_message(void *app, const moat_mqtt_event *ev)
{
    push *p = app;

    p->heard = true;
    p->last_heard_ms = moat_clock_ms();
    if (ev->topic.len == strlen(p->req_topic) &&
        memcmp(ev->topic.data, p->req_topic, ev->topic.len) == 0)
        on_request(p, ev);
    else if (ev->topic.len == strlen(p->status_topic) &&
             memcmp(ev->topic.data, p->status_topic, ev->topic.len) == 0)
        on_status(p, ev);
}

static void progress(push *p, uint32_t block)
{
    uint64_t upto = (uint64_t)(block + 1) * p->offer.block;
    int pct;

    if (upto > p->offer.size)
        upto = p->offer.size;
    pct = (int)(upto * 100u / p->offer.size);
    if (pct / 10 > p->shown_pct / 10) {
        uint32_t ms = moat_elapsed(p->start_ms, moat_clock_ms());
        printf("%3d%%  %lu of %lu bytes, %lu KB/s\n", pct, (unsigned long)upto,
               (unsigned long)p->offer.size,
               (unsigned long)(ms > 0 ? p->bytes_sent * 1000u / 1024u / ms : 0));
        fflush(stdout);
        p->shown_pct = pct;
    }
}

/* Publish queued blocks while the engine takes them. */
static void send_blocks(push *p)
{
    char topic[MOAT_OTAMQTT_TOPIC_MAX];

    while (p->q_len > 0 && op_online(&p->m)) {
        uint32_t b = p->queue[p->q_head];
        uint64_t start = (uint64_t)b * p->offer.block;
        uint32_t len = p->offer.size - start < p->offer.block ? (uint32_t)(p->offer.size - start)
                                                              : p->offer.block;
        moat_otamqtt_block_topic(topic, sizeof topic, p->base, p->offer.sha256, b);
        if (op_publish(&p->m, topic, p->image + start, len, 1) != MOAT_OK)
            return; /* window full: after the next acknowledgements */
        p->q_head = (p->q_head + 1) % PUSH_QUEUE;
        p->q_len--;
        p->blocks_sent++;
        p->bytes_sent += len;
        progress(p, b);
    }
}

static int send_offer(push *p)
{
    char json[MOAT_OTAMQTT_PAYLOAD_MAX];
    size_t len;

    moat_otamqtt_offer_json(&p->offer, json, sizeof json, &len);
    for (int i = 0; i < 200; i++) {
        if (op_publish(&p->m, p->offer_topic, json, len, 1) == MOAT_OK)
            return CLI_OK;
        if (op_step(&p->m, 10) != CLI_OK)
            return CLI_FAIL;
    }
    cli_error("cannot publish the offer on %s", p->offer_topic);
    return CLI_FAIL;
}

static int push_main(int argc, char **argv)
{
    push *p = &P;
    op_opts o;
    const char *block_s = NULL, *timeout_s = NULL, *pos[2];
    unsigned long block = MOAT_OTAMQTT_BLOCK_DEFAULT, timeout = PUSH_DEFAULT_TIMEOUT_S;
    const char *filters[2];
    size_t len = 0;
    int npos, rc;

    memset(&o, 0, sizeof o);
    const cli_opt opts[] = {OP_CLI_OPTS(o),
                            {"block", CLI_OPT_VALUE, &block_s},
                            {"timeout", CLI_OPT_VALUE, &timeout_s},
                            {NULL, CLI_OPT_FLAG, NULL}};
    rc = cli_parse(argc, argv, opts, pos, 2, &npos, "ota push");
    if (rc == CLI_HELP) {
        fputs(usage, stdout);
        fputs(op_usage_conn, stdout);
        return CLI_OK;
    }
    if (rc != CLI_OK)
        return rc;
    if (npos != 2) {
        cli_error("ota push: give the device id and the image file (see --help)");
        return CLI_USAGE;
    }
    if (!cli_valid_id(pos[0])) {
        cli_error("ota push: '%s' is not a valid device id (1-64 of A-Z a-z 0-9 _ -)", pos[0]);
        return CLI_USAGE;
    }
    if ((block_s != NULL && cli_parse_uint(block_s, MOAT_OTAMQTT_BLOCK_MIN,
                                           MOAT_OTAMQTT_BLOCK_MAX, "--block", &block) != CLI_OK) ||
        (timeout_s != NULL && cli_parse_uint(timeout_s, 1, 86400, "--timeout", &timeout) != CLI_OK))
        return CLI_USAGE;
    memset(p, 0, sizeof *p);
    p->id = pos[0];
    rc = op_resolve(&p->m, &o);
    if (rc != CLI_OK)
        return rc;
    snprintf(p->base, sizeof p->base, "moat/%s/ota", p->id);
    if (moat_otamqtt_topic(p->req_topic, sizeof p->req_topic, p->base, "req") != MOAT_OK ||
        moat_otamqtt_topic(p->status_topic, sizeof p->status_topic, p->base, "status") != MOAT_OK ||
        moat_otamqtt_topic(p->offer_topic, sizeof p->offer_topic, p->base, "offer") != MOAT_OK)
        return CLI_USAGE;
    if (read_image(pos[1], &p->image, &len) != CLI_OK)
        return CLI_FAIL;
    p->offer.size = (uint32_t)len;
    p->offer.block = (uint32_t)block;
    moat_otamqtt_offer_check(&p->offer);
    if (mbedtls_sha256_ret(p->image, len, p->offer.sha256, 0) != 0) {
        cli_error("cannot hash %s", pos[1]);
        free(p->image);
        return CLI_FAIL;
    }
    moat_otamqtt_hex(p->offer.sha256, p->hex);
    printf("image %s: %lu bytes, sha256 %s\n", pos[1], (unsigned long)len, p->hex);
    filters[0] = p->req_topic;
    filters[1] = p->status_topic;
    rc = CLI_FAIL;
    if (op_connect(&p->m, filters, 2, on_message, p, 15000) != CLI_OK)
        goto out;
    p->start_ms = p->last_heard_ms = moat_clock_ms();
    p->shown_pct = -1;
    if (send_offer(p) != CLI_OK)
        goto out;
    printf("offered to %s on %s\n", p->id, p->offer_topic);
    fflush(stdout);
    while (!p->done && !p->failed) {
        if (op_step(&p->m, 200) != CLI_OK)
            goto out;
        if (p->reoffer) {
            p->reoffer = false;
            if (send_offer(p) != CLI_OK)
                goto out;
        }
        send_blocks(p);
        if (moat_elapsed(p->last_heard_ms, moat_clock_ms()) >= timeout * 1000u) {
            cli_error("ota push: device %s %s for %lu s (is it online, and does the broker ACL "
                      "give it moat/%s/ota/...?)",
                      p->id, p->heard ? "stopped asking for blocks" : "did not answer the offer",
                      timeout, p->id);
            goto out;
        }
    }
    if (p->failed) {
        cli_error("ota push: device %s refused the image: %s", p->id, p->error);
        goto out;
    }
    {
        uint32_t ms = moat_elapsed(p->start_ms, moat_clock_ms());
        printf("done: device %s has the image (%lu bytes, sha256 %s); %lu blocks sent in "
               "%lu.%03lu s, %lu KB/s\n",
               p->id, (unsigned long)len, p->hex, p->blocks_sent, (unsigned long)(ms / 1000),
               (unsigned long)(ms % 1000),
               (unsigned long)(ms > 0 ? p->bytes_sent * 1000u / 1024u / ms : 0));
    }
    rc = CLI_OK;
out:
    op_close(&p->m);
    free(p->image);
    return rc;
}

int cli_ota_main(int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "push") == 0)
        return push_main(argc - 1, argv + 1);
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        fputs(usage, stdout);
        fputs(op_usage_conn, stdout);
        return CLI_OK;
    }
    cli_error("ota: the command is `moat ota push <id> <image>` (see moat ota push --help)");
    return CLI_USAGE;
}
