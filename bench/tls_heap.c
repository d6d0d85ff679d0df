/*
 * tls_heap.c - heap and CPU cost of a moat device's mutual-TLS session
 * against a real Mosquitto.
 *
 * The program starts its own broker (one TLS listener per credential set, on
 * free loopback ports, require_certificate, TLS 1.2 only), then for each set
 * (P-256 and RSA-2048) does one complete mutual-TLS handshake followed by
 * MQTT CONNECT, SUBSCRIBE and a QoS 1 PUBLISH that comes back to it, through
 * moat's MQTT engine and the POSIX port, over mbedTLS.
 *
 * Heap: built against an mbedTLS with MBEDTLS_PLATFORM_MEMORY (the
 * microcontroller profile, config/mbedtls-mcu.h), every mbedTLS allocation
 * goes through counting calloc/free hooks: requested bytes now and at peak,
 * allocations, live blocks. "peak" spans loading the credentials, the
 * handshake and the MQTT exchange; "steady" is what stays allocated while
 * the MQTT session is idle afterwards. Both include the parsed credentials.
 *
 * CPU: with --cpu N, N full and N resumed (session ticket) handshakes per
 * credential set; the client's own CPU time is reported as a median. The
 * handshakes run in bench_handshake_full() and bench_handshake_resumed(), so
 * `valgrind --tool=callgrind --toggle-collect=<that function>` counts their
 * instructions alone.
 *
 * TLS is moat's own transport (moat/tls.h), compiled against the same
 * mbedTLS; -DBENCH_TLS_DIRECT drives mbedTLS directly instead, with the same
 * choices, to see what the transport itself costs.
 *
 * Output lines: "HEAP <name> <bytes>", "BENCH <name> <value>"; notes start
 * with '#'. Exit status 0 only when every step worked.
 *
 * Usage: tls_heap --certs DIR [--cpu N] [--only p256|rsa2048] [--blocks]
 *                 [--suffix S]
 *   DIR holds p256/ and rsa2048/, each with ca.crt, server.crt, server.key,
 *   device.crt, device.key (scripts/bench-certs.sh makes them).
 *   --blocks lists the live blocks; --suffix S goes after the credential
 *   kind in every name (HEAP tls_peak_rsa2048S, BENCH handshake_full_p256S_ms).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#if !defined(MBEDTLS_CONFIG_FILE)
#include "mbedtls/config.h"
#else
#include MBEDTLS_CONFIG_FILE
#endif
#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/net_sockets.h" /* MBEDTLS_ERR_NET_* only */
#include "mbedtls/error.h"
#include "mbedtls/pk.h"
#include "mbedtls/platform.h"
#include "mbedtls/ssl.h"
#include "mbedtls/x509_crt.h"

#include "moat/mqtt.h"
#include "moat/posix.h"
#if !defined(BENCH_TLS_DIRECT)
#include "moat/tls.h"
#endif

#define HOSTNAME "localhost"   /* the broker certificate's SAN */
#define ADDRESS "127.0.0.1"
#define DEVICE_ID "bench-device"
#define STEP_TIMEOUT_MS 10000u
#define IDLE_MS 300u

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tls_heap: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

#if defined(BENCH_TLS_DIRECT)
static const char *tls_error(int ret)
{
    static char buf[128];
#if defined(MBEDTLS_ERROR_C)
    mbedtls_strerror(ret, buf, sizeof buf);
#else
    snprintf(buf, sizeof buf, "mbedTLS error -0x%04x", (unsigned)-ret);
#endif
    return buf;
}
#endif

/* ------------------------------------------------ counting allocator -- */

typedef struct heap_stats {
    size_t cur, peak;         /* requested bytes live, and the most ever */
    size_t blocks, peak_blocks;
    size_t allocs;            /* calloc calls that succeeded */
} heap_stats;

static heap_stats heap;

#if defined(MBEDTLS_PLATFORM_MEMORY)
#define HAVE_HEAP_COUNT 1

/* Each block is preceded by its size and links to the other live blocks
 * (for --blocks), in a header that keeps the alignment calloc gives. */
typedef union block_hdr {
    struct {
        size_t n;
        union block_hdr *prev, *next;
    } b;
    long double ld;
    long long ll;
} block_hdr;

static block_hdr *live;       /* most recent first */

