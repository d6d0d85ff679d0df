/*
 * fuzz_ota.c - libFuzzer harness for the OTA image verifier (moat/ota.h):
 * the header parser and the whole feed path on hostile images.
 *
 * The crypto is a fake so the fuzzer can make images that pass: "SHA-256" is
 * four FNV-1a lanes, and a "signature" by a key is the digest followed by
 * the key's first 32 coordinate bytes. Everything the verifier does around
 * the crypto (parsing, policy, rotation chains, blocks, resume) is real.
 *
 * Input: byte 0 = chunk size - 1; byte 1 = flags (bit 0: the device also
 * trusts key 1; bit 1: resume with 1024 << bit 2 bytes already in the slot,
 * taken from the payload as the image says; bits 4-7: the device's counter);
 * then the image.
 *
 * Oracles, besides ASan/UBSan:
 *  - nothing is erased or written before the header is accepted;
 *  - only the given slot is touched, inside its size, each byte once per
 *    erase, at offsets that are multiples of the buffer size;
 *  - moat_ota_offset() never passes moat_ota_total() once that is known;
 *  - finish() returns MOAT_OK only for a header that verified, with the
 *    whole payload fed, and then the slot holds exactly the bytes whose hash
 *    the header names;
 *  - every error returned is sticky and has words.
 *
 * Built with -DFUZZ_OTA_SEEDS it is instead a program that writes (or with
 * --check, compares) the seed corpus: fuzz_ota_seeds [--check] DIR.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moat/ota.h"

#include "fuzz_check.h"

/* ---- fake crypto ---- */

typedef struct fake_sha {
    unsigned long long h[4];
} fake_sha;

static moat_err fsha_start(void *ctx)
{
    fake_sha *s = ctx;
    unsigned i;
    for (i = 0; i < 4; i++)
        s->h[i] = 0xcbf29ce484222325ull + i;
    return MOAT_OK;
}

static moat_err fsha_update(void *ctx, const uint8_t *d, size_t n)
{
    fake_sha *s = ctx;
    size_t j;
    for (j = 0; j < n; j++) {
        unsigned i;
        for (i = 0; i < 4; i++)
            s->h[i] = (s->h[i] ^ d[j]) * (0x100000001b3ull + 2 * i);
    }
    return MOAT_OK;
}

static moat_err fsha_finish(void *ctx, uint8_t out[32])
{
    fake_sha *s = ctx;
    unsigned i, b;
    for (i = 0; i < 4; i++)
        for (b = 0; b < 8; b++)
            out[i * 8 + b] = (uint8_t)(s->h[i] >> (8 * b));
    return MOAT_OK;
}

static moat_err fverify(void *user, const uint8_t pub[65], const uint8_t digest[32],
                        const uint8_t sig[64])
{
    (void)user;
    if (pub[0] != 0x04 || memcmp(sig, digest, 32) != 0 || memcmp(sig + 32, pub + 1, 32) != 0)
        return MOAT_ERR_OTA_SIGNATURE;
    return MOAT_OK;
}

static const moat_ota_crypto fake_crypto = {
    sizeof(fake_sha), fsha_start, fsha_update, fsha_finish, fverify, NULL,
};

static void fake_hash(const uint8_t *d, size_t n, uint8_t out[32])
{
    fake_sha s;
    fsha_start(&s);
    fsha_update(&s, d, n);
    fsha_finish(&s, out);
}

static void fake_key(unsigned k, uint8_t pub[65])
{
    unsigned i;
    pub[0] = 0x04;
    for (i = 1; i < 65; i++)
        pub[i] = (uint8_t)(k * 37u + i * 11u);
}

/* ---- an in-memory slot that checks flash rules ---- */

#define SLOT_SIZE 16384u
#define BUF_SIZE MOAT_OTA_BUF_MIN

typedef struct fslot {
    uint8_t mem[SLOT_SIZE];
    uint8_t once[SLOT_SIZE];
    unsigned erases, writes;
} fslot;

static fslot slot;

static moat_err fs_read(void *ctx, uint32_t off, void *buf, size_t len)
{
    (void)ctx;
    CHECK(off <= SLOT_SIZE && len <= SLOT_SIZE - off);
    memcpy(buf, slot.mem + off, len);
    return MOAT_OK;
}

