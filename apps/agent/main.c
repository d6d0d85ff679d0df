/*
 * main.c - moat-agent: options, signals, and the one poll() loop.
 *
 * Each turn: re-arm the stall check, feed systemd's watchdog, take signals,
 * let the agent do its work (agent.c), then sleep in poll() until a
 * descriptor is ready or the earliest deadline of any engine (MQTT, SNTP,
 * zones, status timer) comes. Nothing else ever sleeps or blocks: the
 * broker's, the time server's and the update server's host names are
 * looked up in the background (moat_lookup_*, moat/posix.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moat/timer.h"
#include "agent.h"

#define AG_DEFAULT_CONFIG "/etc/moat/config.json"
#define AG_DEFAULT_STALL_MS 30000u

static const char usage[] =
    "usage: moat-agent [-c config.json] [-v] [--relay-file FILE] [--status-file FILE]\n"
    "                  [--stall-limit SECONDS] [--relay-driver SPEC]\n"
    "                  [--update-key FILE]... [--product ID] [--slots-dir DIR]\n"
    "                  [--credstore DIR]\n"
    "\n"
    "The moat device daemon: keeps a mutual-TLS MQTT connection to the broker\n"
    "named in config.json, publishes status, runs commands, drives the zones.\n"
    "\n"
    "  -c, --config FILE      config.json (default " AG_DEFAULT_CONFIG ")\n"
    "  -v, --verbose          debug messages on stderr\n"
    "      --relay-file FILE  write the relay bitmap to FILE on every change\n"
    "                         (\"0x05\": zones 1 and 3 on); relays are simulated\n"
    "      --relay-driver SPEC drive the relays through the moat-avr co-processor:\n"
    "                         spidev:/dev/spidev0.0[@HZ], or simavr:moat-avr.elf\n"
    "                         (the firmware in simavr); docs/AVR.md\n"
    "      --status-file FILE write the status document to FILE, also while offline\n"
    "      --stall-limit SEC  the main loop may stall this long before the agent\n"
    "                         exits with code 3 (default 30, or systemd's WatchdogSec)\n"
    "      --update-key FILE  trust update images signed by this ECDSA P-256 key\n"
    "                         (moat keygen's .pub; up to two); without one the\n"
    "                         firmware command and updates over MQTT are refused\n"
    "      --product ID       the product id images must name (default " AG_DEFAULT_PRODUCT ")\n"
    "      --slots-dir DIR    the A/B slot directory (default: $MOAT_SLOTS_DIR, set\n"
    "                         by moat-launch)\n"
    "      --credstore DIR    pending credentials during a rotation (default: the\n"
    "                         keyfile's directory + /credstore)\n"
    "  -h, --help             this text\n"
    "      --version          the version\n"
    "\n"
    "exit codes: 0 stopped by a signal, 1 runtime error, 2 usage or config error,\n"
    "            3 main loop stalled, 4 broker unreachable longer than waittimeout,\n"
    "            5 reboot command or a new image to start (on trial); a trial\n"
    "            start exits 1, never 2, so that systemd starts it again\n";

/* ----------------------------------------------------------- signals -- */

static volatile sig_atomic_t got_stop, got_hup;
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    ssize_t r;

    if (sig == SIGHUP)
        got_hup = 1;
    else
        got_stop = got_stop + 1;
    r = write(sig_pipe[1], "s", 1);
    (void)r;
    errno = saved;
}

static int signals_init(void)
{
    struct sigaction sa;
    int i;

    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    for (i = 0; i < 2; i++)
        fcntl(sig_pipe[i], F_SETFD, FD_CLOEXEC);
    return 0;
}

static void drain_pipe(void)
{
    char buf[32];

    while (read(sig_pipe[0], buf, sizeof buf) > 0)
        ;
}

/* ----------------------------------------------------------- options -- */

static int parse_seconds(const char *s, uint32_t *ms)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || v == 0 || v > 86400)
        return -1;
    *ms = (uint32_t)v * 1000u;
    return 0;
}

