/*
 * test_credstore.c - the credential store (moat/credstore.h) in a temporary
 * directory, with keys and certificates made by mbedTLS at run time (no key
 * is committed): the checks before staging, the CSR made on the device,
 * trial, commit and rollback, and recovery from a power cut at each step.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>

#include "moat/credstore.h"

#define ID "a0b1c2d3e4f5"

static mbedtls_entropy_context ent;
static mbedtls_ctr_drbg_context drbg;
static char root[256], store[300], ca_path[300], cert_path[300], key_path[300];

/* ---- PKI material, made now ---- */

typedef struct pem {
    unsigned char b[4096];
    size_t n;
} pem;

static void new_key(mbedtls_pk_context *pk)
{
    mbedtls_pk_init(pk);
    assert_int_equal(mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
    assert_int_equal(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk),
                                         mbedtls_ctr_drbg_random, &drbg),
                     0);
}

static void key_pem(mbedtls_pk_context *pk, pem *out)
{
    assert_int_equal(mbedtls_pk_write_key_pem(pk, out->b, sizeof out->b), 0);
    out->n = strlen((char *)out->b);
}

static void cert_pem(mbedtls_pk_context *subject_key, const char *subject,
                     mbedtls_pk_context *issuer_key, const char *issuer, int is_ca, pem *out)
{
    mbedtls_x509write_cert w;
    mbedtls_mpi serial;
    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi_init(&serial);
    mbedtls_mpi_lset(&serial, 7);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, subject_key);
    mbedtls_x509write_crt_set_issuer_key(&w, issuer_key);
    assert_int_equal(mbedtls_x509write_crt_set_subject_name(&w, subject), 0);
    assert_int_equal(mbedtls_x509write_crt_set_issuer_name(&w, issuer), 0);
    assert_int_equal(mbedtls_x509write_crt_set_serial(&w, &serial), 0);
    assert_int_equal(mbedtls_x509write_crt_set_validity(&w, "20240101000000", "20991231235959"), 0);
    assert_int_equal(mbedtls_x509write_crt_set_basic_constraints(&w, is_ca, -1), 0);
    assert_int_equal(mbedtls_x509write_crt_pem(&w, out->b, sizeof out->b, mbedtls_ctr_drbg_random,
                                               &drbg),
                     0);
    out->n = strlen((char *)out->b);
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&w);
}

static mbedtls_pk_context ca_key, dev_key, other_key;
static pem ca, dev_cert, dev_key_pem;

static void write_file(const char *path, const void *data, size_t n, mode_t mode)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    chmod(path, mode);
}

static size_t read_file(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n;
    assert_non_null(f);
    n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return n;
}

static bool file_is(const char *path, const pem *p)
{
    unsigned char buf[8192];
    size_t n = read_file(path, buf, sizeof buf);
    return n == p->n && memcmp(buf, p->b, n) == 0;
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 0777;
}

static bool gone(const char *path)
{
    struct stat st;
    return lstat(path, &st) != 0;
}

/* A fresh device: active CA, certificate and key in root, an empty store. */
static int setup(void **state)
{
    char cmd[400];
    (void)state;
    snprintf(root, sizeof root, "/tmp/moat-credstore-test.XXXXXX");
    assert_non_null(mkdtemp(root));
    snprintf(store, sizeof store, "%s/store", root);
    snprintf(ca_path, sizeof ca_path, "%s/ca.crt", root);
    snprintf(cert_path, sizeof cert_path, "%s/device.crt", root);
    snprintf(key_path, sizeof key_path, "%s/device.key", root);
    write_file(ca_path, ca.b, ca.n, 0644);
    write_file(cert_path, dev_cert.b, dev_cert.n, 0644);
    write_file(key_path, dev_key_pem.b, dev_key_pem.n, 0600);
    (void)cmd;
    return 0;
}

