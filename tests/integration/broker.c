/*
 * broker.c - start, stop, restart, freeze and inspect a private Mosquitto
 * for one test (see broker.h).
 */
#include "broker.h"

#include "itest.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_TIMEOUT_MS 10000u
#define STOP_TIMEOUT_MS 10000u

static const char *mosquitto_path(void)
{
    const char *p = getenv("MOAT_MOSQUITTO");
    if (p != NULL && p[0] != '\0')
        return p;
    /* Debian puts the broker in /usr/sbin, which a CI PATH may lack. */
    const char *path = getenv("PATH");
    if (path == NULL || strstr(path, "/usr/sbin") == NULL) {
        char buf[4096];
        snprintf(buf, sizeof(buf), "%s%s/usr/sbin:/sbin", path != NULL ? path : "",
                 path != NULL && path[0] != '\0' ? ":" : "");
        setenv("PATH", buf, 1);
    }
    return "mosquitto";
}

static void dump_hook(void *arg)
{
    itest_broker_dump(arg);
}

static void exit_hook(void *arg)
{
    itest_broker_destroy(arg);
}

static void write_config(itest_broker *b)
{
    FILE *f = fopen(b->conf_path, "w");
    if (f == NULL)
        ITEST_FAIL("cannot write %s: %s", b->conf_path, strerror(errno));
    fprintf(f,
            "# written by tests/integration/broker.c\n"
            "listener %u 127.0.0.1\n"
            "allow_anonymous true\n"
            /* Tests run as root; without this mosquitto drops to the user
             * mosquitto and cannot write the persistence directory. */
            "user root\n"
            "persistence true\n"
            "persistence_location %s/\n"
            "persistence_file mosquitto.db\n"
            /* Sessions and in-flight messages are also saved on SIGTERM;
             * the autosave keeps the file fresh in between. */
            "autosave_interval 1\n"
            "autosave_on_changes false\n"
            "max_queued_messages 10000\n"
            "log_dest file %s\n"
            "log_type all\n"
            "log_timestamp true\n"
            "log_timestamp_format %%H:%%M:%%S\n"
            "connection_messages true\n",
            (unsigned)b->port, b->dir, b->log_path);
    if (b->extra != NULL)
        fprintf(f, "# extra lines from the test\n%s\n", b->extra);
    if (fclose(f) != 0)
        ITEST_FAIL("cannot write %s: %s", b->conf_path, strerror(errno));
}

