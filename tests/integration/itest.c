/*
 * itest.c - failure reporting, child processes and cleanup for the
 * integration tests (see itest.h).
 */
#include "itest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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

#define MAX_CHILDREN 32
#define MAX_HOOKS 32

typedef struct hook {
    void (*fn)(void *arg);
    void *arg;
} hook;

static const char *test_name = "itest";
static uint32_t test_start_ms;
static unsigned watchdog_seconds;
static volatile sig_atomic_t failing;
static unsigned expect_failures;
static volatile pid_t children[MAX_CHILDREN];
static hook fail_hooks[MAX_HOOKS];
static size_t fail_hook_count;
static hook exit_hooks[MAX_HOOKS];
static size_t exit_hook_count;
static bool exit_hooks_done;

uint32_t itest_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void write_str(int fd, const char *s)
{
    write_all(fd, s, strlen(s));
}

/* SIGKILL and reap every registered child; async-signal-safe. */
static void kill_all_children(void)
{
    for (size_t i = 0; i < MAX_CHILDREN; i++) {
        pid_t pid = children[i];
        if (pid > 0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
            }
            children[i] = 0;
        }
    }
}

static void register_child(pid_t pid)
{
    for (size_t i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
    }
    kill(pid, SIGKILL);
    ITEST_FAIL("more than %d child processes", MAX_CHILDREN);
}

static void unregister_child(pid_t pid)
{
    for (size_t i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid)
            children[i] = 0;
}

bool itest_failed(void)
{
    return failing != 0 || expect_failures > 0;
}

