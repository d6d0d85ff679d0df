/*
 * http_fetch.c - HTTPS GET over moat_tls with resume by Range, as a
 * non-blocking state machine (moat/http_fetch.h).
 *
 * Invariants:
 *  - next is the resource offset the next request asks for: every byte
 *    before it was delivered to the caller exactly once (since the last
 *    response that went back to offset 0).
 *  - state TCP/TLS/SEND/RECV: tcp is open and deadline_ms is when the
 *    connection counts as dead if nothing moves before.
 *  - state WAIT: no socket is open; the next connection starts at deadline_ms.
 */
#include "moat/http_fetch.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "moat/tls.h"

enum { S_IDLE = 0, S_DUE, S_TCP, S_TLS, S_SEND, S_RECV, S_WAIT, S_DONE, S_FAILED };

#define DEFAULT_ATTEMPTS 5u
#define DEFAULT_RETRY_MS 1000u
#define DEFAULT_IDLE_MS 30000u

static bool expired(uint32_t deadline, uint32_t now)
{
    return (int32_t)(now - deadline) >= 0;
}

static moat_err body_cb(void *user, uint64_t offset, const uint8_t *data, size_t len)
{
    moat_http_fetch *f = user;
    moat_err e = f->cfg.on_body(f->cfg.user, offset, data, len);
    if (e == MOAT_OK) {
        f->delivered += len;
        f->progress = true;
    }
    return e;
}

static moat_err start_cb(void *user, const moat_http_get *g)
{
    moat_http_fetch *f = user;
    int st = moat_http_status(g);
    if (st == 200 || st == 206)
        snprintf(f->etag, sizeof f->etag, "%s", moat_http_etag(g));
    return f->cfg.on_start != NULL ? f->cfg.on_start(f->cfg.user, g) : MOAT_OK;
}

static moat_err fail(moat_http_fetch *f, moat_err e, const char *words)
{
    moat_tcp_close(&f->tcp);
    f->err = e;
    f->state = S_FAILED;
    if (words != NULL && words[0] != '\0')
        snprintf(f->msg, sizeof f->msg, "%s", words);
    else
        snprintf(f->msg, sizeof f->msg, "update server %s:%u: %s", f->cfg.host,
                 (unsigned)f->cfg.port, moat_strerror(e));
    return e;
}

/* The connection broke (or never came up) in a way worth another try. */
static moat_err broken(moat_http_fetch *f, moat_err e, const char *words, uint32_t now)
{
    moat_tcp_close(&f->tcp);
    if (f->state == S_RECV && moat_http_status(&f->get) != 0)
        f->next = moat_http_next_offset(&f->get);
    if (f->progress)
        f->failures = 0;
    f->failures++;
    if (words != NULL && words[0] != '\0')
        snprintf(f->msg, sizeof f->msg, "%s", words);
    else
        snprintf(f->msg, sizeof f->msg, "update server %s:%u: %s", f->cfg.host,
                 (unsigned)f->cfg.port, moat_strerror(e));
    if (f->failures >= f->cfg.attempts) {
        size_t n = strlen(f->msg);
        snprintf(f->msg + n, sizeof f->msg - n, " (gave up after %u attempts)",
                 (unsigned)f->failures);
        f->err = e;
        f->state = S_FAILED;
        return e;
    }
    f->state = S_WAIT;
    f->deadline_ms = now + f->cfg.retry_ms;
    return MOAT_ERR_WOULD_BLOCK;
}

static bool retryable(moat_err e)
{
    return e == MOAT_ERR_CLOSED || e == MOAT_ERR_IO || e == MOAT_ERR_TIMEOUT ||
           e == MOAT_ERR_CONNECT || e == MOAT_ERR_RESOLVE;
}

