/*
 * pki_store.c - the PKI directory on disk: lock, index.txt, CA, crlnumber
 * and crl.pem. Commands that use it are in pki.c and broker_config.c.
 *
 * index.txt holds one certificate a line, tab-separated:
 *   status notBefore notAfter revokedAt serial kind name
 * status is V (issued) or R (revoked); times are YYYYMMDDhhmmssZ in UTC,
 * revokedAt is "-" while not revoked. Lines starting with '#' are comments.
 */
#include "pki.h"

#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/pem.h>
#include <mbedtls/x509_crl.h>

#define INDEX_HEADER                                                                       \
    "# moat PKI index: one certificate a line, tab-separated.\n"                           \
    "# status (V issued, R revoked), notBefore, notAfter, revokedAt, serial, kind, name\n"

const char *pki_dir_choice(const char *opt)
{
    if (opt != NULL && opt[0] != '\0')
        return opt;
    const char *env = getenv("MOAT_PKI_DIR");
    if (env != NULL && env[0] != '\0')
        return env;
    return "pki";
}

int pki_path(const pki *p, char *out, const char *rel)
{
    return cli_path(out, PATH_MAX, p->dir, rel);
}

static int parse_time_z(const char *s, time_t *t)
{
    char buf[15];
    if (strcmp(s, "-") == 0) {
        *t = 0;
        return CLI_OK;
    }
    if (strlen(s) != 15 || s[14] != 'Z')
        return CLI_FAIL;
    memcpy(buf, s, 14);
    buf[14] = '\0';
    return cli_parse_time14(buf, t) == CLI_OK ? CLI_OK : CLI_FAIL;
}

static int parse_line(char *line, pki_entry *e)
{
    char *f[7];
    int n = 0;
    for (char *s = line; n < 7; n++) {
        f[n] = s;
        char *tab = strchr(s, '\t');
        if (tab == NULL) {
            n++;
            break;
        }
        *tab = '\0';
        s = tab + 1;
    }
    if (n != 7 || strlen(f[0]) != 1 || (f[0][0] != 'V' && f[0][0] != 'R'))
        return CLI_FAIL;
    memset(e, 0, sizeof(*e));
    e->status = f[0][0];
    if (parse_time_z(f[1], &e->not_before) != CLI_OK ||
        parse_time_z(f[2], &e->not_after) != CLI_OK ||
        parse_time_z(f[3], &e->revoked_at) != CLI_OK)
        return CLI_FAIL;
    if (strlen(f[4]) == 0 || strlen(f[4]) >= sizeof(e->serial) ||
        strspn(f[4], "0123456789ABCDEF") != strlen(f[4]) || strlen(f[5]) >= sizeof(e->kind) ||
        strlen(f[6]) == 0 || strlen(f[6]) >= sizeof(e->name))
        return CLI_FAIL;
    strcpy(e->serial, f[4]);
    strcpy(e->kind, f[5]);
    strcpy(e->name, f[6]);
    if (strcmp(e->kind, "server") != 0 && strcmp(e->kind, "device") != 0 &&
        strcmp(e->kind, "operator") != 0)
        return CLI_FAIL;
    return CLI_OK;
}

static int index_load(pki *p)
{
    char path[PATH_MAX];
    if (pki_path(p, path, "index.txt") != CLI_OK)
        return CLI_FAIL;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT)
            return CLI_OK; /* not made yet: pki init writes it */
        cli_error("cannot read %s: %s", path, strerror(errno));
        return CLI_FAIL;
    }
    char line[1024];
    unsigned lineno = 0;
    int rc = CLI_OK;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        pki_entry e;
        if (parse_line(line, &e) != CLI_OK) {
            cli_error("%s line %u is malformed", path, lineno);
            rc = CLI_FAIL;
            break;
        }
        if (pki_index_add(p, &e) != CLI_OK) {
            rc = CLI_FAIL;
            break;
        }
    }
    if (rc == CLI_OK && ferror(f)) {
        cli_error("cannot read %s: %s", path, strerror(errno));
        rc = CLI_FAIL;
    }
    fclose(f);
    return rc;
}

int pki_index_add(pki *p, const pki_entry *e)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 32;
        pki_entry *ne = realloc(p->entries, cap * sizeof(*ne));
        if (ne == NULL) {
            cli_error("out of memory reading the index");
            return CLI_FAIL;
        }
        p->entries = ne;
        p->cap = cap;
    }
    p->entries[p->n++] = *e;
    return CLI_OK;
}

