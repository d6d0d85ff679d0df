/*
 * avrsim.c - the moat-avr firmware in simavr (libsimavr), wired like the
 * board: see avrsim.h.
 *
 * simavr's SPI model: raising SPI_IRQ_INPUT with a byte is the end of one
 * byte on the wire; simavr answers at once on SPI_IRQ_OUTPUT with what the
 * firmware had put in SPDR (MISO), and raises the SPI interrupt, so the
 * firmware must load the next reply byte before the master clocks again -
 * we run the AVR for one byte time between bytes, as the real bus would.
 * simavr does not model SS; we drive PB2 through its pin IRQ, which is what
 * the firmware's pin-change interrupt sees.
 */
#include "avrsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <avr_eeprom.h>
#include <avr_extint.h>
#include <avr_ioport.h>
#include <avr_spi.h>
#include <sim_avr.h>
#include <sim_elf.h>

#include "moat/posix.h"

struct avrsim {
    avr_t *avr;
    elf_firmware_t fw;
    avr_irq_t *spi_in, *spi_out, *ss, *pinc[6];
    uint8_t miso;
    uint8_t port, ddr;     /* PORTD and DDRD as last written */
    uint8_t relays;
    uint32_t byte_cycles;  /* one byte at the SPI clock */
    avrsim_change log[AVRSIM_LOG_MAX];
    size_t log_n;
    unsigned boots;
    bool realtime;
    uint32_t wall0_ms;
    uint32_t wdr_at[16];   /* flash offsets of WDR instructions we made NOPs */
    size_t wdr_n;     /* realtime: the wall clock at cycle 0 */
};

/* simavr's raw mode sleeps in real time while the AVR sleeps; tests want
 * the simulated time to fly. */
static void no_sleep(avr_t *avr, avr_cycle_count_t how_long)
{
    (void)avr;
    (void)how_long;
}

static void on_miso(avr_irq_t *irq, uint32_t value, void *param)
{
    avrsim *s = param;

    (void)irq;
    s->miso = (uint8_t)value;
}

static void note_relays(avrsim *s)
{
    uint8_t r = (uint8_t)(s->ddr & (uint8_t)~s->port);

    if (r == s->relays)
        return;
    s->relays = r;
    if (s->log_n < AVRSIM_LOG_MAX) {
        s->log[s->log_n].us = avrsim_now_us(s);
        s->log[s->log_n].relays = r;
        s->log_n++;
    }
}

static void on_portd(avr_irq_t *irq, uint32_t value, void *param)
{
    avrsim *s = param;

    (void)irq;
    s->port = (uint8_t)value;
    note_relays(s);
}

/* PD2 and PD3 are also INT0 and INT1. While either is low and in the
 * low-level mode that follows every reset, simavr polls it on every cycle,
 * enabled or not: a relay 3 or 4 that is on would slow the simulation a
 * thousandfold. The firmware never enables them, so edge mode behaves the
 * same; set it again after each reset (the boot writes DDRD first). */
static void quiet_extint(avrsim *s)
{
    avr_extint_set_strict_lvl_trig(s->avr, 0, 0);
    avr_extint_set_strict_lvl_trig(s->avr, 1, 0);
}

static void on_ddrd(avr_irq_t *irq, uint32_t value, void *param)
{
    avrsim *s = param;

    (void)irq;
    s->ddr = (uint8_t)value;
    s->boots++;
    quiet_extint(s);
    note_relays(s);
}

/* simavr's EEPROM ioctls return -1 (meaning "not mine") even when they
 * worked, so the write is checked by reading it back. */
static bool write_eeprom(avr_t *avr, const uint8_t *data, size_t len)
{
    uint8_t back[64];
    avr_eeprom_desc_t d;

    if (len > sizeof back)
        return false;
    d.ee = (uint8_t *)data;
    d.offset = 0;
    d.size = (uint32_t)len;
    if (avr_ioctl(avr, AVR_IOCTL_EEPROM_SET, &d) == -2)
        return false;
    d.ee = back;
    if (avr_ioctl(avr, AVR_IOCTL_EEPROM_GET, &d) == -2)
        return false;
    return memcmp(back, data, len) == 0;
}

