/*
 * moat/posix.h - the Linux/POSIX port: non-blocking TCP, clock, randomness.
 *
 * Everything the core must not do itself lives here. A moat_tcp is a
 * non-blocking socket that implements moat_transport (moat/transport.h).
 * Name resolution uses getaddrinfo(), which may block for a DNS lookup; a
 * numeric address never does.
 */
#ifndef MOAT_POSIX_H
#define MOAT_POSIX_H

#include <stdbool.h>
#include <stdint.h>

#include "moat/error.h"
#include "moat/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moat_tcp {
    int fd;           /* -1 when closed */
    bool connecting;  /* non-blocking connect() still in progress */
    bool drained;     /* read-ahead: the last recv() came back short */
    uint16_t ra_pos, ra_len, ra_size; /* read-ahead: next byte, end, size */
    uint8_t *ra;      /* read-ahead buffer, NULL without one */
} moat_tcp;

/* Make a closed socket object (fd -1), without a read-ahead buffer. */
void moat_tcp_init(moat_tcp *s);

/*
 * Give s a read-ahead buffer of size bytes (at most 65535; NULL or 0: none),
 * owned by the caller and used until the next moat_tcp_init. Then a recv
 * asking for fewer bytes than size reads up to size bytes from the kernel
 * and serves later recvs from them: TLS asks for each record's 5-byte
 * header and its body separately, and this makes the two one system call,
 * or one for many records. With a buffer, a recv() that came back short
 * (the socket was empty) also spares the next one: once the buffer is used
 * up, recv reports MOAT_ERR_WOULD_BLOCK once without a system call; poll()
 * still reports anything that arrived meanwhile. Call it while s is closed.
 *
 * Bytes held here are invisible to poll(): with a buffer, check
 * moat_tcp_pending (and, over TLS, moat_tls_pending as well) before
 * sleeping on the socket.
 */
void moat_tcp_set_readahead(moat_tcp *s, uint8_t *buf, size_t size);

/* True when the read-ahead buffer holds bytes not yet handed to recv. */
bool moat_tcp_pending(const moat_tcp *s);

/*
 * Start a non-blocking connection to host:port (name or numeric address).
 * Returns MOAT_OK when already connected, MOAT_ERR_WOULD_BLOCK while the
 * connection is in progress (wait for writability, then call
 * moat_tcp_connect_poll), MOAT_ERR_RESOLVE or MOAT_ERR_CONNECT on failure.
 */
moat_err moat_tcp_connect_start(moat_tcp *s, const char *host, uint16_t port);

/* Progress of a pending connect: MOAT_OK, MOAT_ERR_WOULD_BLOCK, or
 * MOAT_ERR_CONNECT (refused/unreachable; the socket is closed). */
moat_err moat_tcp_connect_poll(moat_tcp *s);

/* Close the socket if open. Safe to call twice. */
void moat_tcp_close(moat_tcp *s);

/* Fill t with the send/recv functions of s (see moat/transport.h). */
void moat_tcp_transport(moat_tcp *s, moat_transport *t);

/* Wait until fd is readable (or writable when want_write) or timeout_ms
 * passes. Returns MOAT_OK when ready, MOAT_ERR_WOULD_BLOCK on timeout. */
moat_err moat_wait_fd(int fd, bool want_write, uint32_t timeout_ms);

/* Monotonic milliseconds (CLOCK_MONOTONIC), wrapping at 2^32. */
uint32_t moat_clock_ms(void);

/* 32 uniformly random bits from the kernel (getrandom); the signature fits
 * moat_mqtt_config.random. */
uint32_t moat_random32(void *unused);

#ifdef __cplusplus
}
#endif
#endif
