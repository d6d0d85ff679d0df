/*
 * test_boot.c - the A/B slot logic (moat/slots.h, src/core/boot.c) over an
 * in-memory flash that can lose power after any number of written bytes.
 *
 * The power-cut sweeps run an operation once to count its flash events
 * (bytes written, erases, syncs) and the records it writes, then again from
 * the same starting flash with the power cut at every event: the byte at the
 * cut becomes garbage, an erase is left half done, nothing after it happens.
 * After each cut a fresh context must load a record that is the old one or
 * one the operation wrote (never a mix), and a start must run an image whose
 * payload verifies.
 *
 * The hash is a toy (four FNV-1a lanes): the core only needs a digest that
 * changes with the payload; SHA-256 itself is mbedTLS's business.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moat/slots.h"

/* ------------------------------------------------------ memory flash -- */

#define REC_AREA 512u
#define SLOT_AREA 4096u

typedef struct memflash {
    uint8_t *mem;
    uint32_t size;
    unsigned erases, writes, syncs;
} memflash;

/* The power supply: budget events until the cut (-1: never). */
static struct {
    long budget;
    bool dead;
    unsigned long events;
    bool fail_writes; /* every write fails (a worn-out part), power stays */
} power = {-1, false, 0, false};

static bool spend(void)
{
    if (power.dead)
        return false;
    power.events++;
    if (power.budget < 0)
        return true;
    if (power.budget == 0) {
        power.dead = true;
        return false;
    }
    power.budget--;
    return true;
}

static moat_err mf_read(void *ctx, uint32_t off, void *buf, size_t len)
{
    memflash *f = ctx;

    if (power.dead)
        return MOAT_ERR_IO;
    assert_true(off <= f->size && len <= f->size - off);
    memcpy(buf, f->mem + off, len);
    return MOAT_OK;
}

/* Records written to a record area while capturing (clean runs). */
static uint8_t seen[16][MOAT_BOOT_RECORD_SIZE];
static unsigned nseen;
static bool capturing;

static void canon_block(const uint8_t *in, uint8_t out[MOAT_BOOT_RECORD_SIZE]);

static moat_err mf_write(void *ctx, uint32_t off, const void *buf, size_t len)
{
    memflash *f = ctx;
    const uint8_t *p = buf;
    size_t i;

    assert_true(off <= f->size && len <= f->size - off);
    if (power.fail_writes || power.dead)
        return MOAT_ERR_IO;
    f->writes++;
    for (i = 0; i < len; i++) {
        if (!spend()) {
            f->mem[off + i] = (uint8_t)(p[i] ^ 0x5Au); /* the torn byte */
            return MOAT_ERR_IO;
        }
        f->mem[off + i] = p[i];
    }
    if (capturing && f->size == REC_AREA && off == 0 && len == MOAT_BOOT_RECORD_SIZE) {
        assert_true(nseen < 16);
        canon_block(p, seen[nseen++]);
    }
    return MOAT_OK;
}

static moat_err mf_erase(void *ctx)
{
    memflash *f = ctx;

    if (!spend()) {
        if (power.dead)
            memset(f->mem, 0xFF, f->size / 2); /* half erased */
        return MOAT_ERR_IO;
    }
    f->erases++;
    memset(f->mem, 0xFF, f->size);
    return MOAT_OK;
}

static moat_err mf_sync(void *ctx)
{
    memflash *f = ctx;

    if (!spend())
        return MOAT_ERR_IO;
    f->syncs++;
    return MOAT_OK;
}

/* ------------------------------------------------------------ toy hash -- */

typedef struct toyhash {
    uint64_t lane[4];
} toyhash;

static moat_err th_begin(void *ctx)
{
    toyhash *h = ctx;
    unsigned i;

    for (i = 0; i < 4; i++)
        h->lane[i] = 0xcbf29ce484222325ull ^ (i * 0x9E3779B97F4A7C15ull);
    return MOAT_OK;
}

static moat_err th_update(void *ctx, const void *data, size_t len)
{
    toyhash *h = ctx;
    const uint8_t *p = data;
    unsigned i;

    while (len--) {
        for (i = 0; i < 4; i++)
            h->lane[i] = (h->lane[i] ^ (uint8_t)(*p + i)) * 0x100000001b3ull;
        p++;
    }
    return MOAT_OK;
}

static moat_err th_finish(void *ctx, uint8_t out[32])
{
    toyhash *h = ctx;
    unsigned i, k;

    for (i = 0; i < 4; i++)
        for (k = 0; k < 8; k++)
            out[i * 8 + k] = (uint8_t)(h->lane[i] >> (8 * k));
    return MOAT_OK;
}

static void toy_digest(const uint8_t *p, size_t n, uint8_t out[32])
{
    toyhash h;

    th_begin(&h);
    th_update(&h, p, n);
    th_finish(&h, out);
}

/* ---------------------------------------------------------------- rig -- */

typedef struct rig {
    uint8_t mem[4][SLOT_AREA];
    memflash mf[4];
    moat_flash_area fa[4];
    toyhash th;
    moat_boot_hash hash;
    moat_boot b;
} rig;

static rig R;

/* Four firmware payloads, each a different pattern and size. */
#define NFW 4
static uint8_t fw[NFW][3000];
static const size_t fw_len[NFW] = {1000, 1500, 2000, 2500};
static const char *const fw_ver[NFW] = {"1.0.0", "2.0.0", "3.0.0", "4.0.0"};

static void make_fw(void)
{
    unsigned i, k;

    for (i = 0; i < NFW; i++)
        for (k = 0; k < sizeof fw[i]; k++)
            fw[i][k] = (uint8_t)(k * (i + 3) + i * 17);
}