static void *count_calloc(size_t n, size_t size)
{
    block_hdr *h;
    size_t total;

    if (size != 0 && n > (SIZE_MAX - sizeof *h) / size)
        return NULL;
    total = n * size;
    h = calloc(1, sizeof *h + total);
    if (h == NULL)
        return NULL;
    h->b.n = total;
    h->b.prev = NULL;
    h->b.next = live;
    if (live != NULL)
        live->b.prev = h;
    live = h;
    heap.cur += total;
    heap.blocks++;
    heap.allocs++;
    if (heap.cur > heap.peak)
        heap.peak = heap.cur;
    if (heap.blocks > heap.peak_blocks)
        heap.peak_blocks = heap.blocks;
    return h + 1;
}

static void count_free(void *p)
{
    block_hdr *h;

    if (p == NULL)
        return;
    h = (block_hdr *)p - 1;
    if (h->b.prev != NULL)
        h->b.prev->b.next = h->b.next;
    else
        live = h->b.next;
    if (h->b.next != NULL)
        h->b.next->b.prev = h->b.prev;
    heap.cur -= h->b.n;
    heap.blocks--;
    free(h);
}

/* The sizes of the live blocks, oldest first, on one '#' line. */
static void print_blocks(const char *what)
{
    block_hdr *h, *last = NULL;

    for (h = live; h != NULL; h = h->b.next)
        last = h;
    printf("# live blocks %s (bytes, oldest first):", what);
    for (h = last; h != NULL; h = h->b.prev)
        printf(" %zu", h->b.n);
    printf("\n");
}
#else
#define HAVE_HEAP_COUNT 0
static void print_blocks(const char *what)
{
    (void)what;
}
#endif
static bool show_blocks;
static const char *suffix = "";   /* appended to every HEAP name */

/* Start a new measurement: peak restarts from what is live now. */
static void heap_mark(void)
{
    heap.peak = heap.cur;
    heap.peak_blocks = heap.blocks;
    heap.allocs = 0;
}

/* ------------------------------------------------------------- broker -- */

static pid_t broker_pid = -1;

static void broker_stop(void)
{
    if (broker_pid > 0) {
        kill(broker_pid, SIGTERM);
        waitpid(broker_pid, NULL, 0);
        broker_pid = -1;
    }
}

