/*
 * test_avr.c - the moat-avr firmware under simavr: the real ELF from the
 * build, the real link engine and relay driver on the host side, the board's
 * wiring (avrsim.h). Each test boots a fresh ATmega168.
 *
 * What must hold: the relay bitmap arrives on PORTD, active low; CRC errors,
 * garbage, wrong lengths and out-of-order frames change nothing and are
 * counted; silence past the fail-safe time switches everything off; the
 * maximum on-time is enforced by the AVR; the link recovers after a host
 * restart; the watchdog is on and never fires while the firmware is healthy.
 *
 * Usage: test_avr moat-avr.elf eeprom.hex
 * where eeprom.hex is what `moat-avr-eeprom 2500 3` wrote.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "avrsim.h"
#include "moat/spidev.h"
#include "moat/spilink.h"
#include "moat/zones.h"

#define WDTCSR_ADDR 0x60u
#define WDE_BIT 0x08u

static const char *elf;
static const char *eeprom_hex;

/* ------------------------------------------------------------ helpers -- */

typedef struct rig {
    avrsim *sim;
    moat_spi_bus bus;
    moat_spi_relay relay;
} rig;

static uint32_t now_ms(rig *r)
{
    return (uint32_t)(avrsim_now_us(r->sim) / 1000u);
}

static void boot_with(rig *r, const uint8_t *ee, size_t ee_len)
{
    char why[200] = "";

    memset(r, 0, sizeof *r);
    r->sim = avrsim_open(elf, ee, ee_len, false, why, sizeof why);
    if (r->sim == NULL)
        fail_msg("%s", why);
    avrsim_run_ms(r->sim, 20); /* reset and setup */
    avrsim_bus(r->sim, &r->bus);
    assert_int_equal(moat_spi_relay_init(&r->relay, &r->bus, NULL), MOAT_OK);
}

static void boot(rig *r)
{
    boot_with(r, NULL, 0);
}

static void finish(rig *r)
{
    avrsim_close(r->sim);
    r->sim = NULL;
}

/* An EEPROM configuration block. */
static void ee_block(uint8_t ee[MOAT_SPILINK_EE_LEN], uint16_t failsafe_ms, uint16_t max_on_s)
{
    ee[0] = MOAT_SPILINK_EE_MAGIC;
    ee[1] = MOAT_SPILINK_EE_VERSION;
    ee[2] = (uint8_t)failsafe_ms;
    ee[3] = (uint8_t)(failsafe_ms >> 8);
    ee[4] = (uint8_t)max_on_s;
    ee[5] = (uint8_t)(max_on_s >> 8);
    ee[6] = moat_spilink_crc8(ee, 6);
}

/* The data of an Intel HEX file's records at address 0 onwards. */
static size_t read_ihex(const char *path, uint8_t *out, size_t cap)
{
    FILE *fp = fopen(path, "r");
    char line[128];
    unsigned n, addr, type, b, i;
    size_t got = 0;

    if (fp == NULL)
        fail_msg("cannot read %s", path);
    while (fgets(line, sizeof line, fp) != NULL) {
        assert_int_equal(sscanf(line, ":%2x%4x%2x", &n, &addr, &type), 3);
        if (type == 1)
            break;
        assert_int_equal(type, 0);
        for (i = 0; i < n; i++) {
            assert_int_equal(sscanf(line + 9 + 2 * i, "%2x", &b), 1);
            assert_true(addr + i < cap);
            out[addr + i] = (uint8_t)b;
            if (addr + i + 1 > got)
                got = addr + i + 1;
        }
    }
    fclose(fp);
    return got;
}

/* Raw frames, bypassing the engine: what a broken or hostile master does. */
static void send_raw(rig *r, const uint8_t *bytes, size_t n)
{
    uint8_t tx[64], rx[64];

    assert_true(n <= sizeof tx);
    memcpy(tx, bytes, n);
    avrsim_transfer(r->sim, tx, rx, n);
    avrsim_run_ms(r->sim, 1);
}

static size_t frame(uint8_t *buf, uint8_t seq, uint8_t cmd, const uint8_t *data, uint8_t len)
{
    size_t n;

    assert_int_equal(moat_spilink_encode(MOAT_SPILINK_START_REQUEST, seq, cmd, data, len, buf,
                                         MOAT_SPILINK_FRAME_MAX, &n),
                     MOAT_OK);
    return n;
}

