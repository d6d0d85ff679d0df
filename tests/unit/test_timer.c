/*
 * test_timer.c - moat/timer.h: elapsed time, deadlines and timers, with the
 * uint32 millisecond clock wrapping after 2^32 ms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "moat/timer.h"

static void elapsed_plain(void **state)
{
    (void)state;
    assert_int_equal(moat_elapsed(0, 0), 0);
    assert_int_equal(moat_elapsed(100, 250), 150);
    assert_int_equal(moat_elapsed(0, 0xFFFFFFFFu), 0xFFFFFFFFu);
}

static void elapsed_across_wrap(void **state)
{
    (void)state;
    assert_int_equal(moat_elapsed(0xFFFFFF00u, 0x00000000u), 0x100);
    assert_int_equal(moat_elapsed(0xFFFFFF00u, 0x00000010u), 0x110);
    assert_int_equal(moat_elapsed(0xFFFFFFFFu, 0x00000000u), 1);
    assert_int_equal(moat_elapsed(0x80000000u, 0x7FFFFFFFu), 0xFFFFFFFFu);
}

static void time_reached(void **state)
{
    (void)state;
    assert_true(moat_time_reached(1000, 1000));
    assert_true(moat_time_reached(1001, 1000));
    assert_false(moat_time_reached(999, 1000));
    /* deadline just after the wrap, now just before it: not yet */
    assert_false(moat_time_reached(0xFFFFFFF0u, 0x00000010u));
    assert_true(moat_time_reached(0x00000010u, 0x00000010u));
    assert_true(moat_time_reached(0x00000011u, 0x00000010u));
    /* deadline just before the wrap, now after it: passed */
    assert_true(moat_time_reached(0x00000005u, 0xFFFFFFF0u));
    assert_false(moat_time_reached(0xFFFFFFEFu, 0xFFFFFFF0u));
    /* the 2^31 horizon: up to 2^31-1 ms late still counts as reached */
    assert_true(moat_time_reached(0x7FFFFFFFu, 0));
    assert_false(moat_time_reached(0x80000000u, 0));
}

static void timer_expiry_and_remaining(void **state)
{
    (void)state;
    moat_timer t;
    moat_timer_start(&t, 5000, 250);
    assert_int_equal(t.start_ms, 5000);
    assert_int_equal(t.period_ms, 250);
    assert_false(moat_timer_expired(&t, 5000));
    assert_int_equal(moat_timer_remaining(&t, 5000), 250);
    assert_false(moat_timer_expired(&t, 5249));
    assert_int_equal(moat_timer_remaining(&t, 5249), 1);
    assert_true(moat_timer_expired(&t, 5250));
    assert_int_equal(moat_timer_remaining(&t, 5250), 0);
    assert_true(moat_timer_expired(&t, 9999));
    assert_int_equal(moat_timer_remaining(&t, 9999), 0);
}

static void timer_across_wrap(void **state)
{
    (void)state;
    moat_timer t;
    moat_timer_start(&t, 0xFFFFFF00u, 0x200);
    assert_false(moat_timer_expired(&t, 0xFFFFFF00u));
    assert_false(moat_timer_expired(&t, 0xFFFFFFFFu));
    assert_int_equal(moat_timer_remaining(&t, 0xFFFFFFFFu), 0x101);
    assert_false(moat_timer_expired(&t, 0x00000000u));
    assert_int_equal(moat_timer_remaining(&t, 0x00000000u), 0x100);
    assert_false(moat_timer_expired(&t, 0x000000FFu));
    assert_int_equal(moat_timer_remaining(&t, 0x000000FFu), 1);
    assert_true(moat_timer_expired(&t, 0x00000100u));
    assert_int_equal(moat_timer_remaining(&t, 0x00000100u), 0);
}

static void timer_zero_period(void **state)
{
    (void)state;
    moat_timer t;
    moat_timer_start(&t, 0xFFFFFFFFu, 0);
    assert_true(moat_timer_expired(&t, 0xFFFFFFFFu));
    assert_int_equal(moat_timer_remaining(&t, 0xFFFFFFFFu), 0);
}

static void timer_long_period(void **state)
{
    (void)state;
    /* a period just below 2^31 ms (24.8 days), started near the wrap */
    moat_timer t;
    moat_timer_start(&t, 0xF0000000u, 0x7FFFFFFFu);
    assert_false(moat_timer_expired(&t, 0x6FFFFFFEu));
    assert_int_equal(moat_timer_remaining(&t, 0x6FFFFFFEu), 1);
    assert_true(moat_timer_expired(&t, 0x6FFFFFFFu));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(elapsed_plain),
        cmocka_unit_test(elapsed_across_wrap),
        cmocka_unit_test(time_reached),
        cmocka_unit_test(timer_expiry_and_remaining),
        cmocka_unit_test(timer_across_wrap),
        cmocka_unit_test(timer_zero_period),
        cmocka_unit_test(timer_long_period),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
