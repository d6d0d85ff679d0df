/*
 * moat/tls.h - mutual-TLS transport on mbedTLS, non-blocking.
 *
 * A moat_tls runs one TLS client session over a connected lower transport
 * (usually the TCP one from moat/posix.h) and offers the same moat_transport
 * interface on top, so moat_mqtt_pump() speaks MQTT over TLS unchanged.
 *
 * What always holds (there is no switch to turn any of it off):
 *  - TLS 1.2 or newer; ECDHE key exchange with AEAD ciphers only
 *    (AES-GCM, CHACHA20-POLY1305, and AES-CCM with ECDSA).
 *  - The peer's chain must lead to a configured CA (MBEDTLS_SSL_VERIFY_REQUIRED).
 *  - The host name given to moat_tls_connect_start() must be one of the
 *    certificate's subjectAltName entries: dNSName (one leading "*." label
 *    allowed) or iPAddress. The subject CN is never used for this.
 *  - Validity dates are judged by the caller's clock (cfg->time_now), never
 *    by the OS clock; while that clock reads earlier than 2024-01-01 it is
 *    "not valid" and no handshake starts (MOAT_ERR_CLOCK).
 *  - A client certificate and its matching key are required.
 *
 * Lifecycle (every call is non-blocking):
 *
 *   moat_tls_init(t, cfg)             load CA, certificate and key once
 *   loop:
 *     open TCP, then
 *     moat_tls_connect_start(t, &tcp_transport, host)
 *     while ((e = moat_tls_connect_step(t)) == MOAT_ERR_WOULD_BLOCK)
 *         wait for the socket (writable if moat_tls_want_write(t))
 *     moat_tls_transport(t, &tls_transport);  use it with moat_mqtt_pump()
 *     ... moat_tls_close(t) (close_notify), close TCP
 *     the next connect_start resumes the saved session when it can
 *   moat_tls_free(t)
 *
 * Errors are moat_err values; moat_tls_last_error() says them in words that
 * name the peer or the file, e.g. "broker certificate has expired
 * (notAfter 2025-02-23)".
 *
 * Memory: the caller owns the moat_tls struct. mbedTLS itself allocates its
 * record buffers (in moat_tls_init) and handshake state through its own
 * calloc, which an MCU build points at a static pool
 * (MBEDTLS_MEMORY_BUFFER_ALLOC_C). Record buffer sizes are mbedTLS build
 * options (MBEDTLS_SSL_IN_CONTENT_LEN / MBEDTLS_SSL_OUT_CONTENT_LEN); when
 * the input buffer is smaller than 16 KB, moat_tls asks the server for a
 * matching maximum fragment length by itself.
 */
#ifndef MOAT_TLS_H
#define MOAT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "moat/error.h"
#include "moat/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The clock is valid from 2024-01-01T00:00:00Z on. */
#define MOAT_TLS_CLOCK_VALID_FROM 1704067200

/* A saved session is offered for resumption for at most this long. */
#define MOAT_TLS_RESUME_MAX_AGE_S 86400u

/* Where a certificate or key comes from: a file, or bytes in memory. Both
 * accept PEM or DER; PEM in memory need not end with a NUL. */
typedef struct moat_tls_source {
    const char *path;      /* read this file when not NULL */
    const uint8_t *data;   /* else these bytes */
    size_t len;
} moat_tls_source;

/* Seconds since 1970-01-01 UTC from the device's synchronised clock (SNTP).
 * Return a value before MOAT_TLS_CLOCK_VALID_FROM (0 will do) while the
 * clock is not synchronised. */
typedef int64_t (*moat_tls_time_fn)(void *user);

/* Random bytes for TLS: returns 0 on success (mbedTLS f_rng signature). */
typedef int (*moat_tls_rng_fn)(void *ctx, unsigned char *out, size_t len);