/* A poll transfer; the reply it carries (asserts there is one). */
static moat_spilink_frame poll_reply(rig *r)
{
    uint8_t tx[MOAT_SPILINK_XFER] = {0}, rx[MOAT_SPILINK_XFER];
    moat_spilink_frame f;
    size_t used;

    avrsim_transfer(r->sim, tx, rx, sizeof rx);
    avrsim_run_ms(r->sim, 1);
    assert_int_equal(moat_spilink_parse(rx, sizeof rx, MOAT_SPILINK_START_REPLY, &f, &used),
                     MOAT_OK);
    return f;
}

/* The firmware's status, asked through the driver (GET_RELAYS). */
static moat_spilink_status status_of(rig *r)
{
    moat_spilink_frame f;
    moat_spilink_status st;

    assert_int_equal(moat_spi_relay_call(&r->relay, MOAT_SPILINK_CMD_GET_RELAYS, NULL, 0, &f),
                     MOAT_OK);
    assert_true(moat_spilink_status_of(&f, &st));
    return st;
}

/* Run for ms of simulated time as the agent would: heartbeats when due. */
static void run_with_heartbeats(rig *r, uint32_t ms)
{
    uint32_t end = now_ms(r) + ms, t;

    while ((int32_t)(end - now_ms(r)) > 0) {
        moat_spi_relay_poll(&r->relay);
        t = moat_spi_relay_next_timeout(&r->relay);
        if (t > end - now_ms(r))
            t = end - now_ms(r);
        avrsim_run_ms(r->sim, t ? t : 1);
    }
}

static size_t change_count(rig *r)
{
    const avrsim_change *log;
    return avrsim_changes(r->sim, &log);
}

/* When (ms) the relays changed for the n-th time (from 0). */
static uint32_t change_ms(rig *r, size_t n)
{
    const avrsim_change *log;

    assert_true(n < avrsim_changes(r->sim, &log));
    return (uint32_t)(log[n].us / 1000u);
}

/* When (ms) the relays last changed. */
static uint32_t last_change_ms(rig *r)
{
    const avrsim_change *log;
    size_t n = avrsim_changes(r->sim, &log);

    assert_true(n > 0);
    return (uint32_t)(log[n - 1].us / 1000u);
}

/* -------------------------------------------------------------- tests -- */

static void power_up_all_off(void **state)
{
    rig r;

    (void)state;
    boot(&r);
    assert_int_equal(avrsim_ddrd(r.sim), 0xFF);
    assert_int_equal(avrsim_portd(r.sim), 0xFF);
    assert_int_equal(avrsim_relays(r.sim), 0);
    /* Not for a moment: no pin of PORTD was ever an output driven low. */
    assert_int_equal(change_count(&r), 0);
    /* The hardware watchdog is on. */
    assert_true(avrsim_peek(r.sim, WDTCSR_ADDR) & WDE_BIT);
    /* And with no host at all, nothing ever switches on. */
    avrsim_run_ms(r.sim, 30000);
    assert_int_equal(change_count(&r), 0);
    assert_int_equal(avrsim_boots(r.sim), 1);
    finish(&r);
}

static void bitmap_arrives_on_portd_active_low(void **state)
{
    rig r;
    unsigned b;

    (void)state;
    boot(&r);
    for (b = 0; b < 256; b++) {
        uint8_t want = (uint8_t)(b * 37u + 11u); /* every value, in a scrambled order */
        assert_int_equal(moat_spi_relay_set(&r.relay, want), MOAT_OK);
        assert_int_equal(avrsim_portd(r.sim), (uint8_t)~want);
        assert_int_equal(avrsim_ddrd(r.sim), 0xFF);
        assert_int_equal(avrsim_relays(r.sim), want);
        assert_int_equal(moat_spi_relay_status(&r.relay)->relays, want);
    }
    assert_int_equal(moat_spi_relay_set(&r.relay, 0), MOAT_OK);
    assert_int_equal(avrsim_portd(r.sim), 0xFF);
    assert_int_equal(status_of(&r).rejected, 0);
    finish(&r);
}

static void one_write_changes_several_relays_at_once(void **state)
{
    rig r;
    const avrsim_change *log;
    size_t n;

    (void)state;
    boot(&r);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x01), MOAT_OK);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x80), MOAT_OK); /* exclusive switch */
    n = avrsim_changes(r.sim, &log);
    assert_int_equal(n, 2);
    assert_int_equal(log[0].relays, 0x01);
    assert_int_equal(log[1].relays, 0x80); /* never 0x81, never 0x00 in between */
    finish(&r);
}

