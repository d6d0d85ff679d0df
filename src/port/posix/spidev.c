/*
 * spidev.c - the relay co-processor over SPI: a moat_relay_driver that runs
 * the link engine (src/core/spilink.c) over a bus, and the Linux spidev bus
 * (linux/spi/spidev.h) for real boards.
 *
 * A transaction blocks for a few milliseconds: a request transfer, then one
 * or two polls for the reply, each after the engine's gap (1 ms), retried a
 * bounded number of times. That is the relay driver contract of
 * moat/zones.h ("it should be quick").
 */
#include "moat/spidev.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/spi/spidev.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "moat/posix.h"

/* -------------------------------------------------- the relay driver -- */

moat_err moat_spi_relay_init(moat_spi_relay *r, const moat_spi_bus *bus,
                             const moat_spilink_config *cfg)
{
    memset(r, 0, sizeof *r);
    if (bus == NULL || bus->transfer == NULL || bus->now_ms == NULL || bus->wait_ms == NULL) {
        snprintf(r->error, sizeof r->error, "relay co-processor: no SPI bus");
        return MOAT_ERR_ARG;
    }
    r->bus = *bus;
    if (moat_spilink_init(&r->link, cfg, bus->now_ms(bus->ctx)) != MOAT_OK) {
        snprintf(r->error, sizeof r->error,
                 "relay co-processor: the heartbeat must be longer than the gap");
        return MOAT_ERR_ARG;
    }
    return MOAT_OK;
}

/* Run the engine until the request in flight ends. Bounded: at most
 * tries * (1 + polls) transfers. */
static moat_err run(moat_spi_relay *r)
{
    uint8_t tx[MOAT_SPILINK_XFER], rx[MOAT_SPILINK_XFER];
    size_t n;
    uint32_t now, t;
    moat_err e;

    for (;;) {
        now = r->bus.now_ms(r->bus.ctx);
        moat_spilink_output(&r->link, tx, sizeof tx, &n, now);
        if (n == 0) {
            t = moat_spilink_next_timeout(&r->link, now);
            r->bus.wait_ms(r->bus.ctx, t == 0 ? 1u : t);
            continue;
        }
        memset(rx, 0, sizeof rx);
        if (r->bus.transfer(r->bus.ctx, tx, rx, n) != MOAT_OK) {
            moat_spilink_cancel(&r->link, now);
            snprintf(r->error, sizeof r->error, "relay co-processor: SPI transfer failed");
            return MOAT_ERR_IO;
        }
        e = moat_spilink_input(&r->link, rx, n, r->bus.now_ms(r->bus.ctx));
        if (e != MOAT_ERR_WOULD_BLOCK)
            return e;
    }
}

moat_err moat_spi_relay_call(moat_spi_relay *r, uint8_t cmd, const uint8_t *data,
                             uint8_t len, moat_spilink_frame *reply)
{
    moat_err e;

    e = moat_spilink_request(&r->link, cmd, data, len, r->bus.now_ms(r->bus.ctx));
    if (e != MOAT_OK) {
        snprintf(r->error, sizeof r->error, "relay co-processor: bad request 0x%02x", cmd);
        return e;
    }
    e = run(r);
    if (e == MOAT_ERR_IO)
        return e;
    if (e != MOAT_OK) {
        snprintf(r->error, sizeof r->error, "%s", moat_spilink_why(&r->link));
        return e;
    }
    r->error[0] = '\0';
    if (reply != NULL)
        *reply = *moat_spilink_reply(&r->link);
    return MOAT_OK;
}

/* "1,3" for bitmap 0x05. */
static void zone_list(uint8_t bitmap, char *out, size_t cap)
{
    size_t n = 0;
    unsigned i;

    out[0] = '\0';
    for (i = 0; i < 8 && n < cap; i++)
        if (bitmap & (1u << i))
            n += (size_t)snprintf(out + n, cap - n, "%s%u", n ? "," : "", i + 1);
}

/* Compare what the co-processor reports with what was asked: MOAT_OK when
 * they agree, else MOAT_ERR_STATE with words. */
static moat_err check_status(moat_spi_relay *r, const moat_spilink_frame *f)
{
    moat_spilink_status st;
    uint8_t missing, shown;
    bool plural;
    char zones[24];

    if (!moat_spilink_status_of(f, &st)) {
        snprintf(r->error, sizeof r->error, "relay co-processor: reply without status");
        return MOAT_ERR_MALFORMED;
    }
    r->status = st;
    r->have_status = true;
    missing = (uint8_t)(r->wanted & (uint8_t)~st.relays);
    if (st.relays == r->wanted)
        return MOAT_OK;
    shown = missing ? missing : st.relays;
    plural = (shown & (shown - 1u)) != 0;
    zone_list(shown, zones, sizeof zones);
    if (missing & st.forced) {
        const char *why = "maximum on-time reached";
        if (st.flags & MOAT_SPILINK_FLAG_SILENCE)
            why = (st.flags & MOAT_SPILINK_FLAG_MAX_ON)
                      ? "no valid frame within its fail-safe time, and maximum on-time reached"
                      : "no valid frame within its fail-safe time";
        snprintf(r->error, sizeof r->error,
                 "relay co-processor switched %s %s off by itself (%s); it keeps %s off "
                 "until told off",
                 plural ? "zones" : "zone", zones, why, plural ? "them" : "it");
    }
    else if (missing)
        snprintf(r->error, sizeof r->error,
                 "relay co-processor has %s %s off: it restarted (reset cause 0x%02x)",
                 plural ? "zones" : "zone", zones, st.reset_cause);
    else
        snprintf(r->error, sizeof r->error, "relay co-processor has %s %s on unasked",
                 plural ? "zones" : "zone", zones);
    return MOAT_ERR_STATE;
}

