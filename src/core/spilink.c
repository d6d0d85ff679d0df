/*
 * spilink.c - the host side of the SPI link to the moat-avr relay
 * co-processor: frame codec and a request/reply engine, sans-I/O.
 *
 * The engine never touches the bus. It says which bytes the next transfer
 * clocks out (a request, or filler to poll for the reply, which comes one
 * transfer later) and reads what came back. A request is sent up to `tries`
 * times; after each send it polls up to `polls` times, because the
 * co-processor repeats its last reply on every transfer. Frame layout and
 * rules: moat/spilink.h.
 */
#include "moat/spilink.h"

#include "moat/timer.h"
#include "mem.h"

/* Longest gap or heartbeat: timers stay far inside moat/timer.h's horizon. */
#define SPILINK_MAX_MS 0x40000000u

moat_err moat_spilink_encode(uint8_t start, uint8_t seq, uint8_t cmd, const uint8_t *data,
                             uint8_t len, uint8_t *buf, size_t cap, size_t *out_len)
{
    size_t n = (size_t)len + MOAT_SPILINK_OVERHEAD;

    *out_len = 0;
    if (len > MOAT_SPILINK_DATA_MAX || (data == NULL && len > 0))
        return MOAT_ERR_ARG;
    if (cap < n)
        return MOAT_ERR_NO_SPACE;
    buf[0] = start;
    buf[1] = seq;
    buf[2] = cmd;
    buf[3] = len;
    if (len > 0)
        memcpy(buf + 4, data, len);
    buf[4 + len] = moat_spilink_crc8(buf, (uint8_t)(4 + len));
    *out_len = n;
    return MOAT_OK;
}

moat_err moat_spilink_parse(const uint8_t *buf, size_t len, uint8_t start,
                            moat_spilink_frame *f, size_t *used)
{
    size_t i, n;
    uint8_t flen;

    for (i = 0; i < len && buf[i] != start; i++)
        ;
    *used = i;
    if (i == len || len - i < 4)
        return MOAT_ERR_WOULD_BLOCK;
    flen = buf[i + 3];
    if (flen > MOAT_SPILINK_DATA_MAX) {
        *used = i + 1;
        return MOAT_ERR_MALFORMED;
    }
    n = (size_t)flen + MOAT_SPILINK_OVERHEAD;
    if (len - i < n)
        return MOAT_ERR_WOULD_BLOCK;
    if (moat_spilink_crc8(buf + i, (uint8_t)(n - 1)) != buf[i + n - 1]) {
        *used = i + 1;
        return MOAT_ERR_MALFORMED;
    }
    f->start = buf[i];
    f->seq = buf[i + 1];
    f->cmd = buf[i + 2];
    f->len = flen;
    memset(f->data, 0, sizeof f->data);
    memcpy(f->data, buf + i + 4, flen);
    *used = i + n;
    return MOAT_OK;
}

bool moat_spilink_status_of(const moat_spilink_frame *f, moat_spilink_status *st)
{
    uint8_t req = (uint8_t)(f->cmd & (uint8_t)~MOAT_SPILINK_REPLY_BIT);

    if (f->start != MOAT_SPILINK_START_REPLY || !(f->cmd & MOAT_SPILINK_REPLY_BIT) ||
        f->len != MOAT_SPILINK_STATUS_LEN ||
        (req != MOAT_SPILINK_CMD_SET_RELAYS && req != MOAT_SPILINK_CMD_GET_RELAYS &&
         req != MOAT_SPILINK_CMD_HEARTBEAT))
        return false;
    st->relays = f->data[MOAT_SPILINK_ST_RELAYS];
    st->forced = f->data[MOAT_SPILINK_ST_FORCED];
    st->flags = f->data[MOAT_SPILINK_ST_FLAGS];
    st->reset_cause = f->data[MOAT_SPILINK_ST_RESET];
    st->rejected = (uint16_t)(f->data[MOAT_SPILINK_ST_REJECTED] |
                              (uint16_t)f->data[MOAT_SPILINK_ST_REJECTED + 1] << 8);
    return true;
}

/* Data length a request command takes, or -1 for an unknown command. */
static int request_len(uint8_t cmd)
{
    switch (cmd) {
    case MOAT_SPILINK_CMD_SET_RELAYS: return 1;
    case MOAT_SPILINK_CMD_GET_RELAYS:
    case MOAT_SPILINK_CMD_GET_INPUTS:
    case MOAT_SPILINK_CMD_VERSION:
    case MOAT_SPILINK_CMD_HEARTBEAT: return 0;
    default: return -1;
    }
}

