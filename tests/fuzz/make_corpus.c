/*
 * make_corpus.c - writes the seed corpora of the fuzz harnesses.
 *
 *   fuzz_make_corpus DIR          write DIR/<harness>/<name> (DIR is usually
 *                                 tests/fuzz/corpus); run by hand, output kept
 *                                 in git
 *   fuzz_make_corpus --check DIR  compare DIR with what would be written;
 *                                 exit 1 if a seed is missing or differs
 *
 * Packets are built here byte by byte, independently of the codec under test,
 * from the MQTT 3.1.1 specification: valid packets of every type and a few
 * broken ones. Client seeds are scripts in the format of fuzz_mqtt_client.c;
 * topic seeds are the filter/topic pairs of the specification's examples.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct bytes {
    unsigned char b[4096];
    size_t n;
} bytes;

static const char *root;
static int check_only;
static int problems;
static int written;

static void put(bytes *o, const void *p, size_t n)
{
    if (n > sizeof(o->b) - o->n) {
        fprintf(stderr, "make_corpus: seed too large\n");
        exit(1);
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void u8(bytes *o, unsigned v)
{
    unsigned char c = (unsigned char)v;
    put(o, &c, 1);
}

static void u16(bytes *o, unsigned v)
{
    u8(o, v >> 8);
    u8(o, v & 0xFFu);
}

static void str(bytes *o, const char *s)
{
    u16(o, (unsigned)strlen(s));
    put(o, s, strlen(s));
}

static void fill(bytes *o, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        u8(o, (unsigned)('a' + i % 26));
}

/* A fixed header with a minimal remaining length, then the body. */
static void packet(bytes *out, unsigned first, const bytes *body)
{
    size_t rl = body->n;
    u8(out, first);
    do {
        unsigned b = (unsigned)(rl & 0x7Fu);
        rl >>= 7;
        u8(out, rl ? b | 0x80u : b);
    } while (rl);
    put(out, body->b, body->n);
}

