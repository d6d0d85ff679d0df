/*
 * test_ota.c - signed update images (moat/ota.h): images made and signed at
 * test time with mbedTLS, fed to the streaming verifier in chunks of every
 * size into an in-memory flash area that records each erase and write; each
 * refusal with its own error and words, the slot untouched until the header
 * verifies, key rotation, resume from flash, and the header codec.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/ota.h"
#include "ota_images.h"

/* ---- an in-memory flash area that checks flash rules ---- */

#define SLOT_SIZE 65536u

typedef struct memflash {
    uint8_t mem[SLOT_SIZE];
    uint8_t once[SLOT_SIZE];  /* 1 where written since the last erase */
    unsigned erases, writes, syncs, reads;
    uint32_t align;           /* every write offset is a multiple of it */
    int fail_write;           /* fail the write with this index (1-based), 0 never */
    int broken;               /* a write that broke a flash rule */
    uint32_t synced_upto;     /* highest written byte covered by a sync */
    uint32_t high;            /* highest written byte + 1 */
} memflash;

static moat_err mf_read(void *ctx, uint32_t off, void *buf, size_t len)
{
    memflash *f = ctx;
    if (off > SLOT_SIZE || len > SLOT_SIZE - off)
        return MOAT_ERR_ARG;
    f->reads++;
    memcpy(buf, f->mem + off, len);
    return MOAT_OK;
}

static moat_err mf_write(void *ctx, uint32_t off, const void *buf, size_t len)
{
    memflash *f = ctx;
    size_t i;
    f->writes++;
    if (f->fail_write != 0 && (int)f->writes == f->fail_write)
        return MOAT_ERR_IO;
    if (off > SLOT_SIZE || len > SLOT_SIZE - off || (f->align && off % f->align != 0)) {
        f->broken++;
        return MOAT_ERR_ARG;
    }
    for (i = 0; i < len; i++) {
        if (f->once[off + i] || f->mem[off + i] != 0xFF)
            f->broken++; /* written twice without an erase */
        f->once[off + i] = 1;
        f->mem[off + i] = ((const uint8_t *)buf)[i];
    }
    if (off + len > f->high)
        f->high = (uint32_t)(off + len);
    return MOAT_OK;
}

static moat_err mf_erase(void *ctx)
{
    memflash *f = ctx;
    f->erases++;
    memset(f->mem, 0xFF, sizeof f->mem);
    memset(f->once, 0, sizeof f->once);
    f->high = 0;
    return MOAT_OK;
}

static moat_err mf_sync(void *ctx)
{
    memflash *f = ctx;
    f->syncs++;
    f->synced_upto = f->high;
    return MOAT_OK;
}

static memflash slot, running;
static moat_flash_area slot_area, running_area;
static uint8_t workbuf[MOAT_OTA_BUF_MAX];
static test_key key_a, key_b, key_c, key_x;
static uint8_t payload[10000];
static moat_ota v;
static const moat_ota_version V123 = {1, 2, 3};

static void flash_reset(memflash *f, moat_flash_area *a)
{
    memset(f, 0, sizeof *f);
    memset(f->mem, 0xA5, sizeof f->mem); /* an old image, not erased */
    a->read = mf_read;
    a->write = mf_write;
    a->erase = mf_erase;
    a->sync = mf_sync;
    a->size = SLOT_SIZE;
    a->ctx = f;
}

static int group_setup(void **state)
{
    size_t i;
    (void)state;
    test_key_make(&key_a);
    test_key_make(&key_b);
    test_key_make(&key_c);
    test_key_make(&key_x);
    for (i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 31u + (i >> 8));
    return 0;
}

static int test_setup(void **state)
{
    (void)state;
    flash_reset(&slot, &slot_area);
    flash_reset(&running, &running_area);
    return 0;
}

/* A device that trusts k1 (and k2 when not NULL), counter 4, runs 1.2.3. */
static moat_ota_config device(const test_key *k1, const test_key *k2, size_t buf_size)
{
    moat_ota_config c;
    memset(&c, 0, sizeof c);
    c.product = "moat-test";
    c.keys[0] = k1->pub;
    c.keys[1] = k2 != NULL ? k2->pub : NULL;
    c.counter = 4;
    c.running = V123;
    c.slot = &slot_area;
    c.crypto = &moat_ota_crypto_mbedtls;
    c.buf = workbuf;
    c.buf_size = buf_size;
    return c;
}

static void start(const test_key *k1, const test_key *k2)
{
    moat_ota_config c = device(k1, k2, sizeof workbuf);
    slot.align = sizeof workbuf;
    assert_int_equal(moat_ota_init(&v, &c), MOAT_OK);
}

