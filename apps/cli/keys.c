/*
 * keys.c - private key generation, storage and passphrase protection.
 *
 * mbedTLS 2.28 can write only unencrypted keys, and its PBES2 reader knows
 * DES only, so the encrypted form is built here: a PKCS#8
 * EncryptedPrivateKeyInfo with PBES2, PBKDF2-HMAC-SHA256 and AES-256-CBC,
 * the same form `openssl pkey -aes256` writes, so OpenSSL can read it too.
 */
#include "keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/asn1write.h>
#include <mbedtls/cipher.h>
#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/rsa.h>

/* PBKDF2 work factor for new keys; files state their own count. */
#define PBKDF2_ITERATIONS 200000
/* A file may not ask for more than this: it would only waste minutes. */
#define PBKDF2_MAX_ITERATIONS 10000000

#define KEY_BUF 8192

#define OID_AES256_CBC "\x60\x86\x48\x01\x65\x03\x04\x01\x2a" /* 2.16.840.1.101.3.4.1.42 */

#define PEM_ENC_BEGIN "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
#define PEM_ENC_END "-----END ENCRYPTED PRIVATE KEY-----\n"

int keys_type_valid(const char *type)
{
    return strcmp(type, "p256") == 0 || strcmp(type, "p384") == 0 ||
           strcmp(type, "rsa2048") == 0 || strcmp(type, "rsa3072") == 0;
}

int keys_generate(mbedtls_pk_context *pk, const char *type, cli_rng *rng)
{
    int ret;
    int is_rsa = strncmp(type, "rsa", 3) == 0;
    ret = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(is_rsa ? MBEDTLS_PK_RSA
                                                                : MBEDTLS_PK_ECKEY));
    if (ret == 0) {
        if (is_rsa)
            ret = mbedtls_rsa_gen_key(mbedtls_pk_rsa(*pk), CLI_RNG_F, &rng->drbg,
                                      strcmp(type, "rsa3072") == 0 ? 3072 : 2048, 65537);
        else
            ret = mbedtls_ecp_gen_key(strcmp(type, "p384") == 0 ? MBEDTLS_ECP_DP_SECP384R1
                                                                : MBEDTLS_ECP_DP_SECP256R1,
                                      mbedtls_pk_ec(*pk), CLI_RNG_F, &rng->drbg);
    }
    if (ret != 0) {
        cli_tls_error("generate", "a key", ret);
        return CLI_FAIL;
    }
    return CLI_OK;
}

const char *keys_describe(const mbedtls_pk_context *pk, char *buf, size_t size)
{
    if (mbedtls_pk_get_type(pk) == MBEDTLS_PK_RSA) {
        snprintf(buf, size, "RSA-%u", (unsigned)mbedtls_pk_get_bitlen(pk));
    } else if (mbedtls_pk_can_do(pk, MBEDTLS_PK_ECDSA)) {
        mbedtls_ecp_group_id g = mbedtls_pk_ec(*pk)->grp.id;
        snprintf(buf, size, "ECDSA %s",
                 g == MBEDTLS_ECP_DP_SECP256R1   ? "P-256"
                 : g == MBEDTLS_ECP_DP_SECP384R1 ? "P-384"
                                                 : "(other curve)");
    } else {
        snprintf(buf, size, "%s", mbedtls_pk_get_name(pk));
    }
    return buf;
}

int keys_check_strength(const mbedtls_pk_context *pk, const char *what)
{
    char d[40];
    if (mbedtls_pk_get_type(pk) == MBEDTLS_PK_RSA) {
        if (mbedtls_pk_get_bitlen(pk) >= 2048 && mbedtls_pk_get_bitlen(pk) <= 8192)
            return CLI_OK;
    } else if (mbedtls_pk_can_do(pk, MBEDTLS_PK_ECDSA)) {
        mbedtls_ecp_group_id g = mbedtls_pk_ec(*pk)->grp.id;
        if (g == MBEDTLS_ECP_DP_SECP256R1 || g == MBEDTLS_ECP_DP_SECP384R1)
            return CLI_OK;
    }
    cli_error("%s: its %s key is not accepted (use ECDSA P-256/P-384 or RSA of 2048 bits or more)",
              what, keys_describe(pk, d, sizeof(d)));
    return CLI_FAIL;
}

/*
 * PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, OCTET STRING key }
 * Written backwards at the end of buf; returns its length or a negative error.
 */
