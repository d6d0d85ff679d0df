/*
 * tls_load.c - the CA, our certificate and our key, from files or memory.
 *
 * Files are read here rather than by mbedtls_x509_crt_parse_file() so that a
 * failure can name the path and say why (errno). PEM and DER are told apart
 * by the first byte: DER always starts with a SEQUENCE (0x30). PEM text gets
 * the terminating NUL that mbedTLS wants, so callers need not add one.
 * Buffers that held a private key are wiped before they are freed.
 */
#include "tls_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/platform.h>
#include <mbedtls/platform_util.h>

/* No credential file is anywhere near this big. */
#define MAX_CREDENTIAL_FILE (1024L * 1024L)

typedef struct blob {
    unsigned char *buf;
    size_t len;
    bool owned;
} blob;

static void blob_free(blob *b)
{
    if (b->owned) {
        mbedtls_platform_zeroize(b->buf, b->len);
        mbedtls_free(b->buf);
    }
    b->buf = NULL;
    b->len = 0;
    b->owned = false;
}

/* "client key '/etc/moat/device.key'" or "client key (in memory)". */
static void describe(const moat_tls_source *src, const char *what, char *out, size_t cap)
{
    if (src->path != NULL)
        snprintf(out, cap, "%s '%s'", what, src->path);
    else
        snprintf(out, cap, "%s (in memory)", what);
}

/* Text gets a NUL appended (counted in len, as mbedTLS wants for PEM). */
static moat_err own_copy(moat_tls *t, const unsigned char *data, size_t len, bool text,
                         blob *b)
{
    b->buf = mbedtls_calloc(1, len + 1);
    if (b->buf == NULL)
        return moat_tls_fail(t, MOAT_ERR_NO_SPACE, "out of memory loading credentials");
    memcpy(b->buf, data, len);
    b->len = len + (text ? 1 : 0);
    b->owned = true;
    return MOAT_OK;
}

#if !defined(MOAT_TLS_NO_FILES)
static moat_err read_file(moat_tls *t, const char *path, const char *what, blob *b)
{
    FILE *f = fopen(path, "rb");
    long size = -1;
    size_t got = 0;
    int saved_errno;

    if (f == NULL)
        return moat_tls_fail(t, MOAT_ERR_FILE, "cannot read %s '%s': %s", what, path,
                             strerror(errno));
    /* A directory opens fine on Linux; the first read says EISDIR. */
    if (getc(f) == EOF && ferror(f)) {
        saved_errno = errno;
        fclose(f);
        return moat_tls_fail(t, MOAT_ERR_FILE, "cannot read %s '%s': %s", what, path,
                             strerror(saved_errno));
    }
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        saved_errno = errno;
        fclose(f);
        return moat_tls_fail(t, MOAT_ERR_FILE, "cannot read %s '%s': %s", what, path,
                             strerror(saved_errno));
    }
    if (size > MAX_CREDENTIAL_FILE) {
        fclose(f);
        return moat_tls_fail(t, MOAT_ERR_CERT_FORMAT, "%s '%s' is too large (%ld bytes)", what,
                             path, size);
    }
    b->buf = mbedtls_calloc(1, (size_t)size + 1);
    if (b->buf == NULL) {
        fclose(f);
        return moat_tls_fail(t, MOAT_ERR_NO_SPACE, "out of memory reading %s '%s'", what, path);
    }
    b->owned = true;
    b->len = (size_t)size + 1;
    got = fread(b->buf, 1, (size_t)size, f);
    saved_errno = errno;
    if (got != (size_t)size || ferror(f)) {
        fclose(f);
        blob_free(b);
        return moat_tls_fail(t, MOAT_ERR_FILE, "cannot read %s '%s': %s", what, path,
                             got != (size_t)size && !saved_errno ? "short read"
                                                                 : strerror(saved_errno));
    }
    fclose(f);
    if (size == 0) {
        blob_free(b);
        return moat_tls_fail(t, MOAT_ERR_CERT_FORMAT, "%s '%s' is empty", what, path);
    }
    b->len = (size_t)size + (b->buf[0] == 0x30 ? 0 : 1); /* DER: no NUL */
    return MOAT_OK;
}
#endif

/* The bytes of a source; b->len is 0 when the source is empty. */
static moat_err get_bytes(moat_tls *t, const moat_tls_source *src, const char *what, blob *b)
{
    memset(b, 0, sizeof(*b));
    if (src->path != NULL) {
#if !defined(MOAT_TLS_NO_FILES)
        return read_file(t, src->path, what, b);
#else
        return moat_tls_fail(t, MOAT_ERR_ARG, "%s '%s': this build has no files", what,
                             src->path);
#endif
    }
    if (src->data == NULL || src->len == 0)
        return MOAT_OK;
    if (src->data[0] != 0x30 && src->data[src->len - 1] != '\0')
        return own_copy(t, src->data, src->len, true, b);
    b->buf = (unsigned char *)(uintptr_t)src->data; /* only read, never freed */
    b->len = src->len;
    return MOAT_OK;
}

