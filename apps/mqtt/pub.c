/*
 * pub.c - moat-mqtt pub: publish one message (-m, -f, -s, -n) or one per
 * line of stdin (-l), wait until the broker has acknowledged every QoS 1/2
 * message, then DISCONNECT.
 *
 * With -l, lines are handed to the engine as fast as its in-flight window
 * and buffers take them; stdin is only read while the engine has room, so a
 * fast producer is slowed down instead of lines being lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "moat/timer.h"
#include "cli.h"

typedef struct pub_app {
    cli_session s;
    const cli_opts *o;
    size_t max_payload;     /* the largest message that fits the tx buffer */
    const uint8_t *msg;     /* the message waiting for the engine */
    size_t msg_len;
    bool have_msg;
    size_t consume;         /* -l: input bytes that message used, with '\n' */
    bool input_done;        /* no more messages will come */
    bool stdin_eof;
    bool need_input;        /* -l: waiting for more of stdin */
    unsigned long lines;    /* -l: lines taken so far */
    unsigned long accepted; /* messages the engine took */
    unsigned long awaiting; /* QoS 1/2 messages not yet acknowledged */
    unsigned long dropped;
    bool read_failed;       /* stdin gave an error (printed) */
} pub_app;

static pub_app app;

/*
 * Unacknowledged QoS 1/2 messages at most, as libmosquitto's default. The
 * engine's window is larger, but Mosquitto accepts only 20 incoming QoS 2
 * messages in flight from a 3.1.1 client (its receive maximum): it answers
 * the 21st with PUBREC and discards it, so the sender never learns.
 */
#define PUB_MAX_AWAITING 20u

/* The message of -f and -s, or the line buffer of -l. */
static uint8_t input[CLI_TX_SIZE];
static size_t in_start, in_len;

/* A PUBLISH must fit the tx buffer whole: fixed header (at most 5 bytes),
 * topic length and topic, packet id. */
static size_t max_payload(const cli_opts *o)
{
    size_t overhead = 5 + 2 + strlen(o->topics[0]) + 2;
    return overhead < CLI_TX_SIZE ? CLI_TX_SIZE - overhead : 0;
}

/* ------------------------------------------------------------- input -- */

static int read_all(pub_app *a, int fd, const char *name)
{
    ssize_t n;

    in_len = 0;
    do {
        n = read(fd, input + in_len, sizeof input - in_len);
        if (n > 0)
            in_len += (size_t)n;
    } while ((n > 0 && in_len < sizeof input) || (n < 0 && errno == EINTR));
    if (n < 0) {
        cli_error("cannot read %s: %s", name, strerror(errno));
        return -1;
    }
    if (in_len > a->max_payload) {
        cli_error("%s is larger than the largest message moat-mqtt sends "
                  "(%zu bytes)", name, a->max_payload);
        return -1;
    }
    return 0;
}

