/*
 * moat/mqtt.h - MQTT 3.1.1 codec and sans-I/O client engine.
 *
 * Three layers, three files, three jobs (as in coreMQTT):
 *   src/core/mqtt_codec.c   pure serializer/deserializer: packets <-> bytes
 *   src/core/mqtt_client.c  the client state machine: bytes in, bytes out,
 *                           in-flight window, keep-alive, reconnect policy
 *   src/core/mqtt_loop.c    moat_mqtt_pump(): moves bytes between the engine
 *                           and a moat_transport
 * plus src/core/mqtt_codec_server.c (the broker direction of the codec, for
 * tests, fuzzing and tools) and src/core/mqtt_topic.c (topic rules).
 *
 * No function here allocates memory, reads a clock, or touches I/O. The caller
 * owns every struct and buffer and passes the current time (now_ms, a wrapping
 * uint32_t millisecond count) to each call that needs it.
 *
 * Strings in packets are moat_mqtt_str slices: pointer + length, not
 * NUL-terminated, pointing into the caller's buffer.
 *
 * MQTT 5: every codec entry point takes the protocol version, and decoded
 * packets carry a raw `props` slice, so properties can be added without
 * changing the shape of the API. Only version 4 (3.1.1) is implemented now;
 * any other version is refused with MOAT_ERR_ARG.
 */
#ifndef MOAT_MQTT_H
#define MOAT_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"
#include "moat/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOAT_MQTT_V311 4u

/* Largest remaining length MQTT can express (4 length bytes). */
#define MOAT_MQTT_MAX_REMAINING 268435455u

typedef enum moat_mqtt_type {
    MOAT_MQTT_CONNECT = 1,
    MOAT_MQTT_CONNACK = 2,
    MOAT_MQTT_PUBLISH = 3,
    MOAT_MQTT_PUBACK = 4,
    MOAT_MQTT_PUBREC = 5,
    MOAT_MQTT_PUBREL = 6,
    MOAT_MQTT_PUBCOMP = 7,
    MOAT_MQTT_SUBSCRIBE = 8,
    MOAT_MQTT_SUBACK = 9,
    MOAT_MQTT_UNSUBSCRIBE = 10,
    MOAT_MQTT_UNSUBACK = 11,
    MOAT_MQTT_PINGREQ = 12,
    MOAT_MQTT_PINGRESP = 13,
    MOAT_MQTT_DISCONNECT = 14
} moat_mqtt_type;

/* SUBACK return code for a refused filter. */
#define MOAT_MQTT_SUBACK_FAILURE 0x80u

typedef struct moat_mqtt_str {
    const uint8_t *data;
    uint16_t len;
} moat_mqtt_str;

/* ---------------------------------------------------------------- codec -- */

typedef struct moat_mqtt_connect_pkt {
    uint8_t version;       /* MOAT_MQTT_V311 */
    bool clean_session;
    uint16_t keepalive_s;
    moat_mqtt_str client_id;
    bool has_will;
    uint8_t will_qos;
    bool will_retain;
    moat_mqtt_str will_topic;
    moat_mqtt_str will_payload;
    bool has_username;
    moat_mqtt_str username;
    bool has_password;
    moat_mqtt_str password;
} moat_mqtt_connect_pkt;

typedef struct moat_mqtt_publish_pkt {
    moat_mqtt_str topic;
    uint16_t packet_id;    /* 0 for QoS 0 */
    uint8_t qos;
    bool retain;
    bool dup;
    const uint8_t *payload;
    size_t payload_len;
} moat_mqtt_publish_pkt;

/* One entry of a SUBSCRIBE (qos used) or UNSUBSCRIBE (qos ignored). */
typedef struct moat_mqtt_sub {
    const char *filter;    /* NUL-terminated */
    uint8_t qos;
} moat_mqtt_sub;