/* The usual good image: 1.3.0, counter 5, the whole payload, signed by k. */
static test_image_spec spec(const test_key *k)
{
    test_image_spec s;
    memset(&s, 0, sizeof s);
    s.version.major = 1;
    s.version.minor = 3;
    s.counter = 5;
    s.payload = payload;
    s.payload_size = sizeof payload;
    s.signer = k;
    return s;
}

/* Feed img in chunks of `chunk`; returns the first error. */
static moat_err feed_chunks(const uint8_t *img, size_t len, size_t chunk)
{
    size_t off = 0;
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        moat_err e = moat_ota_feed(&v, img + off, n);
        if (e != MOAT_OK)
            return e;
        off += n;
    }
    return MOAT_OK;
}

static void assert_running_untouched(void)
{
    assert_int_equal(running.erases + running.writes, 0);
}

static void assert_slot_untouched(void)
{
    assert_int_equal(slot.erases, 0);
    assert_int_equal(slot.writes, 0);
    assert_running_untouched();
}

static void assert_words(const char *want)
{
    if (strstr(moat_ota_error(&v), want) == NULL)
        fail_msg("error words \"%s\" do not contain \"%s\"", moat_ota_error(&v), want);
}

/* ---- good images ---- */

static void good_image_in_chunks(size_t chunk, size_t buf_size)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img = test_image(&s, &len);
    moat_ota_config c = device(&key_a, NULL, buf_size);
    moat_ota_result r;

    flash_reset(&slot, &slot_area);
    slot.align = (uint32_t)buf_size;
    assert_int_equal(moat_ota_init(&v, &c), MOAT_OK);
    assert_null(moat_ota_header_of(&v));
    assert_int_equal(feed_chunks(img, len, chunk), MOAT_OK);
    assert_int_equal(moat_ota_offset(&v), len);
    assert_int_equal(moat_ota_total(&v), len);
    assert_int_equal(moat_ota_finish(&v, &r), MOAT_OK);
    assert_string_equal(moat_ota_error(&v), "");
    assert_string_equal(r.header.product, "moat-test");
    assert_int_equal(r.header.version.major, 1);
    assert_int_equal(r.header.version.minor, 3);
    assert_int_equal(r.header.counter, 5);
    assert_int_equal(r.header.payload_size, sizeof payload);
    assert_memory_equal(r.header.key_id, key_a.id, 8);
    assert_false(r.rotated);
    assert_memory_equal(slot.mem, payload, sizeof payload);
    assert_int_equal(slot.mem[sizeof payload], 0xFF); /* erased beyond */
    assert_int_equal(slot.erases, 1);
    assert_int_equal(slot.broken, 0);
    assert_int_equal(slot.writes, (sizeof payload + buf_size - 1) / buf_size);
    assert_true(slot.syncs >= 1);
    assert_int_equal(slot.synced_upto, sizeof payload);
    assert_running_untouched();
    /* finish again: the same answer */
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_OK);
    assert_int_equal(moat_ota_feed(&v, img, 1), MOAT_ERR_STATE);
    free(img);
}

static void good_chunks_1(void **state) { (void)state; good_image_in_chunks(1, 4096); }
static void good_chunks_7(void **state) { (void)state; good_image_in_chunks(7, 4096); }
static void good_chunks_4096(void **state) { (void)state; good_image_in_chunks(4096, 4096); }
static void good_whole(void **state) { (void)state; good_image_in_chunks(1u << 20, 4096); }
static void good_small_buffer(void **state)
{
    (void)state;
    good_image_in_chunks(333, MOAT_OTA_BUF_MIN);
    good_image_in_chunks(1, 1536);
}

static void payload_exactly_blocks(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img;
    (void)state;
    s.payload_size = 2 * 4096;
    img = test_image(&s, &len);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 1000), MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_OK);
    assert_int_equal(slot.writes, 2);
    assert_memory_equal(slot.mem, payload, 8192);
    free(img);
}

/* ---- refusals, each with its own error ---- */

static void tampered_payload(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img = test_image(&s, &len);
    (void)state;
    img[len - 5000] ^= 0x01;
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 512), MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_ERR_OTA_HASH);
    assert_words("payload SHA-256 does not match the header");
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_ERR_OTA_HASH); /* sticky */
    assert_int_equal(moat_ota_feed(&v, img, 1), MOAT_ERR_OTA_HASH);
    assert_running_untouched();
    free(img);
}

static void tampered_header(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img = test_image(&s, &len);
    (void)state;
    img[48] ^= 0x01; /* the patch number */
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 64), MOAT_ERR_OTA_SIGNATURE);
    assert_words("image signature does not verify with key id ");
    assert_slot_untouched();
    assert_null(moat_ota_header_of(&v));
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_ERR_OTA_SIGNATURE);
    free(img);
}

