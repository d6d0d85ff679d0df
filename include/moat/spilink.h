/*
 * moat/spilink.h - the SPI link between a host and the moat-avr relay
 * co-processor (an ATmega168 driving 8 active-low relays on PORTD).
 *
 * This one header is shared: the firmware (avr/, built with avr-gcc) takes
 * the frame definitions and the CRC from it, and the host takes the same
 * definitions plus the sans-I/O link engine declared at the end. Everything
 * above the engine section is plain C99 with no library call, so it compiles
 * on both.
 *
 * Physical layer: SPI mode 0 (CPOL 0, CPHA 0), MSB first, 8-bit words, the
 * host is master, SS (chip select) low for the whole of one transfer. A
 * transfer is always MOAT_SPILINK_XFER bytes. Because SPI is full duplex and
 * the co-processor needs time to act on a request, the reply to a request
 * comes on the NEXT transfer:
 *
 *     transfer 1   MOSI: request seq 7 + filler     MISO: (old reply, ignored)
 *     transfer 2   MOSI: filler (a "poll")          MISO: reply seq 7 + filler
 *
 * The co-processor keeps its last reply and sends it again, from its first
 * byte, on every transfer until a new request arrives, so a poll can be
 * repeated when a reply is corrupted on the wire.
 *
 * Frame (both directions):
 *
 *     offset  size  field
 *     0       1     start: 0xA5 request (host -> AVR), 0x5A reply (AVR -> host)
 *     1       1     seq: sequence number; a reply carries its request's
 *     2       1     cmd: request command; a reply has cmd | 0x80, or 0xFF (NAK)
 *     3       1     len: data bytes, 0..MOAT_SPILINK_DATA_MAX
 *     4       len   data
 *     4+len   1     CRC-8 of bytes 0..4+len (start byte included)
 *
 * CRC-8: polynomial 0x07 (x^8 + x^2 + x + 1), initial value 0x00, no
 * reflection, no final XOR (the "CRC-8/SMBUS" of the CRC catalogue; the
 * check value of "123456789" is 0xF4). Bytes outside frames are filler
 * (0x00 from either side) and are skipped while hunting for a start byte;
 * the two start bytes differ so that an echoed request is never read as a
 * reply.
 *
 * Sequence numbers: the co-processor accepts a request only when its seq is
 * the one it expects (one more than the last accepted, mod 256; 0 after
 * power-up). Anything else is refused with a NAK (reason BAD_SEQ) that
 * carries the expected value, so a host that restarted resynchronises in one
 * round trip. Every command is idempotent, so resending after a lost reply
 * is safe.
 *
 * Commands (request data -> reply data):
 *   SET_RELAYS  [bitmap]  -> status   bit n = relay n+1 on (PDn driven low)
 *   GET_RELAYS  []        -> status
 *   GET_INPUTS  []        -> [inputs] PC0..PC5 pin levels (bit n = PCn high)
 *   VERSION     []        -> [protocol, major, minor, patch,
 *                             failsafe_ms (LE16), max_on_s (LE16)]
 *   HEARTBEAT   []        -> status   (only keeps the link alive)
 * status = [relays, forced, flags, reset_cause, rejected (LE16)]:
 *   relays       the relays on now
 *   forced       relays the co-processor switched off by itself (fail-safe
 *                silence or maximum on-time); they stay off until a
 *                SET_RELAYS clears their bit
 *   flags        MOAT_SPILINK_FLAG_*: why bits of forced are set
 *   reset_cause  MCUSR at the last reset: MOAT_SPILINK_RESET_*
 *   rejected     bad frames counted since reset (saturates at 65535)
 * A NAK (cmd 0xFF) answers a frame that was refused and not acted on:
 *   [reason, expected seq, rejected (LE16)]; its seq is the refused frame's
 *   (0 for a frame cut short before its seq, or too long to read).
 *
 * Fail-safe rules kept by the firmware (docs/AVR.md): all relays off from
 * power-up until told otherwise; all relays off when no valid frame arrived
 * for failsafe_ms; a relay on for max_on_s is switched off; the hardware
 * watchdog resets a stuck firmware, which switches everything off.
 */
#ifndef MOAT_SPILINK_H
#define MOAT_SPILINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------- shared definitions -- */

#define MOAT_SPILINK_PROTOCOL 1u

