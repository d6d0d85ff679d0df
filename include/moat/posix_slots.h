/*
 * moat/posix_slots.h - A/B slots on Linux: files in a directory, the boot
 * logic of moat/slots.h over them, and what the launcher and the agent call.
 *
 * On Linux the firmware payload is the agent program itself. The slot
 * directory (default /var/lib/moat) holds:
 *
 *   slot-a, slot-b   the two images: each an executable (mode 0755)
 *   boot-0, boot-1   the two copies of the boot record (mode 0600)
 *   lock             flock()ed around every record update, so the launcher,
 *                    the agent and an operator's tool never interleave
 *
 * A file area (moat_file_area) is a moat_flash_area over one file: erase
 * starts a new temporary file (slot-b.tmp), writes go there, and the first
 * sync fsyncs it, renames it over the file and fsyncs the directory; later
 * writes and syncs go to the renamed file. A write with no erase in this
 * run continues what an earlier run wrote (the .tmp file if it never
 * synced, else the file), as flash takes writes after a restart. A power
 * cut (kill -9) at any point leaves either the old file or the new one under
 * the name, plus possibly a stale .tmp that the next erase replaces. Reads past the end of
 * the file, or of a missing file, give 0xFF: erased flash.
 *
 * moat-launch (apps/launcher) runs moat_slots_decide() and execs the chosen
 * slot with the environment below; the agent calls moat_slots_confirm_running()
 * once it has reached the broker and published its status.
 *
 * SHA-256 comes from mbedTLS (libmbedcrypto): a program that uses these
 * functions links it (moat_tls does).
 */
#ifndef MOAT_POSIX_SLOTS_H
#define MOAT_POSIX_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"
#include "moat/flash.h"
#include "moat/slots.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOAT_SLOTS_DEFAULT_DIR "/var/lib/moat"
#define MOAT_SLOTS_PATH_MAX 512u
/* Largest image a slot file takes. */
#define MOAT_SLOTS_SLOT_MAX (256u * 1024u * 1024u)

/* The environment moat-launch gives the program it runs. */
#define MOAT_SLOTS_ENV_DIR "MOAT_SLOTS_DIR"        /* the slot directory */
#define MOAT_SLOTS_ENV_SLOT "MOAT_SLOT"            /* "a" or "b" */
#define MOAT_SLOTS_ENV_TRIAL "MOAT_SLOT_TRIAL"     /* "1": on trial, must confirm; "0" */
#define MOAT_SLOTS_ENV_TRIALS_LEFT "MOAT_SLOT_TRIALS_LEFT" /* starts left after this */
#define MOAT_SLOTS_ENV_VERSION "MOAT_SLOT_VERSION" /* the image's version */

/* A moat_flash_area over one file (see the top). */
typedef struct moat_file_area {
    char path[MOAT_SLOTS_PATH_MAX];
    char tmp[MOAT_SLOTS_PATH_MAX + 8];
    int rfd;            /* open for reading path, or -1 */
    int wfd;            /* open for writing (tmp, or path after the rename), or -1 */
    bool renamed;       /* wfd's file is under path now */
    int mode;           /* of new files */
} moat_file_area;

/* Set up f over path (nothing is opened yet) and fill fa with its functions
 * and size. MOAT_ERR_ARG if path is too long. */
moat_err moat_file_area_init(moat_file_area *f, moat_flash_area *fa, const char *path,
                             uint32_t size, int mode);
/* Close its descriptors (a write not synced is left in the .tmp file). */
void moat_file_area_close(moat_file_area *f);
/* Open it for writing without an erase: continue in the .tmp file if one
 * is there (no sync happened yet), else in the file itself. */
moat_err moat_file_area_reopen(moat_file_area *f);

/* SHA-256 (mbedTLS) behind a moat_boot_hash. */
typedef struct moat_slots_sha256 {
    uint64_t opaque[40]; /* an mbedtls_sha256_context */
} moat_slots_sha256;
void moat_slots_sha256_hash(moat_slots_sha256 *h, moat_boot_hash *out);