static void tampered_signature(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img = test_image(&s, &len);
    (void)state;
    img[MOAT_OTA_HEADER_FIXED + 10] ^= 0x80;
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, len), MOAT_ERR_OTA_SIGNATURE);
    assert_slot_untouched();
    free(img);
}

static void unknown_key(void **state)
{
    test_image_spec s = spec(&key_x);
    size_t len;
    uint8_t *img = test_image(&s, &len);
    char hex[17], want[64];
    (void)state;
    start(&key_a, &key_b);
    assert_int_equal(feed_chunks(img, len, 100), MOAT_ERR_OTA_KEY);
    moat_ota_key_id_hex(key_x.id, hex);
    snprintf(want, sizeof want, "image is signed by unknown key id %s", hex);
    assert_string_equal(moat_ota_error(&v), want);
    assert_slot_untouched();
    free(img);
}

static void wrong_key_claiming_trusted_id(void **state)
{
    test_image_spec s = spec(&key_x);
    size_t len;
    uint8_t *img;
    (void)state;
    s.claimed_key_id = key_a.id; /* signed by x, says a */
    img = test_image(&s, &len);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 7), MOAT_ERR_OTA_SIGNATURE);
    assert_slot_untouched();
    free(img);
}

static void lower_counter(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img;
    (void)state;
    s.counter = 3;
    s.version.major = 9; /* a bigger semver does not help */
    img = test_image(&s, &len);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_ERR_OTA_DOWNGRADE);
    assert_string_equal(moat_ota_error(&v), "image security counter 3 is lower than the device's 4");
    assert_slot_untouched();
    free(img);
}

static void same_counter_older_version(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img;
    (void)state;
    s.counter = 4;
    s.version.major = 1;
    s.version.minor = 2;
    s.version.patch = 2;
    img = test_image(&s, &len);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_ERR_OTA_DOWNGRADE);
    assert_string_equal(moat_ota_error(&v),
                        "image version 1.2.2 is older than the running 1.2.3 at the same security counter 4");
    assert_slot_untouched();
    free(img);
}

static void same_version_and_higher_counter_accepted(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img;
    (void)state;
    s.counter = 4; /* reinstall what runs */
    s.version = V123;
    img = test_image(&s, &len);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_OK);
    free(img);

    s.counter = 5; /* a deliberate rollback: older code, higher counter */
    s.version.major = 0;
    img = test_image(&s, &len);
    flash_reset(&slot, &slot_area);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_OK);
    free(img);
}

static void wrong_product(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img;
    (void)state;
    s.product = "other-board";
    img = test_image(&s, &len);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 1), MOAT_ERR_OTA_PRODUCT);
    assert_string_equal(moat_ota_error(&v),
                        "image is for product \"other-board\", this device is \"moat-test\"");
    assert_slot_untouched();
    free(img);
}

static void truncated(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len, cuts[] = {0, 3, 100, MOAT_OTA_HEADER_FIXED + 63, 0, 0};
    uint8_t *img = test_image(&s, &len);
    char want[96];
    unsigned i;
    (void)state;
    cuts[4] = MOAT_OTA_HEADER_FIXED + MOAT_OTA_SIG_SIZE + 4096; /* one whole block */
    cuts[5] = len - 1;
    for (i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        flash_reset(&slot, &slot_area);
        start(&key_a, NULL);
        assert_int_equal(feed_chunks(img, cuts[i], 100), MOAT_OK);
        assert_int_equal(moat_ota_finish(&v, NULL), MOAT_ERR_OTA_TRUNCATED);
        if (cuts[i] < MOAT_OTA_HEADER_FIXED)
            snprintf(want, sizeof want, "image is truncated: it ended after %u bytes, inside its header",
                     (unsigned)cuts[i]);
        else
            snprintf(want, sizeof want, "image is truncated: it ended after %u of %u bytes",
                     (unsigned)cuts[i], (unsigned)len);
        assert_string_equal(moat_ota_error(&v), want);
        assert_running_untouched();
        if (cuts[i] < MOAT_OTA_HEADER_FIXED + MOAT_OTA_SIG_SIZE)
            assert_slot_untouched();
    }
    free(img);
}

static void too_large(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img = test_image(&s, &len);
    moat_ota_config c = device(&key_a, NULL, 4096);
    (void)state;
    slot_area.size = 8000;
    assert_int_equal(moat_ota_init(&v, &c), MOAT_OK);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_ERR_OTA_TOO_LARGE);
    assert_string_equal(moat_ota_error(&v),
                        "image payload of 10000 bytes does not fit the slot of 8000 bytes");
    assert_slot_untouched();
    free(img);
}

