/*
 * fetch_client.c - the device side of the update server tests: one HTTPS
 * GET with moat_http_fetch (mutual TLS with moat_tls, resume by Range) into
 * a file, and a report line the test script reads.
 *
 * usage: fetch_client --host H --port P --ca CA --cert CRT --key KEY
 *                     --path PATH --out FILE [--resume] [--retry-ms N]
 *                     [--attempts N] [--max N] [--if-range ETAG]
 *
 * --resume continues FILE from its current size (Range), as an agent does
 * after a reboot. Prints on stdout:
 *   status=<code> delivered=<bytes> connections=<n> first=<offset of first body byte>
 *   restarts=<responses that went back to offset 0 after a Range request>
 *   etag=<the ETag of what was fetched, or ->
 * or "error: <words>" and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moat/http_fetch.h"
#include "moat/tls.h"

typedef struct out_file {
    int fd;
    uint64_t first;
    bool have_first;
    unsigned restarts;
    uint64_t resume_from;
    moat_tls *tls;
    char suite[64];           /* negotiated, seen while the session is open */
} out_file;

static moat_err on_start(void *user, const moat_http_get *g)
{
    out_file *o = user;
    uint64_t at = moat_http_body_offset(g);
    snprintf(o->suite, sizeof o->suite, "%s", moat_tls_ciphersuite(o->tls));
    if (moat_http_status(g) == 200 && at == 0 && o->resume_from > 0) {
        /* the server sent it all again: start the file over */
        if (ftruncate(o->fd, 0) != 0)
            return MOAT_ERR_IO;
        o->restarts++;
    }
    if (!o->have_first) {
        o->first = at;
        o->have_first = true;
    }
    return MOAT_OK;
}

static moat_err on_body(void *user, uint64_t offset, const uint8_t *data, size_t len)
{
    out_file *o = user;
    while (len > 0) {
        ssize_t n = pwrite(o->fd, data, len, (off_t)offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return MOAT_ERR_IO;
        data += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return MOAT_OK;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'}, {"port", required_argument, NULL, 'p'},
        {"ca", required_argument, NULL, 'a'},   {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},  {"path", required_argument, NULL, 'P'},
        {"out", required_argument, NULL, 'o'},  {"resume", no_argument, NULL, 'r'},
        {"retry-ms", required_argument, NULL, 'R'}, {"attempts", required_argument, NULL, 'A'},
        {"max", required_argument, NULL, 'm'},  {"if-range", required_argument, NULL, 'I'},
        {NULL, 0, NULL, 0}};
    const char *if_range = NULL;
    const char *host = NULL, *ca = NULL, *cert = NULL, *key = NULL, *path = NULL, *out = NULL;
    unsigned long port = 0, retry = 100, attempts = 5;
    unsigned long long max = 0;
    bool resume = false;
    moat_tls_config tc;
    moat_tls tls;
    moat_http_fetch_config fc;
    static moat_http_fetch f;
    out_file o;
    struct stat st;
    moat_err e;
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'H': host = optarg; break;
        case 'p': port = strtoul(optarg, NULL, 10); break;
        case 'a': ca = optarg; break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'P': path = optarg; break;
        case 'o': out = optarg; break;
        case 'r': resume = true; break;
        case 'R': retry = strtoul(optarg, NULL, 10); break;
        case 'A': attempts = strtoul(optarg, NULL, 10); break;
        case 'm': max = strtoull(optarg, NULL, 10); break;
        case 'I': if_range = optarg; break;
        default: return 2;
        }
    }
    if (host == NULL || port == 0 || port > 65535 || ca == NULL || cert == NULL ||
        key == NULL || path == NULL || out == NULL || attempts == 0 || attempts > 255) {
        fprintf(stderr, "usage: fetch_client --host H --port P --ca CA --cert CRT --key KEY "
                        "--path PATH --out FILE [--resume] [--retry-ms N] [--attempts N]\n");
        return 2;
    }

    memset(&o, 0, sizeof o);
    o.fd = open(out, O_WRONLY | O_CREAT | (resume ? 0 : O_TRUNC) | O_CLOEXEC, 0644);
    if (o.fd < 0 || fstat(o.fd, &st) != 0) {
        printf("error: cannot open %s: %s\n", out, strerror(errno));
        return 1;
    }
    o.resume_from = resume ? (uint64_t)st.st_size : 0;

    memset(&tc, 0, sizeof tc);
    tc.ca.path = ca;
    tc.cert.path = cert;
    tc.key.path = key;
    tc.time_now = moat_tls_os_time;
    tc.peer_name = "update server";
    e = moat_tls_init(&tls, &tc);
    if (e != MOAT_OK) {
        printf("error: %s\n", moat_tls_last_error(&tls));
        return 1;
    }

    memset(&fc, 0, sizeof fc);
    fc.tls = &tls;
    o.tls = &tls;
    fc.host = host;
    fc.port = (uint16_t)port;
    fc.path = path;
    fc.resume_from = o.resume_from;
    fc.if_range = if_range;
    fc.max_total = max;
    fc.on_body = on_body;
    fc.on_start = on_start;
    fc.user = &o;
    fc.attempts = (uint8_t)attempts;
    fc.retry_ms = (uint32_t)retry;
    fc.idle_ms = 10000;
    e = moat_http_fetch_run(&f, &fc);
    if (e != MOAT_OK) {
        printf("error: %s\n", moat_http_fetch_error(&f));
        printf("delivered=%" PRIu64 " connections=%u\n", moat_http_fetch_delivered(&f),
               (unsigned)moat_http_fetch_connections(&f));
        moat_tls_free(&tls);
        close(o.fd);
        return 1;
    }
    printf("status=%d delivered=%" PRIu64 " connections=%u first=%" PRIu64 " restarts=%u"
           " etag=%s suite=%s\n",
           moat_http_fetch_status(&f), moat_http_fetch_delivered(&f),
           (unsigned)moat_http_fetch_connections(&f), o.have_first ? o.first : 0,
           o.restarts, moat_http_fetch_etag(&f)[0] ? moat_http_fetch_etag(&f) : "-",
           o.suite[0] ? o.suite : "-");
    moat_tls_free(&tls);
    if (close(o.fd) != 0) {
        printf("error: writing %s: %s\n", out, strerror(errno));
        return 1;
    }
    return 0;
}
