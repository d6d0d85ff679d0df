/*
 * slots_tool.c - drives the slot directory for tests/slots/slots_test.sh
 * through the same library moat-launch and the agent use, and can die by
 * SIGKILL at an exact point or write slowly enough to be killed by a timer.
 *
 *   slots_tool cycle DIR FILE VERSION COUNTER [--slow] [--kill-at N]
 *                    [--kill-record R OFF] [--kill-slot OFF]
 *       a whole update: install FILE (pending), a trial start (decide), and
 *       the confirmation of that slot. Without a kill it prints its flash
 *       events ("events N") and the event ranges of record writes
 *       ("record FIRST LAST"), so a test can choose kill points.
 *   slots_tool write-half DIR FILE [--sync]
 *       begin an install of FILE and write its first half (synced or not),
 *       then _exit() without closing anything: a cut mid-download
 *   slots_tool resume DIR FILE VERSION COUNTER
 *       moat_slots_install_resume(), the second half, sync, finish
 *   slots_tool confirm-running
 *       moat_slots_confirm_running(): what the agent calls (MOAT_SLOT...)
 *
 * Events are the bytes written, the erases and the syncs of all four files,
 * counted from 1. --kill-at N writes up to event N-1 and raises SIGKILL at
 * event N: in the middle of a write, half of it is on disk. --kill-record
 * R OFF kills at event OFF of the R-th record update of the run (0 is its
 * erase, 1..256 its bytes, 257 its sync); --kill-slot OFF likewise in the
 * slot payload write (0 erase, then the bytes, then the sync). --slow sleeps
 * between pieces of every write (4 KiB of a slot, 32 bytes of a record).
 * The phase in progress is written to stderr as it starts ("phase install",
 * "phase slot-write", "phase record-write", "phase record-done", ...),
 * unbuffered, so a test that kills by timer can tell where it landed.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "moat/posix_slots.h"

typedef struct wrap {
    moat_flash_area orig;
    bool record;
} wrap;

static wrap wraps[4];
static unsigned long events, kill_at;
/* Kill points relative to the R-th record update or to the slot write:
 * offset 0 is the erase, then the bytes, then the sync. */
static unsigned long kill_rec, kill_rec_off, kill_slot_off, rec_updates;
static bool kill_slot;
static bool slow;
static unsigned long rec_first, rec_last; /* of the record write in progress */
static bool in_slot_write;

static void phase(const char *p)
{
    fprintf(stderr, "phase %s\n", p);
}

static void nap_us(long us)
{
    struct timespec ts = {0, us * 1000L};

    nanosleep(&ts, NULL);
}

/* One event; dies if it is the chosen one. */
static void tick(void)
{
    events++;
    if (kill_at != 0 && events == kill_at)
        raise(SIGKILL);
}

static moat_err w_write(void *ctx, uint32_t off, const void *buf, size_t len)
{
    wrap *w = ctx;
    const unsigned char *p = buf;
    size_t piece = w->record ? 32u : 4096u, done = 0, n, i;
    moat_err e;

    if (w->record) {
        rec_first = events + 1;
        phase("record-write");
    } else if (!in_slot_write) {
        phase("slot-write");
    }
    in_slot_write = !w->record;
    while (done < len) {
        n = len - done < piece ? len - done : piece;
        /* Write the piece byte range up to a kill point inside it. */
        if (kill_at > events && kill_at <= events + n) {
            i = kill_at - events - 1;
            if (i > 0)
                w->orig.write(w->orig.ctx, off + (uint32_t)done, p + done, i);
            events += i;
            tick();
        }
        e = w->orig.write(w->orig.ctx, off + (uint32_t)done, p + done, n);
        if (e != MOAT_OK)
            return e;
        events += n;
        done += n;
        if (slow)
            nap_us(w->record ? 3000 : 1000);
    }
    if (w->record) {
        rec_last = events;
        phase("record-done");
        if (kill_at == 0)
            printf("record %lu %lu\n", rec_first, rec_last);
    }
    return MOAT_OK;
}

static moat_err w_erase(void *ctx)
{
    wrap *w = ctx;

    if (w->record && ++rec_updates == kill_rec)
        kill_at = events + 1 + kill_rec_off;
    if (!w->record && kill_slot)
        kill_at = events + 1 + kill_slot_off;
    tick();
    return w->orig.erase(w->orig.ctx);
}

static moat_err w_sync(void *ctx)
{
    wrap *w = ctx;

    tick();
    return w->orig.sync(w->orig.ctx);
}

static moat_err w_read(void *ctx, uint32_t off, void *buf, size_t len)
{
    wrap *w = ctx;

    return w->orig.read(w->orig.ctx, off, buf, len);
}

/* Route every area of s through the counting wrappers. */
static void hook(moat_slots *s)
{
    unsigned i;

    for (i = 0; i < 4; i++) {
        wraps[i].orig = s->area[i];
        wraps[i].record = i < 2;
        s->area[i].read = w_read;
        s->area[i].write = w_write;
        s->area[i].erase = w_erase;
        s->area[i].sync = w_sync;
        s->area[i].ctx = &wraps[i];
    }
}

