/*
 * net.c - non-blocking TCP for the POSIX port.
 *
 * A moat_tcp is one non-blocking socket. Connecting is split in two steps
 * (start, then poll once the socket is writable) so that a caller's single
 * poll() loop never stalls on a slow peer. send and recv implement the
 * moat_transport contract of moat/transport.h: bytes moved (> 0), or a
 * negative moat_err, never 0.
 *
 * An optional read-ahead buffer (moat_tcp_set_readahead) turns TLS's two
 * reads per record into one, or one for many records. With it, recv also
 * spares the system call that cannot return data: a recv() that came back
 * short found the socket empty, so once the buffer is used up the next recv
 * reports MOAT_ERR_WOULD_BLOCK without asking the kernel (once: the one
 * after it asks again). The caller then waits on the socket, and poll()
 * reports anything that arrived meanwhile, so nothing is delayed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getaddrinfo_a */
#endif
#include "moat/posix.h"
#include "moat/timer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void moat_tcp_init(moat_tcp *s)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
}

/* ------------------------------------------------- name lookups -- */

/* One background lookup: glibc's worker thread writes into it until it is
 * done, so it lives on the heap, apart from its caller. */
struct moat_lookup {
    struct gaicb cb;
    struct addrinfo hints;
    struct moat_lookup *abandoned_next;
    char service[8];
    char host[];
};
typedef struct moat_lookup lookup;

/* Lookups given up while glibc was still working on them: freed once done. */
static lookup *abandoned;

static void lookup_free(lookup *l)
{
    if (l->cb.ar_result != NULL)
        freeaddrinfo(l->cb.ar_result);
    free(l);
}

static void reap_abandoned(void)
{
    lookup **pp = &abandoned;
    while (*pp != NULL) {
        lookup *l = *pp;
        if (gai_error(&l->cb) == EAI_INPROGRESS) {
            pp = &l->abandoned_next;
            continue;
        }
        *pp = l->abandoned_next;
        lookup_free(l);
    }
}

moat_err moat_lookup_start(moat_lookup **out, const char *host, uint16_t port, int socktype,
                           struct addrinfo **numeric)
{
    struct addrinfo hints;
    struct gaicb *list[1];
    struct sigevent ev;
    size_t n;
    lookup *l;
    int rc;

    *out = NULL;
    *numeric = NULL;
    if (host == NULL || host[0] == '\0')
        return MOAT_ERR_RESOLVE;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV | AI_NUMERICHOST;
    n = strlen(host);
    reap_abandoned();
    if ((l = calloc(1, sizeof *l + n + 1)) == NULL)
        return MOAT_ERR_NO_SPACE;
    memcpy(l->host, host, n + 1);
    snprintf(l->service, sizeof l->service, "%u", (unsigned)port);
    /* A numeric address: no lookup, nothing to wait for. */
    rc = getaddrinfo(l->host, l->service, &hints, numeric);
    if (rc != EAI_NONAME) {
        free(l);
        return rc == 0 ? MOAT_OK : MOAT_ERR_RESOLVE;
    }
    *numeric = NULL;
    l->hints = hints;
    l->hints.ai_flags &= ~AI_NUMERICHOST;
    l->cb.ar_name = l->host;
    l->cb.ar_service = l->service;
    l->cb.ar_request = &l->hints;
    list[0] = &l->cb;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_NONE; /* polled: MOAT_TCP_LOOKUP_POLL_MS */
    if (getaddrinfo_a(GAI_NOWAIT, list, 1, &ev) != 0) {
        free(l);
        return MOAT_ERR_RESOLVE;
    }
    *out = l;
    return MOAT_ERR_WOULD_BLOCK;
}

moat_err moat_lookup_poll(moat_lookup *l, struct addrinfo **res, const char **why)
{
    int rc = gai_error(&l->cb);

    *res = NULL;
    if (rc == EAI_INPROGRESS)
        return MOAT_ERR_WOULD_BLOCK;
    if (rc == 0 && l->cb.ar_result != NULL) {
        *res = l->cb.ar_result;
        l->cb.ar_result = NULL;
    } else if (why != NULL) {
        *why = gai_strerror(rc != 0 ? rc : EAI_NONAME);
    }
    lookup_free(l);
    return *res != NULL ? MOAT_OK : MOAT_ERR_RESOLVE;
}

