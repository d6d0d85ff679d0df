/*
 * pki.c - the `moat pki` commands: init, server, device, operator, sign,
 * list, revoke, crl. The directory itself (index, CA, CRL) is pki_store.c.
 */
#include "pki.h"

#include "keys.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/oid.h>
#include <mbedtls/platform_util.h>

#define DEFAULT_CA_DAYS 3650
#define DEFAULT_SERVER_DAYS 730
#define DEFAULT_DEVICE_DAYS 730
#define DEFAULT_OPERATOR_DAYS 365
#define DEFAULT_CRL_DAYS 90
#define MAX_DAYS 36500
/* notBefore is set this far back so a device whose clock is a little behind accepts it. */
#define CLOCK_SKEW 300

/* Options most pki commands share; each command lists the ones it takes. */
typedef struct pki_opts {
    const char *dir, *days, *not_before, *not_after, *key_type, *crl_days, *cn, *org, *id,
        *serial, *kind, *pass_file, *pass_env;
    int force, encrypt, operator_flag;
    cli_list ips, dns;
} pki_opts;

#define OPT_DIR {"dir", CLI_OPT_VALUE, &o.dir}
#define OPT_DAYS {"days", CLI_OPT_VALUE, &o.days}
#define OPT_NB {"not-before", CLI_OPT_VALUE, &o.not_before}
#define OPT_NA {"not-after", CLI_OPT_VALUE, &o.not_after}
#define OPT_KEYTYPE {"key-type", CLI_OPT_VALUE, &o.key_type}
#define OPT_FORCE {"force", CLI_OPT_FLAG, &o.force}
#define OPT_CRLDAYS {"crl-days", CLI_OPT_VALUE, &o.crl_days}
#define OPT_PASSFILE {"passphrase-file", CLI_OPT_VALUE, &o.pass_file}
#define OPT_PASSENV {"passphrase-env", CLI_OPT_VALUE, &o.pass_env}
#define OPT_END {NULL, CLI_OPT_FLAG, NULL}

static const char usage_pki[] =
    "usage: moat pki <command> [options]\n"
    "\n"
    "Commands:\n"
    "  init                 make the CA (ca.crt, ca.key) and an empty CRL\n"
    "  server <host>        broker certificate: SANs, extKeyUsage serverAuth\n"
    "  device <id>          device key and certificate, CN=<id>, clientAuth, PEM and DER\n"
    "  operator <name>      operator key and certificate (wider rights in the broker ACL)\n"
    "  sign <csr>           certificate for a CSR made on the device (its key stays there)\n"
    "  list                 every certificate: kind, name, serial, notAfter, status\n"
    "  revoke <id>          revoke a device's or operator's certificates, rewrite crl.pem\n"
    "  crl                  rewrite crl.pem with a fresh nextUpdate\n"
    "\n"
    "Every command takes --dir DIR (default $MOAT_PKI_DIR, else ./pki).\n"
    "Run `moat pki <command> --help` for its options; see docs/moat-cli.md.\n";

static const char usage_validity[] =
    "  --days N             validity in days from now (default: CA 3650, server\n"
    "                       and device 730, operator 365)\n"
    "  --not-before T       start of validity, YYYYMMDDhhmmss UTC (default: now - 5 min)\n"
    "  --not-after T        end of validity, YYYYMMDDhhmmss UTC (instead of --days);\n"
    "                       expired or future certificates for tests; nothing is\n"
    "                       ever verified less because of them\n";

static const char usage_pass[] =
    "  --passphrase-file F  CA key passphrase: the first line of F\n"
    "  --passphrase-env V   CA key passphrase: the environment variable V\n"
    "                       (without either, an encrypted CA key asks on the terminal)\n";

static void print_usage(const char *head, const char *tail)
{
    fputs(head, stdout);
    if (tail != NULL)
        fputs(tail, stdout);
}

static int parse_or_help(int argc, char **argv, const cli_opt *opts, const char **pos,
                         int max_pos, int *npos, const char *cmd, const char *usage,
                         int validity, int pass)
{
    int rc = cli_parse(argc, argv, opts, pos, max_pos, npos, cmd);
    if (rc == CLI_HELP) {
        fputs(usage, stdout);
        if (validity)
            fputs(usage_validity, stdout);
        if (pass)
            fputs(usage_pass, stdout);
        fputs("  --dir DIR            PKI directory (default $MOAT_PKI_DIR, else ./pki)\n",
              stdout);
    }
    return rc;
}

static int open_pki(pki *p, const pki_opts *o, int create, int write)
{
    int rc = pki_open(p, pki_dir_choice(o->dir), create, write);
    p->pass.file = o->pass_file;
    p->pass.env = o->pass_env;
    return rc;
}