avrsim *avrsim_open(const char *elf, const uint8_t *eeprom, size_t eeprom_len, bool realtime,
                    char *why, size_t why_cap)
{
    avrsim *s = calloc(1, sizeof *s);
    avr_irq_t *irq;
    int i;

    if (s == NULL) {
        snprintf(why, why_cap, "out of memory");
        return NULL;
    }
    if (elf_read_firmware(elf, &s->fw) != 0) {
        snprintf(why, why_cap, "simavr cannot read the firmware %s", elf);
        free(s);
        return NULL;
    }
    if (s->fw.mmcu[0] == '\0')
        snprintf(s->fw.mmcu, sizeof s->fw.mmcu, "atmega168");
    s->fw.frequency = AVRSIM_F_CPU;
    s->avr = avr_make_mcu_by_name(s->fw.mmcu);
    if (s->avr == NULL) {
        snprintf(why, why_cap, "simavr does not know the MCU '%s'", s->fw.mmcu);
        avrsim_close(s);
        return NULL;
    }
    s->avr->log = LOG_ERROR;
    avr_init(s->avr);
    s->avr->sleep = no_sleep;
    avr_load_firmware(s->avr, &s->fw);
    s->avr->frequency = AVRSIM_F_CPU;
    if (eeprom != NULL && eeprom_len > 0 && !write_eeprom(s->avr, eeprom, eeprom_len)) {
        snprintf(why, why_cap, "simavr cannot write %zu bytes to the EEPROM", eeprom_len);
        avrsim_close(s);
        return NULL;
    }
    s->spi_in = avr_io_getirq(s->avr, AVR_IOCTL_SPI_GETIRQ(0), SPI_IRQ_INPUT);
    s->spi_out = avr_io_getirq(s->avr, AVR_IOCTL_SPI_GETIRQ(0), SPI_IRQ_OUTPUT);
    s->ss = avr_io_getirq(s->avr, AVR_IOCTL_IOPORT_GETIRQ('B'), 2);
    for (i = 0; i < 6; i++)
        s->pinc[i] = avr_io_getirq(s->avr, AVR_IOCTL_IOPORT_GETIRQ('C'), i);
    if (s->spi_in == NULL || s->spi_out == NULL || s->ss == NULL) {
        snprintf(why, why_cap, "simavr has no SPI or port B on this MCU");
        avrsim_close(s);
        return NULL;
    }
    avr_irq_register_notify(s->spi_out, on_miso, s);
    /* Every write, not only changes: a reboot writes the same DDRD again. */
    irq = avr_io_getirq(s->avr, AVR_IOCTL_IOPORT_GETIRQ('D'), IOPORT_IRQ_REG_PORT);
    avr_irq_set_flags(irq, avr_irq_get_flags(irq) & (uint8_t)~IRQ_FLAG_FILTERED);
    avr_irq_register_notify(irq, on_portd, s);
    irq = avr_io_getirq(s->avr, AVR_IOCTL_IOPORT_GETIRQ('D'), IOPORT_IRQ_DIRECTION_ALL);
    avr_irq_set_flags(irq, avr_irq_get_flags(irq) & (uint8_t)~IRQ_FLAG_FILTERED);
    avr_irq_register_notify(irq, on_ddrd, s);
    avr_raise_irq(s->ss, 1); /* deselected */
    avrsim_set_sck(s, 100000u);
    s->realtime = realtime;
    s->wall0_ms = moat_clock_ms();
    return s;
}

void avrsim_close(avrsim *s)
{
    if (s == NULL)
        return;
    if (s->avr != NULL) {
        avr_terminate(s->avr);
        free(s->avr);
    }
    free(s->fw.flash);
    free(s->fw.eeprom);
#if ELF_SYMBOLS
    if (s->fw.symbol != NULL) {
        uint32_t i;
        for (i = 0; i < s->fw.symbolcount; i++)
            free(s->fw.symbol[i]);
        free(s->fw.symbol);
    }
#endif
    free(s);
}

void avrsim_reset(avrsim *s)
{
    avr_reset(s->avr);
    /* Every pin is an input again: no relay is driven. */
    s->ddr = 0;
    s->port = 0;
    note_relays(s);
    avr_raise_irq(s->ss, 1);
}

void avrsim_starve_watchdog(avrsim *s, bool hang)
{
    uint8_t *f = s->avr->flash;
    uint32_t a;
    size_t i;

    if (hang) {
        /* WDR is 0x95A8, stored little-endian; NOP is 0x0000. */
        for (a = 0; a + 1 < s->fw.flashsize && s->wdr_n < 16; a += 2) {
            if (f[a] == 0xA8 && f[a + 1] == 0x95) {
                f[a] = f[a + 1] = 0;
                s->wdr_at[s->wdr_n++] = a;
            }
        }
    } else {
        for (i = 0; i < s->wdr_n; i++) {
            f[s->wdr_at[i]] = 0xA8;
            f[s->wdr_at[i] + 1] = 0x95;
        }
        s->wdr_n = 0;
    }
}