static void on_signal(int sig)
{
    if (broker_pid > 0)
        kill(broker_pid, SIGTERM);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* A loopback port nobody listens on now. */
static int free_port(uint16_t *port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    close(fd);
    return 0;
}

static int port_open(uint16_t port)
{
    moat_tcp s;
    moat_err e;
    uint32_t start = moat_clock_ms();

    moat_tcp_init(&s);
    e = moat_tcp_connect_start(&s, ADDRESS, port);
    while (e == MOAT_ERR_WOULD_BLOCK && moat_clock_ms() - start < 1000u) {
        moat_wait_fd(s.fd, true, 100);
        e = moat_tcp_connect_poll(&s);
    }
    moat_tcp_close(&s);
    return e == MOAT_OK;
}

static const char *const KINDS[2] = {"p256", "rsa2048"};

/* One broker, one TLS listener per credential set. */
static int broker_start(const char *certs, uint16_t ports[2])
{
    char conf[PATH_MAX], log[PATH_MAX];
    FILE *f;
    int i;
    uint32_t start;

    snprintf(conf, sizeof conf, "%s/mosquitto.conf", certs);
    snprintf(log, sizeof log, "%s/mosquitto.log", certs);
    f = fopen(conf, "w");
    if (f == NULL) {
        fail("cannot write %s: %s", conf, strerror(errno));
        return -1;
    }
    /* Root-owned keys in a private folder: the broker must stay root. */
    fprintf(f, "user root\npersistence false\nlog_dest file %s\n"
               "log_type error\nlog_type warning\nlog_type notice\n"
               "per_listener_settings false\nallow_anonymous false\n", log);
    for (i = 0; i < 2; i++) {
        if (free_port(&ports[i]) < 0 || (i == 1 && ports[1] == ports[0])) {
            fclose(f);
            fail("no free loopback port");
            return -1;
        }
        fprintf(f, "\nlistener %u %s\ncafile %s/%s/ca.crt\n"
                   "certfile %s/%s/server.crt\nkeyfile %s/%s/server.key\n"
                   "require_certificate true\nuse_identity_as_username true\n"
                   "tls_version tlsv1.2\n",
                (unsigned)ports[i], ADDRESS, certs, KINDS[i], certs, KINDS[i],
                certs, KINDS[i]);
    }
    fclose(f);

    broker_pid = fork();
    if (broker_pid < 0) {
        fail("fork: %s", strerror(errno));
        return -1;
    }
    if (broker_pid == 0) {
        /* Its start-up warnings ("running as root") go to the log too. */
        int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execlp("mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        fprintf(stderr, "tls_heap: cannot run mosquitto: %s\n", strerror(errno));
        _exit(127);
    }
    start = moat_clock_ms();
    for (;;) {
        int status;
        if (waitpid(broker_pid, &status, WNOHANG) == broker_pid) {
            broker_pid = -1;
            fail("mosquitto exited at start; see %s", log);
            return -1;
        }
        if (port_open(ports[0]) && port_open(ports[1]))
            return 0;
        if (moat_clock_ms() - start > 5000u) {
            fail("mosquitto did not listen within 5 s; see %s", log);
            return -1;
        }
        usleep(20000);
    }
}

/* ---------------------------------------------------------------- TLS -- */

/*
 * bench_tls: one TLS client over the POSIX port's TCP. By default it is
 * moat's own transport (moat/tls.h, src/tls); built with -DBENCH_TLS_DIRECT
 * it drives mbedTLS directly with the same choices, for comparison.
 * Either way the credentials are loaded and the record buffers allocated
 * once, in bench_tls_init(), and the last session is kept for resumption.
 */
typedef struct bench_tls {
    moat_tcp tcp;
    moat_transport tcp_t;     /* the socket, under TLS */
    moat_transport t;         /* TLS application data, for the engine */
    char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
#if defined(BENCH_TLS_DIRECT)
    mbedtls_x509_crt cacert, crt;
    mbedtls_pk_context pk;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_session saved;
    bool have_saved;
    unsigned verify_calls;    /* certificates checked: 0 on resumption */
#else
    moat_tls_config cfg;
    moat_tls tls;
#endif
} bench_tls;

static int bench_tls_connect_tcp(bench_tls *b, uint16_t port)
{
    moat_err e = moat_tcp_connect_start(&b->tcp, ADDRESS, port);
    uint32_t start = moat_clock_ms();

    while (e == MOAT_ERR_WOULD_BLOCK && moat_clock_ms() - start < STEP_TIMEOUT_MS) {
        moat_wait_fd(b->tcp.fd, true, 100);
        e = moat_tcp_connect_poll(&b->tcp);
    }
    if (e != MOAT_OK)
        fail("TCP connect to %s:%u: %s", ADDRESS, (unsigned)port, moat_strerror(e));
    else
        moat_tcp_transport(&b->tcp, &b->tcp_t);
    return e == MOAT_OK ? 0 : -1;
}

static void bench_tls_paths(bench_tls *b, const char *dir)
{
    snprintf(b->ca, sizeof b->ca, "%s/ca.crt", dir);
    snprintf(b->cert, sizeof b->cert, "%s/device.crt", dir);
    snprintf(b->key, sizeof b->key, "%s/device.key", dir);
}

#if defined(BENCH_TLS_DIRECT)

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static bool rng_ready;

/* The same choices as src/tls/tls.c makes. */
static const int SUITES[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0};
static const mbedtls_ecp_group_id CURVES[] = {MBEDTLS_ECP_DP_SECP256R1,
                                              MBEDTLS_ECP_DP_NONE};
static const int SIG_HASHES[] = {MBEDTLS_MD_SHA512, MBEDTLS_MD_SHA384,
                                 MBEDTLS_MD_SHA256, MBEDTLS_MD_NONE};

/* Ask for the largest fragment the record buffers hold (none for 16 KB). */
static unsigned char default_mfl(void)
{
    static const unsigned sizes[] = {512, 1024, 2048, 4096};
    unsigned char code = MBEDTLS_SSL_MAX_FRAG_LEN_NONE;
    unsigned i;

    for (i = 0; i < 4; i++)
        if (MBEDTLS_SSL_IN_CONTENT_LEN < 16384 && sizes[i] <= MBEDTLS_SSL_IN_CONTENT_LEN)
            code = (unsigned char)(i + 1);
    return code;
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    const moat_transport *t = ctx;
    long n = t->send(t->ctx, buf, len);

    if (n == MOAT_ERR_WOULD_BLOCK)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    if (n < 0)
        return MBEDTLS_ERR_NET_SEND_FAILED;
    return (int)n;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    const moat_transport *t = ctx;
    long n = t->recv(t->ctx, buf, len);

    if (n == MOAT_ERR_WOULD_BLOCK)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (n == MOAT_ERR_CLOSED)
        return MBEDTLS_ERR_NET_CONN_RESET;
    if (n < 0)
        return MBEDTLS_ERR_NET_RECV_FAILED;
    return (int)n;
}

/* Counts the certificates checked; the verdict stays mbedTLS's own. */
static int count_verify(void *user, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    bench_tls *b = user;

    (void)crt;
    (void)depth;
    (void)flags;
    b->verify_calls++;
    return 0;
}

static long tls_send(void *ctx, const uint8_t *buf, size_t len)
{
    bench_tls *b = ctx;
    int n = mbedtls_ssl_write(&b->ssl, buf, len);

    if (n == MBEDTLS_ERR_SSL_WANT_WRITE || n == MBEDTLS_ERR_SSL_WANT_READ)
        return MOAT_ERR_WOULD_BLOCK;
    return n > 0 ? n : MOAT_ERR_IO;
}

static long tls_recv(void *ctx, uint8_t *buf, size_t len)
{
    bench_tls *b = ctx;
    int n = mbedtls_ssl_read(&b->ssl, buf, len);

    if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
        return MOAT_ERR_WOULD_BLOCK;
    if (n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || n == 0)
        return MOAT_ERR_CLOSED;
    return n > 0 ? n : MOAT_ERR_IO;
}

static int bench_tls_init(bench_tls *b, const char *dir)
{
    static const char pers[] = "moat tls_heap";
    const char *what = "TLS setup";
    int ret;

    memset(b, 0, sizeof *b);
    moat_tcp_init(&b->tcp);
    bench_tls_paths(b, dir);
    mbedtls_x509_crt_init(&b->cacert);
    mbedtls_x509_crt_init(&b->crt);
    mbedtls_pk_init(&b->pk);
    mbedtls_ssl_config_init(&b->conf);
    mbedtls_ssl_init(&b->ssl);
    mbedtls_ssl_session_init(&b->saved);
    if (!rng_ready) {
        mbedtls_entropy_init(&entropy);
        mbedtls_ctr_drbg_init(&drbg);
        if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                                         (const unsigned char *)pers, sizeof pers - 1)) != 0)
            goto bad;
        rng_ready = true;
    }
    what = b->ca;
    if ((ret = mbedtls_x509_crt_parse_file(&b->cacert, b->ca)) != 0)
        goto bad;
    what = b->cert;
    if ((ret = mbedtls_x509_crt_parse_file(&b->crt, b->cert)) != 0)
        goto bad;
    what = b->key;
    if ((ret = mbedtls_pk_parse_keyfile(&b->pk, b->key, NULL)) != 0)
        goto bad;
    what = "TLS setup";
    ret = mbedtls_ssl_config_defaults(&b->conf, MBEDTLS_SSL_IS_CLIENT,
                                      MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0)
        goto bad;
    mbedtls_ssl_conf_min_version(&b->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(&b->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&b->conf, &b->cacert, NULL);
    mbedtls_ssl_conf_verify(&b->conf, count_verify, b);
    mbedtls_ssl_conf_rng(&b->conf, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_ciphersuites(&b->conf, SUITES);
    mbedtls_ssl_conf_curves(&b->conf, CURVES);
    mbedtls_ssl_conf_sig_hashes(&b->conf, SIG_HASHES);
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
    mbedtls_ssl_conf_session_tickets(&b->conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
#endif
    if (default_mfl() != MBEDTLS_SSL_MAX_FRAG_LEN_NONE &&
        (ret = mbedtls_ssl_conf_max_frag_len(&b->conf, default_mfl())) != 0)
        goto bad;
    if ((ret = mbedtls_ssl_conf_own_cert(&b->conf, &b->crt, &b->pk)) != 0)
        goto bad;
    if ((ret = mbedtls_ssl_setup(&b->ssl, &b->conf)) != 0)
        goto bad;
    b->t.send = tls_send;
    b->t.recv = tls_recv;
    b->t.ctx = b;
    return 0;
bad:
    fail("%s: %s", what, tls_error(ret));
    return ret;
}

static int bench_tls_start(bench_tls *b)
{
    int ret;

    b->verify_calls = 0;
    if ((ret = mbedtls_ssl_session_reset(&b->ssl)) != 0 ||
        (ret = mbedtls_ssl_set_hostname(&b->ssl, HOSTNAME)) != 0 ||
        (b->have_saved && (ret = mbedtls_ssl_set_session(&b->ssl, &b->saved)) != 0)) {
        fail("TLS start: %s", tls_error(ret));
        return -1;
    }
    mbedtls_ssl_set_bio(&b->ssl, &b->tcp_t, bio_send, bio_recv, NULL);
    return 0;
}

/* One step: 0 done, 1 in progress (*want_write), -1 failed. */
static int bench_tls_step(bench_tls *b, bool *want_write)
{
    int ret = mbedtls_ssl_handshake(&b->ssl);

    if (ret == 0) {
        mbedtls_ssl_session_free(&b->saved);
        mbedtls_ssl_session_init(&b->saved);
        b->have_saved = mbedtls_ssl_get_session(&b->ssl, &b->saved) == 0;
        return 0;
    }
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
        *want_write = ret == MBEDTLS_ERR_SSL_WANT_WRITE;
        return 1;
    }
    fail("TLS handshake: %s (verify flags 0x%x)", tls_error(ret),
         (unsigned)mbedtls_ssl_get_verify_result(&b->ssl));
    return -1;
}

static bool bench_tls_resumed(const bench_tls *b)
{
    return b->verify_calls == 0;
}

static void bench_tls_forget(bench_tls *b)
{
    mbedtls_ssl_session_free(&b->saved);
    mbedtls_ssl_session_init(&b->saved);
    b->have_saved = false;
}

static bool bench_tls_pending(const bench_tls *b)
{
    return mbedtls_ssl_get_bytes_avail(&b->ssl) > 0;
}

static const char *bench_tls_suite(const bench_tls *b)
{
    return mbedtls_ssl_get_ciphersuite(&b->ssl);
}

static size_t bench_tls_fragment(const bench_tls *b)
{
    return (size_t)mbedtls_ssl_get_output_max_frag_len(&b->ssl);
}

/* close_notify (bounded wait), then the socket. */
static void bench_tls_close(bench_tls *b)
{
    int i;

    for (i = 0; i < 10 && mbedtls_ssl_close_notify(&b->ssl) == MBEDTLS_ERR_SSL_WANT_WRITE; i++)
        moat_wait_fd(b->tcp.fd, true, 100);
    moat_tcp_close(&b->tcp);
}

static void bench_tls_free(bench_tls *b)
{
    mbedtls_ssl_free(&b->ssl);
    mbedtls_ssl_config_free(&b->conf);
    mbedtls_ssl_session_free(&b->saved);
    mbedtls_x509_crt_free(&b->cacert);
    mbedtls_x509_crt_free(&b->crt);
    mbedtls_pk_free(&b->pk);
}

static void bench_tls_cleanup(void)
{
    if (rng_ready) {
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&entropy);
        rng_ready = false;
    }
}

