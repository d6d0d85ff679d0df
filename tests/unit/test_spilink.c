/*
 * test_spilink.c - the SPI link to the relay co-processor (moat/spilink.h):
 * CRC-8, frame codec byte for byte, and the request/reply engine against a
 * scripted co-processor on a fake clock: the reply one transfer later,
 * re-polls, NAKs and resynchronisation, retries and their limits, the gap,
 * the heartbeat, the 32-bit wrap, and the words of every failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/spilink.h"

/* ------------------------------------------------------------ helpers -- */

static const uint8_t filler[MOAT_SPILINK_XFER]; /* all 0x00 */

static size_t reply_frame(uint8_t *buf, uint8_t seq, uint8_t cmd, const uint8_t *d,
                          uint8_t len)
{
    size_t n;
    assert_int_equal(moat_spilink_encode(MOAT_SPILINK_START_REPLY, seq, cmd, d, len, buf,
                                         MOAT_SPILINK_XFER, &n),
                     MOAT_OK);
    return n;
}

/* A status reply for cmd. */
static size_t status_reply(uint8_t *buf, uint8_t seq, uint8_t cmd, uint8_t relays)
{
    uint8_t st[MOAT_SPILINK_STATUS_LEN] = {relays, 0, 0, MOAT_SPILINK_RESET_POWER, 0, 0};
    memset(buf, 0, MOAT_SPILINK_XFER);
    return reply_frame(buf, seq, cmd | MOAT_SPILINK_REPLY_BIT, st, sizeof st);
}

static size_t nak_reply(uint8_t *buf, uint8_t seq, uint8_t reason, uint8_t expect)
{
    uint8_t d[MOAT_SPILINK_NAK_LEN] = {reason, expect, 1, 0};
    memset(buf, 0, MOAT_SPILINK_XFER);
    return reply_frame(buf, seq, MOAT_SPILINK_CMD_NAK, d, sizeof d);
}

/* One transfer: output must give one now; rx goes back. */
static moat_err xfer(moat_spilink *l, uint8_t *tx, const uint8_t *rx, uint32_t now)
{
    size_t n;
    assert_int_equal(moat_spilink_output(l, tx, MOAT_SPILINK_XFER, &n, now), MOAT_OK);
    assert_int_equal(n, MOAT_SPILINK_XFER);
    return moat_spilink_input(l, rx, MOAT_SPILINK_XFER, now);
}

/* ------------------------------------------------------------- codec -- */

static void crc8_check_value(void **state)
{
    (void)state;
    assert_int_equal(moat_spilink_crc8((const uint8_t *)"123456789", 9), 0xF4);
    assert_int_equal(moat_spilink_crc8(NULL, 0), 0x00);
    assert_int_equal(moat_spilink_crc8_byte(0, 0x01), 0x07);
}

static void encode_exact_bytes(void **state)
{
    static const uint8_t set7[] = {0xA5, 0x07, 0x01, 0x01, 0x05, 0x19};
    static const uint8_t hb0[] = {0xA5, 0x00, 0x05, 0x00, 0xF0};
    static const uint8_t st7[] = {0x5A, 0x07, 0x81, 0x06, 0x05, 0x00,
                                  0x00, 0x01, 0x00, 0x00, 0xA3};
    uint8_t buf[MOAT_SPILINK_FRAME_MAX], b = 0x05, st[6] = {5, 0, 0, 1, 0, 0};
    size_t n;

    (void)state;
    assert_int_equal(moat_spilink_encode(0xA5, 7, 1, &b, 1, buf, sizeof buf, &n), MOAT_OK);
    assert_int_equal(n, sizeof set7);
    assert_memory_equal(buf, set7, n);
    assert_int_equal(moat_spilink_encode(0xA5, 0, 5, NULL, 0, buf, sizeof buf, &n), MOAT_OK);
    assert_memory_equal(buf, hb0, sizeof hb0);
    assert_int_equal(moat_spilink_encode(0x5A, 7, 0x81, st, 6, buf, sizeof buf, &n), MOAT_OK);
    assert_int_equal(n, sizeof st7);
    assert_memory_equal(buf, st7, n);
    /* Limits. */
    assert_int_equal(moat_spilink_encode(0xA5, 0, 1, buf, 9, buf, sizeof buf, &n), MOAT_ERR_ARG);
    assert_int_equal(n, 0);
    assert_int_equal(moat_spilink_encode(0xA5, 0, 1, NULL, 1, buf, sizeof buf, &n), MOAT_ERR_ARG);
    assert_int_equal(moat_spilink_encode(0xA5, 0, 1, &b, 1, buf, 5, &n), MOAT_ERR_NO_SPACE);
    assert_int_equal(moat_spilink_encode(0xA5, 0, 1, &b, 1, buf, 6, &n), MOAT_OK);
}

