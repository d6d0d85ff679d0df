/*
 * main.c - moat-server: the update server. HTTPS with mutual TLS on
 * libmicrohttpd (GnuTLS); the device is the CN of its client certificate,
 * which must chain to the fleet CA. It answers
 *
 *   GET <path>/firmware.bin?curimage=<v>  200/206 the next image, 304 current
 *   GET <path>/config.json                200/206 configs/<id>.json
 *
 * with Range (206) for resumed downloads, and nothing else: no directory
 * listing, no file named by the request. docs/SERVER.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include "catalog.h"

#define MAX_FILE (64u * 1024u)      /* a PEM file we load */
#define BLOCK 65536u                /* file bytes read per MHD callback */

/* Only TLS 1.2 and 1.3, ECDHE, AEAD ciphers: the project's rule. */
static const char PRIORITIES[] =
    "NONE:+VERS-TLS1.3:+VERS-TLS1.2:+ECDHE-ECDSA:+ECDHE-RSA:"
    "+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-CCM:+AES-256-CCM:"
    "+AEAD:+SIGN-ALL:+GROUP-ALL:+COMP-NULL:+CTYPE-X509:%SERVER_PRECEDENCE";

typedef struct server {
    const char *dir;
    char images[PATH_MAX];
    const char *prefix;
    const char *product;         /* default product, may be NULL */
    gnutls_x509_crl_t crl;       /* may be NULL */
    uint64_t cut_after;          /* fault injection for tests: 0 = off */
    bool cut_used;
    pthread_mutex_t lock;        /* cut_used and the log */
} server;

/* One request: what is served and what happened, for the log. */
typedef struct request {
    server *srv;
    int fd;
    uint64_t first;              /* file offset of the first byte served */
    uint64_t len;                /* bytes to serve */
    uint64_t sent;               /* handed to MHD */
    uint64_t cut;                /* > 0: stop after this many */
    int status;
    char id[SRV_ID_MAX + 1];
    char what[300];
} request;

static void logf_(server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(server *s, const char *fmt, ...)
{
    va_list ap;
    char line[1024];
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s->lock);
    fprintf(stdout, "moat-server: %s\n", line);
    fflush(stdout);
    pthread_mutex_unlock(&s->lock);
}

/* --------------------------------------------------------- identity -- */

/* Set *ses to the request's TLS session. */
static gnutls_session_t session_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    return ci != NULL ? (gnutls_session_t)ci->tls_session : NULL;
}

/*
 * The device id: the CN of a client certificate that chains to the CA, is
 * within its dates, may be used for client authentication, and is not
 * revoked. GnuTLS already refused the handshake without one (REQUIRE plus
 * verification, see on_connection); this checks again before anything is
 * served, so no path reaches a file without an identity.
 */
static int peer_identity(server *s, struct MHD_Connection *c, char *id, size_t cap,
                         char *why, size_t wcap)
{
    gnutls_session_t ses = session_of(c);
    gnutls_typed_vdata_st purpose;
    const gnutls_datum_t *peers;
    unsigned int status = 0, n = 0;
    gnutls_x509_crt_t crt;
    size_t sz = cap;
    int ret;

    if (ses == NULL) {
        snprintf(why, wcap, "no TLS session");
        return -1;
    }
    memset(&purpose, 0, sizeof purpose);
    purpose.type = GNUTLS_DT_KEY_PURPOSE_OID;
    purpose.data = (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT;
    ret = gnutls_certificate_verify_peers(ses, &purpose, 1, &status);
    if (ret < 0) {
        snprintf(why, wcap, "client certificate: %s", gnutls_strerror(ret));
        return -1;
    }
    if (status != 0) {
        gnutls_datum_t out = {NULL, 0};
        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
            snprintf(why, wcap, "client certificate refused: %s", (const char *)out.data);
            gnutls_free(out.data);
        } else {
            snprintf(why, wcap, "client certificate refused (status 0x%x)", status);
        }
        return -1;
    }
    peers = gnutls_certificate_get_peers(ses, &n);
    if (peers == NULL || n == 0) {
        snprintf(why, wcap, "no client certificate");
        return -1;
    }
    if (gnutls_x509_crt_init(&crt) < 0)
        return snprintf(why, wcap, "out of memory"), -1;
    ret = gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER);
    if (ret >= 0)
        ret = gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, id, &sz);
    if (ret >= 0 && s->crl != NULL && gnutls_x509_crt_check_revocation(crt, &s->crl, 1) != 0) {
        snprintf(why, wcap, "client certificate of '%.64s' is revoked", id);
        gnutls_x509_crt_deinit(crt);
        return -1;
    }
    gnutls_x509_crt_deinit(crt);
    if (ret < 0) {
        snprintf(why, wcap, "client certificate has no usable CN: %s", gnutls_strerror(ret));
        return -1;
    }
    if (!srv_valid_id(id)) {
        snprintf(why, wcap, "client certificate CN '%.64s' is not a device id", id);
        return -1;
    }
    return 0;
}