/* A decoded packet. Slices point into the decoded buffer. */
typedef struct moat_mqtt_packet {
    uint8_t type;          /* moat_mqtt_type */
    uint8_t flags;         /* low nibble of the first byte */
    uint32_t remaining;    /* remaining length */
    moat_mqtt_str props;   /* MQTT 5 properties (empty for 3.1.1) */
    union {
        moat_mqtt_connect_pkt connect;
        struct {
            bool session_present;
            uint8_t return_code;
        } connack;
        moat_mqtt_publish_pkt publish;
        uint16_t packet_id; /* PUBACK PUBREC PUBREL PUBCOMP UNSUBACK */
        struct {
            uint16_t packet_id;
            const uint8_t *codes;
            size_t count;
        } suback;
        /* SUBSCRIBE / UNSUBSCRIBE: a validated list; walk it with
         * moat_mqtt_sublist_next(). */
        struct {
            uint16_t packet_id;
            const uint8_t *list;
            size_t list_len;
            size_t count;
        } sublist;
    } u;
} moat_mqtt_packet;

/*
 * Fixed header. On MOAT_OK, *type, *flags, *remaining and *header_len (2..5)
 * are set. Returns MOAT_ERR_WOULD_BLOCK when buf holds too few bytes to know,
 * MOAT_ERR_REMAINING_LENGTH when the length uses a fifth byte, or
 * MOAT_ERR_MALFORMED for packet type 0 or 15.
 */
moat_err moat_mqtt_decode_header(const uint8_t *buf, size_t len, uint8_t *type,
                                 uint8_t *flags, uint32_t *remaining,
                                 size_t *header_len);

/*
 * Decode one complete packet that a server sends to a client (CONNACK,
 * PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP).
 * `body` is the remaining-length bytes after the fixed header. Every
 * reserved bit, length, string and identifier is validated. A packet type a
 * server may not send gives MOAT_ERR_PROTOCOL.
 */
moat_err moat_mqtt_decode_from_server(uint8_t version, uint8_t type, uint8_t flags,
                                      const uint8_t *body, uint32_t remaining,
                                      moat_mqtt_packet *out);

/* The broker direction: packets a client sends (CONNECT, PUBLISH, PUBACK,
 * PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT). */
moat_err moat_mqtt_decode_from_client(uint8_t version, uint8_t type, uint8_t flags,
                                      const uint8_t *body, uint32_t remaining,
                                      moat_mqtt_packet *out);

/*
 * Decode one whole packet of any type from buf. *consumed is the packet's
 * full size. MOAT_ERR_WOULD_BLOCK means buf does not yet hold the whole packet.
 */
moat_err moat_mqtt_decode(uint8_t version, const uint8_t *buf, size_t len,
                          moat_mqtt_packet *out, size_t *consumed);

/* Walk a decoded SUBSCRIBE/UNSUBSCRIBE list. *pos starts at 0. qos may be
 * NULL (UNSUBSCRIBE). Returns false at the end. */
bool moat_mqtt_sublist_next(const moat_mqtt_packet *p, size_t *pos,
                            moat_mqtt_str *filter, uint8_t *qos);

/*
 * Encoders. Each writes one packet into buf[0..cap) and sets *len.
 * They validate what they write (strings, topics, filters, QoS, packet ids)
 * and return MOAT_ERR_NO_SPACE when cap is too small, writing nothing useful.
 */
moat_err moat_mqtt_encode_connect(uint8_t *buf, size_t cap, size_t *len,
                                  const moat_mqtt_connect_pkt *c);
moat_err moat_mqtt_encode_connack(uint8_t *buf, size_t cap, size_t *len,
                                  bool session_present, uint8_t return_code);
moat_err moat_mqtt_encode_publish(uint8_t *buf, size_t cap, size_t *len,
                                  const moat_mqtt_publish_pkt *p);
/* PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK with its packet id. */
moat_err moat_mqtt_encode_ack(uint8_t *buf, size_t cap, size_t *len,
                              uint8_t type, uint16_t packet_id);
moat_err moat_mqtt_encode_subscribe(uint8_t *buf, size_t cap, size_t *len,
                                    uint16_t packet_id, const moat_mqtt_sub *subs,
                                    size_t count);
moat_err moat_mqtt_encode_suback(uint8_t *buf, size_t cap, size_t *len,
                                 uint16_t packet_id, const uint8_t *codes,
                                 size_t count);
moat_err moat_mqtt_encode_unsubscribe(uint8_t *buf, size_t cap, size_t *len,
                                      uint16_t packet_id, const moat_mqtt_sub *subs,
                                      size_t count);
/* PINGREQ, PINGRESP or DISCONNECT. */
moat_err moat_mqtt_encode_empty(uint8_t *buf, size_t cap, size_t *len, uint8_t type);

/* Bytes needed for the fixed header of a packet with this remaining length. */
size_t moat_mqtt_header_size(uint32_t remaining);

/* --------------------------------------------------------- topic rules -- */

/* UTF-8 as MQTT requires: well formed, no surrogates, no U+0000. */
bool moat_mqtt_utf8_valid(const uint8_t *s, size_t len);
/* A topic name: 1..65535 bytes of valid UTF-8 with no '+' or '#'. */
bool moat_mqtt_topic_valid(const uint8_t *s, size_t len);
/* A topic filter: '+' fills a whole level, '#' is last and fills a level. */
bool moat_mqtt_filter_valid(const uint8_t *s, size_t len);
/* Does the filter match the topic name? A filter that starts with a wildcard
 * does not match a topic that starts with '$'. Both must be valid. */
bool moat_mqtt_topic_match(const uint8_t *filter, size_t flen,
                           const uint8_t *topic, size_t tlen);

/* --------------------------------------------------------------- client -- */

typedef enum moat_mqtt_state {
    MOAT_MQTT_IDLE = 0,     /* not started, or stopped by the application */
    MOAT_MQTT_BACKOFF,      /* link down; waiting for the next attempt */
    MOAT_MQTT_WAIT_CONNACK, /* CONNECT queued, waiting for CONNACK */
    MOAT_MQTT_CONNECTED,
    MOAT_MQTT_CLOSING       /* DISCONNECT queued; close after it is sent */
} moat_mqtt_state;

/* What to do with an incoming PUBLISH larger than the receive buffer. */
typedef enum moat_mqtt_large {
    MOAT_MQTT_LARGE_REFUSE = 0, /* report MOAT_MQTT_EV_ERROR/MOAT_ERR_TOO_LARGE
                                   with the topic, skip it, acknowledge it */
    MOAT_MQTT_LARGE_STREAM = 1  /* deliver MOAT_MQTT_EV_MESSAGE in pieces */
} moat_mqtt_large;

typedef enum moat_mqtt_event_type {
    MOAT_MQTT_EV_CONNECTED = 1, /* CONNACK accepted; session_present set */
    MOAT_MQTT_EV_DISCONNECTED,  /* link lost or closed; err says why */
    MOAT_MQTT_EV_MESSAGE,       /* incoming PUBLISH (or a piece of one) */
    MOAT_MQTT_EV_PUBLISHED,     /* outgoing QoS 1/2 PUBLISH fully acknowledged */
    MOAT_MQTT_EV_DROPPED,       /* outgoing PUBLISH discarded (clean session) */
    MOAT_MQTT_EV_SUBACK,        /* codes/count per filter; err set if any refused */
    MOAT_MQTT_EV_UNSUBACK,
    MOAT_MQTT_EV_ERROR          /* a non-fatal problem, e.g. MOAT_ERR_TOO_LARGE */
} moat_mqtt_event_type;

