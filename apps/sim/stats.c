/*
 * stats.c - percentiles, the process's resident memory, and (with an
 * mbedTLS built with MBEDTLS_PLATFORM_MEMORY, such as the microcontroller
 * profile) a count of every byte mbedTLS holds. The count uses
 * malloc_usable_size(), so it adds no header to any block and changes
 * nothing it measures.
 */
#include "sim.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(MBEDTLS_PLATFORM_MEMORY)
#include <mbedtls/platform.h>
#endif

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

double sim_percentile(uint32_t *v, size_t n, double p)
{
    size_t i;
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof *v, cmp_u32);
    /* nearest rank */
    i = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (i < 1)
        i = 1;
    if (i > n)
        i = n;
    return (double)v[i - 1];
}

size_t sim_rss_kb(size_t *peak_kb)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t rss = 0, hwm = 0;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            rss = strtoul(line + 6, NULL, 10);
        else if (strncmp(line, "VmHWM:", 6) == 0)
            hwm = strtoul(line + 6, NULL, 10);
    }
    fclose(f);
    if (peak_kb != NULL)
        *peak_kb = hwm;
    return rss;
}

double sim_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static size_t heap_live, heap_peak;

#if defined(MBEDTLS_PLATFORM_MEMORY)
static void *count_calloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p != NULL) {
        heap_live += malloc_usable_size(p);
        if (heap_live > heap_peak)
            heap_peak = heap_live;
    }
    return p;
}

static void count_free(void *p)
{
    if (p != NULL) {
        heap_live -= malloc_usable_size(p);
        free(p);
    }
}
#endif

void sim_heap_init(void)
{
#if defined(MBEDTLS_PLATFORM_MEMORY)
    mbedtls_platform_set_calloc_free(count_calloc, count_free);
#endif
}

bool sim_heap_counted(void)
{
#if defined(MBEDTLS_PLATFORM_MEMORY)
    return true;
#else
    return false;
#endif
}

size_t sim_heap_live(void)
{
    return heap_live;
}

size_t sim_heap_peak(void)
{
    return heap_peak;
}