static moat_boot_image image_of(unsigned v, uint32_t counter)
{
    moat_boot_image img;

    memset(&img, 0, sizeof img);
    img.size = (uint32_t)fw_len[v];
    img.security_counter = counter;
    toy_digest(fw[v], fw_len[v], img.sha256);
    strcpy(img.version, fw_ver[v]);
    return img;
}

/* A fresh context over the flash as it is (a restart). */
static moat_err reboot(void)
{
    moat_err e;

    e = moat_boot_init(&R.b, &R.fa[0], &R.fa[1], &R.fa[2], &R.fa[3], &R.hash);
    assert_int_equal(e, MOAT_OK);
    return moat_boot_load(&R.b);
}

static void rig_new(void)
{
    unsigned i;

    memset(&R, 0, sizeof R);
    memset(R.mem, 0xFF, sizeof R.mem);
    for (i = 0; i < 4; i++) {
        R.mf[i].mem = R.mem[i];
        R.mf[i].size = i < 2 ? REC_AREA : SLOT_AREA;
        R.fa[i].read = mf_read;
        R.fa[i].write = mf_write;
        R.fa[i].erase = mf_erase;
        R.fa[i].sync = mf_sync;
        R.fa[i].size = R.mf[i].size;
        R.fa[i].ctx = &R.mf[i];
    }
    R.hash.begin = th_begin;
    R.hash.update = th_update;
    R.hash.finish = th_finish;
    R.hash.ctx = &R.th;
    power.budget = -1;
    power.dead = false;
    power.fail_writes = false;
    make_fw();
    assert_int_equal(reboot(), MOAT_OK);
}

static unsigned total_writes(void)
{
    return R.mf[0].writes + R.mf[1].writes + R.mf[2].writes + R.mf[3].writes;
}

/* Install firmware v into the free slot; returns the slot. */
static moat_err install(unsigned v, uint32_t counter, unsigned trials, unsigned flags,
                        uint8_t *slot)
{
    moat_boot_image img = image_of(v, counter);
    const moat_flash_area *a;
    moat_err e;
    size_t off;

    e = moat_boot_install_begin(&R.b, slot);
    if (e != MOAT_OK)
        return e;
    a = R.b.slot[*slot];
    for (off = 0; off < fw_len[v]; off += 100) {
        e = a->write(a->ctx, (uint32_t)off, fw[v] + off,
                     fw_len[v] - off < 100 ? fw_len[v] - off : 100);
        if (e != MOAT_OK)
            return e;
    }
    e = a->sync(a->ctx);
    if (e != MOAT_OK)
        return e;
    return moat_boot_install_finish(&R.b, *slot, &img, trials, flags);
}

static uint8_t install_ok(unsigned v, uint32_t counter, unsigned flags)
{
    uint8_t slot = MOAT_BOOT_NONE;

    assert_int_equal(install(v, counter, 0, flags, &slot), MOAT_OK);
    assert_string_equal(moat_boot_error(&R.b), "");
    return slot;
}

static moat_boot_choice decide_ok(void)
{
    moat_boot_choice c;

    assert_int_equal(moat_boot_decide(&R.b, &c), MOAT_OK);
    assert_true(c.slot < MOAT_BOOT_SLOTS);
    return c;
}

/* Which firmware does slot hold, by its recorded version. */
static unsigned fw_in(const moat_boot_choice *c)
{
    unsigned v;

    for (v = 0; v < NFW; v++)
        if (strcmp(c->image.version, fw_ver[v]) == 0)
            return v;
    fail_msg("unknown version %s", c->image.version);
    return 0;
}

/* The chosen slot really holds that firmware's bytes. */
static void assert_runs(const moat_boot_choice *c, unsigned v, bool trial)
{
    assert_int_equal(fw_in(c), v);
    assert_int_equal(c->trial, trial);
    assert_int_equal(c->image.size, fw_len[v]);
    assert_memory_equal(R.mem[2 + c->slot], fw[v], fw_len[v]);
}

/* ------------------------------------------------------------- codec -- */

