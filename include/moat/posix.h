/*
 * moat/posix.h - the Linux/POSIX port: non-blocking TCP, clock, randomness.
 *
 * Everything the core must not do itself lives here. A moat_tcp is a
 * non-blocking socket that implements moat_transport (moat/transport.h).
 * Nothing here blocks: a numeric address is used at once, and a host name
 * is looked up in the background (glibc's getaddrinfo_a) while the caller
 * goes on polling.
 */
#ifndef MOAT_POSIX_H
#define MOAT_POSIX_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "moat/error.h"
#include "moat/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

struct addrinfo;

typedef struct moat_tcp {
    int fd;           /* -1 when closed, and while a name is looked up */
    bool connecting;  /* non-blocking connect() still in progress */
    struct moat_lookup *lookup; /* a name lookup in progress, or NULL */
    struct addrinfo *addrs, *next; /* while connecting: the addresses, the
                                      next one to try */
    uint32_t attempt_ms;          /* the current address was tried then */
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
 * moat_tcp_pending (over TLS, moat_tls_pending, which asks it too) before
 * sleeping on the socket. moat_tcp_transport's `pending` says the same.
 */
void moat_tcp_set_readahead(moat_tcp *s, uint8_t *buf, size_t size);

/* True when the read-ahead buffer holds bytes not yet handed to recv. */
bool moat_tcp_pending(const moat_tcp *s);

/*
 * Start a non-blocking connection to host:port (name or numeric address).
 * Returns MOAT_OK when already connected, MOAT_ERR_WOULD_BLOCK while the
 * lookup or the connection is in progress (call moat_tcp_connect_poll when
 * the socket is writable, and at the latest after moat_tcp_poll_in ms),
 * MOAT_ERR_RESOLVE or MOAT_ERR_CONNECT on failure. A numeric address is
 * used at once; a host name is looked up in the background, and while it
 * is there is no socket yet (fd is -1).
 */
moat_err moat_tcp_connect_start(moat_tcp *s, const char *host, uint16_t port);

/* Progress of a pending lookup or connect: MOAT_OK, MOAT_ERR_WOULD_BLOCK,
 * MOAT_ERR_RESOLVE (the name has no address), or MOAT_ERR_CONNECT (refused
 * or unreachable at every address; the socket is closed). Addresses are
 * tried in getaddrinfo() order: the next one when one fails, or when one
 * is still pending after MOAT_TCP_FALLBACK_MS ("localhost" gives ::1
 * first, and a broker that listens on 127.0.0.1 only refuses it after the
 * SYN). The last address is waited for as long as the caller waits. */
moat_err moat_tcp_connect_poll(moat_tcp *s);

/* How long a pending lookup or connect may wait before moat_tcp_connect_poll
 * must be called even though the socket did not become writable (a lookup
 * has no socket to wait on; a fallback is due): milliseconds, UINT32_MAX
 * when only the socket matters. */
uint32_t moat_tcp_poll_in(const moat_tcp *s, uint32_t now_ms);

/* How often a running lookup is polled, and the fallback delay (RFC 8305). */
#define MOAT_TCP_LOOKUP_POLL_MS 10u
#define MOAT_TCP_FALLBACK_MS 250u

/*
 * A name lookup that does not block (glibc's getaddrinfo_a, polled), for
 * TCP or UDP (socktype SOCK_STREAM or SOCK_DGRAM). moat_tcp uses it; so
 * does anything else that must reach a host by name from a poll loop.
 *
 * moat_lookup_start: a numeric host is answered at once: MOAT_OK with
 * *numeric (free it with freeaddrinfo). A name starts a lookup:
 * MOAT_ERR_WOULD_BLOCK with *out. MOAT_ERR_RESOLVE for an empty host or a
 * lookup that cannot start.
 * moat_lookup_poll: MOAT_ERR_WOULD_BLOCK while it runs (poll again within
 * MOAT_TCP_LOOKUP_POLL_MS or so); then MOAT_OK with *res (the caller frees
 * it with freeaddrinfo) or MOAT_ERR_RESOLVE with getaddrinfo's words in
 * *why (when why is not NULL). Either way the lookup is gone after it.
 * moat_lookup_cancel: give it up (NULL is fine). One glibc still works on
 * is freed once it ends.
 */
typedef struct moat_lookup moat_lookup;
moat_err moat_lookup_start(moat_lookup **out, const char *host, uint16_t port, int socktype,
                           struct addrinfo **numeric);
moat_err moat_lookup_poll(moat_lookup *l, struct addrinfo **res, const char **why);
void moat_lookup_cancel(moat_lookup *l);

/* Close the socket if open, and give up a lookup in progress. Safe to call
 * twice. */
void moat_tcp_close(moat_tcp *s);

/* Fill t with the send/recv functions of s (see moat/transport.h). */
void moat_tcp_transport(moat_tcp *s, moat_transport *t);

/* Wait until fd is readable (or writable when want_write) or timeout_ms
 * passes. Returns MOAT_OK when ready, MOAT_ERR_WOULD_BLOCK on timeout. */
moat_err moat_wait_fd(int fd, bool want_write, uint32_t timeout_ms);

/*
 * Batched waiting, for a link that carries a stream (a subscriber on a busy
 * topic, a publisher keeping a window full, a bridge). A process that
 * sleeps in poll() is woken by each write its peer makes, and the peer pays
 * for the wake-up: a client that handles every message at once and goes
 * back to sleep costs a single-threaded broker a wake-up per message, which
 * on a loaded machine is more of the broker's time than the message itself.
 *
 * moat_poll_batched(b, fds, n, timeout_ms) is poll(fds, n, timeout_ms),
 * except while the link streams: when the last call found a descriptor
 * ready within MOAT_BATCH_STREAM_US of starting to wait (b->busy), it first
 * sleeps b->hold_us without watching the descriptors, so that whatever
 * arrives meanwhile is handled in one turn, one read and one answer. A
 * message that comes after a pause (a call that waited longer or timed
 * out) is handled at once, so only a stream pays, and no message waits
 * longer than the hold. The hold never outlasts timeout_ms (a timeout of 0
 * never holds), is at most MOAT_BATCH_HOLD_MAX_US, and a signal ends it
 * early (the signal's self-pipe then wakes poll()). hold_us 0: plain
 * poll(). Returns what poll() returns.
 */
typedef struct moat_batch {
    uint32_t hold_us;   /* set by the caller: 0, or MOAT_BATCH_HOLD_US */
    bool busy;          /* kept by moat_poll_batched: the link streams */
} moat_batch;

#define MOAT_BATCH_HOLD_US 50u        /* the hold moat's own tools use */
#define MOAT_BATCH_HOLD_MAX_US 10000u /* longer holds are cut to this */
#define MOAT_BATCH_STREAM_US 500u     /* work within this of waiting: a stream */

int moat_poll_batched(moat_batch *b, struct pollfd *fds, nfds_t n, int timeout_ms);

/* Monotonic milliseconds (CLOCK_MONOTONIC), wrapping at 2^32. */
uint32_t moat_clock_ms(void);

/* 32 uniformly random bits from the kernel (getrandom); the signature fits
 * moat_mqtt_config.random. */
uint32_t moat_random32(void *unused);

#ifdef __cplusplus
}
#endif
#endif
