/*
 * moat/otamqtt.h - an update image over MQTT, in blocks the device asks for.
 *
 * The seed could not hold an image in memory; moat sends it in blocks on the
 * connection the device already has, and the device asks for each block, so
 * it never gets more than it can take. The transfer survives a cut link and
 * a restart: a block map kept in a moat_flash_area says which blocks are
 * already written and synced, and the device asks again from there.
 *
 * Topics, under a base topic B (by default moat/<id>/ota; all QoS 1, never
 * retained):
 *
 *   B/offer              operator -> device  {"size":N,"block":K,"sha256":"<64 hex>"}
 *   B/req                device -> operator  {"sha256":"<64 hex>","block":n,"count":c}
 *   B/blk/<tag>/<n>      operator -> device  the bytes of block n, raw
 *   B/status             device -> operator  {"sha256":"<64 hex>","state":S,
 *                                             "received":R,"size":N[,"error":"..."]}
 *
 * <tag> is the first 16 hex digits of the image's SHA-256, so a block left
 * over from another image can never be taken for this one. Block n holds
 * image bytes [n*K, min(N, (n+1)*K)). S is "receiving" (sent when a
 * transfer starts or resumes; R says from where), "stalled" (nobody answers
 * the requests; the progress is kept), "done" (every byte is in and the
 * sink's finish accepted the image) or "failed" (error says why).
 * docs/OTA.md describes the protocol and the operator's side,
 * `moat ota push`.
 *
 * The device engine (moat_otamqtt) is sans-I/O: the caller gives it the
 * messages that arrive on B/offer and B/blk/#, tells it when the link comes
 * and goes, and publishes what moat_otamqtt_output() gives. It asks for
 * blocks in order, `window` blocks ahead, and hands the bytes to a sink (the
 * image verifier and slot writer) strictly in order, from the offset the
 * sink asks for, so the sink can hash as it goes. No byte reaches the sink
 * twice within a run; after a restart the sink is told where it may resume.
 *
 * The block map (cfg->state, optional): a header (MOAT_OTAMQTT_HEADER_SIZE
 * bytes: magic, the offer, a CRC) then one byte per block, written once to
 * MOAT_OTAMQTT_MARK when the block is durable in the sink. This fits flash
 * semantics (erase once per transfer, each byte written at most once).
 * Every `checkpoint` blocks, and when the link goes down, the engine calls
 * the sink's checkpoint, then marks the blocks it says are durable and
 * syncs the map: a mark is never written before its block is durable.
 *
 * Nothing here allocates, reads a clock or does I/O except through the
 * caller's flash area and sink.
 */
#ifndef MOAT_OTAMQTT_H
#define MOAT_OTAMQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"
#include "moat/flash.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOAT_OTAMQTT_BLOCK_MIN 64u          /* smallest block accepted */
#define MOAT_OTAMQTT_BLOCK_MAX 65536u       /* largest block accepted */
#define MOAT_OTAMQTT_BLOCK_DEFAULT 1024u    /* what `moat ota push` sends */
#define MOAT_OTAMQTT_BASE_MAX 128u          /* base topic length, NUL included */
#define MOAT_OTAMQTT_TOPIC_MAX 192u         /* any topic of a transfer, NUL included */
#define MOAT_OTAMQTT_ERROR_MAX 160u         /* words of a failure, NUL included */
#define MOAT_OTAMQTT_PAYLOAD_MAX 512u       /* any JSON message of the protocol */
#define MOAT_OTAMQTT_HEADER_SIZE 64u        /* block map header bytes */
#define MOAT_OTAMQTT_MARK 0x4Bu             /* a block map byte: block durable */
#define MOAT_OTAMQTT_TAG_LEN 16u            /* hex digits of the SHA-256 in block topics */

/* What an offer announces. blocks is derived: ceil(size / block). */
typedef struct moat_otamqtt_offer {
    uint32_t size;
    uint32_t block;
    uint32_t blocks;
    uint8_t sha256[32];
} moat_otamqtt_offer;