/* Caller-owned settings. moat_tls keeps the pointer: they must outlive it. */
typedef struct moat_tls_config {
    moat_tls_source ca;           /* trusted CA certificate(s) */
    moat_tls_source cert;         /* our certificate (may be followed by its chain) */
    moat_tls_source key;          /* our private key */
    const char *key_password;     /* NULL when the key is not encrypted */
    moat_tls_time_fn time_now;    /* required */
    void *time_user;
    const char *peer_name;        /* the peer in messages; NULL means "broker" */
    uint16_t max_fragment_len;    /* 0 (automatic), 512, 1024, 2048 or 4096 */
    uint32_t resume_max_age_s;    /* 0 means MOAT_TLS_RESUME_MAX_AGE_S */
    moat_tls_rng_fn rng;          /* NULL: the process's default moat_tls_rng */
    void *rng_ctx;
    /* An already parsed CA chain to trust instead of loading `ca`: sessions
     * that trust the same CA (a device's MQTT and HTTPS links, a simulator's
     * devices) share one parsed copy. Not modified; must outlive every
     * moat_tls that uses it. `ca` must then be empty. */
    mbedtls_x509_crt *ca_chain;
} moat_tls_config;

/*
 * A random generator for TLS: CTR_DRBG (AES-256) seeded from mbedTLS's
 * entropy sources. One serves any number of moat_tls sessions of one
 * thread; pass moat_tls_rng_bytes and the moat_tls_rng as rng/rng_ctx. A
 * session whose config has no rng uses a default one of the process,
 * seeded at the first moat_tls_init: so a program that makes TLS sessions
 * from several threads at once gives each thread its own. On POSIX systems
 * a generator reseeds itself in a forked child, so parent and child never
 * share a random stream.
 */
typedef struct moat_tls_rng {
#if defined(MBEDTLS_ENTROPY_C) && defined(MBEDTLS_CTR_DRBG_C)
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
#endif
    long pid;                     /* the process that seeded it */
    bool ready;
} moat_tls_rng;

/* Seed r. Returns MOAT_OK, or MOAT_ERR_TLS with words in why (when why is
 * not NULL) when no entropy source answers; MOAT_ERR_ARG when this mbedTLS
 * build has no entropy or CTR_DRBG (set moat_tls_config.rng then). */
moat_err moat_tls_rng_init(moat_tls_rng *r, char *why, size_t why_cap);
/* mbedTLS f_rng: fill out from the moat_tls_rng rng. 0 on success. */
int moat_tls_rng_bytes(void *rng, unsigned char *out, size_t len);
void moat_tls_rng_free(moat_tls_rng *r);

/* The best verification problem seen in one handshake (internal). */
typedef struct moat_tls_verdict {
    int rank;              /* lower is more telling; "none" is the highest */
    moat_err err;
    char msg[200];
} moat_tls_verdict;

/* One TLS client. Opaque: use the functions below. */
typedef struct moat_tls {
    const moat_tls_config *cfg;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
    mbedtls_x509_crt cert;
    mbedtls_pk_context key;
    mbedtls_ssl_session saved;     /* last session, offered on reconnect */
    moat_transport lower;
    moat_tls_verdict verdict;
    int64_t saved_at;              /* caller's clock when saved */
    int64_t verify_now;            /* caller's clock for this handshake */
    size_t write_pending;          /* length of a WANT_WRITE mbedtls_ssl_write */
    uint32_t verify_calls;         /* verify callback calls this handshake */
    int ciphersuites[12];
    mbedtls_ecp_group_id curves[6];
    moat_err err;                  /* sticky error of a failed session */
    moat_err io_err;               /* error of the lower transport, if any */
    uint8_t state;
    bool ready;                    /* init succeeded */
    bool have_saved;
    bool resumed;
    bool want_write;
    char host[256];
    uint8_t saved_host[32];        /* SHA-256 of the saved session's host,
                                      lower case */
    char msg[256];
} moat_tls;

/*
 * Load the CA, our certificate and key, and prepare mbedTLS. Returns MOAT_OK
 * or an error with words (moat_tls_last_error):
 *   MOAT_ERR_CERT_NONE     "no client certificate configured" (or key)
 *   MOAT_ERR_FILE          a file cannot be read; names the path
 *   MOAT_ERR_CERT_FORMAT   a certificate or key does not parse; names it
 *   MOAT_ERR_KEY_MISMATCH  "client key does not match client certificate"
 *   MOAT_ERR_ARG           bad settings (no CA, no clock, bad fragment length)
 * On failure everything is released already; moat_tls_free() stays safe.
 */
