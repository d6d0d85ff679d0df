/*
 * test_tls_reconnect.c - 1,000 reconnect cycles over mutual TLS with session
 * resumption: no leak, no growth.
 *
 * One moat_tls lives for the whole run, as on a device. Each cycle opens
 * TCP, does the TLS handshake, MQTT CONNECT, publishes one QoS 1 message,
 * waits for its PUBACK, sends DISCONNECT, close_notify, and closes the
 * socket. The first handshake is a full one; every later one must be
 * resumed (moat_tls_resumed). The heap in use is measured after cycle 100
 * (everything has reached its steady size by then) and after cycle 1000; it
 * may not grow by more than GROWTH_LIMIT bytes. The heap figure is
 * mallinfo2() (glibc), or the sanitizer allocator's own count under ASan,
 * where glibc's malloc is not the one in use; the resident set size from
 * /proc/self/statm is reported too (under ASan it grows with the allocator's
 * quarantine, so it is not judged). Under ASan, LeakSanitizer checks at exit
 * that nothing leaked; moat_tls_free() releases everything first. Under
 * valgrind mallinfo2() reads 0, and valgrind's leak check is the measure.
 *
 * Usage: test_tls_reconnect [CYCLES]   (default 1000, at least 101)
 */
#include "moat/mqtt.h"
#include "moat/posix.h"
#include "moat/tls.h"

#include "tls_broker.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef GEN_CERTS
#error "GEN_CERTS must name tests/tls/gen-certs.sh"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define CYCLES_DEFAULT 1000
#define MEASURE_AT 100
#define GROWTH_LIMIT (64 * 1024)
#define STEP_TIMEOUT_MS 10000u

#define CHECK TLSB_CHECK

/* ------------------------------------------------------------ memory -- */

#ifdef UNDER_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
#define HEAP_SOURCE "ASan allocator, __sanitizer_get_current_allocated_bytes()"
static size_t heap_in_use(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#define HEAP_SOURCE "glibc mallinfo2(), uordblks + hblkhd"
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
#else
#define HEAP_SOURCE "none (no mallinfo2); the resident set size only"
static size_t heap_in_use(void)
{
    return 0;
}
#endif

static size_t rss_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* -------------------------------------------------------- one client -- */

static const char *TOPIC = "moat/moat-dev-1/cycle";

static moat_tls_config g_cfg;
static moat_tls g_tls;
static moat_tcp g_tcp;
static moat_transport g_tcp_t, g_tls_t;

static moat_mqtt_config g_mcfg;
static moat_mqtt_client g_mqtt;
static uint8_t g_tx[4096], g_rx[4096], g_store[4096];
static moat_mqtt_inflight g_win[4];
static int g_connacks, g_published;
static unsigned g_cycle;

static void on_event(void *user, const moat_mqtt_event *ev)
{
    (void)user;
    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED: g_connacks++; break;
    case MOAT_MQTT_EV_PUBLISHED: g_published++; break;
    case MOAT_MQTT_EV_DROPPED:
        tlsb_fail("cycle %u: message dropped: %s", g_cycle, moat_strerror(ev->err));
    default: break;
    }
}

static void tcp_open(void)
{
    uint64_t start = tlsb_ms();
    moat_err e = moat_tcp_connect_start(&g_tcp, "127.0.0.1", tlsb_port());
    while (e == MOAT_ERR_WOULD_BLOCK && tlsb_ms() - start < STEP_TIMEOUT_MS) {
        moat_wait_fd(g_tcp.fd, true, 100);
        e = moat_tcp_connect_poll(&g_tcp);
    }
    CHECK(e == MOAT_OK, "cycle %u: TCP connect: %s", g_cycle, moat_strerror(e));
    moat_tcp_transport(&g_tcp, &g_tcp_t);
}

static void tls_handshake(void)
{
    uint64_t start = tlsb_ms();
    moat_err e = moat_tls_connect_start(&g_tls, &g_tcp_t, "localhost");
    CHECK(e == MOAT_OK, "cycle %u: connect_start: %s", g_cycle, moat_tls_last_error(&g_tls));
    while ((e = moat_tls_connect_step(&g_tls)) == MOAT_ERR_WOULD_BLOCK) {
        CHECK(tlsb_ms() - start < STEP_TIMEOUT_MS, "cycle %u: handshake takes over 10 s",
              g_cycle);
        moat_wait_fd(g_tcp.fd, moat_tls_want_write(&g_tls), 100);
    }
    CHECK(e == MOAT_OK, "cycle %u: handshake: %s", g_cycle, moat_tls_last_error(&g_tls));
    moat_tls_transport(&g_tls, &g_tls_t);
}

