/*
 * moat/slots.h - A/B firmware slots and the boot record: which image runs,
 * trial starts of a new image, confirmation, rollback, anti-rollback.
 *
 * Written like MCUboot's bootutil against moat_flash_area (moat/flash.h), so
 * the same logic picks the slot on Linux (src/port/posix/slots_posix.c and
 * the moat-launch program) and in a microcontroller's boot loader. No heap,
 * no OS, no clock: the caller owns the context and gives it four areas:
 *
 *   record[0], record[1]  two copies of the boot record (>= 256 bytes each)
 *   slot[0], slot[1]      slot a and slot b: each holds one image payload
 *
 * and a SHA-256 from the port (moat_boot_hash).
 *
 * The boot record, kept twice. Each copy is a 256-byte block with a magic,
 * a sequence number and a CRC32. An update erases and writes the copy that
 * does NOT hold the current record, with sequence + 1, syncs, and reads it
 * back. A power cut at any byte of that leaves the other copy intact, so a
 * reader that takes the valid copy with the highest sequence always finds
 * either the old record or the new one, never a mix.
 *
 * The record holds, for the device: the active slot (the confirmed image
 * that boots when nothing is on trial), the pending slot (a new image
 * waiting for, or in, its trial starts), the trial starts left, the security
 * counter (anti-rollback: it only ever increases, raised when an image is
 * confirmed), the reason of the last rollback, the slot the last start
 * ran; and for each slot: its state (empty, writing, pending, confirmed,
 * rejected), the size and
 * SHA-256 of its payload, its version and security counter.
 *
 * The life of an update:
 *
 *   moat_boot_install_begin(&b, &slot)   the record marks `slot` WRITING (never
 *                                        the active one; refused while an
 *                                        image is on trial), then the area is
 *                                        erased
 *   <write the payload into b.slot[slot]: the OTA verifier streams it, and
 *    syncs the area once its signature verified>
 *   moat_boot_install_finish(&b, slot, &image, 0)
 *                                        re-reads the area, checks its SHA-256
 *                                        and size against image, refuses a
 *                                        security counter below the device's;
 *                                        then slot is pending with `trials`
 *                                        starts (default 3)
 *   (restart) moat_boot_decide(&b, &c)   the boot loader / launcher: the
 *                                        pending slot runs on trial; one trial
 *                                        start is used up and persisted BEFORE
 *                                        it runs
 *   moat_boot_confirm(&b, slot)          the new image reached the broker and
 *                                        published its status: it becomes
 *                                        active, the counter is raised
 *
 * If it never confirms, each start uses up a trial; at the start after the
 * last one, moat_boot_decide() rejects it and runs the active slot again,
 * with the reason recorded: "slot b (version 3.0.0) did not confirm within
 * 3 starts: back to slot a (version 2.0.0)".
 *
 * Every start checks the payload it is about to run against the SHA-256 and
 * size in the record: a slot that does not match (a torn write, a corrupt
 * disk) never runs; the next candidate does. Candidates, in order: the
 * pending slot with trials left, the active slot, the other confirmed slot
 * (only if its security counter is not below the device's). If none of those
 * verifies, any slot whose payload verifies and whose counter is not below
 * the device's runs (a rejected image is better than none), and failing
 * that moat_boot_decide() returns an error: nothing unverified ever runs.
 *
 * Errors are moat_err values; the words of the last failure are in
 * moat_boot_error(). Not thread-safe: one caller at a time (the POSIX port
 * serialises processes with a lock file).
 */
#ifndef MOAT_SLOTS_H
#define MOAT_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"
#include "moat/flash.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOAT_BOOT_SLOTS 2u
#define MOAT_BOOT_SLOT_A 0u
#define MOAT_BOOT_SLOT_B 1u
#define MOAT_BOOT_NONE 0xFFu        /* no slot */

/* Bytes of one boot record copy; a record area must be at least this. */
#define MOAT_BOOT_RECORD_SIZE 256u
/* Version text of an image, with its NUL ("2.0.0", "2026.11.21-rc1"). */
#define MOAT_BOOT_VERSION_MAX 24u
/* Trial starts a new image gets when install_finish is given 0. */
#define MOAT_BOOT_DEFAULT_TRIALS 3u
/* Most trial starts an image can be given. */
#define MOAT_BOOT_MAX_TRIALS 100u
/* Room for moat_boot_error() and moat_boot_status.reason, with the NUL. */
#define MOAT_BOOT_WORDS_MAX 200u

/* SHA-256 from the port (mbedTLS on Linux, a hardware engine on an MCU).
 * begin starts a new digest; update adds bytes; finish writes 32 bytes. */
typedef struct moat_boot_hash {
    moat_err (*begin)(void *ctx);
    moat_err (*update)(void *ctx, const void *data, size_t len);
    moat_err (*finish)(void *ctx, uint8_t out[32]);
    void *ctx;
} moat_boot_hash;