static void get_relays_inputs_version(void **state)
{
    rig r;
    moat_spilink_frame f;
    uint8_t b = 0x42;

    (void)state;
    boot(&r);
    assert_int_equal(moat_spi_relay_set(&r.relay, b), MOAT_OK);
    assert_int_equal(status_of(&r).relays, 0x42);

    avrsim_inputs(r.sim, 0x2A);
    assert_int_equal(moat_spi_relay_call(&r.relay, MOAT_SPILINK_CMD_GET_INPUTS, NULL, 0, &f),
                     MOAT_OK);
    assert_int_equal(f.cmd, MOAT_SPILINK_CMD_GET_INPUTS | MOAT_SPILINK_REPLY_BIT);
    assert_int_equal(f.len, 1);
    assert_int_equal(f.data[0], 0x2A);
    avrsim_inputs(r.sim, 0x15);
    assert_int_equal(moat_spi_relay_call(&r.relay, MOAT_SPILINK_CMD_GET_INPUTS, NULL, 0, &f),
                     MOAT_OK);
    assert_int_equal(f.data[0], 0x15);

    assert_int_equal(moat_spi_relay_call(&r.relay, MOAT_SPILINK_CMD_VERSION, NULL, 0, &f),
                     MOAT_OK);
    assert_int_equal(f.len, MOAT_SPILINK_VERSION_LEN);
    assert_int_equal(f.data[0], MOAT_SPILINK_PROTOCOL);
    assert_int_equal(f.data[4] | f.data[5] << 8, MOAT_SPILINK_DEFAULT_FAILSAFE_MS);
    assert_int_equal(f.data[6] | f.data[7] << 8, MOAT_SPILINK_DEFAULT_MAX_ON_S);
    /* None of it touched the relays. */
    assert_int_equal(avrsim_portd(r.sim), (uint8_t)~0x42);
    finish(&r);
}

static void reply_repeats_on_every_poll(void **state)
{
    rig r;
    moat_spilink_frame a, b;

    (void)state;
    boot(&r);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x11), MOAT_OK);
    a = poll_reply(&r);
    b = poll_reply(&r);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(a.cmd, MOAT_SPILINK_CMD_SET_RELAYS | MOAT_SPILINK_REPLY_BIT);
    assert_int_equal(a.data[MOAT_SPILINK_ST_RELAYS], 0x11);
    finish(&r);
}

static void crc_errors_change_nothing(void **state)
{
    rig r;
    uint8_t buf[MOAT_SPILINK_FRAME_MAX], on = 0xFF;
    moat_spilink_frame f;
    size_t n, i;
    unsigned bit;
    uint16_t rejected;
    uint8_t seq;

    (void)state;
    boot(&r);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x03), MOAT_OK);
    seq = r.relay.link.seq; /* what the firmware expects next */
    n = frame(buf, seq, MOAT_SPILINK_CMD_SET_RELAYS, &on, 1);
    /* Every single-bit error after the start byte. */
    for (i = 1; i < n; i++) {
        for (bit = 0; bit < 8; bit++) {
            uint8_t bad[MOAT_SPILINK_FRAME_MAX + 8] = {0};
            memcpy(bad, buf, n);
            bad[i] ^= (uint8_t)(1u << bit);
            send_raw(&r, bad, sizeof bad);
            assert_int_equal(avrsim_portd(r.sim), (uint8_t)~0x03);
        }
    }
    f = poll_reply(&r);
    assert_int_equal(f.cmd, MOAT_SPILINK_CMD_NAK);
    assert_int_equal(change_count(&r), 1);
    rejected = status_of(&r).rejected; /* via the driver: the seq was never used */
    assert_int_equal(rejected, (n - 1) * 8);
    /* A plain CRC error gets a NAK that says so, with the expected seq. */
    buf[n - 1] ^= 0x5A;
    send_raw(&r, buf, n);
    f = poll_reply(&r);
    assert_int_equal(f.cmd, MOAT_SPILINK_CMD_NAK);
    assert_int_equal(f.data[0], MOAT_SPILINK_NAK_CRC);
    assert_int_equal(f.data[1], r.relay.link.seq);
    assert_int_equal(f.data[2] | f.data[3] << 8, rejected + 1);
    assert_int_equal(avrsim_portd(r.sim), (uint8_t)~0x03);
    finish(&r);
}

