/*
 * test_tls.c - moat_tls against a real Mosquitto with a mutual-TLS listener.
 *
 * The test makes its own PKI at run time (gen-certs.sh), starts one private
 * mosquitto on free loopback ports with three TLS listeners (good EC
 * certificate, expired EC certificate, RSA certificate; all with
 * require_certificate and use_identity_as_username), and then checks:
 *   - a mutual-TLS connect and an MQTT CONNECT / SUBSCRIBE / PUBLISH round
 *     trip through moat_mqtt_pump over the TLS transport;
 *   - each refusal, with its exact words: unknown CA, expired broker
 *     certificate, wrong host name, no client certificate, key that does not
 *     match, clock not valid, our certificate refused by the broker;
 *   - that dates are judged by the caller's clock, not the OS clock;
 *   - session resumption on the second connect (resumed, and the broker sent
 *     no certificate: far fewer bytes);
 *   - maximum fragment length negotiation (the broker's records shrink);
 *   - a lower transport that says WOULD_BLOCK and moves bytes one at a time,
 *     and the WANT_WRITE rule: a blocked record is completed with the same
 *     length even when the retry offers more bytes.
 * The broker is killed by its pid at exit (and by PR_SET_PDEATHSIG should
 * the test crash). The work directory is removed unless a check failed.
 */
#include "moat/mqtt.h"
#include "moat/posix.h"
#include "moat/tls.h"

#include "../../src/tls/tls_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef GEN_CERTS
#error "GEN_CERTS must name tests/tls/gen-certs.sh"
#endif

/* ---------------------------------------------------------- harness -- */

static char g_dir[256];
static pid_t g_broker;
static bool g_failed;
static int g_checks;
static const char *g_case = "setup";

static void dump_broker_log(void);

static void fail_at(int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL [%s] test_tls.c:%d: ", g_case, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    g_failed = true;
    dump_broker_log();
    exit(1);
}

#define CHECK(cond, ...)                                                                    \
    do {                                                                                    \
        g_checks++;                                                                         \
        if (!(cond))                                                                        \
            fail_at(__LINE__, __VA_ARGS__);                                                 \
    } while (0)

#define CHECK_ERR(got, want_err, tls, want_msg)                                             \
    do {                                                                                    \
        moat_err got_ = (got);                                                              \
        const char *msg_ = moat_tls_last_error(tls);                                        \
        CHECK(got_ == (want_err), "error %d (%s), expected %d; words: %s", (int)got_,       \
              moat_strerror(got_), (int)(want_err), msg_);                                  \
        CHECK(strcmp(msg_, (want_msg)) == 0, "words \"%s\", expected \"%s\"", msg_,         \
              (want_msg));                                                                  \
    } while (0)

static void begin(const char *name)
{
    g_case = name;
    printf("-- %s\n", name);
    fflush(stdout);
}

static char *path_in(const char *file)
{
    static char bufs[16][320];
    static unsigned next;
    char *p = bufs[next++ % 16];
    snprintf(p, 320, "%s/%s", g_dir, file);
    return p;
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1024 + 1 > cap)
            buf = realloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, 1024, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void dump_broker_log(void)
{
    char *log = g_dir[0] != '\0' ? read_text(path_in("mosquitto.log"), NULL) : NULL;
    if (log != NULL) {
        fprintf(stderr, "---- mosquitto.log (%s) ----\n%s---- end ----\n", g_dir, log);
        free(log);
    }
}

static void stop_broker(void)
{
    if (g_broker > 0) {
        kill(g_broker, SIGTERM);
        waitpid(g_broker, NULL, 0);
        g_broker = 0;
    }
}

static void cleanup(void)
{
    stop_broker();
    if (g_dir[0] != '\0') {
        if (g_failed)
            fprintf(stderr, "keeping %s for inspection\n", g_dir);
        else
            nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

static uint16_t free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0,
          "cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_accepts(uint16_t port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Run argv, wait for it, fail the test unless it exits 0. */
static void run(char *const argv[])
{
    int st;
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "%s failed (status 0x%x)", argv[0], st);
}

/* ----------------------------------------------------------- broker -- */

enum { L_GOOD, L_EXPIRED, L_RSA, L_COUNT };
static uint16_t g_port[L_COUNT];

static void start_broker(void)
{
    static const char *certs[L_COUNT][2] = {
        { "broker.pem", "broker.key" },
        { "broker-expired.pem", "broker.key" },
        { "broker-rsa.pem", "broker-rsa.key" },
    };
    FILE *f = fopen(path_in("mosquitto.conf"), "w");
    CHECK(f != NULL, "cannot write mosquitto.conf: %s", strerror(errno));
    fprintf(f,
            "# written by tests/tls/test_tls.c\n"
            "user root\n"
            "persistence false\n"
            "allow_anonymous false\n"
            "log_dest file %s\n"
            "log_type all\n"
            "connection_messages true\n",
            path_in("mosquitto.log"));
    for (int i = 0; i < L_COUNT; i++) {
        g_port[i] = free_port();
        fprintf(f,
                "\nlistener %u 127.0.0.1\n"
                "cafile %s\n"
                "certfile %s\n"
                "keyfile %s\n"
                "require_certificate true\n"
                "use_identity_as_username true\n"
                "tls_version tlsv1.2\n",
                (unsigned)g_port[i], path_in("ca.pem"), path_in(certs[i][0]),
                path_in(certs[i][1]));
    }
    CHECK(fclose(f) == 0, "cannot write mosquitto.conf");

    const char *path = getenv("PATH");
    char newpath[4096];
    snprintf(newpath, sizeof(newpath), "%s:/usr/sbin:/sbin", path != NULL ? path : "/usr/bin:/bin");
    setenv("PATH", newpath, 1);

    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        FILE *out = freopen(path_in("mosquitto.out"), "w", stdout);
        if (out == NULL || dup2(fileno(stdout), 2) < 0)
            _exit(126);
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* dies with the test */
        const char *mq = getenv("MOAT_MOSQUITTO");
        execlp(mq != NULL && mq[0] != '\0' ? mq : "mosquitto", "mosquitto", "-c",
               path_in("mosquitto.conf"), (char *)NULL);
        _exit(127);
    }
    g_broker = pid;
    for (int waited = 0;; waited += 20) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            g_broker = 0;
            char *out = read_text(path_in("mosquitto.out"), NULL);
            fail_at(__LINE__, "mosquitto exited during startup (status 0x%x%s): %s", st,
                    WIFEXITED(st) && WEXITSTATUS(st) == 127 ? ", is mosquitto installed?" : "",
                    out != NULL ? out : "");
        }
        bool all = true;
        for (int i = 0; i < L_COUNT; i++)
            all = all && port_accepts(g_port[i]);
        if (all)
            break;
        CHECK(waited < 10000, "mosquitto did not listen within 10 s");
        sleep_ms(20);
    }
    printf("mosquitto pid %ld on 127.0.0.1 ports %u (good) %u (expired) %u (rsa), dir %s\n",
           (long)g_broker, g_port[L_GOOD], g_port[L_EXPIRED], g_port[L_RSA], g_dir);
}

