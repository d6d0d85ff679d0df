/*
 * broker.h - a private Mosquitto for one test.
 *
 * Each broker gets its own free loopback port, its own mkdtemp directory
 * holding the config, the log, mosquitto's own output and the persistence
 * database, so tests run in parallel (ctest -j). The broker is a child of the
 * test, stopped by its pid; it is killed whatever way the test ends.
 *
 * The mosquitto binary is $MOAT_MOSQUITTO if set, else `mosquitto` in PATH
 * (with /usr/sbin added to PATH, where Debian installs it).
 */
#ifndef ITEST_BROKER_H
#define ITEST_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct itest_broker {
    char dir[256];       /* mkdtemp directory; removed on success */
    char conf_path[320];
    char log_path[320];  /* log_dest file */
    char out_path[320];  /* mosquitto's stdout and stderr */
    const char *extra;   /* caller's extra config lines (kept by pointer) */
    uint16_t port;
    pid_t pid;           /* 0 while not running */
    bool paused;         /* SIGSTOPped */
    unsigned starts;     /* how many times it was started */
} itest_broker;

/*
 * Make the directory, pick a free port, write the config and start the
 * broker; return once it accepts connections. `extra` (may be NULL) is
 * appended to the config verbatim (e.g. TLS listener settings) and must stay
 * valid for restarts. Fails the test with the broker's output if mosquitto
 * exits or does not listen within 10 s. Registers dump and cleanup hooks.
 */
void itest_broker_start(itest_broker *b, const char *extra);

/* SIGTERM (after SIGCONT if paused) and wait for it to exit, saving its
 * persistence database. Fails the test if it does not exit within 10 s. */
void itest_broker_stop(itest_broker *b);

/* Start it again on the same port, config and directory (it must be
 * stopped) and wait until it accepts connections. */
void itest_broker_restart(itest_broker *b);

/* SIGSTOP / SIGCONT: the broker freezes with its sockets open. */
void itest_broker_pause(itest_broker *b);
void itest_broker_resume(itest_broker *b);

/* Stop it if running and remove its directory (kept if the test failed or
 * MOAT_ITEST_KEEP is set in the environment). */
void itest_broker_destroy(itest_broker *b);

/* Print the broker's log and output to stderr. */
void itest_broker_dump(const itest_broker *b);

/* How many log lines contain `needle`. */
size_t itest_broker_log_count(const itest_broker *b, const char *needle);

/* Wait up to timeout_ms until at least `count` log lines contain needle. */
bool itest_broker_log_wait(const itest_broker *b, const char *needle, size_t count,
                           uint32_t timeout_ms);

#endif
