/*
 * test_tcp_recv.c - the receive side of the POSIX port's moat_tcp transport
 * over a real socket pair: a short read spares the next recv() (one
 * MOAT_ERR_WOULD_BLOCK without a system call, after which poll() still
 * sees whatever arrived), the optional read-ahead buffer serves small reads
 * from one recv(), moat_tcp_pending reports what it holds, and no byte is
 * lost, duplicated or reordered whatever the read sizes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

typedef struct pair {
    moat_tcp s;
    moat_transport t;
    int peer;
} pair;

static void pair_open(pair *p, uint8_t *ra, size_t ra_size)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK), 0);
    moat_tcp_init(&p->s);
    moat_tcp_set_readahead(&p->s, ra, ra_size);
    p->s.fd = sv[0];
    p->peer = sv[1];
    moat_tcp_transport(&p->s, &p->t);
}

static void pair_close(pair *p)
{
    moat_tcp_close(&p->s);
    if (p->peer >= 0)
        close(p->peer);
    p->peer = -1;
}

static void put(pair *p, const void *b, size_t n)
{
    assert_int_equal(write(p->peer, b, n), (ssize_t)n);
}

static bool readable(pair *p)
{
    struct pollfd q = { .fd = p->s.fd, .events = POLLIN };
    return poll(&q, 1, 0) == 1;
}

static long rd(pair *p, uint8_t *buf, size_t len)
{
    return p->t.recv(p->t.ctx, buf, len);
}

/* Without read-ahead every recv asks the kernel, as before. */
static void plain_recv_asks_kernel(void **state)
{
    (void)state;
    pair p;
    uint8_t b[100];
    pair_open(&p, NULL, 0);
    assert_int_equal(rd(&p, b, sizeof b), MOAT_ERR_WOULD_BLOCK);
    put(&p, "0123456789", 10);
    assert_int_equal(rd(&p, b, sizeof b), 10);
    assert_memory_equal(b, "0123456789", 10);
    put(&p, "abcde", 5);
    assert_int_equal(rd(&p, b, sizeof b), 5);
    assert_memory_equal(b, "abcde", 5);
    assert_int_equal(rd(&p, b, sizeof b), MOAT_ERR_WOULD_BLOCK);
    assert_false(moat_tcp_pending(&p.s));
    pair_close(&p);
}

/* With read-ahead: a short read is followed by exactly one WOULD_BLOCK,
 * even when bytes arrived meanwhile; poll() reports them and the next recv
 * returns them. */
