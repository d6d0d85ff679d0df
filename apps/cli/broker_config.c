/*
 * broker_config.c - `moat broker-config`: writes a Mosquitto 2.0 config and
 * ACL for a moat PKI directory.
 *
 * The broker listens with TLS only, wants a client certificate signed by the
 * CA, checks the CRL, and takes the certificate CN as the MQTT user name.
 * The ACL confines each device to its own topics (DESIGN.md, Topics) and gives
 * each operator named in the index readwrite on moat/#.
 */
#include "pki.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* TLS 1.2 suites: ECDHE with AEAD only. TLS 1.3 suites are all AEAD already. */
/* ChaCha20-Poly1305 first: devices without AES hardware run it faster, and
 * its state in mbedTLS is about 900 bytes smaller per session than
 * AES-GCM's (docs/BENCHMARKS.md), which a 40 KB device feels. */
#define CIPHERS_TLS12                                                                       \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                            \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"

static const char usage[] =
    "usage: moat broker-config --out DIR [options]\n"
    "Writes DIR/mosquitto.conf and DIR/acl for Mosquitto 2.0 from a moat PKI:\n"
    "a TLS listener (TLS 1.2 or newer, client certificate required, CRL checked,\n"
    "certificate CN as user name, no anonymous clients) and an ACL that confines\n"
    "each device to moat/<id>/... and gives every operator readwrite on moat/#.\n"
    "  --out DIR            where to write mosquitto.conf and acl (required)\n"
    "  --dir DIR            PKI directory (default $MOAT_PKI_DIR, else ./pki)\n"
    "  --port N             listener port (default 8883)\n"
    "  --bind ADDR          listen on this address only (default: all)\n"
    "  --host NAME          the broker certificate servers/NAME.crt to use (needed\n"
    "                       when the PKI has more than one)\n"
    "  --user NAME          the user mosquitto runs as (`user NAME`); started as\n"
    "                       root, mosquitto otherwise switches to 'mosquitto', which\n"
    "                       must then be able to read the PKI files\n"
    "  --persistence        keep retained messages and sessions in DIR/data/\n"
    "                       (default: persistence off)\n"
    "Reload mosquitto (SIGHUP) after `moat pki revoke` or `moat pki crl`; rerun\n"
    "this command, then reload, after adding or revoking an operator.\n";

typedef struct bc_opts {
    const char *dir, *out, *port, *bind, *host, *user;
    int persistence;
} bc_opts;

static int valid_conf_word(const char *s)
{
    /* A value on a mosquitto.conf line: no spaces, no line breaks, no comments. */
    return s[0] != '\0' && strpbrk(s, " \t\r\n#") == NULL;
}

/* The server certificate: --host, else the only unrevoked one in the index. */
static int choose_host(const pki *p, const char *want, time_t now, const char **host)
{
    if (want != NULL) {
        *host = want;
        return CLI_OK;
    }
    const char *found = NULL;
    for (size_t i = 0; i < p->n; i++) {
        const pki_entry *e = &p->entries[i];
        if (strcmp(e->kind, "server") != 0 || strcmp(pki_entry_status(e, now), "valid") != 0)
            continue;
        if (found != NULL && strcmp(found, e->name) != 0) {
            cli_error("broker-config: %s has certificates for several brokers (%s, %s, ...); "
                      "choose one with --host",
                      p->dir, found, e->name);
            return CLI_USAGE;
        }
        found = e->name;
    }
    if (found == NULL) {
        cli_error("broker-config: %s has no valid broker certificate (make one with: "
                  "moat pki server <host> --dir %s)",
                  p->dir, p->dir);
        return CLI_FAIL;
    }
    *host = found;
    return CLI_OK;
}