typedef struct moat_mqtt_event {
    moat_mqtt_event_type type;
    moat_err err;
    uint16_t packet_id;
    bool session_present;
    /* MESSAGE (and ERROR for a refused message): the topic and this piece.
     * offset is where the piece starts in the payload of total bytes; a
     * message that fits the buffer arrives in one piece (offset 0, len total).
     * The pointers are valid only during the callback. */
    moat_mqtt_str topic;
    const uint8_t *payload;
    size_t len;
    size_t offset;
    size_t total;
    uint8_t qos;
    bool retain;
    bool dup;
    /* SUBACK: one return code per filter (0..2 granted, 0x80 refused). */
    const uint8_t *codes;
    size_t count;
} moat_mqtt_event;

typedef void (*moat_mqtt_event_fn)(void *user, const moat_mqtt_event *ev);

/* Caller-owned settings. The client keeps a pointer: they must outlive it. */
typedef struct moat_mqtt_config {
    const char *client_id;          /* may be "" with clean_session */
    const char *username;           /* NULL for none */
    const uint8_t *password;        /* NULL for none */
    uint16_t password_len;
    const char *will_topic;         /* NULL for no will */
    const uint8_t *will_payload;
    uint16_t will_len;
    uint8_t will_qos;
    bool will_retain;
    bool clean_session;
    uint16_t keepalive_s;           /* 0 disables keep-alive */
    uint32_t connack_timeout_ms;    /* 0 means 10000 */
    uint32_t ping_timeout_ms;       /* wait for PINGRESP; 0 means keepalive/2, at least 1000 */
    uint32_t backoff_base_ms;       /* 0 means 1000 */
    uint32_t backoff_cap_ms;        /* 0 means 60000 */
    uint32_t backoff_stable_ms;     /* connected this long resets backoff; 0 means 30000 */
    uint32_t (*random)(void *user); /* uniform 32-bit random values, for jitter */
    moat_mqtt_event_fn on_event;
    void *user;                     /* passed to random and on_event */
    uint8_t large;                  /* moat_mqtt_large */
    uint16_t max_inflight;          /* our QoS 1/2 PUBLISH sent and not yet
                                       complete, at once; more wait in store.
                                       0 means 20: Mosquitto drops QoS 2 past its
                                       max_inflight_messages (20) silently */
} moat_mqtt_config;

/* One slot of the in-flight window. Opaque to the caller: give an array. */
typedef struct moat_mqtt_inflight {
    uint32_t len;       /* stored PUBLISH size; SUBSCRIBE: filter count */
    uint16_t packet_id;
    uint8_t kind;
    uint8_t flags;
} moat_mqtt_inflight;

/* Bytes of the optional incoming-QoS 2 identifier set: one bit per id. */
#define MOAT_MQTT_QOS2_SET_SIZE 8192u

/* Caller-owned memory. Sizes are fixed for the client's life.
 *  tx:    serialised packets waiting to be sent; a packet must fit whole.
 *  rx:    one incoming packet; larger PUBLISH is streamed or refused.
 *  store: copies of outgoing QoS 1/2 PUBLISH until acknowledged, for resend.
 *  inflight: the window: one slot per unacknowledged PUBLISH, PUBREL,
 *         SUBSCRIBE, UNSUBSCRIBE and incoming QoS 2 awaiting PUBREL.
 *  qos2_set: optional, MOAT_MQTT_QOS2_SET_SIZE bytes, zeroed by init: the
 *         incoming QoS 2 identifiers awaiting PUBREL, as a bit set. With it,
 *         incoming QoS 2 is exactly-once however many the broker sends at
 *         once (Mosquitto sends a whole queued session at once, past its own
 *         max_inflight_messages). Without it (NULL, for small devices) they
 *         take window slots; when none is free a message is delivered and
 *         acknowledged untracked, after an ERROR event (MOAT_ERR_WINDOW_FULL),
 *         and could be delivered twice if the link then drops before PUBREL. */