static size_t log_count(const char *needle)
{
    char *log = read_text(path_in("mosquitto.log"), NULL);
    size_t n = 0;
    for (const char *p = log; p != NULL && (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(log);
    return n;
}

/* ------------------------------------------------ a spying transport -- */

/*
 * Sits between moat_tls and TCP. Counts bytes, parses the TLS record
 * headers the broker sends (to see its record sizes and whether it sent a
 * Certificate), and in chaos mode answers WOULD_BLOCK at random and moves
 * as little as one byte per call.
 */
typedef struct spy {
    moat_transport lower;
    size_t sent, received;
    uint8_t hdr[5];
    size_t hdr_have, body_left;
    size_t max_app_record;   /* largest application-data record received */
    bool chaos;
    uint32_t rng;
    bool block_send;         /* every send says WOULD_BLOCK */
    uint8_t first_out[96];   /* start of the stream each way: ClientHello, */
    uint8_t first_in[96];    /* ServerHello (both in the clear) */
    size_t first_out_len, first_in_len;
} spy;

static void keep_first(uint8_t *dst, size_t *have, const uint8_t *src, size_t n)
{
    size_t k = 96 - *have < n ? 96 - *have : n;
    memcpy(dst + *have, src, k);
    *have += k;
}

/* The session id in a ClientHello or ServerHello record: 5 bytes of record
 * header, 4 of handshake header, 2 of version, 32 of random, then length and
 * id. Returns its length, or -1 if the bytes are not that message. */
static int hello_session_id(const uint8_t *rec, size_t len, uint8_t type, const uint8_t **id)
{
    if (len < 44 || rec[0] != 22 || rec[5] != type || 44u + rec[43] > len || rec[43] > 32)
        return -1;
    *id = rec + 44;
    return rec[43];
}

/* RFC 5246 7.4.1.3 / RFC 5077 3.4: the server resumes a session by echoing
 * the (non-empty) session id of the ClientHello in its ServerHello. */
static bool wire_says_resumed(const spy *s)
{
    const uint8_t *cid, *sid;
    int clen = hello_session_id(s->first_out, s->first_out_len, 1, &cid);
    int slen = hello_session_id(s->first_in, s->first_in_len, 2, &sid);
    CHECK(clen >= 0 && slen >= 0, "could not parse the hellos (%d, %d)", clen, slen);
    return clen > 0 && clen == slen && memcmp(cid, sid, (size_t)clen) == 0;
}

static uint32_t spy_rand(spy *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 17;
    s->rng ^= s->rng << 5;
    return s->rng;
}

static long spy_send(void *ctx, const uint8_t *buf, size_t len)
{
    spy *s = ctx;
    if (s->block_send)
        return MOAT_ERR_WOULD_BLOCK;
    if (s->chaos) {
        if (spy_rand(s) % 3 == 0)
            return MOAT_ERR_WOULD_BLOCK;
        len = 1 + spy_rand(s) % (len < 64 ? len : 64);
    }
    long n = s->lower.send(s->lower.ctx, buf, len);
    if (n > 0) {
        s->sent += (size_t)n;
        keep_first(s->first_out, &s->first_out_len, buf, (size_t)n);
    }
    return n;
}

static void spy_parse(spy *s, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (s->body_left == 0) {
            s->hdr[s->hdr_have++] = *p++;
            n--;
            if (s->hdr_have == 5) {
                s->body_left = (size_t)s->hdr[3] << 8 | s->hdr[4];
                s->hdr_have = 0;
                if (s->hdr[0] == 23 && s->body_left > s->max_app_record)
                    s->max_app_record = s->body_left;
            }
        } else {
            size_t k = n < s->body_left ? n : s->body_left;
            s->body_left -= k;
            p += k;
            n -= k;
        }
    }
}

static long spy_recv(void *ctx, uint8_t *buf, size_t len)
{
    spy *s = ctx;
    if (s->chaos) {
        if (spy_rand(s) % 3 == 0)
            return MOAT_ERR_WOULD_BLOCK;
        len = 1 + spy_rand(s) % (len < 64 ? len : 64);
    }
    long n = s->lower.recv(s->lower.ctx, buf, len);
    if (n > 0) {
        s->received += (size_t)n;
        keep_first(s->first_in, &s->first_in_len, buf, (size_t)n);
        spy_parse(s, buf, (size_t)n);
    }
    return n;
}

/* ------------------------------------------------------ a connection -- */

typedef struct test_clock {
    bool fixed;
    int64_t value;
    int calls;
    int valid_calls;   /* > 0: only this many calls read a valid time, then 0 */
} test_clock;

static int64_t clock_fn(void *user)
{
    test_clock *c = user;
    c->calls++;
    if (c->valid_calls > 0 && c->calls > c->valid_calls)
        return 0;
    return c->fixed ? c->value : (int64_t)time(NULL);
}

typedef struct conn {
    moat_tls_config cfg;
    test_clock clock;
    moat_tls tls;
    bool tls_ready;
    moat_tcp tcp;
    spy spy;
    moat_transport tcp_t, spy_t, tls_t;

    moat_mqtt_config mcfg;
    moat_mqtt_client mqtt;
    uint8_t tx[8192], rx[8192], store[16384];
    moat_mqtt_inflight win[8];
    bool connected, subacked;
    int published, messages, disconnected;
    uint8_t last_msg[8192];
    size_t last_len;
    moat_err pump_err;
} conn;

/* Default settings: the good device credentials from files, the OS clock. */
static void conn_defaults(conn *c)
{
    memset(c, 0, sizeof(*c));
    c->cfg.ca.path = path_in("ca.pem");
    c->cfg.cert.path = path_in("device.pem");
    c->cfg.key.path = path_in("device.key");
    c->cfg.time_now = clock_fn;
    c->cfg.time_user = &c->clock;
    moat_tcp_init(&c->tcp);
}

static void set_clock(conn *c, int64_t t)
{
    c->clock.fixed = true;
    c->clock.value = t;
}

static moat_err conn_init(conn *c)
{
    moat_err e = moat_tls_init(&c->tls, &c->cfg);
    c->tls_ready = e == MOAT_OK;
    return e;
}

static void tcp_open(conn *c, uint16_t port)
{
    /* tls_mutual_readahead: the same over moat_tcp's read-ahead buffer */
    static uint8_t ra[2048];
    if (getenv("MOAT_TEST_READAHEAD") != NULL)
        moat_tcp_set_readahead(&c->tcp, ra, sizeof ra);
    moat_err e = moat_tcp_connect_start(&c->tcp, "127.0.0.1", port);
    uint32_t start = moat_clock_ms();
    while (e == MOAT_ERR_WOULD_BLOCK && moat_clock_ms() - start < 5000) {
        moat_wait_fd(c->tcp.fd, true, 100);
        e = moat_tcp_connect_poll(&c->tcp);
    }
    CHECK(e == MOAT_OK, "TCP connect to port %u: %s", port, moat_strerror(e));
    moat_tcp_transport(&c->tcp, &c->tcp_t);
    bool chaos = c->spy.chaos;
    memset(&c->spy, 0, sizeof(c->spy));
    c->spy.chaos = chaos;
    c->spy.rng = 0x2545F491u;
    c->spy.lower = c->tcp_t;
    c->spy_t.send = spy_send;
    c->spy_t.recv = spy_recv;
    c->spy_t.ctx = &c->spy;
}

/* TCP connect, then the whole handshake; returns its result. */
static moat_err tls_connect(conn *c, uint16_t port, const char *host)
{
    tcp_open(c, port);
    moat_err e = moat_tls_connect_start(&c->tls, &c->spy_t, host);
    uint32_t start = moat_clock_ms();
    while (e == MOAT_OK || e == MOAT_ERR_WOULD_BLOCK) {
        e = moat_tls_connect_step(&c->tls);
        if (e != MOAT_ERR_WOULD_BLOCK)
            break;
        CHECK(moat_clock_ms() - start < 10000, "handshake did not finish within 10 s");
        moat_wait_fd(c->tcp.fd, moat_tls_want_write(&c->tls), 100);
    }
    if (e == MOAT_OK)
        moat_tls_transport(&c->tls, &c->tls_t);
    return e;
}

static void link_close(conn *c)
{
    uint32_t start = moat_clock_ms();
    moat_err e;
    while ((e = moat_tls_close(&c->tls)) == MOAT_ERR_WOULD_BLOCK &&
           moat_clock_ms() - start < 5000)
        moat_wait_fd(c->tcp.fd, true, 100);
    CHECK(e == MOAT_OK || e == MOAT_ERR_CLOSED || e == MOAT_ERR_IO, "close_notify: %s",
          moat_tls_last_error(&c->tls));
    moat_tcp_close(&c->tcp);
}

static void conn_free(conn *c)
{
    moat_tcp_close(&c->tcp);
    if (c->tls_ready)
        moat_tls_free(&c->tls);
    c->tls_ready = false;
}

static void on_event(void *user, const moat_mqtt_event *ev)
{
    conn *c = user;
    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED: c->connected = true; break;
    case MOAT_MQTT_EV_DISCONNECTED: c->disconnected++; break;
    case MOAT_MQTT_EV_SUBACK: c->subacked = ev->err == MOAT_OK; break;
    case MOAT_MQTT_EV_PUBLISHED: c->published++; break;
    case MOAT_MQTT_EV_MESSAGE:
        if (ev->offset + ev->len <= sizeof(c->last_msg))
            memcpy(c->last_msg + ev->offset, ev->payload, ev->len);
        if (ev->offset + ev->len == ev->total) {
            c->messages++;
            c->last_len = ev->total;
        }
        break;
    default: break;
    }
}

