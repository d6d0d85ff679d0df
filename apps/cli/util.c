/*
 * util.c - files, names, times, passphrases and randomness for the `moat` CLI.
 *
 * Files are always replaced by writing a temporary file next to them and
 * renaming it, so a crash leaves either the old file or the new one, and a
 * private key is never truncated in place.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <mbedtls/error.h>
#include <mbedtls/platform_util.h>

void cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("moat: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_tls_error(const char *what, const char *path, int ret)
{
    char words[160];
    mbedtls_strerror(ret, words, sizeof(words));
    cli_error("cannot %s %s: %s", what, path, words);
}

/* ---- files ---- */

int cli_read_file(const char *path, unsigned char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        cli_error("cannot read %s: %s", path, strerror(errno));
        return CLI_FAIL;
    }
    size_t cap = 4096, n = 0;
    unsigned char *b = malloc(cap);
    while (b != NULL) {
        n += fread(b + n, 1, cap - n - 1, f);
        if (ferror(f) || feof(f) || n < cap - 1)
            break;
        if (cap >= (size_t)16 << 20) { /* no PKI file is this large */
            cli_error("cannot read %s: larger than 16 MiB", path);
            cli_free_file(b, cap);
            fclose(f);
            return CLI_FAIL;
        }
        unsigned char *nb = malloc(cap * 2);
        if (nb != NULL) {
            memcpy(nb, b, n);
        }
        cli_free_file(b, cap);
        b = nb;
        cap *= 2;
    }
    if (b == NULL) {
        cli_error("cannot read %s: out of memory", path);
        fclose(f);
        return CLI_FAIL;
    }
    if (ferror(f)) {
        cli_error("cannot read %s: %s", path, strerror(errno));
        cli_free_file(b, cap);
        fclose(f);
        return CLI_FAIL;
    }
    fclose(f);
    b[n] = '\0';
    *buf = b;
    *len = n;
    return CLI_OK;
}

void cli_free_file(unsigned char *buf, size_t len)
{
    if (buf == NULL)
        return;
    mbedtls_platform_zeroize(buf, len);
    free(buf);
}

int cli_file_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir))
            return -1;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int cli_write_file(const char *path, const void *data, size_t len, mode_t mode, int overwrite)
{
    char tmp[PATH_MAX];
    if (!overwrite && cli_file_exists(path))
        return CLI_EXISTS;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        cli_error("cannot write %s: path too long", path);
        return CLI_FAIL;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) {
        cli_error("cannot write %s: %s", tmp, strerror(errno));
        return CLI_FAIL;
    }
    /* open() honours the umask; the mode asked for is the mode wanted. */
    if (fchmod(fd, mode) != 0)
        goto fail;
    const unsigned char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail;
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (overwrite) {
        if (rename(tmp, path) != 0)
            goto fail;
    } else {
        /* link() will not replace an existing file, unlike rename(). */
        if (link(tmp, path) != 0) {
            int e = errno;
            unlink(tmp);
            if (e == EEXIST)
                return CLI_EXISTS;
            cli_error("cannot write %s: %s", path, strerror(e));
            return CLI_FAIL;
        }
        unlink(tmp);
    }
    fsync_dir_of(path);
    return CLI_OK;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    cli_error("cannot write %s: %s", path, strerror(e));
    return CLI_FAIL;
}

int cli_mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf)) {
        cli_error("cannot create directory '%s': bad path", path);
        return CLI_FAIL;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST) {
            cli_error("cannot create directory %s: %s", buf, strerror(errno));
            return CLI_FAIL;
        }
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cli_error("cannot create directory %s: not a directory", path);
        return CLI_FAIL;
    }
    return CLI_OK;
}

int cli_path(char *out, size_t size, const char *a, const char *b)
{
    int n = snprintf(out, size, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= size) {
        cli_error("path too long: %s/%s", a, b);
        return CLI_FAIL;
    }
    return CLI_OK;
}