moat_err moat_spilink_init(moat_spilink *l, const moat_spilink_config *cfg, uint32_t now_ms)
{
    moat_spilink_config d;

    memset(&d, 0, sizeof d);
    if (cfg != NULL)
        d = *cfg;
    memset(l, 0, sizeof *l);
    l->tries = d.tries ? d.tries : 3u;
    l->polls = d.polls ? d.polls : 2u;
    l->gap_ms = d.gap_ms ? d.gap_ms : 1u;
    l->heartbeat_ms = d.heartbeat_ms ? d.heartbeat_ms : 1000u;
    if (l->gap_ms > SPILINK_MAX_MS ||
        (l->heartbeat_ms != UINT32_MAX &&
         (l->heartbeat_ms <= l->gap_ms || l->heartbeat_ms > SPILINK_MAX_MS)))
        return MOAT_ERR_ARG;
    l->seq = d.first_seq;
    l->due_ms = now_ms;
    l->last_ok_ms = now_ms;
    l->state = MOAT_SPILINK_IDLE;
    return MOAT_OK;
}

moat_err moat_spilink_request(moat_spilink *l, uint8_t cmd, const uint8_t *data,
                              uint8_t len, uint32_t now_ms)
{
    int want = request_len(cmd);

    if (l->state != MOAT_SPILINK_IDLE || l->in_transfer)
        return MOAT_ERR_STATE;
    if (want < 0 || len != (uint8_t)want || (len > 0 && data == NULL))
        return MOAT_ERR_ARG;
    l->cmd = cmd;
    l->len = len;
    memset(l->data, 0, sizeof l->data);
    if (len > 0)
        memcpy(l->data, data, len);
    l->attempt = 0;
    l->poll_no = 0;
    l->fail = MOAT_SPILINK_FAIL_NONE;
    l->nak_reason = 0;
    l->done = false;
    l->state = MOAT_SPILINK_SEND;
    l->requests++;
    /* A deadline further ahead than one gap is a stale one that wrapped. */
    if (!moat_time_reached(now_ms, l->due_ms) && l->due_ms - now_ms > l->gap_ms)
        l->due_ms = now_ms;
    return MOAT_OK;
}

static bool heartbeat_due(const moat_spilink *l, uint32_t now_ms)
{
    return l->heartbeat_ms != UINT32_MAX &&
           moat_elapsed(l->last_ok_ms, now_ms) >= l->heartbeat_ms;
}

moat_err moat_spilink_output(moat_spilink *l, uint8_t *tx, size_t cap, size_t *len,
                             uint32_t now_ms)
{
    size_t n = 0;

    *len = 0;
    if (l->in_transfer)
        return MOAT_ERR_STATE;
    if (cap < MOAT_SPILINK_XFER)
        return MOAT_ERR_NO_SPACE;
    if (l->state == MOAT_SPILINK_IDLE) {
        if (!heartbeat_due(l, now_ms))
            return MOAT_OK;
        moat_spilink_request(l, MOAT_SPILINK_CMD_HEARTBEAT, NULL, 0, now_ms);
    }
    if (!moat_time_reached(now_ms, l->due_ms))
        return MOAT_OK;
    if (l->state == MOAT_SPILINK_SEND) {
        /* The request's own checks make this succeed. */
        moat_spilink_encode(MOAT_SPILINK_START_REQUEST, l->seq, l->cmd, l->data, l->len, tx,
                            cap, &n);
    }
    memset(tx + n, MOAT_SPILINK_FILLER, MOAT_SPILINK_XFER - n);
    l->in_transfer = true;
    *len = MOAT_SPILINK_XFER;
    return MOAT_OK;
}

/* What a frame from the co-processor means for the request in flight:
 * 1 it is our reply, 0 ignore it, -1 resend now. */
static int judge(moat_spilink *l, const moat_spilink_frame *f)
{
    if (f->seq != l->seq)
        return 0; /* an older reply, or a NAK of someone else's garbage */
    if (f->cmd == (uint8_t)(l->cmd | MOAT_SPILINK_REPLY_BIT))
        return 1;
    if (f->cmd != MOAT_SPILINK_CMD_NAK || f->len != MOAT_SPILINK_NAK_LEN)
        return 0;
    l->naks++;
    l->nak_reason = f->data[0];
    if (f->data[0] == MOAT_SPILINK_NAK_SEQ) {
        /* The co-processor runs on (host restart): take its count. */
        l->seq = f->data[1];
        l->resyncs++;
    }
    return -1;
}

static void note_fail(moat_spilink *l, moat_spilink_fail f)
{
    if (f > l->fail)
        l->fail = (uint8_t)f;
}

static moat_err give_up(moat_spilink *l)
{
    if (l->fail == MOAT_SPILINK_FAIL_NONE) /* nothing but wrong-seq NAKs */
        l->fail = MOAT_SPILINK_FAIL_NAK;
    l->state = MOAT_SPILINK_IDLE;
    l->failures++;
    return l->fail == MOAT_SPILINK_FAIL_NAK ? MOAT_ERR_PROTOCOL : MOAT_ERR_TIMEOUT;
}

/* Send again, or give up after the last try. */
static moat_err resend(moat_spilink *l)
{
    if (l->attempt >= l->tries)
        return give_up(l);
    l->state = MOAT_SPILINK_SEND;
    l->poll_no = 0;
    return MOAT_ERR_WOULD_BLOCK;
}