/* Pump MQTT over TLS until *flag (an int or bool counter) reaches want. */
static bool pump_until(conn *c, const void *flag, bool is_bool, int want, uint32_t timeout_ms)
{
    uint32_t start = moat_clock_ms();
    for (;;) {
        int have = is_bool ? (int)*(const bool *)flag : *(const int *)flag;
        if (have >= want)
            return true;
        if (moat_clock_ms() - start > timeout_ms)
            return false;
        c->pump_err = moat_mqtt_pump(&c->mqtt, &c->tls_t, moat_clock_ms());
        if (c->pump_err != MOAT_OK)
            return false;
        if (!moat_tls_pending(&c->tls)) {
            size_t out;
            moat_mqtt_output(&c->mqtt, &out);
            moat_wait_fd(c->tcp.fd, out > 0, 20);
        }
    }
}

#define PUMP_BOOL(c, field, ms) pump_until((c), &(c)->field, true, 1, (ms))
#define PUMP_INT(c, field, n, ms) pump_until((c), &(c)->field, false, (n), (ms))

static const char *TOPIC = "moat/moat-dev-1/echo";

static void mqtt_up(conn *c)
{
    uint32_t now = moat_clock_ms();
    moat_mqtt_buffers b = { c->tx, sizeof(c->tx), c->rx, sizeof(c->rx),
                            c->store, sizeof(c->store), c->win, 8, NULL };
    c->mcfg.client_id = "moat-dev-1";
    c->mcfg.clean_session = true;
    c->mcfg.keepalive_s = 30;
    c->mcfg.random = moat_random32;
    c->mcfg.on_event = on_event;
    c->mcfg.user = c;
    c->connected = c->subacked = false;
    CHECK(moat_mqtt_init(&c->mqtt, &c->mcfg, &b) == MOAT_OK, "moat_mqtt_init");
    CHECK(moat_mqtt_start(&c->mqtt, now) == MOAT_OK, "moat_mqtt_start");
    CHECK(moat_mqtt_connect_due(&c->mqtt, now), "first attempt not due");
    CHECK(moat_mqtt_link_up(&c->mqtt, now) == MOAT_OK, "moat_mqtt_link_up");
    CHECK(PUMP_BOOL(c, connected, 10000), "no CONNACK over TLS: %s / %s",
          moat_strerror(c->pump_err), moat_tls_last_error(&c->tls));
}

/* SUBSCRIBE to our echo topic, PUBLISH len bytes at QoS 1, get them back. */
static void round_trip(conn *c, size_t len)
{
    static uint8_t payload[6000];
    moat_mqtt_sub sub = { TOPIC, 1 };
    int published = c->published, messages = c->messages;

    CHECK(len <= sizeof(payload), "payload too large");
    for (size_t i = 0; i < len; i++)
        payload[i] = (uint8_t)(i * 7 + len);
    if (!c->subacked) {
        CHECK(moat_mqtt_subscribe(&c->mqtt, &sub, 1, NULL, moat_clock_ms()) == MOAT_OK,
              "subscribe");
        CHECK(PUMP_BOOL(c, subacked, 10000), "no SUBACK: %s / %s", moat_strerror(c->pump_err),
              moat_tls_last_error(&c->tls));
    }
    moat_mqtt_message m = { TOPIC, payload, len, 1, false };
    CHECK(moat_mqtt_publish(&c->mqtt, &m, NULL, moat_clock_ms()) == MOAT_OK, "publish");
    CHECK(PUMP_INT(c, published, published + 1, 10000), "no PUBACK: %s / %s",
          moat_strerror(c->pump_err), moat_tls_last_error(&c->tls));
    CHECK(PUMP_INT(c, messages, messages + 1, 10000), "message not echoed: %s / %s",
          moat_strerror(c->pump_err), moat_tls_last_error(&c->tls));
    CHECK(c->last_len == len && memcmp(c->last_msg, payload, len) == 0,
          "echoed payload differs (%zu bytes, sent %zu)", c->last_len, len);
}