static void crc32_check_value(void **state)
{
    (void)state;
    assert_int_equal(moat_boot_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(moat_boot_crc32(moat_boot_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
    assert_int_equal(moat_boot_crc32(0, "", 0), 0);
}

static void record_roundtrip_and_damage(void **state)
{
    moat_boot_record r, d;
    uint8_t blk[MOAT_BOOT_RECORD_SIZE];
    size_t i;

    (void)state;
    memset(&r, 0, sizeof r);
    r.seq = 0x01020304u;
    r.active = 1;
    r.pending = 0;
    r.trials_left = 2;
    r.trials = 3;
    r.running = 0;
    r.running_trial = 1;
    r.security_counter = 77;
    r.slot[0].state = MOAT_BOOT_PENDING;
    r.slot[0].trial_starts = 1;
    r.slot[0].image = image_of(2, 80);
    r.slot[1].state = MOAT_BOOT_CONFIRMED;
    r.slot[1].image = image_of(1, 77);
    r.rollback.code = MOAT_BOOT_REASON_NOT_CONFIRMED;
    r.rollback.from = 0;
    r.rollback.to = 1;
    r.rollback.starts = 3;
    strcpy(r.rollback.version, "0.9");
    strcpy(r.rollback.to_version, "1.0.0");
    moat_boot_record_encode(&r, blk);
    assert_int_equal(moat_boot_record_decode(blk, &d), MOAT_OK);
    assert_int_equal(d.seq, r.seq);
    assert_int_equal(d.active, 1);
    assert_int_equal(d.pending, 0);
    assert_int_equal(d.trials_left, 2);
    assert_int_equal(d.running_trial, 1);
    assert_int_equal(d.security_counter, 77);
    assert_memory_equal(&d.slot[0].image, &r.slot[0].image, sizeof r.slot[0].image);
    assert_string_equal(d.rollback.to_version, "1.0.0");
    /* Any single flipped bit anywhere is caught. */
    for (i = 0; i < sizeof blk; i++) {
        blk[i] ^= 0x10;
        assert_int_equal(moat_boot_record_decode(blk, &d), MOAT_ERR_MALFORMED);
        blk[i] ^= 0x10;
    }
    /* A good CRC over impossible fields is refused too. */
    r.active = 7;
    moat_boot_record_encode(&r, blk);
    assert_int_equal(moat_boot_record_decode(blk, &d), MOAT_ERR_MALFORMED);
    r.active = 0; /* active == pending */
    moat_boot_record_encode(&r, blk);
    assert_int_equal(moat_boot_record_decode(blk, &d), MOAT_ERR_MALFORMED);
}

static void init_refuses_small_areas(void **state)
{
    moat_flash_area small;
    moat_boot b;

    (void)state;
    rig_new();
    small = R.fa[0];
    small.size = 100;
    assert_int_equal(moat_boot_init(&b, &small, &R.fa[1], &R.fa[2], &R.fa[3], &R.hash),
                     MOAT_ERR_ARG);
    assert_int_equal(moat_boot_init(&b, &R.fa[0], NULL, &R.fa[2], &R.fa[3], &R.hash),
                     MOAT_ERR_ARG);
}

/* -------------------------------------------------------------- load -- */

static void new_device_is_empty(void **state)
{
    const moat_boot_record *r;
    moat_boot_choice c;
    moat_boot_status st;

    (void)state;
    rig_new();
    r = moat_boot_record_get(&R.b);
    assert_non_null(r);
    assert_int_equal(r->active, MOAT_BOOT_NONE);
    assert_int_equal(r->pending, MOAT_BOOT_NONE);
    assert_int_equal(moat_boot_decide(&R.b, &c), MOAT_ERR_STATE);
    assert_string_equal(moat_boot_error(&R.b),
                        "no slot holds an image that can run: slot a: empty; slot b: empty");
    moat_boot_status_get(&R.b, &st);
    assert_string_equal(st.state, "none");
    assert_int_equal(st.slot, '-');
    assert_string_equal(st.reason, "");
}

static void load_picks_newest_valid_copy(void **state)
{
    moat_boot_record r, got;
    uint8_t blk[MOAT_BOOT_RECORD_SIZE];

    (void)state;
    rig_new();
    memset(&r, 0, sizeof r);
    r.active = MOAT_BOOT_NONE;
    r.pending = MOAT_BOOT_NONE;
    r.running = MOAT_BOOT_NONE;
    r.rollback.from = r.rollback.to = MOAT_BOOT_NONE;
    r.security_counter = 5;
    r.seq = 10;
    moat_boot_record_encode(&r, blk);
    memcpy(R.mem[0], blk, sizeof blk);
    r.security_counter = 6;
    r.seq = 11;
    moat_boot_record_encode(&r, blk);
    memcpy(R.mem[1], blk, sizeof blk);
    assert_int_equal(reboot(), MOAT_OK);
    got = *moat_boot_record_get(&R.b);
    assert_int_equal(got.security_counter, 6);
    assert_int_equal(R.b.copy, 1);

    /* Sequence numbers compare across the 2^32 wrap. */
    r.seq = 0xFFFFFFFFu;
    r.security_counter = 7;
    moat_boot_record_encode(&r, blk);
    memcpy(R.mem[0], blk, sizeof blk);
    r.seq = 0;
    r.security_counter = 8;
    moat_boot_record_encode(&r, blk);
    memcpy(R.mem[1], blk, sizeof blk);
    assert_int_equal(reboot(), MOAT_OK);
    assert_int_equal(moat_boot_record_get(&R.b)->security_counter, 8);

    /* The newer copy torn: the older one wins. */
    R.mem[1][40] ^= 1;
    assert_int_equal(reboot(), MOAT_OK);
    assert_int_equal(moat_boot_record_get(&R.b)->security_counter, 7);
    assert_int_equal(R.b.copy, 0);

    /* Both damaged: an error in words, and nothing runs. */
    R.mem[0][41] ^= 1;
    assert_int_equal(reboot(), MOAT_ERR_MALFORMED);
    assert_string_equal(moat_boot_error(&R.b),
                        "both copies of the boot record are damaged: install an image again");
    assert_null(moat_boot_record_get(&R.b));

    /* One blank and one torn: the first write ever was cut: a new device. */
    memset(R.mem[1], 0xFF, REC_AREA);
    assert_int_equal(reboot(), MOAT_OK);
    assert_int_equal(moat_boot_record_get(&R.b)->active, MOAT_BOOT_NONE);
}

/* ---------------------------------------------------- the update life -- */

static void provision_runs_without_writes(void **state)
{
    moat_boot_choice c;
    moat_boot_status st;
    unsigned w;

    (void)state;
    rig_new();
    assert_int_equal(install_ok(0, 1, MOAT_BOOT_INSTALL_CONFIRMED), MOAT_BOOT_SLOT_A);
    c = decide_ok();
    assert_runs(&c, 0, false);
    assert_int_equal(c.slot, MOAT_BOOT_SLOT_A);
    /* Plain starts of the active slot write nothing (flash wear). */
    w = total_writes();
    c = decide_ok();
    assert_runs(&c, 0, false);
    assert_int_equal(reboot(), MOAT_OK);
    c = decide_ok();
    assert_int_equal(total_writes(), w);
    moat_boot_status_get(&R.b, &st);
    assert_string_equal(st.state, "confirmed");
    assert_int_equal(st.slot, 'a');
    assert_int_equal(st.active, 'a');
    assert_int_equal(st.pending, '-');
    assert_string_equal(st.version, "1.0.0");
    assert_int_equal(st.security_counter, 1);
}

static void update_trial_confirm(void **state)
{
    moat_boot_choice c;
    moat_boot_status st;
    unsigned w;

    (void)state;
    rig_new();
    install_ok(0, 1, MOAT_BOOT_INSTALL_CONFIRMED);
    assert_int_equal(install_ok(1, 2, 0), MOAT_BOOT_SLOT_B);
    moat_boot_status_get(&R.b, &st);
    assert_string_equal(st.state, "pending");
    assert_int_equal(st.pending, 'b');
    /* Not started yet: it cannot confirm. */
    assert_int_equal(moat_boot_confirm(&R.b, MOAT_BOOT_SLOT_B), MOAT_ERR_STATE);
    assert_string_equal(moat_boot_error(&R.b),
                        "slot b (version 2.0.0) cannot confirm: it has not been started on "
                        "trial yet");

    assert_int_equal(reboot(), MOAT_OK);
    w = R.mf[0].writes + R.mf[1].writes;
    c = decide_ok();
    assert_runs(&c, 1, true);
    assert_int_equal(c.slot, MOAT_BOOT_SLOT_B);
    assert_int_equal(c.trials_left, 2);
    /* The trial start was persisted before the image runs. */
    assert_int_equal(R.mf[0].writes + R.mf[1].writes, w + 1);
    assert_int_equal(reboot(), MOAT_OK);
    assert_int_equal(moat_boot_record_get(&R.b)->trials_left, 2);
    moat_boot_status_get(&R.b, &st);
    assert_string_equal(st.state, "trial");
    assert_true(st.trial);
    assert_int_equal(st.slot, 'b');
    assert_int_equal(st.trials_left, 2);

    /* Confirming the old slot is no way out, and installing is refused. */
    assert_int_equal(moat_boot_confirm(&R.b, MOAT_BOOT_SLOT_A), MOAT_OK); /* active: no-op */
    {
        uint8_t s;
        assert_int_equal(moat_boot_install_begin(&R.b, &s), MOAT_ERR_STATE);
        assert_string_equal(moat_boot_error(&R.b),
                            "slot b (version 2.0.0) is on trial: it must confirm, or roll "
                            "back, before another update is installed");
    }

    assert_int_equal(moat_boot_confirm(&R.b, MOAT_BOOT_SLOT_B), MOAT_OK);
    assert_int_equal(reboot(), MOAT_OK);
    moat_boot_status_get(&R.b, &st);
    assert_string_equal(st.state, "confirmed");
    assert_int_equal(st.active, 'b');
    assert_int_equal(st.security_counter, 2);
    c = decide_ok();
    assert_runs(&c, 1, false);
    /* Confirming again is fine and writes nothing. */
    w = total_writes();
    assert_int_equal(moat_boot_confirm(&R.b, MOAT_BOOT_SLOT_B), MOAT_OK);
    assert_int_equal(total_writes(), w);
    assert_int_equal(moat_boot_confirm(&R.b, 2), MOAT_ERR_ARG);
}

static void never_confirms_rolls_back(void **state)
{
    moat_boot_choice c;
    moat_boot_status st;
    int i;

    (void)state;
    rig_new();
    install_ok(0, 1, MOAT_BOOT_INSTALL_CONFIRMED);
    install_ok(1, 2, 0);
    c = decide_ok();
    assert_int_equal(moat_boot_confirm(&R.b, c.slot), MOAT_OK);
    assert_int_equal(install_ok(2, 3, 0), MOAT_BOOT_SLOT_A); /* v3 into slot a */
    for (i = 2; i >= 0; i--) {
        assert_int_equal(reboot(), MOAT_OK);
        c = decide_ok();
        assert_runs(&c, 2, true);
        assert_int_equal(c.trials_left, i);
    }
    assert_int_equal(reboot(), MOAT_OK);
    c = decide_ok();
    assert_runs(&c, 1, false);
    assert_int_equal(c.slot, MOAT_BOOT_SLOT_B);
    moat_boot_status_get(&R.b, &st);
    assert_string_equal(st.state, "confirmed");
    assert_int_equal(st.slot, 'b');
    assert_string_equal(st.reason, "slot a (version 3.0.0) did not confirm within 3 starts: "
                                   "back to slot b (version 2.0.0)");
    /* The reason survives restarts, the rejected image cannot confirm, and
     * the counter did not move. */
    assert_int_equal(reboot(), MOAT_OK);
    c = decide_ok();
    assert_runs(&c, 1, false);
    moat_boot_status_get(&R.b, &st);
    assert_string_equal(st.reason, "slot a (version 3.0.0) did not confirm within 3 starts: "
                                   "back to slot b (version 2.0.0)");
    assert_int_equal(st.security_counter, 2);
    assert_int_equal(moat_boot_confirm(&R.b, MOAT_BOOT_SLOT_A), MOAT_ERR_STATE);
    assert_string_equal(moat_boot_error(&R.b),
                        "slot a (version 3.0.0) cannot confirm: it was rolled back");
    /* A fixed v4 installs over the rejected slot and, once confirmed, clears
     * the reason. */
    assert_int_equal(install_ok(3, 3, 0), MOAT_BOOT_SLOT_A);
    c = decide_ok();
    assert_runs(&c, 3, true);
    assert_int_equal(moat_boot_confirm(&R.b, MOAT_BOOT_SLOT_A), MOAT_OK);
    moat_boot_status_get(&R.b, &st);
    assert_string_equal(st.reason, "");
    assert_int_equal(st.security_counter, 3);
}

static void one_trial_start(void **state)
{
    moat_boot_choice c;
    moat_boot_status st;
    uint8_t slot;

    (void)state;
    rig_new();
    install_ok(0, 0, MOAT_BOOT_INSTALL_CONFIRMED);
    assert_int_equal(install(1, 0, 1, 0, &slot), MOAT_OK);
    c = decide_ok();
    assert_runs(&c, 1, true);
    assert_int_equal(c.trials_left, 0);
    c = decide_ok();
    assert_runs(&c, 0, false);
    moat_boot_status_get(&R.b, &st);
    assert_string_equal(st.reason, "slot b (version 2.0.0) did not confirm within 1 start: "
                                   "back to slot a (version 1.0.0)");
    assert_int_equal(install(1, 0, 101, 0, &slot), MOAT_ERR_ARG);
}

static void anti_rollback_counter(void **state)
{
    moat_boot_choice c;
    uint8_t slot;

    (void)state;
    rig_new();
    install_ok(1, 5, MOAT_BOOT_INSTALL_CONFIRMED);
    assert_int_equal(moat_boot_record_get(&R.b)->security_counter, 5);
    /* Older than the device allows: refused, in words. */
    assert_int_equal(install(0, 4, 0, 0, &slot), MOAT_ERR_STATE);
    assert_string_equal(moat_boot_error(&R.b),
                        "slot b (version 1.0.0): refused, its security counter 4 is below "
                        "the device's 5 (older than what runs)");
    /* Provisioning cannot lower it either. */
    assert_int_equal(install(0, 4, 0, MOAT_BOOT_INSTALL_CONFIRMED, &slot), MOAT_ERR_STATE);
    /* The same counter is fine (a bug fix without a security fix). */
    install_ok(2, 5, 0);
    c = decide_ok();
    assert_int_equal(moat_boot_confirm(&R.b, c.slot), MOAT_OK);
    assert_int_equal(moat_boot_record_get(&R.b)->security_counter, 5);
    /* It only ever increases, through confirmations. */
    install_ok(3, 9, 0);
    assert_int_equal(moat_boot_record_get(&R.b)->security_counter, 5); /* not yet */
    c = decide_ok();
    assert_int_equal(moat_boot_record_get(&R.b)->security_counter, 5); /* trial: not yet */
    assert_int_equal(moat_boot_confirm(&R.b, c.slot), MOAT_OK);
    assert_int_equal(moat_boot_record_get(&R.b)->security_counter, 9);
    /* The previous slot (counter 5) is now too old to fall back to: with the
     * active slot damaged, nothing runs rather than an old image. */
    R.mem[2 + c.slot][10] ^= 0xFF;
    assert_int_equal(moat_boot_decide(&R.b, &c), MOAT_ERR_STATE);
    assert_string_equal(moat_boot_error(&R.b),
                        "no slot holds an image that can run: slot a (version 4.0.0): "
                        "does not match its SHA-256 (damaged or partly written); slot b "
                        "(version 3.0.0): security counter below the device's");
}

static void damaged_images_never_run(void **state)
{
    moat_boot_choice c;
    moat_boot_status st;

    (void)state;
    rig_new();
    install_ok(0, 1, MOAT_BOOT_INSTALL_CONFIRMED);
    install_ok(1, 1, 0);
    /* The pending image goes bad before its first start: rejected. */
    R.mem[3][5] ^= 1;
    c = decide_ok();
    assert_runs(&c, 0, false);
    moat_boot_status_get(&R.b, &st);
    assert_string_equal(st.reason, "slot b (version 2.0.0) does not match its SHA-256 "
                                   "(damaged or partly written): back to slot a (version "
                                   "1.0.0)");
    /* Install it properly, confirm it; then damage the active one: the
     * other confirmed slot (same counter) runs. */
    install_ok(1, 1, 0);
    c = decide_ok();
    assert_int_equal(moat_boot_confirm(&R.b, c.slot), MOAT_OK);
    R.mem[3][fw_len[1] - 1] ^= 0x80; /* last byte of slot b */
    assert_int_equal(reboot(), MOAT_OK);
    c = decide_ok();
    assert_runs(&c, 0, false);
    assert_int_equal(c.slot, MOAT_BOOT_SLOT_A);
    moat_boot_status_get(&R.b, &st);
    assert_int_equal(st.active, 'a');
    assert_string_equal(st.state, "confirmed");
    assert_string_equal(st.reason, "slot b (version 2.0.0) does not match its SHA-256 "
                                   "(damaged or partly written): back to slot a (version "
                                   "1.0.0)");
    /* Both bad: nothing runs, and the words say why for each slot. */
    R.mem[2][0] ^= 1;
    assert_int_equal(moat_boot_decide(&R.b, &c), MOAT_ERR_STATE);
    assert_string_equal(moat_boot_error(&R.b),
                        "no slot holds an image that can run: slot a (version 1.0.0): does "
                        "not match its SHA-256 (damaged or partly written); slot b (version "
                        "2.0.0): does not match its SHA-256 (damaged or partly written)");
}

static void last_resort_runs_verified_rejected_image(void **state)
{
    moat_boot_choice c;
    moat_boot_status st;

    (void)state;
    rig_new();
    /* A new device whose only image never confirms keeps running it. */
    install_ok(0, 0, 0);
    c = decide_ok();
    c = decide_ok();
    c = decide_ok();
    assert_runs(&c, 0, true);
    c = decide_ok();
    assert_runs(&c, 0, false);
    moat_boot_status_get(&R.b, &st);
    assert_string_equal(st.state, "fallback");
    assert_string_equal(st.reason, "slot a (version 1.0.0) did not confirm within 3 starts: "
                                   "no other image to run");
    /* It may still confirm once it reaches the broker. */
    assert_int_equal(moat_boot_confirm(&R.b, MOAT_BOOT_SLOT_A), MOAT_OK);
    moat_boot_status_get(&R.b, &st);
    assert_string_equal(st.state, "confirmed");
    assert_string_equal(st.reason, "");
}

static void install_refusals(void **state)
{
    moat_boot_image img;
    uint8_t slot;

    (void)state;
    rig_new();
    install_ok(0, 0, MOAT_BOOT_INSTALL_CONFIRMED);
    img = image_of(1, 0);
    /* Not begun. */
    assert_int_equal(moat_boot_install_finish(&R.b, MOAT_BOOT_SLOT_A, &img, 0, 0),
                     MOAT_ERR_STATE);
    assert_string_equal(moat_boot_error(&R.b), "slot a (version 2.0.0): refused, it is the "
                                                "active slot: install into the other one");
    assert_int_equal(moat_boot_install_begin(&R.b, &slot), MOAT_OK);
    assert_int_equal(slot, MOAT_BOOT_SLOT_B);
    /* Payload not written: the check reads erased flash. */
    assert_int_equal(moat_boot_install_finish(&R.b, slot, &img, 0, 0), MOAT_ERR_MALFORMED);
    assert_string_equal(moat_boot_error(&R.b), "slot b (version 2.0.0): refused, the payload "
                                                "written does not match its size and SHA-256");
    img.size = SLOT_AREA + 1;
    assert_int_equal(moat_boot_install_finish(&R.b, slot, &img, 0, 0), MOAT_ERR_ARG);
    img = image_of(1, 0);
    strcpy(img.version, "two words");
    assert_int_equal(moat_boot_install_finish(&R.b, slot, &img, 0, 0), MOAT_ERR_ARG);
    img.version[0] = '\0';
    assert_int_equal(moat_boot_install_finish(&R.b, slot, &img, 0, 0), MOAT_ERR_ARG);
    assert_int_equal(moat_boot_install_finish(&R.b, 5, &img, 0, 0), MOAT_ERR_ARG);
    /* A begun install forgets what the slot held: a pending image there is
     * no longer pending. */
    install_ok(1, 0, 0);
    assert_int_equal(moat_boot_record_get(&R.b)->pending, MOAT_BOOT_SLOT_B);
    assert_int_equal(moat_boot_install_begin(&R.b, &slot), MOAT_OK);
    assert_int_equal(moat_boot_record_get(&R.b)->pending, MOAT_BOOT_NONE);
    assert_int_equal(moat_boot_record_get(&R.b)->slot[1].state, MOAT_BOOT_WRITING);
}

static void install_resumes_after_restart(void **state)
{
    moat_boot_image img;
    moat_boot_choice c;
    const moat_flash_area *a;
    uint8_t slot, again;

    (void)state;
    rig_new();
    install_ok(0, 1, MOAT_BOOT_INSTALL_CONFIRMED);
    /* Nothing begun: nothing to resume. */
    assert_int_equal(moat_boot_install_resume(&R.b, &slot), MOAT_ERR_STATE);
    assert_int_equal(moat_boot_install_begin(&R.b, &slot), MOAT_OK);
    a = R.b.slot[slot];
    assert_int_equal(a->write(a->ctx, 0, fw[1], 700), MOAT_OK);
    assert_int_equal(a->sync(a->ctx), MOAT_OK);
    /* A restart in the middle: the old image runs, the install goes on. */
    assert_int_equal(reboot(), MOAT_OK);
    c = decide_ok();
    assert_runs(&c, 0, false);
    assert_int_equal(moat_boot_install_resume(&R.b, &again), MOAT_OK);
    assert_int_equal(again, slot);
    assert_int_equal(a->write(a->ctx, 700, fw[1] + 700, fw_len[1] - 700), MOAT_OK);
    assert_int_equal(a->sync(a->ctx), MOAT_OK);
    img = image_of(1, 1);
    assert_int_equal(moat_boot_install_finish(&R.b, slot, &img, 0, 0), MOAT_OK);
    assert_int_equal(moat_boot_install_resume(&R.b, &again), MOAT_ERR_STATE);
    assert_string_equal(moat_boot_error(&R.b),
                        "slot b (version 2.0.0): no install in progress to resume");
    c = decide_ok();
    assert_runs(&c, 1, true);
    assert_int_equal(moat_boot_install_resume(&R.b, &again), MOAT_ERR_STATE); /* trial */
}

static void write_failure_keeps_trial_from_running(void **state)
{
    moat_boot_choice c;

    (void)state;
    rig_new();
    install_ok(0, 0, MOAT_BOOT_INSTALL_CONFIRMED);
    install_ok(1, 0, 0);
    power.fail_writes = true;
    /* The trial start cannot be counted, so the trial does not run. */
    c = decide_ok();
    assert_runs(&c, 0, false);
    assert_string_equal(moat_boot_error(&R.b), "boot record copy 0: write failed or did not "
                                               "read back");
    power.fail_writes = false;
    assert_int_equal(reboot(), MOAT_OK);
    c = decide_ok();
    assert_runs(&c, 1, true);
    assert_int_equal(c.trials_left, 2);
}

static void decide_needs_load(void **state)
{
    moat_boot b;
    moat_boot_choice c;

    (void)state;
    rig_new();
    assert_int_equal(moat_boot_init(&b, &R.fa[0], &R.fa[1], &R.fa[2], &R.fa[3], &R.hash),
                     MOAT_OK);
    assert_int_equal(moat_boot_decide(&b, &c), MOAT_ERR_STATE);
    assert_int_equal(moat_boot_confirm(&b, 0), MOAT_ERR_STATE);
    assert_null(moat_boot_record_get(&b));
}

/* ---------------------------------------------------------- power cuts -- */

/* A record with its sequence number zeroed: what it says, not which copy. */
static void canon(const moat_boot_record *r, uint8_t out[MOAT_BOOT_RECORD_SIZE])
{
    moat_boot_record c = *r;

    c.seq = 0;
    moat_boot_record_encode(&c, out);
}

static void canon_block(const uint8_t *in, uint8_t out[MOAT_BOOT_RECORD_SIZE])
{
    moat_boot_record r;

    assert_int_equal(moat_boot_record_decode(in, &r), MOAT_OK);
    canon(&r, out);
}

typedef void (*op_fn)(void);

static uint8_t snap[4][SLOT_AREA];

static void op_install_v2(void)
{
    uint8_t slot;
    (void)install(1, 2, 0, 0, &slot);
}

static void op_decide(void)
{
    moat_boot_choice c;
    (void)moat_boot_decide(&R.b, &c);
}

static void op_confirm_b(void)
{
    (void)moat_boot_confirm(&R.b, MOAT_BOOT_SLOT_B);
}

static void op_install_provision(void)
{
    uint8_t slot;
    (void)install(0, 1, 0, MOAT_BOOT_INSTALL_CONFIRMED, &slot);
}

/*
 * Run op from the current flash once, capturing the records it writes and
 * counting its flash events; then again from the same flash with the power
 * cut at each event. After each cut a restart loads the record from before
 * or one the clean run wrote, and a start runs a verified image of the
 * firmware set `allowed` (bit v: firmware v); when may_be_empty, it may
 * also find nothing to run (nothing was installed before the op).
 */
static void sweep(op_fn op, unsigned allowed, bool may_be_empty)
{
    unsigned long events, k;
    moat_boot_choice c;
    uint8_t before[MOAT_BOOT_RECORD_SIZE], blk[MOAT_BOOT_RECORD_SIZE];
    unsigned i, v, hits_new = 0;
    bool found;
    moat_err e;

    memcpy(snap, R.mem, sizeof snap);
    assert_int_equal(reboot(), MOAT_OK);
    canon(moat_boot_record_get(&R.b), before);
    nseen = 0;
    capturing = true;
    power.events = 0;
    op();
    capturing = false;
    events = power.events;
    assert_true(nseen >= 1);
    for (k = 0; k <= events; k++) {
        memcpy(R.mem, snap, sizeof snap);
        assert_int_equal(reboot(), MOAT_OK);
        power.budget = (long)k;
        power.dead = false;
        op();
        power.budget = -1;
        power.dead = false;
        assert_int_equal(reboot(), MOAT_OK);
        canon(moat_boot_record_get(&R.b), blk);
        found = memcmp(blk, before, sizeof blk) == 0;
        for (i = 0; i < nseen && !found; i++)
            if (memcmp(blk, seen[i], sizeof blk) == 0) {
                found = true;
                hits_new++;
            }
        if (!found)
            fail_msg("cut at event %lu of %lu: a record that was never written", k, events);
        e = moat_boot_decide(&R.b, &c);
        if (e == MOAT_ERR_STATE && may_be_empty)
            continue;
        assert_int_equal(e, MOAT_OK);
        v = fw_in(&c);
        if (((allowed >> v) & 1u) == 0)
            fail_msg("cut at event %lu: firmware %s runs", k, fw_ver[v]);
        assert_memory_equal(R.mem[2 + c.slot], fw[v], fw_len[v]);
    }
    assert_true(hits_new >= 1); /* the last cut point is no cut at all */
    memcpy(R.mem, snap, sizeof snap);
    assert_int_equal(reboot(), MOAT_OK);
}

/* The torn-write rule for every byte of one record update: the old record
 * until the new one is complete, then the new one. */
static void torn_record_update_every_byte(void **state)
{
    moat_boot_record before, after, got;
    uint8_t old_blk[MOAT_BOOT_RECORD_SIZE], new_blk[MOAT_BOOT_RECORD_SIZE];
    uint8_t blk[MOAT_BOOT_RECORD_SIZE];
    unsigned long events, k;
    unsigned olds = 0, news = 0;

    (void)state;
    rig_new();
    install_ok(0, 1, MOAT_BOOT_INSTALL_CONFIRMED);
    install_ok(1, 2, 0);
    op_decide(); /* v2 on trial */
    before = *moat_boot_record_get(&R.b);
    memcpy(snap, R.mem, sizeof snap);
    power.events = 0;
    op_confirm_b();
    events = power.events;
    after = *moat_boot_record_get(&R.b);
    assert_int_equal(events, 1 + MOAT_BOOT_RECORD_SIZE + 1); /* erase, bytes, sync */
    canon(&before, old_blk);
    canon(&after, new_blk);
    for (k = 0; k <= events; k++) {
        memcpy(R.mem, snap, sizeof snap);
        assert_int_equal(reboot(), MOAT_OK);
        power.budget = (long)k;
        power.dead = false;
        op_confirm_b();
        power.budget = -1;
        power.dead = false;
        assert_int_equal(reboot(), MOAT_OK);
        got = *moat_boot_record_get(&R.b);
        canon(&got, blk);
        if (memcmp(blk, old_blk, sizeof blk) == 0)
            olds++;
        else if (memcmp(blk, new_blk, sizeof blk) == 0)
            news++;
        else
            fail_msg("cut at event %lu: a record that is neither old nor new", k);
    }
    /* The new record from the cut at the sync (every byte is there, the
     * contract allows it to survive) and from no cut; the old one before. */
    assert_int_equal(news, 2);
    assert_int_equal(olds, events + 1 - 2);
}

static void power_cut_provision(void **state)
{
    (void)state;
    rig_new();
    sweep(op_install_provision, 1u << 0, true);
}

static void power_cut_install(void **state)
{
    (void)state;
    rig_new();
    install_ok(0, 1, MOAT_BOOT_INSTALL_CONFIRMED);
    /* During the payload write and the record updates, v1 or v2 runs. */
    sweep(op_install_v2, 1u << 0 | 1u << 1, false);
}

static void power_cut_install_over_rejected(void **state)
{
    moat_boot_choice c;
    int i;

    (void)state;
    rig_new();
    install_ok(0, 1, MOAT_BOOT_INSTALL_CONFIRMED);
    install_ok(1, 2, 0);
    c = decide_ok();
    assert_int_equal(moat_boot_confirm(&R.b, c.slot), MOAT_OK);
    install_ok(2, 3, 0);
    for (i = 0; i < 4; i++)
        c = decide_ok();
    assert_runs(&c, 1, false); /* rolled back to v2 */
    /* Installing again into slot a (rejected v3): v2 always runs. */
    sweep(op_install_v2, 1u << 1, false);
}

static void power_cut_trial_start_and_rollback(void **state)
{
    moat_boot_choice c;

    (void)state;
    rig_new();
    install_ok(0, 1, MOAT_BOOT_INSTALL_CONFIRMED);
    install_ok(1, 2, 0);
    /* The trial start: v1 or v2 runs, whatever the cut. */
    sweep(op_decide, 1u << 0 | 1u << 1, false);
    c = decide_ok();
    c = decide_ok();
    c = decide_ok();
    assert_int_equal(c.trials_left, 0);
    /* The rollback write: v1 or v2 (one more cut before the write lands and
     * the rollback is decided again at the next start). */
    sweep(op_decide, 1u << 0 | 1u << 1, false);
    c = decide_ok();
    assert_runs(&c, 0, false);
}

static void power_cut_confirm(void **state)
{
    moat_boot_choice c;

    (void)state;
    rig_new();
    install_ok(0, 1, MOAT_BOOT_INSTALL_CONFIRMED);
    install_ok(1, 2, 0);
    c = decide_ok();
    assert_true(c.trial);
    sweep(op_confirm_b, 1u << 0 | 1u << 1, false);
}

/* A counter once raised never goes back, whatever is cut. */
static void power_cut_counter_monotonic(void **state)
{
    moat_boot_choice c;
    unsigned long events, k;

    (void)state;
    rig_new();
    install_ok(0, 1, MOAT_BOOT_INSTALL_CONFIRMED);
    install_ok(1, 7, 0);
    c = decide_ok();
    assert_int_equal(moat_boot_confirm(&R.b, c.slot), MOAT_OK);
    assert_int_equal(moat_boot_record_get(&R.b)->security_counter, 7);
    memcpy(snap, R.mem, sizeof snap);
    power.events = 0;
    op_install_v2(); /* counter 2: refused at finish, after the begin */
    events = power.events;
    for (k = 0; k <= events; k++) {
        memcpy(R.mem, snap, sizeof snap);
        assert_int_equal(reboot(), MOAT_OK);
        power.budget = (long)k;
        op_install_v2();
        power.budget = -1;
        power.dead = false;
        assert_int_equal(reboot(), MOAT_OK);
        assert_int_equal(moat_boot_record_get(&R.b)->security_counter, 7);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32_check_value),
        cmocka_unit_test(record_roundtrip_and_damage),
        cmocka_unit_test(init_refuses_small_areas),
        cmocka_unit_test(new_device_is_empty),
        cmocka_unit_test(load_picks_newest_valid_copy),
        cmocka_unit_test(provision_runs_without_writes),
        cmocka_unit_test(update_trial_confirm),
        cmocka_unit_test(never_confirms_rolls_back),
        cmocka_unit_test(one_trial_start),
        cmocka_unit_test(anti_rollback_counter),
        cmocka_unit_test(damaged_images_never_run),
        cmocka_unit_test(last_resort_runs_verified_rejected_image),
        cmocka_unit_test(install_refusals),
        cmocka_unit_test(install_resumes_after_restart),
        cmocka_unit_test(write_failure_keeps_trial_from_running),
        cmocka_unit_test(decide_needs_load),
        cmocka_unit_test(torn_record_update_every_byte),
        cmocka_unit_test(power_cut_provision),
        cmocka_unit_test(power_cut_install),
        cmocka_unit_test(power_cut_install_over_rejected),
        cmocka_unit_test(power_cut_trial_start_and_rollback),
        cmocka_unit_test(power_cut_confirm),
        cmocka_unit_test(power_cut_counter_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