static int write_pkcs8_plain(mbedtls_pk_context *pk, unsigned char *buf, size_t size)
{
    int ret = mbedtls_pk_write_key_der(pk, buf, size);
    if (ret < 0)
        return ret;
    size_t len = (size_t)ret, par_len = 0;
    unsigned char *p = buf + size - len;
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_OCTET_STRING));
    const char *oid;
    size_t oid_len;
    if (mbedtls_pk_get_type(pk) == MBEDTLS_PK_RSA) {
        oid = MBEDTLS_OID_PKCS1_RSA;
        oid_len = MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS1_RSA);
    } else {
        const char *curve;
        size_t curve_len;
        ret = mbedtls_oid_get_oid_by_ec_grp(mbedtls_pk_ec(*pk)->grp.id, &curve, &curve_len);
        if (ret != 0)
            return ret;
        MBEDTLS_ASN1_CHK_ADD(par_len, mbedtls_asn1_write_oid(&p, buf, curve, curve_len));
        len += par_len;
        oid = MBEDTLS_OID_EC_ALG_UNRESTRICTED;
        oid_len = MBEDTLS_OID_SIZE(MBEDTLS_OID_EC_ALG_UNRESTRICTED);
    }
    /* par_len 0 makes mbedTLS write the NULL parameter RSA wants. */
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_algorithm_identifier(&p, buf, oid, oid_len,
                                                                      par_len));
    if (par_len > 0)
        len -= par_len; /* counted once above, and again by the call */
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_int(&p, buf, 0));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED |
                                                                   MBEDTLS_ASN1_SEQUENCE));
    return (int)len;
}

static int derive_key(const char *pass, size_t pass_len, const unsigned char *salt,
                      size_t salt_len, unsigned iterations, unsigned char key[32])
{
    mbedtls_md_context_t md;
    mbedtls_md_init(&md);
    int ret = mbedtls_md_setup(&md, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 1);
    if (ret == 0)
        ret = mbedtls_pkcs5_pbkdf2_hmac(&md, (const unsigned char *)pass, pass_len, salt,
                                        salt_len, iterations, 32, key);
    mbedtls_md_free(&md);
    return ret;
}

static int aes256_cbc(mbedtls_operation_t op, const unsigned char key[32],
                      const unsigned char iv[16], const unsigned char *in, size_t in_len,
                      unsigned char *out, size_t *out_len)
{
    mbedtls_cipher_context_t c;
    mbedtls_cipher_init(&c);
    int ret = mbedtls_cipher_setup(&c, mbedtls_cipher_info_from_type(MBEDTLS_CIPHER_AES_256_CBC));
    if (ret == 0)
        ret = mbedtls_cipher_setkey(&c, key, 256, op);
    if (ret == 0)
        ret = mbedtls_cipher_set_padding_mode(&c, MBEDTLS_PADDING_PKCS7);
    if (ret == 0)
        ret = mbedtls_cipher_crypt(&c, iv, 16, in, in_len, out, out_len);
    mbedtls_cipher_free(&c);
    return ret;
}

