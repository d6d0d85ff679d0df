/*
 * fuzz_spilink.c - libFuzzer harness for the host side of the SPI link to
 * the relay co-processor (moat/spilink.h): the frame parser on hostile MISO
 * bytes, and the request/reply engine fed by them.
 *
 * Part 1: the whole input is parsed as a byte stream, for replies and for
 * requests, the way moat_spilink_input() walks a transfer. Oracles: the walk
 * always advances and ends; a frame found is exactly the bytes it came from
 * (re-encoding gives them back), its length is within the maximum, and its
 * CRC is good; MALFORMED drops exactly up to the start byte after a bad one.
 *
 * Part 2: the input is a script for the engine. Byte 0 configures it (tries
 * 1..4, polls 1..4, heartbeat on or off); then each operation is a byte whose
 * low 2 bits select it (missing bytes read as 0):
 *   0  request: command byte (any value, valid or not), data byte
 *   1  a transfer, if one is due: the 16 MISO bytes come from the input;
 *      high bit set: instead a well-formed reply (or NAK, bit 6) for the
 *      request in flight, its seq, cmd and first data byte taken from the
 *      next bytes XOR the true values, so the fuzzer reaches the accept path
 *   2  time passes: now += byte * 3
 *   3  cancel
 * Oracles: results are the documented ones; output gives 0 or 16 bytes, and
 * a request transfer carries a valid frame of the request in flight; a
 * reply is accepted only with the request's seq and cmd | 0x80; a request
 * ends after at most tries * (1 + polls) transfers; the engine is idle after
 * any ending, and next_timeout is 0 while a transfer is owed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moat/spilink.h"

#include "fuzz_check.h"

static void walk(const uint8_t *data, size_t size, uint8_t start)
{
    moat_spilink_frame f;
    moat_spilink_status st;
    uint8_t again[MOAT_SPILINK_FRAME_MAX];
    size_t off = 0, used, n, i;
    moat_err e;

    while (off < size) {
        e = moat_spilink_parse(data + off, size - off, start, &f, &used);
        CHECK(used <= size - off);
        if (e == MOAT_ERR_WOULD_BLOCK) {
            CHECK(used == size - off || data[off + used] == start);
            break;
        }
        CHECK(used >= 1);
        if (e == MOAT_OK) {
            CHECK(f.start == start);
            CHECK(f.len <= MOAT_SPILINK_DATA_MAX);
            CHECK(used >= (size_t)f.len + MOAT_SPILINK_OVERHEAD);
            CHECK(moat_spilink_encode(f.start, f.seq, f.cmd, f.data, f.len, again, sizeof again,
                                      &n) == MOAT_OK);
            CHECK(memcmp(again, data + off + used - n, n) == 0);
            for (i = 0; i < used - n; i++)
                CHECK(data[off + i] != start);
            if (moat_spilink_status_of(&f, &st)) {
                CHECK(f.len == MOAT_SPILINK_STATUS_LEN && (f.cmd & MOAT_SPILINK_REPLY_BIT));
                CHECK(st.relays == f.data[0] && st.rejected == (f.data[4] | f.data[5] << 8));
            }
        } else {
            CHECK(e == MOAT_ERR_MALFORMED);
            CHECK(data[off + used - 1] == start);
        }
        off += used;
    }
}

typedef struct cursor {
    const uint8_t *p;
    size_t left;
} cursor;

static uint8_t next(cursor *c)
{
    if (c->left == 0)
        return 0;
    c->left--;
    return *c->p++;
}

static void script(const uint8_t *data, size_t size)
{
    cursor c = {data, size};
    moat_spilink_config cfg;
    moat_spilink l;
    uint8_t cfgb, op, tx[MOAT_SPILINK_XFER], rx[MOAT_SPILINK_XFER];
    uint32_t now = 0xFFFFF000u; /* cross the wrap early */
    unsigned transfers = 0, budget = 0;
    size_t n, used, i;
    moat_spilink_frame f;
    moat_err e;

    memset(&cfg, 0, sizeof cfg);
    cfgb = next(&c);
    cfg.tries = (uint8_t)(1 + (cfgb & 3));
    cfg.polls = (uint8_t)(1 + ((cfgb >> 2) & 3));
    cfg.heartbeat_ms = (cfgb & 0x10) ? 50 : UINT32_MAX;
    cfg.first_seq = (uint8_t)(cfgb & 0xE0);
    CHECK(moat_spilink_init(&l, &cfg, now) == MOAT_OK);

    while (c.left > 0) {
        op = next(&c);
        switch (op & 3) {
        case 0: {
            uint8_t cmd = next(&c), d = next(&c);
            uint8_t len = cmd == MOAT_SPILINK_CMD_SET_RELAYS ? 1 : 0;
            bool idle = l.state == MOAT_SPILINK_IDLE && !l.in_transfer;
            e = moat_spilink_request(&l, cmd, &d, len, now);
            if (!idle)
                CHECK(e == MOAT_ERR_STATE);
            else if (cmd >= 1 && cmd <= 5)
                CHECK(e == MOAT_OK);
            else
                CHECK(e == MOAT_ERR_ARG);
            if (e == MOAT_OK) {
                transfers = 0;
                budget = (unsigned)l.tries * (1u + l.polls);
            }
            break;
        }
        case 1: {
            bool was_idle = l.state == MOAT_SPILINK_IDLE;
            uint8_t seq, cmd;
            CHECK(moat_spilink_output(&l, tx, sizeof tx, &n, now) == MOAT_OK);
            if (was_idle && l.state != MOAT_SPILINK_IDLE) { /* it started a heartbeat */
                CHECK(l.cmd == MOAT_SPILINK_CMD_HEARTBEAT);
                transfers = 0;
                budget = (unsigned)l.tries * (1u + l.polls);
            }
            if (n == 0)
                break;
            CHECK(n == MOAT_SPILINK_XFER);
            CHECK(moat_spilink_next_timeout(&l, now) == 0);
            if (l.state == MOAT_SPILINK_SEND) {
                CHECK(moat_spilink_parse(tx, n, MOAT_SPILINK_START_REQUEST, &f, &used) == MOAT_OK);
                CHECK(f.seq == l.seq && f.cmd == l.cmd && f.len == l.len);
                CHECK(memcmp(f.data, l.data, f.len) == 0);
            } else {
                for (i = 0; i < n; i++)
                    CHECK(tx[i] == MOAT_SPILINK_FILLER);
            }
            seq = l.seq;
            cmd = l.cmd;
            if (op & 0x80) {
                uint8_t d[MOAT_SPILINK_DATA_MAX] = {0};
                uint8_t rseq = seq ^ next(&c), rcmd;
                memset(rx, 0, sizeof rx);
                d[0] = next(&c);
                if (op & 0x40) {
                    rcmd = MOAT_SPILINK_CMD_NAK;
                    d[1] = next(&c);
                    moat_spilink_encode(MOAT_SPILINK_START_REPLY, rseq, rcmd, d,
                                        MOAT_SPILINK_NAK_LEN, rx, sizeof rx, &used);
                } else {
                    rcmd = (uint8_t)((cmd | MOAT_SPILINK_REPLY_BIT) ^ next(&c));
                    moat_spilink_encode(MOAT_SPILINK_START_REPLY, rseq, rcmd, d,
                                        (uint8_t)(op & 7), rx, sizeof rx, &used);
                }
            } else {
                for (i = 0; i < sizeof rx; i++)
                    rx[i] = next(&c);
            }
            e = moat_spilink_input(&l, rx, sizeof rx, now);
            transfers++;
            CHECK(transfers <= budget);
            CHECK(e == MOAT_OK || e == MOAT_ERR_WOULD_BLOCK || e == MOAT_ERR_TIMEOUT ||
                  e == MOAT_ERR_PROTOCOL);
            if (e == MOAT_OK) {
                const moat_spilink_frame *r = moat_spilink_reply(&l);
                CHECK(r != NULL);
                CHECK(r->seq == seq);
                CHECK(r->cmd == (uint8_t)(cmd | MOAT_SPILINK_REPLY_BIT));
                CHECK(l.seq == (uint8_t)(seq + 1));
            }
            if (e != MOAT_ERR_WOULD_BLOCK) {
                CHECK(l.state == MOAT_SPILINK_IDLE);
                CHECK(e == MOAT_OK ? moat_spilink_why(&l)[0] == '\0'
                                   : moat_spilink_why(&l)[0] != '\0');
            } else {
                CHECK(l.state != MOAT_SPILINK_IDLE);
                CHECK(moat_spilink_next_timeout(&l, now) <= l.gap_ms);
            }
            break;
        }
        case 2:
            now += (uint32_t)next(&c) * 3u;
            break;
        default:
            moat_spilink_cancel(&l, now);
            CHECK(l.state == MOAT_SPILINK_IDLE && !l.in_transfer);
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);

    if (copy == NULL)
        return 0;
    memcpy(copy, data, size); /* exactly sized: ASan sees any overread */
    walk(copy, size, MOAT_SPILINK_START_REPLY);
    walk(copy, size, MOAT_SPILINK_START_REQUEST);
    script(copy, size);
    free(copy);
    return 0;
}
