/*
 * tput.h - what the three throughput programs (tput_moat.c, tput_mosq.c,
 * tput_paho.c) share: one command line, one payload, one way to report.
 *
 *   tput_<lib> pub|sub --port N [--tls CA CERT KEY] [--qos Q] [--count N]
 *                      [--size B] [--window W] [--topic T] [--threaded]
 *                      [--hold US] [--rate R]
 *
 * sub connects, subscribes at --qos, prints "READY", then counts messages
 * until it has --count of them (or none came for IDLE_S seconds) and prints
 *   SUB count <n> first_ns <t> last_ns <t>
 * pub connects, prints "PUB start_ns <t>", publishes --count messages of
 * --size bytes at --qos, keeping at most --window of them unacknowledged
 * (QoS 1) or unwritten (QoS 0), waits for the last acknowledgement, and
 * prints "PUB end_ns <t>". Both print "CPU <s>", their CPU time in all
 * threads, as they exit. Times are CLOCK_MONOTONIC nanoseconds, the same
 * clock in every process, so bench/tput.sh computes the end-to-end rate as
 * count / (sub last_ns - pub start_ns).
 *
 * --hold US (moat only): wait with moat_poll_batched (moat/posix.h), holding
 * US microseconds after a wake-up that found work; 0 or absent: plain poll.
 * --rate R: the publisher sends R messages a second instead of as fast as
 * the window allows, each stamped with its send time (CLOCK_MONOTONIC) in
 * bytes 8-15, and the subscriber prints the latency percentiles
 *   LAT p50_us <a> p99_us <b> max_us <c>
 *
 * The publishing itself happens inside a function named bench_publish_loop
 * in each program, so `valgrind --tool=callgrind
 * --toggle-collect=bench_publish_loop` counts exactly the client's work per
 * message.
 */
#ifndef MOAT_BENCH_TPUT_H
#define MOAT_BENCH_TPUT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define TPUT_IDLE_S 10     /* sub gives up after this long without a message */
#define TPUT_CONNECT_S 10  /* connecting and subscribing must not take longer */

typedef struct tput_opts {
    bool pub;
    const char *host;
    int port;
    const char *ca, *cert, *key; /* all set: mutual TLS */
    int qos;
    long count;
    int size;
    int window;
    const char *topic;
    bool threaded;               /* libmosquitto: its own network thread */
    long hold_us;                /* moat: moat_poll_batched's hold; -1 unset */
    long rate;                   /* messages per second; 0: as fast as it can */
} tput_opts;

static inline uint64_t tput_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void tput_die(const char *what, const char *detail)
{
    fprintf(stderr, "tput: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static inline void tput_usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s pub|sub --port N [--host A] [--tls CA CERT KEY] [--qos 0|1] "
            "[--count N] [--size B] [--window W] [--topic T] [--threaded] [--hold US] "
            "[--rate R]\n",
            prog);
    exit(2);
}

static inline void tput_parse(int argc, char **argv, tput_opts *o)
{
    *o = (tput_opts){ .host = "127.0.0.1", .qos = 1, .count = 100000, .size = 64,
                      .window = 64, .topic = "bench/tput", .hold_us = -1 };
    if (argc < 2)
        tput_usage(argv[0]);
    if (strcmp(argv[1], "pub") == 0)
        o->pub = true;
    else if (strcmp(argv[1], "sub") != 0)
        tput_usage(argv[0]);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool has1 = i + 1 < argc;
        if (strcmp(a, "--threaded") == 0)
            o->threaded = true;
        else if (strcmp(a, "--tls") == 0 && i + 3 < argc) {
            o->ca = argv[++i];
            o->cert = argv[++i];
            o->key = argv[++i];
        } else if (!has1)
            tput_usage(argv[0]);
        else if (strcmp(a, "--port") == 0)
            o->port = atoi(argv[++i]);
        else if (strcmp(a, "--host") == 0)
            o->host = argv[++i];
        else if (strcmp(a, "--qos") == 0)
            o->qos = atoi(argv[++i]);
        else if (strcmp(a, "--count") == 0)
            o->count = atol(argv[++i]);
        else if (strcmp(a, "--size") == 0)
            o->size = atoi(argv[++i]);
        else if (strcmp(a, "--window") == 0)
            o->window = atoi(argv[++i]);
        else if (strcmp(a, "--topic") == 0)
            o->topic = argv[++i];
        else if (strcmp(a, "--hold") == 0)
            o->hold_us = atol(argv[++i]);
        else if (strcmp(a, "--rate") == 0)
            o->rate = atol(argv[++i]);
        else
            tput_usage(argv[0]);
    }
    if (o->port <= 0 || o->port > 65535 || (o->qos != 0 && o->qos != 1) || o->count <= 0 ||
        o->size < 16 || o->size > 65536 || o->window < 1 || o->window > 65535 ||
        o->hold_us < -1 || o->hold_us > 10000 || o->rate < 0 || o->rate > 1000000)
        tput_usage(argv[0]);
}

