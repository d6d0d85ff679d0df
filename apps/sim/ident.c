/*
 * ident.c - every virtual device gets its own identity: a fresh ECDSA P-256
 * key and a certificate with CN=<device id>, keyUsage digitalSignature and
 * extKeyUsage clientAuth (as `moat pki device` makes them), signed in memory
 * by the fleet CA of a `moat pki` directory. Making one takes about as long
 * as one ECDSA key generation and one signature, so the identities of
 * 10,000 devices cost seconds, not the minutes of 10,000 `moat pki` runs,
 * and no device key ever touches the disk.
 */
#include "sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/asn1.h>
#include <mbedtls/asn1write.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509_crt.h>

#if !defined(MBEDTLS_X509_CRT_WRITE_C) || !defined(MBEDTLS_PK_WRITE_C)
#error "moat-sim needs an mbedTLS with MBEDTLS_X509_CRT_WRITE_C and MBEDTLS_PK_WRITE_C"
#endif
#include <mbedtls/platform_util.h>

#define SEQ (MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)

uint8_t *sim_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0'; /* mbedTLS wants PEM NUL-terminated, length included */
            *len = (size_t)n + 1;
        }
    }
    fclose(f);
    return buf;
}

int sim_rng(void *ctx, unsigned char *out, size_t len)
{
    return mbedtls_ctr_drbg_random(ctx, out, len);
}

static void words(int ret, char *out, size_t size)
{
    snprintf(out, size, "mbedTLS error -0x%04x", (unsigned)-ret);
}

int sim_ca_load(sim_ca *ca, const char *dir, char *err, size_t err_size)
{
    static const unsigned char pers[] = "moat-sim";
    char path[1024], why[64];
    uint8_t *key;
    size_t key_len;
    int ret;

    memset(ca, 0, sizeof *ca);
    mbedtls_x509_crt_init(&ca->crt);
    mbedtls_pk_init(&ca->key);
    mbedtls_entropy_init(&ca->entropy);
    mbedtls_ctr_drbg_init(&ca->drbg);
    ret = mbedtls_ctr_drbg_seed(&ca->drbg, mbedtls_entropy_func, &ca->entropy, pers,
                                sizeof pers - 1);
    if (ret != 0) {
        words(ret, why, sizeof why);
        snprintf(err, err_size, "cannot seed the random generator: %s", why);
        return -1;
    }

    snprintf(path, sizeof path, "%s/ca.crt", dir);
    ca->ca_pem = sim_read_file(path, &ca->ca_pem_len);
    if (ca->ca_pem == NULL) {
        snprintf(err, err_size, "cannot read the CA certificate '%s': %s", path, strerror(errno));
        return -1;
    }
    if ((ret = mbedtls_x509_crt_parse(&ca->crt, ca->ca_pem, ca->ca_pem_len)) != 0) {
        words(ret, why, sizeof why);
        snprintf(err, err_size, "'%s' is not a certificate (%s)", path, why);
        return -1;
    }
    {
        const mbedtls_x509_time *t = &ca->crt.valid_to;
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%04u%02u%02u%02u%02u%02u", (unsigned)t->year % 10000u,
                 (unsigned)t->mon % 100u, (unsigned)t->day % 100u, (unsigned)t->hour % 100u,
                 (unsigned)t->min % 100u, (unsigned)t->sec % 100u);
        memcpy(ca->not_after, tmp, sizeof ca->not_after - 1);
        ca->not_after[sizeof ca->not_after - 1] = '\0';
    }
    if (mbedtls_x509_dn_gets(ca->issuer, sizeof ca->issuer, &ca->crt.subject) < 0) {
        snprintf(err, err_size, "the CA's subject in '%s' is too long", path);
        return -1;
    }

    snprintf(path, sizeof path, "%s/ca.key", dir);
    key = sim_read_file(path, &key_len);
    if (key == NULL) {
        snprintf(err, err_size, "cannot read the CA key '%s': %s", path, strerror(errno));
        return -1;
    }
    ret = mbedtls_pk_parse_key(&ca->key, key, key_len, NULL, 0);
    mbedtls_platform_zeroize(key, key_len);
    free(key);
    if (ret == MBEDTLS_ERR_PK_PASSWORD_REQUIRED) {
        snprintf(err, err_size,
                 "the CA key '%s' is encrypted; moat-sim needs a CA made without a passphrase",
                 path);
        return -1;
    }
    if (ret != 0) {
        words(ret, why, sizeof why);
        snprintf(err, err_size, "cannot parse the CA key '%s' (%s)", path, why);
        return -1;
    }
    if (mbedtls_pk_check_pair(&ca->crt.pk, &ca->key) != 0) {
        snprintf(err, err_size, "the CA key '%s' does not match ca.crt", path);
        return -1;
    }
    return 0;
}

