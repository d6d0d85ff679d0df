/*
 * boot.c - the A/B slot logic (moat/slots.h): the boot record in two copies,
 * the choice of the slot to run, trial starts, confirmation, rollback and the
 * anti-rollback counter. Written against moat_flash_area only, like
 * MCUboot's bootutil: no heap, no OS, no clock.
 *
 * Invariants kept:
 *  - the copy holding the current record (b->copy) is never written: an
 *    update always goes to the other copy, so a torn update leaves it whole;
 *  - a slot runs only after its payload matched the record's size and
 *    SHA-256 in this very decision;
 *  - a trial start is persisted before the trial runs, so a crash loop
 *    always uses up the trials;
 *  - the device's security counter never decreases, and no image whose
 *    counter is below it is installed or run.
 */
#include "moat/slots.h"

#include "mem.h"
#include "le.h"
#include "strbuf.h"

/* Record layout (little-endian), MOAT_BOOT_RECORD_SIZE bytes. */
#define REC_MAGIC0 'M'
#define REC_MAGIC1 'B'
#define REC_MAGIC2 'R'
#define REC_MAGIC3 '1'
#define REC_FORMAT 1u
#define OFF_SEQ 8u
#define OFF_FLAGS 12u   /* active, pending, trials_left, trials */
#define OFF_RUN 16u     /* running, running_trial, 2 reserved */
#define OFF_COUNTER 20u
#define OFF_SLOT0 24u
#define SLOT_BYTES 68u  /* state, trial_starts, 2 rsv, size, counter, sha, version */
#define OFF_ROLLBACK (OFF_SLOT0 + 2u * SLOT_BYTES)
#define OFF_CRC (MOAT_BOOT_RECORD_SIZE - 4u)

typedef char rec_fits[(OFF_ROLLBACK + 8u + 2u * MOAT_BOOT_VERSION_MAX <= OFF_CRC) ? 1 : -1];

/* ------------------------------------------------------------ helpers -- */