/* The payload: the message number in its first 8 bytes, then a pattern. */
static inline void tput_payload(uint8_t *buf, int size, uint64_t n)
{
    memcpy(buf, &n, sizeof n);
    for (int i = 8; i < size; i++)
        buf[i] = (uint8_t)('a' + i % 26);
}

/* --rate: the send time, in bytes 8-15 of the message about to go. */
static inline void tput_stamp(uint8_t *buf)
{
    uint64_t t = tput_now_ns();
    memcpy(buf + 8, &t, sizeof t);
}

/* --rate: when message number `sent` is due, the sends spaced evenly from
 * start_ns. */
static inline uint64_t tput_due_ns(const tput_opts *o, uint64_t start_ns, long sent)
{
    return start_ns + (uint64_t)sent * 1000000000u / (uint64_t)o->rate;
}

/* Without --rate every message is due at once. */
static inline bool tput_is_due(const tput_opts *o, uint64_t start_ns, long sent)
{
    return o->rate == 0 || tput_now_ns() >= tput_due_ns(o, start_ns, sent);
}

/* --rate: sleep until message number `sent` is due. The publishers sleep
 * here, then publish and move what is ready without waiting, so that every
 * library's messages leave on time, one by one. */
static inline void tput_sleep_until_due(const tput_opts *o, uint64_t start_ns, long sent)
{
    uint64_t due;
    struct timespec ts;
    if (o->rate == 0)
        return;
    due = tput_due_ns(o, start_ns, sent);
    ts.tv_sec = (time_t)(due / 1000000000u);
    ts.tv_nsec = (long)(due % 1000000000u);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
        ;
}

/* --hold is moat's (moat_poll_batched); the peers have nothing like it. */
static inline void tput_no_hold(const tput_opts *o)
{
    if (o->hold_us > 0)
        tput_die("--hold", "only tput_moat has a batched wait");
}

/* --rate, subscriber: each message's latency, then the percentiles. */
static uint32_t *tput_lat;
static long tput_lat_n;

static inline void tput_lat_note(const tput_opts *o, const void *payload, size_t len)
{
    uint64_t sent, now = tput_now_ns();
    if (o->rate == 0 || len < 16)
        return;
    if (tput_lat == NULL && (tput_lat = calloc((size_t)o->count, sizeof *tput_lat)) == NULL)
        tput_die("out of memory", NULL);
    memcpy(&sent, (const uint8_t *)payload + 8, sizeof sent);
    if (tput_lat_n < o->count)
        tput_lat[tput_lat_n++] = now > sent ? (uint32_t)((now - sent) / 1000u) : 0;
}

static int tput_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static inline void tput_lat_report(const tput_opts *o)
{
    if (o->rate == 0 || tput_lat_n == 0)
        return;
    qsort(tput_lat, (size_t)tput_lat_n, sizeof *tput_lat, tput_cmp_u32);
    printf("LAT p50_us %u p99_us %u max_us %u\n", tput_lat[tput_lat_n / 2],
           tput_lat[tput_lat_n * 99 / 100], tput_lat[tput_lat_n - 1]);
    fflush(stdout);
}

static inline void tput_ready(void)
{
    printf("READY\n");
    fflush(stdout);
}

static inline void tput_sub_report(long count, uint64_t first, uint64_t last)
{
    printf("SUB count %ld first_ns %llu last_ns %llu\n", count, (unsigned long long)first,
           (unsigned long long)last);
    fflush(stdout);
}

static inline void tput_pub_start(uint64_t t)
{
    printf("PUB start_ns %llu\n", (unsigned long long)t);
    fflush(stdout);
}

static inline void tput_pub_end(uint64_t t)
{
    printf("PUB end_ns %llu\n", (unsigned long long)t);
    fflush(stdout);
}

/* The process's CPU time (every thread), printed last: "CPU <seconds>". */
static inline void tput_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("CPU %.6f\n", (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    fflush(stdout);
}

#endif