#define MOAT_SPILINK_START_REQUEST 0xA5u
#define MOAT_SPILINK_START_REPLY 0x5Au
#define MOAT_SPILINK_FILLER 0x00u

#define MOAT_SPILINK_DATA_MAX 8u
#define MOAT_SPILINK_OVERHEAD 5u /* start, seq, cmd, len, crc */
#define MOAT_SPILINK_FRAME_MAX (MOAT_SPILINK_OVERHEAD + MOAT_SPILINK_DATA_MAX)
/* Bytes per transfer: the longest frame and some slack. */
#define MOAT_SPILINK_XFER 16u

/* Request commands. */
#define MOAT_SPILINK_CMD_SET_RELAYS 0x01u
#define MOAT_SPILINK_CMD_GET_RELAYS 0x02u
#define MOAT_SPILINK_CMD_GET_INPUTS 0x03u
#define MOAT_SPILINK_CMD_VERSION 0x04u
#define MOAT_SPILINK_CMD_HEARTBEAT 0x05u
/* Replies: the request's command with this bit, or NAK. */
#define MOAT_SPILINK_REPLY_BIT 0x80u
#define MOAT_SPILINK_CMD_NAK 0xFFu

/* NAK reasons (data[0] of a NAK). */
#define MOAT_SPILINK_NAK_CRC 1u       /* CRC mismatch */
#define MOAT_SPILINK_NAK_LENGTH 2u    /* len over the maximum or wrong for cmd */
#define MOAT_SPILINK_NAK_SEQ 3u       /* seq not the expected one */
#define MOAT_SPILINK_NAK_CMD 4u       /* unknown command */
#define MOAT_SPILINK_NAK_TRUNCATED 5u /* SS rose in the middle of a frame */
#define MOAT_SPILINK_NAK_OVERRUN 6u   /* a frame came before the last was handled */

/* Status reply layout. */
#define MOAT_SPILINK_STATUS_LEN 6u
#define MOAT_SPILINK_ST_RELAYS 0u
#define MOAT_SPILINK_ST_FORCED 1u
#define MOAT_SPILINK_ST_FLAGS 2u
#define MOAT_SPILINK_ST_RESET 3u
#define MOAT_SPILINK_ST_REJECTED 4u /* LE16 */
#define MOAT_SPILINK_FLAG_SILENCE 0x01u /* fail-safe: no valid frame in time */
#define MOAT_SPILINK_FLAG_MAX_ON 0x02u  /* a relay reached its maximum on-time */
/* reset_cause bits: the ATmega168's MCUSR. */
#define MOAT_SPILINK_RESET_POWER 0x01u
#define MOAT_SPILINK_RESET_EXTERNAL 0x02u
#define MOAT_SPILINK_RESET_BROWNOUT 0x04u
#define MOAT_SPILINK_RESET_WATCHDOG 0x08u

/* VERSION reply layout. */
#define MOAT_SPILINK_VERSION_LEN 8u
#define MOAT_SPILINK_NAK_LEN 4u
#define MOAT_SPILINK_INPUTS_LEN 1u

/* Fail-safe settings of the firmware. The defaults hold unless the EEPROM
 * holds a valid configuration block (layout below, docs/AVR.md). */
#define MOAT_SPILINK_DEFAULT_FAILSAFE_MS 10000u
#define MOAT_SPILINK_FAILSAFE_MIN_MS 100u
#define MOAT_SPILINK_FAILSAFE_MAX_MS 60000u
#define MOAT_SPILINK_DEFAULT_MAX_ON_S 7200u
#define MOAT_SPILINK_MAX_ON_MIN_S 1u
/* EEPROM block at address 0: magic, version, failsafe_ms LE16, max_on_s
 * LE16, CRC-8 of the 6 bytes before it. */
#define MOAT_SPILINK_EE_MAGIC 0x4Du /* 'M' */
#define MOAT_SPILINK_EE_VERSION 1u
#define MOAT_SPILINK_EE_LEN 7u

/* One CRC-8 step (polynomial 0x07, MSB first). */
static inline uint8_t moat_spilink_crc8_byte(uint8_t crc, uint8_t byte)
{
    uint8_t i;

    crc ^= byte;
    for (i = 0; i < 8u; i++)
        crc = (uint8_t)((crc & 0x80u) ? (uint8_t)(crc << 1) ^ 0x07u : (uint8_t)(crc << 1));
    return crc;
}