int cli_abspath(const char *path, char *out, size_t size)
{
    if (path[0] == '/') {
        if (strlen(path) >= size) {
            cli_error("path too long: %s", path);
            return CLI_FAIL;
        }
        strcpy(out, path);
        return CLI_OK;
    }
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        cli_error("cannot find the working directory: %s", strerror(errno));
        return CLI_FAIL;
    }
    while (path[0] == '.' && path[1] == '/')
        path += 2;
    if (strcmp(path, ".") == 0)
        path = "";
    int n = snprintf(out, size, "%s%s%s", cwd, path[0] != '\0' ? "/" : "", path);
    if (n < 0 || (size_t)n >= size) {
        cli_error("path too long: %s/%s", cwd, path);
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* ---- names ---- */

int cli_valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int cli_valid_dns(const char *name)
{
    size_t n = strlen(name), label = 0;
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i <= n; i++) {
        char c = name[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || name[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return 0;
        if (c == '-' && label == 0)
            return 0;
        label++;
    }
    return 1;
}

int cli_valid_cn(const char *cn)
{
    size_t n = strlen(cn);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)cn[i];
        if (c < 0x20 || c > 0x7e || strchr(",=+\\\"<>;#", c) != NULL)
            return 0;
    }
    return cn[0] != ' ' && cn[n - 1] != ' ';
}

/* ---- times ---- */

/* Days from 1970-01-01 to year-mon-day in the proleptic Gregorian calendar. */
static long days_from_civil(long y, int m, int d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

time_t cli_timegm(int year, int mon, int day, int hour, int min, int sec)
{
    return (time_t)days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec;
}

int cli_parse_time14(const char *s, time_t *out)
{
    int f[6];
    static const int width[6] = {4, 2, 2, 2, 2, 2};
    if (strlen(s) != 14)
        return CLI_USAGE;
    for (int i = 0, k = 0; i < 6; i++) {
        f[i] = 0;
        for (int j = 0; j < width[i]; j++, k++) {
            if (s[k] < '0' || s[k] > '9')
                return CLI_USAGE;
            f[i] = f[i] * 10 + (s[k] - '0');
        }
    }
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (f[0] % 4 == 0 && f[0] % 100 != 0) || f[0] % 400 == 0;
    if (f[0] < 1950 || f[0] > 9999 || f[1] < 1 || f[1] > 12 || f[2] < 1 ||
        f[2] > mdays[f[1] - 1] || (f[1] == 2 && f[2] == 29 && !leap) || f[3] > 23 ||
        f[4] > 59 || f[5] > 59)
        return CLI_USAGE;
    *out = cli_timegm(f[0], f[1], f[2], f[3], f[4], f[5]);
    return CLI_OK;
}

static void split_time(time_t t, int v[6])
{
    long days = (long)(t / 86400), secs = (long)(t % 86400);
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    /* civil_from_days */
    days += 719468;
    long era = (days >= 0 ? days : days - 146096) / 146097;
    long doe = days - era * 146097;
    long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long y = yoe + era * 400;
    long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long mp = (5 * doy + 2) / 153;
    long d = doy - (153 * mp + 2) / 5 + 1;
    long m = mp < 10 ? mp + 3 : mp - 9;
    v[0] = (int)(y + (m <= 2));
    v[1] = (int)m;
    v[2] = (int)d;
    v[3] = (int)(secs / 3600);
    v[4] = (int)(secs / 60 % 60);
    v[5] = (int)(secs % 60);
}

void cli_time14(time_t t, char out[15])
{
    int v[6];
    split_time(t, v);
    char tmp[80];
    snprintf(tmp, sizeof(tmp), "%04d%02d%02d%02d%02d%02d", v[0] % 10000, v[1], v[2], v[3], v[4],
             v[5]);
    memcpy(out, tmp, 14);
    out[14] = '\0';
}

void cli_time_iso(time_t t, char out[21])
{
    int v[6];
    split_time(t, v);
    char tmp[80];
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02dZ", v[0] % 10000, v[1], v[2], v[3],
             v[4], v[5]);
    memcpy(out, tmp, 20);
    out[20] = '\0';
}

