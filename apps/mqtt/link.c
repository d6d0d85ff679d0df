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
#include <string.h>

#include "cli.h"

moat_err cli_link_init(cli_link *l, const cli_opts *o)
{
    moat_err err;

    memset(l, 0, sizeof *l);
    l->o = o;
    moat_link_init(&l->net);
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
    moat_link_use_tls(&l->net, &l->tls);
    return MOAT_OK;
}

/* -d: how the link came up. */
static moat_err opened(cli_link *l, moat_err err)
{
    if (err == MOAT_OK && l->tls_on)
        cli_debug(l->o, "TLS is up: %s, %s", moat_tls_ciphersuite(&l->tls),
                  moat_tls_resumed(&l->tls) ? "session resumed"
                                            : "full handshake, broker certificate verified");
    return err;
}

moat_err cli_link_open(cli_link *l)
{
    return opened(l, moat_link_open(&l->net, l->o->host, l->o->port));
}

moat_err cli_link_poll(cli_link *l)
{
    return opened(l, moat_link_poll(&l->net));
}

void cli_link_free(cli_link *l)
{
    moat_link_close(&l->net);
    if (l->tls_on)
        moat_tls_free(&l->tls);
    l->tls_on = false;
}