static void mqtt_down(conn *c)
{
    CHECK(moat_mqtt_disconnect(&c->mqtt, moat_clock_ms()) == MOAT_OK, "disconnect");
    uint32_t start = moat_clock_ms();
    moat_err e;
    while ((e = moat_mqtt_pump(&c->mqtt, &c->tls_t, moat_clock_ms())) == MOAT_OK &&
           moat_clock_ms() - start < 5000)
        moat_wait_fd(c->tcp.fd, true, 20);
    CHECK(e == MOAT_ERR_CLOSED, "DISCONNECT not flushed: %s", moat_strerror(e));
    link_close(c);
}

/* A connection that must fail in the handshake with err and exactly msg. */
static void expect_refusal(conn *c, uint16_t port, const char *host, moat_err err,
                           const char *msg)
{
    if (!c->tls_ready)
        CHECK(conn_init(c) == MOAT_OK, "init: %s", moat_tls_last_error(&c->tls));
    CHECK_ERR(tls_connect(c, port, host), err, &c->tls, msg);
    moat_tcp_close(&c->tcp);
}

/* ------------------------------------------------------------ cases -- */

/* 2024-03-01, 2025-01-15, 2035-06-01 at 00:00 UTC. */
#define T_2024_01_15 1705276800
#define T_2024_03_01 1709251200
#define T_2025_01_15 1736899200
#define T_2035_06_01 2064355200

static void case_helpers(void)
{
    char d[16];
    uint8_t ip[16];
    size_t n;
    static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
    static const uint8_t mapped[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1 };

    begin("helpers: dates and IP literals");
    moat_tls_format_date(0, d);
    CHECK(strcmp(d, "1970-01-01") == 0, "epoch is %s", d);
    moat_tls_format_date(1740268800, d);
    CHECK(strcmp(d, "2025-02-23") == 0, "1740268800 is %s", d);
    moat_tls_format_date(951782400, d); /* leap day */
    CHECK(strcmp(d, "2000-02-29") == 0, "951782400 is %s", d);
    moat_tls_format_date(-1, d);
    CHECK(strcmp(d, "1969-12-31") == 0, "-1 is %s", d);
    mbedtls_x509_time tm = { 2025, 2, 23, 0, 0, 0 };
    CHECK(moat_tls_x509_seconds(&tm) == 1740268800, "x509 time");
    CHECK(moat_tls_parse_ip("127.0.0.1", ip, &n) && n == 4 && ip[0] == 127 && ip[3] == 1, "v4");
    CHECK(moat_tls_parse_ip("2001:db8::1", ip, &n) && n == 16 && memcmp(ip, v6, 16) == 0, "v6");
    CHECK(moat_tls_parse_ip("::ffff:10.0.0.1", ip, &n) && n == 16 && memcmp(ip, mapped, 16) == 0,
          "v4-mapped v6");
    CHECK(moat_tls_parse_ip("::1", ip, &n) && n == 16 && ip[15] == 1, "::1");
    CHECK(moat_tls_parse_ip("fe80::1%eth0", ip, &n) && n == 16 && ip[0] == 0xfe, "zone id");
    CHECK(!moat_tls_parse_ip("localhost", ip, &n), "localhost is a name");
    CHECK(!moat_tls_parse_ip("256.0.0.1", ip, &n), "256.0.0.1");
    CHECK(!moat_tls_parse_ip("1.2.3", ip, &n), "1.2.3");
    CHECK(!moat_tls_parse_ip("1:2:3:4:5:6:7:8:9", ip, &n), "nine groups");
    CHECK(!moat_tls_parse_ip("1::2::3", ip, &n), "two gaps");
    CHECK(!moat_tls_parse_ip("12345::", ip, &n), "five digits");
    CHECK(!moat_tls_parse_ip("1:", ip, &n), "trailing colon");
    CHECK(!moat_tls_parse_ip("cafe.example", ip, &n), "hex-looking name");
}

static void case_init_errors(void)
{
    conn c;
    char want[600];
    static const char *password = "s3cret";

    begin("init: no client certificate");
    conn_defaults(&c);
    c.cfg.cert.path = NULL;
    CHECK_ERR(conn_init(&c), MOAT_ERR_CERT_NONE, &c.tls, "no client certificate configured");
    conn_free(&c);

    begin("init: no client key");
    conn_defaults(&c);
    c.cfg.key.path = NULL;
    CHECK_ERR(conn_init(&c), MOAT_ERR_CERT_NONE, &c.tls, "no client key configured");
    conn_free(&c);

    begin("init: key does not match certificate");
    conn_defaults(&c);
    c.cfg.key.path = path_in("other.key");
    snprintf(want, sizeof(want),
             "client key does not match client certificate (key '%s', certificate '%s')",
             path_in("other.key"), path_in("device.pem"));
    CHECK_ERR(conn_init(&c), MOAT_ERR_KEY_MISMATCH, &c.tls, want);
    conn_free(&c);

    begin("init: missing files name their path");
    conn_defaults(&c);
    c.cfg.cert.path = path_in("nope.pem");
    snprintf(want, sizeof(want), "cannot read client certificate '%s': No such file or directory",
             path_in("nope.pem"));
    CHECK_ERR(conn_init(&c), MOAT_ERR_FILE, &c.tls, want);
    conn_defaults(&c);
    c.cfg.ca.path = path_in("nope-ca.pem");
    snprintf(want, sizeof(want), "cannot read CA file '%s': No such file or directory",
             path_in("nope-ca.pem"));
    CHECK_ERR(conn_init(&c), MOAT_ERR_FILE, &c.tls, want);
    conn_defaults(&c);
    c.cfg.key.path = g_dir; /* a directory */
    c.cfg.cert.path = path_in("device.pem");
    CHECK(conn_init(&c) == MOAT_ERR_FILE && strstr(moat_tls_last_error(&c.tls), g_dir) != NULL,
          "directory as key: %s", moat_tls_last_error(&c.tls));

    begin("init: a key is not a certificate");
    conn_defaults(&c);
    c.cfg.cert.path = path_in("device.key");
    snprintf(want, sizeof(want), "client certificate '%s' is not a valid PEM or DER certificate",
             path_in("device.key"));
    CHECK(conn_init(&c) == MOAT_ERR_CERT_FORMAT &&
              strncmp(moat_tls_last_error(&c.tls), want, strlen(want)) == 0,
          "words: %s", moat_tls_last_error(&c.tls));

    begin("init: encrypted key");
    conn_defaults(&c);
    c.cfg.key.path = path_in("device-enc.key");
    snprintf(want, sizeof(want), "client key '%s' is encrypted and no password is set",
             path_in("device-enc.key"));
    CHECK_ERR(conn_init(&c), MOAT_ERR_CERT_FORMAT, &c.tls, want);
    c.cfg.key_password = "wrong";
    snprintf(want, sizeof(want), "wrong password for client key '%s'", path_in("device-enc.key"));
    CHECK_ERR(conn_init(&c), MOAT_ERR_CERT_FORMAT, &c.tls, want);
    c.cfg.key_password = password;
    CHECK(conn_init(&c) == MOAT_OK, "encrypted key with password: %s",
          moat_tls_last_error(&c.tls));
    conn_free(&c);

    begin("init: no clock, bad fragment length");
    conn_defaults(&c);
    c.cfg.time_now = NULL;
    CHECK_ERR(conn_init(&c), MOAT_ERR_ARG, &c.tls,
              "no clock configured (time_now): certificates cannot be checked");
    conn_defaults(&c);
    c.cfg.max_fragment_len = 1000;
    CHECK_ERR(conn_init(&c), MOAT_ERR_ARG, &c.tls,
              "max_fragment_len 1000 is not one of 512, 1024, 2048, 4096");
    moat_tls_free(&c.tls); /* safe after a failed init, and twice */
    moat_tls_free(&c.tls);
}

