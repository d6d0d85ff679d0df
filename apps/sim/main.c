/*
 * main.c - moat-sim: options, setup, the run, the report.
 *
 *   moat-sim --pki DIR [--host A] [--port N] [--count N] [--rate R]
 *            [--interval S] [--payload B] [--duration S] [--seed N] ...
 *
 * docs/SIM.md describes the options, what is measured and how.
 */
#include "sim.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static const char usage_text[] =
    "usage: moat-sim --pki DIR [options]\n"
    "\n"
    "Many virtual moat devices in one process, each with its own identity\n"
    "(a P-256 key and certificate made in memory, signed by DIR/ca.key), its\n"
    "own mutual-TLS session and MQTT engine, against a real broker. A monitor\n"
    "(the operator DIR/operators/<monitor>.crt) counts every status message.\n"
    "\n"
    "  --pki DIR          `moat pki` directory: ca.crt, ca.key (no passphrase),\n"
    "                     operators/<monitor>.crt and .key\n"
    "  --host ADDR        broker address (127.0.0.1)\n"
    "  --port N           broker TLS port (8883)\n"
    "  --tls-name NAME    name the broker certificate must carry (the host)\n"
    "  --monitor NAME     operator name of the monitor (moat-sim)\n"
    "  --count N          devices (100)\n"
    "  --rate R           new connections per second (50)\n"
    "  --max-pending N    connections being set up at once (64)\n"
    "  --interval S       status interval, seconds (10)\n"
    "  --payload B        status payload bytes (128)\n"
    "  --duration S       seconds every device publishes once all are up (60)\n"
    "  --seed N           device ids and the order of commands (1)\n"
    "  --cmd-rate R       commands per second to the fleet, 0 for none (10)\n"
    "  --progress S       progress line every S seconds, 0 for none (10)\n"
    "  --drain S          longest wait for outstanding messages at the end (30)\n"
    "  --grace S          how long to wait, once all started, for devices that\n"
    "                     keep failing before the steady phase begins (60)\n"
    "  --keepalive S      MQTT keep-alive (60)\n"
    "  --days N           device certificate validity (7)\n"
    "\n"
    "Exit status: 0 when every device connected and no status message was\n"
    "lost, 1 otherwise, 2 for a usage error.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fputs("moat-sim: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n(moat-sim --help for the options)\n", stderr);
    return 2;
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

typedef struct num_opt {
    const char *name;
    double lo, hi;
    int id;
} num_opt;

static const num_opt nums[] = {
    { "--port", 1, 65535, 0 },        { "--count", 1, 16777215, 1 },
    { "--rate", 0.01, 100000, 2 },    { "--max-pending", 1, 100000, 3 },
    { "--interval", 0.1, 86400, 4 },  { "--payload", 1, 4000, 5 },
    { "--duration", 0, 864000, 6 },   { "--seed", 0, 1e15, 7 },
    { "--cmd-rate", 0, 100000, 8 },   { "--progress", 0, 86400, 9 },
    { "--drain", 0, 86400, 10 },      { "--grace", 0, 86400, 11 },
    { "--keepalive", 0, 65535, 12 },  { "--days", 1, 3650, 13 },
};

/* Thousands of devices connect to one broker: its name is looked up once,
 * here, before any device starts, and every device connects to the address
 * (the broker certificate is still checked against the name). */
static int resolve_once(sim_opts *o)
{
    static char numeric[INET6_ADDRSTRLEN];
    struct addrinfo hints, *res = NULL, *ai, *pick;
    char why[300];
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    if ((rc = getaddrinfo(o->host, NULL, &hints, &res)) == 0) {
        /* IPv4 first: "localhost" often lists ::1 first, brokers listen on 127.0.0.1 */
        for (pick = res, ai = res; ai != NULL; ai = ai->ai_next)
            if (ai->ai_family == AF_INET) {
                pick = ai;
                break;
            }
        rc = getnameinfo(pick->ai_addr, pick->ai_addrlen, numeric, sizeof numeric, NULL, 0,
                         NI_NUMERICHOST);
        freeaddrinfo(res);
    }
    if (rc != 0) {
        snprintf(why, sizeof why, "cannot resolve broker host '%s': %s", o->host,
                 gai_strerror(rc));
        return usage_error("%s", why);
    }
    o->host = numeric;
    return 0;
}