/* For the handshake's verify callback, which gets no context of ours. */
static server *the_server;

/*
 * In the handshake: the client certificate must chain to the CA, be in its
 * dates, allow client authentication and not be revoked. A refusal sends a
 * fatal alert that says why (unknown_ca, certificate_expired, ...), so the
 * device reports "the update server refused our certificate" instead of a
 * dropped connection it would retry.
 */
static int verify_client(gnutls_session_t ses)
{
    gnutls_typed_vdata_st purpose;
    unsigned int status = 0, n = 0;
    gnutls_alert_description_t alert = GNUTLS_A_BAD_CERTIFICATE;
    int ret;

    memset(&purpose, 0, sizeof purpose);
    purpose.type = GNUTLS_DT_KEY_PURPOSE_OID;
    purpose.data = (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT;
    ret = gnutls_certificate_verify_peers(ses, &purpose, 1, &status);
    if (ret >= 0 && status == 0 && the_server->crl != NULL) {
        const gnutls_datum_t *peers = gnutls_certificate_get_peers(ses, &n);
        gnutls_x509_crt_t crt;
        if (peers != NULL && n > 0 && gnutls_x509_crt_init(&crt) >= 0) {
            if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) < 0 ||
                gnutls_x509_crt_check_revocation(crt, &the_server->crl, 1) != 0)
                status = GNUTLS_CERT_REVOKED;
            gnutls_x509_crt_deinit(crt);
        }
    }
    if (ret >= 0 && status == 0)
        return 0;
    if (status & (GNUTLS_CERT_EXPIRED | GNUTLS_CERT_NOT_ACTIVATED))
        alert = GNUTLS_A_CERTIFICATE_EXPIRED;
    else if (status & GNUTLS_CERT_REVOKED)
        alert = GNUTLS_A_CERTIFICATE_REVOKED;
    else if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
        alert = GNUTLS_A_UNKNOWN_CA;
    else if (status & GNUTLS_CERT_PURPOSE_MISMATCH)
        alert = GNUTLS_A_UNSUPPORTED_CERTIFICATE;
    (void)gnutls_alert_send(ses, GNUTLS_AL_FATAL, alert);
    return -1;
}

/* Before the handshake: a client certificate is required and verified in
 * the handshake, so a client without a valid one never gets past TLS. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    gnutls_session_t ses;
    (void)cls;
    (void)socket_context;
    if (toe != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    ses = session_of(c);
    if (ses == NULL)
        return;
    gnutls_certificate_server_set_request(ses, GNUTLS_CERT_REQUIRE);
    gnutls_session_set_verify_function(ses, verify_client);
}

/* ---------------------------------------------------------- responses -- */

