/*
 * moat/tls_link.h - a broker link for Linux applications: a non-blocking
 * TCP connection (moat_tcp: a host name is looked up in the background),
 * then, when the link has a moat_tls session, the mutual-TLS handshake, all
 * behind one moat_transport for the engine. Opening is a step function
 * like everything else: moat_link_open, then moat_link_poll each time the
 * socket is ready, until MOAT_OK.
 *
 * A TLS failure keeps moat_tls's words ("broker certificate has expired
 * ...") in the link until the next open, so they can still be told after
 * the link is closed: moat_link_error. Verification is the session's and
 * is never optional; a link without a session is plain TCP, which only
 * moat-mqtt offers (without --cafile).
 */
#ifndef MOAT_TLS_LINK_H
#define MOAT_TLS_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "moat/posix.h"
#include "moat/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moat_link {
    moat_tcp tcp;
    moat_transport tcp_t;     /* the socket */
    moat_transport t;         /* what the engine uses once open */
    moat_tls *tls;            /* NULL: plain TCP; kept across reconnects */
    moat_transport tls_t;     /* the session's own send/recv */
    const char *host;         /* the broker's name, checked by TLS */
    bool handshaking;         /* TCP is up, the TLS handshake is not */
    bool tls_open;            /* the TLS session carries MQTT */
    moat_err why_err;         /* the failure whose words are in why */
    char why[256];
} moat_link;

/* A closed link without TLS (moat_tcp_init on its socket). */
void moat_link_init(moat_link *l);
/* Run the link over tls (initialised by the caller, who frees it after
 * closing the link), or plain TCP with NULL. Call it while closed. */
void moat_link_use_tls(moat_link *l, moat_tls *tls);
/* Start opening to host:port (host is kept, and must live while the link
 * does): MOAT_OK (open), MOAT_ERR_WOULD_BLOCK (call moat_link_poll when
 * moat_link_fd is ready, or every MOAT_TCP_LOOKUP_POLL_MS while a name is
 * looked up: moat_tcp_poll_in), or an error (see moat_link_error). */
moat_err moat_link_open(moat_link *l, const char *host, uint16_t port);
moat_err moat_link_poll(moat_link *l);
/* The descriptor to poll (-1 while a name is looked up), and whether to
 * poll it for writing too: while connecting, while the handshake wants to
 * write, or when the engine has output. */
int moat_link_fd(const moat_link *l);
bool moat_link_want_write(const moat_link *l, bool engine_has_output);
/* The TLS handshake has begun (TCP is up). */
bool moat_link_tls_started(const moat_link *l);
/* Bytes wait inside the TLS library or the socket's read-ahead: read them
 * before sleeping in poll(). */
bool moat_link_pending(const moat_link *l);
/* Keep words for a failure of the caller's own (a moat_tls_init that
 * failed, say); returns err. */
moat_err moat_link_note(moat_link *l, moat_err err, const char *words);
/* The words for err: TLS's own when err is the link's last failure,
 * otherwise moat_strerror(err). */
const char *moat_link_error(const moat_link *l, moat_err err);
/* One try at close_notify, then close the socket. Safe to call twice. */
void moat_link_close(moat_link *l);
/* An orderly end: one try at close_notify, then no more writes
 * (shutdown(SHUT_WR)); the socket stays open for reading until the peer
 * closes, and moat_link_close closes it. */
void moat_link_shutdown(moat_link *l);

#ifdef __cplusplus
}
#endif
#endif
