/*
 * moat/http_fetch.h - HTTPS GET with mutual TLS and resume, for Linux
 * (src/port/posix/http_fetch.c; link moat_posix and moat_tls).
 *
 * A moat_http_fetch drives the sans-I/O engine of moat/http.h over a
 * non-blocking TCP socket and a moat_tls session (the device's certificate
 * and key, the fleet CA, the server's name checked against its SAN). When
 * the connection breaks before the response is complete, it connects again
 * and asks for "Range: bytes=<bytes already delivered>-" with "If-Range:
 * <ETag>", so a cut download goes on where it stopped instead of starting
 * over, and a resource that changed meanwhile comes whole (200) instead of
 * as a piece of something else. Body bytes go to the
 * caller's callback with their offset in the resource, exactly once each
 * (unless a server ignores Range: then the offset goes back to 0 and
 * on_start sees moat_http_body_offset() == 0; see moat/http.h).
 *
 * It never blocks: moat_http_fetch_poll() does what can be done now and says
 * what to wait for, so it fits the agent's single loop:
 *
 *     moat_http_fetch_start(&f, &cfg, now);
 *     while ((e = moat_http_fetch_poll(&f, now)) == MOAT_ERR_WOULD_BLOCK)
 *         wait for moat_http_fetch_fd(&f) (writable if moat_http_fetch_want_write)
 *         or moat_http_fetch_next_timeout(&f, now) ms, whichever comes first
 *     MOAT_OK: moat_http_fetch_status(&f) is 200, 206 or 304
 *
 * moat_http_fetch_run() is that loop, blocking, for tools and tests.
 *
 * Retries: a broken connection, a timeout or a refused TCP connection is
 * retried up to cfg->attempts times in a row without progress (any body
 * byte received counts as progress and resets the count), waiting retry_ms
 * between attempts. HTTP answers (404, 500, a bad Content-Range), TLS
 * verification failures and errors from the callbacks are final.
 */
#ifndef MOAT_HTTP_FETCH_H
#define MOAT_HTTP_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"
#include "moat/http.h"
#include "moat/posix.h"
#include "moat/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

struct moat_tls;

#define MOAT_HTTP_FETCH_REQ_MAX 1024u  /* request line and headers */
#define MOAT_HTTP_FETCH_BUF 4096u      /* bytes read from TLS at a time */
#define MOAT_HTTP_FETCH_HEADERS_MAX 8u /* extra request header lines */

typedef struct moat_http_fetch_config {
    struct moat_tls *tls;     /* initialised (moat_tls_init) with the CA, the
                                 device certificate and key; peer_name
                                 "update server" reads best in its messages */
    const char *host;         /* downloadserver: name or address in the SAN */
    uint16_t port;            /* downloadport */
    const char *path;         /* downloadpath + file + query, starts with '/' */
    uint64_t resume_from;     /* bytes of the resource the caller already has */
    uint64_t range_len;       /* > 0: only this many bytes (moat/http.h) */
    uint64_t max_total;       /* refuse larger resources; 0: no limit */
    const char *if_range;     /* the ETag of the bytes the caller already has
                                 (moat_http_fetch_etag of the fetch that got
                                 them), sent as If-Range with resume_from;
                                 NULL when unknown */
    const char *const *headers; /* extra request header lines (at most
                                   MOAT_HTTP_FETCH_HEADERS_MAX), or NULL */
    moat_http_body_fn on_body;   /* required */
    moat_http_start_fn on_start; /* optional; called for every response */
    void *user;
    uint8_t attempts;         /* connections in a row without progress; 0: 5 */
    uint32_t retry_ms;        /* wait between attempts; 0: 1000 */
    uint32_t idle_ms;         /* give up a connection silent this long; 0: 30000 */
} moat_http_fetch_config;

/* One download. Opaque: allocate it and use the functions below. */
typedef struct moat_http_fetch {
    moat_http_fetch_config cfg;
    moat_http_get get;
    moat_tcp tcp;
    moat_transport tcp_t;
    moat_transport tls_t;
    uint64_t next;            /* resource offset the next request starts at */
    uint64_t delivered;       /* body bytes delivered over all connections */
    uint32_t deadline_ms;     /* of the current wait (idle or retry) */
    uint32_t connections;     /* connections opened */
    uint8_t failures;         /* attempts in a row without progress */
    uint8_t state;            /* internal */
    bool want_write;
    bool progress;            /* body bytes arrived on this connection */
    moat_err err;             /* final error */
    size_t req_len, req_sent;
    uint8_t req[MOAT_HTTP_FETCH_REQ_MAX];
    uint8_t buf[MOAT_HTTP_FETCH_BUF];
    const char *hdrs[MOAT_HTTP_FETCH_HEADERS_MAX + 2]; /* extra lines, If-Range, NULL */
    uint8_t nhdrs;            /* extra lines in hdrs */
    char if_range[96];        /* "If-Range: <etag>" for the next request */
    char etag[72];            /* of the resource being fetched, "" unknown */
    char msg[256];
} moat_http_fetch;

/* Check cfg and start: the first connection is opened at the next poll.
 * MOAT_ERR_ARG with words (moat_http_fetch_error) for bad settings. */
moat_err moat_http_fetch_start(moat_http_fetch *f, const moat_http_fetch_config *cfg,
                               uint32_t now_ms);

/*
 * Advance. MOAT_ERR_WOULD_BLOCK: wait (see above) and call again. MOAT_OK:
 * done. Any other value is final, with words in moat_http_fetch_error():
 * the HTTP engine's errors (moat/http.h), TLS errors (moat/tls.h), or the
 * last transport error (MOAT_ERR_CLOSED, MOAT_ERR_IO, MOAT_ERR_TIMEOUT,
 * MOAT_ERR_CONNECT, MOAT_ERR_RESOLVE) once the attempts are used up.
 */
moat_err moat_http_fetch_poll(moat_http_fetch *f, uint32_t now_ms);

/* The socket to wait on, or -1 while waiting only for the timer. */
int moat_http_fetch_fd(const moat_http_fetch *f);
bool moat_http_fetch_want_write(const moat_http_fetch *f);

/* Milliseconds until poll must run again even without I/O. */
uint32_t moat_http_fetch_next_timeout(const moat_http_fetch *f, uint32_t now_ms);

/* Stop: close the connection (no close_notify). Safe at any time. */
void moat_http_fetch_abort(moat_http_fetch *f);

/* The final response's status (200, 206, 304), 0 before. */
int moat_http_fetch_status(const moat_http_fetch *f);

/* Body bytes delivered to on_body over every connection of this fetch. */
uint64_t moat_http_fetch_delivered(const moat_http_fetch *f);

/* Connections opened so far (1 when nothing broke). */
uint32_t moat_http_fetch_connections(const moat_http_fetch *f);

/* The ETag of what was fetched ("" when the server sent none): keep it
 * with partial bytes for cfg->if_range of a later fetch. */
const char *moat_http_fetch_etag(const moat_http_fetch *f);

/* Words for the final error, "" when none. */
const char *moat_http_fetch_error(const moat_http_fetch *f);

/* Start and poll until done, sleeping in poll(2). Returns the final value. */
moat_err moat_http_fetch_run(moat_http_fetch *f, const moat_http_fetch_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
