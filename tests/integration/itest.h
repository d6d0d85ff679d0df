/*
 * itest.h - the small framework shared by the integration tests.
 *
 * Failing checks print where and why, then every registered dump hook (the
 * broker logs, the clients' event histories), kill every child process the
 * test started, and exit 1. Children are also killed on SIGINT/SIGTERM/
 * SIGHUP/SIGABRT, on the watchdog alarm, and (through PR_SET_PDEATHSIG) when
 * the test process dies for any other reason, so no broker outlives a test.
 */
#ifndef ITEST_H
#define ITEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Print "FAIL file:line: expr: message", run the dump hooks, clean up and
 * exit(1). Never returns. */
void itest_failf(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

#define ITEST_CHECK(cond, ...)                                                  \
    do {                                                                        \
        if (!(cond))                                                            \
            itest_failf(__FILE__, __LINE__, #cond, __VA_ARGS__);                \
    } while (0)

#define ITEST_FAIL(...) itest_failf(__FILE__, __LINE__, NULL, __VA_ARGS__)

/* A check that does not stop the test: the failure is printed now, the test
 * goes on (to find what else is wrong) and fails at itest_pass(). */
void itest_expect_failed(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define ITEST_EXPECT(cond, ...)                                                 \
    do {                                                                        \
        if (!(cond))                                                            \
            itest_expect_failed(__FILE__, __LINE__, #cond, __VA_ARGS__);        \
    } while (0)

/* Progress line on stdout, prefixed with the test name and elapsed time. */
void itest_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Set up a test: name for messages, signal handlers, atexit cleanup, and a
 * watchdog that fails the test (with dumps) after watchdog_s seconds, before
 * CTest's own TIMEOUT would kill it silently.
 */
void itest_begin(const char *name, unsigned watchdog_s);

/* Print "PASS" with the elapsed time, clean up and return 0 for main; or,
 * when an ITEST_EXPECT failed, fail like ITEST_FAIL. */
int itest_pass(void);

/* Hooks run on failure, newest first: they print what helps diagnose. */
void itest_on_failure(void (*fn)(void *arg), void *arg);
void itest_remove_on_failure(void (*fn)(void *arg), void *arg);

/* Hooks run at exit (success or failure), newest first. */
void itest_on_exit(void (*fn)(void *arg), void *arg);
void itest_remove_on_exit(void (*fn)(void *arg), void *arg);

/* True once a check failed (exit hooks may keep files for inspection). */
bool itest_failed(void);

/*
 * Start argv[0] (searched in PATH) as a registered child. Its stdout and
 * stderr go to out_path (appended; NULL keeps ours), its stdin comes from
 * in_path (NULL: /dev/null). Returns the pid; fails the test if fork fails.
 * An exec failure makes the child exit with status 127.
 */
pid_t itest_spawn(const char *const argv[], const char *out_path, const char *in_path);

/*
 * Wait up to timeout_ms for a registered child to exit. Returns true and
 * sets *status (waitpid status) when it did; false on timeout (still
 * running, still registered).
 */
bool itest_wait_child(pid_t pid, uint32_t timeout_ms, int *status);

/* Non-blocking: true and *status if the child has exited. */
bool itest_child_exited(pid_t pid, int *status);

/* SIGKILL a registered child and reap it. */
void itest_kill_child(pid_t pid);

/* "exited with status 3", "killed by signal 9": for messages. */
const char *itest_describe_status(int status, char *buf, size_t cap);

/* A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0). */
uint16_t itest_free_port(void);

/* Write the last max_bytes of a file to stderr with a header; uses only
 * async-signal-safe calls. */
void itest_print_file_tail(const char *title, const char *path, size_t max_bytes);

/* Whole file as a NUL-terminated malloc'd string (NULL if unreadable). */
char *itest_read_file(const char *path, size_t *len);

/* Monotonic milliseconds. */
uint32_t itest_now_ms(void);

#endif