/*
 * Where the image goes (on a device: the verifier of moat/ota.h writing the
 * inactive slot). Every function gets ctx. Functions that can fail may write
 * words into why[0..cap) (NUL-terminated); they become the "error" of the
 * failed status.
 *
 *  begin       a transfer starts (resume 0) or resumes: image bytes
 *              [0, resume) were made durable in an earlier run (resume is a
 *              multiple of the block size, from the block map). An error
 *              refuses; on a resume the engine then starts over (begin again
 *              with 0, block map erased).
 *  offset      the image offset the sink wants next. NULL means "where the
 *              last write ended". It may jump (the verifier, resumed, takes
 *              the header from offset 0 and then wants the payload from where
 *              the slot ends, which may lie inside the chunk just written):
 *              the engine gives the rest of the block from there, or asks
 *              for the block that holds it. It must always be past the
 *              offset of the last write, and never past the image's end.
 *  write       image bytes at offset, which is always the sink's offset.
 *              Any error fails the transfer.
 *  checkpoint  make what was written durable and say up to where:
 *              *durable = image bytes [0, durable) that a restart can keep
 *              (0 when none). Required with a block map.
 *  finish      every byte is in: check the image (signature, payload hash,
 *              version...). MOAT_OK makes the transfer "done"; an error
 *              makes it "failed".
 *  abort       the transfer is given up (failed, replaced by another image,
 *              or moat_otamqtt_abort). May be NULL.
 *
 * The offer's SHA-256 names the image: a transfer resumes only for the same
 * SHA-256, size and block size, and blocks are tagged with it. What the
 * device trusts is the image's own signature, checked by the sink.
 */
typedef struct moat_otamqtt_sink {
    moat_err (*begin)(void *ctx, const moat_otamqtt_offer *offer, uint32_t resume,
                      char *why, size_t cap);
    uint32_t (*offset)(void *ctx);
    moat_err (*write)(void *ctx, uint32_t offset, const uint8_t *data, size_t len,
                      char *why, size_t cap);
    moat_err (*checkpoint)(void *ctx, uint32_t *durable);
    moat_err (*finish)(void *ctx, const moat_otamqtt_offer *offer, char *why, size_t cap);
    void (*abort)(void *ctx);
    void *ctx;
} moat_otamqtt_sink;

/* Caller-owned settings; the engine keeps the pointer: they must outlive it.
 * 0 means the default. */
typedef struct moat_otamqtt_config {
    const char *base;            /* expanded base topic, e.g. "moat/a0b1c2d3e4f5/ota" */
    const moat_flash_area *state;/* the block map; NULL: no resume after a restart */
    moat_otamqtt_sink sink;
    uint32_t max_size;           /* largest image taken (the slot size); required */
    uint32_t max_block;          /* largest block taken whole: at most what the MQTT
                                    rx buffer holds with topic and header. 0 means
                                    MOAT_OTAMQTT_BLOCK_DEFAULT */
    uint16_t window;             /* blocks asked for ahead. 0 means 8 */
    uint16_t checkpoint;         /* blocks between block map updates. 0 means 32 */
    uint32_t timeout_ms;         /* no block this long: ask again. 0 means 5000 */
    uint8_t max_retries;         /* asks without an answer before "stalled". 0 means 6 */
} moat_otamqtt_config;

typedef enum moat_otamqtt_state {
    MOAT_OTAMQTT_IDLE = 0,   /* no transfer */
    MOAT_OTAMQTT_RECEIVING,  /* asking for and taking blocks */
    MOAT_OTAMQTT_STALLED,    /* nobody answered; progress kept; a new offer of
                                the same image or the next link resumes */
    MOAT_OTAMQTT_DONE,       /* image complete and accepted by the sink's finish */
    MOAT_OTAMQTT_FAILED      /* given up; moat_otamqtt_error() says why */
} moat_otamqtt_state;

/* A message to publish (QoS 1, not retained). Pointers into the engine,
 * valid until the next call on it. */
typedef struct moat_otamqtt_msg {
    const char *topic;
    const uint8_t *payload;
    size_t len;
} moat_otamqtt_msg;

