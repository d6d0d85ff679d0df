/*
 * mbedtls-mcu.h - moat's microcontroller profile for mbedTLS 2.28.
 *
 * Built by scripts/mbedtls-mcu.sh from Debian's mbedtls source package, used
 * with -DMBEDTLS_CONFIG_FILE='"mbedtls-mcu.h"' instead of the stock config.h.
 * Only what a moat device needs: a TLS 1.2 client with mutual authentication,
 * ECDHE key exchange with AEAD ciphers, P-256 (ECDSA) and RSA-2048
 * credentials, PEM/X.509 parsing, session tickets and MFLN. No server side,
 * no CBC, no SHA-1/MD5 in TLS, no TLS 1.0/1.1, no DHE, no PSK.
 *
 * Memory: record buffers are small because the broker honours MFLN
 * (Mosquitto/OpenSSL does), the peer certificate is dropped after the
 * handshake, and ECC uses a small window without a fixed-point table. All
 * heap use goes through mbedtls_platform_set_calloc_free(), so a port can
 * point it at its own pool (and bench/tls_heap.c counts it).
 *
 * The same file builds for a microcontroller (no OS: the port supplies time
 * and entropy) and for Linux (where the benchmark runs).
 */
#ifndef MOAT_MBEDTLS_MCU_H
#define MOAT_MBEDTLS_MCU_H

/* ---- record buffers ---------------------------------------------------- */

/*
 * mbedTLS 2.28 cannot reassemble a TLS handshake message that spans records,
 * and the maximum fragment length (MFLN) the client asks for bounds both
 * directions and cannot exceed the smaller buffer. So one size, 1024, serves
 * both ways and is the fragment length asked for: the broker's largest
 * message must fit it. Mosquitto sends its certificate with the CA's (it
 * builds the chain from its cafile): 873 bytes for P-256, which fits; an
 * RSA-2048 chain is 1664 bytes and needs 2048 (define both as 2048 with -D
 * or MOAT_MCU_DEFINES; docs/BENCHMARKS-tls.md has both figures).
 */
#ifndef MBEDTLS_SSL_IN_CONTENT_LEN
#define MBEDTLS_SSL_IN_CONTENT_LEN 1024
#endif
#ifndef MBEDTLS_SSL_OUT_CONTENT_LEN
#define MBEDTLS_SSL_OUT_CONTENT_LEN 1024
#endif
#define MBEDTLS_SSL_MAX_FRAGMENT_LENGTH

/* ---- system ------------------------------------------------------------ */

#define MBEDTLS_HAVE_ASM
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_PLATFORM_MEMORY         /* mbedtls_platform_set_calloc_free */
#define MBEDTLS_DEPRECATED_REMOVED

#if defined(__linux__) || defined(__unix__)
#define MBEDTLS_HAVE_TIME
#define MBEDTLS_HAVE_TIME_DATE
#define MBEDTLS_FS_IO                   /* *_parse_file on the Linux port */
#else
/*
 * No OS. Certificate dates are judged by moat_tls's verify callback against
 * the device's own clock (SNTP), so mbedTLS needs no time() or gmtime().
 * Entropy comes from the port's mbedtls_hardware_poll() (an RNG peripheral).
 */
#define MBEDTLS_NO_PLATFORM_ENTROPY
#define MBEDTLS_ENTROPY_HARDWARE_ALT
#endif

/* ---- TLS --------------------------------------------------------------- */

#define MBEDTLS_SSL_TLS_C
#define MBEDTLS_SSL_CLI_C
#define MBEDTLS_SSL_PROTO_TLS1_2
#define MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
#define MBEDTLS_SSL_EXTENDED_MASTER_SECRET
#define MBEDTLS_SSL_SERVER_NAME_INDICATION
/*
 * Resumption by session ID, not by ticket: Mosquitto (OpenSSL) resumes
 * either way, but its ticket carries the client certificate (about 600 bytes
 * with P-256, 1 KB with RSA-2048) and mbedTLS keeps it on the heap for the
 * whole connection, plus a copy for the next resumption. -DMOAT_MCU_TICKETS=1
 * turns tickets back on.
 */
#if defined(MOAT_MCU_TICKETS) && MOAT_MCU_TICKETS
#define MBEDTLS_SSL_SESSION_TICKETS
#endif
#define MBEDTLS_SSL_ALL_ALERT_MESSAGES
/* Keep only a digest of the broker's certificate after the handshake. */
#undef MBEDTLS_SSL_KEEP_PEER_CERTIFICATE

/* ChaCha20-Poly1305 first: faster than software AES-GCM on a Cortex-M and a
 * smaller cipher context for the whole session. */
#define MBEDTLS_SSL_CIPHERSUITES                                   \
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,         \
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,               \
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,           \
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256

/* ---- X.509 and keys ---------------------------------------------------- */

#define MBEDTLS_X509_USE_C
#define MBEDTLS_X509_CRT_PARSE_C
#define MBEDTLS_X509_CHECK_KEY_USAGE
#define MBEDTLS_X509_CHECK_EXTENDED_KEY_USAGE
#define MBEDTLS_X509_MAX_INTERMEDIATE_CA 4
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_BASE64_C
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C            /* ECDSA signatures are DER */
#define MBEDTLS_OID_C

/* ---- public key -------------------------------------------------------- */

#define MBEDTLS_BIGNUM_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ECDH_C
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_ECP_MAX_BITS 256
/* Smallest comb tables: less heap per scalar multiplication, a little slower. */
#ifndef MBEDTLS_ECP_WINDOW_SIZE
#define MBEDTLS_ECP_WINDOW_SIZE 2
#endif
#ifndef MBEDTLS_ECP_FIXED_POINT_OPTIM
#define MBEDTLS_ECP_FIXED_POINT_OPTIM 0
#endif
#define MBEDTLS_RSA_C
#define MBEDTLS_PKCS1_V15               /* RSA signatures in TLS 1.2 and X.509 */
#define MBEDTLS_MPI_MAX_SIZE 256        /* RSA-2048 */
#ifndef MBEDTLS_MPI_WINDOW_SIZE
#define MBEDTLS_MPI_WINDOW_SIZE 2
#endif

/* ---- symmetric --------------------------------------------------------- */

#define MBEDTLS_CIPHER_C
#define MBEDTLS_AES_C
#define MBEDTLS_AES_ROM_TABLES          /* tables in flash, not 8 KB of RAM */
#define MBEDTLS_AES_FEWER_TABLES
#define MBEDTLS_GCM_C
#define MBEDTLS_CHACHA20_C
#define MBEDTLS_POLY1305_C
#define MBEDTLS_CHACHAPOLY_C
#define MBEDTLS_MD_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA256_SMALLER
#define MBEDTLS_SHA512_C                /* SHA-384 certificate signatures */
#define MBEDTLS_SHA512_SMALLER

/* ---- randomness -------------------------------------------------------- */

#define MBEDTLS_ENTROPY_C
#define MBEDTLS_ENTROPY_FORCE_SHA256
#define MBEDTLS_ENTROPY_MAX_SOURCES 4
#define MBEDTLS_CTR_DRBG_C

#include "mbedtls/check_config.h"

#endif
