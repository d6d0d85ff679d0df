/*
 * tls_broker.c - the private mutual-TLS Mosquitto of tls_broker.h.
 */
#include "tls_broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_dir[256];
static pid_t g_pid;
static uint16_t g_port;
static bool g_failed;

uint64_t tlsb_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

const char *tlsb_dir(void)
{
    return g_dir;
}

const char *tlsb_path(const char *file)
{
    static char bufs[8][400];
    static unsigned next;
    char *p = bufs[next++ % 8];
    snprintf(p, sizeof(bufs[0]), "%s/%s", g_dir, file);
    return p;
}

uint16_t tlsb_port(void)
{
    return g_port;
}

pid_t tlsb_pid(void)
{
    return g_pid;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 8192, n = 0, got;
    char *buf, *bigger;

    if (f == NULL)
        return NULL;
    buf = malloc(cap);
    while (buf != NULL) {
        if (n + 4096 + 1 > cap) {
            bigger = realloc(buf, cap *= 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
        }
        got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    if (buf != NULL)
        buf[n] = '\0';
    return buf;
}

size_t tlsb_log_count(const char *needle)
{
    char *log = read_text(tlsb_path("mosquitto.log"));
    size_t n = 0;
    for (const char *p = log; p != NULL && (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(log);
    return n;
}

static void dump_log(void)
{
    static const char *files[] = { "mosquitto.out", "mosquitto.log" };
    for (size_t i = 0; g_dir[0] != '\0' && i < 2; i++) {
        char *text = read_text(tlsb_path(files[i]));
        if (text == NULL)
            continue;
        size_t len = strlen(text);
        const char *tail = len > 6000 ? text + len - 6000 : text;
        fprintf(stderr, "---- %s (%s) ----\n%s---- end ----\n", files[i],
                tail == text ? "whole" : "last 6000 bytes", tail);
        free(text);
    }
}

void tlsb_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("FAIL: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    g_failed = true;
    dump_log();
    exit(1);
}

void tlsb_stop(void)
{
    if (g_pid > 0) {
        kill(g_pid, SIGTERM);
        waitpid(g_pid, NULL, 0);
        g_pid = 0;
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    tlsb_stop();
    if (g_dir[0] == '\0')
        return;
    if (g_failed || getenv("MOAT_TLS_KEEP") != NULL)
        fprintf(stderr, "keeping %s for inspection\n", g_dir);
    else
        nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void tlsb_setup(const char *name, const char *gen_certs)
{
    const char *tmp = getenv("TMPDIR");
    int st;
    pid_t pid;

    snprintf(g_dir, sizeof(g_dir), "%s/moat-%s-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp",
             name);
    if (mkdtemp(g_dir) == NULL) {
        int e = errno;
        g_dir[0] = '\0';
        tlsb_fail("mkdtemp: %s", strerror(e));
    }
    atexit(cleanup);
    signal(SIGPIPE, SIG_IGN);
    pid = fork();
    TLSB_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        execlp("sh", "sh", gen_certs, g_dir, (char *)NULL);
        _exit(127);
    }
    TLSB_CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
               "%s failed (status 0x%x); is openssl installed?", gen_certs, st);
}

static uint16_t free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    TLSB_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
                   getsockname(fd, (struct sockaddr *)&a, &len) == 0,
               "cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_accepts(uint16_t port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void listener(FILE *f, const char *addr)
{
    fprintf(f,
            "\nlistener %u %s\n"
            "cafile %s\n"
            "certfile %s\n"
            "keyfile %s\n"
            "require_certificate true\n"
            "use_identity_as_username true\n"
            "tls_version tlsv1.2\n",
            (unsigned)g_port, addr, tlsb_path("ca.pem"), tlsb_path("broker.pem"),
            tlsb_path("broker.key"));
}

static void write_config(const char *alt_addr, bool log_all)
{
    FILE *f = fopen(tlsb_path("mosquitto.conf"), "w");
    TLSB_CHECK(f != NULL, "cannot write mosquitto.conf: %s", strerror(errno));
    g_port = free_port();
    fprintf(f,
            "# written by tests/tls/tls_broker.c\n"
            "user root\n"
            "persistence false\n"
            "allow_anonymous false\n"
            "log_dest file %s\n"
            "log_type %s\n"
            "connection_messages true\n",
            tlsb_path("mosquitto.log"),
            log_all ? "all" : "error\nlog_type warning\nlog_type notice");
    listener(f, "127.0.0.1");
    if (alt_addr != NULL)
        listener(f, alt_addr);
    TLSB_CHECK(fclose(f) == 0, "cannot write mosquitto.conf");
}

void tlsb_start(const char *alt_addr, bool log_all)
{
    const char *path = getenv("PATH");
    const char *mq = getenv("MOAT_MOSQUITTO");
    char newpath[4096];
    pid_t pid;

    write_config(alt_addr, log_all);
    snprintf(newpath, sizeof(newpath), "%s:/usr/sbin:/sbin",
             path != NULL ? path : "/usr/bin:/bin");
    setenv("PATH", newpath, 1);
    pid = fork();
    TLSB_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        FILE *out = freopen(tlsb_path("mosquitto.out"), "w", stdout);
        if (out == NULL || dup2(fileno(stdout), 2) < 0)
            _exit(126);
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* dies with the test */
        execlp(mq != NULL && mq[0] != '\0' ? mq : "mosquitto", "mosquitto", "-c",
               tlsb_path("mosquitto.conf"), (char *)NULL);
        _exit(127);
    }
    g_pid = pid;
    for (uint64_t start = tlsb_ms();; sleep_ms(20)) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            g_pid = 0;
            tlsb_fail("mosquitto exited during startup (status 0x%x%s)", st,
                      WIFEXITED(st) && WEXITSTATUS(st) == 127 ? ", is mosquitto installed?"
                                                              : "");
        }
        if (port_accepts(g_port))
            break;
        TLSB_CHECK(tlsb_ms() - start < 10000, "mosquitto did not listen within 10 s");
    }
    printf("mosquitto pid %ld, mutual TLS on 127.0.0.1:%u, dir %s\n", (long)g_pid,
           (unsigned)g_port, g_dir);
    fflush(stdout);
}