void moat_lookup_cancel(moat_lookup *l)
{
    if (l == NULL)
        return;
    if (gai_cancel(&l->cb) == EAI_NOTCANCELED && gai_error(&l->cb) == EAI_INPROGRESS) {
        l->abandoned_next = abandoned;
        abandoned = l;
        return;
    }
    lookup_free(l);
}

static void free_addrs(moat_tcp *s)
{
    if (s->addrs != NULL)
        freeaddrinfo(s->addrs);
    s->addrs = s->next = NULL;
}

/* The read-ahead buffer stays attached; its bytes belonged to the old
 * stream and go. */
void moat_tcp_close(moat_tcp *s)
{
    moat_lookup_cancel(s->lookup);
    s->lookup = NULL;
    free_addrs(s);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->connecting = false;
    s->drained = false;
    s->ra_pos = s->ra_len = 0;
}

void moat_tcp_set_readahead(moat_tcp *s, uint8_t *buf, size_t size)
{
    if (buf == NULL || size > UINT16_MAX)
        size = buf == NULL ? 0 : UINT16_MAX;
    s->ra = size > 0 ? buf : NULL;
    s->ra_size = (uint16_t)size;
    s->ra_pos = s->ra_len = 0;
}

bool moat_tcp_pending(const moat_tcp *s)
{
    return s->ra_pos < s->ra_len;
}

/* Non-blocking, close-on-exec, no Nagle: MQTT packets are small and latency
 * matters more than segment count. */
static int open_socket(const struct addrinfo *ai)
{
    int one = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);

    if (fd < 0)
        return -1;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Try one address. MOAT_OK: connected; MOAT_ERR_WOULD_BLOCK: in progress;
 * MOAT_ERR_CONNECT: this address failed (the socket is closed). */
static moat_err try_address(moat_tcp *s, const struct addrinfo *ai)
{
    int fd = open_socket(ai);

    if (fd < 0)
        return MOAT_ERR_CONNECT;
    while (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EINPROGRESS) {
            s->fd = fd;
            s->connecting = true;
            return MOAT_ERR_WOULD_BLOCK;
        }
        close(fd);
        return MOAT_ERR_CONNECT;
    }
    s->fd = fd;
    s->connecting = false;
    return MOAT_OK;
}

/* Try the addresses left, in order, until one connects or is pending. */
static moat_err next_address(moat_tcp *s)
{
    while (s->next != NULL) {
        const struct addrinfo *ai = s->next;
        moat_err err;
        s->next = ai->ai_next;
        s->attempt_ms = moat_clock_ms();
        err = try_address(s, ai);
        if (err == MOAT_ERR_WOULD_BLOCK)
            return err;
        if (err == MOAT_OK) {
            free_addrs(s);
            return err;
        }
    }
    free_addrs(s);
    return MOAT_ERR_CONNECT;
}

moat_err moat_tcp_connect_start(moat_tcp *s, const char *host, uint16_t port)
{
    struct addrinfo *list;
    moat_err e;

    if (s == NULL || host == NULL || port == 0)
        return MOAT_ERR_ARG;
    moat_tcp_close(s);
    e = moat_lookup_start(&s->lookup, host, port, SOCK_STREAM, &list);
    if (e != MOAT_OK)
        return e == MOAT_ERR_NO_SPACE ? MOAT_ERR_RESOLVE : e;
    s->addrs = s->next = list;
    return next_address(s);
}

/* Give up the address being tried (refused, or past the fallback delay)
 * and go on with the next. */
static moat_err drop_attempt(moat_tcp *s)
{
    close(s->fd);
    s->fd = -1;
    s->connecting = false;
    return next_address(s);
}

/* The lookup's answer, once there is one. */
static moat_err poll_lookup(moat_tcp *s)
{
    struct addrinfo *list;
    moat_err e = moat_lookup_poll(s->lookup, &list, NULL);

    if (e == MOAT_ERR_WOULD_BLOCK)
        return e;
    s->lookup = NULL;
    if (e != MOAT_OK)
        return e;
    s->addrs = s->next = list;
    return next_address(s);
}

