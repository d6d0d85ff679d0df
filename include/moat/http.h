/*
 * moat/http.h - sans-I/O HTTP/1.1 GET client engine (src/core/http_get.c).
 *
 * The device fetches firmware images and config.json from the update server
 * with one GET per connection (the seed's protocol):
 *
 *   GET <downloadpath>/firmware.bin?curimage=<image>   200 next image,
 *                                                      304 when current
 *   GET <downloadpath>/config.json                     200 the device's config
 *
 * A download cut in the middle is resumed on a new connection with
 * "Range: bytes=<received>-", and the server answers 206 Partial Content.
 *
 * The engine builds the request bytes and parses the response with
 * http-parser (libhttp-parser-dev); it never touches a socket, never reads a
 * clock and never allocates. Body bytes go to the caller's callback as they
 * arrive, each with its offset in the whole resource, so they can stream
 * straight into the OTA verifier without a buffer the size of the image.
 *
 * Driving it:
 *
 *     moat_http_request rq = { .host = "updates.example", .port = 8443,
 *                              .path = "/fw/firmware.bin?curimage=1.2.0",
 *                              .range_from = already_have,
 *                              .on_body = feed_verifier, .user = &v };
 *     moat_http_get_init(&g, &rq, req, sizeof req, &req_len);
 *     send req[0..req_len) over the (TLS) connection
 *     while ((n = recv(...)) > 0) {
 *         e = moat_http_input(&g, buf, n, &used);
 *         if (e != MOAT_ERR_WOULD_BLOCK) break;   OK: done; else error
 *     }
 *     on end of stream: e = moat_http_eof(&g);
 *     moat_http_status(&g) is 200, 206 or 304 after MOAT_OK.
 *
 * What the engine never trusts:
 *  - Header bytes: the status line and headers together may not exceed
 *    max_header_bytes; the engine never feeds http-parser more than that
 *    before the headers end (MOAT_ERR_TOO_LARGE).
 *  - Lengths: a body never exceeds its Content-Length (http-parser stops
 *    there; what follows ends the response), and a connection that ends
 *    before Content-Length bytes, or inside a chunked body, is a truncation
 *    (MOAT_ERR_CLOSED, resumable from moat_http_next_offset()).
 *  - 206: Content-Range must say "bytes <range_from>-<last>/<total>" with
 *    last < total, last not past the last byte asked for (range_len), and,
 *    when Content-Length is present, last - range_from + 1 == Content-Length;
 *    else MOAT_ERR_PROTOCOL. A 206 to a request without Range is refused.
 *  - Sizes: a resource larger than max_total is refused before any body byte.
 *  - Any status other than 200, 206 and 304 (1xx interim answers are
 *    skipped) is an error with words: "update server answered 500 Internal
 *    Server Error for /firmware.bin".
 *
 * Offsets: with range_from > 0 the body normally starts at range_from (206).
 * A server may ignore Range and answer 200 with the whole resource: the body
 * then starts again at offset 0, the on_start callback sees offset 0, and
 * the caller must restart its consumer (or refuse by returning an error).
 */
#ifndef MOAT_HTTP_H
#define MOAT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#include "moat/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default limit on the status line plus all headers of a response. */
#define MOAT_HTTP_HEADER_MAX_DEFAULT 4096u

/* The resource length is not known (no Content-Length, chunked, or 304). */
#define MOAT_HTTP_UNKNOWN UINT64_MAX

struct moat_http_get;

/* Body bytes data[0..len) sit at byte `offset` of the whole resource. Return
 * MOAT_OK to go on, or an error to abort: moat_http_input returns it. */
typedef moat_err (*moat_http_body_fn)(void *user, uint64_t offset,
                                      const uint8_t *data, size_t len);

/* Called once when the headers of the final response are complete and
 * accepted (status 200, 206 or 304), before any body byte. Read the status,
 * moat_http_body_offset() and moat_http_total() there. Return MOAT_OK to go
 * on, or an error to abort. May be NULL. */
typedef moat_err (*moat_http_start_fn)(void *user, const struct moat_http_get *g);

/* What to fetch. Strings are read only during moat_http_get_init(). */
typedef struct moat_http_request {
    const char *host;        /* Host header: a name or address, no port;
                                IPv6 literals without brackets */
    uint16_t port;           /* added to Host unless 0 or 443 */
    const char *path;        /* absolute path and query, starts with '/' */
    uint64_t range_from;     /* > 0: ask for "Range: bytes=<range_from>-" */
    uint64_t range_len;      /* > 0: ask for just this many bytes,
                                "Range: bytes=<from>-<from + len - 1>" (e.g.
                                an image header before resuming its payload) */
    const char *const *headers; /* extra "Name: value" lines (no CRLF),
                                   NULL-terminated; NULL for none */
    uint32_t max_header_bytes;  /* 0: MOAT_HTTP_HEADER_MAX_DEFAULT */
    uint64_t max_total;      /* refuse a resource larger than this; 0: no limit */
    const char *peer_name;   /* the server in messages; NULL: "update server" */
    moat_http_body_fn on_body;   /* required */
    moat_http_start_fn on_start; /* optional */
    void *user;                  /* passed to both callbacks */
} moat_http_request;