/* EncryptedPrivateKeyInfo around an encrypted PrivateKeyInfo, backwards at the end of buf. */
static int write_pkcs8_encrypted(unsigned char *buf, size_t size, const unsigned char *ct,
                                 size_t ct_len, const unsigned char *salt, size_t salt_len,
                                 const unsigned char iv[16], unsigned iterations)
{
    int ret;
    unsigned char *p = buf + size;
    size_t len = 0, sub, alg;
    const int seq = MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE;

    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_octet_string(&p, buf, ct, ct_len));

    /* encryptionScheme: aes256-CBC with the IV */
    alg = 0;
    MBEDTLS_ASN1_CHK_ADD(alg, mbedtls_asn1_write_octet_string(&p, buf, iv, 16));
    MBEDTLS_ASN1_CHK_ADD(alg, mbedtls_asn1_write_oid(&p, buf, OID_AES256_CBC,
                                                     MBEDTLS_OID_SIZE(OID_AES256_CBC)));
    MBEDTLS_ASN1_CHK_ADD(alg, mbedtls_asn1_write_len(&p, buf, alg));
    MBEDTLS_ASN1_CHK_ADD(alg, mbedtls_asn1_write_tag(&p, buf, seq));
    sub = alg;

    /* keyDerivationFunc: PBKDF2 { salt, iterationCount, prf hmacWithSHA256 } */
    size_t kdf = 0, params = 0;
    MBEDTLS_ASN1_CHK_ADD(params, mbedtls_asn1_write_algorithm_identifier(
                                     &p, buf, MBEDTLS_OID_HMAC_SHA256,
                                     MBEDTLS_OID_SIZE(MBEDTLS_OID_HMAC_SHA256), 0));
    MBEDTLS_ASN1_CHK_ADD(params, mbedtls_asn1_write_int(&p, buf, (int)iterations));
    MBEDTLS_ASN1_CHK_ADD(params, mbedtls_asn1_write_octet_string(&p, buf, salt, salt_len));
    MBEDTLS_ASN1_CHK_ADD(params, mbedtls_asn1_write_len(&p, buf, params));
    MBEDTLS_ASN1_CHK_ADD(params, mbedtls_asn1_write_tag(&p, buf, seq));
    kdf = params;
    MBEDTLS_ASN1_CHK_ADD(kdf, mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_PKCS5_PBKDF2,
                                                     MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS5_PBKDF2)));
    MBEDTLS_ASN1_CHK_ADD(kdf, mbedtls_asn1_write_len(&p, buf, kdf));
    MBEDTLS_ASN1_CHK_ADD(kdf, mbedtls_asn1_write_tag(&p, buf, seq));
    sub += kdf;

    /* PBES2-params, then the PBES2 AlgorithmIdentifier */
    MBEDTLS_ASN1_CHK_ADD(sub, mbedtls_asn1_write_len(&p, buf, sub));
    MBEDTLS_ASN1_CHK_ADD(sub, mbedtls_asn1_write_tag(&p, buf, seq));
    MBEDTLS_ASN1_CHK_ADD(sub, mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_PKCS5_PBES2,
                                                     MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS5_PBES2)));
    MBEDTLS_ASN1_CHK_ADD(sub, mbedtls_asn1_write_len(&p, buf, sub));
    MBEDTLS_ASN1_CHK_ADD(sub, mbedtls_asn1_write_tag(&p, buf, seq));
    len += sub;

    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, seq));
    return (int)len;
}

static int encrypt_key(mbedtls_pk_context *pk, const char *pass, size_t pass_len,
                       cli_rng *rng, unsigned char *out, size_t out_size, size_t *out_len)
{
    unsigned char plain[KEY_BUF], ct[KEY_BUF + 16], der[KEY_BUF + 256];
    unsigned char salt[16], iv[16], key[32];
    size_t ct_len = 0;
    int ret = write_pkcs8_plain(pk, plain, sizeof(plain));
    if (ret < 0)
        goto done;
    size_t plain_len = (size_t)ret;
    if ((ret = mbedtls_ctr_drbg_random(&rng->drbg, salt, sizeof(salt))) != 0 ||
        (ret = mbedtls_ctr_drbg_random(&rng->drbg, iv, sizeof(iv))) != 0)
        goto done;
    ret = derive_key(pass, pass_len, salt, sizeof(salt), PBKDF2_ITERATIONS, key);
    if (ret != 0)
        goto done;
    ret = aes256_cbc(MBEDTLS_ENCRYPT, key, iv, plain + sizeof(plain) - plain_len, plain_len, ct,
                     &ct_len);
    if (ret != 0)
        goto done;
    ret = write_pkcs8_encrypted(der, sizeof(der), ct, ct_len, salt, sizeof(salt), iv,
                                PBKDF2_ITERATIONS);
    if (ret < 0)
        goto done;
    ret = mbedtls_pem_write_buffer(PEM_ENC_BEGIN, PEM_ENC_END, der + sizeof(der) - ret,
                                   (size_t)ret, out, out_size, out_len);
    if (ret == 0 && *out_len > 0)
        (*out_len)--; /* mbedtls counts the terminating NUL */
done:
    mbedtls_platform_zeroize(plain, sizeof(plain));
    mbedtls_platform_zeroize(key, sizeof(key));
    return ret;
}

static int refuse_existing(const char *path)
{
    cli_error("refusing to overwrite the existing key %s (use --force to replace it)", path);
    return CLI_FAIL;
}

static int write_one(const char *path, const unsigned char *data, size_t len, int force)
{
    int rc = cli_write_file(path, data, len, 0600, force);
    return rc == CLI_EXISTS ? refuse_existing(path) : rc;
}

