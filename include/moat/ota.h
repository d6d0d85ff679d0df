/*
 * moat/ota.h - signed update images: the format, and the device-side
 * streaming verifier that writes an image's payload into the inactive slot.
 *
 * An image (docs/OTA-IMAGE.md has every byte) is
 *
 *     header (128 bytes + 156 per key-rotation record, little-endian)
 *     signature (64 bytes: raw r||s, ECDSA P-256 over SHA-256(header))
 *     payload (payload_size bytes)
 *
 * The header holds the payload's size and SHA-256, so the signature covers
 * the header and, through that hash, every byte of the payload. Because the
 * signature comes right after the header, everything the device decides on
 * (product, version, security counter, size, key) is authenticated BEFORE a
 * single byte of the slot is erased or written; the payload is then written
 * and hashed as it streams in, and moat_ota_finish() says whether the hash
 * matches. Only after that may the caller make the slot bootable.
 *
 * Keys: a key id is the first 8 bytes of SHA-256 of the 65-byte uncompressed
 * public key (0x04 || X || Y). The device trusts one or two public keys. A
 * header may carry a chain of up to MOAT_OTA_MAX_ROTATIONS key-rotation
 * records, each "new public key, signed by the old key". Records are checked
 * from the newest one whose signer the device trusts; the image may then be
 * signed by a trusted key or by any key so introduced, and the result names
 * the chain's last key (moat_ota_result.rotated, .new_key), which the caller
 * should trust from now on. So a device that missed a rotation (or several,
 * up to the chain length) still takes the newest image: no version ladder.
 *
 * Version policy: an image whose security counter is lower than the device's
 * stored counter is refused. With an equal counter, a semver lower than the
 * running version is also refused; the same version is accepted (reinstall).
 * A HIGHER counter is accepted whatever its semver: the counter is the
 * authority, so an operator rolls back on purpose by re-signing an older
 * build with a higher counter.
 *
 * The verifier is sans-I/O apart from the slot it writes through the
 * moat_flash_area the caller gives (the inactive slot); it never touches any
 * other area, never allocates and never reads a clock. Crypto comes in
 * through moat_ota_crypto, so the core depends on no crypto library; the
 * mbedTLS implementation is moat_ota_crypto_mbedtls in libmoat_tls.
 *
 * Driving it (any chunking, down to one byte at a time):
 *
 *     moat_ota_init(&v, &cfg);                   nothing is written yet
 *     [moat_ota_resume(&v, bytes_in_slot);]      after a cut: see below
 *     while (download) {
 *         fetch bytes starting at image offset moat_ota_offset(&v)
 *         e = moat_ota_feed(&v, data, n);        refusals come as early as
 *         if (e != MOAT_OK) give up: say moat_ota_error(&v)   they can
 *         [now and then: moat_ota_checkpoint(&v, &durable); persist it]
 *     }
 *     e = moat_ota_finish(&v, &result);          MOAT_OK: payload verified
 *     if (e == MOAT_OK) make the slot bootable with result (the slots module)
 *
 * Slot layout: the payload alone, at offset 0 of the slot (so a port can
 * boot or exec it as it is). The boot record keeps what the result says.
 * Writes go to the slot in blocks of buf_size bytes at offsets that are
 * multiples of buf_size (the last block may be shorter): give a buf_size
 * that is a multiple of the flash's write granularity.
 *
 * Errors are sticky: after a refusal every call returns the same error, and
 * moat_ota_error() says what was wrong with numbers and key ids, e.g.
 * "image security counter 3 is lower than the device's 4".
 */
#ifndef MOAT_OTA_H
#define MOAT_OTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"
#include "moat/flash.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ format -- */

#define MOAT_OTA_MAGIC "MOAT"            /* the first four bytes of an image */
#define MOAT_OTA_FORMAT_VERSION 1u
#define MOAT_OTA_HEADER_FIXED 128u        /* header without rotation records */
#define MOAT_OTA_ROTATION_SIZE 156u       /* one key-rotation record */
#define MOAT_OTA_ROTATION_TAG "MROT"      /* the first four bytes of a record */
#define MOAT_OTA_MAX_ROTATIONS 4u         /* records in one header, at most */
#define MOAT_OTA_HEADER_MAX \
    (MOAT_OTA_HEADER_FIXED + MOAT_OTA_MAX_ROTATIONS * MOAT_OTA_ROTATION_SIZE)