static int parse_opts(int argc, char **argv, sim_opts *o)
{
    *o = (sim_opts){
        .host = "127.0.0.1",
        .port = 8883,
        .monitor = "moat-sim",
        .count = 100,
        .rate = 50,
        .max_pending = 64,
        .interval_ms = 10000,
        .payload = 128,
        .duration_ms = 60000,
        .seed = 1,
        .cmd_rate = 10,
        .progress_ms = 10000,
        .drain_ms = 30000,
        .ramp_grace_ms = 60000,
        .keepalive_s = 60,
        .cert_days = 7,
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0)
            return usage_error("unexpected argument '%s'", a);
        if (v == NULL)
            return usage_error("%s needs a value", a);
        i++;
        if (strcmp(a, "--pki") == 0) {
            o->pki = v;
            continue;
        }
        if (strcmp(a, "--host") == 0) {
            o->host = v;
            continue;
        }
        if (strcmp(a, "--tls-name") == 0) {
            o->tls_name = v;
            continue;
        }
        if (strcmp(a, "--monitor") == 0) {
            o->monitor = v;
            continue;
        }
        const num_opt *n = NULL;
        for (size_t k = 0; k < sizeof nums / sizeof nums[0] && n == NULL; k++)
            if (strcmp(a, nums[k].name) == 0)
                n = &nums[k];
        if (n == NULL)
            return usage_error("unknown option '%s'", a);
        if (!parse_num(v, n->lo, n->hi, &x))
            return usage_error("bad value '%s'", v);
        switch (n->id) {
        case 0: o->port = (uint16_t)x; break;
        case 1: o->count = (uint32_t)x; break;
        case 2: o->rate = x; break;
        case 3: o->max_pending = (uint32_t)x; break;
        case 4: o->interval_ms = (uint32_t)(x * 1000.0); break;
        case 5: o->payload = (uint32_t)x; break;
        case 6: o->duration_ms = (uint32_t)(x * 1000.0); break;
        case 7: o->seed = (uint64_t)x; break;
        case 8: o->cmd_rate = x; break;
        case 9: o->progress_ms = (uint32_t)(x * 1000.0); break;
        case 10: o->drain_ms = (uint32_t)(x * 1000.0); break;
        case 11: o->ramp_grace_ms = (uint32_t)(x * 1000.0); break;
        case 12: o->keepalive_s = (uint16_t)x; break;
        default: o->cert_days = (uint32_t)x; break;
        }
    }
    if (o->pki == NULL)
        return usage_error("%s", "--pki DIR is required (a `moat pki` directory)");
    if (o->tls_name == NULL)
        o->tls_name = o->host;
    return resolve_once(o);
}

/* Every device holds a socket: the soft limit goes up to the hard one, and
 * the hard one up too when we may (root). */