moat_err moat_http_fetch_start(moat_http_fetch *f, const moat_http_fetch_config *cfg,
                               uint32_t now_ms)
{
    size_t n;

    if (f == NULL)
        return MOAT_ERR_ARG;
    memset(f, 0, sizeof *f);
    moat_tcp_init(&f->tcp);
    f->state = S_FAILED;
    f->err = MOAT_ERR_ARG;
    if (cfg == NULL || cfg->tls == NULL || cfg->host == NULL || cfg->host[0] == '\0' ||
        cfg->path == NULL || cfg->on_body == NULL || cfg->port == 0) {
        snprintf(f->msg, sizeof f->msg,
                 "download needs a TLS client, a host, a port, a path and a body callback");
        return MOAT_ERR_ARG;
    }
    for (n = 0; cfg->headers != NULL && cfg->headers[n] != NULL; n++) {
        if (n == MOAT_HTTP_FETCH_HEADERS_MAX) {
            snprintf(f->msg, sizeof f->msg, "download takes at most %u extra headers",
                     MOAT_HTTP_FETCH_HEADERS_MAX);
            return MOAT_ERR_ARG;
        }
        f->hdrs[n] = cfg->headers[n];
    }
    f->nhdrs = (uint8_t)n;
    if (cfg->if_range != NULL && strlen(cfg->if_range) >= sizeof f->etag) {
        snprintf(f->msg, sizeof f->msg, "download: if_range is over %zu bytes",
                 sizeof f->etag - 1);
        return MOAT_ERR_ARG;
    }
    snprintf(f->etag, sizeof f->etag, "%s", cfg->if_range != NULL ? cfg->if_range : "");
    f->cfg = *cfg;
    if (f->cfg.attempts == 0)
        f->cfg.attempts = DEFAULT_ATTEMPTS;
    if (f->cfg.retry_ms == 0)
        f->cfg.retry_ms = DEFAULT_RETRY_MS;
    if (f->cfg.idle_ms == 0)
        f->cfg.idle_ms = DEFAULT_IDLE_MS;
    f->next = cfg->resume_from;
    f->err = MOAT_OK;
    f->state = S_DUE;
    f->deadline_ms = now_ms;
    return MOAT_OK;
}

/* A new request on a new connection, from f->next. */
static moat_err open_connection(moat_http_fetch *f, uint32_t now)
{
    moat_http_request rq;
    moat_err e;
    size_t n;

    memset(&rq, 0, sizeof rq);
    rq.host = f->cfg.host;
    rq.port = f->cfg.port;
    rq.path = f->cfg.path;
    rq.range_from = f->next;
    if (f->cfg.range_len > 0) {
        uint64_t done = f->next - f->cfg.resume_from;
        rq.range_len = f->cfg.range_len > done ? f->cfg.range_len - done : 1u;
    }
    /* the extra lines, then If-Range when resuming bytes of a known version */
    n = f->nhdrs;
    f->hdrs[n] = NULL;
    if (f->next > 0 && f->etag[0] != '\0') {
        snprintf(f->if_range, sizeof f->if_range, "If-Range: %s", f->etag);
        f->hdrs[n] = f->if_range;
    }
    rq.headers = f->hdrs;
    rq.max_total = f->cfg.max_total;
    rq.on_body = body_cb;
    rq.on_start = start_cb;
    rq.user = f;
    e = moat_http_get_init(&f->get, &rq, f->req, sizeof f->req, &f->req_len);
    if (e != MOAT_OK)
        return fail(f, e, moat_http_last_error(&f->get));
    f->req_sent = 0;
    f->progress = false;
    f->connections++;
    f->deadline_ms = now + f->cfg.idle_ms;
    e = moat_tcp_connect_start(&f->tcp, f->cfg.host, f->cfg.port);
    if (e == MOAT_ERR_WOULD_BLOCK) {
        f->state = S_TCP;
        f->want_write = true;
        return MOAT_ERR_WOULD_BLOCK;
    }
    if (e != MOAT_OK) {
        char w[200];
        snprintf(w, sizeof w, "cannot connect to update server %s:%u: %s", f->cfg.host,
                 (unsigned)f->cfg.port, moat_strerror(e));
        f->state = S_TCP;
        return broken(f, e, w, now);
    }
    f->state = S_TCP;
    return MOAT_OK;
}

