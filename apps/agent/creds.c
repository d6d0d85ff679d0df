/*
 * creds.c - credential rotation in moat-agent (docs/OTA.md, "Credential
 * rotation"): the csr, cert, ca and key commands over the credential store
 * (moat/credstore.h), and the trial of a new set on a new connection.
 *
 *   csr    the device makes a new P-256 key (kept in the pending set, mode
 *          0600, never sent anywhere) and answers with a CSR for it.
 *   cert   a certificate for the pending key (or the current one), and
 *   ca     new CA certificates: staged, then tried. Once the PUBACK of the
 *          command is out, the agent closes the link in order and connects
 *          with the pending set. The broker accepting it (CONNACK, SUBACK)
 *          commits it; any failure before that rolls it back, and the agent
 *          connects with the old set, which was never touched. The result
 *          ({"ok":true}, or {"ok":false,"error":"the broker did not accept
 *          ..."}) goes out once the agent is online again either way.
 *   key    a private key for tools made for the seed: staged, waiting for
 *          its certificate.
 *
 * A restart during a trial rolls the trial back (the store's trial mark),
 * and a power cut during a commit is finished at the next start (its
 * journal), so the files always hold one whole set.
 */
#include <stdio.h>
#include <string.h>

#include "agent.h"

typedef struct cr_state {
    moat_credstore cs;
    bool open;
    char why[MOAT_CRED_ERROR_MAX + MOAT_CRED_PATH_MAX + 32]; /* why the store is not open */
    char dir[MOAT_CRED_PATH_MAX];
    bool switch_due;     /* try the pending set once the command's PUBACK is out */
    bool trying;         /* the link uses the pending set, not yet accepted */
    char cmd[8];         /* "cert" or "ca": the command whose result is due */
    bool result_due;
    bool result_ok;
    char result_error[MOAT_STATUS_ERROR_MAX + 200];
} cr_state;

static cr_state C;

static void store_dir(const agent *a, char *out, size_t cap)
{
    const char *key = a->cfg.keyfile;
    const char *slash = strrchr(key, '/');

    if (a->opts.credstore != NULL)
        snprintf(out, cap, "%s", a->opts.credstore);
    else if (slash == NULL)
        snprintf(out, cap, "credstore");
    else if (slash == key)
        snprintf(out, cap, "/credstore");
    else
        snprintf(out, cap, "%.*s/credstore", (int)(slash - key), key);
}

void ag_creds_init(agent *a)
{
    moat_cred_recovery r;

    memset(&C, 0, sizeof C);
    store_dir(a, C.dir, sizeof C.dir);
    if (moat_credstore_open(&C.cs, C.dir, a->cfg.cafile, a->cfg.certfile, a->cfg.keyfile) !=
        MOAT_OK) {
        snprintf(C.why, sizeof C.why, "credential store %s: %s", C.dir,
                 moat_credstore_error(&C.cs));
        ag_log(AG_LOG_WARN, "%s: credential rotation is off", C.why);
        return;
    }
    C.open = true;
    r = moat_credstore_recovery(&C.cs);
    if (r == MOAT_CRED_ROLLED_FORWARD)
        ag_log(AG_LOG_WARN, "credentials: a commit cut short by a restart was completed: "
               "the new set is in force");
    else if (r == MOAT_CRED_ROLLED_BACK)
        ag_log(AG_LOG_WARN, "credentials: a trial cut short by a restart was abandoned: "
               "the old set is in force");
}

void ag_creds_paths(agent *a, const char **ca, const char **cert, const char **key)
{
    bool pending = C.open && C.trying;

    if (!C.open) {
        *ca = a->cfg.cafile;
        *cert = a->cfg.certfile;
        *key = a->cfg.keyfile;
        return;
    }
    *ca = moat_credstore_path(&C.cs, MOAT_CRED_CA, pending);
    *cert = moat_credstore_path(&C.cs, MOAT_CRED_CERT, pending);
    *key = moat_credstore_path(&C.cs, MOAT_CRED_KEY, pending);
}

bool ag_creds_trying(void)
{
    return C.trying;
}

bool ag_creds_busy(void)
{
    return C.trying || C.switch_due;
}

static void publish_result(agent *a, uint32_t now_ms)
{
    if (!C.result_due)
        return;
    C.result_due = false;
    if (C.result_ok)
        ag_publish_result(a, C.cmd, "{\"ok\":true}", 11, now_ms);
    else
        ag_result_error(a, C.cmd, C.result_error, now_ms);
}

void ag_creds_online(agent *a, uint32_t now_ms)
{
    moat_err e;

    if (C.trying) {
        C.trying = false;
        e = moat_credstore_commit(&C.cs);
        C.result_due = true;
        C.result_ok = e == MOAT_OK;
        if (e == MOAT_OK) {
            ag_log(AG_LOG_INFO, "credentials: the broker accepted the new set: committed "
                   "(%s)", a->cfg.certfile);
            ag_link_read_cert(&a->link, a->cfg.certfile);
            if (strncmp(a->error, "credentials", 11) == 0)
                a->error[0] = '\0';
        } else {
            snprintf(C.result_error, sizeof C.result_error, "the broker accepted the new "
                     "credentials, but the commit failed: %s", moat_credstore_error(&C.cs));
            ag_set_error(a, AG_LOG_ERROR, "credentials: %s", C.result_error);
        }
    }
    publish_result(a, now_ms);
}

