/*
 * credstore.c - the device's credentials on Linux: an active set (the files
 * the config names) and a pending set in a store directory, tried before it
 * is committed (moat/credstore.h).
 *
 * Durability: every file is written to a temporary name, fsynced, renamed
 * into place and its directory fsynced. A commit goes through a journal so
 * a power cut leaves the whole old set or the whole new one. Key material
 * read into memory is wiped before it is freed.
 */
#include "moat/credstore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>

#define NEW_SUFFIX ".moat-new"

static const char *const kind_names[MOAT_CRED_KINDS] = {"ca", "cert", "key"};
static const char *const pending_names[MOAT_CRED_KINDS] = {"ca.pem", "cert.pem", "key.pem"};
static const char *const kind_words[MOAT_CRED_KINDS] = {"CA certificate", "certificate",
                                                        "private key"};

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static moat_err say(moat_credstore *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
    return MOAT_ERR_FILE;
}

/* -------------------------------------------------------------- files -- */

static int join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s%s", a, b);
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}

static void fsync_dir_of(const char *path)
{
    char dir[MOAT_CRED_PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n;
    int fd;

    if (slash == NULL) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        n = (size_t)(slash - path);
        if (n >= sizeof dir)
            return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Write data to path exactly as given and fsync it (no rename). */
static moat_err write_synced(moat_credstore *s, const char *path, const void *data, size_t len,
                             mode_t mode)
{
    const unsigned char *p = data;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);

    if (fd < 0)
        return say(s, "cannot write %s: %s", path, strerror(errno));
    /* open() honours the umask; the mode asked for is the mode wanted. */
    if (fchmod(fd, mode) != 0)
        goto fail;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail;
        p += w;
        len -= (size_t)w;
    }
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    return MOAT_OK;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(path);
    return say(s, "cannot write %s: %s", path, strerror(e));
}

/* Temporary file, fsync, rename, fsync the directory. */
static moat_err write_atomic(moat_credstore *s, const char *path, const void *data, size_t len,
                             mode_t mode)
{
    char tmp[MOAT_CRED_PATH_MAX + 8];
    moat_err err;

    if (join(tmp, sizeof tmp, path, ".tmp") != 0)
        return say(s, "path too long: %s", path);
    err = write_synced(s, tmp, data, len, mode);
    if (err != MOAT_OK)
        return err;
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return say(s, "cannot write %s: %s", path, strerror(e));
    }
    fsync_dir_of(path);
    return MOAT_OK;
}

static moat_err remove_file(moat_credstore *s, const char *path)
{
    if (unlink(path) != 0 && errno != ENOENT)
        return say(s, "cannot remove %s: %s", path, strerror(errno));
    return MOAT_OK;
}

/* The whole file plus a NUL (for PEM parsers); *len excludes the NUL.
 * Free with wipe_free(). */
static moat_err read_file(moat_credstore *s, const char *path, const char *what,
                          unsigned char **buf, size_t *len)
{
    unsigned char *b = NULL;
    size_t n = 0;
    ssize_t r;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return say(s, "cannot read %s %s: %s", what, path, strerror(errno));
    b = malloc(MOAT_CRED_FILE_MAX + 1);
    if (b == NULL) {
        close(fd);
        return say(s, "cannot read %s %s: out of memory", what, path);
    }
    while ((r = read(fd, b + n, MOAT_CRED_FILE_MAX + 1 - n)) > 0 || (r < 0 && errno == EINTR))
        if (r > 0)
            n += (size_t)r;
    close(fd);
    if (r < 0 || n > MOAT_CRED_FILE_MAX) {
        int e = errno;
        mbedtls_platform_zeroize(b, MOAT_CRED_FILE_MAX + 1);
        free(b);
        return r < 0 ? say(s, "cannot read %s %s: %s", what, path, strerror(e))
                     : say(s, "%s %s is larger than %u bytes", what, path, MOAT_CRED_FILE_MAX);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return MOAT_OK;
}

static void wipe_free(unsigned char *buf, size_t len)
{
    if (buf == NULL)
        return;
    mbedtls_platform_zeroize(buf, len + 1);
    free(buf);
}

/* ------------------------------------------------------------ parsing -- */

static bool is_pem(const unsigned char *b, size_t len)
{
    static const char tag[] = "-----BEGIN";
    size_t i;

    for (i = 0; i + sizeof tag - 1 <= len; i++)
        if (memcmp(b + i, tag, sizeof tag - 1) == 0)
            return true;
    return false;
}

/* buf holds len bytes and a NUL after them. */
static int parse_crt(mbedtls_x509_crt *crt, const unsigned char *buf, size_t len)
{
    if (is_pem(buf, len))
        return mbedtls_x509_crt_parse(crt, buf, len + 1);
    return mbedtls_x509_crt_parse_der(crt, buf, len);
}

static int parse_key(mbedtls_pk_context *pk, const unsigned char *buf, size_t len)
{
    return mbedtls_pk_parse_key(pk, buf, is_pem(buf, len) ? len + 1 : len, NULL, 0);
}

static void crt_cn(const mbedtls_x509_crt *crt, char *out, size_t cap)
{
    const mbedtls_x509_name *n;

    out[0] = '\0';
    for (n = &crt->subject; n != NULL; n = n->next)
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
            snprintf(out, cap, "%.*s", (int)n->val.len, (const char *)n->val.p);
            return;
        }
}