static moat_err load_ca(moat_tls *t)
{
    char name[300], why[120];
    blob b;
    moat_err e;

    if (t->cfg->ca_chain != NULL) {
        /* One source of trust, so that nobody wonders which one counts. */
        if (t->cfg->ca.path != NULL || t->cfg->ca.data != NULL)
            return moat_tls_fail(t, MOAT_ERR_ARG,
                                 "both a CA file and a parsed CA chain are configured: "
                                 "set one");
        if (t->cfg->ca_chain->raw.len == 0)
            return moat_tls_fail(t, MOAT_ERR_ARG,
                                 "the parsed CA chain is empty: the %s cannot be verified",
                                 moat_tls_peer(t));
        return MOAT_OK;
    }
    if ((e = get_bytes(t, &t->cfg->ca, "CA file", &b)) != MOAT_OK)
        return e;
    describe(&t->cfg->ca, "CA file", name, sizeof(name));
    if (b.len == 0)
        return moat_tls_fail(t, MOAT_ERR_ARG,
                             "no CA configured: the %s cannot be verified", moat_tls_peer(t));
    /* A bundle may hold certificates this build cannot parse (> 0): fine,
     * as long as one parsed; those are simply not trusted. */
    int ret = mbedtls_x509_crt_parse(&t->ca, b.buf, b.len);
    blob_free(&b);
    if (ret < 0) {
        moat_tls_mbedtls_words(ret, why, sizeof(why));
        return moat_tls_fail(t, MOAT_ERR_CERT_FORMAT,
                             "%s holds no valid PEM or DER certificate (%s)", name, why);
    }
    return MOAT_OK;
}

static moat_err load_cert(moat_tls *t)
{
    char name[300], why[120];
    blob b;
    moat_err e = get_bytes(t, &t->cfg->cert, "client certificate", &b);
    if (e != MOAT_OK)
        return e;
    describe(&t->cfg->cert, "client certificate", name, sizeof(name));
    if (b.len == 0)
        return moat_tls_fail(t, MOAT_ERR_CERT_NONE, "no client certificate configured");
    int ret = mbedtls_x509_crt_parse(&t->cert, b.buf, b.len);
    blob_free(&b);
    if (ret != 0) {
        if (ret > 0)
            snprintf(why, sizeof(why), "%d certificate(s) could not be parsed", ret);
        else
            moat_tls_mbedtls_words(ret, why, sizeof(why));
        return moat_tls_fail(t, MOAT_ERR_CERT_FORMAT,
                             "%s is not a valid PEM or DER certificate (%s)", name, why);
    }
    return MOAT_OK;
}

static moat_err load_key(moat_tls *t)
{
    char name[300], why[120];
    const char *pw = t->cfg->key_password;
    blob b;
    moat_err e = get_bytes(t, &t->cfg->key, "client key", &b);
    if (e != MOAT_OK)
        return e;
    describe(&t->cfg->key, "client key", name, sizeof(name));
    if (b.len == 0)
        return moat_tls_fail(t, MOAT_ERR_CERT_NONE, "no client key configured");
    int ret = mbedtls_pk_parse_key(&t->key, b.buf, b.len, (const unsigned char *)pw,
                                   pw != NULL ? strlen(pw) : 0);
    blob_free(&b);
    if (ret == MBEDTLS_ERR_PK_PASSWORD_REQUIRED)
        return moat_tls_fail(t, MOAT_ERR_CERT_FORMAT, "%s is encrypted and no password is set",
                             name);
    if (ret == MBEDTLS_ERR_PK_PASSWORD_MISMATCH)
        return moat_tls_fail(t, MOAT_ERR_CERT_FORMAT, "wrong password for %s", name);
    if (ret != 0) {
        moat_tls_mbedtls_words(ret, why, sizeof(why));
        return moat_tls_fail(t, MOAT_ERR_CERT_FORMAT,
                             "%s is not a valid PEM or DER private key (%s)", name, why);
    }
    return MOAT_OK;
}

moat_err moat_tls_load_credentials(moat_tls *t)
{
    moat_err e;
    /* The certificate before the key: "no client certificate configured"
     * is the more useful sentence when both are missing. */
    if ((e = load_ca(t)) != MOAT_OK || (e = load_cert(t)) != MOAT_OK ||
        (e = load_key(t)) != MOAT_OK)
        return e;
    if (mbedtls_pk_check_pair(&t->cert.pk, &t->key) != 0) {
        char key[300], cert[300];
        describe(&t->cfg->key, "key", key, sizeof(key));
        describe(&t->cfg->cert, "certificate", cert, sizeof(cert));
        return moat_tls_fail(t, MOAT_ERR_KEY_MISMATCH,
                             "client key does not match client certificate (%s, %s)", key,
                             cert);
    }
    return MOAT_OK;
}
