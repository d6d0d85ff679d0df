/*
 * cli.h - shared declarations of the `moat` operator CLI (apps/cli).
 *
 * The CLI is a Linux program, not part of the portable core: it may use the
 * heap and POSIX freely. Every helper that can fail prints one line that
 * names the file or key involved and returns CLI_FAIL, so callers only
 * propagate the code.
 */
#ifndef MOAT_CLI_H
#define MOAT_CLI_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>

/* Exit codes of `moat`. */
#define CLI_OK 0
#define CLI_FAIL 1  /* runtime error: a file, a key, a certificate */
#define CLI_USAGE 2 /* bad command line */
#define CLI_HELP 3  /* internal: --help was asked; the caller prints help and exits 0 */
#define CLI_EXISTS 4 /* internal: a file that must not be overwritten exists */

/* ---- option parsing (options.c) ---- */

#define CLI_LIST_MAX 32

typedef struct cli_list {
    const char *v[CLI_LIST_MAX];
    int n;
} cli_list;

typedef enum cli_opt_kind {
    CLI_OPT_FLAG,  /* int *: set to 1 */
    CLI_OPT_VALUE, /* const char **: the last value given wins */
    CLI_OPT_LIST   /* cli_list *: every value, in order */
} cli_opt_kind;

typedef struct cli_opt {
    const char *name; /* long name without the leading "--" */
    cli_opt_kind kind;
    void *dest;
} cli_opt;

/*
 * Parses argv[0..argc) against opts (terminated by a NULL name). Accepts
 * "--name value", "--name=value" and "--" to end options. Positional
 * arguments go to pos[0..max_pos). Returns CLI_OK, CLI_HELP for -h/--help,
 * or CLI_USAGE after printing what was wrong, prefixed by cmd.
 */
int cli_parse(int argc, char **argv, const cli_opt *opts, const char **pos, int max_pos,
              int *npos, const char *cmd);

/* Parses a decimal count in [min, max]; prints an error naming opt. */
int cli_parse_uint(const char *s, unsigned long min, unsigned long max, const char *opt,
                   unsigned long *out);

/* ---- messages (util.c) ---- */

void cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* "cannot <what> <path>: <mbedtls error in words>" */
void cli_tls_error(const char *what, const char *path, int ret);

/* ---- files (util.c) ---- */

/* Reads a whole file and appends a NUL (PEM parsers want it, len excludes it). */
int cli_read_file(const char *path, unsigned char **buf, size_t *len);
/* Zeroes and frees a buffer from cli_read_file. */
void cli_free_file(unsigned char *buf, size_t len);

/*
 * Writes a file atomically: a temporary file in the same directory with the
 * given mode, fsync, then rename (overwrite != 0) or link (overwrite == 0,
 * returns CLI_EXISTS without printing if path exists). The old file is never
 * truncated in place.
 */
int cli_write_file(const char *path, const void *data, size_t len, mode_t mode, int overwrite);
int cli_file_exists(const char *path);
/* Creates a directory and its parents; existing ones are kept as they are. */
int cli_mkdir_p(const char *path, mode_t mode);
/* Joins a and b with '/'; fails (printing) if it does not fit. */
int cli_path(char *out, size_t size, const char *a, const char *b);
/* Makes path absolute against the working directory (the file need not exist). */
int cli_abspath(const char *path, char *out, size_t size);

/* ---- names and times (util.c) ---- */

/* A device or operator id: [A-Za-z0-9_-]{1,64}. */
int cli_valid_id(const char *id);
/* A DNS host name: labels of [A-Za-z0-9-], dots between, at most 253 bytes. */
int cli_valid_dns(const char *name);
/* A CA common name: printable ASCII without , = + \ " < > ; or '#'. */
int cli_valid_cn(const char *cn);

/* YYYYMMDDhhmmss (UTC) <-> time_t; the parser checks every field. */
int cli_parse_time14(const char *s, time_t *out);
void cli_time14(time_t t, char out[15]);
/* 2028-10-31T12:00:00Z */
void cli_time_iso(time_t t, char out[21]);
/* timegm(3), which POSIX lacks. */
time_t cli_timegm(int year, int mon, int day, int hour, int min, int sec);

/* ---- secrets (util.c) ---- */

typedef struct cli_pass_src {
    const char *file; /* --passphrase-file: first line of the file */
    const char *env;  /* --passphrase-env: name of an environment variable */
} cli_pass_src;

#define CLI_PASS_MAX 1024

/*
 * Gets a passphrase from src, else from the terminal (asking twice when
 * confirm is set). what names the key in prompts and errors.
 */
int cli_get_passphrase(const cli_pass_src *src, const char *what, int confirm, char *out,
                       size_t size, size_t *len);

/* ---- randomness (util.c) ---- */

typedef struct cli_rng {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
} cli_rng;

int cli_rng_init(cli_rng *rng);
void cli_rng_free(cli_rng *rng);
/* For mbedTLS's f_rng arguments, with p_rng = &rng->drbg. */
#define CLI_RNG_F mbedtls_ctr_drbg_random

/* ---- commands ---- */

int cli_pki_main(int argc, char **argv);           /* pki.c */
int cli_broker_config_main(int argc, char **argv); /* broker_config.c */
int cli_ota_main(int argc, char **argv);           /* ota_push.c: ota push */
int cli_cert_main(int argc, char **argv);          /* cert_rotate.c: cert rotate */

#endif
