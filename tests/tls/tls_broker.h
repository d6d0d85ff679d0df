/*
 * tls_broker.h - a private Mosquitto with a mutual-TLS listener, for the
 * tests in tests/tls that need one (test_tls.c keeps its own).
 *
 * One per test process. tlsb_setup() makes a mkdtemp work directory and the
 * throw-away PKI of gen-certs.sh in it (so no key is ever committed);
 * tlsb_start() writes a config with one listener on a free loopback port:
 * require_certificate, use_identity_as_username, TLS 1.2, the EC broker
 * certificate (SAN localhost, 127.0.0.1, ::1). The broker is stopped by its
 * pid at exit, and dies with the test (PR_SET_PDEATHSIG) should it crash.
 * The directory is removed unless a check failed.
 */
#ifndef TLS_BROKER_H
#define TLS_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Fail the test: print the message and the broker log, keep the directory,
 * exit 1. */
void tlsb_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

#define TLSB_CHECK(cond, ...)                                                               \
    do {                                                                                    \
        if (!(cond))                                                                        \
            tlsb_fail(__VA_ARGS__);                                                         \
    } while (0)

/* Make the work directory and the certificates (runs gen_certs, the path of
 * gen-certs.sh). name goes into the directory name. */
void tlsb_setup(const char *name, const char *gen_certs);

/* The work directory, and a file in it (up to 8 results stay valid). */
const char *tlsb_dir(void);
const char *tlsb_path(const char *file);

/* Start the broker and return once its listener accepts connections.
 * alt_addr (may be NULL): a second listener with the same settings and port
 * on that loopback address, e.g. "127.0.0.2", which the broker certificate
 * does not name. log_all: log_type all, else only errors, warnings, notices
 * and connections. */
void tlsb_start(const char *alt_addr, bool log_all);

/* The listeners' port, and the broker's pid (0 if not running). */
uint16_t tlsb_port(void);
pid_t tlsb_pid(void);

/* SIGTERM the broker by its pid and wait for it. Safe to call twice. */
void tlsb_stop(void);

/* How many times needle occurs in the broker log. */
size_t tlsb_log_count(const char *needle);

/* Milliseconds from CLOCK_MONOTONIC (not wrapped). */
uint64_t tlsb_ms(void);

#endif
