/*
 * moat/json.h - small JSON reader and writer for config.json, command
 * payloads and the status and result documents.
 *
 * Reading: jsmn (Debian's libjsmn-dev, header-only) tokenizes the text into
 * a caller-given token array; moat_json_parse() then checks everything jsmn
 * lets through (separators, trailing data, number and literal grammar, raw
 * control characters, UTF-8), so a parsed document is valid JSON (RFC 8259).
 * The getters read values out of the tokens: strings are unescaped (\uXXXX
 * and surrogate pairs to UTF-8) into caller buffers, integers are range
 * checked. Tokens point into the caller's text, which must outlive them.
 *
 * Writing: moat_json_writer appends to a caller buffer, escapes strings and
 * remembers an overflow, so a document is either complete or reported as
 * too large, never silently cut.
 *
 * Nothing here allocates, reads a clock or does I/O. Do not include
 * <jsmn.h> yourself with other settings: json.c holds the one jsmn
 * implementation (JSMN_STATIC, JSMN_STRICT), and this header uses only its
 * token type.
 */
#ifndef MOAT_JSON_H
#define MOAT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef JSMN_H
#define JSMN_HEADER
#include <jsmn.h>
#undef JSMN_HEADER
#endif

#include "moat/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------- reading -- */

/* One token: jsmn's (type, start, end, size). The caller owns the array. */
typedef jsmntok_t moat_json_tok;

/* A parsed document: the text and its tokens. Token 0 is the root value. */
typedef struct moat_json {
    const char *text;
    size_t len;
    const moat_json_tok *tok;
    int count;          /* tokens in use */
} moat_json;

typedef enum moat_json_type {
    MOAT_JSON_INVALID = 0, /* no such token */
    MOAT_JSON_OBJECT,
    MOAT_JSON_ARRAY,
    MOAT_JSON_STRING,
    MOAT_JSON_NUMBER,
    MOAT_JSON_TRUE,
    MOAT_JSON_FALSE,
    MOAT_JSON_NULL
} moat_json_type;

/*
 * Tokenize and validate text[0..len) (one JSON value, whitespace around it
 * allowed) into tok[0..cap). Returns:
 *  MOAT_OK             doc describes the document
 *  MOAT_ERR_NO_SPACE   more than cap tokens are needed
 *  MOAT_ERR_MALFORMED  not valid JSON (truncated, bad separator, bad
 *                      literal or number, control character in a string,
 *                      data after the value, empty text)
 *  MOAT_ERR_UTF8       a string is not valid UTF-8
 *  MOAT_ERR_ARG        NULL pointers, cap 0, or len over INT_MAX
 * On an error *err_pos (may be NULL) is the byte offset of the problem
 * (len for a truncated text); moat_json_line() makes it a line number.
 */
moat_err moat_json_parse(moat_json *doc, const char *text, size_t len,
                         moat_json_tok *tok, unsigned cap, size_t *err_pos);

/* The 1-based line of byte offset pos in text (pos clamped to len). */
unsigned moat_json_line(const char *text, size_t len, size_t pos);

/* The type of token i; MOAT_JSON_INVALID when i is out of range. */
moat_json_type moat_json_type_of(const moat_json *doc, int i);

/* A short English name for a type: "an object", "a string", "true", ... */
const char *moat_json_type_name(moat_json_type t);

/* The index just past the value at i and everything inside it. */
int moat_json_skip(const moat_json *doc, int i);

/*
 * Walk the members of the object (or the elements of the array) at token
 * obj. *it starts at 0 and is private to the walk. For each member *key is
 * the key's token (-1 for an array element) and *val the value's token.
 * Returns false at the end, or when obj is not an object or array.
 */
bool moat_json_next(const moat_json *doc, int obj, int *it, int *key, int *val);

/* The value token of the first member of object obj whose key equals key
 * (compared after unescaping), or -1. */