static moat_err fs_write(void *ctx, uint32_t off, const void *buf, size_t len)
{
    size_t i;
    (void)ctx;
    CHECK(off <= SLOT_SIZE && len <= SLOT_SIZE - off);
    CHECK(off % BUF_SIZE == 0 && len > 0 && len <= BUF_SIZE);
    for (i = 0; i < len; i++) {
        CHECK(!slot.once[off + i]);
        slot.once[off + i] = 1;
    }
    memcpy(slot.mem + off, buf, len);
    slot.writes++;
    return MOAT_OK;
}

static moat_err fs_erase(void *ctx)
{
    (void)ctx;
    memset(slot.mem, 0xFF, sizeof slot.mem);
    memset(slot.once, 0, sizeof slot.once);
    slot.erases++;
    return MOAT_OK;
}

static moat_err fs_sync(void *ctx)
{
    (void)ctx;
    return MOAT_OK;
}

static const moat_flash_area slot_area = {fs_read, fs_write, fs_erase, fs_sync, SLOT_SIZE, NULL};

/* ---- the harness ---- */

static void check_error(const moat_ota *v, moat_err e)
{
    CHECK(e < 0);
    CHECK(moat_ota_error(v)[0] != '\0');
    CHECK(strcmp(moat_strerror(e), "unknown error") != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[BUF_SIZE];
    static moat_ota v;
    uint8_t key0[65], key1[65], why[MOAT_OTA_ERROR_MAX];
    moat_ota_config cfg;
    moat_ota_header h;
    moat_ota_result r;
    const uint8_t *img;
    size_t len, chunk, off = 0, need;
    moat_err e = MOAT_OK, pe;
    unsigned flags, i;

    if (size < 2)
        return 0;
    chunk = (size_t)data[0] + 1;
    flags = data[1];
    img = data + 2;
    len = size - 2;

    /* the pure parser, on its own */
    pe = moat_ota_header_parse(img, len, &h, &need, (char *)why, sizeof why);
    if (pe == MOAT_OK) {
        moat_ota_rotation rot;
        CHECK(need == h.header_size && need <= len);
        for (i = 0; i < h.rotations; i++)
            CHECK(moat_ota_rotation_get(img, len, i, &rot) == MOAT_OK);
        CHECK(moat_ota_rotation_get(img, len, i, &rot) == MOAT_ERR_ARG);
    } else {
        CHECK(pe == MOAT_ERR_OTA_TRUNCATED || why[0] != '\0');
    }

    memset(&slot, 0xA5, sizeof slot.mem);
    memset(slot.once, 0, sizeof slot.once);
    slot.erases = slot.writes = 0;
    fake_key(0, key0);
    fake_key(1, key1);
    memset(&cfg, 0, sizeof cfg);
    cfg.product = "fuzz";
    cfg.keys[0] = key0;
    cfg.keys[1] = (flags & 1) ? key1 : NULL;
    cfg.counter = flags >> 4;
    cfg.running.major = 1;
    cfg.slot = &slot_area;
    cfg.crypto = &fake_crypto;
    cfg.buf = buf;
    cfg.buf_size = sizeof buf;
    CHECK(moat_ota_init(&v, &cfg) == MOAT_OK);

    if (flags & 2) {
        /* a cut download: the slot already holds the payload's first bytes */
        uint32_t have = BUF_SIZE << ((flags >> 2) & 1);
        size_t at = pe == MOAT_OK ? h.header_size + (size_t)MOAT_OTA_SIG_SIZE : len;
        size_t n = at < len ? len - at : 0;
        if (n > have)
            n = have;
        memcpy(slot.mem, img + at, n);
        CHECK(moat_ota_resume(&v, have) == MOAT_OK);
    }

    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        uint32_t before = moat_ota_offset(&v);
        e = moat_ota_feed(&v, img + off, n);
        if (moat_ota_header_of(&v) == NULL)
            CHECK(slot.erases == 0 && slot.writes == 0);
        if (moat_ota_total(&v) != 0)
            CHECK(moat_ota_offset(&v) <= moat_ota_total(&v));
        if (e != MOAT_OK)
            break;
        if (moat_ota_offset(&v) != before + n) {
            /* resumed: continue where the verifier asks */
            CHECK(moat_ota_offset(&v) > before + n || (flags & 2));
            off = moat_ota_offset(&v);
            continue;
        }
        off += n;
    }
    if (e != MOAT_OK) {
        check_error(&v, e);
        CHECK(moat_ota_feed(&v, img, 1) == e);
        CHECK(moat_ota_finish(&v, NULL) == e);
        return 0;
    }
    e = moat_ota_finish(&v, &r);
    if (e != MOAT_OK) {
        check_error(&v, e);
        CHECK(moat_ota_finish(&v, NULL) == e);
        return 0;
    }
    {
        uint8_t d[32];
        CHECK(moat_ota_header_of(&v) != NULL);
        CHECK(r.header.payload_size <= SLOT_SIZE);
        CHECK(moat_ota_offset(&v) == moat_ota_total(&v));
        fake_hash(slot.mem, r.header.payload_size, d);
        CHECK(memcmp(d, r.header.payload_sha256, 32) == 0);
        CHECK(strcmp(r.header.product, "fuzz") == 0);
        CHECK(r.header.counter >= cfg.counter);
    }
    return 0;
}

