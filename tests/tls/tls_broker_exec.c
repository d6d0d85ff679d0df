/*
 * tls_broker_exec.c - run a command against a private mutual-TLS broker:
 *
 *     tls-broker-exec GEN_CERTS TIMEOUT_S COMMAND [ARG...]
 *
 * Makes the PKI of GEN_CERTS (gen-certs.sh) in a fresh directory, starts
 * Mosquitto with tls_broker.c, runs COMMAND with these variables set, and
 * exits with COMMAND's status (the broker log is printed on failure):
 *   MOAT_TLS_DIR    the work directory: the certificates and keys of
 *                   gen-certs.sh, free for scratch files too
 *   MOAT_TLS_PORT   the mutual-TLS listener on 127.0.0.1, and a second one
 *                   with the same settings and port on 127.0.0.2 (an
 *                   address the broker certificate does not name)
 *   MOAT_TLS_LOG    the broker log (log_type all)
 * COMMAND runs in its own process group, which is killed if it runs longer
 * than TIMEOUT_S; the broker is stopped by its pid in every case.
 */
#include "tls_broker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t g_child;

static void kill_child(void)
{
    if (g_child > 0) {
        kill(-g_child, SIGKILL);
        waitpid(g_child, NULL, 0);
        g_child = 0;
    }
}

int main(int argc, char **argv)
{
    char port[8];
    unsigned timeout_s;
    int st = 0;

    if (argc < 4) {
        fprintf(stderr, "usage: %s GEN_CERTS TIMEOUT_S COMMAND [ARG...]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    timeout_s = (unsigned)atoi(argv[2]);
    tlsb_setup("tls-cli", argv[1]);
    tlsb_start("127.0.0.2", true);
    snprintf(port, sizeof(port), "%u", (unsigned)tlsb_port());
    setenv("MOAT_TLS_DIR", tlsb_dir(), 1);
    setenv("MOAT_TLS_PORT", port, 1);
    setenv("MOAT_TLS_LOG", tlsb_path("mosquitto.log"), 1);

    atexit(kill_child);
    g_child = fork();
    TLSB_CHECK(g_child >= 0, "fork: %s", strerror(errno));
    if (g_child == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execvp(argv[3], &argv[3]);
        fprintf(stderr, "cannot run %s: %s\n", argv[3], strerror(errno));
        _exit(127);
    }
    setpgid(g_child, g_child);
    for (uint64_t start = tlsb_ms();;) {
        pid_t r = waitpid(g_child, &st, WNOHANG);
        if (r == g_child)
            break;
        TLSB_CHECK(r == 0, "waitpid: %s", strerror(errno));
        if (tlsb_ms() - start > timeout_s * 1000u)
            tlsb_fail("%s did not finish within %u s", argv[3], timeout_s);
        struct timespec ts = { 0, 20 * 1000000L };
        nanosleep(&ts, NULL);
    }
    g_child = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        tlsb_fail("%s %s %d", argv[3], WIFEXITED(st) ? "exited with status" : "died of signal",
                  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return 0;
}