#define TLS_KIND "bare mbedTLS"

#else /* moat's transport */

static int bench_tls_init(bench_tls *b, const char *dir)
{
    moat_err e;

    memset(b, 0, sizeof *b);
    moat_tcp_init(&b->tcp);
    bench_tls_paths(b, dir);
    b->cfg.ca.path = b->ca;
    b->cfg.cert.path = b->cert;
    b->cfg.key.path = b->key;
    b->cfg.time_now = moat_tls_os_time;
    e = moat_tls_init(&b->tls, &b->cfg);
    if (e != MOAT_OK) {
        fail("moat_tls_init: %s", moat_tls_last_error(&b->tls));
        return -1;
    }
    moat_tls_transport(&b->tls, &b->t);
    return 0;
}

static int bench_tls_start(bench_tls *b)
{
    moat_err e = moat_tls_connect_start(&b->tls, &b->tcp_t, HOSTNAME);

    if (e != MOAT_OK) {
        fail("moat_tls_connect_start: %s", moat_tls_last_error(&b->tls));
        return -1;
    }
    return 0;
}

static int bench_tls_step(bench_tls *b, bool *want_write)
{
    moat_err e = moat_tls_connect_step(&b->tls);

    if (e == MOAT_OK)
        return 0;
    if (e == MOAT_ERR_WOULD_BLOCK) {
        *want_write = moat_tls_want_write(&b->tls);
        return 1;
    }
    fail("TLS handshake: %s", moat_tls_last_error(&b->tls));
    return -1;
}