#ifdef FUZZ_OTA_SEEDS
/* ---- the seed corpus ---- */

#include <errno.h>
#include <sys/stat.h>

typedef struct seed {
    uint8_t b[8192];
    size_t n;
} seed;

static const char *root;
static int check_only, problems;

static void fake_sign(unsigned k, const uint8_t *d, size_t n, uint8_t sig[64])
{
    uint8_t pub[65];
    fake_key(k, pub);
    fake_hash(d, n, sig);
    memcpy(sig + 32, pub + 1, 32);
}

static void key_id(unsigned k, uint8_t id[8])
{
    uint8_t pub[65], d[32];
    fake_key(k, pub);
    fake_hash(pub, 65, d);
    memcpy(id, d, 8);
}

static void rotation(moat_ota_rotation *r, unsigned from, unsigned to)
{
    uint8_t body[MOAT_OTA_ROTATION_SIGNED];
    key_id(from, r->old_key_id);
    key_id(to, r->new_key_id);
    fake_key(to, r->new_key);
    moat_ota_rotation_signed_bytes(r, body);
    fake_sign(from, body, sizeof body, r->sig);
}

/* An image into s after the two control bytes. */
static void image(seed *s, unsigned chunk, unsigned flags, const char *product,
                  uint32_t counter, uint16_t major, uint32_t payload_size, unsigned signer,
                  const moat_ota_rotation *rot, unsigned nrot)
{
    moat_ota_header h;
    size_t hl, i, staged = payload_size < 4096 ? payload_size : 4096;
    uint8_t *p;
    memset(&h, 0, sizeof h);
    strcpy(h.product, product);
    h.version.major = major;
    h.counter = counter;
    h.payload_size = payload_size;
    key_id(signer, h.key_id);
    s->b[0] = (uint8_t)(chunk - 1);
    s->b[1] = (uint8_t)flags;
    p = s->b + 2;
    for (i = 0; i < staged; i++)
        s->b[sizeof s->b - staged + i] = (uint8_t)(i * 7u);
    fake_hash(s->b + sizeof s->b - staged, staged, h.payload_sha256);
    if (moat_ota_header_encode(&h, rot, nrot, p, sizeof s->b - 2, &hl) != MOAT_OK)
        abort();
    fake_sign(signer, p, hl, p + hl);
    memmove(p + hl + 64, s->b + sizeof s->b - staged, staged);
    s->n = 2 + hl + 64 + staged; /* a payload over 4096 bytes is cut short */
}

