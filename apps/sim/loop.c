/*
 * loop.c - the one loop that drives every device and the monitor.
 *
 * epoll, level-triggered: a socket is watched for input always, and for
 * output only while its owner has bytes waiting (a TCP connect, a TLS
 * handshake that wants to write, MQTT output the socket did not take).
 * Timers are a compact array of due times, one per device, scanned every
 * SCAN_MS: a scan of 10,000 entries costs microseconds, less than keeping
 * a heap ordered through every status and keep-alive.
 *
 * The run has three phases: the ramp (devices start at --rate, at most
 * --max-pending connecting at once), the steady phase (--duration after the
 * last device came up), and the drain (no new status; wait until every
 * status is acknowledged and seen by the monitor, at most --drain).
 */
#include "sim.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>

#include "moat/timer.h"

#define SCAN_MS 10u
#define MAX_EVENTS 512
#define STARTS_PER_TURN 1u /* identities made per loop turn: keeps I/O moving */

uint32_t sim_rand(sim *s)
{
    /* xorshift64*: the schedule only, reproducible from --seed */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (uint32_t)((s->rng * 2685821657736338717ull) >> 32);
}

void sim_watch(sim *s, int fd, uint32_t tag, bool out, bool add)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | (out ? EPOLLOUT : 0u);
    ev.data.u32 = tag;
    if (epoll_ctl(s->ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0)
        sim_note_error(s, "epoll_ctl: %s", strerror(errno));
}

void sim_set_out(sim *s, int fd, uint32_t tag, bool *cur, bool want)
{
    if (*cur == want)
        return;
    sim_watch(s, fd, tag, want, false);
    *cur = want;
}

void sim_again(sim *s, uint32_t tag)
{
    size_t slot = tag == SIM_TAG_MONITOR ? s->o.count : tag;
    if (s->again_mark[slot])
        return;
    s->again_mark[slot] = 1;
    s->again[s->again_n++] = tag;
}

void sim_note_error(sim *s, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < s->nerrs; i++) {
        if (strcmp(s->errs[i].msg, msg) == 0) {
            s->errs[i].n++;
            return;
        }
    }
    if (s->nerrs < SIM_MAX_ERRORS) {
        snprintf(s->errs[s->nerrs].msg, sizeof s->errs[0].msg, "%s", msg);
        s->errs[s->nerrs++].n = 1;
        fprintf(stderr, "moat-sim: %s\n", msg); /* the first of each kind, as it happens */
    } else {
        s->errs[SIM_MAX_ERRORS - 1].n++;
    }
}

static void dispatch(sim *s, uint32_t tag, uint32_t events)
{
    if (tag == SIM_TAG_MONITOR)
        sim_mon_io(s, events);
    else if (tag < s->o.count)
        sim_dev_io(s, &s->dev[tag], events);
}

/* Devices (and the monitor) whose TLS layer holds records already read
 * from the socket: epoll will not report them again. */
