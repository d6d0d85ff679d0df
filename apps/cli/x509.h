/*
 * x509.h - certificates, CSRs and CRLs for the `moat` CLI, made with
 * mbedTLS's x509write and asn1write (never by running openssl).
 */
#ifndef MOAT_CLI_X509_H
#define MOAT_CLI_X509_H

#include "cli.h"

#include <mbedtls/bignum.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>

/* What a certificate is for; sets basicConstraints, keyUsage and extKeyUsage. */
typedef enum x509_profile {
    X509_CA,     /* CA:TRUE pathlen 0; keyCertSign, cRLSign */
    X509_SERVER, /* CA:FALSE; digitalSignature; serverAuth; SANs */
    X509_CLIENT  /* CA:FALSE; digitalSignature; clientAuth (devices, operators) */
} x509_profile;

typedef struct x509_ip {
    unsigned char addr[16];
    size_t len; /* 4 or 16 */
} x509_ip;

typedef struct x509_req {
    x509_profile profile;
    const char *subject;             /* mbedTLS form: "CN=a0b1c2d3e4f5" */
    const char *issuer;              /* the CA's subject; equals subject for the CA */
    mbedtls_pk_context *subject_key; /* only the public part is used */
    mbedtls_pk_context *issuer_key;  /* the CA's private key */
    const mbedtls_mpi *serial;
    time_t not_before, not_after;
    const char *const *dns; /* subjectAltName dNSName entries */
    size_t n_dns;
    const x509_ip *ips; /* subjectAltName iPAddress entries */
    size_t n_ips;
} x509_req;

#define X509_DER_MAX 8192

/* Writes the DER certificate at the end of buf; *der points into buf. */
int x509_issue(const x509_req *req, cli_rng *rng, unsigned char *buf, size_t size,
               unsigned char **der, size_t *der_len);

/* A random positive 127-bit serial; hex gets it in upper-case hex. */
int x509_random_serial(mbedtls_mpi *serial, cli_rng *rng, char hex[41]);
/* The serial of a parsed certificate in the same hex form. */
void x509_serial_hex(const mbedtls_x509_buf *serial, char hex[41]);

/* mbedtls_x509_time (UTC) to time_t. */
time_t x509_time_t(const mbedtls_x509_time *t);

/* PEM text of a DER certificate; the caller frees *pem. */
int x509_cert_pem(const unsigned char *der, size_t der_len, unsigned char **pem, size_t *pem_len);

/* Parses a CSR (PEM or DER) and checks its self-signature and key strength. */
int x509_csr_load(mbedtls_x509_csr *csr, const char *path);
/* The CN of a parsed name, or fails when there is none. */
int x509_name_cn(const mbedtls_x509_name *name, char *out, size_t size);

typedef struct x509_revoked {
    char serial[41]; /* hex */
    time_t when;
} x509_revoked;

/*
 * Writes a v2 CRL signed by the CA (SHA-256), with cRLNumber and
 * authorityKeyIdentifier, as DER at the end of buf. ca_subject_raw is the
 * CA certificate's subject, copied byte for byte as the CRL issuer.
 */
int x509_crl_write(const mbedtls_x509_crt *ca, mbedtls_pk_context *ca_key,
                   const x509_revoked *revoked, size_t n, time_t this_update, time_t next_update,
                   unsigned long crl_number, cli_rng *rng, unsigned char *buf, size_t size,
                   unsigned char **der, size_t *der_len);

#endif
