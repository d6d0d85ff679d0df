/*
 * moat/credstore.h - the device's credentials (CA, certificate, key), with a
 * pending set that must win a connection before it replaces the active one.
 *
 * The active set is the three files the config names (cafile, certfile,
 * keyfile); they are never written in place. New credentials go to a
 * pending set in the store directory; the agent reconnects with it
 * ("trial") and commits it only when the broker accepted it, otherwise it
 * rolls back and reconnects with the active set, which was never touched.
 * The device makes its new key itself (moat_credstore_make_csr): the
 * private key is written here, mode 0600, and never leaves the device.
 *
 * The store directory (mode 0700) holds:
 *
 *   pending/ca.pem, pending/cert.pem, pending/key.pem   the pending set
 *                                   (any subset; key.pem 0600)
 *   trial     present while the pending set is being tried
 *   commit    the commit journal: present while a commit is under way
 *
 * Every file is written to a temporary file, fsynced, renamed, and the
 * directory fsynced. A commit copies each pending file next to its target
 * (<target>.moat-new, synced), writes the journal, renames the copies over
 * the targets, then deletes the pending set, the trial mark and the
 * journal. moat_credstore_open() finishes whatever a power cut interrupted:
 *   - a journal: the commit is carried forward (the broker had accepted);
 *   - a trial mark without a journal: the trial is abandoned, the pending
 *     set deleted (the active set is known good; the new one is not);
 *   - a pending set without a trial mark: kept (say a key made for a CSR
 *     whose certificate has not come yet).
 * So after any cut the targets hold either the whole old set or the whole
 * new one, never a mix.
 *
 * Checks before anything is staged (errors in words, naming the file):
 *   ca    PEM or DER certificate(s), at least one of them a CA;
 *   cert  one certificate, not a CA, whose CN is the device id, and whose
 *         public key matches the pending key, or else the active key;
 *   key   a private key that parses (no password).
 * moat_credstore_begin_trial() checks the whole effective set once more
 * (certificate and key match).
 *
 * This is the POSIX implementation (files and rename); it uses mbedTLS for
 * parsing, key generation and the CSR, so a program using it links
 * mbedx509/mbedcrypto (moat_tls does). A microcontroller port implements
 * the same functions over flash areas (moat/flash.h).
 */
#ifndef MOAT_CREDSTORE_H
#define MOAT_CREDSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOAT_CRED_PATH_MAX 512u
#define MOAT_CRED_ERROR_MAX 400u
#define MOAT_CRED_FILE_MAX 65536u   /* largest credential file accepted */
#define MOAT_CRED_CSR_MAX 2048u     /* room for any CSR this module makes */

typedef enum moat_cred_kind {
    MOAT_CRED_CA = 0,
    MOAT_CRED_CERT = 1,
    MOAT_CRED_KEY = 2
} moat_cred_kind;
#define MOAT_CRED_KINDS 3u

/* What moat_credstore_open() found and finished. */
typedef enum moat_cred_recovery {
    MOAT_CRED_CLEAN = 0,       /* nothing was interrupted */
    MOAT_CRED_ROLLED_FORWARD,  /* an interrupted commit was completed */
    MOAT_CRED_ROLLED_BACK      /* an interrupted trial was abandoned */
} moat_cred_recovery;

/* Caller-owned; about 4 KB. Opaque: use the functions. */
typedef struct moat_credstore {
    char dir[MOAT_CRED_PATH_MAX];
    char active[MOAT_CRED_KINDS][MOAT_CRED_PATH_MAX];  /* the config's files */
    char pending[MOAT_CRED_KINDS][MOAT_CRED_PATH_MAX]; /* dir/pending/... */
    bool staged[MOAT_CRED_KINDS];
    bool trial;
    moat_cred_recovery recovery;
    char error[MOAT_CRED_ERROR_MAX];
} moat_credstore;

