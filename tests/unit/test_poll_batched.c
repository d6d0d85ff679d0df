/*
 * test_poll_batched.c - moat_poll_batched over a real socket pair: it holds
 * only while each wait finds work at once (a stream), never after a pause,
 * a call that timed out or when the caller asks for no wait, never past
 * the caller's timeout or MOAT_BATCH_HOLD_MAX_US, and a signal cuts the
 * hold short. Every hold here is the longest there is (10 ms), so that "it held" and
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
#include <sys/wait.h>
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

/* TRIALS calls, each on a fresh copy of `from` with a byte waiting: each
 * must find it, take at least min_us and leave b.busy as busy_after (-1:
 * either). Returns how many took less than quick_us. */
static int ready_trials(moat_batch from, int timeout_ms, uint64_t min_us, uint64_t quick_us,
                        int busy_after)
{
    int quick = 0;
    uint64_t took;
    put_byte();
    for (int i = 0; i < TRIALS; i++) {
        moat_batch b = from;
        assert_int_equal(wait_in(&b, timeout_ms, &took), 1);
        assert_true(took >= min_us);
        if (busy_after >= 0)
            assert_int_equal(b.busy, busy_after);
        quick += took < quick_us;
    }
    take_byte();
    return quick;
}

/* A call that is not busy does not hold, whatever is waiting. */
static void test_idle_does_not_hold(void **state)
{
    (void)state;
    assert_mostly_quick(ready_trials((moat_batch){ .hold_us = HOLD }, 5000, 0, HOLD, 1));
}

/* Work that was there at once is a stream: from then on each call lets
 * more gather first, returning only after the hold with what arrived (and,
 * finding it at once after the hold, stays a stream however long the hold
 * overran). */
static void test_stream_holds(void **state)
{
    moat_batch b = { .hold_us = HOLD };
    uint64_t took;
    (void)state;
    put_byte();
    assert_int_equal(wait_in(&b, 5000, &took), 1); /* the first: at once */
    assert_true(b.busy);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(wait_in(&b, 5000, &took), 1);
        assert_true(took >= HOLD);
        assert_true(b.busy);
    }
    take_byte();
}

/* A message after a pause (the call had to wait 30 ms for it: a message now
 * and then) is no stream: the next call does not hold. */
static void test_pause_is_not_a_stream(void **state)
{
    int quick = 0;
    uint64_t took;
    (void)state;
    for (int i = 0; i < 5; i++) {
        moat_batch b = { .hold_us = HOLD, .busy = true };
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            struct timespec pause = { .tv_nsec = 30000000L };
            nanosleep(&pause, NULL);
            _exit(write(sv[1], "x", 1) == 1 ? 0 : 1);
        }
        b.busy = false; /* quiet before: this call waits for the byte */
        assert_int_equal(wait_in(&b, 5000, &took), 1);
        assert_true(took >= 20000);
        assert_false(b.busy);
        assert_int_equal(waitpid(child, NULL, 0), child);
        assert_int_equal(wait_in(&b, 5000, &took), 1); /* still there: at once */
        quick += took < HOLD;
        take_byte();
    }
    if (quick < 4)
        fail_msg("only %d of 5 calls after a pause returned within the hold", quick);
}

/* hold_us 0 is plain poll(): no hold even when busy. */
static void test_zero_hold_is_poll(void **state)
{
    (void)state;
    assert_mostly_quick(
        ready_trials((moat_batch){ .hold_us = 0, .busy = true }, 5000, 0, HOLD, -1));
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
    (void)state;
    assert_mostly_quick(
        ready_trials((moat_batch){ .hold_us = HOLD, .busy = true }, 0, 0, HOLD, -1));
}

/* An absurd hold is cut to MOAT_BATCH_HOLD_MAX_US: it holds, and most calls
 * end long before the 4295 s asked for would. */
static void test_hold_is_capped(void **state)
{
    (void)state;
    assert_mostly_quick(
        ready_trials((moat_batch){ .hold_us = UINT32_MAX, .busy = true }, -1, HOLD, 4 * HOLD, -1));
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
        cmocka_unit_test_setup_teardown(test_pause_is_not_a_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_hold_is_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_bounds_hold_and_ends_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_timeout_never_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_is_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_ends_hold, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
