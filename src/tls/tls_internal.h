/*
 * tls_internal.h - what the files of src/tls share and nobody else sees.
 *
 *   tls.c         configuration, handshake, the transport, close
 *   tls_verify.c  the verify callback: dates by the caller's clock, host names
 *   tls_load.c    certificates and keys from files or memory
 *   tls_words.c   mbedTLS failures turned into sentences
 */
#ifndef MOAT_TLS_INTERNAL_H
#define MOAT_TLS_INTERNAL_H

#include "moat/tls.h"

#include <stdarg.h>

enum {
    MOAT_TLS_IDLE = 0,    /* no session */
    MOAT_TLS_HANDSHAKE,   /* connect_start done, handshake in progress */
    MOAT_TLS_OPEN,        /* application data flows */
    MOAT_TLS_CLOSING,     /* close_notify waits for the socket */
    MOAT_TLS_DEAD         /* failed; t->err says why */
};

/* Verdict ranks: when a chain has several problems, the lowest rank is the
 * one reported, because it is the one to fix first. */
enum {
    MOAT_TLS_RANK_CLOCK = 0,
    MOAT_TLS_RANK_UNTRUSTED,
    MOAT_TLS_RANK_HOST,
    MOAT_TLS_RANK_DATES,      /* the peer's own certificate */
    MOAT_TLS_RANK_CA_DATES,   /* a CA certificate in its chain */
    MOAT_TLS_RANK_NONE
};

/* Set t->err and t->msg; returns err. */
moat_err moat_tls_fail(moat_tls *t, moat_err err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ASCII lower case: host names compare without regard to case. */
static inline char moat_tls_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* "broker" unless the config names the peer otherwise. */
const char *moat_tls_peer(const moat_tls *t);

/* ---- tls_verify.c ---- */

/* mbedtls_ssl_conf_verify() callback; p is the moat_tls. */
int moat_tls_verify_cb(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags);

/* An X.509 time as seconds since the epoch (UTC). */
int64_t moat_tls_x509_seconds(const mbedtls_x509_time *tm);

/* "YYYY-MM-DD" of a time in seconds since the epoch; out holds 16 bytes. */
void moat_tls_format_date(int64_t secs, char out[16]);

/* Is host an IPv4 or IPv6 literal? Fills ip (4 or 16 bytes) and *ip_len. */
bool moat_tls_parse_ip(const char *host, uint8_t ip[16], size_t *ip_len);

/* Check our own certificate's dates against now: MOAT_OK or
 * MOAT_ERR_CERT_EXPIRED with words. */
moat_err moat_tls_check_own_dates(moat_tls *t, int64_t now);

/* "clock is not valid (1970-01-01): ..." */
moat_err moat_tls_clock_error(moat_tls *t, int64_t now);

/* ---- tls_load.c ---- */

moat_err moat_tls_load_credentials(moat_tls *t);

/* ---- tls_words.c ---- */

/* Explain a failed mbedtls_ssl_handshake / read / write / close_notify and
 * return the moat_err for it. during_handshake changes the wording. */
moat_err moat_tls_explain(moat_tls *t, int ret, bool during_handshake);

/* mbedTLS's own words for an error code, with the code. */
void moat_tls_mbedtls_words(int ret, char *out, size_t cap);

#endif
