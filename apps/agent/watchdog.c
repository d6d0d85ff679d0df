/*
 * watchdog.c - the in-process stall check of the agent's loop.
 *
 * Every loop turn re-arms a one-shot ITIMER_REAL of the stall limit. A turn
 * that never ends (a blocking call, an endless loop, a stopped process)
 * lets it fire: SIGALRM switches the relays off and exits with
 * AG_EXIT_WATCHDOG, and systemd starts a fresh agent. The handler uses only
 * async-signal-safe calls (write, open, rename, _exit). systemd's own
 * watchdog (WatchdogSec=, fed by WATCHDOG=1 from the same loop) is the
 * second line, for a process that cannot even take the signal.
 */
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "agent.h"

static uint32_t limit_ms;
static const ag_relay *relay;

static void on_alarm(int sig)
{
    static const char msg[] = "moat-agent: error: watchdog: the main loop stalled past "
                              "its limit; relays off, exiting (code 3)\n";
    ssize_t r;

    (void)sig;
    r = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)r;
    ag_relay_off_from_signal(relay);
    _exit(AG_EXIT_WATCHDOG);
}

void ag_watchdog_init(uint32_t limit, const ag_relay *r)
{
    struct sigaction sa;

    limit_ms = limit;
    relay = r;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    ag_watchdog_kick();
}

void ag_watchdog_kick(void)
{
    struct itimerval it;

    memset(&it, 0, sizeof it);
    it.it_value.tv_sec = (time_t)(limit_ms / 1000u);
    it.it_value.tv_usec = (suseconds_t)((limit_ms % 1000u) * 1000u);
    setitimer(ITIMER_REAL, &it, NULL);
}

void ag_watchdog_stop(void)
{
    struct itimerval it;

    memset(&it, 0, sizeof it);
    setitimer(ITIMER_REAL, &it, NULL);
}
