/*
 * tls_words.c - a failed TLS call, said in words.
 *
 * The order of the checks matters: a dead socket explains everything that
 * follows it; then our own verdict on the peer's certificate (recorded by
 * the verify callback, it knows the dates and names involved); then what
 * mbedTLS's flags and the peer's alert say; mbedTLS's own text last.
 */
#include "tls_internal.h"

#include <stdio.h>

#if defined(MBEDTLS_ERROR_C)
#include <mbedtls/error.h>
#endif

void moat_tls_mbedtls_words(int ret, char *out, size_t cap)
{
#if defined(MBEDTLS_ERROR_C)
    char text[96];
    mbedtls_strerror(ret, text, sizeof(text));
    snprintf(out, cap, "%s, -0x%04x", text, (unsigned)-ret);
#else
    snprintf(out, cap, "mbedTLS error -0x%04x", (unsigned)-ret);
#endif
}

/* RFC 8446 section 6 / RFC 5246 section 7.2 names. */
static const char *alert_name(unsigned code)
{
    switch (code) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 21: return "decryption_failed";
    case 22: return "record_overflow";
    case 30: return "decompression_failure";
    case 40: return "handshake_failure";
    case 41: return "no_certificate";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 86: return "inappropriate_fallback";
    case 90: return "user_canceled";
    case 100: return "no_renegotiation";
    case 109: return "missing_extension";
    case 110: return "unsupported_extension";
    case 112: return "unrecognized_name";
    case 116: return "certificate_required";
    case 120: return "no_application_protocol";
    default: return NULL;
    }
}

/* Alerts by which a server says it does not accept our certificate. */
static bool about_our_certificate(unsigned code)
{
    return (code >= 41 && code <= 46) || code == 48 || code == 49 || code == 116;
}

static moat_err explain_alert(moat_tls *t, unsigned code, bool hs)
{
    const char *name = alert_name(code);
    char unknown[24];

    if (name == NULL) {
        snprintf(unknown, sizeof(unknown), "%u", code);
        name = unknown;
    }
    if (about_our_certificate(code))
        return moat_tls_fail(t, MOAT_ERR_CERT_REFUSED, "the %s refused our certificate (alert: %s)",
                             moat_tls_peer(t), name);
    return moat_tls_fail(t, MOAT_ERR_TLS_ALERT, "the %s ended the TLS %s (alert: %s)",
                         moat_tls_peer(t), hs ? "handshake" : "session", name);
}

/* Flags that the verify callback did not explain (usage, algorithms). */
static moat_err explain_flags(moat_tls *t, uint32_t flags)
{
    const char *peer = moat_tls_peer(t);
    char info[160];

    if (flags & (MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
                 MBEDTLS_X509_BADCERT_NS_CERT_TYPE))
        return moat_tls_fail(t, MOAT_ERR_CERT_INVALID,
                             "%s certificate is not meant for a TLS server (key usage or "
                             "extended key usage)", peer);
    if (flags & MBEDTLS_X509_BADCERT_BAD_MD)
        return moat_tls_fail(t, MOAT_ERR_CERT_INVALID,
                             "%s certificate is signed with a hash we do not accept", peer);
    if (flags & (MBEDTLS_X509_BADCERT_BAD_PK | MBEDTLS_X509_BADCERT_BAD_KEY))
        return moat_tls_fail(t, MOAT_ERR_CERT_INVALID,
                             "%s certificate uses a key type or size we do not accept", peer);
    if (mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags) < 0)
        snprintf(info, sizeof(info), "flags 0x%08lx", (unsigned long)flags);
    for (char *p = info; *p != '\0'; p++)
        if (*p == '\n')
            *p = *(p + 1) != '\0' ? ';' : '\0';
    return moat_tls_fail(t, MOAT_ERR_CERT_INVALID, "%s certificate refused: %s", peer, info);
}

/*
 * A server that refuses our certificate sends an alert and closes at once,
 * while our next handshake records are still on the way: its kernel answers
 * them with a reset and our I/O fails before mbedTLS reads the alert. The
 * alert is usually still in our receive buffer, in the clear (the server had
 * not switched to encryption). Returns its description, or -1 when the next
 * bytes are not exactly one fatal alert record.
 */
static int plaintext_alert(moat_tls *t)
{
    uint8_t rec[7];
    size_t have = 0;
    bool again = true;

    while (have < sizeof(rec)) {
        long n = t->lower.recv(t->lower.ctx, rec + have, sizeof(rec) - have);
        /* A transport may say WOULD_BLOCK once without asking the kernel
         * (moat_tcp's read-ahead after a short read): ask once more. */
        if (n == MOAT_ERR_WOULD_BLOCK && again) {
            again = false;
            continue;
        }
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    if (rec[0] != MBEDTLS_SSL_MSG_ALERT || rec[1] != 3 || rec[3] != 0 || rec[4] != 2 ||
        rec[5] != MBEDTLS_SSL_ALERT_LEVEL_FATAL)
        return -1;
    return rec[6];
}

moat_err moat_tls_explain(moat_tls *t, int ret, bool hs)
{
    const char *peer = moat_tls_peer(t);
    char why[120];
    int alert;

    if (t->io_err != MOAT_OK && hs && (alert = plaintext_alert(t)) >= 0)
        return explain_alert(t, (unsigned)alert, hs);
    if (t->io_err != MOAT_OK)
        return moat_tls_fail(t, t->io_err, "connection to the %s failed%s (%s)", peer,
                             hs ? " during the TLS handshake" : "", moat_strerror(t->io_err));
    if (t->verdict.rank != MOAT_TLS_RANK_NONE)
        return moat_tls_fail(t, t->verdict.err, "%s", t->verdict.msg);
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED || ret == MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE) {
        uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
        if (flags != 0 && flags != UINT32_MAX)
            return explain_flags(t, flags);
    }
    /* mbedTLS 2.28 has no getter for a received alert; the record it
     * returned MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE for is still in in_msg:
     * level, description. */
    if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE)
        return explain_alert(t, t->ssl.in_msg != NULL ? t->ssl.in_msg[1] : 256u, hs);
    if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == MBEDTLS_ERR_SSL_CONN_EOF)
        return moat_tls_fail(t, MOAT_ERR_CLOSED, hs ? "the %s closed the connection during the TLS handshake"
                                                    : "the %s closed the TLS session", peer);
    if (ret == MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION)
        return moat_tls_fail(t, MOAT_ERR_TLS, "the %s does not speak TLS 1.2 or newer", peer);
    moat_tls_mbedtls_words(ret, why, sizeof(why));
    return moat_tls_fail(t, MOAT_ERR_TLS, "TLS %s with the %s failed: %s",
                         hs ? "handshake" : "session", peer, why);
}