static bool valid_id(const char *id)
{
    size_t n, i;

    if (id == NULL)
        return false;
    n = strlen(id);
    if (n == 0 || n > 64)
        return false;
    for (i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Load the key file path into pk. */
static moat_err load_key(moat_credstore *s, const char *path, mbedtls_pk_context *pk)
{
    unsigned char *buf;
    size_t len;
    moat_err err = read_file(s, path, "private key", &buf, &len);
    int ret;

    if (err != MOAT_OK)
        return err;
    ret = parse_key(pk, buf, len);
    wipe_free(buf, len);
    if (ret != 0) {
        say(s, "private key %s does not parse (mbedTLS -0x%04x)", path, (unsigned)-ret);
        return MOAT_ERR_CERT_FORMAT;
    }
    return MOAT_OK;
}

static moat_err load_crt(moat_credstore *s, const char *path, const char *what,
                         mbedtls_x509_crt *crt)
{
    unsigned char *buf;
    size_t len;
    moat_err err = read_file(s, path, what, &buf, &len);
    int ret;

    if (err != MOAT_OK)
        return err;
    ret = parse_crt(crt, buf, len);
    wipe_free(buf, len);
    if (ret != 0) {
        say(s, "%s %s does not parse (mbedTLS -0x%04x)", what, path, (unsigned)-ret);
        return MOAT_ERR_CERT_FORMAT;
    }
    return MOAT_OK;
}

/* ---------------------------------------------------------- the store -- */

static bool path_ok(const char *p)
{
    return p != NULL && p[0] != '\0' && strlen(p) + sizeof NEW_SUFFIX + 8 < MOAT_CRED_PATH_MAX &&
           strpbrk(p, "\t\n") == NULL;
}

static moat_err make_dir(moat_credstore *s, const char *path)
{
    struct stat st;

    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return say(s, "cannot create the credential store %s: %s", path, strerror(errno));
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return say(s, "the credential store %s is not a directory", path);
    return MOAT_OK;
}

/* dir/name; open() checked that every such path fits. */
static void store_path(const moat_credstore *s, char *out, size_t cap, const char *name)
{
    if (snprintf(out, cap, "%s/%s", s->dir, name) >= (int)cap)
        out[0] = '\0';
}

/* Delete the pending set, the trial mark and any half-made copies. */
static moat_err clear_pending(moat_credstore *s)
{
    char path[MOAT_CRED_PATH_MAX + 16];
    moat_err err = MOAT_OK, e;
    unsigned k;

    for (k = 0; k < MOAT_CRED_KINDS; k++) {
        e = remove_file(s, s->pending[k]);
        if (e != MOAT_OK)
            err = e;
        if (join(path, sizeof path, s->active[k], NEW_SUFFIX) == 0)
            remove_file(s, path);
        s->staged[k] = false;
    }
    fsync_dir_of(s->pending[0]);
    store_path(s, path, sizeof path, "trial");
    e = remove_file(s, path);
    if (e != MOAT_OK)
        err = e;
    fsync_dir_of(path);
    s->trial = false;
    return err;
}

/* Carry an interrupted commit forward: rename what the journal lists. */
static moat_err roll_forward(moat_credstore *s, const char *journal)
{
    unsigned char *buf;
    size_t len;
    char *line, *save = NULL;
    moat_err err = read_file(s, journal, "commit journal", &buf, &len);

    if (err != MOAT_OK)
        return err;
    for (line = strtok_r((char *)buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t'), expect[MOAT_CRED_PATH_MAX + 16];
        if (tab == NULL)
            continue;
        *tab = '\0';
        /* Only <target>.moat-new over <target>: a damaged journal moves nothing else. */
        if (join(expect, sizeof expect, tab + 1, NEW_SUFFIX) != 0 || strcmp(expect, line) != 0)
            continue;
        if (exists(line)) {
            if (rename(line, tab + 1) != 0) {
                err = say(s, "cannot finish the commit of %s: %s", tab + 1, strerror(errno));
                wipe_free(buf, len);
                return err;
            }
            fsync_dir_of(tab + 1);
        }
    }
    wipe_free(buf, len);
    err = clear_pending(s);
    if (err == MOAT_OK) {
        err = remove_file(s, journal);
        fsync_dir_of(journal);
    }
    return err;
}

moat_err moat_credstore_open(moat_credstore *s, const char *dir, const char *cafile,
                             const char *certfile, const char *keyfile)
{
    const char *act[MOAT_CRED_KINDS] = {cafile, certfile, keyfile};
    char path[MOAT_CRED_PATH_MAX + 16], journal[MOAT_CRED_PATH_MAX + 16];
    moat_err err;
    unsigned k, j;

    if (s == NULL)
        return MOAT_ERR_ARG;
    memset(s, 0, sizeof *s);
    if (!path_ok(dir)) {
        snprintf(s->error, sizeof s->error, "credential store: bad directory name");
        return MOAT_ERR_ARG;
    }
    for (k = 0; k < MOAT_CRED_KINDS; k++) {
        if (!path_ok(act[k])) {
            snprintf(s->error, sizeof s->error, "credential store: bad %s file name",
                     kind_names[k]);
            return MOAT_ERR_ARG;
        }
        for (j = 0; j < k; j++)
            if (strcmp(act[j], act[k]) == 0) {
                say(s, "credential store: the %s and the %s are the same file %s: each needs "
                       "its own",
                    kind_words[j], kind_words[k], act[k]);
                return MOAT_ERR_ARG;
            }
        snprintf(s->active[k], sizeof s->active[k], "%s", act[k]);
    }
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    store_path(s, path, sizeof path, "pending");
    if (make_dir(s, s->dir) != MOAT_OK || make_dir(s, path) != MOAT_OK)
        return MOAT_ERR_FILE;
    for (k = 0; k < MOAT_CRED_KINDS; k++)
        if (snprintf(s->pending[k], sizeof s->pending[k], "%s/pending/%s", s->dir,
                     pending_names[k]) >= (int)sizeof s->pending[k])
            return MOAT_ERR_ARG;
    store_path(s, journal, sizeof journal, "commit");
    store_path(s, path, sizeof path, "trial");
    if (exists(journal)) {
        err = roll_forward(s, journal);
        if (err != MOAT_OK)
            return err;
        s->recovery = MOAT_CRED_ROLLED_FORWARD;
    } else if (exists(path)) {
        err = clear_pending(s);
        if (err != MOAT_OK)
            return err;
        s->recovery = MOAT_CRED_ROLLED_BACK;
    }
    for (k = 0; k < MOAT_CRED_KINDS; k++) {
        char tmp[MOAT_CRED_PATH_MAX + 8];
        if (join(tmp, sizeof tmp, s->pending[k], ".tmp") == 0)
            remove_file(s, tmp);
        s->staged[k] = exists(s->pending[k]);
    }
    s->error[0] = '\0';
    return MOAT_OK;
}

moat_cred_recovery moat_credstore_recovery(const moat_credstore *s)
{
    return s->recovery;
}

/* Does crt's key match the key the pending set will use? */
static moat_err check_pair(moat_credstore *s, mbedtls_x509_crt *crt)
{
    mbedtls_pk_context key;
    const char *path = moat_credstore_path(s, MOAT_CRED_KEY, true);
    moat_err err;

    mbedtls_pk_init(&key);
    err = load_key(s, path, &key);
    if (err == MOAT_OK && mbedtls_pk_check_pair(&crt->pk, &key) != 0) {
        say(s, "the certificate does not match the %s %s",
            s->staged[MOAT_CRED_KEY] ? "pending key" : "device key", path);
        err = MOAT_ERR_KEY_MISMATCH;
    }
    mbedtls_pk_free(&key);
    return err;
}

static moat_err check_ca(moat_credstore *s, const unsigned char *buf, size_t len)
{
    mbedtls_x509_crt crt;
    const mbedtls_x509_crt *c;
    moat_err err = MOAT_ERR_CERT_FORMAT;
    int ret;

    mbedtls_x509_crt_init(&crt);
    ret = parse_crt(&crt, buf, len);
    if (ret != 0) {
        say(s, "the new CA certificate does not parse (mbedTLS -0x%04x)",
            (unsigned)(ret < 0 ? -ret : ret));
    } else {
        for (c = &crt; c != NULL; c = c->next)
            if (c->ca_istrue)
                err = MOAT_OK;
        if (err != MOAT_OK)
            say(s, "the new CA file holds no CA certificate (basicConstraints CA:TRUE)");
    }
    mbedtls_x509_crt_free(&crt);
    return err;
}

static moat_err check_cert(moat_credstore *s, const unsigned char *buf, size_t len,
                           const char *device_id)
{
    mbedtls_x509_crt crt;
    char cn[80];
    moat_err err;
    int ret;

    mbedtls_x509_crt_init(&crt);
    ret = parse_crt(&crt, buf, len);
    if (ret != 0) {
        say(s, "the new certificate does not parse (mbedTLS -0x%04x)",
            (unsigned)(ret < 0 ? -ret : ret));
        err = MOAT_ERR_CERT_FORMAT;
    } else if (crt.ca_istrue) {
        say(s, "the new certificate is a CA certificate, not a device certificate");
        err = MOAT_ERR_CERT_FORMAT;
    } else {
        crt_cn(&crt, cn, sizeof cn);
        err = MOAT_OK;
        if (device_id != NULL && strcmp(cn, device_id) != 0) {
            say(s, "the new certificate names CN '%s' but the device id is '%s'", cn, device_id);
            err = MOAT_ERR_CERT_INVALID;
        }
        if (err == MOAT_OK)
            err = check_pair(s, &crt);
    }
    mbedtls_x509_crt_free(&crt);
    return err;
}

static moat_err check_key(moat_credstore *s, const unsigned char *buf, size_t len)
{
    mbedtls_pk_context pk;
    int ret;

    mbedtls_pk_init(&pk);
    ret = parse_key(&pk, buf, len);
    mbedtls_pk_free(&pk);
    if (ret != 0) {
        say(s, "the new private key does not parse, or is encrypted (mbedTLS -0x%04x)",
            (unsigned)-ret);
        return MOAT_ERR_CERT_FORMAT;
    }
    return MOAT_OK;
}

static moat_err unstage(moat_credstore *s, moat_cred_kind k)
{
    moat_err err = remove_file(s, s->pending[k]);

    if (err == MOAT_OK) {
        s->staged[k] = false;
        fsync_dir_of(s->pending[k]);
    }
    return err;
}

moat_err moat_credstore_stage(moat_credstore *s, moat_cred_kind kind, const uint8_t *data,
                              size_t len, const char *device_id)
{
    unsigned char *buf;
    moat_err err;

    if (s == NULL || (unsigned)kind >= MOAT_CRED_KINDS || (data == NULL && len > 0))
        return MOAT_ERR_ARG;
    s->error[0] = '\0';
    if (s->trial) {
        snprintf(s->error, sizeof s->error,
                 "new credentials are being tried; wait until they are committed or rolled back");
        return MOAT_ERR_STATE;
    }
    if (len > MOAT_CRED_FILE_MAX) {
        snprintf(s->error, sizeof s->error, "the new %s is larger than %u bytes",
                 kind_words[kind], MOAT_CRED_FILE_MAX);
        return MOAT_ERR_TOO_LARGE;
    }
    if (len == 0) {
        snprintf(s->error, sizeof s->error, "the new %s is empty", kind_words[kind]);
        return MOAT_ERR_CERT_FORMAT;
    }
    buf = malloc(len + 1);
    if (buf == NULL)
        return say(s, "out of memory");
    memcpy(buf, data, len);
    buf[len] = '\0';
    err = kind == MOAT_CRED_CA     ? check_ca(s, buf, len)
          : kind == MOAT_CRED_CERT ? check_cert(s, buf, len, device_id)
                                   : check_key(s, buf, len);
    if (err == MOAT_OK)
        err = write_atomic(s, s->pending[kind], buf, len, kind == MOAT_CRED_KEY ? 0600 : 0644);
    wipe_free(buf, len);
    if (err != MOAT_OK)
        return err;
    s->staged[kind] = true;
    /* A certificate staged for another key cannot be used with this one. */
    if (kind == MOAT_CRED_KEY && s->staged[MOAT_CRED_CERT])
        return unstage(s, MOAT_CRED_CERT);
    return MOAT_OK;
}

moat_err moat_credstore_make_csr(moat_credstore *s, const char *device_id, char *csr,
                                 size_t cap, size_t *len)
{
    static const char pers[] = "moat-credstore";
    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context pk;
    mbedtls_x509write_csr req;
    unsigned char key_pem[1024], csr_pem[MOAT_CRED_CSR_MAX];
    char subject[80];
    moat_err err = MOAT_ERR_TLS;
    size_t n;
    int ret;

    if (s == NULL || csr == NULL)
        return MOAT_ERR_ARG;
    s->error[0] = '\0';
    if (!valid_id(device_id)) {
        snprintf(s->error, sizeof s->error,
                 "CSR: the device id must be 1..64 of A-Z a-z 0-9 _ -");
        return MOAT_ERR_ARG;
    }
    if (s->trial) {
        snprintf(s->error, sizeof s->error,
                 "new credentials are being tried; wait until they are committed or rolled back");
        return MOAT_ERR_STATE;
    }
    mbedtls_entropy_init(&ent);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_pk_init(&pk);
    mbedtls_x509write_csr_init(&req);
    snprintf(subject, sizeof subject, "CN=%s", device_id);
    if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent,
                                     (const unsigned char *)pers, sizeof pers - 1)) != 0 ||
        (ret = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY))) != 0 ||
        (ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
                                   mbedtls_ctr_drbg_random, &drbg)) != 0 ||
        (ret = mbedtls_pk_write_key_pem(&pk, key_pem, sizeof key_pem)) != 0) {
        say(s, "CSR: cannot make a new P-256 key (mbedTLS -0x%04x)", (unsigned)-ret);
        goto done;
    }
    mbedtls_x509write_csr_set_md_alg(&req, MBEDTLS_MD_SHA256);
    mbedtls_x509write_csr_set_key(&req, &pk);
    if ((ret = mbedtls_x509write_csr_set_subject_name(&req, subject)) != 0 ||
        (ret = mbedtls_x509write_csr_pem(&req, csr_pem, sizeof csr_pem, mbedtls_ctr_drbg_random,
                                         &drbg)) != 0) {
        say(s, "CSR: cannot write the request (mbedTLS -0x%04x)", (unsigned)-ret);
        goto done;
    }
    n = strlen((const char *)csr_pem);
    if (n + 1 > cap) {
        snprintf(s->error, sizeof s->error, "CSR: %zu bytes do not fit in %zu", n + 1, cap);
        err = MOAT_ERR_NO_SPACE;
        goto done;
    }
    /* The key is staged only once the request is in hand. */
    err = write_atomic(s, s->pending[MOAT_CRED_KEY], key_pem, strlen((const char *)key_pem),
                       0600);
    if (err != MOAT_OK)
        goto done;
    s->staged[MOAT_CRED_KEY] = true;
    if (s->staged[MOAT_CRED_CERT]) {
        err = unstage(s, MOAT_CRED_CERT);
        if (err != MOAT_OK)
            goto done;
    }
    memcpy(csr, csr_pem, n + 1);
    if (len != NULL)
        *len = n;
    err = MOAT_OK;