static void garbage_changes_nothing(void **state)
{
    rig r;
    uint32_t x = 12345;
    uint8_t g[40];
    size_t k, i, len;

    (void)state;
    boot(&r);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x24), MOAT_OK);
    for (k = 0; k < 400; k++) {
        len = 1 + k % sizeof g;
        for (i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            g[i] = (uint8_t)(x >> 16);
            if ((x >> 8) % 7 == 0)
                g[i] = MOAT_SPILINK_START_REQUEST; /* plenty of false starts */
        }
        send_raw(&r, g, len);
        assert_int_equal(avrsim_portd(r.sim), (uint8_t)~0x24);
    }
    assert_int_equal(change_count(&r), 1);
    /* The link still works; the firmware counted what it refused. */
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x42), MOAT_OK);
    assert_int_equal(avrsim_portd(r.sim), (uint8_t)~0x42);
    assert_true(status_of(&r).rejected > 0);
    finish(&r);
}

static void wrong_length_sequence_and_command_are_refused(void **state)
{
    rig r;
    uint8_t buf[MOAT_SPILINK_FRAME_MAX + 4], two[2] = {0xFF, 0xFF}, on = 0xFF;
    moat_spilink_frame f;
    uint8_t seq;
    size_t n;

    (void)state;
    boot(&r);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x81), MOAT_OK);
    seq = r.relay.link.seq;

    /* SET with two data bytes (a good CRC). */
    n = frame(buf, seq, MOAT_SPILINK_CMD_SET_RELAYS, two, 2);
    send_raw(&r, buf, n);
    f = poll_reply(&r);
    assert_int_equal(f.cmd, MOAT_SPILINK_CMD_NAK);
    assert_int_equal(f.data[0], MOAT_SPILINK_NAK_LENGTH);

    /* A length over the maximum. */
    memset(buf, 0, sizeof buf);
    buf[0] = MOAT_SPILINK_START_REQUEST;
    buf[1] = seq;
    buf[2] = MOAT_SPILINK_CMD_SET_RELAYS;
    buf[3] = MOAT_SPILINK_DATA_MAX + 1;
    send_raw(&r, buf, sizeof buf);
    f = poll_reply(&r);
    assert_int_equal(f.data[0], MOAT_SPILINK_NAK_LENGTH);

    /* Out of order: ahead, and a replay of the last accepted frame. */
    n = frame(buf, (uint8_t)(seq + 5), MOAT_SPILINK_CMD_SET_RELAYS, &on, 1);
    send_raw(&r, buf, n);
    f = poll_reply(&r);
    assert_int_equal(f.data[0], MOAT_SPILINK_NAK_SEQ);
    assert_int_equal(f.data[1], seq);
    n = frame(buf, (uint8_t)(seq - 1), MOAT_SPILINK_CMD_SET_RELAYS, &on, 1);
    send_raw(&r, buf, n);
    f = poll_reply(&r);
    assert_int_equal(f.seq, (uint8_t)(seq - 1));
    assert_int_equal(f.data[0], MOAT_SPILINK_NAK_SEQ);

    /* An unknown command. */
    n = frame(buf, seq, 0x42, NULL, 0);
    send_raw(&r, buf, n);
    f = poll_reply(&r);
    assert_int_equal(f.data[0], MOAT_SPILINK_NAK_CMD);

    assert_int_equal(avrsim_portd(r.sim), (uint8_t)~0x81);
    assert_int_equal(change_count(&r), 1);
    assert_int_equal(status_of(&r).rejected, 5);
    finish(&r);
}

static void frame_cut_short_by_ss_is_dropped(void **state)
{
    rig r;
    uint8_t buf[MOAT_SPILINK_FRAME_MAX], on = 0x08;
    moat_spilink_frame f;
    size_t n;

    (void)state;
    boot(&r);
    n = frame(buf, 0, MOAT_SPILINK_CMD_SET_RELAYS, &on, 1);
    send_raw(&r, buf, 3); /* SS rises after 3 bytes */
    f = poll_reply(&r);
    assert_int_equal(f.cmd, MOAT_SPILINK_CMD_NAK);
    assert_int_equal(f.data[0], MOAT_SPILINK_NAK_TRUNCATED);
    assert_int_equal(avrsim_relays(r.sim), 0);
    /* The next whole frame is read from its own start. */
    send_raw(&r, buf, n);
    f = poll_reply(&r);
    assert_int_equal(f.cmd, MOAT_SPILINK_CMD_SET_RELAYS | MOAT_SPILINK_REPLY_BIT);
    assert_int_equal(avrsim_relays(r.sim), 0x08);
    finish(&r);
}