static bool bench_tls_resumed(const bench_tls *b)
{
    return moat_tls_resumed(&b->tls);
}

static void bench_tls_forget(bench_tls *b)
{
    moat_tls_forget_session(&b->tls);
}

static bool bench_tls_pending(const bench_tls *b)
{
    return moat_tls_pending(&b->tls);
}

static const char *bench_tls_suite(const bench_tls *b)
{
    return moat_tls_ciphersuite(&b->tls);
}

static size_t bench_tls_fragment(const bench_tls *b)
{
    return moat_tls_max_fragment(&b->tls);
}

static void bench_tls_close(bench_tls *b)
{
    int i;

    for (i = 0; i < 10 && moat_tls_close(&b->tls) == MOAT_ERR_WOULD_BLOCK; i++)
        moat_wait_fd(b->tcp.fd, true, 100);
    moat_tcp_close(&b->tcp);
}

static void bench_tls_free(bench_tls *b)
{
    moat_tls_free(&b->tls);
}

static void bench_tls_cleanup(void)
{
}

#define TLS_KIND "moat_tls"

#endif

/* The non-blocking handshake to its end, sleeping in poll(). */
static int handshake(bench_tls *b)
{
    uint32_t start = moat_clock_ms();
    bool want_write = false;
    int r;

    if (bench_tls_start(b) != 0)
        return -1;
    while ((r = bench_tls_step(b, &want_write)) == 1) {
        if (moat_clock_ms() - start > STEP_TIMEOUT_MS) {
            fail("TLS handshake timed out");
            return -1;
        }
        moat_wait_fd(b->tcp.fd, want_write, 100);
    }
    return r;
}

