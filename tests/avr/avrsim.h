/*
 * avrsim.h - the moat-avr firmware running in simavr, wired like the board:
 * the host plays SPI master (SCK/MOSI/MISO/SS on PB5/PB3/PB4/PB2), relays
 * are watched on PD0..PD7 (active low), inputs are driven on PC0..PC5.
 *
 * It gives a moat_spi_bus (moat/spidev.h), so the real relay driver and
 * link engine run against the real firmware ELF. Time is the simulated
 * AVR's: "waiting" runs the AVR. In realtime mode (the agent's
 * "simavr:<elf>" relay driver) the simulation first catches up with the
 * wall clock on every call, so the firmware's fail-safe timers run at the
 * speed of the host's.
 */
#ifndef MOAT_TESTS_AVRSIM_H
#define MOAT_TESTS_AVRSIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/spidev.h"

#define AVRSIM_F_CPU 8000000u
#define AVRSIM_LOG_MAX 256u

/* One change of the relays seen on PORTD. */
typedef struct avrsim_change {
    uint64_t us;     /* simulated time */
    uint8_t relays;  /* bit n: PDn is an output driven low */
} avrsim_change;

typedef struct avrsim avrsim; /* opaque: simavr's types stay inside */

/*
 * Load elf into a new simulated ATmega168 at 8 MHz and reset it (it does
 * not run yet). eeprom (may be NULL) is written to the EEPROM from address
 * 0 first, as a programmer would. NULL with words in why on failure.
 */
avrsim *avrsim_open(const char *elf, const uint8_t *eeprom, size_t eeprom_len, bool realtime,
                    char *why, size_t why_cap);
void avrsim_close(avrsim *s);

/* The SPI clock the master uses (default 100 kHz). */
void avrsim_set_sck(avrsim *s, uint32_t hz);

/* Pull RESET (PC6) low and let go: the AVR restarts. */
void avrsim_reset(avrsim *s);

/* hang: make the firmware stop feeding the watchdog, as a hung main loop
 * would (every WDR instruction in flash becomes a NOP); !hang undoes it. */
void avrsim_starve_watchdog(avrsim *s, bool hang);

/* Run the AVR for ms (simulated) milliseconds. */
void avrsim_run_ms(avrsim *s, uint32_t ms);
void avrsim_run_us(avrsim *s, uint32_t us);
/* Simulated time since the start. */
uint64_t avrsim_now_us(const avrsim *s);

/* Drive SS (PB2): 0 selects. */
void avrsim_ss(avrsim *s, int level);
/* Clock one byte out on MOSI while SS is as it is; returns MISO. Runs the
 * AVR for one byte time. */
uint8_t avrsim_byte(avrsim *s, uint8_t mosi);
/* A whole transfer: SS low, n bytes, SS high. */
void avrsim_transfer(avrsim *s, const uint8_t *tx, uint8_t *rx, size_t n);

/* Drive PC0..PC5 (bit n = PCn high). */
void avrsim_inputs(avrsim *s, uint8_t levels);

/* PORTD now: the relays on (bit n: PDn output and low), and raw registers. */
uint8_t avrsim_relays(const avrsim *s);
uint8_t avrsim_portd(const avrsim *s);
uint8_t avrsim_ddrd(const avrsim *s);
/* A data-space byte (an I/O register by its memory address, e.g. 0x60 is
 * WDTCSR on the ATmega168). */
uint8_t avrsim_peek(const avrsim *s, uint16_t addr);

/* Every relay change seen on the PORTD pin IRQs since open. */
size_t avrsim_changes(const avrsim *s, const avrsim_change **log);
/* Boots seen: the firmware sets DDRD once per reset, watchdog resets
 * included. */
unsigned avrsim_boots(const avrsim *s);

/* The bus for moat_spi_relay_init(). */
void avrsim_bus(avrsim *s, moat_spi_bus *bus);

#endif