done:
    mbedtls_platform_zeroize(key_pem, sizeof key_pem);
    mbedtls_x509write_csr_free(&req);
    mbedtls_pk_free(&pk);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&ent);
    return err;
}

bool moat_credstore_staged(const moat_credstore *s, moat_cred_kind kind)
{
    return (unsigned)kind < MOAT_CRED_KINDS && s->staged[kind];
}

bool moat_credstore_has_pending(const moat_credstore *s)
{
    return s->staged[MOAT_CRED_CA] || s->staged[MOAT_CRED_CERT] || s->staged[MOAT_CRED_KEY];
}

bool moat_credstore_ready(const moat_credstore *s)
{
    return s->staged[MOAT_CRED_CA] || s->staged[MOAT_CRED_CERT];
}

const char *moat_credstore_path(const moat_credstore *s, moat_cred_kind kind, bool pending)
{
    if ((unsigned)kind >= MOAT_CRED_KINDS)
        return "";
    return pending && s->staged[kind] ? s->pending[kind] : s->active[kind];
}

moat_err moat_credstore_begin_trial(moat_credstore *s)
{
    char path[MOAT_CRED_PATH_MAX + 16];
    mbedtls_x509_crt crt;
    moat_err err;

    s->error[0] = '\0';
    if (s->trial)
        return MOAT_OK;
    if (!moat_credstore_ready(s)) {
        snprintf(s->error, sizeof s->error,
                 s->staged[MOAT_CRED_KEY]
                     ? "the pending key waits for its certificate: nothing to try yet"
                     : "no new credentials to try");
        return MOAT_ERR_STATE;
    }
    mbedtls_x509_crt_init(&crt);
    err = load_crt(s, moat_credstore_path(s, MOAT_CRED_CERT, true), "certificate", &crt);
    if (err == MOAT_OK)
        err = check_pair(s, &crt);
    mbedtls_x509_crt_free(&crt);
    if (err == MOAT_OK && s->staged[MOAT_CRED_CA]) {
        mbedtls_x509_crt_init(&crt);
        err = load_crt(s, s->pending[MOAT_CRED_CA], "CA certificate", &crt);
        mbedtls_x509_crt_free(&crt);
    }
    if (err != MOAT_OK)
        return err;
    store_path(s, path, sizeof path, "trial");
    err = write_atomic(s, path, "trial\n", 6, 0600);
    if (err == MOAT_OK)
        s->trial = true;
    return err;
}