static inline uint8_t moat_spilink_crc8(const uint8_t *p, uint8_t n)
{
    uint8_t crc = 0;

    while (n--)
        crc = moat_spilink_crc8_byte(crc, *p++);
    return crc;
}

#ifndef __AVR__
/* ------------------------------------------ host engine (sans-I/O) -- */

/* A frame, decoded. */
typedef struct moat_spilink_frame {
    uint8_t start, seq, cmd, len;
    uint8_t data[MOAT_SPILINK_DATA_MAX];
} moat_spilink_frame;

/*
 * Encode a frame into buf[0..cap): *out_len gets its length (len + 5).
 * MOAT_ERR_ARG for len over MOAT_SPILINK_DATA_MAX or data NULL with len > 0,
 * MOAT_ERR_NO_SPACE when it does not fit.
 */
moat_err moat_spilink_encode(uint8_t start, uint8_t seq, uint8_t cmd, const uint8_t *data,
                             uint8_t len, uint8_t *buf, size_t cap, size_t *out_len);

/*
 * Find the first frame that begins with start in buf[0..len): bytes before
 * a start byte are skipped. *used (always set) says how many bytes to drop
 * before the next call:
 *   MOAT_OK             a frame with a good CRC: *f holds it; *used ends
 *                       just after it
 *   MOAT_ERR_MALFORMED  a start byte led to a length over the maximum or a
 *                       CRC mismatch: *used ends just after that start
 *                       byte, so a real frame hidden behind it is found next
 *   MOAT_ERR_WOULD_BLOCK no complete frame: *used = len when no start byte
 *                       was seen, else the offset of the first start byte
 *                       whose frame is incomplete
 * Reads exactly buf[0..len). Never fails otherwise.
 */
moat_err moat_spilink_parse(const uint8_t *buf, size_t len, uint8_t start,
                            moat_spilink_frame *f, size_t *used);

/* Status decoded from a status reply. */
typedef struct moat_spilink_status {
    uint8_t relays;      /* relays on */
    uint8_t forced;      /* relays held off by the co-processor itself */
    uint8_t flags;       /* MOAT_SPILINK_FLAG_* */
    uint8_t reset_cause; /* MOAT_SPILINK_RESET_* */
    uint16_t rejected;   /* bad frames the co-processor counted */
} moat_spilink_status;

/* True (and *st filled) when f is a status reply (SET, GET, HEARTBEAT). */
bool moat_spilink_status_of(const moat_spilink_frame *f, moat_spilink_status *st);

/* Why the last request failed (moat_spilink_why()): the most telling thing
 * seen over all its tries, in this order of increasing weight. */
typedef enum moat_spilink_fail {
    MOAT_SPILINK_FAIL_NONE = 0,
    MOAT_SPILINK_FAIL_SILENT,   /* no reply frame at all */
    MOAT_SPILINK_FAIL_STALE,    /* only replies to other requests came */
    MOAT_SPILINK_FAIL_CRC,      /* replies came with a bad CRC */
    MOAT_SPILINK_FAIL_NAK       /* the co-processor refused the request */
} moat_spilink_fail;

typedef struct moat_spilink_config {
    uint8_t tries;         /* times a request is sent before giving up; 0 means 3 */
    uint8_t polls;         /* poll transfers after each send; 0 means 2 */
    uint32_t gap_ms;       /* least time between transfers, for the
                              co-processor to act; 0 means 1 */
    uint32_t heartbeat_ms; /* send HEARTBEAT when idle this long; 0 means
                              1000; UINT32_MAX means never. Keep it well
                              under the firmware's failsafe_ms */
    uint8_t first_seq;     /* seq of the first request (any value works:
                              the link resynchronises) */
} moat_spilink_config;

typedef enum moat_spilink_state {
    MOAT_SPILINK_IDLE = 0, /* no request in flight */
    MOAT_SPILINK_SEND,     /* the request goes out in the next transfer */
    MOAT_SPILINK_POLL      /* sent; polling for its reply */
} moat_spilink_state;