int moat_json_find(const moat_json *doc, int obj, const char *key);

/* True when token i is a string whose unescaped value equals s. */
bool moat_json_eq(const moat_json *doc, int i, const char *s);

/* The raw text of token i (strings without their quotes, not unescaped),
 * for messages. *n is 0 for an invalid index. */
const char *moat_json_raw(const moat_json *doc, int i, size_t *n);

/*
 * The unescaped value of string token i into buf[0..cap) with a NUL, *len
 * (may be NULL) the byte count without the NUL. Returns MOAT_ERR_ARG when
 * token i is not a string, MOAT_ERR_UTF8 when the value holds U+0000 (a C
 * string cannot), MOAT_ERR_NO_SPACE when value and NUL do not fit in cap.
 * On an error buf holds "" (when cap > 0).
 */
moat_err moat_json_get_string(const moat_json *doc, int i, char *buf, size_t cap,
                              size_t *len);

/*
 * The integer at token i, which must be a number without fraction or
 * exponent ("-0" is 0), within [min, max]. Returns MOAT_ERR_ARG when it is
 * not such a number (another type, 1.5, 1e3), MOAT_ERR_TOO_LARGE when it
 * is outside [min, max] (including beyond int64_t). *out is set only on
 * MOAT_OK.
 */
moat_err moat_json_get_int(const moat_json *doc, int i, int64_t min, int64_t max,
                           int64_t *out);

/* true or false at token i; MOAT_ERR_ARG for any other token. */
moat_err moat_json_get_bool(const moat_json *doc, int i, bool *out);

/* ------------------------------------------------------------- writing -- */

#define MOAT_JSON_MAX_DEPTH 16u

/*
 * A writer over buf[0..cap). Members are written in call order; a key
 * argument is used inside an object and must be NULL at the top level and
 * inside an array. Any misuse (a key where none belongs, nesting deeper
 * than MOAT_JSON_MAX_DEPTH, an end without a begin) or overflow makes the
 * writer fail for good; moat_json_finish() reports it.
 */
typedef struct moat_json_writer {
    char *buf;
    size_t cap;
    size_t len;
    moat_err err;        /* the first failure, or MOAT_OK */
    uint8_t depth;
    bool root_done;      /* the top-level value is written */
    uint16_t in_array;   /* bit d: level d+1 is an array */
    uint16_t has_items;  /* bit d: level d+1 already holds a member */
} moat_json_writer;

void moat_json_writer_init(moat_json_writer *w, char *buf, size_t cap);

void moat_json_begin_object(moat_json_writer *w, const char *key);
void moat_json_end_object(moat_json_writer *w);
void moat_json_begin_array(moat_json_writer *w, const char *key);
void moat_json_end_array(moat_json_writer *w);

/* s is NUL-terminated; put_string_n takes n bytes (NUL bytes become
 * \u0000). Control characters, quote and backslash are escaped; bytes that
 * are not valid UTF-8 become U+FFFD, so the output is always valid JSON. */
void moat_json_put_string(moat_json_writer *w, const char *key, const char *s);
void moat_json_put_string_n(moat_json_writer *w, const char *key, const char *s,
                            size_t n);
void moat_json_put_int(moat_json_writer *w, const char *key, int64_t v);
void moat_json_put_uint(moat_json_writer *w, const char *key, uint64_t v);
void moat_json_put_bool(moat_json_writer *w, const char *key, bool v);
void moat_json_put_null(moat_json_writer *w, const char *key);

/*
 * End the document: NUL-terminates buf and sets *len (may be NULL) to the
 * byte count without the NUL. Returns MOAT_OK, MOAT_ERR_NO_SPACE when the
 * document and its NUL did not fit, or MOAT_ERR_STATE when it was misused
 * or is not complete (an open object or array, nothing written). On an
 * error buf holds "" (when cap > 0) and *len is 0.
 */
moat_err moat_json_finish(moat_json_writer *w, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