static void parse_finds_frames(void **state)
{
    uint8_t buf[40];
    moat_spilink_frame f;
    size_t used, n;
    uint8_t d[8] = {1, 2, 3, 4, 5, 6, 7, 8};

    (void)state;
    memset(buf, 0, sizeof buf);
    assert_int_equal(moat_spilink_encode(0x5A, 9, 0x84, d, 8, buf + 3, 20, &n), MOAT_OK);
    assert_int_equal(moat_spilink_parse(buf, sizeof buf, 0x5A, &f, &used), MOAT_OK);
    assert_int_equal(used, 3 + n);
    assert_int_equal(f.start, 0x5A);
    assert_int_equal(f.seq, 9);
    assert_int_equal(f.cmd, 0x84);
    assert_int_equal(f.len, 8);
    assert_memory_equal(f.data, d, 8);
    /* The request start byte is not a reply. */
    assert_int_equal(moat_spilink_parse(buf, sizeof buf, 0xA5, &f, &used), MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(used, sizeof buf);
    /* Nothing at all. */
    assert_int_equal(moat_spilink_parse(buf, 0, 0x5A, &f, &used), MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(used, 0);
    /* Incomplete: used stops at the start byte. */
    assert_int_equal(moat_spilink_parse(buf, 3 + n - 1, 0x5A, &f, &used), MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(used, 3);
    assert_int_equal(moat_spilink_parse(buf, 5, 0x5A, &f, &used), MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(used, 3);
}

static void parse_resyncs_after_false_starts(void **state)
{
    uint8_t buf[40];
    moat_spilink_frame f;
    size_t used, off = 0, n;
    uint8_t b = 0x33;

    (void)state;
    memset(buf, 0, sizeof buf);
    buf[0] = 0x5A; /* a false start whose "frame" swallows the real one */
    buf[1] = 0x5A;
    buf[2] = 0x01;
    buf[3] = 0x01;
    assert_int_equal(moat_spilink_encode(0x5A, 1, 0x81, &b, 1, buf + 4, 20, &n), MOAT_OK);
    assert_int_equal(moat_spilink_parse(buf, sizeof buf, 0x5A, &f, &used), MOAT_ERR_MALFORMED);
    assert_int_equal(used, 1); /* only the false start byte is dropped */
    off += used;
    assert_int_equal(moat_spilink_parse(buf + off, sizeof buf - off, 0x5A, &f, &used),
                     MOAT_ERR_MALFORMED);
    off += used;
    assert_int_equal(off, 2);
    assert_int_equal(moat_spilink_parse(buf + off, sizeof buf - off, 0x5A, &f, &used), MOAT_OK);
    assert_int_equal(off + used, 4 + n);
    assert_int_equal(f.data[0], 0x33);
    /* A length over the maximum. */
    memset(buf, 0, sizeof buf);
    buf[5] = 0x5A;
    buf[8] = MOAT_SPILINK_DATA_MAX + 1;
    assert_int_equal(moat_spilink_parse(buf, sizeof buf, 0x5A, &f, &used), MOAT_ERR_MALFORMED);
    assert_int_equal(used, 6);
}

static void status_decoding(void **state)
{
    uint8_t buf[MOAT_SPILINK_XFER];
    moat_spilink_frame f;
    moat_spilink_status st;
    size_t used;
    uint8_t d[6] = {0x81, 0x01, MOAT_SPILINK_FLAG_MAX_ON, 0x08, 0x34, 0x12};

    (void)state;
    reply_frame(buf, 3, 0x85, d, 6);
    assert_int_equal(moat_spilink_parse(buf, sizeof buf, 0x5A, &f, &used), MOAT_OK);
    assert_true(moat_spilink_status_of(&f, &st));
    assert_int_equal(st.relays, 0x81);
    assert_int_equal(st.forced, 0x01);
    assert_int_equal(st.flags, MOAT_SPILINK_FLAG_MAX_ON);
    assert_int_equal(st.reset_cause, MOAT_SPILINK_RESET_WATCHDOG);
    assert_int_equal(st.rejected, 0x1234);
    f.cmd = 0x84; /* VERSION has no status */
    assert_false(moat_spilink_status_of(&f, &st));
    f.cmd = 0x85;
    f.len = 5;
    assert_false(moat_spilink_status_of(&f, &st));
}

/* ------------------------------------------------------------ engine -- */

static void request_then_reply_on_the_next_transfer(void **state)
{
    static const uint8_t set7[] = {0xA5, 0x07, 0x01, 0x01, 0x05, 0x19};
    moat_spilink_config cfg = {0};
    moat_spilink l;
    uint8_t tx[MOAT_SPILINK_XFER], rx[MOAT_SPILINK_XFER], b = 0x05;
    const moat_spilink_frame *f;
    size_t n;

    (void)state;
    cfg.first_seq = 7;
    assert_int_equal(moat_spilink_init(&l, &cfg, 1000), MOAT_OK);
    assert_int_equal(moat_spilink_get_state(&l), MOAT_SPILINK_IDLE);
    assert_null(moat_spilink_reply(&l));
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_SET_RELAYS, &b, 1, 1000), MOAT_OK);
    assert_int_equal(moat_spilink_next_timeout(&l, 1000), 0);
    /* Transfer 1: the request, then filler; MISO holds an old reply that
     * even looks like ours: it is ignored. */
    assert_int_equal(moat_spilink_output(&l, tx, sizeof tx, &n, 1000), MOAT_OK);
    assert_int_equal(n, MOAT_SPILINK_XFER);
    assert_memory_equal(tx, set7, sizeof set7);
    assert_memory_equal(tx + sizeof set7, filler, sizeof tx - sizeof set7);
    status_reply(rx, 7, MOAT_SPILINK_CMD_SET_RELAYS, 0x00);
    assert_int_equal(moat_spilink_input(&l, rx, sizeof rx, 1000), MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(moat_spilink_get_state(&l), MOAT_SPILINK_POLL);
    /* The gap: nothing before 1001. */
    assert_int_equal(moat_spilink_next_timeout(&l, 1000), 1);
    assert_int_equal(moat_spilink_output(&l, tx, sizeof tx, &n, 1000), MOAT_OK);
    assert_int_equal(n, 0);
    /* Transfer 2: a poll (all filler) brings the reply. */
    assert_int_equal(moat_spilink_output(&l, tx, sizeof tx, &n, 1001), MOAT_OK);
    assert_int_equal(n, MOAT_SPILINK_XFER);
    assert_memory_equal(tx, filler, sizeof tx);
    status_reply(rx, 7, MOAT_SPILINK_CMD_SET_RELAYS, 0x05);
    assert_int_equal(moat_spilink_input(&l, rx, sizeof rx, 1001), MOAT_OK);
    f = moat_spilink_reply(&l);
    assert_non_null(f);
    assert_int_equal(f->seq, 7);
    assert_int_equal(f->data[0], 0x05);
    assert_int_equal(l.seq, 8);
    assert_string_equal(moat_spilink_why(&l), "");
    assert_int_equal(moat_spilink_get_state(&l), MOAT_SPILINK_IDLE);
    assert_int_equal(l.requests, 1);
    assert_int_equal(l.replies, 1);
}

static void bad_reply_is_polled_again(void **state)
{
    moat_spilink l;
    uint8_t tx[MOAT_SPILINK_XFER], rx[MOAT_SPILINK_XFER];
    size_t n;

    (void)state;
    assert_int_equal(moat_spilink_init(&l, NULL, 0), MOAT_OK);
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_GET_RELAYS, NULL, 0, 0), MOAT_OK);
    assert_int_equal(xfer(&l, tx, filler, 0), MOAT_ERR_WOULD_BLOCK);
    n = status_reply(rx, 0, MOAT_SPILINK_CMD_GET_RELAYS, 0x42);
    rx[n - 1] ^= 1; /* noise on MISO */
    assert_int_equal(xfer(&l, tx, rx, 1), MOAT_ERR_WOULD_BLOCK);
    assert_memory_equal(tx, filler, sizeof tx); /* a poll, not a resend */
    assert_int_equal(l.crc_errors, 1);
    rx[n - 1] ^= 1;
    assert_int_equal(xfer(&l, tx, rx, 2), MOAT_OK);
    assert_int_equal(moat_spilink_reply(&l)->data[0], 0x42);
    assert_int_equal(l.attempt, 1);
}

static void nak_for_sequence_resyncs(void **state)
{
    moat_spilink l;
    uint8_t tx[MOAT_SPILINK_XFER], rx[MOAT_SPILINK_XFER], b = 0x80;
    moat_spilink_frame f;
    size_t used;

    (void)state;
    assert_int_equal(moat_spilink_init(&l, NULL, 0), MOAT_OK); /* seq 0: a restarted host */
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_SET_RELAYS, &b, 1, 0), MOAT_OK);
    assert_int_equal(xfer(&l, tx, filler, 0), MOAT_ERR_WOULD_BLOCK);
    nak_reply(rx, 0, MOAT_SPILINK_NAK_SEQ, 200);
    assert_int_equal(xfer(&l, tx, rx, 1), MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(l.resyncs, 1);
    assert_int_equal(l.naks, 1);
    /* At once, the same request with the expected seq. */
    assert_int_equal(xfer(&l, tx, filler, 2), MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(moat_spilink_parse(tx, sizeof tx, 0xA5, &f, &used), MOAT_OK);
    assert_int_equal(f.seq, 200);
    assert_int_equal(f.cmd, MOAT_SPILINK_CMD_SET_RELAYS);
    assert_int_equal(f.data[0], 0x80);
    /* A NAK that is not for our seq is ignored; the real reply counts. */
    nak_reply(rx, 13, MOAT_SPILINK_NAK_CRC, 200);
    assert_int_equal(xfer(&l, tx, rx, 3), MOAT_ERR_WOULD_BLOCK);
    status_reply(rx, 200, MOAT_SPILINK_CMD_SET_RELAYS, 0x80);
    assert_int_equal(xfer(&l, tx, rx, 4), MOAT_OK);
    assert_int_equal(l.seq, 201);
}

static void silence_gives_up_after_every_try(void **state)
{
    moat_spilink_config cfg = {0};
    moat_spilink l;
    uint8_t tx[MOAT_SPILINK_XFER];
    moat_spilink_frame f;
    size_t used;
    uint32_t now = 0;
    int sends = 0, transfers = 0;
    moat_err e;

    (void)state;
    cfg.tries = 3;
    cfg.polls = 2;
    cfg.gap_ms = 2;
    assert_int_equal(moat_spilink_init(&l, &cfg, now), MOAT_OK);
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_HEARTBEAT, NULL, 0, now), MOAT_OK);
    do {
        now += moat_spilink_next_timeout(&l, now);
        e = xfer(&l, tx, filler, now);
        transfers++;
        if (moat_spilink_parse(tx, sizeof tx, 0xA5, &f, &used) == MOAT_OK) {
            sends++;
            assert_int_equal(f.seq, 0); /* the same request each time */
        }
    } while (e == MOAT_ERR_WOULD_BLOCK);
    assert_int_equal(e, MOAT_ERR_TIMEOUT);
    assert_int_equal(sends, 3);
    assert_int_equal(transfers, 3 * (1 + 2));
    assert_int_equal(now, (3 * 3 - 1) * 2);
    assert_string_equal(moat_spilink_why(&l),
                        "relay co-processor did not answer (no reply frame on MISO: check "
                        "wiring, power and reset)");
    assert_int_equal(l.failures, 1);
    assert_null(moat_spilink_reply(&l));
    assert_int_equal(moat_spilink_get_state(&l), MOAT_SPILINK_IDLE);
    /* The next request works as usual. */
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_HEARTBEAT, NULL, 0, now), MOAT_OK);
}