static void bad_magic_refused_at_once(void **state)
{
    (void)state;
    start(&key_a, NULL);
    assert_int_equal(moat_ota_feed(&v, (const uint8_t *)"MOA", 3), MOAT_OK);
    assert_int_equal(moat_ota_feed(&v, (const uint8_t *)"X", 1), MOAT_ERR_OTA_MAGIC);
    assert_words("does not start with \"MOAT\"");
    assert_slot_untouched();
    start(&key_a, NULL);
    assert_int_equal(moat_ota_feed(&v, (const uint8_t *)"\x7f" "ELF\x02\x01", 6), MOAT_ERR_OTA_MAGIC);
}

static void bad_format(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img = test_image(&s, &len);
    struct { size_t at; uint8_t x; const char *words; } cases[] = {
        {4, 2, "format version 3 is not supported"},
        {6, 1, "header size 129 does not match"},
        {8, 1, "unknown flags 1"},
        {10, 1, "does not match its 1 key rotation records"},
        {11, 1, "reserved bytes"},
        {120, 1, "reserved bytes"},
        {12, 0x7f, "product id"},
        {43, 'x', "product id"},
    };
    unsigned i;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, img, len);
        copy[cases[i].at] ^= cases[i].x;
        start(&key_a, NULL);
        assert_int_equal(feed_chunks(copy, len, 50), MOAT_ERR_OTA_FORMAT);
        assert_words(cases[i].words);
        assert_slot_untouched();
        free(copy);
    }
    free(img);
}

static void bytes_after_the_end(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img = test_image(&s, &len), *longer = malloc(len + 3);
    (void)state;
    memcpy(longer, img, len);
    memset(longer + len, 0, 3);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(longer, len + 3, 4096), MOAT_ERR_OTA_FORMAT);
    assert_words("image is longer than its header says (10192 bytes): more bytes came after its end");
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_ERR_OTA_FORMAT);
    free(img);
    free(longer);
}

static void nothing_written_before_header_accepted(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len, i, hs = MOAT_OTA_HEADER_FIXED + MOAT_OTA_SIG_SIZE;
    uint8_t *img = test_image(&s, &len);
    (void)state;
    start(&key_a, NULL);
    for (i = 0; i + 1 < hs; i++) {
        assert_int_equal(moat_ota_feed(&v, img + i, 1), MOAT_OK);
        assert_slot_untouched();
    }
    assert_int_equal(moat_ota_total(&v), len);
    assert_null(moat_ota_header_of(&v));
    assert_int_equal(moat_ota_feed(&v, img + i, 1), MOAT_OK); /* the last signature byte */
    assert_non_null(moat_ota_header_of(&v));
    assert_int_equal(slot.erases, 1);
    assert_int_equal(slot.writes, 0);
    free(img);
}

static void slot_write_failure(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img = test_image(&s, &len);
    (void)state;
    start(&key_a, NULL);
    slot.fail_write = 2;
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_ERR_IO);
    assert_string_equal(moat_ota_error(&v),
                        "writing the slot at offset 4096 failed: transport I/O error");
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_ERR_IO);
    free(img);
}

/* ---- key rotation ---- */

static void rotation_accepted_and_new_key_trusted(void **state)
{
    moat_ota_rotation rot;
    test_image_spec s = spec(&key_b);
    moat_ota_result r;
    size_t len;
    uint8_t *img;
    (void)state;
    test_rotation(&rot, &key_a, &key_b);
    s.rot = &rot;
    s.rotations = 1;
    img = test_image(&s, &len);

    start(&key_a, NULL); /* a device that knows only a */
    assert_int_equal(feed_chunks(img, len, 7), MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, &r), MOAT_OK);
    assert_true(r.rotated);
    assert_memory_equal(r.new_key, key_b.pub, MOAT_OTA_PUB_SIZE);
    assert_memory_equal(r.new_key_id, key_b.id, MOAT_OTA_KEY_ID_SIZE);
    assert_int_equal(r.header.rotations, 1);
    assert_int_equal(r.header.header_size, MOAT_OTA_HEADER_FIXED + MOAT_OTA_ROTATION_SIZE);

    /* the device now trusts b only: the same image, and one without the record */
    flash_reset(&slot, &slot_area);
    start(&key_b, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, &r), MOAT_OK);
    assert_false(r.rotated);
    free(img);
    s.rot = NULL;
    s.rotations = 0;
    img = test_image(&s, &len);
    flash_reset(&slot, &slot_area);
    start(&key_b, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_OK);
    /* ... and a device that knows only a refuses that one */
    flash_reset(&slot, &slot_area);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_ERR_OTA_KEY);
    free(img);
}

