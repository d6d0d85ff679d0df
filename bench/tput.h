/*
 * tput.h - what the three throughput programs (tput_moat.c, tput_mosq.c,
 * tput_paho.c) share: one command line, one payload, one way to report.
 *
 *   tput_<lib> pub|sub --port N [--tls CA CERT KEY] [--qos Q] [--count N]
 *                      [--size B] [--window W] [--topic T] [--threaded]
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
            "[--count N] [--size B] [--window W] [--topic T] [--threaded]\n",
            prog);
    exit(2);
}

static inline void tput_parse(int argc, char **argv, tput_opts *o)
{
    *o = (tput_opts){ .host = "127.0.0.1", .qos = 1, .count = 100000, .size = 64,
                      .window = 64, .topic = "bench/tput" };
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
        else
            tput_usage(argv[0]);
    }
    if (o->port <= 0 || o->port > 65535 || (o->qos != 0 && o->qos != 1) || o->count <= 0 ||
        o->size < 8 || o->size > 65536 || o->window < 1 || o->window > 65535)
        tput_usage(argv[0]);
}

/* The payload: the message number in its first 8 bytes, then a pattern. */
static inline void tput_payload(uint8_t *buf, int size, uint64_t n)
{
    memcpy(buf, &n, sizeof n);
    for (int i = 8; i < size; i++)
        buf[i] = (uint8_t)('a' + i % 26);
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