/* The device engine. Opaque: use the functions. */
typedef struct moat_otamqtt {
    const moat_otamqtt_config *cfg;
    moat_otamqtt_offer offer;    /* the current (or last) transfer */
    uint32_t want;               /* image offset the sink wants next */
    uint32_t resume;             /* where this run resumed (block map) */
    uint32_t requested;          /* first block not yet asked for on this link */
    uint32_t persisted;          /* blocks marked durable in the block map */
    uint32_t since_checkpoint;   /* blocks taken since the last checkpoint */
    uint32_t req_start, req_count; /* the request being published */
    uint32_t deadline_ms;        /* ask again when no block came by then */
    uint16_t window, checkpoint;
    uint32_t timeout_ms;
    uint32_t max_block;
    uint8_t max_retries;
    uint8_t retries;
    uint8_t state;               /* moat_otamqtt_state */
    bool have_offer;             /* offer holds a transfer (any state but IDLE) */
    bool begun;                  /* the sink's begin was called in this run */
    bool online;                 /* link up and subscribed */
    bool want_status;            /* a status message is due */
    bool want_request;           /* a request may be due */
    bool gap_asked;              /* asked again after a gap, since the last block */
    bool map_ok;                 /* the block map holds this transfer's header */
    uint8_t out_kind;            /* what moat_otamqtt_output gave last */
    char error[MOAT_OTAMQTT_ERROR_MAX];
    char topic[MOAT_OTAMQTT_TOPIC_MAX];
    uint8_t payload[MOAT_OTAMQTT_PAYLOAD_MAX];
} moat_otamqtt;

/*
 * Check the settings and read the block map. A transfer found there (valid
 * header, this config's limits) is RECEIVING from its first unmarked block
 * and resumes at the next moat_otamqtt_link_up(); anything else in the map
 * is ignored (and erased when a transfer starts). Returns MOAT_OK,
 * MOAT_ERR_ARG (no base, base too long or with a wildcard, no begin, write
 * or finish, no checkpoint with a block map, max_size 0, max_block outside
 * the limits, a block map smaller than its header plus one block), or the
 * flash area's read error: the engine is then usable but IDLE, as if the
 * map were empty (moat_otamqtt_error says so).
 */
moat_err moat_otamqtt_init(moat_otamqtt *e, const moat_otamqtt_config *cfg, uint32_t now_ms);

/* The caller subscribed to B/offer and B/blk/# (QoS 1) and got its SUBACK:
 * a transfer in progress asks for its next block and says "receiving". */
void moat_otamqtt_link_up(moat_otamqtt *e, uint32_t now_ms);

/* The link is gone: checkpoint now, forget what was asked for. */
void moat_otamqtt_link_down(moat_otamqtt *e, uint32_t now_ms);

/*
 * A message that arrived (whole: offset 0, len == total). Returns
 * MOAT_ERR_TOPIC when the topic is none of this engine's (route it
 * elsewhere), else MOAT_OK: the engine took it, ignored it (a duplicate, a
 * block of another image) or reported a problem in a status message. A
 * retained message is refused (an old offer would restart a transfer at
 * every connection): pass retain.
 */
moat_err moat_otamqtt_message(moat_otamqtt *e, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t len, bool retain,
                              uint32_t now_ms);

/* Timers: ask again after timeout_ms without a block; "stalled" after
 * max_retries asks. */
void moat_otamqtt_tick(moat_otamqtt *e, uint32_t now_ms);

/* Milliseconds until tick is due (UINT32_MAX: nothing to wait for). */
uint32_t moat_otamqtt_next_timeout(const moat_otamqtt *e, uint32_t now_ms);

/* The next message to publish, if any (only while online): publish it at
 * QoS 1, then call moat_otamqtt_output_done(). If the publish fails (window
 * full), call output again later: the same message comes back. */
bool moat_otamqtt_output(moat_otamqtt *e, moat_otamqtt_msg *m);
void moat_otamqtt_output_done(moat_otamqtt *e, uint32_t now_ms);

/* Give up the transfer (its progress too): the sink's abort, map erased. */
void moat_otamqtt_abort(moat_otamqtt *e);

/* After DONE or FAILED, back to IDLE (the outcome has been acted on). */
void moat_otamqtt_reset(moat_otamqtt *e);

