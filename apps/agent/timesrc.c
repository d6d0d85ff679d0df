/*
 * timesrc.c - time before trust: where the agent's wall clock comes from.
 *
 * No certificate is checked before the clock is valid (DESIGN.md, 4), so
 * the connection chain starts here. Two sources, chosen by config:
 *
 *   ntpserver "host[:port]"  the sans-I/O SNTP engine (moat/sntp.h) over a
 *                            UDP socket this file owns; the clock is valid
 *                            after the first accepted answer.
 *   ntpserver "" / "system"  the OS clock, once the kernel reports it
 *                            synchronised (ntp_adjtime: STA_UNSYNC clear,
 *                            as chrony or systemd-timesyncd leave it).
 *
 * The SNTP engine accepts any time from 2024 to 2160: a server that answers
 * with 1970 or 2020 is read in the next NTP era (2106, 2156). Such an answer
 * comes from a server that lost its own clock, so this file also refuses a
 * time more than AG_TIME_MAX_AHEAD_S past the build and starts over.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

#include "moat/posix.h"
#include "moat/timer.h"
#include "agent.h"

#ifndef MOAT_AGENT_BUILD_UNIX
#define MOAT_AGENT_BUILD_UNIX MOAT_SNTP_VALID_FROM_S
#endif

/* A time this far past the build is an NTP era mistake, not the present. */
#define AG_TIME_MAX_AHEAD_S (40LL * 366 * 86400)
#define AG_SYSTEM_CHECK_MS 1000u
#define AG_TIME_LOG_EVERY_MS 10000u

static int64_t build_unix_s(void)
{
    return (int64_t)MOAT_AGENT_BUILD_UNIX;
}

/* "host", "host:port", "[v6]:port" or "v6" (more than one colon). */
static bool split_server(const char *s, char *host, size_t cap, uint16_t *port)
{
    const char *colon = strrchr(s, ':'), *h = s;
    size_t hlen;
    char *end;
    unsigned long p;

    *port = MOAT_SNTP_PORT;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL)
            return false;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close[1] == ':' ? close + 1 : NULL;
        if (close[1] != '\0' && colon == NULL)
            return false;
    } else if (colon != NULL && strchr(s, ':') != colon) {
        colon = NULL; /* a bare IPv6 address */
        hlen = strlen(s);
    } else {
        hlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
    }
    if (hlen == 0 || hlen >= cap)
        return false;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (colon != NULL) {
        errno = 0;
        p = strtoul(colon + 1, &end, 10);
        if (errno != 0 || *end != '\0' || end == colon + 1 || p == 0 || p > 65535)
            return false;
        *port = (uint16_t)p;
    }
    return true;
}

bool ag_time_server_valid(const char *ntpserver)
{
    char host[256];
    uint16_t port;

    if (ntpserver == NULL || ntpserver[0] == '\0' || strcmp(ntpserver, "system") == 0)
        return true;
    return split_server(ntpserver, host, sizeof host, &port);
}

moat_err ag_time_init(ag_time *t, const char *ntpserver, uint32_t retry_ms,
                      uint32_t now_ms)
{
    moat_sntp_config sc;

    memset(t, 0, sizeof *t);
    t->fd = -1;
    t->started_ms = now_ms;
    t->last_log_ms = now_ms; /* "still waiting" from AG_TIME_LOG_EVERY_MS on */
    if (ntpserver == NULL || ntpserver[0] == '\0' || strcmp(ntpserver, "system") == 0) {
        t->kind = AG_TIME_SYSTEM;
        t->next_check_ms = now_ms;
        snprintf(t->source, sizeof t->source, "system");
        ag_log(AG_LOG_INFO, "time: waiting for the kernel to report the system clock "
               "synchronised; no certificate is checked until then");
        return MOAT_OK;
    }
    t->kind = AG_TIME_SNTP;
    if (!split_server(ntpserver, t->host, sizeof t->host, &t->port))
        return MOAT_ERR_ARG;
    snprintf(t->source, sizeof t->source, "sntp");
    memset(&sc, 0, sizeof sc);
    sc.timeout_ms = 1000;
    sc.tries = 3;
    sc.retry_ms = retry_ms < 1000 ? 1000 : retry_ms;
    if (sc.retry_ms > MOAT_SNTP_MAX_INTERVAL_MS)
        sc.retry_ms = MOAT_SNTP_MAX_INTERVAL_MS;
    sc.min_unix_s = build_unix_s();
    sc.random = moat_random32;
    t->sntp_cfg = sc;
    if (moat_sntp_init(&t->sntp, &sc) != MOAT_OK)
        return MOAT_ERR_ARG;
    ag_log(AG_LOG_INFO, "time: asking time server %s:%u; no certificate is checked before "
           "the clock is valid", t->host, t->port);
    return moat_sntp_start(&t->sntp, now_ms);
}

