/*
 * relay.c - the simulated relay driver of moat-agent.
 *
 * A real board switches 8 relays through the ATmega168 co-processor; on
 * this machine the agent logs the bitmap and, with --relay-file, writes it
 * to a file ("0x05\n": zones 1 and 3 on) so tests and demos can watch it.
 * The file is replaced atomically (write a temporary file, rename), so a
 * reader sees the old bitmap or the new one, never half of one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

void ag_relay_init(ag_relay *r, const char *file)
{
    memset(r, 0, sizeof *r);
    r->file = file;
    if (file != NULL)
        snprintf(r->tmp, sizeof r->tmp, "%s.tmp", file);
}

static void format_bitmap(uint8_t bitmap, char out[6])
{
    static const char hex[] = "0123456789abcdef";

    out[0] = '0';
    out[1] = 'x';
    out[2] = hex[bitmap >> 4];
    out[3] = hex[bitmap & 15u];
    out[4] = '\n';
    out[5] = '\0';
}

/* Only async-signal-safe calls: the watchdog's handler uses it too. */
static bool write_file(const ag_relay *r, uint8_t bitmap)
{
    char text[6];
    int fd;
    bool ok;

    format_bitmap(bitmap, text);
    fd = open(r->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return false;
    ok = write(fd, text, 5) == 5;
    ok = close(fd) == 0 && ok;
    return ok && rename(r->tmp, r->file) == 0;
}

moat_err ag_relay_set(void *ctx, uint8_t bitmap)
{
    ag_relay *r = ctx;
    char zones[32] = "";
    size_t n = 0;
    unsigned i;

    for (i = 0; i < 8; i++)
        if (bitmap & (1u << i))
            n += (size_t)snprintf(zones + n, sizeof zones - n, "%s%u", n ? "," : "", i + 1);
    if (!r->written || bitmap != r->last)
        ag_log(AG_LOG_INFO, "relays: 0x%02x (%s)", bitmap, n ? zones : "all off");
    if (r->file != NULL && !write_file(r, bitmap)) {
        ag_log(AG_LOG_ERROR, "relay file '%s': %s", r->file, strerror(errno));
        return MOAT_ERR_IO;
    }
    r->last = bitmap;
    r->written = true;
    return MOAT_OK;
}

void ag_relay_off_from_signal(const ag_relay *r)
{
    if (r != NULL && r->file != NULL)
        write_file(r, 0);
}
