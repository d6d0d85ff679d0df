/*
 * pki.h - the PKI directory of the `moat` CLI: layout, lock, index of
 * issued certificates, the CA, and the CRL.
 *
 * Layout of a PKI directory (default ./pki, or $MOAT_PKI_DIR, or --dir):
 *   ca.crt ca.der      the CA certificate (PEM, DER)
 *   ca.key             the CA key, 0600, optionally passphrase-encrypted
 *   index.txt          every certificate issued, one a line
 *   crlnumber          the number of the last CRL written
 *   crl.pem            the CRL, signed by the CA
 *   servers/<host>.crt .key
 *   devices/<id>.crt .der .key .key.der
 *   operators/<name>.crt .key
 *   .lock              taken by every command that changes the directory
 */
#ifndef MOAT_CLI_PKI_H
#define MOAT_CLI_PKI_H

#include "cli.h"
#include "x509.h"

#include <limits.h>

#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#define PKI_NAME_MAX 254 /* a DNS name, or an id of at most 64 */

typedef struct pki_entry {
    char status; /* 'V' issued, 'R' revoked; expiry is computed from not_after */
    time_t not_before, not_after, revoked_at;
    char serial[41];
    char kind[10]; /* "server", "device", "operator" */
    char name[PKI_NAME_MAX];
} pki_entry;

typedef struct pki {
    char dir[PATH_MAX];
    int lock_fd;
    pki_entry *entries;
    size_t n, cap;
    cli_rng rng;
    int rng_ready;
    mbedtls_x509_crt ca;
    mbedtls_pk_context ca_key;
    int have_ca, have_key;
    cli_pass_src pass;
} pki;

/* The directory from --dir, else $MOAT_PKI_DIR, else "pki". */
const char *pki_dir_choice(const char *opt);

/*
 * Opens a PKI directory: creates it when create is set, takes the lock
 * (exclusive when write is set), and reads index.txt.
 */
int pki_open(pki *p, const char *dir, int create, int write);
void pki_close(pki *p);

/* Joins the PKI directory with a relative name into out (PATH_MAX). */
int pki_path(const pki *p, char *out, const char *rel);

/* Loads ca.crt, and ca.key when need_key is set (asking for its passphrase). */
int pki_load_ca(pki *p, int need_key);
int pki_rng(pki *p);

int pki_index_save(pki *p);
int pki_index_add(pki *p, const pki_entry *e);
int pki_serial_used(const pki *p, const char *hex);

/* "valid", "expired", "revoked" or "not-yet-valid" at time now. */
const char *pki_entry_status(const pki_entry *e, time_t now);

/* Writes crl.pem from the revoked entries of the index. */
int pki_write_crl(pki *p, unsigned long days, time_t now);

#endif