int keys_write(mbedtls_pk_context *pk, const char *pem_path, const char *der_path,
               const char *pass, size_t pass_len, int force, cli_rng *rng)
{
    unsigned char buf[2 * KEY_BUF];
    size_t len = 0;
    int ret, rc = CLI_FAIL;

    if (!force) {
        /* Check both before writing either, so a refusal leaves no half pair. */
        if (cli_file_exists(pem_path))
            return refuse_existing(pem_path);
        if (der_path != NULL && cli_file_exists(der_path))
            return refuse_existing(der_path);
    }
    if (pass != NULL) {
        ret = encrypt_key(pk, pass, pass_len, rng, buf, sizeof(buf), &len);
    } else {
        ret = mbedtls_pk_write_key_pem(pk, buf, sizeof(buf));
        len = strlen((const char *)buf);
    }
    if (ret != 0) {
        cli_tls_error("encode the key for", pem_path, ret);
        goto done;
    }
    if (write_one(pem_path, buf, len, force) != CLI_OK)
        goto done;
    if (der_path != NULL) {
        ret = mbedtls_pk_write_key_der(pk, buf, sizeof(buf));
        if (ret < 0) {
            cli_tls_error("encode the key for", der_path, ret);
            goto done;
        }
        if (write_one(der_path, buf + sizeof(buf) - ret, (size_t)ret, force) != CLI_OK)
            goto done;
    }
    rc = CLI_OK;
done:
    mbedtls_platform_zeroize(buf, sizeof(buf));
    return rc;
}

/* ---- reading the encrypted form ---- */

typedef struct pbes2 {
    const unsigned char *salt;
    size_t salt_len;
    int iterations;
    const unsigned char *iv;
    const unsigned char *ct;
    size_t ct_len;
} pbes2;

static int oid_is(const mbedtls_asn1_buf *oid, const char *want, size_t want_len)
{
    return oid->len == want_len && memcmp(oid->p, want, want_len) == 0;
}

/* Returns 0, or 1 for "not a form moat writes", or -1 for malformed. */
static int parse_pkcs8_encrypted(unsigned char *p, const unsigned char *end, pbes2 *out)
{
    const int seq = MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE;
    size_t len;
    mbedtls_asn1_buf oid, params;
    if (mbedtls_asn1_get_tag(&p, end, &len, seq) != 0)
        return -1;
    end = p + len;
    if (mbedtls_asn1_get_alg(&p, end, &oid, &params) != 0)
        return -1;
    if (!oid_is(&oid, MBEDTLS_OID_PKCS5_PBES2, MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS5_PBES2)) ||
        params.tag != seq)
        return 1;
    if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_OCTET_STRING) != 0 || p + len != end)
        return -1;
    out->ct = p;
    out->ct_len = len;

    unsigned char *q = params.p;
    const unsigned char *pend = params.p + params.len;
    mbedtls_asn1_buf kdf_oid, kdf_params, enc_oid, enc_params;
    if (mbedtls_asn1_get_alg(&q, pend, &kdf_oid, &kdf_params) != 0 ||
        mbedtls_asn1_get_alg(&q, pend, &enc_oid, &enc_params) != 0 || q != pend)
        return -1;
    if (!oid_is(&kdf_oid, MBEDTLS_OID_PKCS5_PBKDF2, MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS5_PBKDF2)) ||
        !oid_is(&enc_oid, OID_AES256_CBC, MBEDTLS_OID_SIZE(OID_AES256_CBC)) ||
        enc_params.tag != MBEDTLS_ASN1_OCTET_STRING || enc_params.len != 16 ||
        kdf_params.tag != seq)
        return 1;
    out->iv = enc_params.p;

    q = kdf_params.p;
    pend = kdf_params.p + kdf_params.len;
    if (mbedtls_asn1_get_tag(&q, pend, &len, MBEDTLS_ASN1_OCTET_STRING) != 0)
        return -1;
    out->salt = q;
    out->salt_len = len;
    q += len;
    if (mbedtls_asn1_get_int(&q, pend, &out->iterations) != 0)
        return -1;
    if (q < pend && *q == MBEDTLS_ASN1_INTEGER) {
        int key_len;
        if (mbedtls_asn1_get_int(&q, pend, &key_len) != 0)
            return -1;
        if (key_len != 32)
            return 1;
    }
    /* The PRF defaults to HMAC-SHA1, which moat never writes. */
    if (q == pend)
        return 1;
    mbedtls_asn1_buf prf_oid, prf_params;
    if (mbedtls_asn1_get_alg(&q, pend, &prf_oid, &prf_params) != 0 || q != pend)
        return -1;
    if (!oid_is(&prf_oid, MBEDTLS_OID_HMAC_SHA256, MBEDTLS_OID_SIZE(MBEDTLS_OID_HMAC_SHA256)))
        return 1;
    return 0;
}