/*
 * Open (creating, mode 0700) the store directory dir for the active files
 * cafile, certfile and keyfile, and finish an interrupted commit or trial
 * (see the top; moat_credstore_recovery says which). Returns MOAT_OK,
 * MOAT_ERR_ARG (a path missing, too long, holding a tab or newline, or two
 * kinds naming one file) or MOAT_ERR_FILE (words name the file).
 */
moat_err moat_credstore_open(moat_credstore *s, const char *dir, const char *cafile,
                             const char *certfile, const char *keyfile);

moat_cred_recovery moat_credstore_recovery(const moat_credstore *s);

/*
 * Check data[0..len) (PEM or DER) as a credential of kind (see the top;
 * device_id is the CN a certificate must have) and write it to the pending
 * set. MOAT_ERR_CERT_FORMAT (does not parse, not a CA, a CA as the device
 * certificate), MOAT_ERR_CERT_INVALID (CN is not device_id),
 * MOAT_ERR_KEY_MISMATCH, MOAT_ERR_TOO_LARGE, MOAT_ERR_STATE (a trial is
 * under way), MOAT_ERR_FILE; words in moat_credstore_error(). Nothing is
 * staged on an error.
 */
moat_err moat_credstore_stage(moat_credstore *s, moat_cred_kind kind, const uint8_t *data,
                              size_t len, const char *device_id);

/*
 * Make a new ECDSA P-256 key pair on the device, stage it as the pending
 * key (0600), and write a certificate signing request for it, subject
 * CN=device_id, signed with it (SHA-256), as PEM into csr[0..cap) with a
 * NUL; *len without it. The private key goes nowhere else. A certificate
 * staged earlier for another key is dropped from the pending set.
 * MOAT_ERR_ARG (device_id not 1..64 of A-Z a-z 0-9 _ -), MOAT_ERR_NO_SPACE
 * (cap below what the CSR needs; MOAT_CRED_CSR_MAX suffices),
 * MOAT_ERR_STATE (a trial is under way), MOAT_ERR_TLS (key generation
 * failed), MOAT_ERR_FILE.
 */
moat_err moat_credstore_make_csr(moat_credstore *s, const char *device_id, char *csr,
                                 size_t cap, size_t *len);

/* Is kind staged? Is anything staged? */
bool moat_credstore_staged(const moat_credstore *s, moat_cred_kind kind);
bool moat_credstore_has_pending(const moat_credstore *s);

/* Is the pending set complete enough to try: a CA or a certificate staged
 * (a key alone waits for its certificate). */
bool moat_credstore_ready(const moat_credstore *s);

/* The file of kind to load: with pending, the staged file where there is
 * one, else the active file. */
const char *moat_credstore_path(const moat_credstore *s, moat_cred_kind kind, bool pending);

/*
 * The agent is about to connect with the pending set: check it (ready, and
 * the effective certificate matches the effective key) and write the trial
 * mark, so a restart during the trial goes back to the active set.
 * MOAT_ERR_STATE (nothing ready to try), MOAT_ERR_KEY_MISMATCH,
 * MOAT_ERR_CERT_FORMAT, MOAT_ERR_FILE.
 */
moat_err moat_credstore_begin_trial(moat_credstore *s);
bool moat_credstore_in_trial(const moat_credstore *s);

/*
 * The broker accepted the pending set: it replaces the active files (see
 * the top), and the pending set and trial mark are gone. MOAT_ERR_STATE
 * without a trial. On MOAT_ERR_FILE the journal (if written) finishes the
 * commit at the next moat_credstore_open().
 */
moat_err moat_credstore_commit(moat_credstore *s);

/* The pending set failed (or is not wanted): delete it and the trial mark.
 * The active files were never touched. */
moat_err moat_credstore_rollback(moat_credstore *s);

/* Words for the last failure, naming the file; "" after success. */
const char *moat_credstore_error(const moat_credstore *s);

/* "ca", "cert", "key". */
const char *moat_credstore_kind_name(moat_cred_kind kind);

#ifdef __cplusplus
}
#endif
#endif