static int parse_options(int argc, char **argv, ag_opts *o)
{
    static const struct option longs[] = {
        {"config", required_argument, NULL, 'c'},
        {"verbose", no_argument, NULL, 'v'},
        {"relay-file", required_argument, NULL, 'r'},
        {"relay-driver", required_argument, NULL, 'R'},
        {"status-file", required_argument, NULL, 's'},
        {"stall-limit", required_argument, NULL, 'w'},
        {"update-key", required_argument, NULL, 'k'},
        {"product", required_argument, NULL, 'p'},
        {"slots-dir", required_argument, NULL, 'd'},
        {"credstore", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;

    memset(o, 0, sizeof *o);
    o->config_path = AG_DEFAULT_CONFIG;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:vh", longs, NULL)) != -1) {
        switch (c) {
        case 'c': o->config_path = optarg; break;
        case 'v': o->verbose = true; break;
        case 'r': o->relay_file = optarg; break;
        case 'R': o->relay_driver = optarg; break;
        case 's': o->status_file = optarg; break;
        case 'w':
            if (parse_seconds(optarg, &o->stall_limit_ms) != 0) {
                fprintf(stderr, "moat-agent: --stall-limit: expected seconds from 1 to "
                        "86400, got '%s'\n", optarg);
                return AG_EXIT_CONFIG;
            }
            break;
        case 'k':
            if (o->update_key_count == 2) {
                fprintf(stderr, "moat-agent: --update-key: at most two keys\n");
                return AG_EXIT_CONFIG;
            }
            o->update_keys[o->update_key_count++] = optarg;
            break;
        case 'p': o->product = optarg; break;
        case 'd': o->slots_dir = optarg; break;
        case 'C': o->credstore = optarg; break;
        case 'h': fputs(usage, stdout); return -1;
        case 'V': printf("moat-agent %s\n", MOAT_AGENT_VERSION); return -1;
        case ':':
            fprintf(stderr, "moat-agent: option '%s' needs a value\n%s", argv[optind - 1],
                    usage);
            return AG_EXIT_CONFIG;
        default:
            fprintf(stderr, "moat-agent: unknown option '%s'\n%s", argv[optind - 1], usage);
            return AG_EXIT_CONFIG;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "moat-agent: unexpected argument '%s'\n%s", argv[optind], usage);
        return AG_EXIT_CONFIG;
    }
    return AG_EXIT_OK;
}

/* -------------------------------------------------------------- loop -- */

static agent the_agent;

static int run(agent *a)
{
    struct pollfd p[6];
    uint32_t sd_wd = ag_notify_watchdog_ms(), stall = a->opts.stall_limit_ms;
    uint32_t now, fed = 0, t, turn_start;
    size_t n, i;
    int stops_seen = 0;

    if (stall == 0)
        stall = sd_wd != 0 ? sd_wd : AG_DEFAULT_STALL_MS;
    ag_watchdog_init(stall, &a->relay);
    ag_log(AG_LOG_INFO, "moat-agent %s running (stall limit %lu ms%s)", MOAT_AGENT_VERSION,
           (unsigned long)stall, sd_wd ? ", systemd watchdog on" : "");
    ag_notify("READY=1");
    if (sd_wd != 0)
        ag_notify("WATCHDOG=1");
    fed = moat_clock_ms();
    for (;;) {
        now = moat_clock_ms();
        turn_start = now;
        ag_watchdog_kick();
        if (sd_wd != 0 && moat_elapsed(fed, now) >= sd_wd / 3) {
            ag_notify("WATCHDOG=1");
            fed = now;
        }
        if (got_stop > stops_seen) {
            if (stops_seen++ > 0 && a->phase == AG_PHASE_CLOSING) {
                ag_log(AG_LOG_WARN, "second signal: stopping at once");
                break;
            }
            ag_agent_stop(a, AG_EXIT_OK, "signal", now);
        }
        if (got_hup) {
            got_hup = 0;
            ag_agent_reload(a, now);
        }
        ag_agent_service(a, now);
        if (a->exit_now)
            break;

        now = moat_clock_ms();
        if (moat_elapsed(turn_start, now) > a->max_loop_ms)
            a->max_loop_ms = moat_elapsed(turn_start, now);
        t = ag_agent_next_timeout(a, now);
        if (t > stall / 3)
            t = stall / 3;
        if (sd_wd != 0 && t > sd_wd / 3)
            t = sd_wd / 3;
        p[0].fd = sig_pipe[0];
        p[0].events = POLLIN;
        n = 1 + ag_agent_pollfds(a, p + 1, sizeof p / sizeof p[0] - 1);
        for (i = 0; i < n; i++)
            p[i].revents = 0;
        if (poll(p, (nfds_t)n, t > INT_MAX ? INT_MAX : (int)t) > 0 && p[0].revents)
            drain_pipe();
    }
    ag_watchdog_stop();
    ag_notify("STOPPING=1");
    return a->exit_code;
}

/* A trial start must not exit 2: systemd would not start it again
 * (RestartPreventExitStatus=2), and it could never roll back. */
static int exit_code(int rc)
{
    const char *trial = getenv("MOAT_SLOT_TRIAL");

    if (rc == AG_EXIT_CONFIG && trial != NULL && strcmp(trial, "1") == 0) {
        ag_log(AG_LOG_ERROR, "exit code 1, not 2: this is a trial start");
        return AG_EXIT_ERROR;
    }
    return rc;
}

int main(int argc, char **argv)
{
    ag_opts o;
    int rc = parse_options(argc, argv, &o);

    if (rc != AG_EXIT_OK)
        return exit_code(rc < 0 ? AG_EXIT_OK : rc);
    ag_log_set_level(o.verbose ? AG_LOG_DEBUG : AG_LOG_INFO);
    if (signals_init() != 0) {
        ag_log(AG_LOG_ERROR, "cannot make the signal pipe: %s", strerror(errno));
        return AG_EXIT_ERROR;
    }
    ag_notify_init();
    rc = ag_agent_init(&the_agent, &o, moat_clock_ms());
    if (rc != AG_EXIT_OK) {
        ag_notify_status("config.json is invalid; see the log");
        return exit_code(rc);
    }
    rc = run(&the_agent);
    ag_agent_free(&the_agent);
    ag_log(AG_LOG_INFO, "exit code %d", rc);
    return rc;
}
