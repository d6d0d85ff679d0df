/*
 * ota.c - signed update images (moat/ota.h): the header codec, and the
 * streaming verifier that authenticates a header before touching the
 * inactive slot, then hashes the payload while it writes it there.
 *
 * The verifier keeps one SHA-256 state and one buffer: the buffer first
 * collects header + signature (at most 816 bytes), then one flash block of
 * payload at a time; on resume it carries the slot's bytes back through the
 * same SHA-256 state.
 */
#include "moat/ota.h"

#include "mem.h"
#include "strbuf.h"

/* Byte offsets of the fixed header (docs/OTA-IMAGE.md). */
enum {
    H_MAGIC = 0, H_FORMAT = 4, H_SIZE = 6, H_FLAGS = 8, H_ROTATIONS = 10,
    H_RES1 = 11, H_PRODUCT = 12, H_MAJOR = 44, H_MINOR = 46, H_PATCH = 48,
    H_RES2 = 50, H_COUNTER = 52, H_PAYLOAD_SIZE = 56, H_SHA = 60, H_KEY_ID = 92,
    H_RES3 = 100
};
/* ... and of a key-rotation record. */
enum {
    R_TAG = 0, R_RES1 = 4, R_OLD_ID = 8, R_NEW_ID = 16, R_KEY = 24, R_RES2 = 89,
    R_SIG = 92
};

/* ------------------------------------------------------------- bytes -- */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    while (n--)
        acc |= *p++;
    return acc == 0;
}