static moat_err start_tls(moat_http_fetch *f, uint32_t now)
{
    moat_err e;
    moat_tcp_transport(&f->tcp, &f->tcp_t);
    e = moat_tls_connect_start(f->cfg.tls, &f->tcp_t, f->cfg.host);
    if (e != MOAT_OK)
        return fail(f, e, moat_tls_last_error(f->cfg.tls));
    f->state = S_TLS;
    f->deadline_ms = now + f->cfg.idle_ms;
    return MOAT_OK;
}

/* The response is complete: close politely (best effort) and finish. */
static moat_err finished(moat_http_fetch *f)
{
    (void)moat_tls_close(f->cfg.tls);
    moat_tcp_close(&f->tcp);
    f->state = S_DONE;
    f->err = MOAT_OK;
    f->msg[0] = '\0';
    return MOAT_OK;
}

static moat_err receive(moat_http_fetch *f, uint32_t now)
{
    for (;;) {
        long n = f->tls_t.recv(f->tls_t.ctx, f->buf, sizeof f->buf);
        moat_err e;
        if (n > 0) {
            e = moat_http_input(&f->get, f->buf, (size_t)n, NULL);
            f->deadline_ms = now + f->cfg.idle_ms;
            if (e == MOAT_OK)
                return finished(f);
            if (e != MOAT_ERR_WOULD_BLOCK) {
                /* a body that ended short inside a complete message */
                if (e == MOAT_ERR_CLOSED)
                    return broken(f, e, moat_http_last_error(&f->get), now);
                return fail(f, e, moat_http_last_error(&f->get));
            }
            continue;
        }
        if (n == MOAT_ERR_WOULD_BLOCK) {
            if (moat_tls_pending(f->cfg.tls))
                continue;
            f->want_write = false;
            if (expired(f->deadline_ms, now))
                return broken(f, MOAT_ERR_TIMEOUT, "update server went silent", now);
            return MOAT_ERR_WOULD_BLOCK;
        }
        /* end of stream or a broken connection */
        e = moat_http_eof(&f->get);
        if (e == MOAT_OK)
            return finished(f);
        if (retryable(e))
            return broken(f, e, moat_http_last_error(&f->get), now);
        return fail(f, e, moat_http_last_error(&f->get));
    }
}

moat_err moat_http_fetch_poll(moat_http_fetch *f, uint32_t now_ms)
{
    moat_err e;
    long n;

    for (;;) {
        switch (f->state) {
        case S_DONE:
            return MOAT_OK;
        case S_FAILED:
            return f->err;
        case S_WAIT:
            if (!expired(f->deadline_ms, now_ms))
                return MOAT_ERR_WOULD_BLOCK;
            f->state = S_DUE;
            break;
        case S_DUE:
            e = open_connection(f, now_ms);
            if (e != MOAT_OK)
                return e;
            break;
        case S_TCP:
            e = moat_tcp_connect_poll(&f->tcp);
            if (e == MOAT_OK) {
                e = start_tls(f, now_ms);
                if (e != MOAT_OK)
                    return e;
            } else if (e == MOAT_ERR_WOULD_BLOCK) {
                f->want_write = true;
                if (expired(f->deadline_ms, now_ms))
                    return broken(f, MOAT_ERR_TIMEOUT, "update server did not accept the connection in time", now_ms);
                return MOAT_ERR_WOULD_BLOCK;
            } else {
                char w[200];
                snprintf(w, sizeof w, "cannot connect to update server %s:%u: %s",
                         f->cfg.host, (unsigned)f->cfg.port, moat_strerror(e));
                return broken(f, e, w, now_ms);
            }
            break;
        case S_TLS:
            e = moat_tls_connect_step(f->cfg.tls);
            if (e == MOAT_OK) {
                moat_tls_transport(f->cfg.tls, &f->tls_t);
                f->state = S_SEND;
            } else if (e == MOAT_ERR_WOULD_BLOCK) {
                f->want_write = moat_tls_want_write(f->cfg.tls);
                if (expired(f->deadline_ms, now_ms))
                    return broken(f, MOAT_ERR_TIMEOUT, "TLS handshake with the update server timed out", now_ms);
                return MOAT_ERR_WOULD_BLOCK;
            } else if (retryable(e)) {
                return broken(f, e, moat_tls_last_error(f->cfg.tls), now_ms);
            } else {
                return fail(f, e, moat_tls_last_error(f->cfg.tls));
            }
            break;
        case S_SEND:
            n = f->tls_t.send(f->tls_t.ctx, f->req + f->req_sent, f->req_len - f->req_sent);
            if (n > 0) {
                f->req_sent += (size_t)n;
                if (f->req_sent == f->req_len) {
                    f->state = S_RECV;
                    f->deadline_ms = now_ms + f->cfg.idle_ms;
                }
            } else if (n == MOAT_ERR_WOULD_BLOCK) {
                f->want_write = true;
                if (expired(f->deadline_ms, now_ms))
                    return broken(f, MOAT_ERR_TIMEOUT, "sending the request to the update server timed out", now_ms);
                return MOAT_ERR_WOULD_BLOCK;
            } else if (retryable((moat_err)n)) {
                return broken(f, (moat_err)n, moat_tls_last_error(f->cfg.tls), now_ms);
            } else {
                return fail(f, (moat_err)n, moat_tls_last_error(f->cfg.tls));
            }
            break;
        case S_RECV:
            return receive(f, now_ms);
        default:
            return fail(f, MOAT_ERR_STATE, "download was not started");
        }
    }
}

