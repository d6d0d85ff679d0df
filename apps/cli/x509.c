/*
 * x509.c - issuing certificates and reading CSRs with mbedTLS.
 *
 * mbedTLS 2.28 has no setters for subjectAltName or extKeyUsage, so those
 * two extensions are DER-encoded here and added with set_extension.
 */
#include "x509.h"

#include "keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>

#define SEQ (MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)

/* GeneralNames: dNSName [2] IA5String, iPAddress [7] OCTET STRING. */
static int write_san(unsigned char *buf, size_t size, const x509_req *req)
{
    int ret;
    unsigned char *p = buf + size;
    size_t len = 0;
    for (size_t i = req->n_ips; i-- > 0;) {
        size_t l = 0;
        MBEDTLS_ASN1_CHK_ADD(l, mbedtls_asn1_write_raw_buffer(&p, buf, req->ips[i].addr,
                                                              req->ips[i].len));
        MBEDTLS_ASN1_CHK_ADD(l, mbedtls_asn1_write_len(&p, buf, l));
        MBEDTLS_ASN1_CHK_ADD(l, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7));
        len += l;
    }
    for (size_t i = req->n_dns; i-- > 0;) {
        size_t l = 0;
        MBEDTLS_ASN1_CHK_ADD(l, mbedtls_asn1_write_raw_buffer(&p, buf,
                                                              (const unsigned char *)req->dns[i],
                                                              strlen(req->dns[i])));
        MBEDTLS_ASN1_CHK_ADD(l, mbedtls_asn1_write_len(&p, buf, l));
        MBEDTLS_ASN1_CHK_ADD(l, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2));
        len += l;
    }
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, SEQ));
    return (int)len;
}

/* ExtKeyUsageSyntax with one purpose. */
static int write_eku(unsigned char *buf, size_t size, const char *oid, size_t oid_len)
{
    int ret;
    unsigned char *p = buf + size;
    size_t len = 0;
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(&p, buf, oid, oid_len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, SEQ));
    return (int)len;
}

static int set_extensions(mbedtls_x509write_cert *crt, const x509_req *req)
{
    unsigned char buf[4096];
    int ret;
    if (req->profile == X509_CA) {
        ret = mbedtls_x509write_crt_set_basic_constraints(crt, 1, 0);
        if (ret == 0)
            ret = mbedtls_x509write_crt_set_key_usage(crt, MBEDTLS_X509_KU_KEY_CERT_SIGN |
                                                               MBEDTLS_X509_KU_CRL_SIGN);
        return ret;
    }
    ret = mbedtls_x509write_crt_set_basic_constraints(crt, 0, -1);
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_key_usage(crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
    if (ret != 0)
        return ret;
    if (req->profile == X509_SERVER)
        ret = write_eku(buf, sizeof(buf), MBEDTLS_OID_SERVER_AUTH,
                        MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH));
    else
        ret = write_eku(buf, sizeof(buf), MBEDTLS_OID_CLIENT_AUTH,
                        MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH));
    if (ret < 0)
        return ret;
    ret = mbedtls_x509write_crt_set_extension(crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                              MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0,
                                              buf + sizeof(buf) - ret, (size_t)ret);
    if (ret != 0 || req->n_dns + req->n_ips == 0)
        return ret;
    ret = write_san(buf, sizeof(buf), req);
    if (ret < 0)
        return ret;
    return mbedtls_x509write_crt_set_extension(crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
                                               MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
                                               buf + sizeof(buf) - ret, (size_t)ret);
}

int x509_issue(const x509_req *req, cli_rng *rng, unsigned char *buf, size_t size,
               unsigned char **der, size_t *der_len)
{
    mbedtls_x509write_cert crt;
    char nb[15], na[15];
    int ret;

    mbedtls_x509write_crt_init(&crt);
    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, req->subject_key);
    mbedtls_x509write_crt_set_issuer_key(&crt, req->issuer_key);
    cli_time14(req->not_before, nb);
    cli_time14(req->not_after, na);
    if ((ret = mbedtls_x509write_crt_set_serial(&crt, req->serial)) != 0 ||
        (ret = mbedtls_x509write_crt_set_validity(&crt, nb, na)) != 0 ||
        (ret = mbedtls_x509write_crt_set_subject_name(&crt, req->subject)) != 0 ||
        (ret = mbedtls_x509write_crt_set_issuer_name(&crt, req->issuer)) != 0 ||
        (ret = mbedtls_x509write_crt_set_subject_key_identifier(&crt)) != 0 ||
        (ret = mbedtls_x509write_crt_set_authority_key_identifier(&crt)) != 0 ||
        (ret = set_extensions(&crt, req)) != 0)
        goto done;
    ret = mbedtls_x509write_crt_der(&crt, buf, size, CLI_RNG_F, &rng->drbg);
    if (ret > 0) {
        *der = buf + size - ret;
        *der_len = (size_t)ret;
        ret = 0;
    }