void sim_ca_free(sim_ca *ca)
{
    mbedtls_x509_crt_free(&ca->crt);
    mbedtls_pk_free(&ca->key);
    mbedtls_ctr_drbg_free(&ca->drbg);
    mbedtls_entropy_free(&ca->entropy);
    free(ca->ca_pem);
    ca->ca_pem = NULL;
}

/* ExtKeyUsageSyntax { clientAuth }: mbedTLS 2.28 has no setter for it. */
static int write_eku(unsigned char *buf, size_t size)
{
    unsigned char *p = buf + size;
    size_t len = 0;
    int ret;
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_CLIENT_AUTH,
                                                     MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, SEQ));
    return (int)len;
}

/* YYYYMMDDhhmmss, UTC, for x509write. */
static void stamp(time_t t, char out[15])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    if (strftime(out, 15, "%Y%m%d%H%M%S", &tm) != 14)
        memcpy(out, "20991231235959", 15);
}

int sim_ident_make(sim_ca *ca, const char *id, uint32_t days, sim_ident *out, char *err,
                   size_t err_size)
{
    mbedtls_pk_context key;
    mbedtls_x509write_cert crt;
    mbedtls_mpi serial;
    unsigned char buf[1024], sn[16], eku[32];
    char subject[80], nb[15], na[15], why[64];
    time_t now = time(NULL);
    int ret, n;

    mbedtls_pk_init(&key);
    mbedtls_x509write_crt_init(&crt);
    mbedtls_mpi_init(&serial);
    /* Valid from 5 minutes ago, as `moat pki` does, and never beyond the CA. */
    stamp(now - 300, nb);
    stamp(now + (time_t)days * 86400, na);
    if (strcmp(na, ca->not_after) > 0)
        memcpy(na, ca->not_after, sizeof na);

    ret = mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret == 0)
        ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key), sim_rng,
                                  &ca->drbg);
    if (ret == 0)
        ret = mbedtls_ctr_drbg_random(&ca->drbg, sn, sizeof sn);
    if (ret == 0) {
        sn[0] &= 0x7f; /* positive */
        sn[0] |= 0x40; /* and 16 bytes long */
        ret = mbedtls_mpi_read_binary(&serial, sn, sizeof sn);
    }
    if (ret != 0)
        goto fail;
    snprintf(subject, sizeof subject, "CN=%s", id);
    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, &key);
    mbedtls_x509write_crt_set_issuer_key(&crt, &ca->key);
    if ((ret = mbedtls_x509write_crt_set_serial(&crt, &serial)) != 0 ||
        (ret = mbedtls_x509write_crt_set_validity(&crt, nb, na)) != 0 ||
        (ret = mbedtls_x509write_crt_set_subject_name(&crt, subject)) != 0 ||
        (ret = mbedtls_x509write_crt_set_issuer_name(&crt, ca->issuer)) != 0 ||
        (ret = mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1)) != 0 ||
        (ret = mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE)) != 0)
        goto fail;
    if ((n = write_eku(eku, sizeof eku)) < 0) {
        ret = n;
        goto fail;
    }
    ret = mbedtls_x509write_crt_set_extension(&crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                              MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0,
                                              eku + sizeof eku - n, (size_t)n);
    if (ret != 0)
        goto fail;

    /* Both writers fill the end of the buffer. */
    if ((n = mbedtls_x509write_crt_der(&crt, buf, sizeof buf, sim_rng, &ca->drbg)) < 0 ||
        (size_t)n > sizeof out->cert) {
        ret = n < 0 ? n : MBEDTLS_ERR_X509_BUFFER_TOO_SMALL;
        goto fail;
    }
    memcpy(out->cert, buf + sizeof buf - n, (size_t)n);
    out->cert_len = (size_t)n;
    if ((n = mbedtls_pk_write_key_der(&key, buf, sizeof buf)) < 0 || (size_t)n > sizeof out->key) {
        ret = n < 0 ? n : MBEDTLS_ERR_ASN1_BUF_TOO_SMALL;
        goto fail;
    }
    memcpy(out->key, buf + sizeof buf - n, (size_t)n);
    out->key_len = (size_t)n;
    ret = 0;
fail:
    if (ret != 0) {
        words(ret, why, sizeof why);
        snprintf(err, err_size, "cannot make the identity of device %s: %s", id, why);
    }
    mbedtls_platform_zeroize(buf, sizeof buf);
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&crt);
    mbedtls_pk_free(&key);
    return ret == 0 ? 0 : -1;
}