/* SHA-256 and size of a whole file. MOAT_ERR_FILE (words in why) if it
 * cannot be read, MOAT_ERR_TOO_LARGE over MOAT_SLOTS_SLOT_MAX. */
moat_err moat_slots_sha256_file(const char *path, uint8_t out[32], uint32_t *size,
                                char *why, size_t cap);

/* The slot directory. Caller-owned; about 7.5 KB. */
typedef struct moat_slots {
    char dir[MOAT_SLOTS_PATH_MAX];
    char lock_path[MOAT_SLOTS_PATH_MAX + 8];
    int lock_fd;
    moat_file_area file[4];       /* boot-0, boot-1, slot-a, slot-b */
    moat_flash_area area[4];
    moat_slots_sha256 sha;
    moat_boot_hash hash;
    moat_boot boot;
    char error[MOAT_BOOT_WORDS_MAX + MOAT_SLOTS_PATH_MAX];
} moat_slots;

/*
 * Open the slot directory dir (NULL: MOAT_SLOTS_DEFAULT_DIR); create it
 * (mode 0700) when create is true and it is missing. Reads nothing yet.
 * MOAT_ERR_FILE with words when dir is missing or not a directory.
 */
moat_err moat_slots_open(moat_slots *s, const char *dir, bool create);
void moat_slots_close(moat_slots *s);

/* Words of the last failure, naming the file; "" after success. */
const char *moat_slots_error(const moat_slots *s);

/* The file of slot 0 / 1 ("<dir>/slot-a"). */
const char *moat_slots_path(const moat_slots *s, uint8_t slot);

/* Each of the following takes the lock, loads the record and runs the
 * moat_boot_* function of the same name (moat/slots.h). */
moat_err moat_slots_decide(moat_slots *s, moat_boot_choice *c);
moat_err moat_slots_confirm(moat_slots *s, uint8_t slot);
moat_err moat_slots_status(moat_slots *s, moat_boot_status *st);

/*
 * Begin an install: *slot gets the slot to write and *area the area to write
 * the payload into (from offset 0, then sync). Then moat_slots_install_finish().
 */
moat_err moat_slots_install_begin(moat_slots *s, uint8_t *slot,
                                  const moat_flash_area **area);
/* After a restart, continue the install begun before it (see
 * moat_boot_install_resume()): *area writes into the slot file as it is
 * (the .tmp file if the install never synced), erasing nothing. */
moat_err moat_slots_install_resume(moat_slots *s, uint8_t *slot,
                                   const moat_flash_area **area);
moat_err moat_slots_install_finish(moat_slots *s, uint8_t slot,
                                   const moat_boot_image *image, unsigned trials,
                                   unsigned flags);

/*
 * Install a local file: begin, copy it, sync, finish with its SHA-256 and
 * size, version and security counter. This is for provisioning and tests;
 * it checks no signature (the OTA verifier does that for downloads).
 */
moat_err moat_slots_install_file(moat_slots *s, const char *file, const char *version,
                                 uint32_t security_counter, unsigned trials,
                                 unsigned flags, uint8_t *slot);

/*
 * What the launcher said about the running program: its slot ('a'/'b' in
 * MOAT_SLOT) and whether it is on trial (MOAT_SLOT_TRIAL). MOAT_ERR_STATE
 * when not started by moat-launch (no or bad MOAT_SLOT).
 */
moat_err moat_slots_running(uint8_t *slot, bool *trial);

/*
 * The agent's call once it has reached the broker and published its status:
 * open MOAT_SLOTS_DIR, confirm the slot in MOAT_SLOT. Not started by the
 * launcher (no MOAT_SLOT): MOAT_ERR_STATE and nothing happens. Words of a
 * failure into why (may be NULL).
 */
moat_err moat_slots_confirm_running(char *why, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