uint32_t moat_boot_crc32(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    int k;

    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

char moat_boot_slot_name(uint8_t slot)
{
    return slot == MOAT_BOOT_SLOT_A ? 'a' : slot == MOAT_BOOT_SLOT_B ? 'b' : '-';
}

static bool slot_ok(uint8_t s)
{
    return s < MOAT_BOOT_SLOTS;
}

/* PENDING, CONFIRMED or REJECTED: the slot holds a whole image. */
static bool holds_image(uint8_t state)
{
    return state == MOAT_BOOT_PENDING || state == MOAT_BOOT_CONFIRMED ||
           state == MOAT_BOOT_REJECTED;
}

static bool slot_or_none(uint8_t s)
{
    return s < MOAT_BOOT_SLOTS || s == MOAT_BOOT_NONE;
}

/* A version is 1..23 printable ASCII characters and a NUL. */
static bool version_ok(const char *v)
{
    size_t i;

    for (i = 0; i < MOAT_BOOT_VERSION_MAX; i++) {
        if (v[i] == '\0')
            return i > 0;
        if (v[i] < 0x21 || v[i] > 0x7e)
            return false;
    }
    return false;
}

/* Start words in b->error. */
static void words_begin(moat_boot *b, moat_sb *sb)
{
    moat_sb_init(sb, b->error, sizeof b->error);
}

static moat_err words_end(moat_sb *sb, moat_err e)
{
    moat_sb_words(sb);
    return e;
}

static moat_err fail(moat_boot *b, moat_err e, const char *words)
{
    moat_sb sb;

    words_begin(b, &sb);
    moat_sb_str(&sb, words);
    return words_end(&sb, e);
}

/* "slot b (version 3.0.0)" */
static void sb_slot(moat_sb *sb, uint8_t slot, const char *version)
{
    char name[2];

    name[0] = moat_boot_slot_name(slot);
    name[1] = '\0';
    moat_sb_str(sb, "slot ");
    moat_sb_str(sb, name);
    if (version != NULL && version[0] != '\0') {
        moat_sb_str(sb, " (version ");
        moat_sb_str(sb, version);
        moat_sb_str(sb, ")");
    }
}

/* ----------------------------------------------------- record codec -- */

static void encode_slot(uint8_t *p, const moat_boot_slot_info *s)
{
    p[0] = s->state;
    p[1] = s->trial_starts;
    p[2] = 0;
    p[3] = 0;
    moat_le_put32(p + 4, s->image.size);
    moat_le_put32(p + 8, s->image.security_counter);
    memcpy(p + 12, s->image.sha256, 32);
    memcpy(p + 44, s->image.version, MOAT_BOOT_VERSION_MAX);
}

void moat_boot_record_encode(const moat_boot_record *r, uint8_t out[MOAT_BOOT_RECORD_SIZE])
{
    uint8_t *rb = out + OFF_ROLLBACK;
    unsigned i;

    memset(out, 0, MOAT_BOOT_RECORD_SIZE);
    out[0] = REC_MAGIC0;
    out[1] = REC_MAGIC1;
    out[2] = REC_MAGIC2;
    out[3] = REC_MAGIC3;
    out[4] = (uint8_t)REC_FORMAT;
    out[6] = (uint8_t)(MOAT_BOOT_RECORD_SIZE & 0xFFu);
    out[7] = (uint8_t)(MOAT_BOOT_RECORD_SIZE >> 8);
    moat_le_put32(out + OFF_SEQ, r->seq);
    out[OFF_FLAGS] = r->active;
    out[OFF_FLAGS + 1] = r->pending;
    out[OFF_FLAGS + 2] = r->trials_left;
    out[OFF_FLAGS + 3] = r->trials;
    out[OFF_RUN] = r->running;
    out[OFF_RUN + 1] = r->running_trial;
    moat_le_put32(out + OFF_COUNTER, r->security_counter);
    for (i = 0; i < MOAT_BOOT_SLOTS; i++)
        encode_slot(out + OFF_SLOT0 + i * SLOT_BYTES, &r->slot[i]);
    rb[0] = r->rollback.code;
    rb[1] = r->rollback.from;
    rb[2] = r->rollback.to;
    rb[3] = r->rollback.starts;
    moat_le_put32(rb + 4, r->rollback.counter);
    memcpy(rb + 8, r->rollback.version, MOAT_BOOT_VERSION_MAX);
    memcpy(rb + 8 + MOAT_BOOT_VERSION_MAX, r->rollback.to_version, MOAT_BOOT_VERSION_MAX);
    moat_le_put32(out + OFF_CRC, moat_boot_crc32(0, out, OFF_CRC));
}

/* A version field read back: NUL-terminated within its bytes, or invalid. */
static bool decode_text(char *dst, const uint8_t *src)
{
    size_t i;

    memcpy(dst, src, MOAT_BOOT_VERSION_MAX);
    for (i = 0; i < MOAT_BOOT_VERSION_MAX; i++)
        if (dst[i] == '\0')
            return true;
    return false;
}

static bool decode_slot(const uint8_t *p, moat_boot_slot_info *s)
{
    s->state = p[0];
    s->trial_starts = p[1];
    s->image.size = moat_le_get32(p + 4);
    s->image.security_counter = moat_le_get32(p + 8);
    memcpy(s->image.sha256, p + 12, 32);
    return s->state <= MOAT_BOOT_WRITING && decode_text(s->image.version, p + 44);
}

moat_err moat_boot_record_decode(const uint8_t in[MOAT_BOOT_RECORD_SIZE], moat_boot_record *r)
{
    const uint8_t *rb = in + OFF_ROLLBACK;
    bool ok = true;
    unsigned i;

    if (in[0] != REC_MAGIC0 || in[1] != REC_MAGIC1 || in[2] != REC_MAGIC2 ||
        in[3] != REC_MAGIC3 || in[4] != REC_FORMAT || in[5] != 0 ||
        (in[6] | (unsigned)in[7] << 8) != MOAT_BOOT_RECORD_SIZE ||
        moat_le_get32(in + OFF_CRC) != moat_boot_crc32(0, in, OFF_CRC))
        return MOAT_ERR_MALFORMED;
    memset(r, 0, sizeof *r);
    r->seq = moat_le_get32(in + OFF_SEQ);
    r->active = in[OFF_FLAGS];
    r->pending = in[OFF_FLAGS + 1];
    r->trials_left = in[OFF_FLAGS + 2];
    r->trials = in[OFF_FLAGS + 3];
    r->running = in[OFF_RUN];
    r->running_trial = in[OFF_RUN + 1];
    r->security_counter = moat_le_get32(in + OFF_COUNTER);
    for (i = 0; i < MOAT_BOOT_SLOTS; i++)
        ok = decode_slot(in + OFF_SLOT0 + i * SLOT_BYTES, &r->slot[i]) && ok;
    r->rollback.code = rb[0];
    r->rollback.from = rb[1];
    r->rollback.to = rb[2];
    r->rollback.starts = rb[3];
    r->rollback.counter = moat_le_get32(rb + 4);
    ok = decode_text(r->rollback.version, rb + 8) && ok;
    ok = decode_text(r->rollback.to_version, rb + 8 + MOAT_BOOT_VERSION_MAX) && ok;
    /* A record with a good CRC but impossible fields was never written by
     * this code: refuse it rather than act on it. */
    if (!ok || !slot_or_none(r->active) || !slot_or_none(r->pending) ||
        !slot_or_none(r->running) || r->running_trial > 1 ||
        r->rollback.code > MOAT_BOOT_REASON_COUNTER ||
        (r->active != MOAT_BOOT_NONE && r->active == r->pending))
        return MOAT_ERR_MALFORMED;
    return MOAT_OK;
}

static void record_empty(moat_boot_record *r)
{
    memset(r, 0, sizeof *r);
    r->active = MOAT_BOOT_NONE;
    r->pending = MOAT_BOOT_NONE;
    r->running = MOAT_BOOT_NONE;
    r->rollback.from = MOAT_BOOT_NONE;
    r->rollback.to = MOAT_BOOT_NONE;
}

/* ------------------------------------------------------------ init/load -- */

moat_err moat_boot_init(moat_boot *b, const moat_flash_area *rec0,
                        const moat_flash_area *rec1, const moat_flash_area *slot_a,
                        const moat_flash_area *slot_b, const moat_boot_hash *hash)
{
    memset(b, 0, sizeof *b);
    b->copy = MOAT_BOOT_NONE;
    record_empty(&b->rec);
    if (rec0 == NULL || rec1 == NULL || slot_a == NULL || slot_b == NULL)
        return fail(b, MOAT_ERR_ARG, "boot: an area is missing");
    if (rec0->size < MOAT_BOOT_RECORD_SIZE || rec1->size < MOAT_BOOT_RECORD_SIZE)
        return fail(b, MOAT_ERR_ARG, "boot: a record area is smaller than 256 bytes");
    b->record[0] = rec0;
    b->record[1] = rec1;
    b->slot[0] = slot_a;
    b->slot[1] = slot_b;
    b->hash = hash;
    return MOAT_OK;
}

static bool all_erased(const uint8_t *p, size_t n)
{
    while (n--)
        if (*p++ != 0xFFu)
            return false;
    return true;
}

moat_err moat_boot_load(moat_boot *b)
{
    moat_boot_record r[2];
    bool valid[2], blank[2];
    unsigned i;
    moat_err e;
    moat_sb sb;

    b->loaded = false;
    for (i = 0; i < 2; i++) {
        e = b->record[i]->read(b->record[i]->ctx, 0, b->block, MOAT_BOOT_RECORD_SIZE);
        if (e != MOAT_OK) {
            words_begin(b, &sb);
            moat_sb_str(&sb, i == 0 ? "boot record copy 0: " : "boot record copy 1: ");
            moat_sb_str(&sb, moat_strerror(e));
            return words_end(&sb, e);
        }
        blank[i] = all_erased(b->block, MOAT_BOOT_RECORD_SIZE);
        valid[i] = !blank[i] && moat_boot_record_decode(b->block, &r[i]) == MOAT_OK;
    }
    if (valid[0] && valid[1])
        i = (int32_t)(r[1].seq - r[0].seq) > 0 ? 1u : 0u;
    else if (valid[0] || valid[1])
        i = valid[0] ? 0u : 1u;
    else if (blank[0] || blank[1])
        i = MOAT_BOOT_NONE; /* new device, or its first write was torn */
    else
        return fail(b, MOAT_ERR_MALFORMED,
                    "both copies of the boot record are damaged: install an image again");
    if (i == MOAT_BOOT_NONE)
        record_empty(&b->rec);
    else
        b->rec = r[i];
    b->copy = (uint8_t)i;
    b->loaded = true;
    b->error[0] = '\0';
    return MOAT_OK;
}

const moat_boot_record *moat_boot_record_get(const moat_boot *b)
{
    return b->loaded ? &b->rec : NULL;
}

/* Write n as the next record into the copy that does not hold the current
 * one; on success it becomes the current record. Nothing in b->rec changes
 * on failure. */
static moat_err persist(moat_boot *b, const moat_boot_record *n)
{
    uint8_t target = b->copy == 0 ? 1u : 0u;
    const moat_flash_area *a = b->record[target];
    moat_boot_record w = *n;
    moat_err e;
    moat_sb sb;

    w.seq = b->rec.seq + 1u;
    moat_boot_record_encode(&w, b->block);
    e = a->erase(a->ctx);
    if (e == MOAT_OK)
        e = a->write(a->ctx, 0, b->block, MOAT_BOOT_RECORD_SIZE);
    if (e == MOAT_OK)
        e = a->sync(a->ctx);
    if (e == MOAT_OK)
        e = a->read(a->ctx, 0, b->io, MOAT_BOOT_RECORD_SIZE);
    if (e == MOAT_OK && memcmp(b->io, b->block, MOAT_BOOT_RECORD_SIZE) != 0)
        e = MOAT_ERR_IO;
    if (e != MOAT_OK) {
        words_begin(b, &sb);
        moat_sb_str(&sb, target == 0 ? "boot record copy 0: " : "boot record copy 1: ");
        moat_sb_str(&sb, e == MOAT_ERR_IO ? "write failed or did not read back"
                                          : moat_strerror(e));
        return words_end(&sb, e);
    }
    b->rec = w;
    b->copy = target;
    return MOAT_OK;
}

/* True when n differs from the current record. */
static bool changed(moat_boot *b, const moat_boot_record *n)
{
    moat_boot_record_encode(&b->rec, b->block);
    moat_boot_record_encode(n, b->io);
    return memcmp(b->block, b->io, MOAT_BOOT_RECORD_SIZE) != 0;
}

/* --------------------------------------------------------- payloads -- */

typedef enum { PAYLOAD_OK, PAYLOAD_BAD, PAYLOAD_IO } payload_result;

/* Does the slot's area hold exactly image (size and SHA-256)? */
static payload_result check_payload(moat_boot *b, uint8_t slot, const moat_boot_image *img)
{
    const moat_flash_area *a = b->slot[slot];
    const moat_boot_hash *h = b->hash;
    uint8_t digest[32];
    uint32_t off, n;

    if (img->size == 0 || img->size > a->size)
        return PAYLOAD_BAD;
    if (h == NULL || h->begin(h->ctx) != MOAT_OK)
        return PAYLOAD_IO;
    for (off = 0; off < img->size; off += n) {
        n = img->size - off;
        if (n > sizeof b->io)
            n = sizeof b->io;
        if (a->read(a->ctx, off, b->io, n) != MOAT_OK || h->update(h->ctx, b->io, n) != MOAT_OK)
            return PAYLOAD_IO;
    }
    if (h->finish(h->ctx, digest) != MOAT_OK)
        return PAYLOAD_IO;
    return memcmp(digest, img->sha256, 32) == 0 ? PAYLOAD_OK : PAYLOAD_BAD;
}

/* ----------------------------------------------------------- decide -- */

static void set_rollback(moat_boot_record *n, uint8_t from, uint8_t code)
{
    const moat_boot_slot_info *s = &n->slot[from];

    n->rollback.code = code;
    n->rollback.from = from;
    n->rollback.to = MOAT_BOOT_NONE;
    n->rollback.starts = s->trial_starts;
    n->rollback.counter = s->image.security_counter;
    memcpy(n->rollback.version, s->image.version, MOAT_BOOT_VERSION_MAX);
    memset(n->rollback.to_version, 0, MOAT_BOOT_VERSION_MAX);
}

/* The slot cannot run: mark it rejected, stop its trial, say why. */
static void reject(moat_boot_record *n, uint8_t slot, uint8_t code)
{
    set_rollback(n, slot, code);
    n->slot[slot].state = MOAT_BOOT_REJECTED;
    if (n->pending == slot) {
        n->pending = MOAT_BOOT_NONE;
        n->trials_left = 0;
    }
    if (n->active == slot)
        n->active = MOAT_BOOT_NONE;
}

/* Words for the "nothing can run" error: each slot's problem. */
static void sb_problem(moat_sb *sb, const moat_boot_record *n, uint8_t slot,
                       const payload_result *res)
{
    const moat_boot_slot_info *s = &n->slot[slot];

    sb_slot(sb, slot, holds_image(s->state) ? s->image.version : NULL);
    moat_sb_str(sb, ": ");
    if (s->state == MOAT_BOOT_EMPTY)
        moat_sb_str(sb, "empty");
    else if (s->state == MOAT_BOOT_WRITING)
        moat_sb_str(sb, "an install was begun and not finished");
    else if (s->image.security_counter < n->security_counter)
        moat_sb_str(sb, "security counter below the device's");
    else if (res[slot] == PAYLOAD_IO)
        moat_sb_str(sb, "cannot be read");
    else
        moat_sb_str(sb, "does not match its SHA-256 (damaged or partly written)");
}

/* Check each slot's payload once per decision: res[slot] caches it. */
static payload_result payload_of(moat_boot *b, const moat_boot_record *n, uint8_t slot,
                                 payload_result *res, bool *checked)
{
    if (!checked[slot]) {
        res[slot] = holds_image(n->slot[slot].state)
                        ? check_payload(b, slot, &n->slot[slot].image)
                        : PAYLOAD_BAD;
        checked[slot] = true;
    }
    return res[slot];
}

static void fill_choice(moat_boot_choice *c, const moat_boot_record *n, uint8_t slot,
                        bool trial)
{
    c->slot = slot;
    c->trial = trial;
    c->trials_left = trial ? n->trials_left : 0;
    c->image = n->slot[slot].image;
}

/* Try the pending slot: MOAT_OK with a persisted trial start in *c, or
 * MOAT_ERR_STATE when it cannot run now; *rejected when n now records its
 * rejection, *persist_failed when the trial start could not be written. */
static moat_err try_trial(moat_boot *b, moat_boot_record *n, moat_boot_choice *c,
                          payload_result *res, bool *checked, bool *rejected,
                          bool *persist_failed)
{
    uint8_t p = n->pending, code = MOAT_BOOT_REASON_NONE;
    moat_boot_record t;
    payload_result pr;

    if (p == MOAT_BOOT_NONE)
        return MOAT_ERR_STATE;
    if (n->slot[p].state != MOAT_BOOT_PENDING) {
        n->pending = MOAT_BOOT_NONE; /* never written so; heal it */
        n->trials_left = 0;
        return MOAT_ERR_STATE;
    }
    if (n->trials_left == 0)
        code = MOAT_BOOT_REASON_NOT_CONFIRMED;
    else if (n->slot[p].image.security_counter < n->security_counter)
        code = MOAT_BOOT_REASON_COUNTER;
    else if ((pr = payload_of(b, n, p, res, checked)) == PAYLOAD_IO)
        return MOAT_ERR_STATE; /* maybe passing: keep its trials, run the active */
    else if (pr == PAYLOAD_BAD)
        code = MOAT_BOOT_REASON_BAD_IMAGE;
    if (code != MOAT_BOOT_REASON_NONE) {
        reject(n, p, code);
        *rejected = true;
        return MOAT_ERR_STATE;
    }
    t = *n;
    t.trials_left--;
    if (t.slot[p].trial_starts < 255u)
        t.slot[p].trial_starts++;
    t.running = p;
    t.running_trial = 1;
    if (persist(b, &t) != MOAT_OK) {
        *persist_failed = true;
        return MOAT_ERR_STATE;
    }
    fill_choice(c, &b->rec, p, true);
    return MOAT_OK;
}

/* The first slot in order[0..k) that holds an image not below the device's
 * counter, in state `want` (or any state but EMPTY when want is EMPTY), and
 * whose payload verifies; MOAT_BOOT_NONE if none. */
static uint8_t first_runnable(moat_boot *b, const moat_boot_record *n, const uint8_t *order,
                              unsigned k, uint8_t want, payload_result *res, bool *checked)
{
    const moat_boot_slot_info *si;
    unsigned i;

    for (i = 0; i < k; i++) {
        si = &n->slot[order[i]];
        if (!holds_image(si->state) || (want != MOAT_BOOT_EMPTY && si->state != want) ||
            si->image.security_counter < n->security_counter)
            continue;
        if (payload_of(b, n, order[i], res, checked) == PAYLOAD_OK)
            return order[i];
    }
    return MOAT_BOOT_NONE;
}

moat_err moat_boot_decide(moat_boot *b, moat_boot_choice *c)
{
    moat_boot_record n;
    payload_result res[MOAT_BOOT_SLOTS] = {PAYLOAD_BAD, PAYLOAD_BAD};
    bool checked[MOAT_BOOT_SLOTS] = {false, false};
    bool persist_failed = false, rejected = false;
    uint8_t order[MOAT_BOOT_SLOTS], cand, s;
    unsigned k = 0;
    moat_sb sb;
    char saved[MOAT_BOOT_WORDS_MAX];

    if (!b->loaded)
        return fail(b, MOAT_ERR_STATE, "boot record not loaded");
    memset(c, 0, sizeof *c);
    c->slot = MOAT_BOOT_NONE;
    n = b->rec;
    if (try_trial(b, &n, c, res, checked, &rejected, &persist_failed) == MOAT_OK) {
        b->error[0] = '\0';
        return MOAT_OK;
    }
    saved[0] = '\0';
    if (persist_failed) {
        n = b->rec; /* run the active slot; write nothing */
        memcpy(saved, b->error, sizeof saved);
    }

    /* Confirmed images first, the active slot before the other one; then,
     * as a last resort, any image that verifies. */
    if (n.active != MOAT_BOOT_NONE)
        order[k++] = n.active;
    for (s = 0; s < MOAT_BOOT_SLOTS; s++)
        if (s != n.active)
            order[k++] = s;
    cand = first_runnable(b, &n, order, k, MOAT_BOOT_CONFIRMED, res, checked);
    if (cand == MOAT_BOOT_NONE)
        cand = first_runnable(b, &n, order, k, MOAT_BOOT_EMPTY, res, checked);
    if (n.active != MOAT_BOOT_NONE && cand != n.active && checked[n.active] &&
        res[n.active] == PAYLOAD_BAD) {
        reject(&n, n.active, MOAT_BOOT_REASON_BAD_IMAGE);
        rejected = true;
    }
    if (cand == MOAT_BOOT_NONE) {
        if (!persist_failed && changed(b, &n))
            (void)persist(b, &n); /* keep the rejection for the status */
        words_begin(b, &sb);
        moat_sb_str(&sb, "no slot holds an image that can run: ");
        sb_problem(&sb, &n, MOAT_BOOT_SLOT_A, res);
        moat_sb_str(&sb, "; ");
        sb_problem(&sb, &n, MOAT_BOOT_SLOT_B, res);
        return words_end(&sb, MOAT_ERR_STATE);
    }
    if (n.active == MOAT_BOOT_NONE && n.slot[cand].state == MOAT_BOOT_CONFIRMED)
        n.active = cand;
    if (rejected) {
        n.rollback.to = cand != n.rollback.from ? cand : MOAT_BOOT_NONE;
        memset(n.rollback.to_version, 0, MOAT_BOOT_VERSION_MAX);
        if (n.rollback.to != MOAT_BOOT_NONE)
            memcpy(n.rollback.to_version, n.slot[cand].image.version, MOAT_BOOT_VERSION_MAX);
    }
    n.running = cand;
    n.running_trial = 0;
    fill_choice(c, &n, cand, false);
    b->error[0] = '\0';
    if (persist_failed) {
        memcpy(b->error, saved, sizeof saved); /* why the trial waits */
        return MOAT_OK;
    }
    /* When this write fails the image still runs (it verified); the
     * rejection is decided again at the next start. The words stay. */
    if (changed(b, &n))
        (void)persist(b, &n);
    return MOAT_OK;
}

/* ---------------------------------------------------------- install -- */

/* The slot an install goes to: never the active one, nor (on a device with
 * no active slot) the one running. MOAT_ERR_STATE while a slot is on trial. */
static moat_err install_target(moat_boot *b, uint8_t *target)
{
    const moat_boot_record *r = &b->rec;
    moat_sb sb;

    if (!b->loaded)
        return fail(b, MOAT_ERR_STATE, "boot record not loaded");
    if (r->pending != MOAT_BOOT_NONE && r->running == r->pending && r->running_trial) {
        words_begin(b, &sb);
        sb_slot(&sb, r->pending, r->slot[r->pending].image.version);
        moat_sb_str(&sb, " is on trial: it must confirm, or roll back, before another "
                         "update is installed");
        return words_end(&sb, MOAT_ERR_STATE);
    }
    if (r->active != MOAT_BOOT_NONE)
        *target = r->active == MOAT_BOOT_SLOT_A ? MOAT_BOOT_SLOT_B : MOAT_BOOT_SLOT_A;
    else if (r->running == MOAT_BOOT_SLOT_A)
        *target = MOAT_BOOT_SLOT_B;
    else
        *target = MOAT_BOOT_SLOT_A;
    return MOAT_OK;
}

moat_err moat_boot_install_resume(moat_boot *b, uint8_t *slot)
{
    uint8_t target;
    moat_err e = install_target(b, &target);
    moat_sb sb;

    if (e != MOAT_OK)
        return e;
    if (b->rec.slot[target].state != MOAT_BOOT_WRITING) {
        words_begin(b, &sb);
        sb_slot(&sb, target, holds_image(b->rec.slot[target].state)
                                 ? b->rec.slot[target].image.version : NULL);
        moat_sb_str(&sb, ": no install in progress to resume");
        return words_end(&sb, MOAT_ERR_STATE);
    }
    *slot = target;
    b->error[0] = '\0';
    return MOAT_OK;
}

moat_err moat_boot_install_begin(moat_boot *b, uint8_t *slot)
{
    moat_boot_record n;
    const moat_flash_area *a;
    uint8_t target;
    moat_err e;
    moat_sb sb;

    e = install_target(b, &target);
    if (e != MOAT_OK)
        return e;
    n = b->rec;
    memset(&n.slot[target], 0, sizeof n.slot[target]);
    n.slot[target].state = MOAT_BOOT_WRITING;
    if (n.pending == target) {
        n.pending = MOAT_BOOT_NONE;
        n.trials_left = 0;
        n.trials = 0;
    }
    if (changed(b, &n) && (e = persist(b, &n)) != MOAT_OK)
        return e;
    a = b->slot[target];
    e = a->erase(a->ctx);
    if (e != MOAT_OK) {
        words_begin(b, &sb);
        sb_slot(&sb, target, NULL);
        moat_sb_str(&sb, ": erase failed: ");
        moat_sb_str(&sb, moat_strerror(e));
        return words_end(&sb, e);
    }
    *slot = target;
    b->error[0] = '\0';
    return MOAT_OK;
}

moat_err moat_boot_install_finish(moat_boot *b, uint8_t slot, const moat_boot_image *image,
                                  unsigned trials, unsigned flags)
{
    moat_boot_record n;
    payload_result pr;
    moat_err e;
    moat_sb sb;

    if (!b->loaded)
        return fail(b, MOAT_ERR_STATE, "boot record not loaded");
    if (!slot_ok(slot) || image == NULL)
        return fail(b, MOAT_ERR_ARG, "install: no such slot");
    if (trials == 0)
        trials = MOAT_BOOT_DEFAULT_TRIALS;
    if (trials > MOAT_BOOT_MAX_TRIALS)
        return fail(b, MOAT_ERR_ARG, "install: at most 100 trial starts");
    if (!version_ok(image->version))
        return fail(b, MOAT_ERR_ARG,
                    "install: the version must be 1 to 23 printable characters");
    n = b->rec;
    words_begin(b, &sb);
    sb_slot(&sb, slot, image->version);
    if (slot == n.active) {
        moat_sb_str(&sb, ": refused, it is the active slot: install into the other one");
        return words_end(&sb, MOAT_ERR_STATE);
    }
    if (n.slot[slot].state != MOAT_BOOT_WRITING) {
        moat_sb_str(&sb, ": refused, the install was not begun (moat_boot_install_begin)");
        return words_end(&sb, MOAT_ERR_STATE);
    }
    if (image->size == 0 || image->size > b->slot[slot]->size) {
        moat_sb_str(&sb, ": refused, size ");
        moat_sb_u64(&sb, image->size);
        moat_sb_str(&sb, " is 0 or larger than the slot");
        return words_end(&sb, MOAT_ERR_ARG);
    }
    if (image->security_counter < n.security_counter) {
        moat_sb_str(&sb, ": refused, its security counter ");
        moat_sb_u64(&sb, image->security_counter);
        moat_sb_str(&sb, " is below the device's ");
        moat_sb_u64(&sb, n.security_counter);
        moat_sb_str(&sb, " (older than what runs)");
        return words_end(&sb, MOAT_ERR_STATE);
    }
    pr = check_payload(b, slot, image);
    if (pr != PAYLOAD_OK) {
        moat_sb_str(&sb, pr == PAYLOAD_IO ? ": refused, the payload cannot be read back"
                                          : ": refused, the payload written does not match "
                                            "its size and SHA-256");
        return words_end(&sb, pr == PAYLOAD_IO ? MOAT_ERR_IO : MOAT_ERR_MALFORMED);
    }
    n.slot[slot].image = *image;
    n.slot[slot].trial_starts = 0;
    if (flags & MOAT_BOOT_INSTALL_CONFIRMED) {
        n.slot[slot].state = MOAT_BOOT_CONFIRMED;
        n.active = slot;
        if (n.pending == slot)
            n.pending = MOAT_BOOT_NONE;
        if (image->security_counter > n.security_counter)
            n.security_counter = image->security_counter;
        n.rollback.code = MOAT_BOOT_REASON_NONE;
    } else {
        n.slot[slot].state = MOAT_BOOT_PENDING;
        n.pending = slot;
        n.trials = (uint8_t)trials;
        n.trials_left = (uint8_t)trials;
    }
    e = persist(b, &n);
    if (e != MOAT_OK)
        return e;
    b->error[0] = '\0';
    return MOAT_OK;
}

/* ---------------------------------------------------------- confirm -- */

moat_err moat_boot_confirm(moat_boot *b, uint8_t slot)
{
    moat_boot_record n;
    moat_boot_slot_info *s;
    moat_err e;
    moat_sb sb;

    if (!b->loaded)
        return fail(b, MOAT_ERR_STATE, "boot record not loaded");
    if (!slot_ok(slot))
        return fail(b, MOAT_ERR_ARG, "confirm: no such slot");
    n = b->rec;
    s = &n.slot[slot];
    if (slot == n.active && s->state == MOAT_BOOT_CONFIRMED) {
        b->error[0] = '\0';
        return MOAT_OK;
    }
    words_begin(b, &sb);
    sb_slot(&sb, slot, holds_image(s->state) ? s->image.version : NULL);
    /* The running image of a device with no confirmed one (its only image
     * ran out of trials and runs as the last resort) may still confirm. */
    if (n.active == MOAT_BOOT_NONE && n.running == slot && holds_image(s->state)) {
        /* fall through to confirm */
    } else if (slot != n.pending || s->state != MOAT_BOOT_PENDING) {
        moat_sb_str(&sb, s->state == MOAT_BOOT_REJECTED
                             ? " cannot confirm: it was rolled back"
                             : " cannot confirm: it is not on trial");
        return words_end(&sb, MOAT_ERR_STATE);
    } else if (n.running != slot || !n.running_trial) {
        moat_sb_str(&sb, " cannot confirm: it has not been started on trial yet");
        return words_end(&sb, MOAT_ERR_STATE);
    }
    s->state = MOAT_BOOT_CONFIRMED;
    n.active = slot;
    if (n.pending == slot) {
        n.pending = MOAT_BOOT_NONE;
        n.trials_left = 0;
    }
    n.running_trial = 0;
    if (s->image.security_counter > n.security_counter)
        n.security_counter = s->image.security_counter;
    n.rollback.code = MOAT_BOOT_REASON_NONE;
    e = persist(b, &n);
    if (e != MOAT_OK)
        return e;
    b->error[0] = '\0';
    return MOAT_OK;
}

/* ----------------------------------------------------------- status -- */

static void reason_words(const moat_boot_record *r, char *buf, size_t cap)
{
    moat_sb sb;

    moat_sb_init(&sb, buf, cap);
    if (r->rollback.code != MOAT_BOOT_REASON_NONE && slot_ok(r->rollback.from)) {
        sb_slot(&sb, r->rollback.from, r->rollback.version);
        if (r->rollback.code == MOAT_BOOT_REASON_NOT_CONFIRMED) {
            moat_sb_str(&sb, " did not confirm within ");
            moat_sb_u64(&sb, r->rollback.starts);
            moat_sb_str(&sb, r->rollback.starts == 1 ? " start" : " starts");
        } else if (r->rollback.code == MOAT_BOOT_REASON_BAD_IMAGE) {
            moat_sb_str(&sb, " does not match its SHA-256 (damaged or partly written)");
        } else {
            moat_sb_str(&sb, " has security counter ");
            moat_sb_u64(&sb, r->rollback.counter);
            moat_sb_str(&sb, ", below the device's ");
            moat_sb_u64(&sb, r->security_counter);
        }
        if (slot_ok(r->rollback.to)) {
            moat_sb_str(&sb, ": back to ");
            sb_slot(&sb, r->rollback.to, r->rollback.to_version);
        } else {
            moat_sb_str(&sb, ": no other image to run");
        }
    }
    moat_sb_words(&sb);
}

void moat_boot_status_get(const moat_boot *b, moat_boot_status *st)
{
    const moat_boot_record *r = &b->rec;
    uint8_t run = r->running != MOAT_BOOT_NONE ? r->running : r->active;

    memset(st, 0, sizeof *st);
    st->slot = moat_boot_slot_name(run);
    st->active = moat_boot_slot_name(r->active);
    st->pending = moat_boot_slot_name(r->pending);
    st->trial = r->running_trial && run == r->pending && run != MOAT_BOOT_NONE;
    st->trials_left = r->pending != MOAT_BOOT_NONE ? r->trials_left : 0;
    st->security_counter = r->security_counter;
    if (slot_ok(run) && holds_image(r->slot[run].state))
        memcpy(st->version, r->slot[run].image.version, MOAT_BOOT_VERSION_MAX);
    if (!b->loaded || run == MOAT_BOOT_NONE)
        st->state = "none";
    else if (st->trial)
        st->state = "trial";
    else if (run != r->active)
        st->state = "fallback";
    else if (r->pending != MOAT_BOOT_NONE)
        st->state = "pending";
    else
        st->state = "confirmed";
    reason_words(r, st->reason, sizeof st->reason);
}

const char *moat_boot_error(const moat_boot *b)
{
    return b->error;
}
