/*
 * cert_rotate.c - `moat cert rotate <id>`: give a device a new certificate
 * for a key it makes itself (docs/OTA.md, "Credential rotation").
 *
 *   1. publish the `csr` command on moat/<id>/cmd/csr;
 *   2. the device makes a new key pair, keeps the private key, and answers
 *      on moat/<id>/result/csr with {"ok":true,"csr":"<PEM>"};
 *   3. sign the request with the PKI exactly as `moat pki sign` does
 *      (its self-signature checked, only its key and CN used);
 *   4. publish the certificate with the `cert` command;
 *   5. the device reconnects with the new key and certificate and answers
 *      on moat/<id>/result/cert once it has committed them (the broker
 *      accepted them) or gone back to the old ones (it did not).
 *
 * No private key is ever sent: only a CSR and a certificate cross the
 * network.
 */
#include "op_mqtt.h"
#include "pki.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moat/json.h"
#include "moat/timer.h"

#define ROTATE_DEFAULT_TIMEOUT_S 60u
#define ROTATE_PEM_MAX 8192u

static const char usage[] =
    "usage: moat cert rotate <id> [options]\n"
    "Rotates device <id>'s key and certificate: the device makes a new key pair and\n"
    "sends a certificate request (the `csr` command), this command signs it with the\n"
    "PKI's CA like `moat pki sign`, and sends the certificate back (the `cert`\n"
    "command). The device tries it on a new connection and keeps it only if the\n"
    "broker accepts it; otherwise it goes back to its old credentials.\n"
    "  --days N             validity of the new certificate (default 730)\n"
    "  --timeout S          wait at most S seconds for each answer (default 60)\n"
    "  --passphrase-file F  CA key passphrase: the first line of F\n"
    "  --passphrase-env V   CA key passphrase: the environment variable V\n";

typedef struct rotate {
    const char *id;
    char csr_topic[200], cert_topic[200];
    bool have_csr, have_cert;
    bool ok;
    char text[ROTATE_PEM_MAX]; /* the CSR, or the error */
} rotate;

static rotate R;

/* {"ok":true,"csr":"..."} / {"ok":true} / {"ok":false,"error":"..."} */
static void read_result(rotate *r, const moat_mqtt_event *ev, const char *member)
{
    moat_json_tok tok[16];
    moat_json doc;
    bool ok = false;
    int i;

    r->text[0] = '\0';
    r->ok = false;
    if (moat_json_parse(&doc, (const char *)ev->payload, ev->len, tok, 16, NULL) != MOAT_OK ||
        moat_json_get_bool(&doc, moat_json_find(&doc, 0, "ok"), &ok) != MOAT_OK) {
        snprintf(r->text, sizeof r->text, "the device's answer is not a result document: %.*s",
                 (int)(ev->len < 200 ? ev->len : 200), (const char *)ev->payload);
        return;
    }
    if (!ok) {
        i = moat_json_find(&doc, 0, "error");
        if (moat_json_get_string(&doc, i, r->text, sizeof r->text, NULL) != MOAT_OK)
            snprintf(r->text, sizeof r->text, "no reason given");
        return;
    }
    if (member != NULL) {
        i = moat_json_find(&doc, 0, member);
        if (moat_json_get_string(&doc, i, r->text, sizeof r->text, NULL) != MOAT_OK) {
            snprintf(r->text, sizeof r->text, "the device's answer has no '%s'", member);
            return;
        }
    }
    r->ok = true;
}

static void on_message(void *app, const moat_mqtt_event *ev)
{
    rotate *r = app;

    if (ev->retain)
        return; /* results are never retained; an old one is not this answer */
    if (ev->topic.len == strlen(r->csr_topic) &&
        memcmp(ev->topic.data, r->csr_topic, ev->topic.len) == 0 && !r->have_csr) {
        read_result(r, ev, "csr");
        r->have_csr = true;
    } else if (ev->topic.len == strlen(r->cert_topic) &&
               memcmp(ev->topic.data, r->cert_topic, ev->topic.len) == 0 && r->have_csr &&
               !r->have_cert) {
        read_result(r, ev, NULL);
        r->have_cert = true;
    }
}

static int publish(op_mqtt *m, const char *topic, const void *p, size_t len)
{
    for (int i = 0; i < 500; i++) {
        if (op_publish(m, topic, p, len, 1) == MOAT_OK)
            return CLI_OK;
        if (op_step(m, 10) != CLI_OK)
            return CLI_FAIL;
    }
    cli_error("cannot publish on %s", topic);
    return CLI_FAIL;
}

static int wait_for(op_mqtt *m, const bool *flag, unsigned long timeout_s, const char *what,
                    const char *id)
{
    uint32_t start = moat_clock_ms();

    while (!*flag) {
        if (op_step(m, 200) != CLI_OK)
            return CLI_FAIL;
        if (moat_elapsed(start, moat_clock_ms()) >= timeout_s * 1000u) {
            cli_error("cert rotate: device %s did not answer the %s command within %lu s (is it "
                      "online?)",
                      id, what, timeout_s);
            return CLI_FAIL;
        }
    }
    return CLI_OK;
}

