/*
 * clock.c - time and randomness for the POSIX port.
 *
 * The engines never read a clock; the loop that drives them calls
 * moat_clock_ms() and passes the result in. CLOCK_MONOTONIC does not jump
 * when the wall clock is set (by SNTP, for example), so timers stay honest.
 */
#include "moat/posix.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

uint32_t moat_clock_ms(void)
{
    struct timespec ts;
    uint64_t ms;

    /* CLOCK_MONOTONIC cannot fail with a valid pointer on Linux. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    return (uint32_t)ms;  /* wraps at 2^32, as moat/timer.h expects */
}

/* For kernels without getrandom(2). */
static int read_urandom(void *buf, size_t len)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -1;
    do
        n = read(fd, buf, len);
    while (n < 0 && errno == EINTR);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

/* Never returns weak values: with no kernel randomness at all it aborts. */
uint32_t moat_random32(void *unused)
{
    uint32_t v;
    ssize_t n;

    (void)unused;
    do
        n = getrandom(&v, sizeof v, 0);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof v)
        return v;
    if (read_urandom(&v, sizeof v) == 0)
        return v;
    abort();
}