static void silence_past_failsafe_switches_all_off(void **state)
{
    rig r;
    uint32_t t0;
    moat_spilink_status st;

    (void)state;
    boot(&r);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x05), MOAT_OK);
    t0 = change_ms(&r, 0); /* the SET frame: the last valid one */
    avrsim_run_ms(r.sim, MOAT_SPILINK_DEFAULT_FAILSAFE_MS - 100);
    assert_int_equal(avrsim_relays(r.sim), 0x05);
    avrsim_run_ms(r.sim, 200);
    assert_int_equal(avrsim_relays(r.sim), 0);
    assert_int_equal(avrsim_portd(r.sim), 0xFF);
    /* Off at the fail-safe time, to the 10 ms tick. */
    assert_in_range(last_change_ms(&r) - t0, MOAT_SPILINK_DEFAULT_FAILSAFE_MS - 11,
                    MOAT_SPILINK_DEFAULT_FAILSAFE_MS + 1);

    /* The host comes back: the heartbeat reports it, once, with words. */
    assert_int_equal(moat_spi_relay_poll(&r.relay), MOAT_ERR_STATE);
    assert_non_null(strstr(moat_spi_relay_error(&r.relay), "fail-safe"));
    assert_int_equal(moat_spi_relay_poll(&r.relay), MOAT_OK);
    st = *moat_spi_relay_status(&r.relay);
    assert_int_equal(st.forced, 0x05);
    assert_int_equal(st.flags, MOAT_SPILINK_FLAG_SILENCE);
    /* Asking for the same relays again does not switch them on: latched. */
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x05), MOAT_ERR_STATE);
    assert_int_equal(avrsim_relays(r.sim), 0);
    /* Off first, then on: a fresh decision. Another relay is not latched. */
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x40), MOAT_OK);
    assert_int_equal(avrsim_relays(r.sim), 0x40);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x05), MOAT_OK);
    assert_int_equal(avrsim_relays(r.sim), 0x05);
    st = status_of(&r);
    assert_int_equal(st.forced, 0);
    assert_int_equal(st.flags, 0);
    finish(&r);
}

static void heartbeats_keep_relays_on(void **state)
{
    rig r;

    (void)state;
    boot(&r);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x02), MOAT_OK);
    run_with_heartbeats(&r, 5 * MOAT_SPILINK_DEFAULT_FAILSAFE_MS);
    assert_int_equal(avrsim_relays(r.sim), 0x02);
    assert_int_equal(change_count(&r), 1);
    /* Silence only counts valid frames: garbage does not keep it alive. */
    {
        uint8_t junk[MOAT_SPILINK_XFER];
        uint32_t i;
        memset(junk, 0x77, sizeof junk);
        junk[0] = MOAT_SPILINK_START_REQUEST;
        for (i = 0; i < MOAT_SPILINK_DEFAULT_FAILSAFE_MS / 500 + 2; i++) {
            send_raw(&r, junk, sizeof junk);
            avrsim_run_ms(r.sim, 500);
        }
    }
    assert_int_equal(avrsim_relays(r.sim), 0);
    finish(&r);
}