static int read_file(pub_app *a, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc;

    if (fd < 0) {
        cli_error("cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    rc = read_all(a, fd, path);
    close(fd);
    return rc;
}

/* The one message of -m, -f, -s or -n. */
static int load_message(pub_app *a)
{
    const cli_opts *o = a->o;

    a->msg = input;
    if (o->source == CLI_SRC_ARG) {
        a->msg = (const uint8_t *)o->message;
        in_len = strlen(o->message);
        if (in_len > a->max_payload) {
            cli_error("-m: the message is larger than the largest message "
                      "moat-mqtt sends (%zu bytes)", a->max_payload);
            return -1;
        }
    } else if (o->source == CLI_SRC_FILE && read_file(a, o->file) != 0) {
        return -1;
    } else if (o->source == CLI_SRC_STDIN && read_all(a, 0, "stdin") != 0) {
        return -1;
    } else if (o->source == CLI_SRC_NULL) {
        in_len = 0;
    }
    a->msg_len = in_len;
    a->have_msg = true;
    return 0;
}

/* -l: more of stdin, after the unused part is moved to the front. */
static int read_lines(pub_app *a)
{
    ssize_t n;

    memmove(input, input + in_start, in_len - in_start);
    in_len -= in_start;
    in_start = 0;
    n = read(0, input + in_len, sizeof input - in_len);
    if (n > 0)
        in_len += (size_t)n;
    else if (n == 0)
        a->stdin_eof = true;
    else if (errno != EINTR && errno != EAGAIN) {
        cli_error("cannot read stdin: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* -l: the next line as the waiting message. MOAT_ERR_WOULD_BLOCK when stdin
 * must be read first, or when the input is over. A last line without '\n'
 * is sent too; an empty line is an empty message, as with mosquitto_pub. */
static moat_err next_line(pub_app *a)
{
    const uint8_t *start = input + in_start;
    size_t avail = in_len - in_start;
    const uint8_t *nl = memchr(start, '\n', avail);

    a->msg = start;
    if (nl != NULL) {
        a->msg_len = (size_t)(nl - start);
        a->consume = a->msg_len + 1;
    } else if (avail > a->max_payload) {
        a->msg_len = avail;
    } else if (a->stdin_eof) {
        a->msg_len = a->consume = avail;
        a->input_done = avail == 0;
        if (a->input_done)
            return MOAT_ERR_WOULD_BLOCK;
    } else {
        a->need_input = true;
        return MOAT_ERR_WOULD_BLOCK;
    }
    if (a->msg_len > a->max_payload) {
        cli_error("line %lu of stdin is longer than the largest message "
                  "moat-mqtt sends (%zu bytes)", a->lines + 1, a->max_payload);
        return MOAT_ERR_TOO_LARGE;
    }
    a->have_msg = true;
    return MOAT_OK;
}

/* ---------------------------------------------------------- publish -- */

/* The engine refused for lack of room although nothing can free any. */
static bool stuck(const pub_app *a)
{
    return !cli_session_output_pending(&a->s) &&
           moat_mqtt_inflight_used(&a->s.c) == 0;
}

/* MOAT_OK: taken; MOAT_ERR_WOULD_BLOCK: try again after the next loop turn;
 * anything else ends the run (message printed). */
static moat_err publish_one(pub_app *a, uint32_t now_ms)
{
    const cli_opts *o = a->o;
    moat_mqtt_message m;
    uint16_t id = 0;
    moat_err err;

    if (!cli_session_connected(&a->s) ||
        (o->qos > 0 && a->awaiting >= PUB_MAX_AWAITING))
        return MOAT_ERR_WOULD_BLOCK;
    m.topic = o->topics[0];
    m.payload = a->msg;
    m.len = a->msg_len;
    m.qos = o->qos;
    m.retain = o->retain;
    err = moat_mqtt_publish(&a->s.c, &m, &id, now_ms);
    if (err == MOAT_OK) {
        cli_debug(o, "queued %zu bytes to '%s', packet id %u", m.len, m.topic, id);
        return MOAT_OK;
    }
    if ((err == MOAT_ERR_WOULD_BLOCK || err == MOAT_ERR_WINDOW_FULL) && !stuck(a))
        return MOAT_ERR_WOULD_BLOCK;
    cli_error("cannot publish %zu bytes to '%s': %s", m.len, m.topic,
              moat_strerror(err));
    return err;
}

static void message_taken(pub_app *a)
{
    a->have_msg = false;
    a->accepted++;
    if (a->o->qos > 0)
        a->awaiting++;
    if (a->o->source == CLI_SRC_LINES) {
        in_start += a->consume;
        a->lines++;
    } else {
        a->input_done = true;
    }
}

/* Hand the engine every message it will take now. */
static moat_err feed(pub_app *a, uint32_t now_ms)
{
    moat_err err;

    a->need_input = false;
    while (!a->input_done) {
        if (!a->have_msg) {
            err = next_line(a);
            if (err == MOAT_ERR_WOULD_BLOCK)
                return MOAT_OK;
            if (err != MOAT_OK)
                return err;
        }
        err = publish_one(a, now_ms);
        if (err == MOAT_ERR_WOULD_BLOCK)
            return MOAT_OK;
        if (err != MOAT_OK)
            return err;
        message_taken(a);
    }
    return MOAT_OK;
}

static void pub_event(cli_session *s, const moat_mqtt_event *ev)
{
    pub_app *a = s->app;

    if (ev->type == MOAT_MQTT_EV_PUBLISHED && a->awaiting > 0) {
        a->awaiting--;
    } else if (ev->type == MOAT_MQTT_EV_DROPPED && a->awaiting > 0) {
        a->awaiting--;
        a->dropped++;
        cli_error("message with packet id %u was dropped unacknowledged: %s",
                  ev->packet_id, moat_strerror(ev->err));
    }
}

/* Everything taken, acknowledged, and written to the socket. */
static bool finished(const pub_app *a)
{
    return a->input_done && !a->have_msg && a->awaiting == 0 &&
           cli_session_connected(&a->s) && !cli_session_output_pending(&a->s);
}

/* ------------------------------------------------------------- loop -- */

/* SIGINT/SIGTERM: the first stops taking input and lets what was sent be
 * acknowledged; the second gives up. */
static int interrupted(pub_app *a)
{
    if (cli_interrupted() > 1 || (a->accepted == 0 && a->o->source != CLI_SRC_LINES)) {
        cli_error("interrupted; %lu message(s) not acknowledged",
                  a->awaiting + (a->have_msg ? 1u : 0u));
        return CLI_EXIT_ERROR;
    }
    a->input_done = true;
    a->have_msg = false;
    return CLI_EXIT_OK;
}

static void wait_io(pub_app *a, uint32_t wait_ms)
{
    struct pollfd in;
    bool want_input = a->need_input && !a->stdin_eof && !a->input_done;

    in.fd = 0;
    in.events = POLLIN;
    in.revents = 0;
    cli_session_wait(&a->s, &in, want_input ? 1 : 0, wait_ms);
    if (want_input && in.revents != 0 && read_lines(a) != 0)
        a->read_failed = true;
}

static int report(const pub_app *a)
{
    if (a->dropped > 0) {
        cli_error("%lu of %lu message(s) were dropped unacknowledged", a->dropped,
                  a->accepted);
        return CLI_EXIT_ERROR;
    }
    cli_debug(a->o, "%lu message(s) published", a->accepted);
    return CLI_EXIT_OK;
}

static int timed_out(const pub_app *a)
{
    cli_error("timed out after %lu s: %s%lu message(s) not acknowledged",
              a->o->timeout_s, a->s.connected_once ? "" : "never connected; ",
              a->awaiting + (a->have_msg ? 1u : 0u));
    return CLI_EXIT_ERROR;
}

static int run(pub_app *a, uint32_t start_ms)
{
    const cli_opts *o = a->o;
    uint32_t limit = (uint32_t)(o->timeout_s * 1000u), now;

    for (;;) {
        now = moat_clock_ms();
        if (cli_session_service(&a->s, now) != MOAT_OK)
            return CLI_EXIT_ERROR;
        if (a->s.done)
            return report(a);
        if (cli_interrupted() && interrupted(a) != CLI_EXIT_OK)
            return CLI_EXIT_ERROR;
        if (!a->s.closing && feed(a, now) != MOAT_OK)
            return CLI_EXIT_ERROR;
        if (finished(a))
            cli_session_disconnect(&a->s, now);
        if (limit && moat_elapsed(start_ms, now) >= limit && !a->s.closing)
            return timed_out(a);
        wait_io(a, limit && !a->s.closing ? limit - moat_elapsed(start_ms, now)
                                          : UINT32_MAX);
        if (a->read_failed)
            return CLI_EXIT_ERROR;
    }
}

int cli_pub(const cli_opts *o)
{
    pub_app *a = &app;
    uint32_t start = moat_clock_ms();
    int lines = o->source == CLI_SRC_LINES;
    int rc = CLI_EXIT_ERROR;

    if (cli_session_init(&a->s, o, pub_event, a, start) == MOAT_OK) {
        a->o = o;
        a->max_payload = max_payload(o);
        a->s.reconnect = lines;  /* a stream rides out a broker restart */
        if (lines || load_message(a) == 0)
            rc = run(a, start);
    }
    cli_session_free(&a->s);
    return rc;
}
