/*
 * test_secure.c - the security acceptance of moat, end to end, with moat's
 * own client stack (moat_tls + the MQTT engine over moat_tcp) against a real
 * Mosquitto configured by `moat broker-config`.
 *
 * At run time, in its own mkdtemp directory, the test makes a PKI with
 * `moat pki` (CA, broker certificate for localhost/127.0.0.1, devices A, B
 * and C, operator "ops"; a broker certificate that expired on 2025-02-23; a
 * second, unrelated CA), writes two broker configs with `moat broker-config`
 * on free loopback ports, and starts two mosquitto processes with them (the
 * normal broker and one that presents the expired certificate). No key is
 * committed anywhere; nothing is configured by hand.
 *
 * Then it checks, with exact words from moat_tls_last_error():
 *   1. own topics: A subscribes to moat/A/cmd/#, publishes moat/A/status;
 *      the operator's command reaches A and A's status reaches the operator;
 *      the broker took each certificate CN as the user name;
 *   2. refusals: unknown CA, expired broker certificate, wrong host name,
 *      no client certificate (and a client certificate the broker does not
 *      know), revoked client certificate (moat pki revoke, CRL reloaded by
 *      SIGHUP), clock not valid;
 *   3. ACL: what A publishes on B's topics (or as a command to itself) and
 *      what A subscribes to of B's topics gets nothing through, while
 *      control messages sent in the same order do arrive.
 *
 * usage: test_secure /path/to/moat [/path/to/mosquitto]
 * The brokers are stopped by their pids at exit, and die with the test
 * (PR_SET_PDEATHSIG) should it crash. The directory is removed unless a
 * check failed (or MOAT_TEST_KEEP is set).
 */
#include "moat/mqtt.h"
#include "moat/posix.h"
#include "moat/tls.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------- harness -- */

#define DEV_A "a0b1c2d3e4f5"
#define DEV_B "b0b1c2d3e4f5"
#define DEV_C "c0b1c2d3e4f5"
#define OPS "ops"

/* 2020-01-01T00:00:00Z: a clock that has not been set yet. */
#define T_2020_01_01 1577836800