static int load_encrypted(mbedtls_pk_context *pk, const char *path, const char *what,
                          const unsigned char *text, const cli_pass_src *src)
{
    mbedtls_pem_context pem;
    size_t used;
    pbes2 e;
    char pass[CLI_PASS_MAX], label[600];
    size_t pass_len = 0;
    unsigned char key[32], *plain = NULL;
    size_t plain_len = 0;
    int rc = CLI_FAIL;

    mbedtls_pem_init(&pem);
    int ret = mbedtls_pem_read_buffer(&pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----",
                                      "-----END ENCRYPTED PRIVATE KEY-----", text, NULL, 0,
                                      &used);
    if (ret != 0) {
        cli_tls_error("read", path, ret);
        goto done;
    }
    int pr = parse_pkcs8_encrypted(pem.buf, pem.buf + pem.buflen, &e);
    if (pr != 0) {
        cli_error("cannot read %s %s: %s", what, path,
                  pr > 0 ? "encrypted with a scheme moat does not read "
                           "(moat reads PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC)"
                         : "malformed encrypted key");
        goto done;
    }
    if (e.iterations < 1 || e.iterations > PBKDF2_MAX_ITERATIONS || e.ct_len == 0 ||
        e.ct_len % 16 != 0 || e.ct_len > KEY_BUF) {
        cli_error("cannot read %s %s: unreasonable encryption parameters", what, path);
        goto done;
    }
    snprintf(label, sizeof(label), "%s %s", what, path);
    if (cli_get_passphrase(src, label, 0, pass, sizeof(pass), &pass_len) != CLI_OK)
        goto done;
    ret = derive_key(pass, pass_len, e.salt, e.salt_len, (unsigned)e.iterations, key);
    if (ret != 0) {
        cli_tls_error("derive the key for", path, ret);
        goto done;
    }
    plain = malloc(e.ct_len + 16);
    if (plain == NULL) {
        cli_error("cannot read %s %s: out of memory", what, path);
        goto done;
    }
    ret = aes256_cbc(MBEDTLS_DECRYPT, key, e.iv, e.ct, e.ct_len, plain, &plain_len);
    /* A bad pad or a bad structure after decryption both mean the wrong passphrase. */
    if (ret != 0 || mbedtls_pk_parse_key(pk, plain, plain_len, NULL, 0) != 0) {
        cli_error("cannot read %s %s: wrong passphrase", what, path);
        goto done;
    }
    rc = CLI_OK;
done:
    if (plain != NULL) {
        mbedtls_platform_zeroize(plain, e.ct_len + 16);
        free(plain);
    }
    mbedtls_platform_zeroize(pass, sizeof(pass));
    mbedtls_platform_zeroize(key, sizeof(key));
    mbedtls_pem_free(&pem);
    return rc;
}

int keys_load(mbedtls_pk_context *pk, const char *path, const char *what,
              const cli_pass_src *src)
{
    unsigned char *text;
    size_t len;
    if (cli_read_file(path, &text, &len) != CLI_OK)
        return CLI_FAIL;
    int rc;
    if (strstr((const char *)text, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL) {
        rc = load_encrypted(pk, path, what, text, src);
    } else if (strstr((const char *)text, "Proc-Type: 4,ENCRYPTED") != NULL) {
        cli_error("cannot read %s %s: legacy OpenSSL encryption is not supported "
                  "(convert with: openssl pkey -aes256)",
                  what, path);
        rc = CLI_FAIL;
    } else {
        /* PEM wants the NUL counted; DER must not have it. */
        int is_pem = strstr((const char *)text, "-----BEGIN") != NULL;
        int ret = mbedtls_pk_parse_key(pk, text, is_pem ? len + 1 : len, NULL, 0);
        if (ret != 0) {
            char words[160];
            mbedtls_strerror(ret, words, sizeof(words));
            cli_error("cannot read %s %s: %s", what, path, words);
        }
        rc = ret == 0 ? CLI_OK : CLI_FAIL;
    }
    cli_free_file(text, len);
    return rc;
}