static void emit(const char *name, const seed *s)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", root, name);
    if (check_only) {
        uint8_t old[sizeof s->b + 1];
        size_t n;
        f = fopen(path, "rb");
        n = f != NULL ? fread(old, 1, sizeof old, f) : 0;
        if (f == NULL || n != s->n || memcmp(old, s->b, n) != 0) {
            fprintf(stderr, "fuzz_ota_seeds: %s is missing or differs\n", path);
            problems++;
        }
        if (f != NULL)
            fclose(f);
        return;
    }
    f = fopen(path, "wb");
    if (f == NULL || fwrite(s->b, 1, s->n, f) != s->n || fclose(f) != 0) {
        fprintf(stderr, "fuzz_ota_seeds: cannot write %s\n", path);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    seed s;
    moat_ota_rotation rot[2];

    if (argc == 3 && strcmp(argv[1], "--check") == 0) {
        check_only = 1;
        root = argv[2];
    } else if (argc == 2) {
        root = argv[1];
        if (mkdir(root, 0755) != 0 && errno != EEXIST) {
            perror(root);
            return 1;
        }
    } else {
        fprintf(stderr, "usage: %s [--check] corpus-dir\n", argv[0]);
        return 1;
    }
    image(&s, 256, 0x00, "fuzz", 1, 1, 100, 0, NULL, 0);
    emit("good-small", &s);
    image(&s, 1, 0x00, "fuzz", 1, 1, 100, 0, NULL, 0);
    emit("good-bytewise", &s);
    image(&s, 7, 0x10, "fuzz", 2, 1, 3000, 0, NULL, 0);
    emit("good-blocks", &s);
    image(&s, 256, 0x00, "fuzz", 1, 1, 2048, 0, NULL, 0);
    emit("good-exact-blocks", &s);
    image(&s, 200, 0x02, "fuzz", 1, 1, 3000, 0, NULL, 0);
    emit("resume-1024", &s);
    image(&s, 200, 0x06, "fuzz", 1, 1, 3000, 0, NULL, 0);
    emit("resume-2048", &s);
    rotation(&rot[0], 0, 2);
    image(&s, 64, 0x00, "fuzz", 1, 1, 500, 2, rot, 1);
    emit("rotation", &s);
    image(&s, 64, 0x00, "fuzz", 1, 1, 500, 0, rot, 1);
    emit("rotation-by-old-key", &s);
    rotation(&rot[1], 2, 3);
    image(&s, 64, 0x00, "fuzz", 1, 1, 500, 3, rot, 2);
    emit("rotation-chain", &s);
    rotation(&rot[0], 5, 2);
    image(&s, 64, 0x00, "fuzz", 1, 1, 500, 3, rot, 2);
    emit("rotation-unknown", &s);
    image(&s, 256, 0x01, "fuzz", 1, 1, 100, 1, NULL, 0);
    emit("second-key", &s);
    image(&s, 256, 0x00, "fuzz", 1, 1, 100, 4, NULL, 0);
    emit("unknown-key", &s);
    image(&s, 256, 0x50, "fuzz", 4, 1, 100, 0, NULL, 0);
    emit("downgrade", &s);
    image(&s, 256, 0x10, "fuzz", 1, 0, 100, 0, NULL, 0);
    emit("older-version", &s);
    image(&s, 256, 0x00, "other", 1, 1, 100, 0, NULL, 0);
    emit("other-product", &s);
    image(&s, 256, 0x00, "fuzz", 1, 1, 16385, 0, NULL, 0);
    s.n = 2 + 128 + 64 + 10;
    emit("too-large", &s);
    image(&s, 256, 0x00, "fuzz", 1, 1, 100, 0, NULL, 0);
    s.b[2 + 128 + 64 + 50] ^= 1;
    emit("tampered-payload", &s);
    image(&s, 256, 0x00, "fuzz", 1, 1, 100, 0, NULL, 0);
    s.b[2 + 48] ^= 1;
    emit("tampered-header", &s);
    image(&s, 256, 0x00, "fuzz", 1, 1, 100, 0, NULL, 0);
    s.n -= 1;
    emit("truncated", &s);
    image(&s, 256, 0x00, "fuzz", 1, 1, 100, 0, NULL, 0);
    s.b[s.n++] = 0;
    emit("trailing", &s);
    image(&s, 256, 0x00, "fuzz", 1, 1, 100, 0, NULL, 0);
    s.b[2] = 'X';
    emit("bad-magic", &s);
    if (problems) {
        fprintf(stderr, "fuzz_ota_seeds: %d seeds out of date: run fuzz_ota_seeds %s\n",
                problems, root);
        return 1;
    }
    return 0;
}
#endif
