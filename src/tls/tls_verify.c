/*
 * tls_verify.c - the peer check that mbedTLS cannot do for us.
 *
 * mbedTLS verifies signatures and the chain to our CA. Two things it does
 * not do the way moat needs, so the verify callback redoes them:
 *  - dates: a build with MBEDTLS_HAVE_TIME_DATE (Debian's) compares them with
 *    the OS clock, an MCU build not at all. The callback clears
 *    BADCERT_EXPIRED/FUTURE on every certificate of the chain and sets them
 *    again from the caller's clock (cfg->time_now). While that clock is not
 *    valid every certificate fails with BADCERT_OTHER: nothing is judged.
 *  - host names: mbedTLS 2.28 matches dNSName (and falls back to the CN),
 *    but not iPAddress. The callback clears BADCERT_CN_MISMATCH on the leaf
 *    and sets it from its own subjectAltName match, dNSName or iPAddress.
 * Each problem is also written down in words (t->verdict) for the error.
 * Flags are only ever cleared to be recomputed, never just cleared.
 */
#include "tls_internal.h"

#include <stdio.h>
#include <string.h>

#define SAN_DNS (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2)
#define SAN_IP (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7)

/* ------------------------------------------------------------- dates -- */

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153u * (m > 2 ? m - 3 : m + 9) + 2u) / 5u + d - 1u;
    unsigned doe = yoe * 365u + yoe / 4u - yoe / 100u + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int64_t moat_tls_x509_seconds(const mbedtls_x509_time *tm)
{
    int64_t days = days_from_civil(tm->year, (unsigned)tm->mon, (unsigned)tm->day);
    return days * 86400 + tm->hour * 3600 + tm->min * 60 + tm->sec;
}

void moat_tls_format_date(int64_t secs, char out[16])
{
    int64_t z = (secs >= 0 ? secs : secs - 86399) / 86400 + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460u + doe / 36524u - doe / 146096u) / 365u;
    unsigned doy = doe - (365u * yoe + yoe / 4u - yoe / 100u);
    unsigned mp = (5u * doy + 2u) / 153u;
    unsigned d = doy - (153u * mp + 2u) / 5u + 1u;
    unsigned m = mp < 10u ? mp + 3u : mp - 9u;
    int64_t y = (int64_t)yoe + era * 400 + (m <= 2u);
    unsigned year = y < 0 ? 0u : y > 9999 ? 9999u : (unsigned)y;
    snprintf(out, 16, "%04u-%02u-%02u", year, m % 100u, d % 100u);
}

moat_err moat_tls_clock_error(moat_tls *t, int64_t now)
{
    char date[16];
    moat_tls_format_date(now, date);
    return moat_tls_fail(t, MOAT_ERR_CLOCK,
                         "clock is not valid (%s): certificates cannot be checked yet", date);
}

moat_err moat_tls_check_own_dates(moat_tls *t, int64_t now)
{
    char date[16];
    if (now > moat_tls_x509_seconds(&t->cert.valid_to)) {
        moat_tls_format_date(moat_tls_x509_seconds(&t->cert.valid_to), date);
        return moat_tls_fail(t, MOAT_ERR_CERT_EXPIRED,
                             "client certificate has expired (notAfter %s)", date);
    }
    if (now < moat_tls_x509_seconds(&t->cert.valid_from)) {
        moat_tls_format_date(moat_tls_x509_seconds(&t->cert.valid_from), date);
        return moat_tls_fail(t, MOAT_ERR_CERT_EXPIRED,
                             "client certificate is not valid yet (notBefore %s)", date);
    }
    return MOAT_OK;
}

/* ------------------------------------------------------ IP literals -- */

static bool parse_ipv4(const char *s, uint8_t out[4])
{
    for (int i = 0; i < 4; i++) {
        unsigned v = 0, digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 4) {
            v = v * 10u + (unsigned)(*s++ - '0');
            digits++;
        }
        if (digits == 0 || digits > 3 || v > 255)
            return false;
        out[i] = (uint8_t)v;
        if (i < 3 && *s++ != '.')
            return false;
    }
    return *s == '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 4291 text form: groups, one "::", an optional dotted IPv4 tail. */