static void failures_have_words(void **state)
{
    moat_spilink_config cfg = {0};
    moat_spilink l;
    uint8_t tx[MOAT_SPILINK_XFER], rx[MOAT_SPILINK_XFER];
    size_t n;

    (void)state;
    cfg.tries = 1;
    cfg.polls = 1;
    /* Only an older reply. */
    assert_int_equal(moat_spilink_init(&l, &cfg, 0), MOAT_OK);
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_GET_RELAYS, NULL, 0, 0), MOAT_OK);
    assert_int_equal(xfer(&l, tx, filler, 0), MOAT_ERR_WOULD_BLOCK);
    status_reply(rx, 255, MOAT_SPILINK_CMD_GET_RELAYS, 0);
    assert_int_equal(xfer(&l, tx, rx, 1), MOAT_ERR_TIMEOUT);
    assert_string_equal(moat_spilink_why(&l),
                        "relay co-processor did not answer this request (only older "
                        "replies came)");
    /* Only bad CRCs. */
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_GET_RELAYS, NULL, 0, 2), MOAT_OK);
    assert_int_equal(xfer(&l, tx, filler, 3), MOAT_ERR_WOULD_BLOCK);
    n = status_reply(rx, 0, MOAT_SPILINK_CMD_GET_RELAYS, 0);
    rx[n - 2] ^= 0x10;
    assert_int_equal(xfer(&l, tx, rx, 4), MOAT_ERR_TIMEOUT);
    assert_non_null(strstr(moat_spilink_why(&l), "CRC"));
    /* Refused: an unknown command (old firmware). */
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_VERSION, NULL, 0, 5), MOAT_OK);
    assert_int_equal(xfer(&l, tx, filler, 6), MOAT_ERR_WOULD_BLOCK);
    nak_reply(rx, 0, MOAT_SPILINK_NAK_CMD, 0);
    assert_int_equal(xfer(&l, tx, rx, 7), MOAT_ERR_PROTOCOL);
    assert_string_equal(moat_spilink_why(&l),
                        "relay co-processor refused the request: unknown command (old "
                        "firmware?)");
    assert_string_equal(moat_spilink_nak_text(MOAT_SPILINK_NAK_TRUNCATED), "frame cut short");
    assert_string_equal(moat_spilink_nak_text(99), "unknown reason");
}