static int bench_tls_connect(bench_tls *b, uint16_t port)
{
    return bench_tls_connect_tcp(b, port) == 0 ? handshake(b) : -1;
}

/* --------------------------------------------------------------- MQTT -- */

typedef struct mqtt_run {
    bool connected, subacked, published, echoed, failed;
    moat_err err;
} mqtt_run;

static void on_event(void *user, const moat_mqtt_event *ev)
{
    mqtt_run *r = user;

    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED: r->connected = true; break;
    case MOAT_MQTT_EV_SUBACK:
        r->subacked = true;
        if (ev->err != MOAT_OK) {
            r->failed = true;
            r->err = ev->err;
        }
        break;
    case MOAT_MQTT_EV_PUBLISHED: r->published = true; break;
    case MOAT_MQTT_EV_MESSAGE: r->echoed = true; break;
    case MOAT_MQTT_EV_DISCONNECTED:
        if (ev->err != MOAT_OK) {
            r->failed = true;
            r->err = ev->err;
        }
        break;
    default: break;
    }
}

/* Sleep until the socket or the engine needs us, unless mbedTLS already
 * holds decrypted bytes the engine has not read. */
static void mqtt_wait(bench_tls *b, moat_mqtt_client *c, uint32_t limit_ms)
{
    size_t pending;
    uint32_t t = moat_mqtt_next_timeout(c, moat_clock_ms());

    if (bench_tls_pending(b))
        return;
    moat_mqtt_output(c, &pending);
    moat_wait_fd(b->tcp.fd, pending > 0, t < limit_ms ? t : limit_ms);
}

static uint8_t tx_buf[512], rx_buf[512], store_buf[512];
static moat_mqtt_inflight window[4];

/*
 * CONNECT, SUBSCRIBE to moat/<id>/echo, PUBLISH QoS 1 to it, wait for the
 * PUBACK and the message; then idle for IDLE_MS and report the heap then in
 * *steady. Then DISCONNECT.
 */
