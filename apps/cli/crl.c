/*
 * crl.c - writing a certificate revocation list (RFC 5280 section 5).
 *
 * mbedTLS parses CRLs but cannot write one, so the TBSCertList is built with
 * asn1write and signed with the CA key here. ASN.1 is written backwards, so
 * each SEQUENCE's contents come first, in reverse order, then its header.
 */
#include "x509.h"

#include <string.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha1.h>

#define SEQ (MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)

/* Time ::= UTCTime (1950-2049) | GeneralizedTime */
static int write_time(unsigned char **p, unsigned char *start, time_t t)
{
    char s[15];
    cli_time14(t, s);
    int gen = strncmp(s, "1950", 4) < 0 || strncmp(s, "2050", 4) >= 0;
    char z[16];
    memcpy(z, gen ? s : s + 2, gen ? 14 : 12);
    z[gen ? 14 : 12] = 'Z';
    return mbedtls_asn1_write_tagged_string(p, start,
                                            gen ? MBEDTLS_ASN1_GENERALIZED_TIME
                                                : MBEDTLS_ASN1_UTC_TIME,
                                            z, gen ? 15 : 13);
}

/* AlgorithmIdentifier of the signature: ECDSA has no parameters, RSA a NULL. */
static int write_sig_alg(unsigned char **p, unsigned char *start, int is_ec, const char *oid,
                         size_t oid_len)
{
    int ret;
    size_t len = 0;
    if (!is_ec)
        MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_null(p, start));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(p, start, oid, oid_len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(p, start, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(p, start, SEQ));
    return (int)len;
}

/* Extension ::= SEQUENCE { extnID, extnValue OCTET STRING } (not critical). */
static int write_ext(unsigned char **p, unsigned char *start, const char *oid, size_t oid_len,
                     size_t value_len)
{
    int ret;
    size_t len = value_len;
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(p, start, value_len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(p, start, MBEDTLS_ASN1_OCTET_STRING));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(p, start, oid, oid_len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(p, start, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(p, start, SEQ));
    return (int)len;
}

/* crlExtensions [0] EXPLICIT: cRLNumber and authorityKeyIdentifier. */
static int write_crl_extensions(unsigned char **p, unsigned char *start,
                                mbedtls_pk_context *ca_pub, unsigned long number)
{
    int ret;
    size_t len = 0, v;
    unsigned char pub[2200], keyid[20];
    mbedtls_mpi n;

    /* The key id is computed as mbedTLS computes the CA's subjectKeyIdentifier. */
    unsigned char *q = pub + sizeof(pub);
    ret = mbedtls_pk_write_pubkey(&q, pub, ca_pub);
    if (ret < 0)
        return ret;
    ret = mbedtls_sha1_ret(q, (size_t)ret, keyid);
    if (ret != 0)
        return ret;
    v = 0;
    MBEDTLS_ASN1_CHK_ADD(v, mbedtls_asn1_write_raw_buffer(p, start, keyid, sizeof(keyid)));
    MBEDTLS_ASN1_CHK_ADD(v, mbedtls_asn1_write_len(p, start, v));
    MBEDTLS_ASN1_CHK_ADD(v, mbedtls_asn1_write_tag(p, start, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 0));
    MBEDTLS_ASN1_CHK_ADD(v, mbedtls_asn1_write_len(p, start, v));
    MBEDTLS_ASN1_CHK_ADD(v, mbedtls_asn1_write_tag(p, start, SEQ));
    MBEDTLS_ASN1_CHK_ADD(len, write_ext(p, start, MBEDTLS_OID_AUTHORITY_KEY_IDENTIFIER,
                                        MBEDTLS_OID_SIZE(MBEDTLS_OID_AUTHORITY_KEY_IDENTIFIER),
                                        v));

    mbedtls_mpi_init(&n);
    ret = mbedtls_mpi_lset(&n, (mbedtls_mpi_sint)number);
    v = 0;
    if (ret == 0)
        ret = mbedtls_asn1_write_mpi(p, start, &n);
    mbedtls_mpi_free(&n);
    if (ret < 0)
        return ret;
    v = (size_t)ret;
    MBEDTLS_ASN1_CHK_ADD(len, write_ext(p, start, MBEDTLS_OID_CRL_NUMBER,
                                        MBEDTLS_OID_SIZE(MBEDTLS_OID_CRL_NUMBER), v));

    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(p, start, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(p, start, SEQ));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(p, start, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(p, start, MBEDTLS_ASN1_CONTEXT_SPECIFIC |
                                                                   MBEDTLS_ASN1_CONSTRUCTED | 0));
    return (int)len;
}

/* revokedCertificates, absent when empty as RFC 5280 requires. */
static int write_revoked(unsigned char **p, unsigned char *start, const x509_revoked *r,
                         size_t n)
{
    int ret;
    size_t len = 0;
    if (n == 0)
        return 0;
    for (size_t i = n; i-- > 0;) {
        size_t e = 0;
        mbedtls_mpi s;
        MBEDTLS_ASN1_CHK_ADD(e, write_time(p, start, r[i].when));
        mbedtls_mpi_init(&s);
        ret = mbedtls_mpi_read_string(&s, 16, r[i].serial);
        if (ret == 0)
            ret = mbedtls_asn1_write_mpi(p, start, &s);
        mbedtls_mpi_free(&s);
        if (ret < 0)
            return ret;
        e += (size_t)ret;
        MBEDTLS_ASN1_CHK_ADD(e, mbedtls_asn1_write_len(p, start, e));
        MBEDTLS_ASN1_CHK_ADD(e, mbedtls_asn1_write_tag(p, start, SEQ));
        len += e;
    }
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(p, start, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(p, start, SEQ));
    return (int)len;
}

static int write_tbs(unsigned char *buf, size_t size, const mbedtls_x509_crt *ca,
                     mbedtls_pk_context *ca_key, int is_ec, const char *sig_oid,
                     size_t sig_oid_len, const x509_revoked *r, size_t n, time_t this_update,
                     time_t next_update, unsigned long number)
{
    int ret;
    unsigned char *p = buf + size;
    size_t len = 0;
    MBEDTLS_ASN1_CHK_ADD(len, write_crl_extensions(&p, buf, ca_key, number));
    MBEDTLS_ASN1_CHK_ADD(len, write_revoked(&p, buf, r, n));
    MBEDTLS_ASN1_CHK_ADD(len, write_time(&p, buf, next_update));
    MBEDTLS_ASN1_CHK_ADD(len, write_time(&p, buf, this_update));
    /* The issuer is the CA's subject exactly as it is encoded in ca.crt. */
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&p, buf, ca->subject_raw.p,
                                                            ca->subject_raw.len));
    MBEDTLS_ASN1_CHK_ADD(len, write_sig_alg(&p, buf, is_ec, sig_oid, sig_oid_len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_int(&p, buf, 1)); /* v2 */
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, SEQ));
    return (int)len;
}

/* CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue } */
static int write_signed(unsigned char *buf, size_t size, const unsigned char *tbs,
                        size_t tbs_len, int is_ec, const char *sig_oid, size_t sig_oid_len,
                        const unsigned char *sig, size_t sig_len)
{
    int ret;
    unsigned char *p = buf + size;
    size_t len = 0;
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_bitstring(&p, buf, sig, sig_len * 8));
    MBEDTLS_ASN1_CHK_ADD(len, write_sig_alg(&p, buf, is_ec, sig_oid, sig_oid_len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&p, buf, tbs, tbs_len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, SEQ));
    return (int)len;
}

int x509_crl_write(const mbedtls_x509_crt *ca, mbedtls_pk_context *ca_key,
                   const x509_revoked *revoked, size_t n, time_t this_update, time_t next_update,
                   unsigned long crl_number, cli_rng *rng, unsigned char *buf, size_t size,
                   unsigned char **der, size_t *der_len)
{
    int ret;
    int is_ec = mbedtls_pk_get_type(ca_key) != MBEDTLS_PK_RSA;
    const char *sig_oid;
    size_t sig_oid_len, sig_len = 0;
    unsigned char hash[32], sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    unsigned char *tbs = buf;

    /* The CA's subject is taken from its DER, which must begin with a SEQUENCE. */
    if (ca->subject_raw.len < 2 || ca->subject_raw.p[0] != SEQ) {
        cli_error("cannot make the CRL: the CA certificate's subject is malformed");
        return CLI_FAIL;
    }
    ret = mbedtls_oid_get_oid_by_sig_alg(is_ec ? MBEDTLS_PK_ECDSA : MBEDTLS_PK_RSA,
                                         MBEDTLS_MD_SHA256, &sig_oid, &sig_oid_len);
    if (ret != 0)
        goto fail;
    /* The TBSCertList goes into the first half, the whole CRL into the second. */
    size_t half = size / 2;
    ret = write_tbs(tbs, half, ca, ca_key, is_ec, sig_oid, sig_oid_len, revoked, n, this_update,
                    next_update, crl_number);
    if (ret < 0)
        goto fail;
    size_t tbs_len = (size_t)ret;
    const unsigned char *tbs_der = tbs + half - tbs_len;
    ret = mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), tbs_der, tbs_len, hash);
    if (ret == 0)
        ret = mbedtls_pk_sign(ca_key, MBEDTLS_MD_SHA256, hash, sizeof(hash), sig, &sig_len,
                              CLI_RNG_F, &rng->drbg);
    if (ret != 0)
        goto fail;

    ret = write_signed(buf + half, size - half, tbs_der, tbs_len, is_ec, sig_oid, sig_oid_len,
                       sig, sig_len);
    if (ret < 0)
        goto fail;
    *der = buf + size - ret;
    *der_len = (size_t)ret;
    return CLI_OK;
fail:
    cli_tls_error("make", "the CRL", ret);
    return CLI_FAIL;
}
