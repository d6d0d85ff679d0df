/*
 * moat-avr.c - the relay co-processor firmware: an ATmega168 at 8 MHz, SPI
 * slave, 8 active-low relays on PORTD, inputs on PC0..PC5.
 *
 * The frame format, the commands and the fail-safe rules are in
 * include/moat/spilink.h (shared with the host) and docs/AVR.md.
 *
 * Structure: two interrupt handlers move bytes, the main loop decides.
 *   SPI_STC   each received byte: load the next reply byte into SPDR first
 *             (it must be there before the master clocks the next byte),
 *             then collect request frames into rx[]
 *   PCINT0    SS (PB2) rose: the transfer is over; drop a partial frame and
 *             rewind the reply, so the next transfer sends it from byte 0
 *   TIMER1    a 10 ms tick
 *   main      checks frames, acts, builds replies, runs the fail-safe timers,
 *             feeds the watchdog, sleeps
 * The watchdog is fed only by the main loop: if it hangs, the AVR resets and
 * the reset switches every relay off.
 */
#include <avr/eeprom.h>
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <avr/wdt.h>
#include <stdint.h>

#include "moat/spilink.h"

#ifndef MOAT_AVR_VERSION_MAJOR
#define MOAT_AVR_VERSION_MAJOR 0
#define MOAT_AVR_VERSION_MINOR 1
#define MOAT_AVR_VERSION_PATCH 0
#endif

#define TICK_MS 10u
#define SS_BIT _BV(PB2)
#define MISO_BIT _BV(PB4)
#define INPUT_MASK 0x3Fu /* PC0..PC5; PC6 is RESET */

/* MCUSR as found at reset: .noinit, because it is saved before .bss is
 * cleared. */
static uint8_t reset_cause __attribute__((section(".noinit")));

/* ---------------------------------------------- shared with the ISRs -- */

static volatile uint8_t rx[MOAT_SPILINK_FRAME_MAX];
static volatile uint8_t rx_pos;    /* bytes of the frame so far; 0: hunting */
static volatile uint8_t rx_full;   /* rx holds a whole frame for main */
static volatile uint8_t rx_event;  /* a NAK reason seen by an ISR, or 0 */
static volatile uint8_t tx[MOAT_SPILINK_FRAME_MAX];
static volatile uint8_t tx_len;    /* 0: no reply yet */
static volatile uint8_t tx_pos;    /* next byte to load into SPDR */
static volatile uint8_t ticks;     /* 10 ms ticks not yet handled */

/* ------------------------------------------------------ main's state -- */

static uint8_t expect_seq;         /* seq of the next acceptable request */
static uint8_t want;               /* relays the host asked for */
static uint8_t relays;             /* relays on */
static uint8_t forced;             /* relays held off by a fail-safe */
static uint8_t flags;              /* MOAT_SPILINK_FLAG_* */
static uint16_t rejected;          /* bad frames */
static uint16_t silence;           /* ticks since the last valid frame */
static uint16_t failsafe_ticks;
static uint32_t max_on_ticks;
static uint32_t on_ticks[8];       /* ticks relay n has been on */
static uint16_t failsafe_ms;       /* as configured, for VERSION */
static uint16_t max_on_s;

/* Before anything else, even before .data and .bss are set up: relays off
 * (PORT high before DDR, so no pin is ever driven low), and the watchdog
 * that a watchdog reset leaves running at its shortest period is stopped. */
void early_init(void) __attribute__((naked, used, section(".init3")));
void early_init(void)
{
    reset_cause = MCUSR;
    MCUSR = 0;
    wdt_disable();
    PORTD = 0xFF;
    DDRD = 0xFF;
}

static void relays_write(uint8_t on)
{
    relays = on;
    PORTD = (uint8_t)~on; /* active low */
}

/* ------------------------------------------------------------ ISRs -- */

ISR(SPI_STC_vect)
{
    uint8_t b = SPDR;
    uint8_t pos = rx_pos;

    SPDR = tx_pos < tx_len ? tx[tx_pos++] : MOAT_SPILINK_FILLER;
    if (rx_full) { /* main has not taken the last frame yet */
        if (b == MOAT_SPILINK_START_REQUEST)
            rx_event = MOAT_SPILINK_NAK_OVERRUN;
        return;
    }
    if (pos == 0 && b != MOAT_SPILINK_START_REQUEST)
        return; /* filler or garbage between frames */
    if (pos == 3 && b > MOAT_SPILINK_DATA_MAX) {
        rx_event = MOAT_SPILINK_NAK_LENGTH;
        rx_pos = 0;
        return;
    }
    rx[pos++] = b;
    if (pos > 3 && pos == (uint8_t)(rx[3] + MOAT_SPILINK_OVERHEAD)) {
        rx_full = 1;
        pos = 0;
    }
    rx_pos = pos;
}

/* Start the reply over: the next transfer sends it from its first byte.
 * Only while SS is high, when no byte is moving. */
static void rewind_reply(void)
{
    SPDR = tx_len ? tx[0] : MOAT_SPILINK_FILLER;
    tx_pos = 1;
}

