/*
 * batch.c - moat_poll_batched(): poll() that lets a stream gather before
 * it wakes (moat/posix.h says why and when).
 */
#include <time.h>

#include "moat/posix.h"

int moat_poll_batched(moat_batch *b, struct pollfd *fds, nfds_t n, int timeout_ms)
{
    uint32_t cap = b->hold_us < MOAT_BATCH_HOLD_MAX_US ? b->hold_us : MOAT_BATCH_HOLD_MAX_US;
    int r;

    if (b->busy && cap > 0 && timeout_ms != 0) {
        struct timespec ts;
        uint32_t hold = cap;
        if (timeout_ms > 0 && (uint32_t)timeout_ms <= hold / 1000u) {
            hold = (uint32_t)timeout_ms * 1000u; /* the whole wait is the hold */
            timeout_ms = 0;
        }
        ts.tv_sec = 0;
        ts.tv_nsec = (long)hold * 1000L;
        (void)nanosleep(&ts, NULL); /* EINTR: a signal ends the hold */
    }
    r = poll(fds, n, timeout_ms);
    if (r > 0) {
        struct timespec now;
        uint64_t us;
        clock_gettime(CLOCK_MONOTONIC, &now);
        us = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
        b->busy = us - b->ready_us < (uint64_t)cap + MOAT_BATCH_STREAM_US;
        b->ready_us = us;
    } else if (r == 0) {
        b->busy = false; /* quiet: the next message is handled at once */
    }
    return r;
}