static int teardown(void **state)
{
    char cmd[400];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static moat_credstore cs;

static void open_store(void)
{
    assert_int_equal(moat_credstore_open(&cs, store, ca_path, cert_path, key_path), MOAT_OK);
}

/* ---- tests ---- */

static void test_open(void **state)
{
    char p[400];
    (void)state;
    open_store();
    assert_int_equal(mode_of(store), 0700);
    snprintf(p, sizeof p, "%s/pending", store);
    assert_int_equal(mode_of(p), 0700);
    assert_int_equal(moat_credstore_recovery(&cs), MOAT_CRED_CLEAN);
    assert_false(moat_credstore_has_pending(&cs));
    assert_string_equal(moat_credstore_path(&cs, MOAT_CRED_CERT, true), cert_path);
    assert_string_equal(moat_credstore_path(&cs, MOAT_CRED_KEY, false), key_path);
    assert_int_equal(moat_credstore_open(&cs, store, ca_path, cert_path, cert_path), MOAT_ERR_ARG);
    assert_non_null(strstr(moat_credstore_error(&cs), "are the same file"));
    assert_int_equal(moat_credstore_open(&cs, store, ca_path, "a\tb", key_path), MOAT_ERR_ARG);
    assert_int_equal(moat_credstore_open(&cs, "", ca_path, cert_path, key_path), MOAT_ERR_ARG);
    assert_int_equal(moat_credstore_open(&cs, cert_path, ca_path, cert_path, key_path),
                     MOAT_ERR_FILE);
    assert_non_null(strstr(moat_credstore_error(&cs), "is not a directory"));
    assert_string_equal(moat_credstore_kind_name(MOAT_CRED_KEY), "key");
}

static void test_stage_checks(void **state)
{
    pem other_cert, wrong_cn, as_ca, key2;
    (void)state;
    open_store();
    /* a certificate for another key */
    cert_pem(&other_key, "CN=" ID, &ca_key, "CN=test CA", 0, &other_cert);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CERT, other_cert.b, other_cert.n, ID),
                     MOAT_ERR_KEY_MISMATCH);
    assert_non_null(strstr(moat_credstore_error(&cs), "does not match the device key"));
    assert_non_null(strstr(moat_credstore_error(&cs), key_path));
    /* another CN */
    cert_pem(&dev_key, "CN=someoneelse", &ca_key, "CN=test CA", 0, &wrong_cn);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CERT, wrong_cn.b, wrong_cn.n, ID),
                     MOAT_ERR_CERT_INVALID);
    assert_string_equal(moat_credstore_error(&cs),
                        "the new certificate names CN 'someoneelse' but the device id is '" ID "'");
    /* a CA as the device certificate, and a leaf as the CA */
    cert_pem(&dev_key, "CN=" ID, &ca_key, "CN=test CA", 1, &as_ca);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CERT, as_ca.b, as_ca.n, ID),
                     MOAT_ERR_CERT_FORMAT);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CA, dev_cert.b, dev_cert.n, NULL),
                     MOAT_ERR_CERT_FORMAT);
    assert_non_null(strstr(moat_credstore_error(&cs), "holds no CA certificate"));
    /* garbage, empty, too large */
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CERT, (const uint8_t *)"hello", 5, ID),
                     MOAT_ERR_CERT_FORMAT);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_KEY, (const uint8_t *)"-----BEGIN x", 12,
                                          ID),
                     MOAT_ERR_CERT_FORMAT);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CA, (const uint8_t *)"", 0, NULL),
                     MOAT_ERR_CERT_FORMAT);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CA, ca.b, MOAT_CRED_FILE_MAX + 1, NULL),
                     MOAT_ERR_TOO_LARGE);
    assert_false(moat_credstore_has_pending(&cs));
    /* the same certificate in DER is fine too */
    {
        mbedtls_x509_crt crt;
        mbedtls_x509_crt_init(&crt);
        assert_int_equal(mbedtls_x509_crt_parse(&crt, dev_cert.b, dev_cert.n + 1), 0);
        assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CERT, crt.raw.p, crt.raw.len, ID),
                         MOAT_OK);
        mbedtls_x509_crt_free(&crt);
    }
    assert_true(moat_credstore_staged(&cs, MOAT_CRED_CERT));
    /* a new key drops a certificate staged for the old one */
    key_pem(&other_key, &key2);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_KEY, key2.b, key2.n, NULL), MOAT_OK);
    assert_false(moat_credstore_staged(&cs, MOAT_CRED_CERT));
    assert_int_equal(mode_of(moat_credstore_path(&cs, MOAT_CRED_KEY, true)), 0600);
    /* now a certificate for the other key matches the pending key */
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CERT, other_cert.b, other_cert.n, ID),
                     MOAT_OK);
}