/* notBefore/notAfter from --days, --not-before and --not-after. */
static int validity(const pki_opts *o, unsigned long default_days, time_t now, time_t *nb,
                    time_t *na)
{
    unsigned long days = default_days;
    if (o->days != NULL && o->not_after != NULL) {
        cli_error("give --days or --not-after, not both");
        return CLI_USAGE;
    }
    if (o->days != NULL && cli_parse_uint(o->days, 1, MAX_DAYS, "--days", &days) != CLI_OK)
        return CLI_USAGE;
    *nb = now - CLOCK_SKEW;
    if (o->not_before != NULL && cli_parse_time14(o->not_before, nb) != CLI_OK) {
        cli_error("--not-before: '%s' is not a UTC time YYYYMMDDhhmmss", o->not_before);
        return CLI_USAGE;
    }
    if (o->not_after != NULL) {
        if (cli_parse_time14(o->not_after, na) != CLI_OK) {
            cli_error("--not-after: '%s' is not a UTC time YYYYMMDDhhmmss", o->not_after);
            return CLI_USAGE;
        }
    } else {
        *na = (o->not_before != NULL ? *nb : now) + (time_t)days * 86400;
    }
    if (*na <= *nb) {
        cli_error("the certificate would end (notAfter) before it starts (notBefore)");
        return CLI_USAGE;
    }
    return CLI_OK;
}

static int crl_days(const pki_opts *o, unsigned long *days)
{
    *days = DEFAULT_CRL_DAYS;
    if (o->crl_days != NULL)
        return cli_parse_uint(o->crl_days, 1, MAX_DAYS, "--crl-days", days);
    return CLI_OK;
}