moat_err moat_spi_relay_set(void *ctx, uint8_t bitmap)
{
    moat_spi_relay *r = ctx;
    moat_spilink_frame f;
    moat_err e;

    e = moat_spi_relay_call(r, MOAT_SPILINK_CMD_SET_RELAYS, &bitmap, 1, &f);
    if (e != MOAT_OK)
        return e;
    r->wanted = bitmap;
    r->reported = false;
    return check_status(r, &f);
}

moat_err moat_spi_relay_poll(moat_spi_relay *r)
{
    moat_spilink_frame f;
    moat_err e;

    if (moat_spilink_next_timeout(&r->link, r->bus.now_ms(r->bus.ctx)) != 0)
        return MOAT_OK;
    e = moat_spi_relay_call(r, MOAT_SPILINK_CMD_HEARTBEAT, NULL, 0, &f);
    if (e != MOAT_OK)
        return e;
    e = check_status(r, &f);
    if (e == MOAT_OK) {
        r->reported = false;
        return MOAT_OK;
    }
    if (r->reported)
        return MOAT_OK; /* said once; the owner acts on it */
    r->reported = true;
    return e;
}

uint32_t moat_spi_relay_next_timeout(const moat_spi_relay *r)
{
    return moat_spilink_next_timeout(&r->link, r->bus.now_ms(r->bus.ctx));
}

const moat_spilink_status *moat_spi_relay_status(const moat_spi_relay *r)
{
    return r->have_status ? &r->status : NULL;
}

const char *moat_spi_relay_error(const moat_spi_relay *r)
{
    return r->error;
}

/* ------------------------------------------------------ spidev bus -- */

moat_err moat_spidev_open(moat_spidev *d, const char *path, uint32_t speed_hz, char *why,
                          size_t why_cap)
{
    uint8_t mode = SPI_MODE_0, lsb = 0, bits = 8;
    const char *step = NULL;

    d->fd = open(path, O_RDWR | O_CLOEXEC);
    d->speed_hz = speed_hz ? speed_hz : MOAT_SPIDEV_DEFAULT_HZ;
    if (d->fd < 0) {
        snprintf(why, why_cap, "cannot open %s: %s (is SPI enabled, e.g. dtparam=spi=on?)",
                 path, strerror(errno));
        return MOAT_ERR_FILE;
    }
    if (ioctl(d->fd, SPI_IOC_WR_MODE, &mode) < 0)
        step = "mode 0";
    else if (ioctl(d->fd, SPI_IOC_WR_LSB_FIRST, &lsb) < 0)
        step = "MSB first";
    else if (ioctl(d->fd, SPI_IOC_WR_BITS_PER_WORD, &bits) < 0)
        step = "8 bits per word";
    else if (ioctl(d->fd, SPI_IOC_WR_MAX_SPEED_HZ, &d->speed_hz) < 0)
        step = "the clock speed";
    if (step != NULL) {
        snprintf(why, why_cap, "%s: cannot set %s: %s", path, step, strerror(errno));
        moat_spidev_close(d);
        return MOAT_ERR_FILE;
    }
    return MOAT_OK;
}

void moat_spidev_close(moat_spidev *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
}

static moat_err spidev_transfer(void *ctx, const uint8_t *tx, uint8_t *rx, size_t n)
{
    moat_spidev *d = ctx;
    struct spi_ioc_transfer x;
    int r;

    memset(&x, 0, sizeof x);
    x.tx_buf = (uint64_t)(uintptr_t)tx;
    x.rx_buf = (uint64_t)(uintptr_t)rx;
    x.len = (uint32_t)n;
    x.speed_hz = d->speed_hz;
    x.bits_per_word = 8;
    do
        r = ioctl(d->fd, SPI_IOC_MESSAGE(1), &x);
    while (r < 0 && errno == EINTR);
    return r == (int)n ? MOAT_OK : MOAT_ERR_IO;
}

static uint32_t spidev_now(void *ctx)
{
    (void)ctx;
    return moat_clock_ms();
}

static void spidev_wait(void *ctx, uint32_t ms)
{
    struct timespec ts;

    (void)ctx;
    ts.tv_sec = (time_t)(ms / 1000u);
    ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void moat_spidev_bus(moat_spidev *d, moat_spi_bus *bus)
{
    bus->transfer = spidev_transfer;
    bus->now_ms = spidev_now;
    bus->wait_ms = spidev_wait;
    bus->ctx = d;
}