done:
    mbedtls_x509write_crt_free(&crt);
    if (ret != 0) {
        char what[300];
        snprintf(what, sizeof(what), "certificate for %s:", req->subject);
        cli_tls_error("make the", what, ret);
        return CLI_FAIL;
    }
    return CLI_OK;
}

int x509_random_serial(mbedtls_mpi *serial, cli_rng *rng, char hex[41])
{
    unsigned char b[16];
    int ret = mbedtls_ctr_drbg_random(&rng->drbg, b, sizeof(b));
    if (ret != 0) {
        cli_tls_error("make", "a serial number", ret);
        return CLI_FAIL;
    }
    b[0] &= 0x7f; /* positive ... */
    b[0] |= 0x40; /* ... and always 16 bytes long */
    ret = mbedtls_mpi_read_binary(serial, b, sizeof(b));
    if (ret != 0) {
        cli_tls_error("make", "a serial number", ret);
        return CLI_FAIL;
    }
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(hex + 2 * i, 3, "%02X", b[i]);
    return CLI_OK;
}

void x509_serial_hex(const mbedtls_x509_buf *serial, char hex[41])
{
    size_t i = 0, o = 0;
    /* Skip DER's leading zero so the hex matches what moat wrote. */
    while (i + 1 < serial->len && serial->p[i] == 0)
        i++;
    for (; i < serial->len && o + 2 < 41; i++, o += 2)
        snprintf(hex + o, 3, "%02X", serial->p[i]);
    hex[o] = '\0';
}

time_t x509_time_t(const mbedtls_x509_time *t)
{
    return cli_timegm(t->year, t->mon, t->day, t->hour, t->min, t->sec);
}

int x509_cert_pem(const unsigned char *der, size_t der_len, unsigned char **pem, size_t *pem_len)
{
    size_t size = der_len * 2 + 128, olen = 0;
    unsigned char *out = malloc(size);
    if (out == NULL) {
        cli_error("out of memory");
        return CLI_FAIL;
    }
    int ret = mbedtls_pem_write_buffer("-----BEGIN CERTIFICATE-----\n",
                                       "-----END CERTIFICATE-----\n", der, der_len, out, size,
                                       &olen);
    if (ret != 0) {
        free(out);
        cli_tls_error("encode", "a certificate as PEM", ret);
        return CLI_FAIL;
    }
    *pem = out;
    *pem_len = olen > 0 ? olen - 1 : 0; /* olen counts the NUL */
    return CLI_OK;
}

int x509_name_cn(const mbedtls_x509_name *name, char *out, size_t size)
{
    for (; name != NULL; name = name->next) {
        if (name->oid.len == MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_CN) &&
            memcmp(name->oid.p, MBEDTLS_OID_AT_CN, name->oid.len) == 0) {
            if (name->val.len >= size)
                return CLI_FAIL;
            memcpy(out, name->val.p, name->val.len);
            out[name->val.len] = '\0';
            return strlen(out) == name->val.len ? CLI_OK : CLI_FAIL;
        }
    }
    return CLI_FAIL;
}

int x509_csr_load(mbedtls_x509_csr *csr, const char *path)
{
    unsigned char *text, hash[MBEDTLS_MD_MAX_SIZE];
    size_t len;
    if (cli_read_file(path, &text, &len) != CLI_OK)
        return CLI_FAIL;
    int is_pem = strstr((const char *)text, "-----BEGIN") != NULL;
    int ret = mbedtls_x509_csr_parse(csr, text, is_pem ? len + 1 : len);
    cli_free_file(text, len);
    if (ret != 0) {
        cli_tls_error("read the CSR", path, ret);
        return CLI_FAIL;
    }
    /* mbedTLS parses a CSR without checking that it signed itself. */
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(csr->sig_md);
    if (md == NULL || mbedtls_md(md, csr->cri.p, csr->cri.len, hash) != 0) {
        cli_error("cannot check the CSR %s: unsupported signature hash", path);
        return CLI_FAIL;
    }
    if (csr->sig_md == MBEDTLS_MD_MD5 || csr->sig_md == MBEDTLS_MD_SHA1) {
        cli_error("CSR %s is signed with a broken hash (use SHA-256)", path);
        return CLI_FAIL;
    }
    ret = mbedtls_pk_verify_ext(csr->sig_pk, csr->sig_opts, &csr->pk, csr->sig_md, hash,
                                mbedtls_md_get_size(md), csr->sig.p, csr->sig.len);
    if (ret != 0) {
        cli_error("CSR %s: its signature does not verify (the request was altered or "
                  "was not made with the key it holds)",
                  path);
        return CLI_FAIL;
    }
    return keys_check_strength(&csr->pk, path);
}