int pki_index_save(pki *p)
{
    char path[PATH_MAX];
    /* A line holds at most 1 + 3 * 16 + 40 + 9 + 253 characters and 7 separators. */
    enum { LINE_MAX_LEN = 512 };
    size_t cap = strlen(INDEX_HEADER) + p->n * LINE_MAX_LEN + 1;
    char *buf = malloc(cap);
    if (buf == NULL || pki_path(p, path, "index.txt") != CLI_OK) {
        free(buf);
        cli_error("cannot write the index: out of memory");
        return CLI_FAIL;
    }
    size_t len = (size_t)snprintf(buf, cap, "%s", INDEX_HEADER);
    for (size_t i = 0; i < p->n; i++) {
        const pki_entry *e = &p->entries[i];
        char nb[15], na[15], rv[16];
        cli_time14(e->not_before, nb);
        cli_time14(e->not_after, na);
        if (e->status == 'R') {
            cli_time14(e->revoked_at, rv);
            strcat(rv, "Z");
        } else {
            strcpy(rv, "-");
        }
        int n = snprintf(buf + len, cap - len, "%c\t%sZ\t%sZ\t%s\t%s\t%s\t%s\n", e->status, nb,
                         na, rv, e->serial, e->kind, e->name);
        if (n < 0 || (size_t)n >= cap - len) {
            free(buf);
            cli_error("cannot write %s: entry %s too long", path, e->name);
            return CLI_FAIL;
        }
        len += (size_t)n;
    }
    int rc = cli_write_file(path, buf, len, 0644, 1);
    free(buf);
    return rc;
}

int pki_serial_used(const pki *p, const char *hex)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->entries[i].serial, hex) == 0)
            return 1;
    return 0;
}

const char *pki_entry_status(const pki_entry *e, time_t now)
{
    if (e->status == 'R')
        return "revoked";
    if (now > e->not_after)
        return "expired";
    if (now < e->not_before)
        return "not-yet-valid";
    return "valid";
}

static int take_lock(pki *p, int write)
{
    char path[PATH_MAX];
    if (pki_path(p, path, ".lock") != CLI_OK)
        return CLI_FAIL;
    p->lock_fd = open(path, write ? O_RDWR | O_CREAT : O_RDONLY, 0644);
    if (p->lock_fd < 0) {
        if (!write && errno == ENOENT)
            return CLI_OK; /* nothing has written here yet */
        cli_error("cannot open the lock %s: %s", path, strerror(errno));
        return CLI_FAIL;
    }
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = write ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    while (fcntl(p->lock_fd, F_SETLKW, &fl) != 0) {
        if (errno != EINTR) {
            cli_error("cannot lock %s: %s", path, strerror(errno));
            return CLI_FAIL;
        }
    }
    return CLI_OK;
}

int pki_open(pki *p, const char *dir, int create, int write)
{
    memset(p, 0, sizeof(*p));
    p->lock_fd = -1;
    mbedtls_x509_crt_init(&p->ca);
    mbedtls_pk_init(&p->ca_key);
    if (strlen(dir) >= sizeof(p->dir)) {
        cli_error("PKI directory path too long: %s", dir);
        return CLI_FAIL;
    }
    strcpy(p->dir, dir);
    if (create) {
        if (cli_mkdir_p(dir, 0755) != CLI_OK)
            return CLI_FAIL;
    } else {
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            cli_error("no PKI directory %s (make one with: moat pki init --dir %s)", dir, dir);
            return CLI_FAIL;
        }
    }
    if (take_lock(p, write) != CLI_OK)
        return CLI_FAIL;
    return index_load(p);
}

void pki_close(pki *p)
{
    if (p->lock_fd >= 0)
        close(p->lock_fd); /* releases the lock */
    p->lock_fd = -1;
    free(p->entries);
    p->entries = NULL;
    mbedtls_x509_crt_free(&p->ca);
    mbedtls_pk_free(&p->ca_key);
    if (p->rng_ready)
        cli_rng_free(&p->rng);
    p->rng_ready = 0;
}

int pki_rng(pki *p)
{
    if (p->rng_ready)
        return CLI_OK;
    if (cli_rng_init(&p->rng) != CLI_OK) {
        cli_rng_free(&p->rng);
        return CLI_FAIL;
    }
    p->rng_ready = 1;
    return CLI_OK;
}