static void heartbeat_when_idle(void **state)
{
    moat_spilink_config cfg = {0};
    moat_spilink l;
    uint8_t tx[MOAT_SPILINK_XFER], rx[MOAT_SPILINK_XFER];
    moat_spilink_frame f;
    size_t n, used;
    uint32_t t0 = UINT32_MAX - 500; /* across the wrap */

    (void)state;
    cfg.heartbeat_ms = 1000;
    assert_int_equal(moat_spilink_init(&l, &cfg, t0), MOAT_OK);
    assert_int_equal(moat_spilink_next_timeout(&l, t0), 1000);
    assert_int_equal(moat_spilink_next_timeout(&l, t0 + 999), 1);
    assert_int_equal(moat_spilink_output(&l, tx, sizeof tx, &n, t0 + 999), MOAT_OK);
    assert_int_equal(n, 0);
    assert_int_equal(moat_spilink_output(&l, tx, sizeof tx, &n, t0 + 1000), MOAT_OK);
    assert_int_equal(n, MOAT_SPILINK_XFER);
    assert_int_equal(moat_spilink_parse(tx, n, 0xA5, &f, &used), MOAT_OK);
    assert_int_equal(f.cmd, MOAT_SPILINK_CMD_HEARTBEAT);
    assert_int_equal(moat_spilink_input(&l, filler, n, t0 + 1000), MOAT_ERR_WOULD_BLOCK);
    status_reply(rx, 0, MOAT_SPILINK_CMD_HEARTBEAT, 0);
    assert_int_equal(xfer(&l, tx, rx, t0 + 1001), MOAT_OK);
    assert_int_equal(moat_spilink_next_timeout(&l, t0 + 1001), 1000);
    /* A reply to any request restarts the heartbeat timer. */
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_GET_INPUTS, NULL, 0, t0 + 1500),
                     MOAT_OK);
    assert_int_equal(xfer(&l, tx, filler, t0 + 1500), MOAT_ERR_WOULD_BLOCK);
    reply_frame(rx, 1, 0x83, (const uint8_t *)"\x15", 1);
    assert_int_equal(xfer(&l, tx, rx, t0 + 1501), MOAT_OK);
    assert_int_equal(moat_spilink_next_timeout(&l, t0 + 1501), 1000);
    /* UINT32_MAX: never. */
    cfg.heartbeat_ms = UINT32_MAX;
    assert_int_equal(moat_spilink_init(&l, &cfg, 0), MOAT_OK);
    assert_int_equal(moat_spilink_next_timeout(&l, 0), UINT32_MAX);
    assert_int_equal(moat_spilink_output(&l, tx, sizeof tx, &n, 0x7FFFFFFF), MOAT_OK);
    assert_int_equal(n, 0);
}