/* Sign the CSR with `moat pki sign`, the PKI's one signing path. */
static int sign(const rotate *r, const op_opts *o, const char *days, const char *pass_file,
                const char *pass_env, char *crt_path, size_t cap)
{
    char tmp[] = "/tmp/moat-csr-XXXXXX";
    char *args[16];
    int n = 0, fd, rc;
    size_t len = strlen(r->text);

    fd = mkstemp(tmp);
    if (fd < 0) {
        cli_error("cannot write the request to %s: %s", tmp, strerror(errno));
        return CLI_FAIL;
    }
    if (write(fd, r->text, len) != (ssize_t)len || close(fd) != 0) {
        cli_error("cannot write the request to %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return CLI_FAIL;
    }
    args[n++] = "sign";
    args[n++] = tmp;
    args[n++] = "--id";
    args[n++] = (char *)r->id;
    if (o->dir != NULL) {
        args[n++] = "--dir";
        args[n++] = (char *)o->dir;
    }
    if (days != NULL) {
        args[n++] = "--days";
        args[n++] = (char *)days;
    }
    if (pass_file != NULL) {
        args[n++] = "--passphrase-file";
        args[n++] = (char *)pass_file;
    }
    if (pass_env != NULL) {
        args[n++] = "--passphrase-env";
        args[n++] = (char *)pass_env;
    }
    args[n] = NULL;
    rc = cli_pki_main(n, args);
    unlink(tmp);
    if (rc != CLI_OK)
        return CLI_FAIL;
    if (snprintf(crt_path, cap, "%s/devices/%s.crt", pki_dir_choice(o->dir), r->id) >= (int)cap) {
        cli_error("path too long for the certificate of %s", r->id);
        return CLI_FAIL;
    }
    return CLI_OK;
}

int cli_cert_main(int argc, char **argv)
{
    rotate *r = &R;
    op_opts o;
    op_mqtt *m;
    static op_mqtt session;
    const char *days = NULL, *timeout_s = NULL, *pass_file = NULL, *pass_env = NULL, *pos[1];
    const char *filters[2];
    unsigned long timeout = ROTATE_DEFAULT_TIMEOUT_S;
    char topic[200], crt_path[PATH_MAX];
    unsigned char *pem = NULL;
    size_t pem_len = 0;
    int npos, rc;

    if (argc < 1 || strcmp(argv[0], "rotate") != 0) {
        if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
            fputs(usage, stdout);
            return CLI_OK;
        }
        cli_error("cert: the command is `moat cert rotate <id>` (see moat cert rotate --help)");
        return CLI_USAGE;
    }
    memset(&o, 0, sizeof o);
    const cli_opt opts[] = {OP_CLI_OPTS(o),
                            {"days", CLI_OPT_VALUE, &days},
                            {"timeout", CLI_OPT_VALUE, &timeout_s},
                            {"passphrase-file", CLI_OPT_VALUE, &pass_file},
                            {"passphrase-env", CLI_OPT_VALUE, &pass_env},
                            {NULL, CLI_OPT_FLAG, NULL}};
    rc = cli_parse(argc - 1, argv + 1, opts, pos, 1, &npos, "cert rotate");
    if (rc == CLI_HELP) {
        fputs(usage, stdout);
        fputs(op_usage_conn, stdout);
        return CLI_OK;
    }
    if (rc != CLI_OK)
        return rc;
    if (npos != 1 || !cli_valid_id(pos[0])) {
        cli_error("cert rotate: give a valid device id (1-64 of A-Z a-z 0-9 _ -)");
        return CLI_USAGE;
    }
    if (timeout_s != NULL && cli_parse_uint(timeout_s, 1, 86400, "--timeout", &timeout) != CLI_OK)
        return CLI_USAGE;
    memset(r, 0, sizeof *r);
    r->id = pos[0];
    snprintf(r->csr_topic, sizeof r->csr_topic, "moat/%s/result/csr", r->id);
    snprintf(r->cert_topic, sizeof r->cert_topic, "moat/%s/result/cert", r->id);
    m = &session;
    rc = op_resolve(m, &o);
    if (rc != CLI_OK)
        return rc;
    filters[0] = r->csr_topic;
    filters[1] = r->cert_topic;
    rc = CLI_FAIL;
    if (op_connect(m, filters, 2, on_message, r, 15000) != CLI_OK)
        goto out;
    snprintf(topic, sizeof topic, "moat/%s/cmd/csr", r->id);
    if (publish(m, topic, "", 0) != CLI_OK ||
        wait_for(m, &r->have_csr, timeout, "csr", r->id) != CLI_OK)
        goto out;
    if (!r->ok) {
        cli_error("cert rotate: device %s could not make a request: %s", r->id, r->text);
        goto out;
    }
    printf("device %s made a new key and sent a certificate request\n", r->id);
    fflush(stdout);
    if (sign(r, &o, days, pass_file, pass_env, crt_path, sizeof crt_path) != CLI_OK ||
        cli_read_file(crt_path, &pem, &pem_len) != CLI_OK)
        goto out;
    snprintf(topic, sizeof topic, "moat/%s/cmd/cert", r->id);
    if (publish(m, topic, pem, pem_len) != CLI_OK ||
        wait_for(m, &r->have_cert, timeout, "cert", r->id) != CLI_OK)
        goto out;
    if (!r->ok) {
        cli_error("cert rotate: device %s kept its old credentials: %s", r->id, r->text);
        goto out;
    }
    printf("device %s now uses its new key and certificate %s (the broker accepted them)\n",
           r->id, crt_path);
    rc = CLI_OK;
out:
    cli_free_file(pem, pem_len);
    op_close(m);
    return rc;
}