int pki_load_ca(pki *p, int need_key)
{
    char crt_path[PATH_MAX], key_path[PATH_MAX];
    if (pki_path(p, crt_path, "ca.crt") != CLI_OK || pki_path(p, key_path, "ca.key") != CLI_OK)
        return CLI_FAIL;
    if (!p->have_ca) {
        unsigned char *text;
        size_t len;
        if (!cli_file_exists(crt_path)) {
            cli_error("no CA certificate %s (make one with: moat pki init --dir %s)", crt_path,
                      p->dir);
            return CLI_FAIL;
        }
        if (cli_read_file(crt_path, &text, &len) != CLI_OK)
            return CLI_FAIL;
        int ret = mbedtls_x509_crt_parse(&p->ca, text, len + 1);
        cli_free_file(text, len);
        if (ret != 0) {
            cli_tls_error("read the CA certificate", crt_path, ret);
            return CLI_FAIL;
        }
        p->have_ca = 1;
    }
    if (need_key && !p->have_key) {
        if (keys_load(&p->ca_key, key_path, "CA key", &p->pass) != CLI_OK)
            return CLI_FAIL;
        if (mbedtls_pk_check_pair(&p->ca.pk, &p->ca_key) != 0) {
            cli_error("CA key %s does not belong to the CA certificate %s", key_path, crt_path);
            return CLI_FAIL;
        }
        p->have_key = 1;
    }
    return CLI_OK;
}

static int read_crlnumber(pki *p, const char *path, unsigned long *n)
{
    FILE *f = fopen(path, "r");
    *n = 0;
    if (f == NULL)
        return errno == ENOENT ? CLI_OK : (cli_error("cannot read %s: %s", path, strerror(errno)),
                                           CLI_FAIL);
    char line[32];
    int ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    char *end;
    if (ok) {
        errno = 0;
        *n = strtoul(line, &end, 10);
        ok = errno == 0 && end != line && (*end == '\n' || *end == '\0') && *n < 0x7fffffffUL;
    }
    if (!ok) {
        cli_error("%s is malformed (it should hold one number)", path);
        return CLI_FAIL;
    }
    (void)p;
    return CLI_OK;
}

int pki_write_crl(pki *p, unsigned long days, time_t now)
{
    char num_path[PATH_MAX], crl_path[PATH_MAX];
    unsigned long number;
    int rc = CLI_FAIL;
    x509_revoked *r = NULL;
    size_t nr = 0;
    unsigned char *buf = NULL, *der, *pem = NULL;
    size_t der_len, pem_len, size;

    if (pki_path(p, num_path, "crlnumber") != CLI_OK || pki_path(p, crl_path, "crl.pem") != CLI_OK ||
        pki_load_ca(p, 1) != CLI_OK || pki_rng(p) != CLI_OK ||
        read_crlnumber(p, num_path, &number) != CLI_OK)
        return CLI_FAIL;
    number++;
    r = calloc(p->n + 1, sizeof(*r));
    size = 4096 + (p->n + 1) * 64 * 2;
    buf = malloc(size);
    if (r == NULL || buf == NULL) {
        cli_error("cannot make the CRL: out of memory");
        goto done;
    }
    for (size_t i = 0; i < p->n; i++) {
        if (p->entries[i].status != 'R')
            continue;
        strcpy(r[nr].serial, p->entries[i].serial);
        r[nr].when = p->entries[i].revoked_at;
        nr++;
    }
    if (x509_crl_write(&p->ca, &p->ca_key, r, nr, now, now + (time_t)days * 86400, number,
                       &p->rng, buf, size, &der, &der_len) != CLI_OK)
        goto done;

    /* Read it back: a CRL the broker cannot load would lock every device out. */
    mbedtls_x509_crl check;
    mbedtls_x509_crl_init(&check);
    int ret = mbedtls_x509_crl_parse_der(&check, der, der_len);
    mbedtls_x509_crl_free(&check);
    if (ret != 0) {
        cli_tls_error("parse the CRL just made for", crl_path, ret);
        goto done;
    }
    pem_len = der_len * 2 + 128;
    pem = malloc(pem_len);
    size_t olen = 0;
    if (pem == NULL ||
        (ret = mbedtls_pem_write_buffer("-----BEGIN X509 CRL-----\n", "-----END X509 CRL-----\n",
                                        der, der_len, pem, pem_len, &olen)) != 0) {
        cli_error("cannot encode the CRL for %s", crl_path);
        goto done;
    }
    if (cli_write_file(crl_path, pem, olen - 1, 0644, 1) != CLI_OK)
        goto done;
    char num[32];
    int nlen = snprintf(num, sizeof(num), "%lu\n", number);
    if (cli_write_file(num_path, num, (size_t)nlen, 0644, 1) != CLI_OK)
        goto done;
    rc = CLI_OK;
done:
    free(r);
    free(buf);
    free(pem);
    return rc;
}