/* What a slot holds: the image as the verifier accepted it. */
typedef struct moat_boot_image {
    uint32_t size;                      /* payload bytes, >= 1 */
    uint8_t sha256[32];                 /* SHA-256 of the payload */
    uint32_t security_counter;          /* anti-rollback counter of the image */
    char version[MOAT_BOOT_VERSION_MAX]; /* NUL-terminated, printable ASCII */
} moat_boot_image;

typedef enum moat_boot_slot_state {
    MOAT_BOOT_EMPTY = 0,    /* nothing usable */
    MOAT_BOOT_PENDING = 1,  /* installed and verified, waiting for / in its trial */
    MOAT_BOOT_CONFIRMED = 2,/* confirmed once: it ran and reached the broker */
    MOAT_BOOT_REJECTED = 3, /* did not confirm in time, or its payload went bad */
    MOAT_BOOT_WRITING = 4   /* an install began (install_begin), not finished */
} moat_boot_slot_state;

/* Why the last rollback happened. */
typedef enum moat_boot_reason {
    MOAT_BOOT_REASON_NONE = 0,
    MOAT_BOOT_REASON_NOT_CONFIRMED = 1, /* trial slot used up its starts */
    MOAT_BOOT_REASON_BAD_IMAGE = 2,     /* payload does not match size/SHA-256 */
    MOAT_BOOT_REASON_COUNTER = 3        /* image older than the device allows */
} moat_boot_reason;

typedef struct moat_boot_slot_info {
    uint8_t state;          /* moat_boot_slot_state */
    uint8_t trial_starts;   /* trial starts this image has made */
    moat_boot_image image;  /* meaningful in PENDING, CONFIRMED, REJECTED */
} moat_boot_slot_info;

/* The boot record, decoded. */
typedef struct moat_boot_record {
    uint32_t seq;              /* sequence of the copy it came from */
    uint8_t active;            /* confirmed slot, or MOAT_BOOT_NONE */
    uint8_t pending;           /* slot waiting for / in trial, or NONE */
    uint8_t trials_left;       /* trial starts the pending slot has left */
    uint8_t trials;            /* trial starts it was given */
    uint8_t running;           /* the slot the last decision ran, or NONE */
    uint8_t running_trial;     /* 1: that start was a trial start */
    uint32_t security_counter; /* the device's anti-rollback counter */
    moat_boot_slot_info slot[MOAT_BOOT_SLOTS];
    struct {
        uint8_t code;          /* moat_boot_reason */
        uint8_t from;          /* the slot left */
        uint8_t to;            /* the slot run instead, or NONE */
        uint8_t starts;        /* trial starts it made (NOT_CONFIRMED) */
        uint32_t counter;      /* its security counter (COUNTER) */
        char version[MOAT_BOOT_VERSION_MAX]; /* its version */
        char to_version[MOAT_BOOT_VERSION_MAX];
    } rollback;
} moat_boot_record;

/* The context. Opaque to the caller: allocate it, pass it to every call. */
typedef struct moat_boot {
    const moat_flash_area *record[2];
    const moat_flash_area *slot[MOAT_BOOT_SLOTS];
    const moat_boot_hash *hash;
    moat_boot_record rec;      /* valid after moat_boot_load() */
    uint8_t copy;              /* record copy holding rec: 0, 1 or NONE */
    bool loaded;
    uint8_t block[MOAT_BOOT_RECORD_SIZE]; /* encode / read-back buffer */
    uint8_t io[256];           /* payload read buffer for hashing */
    char error[MOAT_BOOT_WORDS_MAX];
} moat_boot;

/* What moat_boot_decide() chose. */
typedef struct moat_boot_choice {
    uint8_t slot;          /* the slot to run: MOAT_BOOT_SLOT_A or _B */
    bool trial;            /* true: a trial start; the image must confirm */
    uint8_t trials_left;   /* on trial: starts left after this one */
    moat_boot_image image; /* what the slot holds (verified just now) */
} moat_boot_choice;

/* The update state for the agent's status document. */
typedef struct moat_boot_status {
    char slot;                 /* running slot 'a' or 'b', '-' if none */
    char active;               /* confirmed slot 'a' or 'b', '-' if none */
    char pending;              /* pending slot 'a' or 'b', '-' if none */
    bool trial;                /* the running slot is on trial */
    uint8_t trials_left;
    uint32_t security_counter;
    char version[MOAT_BOOT_VERSION_MAX];   /* of the running slot, "" if none */
    const char *state;         /* "confirmed"; "trial"; "pending" (a new image
                                  waits for a restart); "fallback" (running an
                                  image other than the active one: the last
                                  resort); "none" */
    char reason[MOAT_BOOT_WORDS_MAX];      /* last rollback in words, "" if none */
} moat_boot_status;

/* Flags of moat_boot_install_finish(). */
#define MOAT_BOOT_INSTALL_CONFIRMED 1u /* factory provisioning: the image is
                                          active at once, no trial */