static void maximum_on_time_is_enforced(void **state)
{
    rig r;
    uint8_t ee[MOAT_SPILINK_EE_LEN];
    moat_spilink_frame f;
    moat_spilink_status st;
    const avrsim_change *log;
    uint32_t t1, t2;
    size_t n;

    (void)state;
    ee_block(ee, 2500, 3);
    /* The image moat-avr-eeprom made holds exactly this block. */
    {
        uint8_t img[64];
        assert_int_equal(read_ihex(eeprom_hex, img, sizeof img), sizeof ee);
        assert_memory_equal(img, ee, sizeof ee);
    }
    boot_with(&r, ee, sizeof ee);
    assert_int_equal(moat_spi_relay_call(&r.relay, MOAT_SPILINK_CMD_VERSION, NULL, 0, &f),
                     MOAT_OK);
    assert_int_equal(f.data[4] | f.data[5] << 8, 2500);
    assert_int_equal(f.data[6] | f.data[7] << 8, 3);

    assert_int_equal(moat_spi_relay_set(&r.relay, 0x01), MOAT_OK);
    t1 = last_change_ms(&r);
    run_with_heartbeats(&r, 1500);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x03), MOAT_OK); /* relay 2 joins */
    t2 = last_change_ms(&r);
    /* The host keeps re-asserting relay 1: the on-time still counts from
     * when it went on. */
    run_with_heartbeats(&r, 1000);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x03), MOAT_OK);
    run_with_heartbeats(&r, 1000);
    assert_int_equal(avrsim_relays(r.sim), 0x02);
    n = avrsim_changes(r.sim, &log);
    assert_int_equal(log[n - 1].relays, 0x02);
    assert_in_range((uint32_t)(log[n - 1].us / 1000u) - t1, 3000 - 11, 3000 + 1);
    run_with_heartbeats(&r, 2000);
    assert_int_equal(avrsim_relays(r.sim), 0);
    assert_in_range(last_change_ms(&r) - t2, 3000 - 11, 3000 + 1);
    st = *moat_spi_relay_status(&r.relay);
    assert_int_equal(st.forced, 0x03);
    assert_int_equal(st.flags, MOAT_SPILINK_FLAG_MAX_ON);
    /* Latched until the host says off. */
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x03), MOAT_ERR_STATE);
    assert_non_null(strstr(moat_spi_relay_error(&r.relay), "maximum on-time"));
    assert_int_equal(avrsim_relays(r.sim), 0);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x00), MOAT_OK);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x02), MOAT_OK);
    assert_int_equal(avrsim_relays(r.sim), 0x02);
    finish(&r);
}

static void default_maximum_on_time_is_two_hours(void **state)
{
    rig r;
    uint32_t t1;

    (void)state;
    boot(&r);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x0C), MOAT_OK);
    t1 = last_change_ms(&r);
    run_with_heartbeats(&r, MOAT_SPILINK_DEFAULT_MAX_ON_S * 1000u - 1000u);
    assert_int_equal(avrsim_relays(r.sim), 0x0C);
    run_with_heartbeats(&r, 2000);
    assert_int_equal(avrsim_relays(r.sim), 0);
    assert_in_range(last_change_ms(&r) - t1, MOAT_SPILINK_DEFAULT_MAX_ON_S * 1000u - 11,
                    MOAT_SPILINK_DEFAULT_MAX_ON_S * 1000u + 1);
    assert_int_equal(avrsim_boots(r.sim), 1); /* and the watchdog never fired */
    finish(&r);
}

static void bad_eeprom_means_defaults(void **state)
{
    static const uint16_t cases[][2] = {{50, 3}, {60001, 3}, {1000, 0}};
    uint8_t ee[MOAT_SPILINK_EE_LEN];
    moat_spilink_frame f;
    rig r;
    size_t i;

    (void)state;
    for (i = 0; i < 4; i++) {
        if (i < 3) {
            ee_block(ee, cases[i][0], cases[i][1]);
        } else {
            ee_block(ee, 1000, 3);
            ee[6] ^= 1; /* bad CRC */
        }
        boot_with(&r, ee, sizeof ee);
        assert_int_equal(moat_spi_relay_call(&r.relay, MOAT_SPILINK_CMD_VERSION, NULL, 0, &f),
                         MOAT_OK);
        assert_int_equal(f.data[4] | f.data[5] << 8, MOAT_SPILINK_DEFAULT_FAILSAFE_MS);
        assert_int_equal(f.data[6] | f.data[7] << 8, MOAT_SPILINK_DEFAULT_MAX_ON_S);
        finish(&r);
    }
}