/* Credentials from memory: DER certificate and key, PEM CA without NUL. */
static void case_memory_credentials(void)
{
    conn c;
    size_t ca_len, cert_len, key_len;
    char *ca = read_text(path_in("ca.pem"), &ca_len);
    char *cert = read_text(path_in("device.der"), &cert_len);
    char *key = read_text(path_in("device.key.der"), &key_len);

    begin("memory credentials (PEM CA without NUL, DER certificate and key)");
    CHECK(ca != NULL && cert != NULL && key != NULL, "cannot read PKI files");
    conn_defaults(&c);
    c.cfg.ca = (moat_tls_source){ NULL, (const uint8_t *)ca, ca_len };
    c.cfg.cert = (moat_tls_source){ NULL, (const uint8_t *)cert, cert_len };
    c.cfg.key = (moat_tls_source){ NULL, (const uint8_t *)key, key_len };
    CHECK(conn_init(&c) == MOAT_OK, "init from memory: %s", moat_tls_last_error(&c.tls));
    CHECK(tls_connect(&c, g_port[L_GOOD], "localhost") == MOAT_OK, "handshake: %s",
          moat_tls_last_error(&c.tls));
    link_close(&c);
    conn_free(&c);

    conn_defaults(&c);
    c.cfg.cert = (moat_tls_source){ NULL, NULL, 0 };
    c.cfg.key = (moat_tls_source){ NULL, (const uint8_t *)key, key_len };
    CHECK_ERR(conn_init(&c), MOAT_ERR_CERT_NONE, &c.tls, "no client certificate configured");
    conn_defaults(&c);
    c.cfg.cert = (moat_tls_source){ NULL, (const uint8_t *)cert, cert_len };
    c.cfg.key.path = path_in("other.key");
    snprintf((char *)c.last_msg, sizeof(c.last_msg),
             "client key does not match client certificate (key '%s', certificate (in memory))",
             path_in("other.key"));
    CHECK_ERR(conn_init(&c), MOAT_ERR_KEY_MISMATCH, &c.tls, (char *)c.last_msg);
    free(ca);
    free(cert);
    free(key);
}

static void case_clock_not_valid(void)
{
    conn c;
    begin("clock not valid: nothing is checked, nothing is sent");
    conn_defaults(&c);
    set_clock(&c, 0);
    CHECK(conn_init(&c) == MOAT_OK, "init: %s", moat_tls_last_error(&c.tls));
    expect_refusal(&c, g_port[L_GOOD], "localhost", MOAT_ERR_CLOCK,
                   "clock is not valid (1970-01-01): certificates cannot be checked yet");
    CHECK(c.spy.sent == 0, "%zu bytes sent with an invalid clock", c.spy.sent);
    set_clock(&c, MOAT_TLS_CLOCK_VALID_FROM - 1);
    expect_refusal(&c, g_port[L_GOOD], "localhost", MOAT_ERR_CLOCK,
                   "clock is not valid (2023-12-31): certificates cannot be checked yet");
    /* The verify callback reads the clock again: a clock that was valid at
     * connect_start and is not any more is refused there, after the broker
     * sent its certificate, and nothing is judged. */
    c.clock.fixed = false;
    c.clock.calls = 0;
    c.clock.valid_calls = 1;
    expect_refusal(&c, g_port[L_GOOD], "localhost", MOAT_ERR_CLOCK,
                   "clock is not valid (1970-01-01): certificates cannot be checked yet");
    CHECK(c.clock.calls == 2 && c.spy.received > 500, "clock read %d times, %zu bytes received",
          c.clock.calls, c.spy.received);
    c.clock.valid_calls = 0;
    /* Our own certificate is judged by the same clock. */
    set_clock(&c, T_2024_01_15);
    expect_refusal(&c, g_port[L_GOOD], "localhost", MOAT_ERR_CERT_EXPIRED,
                   "client certificate is not valid yet (notBefore 2024-02-01)");
    conn_free(&c);
}

static void case_round_trip_and_resume(void)
{
    conn c;
    size_t full_bytes;
    char needle[64];

    begin("mutual TLS + MQTT round trip (EC broker, host localhost)");
    conn_defaults(&c);
    CHECK(conn_init(&c) == MOAT_OK, "init: %s", moat_tls_last_error(&c.tls));
    CHECK(tls_connect(&c, g_port[L_GOOD], "localhost") == MOAT_OK, "handshake: %s",
          moat_tls_last_error(&c.tls));
    CHECK(!moat_tls_resumed(&c.tls), "first handshake claims resumption");
    CHECK(!wire_says_resumed(&c.spy), "the broker echoed a session id on the first handshake");
    const char *suite = moat_tls_ciphersuite(&c.tls);
    printf("   cipher suite %s, first handshake received %zu bytes\n", suite, c.spy.received);
    CHECK(strncmp(suite, "TLS-ECDHE-ECDSA-WITH-", 21) == 0 &&
              (strstr(suite, "GCM") != NULL || strstr(suite, "CHACHA20-POLY1305") != NULL),
          "cipher suite %s is not ECDHE-ECDSA with AEAD", suite);
    full_bytes = c.spy.received;
    snprintf(needle, sizeof(needle), "u'moat-dev-1'");
    size_t before = log_count(needle);
    mqtt_up(&c);
    CHECK(log_count(needle) > before, "broker did not take the certificate CN as user name");
    round_trip(&c, 100);
    round_trip(&c, 5000);
    mqtt_down(&c);

    begin("session resumption on the second connect");
    CHECK(tls_connect(&c, g_port[L_GOOD], "localhost") == MOAT_OK, "second handshake: %s",
          moat_tls_last_error(&c.tls));
    printf("   resumed %d, second handshake received %zu bytes\n", moat_tls_resumed(&c.tls),
           c.spy.received);
    CHECK(moat_tls_resumed(&c.tls), "second handshake was not resumed");
    CHECK(wire_says_resumed(&c.spy), "the ServerHello did not echo our session id");
    printf("   resumed with a %s\n", c.tls.saved.ticket_len > 0 ? "session ticket" : "session id");
    CHECK(c.spy.received + 300 < full_bytes,
          "resumed handshake received %zu bytes, full one %zu: certificates were sent?",
          c.spy.received, full_bytes);
    mqtt_up(&c);
    round_trip(&c, 200);
    mqtt_down(&c);

    begin("resumption is per host: 127.0.0.1 gets a full handshake (IP SAN)");
    CHECK(tls_connect(&c, g_port[L_GOOD], "127.0.0.1") == MOAT_OK, "handshake: %s",
          moat_tls_last_error(&c.tls));
    CHECK(!moat_tls_resumed(&c.tls) && !wire_says_resumed(&c.spy),
          "resumed a session made for another host name");
    link_close(&c);

    begin("forget_session gives a full handshake");
    moat_tls_forget_session(&c.tls);
    CHECK(tls_connect(&c, g_port[L_GOOD], "127.0.0.1") == MOAT_OK, "handshake: %s",
          moat_tls_last_error(&c.tls));
    CHECK(!moat_tls_resumed(&c.tls) && !wire_says_resumed(&c.spy), "resumed a forgotten session");
    link_close(&c);
    conn_free(&c);
}