void ag_time_set_server(ag_time *t, const char *ntpserver, uint32_t retry_ms,
                        uint32_t now_ms)
{
    bool sntp = !(ntpserver[0] == '\0' || strcmp(ntpserver, "system") == 0);
    uint16_t port;
    char host[sizeof t->host];

    if (sntp && t->kind == AG_TIME_SNTP && split_server(ntpserver, host, sizeof host, &port)) {
        memcpy(t->host, host, sizeof host);
        t->port = port;
        if (t->fd >= 0)
            close(t->fd);
        t->fd = -1;
        moat_lookup_cancel(t->lookup);
        t->lookup = NULL;
        t->hold = false;
        ag_log(AG_LOG_INFO, "time: now asking time server %s:%u%s", t->host, t->port,
               t->valid ? "; the clock stays valid meanwhile" : "");
        moat_sntp_start(&t->sntp, now_ms);
        return;
    }
    ag_time_free(t);
    ag_time_init(t, ntpserver, retry_ms, now_ms);
}

void ag_time_free(ag_time *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    moat_lookup_cancel(t->lookup);
    t->lookup = NULL;
}

int ag_time_fd(const ag_time *t)
{
    return t->kind == AG_TIME_SNTP ? t->fd : -1;
}

/* A UDP socket connected to the server: recv() then sees only its answers.
 * A host name is looked up in the background first: MOAT_ERR_WOULD_BLOCK
 * while it runs. Errors are in t->why. */
static moat_err open_socket(ag_time *t)
{
    struct addrinfo *res = NULL, *ai;
    const char *words = NULL;
    moat_err e;
    int fd = -1;

    if (t->lookup == NULL) {
        e = moat_lookup_start(&t->lookup, t->host, t->port, SOCK_DGRAM, &res);
    } else {
        e = moat_lookup_poll(t->lookup, &res, &words);
        if (e != MOAT_ERR_WOULD_BLOCK)
            t->lookup = NULL;
    }
    if (e == MOAT_ERR_WOULD_BLOCK)
        return e;
    if (e != MOAT_OK) {
        snprintf(t->why, sizeof t->why, "cannot resolve time server '%s': %s", t->host,
                 words != NULL ? words : "not a valid host name");
        return MOAT_ERR_RESOLVE;
    }
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(t->why, sizeof t->why, "cannot open a UDP socket to time server %s:%u",
                 t->host, t->port);
        return MOAT_ERR_IO;
    }
    t->fd = fd;
    return MOAT_OK;
}

static void became_valid(ag_time *t, uint32_t now_ms)
{
    t->valid = true;
    t->valid_at_ms = now_ms;
    t->why[0] = '\0';
}

