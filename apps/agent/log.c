/*
 * log.c - the agent's log: one line per event on stderr, with a level.
 *
 * Lines look like "moat-agent[1234] info: connected to broker:8883"; under
 * systemd they land in the journal as they are. Nothing secret is ever
 * passed here: callers log paths and names, never key material, passwords
 * or payloads of the config command.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

static int log_level = AG_LOG_INFO;

void ag_log_set_level(int level)
{
    log_level = level;
}

bool ag_log_enabled(int level)
{
    return level <= log_level;
}

static const char *level_name(int level)
{
    switch (level) {
    case AG_LOG_ERROR: return "error";
    case AG_LOG_WARN: return "warning";
    case AG_LOG_INFO: return "info";
    default: return "debug";
    }
}

void ag_log(int level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    if (!ag_log_enabled(level))
        return;
    n = snprintf(line, sizeof line, "moat-agent[%ld] %s: ", (long)getpid(),
                 level_name(level));
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line, so lines of a restarted agent never interleave. */
    n = (int)strlen(line);
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
    fflush(stderr);
}