#define MOAT_OTA_SIG_SIZE 64u             /* raw r||s */
#define MOAT_OTA_PUB_SIZE 65u             /* 0x04 || X || Y */
#define MOAT_OTA_KEY_ID_SIZE 8u
#define MOAT_OTA_SHA256_SIZE 32u
#define MOAT_OTA_PRODUCT_MAX 31u          /* product id: 1..31 printable ASCII
                                             bytes, NUL-padded to 32 */

/* Room for any moat_ota_error() text, including the NUL. */
#define MOAT_OTA_ERROR_MAX 160u

/* The working buffer: it holds the whole header and signature, then one
 * flash block of payload at a time. */
#define MOAT_OTA_BUF_MIN 1024u
#define MOAT_OTA_BUF_MAX 4096u

/* Bytes reserved in the context for the SHA-256 state of moat_ota_crypto.
 * mbedTLS needs 108 (2.28) to 112; a hardware SHA engine may need more:
 * define it larger for the whole build. */
#ifndef MOAT_OTA_SHA256_CTX_SIZE
#define MOAT_OTA_SHA256_CTX_SIZE 128u
#endif

typedef struct moat_ota_version {
    uint16_t major, minor, patch;
} moat_ota_version;

/* A parsed header (the fixed part; rotation records via
 * moat_ota_rotation_get()). */
typedef struct moat_ota_header {
    uint16_t format;          /* MOAT_OTA_FORMAT_VERSION */
    uint16_t header_size;     /* 128 + 156 * rotations */
    uint16_t flags;           /* none defined yet: 0 */
    uint8_t rotations;        /* key-rotation records that follow, 0..4 */
    char product[MOAT_OTA_PRODUCT_MAX + 1]; /* NUL-terminated */
    moat_ota_version version;
    uint32_t counter;         /* monotonic security counter */
    uint32_t payload_size;
    uint8_t payload_sha256[MOAT_OTA_SHA256_SIZE];
    uint8_t key_id[MOAT_OTA_KEY_ID_SIZE]; /* of the key that signed the header */
} moat_ota_header;

/* One key-rotation record: new_key, signed by the key old_key_id. */
typedef struct moat_ota_rotation {
    uint8_t old_key_id[MOAT_OTA_KEY_ID_SIZE];
    uint8_t new_key_id[MOAT_OTA_KEY_ID_SIZE];
    uint8_t new_key[MOAT_OTA_PUB_SIZE];
    uint8_t sig[MOAT_OTA_SIG_SIZE]; /* by the old key over SHA-256 of the
                                       record's first 92 bytes */
} moat_ota_rotation;

/*
 * Parse and check the structure of a header (magic, format version, sizes,
 * reserved bytes zero, product id well formed, rotation records well formed
 * and chained). No key or signature is checked: that needs a verifier.
 * data[0..len) is the start of an image; *need is set to the bytes the
 * header needs (MOAT_OTA_HEADER_FIXED until the fixed part is there).
 * Returns MOAT_OK, MOAT_ERR_OTA_TRUNCATED (len < *need: give more bytes),
 * MOAT_ERR_OTA_MAGIC or MOAT_ERR_OTA_FORMAT, with words in why[0..why_cap)
 * (why may be NULL). Never reads beyond len.
 */
moat_err moat_ota_header_parse(const uint8_t *data, size_t len, moat_ota_header *h,
                               size_t *need, char *why, size_t why_cap);

/* Record i (0-based) of a header that moat_ota_header_parse() accepted. */
moat_err moat_ota_rotation_get(const uint8_t *header, size_t len, unsigned i,
                               moat_ota_rotation *r);

/*
 * Encode a header: h's fields (format and header_size are set from the rest;
 * rotations = count) followed by count records, into out[0..cap). *len is
 * the header size. MOAT_ERR_ARG for a bad product id or more than
 * MOAT_OTA_MAX_ROTATIONS records, MOAT_ERR_NO_SPACE when cap is too small.
 * The caller signs SHA-256(out[0..*len)) and appends the signature and the
 * payload. For the signing tool and tests.
 */