static enum MHD_Result reply_text(struct MHD_Connection *c, request *r, int status,
                                  const char *text)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    r->status = status;
    ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static ssize_t read_file(void *cls, uint64_t pos, char *buf, size_t max)
{
    request *r = cls;
    uint64_t left;
    ssize_t n;

    if (pos >= r->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    left = r->len - pos;
    if (r->cut > 0) {
        if (pos >= r->cut)
            return MHD_CONTENT_READER_END_WITH_ERROR; /* the injected break */
        if (left > r->cut - pos)
            left = r->cut - pos;
    }
    if (max > left)
        max = (size_t)left;
    do
        n = pread(r->fd, buf, max, (off_t)(r->first + pos));
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    r->sent = pos + (uint64_t)n;
    return n;
}

/*
 * Serve an open regular file (fd, taken) with Range and If-Range. etag
 * identifies this version of the file, so a resumed download never mixes
 * two versions: If-Range with another ETag gets the whole new file.
 */
static enum MHD_Result serve_file(struct MHD_Connection *c, request *r, int fd, uint64_t size,
                                  const char *etag, const char *type, bool head)
{
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    const char *if_range =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_RANGE);
    struct MHD_Response *resp;
    uint64_t first = 0, last = size ? size - 1 : 0;
    srv_range rg = SRV_RANGE_NONE;
    char cr[96];
    enum MHD_Result ret;

    if (range != NULL && (if_range == NULL || strcmp(if_range, etag) == 0))
        rg = srv_parse_range(range, size, &first, &last);
    if (rg == SRV_RANGE_UNSATISFIABLE) {
        close(fd);
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (resp == NULL)
            return MHD_NO;
        snprintf(cr, sizeof cr, "bytes */%" PRIu64, size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        r->status = MHD_HTTP_RANGE_NOT_SATISFIABLE;
        ret = MHD_queue_response(c, MHD_HTTP_RANGE_NOT_SATISFIABLE, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    r->fd = fd;
    r->first = first;
    r->len = size == 0 ? 0 : last - first + 1;
    if (head) {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else {
        pthread_mutex_lock(&r->srv->lock);
        if (r->srv->cut_after > 0 && !r->srv->cut_used && r->len > r->srv->cut_after) {
            r->srv->cut_used = true;
            r->cut = r->srv->cut_after;
        }
        pthread_mutex_unlock(&r->srv->lock);
        resp = MHD_create_response_from_callback(r->len, BLOCK, read_file, r, NULL);
    }
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (rg == SRV_RANGE_OK) {
        snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last, size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        r->status = MHD_HTTP_PARTIAL_CONTENT;
    } else {
        r->status = MHD_HTTP_OK;
    }
    ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Open dir/name for serving: a regular file, no links followed. */
static int open_regular(const char *path, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        errno = EISDIR;
        return -1;
    }
    return fd;
}

static enum MHD_Result firmware(struct MHD_Connection *c, request *r, bool head)
{
    server *s = r->srv;
    const char *cur = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "curimage");
    char product[MOAT_OTA_PRODUCT_MAX + 1], why[300], path[PATH_MAX + SRV_NAME_MAX], etag[80];
    srv_image img;
    struct stat st;
    int fd;

    if (srv_device_product(s->dir, r->id, s->product, product, why, sizeof why) != 0) {
        snprintf(r->what, sizeof r->what, "%s", why);
        return reply_text(c, r, MHD_HTTP_NOT_FOUND, "no product known for this device\n");
    }
    switch (srv_pick_image(s->images, product, cur, &img, why, sizeof why)) {
    case SRV_PICK_IMAGE:
        break;
    case SRV_PICK_CURRENT:
        snprintf(r->what, sizeof r->what, "%s", why);
        return reply_text(c, r, MHD_HTTP_NOT_MODIFIED, "");
    case SRV_PICK_BAD_CURIMAGE:
        snprintf(r->what, sizeof r->what, "%s", why);
        return reply_text(c, r, MHD_HTTP_BAD_REQUEST, "curimage is not a version\n");
    default:
        snprintf(r->what, sizeof r->what, "%s", why);
        return reply_text(c, r, MHD_HTTP_NOT_FOUND, "no image for this product\n");
    }
    snprintf(path, sizeof path, "%s/%s", s->images, img.name);
    fd = open_regular(path, &st);
    if (fd < 0 || (uint64_t)st.st_size != img.size || (uint64_t)st.st_ino != img.inode) {
        if (fd >= 0)
            close(fd);
        snprintf(r->what, sizeof r->what, "image %s changed while being chosen", img.name);
        return reply_text(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "try again\n");
    }
    snprintf(r->what, sizeof r->what, "%s", why);
    srv_etag(img.size, img.mtime_ns, img.inode, etag, sizeof etag);
    return serve_file(c, r, fd, img.size, etag, "application/octet-stream", head);
}

static enum MHD_Result config(struct MHD_Connection *c, request *r, bool head)
{
    char path[PATH_MAX + 2 * SRV_ID_MAX], etag[80];
    struct stat st;
    int fd;

    snprintf(path, sizeof path, "%s/configs/%s.json", r->srv->dir, r->id);
    fd = open_regular(path, &st);
    if (fd < 0) {
        snprintf(r->what, sizeof r->what, "no config: %.200s: %s", path, strerror(errno));
        return reply_text(c, r, MHD_HTTP_NOT_FOUND, "no config for this device\n");
    }
    snprintf(r->what, sizeof r->what, "config %.200s", path);
    srv_etag((uint64_t)st.st_size,
             (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, (uint64_t)st.st_ino,
             etag, sizeof etag);
    return serve_file(c, r, fd, (uint64_t)st.st_size, etag, "application/json", head);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    server *s = cls;
    request *r = *con_cls;
    char why[300];
    bool head;
    (void)version;
    (void)upload_data;

    if (r == NULL) {
        r = calloc(1, sizeof *r);
        if (r == NULL)
            return MHD_NO;
        r->srv = s;
        r->fd = -1;
        *con_cls = r;
        snprintf(r->what, sizeof r->what, "-");
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* a body on a GET: ignored */
        return MHD_YES;
    }
    if (peer_identity(s, c, r->id, sizeof r->id, why, sizeof why) != 0) {
        snprintf(r->id, sizeof r->id, "-");
        snprintf(r->what, sizeof r->what, "%s", why);
        return reply_text(c, r, MHD_HTTP_FORBIDDEN, "a valid client certificate is required\n");
    }
    head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    if (!head && strcmp(method, MHD_HTTP_METHOD_GET) != 0)
        return reply_text(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
    switch (srv_route_path(s->prefix, url)) {
    case SRV_ROUTE_FIRMWARE:
        return firmware(c, r, head);
    case SRV_ROUTE_CONFIG:
        return config(c, r, head);
    case SRV_ROUTE_BAD:
        snprintf(r->what, sizeof r->what, "refused path");
        return reply_text(c, r, MHD_HTTP_BAD_REQUEST, "bad path\n");
    default:
        return reply_text(c, r, MHD_HTTP_NOT_FOUND, "not found\n");
    }
}

/* One log line per request, with the bytes actually handed out. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    server *s = cls;
    request *r = *con_cls;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char addr[64] = "?";
    const char *range, *if_range;
    if (r == NULL)
        return;
    if (ci != NULL && ci->client_addr != NULL) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, addr,
                      sizeof addr);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                      addr, sizeof addr);
    }
    range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    if_range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_RANGE);
    logf_(s,
          "%s %s status=%d range=%s if-range=%s first=%" PRIu64 " sent=%" PRIu64
          " of=%" PRIu64 "%s: %s",
          addr, r->id, r->status, range != NULL ? range : "-", if_range != NULL ? if_range : "-",
          r->first, r->sent, r->len,
          toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection broken)", r->what);
    if (r->fd >= 0)
        close(r->fd);
    free(r);
    *con_cls = NULL;
}

/* MHD's own errors (handshake failures and the like) go to the log too. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    server *s = cls;
    char line[512];
    size_t n;
    vsnprintf(line, sizeof line, fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    logf_(s, "tls: %s", line);
}

/* ---------------------------------------------------------------- main -- */

static char *load(const char *path, const char *what)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;
    if (f == NULL) {
        fprintf(stderr, "moat-server: cannot read %s %s: %s\n", what, path, strerror(errno));
        return NULL;
    }
    buf = malloc(MAX_FILE + 1);
    if (buf == NULL) {
        fclose(f);
        return NULL;
    }
    n = fread(buf, 1, MAX_FILE + 1, f);
    fclose(f);
    if (n == 0 || n > MAX_FILE) {
        fprintf(stderr, "moat-server: %s %s is empty or over %u bytes\n", what, path, MAX_FILE);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: moat-server --dir DIR --cert FILE --key FILE --ca FILE [options]\n"
            "  --dir DIR         images/, configs/<id>.json, devices/<id>.json\n"
            "  --cert FILE       server certificate (PEM), e.g. pki/servers/<host>.crt\n"
            "  --key FILE        its private key (PEM)\n"
            "  --ca FILE         the fleet CA: clients must present a certificate it signed\n"
            "  --crl FILE        refuse certificates this CRL revokes (e.g. pki/crl.pem)\n"
            "  --port N          TCP port (default 8443; 0 picks a free one)\n"
            "  --bind ADDR       IPv4 or IPv6 address to listen on (default all)\n"
            "  --path PREFIX     the devices' downloadpath (default /)\n"
            "  --product ID      product of devices without devices/<id>.json\n"
            "  --threads N       worker threads (default 4)\n"
            "  --port-file FILE  write the port there once listening\n"
            "  --cut-after N     fault injection for tests: break the first download\n"
            "                    longer than N bytes after N bytes\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},   {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},   {"ca", required_argument, NULL, 'a'},
        {"crl", required_argument, NULL, 'r'},   {"port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'b'},  {"path", required_argument, NULL, 'P'},
        {"product", required_argument, NULL, 'o'}, {"threads", required_argument, NULL, 't'},
        {"port-file", required_argument, NULL, 'f'}, {"cut-after", required_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
    const char *cert = NULL, *key = NULL, *ca = NULL, *crl_path = NULL, *bind_addr = NULL;
    const char *port_file = NULL;
    unsigned long port = 8443, threads = 4;
    char *cert_pem, *key_pem, *ca_pem, *end;
    struct sockaddr_storage ss;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *di;
    struct sigaction sa;
    sigset_t stop_set;
    server s;
    int o, sig;

    memset(&s, 0, sizeof s);
    s.prefix = "/";
    pthread_mutex_init(&s.lock, NULL);
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'd': s.dir = optarg; break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'a': ca = optarg; break;
        case 'r': crl_path = optarg; break;
        case 'b': bind_addr = optarg; break;
        case 'P': s.prefix = optarg; break;
        case 'o': s.product = optarg; break;
        case 'f': port_file = optarg; break;
        case 'p':
            errno = 0;
            port = strtoul(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || port > 65535) {
                fprintf(stderr, "moat-server: --port must be 0..65535\n");
                return 2;
            }
            break;
        case 't':
            threads = strtoul(optarg, &end, 10);
            if (*end != '\0' || threads < 1 || threads > 64) {
                fprintf(stderr, "moat-server: --threads must be 1..64\n");
                return 2;
            }
            break;
        case 'x':
            s.cut_after = strtoull(optarg, &end, 10);
            if (*end != '\0' || s.cut_after == 0) {
                fprintf(stderr, "moat-server: --cut-after must be a positive byte count\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (s.dir == NULL || cert == NULL || key == NULL || ca == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (s.product != NULL && (s.product[0] == '\0' || strlen(s.product) > MOAT_OTA_PRODUCT_MAX)) {
        fprintf(stderr, "moat-server: --product must have 1 to %u characters\n",
                MOAT_OTA_PRODUCT_MAX);
        return 2;
    }
    if (s.prefix[0] != '/') {
        fprintf(stderr, "moat-server: --path must start with '/'\n");
        return 2;
    }
    snprintf(s.images, sizeof s.images, "%s/images", s.dir);

    cert_pem = load(cert, "certificate");
    key_pem = load(key, "key");
    ca_pem = load(ca, "CA certificate");
    if (cert_pem == NULL || key_pem == NULL || ca_pem == NULL)
        return 1;
    if (crl_path != NULL) {
        char *crl_pem = load(crl_path, "CRL");
        gnutls_datum_t dat;
        gnutls_x509_crt_t cacrt;
        unsigned int verify = 1;
        if (crl_pem == NULL)
            return 1;
        dat.data = (unsigned char *)crl_pem;
        dat.size = (unsigned int)strlen(crl_pem);
        if (gnutls_x509_crl_init(&s.crl) < 0 ||
            gnutls_x509_crl_import(s.crl, &dat, GNUTLS_X509_FMT_PEM) < 0) {
            fprintf(stderr, "moat-server: %s is not a PEM CRL\n", crl_path);
            return 1;
        }
        dat.data = (unsigned char *)ca_pem;
        dat.size = (unsigned int)strlen(ca_pem);
        if (gnutls_x509_crt_init(&cacrt) < 0 ||
            gnutls_x509_crt_import(cacrt, &dat, GNUTLS_X509_FMT_PEM) < 0 ||
            gnutls_x509_crl_verify(s.crl, &cacrt, 1, 0, &verify) < 0 || verify != 0) {
            fprintf(stderr, "moat-server: CRL %s is not signed by the CA %s\n", crl_path, ca);
            return 1;
        }
        gnutls_x509_crt_deinit(cacrt);
        free(crl_pem);
    }

    memset(&ss, 0, sizeof ss);
    if (bind_addr != NULL) {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, bind_addr, &a4->sin_addr) == 1) {
            a4->sin_family = AF_INET;
            a4->sin_port = htons((uint16_t)port);
        } else if (inet_pton(AF_INET6, bind_addr, &a6->sin6_addr) == 1) {
            a6->sin6_family = AF_INET6;
            a6->sin6_port = htons((uint16_t)port);
        } else {
            fprintf(stderr, "moat-server: --bind needs an IPv4 or IPv6 address, not '%s'\n",
                    bind_addr);
            return 2;
        }
    }

    /* SIGINT and SIGTERM are blocked in every thread (MHD's inherit the
     * mask) and taken by sigwait() below. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);

    the_server = &s;
    d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS | MHD_USE_ERROR_LOG |
            (bind_addr != NULL && ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
        (uint16_t)port, NULL, NULL, on_request, &s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, &s,
        MHD_OPTION_HTTPS_MEM_CERT, cert_pem, MHD_OPTION_HTTPS_MEM_KEY, key_pem,
        MHD_OPTION_HTTPS_MEM_TRUST, ca_pem, MHD_OPTION_HTTPS_PRIORITIES, PRIORITIES,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, &s, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, &s,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned int)threads, MHD_OPTION_SIGPIPE_HANDLED_BY_APP, (int)1,
        bind_addr != NULL ? MHD_OPTION_SOCK_ADDR : MHD_OPTION_END, (struct sockaddr *)&ss,
        MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "moat-server: cannot start HTTPS on port %lu (in use, or the "
                        "certificate, key or CA does not load)\n", port);
        return 1;
    }
    di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (di != NULL)
        port = di->port;
    if (port_file != NULL) {
        char tmp[PATH_MAX];
        FILE *pf;
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        pf = fopen(tmp, "w");
        if (pf == NULL || fprintf(pf, "%lu\n", port) < 0 || fclose(pf) != 0 ||
            rename(tmp, port_file) != 0) {
            fprintf(stderr, "moat-server: cannot write %s: %s\n", port_file, strerror(errno));
            MHD_stop_daemon(d);
            return 1;
        }
    }
    logf_(&s, "listening on %s port %lu, serving %s with path %s", bind_addr ? bind_addr : "*",
          port, s.dir, s.prefix);

    while (sigwait(&stop_set, &sig) != 0)
        ;

    MHD_stop_daemon(d);
    logf_(&s, "stopped");
    if (s.crl != NULL)
        gnutls_x509_crl_deinit(s.crl);
    free(cert_pem);
    free(key_pem);
    free(ca_pem);
    return 0;
}
