/*
 * tls.c - the mutual-TLS client: mbedTLS configuration, the non-blocking
 * handshake, the moat_transport over the session, close_notify, and the
 * session kept for resumption.
 *
 * mbedTLS talks to the lower moat_transport through two BIO callbacks that
 * turn MOAT_ERR_WOULD_BLOCK into WANT_READ/WANT_WRITE. Any other failure of
 * the lower transport is kept in t->io_err, so the error names it instead of
 * an mbedTLS code.
 */
#include "tls_internal.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mbedtls/ecp.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl_ciphersuites.h>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

/* ECDHE with AEAD only, in order of preference. Those this build lacks are
 * dropped at init. CCM is listed for ECDSA, as MCU builds often have it. */
static const int wanted_suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
#if !defined(MBEDTLS_SSL_IN_CONTENT_LEN) || MBEDTLS_SSL_IN_CONTENT_LEN >= 16384
    /* Not offered by small-memory builds: with AES-256-GCM and SHA-384, the
     * session's steady state grows by about 900 bytes (measured with
     * bench/tls_heap.c), for no security a device needs over AES-128-GCM
     * and ChaCha20-Poly1305. */
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
#endif
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CCM,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_CCM,
};

/* Key exchange groups, also the curves accepted for ECDSA certificates. */
static const mbedtls_ecp_group_id wanted_curves[] = {
    MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_SECP521R1,
};

#if defined(MBEDTLS_KEY_EXCHANGE_WITH_CERT_ENABLED)
/* Signature hashes we accept in the handshake: no SHA-1, no SHA-224. */
static const int sig_hashes[] = { MBEDTLS_MD_SHA512, MBEDTLS_MD_SHA384, MBEDTLS_MD_SHA256,
                                  MBEDTLS_MD_NONE };
#endif

moat_err moat_tls_fail(moat_tls *t, moat_err err, const char *fmt, ...)
{
    va_list ap;
    t->err = err;
    va_start(ap, fmt);
    vsnprintf(t->msg, sizeof(t->msg), fmt, ap);
    va_end(ap);
    return err;
}

const char *moat_tls_peer(const moat_tls *t)
{
    return t->cfg != NULL && t->cfg->peer_name != NULL ? t->cfg->peer_name : "broker";
}

int64_t moat_tls_os_time(void *unused)
{
    (void)unused;
    return (int64_t)time(NULL);
}

/* ------------------------------------------------------------- BIO -- */

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    moat_tls *t = ctx;
    long n = t->lower.send(t->lower.ctx, buf, len);
    if (n > 0)
        return n > INT_MAX ? INT_MAX : (int)n;
    if (n == MOAT_ERR_WOULD_BLOCK)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    t->io_err = n == 0 ? MOAT_ERR_IO : (moat_err)n;
    return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    moat_tls *t = ctx;
    long n = t->lower.recv(t->lower.ctx, buf, len);
    if (n > 0)
        return n > INT_MAX ? INT_MAX : (int)n;
    if (n == MOAT_ERR_WOULD_BLOCK)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (n == MOAT_ERR_CLOSED)
        return 0; /* end of stream: mbedTLS reports CONN_EOF */
    t->io_err = n == 0 ? MOAT_ERR_IO : (moat_err)n;
    return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
}

/* ------------------------------------------------------------ init -- */

static void release(moat_tls *t)
{
    mbedtls_ssl_free(&t->ssl);
    mbedtls_ssl_config_free(&t->conf);
    mbedtls_x509_crt_free(&t->ca);
    mbedtls_x509_crt_free(&t->cert);
    mbedtls_pk_free(&t->key);
    mbedtls_ssl_session_free(&t->saved);
    t->ready = false;
    t->have_saved = false;
    t->state = MOAT_TLS_IDLE;
}

/* ------------------------------------------------------------- rng -- */

static long this_process(void)
{
#if defined(__unix__) || defined(__APPLE__)
    return (long)getpid();
#else
    return 0;
#endif
}