/* Pump until *counter reaches want; drains mbedTLS before sleeping. */
static void pump_until(const int *counter, int want, const char *what)
{
    uint64_t start = tlsb_ms();
    while (*counter < want) {
        moat_err e = moat_mqtt_pump(&g_mqtt, &g_tls_t, moat_clock_ms());
        CHECK(e == MOAT_OK, "cycle %u: waiting for %s: %s (TLS: %s)", g_cycle, what,
              moat_strerror(e), moat_tls_last_error(&g_tls));
        if (*counter >= want)
            break;
        CHECK(tlsb_ms() - start < STEP_TIMEOUT_MS, "cycle %u: no %s within 10 s", g_cycle,
              what);
        if (!moat_tls_pending(&g_tls)) {
            size_t out;
            moat_mqtt_output(&g_mqtt, &out);
            moat_wait_fd(g_tcp.fd, out > 0, 50);
        }
    }
}

static void mqtt_session(void)
{
    static uint8_t payload[64];
    moat_mqtt_buffers b = { g_tx, sizeof(g_tx), g_rx, sizeof(g_rx),
                            g_store, sizeof(g_store), g_win, 4, NULL };
    uint32_t now = moat_clock_ms();
    int connacks = g_connacks;

    g_mcfg.client_id = "moat-dev-1";
    g_mcfg.clean_session = true;
    g_mcfg.keepalive_s = 30;
    g_mcfg.random = moat_random32;
    g_mcfg.on_event = on_event;
    CHECK(moat_mqtt_init(&g_mqtt, &g_mcfg, &b) == MOAT_OK, "moat_mqtt_init");
    CHECK(moat_mqtt_start(&g_mqtt, now) == MOAT_OK, "moat_mqtt_start");
    CHECK(moat_mqtt_link_up(&g_mqtt, now) == MOAT_OK, "moat_mqtt_link_up");
    pump_until(&g_connacks, connacks + 1, "CONNACK");

    int n = snprintf((char *)payload, sizeof(payload), "cycle %u", g_cycle);
    moat_mqtt_message m = { TOPIC, payload, (size_t)n, 1, false };
    int published = g_published;
    CHECK(moat_mqtt_publish(&g_mqtt, &m, NULL, moat_clock_ms()) == MOAT_OK,
          "cycle %u: publish", g_cycle);
    pump_until(&g_published, published + 1, "PUBACK");

    CHECK(moat_mqtt_disconnect(&g_mqtt, moat_clock_ms()) == MOAT_OK, "cycle %u: disconnect",
          g_cycle);
    uint64_t start = tlsb_ms();
    moat_err e;
    while ((e = moat_mqtt_pump(&g_mqtt, &g_tls_t, moat_clock_ms())) == MOAT_OK) {
        CHECK(tlsb_ms() - start < STEP_TIMEOUT_MS, "cycle %u: DISCONNECT not sent", g_cycle);
        moat_wait_fd(g_tcp.fd, true, 50);
    }
    CHECK(e == MOAT_ERR_CLOSED, "cycle %u: DISCONNECT: %s", g_cycle, moat_strerror(e));
}

static void link_close(void)
{
    uint64_t start = tlsb_ms();
    moat_err e;
    while ((e = moat_tls_close(&g_tls)) == MOAT_ERR_WOULD_BLOCK &&
           tlsb_ms() - start < STEP_TIMEOUT_MS)
        moat_wait_fd(g_tcp.fd, true, 50);
    /* The broker may close first after DISCONNECT; the session stays. */
    CHECK(e == MOAT_OK || e == MOAT_ERR_CLOSED || e == MOAT_ERR_IO,
          "cycle %u: close_notify: %s", g_cycle, moat_tls_last_error(&g_tls));
    moat_tcp_close(&g_tcp);
}

/* ------------------------------------------------------------- main -- */