static void link_recovers_after_host_restart(void **state)
{
    rig r;
    moat_spi_relay fresh;
    int i;

    (void)state;
    boot(&r);
    for (i = 0; i < 5; i++)
        assert_int_equal(moat_spi_relay_set(&r.relay, (uint8_t)(1u << i)), MOAT_OK);
    /* The host restarts while relay 5 is on: its new link starts at seq 0. */
    assert_int_equal(moat_spi_relay_init(&fresh, &r.bus, NULL), MOAT_OK);
    assert_int_equal(moat_spi_relay_set(&fresh, 0x30), MOAT_OK);
    assert_int_equal(avrsim_relays(r.sim), 0x30);
    assert_int_equal(fresh.link.resyncs, 1);
    assert_int_equal(moat_spi_relay_status(&fresh)->rejected, 1);

    /* A host that dies while a zone is on, and comes back after the
     * fail-safe: the relay was off meanwhile; a new start switches it on. */
    avrsim_run_ms(r.sim, MOAT_SPILINK_DEFAULT_FAILSAFE_MS + 500);
    assert_int_equal(avrsim_relays(r.sim), 0);
    assert_int_equal(moat_spi_relay_init(&fresh, &r.bus, NULL), MOAT_OK);
    assert_int_equal(moat_spi_relay_set(&fresh, 0x00), MOAT_OK); /* moat_zones_init() */
    assert_int_equal(moat_spi_relay_set(&fresh, 0x20), MOAT_OK);
    assert_int_equal(avrsim_relays(r.sim), 0x20);
    finish(&r);
}

static void reset_switches_off_and_is_reported(void **state)
{
    rig r;

    (void)state;
    boot(&r);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x0F), MOAT_OK);
    /* The host pulls RESET (PC6) low, or the watchdog fires: the same. */
    avrsim_reset(r.sim);
    avrsim_run_ms(r.sim, 20);
    assert_int_equal(avrsim_boots(r.sim), 2);
    assert_int_equal(avrsim_relays(r.sim), 0);
    assert_int_equal(avrsim_portd(r.sim), 0xFF);
    /* The next heartbeat finds out (the seq starts over: one resync). */
    avrsim_run_ms(r.sim, 1000);
    assert_int_equal(moat_spi_relay_poll(&r.relay), MOAT_ERR_STATE);
    assert_non_null(strstr(moat_spi_relay_error(&r.relay), "restarted"));
    assert_int_equal(r.relay.link.resyncs, 1);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x0F), MOAT_OK);
    assert_int_equal(avrsim_relays(r.sim), 0x0F);
    finish(&r);
}

static void watchdog_resets_a_hung_firmware(void **state)
{
    rig r;
    moat_spilink_status st;
    unsigned boots;

    (void)state;
    boot(&r);
    assert_int_equal(moat_spi_relay_set(&r.relay, 0x81), MOAT_OK);
    /* Healthy: no watchdog reset in a minute of heartbeats. */
    run_with_heartbeats(&r, 60000);
    assert_int_equal(avrsim_boots(r.sim), 1);
    assert_int_equal(avrsim_relays(r.sim), 0x81);
    /* The main loop stops feeding the watchdog (a hang): within its 250 ms
     * period (simavr: at most 2 s) the AVR resets and the relays go off. */
    avrsim_starve_watchdog(r.sim, true);
    avrsim_run_ms(r.sim, 2000);
    assert_true(avrsim_boots(r.sim) > 1);
    assert_int_equal(avrsim_relays(r.sim), 0);
    assert_int_equal(avrsim_portd(r.sim), 0xFF);
    /* Healthy again: it stays up and says why it restarted. */
    avrsim_starve_watchdog(r.sim, false);
    avrsim_run_ms(r.sim, 2000);
    boots = avrsim_boots(r.sim);
    assert_int_equal(moat_spi_relay_poll(&r.relay), MOAT_ERR_STATE);
    assert_non_null(strstr(moat_spi_relay_error(&r.relay), "restarted"));
    st = *moat_spi_relay_status(&r.relay);
    assert_true(st.reset_cause & MOAT_SPILINK_RESET_WATCHDOG);
    assert_int_equal(st.relays, 0);
    avrsim_run_ms(r.sim, 5000);
    assert_int_equal(avrsim_boots(r.sim), boots);
    finish(&r);
}

/* A bus with nothing on it: MISO reads 0x00. */
static moat_err dead_transfer(void *ctx, const uint8_t *tx, uint8_t *rx, size_t n)
{
    (void)ctx;
    (void)tx;
    memset(rx, 0, n);
    return MOAT_OK;
}