bool ag_creds_attempt_failed(agent *a, const char *words, uint32_t now_ms)
{
    moat_err e;

    (void)now_ms;
    if (!C.trying)
        return false;
    C.trying = false;
    e = moat_credstore_rollback(&C.cs);
    C.result_due = true;
    C.result_ok = false;
    snprintf(C.result_error, sizeof C.result_error,
             "the broker did not accept the new credentials (%s); back on the old ones%s%s",
             words, e != MOAT_OK ? ": " : "", e != MOAT_OK ? moat_credstore_error(&C.cs) : "");
    ag_set_error(a, AG_LOG_ERROR, "credentials: %s", C.result_error);
    return true;
}

void ag_creds_service(agent *a, uint32_t now_ms)
{
    if (!C.switch_due || a->phase != AG_PHASE_READY || !ag_agent_output_drained(a))
        return;
    C.switch_due = false;
    C.trying = true;
    ag_log(AG_LOG_INFO, "credentials: %s staged; connecting with the pending set to try it",
           C.cmd);
    ag_agent_relink(a, now_ms);
}

void ag_creds_status_members(moat_json_writer *w)
{
    if (C.trying || C.switch_due)
        moat_json_put_string(w, "credentials", "trial");
}

/* ---------------------------------------------------------- commands -- */

static bool store_ready(char *why, size_t cap)
{
    if (!C.open) {
        snprintf(why, cap, "%s", C.why);
        return false;
    }
    if (C.trying || C.switch_due) {
        snprintf(why, cap, "a new set of credentials is being tried: wait for its result");
        return false;
    }
    return true;
}

/* csr: a new key, and its request; the result carries the request. */
moat_err ag_cmd_csr(const moat_command *self, void *user, const uint8_t *payload, size_t len,
                    char *why, size_t cap)
{
    agent *a = user;
    static char csr[MOAT_CRED_CSR_MAX], doc[MOAT_CRED_CSR_MAX + 256];
    moat_json_writer w;
    size_t n = 0;

    (void)self, (void)payload, (void)len;
    if (!store_ready(why, cap))
        return MOAT_ERR_STATE;
    if (moat_credstore_make_csr(&C.cs, a->id, csr, sizeof csr, &n) != MOAT_OK) {
        snprintf(why, cap, "%s", moat_credstore_error(&C.cs));
        return MOAT_ERR_STATE;
    }
    ag_log(AG_LOG_INFO, "credentials: a new key is in the pending set; its CSR goes out "
           "(%zu bytes)", n);
    moat_json_writer_init(&w, doc, sizeof doc);
    moat_json_begin_object(&w, NULL);
    moat_json_put_bool(&w, "ok", true);
    moat_json_put_string_n(&w, "csr", csr, n);
    moat_json_end_object(&w);
    if (moat_json_finish(&w, &n) != MOAT_OK) {
        snprintf(why, cap, "the CSR does not fit the result");
        return MOAT_ERR_NO_SPACE;
    }
    ag_publish_result(a, "csr", doc, n, a->now_ms);
    return MOAT_ERR_WOULD_BLOCK; /* answered above */
}

/* cert, ca: stage and try; key: stage. */
moat_err ag_cmd_cred(const moat_command *self, void *user, const uint8_t *payload, size_t len,
                     char *why, size_t cap)
{
    agent *a = user;
    moat_cred_kind kind;
    moat_err e;

    if (strcmp(self->name, "cert") == 0)
        kind = MOAT_CRED_CERT;
    else if (strcmp(self->name, "ca") == 0)
        kind = MOAT_CRED_CA;
    else
        kind = MOAT_CRED_KEY;
    if (!store_ready(why, cap))
        return MOAT_ERR_STATE;
    if (len == 0) {
        snprintf(why, cap, "the payload is the new %s, PEM or DER",
                 kind == MOAT_CRED_KEY ? "private key" : kind == MOAT_CRED_CA
                                                              ? "CA certificate(s)"
                                                              : "device certificate");
        return MOAT_ERR_ARG;
    }
    e = moat_credstore_stage(&C.cs, kind, payload, len, a->id);
    if (e != MOAT_OK) {
        snprintf(why, cap, "%s", moat_credstore_error(&C.cs));
        return e;
    }
    if (kind == MOAT_CRED_KEY) {
        ag_log(AG_LOG_INFO, "credentials: a private key is staged; it waits for its "
               "certificate (cert)");
        return MOAT_OK;
    }
    e = moat_credstore_begin_trial(&C.cs);
    if (e != MOAT_OK) {
        snprintf(why, cap, "%s", moat_credstore_error(&C.cs));
        /* what was staged cannot be tried: drop it rather than keep a
         * set that never connects */
        moat_credstore_rollback(&C.cs);
        return e;
    }
    snprintf(C.cmd, sizeof C.cmd, "%s", self->name);
    C.switch_due = true;
    return MOAT_ERR_WOULD_BLOCK; /* the result comes after the trial */
}
