/*
 * session.c - one MQTT client session of moat-mqtt: the engine, its
 * buffers, the link to the broker, and one step of the poll() loop.
 *
 * The engine is sans-I/O; this file is the port around it. Each loop turn
 * the subcommand calls cli_session_service() (connect when due, pump bytes,
 * run timers), does its own work, then sleeps in cli_session_wait() until
 * the socket, its input, a signal or the engine's next deadline. Nothing
 * here busy-waits.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "moat/timer.h"
#include "cli.h"

/* The engine's memory, sized in cli.h. One session per process. */
static uint8_t tx_buf[CLI_TX_SIZE];
static uint8_t rx_buf[CLI_RX_SIZE];
static uint8_t store_buf[CLI_STORE_SIZE];
static moat_mqtt_inflight window[CLI_INFLIGHT];
static uint8_t qos2_set[MOAT_MQTT_QOS2_SET_SIZE];

#define CLI_CONNECT_TIMEOUT_MS 10000u  /* TCP connect and TLS handshake */
#define CLI_DISCONNECT_GRACE_MS 2000u  /* to get DISCONNECT out */

/* ----------------------------------------------------------- signals -- */

static volatile sig_atomic_t interrupted;
static int signal_pipe[2] = {-1, -1};

/* The pipe wakes poll(): a flag alone could be missed between the check
 * and the call. */
static void on_signal(int sig)
{
    int saved = errno;
    ssize_t r;

    (void)sig;
    interrupted = interrupted + 1;
    r = write(signal_pipe[1], "s", 1);
    (void)r;
    errno = saved;
}