static bool parse_ipv6(const char *s, uint8_t out[16])
{
    uint16_t w[8];
    int n = 0, gap = -1;

    if (s[0] == ':') {
        if (s[1] != ':')
            return false;
        gap = 0;
        s += 2;
    }
    while (*s != '\0') {
        const char *group = s;
        unsigned v = 0;
        int digits = 0, h;
        while ((h = hex_value(*s)) >= 0 && digits < 5) {
            v = (v << 4) | (unsigned)h;
            s++;
            digits++;
        }
        if (*s == '.') { /* the last 32 bits as a dotted IPv4 address */
            uint8_t v4[4];
            if (n > 6 || !parse_ipv4(group, v4))
                return false;
            w[n++] = (uint16_t)(v4[0] << 8 | v4[1]);
            w[n++] = (uint16_t)(v4[2] << 8 | v4[3]);
            break;
        }
        if (digits == 0 || digits > 4 || n == 8)
            return false;
        w[n++] = (uint16_t)v;
        if (*s == '\0')
            break;
        if (*s++ != ':')
            return false;
        if (*s == ':') {
            if (gap >= 0)
                return false;
            gap = n;
            s++;
        } else if (*s == '\0') {
            return false; /* a trailing single ':' */
        }
    }
    if (gap < 0 ? n != 8 : n > 7)
        return false;
    memset(out, 0, 16);
    int tail = gap < 0 ? 0 : n - gap;
    for (int i = 0; i < n - tail; i++) {
        out[2 * i] = (uint8_t)(w[i] >> 8);
        out[2 * i + 1] = (uint8_t)w[i];
    }
    for (int i = 0; i < tail; i++) {
        int at = 8 - tail + i;
        out[2 * at] = (uint8_t)(w[gap + i] >> 8);
        out[2 * at + 1] = (uint8_t)w[gap + i];
    }
    return true;
}

bool moat_tls_parse_ip(const char *host, uint8_t ip[16], size_t *ip_len)
{
    char buf[64];
    size_t len = strcspn(host, "%"); /* drop an IPv6 zone ("fe80::1%eth0") */

    if (parse_ipv4(host, ip)) {
        *ip_len = 4;
        return true;
    }
    if (len == 0 || len >= sizeof(buf) || strchr(host, ':') == NULL)
        return false;
    memcpy(buf, host, len);
    buf[len] = '\0';
    if (!parse_ipv6(buf, ip))
        return false;
    *ip_len = 16;
    return true;
}

/* -------------------------------------------------------- host names -- */

static bool same_name(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen > 0 && a[alen - 1] == '.')
        alen--;
    if (blen > 0 && b[blen - 1] == '.')
        blen--;
    if (alen != blen || alen == 0)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (moat_tls_lower(a[i]) != moat_tls_lower(b[i]))
            return false;
    return true;
}

/* A dNSName matches the host exactly, or as "*.rest" where * is the whole
 * first label of host and rest has at least two labels (no "*.com"). */
static bool dns_matches(const unsigned char *pat, size_t plen, const char *host)
{
    const char *p = (const char *)pat;
    size_t hlen = strlen(host);

    if (memchr(pat, '\0', plen) != NULL)
        return false;
    if (plen > 2 && p[0] == '*' && p[1] == '.') {
        const char *dot = strchr(host, '.');
        if (memchr(p + 2, '.', plen - 2) == NULL || dot == NULL || dot == host)
            return false;
        return same_name(p + 2, plen - 2, dot + 1, hlen - (size_t)(dot + 1 - host));
    }
    return same_name(p, plen, host, hlen);
}

static bool names_host(const mbedtls_x509_crt *crt, const char *host)
{
    uint8_t ip[16];
    size_t ip_len = 0;
    bool is_ip = moat_tls_parse_ip(host, ip, &ip_len);

    for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s != NULL && s->buf.p != NULL;
         s = s->next) {
        if (is_ip && s->buf.tag == SAN_IP && s->buf.len == ip_len &&
            memcmp(s->buf.p, ip, ip_len) == 0)
            return true;
        if (!is_ip && s->buf.tag == SAN_DNS && dns_matches(s->buf.p, s->buf.len, host))
            return true;
    }
    return false;
}