static void mkdir_p(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_corpus: cannot create %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static void emit(const char *harness, const char *name, const bytes *o)
{
    char path[1024];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", root, harness);
    if (!check_only)
        mkdir_p(path);
    snprintf(path, sizeof(path), "%s/%s/%s", root, harness, name);
    if (check_only) {
        bytes have;
        fp = fopen(path, "rb");
        have.n = fp ? fread(have.b, 1, sizeof(have.b), fp) : 0;
        if (fp == NULL || have.n != o->n || memcmp(have.b, o->b, o->n) != 0) {
            fprintf(stderr, "make_corpus: %s is %s\n", path,
                    fp ? "out of date" : "missing");
            problems++;
        }
        if (fp)
            fclose(fp);
        return;
    }
    fp = fopen(path, "wb");
    if (fp == NULL || fwrite(o->b, 1, o->n, fp) != o->n || fclose(fp) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
        exit(1);
    }
    written++;
}

/* ---- packets ------------------------------------------------------------ */

enum { CONNECT = 1, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE,
       SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT };

static void connect_pkt(bytes *out, unsigned flags, const char *id, const char *will_topic,
                        const char *will_msg, const char *user, const char *pass,
                        unsigned keepalive)
{
    bytes b = {{0}, 0};
    str(&b, "MQTT");
    u8(&b, 4);
    u8(&b, flags);
    u16(&b, keepalive);
    str(&b, id);
    if (will_topic) {
        str(&b, will_topic);
        str(&b, will_msg);
    }
    if (user)
        str(&b, user);
    if (pass)
        str(&b, pass);
    packet(out, CONNECT << 4, &b);
}

static void connack(bytes *out, unsigned sp, unsigned rc)
{
    bytes b = {{0}, 0};
    u8(&b, sp);
    u8(&b, rc);
    packet(out, CONNACK << 4, &b);
}

/* flags: dup 8, qos << 1, retain 1 */
static void publish(bytes *out, unsigned flags, const char *topic, unsigned id,
                    size_t payload)
{
    bytes b = {{0}, 0};
    str(&b, topic);
    if (flags & 6u)
        u16(&b, id);
    fill(&b, payload);
    packet(out, (PUBLISH << 4) | flags, &b);
}

static void ack(bytes *out, unsigned type, unsigned id)
{
    bytes b = {{0}, 0};
    u16(&b, id);
    packet(out, (type << 4) | (type == PUBREL ? 2u : 0u), &b);
}

static void empty(bytes *out, unsigned type)
{
    bytes b = {{0}, 0};
    packet(out, type << 4, &b);
}

static void subscribe(bytes *out, unsigned id, const char *const *f, const unsigned *q,
                      size_t n)
{
    bytes b = {{0}, 0};
    size_t i;
    u16(&b, id);
    for (i = 0; i < n; i++) {
        str(&b, f[i]);
        if (q)
            u8(&b, q[i]);
    }
    packet(out, ((q ? SUBSCRIBE : UNSUBSCRIBE) << 4) | 2u, &b);
}

static void suback(bytes *out, unsigned id, const unsigned char *codes, size_t n)
{
    bytes b = {{0}, 0};
    u16(&b, id);
    put(&b, codes, n);
    packet(out, SUBACK << 4, &b);
}

static void raw(bytes *out, const char *hex)
{
    while (hex[0] && hex[1]) {
        unsigned v;
        if (hex[0] == ' ') {
            hex++;
            continue;
        }
        if (sscanf(hex, "%2x", &v) != 1) {
            fprintf(stderr, "make_corpus: bad hex %s\n", hex);
            exit(1);
        }
        u8(out, v);
        hex += 2;
    }
}

/* ---- fuzz_mqtt_decode: one or more packets per file --------------------- */

/* D(name, statements that append to o) */
#define D(name, ...)                                     \
    do {                                                 \
        bytes o_ = {{0}, 0};                             \
        bytes *o = &o_;                                  \
        __VA_ARGS__;                                     \
        emit("fuzz_mqtt_decode", name, o);               \
    } while (0)

static void decode_corpus(void)
{
    static const char *const filters[3] = {"moat/0123456789ab/cmd/#", "+/zones", "#"};
    static const unsigned qos[3] = {0, 1, 2};
    static const unsigned char codes[4] = {0, 1, 2, 0x80};

    D("connect-minimal", connect_pkt(o, 0x02, "c", NULL, NULL, NULL, NULL, 60));
    D("connect-empty-id", connect_pkt(o, 0x02, "", NULL, NULL, NULL, NULL, 0));
    D("connect-empty-id-persistent", connect_pkt(o, 0x00, "", NULL, NULL, NULL, NULL, 0));
    D("connect-full", connect_pkt(o, 0x02 | 0x04 | (1u << 3) | 0x20 | 0x40 | 0x80,
                                  "0123456789ab", "moat/0123456789ab/state", "offline",
                                  "0123456789ab", "secret", 30));
    D("connect-will-qos2", connect_pkt(o, 0x04 | (2u << 3), "dev", "w", "", NULL, NULL, 5));
    D("connect-user-only", connect_pkt(o, 0x82, "dev", NULL, NULL, "user", NULL, 65535));
    D("connack-accepted", connack(o, 0, 0));
    D("connack-session-present", connack(o, 1, 0));
    D("connack-refused-auth", connack(o, 0, 5));
    D("publish-qos0", publish(o, 0, "moat/0123456789ab/status", 0, 20));
    D("publish-qos1", publish(o, 2, "moat/0123456789ab/cmd/reboot", 1, 2));
    D("publish-qos2-dup-retain", publish(o, 8 | 4 | 1, "a/b", 65535, 5));
    D("publish-empty-payload", publish(o, 1, "moat/0123456789ab/state", 0, 0));
    D("publish-300", publish(o, 2, "moat/0123456789ab/cmd/ota", 7, 300));
    D("publish-utf8-topic", publish(o, 0, "caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x92\xa7", 0, 1));
    D("puback", ack(o, PUBACK, 1));
    D("pubrec", ack(o, PUBREC, 2));
    D("pubrel", ack(o, PUBREL, 3));
    D("pubcomp", ack(o, PUBCOMP, 4));
    D("unsuback", ack(o, UNSUBACK, 5));
    D("subscribe-3", subscribe(o, 10, filters, qos, 3));
    D("unsubscribe-2", subscribe(o, 11, filters, NULL, 2));
    D("suback-mixed", suback(o, 10, codes, 4));
    D("pingreq", empty(o, PINGREQ));
    D("pingresp", empty(o, PINGRESP));
    D("disconnect", empty(o, DISCONNECT));
    D("stream-session", {
        connect_pkt(o, 0x02, "c", NULL, NULL, NULL, NULL, 60);
        connack(o, 0, 0);
        subscribe(o, 1, filters, qos, 1);
        suback(o, 1, codes, 1);
        publish(o, 2, "moat/0123456789ab/cmd/x", 2, 3);
        ack(o, PUBACK, 2);
        publish(o, 4, "t", 3, 1);
        ack(o, PUBREC, 3);
        ack(o, PUBREL, 3);
        ack(o, PUBCOMP, 3);
        empty(o, PINGREQ);
        empty(o, PINGRESP);
        empty(o, DISCONNECT);
    });

    D("bad-remaining-5-bytes", raw(o, "30 ff ff ff ff 01"));
    D("bad-remaining-nonminimal", raw(o, "d0 80 00"));
    D("bad-type-0", raw(o, "00 00"));
    D("bad-type-15", raw(o, "f0 00"));
    D("bad-publish-qos3", raw(o, "36 05 00 01 61 00 01"));
    D("bad-publish-qos0-dup", raw(o, "38 03 00 01 61"));
    D("bad-publish-id-0", raw(o, "32 05 00 01 61 00 00"));
    D("bad-publish-wildcard", raw(o, "30 05 00 03 61 2f 23"));
    D("bad-publish-surrogate", raw(o, "30 05 00 03 ed a0 80"));
    D("bad-publish-nul", raw(o, "30 05 00 03 61 00 62"));
    D("bad-publish-empty-topic", raw(o, "30 02 00 00"));
    D("bad-publish-truncated", raw(o, "30 0a 00 03 61 2f 62"));
    D("bad-pubrel-flags", raw(o, "60 02 00 01"));
    D("bad-puback-id-0", raw(o, "40 02 00 00"));
    D("bad-puback-length", raw(o, "40 03 00 01 00"));
    D("bad-connect-name", raw(o, "10 0d 00 04 4d 51 54 54 05 02 00 3c 00 01 63"));
    D("bad-connect-reserved", raw(o, "10 0d 00 04 4d 51 54 54 04 03 00 3c 00 01 63"));
    D("bad-connect-password-only", raw(o, "10 10 00 04 4d 51 54 54 04 42 00 3c 00 01 63 00 01 70"));
    D("bad-connack-reserved", raw(o, "20 02 02 00"));
    D("bad-connack-session-refused", raw(o, "20 02 01 05"));
    D("bad-subscribe-empty", raw(o, "82 02 00 01"));
    D("bad-subscribe-qos3", raw(o, "82 06 00 01 00 01 61 03"));
    D("bad-subscribe-filter", raw(o, "82 08 00 01 00 03 23 2f 61 00"));
    D("bad-suback-code", raw(o, "90 03 00 01 03"));
    D("bad-pingresp-length", raw(o, "d0 01 00"));
    D("bad-then-good", {
        raw(o, "40 03 00 01 00");
        ack(o, PUBACK, 9);
    });
}

/* ---- fuzz_mqtt_client: scripts of operations ---------------------------- */

/* Config byte (fuzz_mqtt_client.c setup()). */
#define STREAM 0x01u
#define CLEAN 0x02u
#define WRAP 0x04u
#define KA1 0x08u  /* keep-alive 1 s */
#define KA60 0x18u /* keep-alive 60 s */

/* Operations. */
#define OP_FEED 0x00u
#define OP_SEND 0x02u
#define OP_DRAIN 0x03u
#define OP_TICK(shift) (0x04u | ((shift) << 4))
#define OP_PUBLISH 0x05u
#define OP_SUBSCRIBE 0x06u
#define OP_UNSUBSCRIBE 0x07u
#define OP_LINK_DOWN 0x08u
#define OP_DISCONNECT 0x09u
#define OP_RECONNECT 0x0Au
#define OP_PUMP 0x0Bu
#define OP_WAIT 0x0Cu
#define OP_ATTEMPT_FAILS 0x0Du
#define WINDOW1 0x80u /* config: max_inflight 1 */

/* Feed a packet in chunks of at most `chunk` bytes. */
static void feed(bytes *o, const bytes *pkt, size_t chunk)
{
    size_t at = 0;
    while (at < pkt->n) {
        size_t n = pkt->n - at < chunk ? pkt->n - at : chunk;
        u8(o, OP_FEED);
        u8(o, (unsigned)n);
        put(o, pkt->b + at, n);
        at += n;
    }
}

/* FEED(script, chunk, statements that build packets into o) */
#define FEED(script, chunk, ...)       \
    do {                               \
        bytes p_ = {{0}, 0};           \
        bytes *s_ = (script);          \
        {                              \
            bytes *o = &p_;            \
            __VA_ARGS__;               \
        }                              \
        feed(s_, &p_, chunk);          \
    } while (0)

/* C(name, config byte, statements that append operations to o) */
#define C(name, cfg, ...)                          \
    do {                                           \
        bytes o_ = {{0}, 0};                       \
        bytes *o = &o_;                            \
        u8(o, cfg);                                \
        __VA_ARGS__;                               \
        emit("fuzz_mqtt_client", name, o);         \
    } while (0)

/* publish op parameter: qos | topic index << 2 | retain << 5 | size shift << 6 */
static void client_corpus(void)
{
    C("rx-publish-qos0", CLEAN | KA60, {
        FEED(o, 255, publish(o, 0, "moat/0123456789ab/cmd/status", 0, 10));
        u8(o, OP_DRAIN);
    });
    C("rx-publish-qos1", CLEAN | KA60, {
        FEED(o, 255, publish(o, 2, "moat/0123456789ab/cmd/reboot", 1, 4));
        u8(o, OP_DRAIN);
    });
    C("rx-publish-qos2", KA60, {
        FEED(o, 255, publish(o, 4, "moat/0123456789ab/cmd/zone", 7, 6));
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBREL, 7));
        u8(o, OP_DRAIN);
    });
    C("rx-publish-bytewise", CLEAN, {
        FEED(o, 1, publish(o, 2, "moat/0123456789ab/cmd/x", 3, 8));
        u8(o, OP_DRAIN);
    });
    C("rx-two-in-one-chunk", CLEAN, {
        FEED(o, 255, {
            publish(o, 0, "a", 0, 3);
            publish(o, 2, "b", 2, 3);
            empty(o, PINGRESP);
        });
        u8(o, OP_DRAIN);
    });
    C("rx-large-stream", STREAM | CLEAN, {
        FEED(o, 100, publish(o, 2, "moat/0123456789ab/cmd/ota", 9, 300));
        u8(o, OP_DRAIN);
    });
    C("rx-large-refuse", CLEAN, {
        FEED(o, 100, publish(o, 2, "moat/0123456789ab/cmd/ota", 9, 300));
        u8(o, OP_DRAIN);
        FEED(o, 255, publish(o, 0, "moat/0123456789ab/cmd/after", 0, 3));
    });
    C("rx-large-stream-qos2", STREAM, {
        FEED(o, 250, publish(o, 4, "moat/0123456789ab/cmd/ota", 10, 1000));
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBREL, 10));
    });
    C("tx-publish-qos0", CLEAN, {
        u8(o, OP_PUBLISH); u8(o, 0x00); u8(o, 20);
        u8(o, OP_DRAIN);
    });
    C("tx-publish-qos1", CLEAN, {
        u8(o, OP_PUBLISH); u8(o, 0x01); u8(o, 10);
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBACK, 1));
    });
    C("tx-publish-qos2", CLEAN, {
        u8(o, OP_PUBLISH); u8(o, 0x02 | (2u << 2)); u8(o, 10);
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBREC, 1));
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBCOMP, 1));
    });
    C("tx-window-full", CLEAN, {
        int i;
        for (i = 0; i < 6; i++) {
            u8(o, OP_PUBLISH); u8(o, 0x01 | (3u << 2)); u8(o, 60);
        }
        u8(o, OP_SEND); u8(o, 100);
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBACK, 2));
        FEED(o, 255, ack(o, PUBACK, 1));
    });
    C("tx-too-large", CLEAN, {
        u8(o, OP_PUBLISH); u8(o, 0x01 | (2u << 6)); u8(o, 255);
        u8(o, OP_PUBLISH); u8(o, 0x00 | (1u << 6)); u8(o, 255);
        u8(o, OP_PUBLISH); u8(o, 0x03); u8(o, 1);
        u8(o, OP_PUBLISH); u8(o, 0x00 | (5u << 2)); u8(o, 1);
    });
    C("subscribe", CLEAN, {
        u8(o, OP_SUBSCRIBE); u8(o, 0x01 | (1u << 5));
        u8(o, OP_DRAIN);
        {
            static const unsigned char codes[2] = {1, 0x80};
            FEED(o, 255, suback(o, 1, codes, 2));
        }
        u8(o, OP_UNSUBSCRIBE); u8(o, 0x00);
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, UNSUBACK, 2));
    });
    C("subscribe-bad-filter", CLEAN, {
        u8(o, OP_SUBSCRIBE); u8(o, 4u << 2);
        u8(o, OP_SUBSCRIBE); u8(o, 0x03 | (6u << 2));
    });
    C("keepalive", CLEAN | KA1, {
        u8(o, OP_TICK(4)); u8(o, 70);  /* 1120 ms: PINGREQ due */
        u8(o, OP_DRAIN);
        FEED(o, 255, empty(o, PINGRESP));
        u8(o, OP_TICK(4)); u8(o, 70);
        u8(o, OP_DRAIN);
        u8(o, OP_WAIT);                /* no PINGRESP: the link is dead */
        u8(o, OP_WAIT);
        u8(o, OP_RECONNECT); u8(o, 1);
    });
    C("connack-timeout", CLEAN | WRAP, {
        u8(o, OP_LINK_DOWN); u8(o, 0);
        u8(o, OP_RECONNECT); u8(o, 0); /* no CONNACK this time */
        u8(o, OP_TICK(8)); u8(o, 50);  /* 12.8 s */
        u8(o, OP_RECONNECT); u8(o, 1);
    });
    C("connack-refused", CLEAN, {
        u8(o, OP_LINK_DOWN); u8(o, 1);
        u8(o, OP_RECONNECT); u8(o, 0);
        FEED(o, 255, connack(o, 0, 5));
        u8(o, OP_RECONNECT); u8(o, 1);
    });
    C("publish-before-connack", CLEAN, {
        u8(o, OP_LINK_DOWN); u8(o, 0);
        u8(o, OP_RECONNECT); u8(o, 0);
        FEED(o, 255, publish(o, 0, "a", 0, 1));
    });
    C("session-resend", KA60, {
        u8(o, OP_PUBLISH); u8(o, 0x01); u8(o, 10);
        u8(o, OP_PUBLISH); u8(o, 0x02); u8(o, 10);
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBREC, 2));
        u8(o, OP_LINK_DOWN); u8(o, 0);
        u8(o, OP_PUBLISH); u8(o, 0x01 | (1u << 2)); u8(o, 5);
        u8(o, OP_RECONNECT); u8(o, 3);  /* CONNACK with session present */
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBACK, 1));
        FEED(o, 255, ack(o, PUBCOMP, 2));
    });
    C("session-lost", KA60, {
        u8(o, OP_PUBLISH); u8(o, 0x01); u8(o, 10);
        u8(o, OP_DRAIN);
        u8(o, OP_LINK_DOWN); u8(o, 2);
        u8(o, OP_RECONNECT); u8(o, 1);  /* CONNACK without session */
        u8(o, OP_DRAIN);
    });
    C("attempt-fails", CLEAN, {
        u8(o, OP_LINK_DOWN); u8(o, 0);
        u8(o, OP_ATTEMPT_FAILS); u8(o, 3);
        u8(o, OP_ATTEMPT_FAILS); u8(o, 3);
        u8(o, OP_ATTEMPT_FAILS); u8(o, 0);
        u8(o, OP_PUBLISH); u8(o, 0x01); u8(o, 3);
        u8(o, OP_RECONNECT); u8(o, 1);
        u8(o, OP_DRAIN);
    });
    C("send-window", CLEAN | WINDOW1, {
        u8(o, OP_PUBLISH); u8(o, 0x01); u8(o, 10);
        u8(o, OP_PUBLISH); u8(o, 0x02); u8(o, 10);
        u8(o, OP_PUBLISH); u8(o, 0x01); u8(o, 10);
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBACK, 1));
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBREC, 2));
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBCOMP, 2));
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBACK, 3));
    });
    C("disconnect", CLEAN, {
        u8(o, OP_PUBLISH); u8(o, 0x00); u8(o, 3);
        u8(o, OP_DISCONNECT);
        u8(o, OP_PUBLISH); u8(o, 0x01); u8(o, 3);
        FEED(o, 255, publish(o, 2, "moat/0123456789ab/cmd/late", 4, 2));
        u8(o, OP_DRAIN);               /* DISCONNECT out: the link closes */
        u8(o, OP_RECONNECT); u8(o, 1);
        u8(o, OP_PUBLISH); u8(o, 0x01); u8(o, 3);
        u8(o, OP_DRAIN);
    });
    C("app-replies", CLEAN | 0x40u, {
        FEED(o, 255, publish(o, 2, "moat/0123456789ab/cmd/status", 1, 4));
        FEED(o, 255, publish(o, 0, "moat/0123456789ab/cmd/reboot", 0, 2));
        u8(o, OP_DRAIN);
        FEED(o, 255, ack(o, PUBACK, 1));
        FEED(o, 255, publish(o, 4, "moat/0123456789ab/cmd/bye", 2, 1));
        u8(o, OP_DRAIN);
    });
    C("pump", CLEAN | KA60, {
        /* mqtt_loop.c sends first, then reads; the fake transport takes one
         * byte per call: send 0 would block, 1 fails, 0xFF all, else that
         * many; recv 0 would block, 1 closed, 2 fails, else that many. */
        bytes p = {{0}, 0};
        ack(&p, PUBACK, 1);
        publish(&p, 2, "moat/0123456789ab/cmd/x", 5, 4);
        u8(o, OP_PUBLISH); u8(o, 0x01); u8(o, 10);
        u8(o, OP_PUMP);
        u8(o, 10);                     /* now += 10 ms */
        u8(o, 0xFF);                   /* send: the PUBLISH */
        u8(o, (unsigned)p.n);          /* recv: PUBACK and a QoS 1 PUBLISH */
        put(o, p.b, p.n);
        u8(o, 0);                      /* send PUBACK: would block */
        u8(o, 0);                      /* recv: would block */
        u8(o, 0xFF);                   /* send PUBACK again: all */
        u8(o, OP_PUMP);
        u8(o, 10);
        u8(o, 1);                      /* recv: closed */
        u8(o, OP_RECONNECT); u8(o, 1);
        u8(o, OP_PUBLISH); u8(o, 0x00); u8(o, 10);
        u8(o, OP_DISCONNECT);
        u8(o, OP_PUMP);
        u8(o, 10);
        u8(o, 3);                      /* send: 3 bytes */
        u8(o, 0xFF);                   /* send: the rest, DISCONNECT included */
        u8(o, 0);                      /* recv: would block */
    });
    C("malformed-then-more", CLEAN, {
        FEED(o, 255, raw(o, "40 03 00 01 00"));
        u8(o, OP_RECONNECT); u8(o, 1);
        FEED(o, 255, publish(o, 2, "moat/0123456789ab/cmd/x", 1, 1));
        u8(o, OP_DRAIN);
    });
    C("malformed-remaining", STREAM | CLEAN, {
        FEED(o, 255, raw(o, "30 ff ff ff ff 01"));
        FEED(o, 255, raw(o, "36 05 00 01 61 00 01"));
        FEED(o, 255, raw(o, "90 03 00 01 03"));
        FEED(o, 255, raw(o, "20 02 00 00"));
    });
}

