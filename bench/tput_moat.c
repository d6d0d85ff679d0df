/*
 * tput_moat.c - the throughput publisher and subscriber on moat: the MQTT
 * engine (src/core), the POSIX port's non-blocking TCP and, with --tls,
 * moat_tls over Debian's libmbedtls. One thread, one poll() loop, as an
 * application of the engine runs. See tput.h for the command line.
 *
 * QoS 1: the engine's window (max_inflight) is --window; publishing stops
 * at MOAT_ERR_WINDOW_FULL until PUBACKs free slots. QoS 0: publishing stops
 * when the engine's tx buffer is full (MOAT_ERR_WOULD_BLOCK) until the
 * socket takes it. With --hold, every wait is moat_poll_batched's.
 */
#include "tput.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "moat/mqtt.h"
#include "moat/posix.h"
#include "moat/tls.h"

#define TX_SIZE (64u * 1024u)
#define RX_SIZE (64u * 1024u)

static tput_opts o;
static moat_mqtt_client cli;
static moat_mqtt_config cfg;
static moat_tcp tcp;
static moat_tls tls;
static moat_tls_config tcfg;
static moat_transport tr;
static bool use_tls, connected, subscribed, closing;
static long received, acked;
static uint64_t first_ns, last_ns, start_ns;
static moat_batch batch;

static void on_event(void *user, const moat_mqtt_event *ev)
{
    (void)user;
    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED:
        connected = true;
        break;
    case MOAT_MQTT_EV_SUBACK:
        subscribed = ev->err == MOAT_OK;
        break;
    case MOAT_MQTT_EV_MESSAGE:
        if (ev->offset == 0)
            tput_lat_note(&o, ev->payload, ev->len);
        if (ev->offset + ev->len == ev->total) {
            last_ns = tput_now_ns();
            if (received++ == 0)
                first_ns = last_ns;
        }
        break;
    case MOAT_MQTT_EV_PUBLISHED:
        acked++;
        break;
    case MOAT_MQTT_EV_DISCONNECTED:
        /* After our DISCONNECT the broker may close first: not an error. */
        if (ev->err != MOAT_OK && !closing) {
            fprintf(stderr, "tput: %s: %ld received, %ld acknowledged so far\n",
                    o.pub ? "publisher" : "subscriber", received, acked);
            tput_die("disconnected", moat_strerror(ev->err));
        }
        break;
    default:
        break;
    }
}

static bool has_output(void)
{
    size_t n;
    moat_mqtt_output(&cli, &n);
    return n > 0;
}

/* Sleep until the socket can move something, at most ms. */
static void io_wait(int ms)
{
    struct pollfd p = { .fd = tcp.fd, .events = POLLIN };
    if (use_tls ? moat_tls_pending(&tls) : moat_tcp_pending(&tcp))
        return;
    if (has_output())
        p.events |= POLLOUT;
    if (moat_poll_batched(&batch, &p, 1, ms) < 0 && errno != EINTR)
        tput_die("poll", strerror(errno));
}

static void pump(void)
{
    moat_err e = moat_mqtt_pump(&cli, &tr, moat_clock_ms());
    if (e != MOAT_OK)
        tput_die("link", use_tls ? moat_tls_last_error(&tls) : moat_strerror(e));
}

static void open_link(void)
{
    uint64_t deadline = tput_now_ns() + (uint64_t)TPUT_CONNECT_S * 1000000000u;
    moat_transport lower;
    moat_err e = moat_tcp_connect_start(&tcp, o.host, (uint16_t)o.port);

    while (e == MOAT_ERR_WOULD_BLOCK) {
        moat_wait_fd(tcp.fd, true, 100);
        e = moat_tcp_connect_poll(&tcp);
    }
    if (e != MOAT_OK)
        tput_die("connect", moat_strerror(e));
    moat_tcp_transport(&tcp, &lower);
    tr = lower;
    if (use_tls) {
        if ((e = moat_tls_connect_start(&tls, &lower, o.host)) != MOAT_OK)
            tput_die("TLS", moat_tls_last_error(&tls));
        while ((e = moat_tls_connect_step(&tls)) == MOAT_ERR_WOULD_BLOCK)
            moat_wait_fd(tcp.fd, moat_tls_want_write(&tls), 100);
        if (e != MOAT_OK)
            tput_die("TLS handshake", moat_tls_last_error(&tls));
        moat_tls_transport(&tls, &tr);
    }
    if ((e = moat_mqtt_link_up(&cli, moat_clock_ms())) != MOAT_OK)
        tput_die("link_up", moat_strerror(e));
    while (!connected) {
        pump();
        if (tput_now_ns() > deadline)
            tput_die("no CONNACK", NULL);
        if (!connected)
            io_wait(100);
    }
}