/* The answer was accepted by the engine; is it the present? */
static void check_plausible(ag_time *t, uint32_t now_ms)
{
    int64_t ms = 0;

    moat_sntp_time(&t->sntp, now_ms, &ms);
    if (ms / 1000 - build_unix_s() <= AG_TIME_MAX_AHEAD_S) {
        became_valid(t, now_ms);
        ag_log(AG_LOG_INFO, "clock is valid: time server %s:%u answered (stratum %u), "
               "after %lu ms", t->host, t->port, moat_sntp_last_sync(&t->sntp)->stratum,
               (unsigned long)moat_elapsed(t->started_ms, now_ms));
        return;
    }
    /* Forget the answer: a new engine has no clock. */
    snprintf(t->why, sizeof t->why,
             "time server %s:%u answered a time %lld years ahead; it is taken for an "
             "unset server clock from an earlier NTP era and refused",
             t->host, t->port, (long long)((ms / 1000 - build_unix_s()) / (365LL * 86400)));
    ag_log(AG_LOG_WARN, "%s", t->why);
    t->last_err = MOAT_ERR_SNTP_EARLY;
    moat_sntp_init(&t->sntp, &t->sntp_cfg);
    t->hold = true;
    t->hold_until_ms = now_ms + t->sntp_cfg.retry_ms;
}

static void sntp_read(ag_time *t, uint32_t now_ms)
{
    uint8_t d[512];
    ssize_t n;
    moat_err e;

    if (t->fd < 0)
        return;
    while ((n = recv(t->fd, d, sizeof d, MSG_DONTWAIT)) >= 0 || errno == ECONNREFUSED ||
           errno == EINTR) {
        if (n < 0)
            continue; /* ICMP port unreachable from an earlier request */
        e = moat_sntp_input(&t->sntp, d, (size_t)n, now_ms);
        if (e == MOAT_OK) {
            check_plausible(t, now_ms);
            return;
        }
        if (e != MOAT_ERR_SNTP_NOT_OURS) {
            t->last_err = e;
            snprintf(t->why, sizeof t->why, "time server %s:%u: %s", t->host, t->port,
                     moat_strerror(e));
            ag_log(AG_LOG_WARN, "%s", t->why);
        }
    }
}

static void sntp_service(ag_time *t, uint32_t now_ms)
{
    uint8_t req[MOAT_SNTP_PACKET_SIZE];
    size_t len = 0;
    moat_err e;

    if (t->hold) {
        if (!moat_time_reached(now_ms, t->hold_until_ms))
            return;
        t->hold = false;
        moat_sntp_start(&t->sntp, now_ms);
    }
    sntp_read(t, now_ms);
    /* The socket when a request is due; a request waits for a lookup. */
    if (t->fd < 0 && moat_sntp_next_timeout(&t->sntp, now_ms) == 0) {
        moat_err o = open_socket(t);
        if (o == MOAT_ERR_WOULD_BLOCK)
            return;
        if (o != MOAT_OK)
            ag_log(AG_LOG_WARN, "%s", t->why);
    }
    e = moat_sntp_output(&t->sntp, req, sizeof req, &len, now_ms);
    if (len > 0) {
        t->requests++;
        if (t->fd >= 0 && send(t->fd, req, len, MSG_NOSIGNAL) < 0 && errno != EAGAIN)
            ag_log(AG_LOG_DEBUG, "time server %s:%u: send: %s", t->host, t->port,
                   strerror(errno));
        ag_log(AG_LOG_DEBUG, "SNTP request %u to %s:%u", t->requests, t->host, t->port);
    }
    if (e != MOAT_OK && e != MOAT_ERR_NO_SPACE) {
        t->last_err = e;
        if (e == MOAT_ERR_SNTP_TIMEOUT)
            snprintf(t->why, sizeof t->why, "time server %s:%u did not answer", t->host,
                     t->port);
        else if (t->why[0] == '\0')
            snprintf(t->why, sizeof t->why, "time server %s:%u: %s", t->host, t->port,
                     moat_strerror(e));
        ag_log(t->valid ? AG_LOG_DEBUG : AG_LOG_WARN, "%s; next try in %lu s%s", t->why,
               (unsigned long)(moat_sntp_next_timeout(&t->sntp, now_ms) / 1000u),
               t->valid ? "" : "; no certificate is checked until the clock is valid");
    }
}