ISR(PCINT0_vect)
{
    if (!(PINB & SS_BIT))
        return; /* SS fell: a transfer begins */
    if (rx_pos != 0) {
        rx_pos = 0;
        rx_event = MOAT_SPILINK_NAK_TRUNCATED;
    }
    rewind_reply();
}

ISR(TIMER1_COMPA_vect)
{
    if (ticks != 0xFF)
        ticks++;
}

/* ------------------------------------------------------------ replies -- */

static void reply(uint8_t seq, uint8_t cmd, const uint8_t *data, uint8_t len)
{
    uint8_t f[MOAT_SPILINK_FRAME_MAX];
    uint8_t i, n = 0;

    f[n++] = MOAT_SPILINK_START_REPLY;
    f[n++] = seq;
    f[n++] = cmd;
    f[n++] = len;
    for (i = 0; i < len; i++)
        f[n++] = data[i];
    f[n] = moat_spilink_crc8(f, n);
    n++;
    cli();
    for (i = 0; i < n; i++)
        tx[i] = f[i];
    tx_len = n;
    /* In the middle of a transfer the new reply waits for the next one
     * (PCINT0 rewinds it when SS rises); between transfers it is loaded
     * now. */
    if (PINB & SS_BIT)
        rewind_reply();
    else
        tx_pos = 0xFF;
    sei();
}

static void count_rejected(void)
{
    if (rejected != 0xFFFF)
        rejected++;
}

static void nak(uint8_t seq, uint8_t reason)
{
    uint8_t d[MOAT_SPILINK_NAK_LEN];

    count_rejected();
    d[0] = reason;
    d[1] = expect_seq;
    d[2] = (uint8_t)rejected;
    d[3] = (uint8_t)(rejected >> 8);
    reply(seq, MOAT_SPILINK_CMD_NAK, d, sizeof d);
}

static void reply_status(uint8_t seq, uint8_t cmd)
{
    uint8_t d[MOAT_SPILINK_STATUS_LEN];

    d[MOAT_SPILINK_ST_RELAYS] = relays;
    d[MOAT_SPILINK_ST_FORCED] = forced;
    d[MOAT_SPILINK_ST_FLAGS] = flags;
    d[MOAT_SPILINK_ST_RESET] = reset_cause;
    d[MOAT_SPILINK_ST_REJECTED] = (uint8_t)rejected;
    d[MOAT_SPILINK_ST_REJECTED + 1] = (uint8_t)(rejected >> 8);
    reply(seq, cmd | MOAT_SPILINK_REPLY_BIT, d, sizeof d);
}

/* --------------------------------------------------------- the rules -- */

/* The host's bitmap. A bit at 0 also clears that relay's forced latch; a
 * relay the fail-safe switched off stays off until the host has said off. */
static void set_relays(uint8_t bitmap)
{
    uint8_t on, i;

    want = bitmap;
    forced &= bitmap;
    if (forced == 0)
        flags = 0;
    on = (uint8_t)(want & (uint8_t)~forced);
    for (i = 0; i < 8; i++)
        if ((on & (uint8_t)~relays) & (uint8_t)(1u << i))
            on_ticks[i] = 0; /* switched on now: its on-time starts */
    relays_write(on);
}

static void force_off(uint8_t mask, uint8_t why)
{
    forced |= mask;
    flags |= why;
    relays_write(relays & (uint8_t)~mask);
}

static void tick(void)
{
    uint8_t i, over = 0;

    if (silence != 0xFFFF)
        silence++;
    if (relays && silence >= failsafe_ticks)
        force_off(relays, MOAT_SPILINK_FLAG_SILENCE);
    for (i = 0; i < 8; i++) {
        if (!(relays & (uint8_t)(1u << i)))
            continue;
        if (++on_ticks[i] >= max_on_ticks)
            over |= (uint8_t)(1u << i);
    }
    if (over)
        force_off(over, MOAT_SPILINK_FLAG_MAX_ON);
}

static uint8_t expected_len(uint8_t cmd)
{
    switch (cmd) {
    case MOAT_SPILINK_CMD_SET_RELAYS: return 1;
    case MOAT_SPILINK_CMD_GET_RELAYS:
    case MOAT_SPILINK_CMD_GET_INPUTS:
    case MOAT_SPILINK_CMD_VERSION:
    case MOAT_SPILINK_CMD_HEARTBEAT: return 0;
    default: return 0xFF;
    }
}

/* A whole frame is in rx (its start byte and a length within bounds were
 * checked by the ISR). Nothing is acted on unless every check passes. */