/* A parsed CA chain shared by sessions, a shared moat_tls_rng, the host of
 * a saved session remembered by digest, and the default generator in a
 * forked child. */
static void case_shared_ca_and_rng(void)
{
    static conn c, d;
    mbedtls_x509_crt chain, other, empty;
    moat_tls_rng rng;
    char why[200];
    unsigned char a[32], b[32];
    int fd[2];

    begin("a shared parsed CA chain and a shared generator serve two sessions");
    mbedtls_x509_crt_init(&chain);
    mbedtls_x509_crt_init(&other);
    mbedtls_x509_crt_init(&empty);
    CHECK(mbedtls_x509_crt_parse_file(&chain, path_in("ca.pem")) == 0, "parse ca.pem");
    CHECK(mbedtls_x509_crt_parse_file(&other, path_in("other-ca.pem")) == 0,
          "parse other-ca.pem");
    CHECK(moat_tls_rng_init(&rng, why, sizeof(why)) == MOAT_OK, "rng: %s", why);
    CHECK(moat_tls_rng_bytes(&rng, a, sizeof(a)) == 0 && moat_tls_rng_bytes(&rng, b, sizeof(b)) == 0 &&
              memcmp(a, b, sizeof(a)) != 0,
          "the generator repeats itself");
    conn_defaults(&c);
    conn_defaults(&d);
    c.cfg.ca = d.cfg.ca = (moat_tls_source){ 0 };
    c.cfg.ca_chain = d.cfg.ca_chain = &chain;
    c.cfg.rng = d.cfg.rng = moat_tls_rng_bytes;
    c.cfg.rng_ctx = d.cfg.rng_ctx = &rng;
    CHECK(conn_init(&c) == MOAT_OK && conn_init(&d) == MOAT_OK, "init: %s",
          moat_tls_last_error(&c.tls));
    CHECK(tls_connect(&c, g_port[L_GOOD], "LocalHost.") == MOAT_OK, "handshake: %s",
          moat_tls_last_error(&c.tls));
    CHECK(tls_connect(&d, g_port[L_GOOD], "localhost") == MOAT_OK, "second session: %s",
          moat_tls_last_error(&d.tls));
    link_close(&c);
    link_close(&d);

    begin("the saved session's host is matched without case: LOCALHOST resumes it");
    CHECK(tls_connect(&c, g_port[L_GOOD], "LOCALHOST") == MOAT_OK && moat_tls_resumed(&c.tls),
          "resumed: %d, %s", moat_tls_resumed(&c.tls), moat_tls_last_error(&c.tls));
    link_close(&c);
    CHECK(tls_connect(&c, g_port[L_GOOD], "127.0.0.1") == MOAT_OK && !moat_tls_resumed(&c.tls),
          "resumed a session made for another host name");
    link_close(&c);
    conn_free(&c);
    conn_free(&d);

    begin("a shared chain of another CA refuses the broker");
    conn_defaults(&c);
    c.cfg.ca = (moat_tls_source){ 0 };
    c.cfg.ca_chain = &other;
    CHECK(conn_init(&c) == MOAT_OK, "init: %s", moat_tls_last_error(&c.tls));
    expect_refusal(&c, g_port[L_GOOD], "localhost", MOAT_ERR_CERT_UNTRUSTED,
                   "broker certificate is not signed by the configured CA "
                   "(issuer 'CN=moat test CA')");
    conn_free(&c);

    begin("a CA file and a parsed chain at once, or an empty chain, are refused");
    conn_defaults(&c);
    c.cfg.ca_chain = &chain;
    CHECK_ERR(conn_init(&c), MOAT_ERR_ARG, &c.tls,
              "both a CA file and a parsed CA chain are configured: set one");
    conn_defaults(&c);
    c.cfg.ca = (moat_tls_source){ 0 };
    c.cfg.ca_chain = &empty;
    CHECK_ERR(conn_init(&c), MOAT_ERR_ARG, &c.tls,
              "the parsed CA chain is empty: the broker cannot be verified");

    begin("a forked child does not repeat its parent's random stream");
    CHECK(pipe(fd) == 0, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        ssize_t w = -1;
        if (moat_tls_rng_bytes(&rng, a, sizeof(a)) == 0)
            w = write(fd[1], a, sizeof(a));
        _exit(w == (ssize_t)sizeof(a) ? 0 : 1);
    }
    close(fd[1]);
    CHECK(read(fd[0], b, sizeof(b)) == (ssize_t)sizeof(b), "the child wrote no bytes");
    close(fd[0]);
    waitpid(pid, NULL, 0);
    CHECK(moat_tls_rng_bytes(&rng, a, sizeof(a)) == 0, "parent's bytes");
    CHECK(memcmp(a, b, sizeof(a)) != 0, "parent and child drew the same random bytes");

    moat_tls_rng_free(&rng);
    mbedtls_x509_crt_free(&chain);
    mbedtls_x509_crt_free(&other);
}

/* moat_tls_pending also asks the transport beneath (a read-ahead buffer
 * holds bytes the socket will not announce again). */
static bool g_lower_pending;
static bool lower_pending(void *ctx)
{
    (void)ctx;
    return g_lower_pending;
}