moat_otamqtt_state moat_otamqtt_get_state(const moat_otamqtt *e);
/* Bytes of the image written to the sink so far, and the image size. */
uint32_t moat_otamqtt_received(const moat_otamqtt *e);
const moat_otamqtt_offer *moat_otamqtt_current(const moat_otamqtt *e); /* NULL in IDLE */
/* Why the last transfer failed or stalled ("" when it did not). */
const char *moat_otamqtt_error(const moat_otamqtt *e);
/* "idle", "receiving", "stalled", "done", "failed". */
const char *moat_otamqtt_state_name(moat_otamqtt_state s);

/* ------------------------------------------ messages (both sides) -- */

/* A block request. */
typedef struct moat_otamqtt_request {
    uint8_t sha256[32];
    uint32_t block;
    uint32_t count;
} moat_otamqtt_request;

/* A status report, as the operator reads it. */
typedef struct moat_otamqtt_status {
    uint8_t sha256[32];
    moat_otamqtt_state state;    /* RECEIVING, STALLED, DONE or FAILED */
    uint32_t received;
    uint32_t size;
    char error[MOAT_OTAMQTT_ERROR_MAX]; /* "" when absent */
} moat_otamqtt_status;

/* base + "/" + leaf into buf[0..cap), NUL-terminated. MOAT_ERR_NO_SPACE when
 * it does not fit, MOAT_ERR_TOPIC when base is empty or holds + or #. */
moat_err moat_otamqtt_topic(char *buf, size_t cap, const char *base, const char *leaf);

/* B/blk/<tag>/<n> of the image with this SHA-256. */
moat_err moat_otamqtt_block_topic(char *buf, size_t cap, const char *base,
                                  const uint8_t sha256[32], uint32_t n);

/* Parse topic as B/blk/<tag>/<n>: tag (16 hex digits, case-insensitive) into
 * tag[0..8) as bytes, n decimal without leading zeros. MOAT_ERR_TOPIC
 * when it is not such a topic under base. */
moat_err moat_otamqtt_parse_block_topic(const char *base, const char *topic, size_t len,
                                        uint8_t tag[8], uint32_t *n);

/* Check an offer's numbers (size >= 1, MOAT_OTAMQTT_BLOCK_MIN <= block <=
 * MOAT_OTAMQTT_BLOCK_MAX) and set blocks. */
moat_err moat_otamqtt_offer_check(moat_otamqtt_offer *o);

/* JSON of each message (one line, no spaces) into buf[0..cap) with a NUL;
 * *len without it. MOAT_ERR_NO_SPACE when cap is too small
 * (MOAT_OTAMQTT_PAYLOAD_MAX always suffices). */
moat_err moat_otamqtt_offer_json(const moat_otamqtt_offer *o, char *buf, size_t cap,
                                 size_t *len);
moat_err moat_otamqtt_request_json(const moat_otamqtt_request *r, char *buf, size_t cap,
                                   size_t *len);
moat_err moat_otamqtt_status_json(const moat_otamqtt_status *s, char *buf, size_t cap,
                                  size_t *len);

/*
 * Parse each message. Strict about what is there (a JSON object; numbers
 * are integers in range; sha256 is 64 hex digits; an offer passes
 * moat_otamqtt_offer_check; count >= 1), lenient about what is not:
 * unknown members are ignored, so a newer peer can add some. Returns
 * MOAT_OK or MOAT_ERR_MALFORMED (MOAT_ERR_ARG for an offer with bad
 * numbers); why (may be NULL) gets words naming the member.
 */
moat_err moat_otamqtt_parse_offer(const uint8_t *p, size_t len, moat_otamqtt_offer *o,
                                  char *why, size_t cap);
moat_err moat_otamqtt_parse_request(const uint8_t *p, size_t len, moat_otamqtt_request *r,
                                    char *why, size_t cap);
moat_err moat_otamqtt_parse_status(const uint8_t *p, size_t len, moat_otamqtt_status *s,
                                   char *why, size_t cap);

/* 64 lowercase hex digits and a NUL. */
void moat_otamqtt_hex(const uint8_t sha256[32], char out[65]);

#ifdef __cplusplus
}
#endif
#endif
