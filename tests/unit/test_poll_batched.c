/*
 * test_poll_batched.c - moat_poll_batched over a real socket pair: it holds
 * only while wake-ups that find work come close together (a stream), never
 * after a pause, a call that timed out or when the caller asks for no wait,
 * never past the caller's timeout or MOAT_BATCH_HOLD_MAX_US, and a signal
 * cuts the hold short.
 * Every hold here is the longest there is (10 ms), so that "it held" and
 * "it did not" are far apart.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "moat/posix.h"

static int sv[2] = { -1, -1 };

static int setup(void **state)
{
    (void)state;
    return socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
}

static int teardown(void **state)
{
    (void)state;
    close(sv[0]);
    close(sv[1]);
    return 0;
}

#define HOLD MOAT_BATCH_HOLD_MAX_US /* the longest hold, 10 ms */
#define TRIALS 20

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void put_byte(void)
{
    assert_int_equal(write(sv[1], "x", 1), 1);
}

static void take_byte(void)
{
    char c;
    assert_int_equal(read(sv[0], &c, 1), 1);
}

/* One call on sv[0] for POLLIN; its result and how long it took. */
static int wait_in(moat_batch *b, int timeout_ms, uint64_t *took_us)
{
    struct pollfd p = { .fd = sv[0], .events = POLLIN };
    uint64_t t0 = now_us();
    int r = moat_poll_batched(b, &p, 1, timeout_ms);
    *took_us = now_us() - t0;
    if (r == 1)
        assert_true(p.revents & POLLIN);
    return r;
}

/*
 * "It held" is a lower bound (a sleep never ends early without a signal).
 * "It did not hold" is TRIALS calls of which most must return before the
 * hold could have ended: a loaded machine may delay a few, a hold delays all.
 */
static void assert_mostly_quick(int quick)
{
    if (quick < TRIALS * 3 / 4)
        fail_msg("only %d of %d calls returned within the hold", quick, TRIALS);
}

/* A quiet link: the first message is handled at once, and one wake-up that
 * found work is not yet a stream. */
static void test_idle_does_not_hold(void **state)
{
    int quick = 0;
    uint64_t took;
    (void)state;
    put_byte();
    for (int i = 0; i < TRIALS; i++) {
        moat_batch b = { .hold_us = HOLD };
        assert_int_equal(wait_in(&b, 5000, &took), 1);
        assert_false(b.busy);
        quick += took < HOLD;
    }
    take_byte();
    assert_mostly_quick(quick);
}

/* Two wake-ups close together make a stream: from then on each call lets
 * more gather first, returning only after the hold with what arrived. The
 * hold itself keeps the wake-ups close enough to stay a stream. */
static void test_stream_holds(void **state)
{
    moat_batch b = { .hold_us = HOLD };
    uint64_t took;
    (void)state;
    put_byte();
    assert_int_equal(wait_in(&b, 5000, &took), 1); /* the first: at once */
    assert_int_equal(wait_in(&b, 5000, &took), 1); /* the second: at once */
    assert_true(b.busy);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(wait_in(&b, 5000, &took), 1);
        assert_true(took >= HOLD);
        assert_true(b.busy);
    }
    take_byte();
}

/* Wake-ups further apart than the hold plus MOAT_BATCH_STREAM_US are not a
 * stream (a message now and then): none of them is held. */
static void test_spaced_wakeups_do_not_hold(void **state)
{
    moat_batch b = { .hold_us = HOLD };
    struct timespec gap = { .tv_nsec = (long)(HOLD + MOAT_BATCH_STREAM_US) * 3000L };
    int quick = 0;
    uint64_t took;
    (void)state;
    put_byte();
    for (int i = 0; i < TRIALS; i++) {
        nanosleep(&gap, NULL);
        assert_int_equal(wait_in(&b, 5000, &took), 1);
        assert_false(b.busy);
        quick += took < HOLD;
    }
    take_byte();
    assert_mostly_quick(quick);
}

/* hold_us 0 is plain poll(): no hold even when busy. */
static void test_zero_hold_is_poll(void **state)
{
    int quick = 0;
    uint64_t took;
    (void)state;
    put_byte();
    for (int i = 0; i < TRIALS; i++) {
        moat_batch b = { .hold_us = 0, .busy = true };
        assert_int_equal(wait_in(&b, 5000, &took), 1);
        quick += took < HOLD;
    }
    take_byte();
    assert_mostly_quick(quick);
}

/* A timeout shorter than the hold bounds the whole wait; the call that
 * timed out leaves the batch idle, so the next message is not held. */
static void test_timeout_bounds_hold_and_ends_busy(void **state)
{
    int bounded = 0, quick = 0;
    uint64_t took;
    (void)state;
    for (int i = 0; i < TRIALS; i++) {
        moat_batch b = { .hold_us = HOLD, .busy = true };
        assert_int_equal(wait_in(&b, 2, &took), 0);
        assert_true(took >= 2000);
        bounded += took < HOLD;
        assert_false(b.busy);
        put_byte();
        assert_int_equal(wait_in(&b, 5000, &took), 1);
        quick += took < HOLD;
        take_byte();
    }
    assert_mostly_quick(bounded);
    assert_mostly_quick(quick);
}

/* A timeout of 0 asks for no wait at all: no hold. */
static void test_zero_timeout_never_holds(void **state)
{
    int quick = 0;
    uint64_t took;
    (void)state;
    put_byte();
    for (int i = 0; i < TRIALS; i++) {
        moat_batch b = { .hold_us = HOLD, .busy = true };
        assert_int_equal(wait_in(&b, 0, &took), 1);
        quick += took < HOLD;
    }
    take_byte();
    assert_mostly_quick(quick);
}

/* An absurd hold is cut to MOAT_BATCH_HOLD_MAX_US: it holds, and most calls
 * end long before the 4295 s asked for would. */
static void test_hold_is_capped(void **state)
{
    int quick = 0;
    uint64_t took;
    (void)state;
    put_byte();
    for (int i = 0; i < TRIALS; i++) {
        moat_batch b = { .hold_us = UINT32_MAX, .busy = true };
        assert_int_equal(wait_in(&b, -1, &took), 1);
        assert_true(took >= HOLD);
        quick += took < 4 * HOLD;
    }
    take_byte();
    assert_mostly_quick(quick);
}

static void on_alarm(int sig)
{
    (void)sig;
}

/* A signal (SIGINT in the tools) ends the hold at once. */
static void test_signal_ends_hold(void **state)
{
    moat_batch b = { .hold_us = HOLD, .busy = true };
    struct sigaction sa;
    struct itimerval it = { .it_value = { .tv_usec = 2000 } };
    uint64_t took;
    int r, cut = 0;
    (void)state;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    assert_int_equal(sigaction(SIGALRM, &sa, NULL), 0);
    /* The hold is 10 ms; the signal comes after 2 ms, and poll() then
     * returns at once with the byte that is already there. Repeat so that
     * one late signal cannot pass for the hold being cut. */
    put_byte();
    for (int i = 0; i < 20; i++) {
        b.busy = true;
        assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
        r = wait_in(&b, -1, &took);
        assert_int_equal(r, 1);
        cut += took < HOLD;
    }
    take_byte();
    signal(SIGALRM, SIG_DFL);
    assert_mostly_quick(cut);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_idle_does_not_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spaced_wakeups_do_not_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_hold_is_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_bounds_hold_and_ends_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_timeout_never_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_is_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_ends_hold, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