/* "localhost, 127.0.0.1" - what the certificate does name, for the error. */
static void list_names(const mbedtls_x509_crt *crt, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s != NULL && s->buf.p != NULL;
         s = s->next) {
        char one[80];
        const unsigned char *b = s->buf.p;
        if (s->buf.tag == SAN_DNS)
            snprintf(one, sizeof(one), "%.*s", (int)(s->buf.len < 64 ? s->buf.len : 64),
                     (const char *)b);
        else if (s->buf.tag == SAN_IP && s->buf.len == 4)
            snprintf(one, sizeof(one), "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
        else if (s->buf.tag == SAN_IP && s->buf.len == 16)
            snprintf(one, sizeof(one), "%x:%x:%x:%x:%x:%x:%x:%x", b[0] << 8 | b[1],
                     b[2] << 8 | b[3], b[4] << 8 | b[5], b[6] << 8 | b[7], b[8] << 8 | b[9],
                     b[10] << 8 | b[11], b[12] << 8 | b[13], b[14] << 8 | b[15]);
        else
            continue;
        int n = snprintf(out + used, cap - used, "%s%s", used > 0 ? ", " : "", one);
        if (n < 0 || (size_t)n >= cap - used) {
            out[used] = '\0';
            return;
        }
        used += (size_t)n;
    }
}

/* ---------------------------------------------------------- callback -- */

/* Keep the most telling problem (lowest rank, first seen). */
static void note(moat_tls *t, int rank, moat_err err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static void note(moat_tls *t, int rank, moat_err err, const char *fmt, ...)
{
    va_list ap;
    if (rank >= t->verdict.rank)
        return;
    t->verdict.rank = rank;
    t->verdict.err = err;
    va_start(ap, fmt);
    vsnprintf(t->verdict.msg, sizeof(t->verdict.msg), fmt, ap);
    va_end(ap);
}

static void subject_of(const mbedtls_x509_crt *crt, char *out, size_t cap)
{
    if (mbedtls_x509_dn_gets(out, cap, &crt->subject) < 0)
        snprintf(out, cap, "?");
}

static void check_dates(moat_tls *t, const mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    int64_t from = moat_tls_x509_seconds(&crt->valid_from);
    int64_t to = moat_tls_x509_seconds(&crt->valid_to);
    char date[16], who[120];
    int rank = depth == 0 ? MOAT_TLS_RANK_DATES : MOAT_TLS_RANK_CA_DATES;

    if (depth == 0)
        snprintf(who, sizeof(who), "%s certificate", moat_tls_peer(t));
    else {
        char subject[96];
        subject_of(crt, subject, sizeof(subject));
        snprintf(who, sizeof(who), "%s CA certificate '%s'", moat_tls_peer(t), subject);
    }
    if (t->verify_now > to) {
        *flags |= MBEDTLS_X509_BADCERT_EXPIRED;
        moat_tls_format_date(to, date);
        note(t, rank, MOAT_ERR_CERT_EXPIRED, "%s has expired (notAfter %s)", who, date);
    } else if (t->verify_now < from) {
        *flags |= MBEDTLS_X509_BADCERT_FUTURE;
        moat_tls_format_date(from, date);
        note(t, rank, MOAT_ERR_CERT_EXPIRED, "%s is not valid yet (notBefore %s)", who, date);
    }
}

int moat_tls_verify_cb(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    moat_tls *t = p;

    /* One reading of the clock judges the whole chain. */
    if (t->verify_calls++ == 0)
        t->verify_now = t->cfg->time_now(t->cfg->time_user);

    *flags &= ~(uint32_t)(MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE);
    if (t->verify_now < MOAT_TLS_CLOCK_VALID_FROM) {
        char date[16];
        *flags |= MBEDTLS_X509_BADCERT_OTHER;
        moat_tls_format_date(t->verify_now, date);
        note(t, MOAT_TLS_RANK_CLOCK, MOAT_ERR_CLOCK,
             "clock is not valid (%s): certificates cannot be checked yet", date);
        return 0;
    }
    check_dates(t, crt, depth, flags);

    if (*flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) {
        char issuer[96];
        if (mbedtls_x509_dn_gets(issuer, sizeof(issuer), &crt->issuer) < 0)
            snprintf(issuer, sizeof(issuer), "?");
        note(t, MOAT_TLS_RANK_UNTRUSTED, MOAT_ERR_CERT_UNTRUSTED,
             "%s certificate is not signed by the configured CA (issuer '%s')",
             moat_tls_peer(t), issuer);
    }

    if (depth == 0) {
        *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
        if (!names_host(crt, t->host)) {
            char names[120];
            *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
            list_names(crt, names, sizeof(names));
            note(t, MOAT_TLS_RANK_HOST, MOAT_ERR_CERT_HOST,
                 "%s certificate does not name host '%s' (%s%s)", moat_tls_peer(t), t->host,
                 names[0] != '\0' ? "it names " : "it has no DNS or IP subjectAltName",
                 names);
        }
    }
    return 0;
}