int moat_http_fetch_fd(const moat_http_fetch *f)
{
    switch (f->state) {
    case S_TCP:
    case S_TLS:
    case S_SEND:
    case S_RECV:
        return f->tcp.fd;
    default:
        return -1;
    }
}

bool moat_http_fetch_want_write(const moat_http_fetch *f)
{
    return f->want_write;
}

uint32_t moat_http_fetch_next_timeout(const moat_http_fetch *f, uint32_t now_ms)
{
    switch (f->state) {
    case S_DUE:
        return 0;
    case S_TCP: {
        /* a name lookup has no socket to wait on; a fallback may be due */
        uint32_t d = expired(f->deadline_ms, now_ms) ? 0 : f->deadline_ms - now_ms;
        uint32_t p = moat_tcp_poll_in(&f->tcp, now_ms);
        return p < d ? p : d;
    }
    case S_TLS:
    case S_SEND:
    case S_RECV:
    case S_WAIT:
        return expired(f->deadline_ms, now_ms) ? 0 : f->deadline_ms - now_ms;
    default:
        return UINT32_MAX;
    }
}

void moat_http_fetch_abort(moat_http_fetch *f)
{
    moat_tcp_close(&f->tcp);
    if (f->state != S_DONE && f->state != S_FAILED) {
        f->state = S_FAILED;
        f->err = MOAT_ERR_STATE;
        snprintf(f->msg, sizeof f->msg, "download aborted");
    }
}

int moat_http_fetch_status(const moat_http_fetch *f)
{
    return f->state == S_DONE ? moat_http_status(&f->get) : 0;
}

uint64_t moat_http_fetch_delivered(const moat_http_fetch *f)
{
    return f->delivered;
}

uint32_t moat_http_fetch_connections(const moat_http_fetch *f)
{
    return f->connections;
}

const char *moat_http_fetch_etag(const moat_http_fetch *f)
{
    return f->etag;
}

const char *moat_http_fetch_error(const moat_http_fetch *f)
{
    return f->msg;
}

moat_err moat_http_fetch_run(moat_http_fetch *f, const moat_http_fetch_config *cfg)
{
    moat_err e = moat_http_fetch_start(f, cfg, moat_clock_ms());
    while (e == MOAT_OK || e == MOAT_ERR_WOULD_BLOCK) {
        uint32_t now = moat_clock_ms();
        int fd;
        uint32_t wait;
        e = moat_http_fetch_poll(f, now);
        if (e != MOAT_ERR_WOULD_BLOCK)
            break;
        fd = moat_http_fetch_fd(f);
        wait = moat_http_fetch_next_timeout(f, moat_clock_ms());
        if (wait > 1000u)
            wait = 1000u;
        if (fd >= 0)
            (void)moat_wait_fd(fd, moat_http_fetch_want_write(f), wait);
        else
            (void)poll(NULL, 0, (int)wait);
    }
    return e;
}
