/*
 * ota_crypto.c - the crypto interface of the OTA verifier (moat/ota.h) on
 * mbedTLS: SHA-256 in the verifier's context blob, ECDSA P-256 verification
 * of a digest with a raw public key, and reading update public keys.
 *
 * The core's verifier knows none of this; a microcontroller port may give
 * its own moat_ota_crypto (a hardware SHA engine, a smaller ECDSA).
 */
#include "moat/ota.h"

#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

/* The blob in moat_ota must hold mbedTLS's SHA-256 state. */
typedef char moat_ota_sha256_ctx_fits[sizeof(mbedtls_sha256_context) <= MOAT_OTA_SHA256_CTX_SIZE
                                          ? 1 : -1];

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define sha256_starts mbedtls_sha256_starts
#define sha256_update mbedtls_sha256_update
#define sha256_finish mbedtls_sha256_finish
#else
#define sha256_starts mbedtls_sha256_starts_ret
#define sha256_update mbedtls_sha256_update_ret
#define sha256_finish mbedtls_sha256_finish_ret
#endif

static moat_err ota_sha256_start(void *ctx)
{
    mbedtls_sha256_init(ctx);
    return sha256_starts(ctx, 0) == 0 ? MOAT_OK : MOAT_ERR_TLS;
}

static moat_err ota_sha256_update(void *ctx, const uint8_t *data, size_t len)
{
    return sha256_update(ctx, data, len) == 0 ? MOAT_OK : MOAT_ERR_TLS;
}

static moat_err ota_sha256_finish(void *ctx, uint8_t out[MOAT_OTA_SHA256_SIZE])
{
    int ret = sha256_finish(ctx, out);
    mbedtls_sha256_free(ctx);
    return ret == 0 ? MOAT_OK : MOAT_ERR_TLS;
}

static moat_err ota_p256_verify(void *user, const uint8_t pub[MOAT_OTA_PUB_SIZE],
                                const uint8_t digest[MOAT_OTA_SHA256_SIZE],
                                const uint8_t sig[MOAT_OTA_SIG_SIZE])
{
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_mpi r, s;
    moat_err e = MOAT_ERR_OTA_SIGNATURE;
    int ret;

    (void)user;
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    ret = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1);
    if (ret != 0) {
        e = MOAT_ERR_TLS;
        goto done;
    }
    /* A key off the curve or a signature out of range is a bad signature. */
    if (mbedtls_ecp_point_read_binary(&grp, &q, pub, MOAT_OTA_PUB_SIZE) != 0 ||
        mbedtls_ecp_check_pubkey(&grp, &q) != 0)
        goto done;
    if (mbedtls_mpi_read_binary(&r, sig, 32) != 0 ||
        mbedtls_mpi_read_binary(&s, sig + 32, 32) != 0) {
        e = MOAT_ERR_NO_SPACE;
        goto done;
    }
    ret = mbedtls_ecdsa_verify(&grp, digest, MOAT_OTA_SHA256_SIZE, &q, &r, &s);
    if (ret == 0)
        e = MOAT_OK;
    else if (ret == MBEDTLS_ERR_MPI_ALLOC_FAILED || ret == MBEDTLS_ERR_ECP_ALLOC_FAILED)
        e = MOAT_ERR_NO_SPACE;
done:
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&grp);
    return e;
}

const moat_ota_crypto moat_ota_crypto_mbedtls = {
    sizeof(mbedtls_sha256_context),
    ota_sha256_start,
    ota_sha256_update,
    ota_sha256_finish,
    ota_p256_verify,
    NULL,
};

/* The raw public point of a parsed P-256 key. */
static moat_err raw_pub(mbedtls_pk_context *pk, uint8_t pub[MOAT_OTA_PUB_SIZE])
{
    const mbedtls_ecp_keypair *ec;
    size_t olen = 0;

    if (!mbedtls_pk_can_do(pk, MBEDTLS_PK_ECKEY))
        return MOAT_ERR_CERT_FORMAT;
    ec = mbedtls_pk_ec(*pk);
    if (ec == NULL || ec->grp.id != MBEDTLS_ECP_DP_SECP256R1)
        return MOAT_ERR_CERT_FORMAT;
    if (mbedtls_ecp_point_write_binary(&ec->grp, &ec->Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen,
                                       pub, MOAT_OTA_PUB_SIZE) != 0 ||
        olen != MOAT_OTA_PUB_SIZE)
        return MOAT_ERR_CERT_FORMAT;
    return MOAT_OK;
}

moat_err moat_ota_parse_pub(const uint8_t *data, size_t len, uint8_t pub[MOAT_OTA_PUB_SIZE])
{
    mbedtls_pk_context pk;
    moat_err e = MOAT_ERR_CERT_FORMAT;
    int ret;

    if (data == NULL || pub == NULL)
        return MOAT_ERR_ARG;
    mbedtls_pk_init(&pk);
    ret = mbedtls_pk_parse_public_key(&pk, data, len);
    if (ret != 0) {
        mbedtls_pk_free(&pk);
        mbedtls_pk_init(&pk);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
        ret = mbedtls_pk_parse_key(&pk, data, len, NULL, 0, NULL, NULL);
#else
        ret = mbedtls_pk_parse_key(&pk, data, len, NULL, 0);
#endif
    }
    if (ret == 0)
        e = raw_pub(&pk, pub);
    mbedtls_pk_free(&pk);
    return e;
}

moat_err moat_ota_load_pub(const char *path, uint8_t pub[MOAT_OTA_PUB_SIZE])
{
    mbedtls_pk_context pk;
    moat_err e = MOAT_ERR_CERT_FORMAT;
    int ret;

    if (path == NULL || pub == NULL)
        return MOAT_ERR_ARG;
    mbedtls_pk_init(&pk);
    ret = mbedtls_pk_parse_public_keyfile(&pk, path);
    if (ret == MBEDTLS_ERR_PK_FILE_IO_ERROR) {
        mbedtls_pk_free(&pk);
        return MOAT_ERR_FILE;
    }
    if (ret != 0) {
        mbedtls_pk_free(&pk);
        mbedtls_pk_init(&pk);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
        ret = mbedtls_pk_parse_keyfile(&pk, path, NULL, NULL, NULL);
#else
        ret = mbedtls_pk_parse_keyfile(&pk, path, NULL);
#endif
    }
    if (ret == 0)
        e = raw_pub(&pk, pub);
    mbedtls_pk_free(&pk);
    return e;
}
