/*
 * tls_link.c - TCP, then mutual TLS, behind one moat_transport
 * (moat/tls_link.h). moat-agent and moat-mqtt both open their broker link
 * with it.
 */
#include "moat/tls_link.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

void moat_link_init(moat_link *l)
{
    memset(l, 0, sizeof *l);
    moat_tcp_init(&l->tcp);
}

void moat_link_use_tls(moat_link *l, moat_tls *tls)
{
    l->tls = tls;
    if (tls != NULL)
        moat_tls_transport(tls, &l->tls_t);
}

moat_err moat_link_note(moat_link *l, moat_err err, const char *words)
{
    l->why_err = err;
    snprintf(l->why, sizeof l->why, "%s", words);
    return err;
}

static moat_err tls_failed(moat_link *l, moat_err err)
{
    return moat_link_note(l, err, moat_tls_last_error(l->tls));
}

/* The engine's transport over TLS: the session's own, noting failures. */
static long link_send(void *ctx, const uint8_t *buf, size_t len)
{
    moat_link *l = ctx;
    long n = l->tls_t.send(l->tls_t.ctx, buf, len);

    if (n < 0 && n != MOAT_ERR_WOULD_BLOCK)
        tls_failed(l, (moat_err)n);
    return n;
}

static long link_recv(void *ctx, uint8_t *buf, size_t len)
{
    moat_link *l = ctx;
    long n = l->tls_t.recv(l->tls_t.ctx, buf, len);

    if (n < 0 && n != MOAT_ERR_WOULD_BLOCK)
        tls_failed(l, (moat_err)n);
    return n;
}

static bool link_pending(void *ctx)
{
    const moat_link *l = ctx;
    return moat_tls_pending(l->tls);
}

static moat_err tls_step(moat_link *l)
{
    moat_err err = moat_tls_connect_step(l->tls);

    if (err == MOAT_ERR_WOULD_BLOCK)
        return err;
    l->handshaking = false;
    if (err != MOAT_OK)
        return tls_failed(l, err);
    l->tls_open = true;
    l->t.send = link_send;
    l->t.recv = link_recv;
    l->t.ctx = l;
    l->t.pending = link_pending;
    return MOAT_OK;
}

/* TCP is up: the handshake, verifying the broker as l->host. */
static moat_err tls_start(moat_link *l)
{
    moat_err err = moat_tls_connect_start(l->tls, &l->tcp_t, l->host);

    if (err != MOAT_OK)
        return tls_failed(l, err);
    l->handshaking = true;
    return tls_step(l);
}

moat_err moat_link_open(moat_link *l, const char *host, uint16_t port)
{
    moat_err err;

    l->host = host;
    l->why_err = MOAT_OK;
    l->why[0] = '\0';
    l->handshaking = false;
    l->tls_open = false;
    err = moat_tcp_connect_start(&l->tcp, host, port);
    if (err != MOAT_OK && err != MOAT_ERR_WOULD_BLOCK)
        return err;
    moat_tcp_transport(&l->tcp, &l->tcp_t);
    l->t = l->tcp_t;
    if (err == MOAT_OK && l->tls != NULL)
        return tls_start(l);
    return err;
}

moat_err moat_link_poll(moat_link *l)
{
    moat_err err;

    if (l->handshaking)
        return tls_step(l);
    if (l->tls_open)
        return MOAT_OK;
    err = moat_tcp_connect_poll(&l->tcp);
    if (err == MOAT_OK && l->tls != NULL)
        return tls_start(l);
    return err;
}

int moat_link_fd(const moat_link *l)
{
    return l->tcp.fd;
}

bool moat_link_want_write(const moat_link *l, bool engine_has_output)
{
    if (l->tcp.connecting)
        return true;
    if (l->handshaking)
        return moat_tls_want_write(l->tls);
    return engine_has_output;
}

bool moat_link_tls_started(const moat_link *l)
{
    return l->handshaking || l->tls_open;
}

bool moat_link_pending(const moat_link *l)
{
    if (l->tls_open)
        return moat_tls_pending(l->tls);
    return l->tls == NULL && moat_tcp_pending(&l->tcp);
}

const char *moat_link_error(const moat_link *l, moat_err err)
{
    if (err != MOAT_OK && err == l->why_err && l->why[0] != '\0')
        return l->why;
    return moat_strerror(err);
}

/* One try at close_notify: the socket closes or half-closes right after. */
static void end_tls(moat_link *l)
{
    if (l->tls_open)
        moat_tls_close(l->tls);
    l->tls_open = false;
    l->handshaking = false;
}

void moat_link_close(moat_link *l)
{
    end_tls(l);
    moat_tcp_close(&l->tcp);
}

void moat_link_shutdown(moat_link *l)
{
    end_tls(l);
    if (l->tcp.fd >= 0)
        shutdown(l->tcp.fd, SHUT_WR);
}