/*
 * Set up a context over the areas. rec0/rec1 must be at least
 * MOAT_BOOT_RECORD_SIZE bytes; slot_a/slot_b hold the payloads; hash is
 * needed by install_finish and decide. Nothing is read yet.
 * MOAT_ERR_ARG for a missing or too small area.
 */
moat_err moat_boot_init(moat_boot *b, const moat_flash_area *rec0,
                        const moat_flash_area *rec1, const moat_flash_area *slot_a,
                        const moat_flash_area *slot_b, const moat_boot_hash *hash);

/*
 * Read both record copies and keep the valid one with the highest sequence.
 * A torn copy (a power cut during its write) is ignored. Both blank, or one
 * blank and one torn: a new device, an empty record (no slot), MOAT_OK.
 * MOAT_ERR_MALFORMED when both copies are damaged (words say so), or a read
 * error of the area.
 */
moat_err moat_boot_load(moat_boot *b);

/* The record moat_boot_load() read (NULL before it). */
const moat_boot_record *moat_boot_record_get(const moat_boot *b);

/*
 * Choose the slot to run now, as described at the top, verify its payload,
 * and persist the decision BEFORE returning: a trial start is counted before
 * the image runs, a rollback is recorded with its reason. A start of the
 * active slot that changes nothing writes nothing (flash wear). When the
 * record cannot be written, a trial does not run (the active slot does).
 * MOAT_OK and *c, or an error when no slot holds a verified image
 * (MOAT_ERR_STATE, words name each slot's problem), or a read error.
 */
moat_err moat_boot_decide(moat_boot *b, moat_boot_choice *c);

/*
 * Start installing into the slot that is not active (slot a on a new
 * device): *slot gets it. The record marks it WRITING (and not pending) and
 * is persisted, then the area is erased. Write the payload from offset 0 and
 * sync, then call moat_boot_install_finish().
 * MOAT_ERR_STATE while a pending image has made trial starts (it is
 * running: it must confirm or roll back first).
 */
moat_err moat_boot_install_begin(moat_boot *b, uint8_t *slot);

/*
 * Continue an install that moat_boot_install_begin() started before a
 * restart (a download resumed with moat_ota_resume()): *slot gets the slot
 * being written. Nothing is erased or written. MOAT_ERR_STATE when no
 * install is in progress (the slot that is not active is not WRITING, or a
 * slot is on trial): begin a new one.
 */
moat_err moat_boot_install_resume(moat_boot *b, uint8_t *slot);

/*
 * The payload of slot is written and synced: check it and make it pending
 * (or active, with MOAT_BOOT_INSTALL_CONFIRMED). trials is the number of
 * trial starts (0: MOAT_BOOT_DEFAULT_TRIALS, at most MOAT_BOOT_MAX_TRIALS).
 * Refused with words: MOAT_ERR_ARG (bad slot, size 0 or over the area,
 * version not printable), MOAT_ERR_STATE (slot is the active one, no
 * install was begun in it, or the image's security counter is below the
 * device's), MOAT_ERR_MALFORMED (the area's payload does not match
 * image->size/sha256).
 */
moat_err moat_boot_install_finish(moat_boot *b, uint8_t slot, const moat_boot_image *image,
                                  unsigned trials, unsigned flags);

/*
 * The image in slot confirms: it runs and reached the broker. A pending slot
 * that has made at least one trial start becomes active, the device's
 * security counter rises to the image's (never falls), the last rollback
 * reason is cleared. Confirming the active slot is MOAT_OK and writes
 * nothing (the agent may confirm at every connection). On a device with no
 * active slot, the running image (a last resort) may confirm too.
 * MOAT_ERR_STATE for any other slot (words say why), MOAT_ERR_ARG for a bad
 * slot number.
 */
moat_err moat_boot_confirm(moat_boot *b, uint8_t slot);

/* The state for a status document (from the loaded record). */
void moat_boot_status_get(const moat_boot *b, moat_boot_status *st);

/* Words of the last failure; "" after success. Never NULL. */
const char *moat_boot_error(const moat_boot *b);

/* 'a' / 'b' for slot 0 / 1, '-' otherwise. */
char moat_boot_slot_name(uint8_t slot);

/* Encode / decode one record copy (for tests and tools). Decode checks the
 * magic, format and CRC: MOAT_ERR_MALFORMED if any is wrong. */
void moat_boot_record_encode(const moat_boot_record *r, uint8_t out[MOAT_BOOT_RECORD_SIZE]);
moat_err moat_boot_record_decode(const uint8_t in[MOAT_BOOT_RECORD_SIZE],
                                 moat_boot_record *r);

/* CRC-32 (IEEE 802.3, as zlib's crc32()) of data, continuing from crc (0 to
 * start). */
uint32_t moat_boot_crc32(uint32_t crc, const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
