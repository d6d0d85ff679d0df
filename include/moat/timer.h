/*
 * moat/timer.h - wrap-safe millisecond timers.
 *
 * Time is a uint32_t count of milliseconds passed in by the caller; it wraps
 * after about 49.7 days. All comparisons use unsigned differences, so a timer
 * is correct across the wrap as long as a period is below 2^31 ms.
 * The successor of the seed's AsyncWait: a timer is a value, never a sleep.
 */
#ifndef MOAT_TIMER_H
#define MOAT_TIMER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct moat_timer {
    uint32_t start_ms;
    uint32_t period_ms;
} moat_timer;

/* Milliseconds from a to b (b later), correct across the wrap. */
static inline uint32_t moat_elapsed(uint32_t from_ms, uint32_t now_ms)
{
    return now_ms - from_ms;
}

/* True once now_ms is at or past deadline_ms (deadline within 2^31 ms). */
static inline bool moat_time_reached(uint32_t now_ms, uint32_t deadline_ms)
{
    return (uint32_t)(now_ms - deadline_ms) < 0x80000000u;
}

static inline void moat_timer_start(moat_timer *t, uint32_t now_ms, uint32_t period_ms)
{
    t->start_ms = now_ms;
    t->period_ms = period_ms;
}

static inline bool moat_timer_expired(const moat_timer *t, uint32_t now_ms)
{
    return moat_elapsed(t->start_ms, now_ms) >= t->period_ms;
}

/* Milliseconds until the timer expires; 0 once it has. */
static inline uint32_t moat_timer_remaining(const moat_timer *t, uint32_t now_ms)
{
    uint32_t e = moat_elapsed(t->start_ms, now_ms);
    return e >= t->period_ms ? 0 : t->period_ms - e;
}

#endif
