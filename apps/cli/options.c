/*
 * options.c - the small long-option parser every `moat` command uses.
 *
 * getopt_long is a GNU extension; this parser is plain C99 + POSIX and
 * gives the same feel: --name value, --name=value, and "--".
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cli_opt *find_opt(const cli_opt *opts, const char *name, size_t len)
{
    for (; opts->name != NULL; opts++)
        if (strlen(opts->name) == len && strncmp(opts->name, name, len) == 0)
            return opts;
    return NULL;
}

static int store(const cli_opt *o, const char *value, const char *cmd)
{
    if (o->kind == CLI_OPT_VALUE) {
        *(const char **)o->dest = value;
        return CLI_OK;
    }
    cli_list *l = o->dest;
    if (l->n >= CLI_LIST_MAX) {
        cli_error("%s: --%s given more than %d times", cmd, o->name, CLI_LIST_MAX);
        return CLI_USAGE;
    }
    l->v[l->n++] = value;
    return CLI_OK;
}

int cli_parse(int argc, char **argv, const cli_opt *opts, const char **pos, int max_pos,
              int *npos, const char *cmd)
{
    int only_pos = 0;
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0))
            return CLI_HELP;
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (*npos >= max_pos) {
                cli_error("%s: unexpected argument '%s' (see --help)", cmd, a);
                return CLI_USAGE;
            }
            pos[(*npos)++] = a;
            continue;
        }
        if (a[1] != '-') {
            cli_error("%s: unknown option '%s' (options are long: --name; see --help)", cmd, a);
            return CLI_USAGE;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = find_opt(opts, name, nlen);
        if (o == NULL) {
            cli_error("%s: unknown option '--%.*s' (see --help)", cmd, (int)nlen, name);
            return CLI_USAGE;
        }
        if (o->kind == CLI_OPT_FLAG) {
            if (eq != NULL) {
                cli_error("%s: --%s takes no value", cmd, o->name);
                return CLI_USAGE;
            }
            *(int *)o->dest = 1;
            continue;
        }
        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            cli_error("%s: --%s needs a value", cmd, o->name);
            return CLI_USAGE;
        }
        int rc = store(o, value, cmd);
        if (rc != CLI_OK)
            return rc;
    }
    return CLI_OK;
}

int cli_parse_uint(const char *s, unsigned long min, unsigned long max, const char *opt,
                   unsigned long *out)
{
    char *end;
    errno = 0;
    if (s[0] < '0' || s[0] > '9') {
        cli_error("%s: '%s' is not a number", opt, s);
        return CLI_USAGE;
    }
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        cli_error("%s: '%s' is not a number from %lu to %lu", opt, s, min, max);
        return CLI_USAGE;
    }
    *out = v;
    return CLI_OK;
}