/* Parse a CSR and return its public key in pub (for comparison). */
static void check_csr(const char *text, size_t len, mbedtls_pk_context *key)
{
    mbedtls_x509_csr csr;
    char dn[200];
    mbedtls_x509_csr_init(&csr);
    assert_int_equal(mbedtls_x509_csr_parse(&csr, (const unsigned char *)text, len + 1), 0);
    assert_true(mbedtls_x509_dn_gets(dn, sizeof dn, &csr.subject) > 0);
    assert_string_equal(dn, "CN=" ID);
    assert_int_equal(mbedtls_pk_get_type(&csr.pk), MBEDTLS_PK_ECKEY);
    assert_int_equal(mbedtls_pk_check_pair(&csr.pk, key), 0);
    mbedtls_x509_csr_free(&csr);
}

static void load_key(const char *path, mbedtls_pk_context *pk)
{
    mbedtls_pk_init(pk);
    assert_int_equal(mbedtls_pk_parse_keyfile(pk, path, NULL), 0);
}

static void test_csr_trial_commit(void **state)
{
    char csr[MOAT_CRED_CSR_MAX], small[100];
    size_t len = 0;
    mbedtls_pk_context newkey;
    mbedtls_x509_csr req;
    pem signed_cert;
    (void)state;
    open_store();
    assert_int_equal(moat_credstore_make_csr(&cs, "bad/id", csr, sizeof csr, &len), MOAT_ERR_ARG);
    assert_int_equal(moat_credstore_make_csr(&cs, ID, small, sizeof small, &len),
                     MOAT_ERR_NO_SPACE);
    assert_false(moat_credstore_has_pending(&cs));
    assert_int_equal(moat_credstore_make_csr(&cs, ID, csr, sizeof csr, &len), MOAT_OK);
    assert_int_equal(len, strlen(csr));
    assert_non_null(strstr(csr, "-----BEGIN CERTIFICATE REQUEST-----"));
    assert_true(moat_credstore_staged(&cs, MOAT_CRED_KEY));
    assert_false(moat_credstore_ready(&cs)); /* the key waits for its certificate */
    assert_int_equal(mode_of(moat_credstore_path(&cs, MOAT_CRED_KEY, true)), 0600);
    assert_true(file_is(key_path, &dev_key_pem)); /* the active key is untouched */
    load_key(moat_credstore_path(&cs, MOAT_CRED_KEY, true), &newkey);
    check_csr(csr, len, &newkey);
    assert_int_equal(moat_credstore_begin_trial(&cs), MOAT_ERR_STATE);
    assert_string_equal(moat_credstore_error(&cs),
                        "the pending key waits for its certificate: nothing to try yet");
    /* the operator signs it (only its public key and CN count) */
    mbedtls_x509_csr_init(&req);
    assert_int_equal(mbedtls_x509_csr_parse(&req, (const unsigned char *)csr, len + 1), 0);
    cert_pem(&req.pk, "CN=" ID, &ca_key, "CN=test CA", 0, &signed_cert);
    mbedtls_x509_csr_free(&req);
    /* a restart before the certificate comes keeps the pending key */
    open_store();
    assert_int_equal(moat_credstore_recovery(&cs), MOAT_CRED_CLEAN);
    assert_true(moat_credstore_staged(&cs, MOAT_CRED_KEY));
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CERT, signed_cert.b, signed_cert.n, ID),
                     MOAT_OK);
    assert_true(moat_credstore_ready(&cs));
    assert_string_not_equal(moat_credstore_path(&cs, MOAT_CRED_CERT, true), cert_path);
    assert_string_equal(moat_credstore_path(&cs, MOAT_CRED_CA, true), ca_path);
    assert_int_equal(moat_credstore_begin_trial(&cs), MOAT_OK);
    assert_true(moat_credstore_in_trial(&cs));
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CA, ca.b, ca.n, NULL), MOAT_ERR_STATE);
    assert_int_equal(moat_credstore_make_csr(&cs, ID, csr, sizeof csr, &len), MOAT_ERR_STATE);
    /* the broker accepted: commit */
    assert_int_equal(moat_credstore_commit(&cs), MOAT_OK);
    assert_false(moat_credstore_in_trial(&cs));
    assert_false(moat_credstore_has_pending(&cs));
    assert_true(file_is(cert_path, &signed_cert));
    assert_int_equal(mode_of(key_path), 0600);
    assert_int_equal(mode_of(cert_path), 0644);
    {
        mbedtls_pk_context active;
        load_key(key_path, &active);
        check_csr(csr, strlen(csr), &active);
        mbedtls_pk_free(&active);
    }
    assert_true(file_is(ca_path, &ca));
    assert_int_equal(moat_credstore_commit(&cs), MOAT_ERR_STATE);
    mbedtls_pk_free(&newkey);
    /* nothing left behind */
    {
        char p[400];
        snprintf(p, sizeof p, "%s/commit", store);
        assert_true(gone(p));
        snprintf(p, sizeof p, "%s/trial", store);
        assert_true(gone(p));
        snprintf(p, sizeof p, "%s.moat-new", cert_path);
        assert_true(gone(p));
    }
}