/* The kernel's view: STA_UNSYNC clear means an NTP daemon disciplines it. */
static bool kernel_synced(void)
{
    struct timex tx;
    int state;

    memset(&tx, 0, sizeof tx);
    state = ntp_adjtime(&tx);
    return state != -1 && state != TIME_ERROR && (tx.status & STA_UNSYNC) == 0;
}

static void system_service(ag_time *t, uint32_t now_ms)
{
    if (!moat_time_reached(now_ms, t->next_check_ms))
        return;
    t->next_check_ms = now_ms + AG_SYSTEM_CHECK_MS;
    t->requests++;
    if (kernel_synced() && time(NULL) >= build_unix_s()) {
        became_valid(t, now_ms);
        ag_log(AG_LOG_INFO, "clock is valid: the kernel reports the system clock "
               "synchronised, after %lu ms", (unsigned long)moat_elapsed(t->started_ms, now_ms));
        return;
    }
    snprintf(t->why, sizeof t->why, "the kernel reports the system clock unsynchronised "
             "(STA_UNSYNC); set ntpserver or run an NTP daemon");
    t->last_err = MOAT_ERR_CLOCK;
}

bool ag_time_service(ag_time *t, uint32_t now_ms)
{
    bool was = t->valid;

    if (t->kind == AG_TIME_SNTP)
        sntp_service(t, now_ms);
    else if (!t->valid)
        system_service(t, now_ms);
    if (!t->valid && moat_elapsed(t->last_log_ms, now_ms) >= AG_TIME_LOG_EVERY_MS) {
        t->last_log_ms = now_ms;
        ag_log(AG_LOG_INFO, "still waiting for a valid clock (%s) after %lu s: %s; no "
               "TLS connection until then", t->source,
               (unsigned long)(moat_elapsed(t->started_ms, now_ms) / 1000u),
               t->why[0] != '\0' ? t->why : "no answer yet");
    }
    return t->valid && !was;
}

uint32_t ag_time_next_timeout(const ag_time *t, uint32_t now_ms)
{
    uint32_t w = UINT32_MAX;

    if (t->kind == AG_TIME_SNTP) {
        if (t->hold)
            w = moat_time_reached(now_ms, t->hold_until_ms) ? 0 : t->hold_until_ms - now_ms;
        else if (t->lookup != NULL)
            w = MOAT_TCP_LOOKUP_POLL_MS; /* the name of the server is being looked up */
        else
            w = moat_sntp_next_timeout(&t->sntp, now_ms);
    } else if (!t->valid) {
        w = moat_time_reached(now_ms, t->next_check_ms) ? 0 : t->next_check_ms - now_ms;
    }
    if (!t->valid) {
        uint32_t e = moat_elapsed(t->last_log_ms, now_ms);
        uint32_t l = e >= AG_TIME_LOG_EVERY_MS ? 0 : AG_TIME_LOG_EVERY_MS - e;
        if (l < w)
            w = l;
    }
    return w;
}

bool ag_time_valid(const ag_time *t)
{
    return t->valid;
}

moat_err ag_time_unix_ms(ag_time *t, uint32_t now_ms, int64_t *unix_ms)
{
    struct timespec ts;

    *unix_ms = 0;
    if (!t->valid)
        return MOAT_ERR_CLOCK;
    if (t->kind == AG_TIME_SNTP)
        return moat_sntp_time(&t->sntp, now_ms, unix_ms);
    clock_gettime(CLOCK_REALTIME, &ts);
    *unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return MOAT_OK;
}

int64_t ag_time_tls_now(void *user)
{
    int64_t ms = 0;

    if (ag_time_unix_ms(user, moat_clock_ms(), &ms) != MOAT_OK)
        return 0; /* "not valid": moat_tls starts no handshake */
    return ms / 1000;
}