typedef struct moat_mqtt_buffers {
    uint8_t *tx;
    size_t tx_size;
    uint8_t *rx;
    size_t rx_size;
    uint8_t *store;
    size_t store_size;
    moat_mqtt_inflight *inflight;
    size_t inflight_count;
    uint8_t *qos2_set;
} moat_mqtt_buffers;

typedef struct moat_mqtt_client {
    const moat_mqtt_config *cfg;
    uint8_t *tx;
    uint8_t *rx;
    uint8_t *store;
    moat_mqtt_inflight *win;
    uint8_t *qos2_set;       /* optional bit set of incoming QoS 2 ids */
    uint32_t tx_size, tx_len;
    uint32_t rx_size, rx_len;
    uint32_t store_size, store_len;
    uint32_t rx_remaining;   /* remaining length of the packet being read */
    uint32_t rx_body;        /* body bytes of it seen so far */
    uint32_t tx_reserve;     /* tx bytes kept free for replies during input */
    uint32_t last_tx_ms;     /* keep-alive: last time a packet went out */
    uint32_t deadline_ms;    /* CONNACK or PINGRESP deadline; retry time */
    uint32_t connected_ms;   /* when CONNACK arrived, for stable backoff reset */
    uint16_t win_count;      /* slots available */
    uint16_t win_used;       /* slots in use, oldest first */
    uint16_t next_id;
    uint8_t state;           /* moat_mqtt_state */
    uint8_t rx_state;        /* receive parser state */
    uint8_t rx_hdr;          /* first byte of the packet being read */
    uint8_t rx_lenbytes;     /* remaining-length bytes read */
    uint8_t flags;           /* MOAT_MQTT_F_* */
    uint8_t attempt;         /* reconnect attempts since the last stable link */
} moat_mqtt_client;

/* Check the buffers and settings and make an IDLE client. Nothing is sent. */
moat_err moat_mqtt_init(moat_mqtt_client *c, const moat_mqtt_config *cfg,
                        const moat_mqtt_buffers *bufs);

/* Ask for a connection: IDLE -> BACKOFF with the first attempt due now. */
moat_err moat_mqtt_start(moat_mqtt_client *c, uint32_t now_ms);

/* True when the client is in BACKOFF and its attempt time has come: the
 * caller should open the transport, then call moat_mqtt_link_up(). */
bool moat_mqtt_connect_due(const moat_mqtt_client *c, uint32_t now_ms);

/* The transport is open: queue CONNECT and wait for CONNACK. */
moat_err moat_mqtt_link_up(moat_mqtt_client *c, uint32_t now_ms);

/*
 * The transport failed, closed, or could not be opened (err says why; pass
 * MOAT_OK after a DISCONNECT the application asked for). Unsent bytes are
 * dropped, QoS 1/2 state is kept for the next session, and the next attempt
 * is scheduled with backoff and full jitter: a random delay in
 * [0, min(cap, base * 2^attempt)]. The attempt count resets when the link
 * had been up for backoff_stable_ms. After a requested DISCONNECT the client
 * goes IDLE instead. Emits MOAT_MQTT_EV_DISCONNECTED once per link, with err.
 * In BACKOFF, only a failed due attempt counts: calling this again for a
 * link the client already took down itself changes nothing.
 */
void moat_mqtt_link_down(moat_mqtt_client *c, moat_err err, uint32_t now_ms);

/*
 * Feed bytes received from the transport, in any chunking. Emits events.
 * Returns MOAT_OK, or a fatal error (malformed packet, refused CONNACK,
 * protocol violation): the client has already called link_down itself, and
 * the caller must close the transport. *consumed (may be NULL) says how much
 * of data was used; on MOAT_OK it is all of it.
 *
 * Replies (PUBACK, PUBREC, PUBREL, PUBCOMP) go into tx. A caller that feeds
 * at most (free tx space - 4) bytes per call never runs out of room, because
 * no reply is longer than the bytes that caused it, plus one packet begun
 * earlier; moat_mqtt_pump() does this. Otherwise, when a reply does not fit,
 * input stops after that packet and returns MOAT_ERR_WOULD_BLOCK with
 * *consumed short: drain the output, then call again with the rest (or with
 * len 0) - nothing is lost. Event callbacks may publish, subscribe,
 * unsubscribe and disconnect, but not call input, tick or link functions.
 */