moat_err moat_ota_header_encode(const moat_ota_header *h, const moat_ota_rotation *rot,
                                unsigned count, uint8_t *out, size_t cap, size_t *len);

/* The 92 bytes a rotation record's signature covers (its SHA-256 is
 * signed): tag, reserved, old_key_id, new_key_id, new_key, reserved. */
#define MOAT_OTA_ROTATION_SIGNED 92u
void moat_ota_rotation_signed_bytes(const moat_ota_rotation *r,
                                    uint8_t out[MOAT_OTA_ROTATION_SIGNED]);

/* -------------------------------------------------------------- crypto -- */

/*
 * The crypto the verifier needs. All functions return MOAT_OK or a negative
 * moat_err; ctx is the verifier's own SHA-256 state blob
 * (MOAT_OTA_SHA256_CTX_SIZE bytes, aligned for any scalar type), of which
 * the implementation uses sha256_ctx_size bytes. sha256_finish also releases
 * whatever sha256_start took; a stream abandoned midway is never finished,
 * so an implementation must not hold resources between start and finish
 * that need releasing (software SHA-256 holds none).
 *
 * p256_verify: MOAT_OK when sig (r||s, 64 bytes) is a valid ECDSA P-256
 * signature of the 32-byte digest by the public key pub (65 bytes,
 * uncompressed); MOAT_ERR_OTA_SIGNATURE when it is not, or when pub or sig is
 * malformed (not on the curve, r or s out of range); another error only for
 * a failure of the implementation itself.
 */
typedef struct moat_ota_crypto {
    size_t sha256_ctx_size;
    moat_err (*sha256_start)(void *ctx);
    moat_err (*sha256_update)(void *ctx, const uint8_t *data, size_t len);
    moat_err (*sha256_finish)(void *ctx, uint8_t out[MOAT_OTA_SHA256_SIZE]);
    moat_err (*p256_verify)(void *user, const uint8_t pub[MOAT_OTA_PUB_SIZE],
                            const uint8_t digest[MOAT_OTA_SHA256_SIZE],
                            const uint8_t sig[MOAT_OTA_SIG_SIZE]);
    void *user;  /* passed to p256_verify */
} moat_ota_crypto;

typedef union moat_ota_sha256_ctx {
    uint8_t bytes[MOAT_OTA_SHA256_CTX_SIZE];
    uint64_t align_u64;
    void *align_ptr;
} moat_ota_sha256_ctx;

/* The key id of a public key: SHA-256(pub)[0..8). ctx is scratch state. */
moat_err moat_ota_key_id(const moat_ota_crypto *c, moat_ota_sha256_ctx *ctx,
                         const uint8_t pub[MOAT_OTA_PUB_SIZE],
                         uint8_t id[MOAT_OTA_KEY_ID_SIZE]);

/*
 * SHA-256 of the first len bytes of a flash area, read through
 * buf[0..buf_size) (any size > 0). For the boot path: check a slot against
 * the payload_sha256 its boot record holds.
 */
moat_err moat_ota_hash_area(const moat_flash_area *area, uint32_t len,
                            const moat_ota_crypto *c, moat_ota_sha256_ctx *ctx,
                            uint8_t *buf, size_t buf_size,
                            uint8_t out[MOAT_OTA_SHA256_SIZE]);

/* ------------------------------------------------------------ verifier -- */

#define MOAT_OTA_MAX_KEYS 2u

/* Caller-owned settings; moat_ota_init() copies everything but buf, slot
 * and crypto, which must outlive the verifier. */
typedef struct moat_ota_config {
    const char *product;      /* this device's product id (1..31 bytes) */
    const uint8_t *keys[MOAT_OTA_MAX_KEYS]; /* trusted public keys (65 bytes
                                               each, uncompressed); keys[0]
                                               required, keys[1] may be NULL */
    uint32_t counter;         /* the device's stored security counter */
    moat_ota_version running; /* the version that runs now */
    const moat_flash_area *slot; /* the INACTIVE slot: the only area written */
    const moat_ota_crypto *crypto;
    uint8_t *buf;             /* working buffer, MOAT_OTA_BUF_MIN..MOAT_OTA_BUF_MAX */
    size_t buf_size;
} moat_ota_config;