/* ---- secrets ---- */

static int strip_line(char *s, size_t *len)
{
    size_t n = strcspn(s, "\r\n");
    s[n] = '\0';
    *len = n;
    return CLI_OK;
}

static int read_tty_line(int fd, const char *prompt, char *out, size_t size)
{
    struct termios old, quiet;
    if (write(fd, prompt, strlen(prompt)) < 0)
        return CLI_FAIL;
    if (tcgetattr(fd, &old) != 0)
        return CLI_FAIL;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ICANON;
    tcsetattr(fd, TCSAFLUSH, &quiet);
    size_t n = 0;
    int rc = CLI_OK;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || c == '\n')
            break;
        if (n + 1 >= size) {
            rc = CLI_FAIL;
            continue;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0)
        rc = CLI_FAIL;
    return rc;
}

int cli_get_passphrase(const cli_pass_src *src, const char *what, int confirm, char *out,
                       size_t size, size_t *len)
{
    if (src->file != NULL) {
        FILE *f = fopen(src->file, "r");
        if (f == NULL) {
            cli_error("cannot read passphrase file %s: %s", src->file, strerror(errno));
            return CLI_FAIL;
        }
        if (fgets(out, (int)size, f) == NULL)
            out[0] = '\0';
        fclose(f);
        strip_line(out, len);
    } else if (src->env != NULL) {
        const char *v = getenv(src->env);
        if (v == NULL) {
            cli_error("passphrase for %s: environment variable %s is not set", what, src->env);
            return CLI_FAIL;
        }
        if (strlen(v) >= size) {
            cli_error("passphrase for %s: %s is too long", what, src->env);
            return CLI_FAIL;
        }
        strcpy(out, v);
        strip_line(out, len);
    } else {
        int fd = open("/dev/tty", O_RDWR | O_NOCTTY);
        if (fd < 0) {
            cli_error("%s needs a passphrase: give --passphrase-file or --passphrase-env, "
                      "or run on a terminal",
                      what);
            return CLI_FAIL;
        }
        char prompt[600], again[CLI_PASS_MAX];
        snprintf(prompt, sizeof(prompt), "Passphrase for %s: ", what);
        int rc = read_tty_line(fd, prompt, out, size);
        if (rc == CLI_OK && confirm) {
            rc = read_tty_line(fd, "Repeat the passphrase: ", again, sizeof(again));
            if (rc == CLI_OK && strcmp(again, out) != 0) {
                close(fd);
                mbedtls_platform_zeroize(again, sizeof(again));
                cli_error("passphrase for %s: the two entries differ", what);
                return CLI_FAIL;
            }
            mbedtls_platform_zeroize(again, sizeof(again));
        }
        close(fd);
        if (rc != CLI_OK) {
            cli_error("passphrase for %s: cannot read it from the terminal", what);
            return CLI_FAIL;
        }
        *len = strlen(out);
    }
    if (*len == 0) {
        cli_error("passphrase for %s is empty", what);
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* ---- randomness ---- */

int cli_rng_init(cli_rng *rng)
{
    static const char pers[] = "moat-cli";
    mbedtls_entropy_init(&rng->entropy);
    mbedtls_ctr_drbg_init(&rng->drbg);
    int ret = mbedtls_ctr_drbg_seed(&rng->drbg, mbedtls_entropy_func, &rng->entropy,
                                    (const unsigned char *)pers, sizeof(pers) - 1);
    if (ret != 0) {
        cli_tls_error("seed the random generator from", "the system entropy source", ret);
        return CLI_FAIL;
    }
    return CLI_OK;
}

void cli_rng_free(cli_rng *rng)
{
    mbedtls_ctr_drbg_free(&rng->drbg);
    mbedtls_entropy_free(&rng->entropy);
}