static void rotation_introduced_by_old_key(void **state)
{
    /* moat sign --key a --rotate-to b: signed by a, introduces b */
    moat_ota_rotation rot;
    test_image_spec s = spec(&key_a);
    moat_ota_result r;
    size_t len;
    uint8_t *img;
    (void)state;
    test_rotation(&rot, &key_a, &key_b);
    s.rot = &rot;
    s.rotations = 1;
    img = test_image(&s, &len);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, &r), MOAT_OK);
    assert_true(r.rotated);
    assert_memory_equal(r.new_key, key_b.pub, MOAT_OTA_PUB_SIZE);
    /* a device that already retired a refuses it */
    flash_reset(&slot, &slot_area);
    start(&key_b, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_ERR_OTA_KEY);
    free(img);
}

static void rotation_chain_skips_versions(void **state)
{
    moat_ota_rotation rot[2];
    test_image_spec s = spec(&key_c);
    moat_ota_result r;
    size_t len;
    uint8_t *img;
    (void)state;
    test_rotation(&rot[0], &key_a, &key_b);
    test_rotation(&rot[1], &key_b, &key_c);
    s.rot = rot;
    s.rotations = 2;
    img = test_image(&s, &len);
    start(&key_a, NULL); /* missed both rotations */
    assert_int_equal(feed_chunks(img, len, 999), MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, &r), MOAT_OK);
    assert_true(r.rotated);
    assert_memory_equal(r.new_key, key_c.pub, MOAT_OTA_PUB_SIZE);
    flash_reset(&slot, &slot_area);
    start(&key_b, NULL); /* missed one */
    assert_int_equal(feed_chunks(img, len, 999), MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, &r), MOAT_OK);
    assert_memory_equal(r.new_key, key_c.pub, MOAT_OTA_PUB_SIZE);
    free(img);
}

static void rotation_by_unknown_key_refused(void **state)
{
    moat_ota_rotation rot;
    test_image_spec s = spec(&key_b);
    size_t len;
    uint8_t *img;
    char hx[17], hb[17], want[160];
    (void)state;
    test_rotation(&rot, &key_x, &key_b); /* x is nobody the device trusts */
    s.rot = &rot;
    s.rotations = 1;
    img = test_image(&s, &len);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_ERR_OTA_KEY);
    moat_ota_key_id_hex(key_b.id, hb);
    moat_ota_key_id_hex(key_x.id, hx);
    snprintf(want, sizeof want,
             "image is signed by unknown key id %s, and its key rotation records start from "
             "unknown key id %s", hb, hx);
    assert_string_equal(moat_ota_error(&v), want);
    assert_slot_untouched();
    free(img);
}

static void rotation_forged_refused(void **state)
{
    /* claims to come from a, but x signed it */
    moat_ota_rotation rot;
    test_image_spec s = spec(&key_x);
    uint8_t body[MOAT_OTA_ROTATION_SIGNED];
    size_t len;
    uint8_t *img;
    (void)state;
    test_rotation(&rot, &key_a, &key_x);
    moat_ota_rotation_signed_bytes(&rot, body);
    test_sign(&key_x, body, sizeof body, rot.sig);
    s.rot = &rot;
    s.rotations = 1;
    img = test_image(&s, &len);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_ERR_OTA_ROTATION);
    assert_words("key rotation record 1 (to key id ");
    assert_words(") is not validly signed by key id ");
    assert_slot_untouched();
    free(img);
}

static void rotation_key_id_mismatch_refused(void **state)
{
    moat_ota_rotation rot;
    test_image_spec s = spec(&key_b);
    size_t len;
    uint8_t *img;
    (void)state;
    test_rotation(&rot, &key_a, &key_b);
    memcpy(rot.new_key, key_x.pub, MOAT_OTA_PUB_SIZE); /* b's id, x's key */
    s.rot = &rot;
    s.rotations = 1;
    img = test_image(&s, &len);
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_ERR_OTA_FORMAT);
    assert_words("its key id does not match its key");
    free(img);
}

/* ---- resume ---- */

static void resume_from_flash(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len, hs = MOAT_OTA_HEADER_FIXED + MOAT_OTA_SIG_SIZE, cut;
    uint8_t *img = test_image(&s, &len);
    uint32_t durable = 99;
    moat_ota_result r;
    unsigned erases;
    (void)state;

    start(&key_a, NULL);
    assert_int_equal(moat_ota_checkpoint(&v, &durable), MOAT_OK);
    assert_int_equal(durable, 0);
    cut = hs + 4096 + 3000; /* the connection dies here */
    assert_int_equal(feed_chunks(img, cut, 1000), MOAT_OK);
    assert_int_equal(moat_ota_checkpoint(&v, &durable), MOAT_OK);
    assert_int_equal(durable, 4096);
    assert_int_equal(slot.synced_upto, 4096);
    erases = slot.erases;

    /* a new boot: a new verifier, told what the slot holds */
    start(&key_a, NULL);
    assert_int_equal(moat_ota_resume(&v, durable + 100), MOAT_OK); /* rounds down */
    /* the client fetches from offset 0 again: header + whatever follows */
    assert_int_equal(moat_ota_feed(&v, img, 2000), MOAT_OK);
    assert_int_equal(slot.erases, erases); /* not erased */
    assert_int_equal(moat_ota_offset(&v), hs + 4096);
    /* and continues at the offset it is told */
    assert_int_equal(feed_chunks(img + moat_ota_offset(&v), len - moat_ota_offset(&v), 777),
                     MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, &r), MOAT_OK);
    assert_memory_equal(slot.mem, payload, sizeof payload);
    assert_int_equal(slot.broken, 0);
    assert_true(slot.reads > 0);
    free(img);
}