/* What a verified image is. Valid after moat_ota_finish() returned MOAT_OK
 * (the header part is readable through moat_ota_header_of() as soon as the
 * header was accepted). */
typedef struct moat_ota_result {
    moat_ota_header header;
    bool rotated;             /* key rotation records were verified: */
    uint8_t new_key[MOAT_OTA_PUB_SIZE];        /* trust this key from now on */
    uint8_t new_key_id[MOAT_OTA_KEY_ID_SIZE];  /* (the chain's last key) */
} moat_ota_result;

typedef enum moat_ota_state {
    MOAT_OTA_HEADER = 0, /* taking header + signature into buf */
    MOAT_OTA_PAYLOAD,    /* header accepted: payload streams into the slot */
    MOAT_OTA_COMPLETE,   /* every byte is in: call moat_ota_finish() */
    MOAT_OTA_DONE,       /* finish verified the image */
    MOAT_OTA_FAILED      /* refused: see last_err and moat_ota_error() */
} moat_ota_state;

/* The context. Opaque to the caller: allocate it, pass it to every call. */
typedef struct moat_ota {
    moat_ota_sha256_ctx sha;
    moat_ota_result result;
    const moat_flash_area *slot;
    const moat_ota_crypto *crypto;
    uint8_t *buf;
    uint32_t buf_size;
    uint32_t have;          /* HEADER: bytes in buf; PAYLOAD: bytes of the
                               current block in buf */
    uint32_t offset;        /* image offset of the next byte to feed */
    uint32_t written;       /* payload bytes written to the slot */
    uint32_t synced;        /* payload bytes made durable by a checkpoint */
    uint32_t resume;        /* payload bytes the slot already holds */
    uint32_t counter;
    moat_ota_version running;
    uint8_t keys[MOAT_OTA_MAX_KEYS][MOAT_OTA_PUB_SIZE];
    uint8_t key_ids[MOAT_OTA_MAX_KEYS][MOAT_OTA_KEY_ID_SIZE];
    uint32_t total;         /* image size, once the fixed header is in */
    uint8_t key_count;
    uint8_t state;          /* moat_ota_state */
    bool accepted;          /* the header's signature verified */
    int16_t last_err;
    char product[MOAT_OTA_PRODUCT_MAX + 1];
    char error[MOAT_OTA_ERROR_MAX];
} moat_ota;

/*
 * Check cfg and make a verifier waiting for the first byte of an image.
 * Computes the trusted keys' ids (crypto). Nothing is written to the slot.
 * MOAT_ERR_ARG (words in moat_ota_error()) for a missing or bad product,
 * key, slot, crypto (or a sha256_ctx_size over MOAT_OTA_SHA256_CTX_SIZE), or
 * a buffer outside MOAT_OTA_BUF_MIN..MOAT_OTA_BUF_MAX.
 */
moat_err moat_ota_init(moat_ota *v, const moat_ota_config *cfg);

/*
 * Continue an interrupted download of the same image, after init and before
 * the first feed: the slot already holds payload bytes [0, slot_bytes) of it
 * (a value moat_ota_checkpoint() gave; it is rounded down to a multiple of
 * buf_size). The header must still be fed from image offset 0 and is
 * checked as usual; once it is accepted the slot is NOT erased: its first
 * slot_bytes bytes are re-hashed from flash through buf, and
 * moat_ota_offset() jumps to header + signature + slot_bytes. The rest of
 * the chunk that completed the header is then ignored: fetch and feed from
 * moat_ota_offset(). If the slot did not hold that image after all,
 * moat_ota_finish() refuses it with MOAT_ERR_OTA_HASH: start over.
 * A value that rounds down to 0 (or a payload shorter than buf_size) is a
 * fresh start: the slot is erased as usual. MOAT_ERR_STATE after the first
 * feed.
 */
moat_err moat_ota_resume(moat_ota *v, uint32_t slot_bytes);