void itest_failf(const char *file, int line, const char *expr, const char *fmt, ...)
{
    if (failing) {
        /* A hook failed while reporting: stop here. */
        kill_all_children();
        _exit(1);
    }
    failing = 1;
    alarm(0);
    fflush(stdout);
    fprintf(stderr, "\nFAIL %s (%s:%d, %.1f s)", test_name, file, line,
            (double)(itest_now_ms() - test_start_ms) / 1000.0);
    if (expr != NULL)
        fprintf(stderr, ": check `%s` failed", expr);
    fprintf(stderr, "\n  ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    for (size_t i = fail_hook_count; i-- > 0;)
        fail_hooks[i].fn(fail_hooks[i].arg);
    fflush(stdout);
    fflush(stderr);
    kill_all_children();
    /* _exit: skip leak reports about the state a failed test leaves. */
    _exit(1);
}

void itest_expect_failed(const char *file, int line, const char *expr, const char *fmt, ...)
{
    expect_failures++;
    fflush(stdout);
    fprintf(stderr, "\nFAIL (continuing) %s (%s:%d, %.1f s): check `%s` failed\n  ", test_name,
            file, line, (double)(itest_now_ms() - test_start_ms) / 1000.0, expr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
}

void itest_log(const char *fmt, ...)
{
    printf("[%s %6.2f] ", test_name, (double)(itest_now_ms() - test_start_ms) / 1000.0);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static void add_hook(hook *hooks, size_t *count, void (*fn)(void *), void *arg)
{
    if (*count >= MAX_HOOKS)
        ITEST_FAIL("too many hooks");
    hooks[*count].fn = fn;
    hooks[*count].arg = arg;
    (*count)++;
}

static void remove_hook(hook *hooks, size_t *count, void (*fn)(void *), void *arg)
{
    for (size_t i = 0; i < *count; i++) {
        if (hooks[i].fn == fn && hooks[i].arg == arg) {
            memmove(&hooks[i], &hooks[i + 1], (*count - i - 1) * sizeof(hook));
            (*count)--;
            return;
        }
    }
}

void itest_on_failure(void (*fn)(void *), void *arg)
{
    add_hook(fail_hooks, &fail_hook_count, fn, arg);
}

void itest_remove_on_failure(void (*fn)(void *), void *arg)
{
    remove_hook(fail_hooks, &fail_hook_count, fn, arg);
}

void itest_on_exit(void (*fn)(void *), void *arg)
{
    add_hook(exit_hooks, &exit_hook_count, fn, arg);
}

void itest_remove_on_exit(void (*fn)(void *), void *arg)
{
    remove_hook(exit_hooks, &exit_hook_count, fn, arg);
}

static void run_exit_hooks(void)
{
    if (exit_hooks_done)
        return;
    exit_hooks_done = true;
    while (exit_hook_count > 0) {
        hook h = exit_hooks[--exit_hook_count];
        h.fn(h.arg);
    }
}

static void at_exit(void)
{
    if (!failing)
        run_exit_hooks();
    kill_all_children();
}

static void on_signal(int sig)
{
    if (sig == SIGALRM) {
        itest_failf(__FILE__, __LINE__, NULL,
                    "watchdog: the test did not finish within %u s", watchdog_seconds);
    }
    /* Killed from outside: take the children down, then die the same way. */
    write_str(2, "\nitest: interrupted by a signal; killing child processes\n");
    kill_all_children();
    signal(sig, SIG_DFL);
    raise(sig);
}

void itest_begin(const char *name, unsigned watchdog_s)
{
    test_name = name;
    test_start_ms = itest_now_ms();
    watchdog_seconds = watchdog_s;
    setvbuf(stdout, NULL, _IOLBF, 0);
    atexit(at_exit);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGALRM, SIGABRT };
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    /* A peer that closes its socket must not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    if (watchdog_s > 0)
        alarm(watchdog_s);
    itest_log("start");
}

int itest_pass(void)
{
    if (expect_failures > 0)
        itest_failf(__FILE__, __LINE__, NULL, "%u check(s) failed (see above)", expect_failures);
    alarm(0);
    run_exit_hooks();
    kill_all_children();
    printf("PASS %s (%.2f s)\n", test_name, (double)(itest_now_ms() - test_start_ms) / 1000.0);
    fflush(stdout);
    return 0;
}

pid_t itest_spawn(const char *const argv[], const char *out_path, const char *in_path)
{
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        ITEST_FAIL("fork for %s: %s", argv[0], strerror(errno));
    if (pid == 0) {
        /* Die with the test, however the test dies. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        int in = open(in_path != NULL ? in_path : "/dev/null", O_RDONLY);
        if (in < 0 || dup2(in, 0) < 0)
            _exit(126);
        if (in != 0)
            close(in);
        if (out_path != NULL) {
            int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
            if (out < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
                _exit(126);
            if (out > 2)
                close(out);
        }
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], (char *const *)argv);
        write_str(2, "itest: cannot execute ");
        write_str(2, argv[0]);
        write_str(2, ": ");
        write_str(2, strerror(errno));
        write_str(2, "\n");
        _exit(127);
    }
    register_child(pid);
    return pid;
}

bool itest_child_exited(pid_t pid, int *status)
{
    int st = 0;
    pid_t r;
    do {
        r = waitpid(pid, &st, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == pid) {
        unregister_child(pid);
        if (status != NULL)
            *status = st;
        return true;
    }
    if (r < 0)
        ITEST_FAIL("waitpid(%ld): %s", (long)pid, strerror(errno));
    return false;
}

bool itest_wait_child(pid_t pid, uint32_t timeout_ms, int *status)
{
    uint32_t start = itest_now_ms();
    for (;;) {
        if (itest_child_exited(pid, status))
            return true;
        if (itest_now_ms() - start >= timeout_ms)
            return false;
        sleep_ms(5);
    }
}

void itest_kill_child(pid_t pid)
{
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    unregister_child(pid);
}

const char *itest_describe_status(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, cap, "wait status 0x%x", (unsigned)status);
    return buf;
}

uint16_t itest_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        ITEST_FAIL("socket: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t alen = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        int e = errno;
        close(fd);
        ITEST_FAIL("finding a free port on 127.0.0.1: %s", strerror(e));
    }
    close(fd);
    return ntohs(a.sin_port);
}

void itest_print_file_tail(const char *title, const char *path, size_t max_bytes)
{
    write_str(2, "----- ");
    write_str(2, title);
    write_str(2, " (");
    write_str(2, path);
    write_str(2, ") -----\n");
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        write_str(2, "(cannot open the file)\n");
        return;
    }
    struct stat st;
    off_t from = 0;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size > max_bytes) {
        from = st.st_size - (off_t)max_bytes;
        write_str(2, "[... earlier lines cut ...]\n");
    }
    lseek(fd, from, SEEK_SET);
    char buf[4096];
    bool skip_partial = from > 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        char *p = buf;
        if (skip_partial) {
            char *nl = memchr(buf, '\n', (size_t)n);
            if (nl == NULL)
                continue;
            skip_partial = false;
            n -= nl + 1 - buf;
            p = nl + 1;
        }
        write_all(2, p, (size_t)n);
    }
    close(fd);
    write_str(2, "----- end of ");
    write_str(2, title);
    write_str(2, " -----\n");
}

char *itest_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        fclose(f);
        return NULL;
    }
    for (;;) {
        if (cap - n < 2) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}
