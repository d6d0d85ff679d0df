/*
 * link.c - the byte stream between moat-mqtt and the broker.
 *
 * The engine only sees a moat_transport, so the kind of stream is chosen
 * here, in cli_link_open(), and nowhere else: plain TCP from the POSIX port,
 * or, with --cafile, mutual TLS (src/tls) over that same socket. The TLS
 * handshake is part of opening the link (cli_link_poll), so the session
 * layer treats both alike. One moat_tls lives as long as the process, so a
 * reconnect offers the saved session and is resumed when the broker agrees.
 *
 * Verification is never optional: the broker's chain must lead to --cafile
 * and its certificate must name the -h host; the clock is the OS clock.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Keep TLS's words for a failure; they are read after the link is closed. */
static moat_err tls_failed(cli_link *l, moat_err err)
{
    l->why_err = err;
    snprintf(l->why, sizeof l->why, "%s", moat_tls_last_error(&l->tls));
    return err;
}

/* The engine's transport over TLS: the session's own, noting failures. */
static long link_send(void *ctx, const uint8_t *buf, size_t len)
{
    cli_link *l = ctx;
    long n = l->tls_t.send(l->tls_t.ctx, buf, len);

    if (n < 0 && n != MOAT_ERR_WOULD_BLOCK)
        tls_failed(l, (moat_err)n);
    return n;
}

static long link_recv(void *ctx, uint8_t *buf, size_t len)
{
    cli_link *l = ctx;
    long n = l->tls_t.recv(l->tls_t.ctx, buf, len);

    if (n < 0 && n != MOAT_ERR_WOULD_BLOCK)
        tls_failed(l, (moat_err)n);
    return n;
}

moat_err cli_link_init(cli_link *l, const cli_opts *o)
{
    moat_err err;

    memset(l, 0, sizeof *l);
    l->o = o;
    moat_tcp_init(&l->tcp);
    if (o->cafile == NULL)
        return MOAT_OK;
    l->tls_cfg.ca.path = o->cafile;
    l->tls_cfg.cert.path = o->certfile;
    l->tls_cfg.key.path = o->keyfile;
    l->tls_cfg.key_password = o->key_pass;
    l->tls_cfg.time_now = moat_tls_os_time;
    err = moat_tls_init(&l->tls, &l->tls_cfg);
    if (err != MOAT_OK) {
        cli_error("cannot set up TLS for %s:%u: %s", o->host, o->port,
                  moat_tls_last_error(&l->tls));
        return err;
    }
    l->tls_on = true;
    moat_tls_transport(&l->tls, &l->tls_t);
    return MOAT_OK;
}

static moat_err tls_step(cli_link *l)
{
    moat_err err = moat_tls_connect_step(&l->tls);

    if (err == MOAT_ERR_WOULD_BLOCK)
        return err;
    l->handshaking = false;
    if (err != MOAT_OK)
        return tls_failed(l, err);
    l->tls_open = true;
    l->t.send = link_send;
    l->t.recv = link_recv;
    l->t.ctx = l;
    cli_debug(l->o, "TLS is up: %s, %s", moat_tls_ciphersuite(&l->tls),
              moat_tls_resumed(&l->tls) ? "session resumed"
                                        : "full handshake, broker certificate verified");
    return MOAT_OK;
}

/* TCP is up: verify the broker as the -h name. */
static moat_err tls_start(cli_link *l)
{
    moat_err err;

    cli_debug(l->o, "TLS handshake with %s", l->o->host);
    err = moat_tls_connect_start(&l->tls, &l->tcp_t, l->o->host);
    if (err != MOAT_OK)
        return tls_failed(l, err);
    l->handshaking = true;
    return tls_step(l);
}

moat_err cli_link_open(cli_link *l)
{
    moat_err err;

    l->why_err = MOAT_OK;
    l->why[0] = '\0';
    l->handshaking = false;
    l->tls_open = false;
    err = moat_tcp_connect_start(&l->tcp, l->o->host, l->o->port);
    if (err != MOAT_OK && err != MOAT_ERR_WOULD_BLOCK)
        return err;
    moat_tcp_transport(&l->tcp, &l->tcp_t);
    l->t = l->tcp_t;
    if (err == MOAT_OK && l->tls_on)
        return tls_start(l);
    return err;
}

moat_err cli_link_poll(cli_link *l)
{
    moat_err err;

    if (l->handshaking)
        return tls_step(l);
    err = moat_tcp_connect_poll(&l->tcp);
    if (err == MOAT_OK && l->tls_on && !l->tls_open)
        return tls_start(l);
    return err;
}

int cli_link_fd(const cli_link *l)
{
    return l->tcp.fd;
}

/* A connect in progress completes when the socket becomes writable; the
 * handshake says which way it waits. */
bool cli_link_want_write(const cli_link *l, bool engine_has_output)
{
    if (l->tcp.connecting)
        return true;
    if (l->handshaking)
        return moat_tls_want_write(&l->tls);
    return engine_has_output;
}

bool cli_link_pending(const cli_link *l)
{
    return l->tls_open && moat_tls_pending(&l->tls);
}

const char *cli_link_error(const cli_link *l, moat_err err)
{
    if (err != MOAT_OK && err == l->why_err && l->why[0] != '\0')
        return l->why;
    return moat_strerror(err);
}

/* One try at close_notify: the socket is about to close, and whether the
 * alert got out does not change what was delivered. */
void cli_link_close(cli_link *l)
{
    if (l->tls_open)
        moat_tls_close(&l->tls);
    l->tls_open = false;
    l->handshaking = false;
    moat_tcp_close(&l->tcp);
}

void cli_link_free(cli_link *l)
{
    cli_link_close(l);
    if (l->tls_on)
        moat_tls_free(&l->tls);
    l->tls_on = false;
}