static bool port_accepts(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        ITEST_FAIL("socket: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    /* Loopback connect completes or is refused at once. */
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static size_t count_lines(const char *path, const char *needle, const char *needle2)
{
    char *text = itest_read_file(path, NULL);
    if (text == NULL)
        return 0;
    size_t n = 0;
    for (char *line = text; *line != '\0';) {
        char *end = strchr(line, '\n');
        if (end != NULL)
            *end = '\0';
        if (strstr(line, needle) != NULL && (needle2 == NULL || strstr(line, needle2) != NULL))
            n++;
        if (end == NULL)
            break;
        line = end + 1;
    }
    free(text);
    return n;
}

/*
 * Spawn mosquitto and wait until it logged "running" for this start and
 * accepts connections. Returns 0, or -1 when it exited because the port was
 * taken meanwhile (only then; any other failure fails the test).
 */
static int spawn_and_wait(itest_broker *b)
{
    const char *argv[] = { mosquitto_path(), "-c", b->conf_path, NULL };
    b->starts++;
    b->pid = itest_spawn(argv, b->out_path, NULL);
    b->paused = false;
    uint32_t start = itest_now_ms();
    for (;;) {
        int st;
        if (itest_child_exited(b->pid, &st)) {
            char why[96];
            b->pid = 0;
            itest_describe_status(st, why, sizeof(why));
            if (count_lines(b->log_path, "Address already in use", NULL) +
                    count_lines(b->out_path, "Address already in use", NULL) >
                0)
                return -1;
            if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
                ITEST_FAIL("could not execute %s (is the mosquitto package installed? "
                           "`make deps` installs it)", argv[0]);
            ITEST_FAIL("mosquitto on 127.0.0.1:%u %s during startup (config %s)",
                       (unsigned)b->port, why, b->conf_path);
        }
        if (count_lines(b->log_path, "mosquitto version", " running") >= b->starts &&
            port_accepts(b->port))
            return 0;
        if (itest_now_ms() - start >= READY_TIMEOUT_MS) {
            ITEST_FAIL("mosquitto (pid %ld) did not accept connections on 127.0.0.1:%u "
                       "within %u ms",
                       (long)b->pid, (unsigned)b->port, READY_TIMEOUT_MS);
        }
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
}

void itest_broker_start(itest_broker *b, const char *extra)
{
    memset(b, 0, sizeof(*b));
    b->extra = extra;
    const char *tmp = getenv("TMPDIR");
    snprintf(b->dir, sizeof(b->dir), "%s/moat-itest-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(b->dir) == NULL)
        ITEST_FAIL("mkdtemp %s: %s", b->dir, strerror(errno));
    snprintf(b->conf_path, sizeof(b->conf_path), "%s/mosquitto.conf", b->dir);
    snprintf(b->log_path, sizeof(b->log_path), "%s/mosquitto.log", b->dir);
    snprintf(b->out_path, sizeof(b->out_path), "%s/mosquitto.out", b->dir);
    itest_on_exit(exit_hook, b);
    itest_on_failure(dump_hook, b);
    for (int tries = 0;; tries++) {
        b->port = itest_free_port();
        write_config(b);
        if (spawn_and_wait(b) == 0)
            break;
        if (tries == 4)
            ITEST_FAIL("every free port was taken before mosquitto could bind it");
        itest_log("port %u was taken before mosquitto bound it; trying another",
                  (unsigned)b->port);
    }
    itest_log("broker pid %ld listening on 127.0.0.1:%u, dir %s", (long)b->pid,
              (unsigned)b->port, b->dir);
}

void itest_broker_stop(itest_broker *b)
{
    if (b->pid == 0)
        return;
    if (b->paused)
        itest_broker_resume(b);
    pid_t pid = b->pid;
    if (kill(pid, SIGTERM) != 0)
        ITEST_FAIL("kill(%ld, SIGTERM): %s", (long)pid, strerror(errno));
    int st;
    if (!itest_wait_child(pid, STOP_TIMEOUT_MS, &st))
        ITEST_FAIL("mosquitto (pid %ld) did not exit within %u ms of SIGTERM", (long)pid,
                   STOP_TIMEOUT_MS);
    b->pid = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char why[96];
        ITEST_FAIL("mosquitto (pid %ld) %s on SIGTERM", (long)pid,
                   itest_describe_status(st, why, sizeof(why)));
    }
    itest_log("broker pid %ld stopped", (long)pid);
}

void itest_broker_restart(itest_broker *b)
{
    if (b->pid != 0)
        ITEST_FAIL("restart of a broker that is still running (pid %ld)", (long)b->pid);
    if (spawn_and_wait(b) != 0) {
        ITEST_FAIL("cannot restart mosquitto: port %u is taken by another process",
                   (unsigned)b->port);
    }
    itest_log("broker restarted: pid %ld on 127.0.0.1:%u", (long)b->pid, (unsigned)b->port);
}

void itest_broker_pause(itest_broker *b)
{
    if (b->pid == 0 || kill(b->pid, SIGSTOP) != 0)
        ITEST_FAIL("cannot SIGSTOP the broker (pid %ld)", (long)b->pid);
    b->paused = true;
    itest_log("broker pid %ld stopped with SIGSTOP", (long)b->pid);
}

void itest_broker_resume(itest_broker *b)
{
    if (b->pid == 0 || kill(b->pid, SIGCONT) != 0)
        ITEST_FAIL("cannot SIGCONT the broker (pid %ld)", (long)b->pid);
    b->paused = false;
    itest_log("broker pid %ld continued with SIGCONT", (long)b->pid);
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[600];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

void itest_broker_destroy(itest_broker *b)
{
    itest_remove_on_exit(exit_hook, b);
    /* After a failed ITEST_EXPECT the log is still printed at the end. */
    if (!itest_failed())
        itest_remove_on_failure(dump_hook, b);
    if (b->pid != 0) {
        if (itest_failed()) {
            itest_kill_child(b->pid);
            b->pid = 0;
        } else {
            itest_broker_stop(b);
        }
    }
    const char *keep = getenv("MOAT_ITEST_KEEP");
    if (b->dir[0] != '\0' && !itest_failed() && (keep == NULL || keep[0] == '\0'))
        remove_dir(b->dir);
}

void itest_broker_dump(const itest_broker *b)
{
    char title[96];
    snprintf(title, sizeof(title), "mosquitto log, port %u", (unsigned)b->port);
    itest_print_file_tail(title, b->log_path, 24000);
    itest_print_file_tail("mosquitto stdout/stderr", b->out_path, 4000);
}

size_t itest_broker_log_count(const itest_broker *b, const char *needle)
{
    return count_lines(b->log_path, needle, NULL);
}

bool itest_broker_log_wait(const itest_broker *b, const char *needle, size_t count,
                           uint32_t timeout_ms)
{
    uint32_t start = itest_now_ms();
    for (;;) {
        if (count_lines(b->log_path, needle, NULL) >= count)
            return true;
        if (itest_now_ms() - start >= timeout_ms)
            return false;
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
}