moat_err moat_mqtt_input(moat_mqtt_client *c, const uint8_t *data, size_t len,
                         size_t *consumed, uint32_t now_ms);

/* Bytes waiting to be sent: returns a pointer and sets *len (0 if none). */
const uint8_t *moat_mqtt_output(const moat_mqtt_client *c, size_t *len);

/* n bytes from moat_mqtt_output() were sent. */
void moat_mqtt_output_done(moat_mqtt_client *c, size_t n, uint32_t now_ms);

/*
 * Advance timers: send PINGREQ when idle for keepalive_s, declare the link
 * dead when PINGRESP or CONNACK is late. Returns MOAT_OK or a fatal error
 * (MOAT_ERR_KEEPALIVE, MOAT_ERR_CONNACK_TIMEOUT): the client has called
 * link_down and the caller must close the transport.
 */
moat_err moat_mqtt_tick(moat_mqtt_client *c, uint32_t now_ms);

/* Milliseconds until tick or an attempt is next due (UINT32_MAX: never). */
uint32_t moat_mqtt_next_timeout(const moat_mqtt_client *c, uint32_t now_ms);

typedef struct moat_mqtt_message {
    const char *topic;      /* NUL-terminated */
    const void *payload;
    size_t len;
    uint8_t qos;
    bool retain;
} moat_mqtt_message;

/*
 * Publish. QoS 0 needs a connected client and room in tx
 * (MOAT_ERR_STATE / MOAT_ERR_WOULD_BLOCK). QoS 1 and 2 take a window slot
 * and store space (MOAT_ERR_WINDOW_FULL when none) and may be called while
 * the link is down: they are sent, in order, once connected. *packet_id
 * (may be NULL) is the identifier reported in MOAT_MQTT_EV_PUBLISHED.
 */
moat_err moat_mqtt_publish(moat_mqtt_client *c, const moat_mqtt_message *m,
                           uint16_t *packet_id, uint32_t now_ms);

/* Subscribe to count filters in one SUBSCRIBE. Needs a connected client. */
moat_err moat_mqtt_subscribe(moat_mqtt_client *c, const moat_mqtt_sub *subs,
                             size_t count, uint16_t *packet_id, uint32_t now_ms);
moat_err moat_mqtt_unsubscribe(moat_mqtt_client *c, const moat_mqtt_sub *subs,
                               size_t count, uint16_t *packet_id, uint32_t now_ms);

/* Queue DISCONNECT. Once output is drained, close the transport and call
 * moat_mqtt_link_down(c, MOAT_OK, now): the client goes IDLE. */
moat_err moat_mqtt_disconnect(moat_mqtt_client *c, uint32_t now_ms);

/* Current state, and how many window slots are in use. */
moat_mqtt_state moat_mqtt_get_state(const moat_mqtt_client *c);
size_t moat_mqtt_inflight_used(const moat_mqtt_client *c);

/* ----------------------------------------------------------------- loop -- */

/*
 * Move bytes between the client and a connected transport: read what is
 * available into the client, write what the client has queued, run
 * moat_mqtt_tick. Returns MOAT_OK while the link is usable; otherwise the
 * client is already in BACKOFF (or IDLE after a requested DISCONNECT) and the
 * caller must close the transport. Never blocks.
 */
moat_err moat_mqtt_pump(moat_mqtt_client *c, const moat_transport *t, uint32_t now_ms);

#ifdef __cplusplus
}
#endif
#endif