static void no_co_processor_is_a_timeout_with_words(void **state)
{
    rig r;
    moat_spi_relay lost;
    moat_spi_bus dead;

    (void)state;
    boot(&r);
    dead = r.bus;
    dead.transfer = dead_transfer;
    assert_int_equal(moat_spi_relay_init(&lost, &dead, NULL), MOAT_OK);
    assert_int_equal(moat_spi_relay_set(&lost, 0x01), MOAT_ERR_TIMEOUT);
    assert_string_equal(moat_spi_relay_error(&lost),
                        "relay co-processor did not answer (no reply frame on MISO: check "
                        "wiring, power and reset)");
    assert_int_equal(lost.link.requests, 1);
    assert_int_equal(lost.link.failures, 1);
    finish(&r);
}

static void faster_clocks_work(void **state)
{
    static const uint32_t hz[] = {31250u, 125000u, 250000u, 500000u};
    rig r;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof hz / sizeof hz[0]; i++) {
        boot(&r);
        avrsim_set_sck(r.sim, hz[i]);
        assert_int_equal(moat_spi_relay_set(&r.relay, 0x99), MOAT_OK);
        assert_int_equal(avrsim_relays(r.sim), 0x99);
        assert_int_equal(status_of(&r).rejected, 0);
        finish(&r);
    }
}

static void zones_controller_over_spi(void **state)
{
    rig r;
    moat_zones z;
    moat_zones_config cfg;
    moat_relay_driver d;
    uint32_t t;

    (void)state;
    boot(&r);
    memset(&cfg, 0, sizeof cfg);
    d.set = moat_spi_relay_set;
    d.ctx = &r.relay;
    assert_int_equal(moat_zones_init(&z, &cfg, &d), MOAT_OK);
    assert_int_equal(avrsim_relays(r.sim), 0);
    assert_int_equal(moat_zones_apply_payload(&z, (const uint8_t *)"3 20", 4, now_ms(&r)),
                     MOAT_OK);
    assert_int_equal(avrsim_relays(r.sim), 0x04);
    assert_int_equal(moat_zones_apply_payload(&z, (const uint8_t *)"5 20", 4, now_ms(&r)),
                     MOAT_OK);
    assert_int_equal(avrsim_relays(r.sim), 0x10);
    /* The agent's loop: tick, heartbeat, sleep until the next deadline. */
    while (moat_zones_bitmap(&z) != 0) {
        assert_int_equal(moat_zones_tick(&z, now_ms(&r)), MOAT_OK);
        assert_int_equal(moat_spi_relay_poll(&r.relay), MOAT_OK);
        t = moat_zones_next_timeout(&z, now_ms(&r));
        if (t > moat_spi_relay_next_timeout(&r.relay))
            t = moat_spi_relay_next_timeout(&r.relay);
        avrsim_run_ms(r.sim, t ? t : 1);
    }
    assert_int_equal(avrsim_relays(r.sim), 0);
    /* Zone 5 ran its 20 s: on at change 1, off at change 2, no other. */
    assert_int_equal(change_count(&r), 3);
    assert_in_range(change_ms(&r, 2) - change_ms(&r, 1), 20000 - 5, 20000 + 10);
    finish(&r);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(power_up_all_off),
        cmocka_unit_test(bitmap_arrives_on_portd_active_low),
        cmocka_unit_test(one_write_changes_several_relays_at_once),
        cmocka_unit_test(get_relays_inputs_version),
        cmocka_unit_test(reply_repeats_on_every_poll),
        cmocka_unit_test(crc_errors_change_nothing),
        cmocka_unit_test(garbage_changes_nothing),
        cmocka_unit_test(wrong_length_sequence_and_command_are_refused),
        cmocka_unit_test(frame_cut_short_by_ss_is_dropped),
        cmocka_unit_test(silence_past_failsafe_switches_all_off),
        cmocka_unit_test(heartbeats_keep_relays_on),
        cmocka_unit_test(maximum_on_time_is_enforced),
        cmocka_unit_test(default_maximum_on_time_is_two_hours),
        cmocka_unit_test(bad_eeprom_means_defaults),
        cmocka_unit_test(link_recovers_after_host_restart),
        cmocka_unit_test(reset_switches_off_and_is_reported),
        cmocka_unit_test(watchdog_resets_a_hung_firmware),
        cmocka_unit_test(no_co_processor_is_a_timeout_with_words),
        cmocka_unit_test(faster_clocks_work),
        cmocka_unit_test(zones_controller_over_spi),
    };

    if (argc != 3) {
        fprintf(stderr, "usage: %s moat-avr.elf eeprom.hex\n", argv[0]);
        return 2;
    }
    elf = argv[1];
    eeprom_hex = argv[2];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
