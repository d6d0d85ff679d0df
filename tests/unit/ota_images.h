/*
 * ota_images.h - signed moat images made at test time (unit tests only).
 *
 * Keys are generated here from a deterministic DRBG, never stored: no
 * private key is committed. Images are built with the core's header encoder
 * and signed with mbedTLS, independently of the verifier under test.
 */
#ifndef MOAT_TEST_OTA_IMAGES_H
#define MOAT_TEST_OTA_IMAGES_H

#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include "moat/ota.h"

typedef struct test_key {
    mbedtls_ecp_keypair kp;
    uint8_t pub[MOAT_OTA_PUB_SIZE];
    uint8_t id[MOAT_OTA_KEY_ID_SIZE];
} test_key;

static mbedtls_ctr_drbg_context test_drbg;

static int test_entropy(void *p, unsigned char *out, size_t n)
{
    static unsigned char counter;
    (void)p;
    memset(out, 0x5a ^ counter++, n); /* deterministic: a test, not a secret */
    return 0;
}

static void test_rng_init(void)
{
    static int done;
    if (done)
        return;
    mbedtls_ctr_drbg_init(&test_drbg);
    if (mbedtls_ctr_drbg_seed(&test_drbg, test_entropy, NULL,
                              (const unsigned char *)"moat-ota-test", 13) != 0)
        abort();
    done = 1;
}

static void sha256_of(const uint8_t *d, size_t n, uint8_t out[32])
{
    if (mbedtls_sha256_ret(d, n, out, 0) != 0)
        abort();
}

static void test_key_make(test_key *k)
{
    size_t olen;
    uint8_t h[32];
    test_rng_init();
    mbedtls_ecp_keypair_init(&k->kp);
    if (mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, &k->kp, mbedtls_ctr_drbg_random,
                            &test_drbg) != 0 ||
        mbedtls_ecp_point_write_binary(&k->kp.grp, &k->kp.Q, MBEDTLS_ECP_PF_UNCOMPRESSED,
                                       &olen, k->pub, sizeof k->pub) != 0 ||
        olen != MOAT_OTA_PUB_SIZE)
        abort();
    sha256_of(k->pub, sizeof k->pub, h);
    memcpy(k->id, h, MOAT_OTA_KEY_ID_SIZE);
}

static void test_sign(const test_key *k, const uint8_t *data, size_t n,
                      uint8_t sig[MOAT_OTA_SIG_SIZE])
{
    uint8_t h[32];
    mbedtls_mpi r, s;
    mbedtls_ecp_group grp;
    sha256_of(data, n, h);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    mbedtls_ecp_group_init(&grp);
    if (mbedtls_ecp_group_copy(&grp, &k->kp.grp) != 0 ||
        mbedtls_ecdsa_sign(&grp, &r, &s, &k->kp.d, h, 32, mbedtls_ctr_drbg_random,
                           &test_drbg) != 0 ||
        mbedtls_mpi_write_binary(&r, sig, 32) != 0 ||
        mbedtls_mpi_write_binary(&s, sig + 32, 32) != 0)
        abort();
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    mbedtls_ecp_group_free(&grp);
}

/* A record: `to` signed by `from`. */
static void test_rotation(moat_ota_rotation *r, const test_key *from, const test_key *to)
{
    uint8_t body[MOAT_OTA_ROTATION_SIGNED];
    memcpy(r->old_key_id, from->id, MOAT_OTA_KEY_ID_SIZE);
    memcpy(r->new_key_id, to->id, MOAT_OTA_KEY_ID_SIZE);
    memcpy(r->new_key, to->pub, MOAT_OTA_PUB_SIZE);
    moat_ota_rotation_signed_bytes(r, body);
    test_sign(from, body, sizeof body, r->sig);
}

typedef struct test_image_spec {
    const char *product;            /* NULL: "moat-test" */
    moat_ota_version version;
    uint32_t counter;
    const uint8_t *payload;
    uint32_t payload_size;
    const test_key *signer;         /* signs the header */
    const uint8_t *claimed_key_id;  /* NULL: signer's id */
    const moat_ota_rotation *rot;
    unsigned rotations;
} test_image_spec;

/* A malloc'd image; *len its size. */
static uint8_t *test_image(const test_image_spec *s, size_t *len)
{
    moat_ota_header h;
    uint8_t hdr[MOAT_OTA_HEADER_MAX];
    size_t hlen = 0;
    uint8_t *img;

    memset(&h, 0, sizeof h);
    strcpy(h.product, s->product != NULL ? s->product : "moat-test");
    h.version = s->version;
    h.counter = s->counter;
    h.payload_size = s->payload_size;
    sha256_of(s->payload, s->payload_size, h.payload_sha256);
    memcpy(h.key_id, s->claimed_key_id != NULL ? s->claimed_key_id : s->signer->id,
           MOAT_OTA_KEY_ID_SIZE);
    if (moat_ota_header_encode(&h, s->rot, s->rotations, hdr, sizeof hdr, &hlen) != MOAT_OK)
        abort();
    *len = hlen + MOAT_OTA_SIG_SIZE + s->payload_size;
    img = malloc(*len);
    if (img == NULL)
        abort();
    memcpy(img, hdr, hlen);
    test_sign(s->signer, hdr, hlen, img + hlen);
    memcpy(img + hlen + MOAT_OTA_SIG_SIZE, s->payload, s->payload_size);
    return img;
}

#endif