void avrsim_set_sck(avrsim *s, uint32_t hz)
{
    s->byte_cycles = (uint32_t)(8ull * AVRSIM_F_CPU / hz);
}

static avr_cycle_count_t wake_up(avr_t *avr, avr_cycle_count_t when, void *param)
{
    (void)avr;
    (void)when;
    (void)param;
    return 0; /* once */
}

static void run_until(avrsim *s, avr_cycle_count_t cycle)
{
    /* A sleeping AVR jumps to its next timer event: one at the target
     * cycle makes the run end there, not up to a tick later. */
    if (cycle > s->avr->cycle)
        avr_cycle_timer_register(s->avr, cycle - s->avr->cycle, wake_up, s);
    while (s->avr->cycle < cycle) {
        int st = avr_run(s->avr);
        if (st == cpu_Done || st == cpu_Crashed) {
            fprintf(stderr, "avrsim: the firmware stopped (state %d) at pc 0x%04x\n", st,
                    (unsigned)s->avr->pc);
            abort();
        }
    }
}

/* Realtime: run the AVR up to the wall clock. */
static void catch_up(avrsim *s)
{
    uint64_t ms;

    if (!s->realtime)
        return;
    ms = (uint32_t)(moat_clock_ms() - s->wall0_ms);
    run_until(s, (avr_cycle_count_t)(ms * (AVRSIM_F_CPU / 1000u)));
}

void avrsim_run_us(avrsim *s, uint32_t us)
{
    catch_up(s);
    run_until(s, s->avr->cycle + (avr_cycle_count_t)us * (AVRSIM_F_CPU / 1000000u));
}

void avrsim_run_ms(avrsim *s, uint32_t ms)
{
    catch_up(s);
    run_until(s, s->avr->cycle + (avr_cycle_count_t)ms * (AVRSIM_F_CPU / 1000u));
}

uint64_t avrsim_now_us(const avrsim *s)
{
    return s->avr->cycle / (AVRSIM_F_CPU / 1000000u);
}

void avrsim_ss(avrsim *s, int level)
{
    avr_raise_irq(s->ss, level ? 1 : 0);
    avrsim_run_us(s, 10); /* SS setup/hold time */
}

uint8_t avrsim_byte(avrsim *s, uint8_t mosi)
{
    uint8_t miso;

    s->miso = MOAT_SPILINK_FILLER;
    avr_raise_irq(s->spi_in, mosi);
    miso = s->miso;
    run_until(s, s->avr->cycle + s->byte_cycles);
    return miso;
}

void avrsim_transfer(avrsim *s, const uint8_t *tx, uint8_t *rx, size_t n)
{
    size_t i;

    catch_up(s);
    avrsim_ss(s, 0);
    for (i = 0; i < n; i++)
        rx[i] = avrsim_byte(s, tx[i]);
    avrsim_ss(s, 1);
}

void avrsim_inputs(avrsim *s, uint8_t levels)
{
    int i;

    for (i = 0; i < 6; i++)
        avr_raise_irq(s->pinc[i], (levels >> i) & 1u);
}

uint8_t avrsim_relays(const avrsim *s)
{
    return s->relays;
}

uint8_t avrsim_portd(const avrsim *s)
{
    return s->port;
}

uint8_t avrsim_ddrd(const avrsim *s)
{
    return s->ddr;
}

uint8_t avrsim_peek(const avrsim *s, uint16_t addr)
{
    return s->avr->data[addr];
}

size_t avrsim_changes(const avrsim *s, const avrsim_change **log)
{
    *log = s->log;
    return s->log_n;
}

unsigned avrsim_boots(const avrsim *s)
{
    return s->boots;
}

/* ------------------------------------------------------------- bus -- */

static moat_err bus_transfer(void *ctx, const uint8_t *tx, uint8_t *rx, size_t n)
{
    avrsim_transfer(ctx, tx, rx, n);
    return MOAT_OK;
}

static uint32_t bus_now(void *ctx)
{
    avrsim *s = ctx;

    catch_up(s);
    return (uint32_t)(avrsim_now_us(s) / 1000u);
}

static void bus_wait(void *ctx, uint32_t ms)
{
    avrsim *s = ctx;

    if (s->realtime) {
        struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
        nanosleep(&ts, NULL);
        catch_up(s);
    } else {
        avrsim_run_ms(s, ms);
    }
}

void avrsim_bus(avrsim *s, moat_spi_bus *bus)
{
    bus->transfer = bus_transfer;
    bus->now_ms = bus_now;
    bus->wait_ms = bus_wait;
    bus->ctx = s;
}