bool moat_credstore_in_trial(const moat_credstore *s)
{
    return s->trial;
}

moat_err moat_credstore_commit(moat_credstore *s)
{
    char journal[MOAT_CRED_PATH_MAX + 16], copy[MOAT_CRED_KINDS][MOAT_CRED_PATH_MAX + 16];
    char text[MOAT_CRED_KINDS * (3 * MOAT_CRED_PATH_MAX)];
    size_t tl = 0;
    moat_err err = MOAT_OK;
    unsigned k;

    s->error[0] = '\0';
    if (!s->trial) {
        snprintf(s->error, sizeof s->error, "no trial under way: nothing to commit");
        return MOAT_ERR_STATE;
    }
    text[0] = '\0';
    /* 1. each new file next to its target, synced */
    for (k = 0; k < MOAT_CRED_KINDS && err == MOAT_OK; k++) {
        unsigned char *buf;
        size_t len;
        struct stat st;
        mode_t mode = k == MOAT_CRED_KEY ? 0600 : 0644;
        if (!s->staged[k])
            continue;
        join(copy[k], sizeof copy[k], s->active[k], NEW_SUFFIX);
        if (k != MOAT_CRED_KEY && stat(s->active[k], &st) == 0)
            mode = st.st_mode & 0777;
        err = read_file(s, s->pending[k], kind_words[k], &buf, &len);
        if (err != MOAT_OK)
            break;
        err = write_synced(s, copy[k], buf, len, mode);
        wipe_free(buf, len);
        tl += (size_t)snprintf(text + tl, sizeof text - tl, "%s\t%s\n", copy[k], s->active[k]);
    }
    if (err == MOAT_OK) {
        fsync_dir_of(s->active[MOAT_CRED_CERT]);
        /* 2. the journal: from here on the commit is carried forward */
        store_path(s, journal, sizeof journal, "commit");
        err = write_atomic(s, journal, text, tl, 0600);
    }
    if (err != MOAT_OK) {
        for (k = 0; k < MOAT_CRED_KINDS; k++)
            if (s->staged[k])
                unlink(copy[k]);
        return err;
    }
    /* 3. the renames, 4. the clean-up: as open() would finish it */
    return roll_forward(s, journal);
}

moat_err moat_credstore_rollback(moat_credstore *s)
{
    s->error[0] = '\0';
    return clear_pending(s);
}

const char *moat_credstore_error(const moat_credstore *s)
{
    return s->error;
}

const char *moat_credstore_kind_name(moat_cred_kind kind)
{
    return (unsigned)kind < MOAT_CRED_KINDS ? kind_names[kind] : "?";
}