/* Publish o.count messages; callgrind counts this function and its callees. */
__attribute__((noinline)) void bench_publish_loop(void);
__attribute__((noinline)) void bench_publish_loop(void)
{
    uint8_t payload[65536];
    moat_mqtt_message m = { .topic = o.topic, .payload = payload, .len = (size_t)o.size,
                            .qos = (uint8_t)o.qos };
    long sent = 0;

    tput_payload(payload, o.size, 0);
    for (;;) {
        long before = sent;
        if (sent < o.count)
            tput_sleep_until_due(&o, start_ns, sent); /* --rate: paced */
        while (sent < o.count && tput_is_due(&o, start_ns, sent)) {
            memcpy(payload, &sent, sizeof sent);
            if (o.rate > 0)
                tput_stamp(payload);
            if (moat_mqtt_publish(&cli, &m, NULL, moat_clock_ms()) != MOAT_OK)
                break; /* window full (QoS 1) or tx full (QoS 0) */
            sent++;
        }
        pump();
        if (o.qos == 1 ? acked >= o.count : sent >= o.count && !has_output())
            break;
        if (sent == before)
            io_wait(o.rate > 0 && sent < o.count ? 0 : 10);
    }
}

int main(int argc, char **argv)
{
    static uint8_t tx[TX_SIZE], rx[RX_SIZE];
    moat_mqtt_buffers b;
    moat_err e;

    tput_parse(argc, argv, &o);
    use_tls = o.ca != NULL;
    batch.hold_us = o.hold_us > 0 ? (uint32_t)o.hold_us : 0;
    moat_tcp_init(&tcp);
    if (use_tls) {
        /* TLS reads each record's header and body separately: let one
         * recv() fetch all that is there. */
        static uint8_t readahead[16384];
        moat_tcp_set_readahead(&tcp, readahead, sizeof readahead);
        tcfg = (moat_tls_config){ .ca = { .path = o.ca }, .cert = { .path = o.cert },
                                  .key = { .path = o.key }, .time_now = moat_tls_os_time };
        if (moat_tls_init(&tls, &tcfg) != MOAT_OK)
            tput_die("TLS setup", moat_tls_last_error(&tls));
    }
    b = (moat_mqtt_buffers){ .tx = tx, .tx_size = sizeof tx, .rx = rx, .rx_size = sizeof rx };
    b.inflight_count = (size_t)o.window + 8;
    b.inflight = calloc(b.inflight_count, sizeof *b.inflight);
    b.store_size = (size_t)(o.window + 8) * (size_t)(o.size + strlen(o.topic) + 16);
    b.store = malloc(b.store_size);
    if (b.inflight == NULL || b.store == NULL)
        tput_die("out of memory", NULL);
    static char id[48];
    snprintf(id, sizeof id, "tput-moat-%s-%ld", o.pub ? "pub" : "sub", (long)getpid());
    cfg = (moat_mqtt_config){ .client_id = id, .clean_session = true, .keepalive_s = 60,
                              .random = moat_random32, .on_event = on_event,
                              .max_inflight = (uint16_t)o.window };
    if ((e = moat_mqtt_init(&cli, &cfg, &b)) != MOAT_OK ||
        (e = moat_mqtt_start(&cli, moat_clock_ms())) != MOAT_OK)
        tput_die("init", moat_strerror(e));
    open_link();

    if (o.pub) {
        start_ns = tput_now_ns();
        tput_pub_start(start_ns);
        bench_publish_loop();
        tput_pub_end(tput_now_ns());
    } else {
        moat_mqtt_sub s = { .filter = o.topic, .qos = (uint8_t)o.qos };
        uint64_t deadline = tput_now_ns() + (uint64_t)TPUT_CONNECT_S * 1000000000u;
        if ((e = moat_mqtt_subscribe(&cli, &s, 1, NULL, moat_clock_ms())) != MOAT_OK)
            tput_die("subscribe", moat_strerror(e));
        while (!subscribed) {
            pump();
            if (tput_now_ns() > deadline)
                tput_die("no SUBACK", NULL);
            if (!subscribed)
                io_wait(100);
        }
        tput_ready();
        uint64_t idle_from = tput_now_ns();
        long seen = 0;
        while (received < o.count) {
            pump();
            if (received != seen) {
                seen = received;
                idle_from = tput_now_ns();
            } else if (tput_now_ns() - idle_from > (uint64_t)TPUT_IDLE_S * 1000000000u) {
                break;
            }
            if (received < o.count)
                io_wait(100);
        }
        /* Acknowledge the last ones before going. */
        pump();
        tput_sub_report(received, first_ns, last_ns);
        tput_lat_report(&o);
    }
    closing = true;
    if (moat_mqtt_disconnect(&cli, moat_clock_ms()) == MOAT_OK) {
        for (int i = 0; i < 100 && moat_mqtt_get_state(&cli) == MOAT_MQTT_CLOSING; i++) {
            if (moat_mqtt_pump(&cli, &tr, moat_clock_ms()) != MOAT_OK)
                break;
            io_wait(10);
        }
    }
    if (use_tls) {
        moat_tls_close(&tls);
        moat_tls_free(&tls);
    }
    moat_tcp_close(&tcp);
    free(b.inflight);
    free(b.store);
    tput_cpu();
    return 0;
}