moat_err moat_tls_init(moat_tls *t, const moat_tls_config *cfg);

/*
 * Begin a handshake over `lower`, a connected transport (copied), verifying
 * the peer as `host` (a DNS name, or an IPv4/IPv6 literal). Any earlier
 * session on t is dropped without a close_notify. The saved session is
 * offered when it is for the same host and younger than resume_max_age_s.
 * Nothing is sent yet. Returns MOAT_OK, MOAT_ERR_CLOCK when the clock is not
 * valid, MOAT_ERR_CERT_EXPIRED when our own certificate is out of its dates,
 * MOAT_ERR_ARG or MOAT_ERR_STATE (t not initialised).
 */
moat_err moat_tls_connect_start(moat_tls *t, const moat_transport *lower,
                                const char *host);

/*
 * Advance the handshake as far as the lower transport allows. Returns
 * MOAT_OK once the session is up (then call it no more), MOAT_ERR_WOULD_BLOCK
 * while in progress (wait for the socket: writable when moat_tls_want_write),
 * or an error, after which the session is dead:
 *   MOAT_ERR_CERT_UNTRUSTED  "broker certificate is not signed by the configured CA"
 *   MOAT_ERR_CERT_EXPIRED    "broker certificate has expired (notAfter 2025-02-23)"
 *   MOAT_ERR_CERT_HOST       "broker certificate does not name host 'x'"
 *   MOAT_ERR_CERT_INVALID    any other reason the broker certificate is refused
 *   MOAT_ERR_CERT_REFUSED    "the broker refused our certificate (alert: unknown_ca)"
 *   MOAT_ERR_TLS_ALERT       the broker ended the handshake with another alert
 *   MOAT_ERR_CLOCK           the clock stopped being valid
 *   MOAT_ERR_CLOSED, MOAT_ERR_IO, MOAT_ERR_TLS
 */
moat_err moat_tls_connect_step(moat_tls *t);

/* True when the last WOULD_BLOCK waits for the socket to become writable. */
bool moat_tls_want_write(const moat_tls *t);

/*
 * Fill out with send/recv over the open session (moat/transport.h contract).
 * send moves at most one record; after MOAT_ERR_WOULD_BLOCK the caller must
 * retry with the same bytes and at least the same length (the same record is
 * completed). recv returns MOAT_ERR_CLOSED after the peer's close_notify or
 * end of stream. Before the handshake is done both return MOAT_ERR_STATE.
 */
void moat_tls_transport(moat_tls *t, moat_transport *out);

/*
 * True when decrypted or received bytes wait inside mbedTLS, or in the
 * lower transport (its `pending`, e.g. moat_tcp's read-ahead buffer): read
 * again before sleeping on the socket, which may not become readable for
 * them. moat_tls_transport's `pending` says the same.
 */
bool moat_tls_pending(const moat_tls *t);

/*
 * Send close_notify. Returns MOAT_OK when sent (or nothing was open),
 * MOAT_ERR_WOULD_BLOCK to be called again when the socket is writable, or an
 * error (the session is gone either way). Then close the lower transport.
 * The saved session is kept for the next connect_start.
 */
moat_err moat_tls_close(moat_tls *t);

/* Forget the saved session: the next handshake is a full one. */
void moat_tls_forget_session(moat_tls *t);

/* True when the last completed handshake resumed the saved session (the
 * peer proved it holds that session's secret; no certificates were sent). */
bool moat_tls_resumed(const moat_tls *t);

/* The negotiated cipher suite name and the maximum record payload we send,
 * for logs and tests; "" and 0 before a handshake. */
const char *moat_tls_ciphersuite(const moat_tls *t);
size_t moat_tls_max_fragment(const moat_tls *t);

/* The last error in words; never NULL ("" when there was none). */
const char *moat_tls_last_error(const moat_tls *t);

/* Release everything. Safe after a failed init and when called twice. */
void moat_tls_free(moat_tls *t);

/* seconds since the epoch from the OS wall clock (time()), a ready
 * time_now for Linux devices whose clock is kept by NTP. */
int64_t moat_tls_os_time(void *unused);

#ifdef __cplusplus
}
#endif
#endif