/* One GET exchange. Opaque: allocate it and use the functions below. */
typedef struct moat_http_get {
    http_parser parser;
    moat_http_body_fn on_body;
    moat_http_start_fn on_start;
    void *user;
    uint64_t range_from;    /* as requested */
    uint64_t range_last;    /* last byte asked for, or UNKNOWN (open range) */
    uint64_t max_total;
    uint64_t body_offset;   /* offset of the first body byte of this response */
    uint64_t body_len;      /* bytes this response promises, or UNKNOWN */
    uint64_t total;         /* length of the whole resource, or UNKNOWN */
    uint64_t received;      /* body bytes delivered by this response */
    uint32_t header_max;
    uint32_t header_seen;   /* bytes fed before the headers completed */
    moat_err err;           /* sticky error */
    uint16_t status;        /* of the final response; 0 before */
    uint8_t state;          /* internal */
    uint8_t field;          /* internal: which header is being read */
    bool field_done;        /* internal: header name complete */
    bool ranged;            /* the request carried a Range header */
    bool range_seen;        /* a Content-Range header arrived */
    uint8_t name_len;       /* internal */
    uint8_t value_len;      /* internal */
    uint8_t etag_len;       /* internal */
    char name[14];          /* internal: the start of a header name */
    char value[72];         /* internal: the Content-Range value */
    char etag[72];          /* the response's ETag, "" if none or unusable */
    char reason[48];        /* reason phrase of the final response */
    char what[64];          /* the path without query, for messages */
    char peer[24];          /* the server in messages */
    char msg[200];          /* last error in words */
} moat_http_get;

/*
 * Check rq, reset g, and write the request into buf[0..cap), setting *len:
 *
 *   GET <path> HTTP/1.1\r\nHost: <host>[:<port>]\r\n
 *   [Range: bytes=<range_from>-[<last>]\r\n]<headers>\r\n
 *   Connection: close\r\nUser-Agent: moat\r\n\r\n
 *
 * Returns MOAT_OK, MOAT_ERR_ARG (missing on_body, host or path, a path not
 * starting with '/', a space, CR, LF or other control byte in host, path or
 * a header line, a header line without "Name: "), or MOAT_ERR_NO_SPACE when
 * the request does not fit in cap (*len is then the size needed).
 */
moat_err moat_http_get_init(moat_http_get *g, const moat_http_request *rq,
                            uint8_t *buf, size_t cap, size_t *len);

/*
 * Feed received bytes. *used (may be NULL) is set to the bytes consumed.
 * Returns:
 *  MOAT_ERR_WOULD_BLOCK  all bytes consumed, the response is not complete
 *  MOAT_OK               the response is complete (bytes past it are left
 *                        unused); moat_http_status() is 200, 206 or 304
 *  MOAT_ERR_MALFORMED    not HTTP/1.x, or broken framing (http-parser's
 *                        reason in the words)
 *  MOAT_ERR_TOO_LARGE    headers over max_header_bytes, or the resource
 *                        over max_total
 *  MOAT_ERR_PROTOCOL     a status other than 200/206/304 (moat_http_status
 *                        says which), a bad or mismatching Content-Range,
 *                        a 206 without Range, an Upgrade
 *  any error returned by a callback
 * After an error or MOAT_OK, further calls return the same value.
 */
moat_err moat_http_input(moat_http_get *g, const uint8_t *data, size_t len,
                         size_t *used);

/*
 * The connection ended (the peer closed it, or it broke). Returns MOAT_OK
 * when the response was complete (also a body without length, which ends at
 * end of stream), MOAT_ERR_CLOSED when it was truncated (in the headers, or
 * before all promised body bytes: words say how many arrived), or the
 * earlier sticky error.
 */
moat_err moat_http_eof(moat_http_get *g);

/* The status code of the final response, 0 before its status line. */
int moat_http_status(const moat_http_get *g);

/* True after MOAT_OK from input or eof. */
bool moat_http_done(const moat_http_get *g);

/* Offset in the resource of this response's first body byte: range_from
 * for a 206, 0 for a 200. */
uint64_t moat_http_body_offset(const moat_http_get *g);

/* Length of the whole resource (Content-Length of a 200, the total of a
 * 206's Content-Range), or MOAT_HTTP_UNKNOWN. */
uint64_t moat_http_total(const moat_http_get *g);

/* Body bytes delivered by this response so far. */
uint64_t moat_http_received(const moat_http_get *g);

/* Where a new request should resume: body_offset + received, once headers
 * were accepted; range_from before that. */
uint64_t moat_http_next_offset(const moat_http_get *g);

/* The final response's ETag as sent (quotes included), or "" when it had
 * none or one that cannot be sent back (over 71 bytes, spaces or controls).
 * Keep it with the partial bytes and send it as "If-Range: <etag>" when
 * resuming: a server whose resource changed meanwhile then answers 200 with
 * the new one instead of 206 with a piece of it. */
const char *moat_http_etag(const moat_http_get *g);

/* The last error in words, naming the server and the path; "" if none. */
const char *moat_http_last_error(const moat_http_get *g);

#ifdef __cplusplus
}
#endif
#endif