/* ---- fuzz_mqtt_topic: byte 0 is the filter length, then filter, topic --- */

static void topic_seed(const char *name, const char *filter, size_t flen, const char *topic,
                       size_t tlen)
{
    bytes o = {{0}, 0};
    u8(&o, (unsigned)flen);
    put(&o, filter, flen);
    put(&o, topic, tlen);
    emit("fuzz_mqtt_topic", name, &o);
}

#define T(name, filter, topic) \
    topic_seed(name, filter, sizeof(filter) - 1, topic, sizeof(topic) - 1)

static void topic_corpus(void)
{
    /* MQTT 3.1.1 section 4.7 examples */
    T("hash-parent", "sport/tennis/player1/#", "sport/tennis/player1");
    T("hash-child", "sport/tennis/player1/#", "sport/tennis/player1/ranking");
    T("hash-grandchild", "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon");
    T("hash-top", "sport/#", "sport");
    T("plus-one", "sport/tennis/+", "sport/tennis/player1");
    T("plus-too-deep", "sport/tennis/+", "sport/tennis/player1/ranking");
    T("plus-missing-level", "sport/+", "sport");
    T("plus-empty-level", "sport/+", "sport/");
    T("plus-plus-leading-slash", "+/+", "/finance");
    T("slash-plus", "/+", "/finance");
    T("plus-vs-two-levels", "+", "/finance");
    T("hash-vs-dollar", "#", "$SYS/broker/uptime");
    T("plus-vs-dollar", "+/monitor/Clients", "$SYS/monitor/Clients");
    T("dollar-hash", "$SYS/#", "$SYS/broker/uptime");
    T("exact", "moat/0123456789ab/cmd/reboot", "moat/0123456789ab/cmd/reboot");
    T("mixed", "moat/+/cmd/#", "moat/0123456789ab/cmd/zone/3");
    T("bad-hash-inside", "sport/tennis/#/ranking", "sport/tennis/x/ranking");
    T("bad-hash-glued", "sport/tennis#", "sport/tennis");
    T("bad-plus-glued", "sport+", "sport");
    T("bad-wildcard-topic", "#", "sport/+");
    T("utf8-two-three-four", "caf\xc3\xa9/\xe2\x82\xac/+", "caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x92\xa7");
    T("utf8-max", "#", "\xf4\x8f\xbf\xbf");
    T("bad-utf8-above-max", "#", "\xf4\x90\x80\x80");
    T("bad-utf8-surrogate", "#", "a/\xed\xa0\x80");
    T("bad-utf8-overlong", "#", "\xc0\xaf");
    T("bad-utf8-overlong3", "#", "\xe0\x80\xaf");
    T("bad-utf8-truncated", "#", "a\xe2\x82");
    T("bad-nul", "#", "a\0b");
    T("empty-topic", "#", "");
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--check") == 0) {
        check_only = 1;
        root = argv[2];
    } else if (argc == 2) {
        root = argv[1];
        mkdir_p(root);
    } else {
        fprintf(stderr, "usage: %s [--check] corpus-dir\n", argv[0]);
        return 2;
    }
    decode_corpus();
    client_corpus();
    topic_corpus();
    if (check_only) {
        if (problems) {
            fprintf(stderr, "make_corpus: %d seeds differ; rerun fuzz_make_corpus %s\n",
                    problems, root);
            return 1;
        }
        printf("make_corpus: every seed in %s is up to date\n", root);
        return 0;
    }
    printf("make_corpus: wrote %d seeds under %s\n", written, root);
    return 0;
}