static void short_read_spares_one_recv(void **state)
{
    (void)state;
    pair p;
    uint8_t ra[64], b[100];
    pair_open(&p, ra, sizeof ra);
    assert_int_equal(rd(&p, b, sizeof b), MOAT_ERR_WOULD_BLOCK);
    put(&p, "0123456789", 10);
    assert_int_equal(rd(&p, b, sizeof b), 10);   /* bypasses the buffer */
    assert_memory_equal(b, "0123456789", 10);
    put(&p, "abcde", 5);
    assert_int_equal(rd(&p, b, sizeof b), MOAT_ERR_WOULD_BLOCK);
    assert_true(readable(&p));
    assert_int_equal(rd(&p, b, 2), 2);           /* through the buffer */
    assert_memory_equal(b, "ab", 2);
    put(&p, "fg", 2);
    assert_int_equal(rd(&p, b, sizeof b), 3);
    assert_memory_equal(b, "cde", 3);
    assert_int_equal(rd(&p, b, sizeof b), MOAT_ERR_WOULD_BLOCK);
    assert_true(readable(&p));
    assert_int_equal(rd(&p, b, sizeof b), 2);
    assert_memory_equal(b, "fg", 2);
    /* the socket is really empty now */
    assert_int_equal(rd(&p, b, sizeof b), MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(rd(&p, b, sizeof b), MOAT_ERR_WOULD_BLOCK);
    assert_false(moat_tcp_pending(&p.s));
    pair_close(&p);
}

/* A read that got all it asked for says nothing about the socket: the next
 * recv asks the kernel. */
static void full_read_asks_again(void **state)
{
    (void)state;
    pair p;
    uint8_t b[16];
    pair_open(&p, NULL, 0);
    put(&p, "0123456789", 10);
    assert_int_equal(rd(&p, b, 4), 4);
    assert_int_equal(rd(&p, b, 6), 6);
    assert_memory_equal(b, "456789", 6);
    put(&p, "xyz", 3);
    assert_int_equal(rd(&p, b, 3), 3);
    assert_memory_equal(b, "xyz", 3);
    pair_close(&p);
}

/* End of stream after a short read: one WOULD_BLOCK, poll() wakes, then
 * MOAT_ERR_CLOSED. */
static void close_after_short_read(void **state)
{
    (void)state;
    pair p;
    uint8_t ra[16], b[32];
    pair_open(&p, ra, sizeof ra);
    put(&p, "bye", 3);
    close(p.peer);
    p.peer = -1;
    assert_int_equal(rd(&p, b, sizeof b), 3);
    assert_int_equal(rd(&p, b, sizeof b), MOAT_ERR_WOULD_BLOCK);
    assert_true(readable(&p));
    assert_int_equal(rd(&p, b, sizeof b), MOAT_ERR_CLOSED);
    pair_close(&p);
}

/* TLS-shaped reads (a 5-byte header, then the body) come from one recv():
 * bytes written after it stay in the socket until the buffer is used up,
 * then one WOULD_BLOCK, then they come. moat_tcp_pending tracks the buffer. */
static void readahead_serves_small_reads(void **state)
{
    (void)state;
    pair p;
    uint8_t ra[256], b[64];
    pair_open(&p, ra, sizeof ra);
    put(&p, "HEAD1body-one!HEAD2body-two-is-longer", 37);
    assert_int_equal(rd(&p, b, 5), 5);
    assert_memory_equal(b, "HEAD1", 5);
    assert_true(moat_tcp_pending(&p.s));
    /* the transport says so too, for layers above (moat_tls_pending) */
    assert_non_null(p.t.pending);
    assert_true(p.t.pending(p.t.ctx));
    put(&p, "late", 4);
    assert_int_equal(rd(&p, b, 9), 9);
    assert_memory_equal(b, "body-one!", 9);
    assert_int_equal(rd(&p, b, 5), 5);
    assert_memory_equal(b, "HEAD2", 5);
    /* asks for more than is buffered: gets what is buffered */
    assert_int_equal(rd(&p, b, 40), 18);
    assert_memory_equal(b, "body-two-is-longer", 18);
    assert_false(moat_tcp_pending(&p.s));
    assert_false(p.t.pending(p.t.ctx));
    assert_int_equal(rd(&p, b, 5), MOAT_ERR_WOULD_BLOCK);
    assert_true(readable(&p));
    assert_int_equal(rd(&p, b, 5), 4);
    assert_memory_equal(b, "late", 4);
    pair_close(&p);
}

/* A read at least as large as the buffer bypasses it. */
static void readahead_bypassed_by_large_reads(void **state)
{
    (void)state;
    pair p;
    uint8_t ra[8], b[64];
    pair_open(&p, ra, sizeof ra);
    put(&p, "0123456789abcdef", 16);
    assert_int_equal(rd(&p, b, 16), 16);
    assert_memory_equal(b, "0123456789abcdef", 16);
    assert_false(moat_tcp_pending(&p.s));
    put(&p, "0123456789abcdef", 16);
    assert_int_equal(rd(&p, b, 3), 3);      /* fills the 8-byte buffer */
    assert_true(moat_tcp_pending(&p.s));
    assert_int_equal(rd(&p, b, 32), 5);     /* the rest of the buffer first */
    assert_memory_equal(b, "34567", 5);
    assert_int_equal(rd(&p, b, 32), 8);     /* then straight from the socket */
    assert_memory_equal(b, "89abcdef", 8);
    pair_close(&p);
}

/* Closing drops buffered bytes of the old stream but keeps the buffer;
 * moat_tcp_init detaches it. */
static void close_drops_buffered_bytes(void **state)
{
    (void)state;
    pair p;
    uint8_t ra[64], b[8];
    pair_open(&p, ra, sizeof ra);
    put(&p, "stale bytes", 11);
    assert_int_equal(rd(&p, b, 2), 2);
    assert_true(moat_tcp_pending(&p.s));
    pair_close(&p);
    assert_false(moat_tcp_pending(&p.s));
    assert_ptr_equal(p.s.ra, ra);
    assert_int_equal(rd(&p, b, 2), MOAT_ERR_CLOSED);
    moat_tcp_init(&p.s);
    assert_null(p.s.ra);
    /* sizes beyond 16 bits are clamped, not wrapped */
    static uint8_t big[70000];
    moat_tcp_set_readahead(&p.s, big, sizeof big);
    assert_int_equal(p.s.ra_size, UINT16_MAX);
    moat_tcp_set_readahead(&p.s, NULL, 100);
    assert_null(p.s.ra);
    assert_int_equal(p.s.ra_size, 0);
}

/* Random writes and random read sizes, with and without read-ahead, waiting
 * on poll() after every WOULD_BLOCK as the contract asks: the stream comes
 * out whole and in order, and the reader never waits on bytes it holds. */
static void random_stream(uint8_t *ra, size_t ra_size, uint32_t seed)
{
    enum { TOTAL = 200000 };
    static uint8_t src[TOTAL], dst[TOTAL];
    pair p;
    size_t wr = 0, got = 0;
    uint32_t x = seed;
#define NEXT() (x = x * 1103515245u + 12345u, (x >> 8))
    for (size_t i = 0; i < TOTAL; i++)
        src[i] = (uint8_t)NEXT();
    pair_open(&p, ra, ra_size);
    assert_int_equal(fcntl(p.peer, F_SETFL, fcntl(p.peer, F_GETFL) | O_NONBLOCK), 0);
    while (got < TOTAL) {
        if (wr < TOTAL && NEXT() % 3 != 0) {
            size_t n = 1 + NEXT() % 700;
            if (n > TOTAL - wr)
                n = TOTAL - wr;
            ssize_t w = write(p.peer, src + wr, n);
            assert_true(w > 0 || (w < 0 && errno == EAGAIN));
            if (w > 0)
                wr += (size_t)w;
        }
        size_t want = 1 + NEXT() % 600;
        if (want > TOTAL - got)
            want = TOTAL - got;
        long n = rd(&p, dst + got, want);
        if (n == MOAT_ERR_WOULD_BLOCK) {
            assert_false(moat_tcp_pending(&p.s));
            if (got < wr) {
                /* bytes are in flight: poll() must see them */
                struct pollfd q = { .fd = p.s.fd, .events = POLLIN };
                assert_int_equal(poll(&q, 1, 1000), 1);
            }
            continue;
        }
        assert_true(n > 0 && (size_t)n <= want);
        got += (size_t)n;
    }
    assert_memory_equal(src, dst, TOTAL);
    pair_close(&p);
#undef NEXT
}

static void random_stream_plain(void **state)
{
    (void)state;
    random_stream(NULL, 0, 1);
    random_stream(NULL, 0, 2);
}

static void random_stream_readahead(void **state)
{
    (void)state;
    static uint8_t ra[1024];
    random_stream(ra, sizeof ra, 3);
    random_stream(ra, 7, 4);
    random_stream(ra, sizeof ra, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_recv_asks_kernel),
        cmocka_unit_test(short_read_spares_one_recv),
        cmocka_unit_test(full_read_asks_again),
        cmocka_unit_test(close_after_short_read),
        cmocka_unit_test(readahead_serves_small_reads),
        cmocka_unit_test(readahead_bypassed_by_large_reads),
        cmocka_unit_test(close_drops_buffered_bytes),
        cmocka_unit_test(random_stream_plain),
        cmocka_unit_test(random_stream_readahead),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