static int cycle(int argc, char **argv)
{
    static moat_slots s;
    moat_boot_choice c;
    uint8_t slot;
    char *end;
    int i;

    if (argc < 6)
        return 2;
    for (i = 6; i < argc; i++) {
        if (strcmp(argv[i], "--slow") == 0)
            slow = true;
        else if (strcmp(argv[i], "--kill-at") == 0 && i + 1 < argc)
            kill_at = strtoul(argv[++i], &end, 10);
        else if (strcmp(argv[i], "--kill-record") == 0 && i + 2 < argc) {
            kill_rec = strtoul(argv[++i], &end, 10);
            kill_rec_off = strtoul(argv[++i], &end, 10);
        } else if (strcmp(argv[i], "--kill-slot") == 0 && i + 1 < argc) {
            kill_slot = true;
            kill_slot_off = strtoul(argv[++i], &end, 10);
        } else
            return 2;
    }
    if (moat_slots_open(&s, argv[2], false) != MOAT_OK) {
        fprintf(stderr, "slots_tool: %s\n", moat_slots_error(&s));
        return 1;
    }
    hook(&s);
    phase("install");
    if (moat_slots_install_file(&s, argv[3], argv[4], (uint32_t)strtoul(argv[5], &end, 10), 0,
                                0, &slot) != MOAT_OK) {
        fprintf(stderr, "slots_tool: install: %s\n", moat_slots_error(&s));
        return 1;
    }
    phase("decide");
    if (moat_slots_decide(&s, &c) != MOAT_OK || !c.trial || c.slot != slot) {
        fprintf(stderr, "slots_tool: decide: %s\n", moat_slots_error(&s));
        return 1;
    }
    phase("confirm");
    if (moat_slots_confirm(&s, slot) != MOAT_OK) {
        fprintf(stderr, "slots_tool: confirm: %s\n", moat_slots_error(&s));
        return 1;
    }
    phase("done");
    moat_slots_close(&s);
    if (kill_at == 0)
        printf("events %lu\n", events);
    return 0;
}

/* The first half of an install, then exit as if the power went: with
 * --sync the half is synced (renamed into the slot file), else it is only
 * in the .tmp file. */
static int write_half(int argc, char **argv)
{
    static moat_slots s;
    const moat_flash_area *a;
    static unsigned char buf[1 << 20];
    uint8_t slot;
    size_t n;
    FILE *f;

    if (argc < 4 || moat_slots_open(&s, argv[2], false) != MOAT_OK ||
        (f = fopen(argv[3], "rb")) == NULL)
        return 2;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (moat_slots_install_begin(&s, &slot, &a) != MOAT_OK ||
        a->write(a->ctx, 0, buf, n / 2) != MOAT_OK ||
        (argc > 4 && strcmp(argv[4], "--sync") == 0 && a->sync(a->ctx) != MOAT_OK)) {
        fprintf(stderr, "slots_tool: %s\n", moat_slots_error(&s));
        return 1;
    }
    printf("slot %c\n", moat_boot_slot_name(slot));
    _exit(0); /* no close, no sync: a cut */
}

/* The rest of that install after a "restart": resume, write, sync, finish. */
static int resume(int argc, char **argv)
{
    static moat_slots s;
    const moat_flash_area *a;
    static unsigned char buf[1 << 20];
    moat_boot_image img;
    char why[1024];
    uint8_t slot;
    size_t n;
    FILE *f;

    if (argc < 6 || moat_slots_open(&s, argv[2], false) != MOAT_OK ||
        (f = fopen(argv[3], "rb")) == NULL)
        return 2;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    memset(&img, 0, sizeof img);
    snprintf(img.version, sizeof img.version, "%s", argv[4]);
    img.security_counter = (uint32_t)strtoul(argv[5], NULL, 10);
    if (moat_slots_sha256_file(argv[3], img.sha256, &img.size, why, sizeof why) != MOAT_OK) {
        fprintf(stderr, "slots_tool: %s\n", why);
        return 1;
    }
    if (moat_slots_install_resume(&s, &slot, &a) != MOAT_OK ||
        a->write(a->ctx, (uint32_t)(n / 2), buf + n / 2, n - n / 2) != MOAT_OK ||
        a->sync(a->ctx) != MOAT_OK ||
        moat_slots_install_finish(&s, slot, &img, 0, 0) != MOAT_OK) {
        fprintf(stderr, "slots_tool: resume: %s\n", moat_slots_error(&s));
        return 1;
    }
    moat_slots_close(&s);
    return 0;
}

int main(int argc, char **argv)
{
    char why[1024];

    setvbuf(stderr, NULL, _IONBF, 0);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "cycle") == 0)
        return cycle(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "write-half") == 0)
        return write_half(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "resume") == 0)
        return resume(argc, argv);
    if (argc == 2 && strcmp(argv[1], "confirm-running") == 0) {
        if (moat_slots_confirm_running(why, sizeof why) != MOAT_OK) {
            fprintf(stderr, "slots_tool: confirm: %s\n", why);
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "usage: slots_tool cycle DIR FILE VERSION COUNTER [--slow] [--kill-at N]\n"
                    "                  [--kill-record R OFF] [--kill-slot OFF]\n"
                    "       slots_tool write-half DIR FILE [--sync]\n"
                    "       slots_tool resume DIR FILE VERSION COUNTER\n"
                    "       slots_tool confirm-running\n");
    return 2;
}