static void test_rollback(void **state)
{
    pem ca2, same_cert;
    mbedtls_pk_context ca2_key;
    (void)state;
    open_store();
    new_key(&ca2_key);
    cert_pem(&ca2_key, "CN=other CA", &ca2_key, "CN=other CA", 1, &ca2);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CA, ca2.b, ca2.n, NULL), MOAT_OK);
    cert_pem(&dev_key, "CN=" ID, &ca2_key, "CN=other CA", 0, &same_cert);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CERT, same_cert.b, same_cert.n, ID),
                     MOAT_OK);
    assert_int_equal(moat_credstore_begin_trial(&cs), MOAT_OK);
    assert_string_not_equal(moat_credstore_path(&cs, MOAT_CRED_CA, true), ca_path);
    assert_string_equal(moat_credstore_path(&cs, MOAT_CRED_KEY, true), key_path);
    /* the broker refused: roll back */
    assert_int_equal(moat_credstore_rollback(&cs), MOAT_OK);
    assert_false(moat_credstore_in_trial(&cs));
    assert_false(moat_credstore_has_pending(&cs));
    assert_true(file_is(ca_path, &ca));
    assert_true(file_is(cert_path, &dev_cert));
    assert_true(file_is(key_path, &dev_key_pem));
    assert_int_equal(moat_credstore_begin_trial(&cs), MOAT_ERR_STATE);
    assert_string_equal(moat_credstore_error(&cs), "no new credentials to try");
    mbedtls_pk_free(&ca2_key);
}

