/*
 * keys.h - private keys for the `moat` CLI: generate, write 0600, load, and
 * passphrase protection (PKCS#8 PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC).
 */
#ifndef MOAT_CLI_KEYS_H
#define MOAT_CLI_KEYS_H

#include "cli.h"

#include <mbedtls/pk.h>

/* "p256" (default), "p384", "rsa2048", "rsa3072". */
int keys_type_valid(const char *type);
int keys_generate(mbedtls_pk_context *pk, const char *type, cli_rng *rng);

/* A short description such as "ECDSA P-256" or "RSA-2048". */
const char *keys_describe(const mbedtls_pk_context *pk, char *buf, size_t size);

/*
 * Writes a private key, mode 0600, through a temporary file and a rename.
 * pem_path gets PEM (PKCS#8 encrypted when pass != NULL, else SEC1/PKCS#1);
 * der_path, if not NULL, gets the unencrypted DER. Without force an existing
 * file is refused with an error that names it.
 */
int keys_write(mbedtls_pk_context *pk, const char *pem_path, const char *der_path,
               const char *pass, size_t pass_len, int force, cli_rng *rng);

/*
 * Loads a private key. If the file is encrypted the passphrase comes from
 * src (or the terminal); a wrong one gives "cannot read <what> <path>: wrong
 * passphrase".
 */
int keys_load(mbedtls_pk_context *pk, const char *path, const char *what,
              const cli_pass_src *src);

/* Refuses public keys that are too weak for moat: RSA < 2048, curves other than P-256/P-384. */
int keys_check_strength(const mbedtls_pk_context *pk, const char *what);

#endif