static void set_flags(int fd)
{
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

void cli_signals_init(void)
{
    struct sigaction sa;

    if (pipe(signal_pipe) == 0) {
        set_flags(signal_pipe[0]);
        set_flags(signal_pipe[1]);
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_interrupted(void)
{
    return interrupted;
}

static void drain_signal_pipe(void)
{
    char buf[16];

    while (read(signal_pipe[0], buf, sizeof buf) > 0)
        ;
}

/* ------------------------------------------------------------- debug -- */

static const char *state_name(unsigned st)
{
    static const char *const names[] = {"IDLE", "BACKOFF", "WAIT_CONNACK",
                                        "CONNECTED", "CLOSING"};
    return st < sizeof names / sizeof names[0] ? names[st] : "?";
}

static void show_state(cli_session *s)
{
    unsigned st = moat_mqtt_get_state(&s->c);

    if (st != s->shown_state)
        cli_debug(s->o, "state %s -> %s", state_name(s->shown_state),
                  state_name(st));
    s->shown_state = (uint8_t)st;
}

static void debug_message(const cli_session *s, const moat_mqtt_event *ev)
{
    cli_debug(s->o, "event %s '%.*s' qos %u%s%s, bytes %zu..%zu of %zu, window %zu",
              ev->type == MOAT_MQTT_EV_MESSAGE ? "MESSAGE" : "ERROR on message",
              (int)ev->topic.len, (const char *)ev->topic.data, ev->qos,
              ev->retain ? " retained" : "", ev->dup ? " dup" : "", ev->offset,
              ev->offset + ev->len, ev->total, moat_mqtt_inflight_used(&s->c));
}

static void debug_event(const cli_session *s, const moat_mqtt_event *ev)
{
    const cli_opts *o = s->o;

    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED:
        cli_debug(o, "event CONNECTED, session present %d", ev->session_present);
        break;
    case MOAT_MQTT_EV_DISCONNECTED:
        if (s->closing)
            cli_debug(o, "event DISCONNECTED, as asked");
        else
            cli_debug(o, "event DISCONNECTED: %s", moat_strerror(ev->err));
        break;
    case MOAT_MQTT_EV_MESSAGE:
        debug_message(s, ev);
        break;
    case MOAT_MQTT_EV_PUBLISHED:
        cli_debug(o, "event PUBLISHED, packet id %u", ev->packet_id);
        break;
    case MOAT_MQTT_EV_DROPPED:
        cli_debug(o, "event DROPPED, packet id %u", ev->packet_id);
        break;
    case MOAT_MQTT_EV_SUBACK:
        cli_debug(o, "event SUBACK, packet id %u, %zu filters%s", ev->packet_id,
                  ev->count, ev->err != MOAT_OK ? ", some refused" : "");
        break;
    case MOAT_MQTT_EV_UNSUBACK:
        cli_debug(o, "event UNSUBACK, packet id %u", ev->packet_id);
        break;
    case MOAT_MQTT_EV_ERROR:
        if (ev->topic.len > 0)
            debug_message(s, ev);
        cli_debug(o, "event ERROR: %s", moat_strerror(ev->err));
        break;
    }
}

static void session_event(void *user, const moat_mqtt_event *ev)
{
    cli_session *s = user;

    debug_event(s, ev);
    if (ev->type == MOAT_MQTT_EV_CONNECTED)
        s->connected_once = true;
    if (s->on_event != NULL)
        s->on_event(s, ev);
}

/* ----------------------------------------------------------- set-up -- */

static void fill_config(moat_mqtt_config *cfg, const cli_opts *o, cli_session *s)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->client_id = o->client_id;
    cfg->username = o->username;
    if (o->password != NULL) {
        cfg->password = (const uint8_t *)o->password;
        cfg->password_len = (uint16_t)strlen(o->password);
    }
    cfg->will_topic = o->will_topic;
    if (o->will_payload != NULL) {
        cfg->will_payload = (const uint8_t *)o->will_payload;
        cfg->will_len = (uint16_t)strlen(o->will_payload);
    }
    cfg->will_qos = o->will_qos;
    cfg->will_retain = o->will_retain;
    cfg->clean_session = o->clean_session;
    cfg->keepalive_s = o->keepalive_s;
    cfg->random = moat_random32;
    cfg->on_event = session_event;
    cfg->user = s;
    cfg->large = MOAT_MQTT_LARGE_STREAM;
}

moat_err cli_session_init(cli_session *s, const cli_opts *o, cli_event_fn fn,
                          void *app, uint32_t now_ms)
{
    moat_mqtt_buffers b;
    memset(&b, 0, sizeof b);
    b.qos2_set = qos2_set;
    moat_err err;

    memset(s, 0, sizeof *s);
    s->o = o;
    s->on_event = fn;
    s->app = app;
    s->batch.hold_us = MOAT_BATCH_HOLD_US;
    err = cli_link_init(&s->link, o);
    if (err != MOAT_OK)
        return err;  /* printed, with the file at fault */
    fill_config(&s->cfg, o, s);
    b.tx = tx_buf;
    b.tx_size = sizeof tx_buf;
    b.rx = rx_buf;
    b.rx_size = sizeof rx_buf;
    b.store = store_buf;
    b.store_size = sizeof store_buf;
    b.inflight = window;
    b.inflight_count = CLI_INFLIGHT;
    err = moat_mqtt_init(&s->c, &s->cfg, &b);
    if (err == MOAT_OK)
        err = moat_mqtt_start(&s->c, now_ms);
    if (err == MOAT_OK)
        show_state(s);
    if (err != MOAT_OK)
        cli_error("cannot set up the MQTT client: %s", moat_strerror(err));
    return err;
}

/* ------------------------------------------------------------ the link -- */

void cli_session_close(cli_session *s)
{
    if (s->link_state != CLI_LINK_CLOSED)
        moat_link_close(&s->link.net);
    s->link_state = CLI_LINK_CLOSED;
}

void cli_session_free(cli_session *s)
{
    cli_session_close(s);
    cli_link_free(&s->link);
}

static bool is_refusal(moat_err err)
{
    return err <= MOAT_ERR_CONNACK_VERSION && err >= MOAT_ERR_CONNACK_UNKNOWN;
}

/* The peer sent bytes that are not MQTT 3.1.1 from a server. */
static bool is_garbage(moat_err err)
{
    return err <= MOAT_ERR_MALFORMED && err >= MOAT_ERR_PROTOCOL;
}

/* The link is gone and the engine knows. Decide whether the run goes on. */
static moat_err lost(cli_session *s, moat_err err, const char *what)
{
    const cli_opts *o = s->o;
    const char *words = moat_link_error(&s->link.net, err);

    if (is_refusal(err)) {
        cli_error("%s:%u: %s", o->host, o->port, words);
        return err;
    }
    if (!s->connected_once && is_garbage(err)) {
        cli_error("%s %s:%u: %s (is it an MQTT broker?)", what, o->host, o->port,
                  words);
        return err;
    }
    if (s->connected_once && s->reconnect) {
        cli_error("%s %s:%u: %s; trying again", what, o->host, o->port, words);
        return MOAT_OK;
    }
    cli_error("%s %s:%u: %s", what, o->host, o->port, words);
    return err != MOAT_OK ? err : MOAT_ERR_CLOSED;
}

static moat_err open_failed(cli_session *s, moat_err err, uint32_t now_ms)
{
    cli_session_close(s);
    moat_mqtt_link_down(&s->c, err, now_ms);
    return lost(s, err, "cannot connect to");
}

static moat_err link_up(cli_session *s, uint32_t now_ms)
{
    moat_err err;

    cli_debug(s->o, "link to %s:%u is open", s->o->host, s->o->port);
    s->link_state = CLI_LINK_UP;
    err = moat_mqtt_link_up(&s->c, now_ms);
    if (err != MOAT_OK)
        return open_failed(s, err, now_ms);
    return MOAT_OK;
}

static moat_err open_link(cli_session *s, uint32_t now_ms)
{
    moat_err err;

    cli_debug(s->o, "connecting to %s:%u%s", s->o->host, s->o->port,
              s->o->cafile != NULL ? " (mutual TLS)" : "");
    s->opened_ms = now_ms;
    err = cli_link_open(&s->link);
    if (err == MOAT_OK)
        return link_up(s, now_ms);
    if (err != MOAT_ERR_WOULD_BLOCK)
        return open_failed(s, err, now_ms);
    s->link_state = CLI_LINK_OPENING;
    return MOAT_OK;
}

static moat_err progress_link(cli_session *s, uint32_t now_ms)
{
    moat_err err = cli_link_poll(&s->link);

    if (err == MOAT_OK)
        return link_up(s, now_ms);
    if (err != MOAT_ERR_WOULD_BLOCK)
        return open_failed(s, err, now_ms);
    if (moat_elapsed(s->opened_ms, now_ms) >= CLI_CONNECT_TIMEOUT_MS)
        return open_failed(s, MOAT_ERR_TIMEOUT, now_ms);
    return MOAT_OK;
}

bool cli_session_output_pending(const cli_session *s)
{
    size_t len = 0;

    moat_mqtt_output(&s->c, &len);
    return len > 0;
}

static moat_err pump(cli_session *s, uint32_t now_ms)
{
    moat_err err = moat_mqtt_pump(&s->c, &s->link.net.t, now_ms);
    moat_mqtt_state st = moat_mqtt_get_state(&s->c);

    if (st == MOAT_MQTT_CLOSING && !cli_session_output_pending(s)) {
        cli_session_close(s);                         /* DISCONNECT is out */
        moat_mqtt_link_down(&s->c, MOAT_OK, now_ms);
        s->done = true;
        return MOAT_OK;
    }
    if (st == MOAT_MQTT_IDLE || (err != MOAT_OK && s->closing)) {
        cli_session_close(s);
        s->done = true;
        return MOAT_OK;
    }
    if (err == MOAT_OK)
        return MOAT_OK;
    cli_session_close(s);  /* the engine has called link_down itself */
    return lost(s, err, s->connected_once ? "connection lost to" : "cannot connect to");
}

moat_err cli_session_service(cli_session *s, uint32_t now_ms)
{
    moat_err err = MOAT_OK;

    if (s->closing && moat_time_reached(now_ms, s->close_by_ms)) {
        cli_session_close(s);
        s->done = true;
    }
    if (s->done)
        return MOAT_OK;
    if (s->closing && moat_mqtt_get_state(&s->c) == MOAT_MQTT_CONNECTED)
        moat_mqtt_disconnect(&s->c, now_ms);  /* tx was full before */
    if (s->link_state == CLI_LINK_CLOSED && moat_mqtt_connect_due(&s->c, now_ms))
        err = open_link(s, now_ms);
    if (err == MOAT_OK && s->link_state == CLI_LINK_OPENING)
        err = progress_link(s, now_ms);
    if (err == MOAT_OK && s->link_state == CLI_LINK_UP)
        err = pump(s, now_ms);
    show_state(s);
    return err;
}

bool cli_session_connected(const cli_session *s)
{
    return s->link_state == CLI_LINK_UP &&
           moat_mqtt_get_state(&s->c) == MOAT_MQTT_CONNECTED;
}

void cli_session_disconnect(cli_session *s, uint32_t now_ms)
{
    if (s->closing || s->done)
        return;
    s->closing = true;
    s->close_by_ms = now_ms + CLI_DISCONNECT_GRACE_MS;
    if (cli_session_connected(s)) {
        moat_mqtt_disconnect(&s->c, now_ms);  /* tx full: again next turn */
        return;
    }
    cli_session_close(s);
    s->done = true;
}

/* ------------------------------------------------------------ waiting -- */

static uint32_t until(uint32_t now_ms, uint32_t deadline_ms)
{
    return moat_time_reached(now_ms, deadline_ms) ? 0 : deadline_ms - now_ms;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* The engine can take input: moat_mqtt_pump reads only while tx has room
 * for the answers. */
static bool engine_can_read(const cli_session *s)
{
    size_t pending = 0;

    moat_mqtt_output(&s->c, &pending);
    return CLI_TX_SIZE - pending > 64;
}

static uint32_t wait_limit(const cli_session *s, uint32_t wait_ms)
{
    uint32_t now = moat_clock_ms();
    uint32_t t = min_u32(wait_ms, moat_mqtt_next_timeout(&s->c, now));

    /* Bytes held inside mbedTLS never make the socket readable again. */
    if (s->link_state == CLI_LINK_UP && moat_link_pending(&s->link.net) &&
        engine_can_read(s))
        return 0;
    if (s->link_state == CLI_LINK_OPENING) {
        t = min_u32(t, until(now, s->opened_ms + CLI_CONNECT_TIMEOUT_MS));
        /* a name lookup has no socket to wake us; a fallback may be due */
        t = min_u32(t, moat_tcp_poll_in(&s->link.net.tcp, now));
    }
    if (s->closing)
        t = min_u32(t, until(now, s->close_by_ms));
    return t;
}

/* Readable matters only while the engine can read: moat_mqtt_pump stops
 * reading when tx is (nearly) full, and polling for input then would spin
 * until the socket takes the queued bytes. */
static void link_events(const cli_session *s, struct pollfd *p)
{
    size_t pending = 0;
    bool w, r;

    moat_mqtt_output(&s->c, &pending);
    w = moat_link_want_write(&s->link.net, pending > 0);
    r = engine_can_read(s) || !w;
    p->fd = moat_link_fd(&s->link.net);
    p->events = (short)((r ? POLLIN : 0) | (w ? POLLOUT : 0));
}

void cli_session_wait(cli_session *s, struct pollfd *extra, size_t n_extra,
                      uint32_t wait_ms)
{
    struct pollfd p[4];
    size_t n = 0, i, first_extra;
    uint32_t t = wait_limit(s, wait_ms);

    p[n].fd = signal_pipe[0];
    p[n++].events = POLLIN;
    if (s->link_state != CLI_LINK_CLOSED)
        link_events(s, &p[n++]);
    first_extra = n;
    for (i = 0; i < n_extra && n < sizeof p / sizeof p[0]; i++)
        p[n++] = extra[i];
    for (i = 0; i < n; i++)
        p[i].revents = 0;
    moat_poll_batched(&s->batch, p, (nfds_t)n,
                      t == UINT32_MAX ? -1 : t > INT_MAX ? INT_MAX : (int)t);
    if (p[0].revents != 0)
        drain_signal_pipe();
    for (i = 0; i < n_extra && first_extra + i < n; i++)
        extra[i].revents = p[first_extra + i].revents;
}
