/*
 * tls_mcu_link.c - the smallest firmware that uses the microcontroller TLS
 * profile the way a moat device does: parse a CA, a certificate and a key,
 * set up a TLS 1.2 client with MFLN, hand-shake, write, read, close.
 *
 * It is only linked, never run: scripts/size-tls.sh links it for Cortex-M4
 * with --gc-sections, and the difference from an empty program is what the
 * TLS stack costs in flash once the linker has dropped what is unused. The
 * link stubs at the bottom stand in for the port (radio, RNG peripheral).
 */
#include MBEDTLS_CONFIG_FILE

#include <stddef.h>
#include <stdint.h>

#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/entropy_poll.h"
#include "mbedtls/pk.h"
#include "mbedtls/ssl.h"
#include "mbedtls/x509_crt.h"

/* Credentials live in flash; their bytes do not matter to the link. */
extern const unsigned char ca_pem[], cert_pem[], key_pem[];
const unsigned char ca_pem[] = "-----BEGIN CERTIFICATE-----\n";
const unsigned char cert_pem[] = "-----BEGIN CERTIFICATE-----\n";
const unsigned char key_pem[] = "-----BEGIN EC PRIVATE KEY-----\n";

/* The port's radio and RNG, reduced to registers. */
#define REG(a) (*(volatile uint32_t *)(a))

int mbedtls_hardware_poll(void *data, unsigned char *out, size_t len, size_t *olen)
{
    size_t i;

    (void)data;
    for (i = 0; i < len; i++)
        out[i] = (unsigned char)REG(0x50060808u);
    *olen = len;
    return 0;
}

static int radio_send(void *ctx, const unsigned char *buf, size_t len)
{
    size_t i;

    (void)ctx;
    for (i = 0; i < len; i++)
        REG(0x40004404u) = buf[i];
    return (int)len;
}

static int radio_recv(void *ctx, unsigned char *buf, size_t len)
{
    (void)ctx;
    if (len == 0 || REG(0x40004400u) == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    buf[0] = (unsigned char)REG(0x40004404u);
    return 1;
}

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static mbedtls_x509_crt ca, cert;
static mbedtls_pk_context key;
static mbedtls_ssl_config conf;
static mbedtls_ssl_context ssl;

int main(void)
{
    static const unsigned char msg[] = "moat";
    unsigned char buf[64];
    int ret;

    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_x509_crt_init(&ca);
    mbedtls_x509_crt_init(&cert);
    mbedtls_pk_init(&key);
    mbedtls_ssl_config_init(&conf);
    mbedtls_ssl_init(&ssl);

    if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0)) != 0 ||
        (ret = mbedtls_x509_crt_parse(&ca, ca_pem, sizeof ca_pem)) != 0 ||
        (ret = mbedtls_x509_crt_parse(&cert, cert_pem, sizeof cert_pem)) != 0 ||
        (ret = mbedtls_pk_parse_key(&key, key_pem, sizeof key_pem, NULL, 0)) != 0 ||
        (ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT,
                                           MBEDTLS_SSL_TRANSPORT_STREAM,
                                           MBEDTLS_SSL_PRESET_DEFAULT)) != 0)
        goto out;
    mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    if ((ret = mbedtls_ssl_conf_max_frag_len(&conf, MBEDTLS_SSL_MAX_FRAG_LEN_1024)) != 0 ||
        (ret = mbedtls_ssl_conf_own_cert(&conf, &cert, &key)) != 0 ||
        (ret = mbedtls_ssl_setup(&ssl, &conf)) != 0 ||
        (ret = mbedtls_ssl_set_hostname(&ssl, "broker")) != 0)
        goto out;
    mbedtls_ssl_set_bio(&ssl, NULL, radio_send, radio_recv, NULL);
    while ((ret = mbedtls_ssl_handshake(&ssl)) == MBEDTLS_ERR_SSL_WANT_READ)
        ;
    if (ret == 0 && (ret = mbedtls_ssl_write(&ssl, msg, sizeof msg)) > 0)
        ret = mbedtls_ssl_read(&ssl, buf, sizeof buf);
    mbedtls_ssl_close_notify(&ssl);
out:
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    mbedtls_pk_free(&key);
    mbedtls_x509_crt_free(&cert);
    mbedtls_x509_crt_free(&ca);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return ret < 0;
}