void moat_ota_key_id_hex(const uint8_t id[MOAT_OTA_KEY_ID_SIZE], char out[17])
{
    static const char hex[] = "0123456789abcdef";
    unsigned i;
    for (i = 0; i < MOAT_OTA_KEY_ID_SIZE; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[16] = '\0';
}

int moat_ota_version_cmp(moat_ota_version a, moat_ota_version b)
{
    if (a.major != b.major)
        return a.major < b.major ? -1 : 1;
    if (a.minor != b.minor)
        return a.minor < b.minor ? -1 : 1;
    if (a.patch != b.patch)
        return a.patch < b.patch ? -1 : 1;
    return 0;
}

/* ------------------------------------------------------------- words -- */

static void sb_version(moat_sb *sb, moat_ota_version ver)
{
    moat_sb_u64(sb, ver.major);
    moat_sb_str(sb, ".");
    moat_sb_u64(sb, ver.minor);
    moat_sb_str(sb, ".");
    moat_sb_u64(sb, ver.patch);
}

static void sb_key(moat_sb *sb, const uint8_t id[MOAT_OTA_KEY_ID_SIZE])
{
    char hex[17];
    moat_ota_key_id_hex(id, hex);
    moat_sb_str(sb, hex);
}

/* --------------------------------------------------------- the codec -- */

/* Product ids: 1..31 printable ASCII bytes without spaces. */
static bool product_char(uint8_t ch)
{
    return ch > 0x20 && ch < 0x7f;
}

static moat_err parse_record(const uint8_t *r, unsigned i, char *why, size_t cap)
{
    if (memcmp(r + R_TAG, MOAT_OTA_ROTATION_TAG, 4) != 0) {
        moat_sb_say(why, cap, "key rotation record ", i + 1, " does not start with \"MROT\"", 0, NULL);
        return MOAT_ERR_OTA_FORMAT;
    }
    if (!all_zero(r + R_RES1, 4) || !all_zero(r + R_RES2, 3)) {
        moat_sb_say(why, cap, "key rotation record ", i + 1, " has reserved bytes that are not zero", 0, NULL);
        return MOAT_ERR_OTA_FORMAT;
    }
    if (r[R_KEY] != 0x04) {
        moat_sb_say(why, cap, "key rotation record ", i + 1,
            " does not hold an uncompressed P-256 public key", 0, NULL);
        return MOAT_ERR_OTA_FORMAT;
    }
    return MOAT_OK;
}

moat_err moat_ota_header_parse(const uint8_t *d, size_t len, moat_ota_header *h,
                               size_t *need, char *why, size_t cap)
{
    size_t size, i, end;
    unsigned n;

    if (why != NULL && cap > 0)
        why[0] = '\0';
    *need = MOAT_OTA_HEADER_FIXED;
    if (len >= 4 && memcmp(d, MOAT_OTA_MAGIC, 4) != 0) {
        moat_sb_say(why, cap, "not a moat image: it does not start with \"MOAT\"", 0, NULL, 0, NULL);
        return MOAT_ERR_OTA_MAGIC;
    }
    if (len < MOAT_OTA_HEADER_FIXED) {
        moat_sb_say(why, cap, "image header is cut short: ", len, " of ",
            MOAT_OTA_HEADER_FIXED, " bytes");
        return MOAT_ERR_OTA_TRUNCATED;
    }
    if (get16(d + H_FORMAT) != MOAT_OTA_FORMAT_VERSION) {
        moat_sb_say(why, cap, "image format version ", get16(d + H_FORMAT),
            " is not supported (this device reads version ", MOAT_OTA_FORMAT_VERSION, ")");
        return MOAT_ERR_OTA_FORMAT;
    }
    n = d[H_ROTATIONS];
    size = get16(d + H_SIZE);
    if (n > MOAT_OTA_MAX_ROTATIONS) {
        moat_sb_say(why, cap, "image header has ", n, " key rotation records (at most ",
            MOAT_OTA_MAX_ROTATIONS, ")");
        return MOAT_ERR_OTA_FORMAT;
    }
    if (size != MOAT_OTA_HEADER_FIXED + n * MOAT_OTA_ROTATION_SIZE) {
        moat_sb_say(why, cap, "image header size ", size, " does not match its ", n,
            " key rotation records");
        return MOAT_ERR_OTA_FORMAT;
    }
    if (get16(d + H_FLAGS) != 0) {
        moat_sb_say(why, cap, "image header has unknown flags ", get16(d + H_FLAGS),
            " (format version 1 defines none)", 0, NULL);
        return MOAT_ERR_OTA_FORMAT;
    }
    if (d[H_RES1] != 0 || !all_zero(d + H_RES2, 2) ||
        !all_zero(d + H_RES3, MOAT_OTA_HEADER_FIXED - H_RES3)) {
        moat_sb_say(why, cap, "image header has reserved bytes that are not zero", 0, NULL, 0, NULL);
        return MOAT_ERR_OTA_FORMAT;
    }
    for (end = 0; end < 32 && d[H_PRODUCT + end] != 0; end++)
        if (!product_char(d[H_PRODUCT + end]))
            break;
    if (end == 0 || end == 32 || !all_zero(d + H_PRODUCT + end, 32 - end)) {
        moat_sb_say(why, cap, "image product id is not 1 to 31 printable characters", 0, NULL, 0, NULL);
        return MOAT_ERR_OTA_FORMAT;
    }
    if (get32(d + H_PAYLOAD_SIZE) == 0 ||
        get32(d + H_PAYLOAD_SIZE) > UINT32_MAX - size - MOAT_OTA_SIG_SIZE) {
        moat_sb_say(why, cap, "image payload size ", get32(d + H_PAYLOAD_SIZE), " is not valid", 0, NULL);
        return MOAT_ERR_OTA_FORMAT;
    }

    h->format = MOAT_OTA_FORMAT_VERSION;
    h->header_size = (uint16_t)size;
    h->flags = 0;
    h->rotations = (uint8_t)n;
    memcpy(h->product, d + H_PRODUCT, end);
    memset(h->product + end, 0, sizeof h->product - end);
    h->version.major = get16(d + H_MAJOR);
    h->version.minor = get16(d + H_MINOR);
    h->version.patch = get16(d + H_PATCH);
    h->counter = get32(d + H_COUNTER);
    h->payload_size = get32(d + H_PAYLOAD_SIZE);
    memcpy(h->payload_sha256, d + H_SHA, MOAT_OTA_SHA256_SIZE);
    memcpy(h->key_id, d + H_KEY_ID, MOAT_OTA_KEY_ID_SIZE);

    *need = size;
    if (len < size) {
        moat_sb_say(why, cap, "image header is cut short: ", len, " of ", size, " bytes");
        return MOAT_ERR_OTA_TRUNCATED;
    }
    for (i = 0; i < n; i++) {
        const uint8_t *r = d + MOAT_OTA_HEADER_FIXED + i * MOAT_OTA_ROTATION_SIZE;
        moat_err e = parse_record(r, (unsigned)i, why, cap);
        if (e != MOAT_OK)
            return e;
        if (i + 1 < n && memcmp(r + R_NEW_ID, r + MOAT_OTA_ROTATION_SIZE + R_OLD_ID,
                                MOAT_OTA_KEY_ID_SIZE) != 0) {
            moat_sb_say(why, cap, "key rotation record ", i + 2,
                " is not signed by the key record ", i + 1, " introduces");
            return MOAT_ERR_OTA_FORMAT;
        }
    }
    return MOAT_OK;
}

moat_err moat_ota_rotation_get(const uint8_t *header, size_t len, unsigned i,
                               moat_ota_rotation *r)
{
    const uint8_t *p;
    if (len < MOAT_OTA_HEADER_FIXED || i >= header[H_ROTATIONS] ||
        len < MOAT_OTA_HEADER_FIXED + (i + 1u) * MOAT_OTA_ROTATION_SIZE)
        return MOAT_ERR_ARG;
    p = header + MOAT_OTA_HEADER_FIXED + i * MOAT_OTA_ROTATION_SIZE;
    memcpy(r->old_key_id, p + R_OLD_ID, MOAT_OTA_KEY_ID_SIZE);
    memcpy(r->new_key_id, p + R_NEW_ID, MOAT_OTA_KEY_ID_SIZE);
    memcpy(r->new_key, p + R_KEY, MOAT_OTA_PUB_SIZE);
    memcpy(r->sig, p + R_SIG, MOAT_OTA_SIG_SIZE);
    return MOAT_OK;
}

void moat_ota_rotation_signed_bytes(const moat_ota_rotation *r,
                                    uint8_t out[MOAT_OTA_ROTATION_SIGNED])
{
    memset(out, 0, MOAT_OTA_ROTATION_SIGNED);
    memcpy(out + R_TAG, MOAT_OTA_ROTATION_TAG, 4);
    memcpy(out + R_OLD_ID, r->old_key_id, MOAT_OTA_KEY_ID_SIZE);
    memcpy(out + R_NEW_ID, r->new_key_id, MOAT_OTA_KEY_ID_SIZE);
    memcpy(out + R_KEY, r->new_key, MOAT_OTA_PUB_SIZE);
}

moat_err moat_ota_header_encode(const moat_ota_header *h, const moat_ota_rotation *rot,
                                unsigned count, uint8_t *out, size_t cap, size_t *len)
{
    size_t plen, size, i;

    if (h == NULL || out == NULL || len == NULL || (count > 0 && rot == NULL) ||
        count > MOAT_OTA_MAX_ROTATIONS)
        return MOAT_ERR_ARG;
    for (plen = 0; plen < sizeof h->product && h->product[plen] != '\0'; plen++)
        if (!product_char((uint8_t)h->product[plen]))
            return MOAT_ERR_ARG;
    if (plen == 0 || plen > MOAT_OTA_PRODUCT_MAX || h->payload_size == 0)
        return MOAT_ERR_ARG;
    size = MOAT_OTA_HEADER_FIXED + count * MOAT_OTA_ROTATION_SIZE;
    if (cap < size)
        return MOAT_ERR_NO_SPACE;
    memset(out, 0, size);
    memcpy(out + H_MAGIC, MOAT_OTA_MAGIC, 4);
    put16(out + H_FORMAT, MOAT_OTA_FORMAT_VERSION);
    put16(out + H_SIZE, (uint16_t)size);
    out[H_ROTATIONS] = (uint8_t)count;
    memcpy(out + H_PRODUCT, h->product, plen);
    put16(out + H_MAJOR, h->version.major);
    put16(out + H_MINOR, h->version.minor);
    put16(out + H_PATCH, h->version.patch);
    put32(out + H_COUNTER, h->counter);
    put32(out + H_PAYLOAD_SIZE, h->payload_size);
    memcpy(out + H_SHA, h->payload_sha256, MOAT_OTA_SHA256_SIZE);
    memcpy(out + H_KEY_ID, h->key_id, MOAT_OTA_KEY_ID_SIZE);
    for (i = 0; i < count; i++) {
        uint8_t *p = out + MOAT_OTA_HEADER_FIXED + i * MOAT_OTA_ROTATION_SIZE;
        moat_ota_rotation_signed_bytes(&rot[i], p);
        memcpy(p + R_SIG, rot[i].sig, MOAT_OTA_SIG_SIZE);
    }
    *len = size;
    return MOAT_OK;
}

/* ------------------------------------------------------------ crypto -- */

static moat_err sha256(const moat_ota_crypto *c, moat_ota_sha256_ctx *ctx,
                       const uint8_t *data, size_t len, uint8_t out[MOAT_OTA_SHA256_SIZE])
{
    moat_err e = c->sha256_start(ctx->bytes);
    if (e == MOAT_OK)
        e = c->sha256_update(ctx->bytes, data, len);
    if (e == MOAT_OK)
        e = c->sha256_finish(ctx->bytes, out);
    return e;
}

moat_err moat_ota_key_id(const moat_ota_crypto *c, moat_ota_sha256_ctx *ctx,
                         const uint8_t pub[MOAT_OTA_PUB_SIZE],
                         uint8_t id[MOAT_OTA_KEY_ID_SIZE])
{
    uint8_t d[MOAT_OTA_SHA256_SIZE];
    moat_err e = sha256(c, ctx, pub, MOAT_OTA_PUB_SIZE, d);
    if (e == MOAT_OK)
        memcpy(id, d, MOAT_OTA_KEY_ID_SIZE);
    return e;
}

static moat_err area_err(moat_err e)
{
    return e > 0 ? MOAT_ERR_IO : e; /* a port that broke its contract */
}

moat_err moat_ota_hash_area(const moat_flash_area *area, uint32_t len,
                            const moat_ota_crypto *c, moat_ota_sha256_ctx *ctx,
                            uint8_t *buf, size_t buf_size,
                            uint8_t out[MOAT_OTA_SHA256_SIZE])
{
    uint32_t off = 0;
    moat_err e;

    if (area == NULL || c == NULL || ctx == NULL || buf == NULL || buf_size == 0 ||
        len > area->size)
        return MOAT_ERR_ARG;
    e = c->sha256_start(ctx->bytes);
    while (e == MOAT_OK && off < len) {
        size_t n = len - off < buf_size ? len - off : buf_size;
        e = area_err(area->read(area->ctx, off, buf, n));
        if (e == MOAT_OK)
            e = c->sha256_update(ctx->bytes, buf, n);
        off += (uint32_t)n;
    }
    if (e == MOAT_OK)
        e = c->sha256_finish(ctx->bytes, out);
    return e;
}

/* ---------------------------------------------------------- verifier -- */

static moat_err fail(moat_ota *v, moat_err e)
{
    v->state = MOAT_OTA_FAILED;
    v->last_err = (int16_t)e;
    if (v->error[0] == '\0')
        moat_sb_say(v->error, sizeof v->error, moat_strerror(e), 0, NULL, 0, NULL);
    return e;
}

static moat_err fail_arg(moat_ota *v, const char *text)
{
    moat_sb_say(v->error, sizeof v->error, text, 0, NULL, 0, NULL);
    return fail(v, MOAT_ERR_ARG);
}

/* A failure of the slot or of the crypto implementation, with words. */
static moat_err fail_in(moat_ota *v, moat_err e, const char *what)
{
    moat_sb sb;
    e = area_err(e);
    moat_sb_init(&sb, v->error, sizeof v->error);
    moat_sb_str(&sb, what);
    moat_sb_str(&sb, " failed: ");
    moat_sb_str(&sb, moat_strerror(e));
    moat_sb_words(&sb);
    return fail(v, e);
}

moat_err moat_ota_init(moat_ota *v, const moat_ota_config *cfg)
{
    const moat_ota_crypto *c;
    size_t plen = 0;
    unsigned i;

    memset(v, 0, sizeof *v);
    v->state = MOAT_OTA_HEADER;
    if (cfg == NULL)
        return fail_arg(v, "no OTA configuration");
    c = cfg->crypto;
    if (c == NULL || c->sha256_start == NULL || c->sha256_update == NULL ||
        c->sha256_finish == NULL || c->p256_verify == NULL)
        return fail_arg(v, "OTA crypto interface missing");
    if (c->sha256_ctx_size > sizeof v->sha)
        return fail_arg(v, "OTA crypto needs a larger SHA-256 context than MOAT_OTA_SHA256_CTX_SIZE");
    if (cfg->slot == NULL || cfg->slot->read == NULL || cfg->slot->write == NULL ||
        cfg->slot->erase == NULL || cfg->slot->sync == NULL)
        return fail_arg(v, "OTA slot flash area missing");
    if (cfg->buf == NULL || cfg->buf_size < MOAT_OTA_BUF_MIN || cfg->buf_size > MOAT_OTA_BUF_MAX)
        return fail_arg(v, "OTA working buffer must be 1024 to 4096 bytes");
    if (cfg->product != NULL)
        for (plen = 0; plen <= MOAT_OTA_PRODUCT_MAX && cfg->product[plen] != '\0'; plen++)
            if (!product_char((uint8_t)cfg->product[plen]))
                break;
    if (cfg->product == NULL || plen == 0 || plen > MOAT_OTA_PRODUCT_MAX ||
        cfg->product[plen] != '\0')
        return fail_arg(v, "device product id must be 1 to 31 printable characters");
    if (cfg->keys[0] == NULL)
        return fail_arg(v, "no trusted update key configured");

    memcpy(v->product, cfg->product, plen);
    v->slot = cfg->slot;
    v->crypto = c;
    v->buf = cfg->buf;
    v->buf_size = (uint32_t)cfg->buf_size;
    v->counter = cfg->counter;
    v->running = cfg->running;
    for (i = 0; i < MOAT_OTA_MAX_KEYS; i++) {
        moat_err e;
        if (cfg->keys[i] == NULL)
            continue;
        if (cfg->keys[i][0] != 0x04)
            return fail_arg(v, "trusted update key is not an uncompressed P-256 public key");
        memcpy(v->keys[v->key_count], cfg->keys[i], MOAT_OTA_PUB_SIZE);
        e = moat_ota_key_id(c, &v->sha, v->keys[v->key_count], v->key_ids[v->key_count]);
        if (e != MOAT_OK)
            return fail_in(v, e, "SHA-256");
        v->key_count++;
    }
    return MOAT_OK;
}

moat_err moat_ota_resume(moat_ota *v, uint32_t slot_bytes)
{
    if (v->state == MOAT_OTA_FAILED)
        return (moat_err)v->last_err;
    if (v->state != MOAT_OTA_HEADER || v->have != 0)
        return MOAT_ERR_STATE;
    v->resume = slot_bytes - slot_bytes % v->buf_size;
    return MOAT_OK;
}

/* The trusted key with this id, or NULL. */
static const uint8_t *trusted(const moat_ota *v, const uint8_t *id)
{
    unsigned i;
    for (i = 0; i < v->key_count; i++)
        if (memcmp(v->key_ids[i], id, MOAT_OTA_KEY_ID_SIZE) == 0)
            return v->keys[i];
    return NULL;
}

static moat_err verify(moat_ota *v, const uint8_t *pub, const uint8_t *data, size_t len,
                       const uint8_t *sig)
{
    uint8_t digest[MOAT_OTA_SHA256_SIZE];
    moat_err e = sha256(v->crypto, &v->sha, data, len, digest);
    if (e != MOAT_OK)
        return fail_in(v, e, "SHA-256");
    e = v->crypto->p256_verify(v->crypto->user, pub, digest, sig);
    if (e != MOAT_OK && e != MOAT_ERR_OTA_SIGNATURE)
        return fail_in(v, e, "ECDSA verification");
    return e;
}

static moat_err refuse_key(moat_ota *v, const moat_ota_header *h, const uint8_t *hdr)
{
    moat_sb sb;
    moat_sb_init(&sb, v->error, sizeof v->error);
    moat_sb_str(&sb, "image is signed by unknown key id ");
    sb_key(&sb, h->key_id);
    if (h->rotations > 0) {
        moat_sb_str(&sb, ", and its key rotation records start from unknown key id ");
        sb_key(&sb, hdr + MOAT_OTA_HEADER_FIXED + R_OLD_ID);
    }
    moat_sb_words(&sb);
    return fail(v, MOAT_ERR_OTA_KEY);
}

/*
 * Find the key that signed the header: a trusted one, or one introduced by
 * a rotation chain that starts at a trusted key (checked from the newest
 * record whose signer is trusted). Sets *signer, and the result's rotation.
 */
static moat_err find_signer(moat_ota *v, const moat_ota_header *h, const uint8_t *hdr,
                            const uint8_t **signer)
{
    const uint8_t *key = NULL, *r = NULL;
    unsigned i, n = h->rotations, anchor = n;

    for (i = 0; i < n; i++) {
        const uint8_t *r = hdr + MOAT_OTA_HEADER_FIXED + i * MOAT_OTA_ROTATION_SIZE;
        uint8_t id[MOAT_OTA_KEY_ID_SIZE];
        moat_err e = moat_ota_key_id(v->crypto, &v->sha, r + R_KEY, id);
        if (e != MOAT_OK)
            return fail_in(v, e, "SHA-256");
        if (memcmp(id, r + R_NEW_ID, MOAT_OTA_KEY_ID_SIZE) != 0) {
            moat_sb_say(v->error, sizeof v->error, "key rotation record ", i + 1,
                ": its key id does not match its key", 0, NULL);
            return fail(v, MOAT_ERR_OTA_FORMAT);
        }
        if (trusted(v, r + R_OLD_ID) != NULL)
            anchor = i;
    }
    *signer = trusted(v, h->key_id);
    if (anchor == n) {
        if (*signer == NULL)
            return refuse_key(v, h, hdr);
        return MOAT_OK;
    }
    key = trusted(v, hdr + MOAT_OTA_HEADER_FIXED + anchor * MOAT_OTA_ROTATION_SIZE + R_OLD_ID);
    for (i = anchor; i < n; i++) {
        r = hdr + MOAT_OTA_HEADER_FIXED + i * MOAT_OTA_ROTATION_SIZE;
        moat_err e = verify(v, key, r, MOAT_OTA_ROTATION_SIGNED, r + R_SIG);
        if (e != MOAT_OK) {
            moat_sb sb;
            if (e != MOAT_ERR_OTA_SIGNATURE)
                return e;
            moat_sb_init(&sb, v->error, sizeof v->error);
            moat_sb_str(&sb, "key rotation record ");
            moat_sb_u64(&sb, i + 1);
            moat_sb_str(&sb, " (to key id ");
            sb_key(&sb, r + R_NEW_ID);
            moat_sb_str(&sb, ") is not validly signed by key id ");
            sb_key(&sb, r + R_OLD_ID);
            moat_sb_words(&sb);
            return fail(v, MOAT_ERR_OTA_ROTATION);
        }
        key = r + R_KEY;
        if (*signer == NULL && memcmp(r + R_NEW_ID, h->key_id, MOAT_OTA_KEY_ID_SIZE) == 0)
            *signer = key;
    }
    if (*signer == NULL)
        return refuse_key(v, h, hdr);
    v->result.rotated = true;
    memcpy(v->result.new_key, key, MOAT_OTA_PUB_SIZE);
    memcpy(v->result.new_key_id, r + R_NEW_ID, MOAT_OTA_KEY_ID_SIZE);
    return MOAT_OK;
}

/* Product, size, counter and version: the device's own rules. */
static moat_err check_policy(moat_ota *v, const moat_ota_header *h)
{
    moat_sb sb;
    int cmp;

    if (memcmp(h->product, v->product, sizeof v->product) != 0) { /* NUL-padded */
        moat_sb_init(&sb, v->error, sizeof v->error);
        moat_sb_str(&sb, "image is for product \"");
        moat_sb_str(&sb, h->product);
        moat_sb_str(&sb, "\", this device is \"");
        moat_sb_str(&sb, v->product);
        moat_sb_str(&sb, "\"");
        moat_sb_words(&sb);
        return fail(v, MOAT_ERR_OTA_PRODUCT);
    }
    if (h->payload_size > v->slot->size) {
        moat_sb_say(v->error, sizeof v->error, "image payload of ", h->payload_size,
            " bytes does not fit the slot of ", v->slot->size, " bytes");
        return fail(v, MOAT_ERR_OTA_TOO_LARGE);
    }
    if (h->counter < v->counter) {
        moat_sb_say(v->error, sizeof v->error, "image security counter ", h->counter,
            " is lower than the device's ", v->counter, "");
        return fail(v, MOAT_ERR_OTA_DOWNGRADE);
    }
    cmp = moat_ota_version_cmp(h->version, v->running);
    if (h->counter == v->counter && cmp < 0) {
        moat_sb_init(&sb, v->error, sizeof v->error);
        moat_sb_str(&sb, "image version ");
        sb_version(&sb, h->version);
        moat_sb_str(&sb, " is older than the running ");
        sb_version(&sb, v->running);
        moat_sb_str(&sb, " at the same security counter ");
        moat_sb_u64(&sb, h->counter);
        moat_sb_words(&sb);
        return fail(v, MOAT_ERR_OTA_DOWNGRADE);
    }
    return MOAT_OK;
}

/* Re-hash the payload bytes a resumed slot already holds. */
static moat_err rehash(moat_ota *v)
{
    uint32_t off = 0;
    while (off < v->resume) {
        uint32_t n = v->resume - off < v->buf_size ? v->resume - off : v->buf_size;
        moat_err e = v->slot->read(v->slot->ctx, off, v->buf, n);
        if (e != MOAT_OK)
            return fail_in(v, e, "reading the slot to resume");
        e = v->crypto->sha256_update(v->sha.bytes, v->buf, n);
        if (e != MOAT_OK)
            return fail_in(v, e, "SHA-256");
        off += n;
    }
    return MOAT_OK;
}

/* Header and signature are in buf: check everything, then open the slot. */
static moat_err accept_header(moat_ota *v)
{
    moat_ota_header h;
    const uint8_t *signer = NULL;
    size_t need;
    moat_err e;

    e = moat_ota_header_parse(v->buf, v->have, &h, &need, v->error, sizeof v->error);
    if (e != MOAT_OK)
        return fail(v, e);
    e = check_policy(v, &h);
    if (e == MOAT_OK)
        e = find_signer(v, &h, v->buf, &signer);
    if (e != MOAT_OK)
        return e;
    e = verify(v, signer, v->buf, h.header_size, v->buf + h.header_size);
    if (e == MOAT_ERR_OTA_SIGNATURE) {
        moat_sb sb;
        moat_sb_init(&sb, v->error, sizeof v->error);
        moat_sb_str(&sb, "image signature does not verify with key id ");
        sb_key(&sb, h.key_id);
        moat_sb_str(&sb, ": the header was changed or signed by another key");
        moat_sb_words(&sb);
        return fail(v, e);
    }
    if (e != MOAT_OK)
        return e;

    v->result.header = h;
    v->accepted = true;
    v->state = MOAT_OTA_PAYLOAD;
    v->have = 0;
    if (v->resume > h.payload_size - h.payload_size % v->buf_size)
        v->resume = h.payload_size - h.payload_size % v->buf_size;
    e = v->crypto->sha256_start(v->sha.bytes);
    if (e != MOAT_OK)
        return fail_in(v, e, "SHA-256");
    if (v->resume == 0) {
        e = v->slot->erase(v->slot->ctx);
        if (e != MOAT_OK)
            return fail_in(v, e, "erasing the slot");
        return MOAT_OK;
    }
    e = rehash(v);
    if (e != MOAT_OK)
        return e;
    v->written = v->synced = v->resume;
    v->offset = h.header_size + MOAT_OTA_SIG_SIZE + v->resume;
    if (v->written == h.payload_size)
        v->state = MOAT_OTA_COMPLETE;
    return MOAT_OK;
}

static moat_err write_block(moat_ota *v)
{
    moat_err e = v->slot->write(v->slot->ctx, v->written, v->buf, v->have);
    if (e != MOAT_OK) {
        moat_sb sb;
        e = area_err(e);
        moat_sb_init(&sb, v->error, sizeof v->error);
        moat_sb_str(&sb, "writing the slot at offset ");
        moat_sb_u64(&sb, v->written);
        moat_sb_str(&sb, " failed: ");
        moat_sb_str(&sb, moat_strerror(e));
        moat_sb_words(&sb);
        return fail(v, e);
    }
    v->written += v->have;
    v->have = 0;
    return MOAT_OK;
}

/* Take header bytes; returns the count taken, or sets FAILED. */
static size_t take_header(moat_ota *v, const uint8_t *data, size_t len)
{
    size_t want = MOAT_OTA_HEADER_FIXED, n;

    if (v->have >= MOAT_OTA_HEADER_FIXED)
        want = get16(v->buf + H_SIZE) + (size_t)MOAT_OTA_SIG_SIZE;
    n = want - v->have < len ? want - v->have : len;
    memcpy(v->buf + v->have, data, n);
    v->have += (uint32_t)n;
    v->offset += (uint32_t)n;
    if (v->have == MOAT_OTA_HEADER_FIXED || (v->have < MOAT_OTA_HEADER_FIXED && v->have >= 4)) {
        moat_ota_header h;
        size_t need;
        moat_err e = moat_ota_header_parse(v->buf, v->have, &h, &need, v->error,
                                           sizeof v->error);
        if (e != MOAT_OK && e != MOAT_ERR_OTA_TRUNCATED) {
            fail(v, e);
            return n;
        }
        v->error[0] = '\0';
        if (e == MOAT_OK || need > MOAT_OTA_HEADER_FIXED)
            v->total = h.header_size + MOAT_OTA_SIG_SIZE + h.payload_size;
    }
    if (v->have >= MOAT_OTA_HEADER_FIXED &&
        v->have == get16(v->buf + H_SIZE) + (size_t)MOAT_OTA_SIG_SIZE)
        (void)accept_header(v);
    return n;
}

/* Take payload bytes: hash them, write each full block. */
static size_t take_payload(moat_ota *v, const uint8_t *data, size_t len)
{
    uint32_t left = v->result.header.payload_size - v->written - v->have;
    size_t n = v->buf_size - v->have;
    moat_err e;

    if (n > len)
        n = len;
    if (n > left)
        n = left;
    e = v->crypto->sha256_update(v->sha.bytes, data, n);
    if (e != MOAT_OK) {
        fail_in(v, e, "SHA-256");
        return n;
    }
    memcpy(v->buf + v->have, data, n);
    v->have += (uint32_t)n;
    v->offset += (uint32_t)n;
    if (v->have == v->buf_size || n == left) {
        if (write_block(v) != MOAT_OK)
            return n;
        if (v->written == v->result.header.payload_size)
            v->state = MOAT_OTA_COMPLETE;
    }
    return n;
}

moat_err moat_ota_feed(moat_ota *v, const uint8_t *data, size_t len)
{
    if (v->state == MOAT_OTA_FAILED)
        return (moat_err)v->last_err;
    if (len > 0 && data == NULL)
        return MOAT_ERR_ARG;
    if (v->state == MOAT_OTA_DONE)
        return len > 0 ? MOAT_ERR_STATE : MOAT_OK;
    while (len > 0) {
        size_t n;
        if (v->state == MOAT_OTA_HEADER) {
            n = take_header(v, data, len);
            if (v->state == MOAT_OTA_PAYLOAD && v->resume > 0)
                return MOAT_OK; /* the rest of this chunk is before offset */
            if (v->state == MOAT_OTA_COMPLETE)
                return MOAT_OK; /* resumed with the whole payload on the slot */
        } else if (v->state == MOAT_OTA_PAYLOAD) {
            n = take_payload(v, data, len);
        } else {
            moat_sb_say(v->error, sizeof v->error, "image is longer than its header says (",
                v->total, " bytes): more bytes came after its end", 0, NULL);
            return fail(v, MOAT_ERR_OTA_FORMAT);
        }
        if (v->state == MOAT_OTA_FAILED)
            return (moat_err)v->last_err;
        data += n;
        len -= n;
    }
    return MOAT_OK;
}

moat_err moat_ota_checkpoint(moat_ota *v, uint32_t *durable)
{
    moat_err e;
    if (durable != NULL)
        *durable = 0;
    if (v->state == MOAT_OTA_FAILED)
        return (moat_err)v->last_err;
    if (!v->accepted)
        return MOAT_OK;
    if (v->synced != v->written) {
        e = v->slot->sync(v->slot->ctx);
        if (e != MOAT_OK)
            return fail_in(v, e, "syncing the slot");
        v->synced = v->written;
    }
    if (durable != NULL)
        *durable = v->synced;
    return MOAT_OK;
}

moat_err moat_ota_finish(moat_ota *v, moat_ota_result *result)
{
    uint8_t digest[MOAT_OTA_SHA256_SIZE];
    moat_err e;

    if (v->state == MOAT_OTA_FAILED)
        return (moat_err)v->last_err;
    if (v->state == MOAT_OTA_HEADER || v->state == MOAT_OTA_PAYLOAD) {
        if (v->total == 0)
            moat_sb_say(v->error, sizeof v->error, "image is truncated: it ended after ",
                v->offset, " bytes, inside its header", 0, NULL);
        else
            moat_sb_say(v->error, sizeof v->error, "image is truncated: it ended after ",
                v->offset, " of ", v->total, " bytes");
        return fail(v, MOAT_ERR_OTA_TRUNCATED);
    }
    if (v->state == MOAT_OTA_COMPLETE) {
        e = v->crypto->sha256_finish(v->sha.bytes, digest);
        if (e != MOAT_OK)
            return fail_in(v, e, "SHA-256");
        if (memcmp(digest, v->result.header.payload_sha256, sizeof digest) != 0) {
            moat_sb_say(v->error, sizeof v->error,
                "payload SHA-256 does not match the header: the payload was changed"
                " (or the slot did not hold what was resumed)", 0, NULL, 0, NULL);
            return fail(v, MOAT_ERR_OTA_HASH);
        }
        if (v->synced != v->written) {
            e = v->slot->sync(v->slot->ctx);
            if (e != MOAT_OK)
                return fail_in(v, e, "syncing the slot");
            v->synced = v->written;
        }
        v->state = MOAT_OTA_DONE;
    }
    if (result != NULL)
        *result = v->result;
    return MOAT_OK;
}

uint32_t moat_ota_offset(const moat_ota *v)
{
    return v->offset;
}

uint32_t moat_ota_total(const moat_ota *v)
{
    return v->total;
}

const moat_ota_header *moat_ota_header_of(const moat_ota *v)
{
    return v->accepted ? &v->result.header : NULL;
}

const char *moat_ota_error(const moat_ota *v)
{
    return v->error;
}