static int key_type(const pki_opts *o, const char **type)
{
    *type = o->key_type != NULL ? o->key_type : "p256";
    if (!keys_type_valid(*type)) {
        cli_error("--key-type: '%s' is not one of p256, p384, rsa2048, rsa3072", *type);
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* A serial no certificate in the index has. */
static int new_serial(pki *p, mbedtls_mpi *serial, char hex[41])
{
    for (int i = 0; i < 8; i++) {
        if (x509_random_serial(serial, &p->rng, hex) != CLI_OK)
            return CLI_FAIL;
        if (!pki_serial_used(p, hex))
            return CLI_OK;
    }
    cli_error("cannot find an unused serial number (is the random generator broken?)");
    return CLI_FAIL;
}

/* Writes a certificate as PEM (path) and, if der_path, DER; both 0644. */
static int write_cert(const char *path, const char *der_path, const unsigned char *der,
                      size_t der_len)
{
    unsigned char *pem;
    size_t pem_len;
    if (x509_cert_pem(der, der_len, &pem, &pem_len) != CLI_OK)
        return CLI_FAIL;
    int rc = cli_write_file(path, pem, pem_len, 0644, 1);
    free(pem);
    if (rc == CLI_OK && der_path != NULL)
        rc = cli_write_file(der_path, der, der_len, 0644, 1);
    return rc;
}

/*
 * Parses what was just made and checks it chains to the CA, so a defect in
 * the writer shows here and not at the broker. Time flags are expected when
 * --not-before/--not-after asked for them.
 */
static int self_check(pki *p, const unsigned char *der, size_t len, const char *name)
{
    mbedtls_x509_crt crt;
    uint32_t flags = 0;
    mbedtls_x509_crt_init(&crt);
    int ret = mbedtls_x509_crt_parse_der(&crt, der, len);
    if (ret == 0)
        ret = mbedtls_x509_crt_verify(&crt, &p->ca, NULL, NULL, &flags, NULL, NULL);
    flags &= ~(uint32_t)(MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE);
    int same_issuer = ret != MBEDTLS_ERR_X509_INVALID_FORMAT && crt.issuer_raw.len ==
                      p->ca.subject_raw.len && memcmp(crt.issuer_raw.p, p->ca.subject_raw.p,
                                                      crt.issuer_raw.len) == 0;
    mbedtls_x509_crt_free(&crt);
    if ((ret != 0 && ret != MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) || flags != 0 || !same_issuer) {
        cli_error("the certificate made for %s does not verify against the CA (flags 0x%x); "
                  "nothing was written",
                  name, (unsigned)flags);
        return CLI_FAIL;
    }
    return CLI_OK;
}

static const char *kind_dir(const char *kind)
{
    return strcmp(kind, "server") == 0   ? "servers"
           : strcmp(kind, "device") == 0 ? "devices"
                                         : "operators";
}

/* Refuses an id already held by the other client kind: the CN is the MQTT user name. */
static int check_identity_free(const pki *p, const char *kind, const char *name, time_t now)
{
    if (strcmp(kind, "server") == 0)
        return CLI_OK;
    for (size_t i = 0; i < p->n; i++) {
        const pki_entry *e = &p->entries[i];
        if (strcmp(e->name, name) == 0 && strcmp(e->kind, "server") != 0 &&
            strcmp(e->kind, kind) != 0 && e->status == 'V' && now <= e->not_after) {
            cli_error("'%s' already names %s %s with a valid certificate; a %s with the same "
                      "CN would share its broker identity (revoke it first)",
                      name, e->kind[0] == 'o' ? "an" : "a", e->kind, kind);
            return CLI_FAIL;
        }
    }
    return CLI_OK;
}

typedef struct leaf {
    const char *kind; /* "server", "device", "operator" */
    const char *name; /* CN */
    x509_profile profile;
    mbedtls_pk_context *key; /* the subject's key */
    int write_key;           /* generated here: write it */
    int der_files;           /* also .der (certificate) and .key.der */
    const char *const *dns;
    size_t n_dns;
    const x509_ip *ips;
    size_t n_ips;
    time_t nb, na;
} leaf;

static int issue_leaf(pki *p, const leaf *l, int force)
{
    char dir[PATH_MAX], crt[PATH_MAX], der_path[PATH_MAX], key[PATH_MAX], key_der[PATH_MAX];
    char subject[300], issuer[600], serial_hex[41], na_iso[21];
    unsigned char buf[X509_DER_MAX], *der;
    size_t der_len;
    mbedtls_mpi serial;
    int rc = CLI_FAIL;

    const char *sub = kind_dir(l->kind);
    if (pki_path(p, dir, sub) != CLI_OK ||
        snprintf(crt, sizeof(crt), "%s/%s.crt", dir, l->name) >= (int)sizeof(crt) ||
        snprintf(der_path, sizeof(der_path), "%s/%s.der", dir, l->name) >= (int)sizeof(der_path) ||
        snprintf(key, sizeof(key), "%s/%s.key", dir, l->name) >= (int)sizeof(key) ||
        snprintf(key_der, sizeof(key_der), "%s/%s.key.der", dir, l->name) >= (int)sizeof(key_der)) {
        cli_error("path too long for %s", l->name);
        return CLI_FAIL;
    }
    if (p->ca.valid_to.year != 0 && l->na > x509_time_t(&p->ca.valid_to)) {
        char ca_na[21];
        cli_time_iso(x509_time_t(&p->ca.valid_to), ca_na);
        cli_error("the certificate for %s would outlive the CA (CA notAfter %s); "
                  "choose fewer --days",
                  l->name, ca_na);
        return CLI_USAGE;
    }
    snprintf(subject, sizeof(subject), "CN=%s", l->name);
    if (mbedtls_x509_dn_gets(issuer, sizeof(issuer), &p->ca.subject) < 0) {
        cli_error("cannot read the CA's subject name");
        return CLI_FAIL;
    }
    mbedtls_mpi_init(&serial);
    if (new_serial(p, &serial, serial_hex) != CLI_OK)
        goto done;
    x509_req req = {
        .profile = l->profile,
        .subject = subject,
        .issuer = issuer,
        .subject_key = l->key,
        .issuer_key = &p->ca_key,
        .serial = &serial,
        .not_before = l->nb,
        .not_after = l->na,
        .dns = l->dns,
        .n_dns = l->n_dns,
        .ips = l->ips,
        .n_ips = l->n_ips,
    };
    if (x509_issue(&req, &p->rng, buf, sizeof(buf), &der, &der_len) != CLI_OK ||
        self_check(p, der, der_len, l->name) != CLI_OK)
        goto done;
    if (cli_mkdir_p(dir, 0755) != CLI_OK)
        goto done;
    /* The key first: if it may not be written, nothing else is. */
    if (l->write_key &&
        keys_write(l->key, key, l->der_files ? key_der : NULL, NULL, 0, force, &p->rng) != CLI_OK)
        goto done;
    if (write_cert(crt, l->der_files ? der_path : NULL, der, der_len) != CLI_OK)
        goto done;
    pki_entry e;
    memset(&e, 0, sizeof(e));
    e.status = 'V';
    e.not_before = l->nb;
    e.not_after = l->na;
    strcpy(e.serial, serial_hex);
    strcpy(e.kind, l->kind);
    snprintf(e.name, sizeof(e.name), "%s", l->name);
    if (pki_index_add(p, &e) != CLI_OK || pki_index_save(p) != CLI_OK)
        goto done;
    cli_time_iso(l->na, na_iso);
    printf("%s %s: serial %s, valid until %s\n  %s\n", l->kind, l->name, serial_hex, na_iso, crt);
    if (l->der_files)
        printf("  %s\n", der_path);
    if (l->write_key) {
        printf("  %s (0600)\n", key);
        if (l->der_files)
            printf("  %s (0600)\n", key_der);
    }
    rc = CLI_OK;
done:
    mbedtls_mpi_free(&serial);
    return rc;
}

/* ---- init ---- */

static const char usage_init[] =
    "usage: moat pki init [options]\n"
    "Makes the CA: ca.key (0600), ca.crt, ca.der, an empty index and crl.pem.\n"
    "  --cn NAME            CA common name (default \"moat CA\")\n"
    "  --org NAME           CA organization (optional)\n"
    "  --key-type T         p256 (default), p384, rsa2048, rsa3072\n"
    "  --encrypt            encrypt ca.key with a passphrase (asked on the terminal\n"
    "                       unless --passphrase-file/--passphrase-env gives it)\n"
    "  --crl-days N         nextUpdate of the first CRL (default 90)\n"
    "  --force              replace an existing CA; certificates it issued stop\n"
    "                       verifying and the old index is kept as index.txt.old\n";

static int cmd_init(int argc, char **argv)
{
    pki_opts o;
    memset(&o, 0, sizeof(o));
    const cli_opt opts[] = {OPT_DIR,     OPT_DAYS,   OPT_NB,
                            OPT_NA,      OPT_KEYTYPE, OPT_FORCE,
                            OPT_CRLDAYS, OPT_PASSFILE, OPT_PASSENV,
                            {"cn", CLI_OPT_VALUE, &o.cn},
                            {"org", CLI_OPT_VALUE, &o.org},
                            {"encrypt", CLI_OPT_FLAG, &o.encrypt},
                            OPT_END};
    const char *pos[1];
    int npos;
    int rc = parse_or_help(argc, argv, opts, pos, 0, &npos, "pki init", usage_init, 1, 1);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    const char *type, *cn = o.cn != NULL ? o.cn : "moat CA";
    unsigned long cdays;
    time_t now = time(NULL), nb, na;
    if (key_type(&o, &type) != CLI_OK || crl_days(&o, &cdays) != CLI_OK ||
        validity(&o, DEFAULT_CA_DAYS, now, &nb, &na) != CLI_OK)
        return CLI_USAGE;
    if (!cli_valid_cn(cn) || (o.org != NULL && !cli_valid_cn(o.org))) {
        cli_error("pki init: --cn and --org take 1-64 printable characters without , = + \\ \" "
                  "< > ; #");
        return CLI_USAGE;
    }
    int encrypt = o.encrypt || o.pass_file != NULL || o.pass_env != NULL;

    pki p;
    char key_path[PATH_MAX], crt_path[PATH_MAX], der_path[PATH_MAX], index_path[PATH_MAX],
        old_index[PATH_MAX];
    char pass[CLI_PASS_MAX], subject[200], serial_hex[41], desc[40], na_iso[21];
    size_t pass_len = 0;
    unsigned char buf[X509_DER_MAX], *der;
    size_t der_len;
    mbedtls_mpi serial;
    mbedtls_mpi_init(&serial);
    rc = CLI_FAIL;
    if (open_pki(&p, &o, 1, 1) != CLI_OK)
        goto done;
    if (pki_path(&p, key_path, "ca.key") != CLI_OK || pki_path(&p, crt_path, "ca.crt") != CLI_OK ||
        pki_path(&p, der_path, "ca.der") != CLI_OK ||
        pki_path(&p, index_path, "index.txt") != CLI_OK ||
        pki_path(&p, old_index, "index.txt.old") != CLI_OK)
        goto done;
    if (!o.force && (cli_file_exists(key_path) || cli_file_exists(crt_path))) {
        cli_error("refusing to overwrite the existing CA %s (use --force to replace it)",
                  cli_file_exists(key_path) ? key_path : crt_path);
        goto done;
    }
    if (encrypt && cli_get_passphrase(&p.pass, "the new CA key", 1, pass, sizeof(pass),
                                      &pass_len) != CLI_OK)
        goto done;
    if (encrypt && pass_len < 8) {
        cli_error("the CA key passphrase must have at least 8 characters");
        goto done;
    }
    if (pki_rng(&p) != CLI_OK || keys_generate(&p.ca_key, type, &p.rng) != CLI_OK ||
        new_serial(&p, &serial, serial_hex) != CLI_OK)
        goto done;
    snprintf(subject, sizeof(subject), "CN=%s%s%s", cn, o.org != NULL ? ",O=" : "",
             o.org != NULL ? o.org : "");
    x509_req req = {
        .profile = X509_CA,
        .subject = subject,
        .issuer = subject,
        .subject_key = &p.ca_key,
        .issuer_key = &p.ca_key,
        .serial = &serial,
        .not_before = nb,
        .not_after = na,
    };
    if (x509_issue(&req, &p.rng, buf, sizeof(buf), &der, &der_len) != CLI_OK)
        goto done;
    int ret = mbedtls_x509_crt_parse_der(&p.ca, der, der_len);
    if (ret != 0) {
        cli_tls_error("parse the CA certificate just made for", crt_path, ret);
        goto done;
    }
    p.have_ca = p.have_key = 1;
    if (keys_write(&p.ca_key, key_path, NULL, encrypt ? pass : NULL, pass_len, o.force,
                   &p.rng) != CLI_OK ||
        write_cert(crt_path, der_path, der, der_len) != CLI_OK)
        goto done;
    /* A new CA starts a new index; the old one names certificates it did not issue. */
    if (cli_file_exists(index_path) && rename(index_path, old_index) != 0) {
        cli_error("cannot move %s to %s", index_path, old_index);
        goto done;
    }
    p.n = 0;
    if (pki_index_save(&p) != CLI_OK || pki_write_crl(&p, cdays, now) != CLI_OK)
        goto done;
    cli_time_iso(na, na_iso);
    printf("CA \"%s\" (%s%s): serial %s, valid until %s\n  %s\n  %s\n  %s (0600)\n", cn,
           keys_describe(&p.ca_key, desc, sizeof(desc)), encrypt ? ", key encrypted" : "",
           serial_hex, na_iso, crt_path, der_path, key_path);
    rc = CLI_OK;
done:
    mbedtls_platform_zeroize(pass, sizeof(pass));
    mbedtls_mpi_free(&serial);
    pki_close(&p);
    return rc;
}

/* A leaf whose key is made here, at rel in the PKI: an existing key is
 * replaced only with --force, which is checked before the CA passphrase and
 * the key generation (they may be slow); then the certificate. */
static int issue_with_new_key(pki *p, const char *rel, int force, const char *type, leaf *l)
{
    char key_path[PATH_MAX];
    mbedtls_pk_context key;
    int rc = CLI_FAIL;

    if (pki_path(p, key_path, rel) != CLI_OK)
        return CLI_FAIL;
    if (!force && cli_file_exists(key_path)) {
        cli_error("refusing to overwrite the existing key %s (use --force to replace it)",
                  key_path);
        return CLI_FAIL;
    }
    mbedtls_pk_init(&key);
    if (pki_load_ca(p, 1) == CLI_OK && pki_rng(p) == CLI_OK &&
        keys_generate(&key, type, &p->rng) == CLI_OK) {
        l->key = &key;
        l->write_key = 1;
        rc = issue_leaf(p, l, force);
    }
    mbedtls_pk_free(&key);
    return rc;
}

/* ---- server ---- */

static const char usage_server[] =
    "usage: moat pki server <host> [options]\n"
    "Broker certificate servers/<host>.crt and key servers/<host>.key (0600):\n"
    "CN=<host>, subjectAltName <host> plus --dns/--ip, extKeyUsage serverAuth.\n"
    "  --dns NAME           another DNS name for the broker (repeatable)\n"
    "  --ip ADDR            an IPv4 or IPv6 address of the broker (repeatable)\n"
    "  --key-type T         p256 (default), p384, rsa2048, rsa3072\n"
    "  --force              replace an existing key\n";

static int cmd_server(int argc, char **argv)
{
    pki_opts o;
    memset(&o, 0, sizeof(o));
    const cli_opt opts[] = {OPT_DIR,     OPT_DAYS,     OPT_NB,      OPT_NA,
                            OPT_KEYTYPE, OPT_FORCE,    OPT_PASSFILE, OPT_PASSENV,
                            {"ip", CLI_OPT_LIST, &o.ips},
                            {"dns", CLI_OPT_LIST, &o.dns},
                            OPT_END};
    const char *pos[1];
    int npos;
    int rc = parse_or_help(argc, argv, opts, pos, 1, &npos, "pki server", usage_server, 1, 1);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (npos != 1) {
        cli_error("pki server: give the broker's host name (see --help)");
        return CLI_USAGE;
    }
    const char *host = pos[0], *type;
    const char *dns[CLI_LIST_MAX + 1];
    x509_ip ips[CLI_LIST_MAX + 1];
    size_t n_dns = 0, n_ips = 0;
    time_t now = time(NULL), nb, na;
    if (key_type(&o, &type) != CLI_OK || validity(&o, DEFAULT_SERVER_DAYS, now, &nb, &na) != CLI_OK)
        return CLI_USAGE;

    /* The host is a DNS SAN, or an IP SAN when it is an address. */
    const char *all[CLI_LIST_MAX * 2 + 1];
    int is_ip[CLI_LIST_MAX * 2 + 1], n_all = 0;
    all[n_all] = host;
    is_ip[n_all++] = -1;
    for (int i = 0; i < o.dns.n; i++) {
        all[n_all] = o.dns.v[i];
        is_ip[n_all++] = 0;
    }
    for (int i = 0; i < o.ips.n; i++) {
        all[n_all] = o.ips.v[i];
        is_ip[n_all++] = 1;
    }
    for (int i = 0; i < n_all; i++) {
        x509_ip ip;
        int v4 = inet_pton(AF_INET, all[i], ip.addr) == 1;
        int v6 = !v4 && inet_pton(AF_INET6, all[i], ip.addr) == 1;
        if (is_ip[i] != 0 && (v4 || v6)) {
            ip.len = v4 ? 4 : 16;
            ips[n_ips++] = ip;
        } else if (is_ip[i] == 1) {
            cli_error("pki server: --ip '%s' is not an IPv4 or IPv6 address", all[i]);
            return CLI_USAGE;
        } else if (cli_valid_dns(all[i])) {
            dns[n_dns++] = all[i];
        } else {
            cli_error("pki server: '%s' is not a host name (letters, digits, '-' and '.'; "
                      "no wildcards) or an IP address",
                      all[i]);
            return CLI_USAGE;
        }
    }

    pki p;
    char rel[300];
    rc = CLI_FAIL;
    if (open_pki(&p, &o, 0, 1) == CLI_OK) {
        leaf l = {.kind = "server",
                  .name = host,
                  .profile = X509_SERVER,
                  .dns = dns,
                  .n_dns = n_dns,
                  .ips = ips,
                  .n_ips = n_ips,
                  .nb = nb,
                  .na = na};
        snprintf(rel, sizeof(rel), "servers/%s.key", host);
        rc = issue_with_new_key(&p, rel, o.force, type, &l);
    }
    pki_close(&p);
    return rc;
}

/* ---- device, operator ---- */

static const char usage_device[] =
    "usage: moat pki device <id> [options]\n"
    "       moat pki device --operator <name> [options]\n"
    "Device key and certificate: CN=<id>, extKeyUsage clientAuth, written as\n"
    "devices/<id>.crt (PEM), .der (DER), .key (PEM, 0600) and .key.der (DER, 0600).\n"
    "The id is the MQTT user name at the broker: [A-Za-z0-9_-]{1,64}, by default\n"
    "the MAC address as 12 lowercase hex digits.\n"
    "  --operator           make an operator instead (same as `moat pki operator`)\n"
    "  --key-type T         p256 (default), p384, rsa2048, rsa3072\n"
    "  --force              replace an existing key\n";

static const char usage_operator[] =
    "usage: moat pki operator <name> [options]\n"
    "Operator key and certificate operators/<name>.crt and .key (0600): CN=<name>,\n"
    "clientAuth. `moat broker-config` gives every operator readwrite on moat/#.\n"
    "  --key-type T         p256 (default), p384, rsa2048, rsa3072\n"
    "  --force              replace an existing key\n";

static int check_id(const char *id, const char *cmd)
{
    if (cli_valid_id(id))
        return CLI_OK;
    cli_error("%s: '%s' is not a valid id: use 1-64 of A-Z a-z 0-9 _ - "
              "(never '/', '+' or '#': the id is part of MQTT topics)",
              cmd, id);
    return CLI_USAGE;
}

static int cmd_client(int argc, char **argv, int operator_cmd)
{
    pki_opts o;
    memset(&o, 0, sizeof(o));
    const cli_opt opts[] = {OPT_DIR,     OPT_DAYS,  OPT_NB,       OPT_NA,
                            OPT_KEYTYPE, OPT_FORCE, OPT_PASSFILE, OPT_PASSENV,
                            {"operator", CLI_OPT_FLAG, &o.operator_flag},
                            OPT_END};
    const char *cmd = operator_cmd ? "pki operator" : "pki device";
    const char *pos[1];
    int npos;
    int rc = parse_or_help(argc, argv, opts, pos, 1, &npos, cmd,
                           operator_cmd ? usage_operator : usage_device, 1, 1);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    int is_op = operator_cmd || o.operator_flag;
    if (npos != 1) {
        cli_error("%s: give the %s (see --help)", cmd, is_op ? "operator name" : "device id");
        return CLI_USAGE;
    }
    const char *id = pos[0], *type;
    time_t now = time(NULL), nb, na;
    if (check_id(id, cmd) != CLI_OK || key_type(&o, &type) != CLI_OK ||
        validity(&o, is_op ? DEFAULT_OPERATOR_DAYS : DEFAULT_DEVICE_DAYS, now, &nb, &na) != CLI_OK)
        return CLI_USAGE;
    const char *kind = is_op ? "operator" : "device";

    pki p;
    char rel[300];
    rc = CLI_FAIL;
    if (open_pki(&p, &o, 0, 1) == CLI_OK && check_identity_free(&p, kind, id, now) == CLI_OK) {
        leaf l = {.kind = kind,
                  .name = id,
                  .profile = X509_CLIENT,
                  .der_files = !is_op,
                  .nb = nb,
                  .na = na};
        snprintf(rel, sizeof(rel), "%s/%s.key", kind_dir(kind), id);
        rc = issue_with_new_key(&p, rel, o.force, type, &l);
    }
    pki_close(&p);
    return rc;
}

/* ---- sign ---- */

static const char usage_sign[] =
    "usage: moat pki sign <csr> [options]\n"
    "Signs a certificate request (PEM or DER) made on the device, so its key never\n"
    "leaves it. The request's signature is checked; only its public key and CN are\n"
    "used: the certificate gets CN=<id> and clientAuth like `moat pki device`, and\n"
    "is written as devices/<id>.crt and .der (operators/<id>.crt with --operator).\n"
    "  --id ID              the device id (default: the CN of the request; if both\n"
    "                       are given they must agree)\n"
    "  --operator           sign an operator's request\n";

static int cmd_sign(int argc, char **argv)
{
    pki_opts o;
    memset(&o, 0, sizeof(o));
    const cli_opt opts[] = {OPT_DIR,      OPT_DAYS,   OPT_NB, OPT_NA,
                            OPT_PASSFILE, OPT_PASSENV,
                            {"id", CLI_OPT_VALUE, &o.id},
                            {"operator", CLI_OPT_FLAG, &o.operator_flag},
                            OPT_END};
    const char *pos[1];
    int npos;
    int rc = parse_or_help(argc, argv, opts, pos, 1, &npos, "pki sign", usage_sign, 1, 1);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (npos != 1) {
        cli_error("pki sign: give the CSR file (see --help)");
        return CLI_USAGE;
    }
    const char *kind = o.operator_flag ? "operator" : "device";
    time_t now = time(NULL), nb, na;
    if (validity(&o, o.operator_flag ? DEFAULT_OPERATOR_DAYS : DEFAULT_DEVICE_DAYS, now, &nb,
                 &na) != CLI_OK)
        return CLI_USAGE;
    if (o.id != NULL && check_id(o.id, "pki sign") != CLI_OK)
        return CLI_USAGE;

    mbedtls_x509_csr csr;
    mbedtls_x509_csr_init(&csr);
    pki p;
    memset(&p, 0, sizeof(p));
    p.lock_fd = -1;
    char cn[PKI_NAME_MAX], id[PKI_NAME_MAX], key_path[PATH_MAX], rel[300];
    int have_cn;
    rc = CLI_FAIL;
    if (x509_csr_load(&csr, pos[0]) != CLI_OK) {
        mbedtls_x509_csr_free(&csr);
        return CLI_FAIL;
    }
    have_cn = x509_name_cn(&csr.subject, cn, sizeof(cn)) == CLI_OK;
    if (o.id != NULL && have_cn && strcmp(o.id, cn) != 0) {
        cli_error("pki sign: the request %s asks for CN=%s but --id is %s", pos[0], cn, o.id);
        rc = CLI_USAGE;
        goto out;
    }
    if (o.id == NULL && !have_cn) {
        cli_error("pki sign: the request %s has no CN; give the id with --id", pos[0]);
        rc = CLI_USAGE;
        goto out;
    }
    snprintf(id, sizeof(id), "%s", o.id != NULL ? o.id : cn);
    if (check_id(id, "pki sign") != CLI_OK) {
        rc = CLI_USAGE;
        goto out;
    }
    if (open_pki(&p, &o, 0, 1) != CLI_OK || check_identity_free(&p, kind, id, now) != CLI_OK ||
        pki_load_ca(&p, 1) != CLI_OK || pki_rng(&p) != CLI_OK)
        goto done;
    leaf l = {.kind = kind,
              .name = id,
              .profile = X509_CLIENT,
              .key = &csr.pk,
              .write_key = 0,
              .der_files = !o.operator_flag,
              .nb = nb,
              .na = na};
    rc = issue_leaf(&p, &l, 0);
    snprintf(rel, sizeof(rel), "%s/%s.key", kind_dir(kind), id);
    if (rc == CLI_OK && pki_path(&p, key_path, rel) == CLI_OK && cli_file_exists(key_path))
        fprintf(stderr, "moat: note: %s is from an earlier key and does not match the new "
                        "certificate\n",
                key_path);
done:
    pki_close(&p);
out:
    mbedtls_x509_csr_free(&csr);
    return rc;
}

/* ---- list ---- */

static const char usage_list[] =
    "usage: moat pki list [--kind server|device|operator]\n"
    "Prints the CA and every certificate issued: kind, name, serial, notAfter and\n"
    "status (valid, expired, revoked, not-yet-valid), then the CRL's nextUpdate.\n";

static void print_crl_line(pki *p, time_t now)
{
    char path[PATH_MAX], iso[21];
    if (pki_path(p, path, "crl.pem") != CLI_OK || !cli_file_exists(path))
        return;
    mbedtls_x509_crl crl;
    mbedtls_x509_crl_init(&crl);
    unsigned char *text;
    size_t len;
    if (cli_read_file(path, &text, &len) == CLI_OK) {
        int ret = mbedtls_x509_crl_parse(&crl, text, len + 1);
        cli_free_file(text, len);
        if (ret != 0) {
            cli_tls_error("read the CRL", path, ret);
        } else {
            time_t next = x509_time_t(&crl.next_update);
            cli_time_iso(next, iso);
            printf("# %s: next update %s%s\n", path, iso,
                   next < now                    ? " - EXPIRED: the broker refuses every client; "
                                                   "run `moat pki crl`"
                   : next < now + 14 * 86400     ? " - soon: run `moat pki crl`"
                                                 : "");
        }
    }
    mbedtls_x509_crl_free(&crl);
}

static int cmd_list(int argc, char **argv)
{
    pki_opts o;
    memset(&o, 0, sizeof(o));
    const cli_opt opts[] = {OPT_DIR, {"kind", CLI_OPT_VALUE, &o.kind}, OPT_END};
    const char *pos[1];
    int npos;
    int rc = parse_or_help(argc, argv, opts, pos, 0, &npos, "pki list", usage_list, 0, 0);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    if (o.kind != NULL && strcmp(o.kind, "server") != 0 && strcmp(o.kind, "device") != 0 &&
        strcmp(o.kind, "operator") != 0 && strcmp(o.kind, "ca") != 0) {
        cli_error("pki list: --kind is one of ca, server, device, operator");
        return CLI_USAGE;
    }
    pki p;
    time_t now = time(NULL);
    char iso[21], serial[41];
    rc = CLI_FAIL;
    if (open_pki(&p, &o, 0, 0) != CLI_OK || pki_load_ca(&p, 0) != CLI_OK)
        goto done;
    printf("%-8s %-24s %-32s %-20s %s\n", "KIND", "NAME", "SERIAL", "NOT-AFTER", "STATUS");
    if (o.kind == NULL || strcmp(o.kind, "ca") == 0) {
        char cn[PKI_NAME_MAX];
        pki_entry ca;
        memset(&ca, 0, sizeof(ca));
        ca.status = 'V';
        ca.not_before = x509_time_t(&p.ca.valid_from);
        ca.not_after = x509_time_t(&p.ca.valid_to);
        if (x509_name_cn(&p.ca.subject, cn, sizeof(cn)) != CLI_OK)
            strcpy(cn, "-");
        x509_serial_hex(&p.ca.serial, serial);
        cli_time_iso(ca.not_after, iso);
        /* Names with spaces are quoted so each line splits into five fields. */
        char name[PKI_NAME_MAX + 2];
        snprintf(name, sizeof(name), strchr(cn, ' ') != NULL ? "\"%s\"" : "%s", cn);
        printf("%-8s %-24s %-32s %-20s %s\n", "ca", name, serial, iso,
               pki_entry_status(&ca, now));
    }
    for (size_t i = 0; i < p.n; i++) {
        const pki_entry *e = &p.entries[i];
        if (o.kind != NULL && strcmp(o.kind, e->kind) != 0)
            continue;
        cli_time_iso(e->not_after, iso);
        printf("%-8s %-24s %-32s %-20s %s\n", e->kind, e->name, e->serial, iso,
               pki_entry_status(e, now));
    }
    print_crl_line(&p, now);
    rc = CLI_OK;
done:
    pki_close(&p);
    return rc;
}

/* ---- revoke, crl ---- */

static const char usage_revoke[] =
    "usage: moat pki revoke <id> [options]\n"
    "Marks every unrevoked certificate of <id> revoked in the index and rewrites\n"
    "crl.pem. Then reload the broker (SIGHUP, e.g. systemctl reload mosquitto) so\n"
    "it reads the new CRL, after rerunning `moat broker-config` if an operator was\n"
    "revoked.\n"
    "  --serial HEX         revoke only the certificate with this serial\n"
    "  --kind K             only certificates of kind device, operator or server\n"
    "  --crl-days N         nextUpdate of the new CRL (default 90)\n";

static int cmd_revoke(int argc, char **argv)
{
    pki_opts o;
    memset(&o, 0, sizeof(o));
    const cli_opt opts[] = {OPT_DIR,      OPT_CRLDAYS, OPT_PASSFILE,
                            OPT_PASSENV,  {"serial", CLI_OPT_VALUE, &o.serial},
                            {"kind", CLI_OPT_VALUE, &o.kind},
                            OPT_END};
    const char *pos[1];
    int npos;
    int rc = parse_or_help(argc, argv, opts, pos, 1, &npos, "pki revoke", usage_revoke, 0, 1);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    unsigned long cdays;
    if (npos != 1) {
        cli_error("pki revoke: give the id to revoke (see --help)");
        return CLI_USAGE;
    }
    if (crl_days(&o, &cdays) != CLI_OK)
        return CLI_USAGE;
    char serial[41] = "";
    if (o.serial != NULL) {
        size_t n = strlen(o.serial);
        if (n == 0 || n > 40 || strspn(o.serial, "0123456789abcdefABCDEF:") != n) {
            cli_error("pki revoke: --serial takes the hex serial that `moat pki list` shows");
            return CLI_USAGE;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (o.serial[i] != ':')
                serial[k++] = (char)(o.serial[i] >= 'a' ? o.serial[i] - 32 : o.serial[i]);
        serial[k] = '\0';
    }
    pki p;
    time_t now = time(NULL);
    int count = 0;
    rc = CLI_FAIL;
    if (open_pki(&p, &o, 0, 1) != CLI_OK)
        goto done;
    for (size_t i = 0; i < p.n; i++) {
        pki_entry *e = &p.entries[i];
        if (strcmp(e->name, pos[0]) != 0 || e->status != 'V' ||
            (o.kind != NULL && strcmp(o.kind, e->kind) != 0) ||
            (serial[0] != '\0' && strcmp(serial, e->serial) != 0))
            continue;
        e->status = 'R';
        e->revoked_at = now;
        count++;
        printf("revoked %s %s serial %s\n", e->kind, e->name, e->serial);
    }
    if (count == 0) {
        cli_error("pki revoke: %s has no unrevoked certificate%s%s in %s/index.txt", pos[0],
                  serial[0] != '\0' ? " with serial " : "", serial, p.dir);
        goto done;
    }
    /* The CRL first: if the CA key cannot be read, the index stays as it was. */
    if (pki_write_crl(&p, cdays, now) != CLI_OK || pki_index_save(&p) != CLI_OK)
        goto done;
    printf("wrote %s/crl.pem; reload the broker (SIGHUP) so it reads the new CRL\n", p.dir);
    rc = CLI_OK;
done:
    pki_close(&p);
    return rc;
}

static const char usage_crl[] =
    "usage: moat pki crl [--crl-days N]\n"
    "Rewrites crl.pem, signed by the CA, with nextUpdate N days from now (default\n"
    "90), then reload the broker (SIGHUP). A broker whose CRL has passed its\n"
    "nextUpdate refuses every client: run this from cron well before then.\n";

static int cmd_crl(int argc, char **argv)
{
    pki_opts o;
    memset(&o, 0, sizeof(o));
    const cli_opt opts[] = {OPT_DIR, OPT_CRLDAYS, OPT_PASSFILE, OPT_PASSENV, OPT_END};
    const char *pos[1];
    int npos;
    int rc = parse_or_help(argc, argv, opts, pos, 0, &npos, "pki crl", usage_crl, 0, 1);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? CLI_OK : rc;
    unsigned long cdays;
    if (crl_days(&o, &cdays) != CLI_OK)
        return CLI_USAGE;
    pki p;
    time_t now = time(NULL);
    char iso[21];
    rc = CLI_FAIL;
    if (open_pki(&p, &o, 0, 1) == CLI_OK && pki_write_crl(&p, cdays, now) == CLI_OK) {
        cli_time_iso(now + (time_t)cdays * 86400, iso);
        printf("wrote %s/crl.pem, next update %s\n", p.dir, iso);
        rc = CLI_OK;
    }
    pki_close(&p);
    return rc;
}

int cli_pki_main(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0 ||
        strcmp(argv[0], "help") == 0) {
        print_usage(usage_pki, NULL);
        return argc < 1 ? CLI_USAGE : CLI_OK;
    }
    const char *c = argv[0];
    if (strcmp(c, "init") == 0)
        return cmd_init(argc - 1, argv + 1);
    if (strcmp(c, "server") == 0)
        return cmd_server(argc - 1, argv + 1);
    if (strcmp(c, "device") == 0)
        return cmd_client(argc - 1, argv + 1, 0);
    if (strcmp(c, "operator") == 0)
        return cmd_client(argc - 1, argv + 1, 1);
    if (strcmp(c, "sign") == 0)
        return cmd_sign(argc - 1, argv + 1);
    if (strcmp(c, "list") == 0)
        return cmd_list(argc - 1, argv + 1);
    if (strcmp(c, "revoke") == 0)
        return cmd_revoke(argc - 1, argv + 1);
    if (strcmp(c, "crl") == 0)
        return cmd_crl(argc - 1, argv + 1);
    cli_error("pki: unknown command '%s' (see moat pki --help)", c);
    return CLI_USAGE;
}
