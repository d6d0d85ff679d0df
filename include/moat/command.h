/*
 * moat/command.h - remote command dispatch.
 *
 * Commands arrive on moat/<id>/cmd/<name> (QoS 1); the result of each goes to
 * moat/<id>/result/<name> as {"ok":true} or {"ok":false,"error":"..."}
 * (moat_result_json() in moat/status.h). The caller gives a table of
 * {name, handler}; moat_command_dispatch() checks the name and payload size,
 * calls the handler, and writes the result document. An unknown command, an
 * invalid name or an oversized payload gets an error result, never a call.
 *
 * Handlers are called synchronously. One that cannot finish now (say, config
 * must be fetched first) returns MOAT_ERR_WOULD_BLOCK: no result is written,
 * and the caller publishes it later with moat_result_json().
 *
 * Nothing here allocates, reads a clock or does I/O.
 */
#ifndef MOAT_COMMAND_H
#define MOAT_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest command name: one topic level of [A-Za-z0-9_.-]. */
#define MOAT_COMMAND_NAME_MAX 32u

/* Payload limit of a command whose max_payload is 0. */
#define MOAT_COMMAND_PAYLOAD_DEFAULT 256u

/* Room for the handler's words, including the NUL. */
#define MOAT_COMMAND_WHY_MAX 160u

typedef struct moat_command moat_command;

/*
 * A handler. self is its table entry (so one handler can serve several
 * names: self->name), user the pointer given to moat_command_dispatch(),
 * payload[0..len) the message (not NUL-terminated; len is within the
 * entry's limit). On failure it returns an error and may write words into
 * why[0..why_cap) (NUL-terminated; why is never NULL, why_cap is
 * MOAT_COMMAND_WHY_MAX); if it leaves why empty, moat_strerror() of the
 * error is used. MOAT_ERR_WOULD_BLOCK means "result later" (see above).
 */
typedef moat_err (*moat_command_fn)(const moat_command *self, void *user,
                                    const uint8_t *payload, size_t len,
                                    char *why, size_t why_cap);

struct moat_command {
    const char *name;     /* NUL-terminated, a valid name (see below) */
    moat_command_fn fn;
    size_t max_payload;   /* longest accepted payload; 0 means
                             MOAT_COMMAND_PAYLOAD_DEFAULT */
};

/* A valid command name: 1..MOAT_COMMAND_NAME_MAX bytes of A-Z a-z 0-9 _ . -
 * (so never '/', '+', '#', a space or a control character). */
bool moat_command_name_valid(const char *name, size_t len);

/*
 * The command name of a topic: the rest of topic[0..topic_len) after
 * prefix[0..prefix_len) (e.g. "moat/a0b1c2d3e4f5/cmd/"), as a slice into
 * topic. MOAT_ERR_TOPIC when the topic does not start with the prefix or
 * the rest is not a valid name.
 */
moat_err moat_command_name_from_topic(const char *topic, size_t topic_len,
                                      const char *prefix, size_t prefix_len,
                                      const char **name, size_t *name_len);

/*
 * Dispatch one command: table[0..count) is searched for name[0..name_len)
 * (exact, case-sensitive). The result document goes NUL-terminated into
 * result[0..cap), its length (without the NUL) into *result_len; *result_len
 * is 0 when no result is due now. Returns:
 *   MOAT_OK               the handler succeeded: {"ok":true}
 *   MOAT_ERR_TOPIC        name invalid: {"ok":false,"error":"invalid command
 *                         name (1..32 of A-Z a-z 0-9 _ . -)"}; the handler is
 *                         not called; publish the result under a fixed name
 *                         or not at all, never under that name
 *   MOAT_ERR_ARG          unknown command: {"ok":false,"error":"unknown
 *                         command 'x'"} (x escaped)
 *   MOAT_ERR_TOO_LARGE    payload over the limit: {"ok":false,"error":
 *                         "payload of N bytes is over the limit of M for
 *                         command 'x'"}; the handler is not called
 *   MOAT_ERR_WOULD_BLOCK  the handler will answer later; *result_len 0
 *   other                 the handler's error: {"ok":false,"error":why}
 *   MOAT_ERR_NO_SPACE     result cap too small (MOAT_RESULT_JSON_MAX always
 *                         suffices); *result_len 0. The handler has run.
 * user is passed to the handler. payload may be NULL when len is 0.
 */
moat_err moat_command_dispatch(const moat_command *table, size_t count, void *user,
                               const char *name, size_t name_len,
                               const uint8_t *payload, size_t len,
                               char *result, size_t cap, size_t *result_len);

/* A handler for commands that exist but are not implemented in this build
 * (firmware, flash, ca, cert, key until the update issue): returns
 * MOAT_ERR_STATE with words "command 'firmware' is not supported". */
moat_err moat_command_not_supported(const moat_command *self, void *user,
                                    const uint8_t *payload, size_t len,
                                    char *why, size_t why_cap);

#ifdef __cplusplus
}
#endif
#endif