moat_err moat_spilink_input(moat_spilink *l, const uint8_t *rx, size_t len, uint32_t now_ms)
{
    moat_spilink_frame f;
    size_t off = 0, used;
    moat_err e;
    int verdict = 0;
    bool crc_bad = false, any = false;

    if (!l->in_transfer)
        return MOAT_ERR_STATE;
    l->in_transfer = false;
    l->due_ms = now_ms + l->gap_ms;
    if (l->state == MOAT_SPILINK_SEND) {
        /* MISO of the request's own transfer holds an older reply. */
        l->attempt++;
        l->poll_no = 0;
        l->state = MOAT_SPILINK_POLL;
        return MOAT_ERR_WOULD_BLOCK;
    }
    while (off < len && verdict == 0) {
        e = moat_spilink_parse(rx + off, len - off, MOAT_SPILINK_START_REPLY, &f, &used);
        off += used;
        if (e == MOAT_ERR_WOULD_BLOCK)
            break;
        if (e != MOAT_OK) {
            crc_bad = true;
            continue;
        }
        any = true;
        verdict = judge(l, &f);
    }
    if (verdict > 0) {
        l->reply = f;
        l->done = true;
        l->state = MOAT_SPILINK_IDLE;
        l->fail = MOAT_SPILINK_FAIL_NONE;
        l->last_ok_ms = now_ms;
        l->seq++;
        l->replies++;
        return MOAT_OK;
    }
    if (crc_bad)
        l->crc_errors++;
    if (verdict < 0) {
        /* A NAK is final for this send: resend at once. A wrong seq is no
         * failure but a resync: the resend carries the expected seq. */
        if (l->nak_reason != MOAT_SPILINK_NAK_SEQ)
            note_fail(l, MOAT_SPILINK_FAIL_NAK);
        return resend(l);
    }
    note_fail(l, crc_bad ? MOAT_SPILINK_FAIL_CRC
                 : any   ? MOAT_SPILINK_FAIL_STALE
                         : MOAT_SPILINK_FAIL_SILENT);
    if (++l->poll_no < l->polls)
        return MOAT_ERR_WOULD_BLOCK;
    return resend(l);
}

void moat_spilink_cancel(moat_spilink *l, uint32_t now_ms)
{
    if (l->state != MOAT_SPILINK_IDLE) {
        l->seq++;
        l->failures++;
    }
    l->state = MOAT_SPILINK_IDLE;
    l->in_transfer = false;
    l->due_ms = now_ms + l->gap_ms;
}

uint32_t moat_spilink_next_timeout(const moat_spilink *l, uint32_t now_ms)
{
    uint32_t t;

    if (l->in_transfer)
        return 0;
    if (l->state == MOAT_SPILINK_IDLE) {
        if (l->heartbeat_ms == UINT32_MAX)
            return UINT32_MAX;
        t = moat_elapsed(l->last_ok_ms, now_ms);
        t = t >= l->heartbeat_ms ? 0 : l->heartbeat_ms - t;
    } else {
        t = 0;
    }
    /* Never before the gap after the last transfer. */
    if (!moat_time_reached(now_ms, l->due_ms) && l->due_ms - now_ms > t)
        t = l->due_ms - now_ms;
    return t;
}

moat_spilink_state moat_spilink_get_state(const moat_spilink *l)
{
    return (moat_spilink_state)l->state;
}

const moat_spilink_frame *moat_spilink_reply(const moat_spilink *l)
{
    return l->done ? &l->reply : NULL;
}

const char *moat_spilink_nak_text(uint8_t reason)
{
    switch (reason) {
    case MOAT_SPILINK_NAK_CRC: return "CRC mismatch";
    case MOAT_SPILINK_NAK_LENGTH: return "wrong length";
    case MOAT_SPILINK_NAK_SEQ: return "sequence number out of order";
    case MOAT_SPILINK_NAK_CMD: return "unknown command";
    case MOAT_SPILINK_NAK_TRUNCATED: return "frame cut short";
    case MOAT_SPILINK_NAK_OVERRUN: return "frame overrun";
    default: return "unknown reason";
    }
}

const char *moat_spilink_why(const moat_spilink *l)
{
    switch (l->fail) {
    case MOAT_SPILINK_FAIL_SILENT:
        return "relay co-processor did not answer (no reply frame on MISO: check wiring, "
               "power and reset)";
    case MOAT_SPILINK_FAIL_CRC:
        return "relay co-processor replies failed their CRC (noise on the SPI lines, or "
               "clock too fast)";
    case MOAT_SPILINK_FAIL_STALE:
        return "relay co-processor did not answer this request (only older replies came)";
    case MOAT_SPILINK_FAIL_NAK:
        switch (l->nak_reason) {
        case MOAT_SPILINK_NAK_CRC: return "relay co-processor refused the request: CRC mismatch";
        case MOAT_SPILINK_NAK_LENGTH: return "relay co-processor refused the request: wrong length";
        case MOAT_SPILINK_NAK_SEQ:
            return "relay co-processor refused the request: sequence number out of order";
        case MOAT_SPILINK_NAK_CMD:
            return "relay co-processor refused the request: unknown command (old firmware?)";
        default: return "relay co-processor refused the request";
        }
    default: return "";
    }
}