moat_err moat_tls_rng_init(moat_tls_rng *r, char *why, size_t why_cap)
{
#if defined(MBEDTLS_ENTROPY_C) && defined(MBEDTLS_CTR_DRBG_C)
    static const unsigned char pers[] = "moat_tls";
    int ret;

    memset(r, 0, sizeof(*r));
    mbedtls_entropy_init(&r->entropy);
    mbedtls_ctr_drbg_init(&r->drbg);
    ret = mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy, pers,
                                sizeof(pers) - 1);
    if (ret != 0) {
        if (why != NULL && why_cap > 0) {
            char words[120];
            moat_tls_mbedtls_words(ret, words, sizeof(words));
            snprintf(why, why_cap, "cannot seed the random generator: %s", words);
        }
        moat_tls_rng_free(r);
        return MOAT_ERR_TLS;
    }
    r->pid = this_process();
    r->ready = true;
    return MOAT_OK;
#else
    memset(r, 0, sizeof(*r));
    if (why != NULL && why_cap > 0)
        snprintf(why, why_cap, "no random generator: this mbedTLS build has no entropy source "
                               "or CTR_DRBG, set moat_tls_config.rng");
    return MOAT_ERR_ARG;
#endif
}

int moat_tls_rng_bytes(void *rng, unsigned char *out, size_t len)
{
#if defined(MBEDTLS_ENTROPY_C) && defined(MBEDTLS_CTR_DRBG_C)
    moat_tls_rng *r = rng;
    int ret;

    if (r == NULL || !r->ready)
        return MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
    /* A forked child must not continue its parent's stream. */
    if (r->pid != this_process()) {
        static const unsigned char fork_pers[] = "moat_tls fork";
        if ((ret = mbedtls_ctr_drbg_reseed(&r->drbg, fork_pers, sizeof(fork_pers) - 1)) != 0)
            return ret;
        r->pid = this_process();
    }
    return mbedtls_ctr_drbg_random(&r->drbg, out, len);
#else
    (void)rng;
    (void)out;
    (void)len;
    return -1;
#endif
}

void moat_tls_rng_free(moat_tls_rng *r)
{
    if (r == NULL)
        return;
#if defined(MBEDTLS_ENTROPY_C) && defined(MBEDTLS_CTR_DRBG_C)
    mbedtls_ctr_drbg_free(&r->drbg);
    mbedtls_entropy_free(&r->entropy);
#endif
    r->ready = false;
}

/* The process's generator for sessions whose config names none. */
static moat_tls_rng default_rng;

static moat_err setup_rng(moat_tls *t)
{
    char why[200];
    moat_err e;

    if (t->cfg->rng != NULL) {
        mbedtls_ssl_conf_rng(&t->conf, t->cfg->rng, t->cfg->rng_ctx);
        return MOAT_OK;
    }
    if (!default_rng.ready && (e = moat_tls_rng_init(&default_rng, why, sizeof(why))) != MOAT_OK)
        return moat_tls_fail(t, e, "%s", why);
    mbedtls_ssl_conf_rng(&t->conf, moat_tls_rng_bytes, &default_rng);
    return MOAT_OK;
}

/* The MFLN code to request: the configured one, or the one that fits a
 * receive buffer smaller than the 16 KB a server may otherwise send. */
static moat_err choose_mfl(moat_tls *t, unsigned char *code)
{
    unsigned want = t->cfg->max_fragment_len;
    static const unsigned sizes[] = { 512, 1024, 2048, 4096 };

    *code = 0; /* MBEDTLS_SSL_MAX_FRAG_LEN_NONE */
    if (want == 0) {
        for (unsigned i = 0; i < 4; i++)
            if (MBEDTLS_SSL_IN_CONTENT_LEN < 16384 && sizes[i] <= MBEDTLS_SSL_IN_CONTENT_LEN)
                *code = (unsigned char)(i + 1);
        return MOAT_OK;
    }
    for (unsigned i = 0; i < 4; i++)
        if (sizes[i] == want)
            *code = (unsigned char)(i + 1);
    if (*code == 0)
        return moat_tls_fail(t, MOAT_ERR_ARG,
                             "max_fragment_len %u is not one of 512, 1024, 2048, 4096", want);
    if (want > MBEDTLS_SSL_IN_CONTENT_LEN || want > MBEDTLS_SSL_OUT_CONTENT_LEN)
        return moat_tls_fail(t, MOAT_ERR_ARG,
                             "max_fragment_len %u is larger than this build's record buffers "
                             "(in %u, out %u bytes)", want, (unsigned)MBEDTLS_SSL_IN_CONTENT_LEN,
                             (unsigned)MBEDTLS_SSL_OUT_CONTENT_LEN);
    return MOAT_OK;
}

