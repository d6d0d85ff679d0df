/*
 * moat/spidev.h - the relay co-processor on a real SPI bus (Linux spidev),
 * and the relay driver that runs the SPI link engine (moat/spilink.h) over
 * any bus.
 *
 * moat_spi_relay is a moat_relay_driver (moat/zones.h): set() sends
 * SET_RELAYS and waits for the reply, a few milliseconds. The waiting is
 * done by the bus, which is three functions: one full-duplex transfer with
 * chip select, a clock, and a way to let time pass. moat_spidev gives them
 * for /dev/spidevX.Y; tests/avr gives them for the firmware running in
 * simavr, where letting time pass means running the simulated AVR.
 *
 * The co-processor switches everything off when no valid frame comes for its
 * fail-safe time, so the owner calls moat_spi_relay_poll() each loop (by
 * moat_spi_relay_next_timeout() at the latest): it sends the heartbeat and
 * reports relays the co-processor switched off by itself.
 */
#ifndef MOAT_SPIDEV_H
#define MOAT_SPIDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"
#include "moat/spilink.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A bus to the co-processor. */
typedef struct moat_spi_bus {
    /* One transfer of n bytes with SS low throughout: tx out on MOSI, rx
     * filled from MISO. MOAT_OK or MOAT_ERR_IO. */
    moat_err (*transfer)(void *ctx, const uint8_t *tx, uint8_t *rx, size_t n);
    uint32_t (*now_ms)(void *ctx); /* monotonic milliseconds, wrapping */
    void (*wait_ms)(void *ctx, uint32_t ms); /* let ms pass */
    void *ctx;
} moat_spi_bus;

#define MOAT_SPI_RELAY_ERROR_MAX 224u

/* The relay driver over a bus. Opaque: allocate it, pass it to every call. */
typedef struct moat_spi_relay {
    moat_spilink link;
    moat_spi_bus bus;
    moat_spilink_status status; /* from the last status reply */
    bool have_status;
    uint8_t wanted;             /* the last bitmap set() wrote */
    bool reported;              /* the current forced-off was reported */
    char error[MOAT_SPI_RELAY_ERROR_MAX];
} moat_spi_relay;

/* Make the driver (cfg NULL for the link defaults). No transfer yet. */
moat_err moat_spi_relay_init(moat_spi_relay *r, const moat_spi_bus *bus,
                             const moat_spilink_config *cfg);

/*
 * One request and its reply, waiting for it: MOAT_OK with *reply (may be
 * NULL) filled, or the link's error (MOAT_ERR_TIMEOUT, MOAT_ERR_PROTOCOL,
 * MOAT_ERR_IO from the bus) with words in moat_spi_relay_error().
 */
moat_err moat_spi_relay_call(moat_spi_relay *r, uint8_t cmd, const uint8_t *data,
                             uint8_t len, moat_spilink_frame *reply);

/*
 * The moat_relay_driver set(): ctx is the moat_spi_relay. MOAT_OK once the
 * co-processor reports exactly bitmap on; MOAT_ERR_STATE when it holds some
 * of them off (fail-safe latch: set them off first); link errors as above.
 */
moat_err moat_spi_relay_set(void *ctx, uint8_t bitmap);

/*
 * Heartbeat when due (nothing otherwise). MOAT_OK; a link error; or
 * MOAT_ERR_STATE, once, when the co-processor has switched relays off by
 * itself (fail-safe silence or maximum on-time), with words.
 */
moat_err moat_spi_relay_poll(moat_spi_relay *r);

/* Milliseconds until moat_spi_relay_poll() has work. */
uint32_t moat_spi_relay_next_timeout(const moat_spi_relay *r);

/* The last status the co-processor reported; NULL before the first. */
const moat_spilink_status *moat_spi_relay_status(const moat_spi_relay *r);

/* Words for the last failure; "" after a success. Never NULL. */
const char *moat_spi_relay_error(const moat_spi_relay *r);

/* ------------------------------------------------ Linux spidev bus -- */

#define MOAT_SPIDEV_DEFAULT_HZ 100000u

typedef struct moat_spidev {
    int fd;            /* -1 when closed */
    uint32_t speed_hz;
} moat_spidev;

/*
 * Open path (/dev/spidevB.C) for the co-processor: mode 0, MSB first, 8 bits
 * per word, speed_hz (0 means MOAT_SPIDEV_DEFAULT_HZ; the ATmega168 slave at
 * 8 MHz takes at most 2 MHz, and its interrupt needs a few microseconds per
 * byte: stay at or below 250 kHz). MOAT_ERR_FILE with words in why on
 * failure ("cannot open /dev/spidev0.0: No such file or directory (is SPI
 * enabled?)").
 */
moat_err moat_spidev_open(moat_spidev *d, const char *path, uint32_t speed_hz, char *why,
                          size_t why_cap);
void moat_spidev_close(moat_spidev *d);

/* Fill bus with d's transfer, the monotonic clock and nanosleep. */
void moat_spidev_bus(moat_spidev *d, moat_spi_bus *bus);

#ifdef __cplusplus
}
#endif
#endif