static int mqtt_session(bench_tls *b, size_t *steady)
{
    static const char topic[] = "moat/" DEVICE_ID "/echo";
    static const char payload[] = "{\"bench\":\"tls_heap\"}";
    moat_mqtt_config cfg;
    moat_mqtt_buffers bufs;
    moat_mqtt_client c;
    mqtt_run r;
    moat_mqtt_sub sub = {topic, 1};
    moat_mqtt_message msg = {topic, payload, sizeof payload - 1, 1, false};
    bool subscribed = false, sent = false;
    uint32_t start = moat_clock_ms(), idle_from = 0;
    moat_err e;

    memset(&cfg, 0, sizeof cfg);
    memset(&r, 0, sizeof r);
    memset(&bufs, 0, sizeof bufs);
    bufs.tx = tx_buf;
    bufs.tx_size = sizeof tx_buf;
    bufs.rx = rx_buf;
    bufs.rx_size = sizeof rx_buf;
    bufs.store = store_buf;
    bufs.store_size = sizeof store_buf;
    bufs.inflight = window;
    bufs.inflight_count = sizeof window / sizeof window[0];
    cfg.client_id = DEVICE_ID;
    cfg.clean_session = true;
    cfg.keepalive_s = 60;
    cfg.random = moat_random32;
    cfg.on_event = on_event;
    cfg.user = &r;
    if ((e = moat_mqtt_init(&c, &cfg, &bufs)) != MOAT_OK ||
        (e = moat_mqtt_start(&c, moat_clock_ms())) != MOAT_OK ||
        (e = moat_mqtt_link_up(&c, moat_clock_ms())) != MOAT_OK) {
        fail("MQTT start: %s", moat_strerror(e));
        return -1;
    }
    for (;;) {
        uint32_t now = moat_clock_ms();

        if (now - start > STEP_TIMEOUT_MS) {
            fail("MQTT exchange timed out (connected %d subacked %d published %d echoed %d)",
                 r.connected, r.subacked, r.published, r.echoed);
            return -1;
        }
        e = moat_mqtt_pump(&c, &b->t, now);
        if (e != MOAT_OK || r.failed) {
            fail("MQTT: %s", moat_strerror(e != MOAT_OK ? e : r.err));
            return -1;
        }
        if (r.connected && !subscribed) {
            if ((e = moat_mqtt_subscribe(&c, &sub, 1, NULL, now)) != MOAT_OK) {
                fail("SUBSCRIBE: %s", moat_strerror(e));
                return -1;
            }
            subscribed = true;
            continue;
        }
        if (r.subacked && !sent) {
            if ((e = moat_mqtt_publish(&c, &msg, NULL, now)) != MOAT_OK) {
                fail("PUBLISH: %s", moat_strerror(e));
                return -1;
            }
            sent = true;
            continue;
        }
        if (r.published && r.echoed) {
            if (idle_from == 0)
                idle_from = now | 1u;
            else if (now - idle_from >= IDLE_MS)
                break;
        }
        mqtt_wait(b, &c, 50);
    }
    *steady = heap.cur;
    if (show_blocks)
        print_blocks("while idle");

    /* DISCONNECT, then the pump reports the link closed. */
    if ((e = moat_mqtt_disconnect(&c, moat_clock_ms())) != MOAT_OK) {
        fail("DISCONNECT: %s", moat_strerror(e));
        return -1;
    }
    for (;;) {
        e = moat_mqtt_pump(&c, &b->t, moat_clock_ms());
        if (e == MOAT_ERR_CLOSED)
            return 0;
        if (e != MOAT_OK) {
            fail("MQTT DISCONNECT: %s", moat_strerror(e));
            return -1;
        }
        if (moat_clock_ms() - start > STEP_TIMEOUT_MS) {
            fail("DISCONNECT timed out");
            return -1;
        }
        mqtt_wait(b, &c, 50);
    }
}

/* ------------------------------------------------------ measurements -- */

static void print_heap(const char *name, const char *kind_sfx, size_t v)
{
    printf("HEAP %s%s%s %zu\n", name, kind_sfx, suffix, v);
}

/* One session, start to end, with the heap measured at each stage. */
static int heap_run(const char *certs, int kind, uint16_t port)
{
    const char *sfx = kind == 0 ? "" : "_rsa2048";
    char dir[PATH_MAX];
    bench_tls b;
    size_t init, hs_peak, steady = 0, peak, peak_blocks, allocs;
    int ok;

    snprintf(dir, sizeof dir, "%s/%s", certs, KINDS[kind]);
    heap_mark();
    if (bench_tls_init(&b, dir) != 0)
        return -1;
    init = heap.cur;
    if (show_blocks)
        print_blocks("after init (credentials, record buffers)");
    ok = bench_tls_connect(&b, port) == 0;
    hs_peak = heap.peak;
    if (ok) {
        printf("# %s via %s: %s, max fragment %zu\n", KINDS[kind], TLS_KIND,
               bench_tls_suite(&b), bench_tls_fragment(&b));
        ok = mqtt_session(&b, &steady) == 0;
    }
    peak = heap.peak;
    peak_blocks = heap.peak_blocks;
    allocs = heap.allocs;
    bench_tls_close(&b);
    bench_tls_free(&b);
    if (!ok)
        return -1;
    if (!HAVE_HEAP_COUNT) {
        printf("# %s: heap not counted (this mbedTLS has no MBEDTLS_PLATFORM_MEMORY)\n",
               KINDS[kind]);
        return 0;
    }
    print_heap("tls_peak", sfx, peak);
    print_heap("tls_steady", sfx, steady);
    print_heap("tls_after_init", sfx, init);
    print_heap("tls_handshake_peak", sfx, hs_peak);
    print_heap("tls_peak_blocks", sfx, peak_blocks);
    print_heap("tls_allocs", sfx, allocs);
    if (heap.cur != 0) {
        fail("%zu bytes in %zu blocks still allocated after freeing everything",
             heap.cur, heap.blocks);
        return -1;
    }
    return 0;
}