static void misuse_is_refused(void **state)
{
    moat_spilink_config cfg = {0};
    moat_spilink l;
    uint8_t tx[MOAT_SPILINK_XFER], b = 1;
    size_t n;

    (void)state;
    cfg.gap_ms = 10;
    cfg.heartbeat_ms = 10;
    assert_int_equal(moat_spilink_init(&l, &cfg, 0), MOAT_ERR_ARG);
    assert_int_equal(moat_spilink_init(&l, NULL, 0), MOAT_OK);
    assert_int_equal(moat_spilink_request(&l, 0x42, NULL, 0, 0), MOAT_ERR_ARG);
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_SET_RELAYS, NULL, 1, 0),
                     MOAT_ERR_ARG);
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_SET_RELAYS, &b, 0, 0),
                     MOAT_ERR_ARG);
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_GET_RELAYS, &b, 1, 0),
                     MOAT_ERR_ARG);
    assert_int_equal(moat_spilink_input(&l, filler, 16, 0), MOAT_ERR_STATE);
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_SET_RELAYS, &b, 1, 0), MOAT_OK);
    assert_int_equal(moat_spilink_request(&l, MOAT_SPILINK_CMD_SET_RELAYS, &b, 1, 0),
                     MOAT_ERR_STATE);
    assert_int_equal(moat_spilink_output(&l, tx, sizeof tx - 1, &n, 0), MOAT_ERR_NO_SPACE);
    assert_int_equal(n, 0);
    assert_int_equal(moat_spilink_output(&l, tx, sizeof tx, &n, 0), MOAT_OK);
    assert_int_equal(moat_spilink_output(&l, tx, sizeof tx, &n, 0), MOAT_ERR_STATE);
    assert_int_equal(moat_spilink_next_timeout(&l, 0), 0);
    /* A short transfer (the bus failed half way) is just a poll with
     * nothing in it; cancel drops the request and moves the seq on. */
    assert_int_equal(moat_spilink_input(&l, filler, 0, 0), MOAT_ERR_WOULD_BLOCK);
    moat_spilink_cancel(&l, 5);
    assert_int_equal(moat_spilink_get_state(&l), MOAT_SPILINK_IDLE);
    assert_int_equal(l.seq, 1);
    assert_int_equal(moat_spilink_next_timeout(&l, 5), 995); /* the heartbeat */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc8_check_value),
        cmocka_unit_test(encode_exact_bytes),
        cmocka_unit_test(parse_finds_frames),
        cmocka_unit_test(parse_resyncs_after_false_starts),
        cmocka_unit_test(status_decoding),
        cmocka_unit_test(request_then_reply_on_the_next_transfer),
        cmocka_unit_test(bad_reply_is_polled_again),
        cmocka_unit_test(nak_for_sequence_resyncs),
        cmocka_unit_test(silence_gives_up_after_every_try),
        cmocka_unit_test(failures_have_words),
        cmocka_unit_test(heartbeat_when_idle),
        cmocka_unit_test(misuse_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