static void test_cut_during_trial_goes_back(void **state)
{
    pem c;
    (void)state;
    open_store();
    cert_pem(&dev_key, "CN=" ID, &ca_key, "CN=test CA", 0, &c);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CERT, c.b, c.n, ID), MOAT_OK);
    assert_int_equal(moat_credstore_begin_trial(&cs), MOAT_OK);
    /* power cut: the next start abandons the trial */
    open_store();
    assert_int_equal(moat_credstore_recovery(&cs), MOAT_CRED_ROLLED_BACK);
    assert_false(moat_credstore_has_pending(&cs));
    assert_false(moat_credstore_in_trial(&cs));
    assert_true(file_is(cert_path, &dev_cert));
}

static void test_cut_during_commit_goes_forward(void **state)
{
    pem c, k;
    char p[400], j[400];
    mbedtls_pk_context key3;
    (void)state;
    open_store();
    new_key(&key3);
    key_pem(&key3, &k);
    cert_pem(&key3, "CN=" ID, &ca_key, "CN=test CA", 0, &c);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_KEY, k.b, k.n, NULL), MOAT_OK);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CERT, c.b, c.n, ID), MOAT_OK);
    assert_int_equal(moat_credstore_begin_trial(&cs), MOAT_OK);
    /* the commit got as far as the journal and one rename, then the power went */
    snprintf(p, sizeof p, "%s.moat-new", key_path);
    write_file(p, k.b, k.n, 0600);
    write_file(cert_path, c.b, c.n, 0644); /* the cert's rename happened */
    snprintf(j, sizeof j, "%s/commit", store);
    {
        FILE *f = fopen(j, "w");
        assert_non_null(f);
        fprintf(f, "%s.moat-new\t%s\n%s.moat-new\t%s\n", cert_path, cert_path, key_path, key_path);
        /* a line that names anything else is not followed */
        fprintf(f, "%s\t%s\n", ca_path, key_path);
        fclose(f);
    }
    open_store();
    assert_int_equal(moat_credstore_recovery(&cs), MOAT_CRED_ROLLED_FORWARD);
    assert_true(file_is(cert_path, &c));
    assert_true(file_is(key_path, &k));
    assert_true(file_is(ca_path, &ca));
    assert_true(gone(j));
    assert_true(gone(p));
    assert_false(moat_credstore_has_pending(&cs));
    mbedtls_pk_free(&key3);
}

static void test_cut_before_journal_goes_back(void **state)
{
    pem c;
    char p[400];
    (void)state;
    open_store();
    cert_pem(&dev_key, "CN=" ID, &ca_key, "CN=test CA", 0, &c);
    assert_int_equal(moat_credstore_stage(&cs, MOAT_CRED_CERT, c.b, c.n, ID), MOAT_OK);
    assert_int_equal(moat_credstore_begin_trial(&cs), MOAT_OK);
    /* a copy was made, no journal yet */
    snprintf(p, sizeof p, "%s.moat-new", cert_path);
    write_file(p, c.b, c.n, 0644);
    open_store();
    assert_int_equal(moat_credstore_recovery(&cs), MOAT_CRED_ROLLED_BACK);
    assert_true(gone(p));
    assert_true(file_is(cert_path, &dev_cert));
}

int main(void)
{
    static const char pers[] = "test_credstore";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stage_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csr_trial_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_during_trial_goes_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_during_commit_goes_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_before_journal_goes_back, setup, teardown),
    };
    int rc;
    mbedtls_entropy_init(&ent);
    mbedtls_ctr_drbg_init(&drbg);
    if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, (const unsigned char *)pers,
                              sizeof pers - 1) != 0)
        return 1;
    new_key(&ca_key);
    new_key(&dev_key);
    new_key(&other_key);
    cert_pem(&ca_key, "CN=test CA", &ca_key, "CN=test CA", 1, &ca);
    cert_pem(&dev_key, "CN=" ID, &ca_key, "CN=test CA", 0, &dev_cert);
    key_pem(&dev_key, &dev_key_pem);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    mbedtls_pk_free(&ca_key);
    mbedtls_pk_free(&dev_key);
    mbedtls_pk_free(&other_key);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&ent);
    return rc;
}
