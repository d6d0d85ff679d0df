/*
 * broker_exec.c - run a command against a private broker:
 *
 *     itest-broker-exec NAME TIMEOUT_S COMMAND [ARG...]
 *
 * Starts a Mosquitto with broker.c, runs COMMAND with these variables set,
 * and exits with COMMAND's status; on failure the broker log is printed.
 *   MOAT_TEST_HOST        127.0.0.1
 *   MOAT_TEST_PORT        the broker's port
 *   MOAT_TEST_BROKER_LOG  the broker's log file (to wait for a subscription)
 *   MOAT_TEST_DIR         the broker's directory, free for scratch files
 *   MOAT_TEST_DEAD_PORT   a loopback port where nothing listens
 * Shell tests use it so the broker is managed (and always cleaned up) in one
 * place.
 */
#include "broker.h"
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static itest_broker broker;

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s NAME TIMEOUT_S COMMAND [ARG...]\n", argv[0]);
        return 2;
    }
    unsigned timeout_s = (unsigned)atoi(argv[2]);
    itest_begin(argv[1], timeout_s + 10u);
    itest_broker_start(&broker, NULL);

    char port[8], dead[8];
    snprintf(port, sizeof(port), "%u", (unsigned)broker.port);
    uint16_t dead_port;
    do
        dead_port = itest_free_port();
    while (dead_port == broker.port);
    snprintf(dead, sizeof(dead), "%u", (unsigned)dead_port);
    setenv("MOAT_TEST_HOST", "127.0.0.1", 1);
    setenv("MOAT_TEST_PORT", port, 1);
    setenv("MOAT_TEST_BROKER_LOG", broker.log_path, 1);
    setenv("MOAT_TEST_DIR", broker.dir, 1);
    setenv("MOAT_TEST_DEAD_PORT", dead, 1);

    pid_t pid = itest_spawn((const char *const *)&argv[3], NULL, NULL);
    int st;
    if (!itest_wait_child(pid, timeout_s * 1000u, &st))
        ITEST_FAIL("%s did not finish within %u s", argv[3], timeout_s);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char why[96];
        ITEST_FAIL("%s %s", argv[3], itest_describe_status(st, why, sizeof(why)));
    }
    itest_broker_destroy(&broker);
    return itest_pass();
}