/* Appends to a growing text buffer; on failure the buffer is marked bad. */
typedef struct text {
    char *s;
    size_t len, cap;
    int bad;
} text;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void add(text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        if (t->bad)
            return;
        size_t room = t->cap - t->len;
        va_start(ap, fmt);
        int n = vsnprintf(t->s != NULL ? t->s + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->bad = 1;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *s = realloc(t->s, cap);
        if (s == NULL) {
            t->bad = 1;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

static int write_text(const char *path, text *t)
{
    if (t->bad) {
        cli_error("cannot write %s: out of memory", path);
        return CLI_FAIL;
    }
    return cli_write_file(path, t->s, t->len, 0644, 1);
}

static void acl_text(text *t, const pki *p, time_t now, int *n_ops)
{
    char iso[21];
    cli_time_iso(now, iso);
    add(t,
        "# Mosquitto ACL for moat, written by `moat broker-config` at %s.\n"
        "# The broker takes each client's certificate CN as its user name\n"
        "# (use_identity_as_username), so %%u below is the device id.\n"
        "# Anything not allowed here is denied.\n"
        "\n"
        "# Devices: each may use only its own topics (docs: DESIGN.md, Topics).\n"
        "pattern write moat/%%u/state\n"
        "pattern write moat/%%u/status\n"
        "pattern write moat/%%u/zones\n"
        "pattern write moat/%%u/result/#\n"
        "pattern read moat/%%u/cmd/#\n"
        "# updates over MQTT (docs/OTA.md): the device asks for blocks and reports\n"
        "pattern write moat/%%u/ota/req\n"
        "pattern write moat/%%u/ota/status\n"
        "pattern read moat/%%u/ota/offer\n"
        "pattern read moat/%%u/ota/blk/#\n",
        iso);
    *n_ops = 0;
    for (size_t i = 0; i < p->n; i++) {
        const pki_entry *e = &p->entries[i];
        if (strcmp(e->kind, "operator") != 0 || strcmp(pki_entry_status(e, now), "valid") != 0)
            continue;
        int seen = 0;
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->entries[j].kind, "operator") == 0 &&
                strcmp(p->entries[j].name, e->name) == 0 &&
                strcmp(pki_entry_status(&p->entries[j], now), "valid") == 0)
                seen = 1;
        if (seen)
            continue;
        if (*n_ops == 0)
            add(t, "\n# Operators: readwrite on every moat topic.\n");
        add(t, "user %s\ntopic readwrite moat/#\n", e->name);
        (*n_ops)++;
    }
    if (*n_ops == 0)
        add(t, "\n# No operators yet: make one with `moat pki operator <name>`, then\n"
               "# run `moat broker-config` again.\n");
}

int cli_broker_config_main(int argc, char **argv)
{
    bc_opts o;
    memset(&o, 0, sizeof(o));
    const cli_opt opts[] = {{"dir", CLI_OPT_VALUE, &o.dir},
                            {"out", CLI_OPT_VALUE, &o.out},
                            {"port", CLI_OPT_VALUE, &o.port},
                            {"bind", CLI_OPT_VALUE, &o.bind},
                            {"host", CLI_OPT_VALUE, &o.host},
                            {"user", CLI_OPT_VALUE, &o.user},
                            {"persistence", CLI_OPT_FLAG, &o.persistence},
                            {NULL, CLI_OPT_FLAG, NULL}};
    const char *pos[1];
    int npos;
    int rc = cli_parse(argc, argv, opts, pos, 0, &npos, "broker-config");
    if (rc == CLI_HELP) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (rc != CLI_OK)
        return rc;
    unsigned long port = 8883;
    if (o.out == NULL) {
        cli_error("broker-config: --out DIR is required (see --help)");
        return CLI_USAGE;
    }
    if (o.port != NULL && cli_parse_uint(o.port, 1, 65535, "--port", &port) != CLI_OK)
        return CLI_USAGE;
    if ((o.bind != NULL && !valid_conf_word(o.bind)) ||
        (o.user != NULL && !valid_conf_word(o.user))) {
        cli_error("broker-config: --bind and --user take one word");
        return CLI_USAGE;
    }
    if (o.host != NULL && !cli_valid_dns(o.host) && strspn(o.host, "0123456789.:abcdefABCDEF") !=
                                                        strlen(o.host)) {
        cli_error("broker-config: --host '%s' is not a host name", o.host);
        return CLI_USAGE;
    }

    pki p;
    memset(&p, 0, sizeof(p));
    p.lock_fd = -1;
    time_t now = time(NULL);
    text conf = {0}, acl = {0};
    char pki_abs[PATH_MAX], out_abs[PATH_MAX], rel[300], ca[PATH_MAX], crt[PATH_MAX],
        key[PATH_MAX], crl[PATH_MAX], conf_path[PATH_MAX], acl_path[PATH_MAX], data[PATH_MAX];
    const char *host;
    int n_ops = 0;
    rc = CLI_FAIL;
    if (cli_abspath(pki_dir_choice(o.dir), pki_abs, sizeof(pki_abs)) != CLI_OK ||
        pki_open(&p, pki_abs, 0, 0) != CLI_OK)
        goto done;
    if (pki_load_ca(&p, 0) != CLI_OK)
        goto done;
    if ((rc = choose_host(&p, o.host, now, &host)) != CLI_OK)
        goto done;
    rc = CLI_FAIL;
    if (pki_path(&p, ca, "ca.crt") != CLI_OK || pki_path(&p, crl, "crl.pem") != CLI_OK)
        goto done;
    snprintf(rel, sizeof(rel), "servers/%s.crt", host);
    if (pki_path(&p, crt, rel) != CLI_OK)
        goto done;
    snprintf(rel, sizeof(rel), "servers/%s.key", host);
    if (pki_path(&p, key, rel) != CLI_OK)
        goto done;
    const char *need[] = {crt, key, crl};
    for (size_t i = 0; i < 3; i++) {
        if (!cli_file_exists(need[i])) {
            cli_error("broker-config: %s is missing (%s)", need[i],
                      i < 2 ? "make it with: moat pki server <host>"
                            : "make it with: moat pki crl");
            goto done;
        }
    }
    if (cli_mkdir_p(o.out, 0755) != CLI_OK || cli_abspath(o.out, out_abs, sizeof(out_abs)) != CLI_OK ||
        cli_path(conf_path, sizeof(conf_path), out_abs, "mosquitto.conf") != CLI_OK ||
        cli_path(acl_path, sizeof(acl_path), out_abs, "acl") != CLI_OK ||
        cli_path(data, sizeof(data), out_abs, "data") != CLI_OK)
        goto done;
    if (strpbrk(pki_abs, " \t\r\n#") != NULL || strpbrk(out_abs, " \t\r\n#") != NULL) {
        cli_error("broker-config: mosquitto.conf cannot hold paths with spaces or '#': %s",
                  strpbrk(pki_abs, " \t\r\n#") != NULL ? pki_abs : out_abs);
        goto done;
    }

    acl_text(&acl, &p, now, &n_ops);

    char iso[21];
    cli_time_iso(now, iso);
    add(&conf,
        "# Mosquitto 2.0 configuration for moat, written by `moat broker-config` at %s.\n"
        "# PKI: %s (broker certificate for %s)\n"
        "# Start: mosquitto -c %s\n"
        "\n"
        "# Global settings (per_listener_settings false: they apply to every listener).\n"
        "per_listener_settings false\n"
        "allow_anonymous false\n"
        "acl_file %s\n",
        iso, pki_abs, host, conf_path, acl_path);
    if (o.persistence)
        add(&conf, "persistence true\npersistence_location %s/\n", data);
    else
        add(&conf, "persistence false\n");
    if (o.user != NULL)
        add(&conf, "user %s\n", o.user);
    add(&conf,
        "\n"
        "# Small MQTT packets (acknowledgements, update blocks) leave at once\n"
        "# instead of waiting for the peer's delayed ACK.\n"
        "set_tcp_nodelay true\n"
        "\n"
        "# The only listener: mutual TLS. No plain-text listener is opened.\n"
        "listener %lu%s%s\n"
        "protocol mqtt\n"
        "# Minimum version; TLS 1.3 is used when both sides have it.\n"
        "tls_version tlsv1.2\n"
        "ciphers " CIPHERS_TLS12 "\n"
        "cafile %s\n"
        "certfile %s\n"
        "keyfile %s\n"
        "crlfile %s\n"
        "require_certificate true\n"
        "use_identity_as_username true\n",
        port, o.bind != NULL ? " " : "", o.bind != NULL ? o.bind : "", ca, crt, key, crl);

    if (o.persistence && cli_mkdir_p(data, 0700) != CLI_OK)
        goto done;
    if (write_text(acl_path, &acl) != CLI_OK || write_text(conf_path, &conf) != CLI_OK)
        goto done;
    printf("wrote %s\nwrote %s (%d operator%s)\nstart the broker with: mosquitto -c %s\n",
           conf_path, acl_path, n_ops, n_ops == 1 ? "" : "s", conf_path);
    if (o.user == NULL && geteuid() == 0)
        fprintf(stderr,
                "moat: note: started as root, mosquitto switches to the user 'mosquitto' "
                "before it reads %s (0600): chown that file to mosquitto, or give "
                "--user\n",
                key);
    rc = CLI_OK;
done:
    free(conf.s);
    free(acl.s);
    pki_close(&p);
    return rc;
}
