/*
 * mqtt_loop.c - moat_mqtt_pump(): moves bytes between a client engine and a
 * connected moat_transport. It owns no state; one call does a bounded amount
 * of work and never blocks.
 */
#include "moat/mqtt.h"

#ifndef MOAT_MQTT_IO_CHUNK
#define MOAT_MQTT_IO_CHUNK 256 /* stack bytes per read; Linux builds use more */
#endif
#define PUMP_READS 8           /* reads per call, so one link cannot starve others */

static moat_err send_all(moat_mqtt_client *c, const moat_transport *t, uint32_t now_ms)
{
    size_t len;
    const uint8_t *out = moat_mqtt_output(c, &len);
    while (len > 0) {
        long n = t->send(t->ctx, out, len);
        if (n == MOAT_ERR_WOULD_BLOCK)
            return MOAT_OK;
        if (n <= 0)
            return n == 0 ? MOAT_ERR_IO : (moat_err)n;
        moat_mqtt_output_done(c, (size_t)n, now_ms);
        out = moat_mqtt_output(c, &len);
    }
    return MOAT_OK;
}

/* One read, fed to the engine. Reads no more than the engine can answer
 * without running out of tx space (see moat_mqtt_input), so nothing read is
 * ever left unconsumed. Returns MOAT_ERR_WOULD_BLOCK when nothing was read. */
static moat_err read_some(moat_mqtt_client *c, const moat_transport *t, uint32_t now_ms)
{
    uint8_t chunk[MOAT_MQTT_IO_CHUNK];
    size_t want = c->tx_size - c->tx_len, used;
    long n;
    if (want <= 4)
        return MOAT_ERR_WOULD_BLOCK;
    want -= 4;
    if (want > sizeof(chunk))
        want = sizeof(chunk);
    n = t->recv(t->ctx, chunk, want);
    if (n == MOAT_ERR_WOULD_BLOCK)
        return n;
    if (n <= 0)
        return n == 0 ? MOAT_ERR_IO : (moat_err)n;
    moat_err e = moat_mqtt_input(c, chunk, (size_t)n, &used, now_ms);
    if (e == MOAT_ERR_WOULD_BLOCK)
        return MOAT_ERR_NO_SPACE; /* cannot happen by the bound above */
    return e;
}

moat_err moat_mqtt_pump(moat_mqtt_client *c, const moat_transport *t, uint32_t now_ms)
{
    moat_err e = MOAT_OK;
    if (c->state < MOAT_MQTT_WAIT_CONNACK)
        return MOAT_ERR_STATE; /* IDLE or BACKOFF: no link */

    /* Send what the caller queued, then read all that is there before
     * answering: the replies to many packets leave in one send (and, over
     * TLS, one record) instead of one each. A change of state (CONNACK)
     * ends the reading, so that what the application queues on it (its
     * SUBSCRIBE) leaves before the packets that follow are handled. */
    moat_mqtt_state s = c->state;
    e = send_all(c, t, now_ms);
    for (int i = 0; i < PUMP_READS && e == MOAT_OK && c->state == s; i++)
        e = read_some(c, t, now_ms);
    if (e == MOAT_ERR_WOULD_BLOCK)
        e = MOAT_OK;
    if (e == MOAT_OK)
        e = moat_mqtt_tick(c, now_ms);
    if (e == MOAT_OK)
        e = send_all(c, t, now_ms);
    if (e == MOAT_OK && c->state == MOAT_MQTT_CLOSING && c->tx_len == 0) {
        moat_mqtt_link_down(c, MOAT_OK, now_ms);
        return MOAT_ERR_CLOSED;
    }
    if (e != MOAT_OK && c->state >= MOAT_MQTT_WAIT_CONNACK)
        moat_mqtt_link_down(c, e, now_ms); /* a transport error: the engine
                                              took itself down for its own */
    return e;
}