static int raise_fd_limit(uint32_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        struct rlimit up = { need, need };
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return 0;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        fprintf(stderr,
                "moat-sim: %u devices need %u open files; the limit is %llu "
                "(raise it with ulimit -n)\n",
                need - 64, need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static void report(sim *s, double wall_s)
{
    uint32_t *ct = malloc((size_t)s->o.count * sizeof *ct);
    size_t nct = 0, rss_kb = s->rss_kb, peak_kb = s->hwm_kb;
    uint64_t sent = 0, acked = 0, recv = 0, dup = 0, skipped = 0, dropped = 0, res = 0,
             cmds = 0, reconn = 0;
    uint32_t up = 0;
    double p50 = 0, p90 = 0, p99 = 0, pmax = 0, r50 = 0, r99 = 0;
    struct rusage ru;

    for (uint32_t i = 0; i < s->o.count; i++) {
        const sim_dev *d = &s->dev[i];
        if (d->t_up != 0) {
            up++;
            if (ct != NULL)
                ct[nct++] = d->connect_ms;
        }
        sent += d->st_sent;
        acked += d->pub_acked;
        recv += d->mon_recv;
        dup += d->mon_dup;
        skipped += d->st_skipped;
        dropped += d->pub_dropped;
        res += d->res_sent;
        cmds += d->cmds;
        reconn += d->reconnects;
    }
    if (nct > 0) {
        p50 = sim_percentile(ct, nct, 50);
        p90 = sim_percentile(ct, nct, 90);
        p99 = sim_percentile(ct, nct, 99);
        pmax = sim_percentile(ct, nct, 100);
    }
    free(ct);
    if (s->mon.rtt_n > 0) {
        r50 = sim_percentile(s->mon.rtt, s->mon.rtt_n, 50);
        r99 = sim_percentile(s->mon.rtt, s->mon.rtt_n, 99);
    }
    uint64_t lost = sent > recv ? sent - recv : 0;
    uint64_t msgs_sent = sent + res + s->mon.cmd_sent;
    uint64_t msgs_recv = recv + dup + s->mon.res_recv + cmds;
    /* A full run started every device; an interrupted one counts those it did. */
    uint32_t ndev = s->started > 0 ? s->started : 1;
    double per_dev_kb = (double)rss_kb / (double)ndev;
    getrusage(RUSAGE_SELF, &ru);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;

    printf("\n== moat-sim report ==\n");
    printf("devices            %u, mutual TLS to %s:%u (%s), status every %.1f s, %u-byte "
           "payload, seed %llu\n",
           s->o.count, s->o.host, (unsigned)s->o.port, s->tls_lib, s->o.interval_ms / 1000.0,
           s->o.payload, (unsigned long long)s->o.seed);
    char ramp[64];
    if (s->t_all_up != 0)
        snprintf(ramp, sizeof ramp, "all up after %.1f s", s->t_all_up / 1000.0);
    else
        snprintf(ramp, sizeof ramp, "not all came up");
    printf("connected          %u of %u (%s, at up to %.1f/s; %u connect and %u TLS "
           "failures, %llu reconnects)\n",
           up, s->o.count, ramp, s->o.rate, s->conn_fail, s->tls_fail,
           (unsigned long long)reconn);
    printf("TLS                %s\n", s->suite);
    printf("connect time       p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms "
           "(TCP + TLS handshake + CONNACK)\n",
           p50, p90, p99, pmax);
    printf("client CPU         %.2f ms per identity (P-256 key + certificate + moat_tls_init, "
           "in process), %.2f ms per TLS handshake (%u handshakes)\n",
           s->started ? s->ident_ms / s->started : 0.0,
           s->handshakes ? s->hs_cpu_ms / s->handshakes : 0.0, s->handshakes);
    if (s->interrupted)
        printf("interrupted        the run was stopped by a signal: figures are partial\n");
    printf("steady phase       %.1f s, begun with %u of %u devices up\n",
           s->t_stop > s->t_steady ? (s->t_stop - s->t_steady) / 1000.0 : 0.0, s->up_at_steady,
           s->o.count);
    printf("status messages    sent %llu, acknowledged (PUBACK) by the broker %llu, "
           "received by the monitor %llu, lost %llu, duplicates %llu, not sent (window "
           "full or link down) %llu, dropped %llu\n",
           (unsigned long long)sent, (unsigned long long)(acked - res),
           (unsigned long long)recv, (unsigned long long)lost, (unsigned long long)dup,
           (unsigned long long)skipped, (unsigned long long)dropped);
    printf("commands           sent %llu, handled by devices %llu, results received %llu "
           "(round trip p50 %.0f ms, p99 %.0f ms)\n",
           (unsigned long long)s->mon.cmd_sent, (unsigned long long)cmds,
           (unsigned long long)s->mon.res_recv, r50, r99);
    printf("messages           sent %llu, received %llu (status, commands and results)\n",
           (unsigned long long)msgs_sent, (unsigned long long)msgs_recv);
    printf("memory             RSS %.1f MB at the end of the steady phase / %u devices = "
           "%.2f KB per device (peak RSS %.1f MB; %zu-bit build)\n",
           rss_kb / 1024.0, ndev, per_dev_kb, peak_kb / 1024.0, sizeof(void *) * 8);
    {
        double st = (double)sizeof(sim_dev), mq = (double)s->engine_bytes;
        double heap = sim_heap_counted() ? (double)s->heap_steady / ndev : 0.0;
        double rest = per_dev_kb * 1024.0 - st - mq - heap;
        if (sim_heap_counted())
            printf("  per device       %.0f struct (moat_tls %zu, MQTT engine %zu) + %.0f mbedTLS "
                   "heap + %.0f MQTT buffers + %.0f the rest (malloc headers, the "
                   "process's own pages, the monitor) bytes\n",
                   st, sizeof(moat_tls), sizeof(moat_mqtt_client), heap, mq, rest);
        else
            printf("  per device       %.0f struct (moat_tls %zu) + %.0f MQTT buffers; the "
                   "mbedTLS heap is not counted in this build (no MBEDTLS_PLATFORM_MEMORY)\n",
                   st, sizeof(moat_tls), mq);
    }
    printf("cpu                user %.1f s, system %.1f s over %.1f s\n", user, sys, wall_s);
    if (s->mon.reconnects > 0)
        printf("monitor            reconnected %u times\n", s->mon.reconnects);
    if (s->mon.st_foreign > 0)
        printf("monitor            ignored %llu messages from devices not of this run\n",
               (unsigned long long)s->mon.st_foreign);
    for (size_t i = 0; i < s->nerrs; i++)
        printf("error              %u x %s\n", s->errs[i].n, s->errs[i].msg);

    /* The figures again, one "SIM name value" a line, for scripts. */
    printf("SIM devices %u\n", s->o.count);
    printf("SIM connected %u\n", up);
    printf("SIM connect_p50_ms %.0f\nSIM connect_p90_ms %.0f\nSIM connect_p99_ms %.0f\n"
           "SIM connect_max_ms %.0f\n",
           p50, p90, p99, pmax);
    printf("SIM ramp_s %.1f\n", s->t_all_up / 1000.0);
    printf("SIM steady_s %.1f\n",
           s->t_stop > s->t_steady ? (s->t_stop - s->t_steady) / 1000.0 : 0.0);
    printf("SIM status_sent %llu\nSIM status_received %llu\nSIM status_lost %llu\n",
           (unsigned long long)sent, (unsigned long long)recv, (unsigned long long)lost);
    printf("SIM messages_sent %llu\nSIM messages_received %llu\n",
           (unsigned long long)msgs_sent, (unsigned long long)msgs_recv);
    printf("SIM commands_sent %llu\nSIM command_results %llu\n",
           (unsigned long long)s->mon.cmd_sent, (unsigned long long)s->mon.res_recv);
    printf("SIM rss_per_device_kb %.2f\n", per_dev_kb);
    if (sim_heap_counted())
        printf("SIM tls_heap_per_device %zu\n", s->heap_steady / ndev);
    printf("SIM cpu_s %.1f\n", user + sys);
    s->ok = up == s->o.count && lost == 0 && sent > 0 && !s->interrupted;
}

static volatile sig_atomic_t g_stop;
static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

int main(int argc, char **argv)
{
    sim *s = calloc(1, sizeof *s);
    char err[512];
    int rc;
    struct timespec a, b;

    if (s == NULL)
        return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((rc = parse_opts(argc, argv, &s->o)) != 0)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    s->stop_flag = &g_stop;
    if (raise_fd_limit(s->o.count + 64) != 0)
        return 1;
    sim_heap_init();
#if defined(MBEDTLS_PLATFORM_MEMORY)
    snprintf(s->tls_lib, sizeof s->tls_lib, "mbedTLS microcontroller profile, %u-byte records",
             (unsigned)MBEDTLS_SSL_IN_CONTENT_LEN);
#else
    snprintf(s->tls_lib, sizeof s->tls_lib, "mbedTLS, %u-byte records",
             (unsigned)MBEDTLS_SSL_IN_CONTENT_LEN);
#endif

    if (sim_ca_load(&s->ca, s->o.pki, err, sizeof err) != 0) {
        fprintf(stderr, "moat-sim: %s\n", err);
        return 1;
    }
    s->rng = s->o.seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    /* ids: 02 (a locally administered MAC) + 4 hex digits from the seed + index */
    s->id_base = 0;
    uint64_t base = (0x02ull << 40) | ((uint64_t)(sim_rand(s) & 0xFFFFu) << 24);
    if (s->o.count > 0xFFFFFFu) {
        fprintf(stderr, "moat-sim: at most 16777215 devices\n");
        return 2;
    }
    s->id_base = base;
    s->dev_tls = (moat_tls_config){
        .ca_chain = &s->ca.crt, /* one parsed CA for every device */
        .time_now = moat_tls_os_time,
        .rng = sim_rng,
        .rng_ctx = &s->ca.drbg,
    };
    s->dev = calloc(s->o.count, sizeof *s->dev);
    s->due = calloc(s->o.count, sizeof *s->due);
    s->again = calloc((size_t)s->o.count + 1, sizeof *s->again);
    s->again_b = calloc((size_t)s->o.count + 1, sizeof *s->again_b);
    s->again_mark = calloc((size_t)s->o.count + 1, 1);
    if (s->dev == NULL || s->due == NULL || s->again == NULL || s->again_b == NULL ||
        s->again_mark == NULL) {
        fprintf(stderr, "moat-sim: out of memory for %u devices\n", s->o.count);
        return 1;
    }
    /* Device structs are set up as devices start (calloc's zero pages cost
     * nothing until then), so a partial run measures only what started. */
    s->engine_bytes = sim_dev_engine_bytes(s);

    char first_id[SIM_ID_LEN + 1];
    sim_id_of(s, 0, first_id);
    printf("moat-sim: %u devices (ids %s..), broker %s:%u, %s\n", s->o.count, first_id,
           s->o.host, (unsigned)s->o.port, s->tls_lib);
    clock_gettime(CLOCK_MONOTONIC, &a);
    rc = sim_run(s);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (rc == 0 || s->started > 0) {
        if (s->rss_kb == 0) { /* stopped early: measure now */
            s->rss_kb = sim_rss_kb(&s->hwm_kb);
            s->heap_steady = sim_heap_live();
        }
        for (uint32_t i = 0; i < s->started; i++)
            sim_dev_stop(s, &s->dev[i]);
        sim_mon_stop(s);
        report(s, (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    }
    for (uint32_t i = 0; i < s->o.count; i++)
        sim_dev_free(&s->dev[i]);
    sim_ca_free(&s->ca);
    free(s->mon.rtt);
    free(s->dev);
    free(s->due);
    free(s->again);
    free(s->again_b);
    free(s->again_mark);
    rc = rc != 0 ? 1 : s->ok ? 0 : 1;
    free(s);
    return rc;
}