static moat_err configure(moat_tls *t)
{
    mbedtls_ssl_config *c = &t->conf;
    size_t n = 0;
    unsigned char mfl;
    moat_err e;
    int ret = mbedtls_ssl_config_defaults(c, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0)
        return moat_tls_fail(t, MOAT_ERR_TLS, "mbedTLS configuration failed (-0x%04x)",
                             (unsigned)-ret);

    /* Verification is always required; there is deliberately no setting. */
    mbedtls_ssl_conf_authmode(c, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_verify(c, moat_tls_verify_cb, t);
    mbedtls_ssl_conf_ca_chain(c, t->cfg->ca_chain != NULL ? t->cfg->ca_chain : &t->ca, NULL);
    ret = mbedtls_ssl_conf_own_cert(c, &t->cert, &t->key);
    if (ret != 0)
        return moat_tls_fail(t, MOAT_ERR_TLS, "mbedTLS refused the client certificate (-0x%04x)",
                             (unsigned)-ret);

    mbedtls_ssl_conf_min_version(c, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    for (size_t i = 0; i < sizeof(wanted_suites) / sizeof(wanted_suites[0]); i++)
        if (mbedtls_ssl_ciphersuite_from_id(wanted_suites[i]) != NULL)
            t->ciphersuites[n++] = wanted_suites[i];
    t->ciphersuites[n] = 0;
    if (n == 0)
        return moat_tls_fail(t, MOAT_ERR_TLS,
                             "this mbedTLS build has no ECDHE cipher suite with AES-GCM, "
                             "ChaCha20-Poly1305 or AES-CCM");
    mbedtls_ssl_conf_ciphersuites(c, t->ciphersuites);

    n = 0;
    for (size_t i = 0; i < sizeof(wanted_curves) / sizeof(wanted_curves[0]); i++)
        if (mbedtls_ecp_curve_info_from_grp_id(wanted_curves[i]) != NULL)
            t->curves[n++] = wanted_curves[i];
    t->curves[n] = MBEDTLS_ECP_DP_NONE;
    if (n == 0)
        return moat_tls_fail(t, MOAT_ERR_TLS, "this mbedTLS build has no usable ECDHE curve");
    mbedtls_ssl_conf_curves(c, t->curves);
#if defined(MBEDTLS_KEY_EXCHANGE_WITH_CERT_ENABLED)
    mbedtls_ssl_conf_sig_hashes(c, sig_hashes);
#endif
#if defined(MBEDTLS_SSL_RENEGOTIATION)
    mbedtls_ssl_conf_renegotiation(c, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
    mbedtls_ssl_conf_session_tickets(c, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
#endif

    if ((e = choose_mfl(t, &mfl)) != MOAT_OK)
        return e;
#if defined(MBEDTLS_SSL_MAX_FRAGMENT_LENGTH)
    if (mfl != 0 && mbedtls_ssl_conf_max_frag_len(c, mfl) != 0)
        return moat_tls_fail(t, MOAT_ERR_ARG, "mbedTLS refused the maximum fragment length");
#else
    if (mfl != 0 && t->cfg->max_fragment_len != 0)
        return moat_tls_fail(t, MOAT_ERR_ARG,
                             "this mbedTLS build cannot negotiate a maximum fragment length "
                             "(MBEDTLS_SSL_MAX_FRAGMENT_LENGTH)");
#endif
    return setup_rng(t);
}

moat_err moat_tls_init(moat_tls *t, const moat_tls_config *cfg)
{
    moat_err e;
    int ret;

    if (t == NULL)
        return MOAT_ERR_ARG;
    memset(t, 0, sizeof(*t));
    t->cfg = cfg;
    mbedtls_ssl_init(&t->ssl);
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_x509_crt_init(&t->ca);
    mbedtls_x509_crt_init(&t->cert);
    mbedtls_pk_init(&t->key);
    mbedtls_ssl_session_init(&t->saved);
    t->verdict.rank = MOAT_TLS_RANK_NONE;
    if (cfg == NULL)
        e = moat_tls_fail(t, MOAT_ERR_ARG, "no TLS configuration");
    else if (cfg->time_now == NULL)
        e = moat_tls_fail(t, MOAT_ERR_ARG,
                          "no clock configured (time_now): certificates cannot be checked");
    else if ((e = moat_tls_load_credentials(t)) == MOAT_OK && (e = configure(t)) == MOAT_OK &&
             (ret = mbedtls_ssl_setup(&t->ssl, &t->conf)) != 0)
        e = moat_tls_fail(t, MOAT_ERR_NO_SPACE, "cannot set up the TLS context (-0x%04x)",
                          (unsigned)-ret);
    if (e != MOAT_OK) {
        release(t);
        return e;
    }
    t->ready = true;
    return MOAT_OK;
}

void moat_tls_free(moat_tls *t)
{
    if (t == NULL || !t->ready)
        return;
    release(t);
}

/* --------------------------------------------------------- session -- */

void moat_tls_forget_session(moat_tls *t)
{
    mbedtls_ssl_session_free(&t->saved);
    mbedtls_ssl_session_init(&t->saved);
    t->have_saved = false;
    memset(t->saved_host, 0, sizeof(t->saved_host));
}

/* SHA-256 of the host name in lower case: what a saved session remembers
 * of its host (32 bytes instead of a copy of up to 255). */
static void host_digest(const char *host, uint8_t out[32])
{
    char lower[sizeof(((moat_tls *)0)->host)];
    size_t n = 0;

    for (; host[n] != '\0' && n < sizeof(lower); n++)
        lower[n] = moat_tls_lower(host[n]);
    if (mbedtls_sha256_ret((const unsigned char *)lower, n, out, 0) != 0)
        memset(out, 0, 32); /* never matches a digest that was computed */
}

static bool same_host(const uint8_t saved[32], const char *host)
{
    uint8_t d[32];
    host_digest(host, d);
    return memcmp(saved, d, sizeof(d)) == 0;
}

/* Offer the saved session only to the host it was made with, and only for a
 * while after its certificate was checked: a resumed handshake checks none. */
static void offer_saved(moat_tls *t, int64_t now)
{
    uint32_t max_age = t->cfg->resume_max_age_s != 0 ? t->cfg->resume_max_age_s
                                                     : MOAT_TLS_RESUME_MAX_AGE_S;
    if (!t->have_saved)
        return;
    if (!same_host(t->saved_host, t->host) || now < t->saved_at ||
        now - t->saved_at >= (int64_t)max_age ||
        mbedtls_ssl_set_session(&t->ssl, &t->saved) != 0)
        moat_tls_forget_session(t);
}

moat_err moat_tls_connect_start(moat_tls *t, const moat_transport *lower, const char *host)
{
    uint8_t ip[16];
    size_t ip_len, host_len;
    int64_t now;
    int ret;

    if (t == NULL || !t->ready)
        return MOAT_ERR_STATE;
    t->state = MOAT_TLS_IDLE;
    t->err = MOAT_OK;
    t->io_err = MOAT_OK;
    t->msg[0] = '\0';
    t->verdict.rank = MOAT_TLS_RANK_NONE;
    t->verdict.msg[0] = '\0';
    t->verify_calls = 0;
    t->resumed = false;
    t->want_write = false;
    t->write_pending = 0;
    if (lower == NULL || lower->send == NULL || lower->recv == NULL)
        return moat_tls_fail(t, MOAT_ERR_ARG, "no lower transport for TLS");
    host_len = host != NULL ? strlen(host) : 0;
    if (host_len > 0 && host[host_len - 1] == '.')
        host_len--;
    if (host_len == 0 || host_len >= sizeof(t->host))
        return moat_tls_fail(t, MOAT_ERR_ARG, "invalid %s host name", moat_tls_peer(t));
    memcpy(t->host, host, host_len);
    t->host[host_len] = '\0';

    ret = mbedtls_ssl_session_reset(&t->ssl);
    if (ret != 0)
        return moat_tls_explain(t, ret, true);

    /* Nothing is checked, or even sent, while the clock is not valid. */
    now = t->cfg->time_now(t->cfg->time_user);
    if (now < MOAT_TLS_CLOCK_VALID_FROM)
        return moat_tls_clock_error(t, now);
    if (moat_tls_check_own_dates(t, now) != MOAT_OK)
        return t->err;

    /* SNI carries DNS names only (RFC 6066); the name check is ours. */
    ret = mbedtls_ssl_set_hostname(&t->ssl,
                                   moat_tls_parse_ip(t->host, ip, &ip_len) ? NULL : t->host);
    if (ret != 0)
        return moat_tls_fail(t, MOAT_ERR_ARG, "invalid %s host name '%s'", moat_tls_peer(t),
                             t->host);
    offer_saved(t, now);
    t->lower = *lower;
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    t->state = MOAT_TLS_HANDSHAKE;
    return MOAT_OK;
}

static moat_err session_failed(moat_tls *t, int ret, bool hs)
{
    moat_err e = moat_tls_explain(t, ret, hs);
    t->state = MOAT_TLS_DEAD;
    /* A peer that failed verification or refused us gets a full handshake
     * next time; a dropped connection keeps the session. */
    if (e != MOAT_ERR_IO && e != MOAT_ERR_CLOSED && e != MOAT_ERR_CONNECT)
        moat_tls_forget_session(t);
    return e;
}

static moat_err handshake_done(moat_tls *t)
{
    /* A full handshake always calls the verify callback (every suite we
     * offer authenticates the server with a certificate); a resumed one
     * sends no certificates. */
    t->resumed = t->verify_calls == 0;
    if (t->verdict.rank != MOAT_TLS_RANK_NONE || mbedtls_ssl_get_verify_result(&t->ssl) != 0)
        return session_failed(t, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED, true);
    if (!t->resumed || !t->have_saved) {
        t->saved_at = t->verify_now;
        host_digest(t->host, t->saved_host);
    }
    /* Keep the newest ticket; the age still counts from the last check. */
    mbedtls_ssl_session_free(&t->saved);
    mbedtls_ssl_session_init(&t->saved);
    t->have_saved = mbedtls_ssl_get_session(&t->ssl, &t->saved) == 0;
    t->state = MOAT_TLS_OPEN;
    return MOAT_OK;
}

moat_err moat_tls_connect_step(moat_tls *t)
{
    int ret;

    if (t == NULL || !t->ready)
        return MOAT_ERR_STATE;
    if (t->state == MOAT_TLS_OPEN)
        return MOAT_OK;
    if (t->state != MOAT_TLS_HANDSHAKE)
        return t->err != MOAT_OK ? t->err : MOAT_ERR_STATE;
    ret = mbedtls_ssl_handshake(&t->ssl);
    if (ret == 0)
        return handshake_done(t);
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
        t->want_write = ret == MBEDTLS_ERR_SSL_WANT_WRITE;
        return MOAT_ERR_WOULD_BLOCK;
    }
    return session_failed(t, ret, true);
}

bool moat_tls_want_write(const moat_tls *t)
{
    return t->want_write;
}

/* ------------------------------------------------------- transport -- */

static long not_open(moat_tls *t)
{
    if (t->state == MOAT_TLS_DEAD)
        return t->err != MOAT_OK ? t->err : MOAT_ERR_CLOSED;
    return t->state == MOAT_TLS_HANDSHAKE ? MOAT_ERR_STATE : MOAT_ERR_CLOSED;
}

/*
 * One record per call. mbedTLS requires that a write which returned
 * WANT_WRITE is repeated with the same data and length; the MQTT pump
 * retries with the same bytes but perhaps more of them, so the length of the
 * pending record is remembered and used again.
 */
static long tls_send(void *ctx, const uint8_t *buf, size_t len)
{
    moat_tls *t = ctx;
    int ret;

    if (t->state != MOAT_TLS_OPEN)
        return not_open(t);
    if (len == 0)
        return MOAT_ERR_ARG;
    if (t->write_pending != 0) {
        if (len < t->write_pending)
            return moat_tls_fail(t, MOAT_ERR_ARG,
                                 "TLS send retried with %zu bytes, fewer than the %zu pending",
                                 len, t->write_pending);
        len = t->write_pending;
        /* Something else (an alert) flushed the record meanwhile. */
        if (t->ssl.out_left == 0) {
            t->write_pending = 0;
            return (long)len;
        }
    } else {
        ret = mbedtls_ssl_get_max_out_record_payload(&t->ssl);
        if (ret > 0 && len > (size_t)ret)
            len = (size_t)ret;
    }
    ret = mbedtls_ssl_write(&t->ssl, buf, len);
    if (ret > 0) {
        t->write_pending = 0;
        return ret;
    }
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE || ret == MBEDTLS_ERR_SSL_WANT_READ) {
        t->write_pending = len;
        return MOAT_ERR_WOULD_BLOCK;
    }
    return session_failed(t, ret, false);
}

static long tls_recv(void *ctx, uint8_t *buf, size_t len)
{
    moat_tls *t = ctx;
    int ret;

    if (t->state != MOAT_TLS_OPEN)
        return not_open(t);
    if (len == 0)
        return MOAT_ERR_ARG;
    if (len > INT_MAX)
        len = INT_MAX;
    ret = mbedtls_ssl_read(&t->ssl, buf, len);
    if (ret > 0)
        return ret;
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
        return MOAT_ERR_WOULD_BLOCK;
    return session_failed(t, ret, false);
}

bool moat_tls_pending(const moat_tls *t)
{
    if (t->state != MOAT_TLS_OPEN)
        return false;
    return mbedtls_ssl_get_bytes_avail(&t->ssl) > 0 || mbedtls_ssl_check_pending(&t->ssl) != 0 ||
           (t->lower.pending != NULL && t->lower.pending(t->lower.ctx));
}

static bool tls_pending(void *ctx)
{
    return moat_tls_pending(ctx);
}

void moat_tls_transport(moat_tls *t, moat_transport *out)
{
    out->send = tls_send;
    out->recv = tls_recv;
    out->ctx = t;
    out->pending = tls_pending;
}

/* ----------------------------------------------------------- close -- */

moat_err moat_tls_close(moat_tls *t)
{
    int ret;

    if (t == NULL || !t->ready)
        return MOAT_ERR_STATE;
    if (t->state != MOAT_TLS_OPEN && t->state != MOAT_TLS_CLOSING) {
        t->state = MOAT_TLS_IDLE;
        return MOAT_OK;
    }
    /* A record left half-sent by a WOULD_BLOCK send is flushed by the first
     * call, which then reports success without sending the alert. */
    bool had_pending = t->state == MOAT_TLS_OPEN && t->ssl.out_left != 0;
    t->state = MOAT_TLS_CLOSING;
    ret = mbedtls_ssl_close_notify(&t->ssl);
    if (ret == 0 && had_pending)
        ret = mbedtls_ssl_close_notify(&t->ssl);
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE || ret == MBEDTLS_ERR_SSL_WANT_READ) {
        t->want_write = true;
        return MOAT_ERR_WOULD_BLOCK;
    }
    t->state = MOAT_TLS_IDLE;
    t->write_pending = 0;
    return ret == 0 ? MOAT_OK : moat_tls_explain(t, ret, false);
}

/* ------------------------------------------------------- accessors -- */

bool moat_tls_resumed(const moat_tls *t)
{
    return t->resumed;
}

const char *moat_tls_ciphersuite(const moat_tls *t)
{
    const char *name;
    if (t->state != MOAT_TLS_OPEN && t->state != MOAT_TLS_CLOSING)
        return "";
    name = mbedtls_ssl_get_ciphersuite(&t->ssl);
    return name != NULL ? name : "";
}

size_t moat_tls_max_fragment(const moat_tls *t)
{
    int n;
    if (t->state != MOAT_TLS_OPEN && t->state != MOAT_TLS_CLOSING)
        return 0;
    n = mbedtls_ssl_get_max_out_record_payload(&t->ssl);
    return n > 0 ? (size_t)n : 0;
}

const char *moat_tls_last_error(const moat_tls *t)
{
    if (t->msg[0] != '\0')
        return t->msg;
    return t->err != MOAT_OK ? moat_strerror(t->err) : "";
}
