/*
 * batch.c - moat_poll_batched(): poll() that lets a stream gather before
 * it wakes (moat/posix.h says why and when).
 */
#include <time.h>

#include "moat/posix.h"

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int moat_poll_batched(moat_batch *b, struct pollfd *fds, nfds_t n, int timeout_ms)
{
    uint32_t hold = b->hold_us < MOAT_BATCH_HOLD_MAX_US ? b->hold_us : MOAT_BATCH_HOLD_MAX_US;
    uint64_t t0;
    int r;

    if (b->busy && hold > 0 && timeout_ms != 0) {
        struct timespec ts;
        if (timeout_ms > 0 && (uint32_t)timeout_ms <= hold / 1000u) {
            hold = (uint32_t)timeout_ms * 1000u; /* the whole wait is the hold */
            timeout_ms = 0;
        }
        ts.tv_sec = 0;
        ts.tv_nsec = (long)hold * 1000L;
        (void)nanosleep(&ts, NULL); /* EINTR: a signal ends the hold */
    }
    t0 = now_us();
    r = poll(fds, n, timeout_ms);
    if (r > 0)
        b->busy = now_us() - t0 < MOAT_BATCH_STREAM_US; /* work came at once */
    else if (r == 0)
        b->busy = false; /* quiet: the next message is handled at once */
    return r;
}