static void case_pending_asks_the_lower_transport(void)
{
    static conn c;
    moat_transport tt;
    moat_err e;
    uint32_t start;

    begin("moat_tls_pending asks the transport beneath");
    conn_defaults(&c);
    CHECK(conn_init(&c) == MOAT_OK, "init: %s", moat_tls_last_error(&c.tls));
    tcp_open(&c, g_port[L_GOOD]);
    c.spy_t.pending = lower_pending;
    g_lower_pending = true;
    CHECK(!moat_tls_pending(&c.tls), "pending before the handshake");
    e = moat_tls_connect_start(&c.tls, &c.spy_t, "localhost");
    start = moat_clock_ms();
    while (e == MOAT_OK || e == MOAT_ERR_WOULD_BLOCK) {
        e = moat_tls_connect_step(&c.tls);
        if (e != MOAT_ERR_WOULD_BLOCK)
            break;
        CHECK(moat_clock_ms() - start < 10000, "handshake did not finish within 10 s");
        moat_wait_fd(c.tcp.fd, moat_tls_want_write(&c.tls), 100);
    }
    CHECK(e == MOAT_OK, "handshake: %s", moat_tls_last_error(&c.tls));
    moat_tls_transport(&c.tls, &tt);
    g_lower_pending = false;
    CHECK(!moat_tls_pending(&c.tls) && !tt.pending(tt.ctx), "pending with nothing anywhere");
    g_lower_pending = true;
    CHECK(moat_tls_pending(&c.tls) && tt.pending(tt.ctx),
          "bytes held beneath TLS are not reported");
    g_lower_pending = false;
    link_close(&c);
    conn_free(&c);
}

static void case_refusals(void)
{
    conn c;

    begin("unknown CA");
    conn_defaults(&c);
    c.cfg.ca.path = path_in("other-ca.pem");
    expect_refusal(&c, g_port[L_GOOD], "localhost", MOAT_ERR_CERT_UNTRUSTED,
                   "broker certificate is not signed by the configured CA "
                   "(issuer 'CN=moat test CA')");
    conn_free(&c);

    begin("expired broker certificate (the OS clock agrees)");
    conn_defaults(&c);
    expect_refusal(&c, g_port[L_EXPIRED], "localhost", MOAT_ERR_CERT_EXPIRED,
                   "broker certificate has expired (notAfter 2025-02-23)");

    begin("wrong host name");
    expect_refusal(&c, g_port[L_GOOD], "mqtt.example.com", MOAT_ERR_CERT_HOST,
                   "broker certificate does not name host 'mqtt.example.com' "
                   "(it names localhost, 127.0.0.1, 0:0:0:0:0:0:0:1)");
    expect_refusal(&c, g_port[L_GOOD], "127.0.0.2", MOAT_ERR_CERT_HOST,
                   "broker certificate does not name host '127.0.0.2' "
                   "(it names localhost, 127.0.0.1, 0:0:0:0:0:0:0:1)");
    expect_refusal(&c, g_port[L_GOOD], "sub.localhost", MOAT_ERR_CERT_HOST,
                   "broker certificate does not name host 'sub.localhost' "
                   "(it names localhost, 127.0.0.1, 0:0:0:0:0:0:0:1)");
    /* The subject CN ("broker") is never used as a name. */
    expect_refusal(&c, g_port[L_GOOD], "broker", MOAT_ERR_CERT_HOST,
                   "broker certificate does not name host 'broker' "
                   "(it names localhost, 127.0.0.1, 0:0:0:0:0:0:0:1)");
    CHECK(tls_connect(&c, g_port[L_GOOD], "LOCALHOST.") == MOAT_OK,
          "names are case-insensitive, a final dot is fine: %s", moat_tls_last_error(&c.tls));
    link_close(&c);
    CHECK(tls_connect(&c, g_port[L_GOOD], "::1") == MOAT_OK, "IPv6 SAN: %s",
          moat_tls_last_error(&c.tls));
    link_close(&c);
    conn_free(&c);

    begin("the broker refuses our certificate");
    conn_defaults(&c);
    c.cfg.cert.path = path_in("rogue.pem");
    c.cfg.key.path = path_in("rogue.key");
    expect_refusal(&c, g_port[L_GOOD], "localhost", MOAT_ERR_CERT_REFUSED,
                   "the broker refused our certificate (alert: unknown_ca)");
    conn_free(&c);

    begin("peer_name changes the words");
    conn_defaults(&c);
    c.cfg.peer_name = "update server";
    expect_refusal(&c, g_port[L_EXPIRED], "localhost", MOAT_ERR_CERT_EXPIRED,
                   "update server certificate has expired (notAfter 2025-02-23)");
    conn_free(&c);
}

static void case_caller_clock(void)
{
    conn c;

    begin("dates follow the caller's clock, not the OS clock");
    conn_defaults(&c);
    set_clock(&c, T_2025_01_15); /* before the expired certificate's notAfter */
    CHECK(conn_init(&c) == MOAT_OK, "init: %s", moat_tls_last_error(&c.tls));
    CHECK(tls_connect(&c, g_port[L_EXPIRED], "localhost") == MOAT_OK,
          "certificate valid by the caller's clock was refused: %s",
          moat_tls_last_error(&c.tls));
    link_close(&c);
    moat_tls_forget_session(&c.tls);

    set_clock(&c, T_2035_06_01); /* the good certificate has expired by then */
    expect_refusal(&c, g_port[L_GOOD], "localhost", MOAT_ERR_CERT_EXPIRED,
                   "broker certificate has expired (notAfter 2035-01-01)");
    set_clock(&c, T_2024_03_01); /* ... and is not valid yet here */
    expect_refusal(&c, g_port[L_GOOD], "localhost", MOAT_ERR_CERT_EXPIRED,
                   "broker certificate is not valid yet (notBefore 2024-06-01)");

    begin("a saved session ages by the caller's clock (resume_max_age_s)");
    c.clock.fixed = false;
    CHECK(tls_connect(&c, g_port[L_GOOD], "localhost") == MOAT_OK, "handshake: %s",
          moat_tls_last_error(&c.tls));
    link_close(&c);
    set_clock(&c, T_2035_06_01);
    expect_refusal(&c, g_port[L_GOOD], "localhost", MOAT_ERR_CERT_EXPIRED,
                   "broker certificate has expired (notAfter 2035-01-01)");
    conn_free(&c);
}

static void case_rsa(void)
{
    conn c;
    begin("ECDHE-RSA broker");
    conn_defaults(&c);
    CHECK(conn_init(&c) == MOAT_OK, "init: %s", moat_tls_last_error(&c.tls));
    CHECK(tls_connect(&c, g_port[L_RSA], "localhost") == MOAT_OK, "handshake: %s",
          moat_tls_last_error(&c.tls));
    const char *suite = moat_tls_ciphersuite(&c.tls);
    CHECK(strncmp(suite, "TLS-ECDHE-RSA-WITH-", 19) == 0, "cipher suite %s", suite);
    mqtt_up(&c);
    round_trip(&c, 64);
    mqtt_down(&c);
    conn_free(&c);
}

