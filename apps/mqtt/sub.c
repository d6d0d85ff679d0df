/*
 * sub.c - moat-mqtt sub: subscribe to one or more filters and print each
 * message on stdout, one per line ("topic payload" with -v).
 *
 * A message larger than the receive buffer arrives from the engine in
 * pieces (MOAT_MQTT_LARGE_STREAM); the pieces are written as they come, so
 * any size is printed whole. The subscription is made again after every
 * reconnect, as mosquitto_sub does.
 */
#include <string.h>

#include "moat/timer.h"
#include "cli.h"

typedef struct sub_app {
    cli_session s;
    const cli_opts *o;
    moat_mqtt_sub subs[CLI_MAX_TOPICS];
    bool want_subscribe;    /* connected, SUBSCRIBE not queued yet */
    unsigned long received; /* whole messages printed */
    bool failed;            /* an error was printed: exit 1 */
} sub_app;

static sub_app app;

static bool count_reached(const sub_app *a)
{
    return a->o->count > 0 && a->received >= a->o->count;
}

static void print_piece(sub_app *a, const moat_mqtt_event *ev)
{
    if (count_reached(a))
        return;  /* arrived in the same read as the last one counted */
    if (ev->offset == 0 && a->o->verbose) {
        fwrite(ev->topic.data, 1, ev->topic.len, stdout);
        putchar(' ');
    }
    fwrite(ev->payload, 1, ev->len, stdout);
    if (ev->offset + ev->len < ev->total)
        return;
    putchar('\n');
    a->received++;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error("cannot write to stdout");
        a->failed = true;
    }
}

static void check_suback(sub_app *a, const moat_mqtt_event *ev)
{
    size_t i, refused = 0;

    for (i = 0; i < ev->count && i < a->o->topic_count; i++) {
        if (ev->codes[i] == MOAT_MQTT_SUBACK_FAILURE) {
            cli_error("the broker refused the subscription to '%s'",
                      a->o->topics[i]);
            refused++;
        }
    }
    if (refused > 0 && refused == a->o->topic_count) {
        cli_error("every subscription was refused");
        a->failed = true;
    }
}

static void sub_event(cli_session *s, const moat_mqtt_event *ev)
{
    sub_app *a = s->app;

    switch (ev->type) {
    case MOAT_MQTT_EV_CONNECTED:
        a->want_subscribe = true;
        break;
    case MOAT_MQTT_EV_SUBACK:
        check_suback(a, ev);
        break;
    case MOAT_MQTT_EV_MESSAGE:
        print_piece(a, ev);
        break;
    case MOAT_MQTT_EV_ERROR:
        cli_error("%s%.*s%s%s", ev->topic.len ? "message on '" : "",
                  (int)ev->topic.len, (const char *)ev->topic.data,
                  ev->topic.len ? "' skipped: " : "", moat_strerror(ev->err));
        break;
    default:
        break;
    }
}

static moat_err subscribe(sub_app *a, uint32_t now_ms)
{
    moat_err err;

    if (!a->want_subscribe || !cli_session_connected(&a->s))
        return MOAT_OK;
    err = moat_mqtt_subscribe(&a->s.c, a->subs, a->o->topic_count, NULL, now_ms);
    if (err == MOAT_OK)
        a->want_subscribe = false;
    else if (err == MOAT_ERR_WOULD_BLOCK || err == MOAT_ERR_WINDOW_FULL)
        return MOAT_OK;  /* room comes once queued bytes are sent */
    else
        cli_error("cannot subscribe: %s", moat_strerror(err));
    return err;
}

/* -W ran out: the normal end, unless -C asked for more than came. */
static void timed_out(sub_app *a, uint32_t now_ms)
{
    if (a->o->count > 0) {
        cli_error("timed out after %lu s with %lu of %lu message(s)",
                  a->o->timeout_s, a->received, a->o->count);
        a->failed = true;
    }
    cli_session_disconnect(&a->s, now_ms);
}

static int run(sub_app *a, uint32_t start_ms)
{
    const cli_opts *o = a->o;
    uint32_t limit = (uint32_t)(o->timeout_s * 1000u), now;

    for (;;) {
        now = moat_clock_ms();
        if (cli_session_service(&a->s, now) != MOAT_OK)
            return CLI_EXIT_ERROR;
        if (a->s.done)
            return a->failed ? CLI_EXIT_ERROR : CLI_EXIT_OK;
        if (a->failed || count_reached(a) || cli_interrupted())
            cli_session_disconnect(&a->s, now);
        else if (limit && moat_elapsed(start_ms, now) >= limit)
            timed_out(a, now);
        else if (subscribe(a, now) != MOAT_OK)
            return CLI_EXIT_ERROR;
        if (a->s.done)
            return a->failed ? CLI_EXIT_ERROR : CLI_EXIT_OK;
        cli_session_wait(&a->s, NULL, 0,
                         limit && !a->s.closing ? limit - moat_elapsed(start_ms, now)
                                                : UINT32_MAX);
    }
}

int cli_sub(const cli_opts *o)
{
    sub_app *a = &app;
    uint32_t start = moat_clock_ms();
    size_t i;
    int rc = CLI_EXIT_ERROR;

    if (cli_session_init(&a->s, o, sub_event, a, start) == MOAT_OK) {
        a->o = o;
        a->s.reconnect = true;
        for (i = 0; i < o->topic_count; i++) {
            a->subs[i].filter = o->topics[i];
            a->subs[i].qos = o->qos;
        }
        rc = run(a, start);
    }
    cli_session_free(&a->s);
    return rc;
}