static void handle_frame(void)
{
    uint8_t f[MOAT_SPILINK_FRAME_MAX];
    uint8_t i, n = (uint8_t)(rx[3] + MOAT_SPILINK_OVERHEAD);
    uint8_t seq, cmd, len, want_len;

    for (i = 0; i < n; i++)
        f[i] = rx[i];
    rx_full = 0; /* the ISR may collect the next frame now */
    seq = f[1];
    cmd = f[2];
    len = f[3];
    if (moat_spilink_crc8(f, (uint8_t)(n - 1)) != f[n - 1]) {
        nak(seq, MOAT_SPILINK_NAK_CRC);
        return;
    }
    want_len = expected_len(cmd);
    if (want_len == 0xFF) {
        nak(seq, MOAT_SPILINK_NAK_CMD);
        return;
    }
    if (len != want_len) {
        nak(seq, MOAT_SPILINK_NAK_LENGTH);
        return;
    }
    if (seq != expect_seq) {
        nak(seq, MOAT_SPILINK_NAK_SEQ);
        return;
    }
    expect_seq = (uint8_t)(seq + 1);
    silence = 0;
    switch (cmd) {
    case MOAT_SPILINK_CMD_SET_RELAYS:
        set_relays(f[4]);
        reply_status(seq, cmd);
        break;
    case MOAT_SPILINK_CMD_GET_INPUTS: {
        uint8_t in = PINC & INPUT_MASK;
        reply(seq, cmd | MOAT_SPILINK_REPLY_BIT, &in, 1);
        break;
    }
    case MOAT_SPILINK_CMD_VERSION: {
        uint8_t d[MOAT_SPILINK_VERSION_LEN];
        d[0] = MOAT_SPILINK_PROTOCOL;
        d[1] = MOAT_AVR_VERSION_MAJOR;
        d[2] = MOAT_AVR_VERSION_MINOR;
        d[3] = MOAT_AVR_VERSION_PATCH;
        d[4] = (uint8_t)failsafe_ms;
        d[5] = (uint8_t)(failsafe_ms >> 8);
        d[6] = (uint8_t)max_on_s;
        d[7] = (uint8_t)(max_on_s >> 8);
        reply(seq, cmd | MOAT_SPILINK_REPLY_BIT, d, sizeof d);
        break;
    }
    default: /* GET_RELAYS, HEARTBEAT */
        reply_status(seq, cmd);
        break;
    }
}

/* ------------------------------------------------------------- setup -- */

/* The EEPROM block, if valid; else the defaults. */
static void load_config(void)
{
    uint8_t ee[MOAT_SPILINK_EE_LEN];
    uint16_t fs, mo;

    eeprom_read_block(ee, (const void *)0, sizeof ee);
    fs = (uint16_t)(ee[2] | (uint16_t)ee[3] << 8);
    mo = (uint16_t)(ee[4] | (uint16_t)ee[5] << 8);
    if (ee[0] != MOAT_SPILINK_EE_MAGIC || ee[1] != MOAT_SPILINK_EE_VERSION ||
        moat_spilink_crc8(ee, 6) != ee[6] || fs < MOAT_SPILINK_FAILSAFE_MIN_MS ||
        fs > MOAT_SPILINK_FAILSAFE_MAX_MS || mo < MOAT_SPILINK_MAX_ON_MIN_S) {
        fs = MOAT_SPILINK_DEFAULT_FAILSAFE_MS;
        mo = MOAT_SPILINK_DEFAULT_MAX_ON_S;
    }
    failsafe_ms = fs;
    max_on_s = mo;
    failsafe_ticks = (uint16_t)(fs / TICK_MS);
    max_on_ticks = (uint32_t)mo * (1000u / TICK_MS);
}

static void setup(void)
{
    relays_write(0);
    load_config();
    /* Unused pins: inputs with pull-ups. PC0..PC5: inputs with pull-ups. */
    DDRC = 0;
    PORTC = INPUT_MASK;
    /* SPI slave, mode 0, MSB first; MISO is ours to drive. SS has a pull-up
     * so that an unplugged host reads as deselected. */
    DDRB = MISO_BIT;
    PORTB = (uint8_t)~MISO_BIT;
    SPCR = _BV(SPIE) | _BV(SPE);
    SPDR = MOAT_SPILINK_FILLER;
    PCMSK0 = _BV(PCINT2);
    PCICR = _BV(PCIE0);
    /* Timer1, CTC: 8 MHz / 64 / 1250 = 100 Hz. */
    OCR1A = (uint16_t)(F_CPU / 64u / (1000u / TICK_MS) - 1u);
    TCCR1A = 0;
    TCCR1B = _BV(WGM12) | _BV(CS11) | _BV(CS10);
    TIMSK1 = _BV(OCIE1A);
    wdt_enable(WDTO_250MS);
    set_sleep_mode(SLEEP_MODE_IDLE);
}

int main(void)
{
    uint8_t ev, t;

    setup();
    sei();
    for (;;) {
        wdt_reset();
        if (rx_full)
            handle_frame();
        cli();
        ev = rx_event;
        rx_event = 0;
        t = ticks;
        ticks = 0;
        sei();
        if (ev)
            nak(0, ev);
        while (t--)
            tick();
        /* Sleep unless an ISR left work behind: sei takes effect after
         * sleep, so no wake-up is lost between the check and the sleep. */
        cli();
        if (!rx_full && !rx_event && !ticks) {
            sleep_enable();
            sei();
            sleep_cpu();
            sleep_disable();
        }
        sei();
    }
}
