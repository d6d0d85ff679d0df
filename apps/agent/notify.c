/*
 * notify.c - the systemd notification protocol, without libsystemd.
 *
 * sd_notify(3) is one datagram of "KEY=VALUE\n" lines sent to the
 * AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for the
 * abstract namespace). The agent sends READY=1 once it runs, WATCHDOG=1
 * from its loop, and STATUS=... when its state changes. Without
 * $NOTIFY_SOCKET every call does nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;

bool ag_notify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t len;

    if (path == NULL || path[0] == '\0')
        return false;
    len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof notify_addr.sun_path) {
        ag_log(AG_LOG_WARN, "NOTIFY_SOCKET '%s' is not a socket path; not notifying systemd",
               path);
        return false;
    }
    memset(&notify_addr, 0, sizeof notify_addr);
    notify_addr.sun_family = AF_UNIX;
    memcpy(notify_addr.sun_path, path, len);
    if (path[0] == '@')
        notify_addr.sun_path[0] = '\0'; /* abstract namespace */
    notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (notify_fd < 0) {
        ag_log(AG_LOG_WARN, "cannot make the systemd notify socket: %s", strerror(errno));
        return false;
    }
    return true;
}

void ag_notify(const char *msg)
{
    if (notify_fd < 0)
        return;
    /* Failure is not fatal: systemd restarts us if the watchdog starves. */
    if (sendto(notify_fd, msg, strlen(msg), MSG_NOSIGNAL,
               (const struct sockaddr *)&notify_addr, notify_len) < 0)
        ag_log(AG_LOG_DEBUG, "systemd notify failed: %s", strerror(errno));
}

void ag_notify_status(const char *status)
{
    char msg[256];

    snprintf(msg, sizeof msg, "STATUS=%s", status);
    ag_notify(msg);
}

/* $WATCHDOG_USEC, when it is meant for this process ($WATCHDOG_PID). */
uint32_t ag_notify_watchdog_ms(void)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    unsigned long long v;
    char *end;

    if (usec == NULL || notify_fd < 0)
        return 0;
    if (pid != NULL && strtol(pid, NULL, 10) != (long)getpid())
        return 0;
    errno = 0;
    v = strtoull(usec, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0)
        return 0;
    v /= 1000u;
    return v > 0x7fffffffu ? 0x7fffffffu : (uint32_t)(v == 0 ? 1 : v);
}