static void run_again(sim *s)
{
    size_t n = s->again_n;
    for (size_t i = 0; i < n; i++) {
        uint32_t tag = s->again[i];
        s->again_mark[tag == SIM_TAG_MONITOR ? s->o.count : tag] = 0;
    }
    s->again_n = 0;
    /* Work through this turn's list while the next one fills. */
    uint32_t *turn = s->again;
    s->again = s->again_b;
    s->again_b = turn;
    for (size_t i = 0; i < n; i++)
        dispatch(s, turn[i], EPOLLIN);
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

typedef struct totals {
    uint64_t sent, acked, recv, skipped;
} totals;

static totals count_all(const sim *s)
{
    totals t = { 0, 0, 0, 0 };
    for (uint32_t i = 0; i < s->started; i++) {
        t.sent += s->dev[i].st_sent;
        t.acked += s->dev[i].pub_acked;
        t.recv += s->dev[i].mon_recv;
        t.skipped += s->dev[i].st_skipped;
    }
    return t;
}

static void progress(sim *s, double *last_cpu, uint32_t *last_t)
{
    size_t peak, rss = sim_rss_kb(&peak);
    totals t = count_all(s);
    double cpu = cpu_s(), el = (double)(s->now - s->t0) / 1000.0;
    double dt = (double)(s->now - *last_t) / 1000.0;
    const char *phase = s->stopping ? "drain" : s->steady ? "steady" : "ramp";

    printf("[%7.1fs] %-6s up %u/%u (started %u, connecting %u) status sent %llu recv %llu "
           "| rss %.1f MB = %.2f KB/device | cpu %.0f%%\n",
           el, phase, s->up_now, s->o.count, s->started, s->pending, (unsigned long long)t.sent,
           (unsigned long long)t.recv, (double)rss / 1024.0,
           s->started ? (double)rss / s->started : 0.0,
           dt > 0 ? 100.0 * (cpu - *last_cpu) / dt : 0.0);
    fflush(stdout);
    *last_cpu = cpu;
    *last_t = s->now;
}

/* Everything sent is acknowledged and has reached the monitor, and every
 * command has its result. */
static bool drained(const sim *s)
{
    if (s->mon.res_recv < s->mon.cmd_sent)
        return false;
    for (uint32_t i = 0; i < s->started; i++) {
        const sim_dev *d = &s->dev[i];
        if (d->up && moat_mqtt_inflight_used(&d->mqtt) > 0)
            return false;
        if (d->mon_recv < d->st_sent)
            return false;
    }
    return true;
}

int sim_run(sim *s)
{
    struct epoll_event evs[MAX_EVENTS];
    uint32_t last_scan, t_prog, ramp0 = 0, t_drain_check = 0;
    double last_cpu = cpu_s();
    uint32_t t_last_start = 0;

    s->ep = epoll_create1(EPOLL_CLOEXEC);
    if (s->ep < 0) {
        fprintf(stderr, "moat-sim: epoll_create1: %s\n", strerror(errno));
        return -1;
    }
    s->t0 = s->now = moat_clock_ms();
    last_scan = t_prog = s->now;
    if (sim_mon_start(s) != MOAT_OK)
        return -1;

    for (;;) {
        int n, timeout;
        s->now = moat_clock_ms();

        /* The ramp starts once the monitor listens. */
        if (ramp0 == 0 && sim_mon_up(s)) {
            ramp0 = s->now | 1u;
            printf("moat-sim: monitor subscribed; starting %u devices at %.1f/s\n", s->o.count,
                   s->o.rate);
            fflush(stdout);
        }
        if (ramp0 == 0 && s->now - s->t0 > 30000u) {
            fprintf(stderr, "moat-sim: the monitor did not connect and subscribe within 30 s\n");
            return -1;
        }
        if (ramp0 != 0 && !s->steady) {
            uint64_t allowed = (uint64_t)((double)(s->now - ramp0) * s->o.rate / 1000.0) + 1;
            for (uint32_t k = 0; k < STARTS_PER_TURN && s->started < s->o.count &&
                                 s->started < allowed && s->pending < s->o.max_pending;
                 k++) {
                sim_dev *d = &s->dev[s->started];
                sim_dev_setup(s, d, s->started++);
                if (sim_dev_start(s, d) != MOAT_OK)
                    return -1;
                sim_mon_poke(s);
                s->due[d->index] = s->now + 1000;
                s->now = moat_clock_ms();
            }
            if (s->started < s->o.count)
                t_last_start = s->now;
            /* Every device up; or, for devices that keep failing, the grace
             * after the last one started. */
            if (s->up_ever == s->o.count ||
                (s->started == s->o.count && s->now - t_last_start > s->o.ramp_grace_ms)) {
                s->steady = true;
                s->t_steady = s->now;
                s->up_at_steady = s->up_now;
                printf("moat-sim: %u of %u devices up after %.1f s; steady for %.0f s\n",
                       s->up_ever, s->o.count, (double)(s->now - ramp0) / 1000.0,
                       (double)s->o.duration_ms / 1000.0);
                fflush(stdout);
            }
        }
        if (*s->stop_flag && !s->stopping) {
            printf("moat-sim: interrupted; reporting what was reached\n");
            s->interrupted = true;
            if (!s->steady)
                s->t_steady = s->now;
            s->steady = true;
            s->o.duration_ms = s->now - s->t_steady;
            s->o.drain_ms = 0;
        }
        if (s->steady && !s->stopping && s->now - s->t_steady >= s->o.duration_ms) {
            s->stopping = true;
            s->t_stop = s->now;
            s->rss_kb = sim_rss_kb(&s->hwm_kb);
            s->heap_steady = sim_heap_live();
            s->malloc_inuse = mallinfo2().uordblks;
            printf("moat-sim: steady phase over; draining (at most %.0f s)\n",
                   (double)s->o.drain_ms / 1000.0);
            fflush(stdout);
        }
        if (s->stopping && s->now - t_drain_check >= 100u) {
            t_drain_check = s->now;
            if (drained(s) || s->now - s->t_stop >= s->o.drain_ms)
                return 0;
        }

        timeout = s->again_n > 0 ? 0 : (int)SCAN_MS;
        n = epoll_wait(s->ep, evs, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "moat-sim: epoll_wait: %s\n", strerror(errno));
            return -1;
        }
        s->now = moat_clock_ms();
        for (int i = 0; i < n; i++)
            dispatch(s, evs[i].data.u32, evs[i].events);
        if (s->again_n > 0)
            run_again(s);

        if (s->now - last_scan >= SCAN_MS) {
            last_scan = s->now;
            for (uint32_t i = 0; i < s->started; i++)
                if (moat_time_reached(s->now, s->due[i]))
                    sim_dev_timers(s, &s->dev[i]);
            sim_mon_timers(s);
        }
        if (s->o.progress_ms > 0 && s->now - t_prog >= s->o.progress_ms)
            progress(s, &last_cpu, &t_prog);
    }
}
