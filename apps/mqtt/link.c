/*
 * link.c - the byte stream between moat-mqtt and the broker.
 *
 * The engine only sees a moat_transport, so the kind of stream is chosen
 * here, in cli_link_open(), and nowhere else. Today that is plain TCP from
 * the POSIX port; TLS (--cafile, --cert, --key) wraps the same socket and
 * adds its handshake to cli_link_poll().
 */
#include "cli.h"

void cli_link_init(cli_link *l)
{
    moat_tcp_init(&l->tcp);
    l->t.send = NULL;
    l->t.recv = NULL;
    l->t.ctx = NULL;
}

moat_err cli_link_open(cli_link *l, const cli_opts *o)
{
    moat_err err = moat_tcp_connect_start(&l->tcp, o->host, o->port);

    if (err == MOAT_OK || err == MOAT_ERR_WOULD_BLOCK)
        moat_tcp_transport(&l->tcp, &l->t);
    return err;
}

moat_err cli_link_poll(cli_link *l)
{
    return moat_tcp_connect_poll(&l->tcp);
}

int cli_link_fd(const cli_link *l)
{
    return l->tcp.fd;
}

/* A connect in progress completes when the socket becomes writable. */
bool cli_link_want_write(const cli_link *l, bool engine_has_output)
{
    return l->tcp.connecting || engine_has_output;
}

void cli_link_close(cli_link *l)
{
    moat_tcp_close(&l->tcp);
}