static void resume_with_other_bytes_in_slot(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img = test_image(&s, &len);
    (void)state;
    start(&key_a, NULL);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_OK);
    slot.mem[10] ^= 1; /* the slot changed in between */
    start(&key_a, NULL);
    assert_int_equal(moat_ota_resume(&v, 8192), MOAT_OK);
    assert_int_equal(feed_chunks(img, 300, 300), MOAT_OK);
    assert_int_equal(moat_ota_offset(&v), MOAT_OTA_HEADER_FIXED + MOAT_OTA_SIG_SIZE + 8192);
    assert_int_equal(feed_chunks(img + moat_ota_offset(&v), len - moat_ota_offset(&v), 4096),
                     MOAT_OK);
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_ERR_OTA_HASH);
    assert_words("or the slot did not hold what was resumed");
    free(img);
}

static void resume_small_is_fresh_start_and_late_resume_refused(void **state)
{
    test_image_spec s = spec(&key_a);
    size_t len;
    uint8_t *img = test_image(&s, &len);
    (void)state;
    start(&key_a, NULL);
    assert_int_equal(moat_ota_resume(&v, 4095), MOAT_OK); /* rounds to 0 */
    assert_int_equal(feed_chunks(img, len, 5000), MOAT_OK);
    assert_int_equal(slot.erases, 1);
    assert_int_equal(moat_ota_finish(&v, NULL), MOAT_OK);
    assert_int_equal(moat_ota_resume(&v, 4096), MOAT_ERR_STATE);
    free(img);
}

/* ---- the rest of the API ---- */

static void init_refuses_bad_config(void **state)
{
    moat_ota_config c = device(&key_a, NULL, 4096);
    moat_ota_crypto big = moat_ota_crypto_mbedtls;
    uint8_t bad_key[MOAT_OTA_PUB_SIZE] = {0x02};
    (void)state;
    c.buf_size = 1023;
    assert_int_equal(moat_ota_init(&v, &c), MOAT_ERR_ARG);
    assert_words("1024 to 4096");
    c.buf_size = 4097;
    assert_int_equal(moat_ota_init(&v, &c), MOAT_ERR_ARG);
    c = device(&key_a, NULL, 4096);
    c.product = "";
    assert_int_equal(moat_ota_init(&v, &c), MOAT_ERR_ARG);
    c.product = "has space";
    assert_int_equal(moat_ota_init(&v, &c), MOAT_ERR_ARG);
    c.product = "0123456789012345678901234567890123";
    assert_int_equal(moat_ota_init(&v, &c), MOAT_ERR_ARG);
    c = device(&key_a, NULL, 4096);
    c.keys[0] = NULL;
    assert_int_equal(moat_ota_init(&v, &c), MOAT_ERR_ARG);
    assert_words("no trusted update key");
    c.keys[0] = bad_key;
    assert_int_equal(moat_ota_init(&v, &c), MOAT_ERR_ARG);
    c = device(&key_a, NULL, 4096);
    c.slot = NULL;
    assert_int_equal(moat_ota_init(&v, &c), MOAT_ERR_ARG);
    c = device(&key_a, NULL, 4096);
    big.sha256_ctx_size = MOAT_OTA_SHA256_CTX_SIZE + 1;
    c.crypto = &big;
    assert_int_equal(moat_ota_init(&v, &c), MOAT_ERR_ARG);
    assert_int_equal(moat_ota_feed(&v, (const uint8_t *)"M", 1), MOAT_ERR_ARG);
    c = device(&key_a, NULL, 4096);
    assert_int_equal(moat_ota_init(&v, &c), MOAT_OK);
    assert_int_equal(moat_ota_feed(&v, NULL, 0), MOAT_OK);
    assert_int_equal(moat_ota_feed(&v, NULL, 1), MOAT_ERR_ARG);
}

static moat_err failing_verify(void *user, const uint8_t *pub, const uint8_t *d, const uint8_t *sig)
{
    (void)user;
    (void)pub;
    (void)d;
    (void)sig;
    return MOAT_ERR_NO_SPACE;
}