/*
 * The next len bytes of the image (len 0 is allowed), which continue at
 * image offset moat_ota_offset(). When the header and signature are in,
 * they are checked, in this order, each refusal before the slot is touched:
 *   MOAT_ERR_OTA_MAGIC      the image does not start with "MOAT"
 *   MOAT_ERR_OTA_FORMAT     unknown format version, bad sizes, reserved
 *                           bytes not zero, malformed rotation records
 *   MOAT_ERR_OTA_PRODUCT    made for another product id
 *   MOAT_ERR_OTA_TOO_LARGE  the payload is larger than the slot
 *   MOAT_ERR_OTA_DOWNGRADE  security counter lower than the device's, or
 *                           same counter and an older version
 *   MOAT_ERR_OTA_KEY        signed by a key the device does not trust, and
 *                           no rotation record leads to it from one it does
 *   MOAT_ERR_OTA_ROTATION   a rotation record's signature does not verify
 *   MOAT_ERR_OTA_SIGNATURE  the header's signature does not verify
 * Then the slot is erased (unless resuming: then the call returns once the
 * header is in, see moat_ota_resume()) and payload bytes are hashed and
 * written to it block by block. Bytes past the end of the image give
 * MOAT_ERR_OTA_FORMAT. A failing slot gives its error (e.g. MOAT_ERR_IO).
 * The check that completes the header runs up to 1 + MOAT_OTA_MAX_ROTATIONS
 * signature verifications in this call.
 */
moat_err moat_ota_feed(moat_ota *v, const uint8_t *data, size_t len);

/*
 * Sync the slot and set *durable to the payload bytes that are on it and
 * durable: the value to persist (with the image's identity) for
 * moat_ota_resume() after a cut. The block still being collected in buf is
 * not written early (blocks stay whole), so *durable is a multiple of
 * buf_size. 0 before the header is accepted.
 */
moat_err moat_ota_checkpoint(moat_ota *v, uint32_t *durable);

/*
 * After the last byte (the last, shorter block was written when it came):
 * sync the slot, and compare the payload's SHA-256 with the header's. MOAT_OK (and *result, which may be
 * NULL) only when the header's signature verified and the payload hash
 * matches: then, and only then, may the caller make the slot bootable (and
 * store result->new_key as trusted when result->rotated, and
 * result->header.counter as the device's counter once the image runs).
 * MOAT_ERR_OTA_TRUNCATED when bytes are missing ("image ended after 700 of
 * 9000 bytes"), MOAT_ERR_OTA_HASH when the payload was changed, or the
 * error that refused the image earlier. Every error is final (the verifier
 * is FAILED); MOAT_OK may be asked for again and gives the same result.
 */
moat_err moat_ota_finish(moat_ota *v, moat_ota_result *result);

/* Image offset of the next byte moat_ota_feed() takes. */
uint32_t moat_ota_offset(const moat_ota *v);

/* Total image size (header + signature + payload), 0 until the fixed
 * header is in. For progress reports. */
uint32_t moat_ota_total(const moat_ota *v);

/* The accepted header (signature verified), or NULL before that. */
const moat_ota_header *moat_ota_header_of(const moat_ota *v);

/* Words for the last refusal (or "" when none), never NULL. */
const char *moat_ota_error(const moat_ota *v);

/* Formats a key id as 16 lowercase hex digits plus a NUL. */
void moat_ota_key_id_hex(const uint8_t id[MOAT_OTA_KEY_ID_SIZE], char out[17]);

/* Compare two versions: <0, 0, >0. */
int moat_ota_version_cmp(moat_ota_version a, moat_ota_version b);

/* ----------------------------------- mbedTLS implementation (moat_tls) -- */

/* The crypto interface on mbedTLS (mbedcrypto); in libmoat_tls, not core. */
extern const moat_ota_crypto moat_ota_crypto_mbedtls;

/* Read an EC P-256 public key (PEM or DER "PUBLIC KEY", or a private key
 * PEM, whose public half is taken) from a file into 65 raw bytes.
 * MOAT_ERR_FILE (cannot read), MOAT_ERR_CERT_FORMAT (not a P-256 key). */
moat_err moat_ota_load_pub(const char *path, uint8_t pub[MOAT_OTA_PUB_SIZE]);

/* The same from a buffer holding PEM (NUL-terminated, len counting the NUL)
 * or DER. */
moat_err moat_ota_parse_pub(const uint8_t *data, size_t len,
                            uint8_t pub[MOAT_OTA_PUB_SIZE]);

#ifdef __cplusplus
}
#endif
#endif