static double thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The handshakes callgrind counts (--toggle-collect=<name>): TCP is already
 * connected, so only the TLS client's own work is inside. Never inlined, so
 * that the names exist. */
__attribute__((noinline)) int bench_handshake_full(bench_tls *b);
__attribute__((noinline)) int bench_handshake_resumed(bench_tls *b);

int bench_handshake_full(bench_tls *b)
{
    return handshake(b);
}

int bench_handshake_resumed(bench_tls *b)
{
    return handshake(b);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One handshake on a fresh connection, timed: full, or resuming the session
 * the previous one saved. */
static int timed_handshake(bench_tls *b, uint16_t port, bool resume, double *cpu, double *wall)
{
    double c0, w0;
    int ret;

    if (!resume)
        bench_tls_forget(b);
    if (bench_tls_connect_tcp(b, port) != 0)
        return -1;
    c0 = thread_cpu_ms();
    w0 = wall_ms();
    ret = resume ? bench_handshake_resumed(b) : bench_handshake_full(b);
    *cpu = thread_cpu_ms() - c0;
    *wall = wall_ms() - w0;
    if (ret == 0 && bench_tls_resumed(b) != resume) {
        fail(resume ? "the broker did not resume the session"
                    : "a handshake without a saved session was a resumption");
        ret = -1;
    }
    bench_tls_close(b);
    return ret;
}

static int cpu_run(const char *certs, int kind, uint16_t port, int n)
{
    char dir[PATH_MAX];
    bench_tls b;
    double *v = calloc((size_t)n * 4, sizeof *v);
    double *full_cpu = v, *full_wall = v + n, *res_cpu = v + 2 * n, *res_wall = v + 3 * n;
    int i, ret = -1;

    if (v == NULL)
        return -1;
    snprintf(dir, sizeof dir, "%s/%s", certs, KINDS[kind]);
    if (bench_tls_init(&b, dir) != 0) {
        free(v);
        return -1;
    }
    for (i = 0; i < n; i++)
        if (timed_handshake(&b, port, false, &full_cpu[i], &full_wall[i]) != 0)
            goto out;
    /* The last full handshake left a session (and its ticket) to resume. */
    for (i = 0; i < n; i++)
        if (timed_handshake(&b, port, true, &res_cpu[i], &res_wall[i]) != 0)
            goto out;
    printf("BENCH handshake_full_%s%s_ms %.2f\n", KINDS[kind], suffix, median(full_cpu, n));
    printf("BENCH handshake_resumed_%s%s_ms %.2f\n", KINDS[kind], suffix, median(res_cpu, n));
    printf("BENCH handshake_full_%s%s_wall_ms %.2f\n", KINDS[kind], suffix,
           median(full_wall, n));
    printf("BENCH handshake_resumed_%s%s_wall_ms %.2f\n", KINDS[kind], suffix,
           median(res_wall, n));
    ret = 0;
out:
    bench_tls_free(&b);
    free(v);
    return ret;
}

static void usage(void)
{
    fputs("usage: tls_heap --certs DIR [--cpu N] [--only p256|rsa2048] [--blocks] "
          "[--suffix S]\n", stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *certs = NULL;
    int cpu = 0, only = -1, i, status = 0;
    uint16_t ports[2];

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--certs") == 0 && i + 1 < argc)
            certs = argv[++i];
        else if (strcmp(argv[i], "--cpu") == 0 && i + 1 < argc)
            cpu = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            i++;
            only = strcmp(argv[i], "p256") == 0 ? 0 : strcmp(argv[i], "rsa2048") == 0 ? 1 : -2;
            if (only == -2)
                usage();
        } else if (strcmp(argv[i], "--suffix") == 0 && i + 1 < argc)
            suffix = argv[++i];
        else if (strcmp(argv[i], "--blocks") == 0)
            show_blocks = true;
        else
            usage();
    }
    if (certs == NULL || cpu < 0)
        usage();
#if defined(MBEDTLS_PLATFORM_MEMORY)
    /* Before anything allocates, so that every block is counted. */
    mbedtls_platform_set_calloc_free(count_calloc, count_free);
#endif
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (broker_start(certs, ports) != 0) {
        broker_stop();
        return 1;
    }
    for (i = 0; i < 2 && status == 0; i++) {
        if (only >= 0 && only != i)
            continue;
        status = cpu > 0 ? cpu_run(certs, i, ports[i], cpu) : heap_run(certs, i, ports[i]);
    }
    broker_stop();
    bench_tls_cleanup();
    fflush(stdout);
    return status == 0 ? 0 : 1;
}