static void crypto_failure_is_not_a_bad_signature(void **state)
{
    test_image_spec s = spec(&key_a);
    moat_ota_crypto broken = moat_ota_crypto_mbedtls;
    moat_ota_config c = device(&key_a, NULL, 4096);
    size_t len;
    uint8_t *img = test_image(&s, &len);
    (void)state;
    broken.p256_verify = failing_verify;
    c.crypto = &broken;
    assert_int_equal(moat_ota_init(&v, &c), MOAT_OK);
    assert_int_equal(feed_chunks(img, len, 4096), MOAT_ERR_NO_SPACE);
    assert_string_equal(moat_ota_error(&v), "ECDSA verification failed: buffer too small");
    assert_slot_untouched();
    free(img);
}

static void header_codec(void **state)
{
    moat_ota_header h, back;
    moat_ota_rotation rot[2], got;
    uint8_t out[MOAT_OTA_HEADER_MAX];
    size_t len, need;
    char why[MOAT_OTA_ERROR_MAX];
    (void)state;
    memset(&h, 0, sizeof h);
    strcpy(h.product, "p");
    h.version.major = 65535;
    h.counter = 0xFFFFFFFFu;
    h.payload_size = 1;
    memset(h.payload_sha256, 0xAB, 32);
    memcpy(h.key_id, key_c.id, 8);
    test_rotation(&rot[0], &key_a, &key_b);
    test_rotation(&rot[1], &key_b, &key_c);
    assert_int_equal(moat_ota_header_encode(&h, rot, 2, out, sizeof out, &len), MOAT_OK);
    assert_int_equal(len, MOAT_OTA_HEADER_FIXED + 2 * MOAT_OTA_ROTATION_SIZE);
    assert_memory_equal(out, "MOAT\x01\x00", 6);
    assert_int_equal(out[6] | out[7] << 8, len);
    assert_int_equal(moat_ota_header_parse(out, len, &back, &need, why, sizeof why), MOAT_OK);
    assert_int_equal(need, len);
    assert_string_equal(back.product, "p");
    assert_int_equal(back.version.major, 65535);
    assert_int_equal(back.counter, 0xFFFFFFFFu);
    assert_int_equal(back.rotations, 2);
    assert_int_equal(moat_ota_rotation_get(out, len, 1, &got), MOAT_OK);
    assert_memory_equal(&got, &rot[1], sizeof got);
    assert_int_equal(moat_ota_rotation_get(out, len, 2, &got), MOAT_ERR_ARG);
    /* every shorter prefix asks for more, never reads beyond */
    for (need = 0; need < len; need++) {
        size_t want;
        uint8_t *cut = malloc(need ? need : 1);
        memcpy(cut, out, need);
        assert_int_equal(moat_ota_header_parse(cut, need, &back, &want, why, sizeof why),
                         MOAT_ERR_OTA_TRUNCATED);
        free(cut);
    }
    /* a broken chain */
    test_rotation(&rot[1], &key_x, &key_c);
    assert_int_equal(moat_ota_header_encode(&h, rot, 2, out, sizeof out, &len), MOAT_OK);
    assert_int_equal(moat_ota_header_parse(out, len, &back, &need, why, sizeof why),
                     MOAT_ERR_OTA_FORMAT);
    assert_string_equal(why, "key rotation record 2 is not signed by the key record 1 introduces");
    /* bad arguments to the encoder */
    assert_int_equal(moat_ota_header_encode(&h, rot, 5, out, sizeof out, &len), MOAT_ERR_ARG);
    assert_int_equal(moat_ota_header_encode(&h, NULL, 0, out, 127, &len), MOAT_ERR_NO_SPACE);
    strcpy(h.product, "a b");
    assert_int_equal(moat_ota_header_encode(&h, NULL, 0, out, sizeof out, &len), MOAT_ERR_ARG);
}

static void hash_area_and_key_id(void **state)
{
    moat_ota_sha256_ctx ctx;
    uint8_t d[32], want[32], id[8];
    (void)state;
    memcpy(slot.mem, payload, sizeof payload);
    assert_int_equal(moat_ota_hash_area(&slot_area, sizeof payload, &moat_ota_crypto_mbedtls,
                                        &ctx, workbuf, 100, d), MOAT_OK);
    sha256_of(payload, sizeof payload, want);
    assert_memory_equal(d, want, 32);
    assert_int_equal(moat_ota_hash_area(&slot_area, SLOT_SIZE + 1, &moat_ota_crypto_mbedtls,
                                        &ctx, workbuf, 100, d), MOAT_ERR_ARG);
    assert_int_equal(moat_ota_key_id(&moat_ota_crypto_mbedtls, &ctx, key_a.pub, id), MOAT_OK);
    assert_memory_equal(id, key_a.id, 8);
}