int main(int argc, char **argv)
{
    unsigned cycles = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : CYCLES_DEFAULT;
    size_t heap_at = 0, heap_end = 0, rss_at = 0, rss_end = 0;
    uint64_t t0, t_first = 0, t_measure = 0;
    unsigned resumed = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    CHECK(cycles > MEASURE_AT, "at least %u cycles", MEASURE_AT + 1);
    tlsb_setup("tls-reconnect", GEN_CERTS);
    tlsb_start(NULL, false);

    g_cfg.ca.path = tlsb_path("ca.pem");
    g_cfg.cert.path = tlsb_path("device.pem");
    g_cfg.key.path = tlsb_path("device.key");
    g_cfg.time_now = moat_tls_os_time;
    CHECK(moat_tls_init(&g_tls, &g_cfg) == MOAT_OK, "moat_tls_init: %s",
          moat_tls_last_error(&g_tls));
    moat_tcp_init(&g_tcp);
    /* stdio keeps a little memory after its first fopen and fscanf: take
     * that before counting. */
    rss_at = rss_bytes();

    t0 = tlsb_ms();
    for (g_cycle = 1; g_cycle <= cycles; g_cycle++) {
        tcp_open();
        tls_handshake();
        if (g_cycle == 1) {
            CHECK(!moat_tls_resumed(&g_tls), "the first handshake claims resumption");
            printf("cycle 1: full handshake, %s\n", moat_tls_ciphersuite(&g_tls));
        } else {
            CHECK(moat_tls_resumed(&g_tls), "cycle %u: the handshake was not resumed",
                  g_cycle);
            resumed++;
        }
        mqtt_session();
        link_close();
        if (g_cycle == 1)
            t_first = tlsb_ms() - t0;
        if (g_cycle == MEASURE_AT) {
            heap_at = heap_in_use();
            rss_at = rss_bytes();
            t_measure = tlsb_ms();
        }
        if (g_cycle % 250 == 0)
            printf("cycle %u: %u resumed so far, heap %zu bytes\n", g_cycle, resumed,
                   heap_in_use());
    }
    heap_end = heap_in_use();
    rss_end = rss_bytes();
    uint64_t total = tlsb_ms() - t0;

    CHECK(g_published == (int)cycles, "%d PUBACKs for %u cycles", g_published, cycles);
    CHECK(resumed == cycles - 1, "%u of %u reconnects resumed", resumed, cycles - 1);
    /* The broker saw the certificate CN as the user name, on every connect. */
    size_t seen;
    for (uint64_t start = tlsb_ms();;) {
        struct timespec ts = { 0, 20 * 1000000L };
        seen = tlsb_log_count("u'moat-dev-1'");
        if (seen >= cycles || tlsb_ms() - start > 5000)
            break;  /* the log may be a line behind */
        nanosleep(&ts, NULL);
    }
    CHECK(seen == cycles, "the broker logged user moat-dev-1 %zu times for %u connects", seen,
          cycles);

    long heap_growth = (long)heap_end - (long)heap_at;
    long rss_growth = (long)rss_end - (long)rss_at;
    printf("cycles %u: all %u reconnects resumed, %u PUBACKs\n", cycles, resumed, cycles);
    printf("time: %llu ms in all, first cycle (full handshake) %llu ms, "
           "cycles %u..%u %.2f ms each\n",
           (unsigned long long)total, (unsigned long long)t_first, MEASURE_AT + 1, cycles,
           (double)(tlsb_ms() - t_measure) / (double)(cycles - MEASURE_AT));
    printf("heap in use (%s): cycle %u %zu bytes, cycle %u %zu bytes, growth %ld bytes "
           "(limit %d)\n",
           HEAP_SOURCE, MEASURE_AT, heap_at, cycles, heap_end, heap_growth, GROWTH_LIMIT);
    printf("resident set (/proc/self/statm): cycle %u %zu KB, cycle %u %zu KB, growth %ld KB\n",
           MEASURE_AT, rss_at / 1024, cycles, rss_end / 1024, rss_growth / 1024);
    if (heap_at == 0 && heap_end == 0)
        printf("note: no heap figure (valgrind replaces malloc and not mallinfo2); "
               "valgrind's own leak check is the measure then\n");
    CHECK(heap_growth <= GROWTH_LIMIT,
          "the heap grew by %ld bytes from cycle %u to cycle %u (limit %d)", heap_growth,
          MEASURE_AT, cycles, GROWTH_LIMIT);

    moat_tls_free(&g_tls);
    tlsb_stop();
    printf("pass\n");
    return 0;
}