/* The context. Opaque to the caller: allocate it, pass it to every call. */
typedef struct moat_spilink {
    uint32_t gap_ms, heartbeat_ms;
    uint32_t due_ms;        /* no transfer before this */
    uint32_t last_ok_ms;    /* the last good reply (or init) */
    uint8_t tries, polls;
    uint8_t state;          /* moat_spilink_state */
    bool in_transfer;       /* output() given, input() not yet */
    bool done;              /* last request finished (reply() valid) */
    uint8_t seq;            /* of the request in flight, or the next one */
    uint8_t cmd, len;
    uint8_t data[MOAT_SPILINK_DATA_MAX];
    uint8_t attempt;        /* sends of this request so far */
    uint8_t poll_no;        /* polls since the last send */
    uint8_t fail;           /* moat_spilink_fail of this request */
    uint8_t nak_reason;     /* the last NAK reason for our request */
    moat_spilink_frame reply;
    /* counters, for status reports */
    uint32_t requests, replies, crc_errors, naks, resyncs, failures;
} moat_spilink;

/* Check cfg (NULL for defaults) and make an idle engine; now_ms starts the
 * heartbeat timer. MOAT_ERR_ARG for a heartbeat not over the gap. */
moat_err moat_spilink_init(moat_spilink *l, const moat_spilink_config *cfg, uint32_t now_ms);

/*
 * Start a request: cmd (a MOAT_SPILINK_CMD_* request) with data[0..len).
 * MOAT_ERR_STATE while another is in flight, MOAT_ERR_ARG for a bad cmd or
 * len. The request goes out in the next transfer, at now_ms or once the gap
 * after the last transfer has passed.
 */
moat_err moat_spilink_request(moat_spilink *l, uint8_t cmd, const uint8_t *data,
                              uint8_t len, uint32_t now_ms);

/*
 * The next transfer, when one is due: writes MOAT_SPILINK_XFER bytes to
 * tx[0..cap) (the request frame and filler, or only filler for a poll) and
 * sets *len to MOAT_SPILINK_XFER; the caller clocks them out with SS low and
 * hands what came back on MISO to moat_spilink_input(). Otherwise *len is 0.
 * When idle past heartbeat_ms it starts a HEARTBEAT request by itself.
 * Returns MOAT_OK, MOAT_ERR_NO_SPACE when cap < MOAT_SPILINK_XFER (nothing
 * changes), MOAT_ERR_STATE when the last transfer's input is still owed.
 */
moat_err moat_spilink_output(moat_spilink *l, uint8_t *tx, size_t cap, size_t *len,
                             uint32_t now_ms);

/*
 * The bytes clocked in during the transfer that output() asked for (rx may
 * be shorter, e.g. a failed transfer: pass len 0). Returns:
 *   MOAT_ERR_WOULD_BLOCK  the request is still in progress: call output()
 *                         again when moat_spilink_next_timeout() says
 *   MOAT_OK               the reply arrived: moat_spilink_reply()
 *   MOAT_ERR_TIMEOUT      no valid reply after every try (words:
 *                         moat_spilink_why()); the engine is idle again
 *   MOAT_ERR_PROTOCOL     the co-processor refused the request every try
 *   MOAT_ERR_STATE        no transfer was asked for
 * A NAK for a wrong seq makes the engine take the expected seq and resend
 * at once (a host restart costs one round trip).
 */
moat_err moat_spilink_input(moat_spilink *l, const uint8_t *rx, size_t len, uint32_t now_ms);

/* Drop the request in flight (say, the bus failed): idle, and the next
 * transfer waits for the gap. The seq moves on, so a late reply to the
 * dropped request is never taken for the next one's. */
void moat_spilink_cancel(moat_spilink *l, uint32_t now_ms);

/* Milliseconds until output() has a transfer: 0 now, UINT32_MAX never
 * (idle with no heartbeat). */
uint32_t moat_spilink_next_timeout(const moat_spilink *l, uint32_t now_ms);

moat_spilink_state moat_spilink_get_state(const moat_spilink *l);

/* The reply of the last request that ended with MOAT_OK; NULL otherwise. */
const moat_spilink_frame *moat_spilink_reply(const moat_spilink *l);

/* Words for the failure of the last request ("" after a success); never
 * NULL, e.g. "relay co-processor did not answer (3 tries)". */
const char *moat_spilink_why(const moat_spilink *l);

/* Words for a NAK reason ("CRC mismatch", ...); never NULL. */
const char *moat_spilink_nak_text(uint8_t reason);

#endif /* !__AVR__ */

#ifdef __cplusplus
}
#endif
#endif
