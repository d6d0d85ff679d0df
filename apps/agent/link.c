/*
 * link.c - the agent's byte stream to the broker: TCP, then mutual TLS.
 *
 * Credentials are loaded once per configuration (ag_link_load), so a lost
 * link reconnects with TCP + TLS only, offering the saved TLS session.
 * The clock is the agent's time source (timesrc.c): moat_tls refuses to
 * start a handshake while it is not valid, and this file never calls
 * connect_start before the agent's state machine has seen a valid clock.
 * Verification is never optional: the broker's chain must lead to cafile
 * and its certificate must name mqttserver.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <mbedtls/oid.h>
#include <mbedtls/x509_crt.h>

#include "agent.h"

void ag_link_init(ag_link *l)
{
    memset(l, 0, sizeof *l);
    moat_link_init(&l->net);
    moat_tcp_set_readahead(&l->net.tcp, l->readahead, sizeof l->readahead);
}

/* The notAfter of our own certificate, for the status document. */
static bool cert_expiry(const char *path, int64_t *unix_s, char *cn, size_t cn_cap)
{
    mbedtls_x509_crt crt;
    const mbedtls_x509_time *t;
    const mbedtls_x509_name *n;
    struct tm tm;
    bool ok = false;

    mbedtls_x509_crt_init(&crt);
    if (mbedtls_x509_crt_parse_file(&crt, path) == 0) {
        t = &crt.valid_to;
        memset(&tm, 0, sizeof tm);
        tm.tm_year = t->year - 1900;
        tm.tm_mon = t->mon - 1;
        tm.tm_mday = t->day;
        tm.tm_hour = t->hour;
        tm.tm_min = t->min;
        tm.tm_sec = t->sec;
        *unix_s = (int64_t)timegm(&tm);
        cn[0] = '\0';
        for (n = &crt.subject; n != NULL; n = n->next) {
            if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
                snprintf(cn, cn_cap, "%.*s", (int)n->val.len, (const char *)n->val.p);
                break;
            }
        }
        ok = true;
    }
    mbedtls_x509_crt_free(&crt);
    return ok;
}

moat_err ag_link_load(ag_link *l, const moat_config *cfg, ag_time *clock)
{
    return ag_link_load_files(l, cfg, cfg->cafile, cfg->certfile, cfg->keyfile, clock);
}

/* The paths are read here only (mbedTLS keeps what it parsed), so they may
 * name a pending set that a commit renames later. */
moat_err ag_link_load_files(ag_link *l, const moat_config *cfg, const char *cafile,
                            const char *certfile, const char *keyfile, ag_time *clock)
{
    moat_err err;

    ag_link_unload(l);
    l->host = cfg->mqttserver;
    l->port = cfg->mqttport;
    memset(&l->tls_cfg, 0, sizeof l->tls_cfg);
    l->tls_cfg.ca.path = cafile;
    l->tls_cfg.cert.path = certfile;
    l->tls_cfg.key.path = keyfile;
    l->tls_cfg.time_now = ag_time_tls_now;
    l->tls_cfg.time_user = clock;
    err = moat_tls_init(&l->tls, &l->tls_cfg);
    if (err != MOAT_OK)
        return moat_link_note(&l->net, err, moat_tls_last_error(&l->tls));
    l->loaded = true;
    moat_link_use_tls(&l->net, &l->tls);
    ag_link_read_cert(l, certfile);
    return MOAT_OK;
}

void ag_link_read_cert(ag_link *l, const char *certfile)
{
    l->has_expiry = cert_expiry(certfile, &l->cert_expiry_s, l->cert_cn, sizeof l->cert_cn);
}

void ag_link_unload(ag_link *l)
{
    ag_link_close(l);
    if (l->loaded)
        moat_tls_free(&l->tls);
    l->loaded = false;
    moat_link_use_tls(&l->net, NULL); /* ag_link_open refuses until loaded */
}

/* The debug log says how the link came up. */
static moat_err opened(ag_link *l, moat_err err)
{
    if (err == MOAT_OK)
        ag_log(AG_LOG_DEBUG, "TLS is up with %s:%u: %s, %s", l->host, l->port,
               moat_tls_ciphersuite(&l->tls),
               moat_tls_resumed(&l->tls) ? "session resumed"
                                         : "full handshake, broker certificate verified");
    return err;
}

moat_err ag_link_open(ag_link *l)
{
    if (!l->loaded)
        return MOAT_ERR_STATE;
    return opened(l, moat_link_open(&l->net, l->host, l->port));
}

moat_err ag_link_poll(ag_link *l)
{
    if (!l->loaded)
        return MOAT_ERR_STATE;
    return opened(l, moat_link_poll(&l->net));
}

void ag_link_local_ip(const ag_link *l, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = moat_link_fd(&l->net);

    out[0] = '\0';
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)cap);
}

/* One try at close_notify: the socket closes right after either way. */
void ag_link_close(ag_link *l)
{
    moat_link_close(&l->net);
    l->draining = false;
}

/*
 * An orderly end after DISCONNECT: close_notify, then no more writes, then
 * read until the broker closes its side. Closing a socket that still holds
 * unread bytes (a late PUBACK) makes the kernel send a reset, and the
 * broker could then lose the DISCONNECT and publish the will.
 */
void ag_link_shutdown(ag_link *l)
{
    moat_link_shutdown(&l->net);
    l->draining = true;
}

bool ag_link_drained(ag_link *l)
{
    uint8_t buf[512];
    ssize_t n;
    int fd = moat_link_fd(&l->net);

    if (fd < 0)
        return true;
    while ((n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
        ;
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}