static void case_fragment_length(void)
{
    conn c;

    begin("no MFLN: the broker sends big records (control)");
    conn_defaults(&c);
    CHECK(conn_init(&c) == MOAT_OK, "init: %s", moat_tls_last_error(&c.tls));
    CHECK(tls_connect(&c, g_port[L_GOOD], "localhost") == MOAT_OK, "handshake: %s",
          moat_tls_last_error(&c.tls));
    mqtt_up(&c);
    round_trip(&c, 5000);
    CHECK(c.spy.max_app_record > 4000, "largest record only %zu bytes", c.spy.max_app_record);
    mqtt_down(&c);
    conn_free(&c);

    begin("MFLN 1024: the broker's records shrink");
    conn_defaults(&c);
    c.cfg.max_fragment_len = 1024;
    CHECK(conn_init(&c) == MOAT_OK, "init: %s", moat_tls_last_error(&c.tls));
    CHECK(tls_connect(&c, g_port[L_GOOD], "localhost") == MOAT_OK, "handshake: %s",
          moat_tls_last_error(&c.tls));
    CHECK(moat_tls_max_fragment(&c.tls) <= 1024, "we send records of %zu",
          moat_tls_max_fragment(&c.tls));
    mqtt_up(&c);
    round_trip(&c, 5000);
    printf("   largest application record from the broker: %zu bytes\n", c.spy.max_app_record);
    CHECK(c.spy.max_app_record <= 1024 + 64, "broker sent a %zu-byte record",
          c.spy.max_app_record);
    mqtt_down(&c);
    CHECK(tls_connect(&c, g_port[L_GOOD], "localhost") == MOAT_OK && moat_tls_resumed(&c.tls),
          "resumption with MFLN: %s", moat_tls_last_error(&c.tls));
    link_close(&c);
    conn_free(&c);
}

static void case_would_block(void)
{
    conn c;
    uint8_t pkt[2][64];
    size_t len[2];
    uint8_t both[128];

    begin("lower transport: random WOULD_BLOCK, 1..64 bytes per call");
    conn_defaults(&c);
    c.spy.chaos = true;
    CHECK(conn_init(&c) == MOAT_OK, "init: %s", moat_tls_last_error(&c.tls));
    CHECK(tls_connect(&c, g_port[L_GOOD], "localhost") == MOAT_OK, "handshake: %s",
          moat_tls_last_error(&c.tls));
    mqtt_up(&c);
    round_trip(&c, 5000);
    round_trip(&c, 1);

    begin("WANT_WRITE: the blocked record is completed with its own length");
    for (int i = 0; i < 2; i++) {
        char body[32];
        snprintf(body, sizeof(body), "record %d", i);
        moat_mqtt_publish_pkt p = { { (const uint8_t *)TOPIC, (uint16_t)strlen(TOPIC) },
                                    0, 0, false, false, (const uint8_t *)body, strlen(body) };
        CHECK(moat_mqtt_encode_publish(pkt[i], sizeof(pkt[i]), &len[i], &p) == MOAT_OK,
              "encode");
    }
    memcpy(both, pkt[0], len[0]);
    memcpy(both + len[0], pkt[1], len[1]);
    c.spy.chaos = false;
    c.spy.block_send = true;
    long n = c.tls_t.send(c.tls_t.ctx, both, len[0]);
    CHECK(n == MOAT_ERR_WOULD_BLOCK, "blocked send returned %ld", n);
    CHECK(c.tls_t.send(c.tls_t.ctx, both, len[0] - 1) == MOAT_ERR_ARG,
          "a shorter retry was accepted");
    c.spy.block_send = false;
    n = c.tls_t.send(c.tls_t.ctx, both, len[0] + len[1]); /* more bytes offered */
    CHECK(n == (long)len[0], "retry moved %ld bytes, the pending record has %zu", n, len[0]);
    n = c.tls_t.send(c.tls_t.ctx, both + len[0], len[1]);
    CHECK(n == (long)len[1], "second record moved %ld of %zu", n, len[1]);
    int messages = c.messages;
    CHECK(PUMP_INT(&c, messages, messages + 2, 10000), "both records not echoed: %s",
          moat_tls_last_error(&c.tls));
    CHECK(c.last_len == 8 && memcmp(c.last_msg, "record 1", 8) == 0, "last echo differs");
    mqtt_down(&c);

    begin("resumption through the same transport");
    c.spy.chaos = true;
    CHECK(tls_connect(&c, g_port[L_GOOD], "localhost") == MOAT_OK && moat_tls_resumed(&c.tls),
          "resumed handshake: %s", moat_tls_last_error(&c.tls));
    link_close(&c);
    conn_free(&c);
}

static void case_broker_goes_away(void)
{
    conn c;
    begin("the broker closes the TCP connection mid-session");
    conn_defaults(&c);
    CHECK(conn_init(&c) == MOAT_OK, "init: %s", moat_tls_last_error(&c.tls));
    CHECK(tls_connect(&c, g_port[L_GOOD], "localhost") == MOAT_OK, "handshake: %s",
          moat_tls_last_error(&c.tls));
    /* A second client with the same id makes mosquitto drop the first. */
    conn d;
    conn_defaults(&d);
    CHECK(conn_init(&d) == MOAT_OK, "init: %s", moat_tls_last_error(&d.tls));
    mqtt_up(&c);
    CHECK(tls_connect(&d, g_port[L_GOOD], "localhost") == MOAT_OK, "handshake: %s",
          moat_tls_last_error(&d.tls));
    mqtt_up(&d);
    CHECK(PUMP_INT(&c, disconnected, 1, 10000) || c.pump_err != MOAT_OK,
          "first client not dropped");
    CHECK(c.pump_err == MOAT_ERR_CLOSED, "pump said %s (%s)", moat_strerror(c.pump_err),
          moat_tls_last_error(&c.tls));
    link_close(&c);
    mqtt_down(&d);
    conn_free(&c);
    conn_free(&d);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(g_dir, sizeof(g_dir), "%s/moat-tls-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    CHECK(mkdtemp(g_dir) != NULL, "mkdtemp: %s", strerror(errno));
    atexit(cleanup);
    signal(SIGPIPE, SIG_IGN);

    case_helpers();
    begin("generate certificates (openssl)");
    char *gen[] = { "sh", GEN_CERTS, g_dir, NULL };
    run(gen);
    case_init_errors();
    begin("start mosquitto");
    start_broker();
    case_clock_not_valid();
    case_memory_credentials();
    case_round_trip_and_resume();
    case_shared_ca_and_rng();
    case_pending_asks_the_lower_transport();
    case_refusals();
    case_caller_clock();
    case_rsa();
    case_fragment_length();
    case_would_block();
    case_broker_goes_away();
    printf("all %d checks passed\n", g_checks);
    return 0;
}
