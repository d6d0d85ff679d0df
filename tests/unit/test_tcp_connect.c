/*
 * test_tcp_connect.c - moat_tcp's connect path (src/port/posix/net.c) over
 * loopback: a numeric address is used at once; a host name is looked up in
 * the background and no call waits for it; a refused address moves on to
 * the next; a lookup given up is cancelled or left to finish on its own.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "moat/posix.h"

/* A listener on 127.0.0.1 only, on a free port. */
static int listen_v4(uint16_t *port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Drive a connect to its end, as a poll loop would; the longest single
 * call in *slowest_ms. */
static moat_err finish(moat_tcp *s, moat_err e, uint32_t limit_ms, uint32_t *slowest_ms)
{
    uint32_t start = moat_clock_ms();
    *slowest_ms = 0;
    while (e == MOAT_ERR_WOULD_BLOCK && moat_clock_ms() - start < limit_ms) {
        uint32_t wait = moat_tcp_poll_in(s, moat_clock_ms()), t0;
        moat_wait_fd(s->fd, true, wait < 50 ? wait : 50);
        t0 = moat_clock_ms();
        e = moat_tcp_connect_poll(s);
        if (moat_clock_ms() - t0 > *slowest_ms)
            *slowest_ms = moat_clock_ms() - t0;
    }
    return e;
}

/* A listener on 127.0.0.1 and a closed moat_tcp, for each test that wants
 * them. */
typedef struct fixture {
    uint16_t port;
    int lfd;
    moat_tcp s;
} fixture;

static int with_listener(void **state)
{
    static fixture f;
    f.lfd = listen_v4(&f.port);
    moat_tcp_init(&f.s);
    *state = &f;
    return 0;
}

static int close_listener(void **state)
{
    fixture *f = *state;
    moat_tcp_close(&f->s);
    if (f->lfd >= 0)
        close(f->lfd);
    return 0;
}

static void numeric_address_needs_no_lookup(void **state)
{
    fixture *f = *state;
    uint16_t port = f->port;
    moat_tcp s = f->s;
    uint32_t slowest;
    moat_err e;

    e = moat_tcp_connect_start(&s, "127.0.0.1", port);
    assert_true(e == MOAT_OK || e == MOAT_ERR_WOULD_BLOCK);
    assert_null(s.lookup);
    assert_true(s.fd >= 0);
    assert_int_equal(finish(&s, e, 2000, &slowest), MOAT_OK);
    assert_null(s.addrs);
    moat_tcp_close(&s);
}

static void host_name_is_looked_up_in_the_background(void **state)
{
    fixture *f = *state;
    uint16_t port = f->port;
    moat_tcp s = f->s;
    uint32_t t0, slowest;
    moat_err e;

    t0 = moat_clock_ms();
    e = moat_tcp_connect_start(&s, "localhost", port);
    assert_true(moat_clock_ms() - t0 < 50);
    /* no socket while the name is looked up: the caller polls on a timer */
    assert_int_equal(e, MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(s.fd, -1);
    assert_non_null(s.lookup);
    assert_int_equal(moat_tcp_poll_in(&s, moat_clock_ms()), MOAT_TCP_LOOKUP_POLL_MS);
    /* ::1 (if the machine has it) is refused, then 127.0.0.1 connects */
    assert_int_equal(finish(&s, e, 5000, &slowest), MOAT_OK);
    assert_true(slowest < 50);
    assert_null(s.lookup);
    assert_null(s.addrs);
    assert_int_equal(moat_tcp_poll_in(&s, moat_clock_ms()), UINT32_MAX);
    moat_tcp_close(&s);
}

static void refused_everywhere_is_a_connect_error(void **state)
{
    fixture *f = *state;
    uint16_t port = f->port;
    moat_tcp s = f->s;
    uint32_t slowest;
    moat_err e;

    close(f->lfd); /* nobody listens there now */
    f->lfd = -1;
    e = moat_tcp_connect_start(&s, "localhost", port);
    assert_int_equal(finish(&s, e, 5000, &slowest), MOAT_ERR_CONNECT);
    assert_int_equal(s.fd, -1);
    assert_null(s.addrs);
    e = moat_tcp_connect_start(&s, "127.0.0.1", port);
    assert_int_equal(finish(&s, e, 5000, &slowest), MOAT_ERR_CONNECT);
}

/* A name no resolver knows: however long the system's DNS takes to say so
 * (no DNS at all: at once; an unreachable server: seconds), no call waits
 * for it, and giving it up is immediate. */
static void a_slow_or_failing_lookup_never_blocks(void **state)
{
    uint32_t t0, slowest;
    moat_tcp s;
    moat_err e;
    (void)state;

    moat_tcp_init(&s);
    t0 = moat_clock_ms();
    e = moat_tcp_connect_start(&s, "no-such-host.moat-test.invalid", 8883);
    assert_true(moat_clock_ms() - t0 < 50);
    e = finish(&s, e, 300, &slowest);
    assert_true(slowest < 50);
    assert_true(e == MOAT_ERR_WOULD_BLOCK || e == MOAT_ERR_RESOLVE);
    t0 = moat_clock_ms();
    moat_tcp_close(&s); /* cancels, or leaves it to finish on its own */
    assert_true(moat_clock_ms() - t0 < 50);
    assert_null(s.lookup);
    /* an invalid name is refused at once, as before */
    assert_int_equal(moat_tcp_connect_start(&s, "", 8883), MOAT_ERR_RESOLVE);
}

static void a_lookup_given_up_and_started_again(void **state)
{
    fixture *f = *state;
    uint16_t port = f->port;
    moat_tcp s = f->s;
    uint32_t slowest;
    moat_err e;

    for (int i = 0; i < 20; i++) {
        e = moat_tcp_connect_start(&s, "localhost", port);
        moat_tcp_close(&s);
    }
    e = moat_tcp_connect_start(&s, "localhost", port);
    assert_int_equal(finish(&s, e, 5000, &slowest), MOAT_OK);
    /* start again over a connected socket: the old one goes */
    e = moat_tcp_connect_start(&s, "localhost", port);
    assert_int_equal(finish(&s, e, 5000, &slowest), MOAT_OK);
    moat_tcp_close(&s);
}

/* Run by dns_blackhole.sh in a mount namespace whose resolv.conf names
 * 127.0.0.1, where this process holds port 53 and never answers: the
 * lookup hangs for the resolver's whole timeout. No call waits for it; it
 * is given up at once, and a numeric address still connects meanwhile. */
static void a_lookup_that_hangs_never_blocks(void **state)
{
    fixture *f = *state;
    uint16_t port = f->port;
    struct sockaddr_in a;
    uint32_t t0, slowest;
    moat_tcp s = f->s, n;
    moat_err e;
    int dns;

    if (getenv("MOAT_TEST_DNS_BLACKHOLE") == NULL)
        skip();
    dns = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(53);
    assert_int_equal(bind(dns, (struct sockaddr *)&a, sizeof a), 0);

    t0 = moat_clock_ms();
    e = moat_tcp_connect_start(&s, "hangs.moat-test.invalid", port);
    assert_true(moat_clock_ms() - t0 < 50);
    assert_int_equal(e, MOAT_ERR_WOULD_BLOCK);
    e = finish(&s, e, 1000, &slowest);
    assert_int_equal(e, MOAT_ERR_WOULD_BLOCK); /* still looking after 1 s */
    assert_true(slowest < 50);
    /* the query did reach our silent server */
    {
        char q[512];
        assert_true(recv(dns, q, sizeof q, MSG_DONTWAIT) > 0);
    }
    /* meanwhile a numeric address connects as always */
    moat_tcp_init(&n);
    e = moat_tcp_connect_start(&n, "127.0.0.1", port);
    assert_int_equal(finish(&n, e, 2000, &slowest), MOAT_OK);
    moat_tcp_close(&n);
    /* giving up the hanging lookup is immediate, again and again */
    for (int i = 0; i < 5; i++) {
        t0 = moat_clock_ms();
        moat_tcp_close(&s);
        assert_true(moat_clock_ms() - t0 < 50);
        assert_int_equal(moat_tcp_connect_start(&s, "hangs.moat-test.invalid", port),
                         MOAT_ERR_WOULD_BLOCK);
    }
    moat_tcp_close(&s);
    close(dns);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(numeric_address_needs_no_lookup, with_listener,
                                        close_listener),
        cmocka_unit_test_setup_teardown(host_name_is_looked_up_in_the_background,
                                        with_listener, close_listener),
        cmocka_unit_test_setup_teardown(refused_everywhere_is_a_connect_error, with_listener,
                                        close_listener),
        cmocka_unit_test(a_slow_or_failing_lookup_never_blocks),
        cmocka_unit_test_setup_teardown(a_lookup_given_up_and_started_again, with_listener,
                                        close_listener),
        cmocka_unit_test_setup_teardown(a_lookup_that_hangs_never_blocks, with_listener,
                                        close_listener),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