static const char *g_moat;
static const char *g_mosquitto = "mosquitto";
static char g_dir[256];
static bool g_failed;
static const char *g_case = "setup";
static int g_checks;
static uint64_t g_case_start;

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static char *path_in(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* A path under the work directory; up to 32 results stay valid at once. */
static char *path_in(const char *fmt, ...)
{
    static char bufs[32][400];
    static unsigned next;
    char *p = bufs[next++ % 32];
    int n = snprintf(p, sizeof(bufs[0]), "%s/", g_dir);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p + n, sizeof(bufs[0]) - (size_t)n, fmt, ap);
    va_end(ap);
    return p;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 8192, n = 0;
    char *buf;

    if (f == NULL)
        return NULL;
    buf = malloc(cap);
    for (;;) {
        if (buf == NULL)
            break;
        if (n + 4096 + 1 > cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    if (buf != NULL)
        buf[n] = '\0';
    return buf;
}

static size_t count_in_file(const char *path, const char *needle)
{
    char *text = read_text(path);
    size_t n = 0;
    for (const char *p = text; p != NULL && (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(text);
    return n;
}

/* ----------------------------------------------------------- brokers -- */

typedef struct broker {
    const char *name;     /* "main", "expired" */
    const char *host;     /* --host for broker-config */
    char out[400];        /* broker-config --out */
    char log[400];        /* mosquitto's stdout and stderr */
    uint16_t port;
    pid_t pid;
} broker;

static broker g_main = { "main", "localhost", "", "", 0, 0 };
static broker g_expired = { "expired", "expired", "", "", 0, 0 };

static void dump_file(const char *title, const char *path)
{
    char *text = read_text(path);
    if (text == NULL)
        return;
    size_t len = strlen(text);
    const char *tail = len > 6000 ? text + len - 6000 : text;
    fprintf(stderr, "---- %s (%s) ----\n%s---- end ----\n", title,
            tail == text ? "whole" : "last 6000 bytes", tail);
    free(text);
}

static void fail_at(int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3), noreturn))
#endif
    ;

static void fail_at(int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL [%s] test_secure.c:%d: ", g_case, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    g_failed = true;
    if (g_main.log[0] != '\0')
        dump_file("main broker log", g_main.log);
    if (g_expired.log[0] != '\0')
        dump_file("expired broker log", g_expired.log);
    exit(1);
}

#define CHECK(cond, ...)                                                                    \
    do {                                                                                    \
        g_checks++;                                                                         \
        if (!(cond))                                                                        \
            fail_at(__LINE__, __VA_ARGS__);                                                 \
    } while (0)

static void end_case(void)
{
    if (g_case_start != 0)
        printf("   (%llu ms)\n", (unsigned long long)(ms_now() - g_case_start));
}

static void begin(const char *name)
{
    end_case();
    g_case = name;
    g_case_start = ms_now();
    printf("-- %s\n", name);
    fflush(stdout);
}

static void stop_broker(broker *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        waitpid(b->pid, NULL, 0);
        b->pid = 0;
    }
}

static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char sub[1024];
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        if (d != NULL)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void cleanup(void)
{
    stop_broker(&g_main);
    stop_broker(&g_expired);
    if (g_dir[0] == '\0')
        return;
    if (g_failed || getenv("MOAT_TEST_KEEP") != NULL)
        fprintf(stderr, "keeping %s for inspection\n", g_dir);
    else
        remove_tree(g_dir);
}

static void on_alarm(int sig)
{
    static const char msg[] = "FAIL: test_secure did not finish within 110 s\n";
    (void)sig;
    if (write(2, msg, sizeof(msg) - 1) < 0)
        _exit(2);
    _exit(1); /* the brokers die with us (PR_SET_PDEATHSIG) */
}

/* Run `moat args...` (NULL-terminated); its output goes to moat.out. Fails
 * the test unless it exits 0. */
static void moat(const char *first, ...)
{
    const char *argv[32];
    size_t n = 0;
    va_list ap;
    int st;

    argv[n++] = g_moat;
    argv[n++] = first;
    va_start(ap, first);
    while (n < 31 && (argv[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;

    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(path_in("moat.out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        execv(g_moat, (char *const *)argv);
        _exit(127);
    }
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char cmd[1024];
        size_t used = 0;
        for (size_t i = 1; i < n && used < sizeof(cmd); i++)
            used += (size_t)snprintf(cmd + used, sizeof(cmd) - used, " %s", argv[i]);
        dump_file("moat output", path_in("moat.out"));
        fail_at(__LINE__, "`moat%s` failed (status 0x%x)", cmd, st);
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

/* `moat broker-config` for b on a fresh free port. */
static void write_broker_config(broker *b)
{
    char port[8];
    b->port = free_port();
    snprintf(port, sizeof(port), "%u", (unsigned)b->port);
    if (geteuid() == 0)
        /* Started as root, mosquitto would switch to the user mosquitto,
         * which cannot read this test's 0600 keys (PITFALLS). */
        moat("broker-config", "--dir", path_in("pki"), "--out", b->out, "--port", port,
             "--bind", "127.0.0.1", "--host", b->host, "--user", "root", (char *)NULL);
    else
        moat("broker-config", "--dir", path_in("pki"), "--out", b->out, "--port", port,
             "--bind", "127.0.0.1", "--host", b->host, (char *)NULL);
}

/* Start mosquitto with b's generated config, unchanged, and wait until it
 * says it is running. Another process may take the port between
 * free_port() and mosquitto's bind: then take another port and retry. */
static void start_broker(broker *b)
{
    snprintf(b->out, sizeof(b->out), "%s/broker-%s", g_dir, b->name);
    snprintf(b->log, sizeof(b->log), "%s/broker-%s.log", g_dir, b->name);
    for (int attempt = 1;; attempt++) {
        write_broker_config(b);
        pid_t parent = getpid();
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
            int fd = open(b->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
                _exit(126);
            prctl(PR_SET_PDEATHSIG, SIGTERM); /* dies with the test */
            if (getppid() != parent)
                _exit(125);
            char conf[480];
            snprintf(conf, sizeof(conf), "%s/mosquitto.conf", b->out);
            execlp(g_mosquitto, "mosquitto", "-c", conf, (char *)NULL);
            fprintf(stderr, "cannot run %s: %s\n", g_mosquitto, strerror(errno));
            _exit(127);
        }
        b->pid = pid;
        uint64_t start = ms_now();
        for (;;) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                b->pid = 0;
                if (attempt < 5 && count_in_file(b->log, "in use") > 0)
                    break; /* lost the port: retry */
                dump_file("mosquitto output", b->log);
                fail_at(__LINE__, "mosquitto (%s) exited during startup (status 0x%x)%s", b->name,
                        st,
                        WIFEXITED(st) && WEXITSTATUS(st) == 127 ? "; is mosquitto installed?"
                                                                : "");
            }
            if (count_in_file(b->log, " running") > 0) {
                printf("   mosquitto (%s) pid %ld on 127.0.0.1:%u, config %s/mosquitto.conf\n",
                       b->name, (long)pid, (unsigned)b->port, b->out);
                return;
            }
            CHECK(ms_now() - start < 10000, "mosquitto (%s) did not start within 10 s", b->name);
            sleep_ms(20);
        }
    }
}

/* ------------------------------------------------- clients (devices) -- */

typedef struct msg {
    char topic[128];
    char payload[128];
} msg;

/* One MQTT client over TLS over TCP: a device or the operator. */
typedef struct dev {
    const char *name;            /* client id and certificate CN */
    moat_tls_config tcfg;
    char ca[400], cert[400], key[400];
    moat_tls tls;
    bool tls_ready;
    moat_tcp tcp;
    moat_transport tcp_t, tls_t;

    moat_mqtt_config mcfg;
    moat_mqtt_client mqtt;
    uint8_t tx[4096], rx[4096], store[8192];
    moat_mqtt_inflight win[8];
    int connected, published, subacks, disconnected;
    uint8_t suback_codes[8];
    size_t suback_count;
    msg msgs[32];
    int n_msgs;
} dev;

static dev g_a, g_b, g_c, g_ops;
static dev *g_open[8]; /* clients with a TLS session up */
static size_t g_n_open;

static int64_t os_clock(void *user)
{
    (void)user;
    return (int64_t)time(NULL);
}

/* Credentials of `name` in PKI directory pki ("pki" or "otherpki"),
 * trusting the CA of ca_pki. */
static void dev_setup(dev *d, const char *name, const char *pki, const char *ca_pki)
{
    memset(d, 0, sizeof(*d));
    d->name = name;
    const char *kind = strcmp(name, OPS) == 0 ? "operators" : "devices";
    snprintf(d->ca, sizeof(d->ca), "%s", path_in("%s/ca.crt", ca_pki));
    snprintf(d->cert, sizeof(d->cert), "%s", path_in("%s/%s/%s.crt", pki, kind, name));
    snprintf(d->key, sizeof(d->key), "%s", path_in("%s/%s/%s.key", pki, kind, name));
    d->tcfg.ca.path = d->ca;
    d->tcfg.cert.path = d->cert;
    d->tcfg.key.path = d->key;
    d->tcfg.time_now = os_clock;
    moat_tcp_init(&d->tcp);
}

static moat_err dev_init_tls(dev *d)
{
    moat_err e = moat_tls_init(&d->tls, &d->tcfg);
    d->tls_ready = e == MOAT_OK;
    return e;
}

static void forget_open(dev *d)
{
    for (size_t i = 0; i < g_n_open; i++)
        if (g_open[i] == d) {
            g_open[i] = g_open[--g_n_open];
            break;
        }
}

static void dev_free(dev *d)
{
    forget_open(d);
    moat_tcp_close(&d->tcp);
    if (d->tls_ready)
        moat_tls_free(&d->tls);
    d->tls_ready = false;
}

/* TCP to 127.0.0.1:port, then the whole TLS handshake verifying `host`.
 * Returns the handshake's result; the socket stays open on MOAT_OK. */
static moat_err tls_connect(dev *d, uint16_t port, const char *host)
{
    if (!d->tls_ready)
        CHECK(dev_init_tls(d) == MOAT_OK, "%s: moat_tls_init: %s", d->name,
              moat_tls_last_error(&d->tls));
    moat_err e = moat_tcp_connect_start(&d->tcp, "127.0.0.1", port);
    uint64_t start = ms_now();
    while (e == MOAT_ERR_WOULD_BLOCK && ms_now() - start < 5000) {
        moat_wait_fd(d->tcp.fd, true, 100);
        e = moat_tcp_connect_poll(&d->tcp);
    }
    CHECK(e == MOAT_OK, "%s: TCP connect to 127.0.0.1:%u: %s", d->name, port, moat_strerror(e));
    moat_tcp_transport(&d->tcp, &d->tcp_t);
    e = moat_tls_connect_start(&d->tls, &d->tcp_t, host);
    start = ms_now();
    while (e == MOAT_OK || e == MOAT_ERR_WOULD_BLOCK) {
        e = moat_tls_connect_step(&d->tls);
        if (e != MOAT_ERR_WOULD_BLOCK)
            break;
        CHECK(ms_now() - start < 10000, "%s: TLS handshake did not finish within 10 s", d->name);
        moat_wait_fd(d->tcp.fd, moat_tls_want_write(&d->tls), 100);
    }
    if (e == MOAT_OK)
        moat_tls_transport(&d->tls, &d->tls_t);
    else
        moat_tcp_close(&d->tcp);
    return e;
}

static void on_event(void *user, const moat_mqtt_event *ev)
{
    dev *d = user;
    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED: d->connected++; break;
    case MOAT_MQTT_EV_DISCONNECTED: d->disconnected++; break;
    case MOAT_MQTT_EV_PUBLISHED: d->published++; break;
    case MOAT_MQTT_EV_SUBACK:
        d->suback_count = ev->count < sizeof(d->suback_codes) ? ev->count
                                                               : sizeof(d->suback_codes);
        memcpy(d->suback_codes, ev->codes, d->suback_count);
        d->subacks++;
        break;
    case MOAT_MQTT_EV_MESSAGE:
        CHECK(ev->offset == 0 && ev->len == ev->total, "%s: a message came in pieces", d->name);
        CHECK(d->n_msgs < (int)(sizeof(d->msgs) / sizeof(d->msgs[0])), "%s: too many messages",
              d->name);
        msg *m = &d->msgs[d->n_msgs++];
        snprintf(m->topic, sizeof(m->topic), "%.*s", (int)ev->topic.len,
                 (const char *)ev->topic.data);
        snprintf(m->payload, sizeof(m->payload), "%.*s", (int)ev->len,
                 (const char *)ev->payload);
        printf("   %s received %s \"%s\"\n", d->name, m->topic, m->payload);
        break;
    case MOAT_MQTT_EV_ERROR:
        fail_at(__LINE__, "%s: engine error event: %s", d->name, moat_strerror(ev->err));
    default: break;
    }
}

/*
 * Pump every open client, then wait for any socket (or 20 ms), until *v
 * reaches want or ms pass. v NULL: run the full time. Returns whether *v
 * reached want. A link that drops fails the test.
 */
static bool drive(const int *v, int want, uint32_t ms)
{
    uint64_t start = ms_now();
    for (;;) {
        if (v != NULL && *v >= want)
            return true;
        if (ms_now() - start >= ms)
            return v == NULL;
        struct pollfd pf[8];
        nfds_t n = 0;
        bool pending = false;
        for (size_t i = 0; i < g_n_open; i++) {
            dev *d = g_open[i];
            moat_err e = moat_mqtt_pump(&d->mqtt, &d->tls_t, moat_clock_ms());
            CHECK(e == MOAT_OK, "%s: link lost: %s (TLS: %s)", d->name, moat_strerror(e),
                  moat_tls_last_error(&d->tls));
            size_t out;
            moat_mqtt_output(&d->mqtt, &out);
            pending = pending || moat_tls_pending(&d->tls);
            pf[n].fd = d->tcp.fd;
            pf[n].events = (short)(POLLIN | (out > 0 ? POLLOUT : 0));
            pf[n].revents = 0;
            n++;
        }
        poll(pf, n, pending ? 0 : 20);
    }
}

/* TLS handshake, then MQTT CONNECT until CONNACK. */
static void dev_up(dev *d, uint16_t port, const char *host)
{
    moat_err e = tls_connect(d, port, host);
    CHECK(e == MOAT_OK, "%s: TLS handshake with %s: %s", d->name, host,
          moat_tls_last_error(&d->tls));
    moat_mqtt_buffers b = { d->tx, sizeof(d->tx), d->rx, sizeof(d->rx),
                            d->store, sizeof(d->store), d->win, 8, NULL };
    d->mcfg.client_id = d->name;
    d->mcfg.clean_session = true;
    d->mcfg.keepalive_s = 30;
    d->mcfg.random = moat_random32;
    d->mcfg.on_event = on_event;
    d->mcfg.user = d;
    uint32_t now = moat_clock_ms();
    CHECK(moat_mqtt_init(&d->mqtt, &d->mcfg, &b) == MOAT_OK, "%s: moat_mqtt_init", d->name);
    CHECK(moat_mqtt_start(&d->mqtt, now) == MOAT_OK, "%s: moat_mqtt_start", d->name);
    CHECK(moat_mqtt_link_up(&d->mqtt, now) == MOAT_OK, "%s: moat_mqtt_link_up", d->name);
    g_open[g_n_open++] = d; /* pumped by drive() from now on */
    CHECK(drive(&d->connected, 1, 10000), "%s: no CONNACK", d->name);
}

/* DISCONNECT, close_notify, close TCP. */
static void dev_down(dev *d)
{
    forget_open(d);
    CHECK(moat_mqtt_disconnect(&d->mqtt, moat_clock_ms()) == MOAT_OK, "%s: disconnect", d->name);
    uint64_t start = ms_now();
    moat_err e;
    while ((e = moat_mqtt_pump(&d->mqtt, &d->tls_t, moat_clock_ms())) == MOAT_OK &&
           ms_now() - start < 5000)
        moat_wait_fd(d->tcp.fd, true, 20);
    /* The engine went IDLE itself once DISCONNECT was out (moat_mqtt_pump). */
    CHECK(e == MOAT_ERR_CLOSED, "%s: DISCONNECT not flushed: %s", d->name, moat_strerror(e));
    CHECK(moat_mqtt_get_state(&d->mqtt) == MOAT_MQTT_IDLE, "%s: not IDLE after DISCONNECT",
          d->name);
    start = ms_now();
    while ((e = moat_tls_close(&d->tls)) == MOAT_ERR_WOULD_BLOCK && ms_now() - start < 5000)
        moat_wait_fd(d->tcp.fd, true, 100);
    moat_tcp_close(&d->tcp);
}

/* Subscribe to count filters at QoS 1 and wait for the SUBACK. */
static void dev_subscribe(dev *d, const char *const *filters, size_t count)
{
    moat_mqtt_sub subs[4];
    int subacks = d->subacks;
    for (size_t i = 0; i < count; i++) {
        subs[i].filter = filters[i];
        subs[i].qos = 1;
    }
    CHECK(moat_mqtt_subscribe(&d->mqtt, subs, count, NULL, moat_clock_ms()) == MOAT_OK,
          "%s: subscribe", d->name);
    CHECK(drive(&d->subacks, subacks + 1, 10000), "%s: no SUBACK", d->name);
    CHECK(d->suback_count == count, "%s: SUBACK has %zu codes for %zu filters", d->name,
          d->suback_count, count);
}

/* Publish at QoS 1 and wait for its PUBACK. */
static void dev_publish(dev *d, const char *topic, const char *payload)
{
    int published = d->published;
    moat_mqtt_message m = { topic, payload, strlen(payload), 1, false };
    CHECK(moat_mqtt_publish(&d->mqtt, &m, NULL, moat_clock_ms()) == MOAT_OK, "%s: publish %s",
          d->name, topic);
    CHECK(drive(&d->published, published + 1, 10000), "%s: no PUBACK for %s", d->name, topic);
}

static bool has_msg(const dev *d, int from, const char *topic, const char *payload)
{
    for (int i = from; i < d->n_msgs; i++)
        if (strcmp(d->msgs[i].topic, topic) == 0 && strcmp(d->msgs[i].payload, payload) == 0)
            return true;
    return false;
}

/* Wait until d has received topic/payload (after message index from). */
static void expect_msg(dev *d, int from, const char *topic, const char *payload)
{
    uint64_t start = ms_now();
    while (!has_msg(d, from, topic, payload)) {
        CHECK(ms_now() - start < 10000, "%s did not receive %s \"%s\" within 10 s", d->name,
              topic, payload);
        int n = d->n_msgs;
        drive(&d->n_msgs, n + 1, 200);
    }
}

/* Fail if d received anything after index from whose topic is not `allowed`
 * (NULL: nothing is allowed). */
static void expect_only(const dev *d, int from, const char *allowed, const char *what)
{
    for (int i = from; i < d->n_msgs; i++)
        CHECK(allowed != NULL && strcmp(d->msgs[i].topic, allowed) == 0,
              "%s: %s received %s \"%s\"", what, d->name, d->msgs[i].topic, d->msgs[i].payload);
}

/* A handshake that must fail with err and exactly the words want. */
static void expect_refused(dev *d, uint16_t port, const char *host, moat_err err,
                           const char *want)
{
    moat_err e = tls_connect(d, port, host);
    const char *words = moat_tls_last_error(&d->tls);
    printf("   refused: %s\n", words);
    CHECK(e == err, "%s: error %d (%s), expected %d (%s); words: %s", d->name, (int)e,
          moat_strerror(e), (int)err, moat_strerror(err), words);
    CHECK(strcmp(words, want) == 0, "%s: words \"%s\", expected \"%s\"", d->name, words, want);
}

/* A lower transport that counts its calls and moves nothing. */
static int g_null_calls;

static long null_io(void *ctx, const uint8_t *buf, size_t len)
{
    (void)ctx;
    (void)buf;
    (void)len;
    g_null_calls++;
    return MOAT_ERR_IO;
}

static long null_recv(void *ctx, uint8_t *buf, size_t len)
{
    return null_io(ctx, buf, len);
}

static int64_t clock_2020(void *user)
{
    (void)user;
    return T_2020_01_01;
}

/* ------------------------------------------------------------- setup -- */

static void make_pki(void)
{
    char *P = path_in("pki"), *O = path_in("otherpki");
    begin("setup: PKI with moat pki, brokers with moat broker-config");
    moat("pki", "init", "--dir", P, (char *)NULL);
    moat("pki", "server", "localhost", "--ip", "127.0.0.1", "--dir", P, (char *)NULL);
    /* The broker certificate of the second broker, expired since 2025-02-23. */
    moat("pki", "server", "expired", "--ip", "127.0.0.1", "--not-before", "20250101000000",
         "--not-after", "20250223000000", "--dir", P, (char *)NULL);
    moat("pki", "device", DEV_A, "--dir", P, (char *)NULL);
    moat("pki", "device", DEV_B, "--dir", P, (char *)NULL);
    moat("pki", "device", DEV_C, "--dir", P, (char *)NULL);
    moat("pki", "operator", OPS, "--dir", P, (char *)NULL);
    /* Another fleet: its CA, and a device of its own named like A. */
    moat("pki", "init", "--dir", O, "--cn", "other CA", (char *)NULL);
    moat("pki", "device", DEV_A, "--dir", O, (char *)NULL);
    start_broker(&g_main);
    start_broker(&g_expired);
}

/* -------------------------------------------------------------- cases -- */

static void case_own_topics(void)
{
    static const char *ops_filters[] = { "moat/" DEV_A "/#", "moat/" DEV_B "/#" };
    static const char *a_filters[] = { "moat/" DEV_A "/cmd/#" };
    static const char *b_filters[] = { "moat/" DEV_B "/cmd/#" };

    begin("1. a device uses its own topics with its own certificate");
    dev_setup(&g_ops, OPS, "pki", "pki");
    dev_setup(&g_a, DEV_A, "pki", "pki");
    dev_setup(&g_b, DEV_B, "pki", "pki");
    dev_up(&g_ops, g_main.port, "localhost");
    dev_subscribe(&g_ops, ops_filters, 2);
    CHECK(g_ops.suback_codes[0] == 1 && g_ops.suback_codes[1] == 1,
          "operator's SUBACK codes %u %u", g_ops.suback_codes[0], g_ops.suback_codes[1]);
    dev_up(&g_a, g_main.port, "localhost");
    printf("   %s: cipher suite %s\n", DEV_A, moat_tls_ciphersuite(&g_a.tls));
    dev_subscribe(&g_a, a_filters, 1);
    CHECK(g_a.suback_codes[0] == 1, "A's SUBACK code %u", g_a.suback_codes[0]);
    dev_up(&g_b, g_main.port, "127.0.0.1"); /* the IP SAN works too */
    dev_subscribe(&g_b, b_filters, 1);
    CHECK(g_b.suback_codes[0] == 1, "B's SUBACK code %u", g_b.suback_codes[0]);

    char line[160];
    snprintf(line, sizeof(line), "u'%s')", DEV_A);
    CHECK(count_in_file(g_main.log, line) == 1, "the broker log lacks %s: the certificate CN "
          "was not taken as the user name", line);
    snprintf(line, sizeof(line), "u'%s')", OPS);
    CHECK(count_in_file(g_main.log, line) == 1, "the broker log lacks %s", line);

    int ops0 = g_ops.n_msgs, a0 = g_a.n_msgs;
    dev_publish(&g_a, "moat/" DEV_A "/status", "{\"up\":1}");
    expect_msg(&g_ops, ops0, "moat/" DEV_A "/status", "{\"up\":1}");
    dev_publish(&g_ops, "moat/" DEV_A "/cmd/x", "go");
    expect_msg(&g_a, a0, "moat/" DEV_A "/cmd/x", "go");
    /* The operator's subscription moat/A/# sees its own command too. */
    expect_msg(&g_ops, ops0, "moat/" DEV_A "/cmd/x", "go");
    CHECK(g_a.n_msgs == a0 + 1, "A received %d messages, expected 1", g_a.n_msgs - a0);
}

static void case_acl(void)
{
    static const char *spy_filters[] = { "moat/" DEV_B "/#", "moat/+/cmd/#", "#" };

    begin("3a. ACL: A publishes on B's topics and on its own cmd topic: nothing gets through");
    int ops0 = g_ops.n_msgs, a0 = g_a.n_msgs, b0 = g_b.n_msgs;
    /* Mosquitto acknowledges a denied QoS 1 PUBLISH and drops it (MQTT 3.1.1
     * has no way to say no), so each of these gets its PUBACK. */
    dev_publish(&g_a, "moat/" DEV_B "/cmd/x", "forged command");
    dev_publish(&g_a, "moat/" DEV_B "/status", "forged status");
    dev_publish(&g_a, "moat/" DEV_A "/cmd/x", "self command");
    /* The control, sent last on the same connection: the broker handles one
     * client's packets in order, so once it arrives the forged ones would
     * have arrived before it. */
    dev_publish(&g_a, "moat/" DEV_A "/status", "control");
    expect_msg(&g_ops, ops0, "moat/" DEV_A "/status", "control");
    drive(NULL, 0, 1500);
    expect_only(&g_ops, ops0, "moat/" DEV_A "/status", "forged publish reached the operator");
    CHECK(g_ops.n_msgs == ops0 + 1, "operator received %d messages", g_ops.n_msgs - ops0);
    expect_only(&g_b, b0, NULL, "forged command reached B");
    expect_only(&g_a, a0, NULL, "A's command to itself was delivered");

    begin("3b. ACL: A subscribes to B's topics: nothing gets through");
    dev_subscribe(&g_a, spy_filters, 3);
    printf("   SUBACK codes for moat/%s/#, moat/+/cmd/#, #: %u %u %u\n", DEV_B,
           g_a.suback_codes[0], g_a.suback_codes[1], g_a.suback_codes[2]);
    for (size_t i = 0; i < 3; i++)
        CHECK(g_a.suback_codes[i] <= 1 || g_a.suback_codes[i] == MOAT_MQTT_SUBACK_FAILURE,
              "SUBACK code %u for %s", g_a.suback_codes[i], spy_filters[i]);
    a0 = g_a.n_msgs;
    b0 = g_b.n_msgs;
    ops0 = g_ops.n_msgs;
    dev_publish(&g_ops, "moat/" DEV_B "/cmd/y", "secret command");
    dev_publish(&g_b, "moat/" DEV_B "/status", "secret status");
    /* Controls: B gets its command; A gets a command of its own, sent after
     * B's by the same operator. */
    dev_publish(&g_ops, "moat/" DEV_A "/cmd/z", "control");
    expect_msg(&g_b, b0, "moat/" DEV_B "/cmd/y", "secret command");
    expect_msg(&g_ops, ops0, "moat/" DEV_B "/status", "secret status");
    expect_msg(&g_a, a0, "moat/" DEV_A "/cmd/z", "control");
    drive(NULL, 0, 1500);
    expect_only(&g_a, a0, "moat/" DEV_A "/cmd/z", "A read B's topics");
}

static void case_refusals(void)
{
    char want[300];
    dev d;

    begin("2a. unknown CA (the client trusts another fleet's CA)");
    dev_setup(&d, DEV_A, "pki", "otherpki");
    expect_refused(&d, g_main.port, "localhost", MOAT_ERR_CERT_UNTRUSTED,
                   "broker certificate is not signed by the configured CA (issuer 'CN=moat CA')");
    dev_free(&d);

    begin("2b. expired broker certificate");
    dev_setup(&d, DEV_A, "pki", "pki");
    expect_refused(&d, g_expired.port, "127.0.0.1", MOAT_ERR_CERT_EXPIRED,
                   "broker certificate has expired (notAfter 2025-02-23)");

    begin("2c. wrong host name (TCP to 127.0.0.1, name moat.invalid)");
    expect_refused(&d, g_main.port, "moat.invalid", MOAT_ERR_CERT_HOST,
                   "broker certificate does not name host 'moat.invalid' "
                   "(it names localhost, 127.0.0.1)");
    /* An address the certificate does not hold, over the same TCP path. */
    expect_refused(&d, g_main.port, "127.0.0.2", MOAT_ERR_CERT_HOST,
                   "broker certificate does not name host '127.0.0.2' "
                   "(it names localhost, 127.0.0.1)");
    dev_free(&d);

    begin("2d. no client certificate");
    dev_setup(&d, DEV_A, "pki", "pki");
    d.tcfg.cert.path = NULL;
    d.tcfg.key.path = NULL;
    moat_err e = dev_init_tls(&d);
    printf("   refused: %s\n", moat_tls_last_error(&d.tls));
    CHECK(e == MOAT_ERR_CERT_NONE, "init without certificate: %s", moat_strerror(e));
    CHECK(strcmp(moat_tls_last_error(&d.tls), "no client certificate configured") == 0,
          "words \"%s\"", moat_tls_last_error(&d.tls));
    dev_free(&d);
    dev_setup(&d, DEV_A, "pki", "pki");
    d.tcfg.key.path = NULL;
    e = dev_init_tls(&d);
    printf("   refused: %s\n", moat_tls_last_error(&d.tls));
    CHECK(e == MOAT_ERR_CERT_NONE && strcmp(moat_tls_last_error(&d.tls),
                                            "no client key configured") == 0,
          "init without key: %s / \"%s\"", moat_strerror(e), moat_tls_last_error(&d.tls));
    dev_free(&d);
    /* The broker's side: a certificate it does not know (another CA's). */
    dev_setup(&d, DEV_A, "otherpki", "pki");
    expect_refused(&d, g_main.port, "localhost", MOAT_ERR_CERT_REFUSED,
                   "the broker refused our certificate (alert: unknown_ca)");
    dev_free(&d);

    begin("2e. clock not valid (2020-01-01): refused before a byte is sent");
    dev_setup(&d, DEV_A, "pki", "pki");
    d.tcfg.time_now = clock_2020;
    CHECK(dev_init_tls(&d) == MOAT_OK, "init: %s", moat_tls_last_error(&d.tls));
    moat_transport none = { null_io, null_recv, NULL, NULL };
    g_null_calls = 0;
    e = moat_tls_connect_start(&d.tls, &none, "localhost");
    printf("   refused: %s\n", moat_tls_last_error(&d.tls));
    CHECK(e == MOAT_ERR_CLOCK, "connect_start with a 2020 clock: %s", moat_strerror(e));
    snprintf(want, sizeof(want),
             "clock is not valid (2020-01-01): certificates cannot be checked yet");
    CHECK(strcmp(moat_tls_last_error(&d.tls), want) == 0, "words \"%s\", expected \"%s\"",
          moat_tls_last_error(&d.tls), want);
    CHECK(g_null_calls == 0, "%d calls to the lower transport", g_null_calls);
    CHECK(moat_tls_connect_step(&d.tls) != MOAT_OK, "a handshake went on after the refusal");
    CHECK(g_null_calls == 0, "%d calls to the lower transport", g_null_calls);
    dev_free(&d);
}

/* Connect C (fresh TLS state) until refused or 5 s; returns the refusal. */
static moat_err connect_fresh(dev *c, int *attempts)
{
    uint64_t start = ms_now();
    for (*attempts = 1;; (*attempts)++) {
        if (*attempts > 1)
            dev_free(c);
        dev_setup(c, DEV_C, "pki", "pki");
        moat_err e = tls_connect(c, g_main.port, "localhost");
        if (e != MOAT_OK || ms_now() - start > 5000)
            return e;
        moat_tcp_close(&c->tcp);
        sleep_ms(100);
    }
}

static void case_revoked(void)
{
    dev resumer;

    begin("2f. revoked client certificate (moat pki revoke, CRL reloaded by SIGHUP)");
    /* Before: C connects, subscribes and is a device like any other. It keeps
     * its TLS state (resumer), as a running device would. */
    dev_setup(&resumer, DEV_C, "pki", "pki");
    dev_up(&resumer, g_main.port, "localhost");
    dev_down(&resumer);
    /* ... and the broker resumes its session: the check after the
     * revocation below is not vacuous. */
    CHECK(tls_connect(&resumer, g_main.port, "localhost") == MOAT_OK &&
              moat_tls_resumed(&resumer.tls),
          "C's second connect before revocation: %s, resumed %d",
          moat_tls_last_error(&resumer.tls), (int)moat_tls_resumed(&resumer.tls));
    while (moat_tls_close(&resumer.tls) == MOAT_ERR_WOULD_BLOCK)
        moat_wait_fd(resumer.tcp.fd, true, 100);
    moat_tcp_close(&resumer.tcp);

    size_t reloads = count_in_file(g_main.log, "Reloading config");
    moat("pki", "revoke", DEV_C, "--dir", path_in("pki"), (char *)NULL);
    CHECK(kill(g_main.pid, SIGHUP) == 0, "SIGHUP: %s", strerror(errno));
    uint64_t start = ms_now();
    while (count_in_file(g_main.log, "Reloading config") == reloads) {
        CHECK(ms_now() - start < 5000, "the broker did not reload within 5 s");
        sleep_ms(20);
    }

    int attempts;
    moat_err e = connect_fresh(&g_c, &attempts);
    const char *words = moat_tls_last_error(&g_c.tls);
    printf("   refused after %d attempt(s), %llu ms after SIGHUP: %s\n", attempts,
           (unsigned long long)(ms_now() - start), words);
    CHECK(e == MOAT_ERR_CERT_REFUSED, "revoked C: %s (%s)", moat_strerror(e), words);
    CHECK(strcmp(words, "the broker refused our certificate (alert: certificate_revoked)") == 0,
          "revoked C: words \"%s\"", words);
    dev_free(&g_c);

    /* A revoked device that still holds a session from before must not get
     * in by resuming it. Mosquitto 2.0.11 drops the sessions it issued before
     * any reload (SIGHUP), so this is a full handshake and the CRL applies. */
    e = tls_connect(&resumer, g_main.port, "localhost");
    printf("   C with its saved session: %s%s\n",
           e == MOAT_OK ? "connected" : moat_tls_last_error(&resumer.tls),
           e == MOAT_OK && moat_tls_resumed(&resumer.tls) ? " (resumed)" : "");
    CHECK(e == MOAT_ERR_CERT_REFUSED &&
              strcmp(moat_tls_last_error(&resumer.tls),
                     "the broker refused our certificate (alert: certificate_revoked)") == 0,
          "revoked C with a saved session: %s, resumed %d, \"%s\"", moat_strerror(e),
          (int)moat_tls_resumed(&resumer.tls), moat_tls_last_error(&resumer.tls));
    dev_free(&resumer);

    /* The others are not affected by the new CRL. */
    dev d;
    dev_setup(&d, DEV_B, "pki", "pki");
    CHECK(tls_connect(&d, g_main.port, "localhost") == MOAT_OK, "B after the revocation: %s",
          moat_tls_last_error(&d.tls));
    dev_free(&d);
}

int main(int argc, char **argv)
{
    uint64_t t0 = ms_now();
    if (argc < 2) {
        fprintf(stderr, "usage: test_secure /path/to/moat [/path/to/mosquitto]\n");
        return 2;
    }
    g_moat = argv[1];
    if (argc > 2 && argv[2][0] != '\0')
        g_mosquitto = argv[2];
    else if (getenv("MOAT_MOSQUITTO") != NULL && getenv("MOAT_MOSQUITTO")[0] != '\0')
        g_mosquitto = getenv("MOAT_MOSQUITTO");
    if (strchr(g_mosquitto, '/') == NULL) {
        /* Debian puts mosquitto in /usr/sbin, which a CI PATH may lack. */
        const char *path = getenv("PATH");
        char newpath[4096];
        snprintf(newpath, sizeof(newpath), "%s:/usr/sbin:/sbin",
                 path != NULL ? path : "/usr/bin:/bin");
        setenv("PATH", newpath, 1);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm(110);

    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof(g_dir), "%s/moat-secure-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(g_dir) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", g_dir, strerror(errno));
        return 1;
    }
    atexit(cleanup);

    make_pki();
    case_own_topics();
    case_acl();
    case_refusals();
    case_revoked();
    end_case();

    dev_down(&g_a);
    dev_down(&g_b);
    dev_down(&g_ops);
    dev_free(&g_a);
    dev_free(&g_b);
    dev_free(&g_ops);
    printf("all %d checks passed in %llu ms\n", g_checks, (unsigned long long)(ms_now() - t0));
    return 0;
}