static void every_error_has_words(void **state)
{
    int e;
    (void)state;
    for (e = MOAT_ERR_OTA_MAGIC; e >= MOAT_ERR_OTA_TOO_LARGE; e--)
        assert_string_not_equal(moat_strerror(e), "unknown error");
    assert_string_equal(moat_strerror(MOAT_ERR_OTA_HASH),
                        "payload SHA-256 does not match the image header: payload changed");
}

static void version_cmp(void **state)
{
    moat_ota_version a = {1, 2, 3}, b = {1, 10, 0};
    (void)state;
    assert_true(moat_ota_version_cmp(a, b) < 0);
    assert_true(moat_ota_version_cmp(b, a) > 0);
    assert_int_equal(moat_ota_version_cmp(a, a), 0);
}

static void pem_keys(void **state)
{
    /* the public half of key_a, written by mbedTLS, read back raw */
    mbedtls_pk_context pk;
    unsigned char pem[1024];
    uint8_t pub[MOAT_OTA_PUB_SIZE];
    (void)state;
    mbedtls_pk_init(&pk);
    assert_int_equal(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
    assert_int_equal(mbedtls_ecp_copy(&mbedtls_pk_ec(pk)->Q, &key_a.kp.Q), 0);
    assert_int_equal(mbedtls_ecp_group_copy(&mbedtls_pk_ec(pk)->grp, &key_a.kp.grp), 0);
    assert_int_equal(mbedtls_pk_write_pubkey_pem(&pk, pem, sizeof pem), 0);
    assert_int_equal(moat_ota_parse_pub(pem, strlen((char *)pem) + 1, pub), MOAT_OK);
    assert_memory_equal(pub, key_a.pub, sizeof pub);
    assert_int_equal(moat_ota_parse_pub((const uint8_t *)"junk", 5, pub), MOAT_ERR_CERT_FORMAT);
    assert_int_equal(moat_ota_load_pub("/nonexistent/k.pub", pub), MOAT_ERR_FILE);
    mbedtls_pk_free(&pk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(good_chunks_1, test_setup),
        cmocka_unit_test_setup(good_chunks_7, test_setup),
        cmocka_unit_test_setup(good_chunks_4096, test_setup),
        cmocka_unit_test_setup(good_whole, test_setup),
        cmocka_unit_test_setup(good_small_buffer, test_setup),
        cmocka_unit_test_setup(payload_exactly_blocks, test_setup),
        cmocka_unit_test_setup(tampered_payload, test_setup),
        cmocka_unit_test_setup(tampered_header, test_setup),
        cmocka_unit_test_setup(tampered_signature, test_setup),
        cmocka_unit_test_setup(unknown_key, test_setup),
        cmocka_unit_test_setup(wrong_key_claiming_trusted_id, test_setup),
        cmocka_unit_test_setup(lower_counter, test_setup),
        cmocka_unit_test_setup(same_counter_older_version, test_setup),
        cmocka_unit_test_setup(same_version_and_higher_counter_accepted, test_setup),
        cmocka_unit_test_setup(wrong_product, test_setup),
        cmocka_unit_test_setup(truncated, test_setup),
        cmocka_unit_test_setup(too_large, test_setup),
        cmocka_unit_test_setup(bad_magic_refused_at_once, test_setup),
        cmocka_unit_test_setup(bad_format, test_setup),
        cmocka_unit_test_setup(bytes_after_the_end, test_setup),
        cmocka_unit_test_setup(nothing_written_before_header_accepted, test_setup),
        cmocka_unit_test_setup(slot_write_failure, test_setup),
        cmocka_unit_test_setup(rotation_accepted_and_new_key_trusted, test_setup),
        cmocka_unit_test_setup(rotation_introduced_by_old_key, test_setup),
        cmocka_unit_test_setup(rotation_chain_skips_versions, test_setup),
        cmocka_unit_test_setup(rotation_by_unknown_key_refused, test_setup),
        cmocka_unit_test_setup(rotation_forged_refused, test_setup),
        cmocka_unit_test_setup(rotation_key_id_mismatch_refused, test_setup),
        cmocka_unit_test_setup(resume_from_flash, test_setup),
        cmocka_unit_test_setup(resume_with_other_bytes_in_slot, test_setup),
        cmocka_unit_test_setup(resume_small_is_fresh_start_and_late_resume_refused, test_setup),
        cmocka_unit_test_setup(init_refuses_bad_config, test_setup),
        cmocka_unit_test_setup(crypto_failure_is_not_a_bad_signature, test_setup),
        cmocka_unit_test_setup(header_codec, test_setup),
        cmocka_unit_test_setup(hash_area_and_key_id, test_setup),
        cmocka_unit_test(every_error_has_words),
        cmocka_unit_test(version_cmp),
        cmocka_unit_test(pem_keys),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