moat_err moat_tcp_connect_poll(moat_tcp *s)
{
    struct pollfd p;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    int n;

    if (s->lookup != NULL)
        return poll_lookup(s);
    if (s->fd < 0)
        return MOAT_ERR_CONNECT;
    if (!s->connecting)
        return MOAT_OK;
    p.fd = s->fd;
    p.events = POLLOUT;
    p.revents = 0;
    n = poll(&p, 1, 0);
    if (n == 0 || (n < 0 && errno == EINTR)) {
        /* Still pending: past the fallback delay, the next address. */
        if (s->next != NULL &&
            moat_elapsed(s->attempt_ms, moat_clock_ms()) >= MOAT_TCP_FALLBACK_MS)
            return drop_attempt(s);
        return MOAT_ERR_WOULD_BLOCK;
    }
    if (n < 0 || getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 ||
        soerr != 0)
        return drop_attempt(s); /* none left: MOAT_ERR_CONNECT, all closed */
    s->connecting = false;
    free_addrs(s);
    return MOAT_OK;
}

uint32_t moat_tcp_poll_in(const moat_tcp *s, uint32_t now_ms)
{
    uint32_t spent;

    if (s->lookup != NULL)
        return MOAT_TCP_LOOKUP_POLL_MS;
    if (!s->connecting || s->next == NULL)
        return UINT32_MAX;
    spent = moat_elapsed(s->attempt_ms, now_ms);
    return spent >= MOAT_TCP_FALLBACK_MS ? 0 : MOAT_TCP_FALLBACK_MS - spent;
}

/* errno of a failed send/recv as a transport result. */
static long io_error(void)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return MOAT_ERR_WOULD_BLOCK;
    return MOAT_ERR_IO;
}

static long tcp_send(void *ctx, const uint8_t *buf, size_t len)
{
    moat_tcp *s = ctx;
    ssize_t n;

    if (s->fd < 0)
        return MOAT_ERR_CLOSED;
    if (s->connecting)
        return MOAT_ERR_WOULD_BLOCK;
    if (len == 0)
        return MOAT_ERR_ARG;
    if (len > LONG_MAX)
        len = LONG_MAX;
    do
        n = send(s->fd, buf, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n > 0 ? (long)n : io_error();
}

/* One recv() into buf, EINTR retried. With a read-ahead buffer, marks the
 * socket drained when the kernel had fewer bytes than asked for. */
static long sys_recv(moat_tcp *s, uint8_t *buf, size_t len)
{
    ssize_t n;

    do
        n = recv(s->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return MOAT_ERR_CLOSED;
    if (n < 0)
        return io_error();
    s->drained = s->ra != NULL && (size_t)n < len;
    return (long)n;
}

static long tcp_recv(void *ctx, uint8_t *buf, size_t len)
{
    moat_tcp *s = ctx;
    long n;

    if (s->fd < 0)
        return MOAT_ERR_CLOSED;
    if (s->connecting)
        return MOAT_ERR_WOULD_BLOCK;
    if (len == 0)
        return MOAT_ERR_ARG;
    if (len > LONG_MAX)
        len = LONG_MAX;
    if (s->ra_pos == s->ra_len) {
        if (s->drained) {
            s->drained = false;
            return MOAT_ERR_WOULD_BLOCK;
        }
        if (s->ra == NULL || len >= s->ra_size)
            return sys_recv(s, buf, len);
        n = sys_recv(s, s->ra, s->ra_size);
        if (n <= 0)
            return n;
        s->ra_pos = 0;
        s->ra_len = (uint16_t)n;
    }
    n = s->ra_len - s->ra_pos;
    if ((size_t)n > len)
        n = (long)len;
    memcpy(buf, s->ra + s->ra_pos, (size_t)n);
    s->ra_pos = (uint16_t)(s->ra_pos + n);
    return n;
}

static bool tcp_pending(void *ctx)
{
    return moat_tcp_pending(ctx);
}

void moat_tcp_transport(moat_tcp *s, moat_transport *t)
{
    t->send = tcp_send;
    t->recv = tcp_recv;
    t->ctx = s;
    t->pending = tcp_pending;
}

/* UINT32_MAX (the engine's "never") waits without a time limit. */
moat_err moat_wait_fd(int fd, bool want_write, uint32_t timeout_ms)
{
    struct pollfd p;
    int timeout = timeout_ms == UINT32_MAX ? -1
                : timeout_ms > INT_MAX   ? INT_MAX
                                         : (int)timeout_ms;
    int n;

    p.fd = fd;
    p.events = (short)(POLLIN | (want_write ? POLLOUT : 0));
    p.revents = 0;
    n = poll(&p, 1, timeout);
    if (n > 0)
        return MOAT_OK;  /* includes POLLERR/POLLHUP: the next I/O says why */
    if (n == 0 || errno == EINTR)
        return MOAT_ERR_WOULD_BLOCK;
    return MOAT_ERR_IO;
}
