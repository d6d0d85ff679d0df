/*
 * moat/transport.h - the byte-stream interface between engines and ports.
 *
 * A transport is two non-blocking function pointers and a context. The MQTT
 * loop (moat_mqtt_pump) moves bytes between the engine and a transport; TCP
 * (src/port/posix) and TLS (src/tls) both implement it, so TLS slots in
 * without the engine knowing.
 *
 * Contract, for both functions:
 *  - They never block. They return the number of bytes moved (> 0),
 *    MOAT_ERR_WOULD_BLOCK (< 0) when nothing can move now, MOAT_ERR_CLOSED
 *    when the peer closed the stream in order, or another negative moat_err.
 *  - send may move fewer bytes than asked. A send that returned
 *    MOAT_ERR_WOULD_BLOCK is retried later with the same bytes, in order, and
 *    at least the same length (TLS records depend on it).
 *  - recv returning 0 is not allowed; end of stream is MOAT_ERR_CLOSED.
 *  - Opening and closing the stream belong to the port, not to this interface.
 */
#ifndef MOAT_TRANSPORT_H
#define MOAT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct moat_transport {
    long (*send)(void *ctx, const uint8_t *buf, size_t len);
    long (*recv)(void *ctx, uint8_t *buf, size_t len);
    void *ctx;
    /* Optional (NULL: never): true when recv has bytes that the socket
     * will not announce again (a read-ahead buffer, TLS records already
     * decrypted); a poll loop must read before it sleeps. */
    bool (*pending)(void *ctx);
} moat_transport;

#endif
