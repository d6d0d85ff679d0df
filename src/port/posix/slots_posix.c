/*
 * slots_posix.c - A/B slots on Linux (moat/posix_slots.h): moat_flash_area
 * over files (temporary file, fsync, rename), SHA-256 from mbedTLS, and the
 * boot logic of src/core/boot.c over a slot directory, one flock()ed
 * operation at a time.
 */
#include "moat/posix_slots.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

typedef char sha_ctx_fits[sizeof(mbedtls_sha256_context) <= sizeof(moat_slots_sha256) ? 1 : -1];

/* ------------------------------------------------------------ SHA-256 -- */

static moat_err sha_begin(void *ctx)
{
    mbedtls_sha256_context *c = ctx;

    mbedtls_sha256_init(c);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    return mbedtls_sha256_starts(c, 0) == 0 ? MOAT_OK : MOAT_ERR_IO;
#else
    return mbedtls_sha256_starts_ret(c, 0) == 0 ? MOAT_OK : MOAT_ERR_IO;
#endif
}

static moat_err sha_update(void *ctx, const void *data, size_t len)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    return mbedtls_sha256_update(ctx, data, len) == 0 ? MOAT_OK : MOAT_ERR_IO;
#else
    return mbedtls_sha256_update_ret(ctx, data, len) == 0 ? MOAT_OK : MOAT_ERR_IO;
#endif
}

static moat_err sha_finish(void *ctx, uint8_t out[32])
{
    int r;

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    r = mbedtls_sha256_finish(ctx, out);
#else
    r = mbedtls_sha256_finish_ret(ctx, out);
#endif
    mbedtls_sha256_free(ctx);
    return r == 0 ? MOAT_OK : MOAT_ERR_IO;
}

void moat_slots_sha256_hash(moat_slots_sha256 *h, moat_boot_hash *out)
{
    memset(h, 0, sizeof *h);
    out->begin = sha_begin;
    out->update = sha_update;
    out->finish = sha_finish;
    out->ctx = h->opaque;
}

moat_err moat_slots_sha256_file(const char *path, uint8_t out[32], uint32_t *size, char *why,
                                size_t cap)
{
    moat_slots_sha256 h;
    moat_boot_hash hash;
    unsigned char buf[16384];
    struct stat st;
    uint64_t total = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, cap, "%s: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0)
            close(fd);
        return MOAT_ERR_FILE;
    }
    if ((uint64_t)st.st_size > MOAT_SLOTS_SLOT_MAX) {
        snprintf(why, cap, "%s: %lld bytes is larger than a slot (%u bytes)", path,
                 (long long)st.st_size, MOAT_SLOTS_SLOT_MAX);
        close(fd);
        return MOAT_ERR_TOO_LARGE;
    }
    moat_slots_sha256_hash(&h, &hash);
    sha_begin(hash.ctx);
    while ((n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(why, cap, "%s: %s", path, strerror(errno));
            close(fd);
            sha_finish(hash.ctx, out);
            return MOAT_ERR_FILE;
        }
        sha_update(hash.ctx, buf, (size_t)n);
        total += (uint64_t)n;
    }
    close(fd);
    sha_finish(hash.ctx, out);
    if (total > MOAT_SLOTS_SLOT_MAX || total == 0) {
        snprintf(why, cap, "%s: %s", path, total == 0 ? "empty file" : "larger than a slot");
        return total == 0 ? MOAT_ERR_FILE : MOAT_ERR_TOO_LARGE;
    }
    *size = (uint32_t)total;
    return MOAT_OK;
}

/* --------------------------------------------------------- file area -- */

/* fsync the directory holding path, so a rename in it is durable. */
static int sync_dir_of(const char *path)
{
    char dir[MOAT_SLOTS_PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : (size_t)(slash - path);
    int fd, r;

    if (slash == NULL)
        strcpy(dir, ".");
    else if (n == 0)
        strcpy(dir, "/");
    else {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    r = fsync(fd);
    close(fd);
    return r;
}

static void close_fd(int *fd);

static moat_err fa_read(void *ctx, uint32_t off, void *buf, size_t len)
{
    moat_file_area *f = ctx;
    unsigned char *p = buf;
    size_t got = 0;
    ssize_t n;
    int fd = f->wfd;

    if (fd < 0) {
        if (f->rfd < 0)
            f->rfd = open(f->path, O_RDONLY | O_CLOEXEC);
        if (f->rfd < 0) {
            if (errno != ENOENT)
                return MOAT_ERR_FILE;
            memset(buf, 0xFF, len); /* no file: erased */
            return MOAT_OK;
        }
        fd = f->rfd;
    }
    while (got < len) {
        n = pread(fd, p + got, len - got, (off_t)off + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return MOAT_ERR_FILE;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    memset(p + got, 0xFF, len - got); /* past the end: erased */
    return MOAT_OK;
}

static moat_err fa_write(void *ctx, uint32_t off, const void *buf, size_t len)
{
    moat_file_area *f = ctx;
    const unsigned char *p = buf;
    size_t done = 0;
    ssize_t n;

    /* Not erased in this run: continue the file an earlier run began (flash
     * takes writes of erased bytes after a restart too). */
    if (f->wfd < 0 && moat_file_area_reopen(f) != MOAT_OK)
        return MOAT_ERR_IO;
    while (done < len) {
        n = pwrite(f->wfd, p + done, len - done, (off_t)off + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return MOAT_ERR_IO;
        done += (size_t)n;
    }
    return MOAT_OK;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static moat_err fa_erase(void *ctx)
{
    moat_file_area *f = ctx;

    close_fd(&f->rfd);
    close_fd(&f->wfd);
    if (unlink(f->tmp) != 0 && errno != ENOENT)
        return MOAT_ERR_IO;
    f->wfd = open(f->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (f->wfd < 0)
        return MOAT_ERR_IO;
    if (fchmod(f->wfd, (mode_t)f->mode) != 0) {
        close_fd(&f->wfd);
        unlink(f->tmp);
        return MOAT_ERR_IO;
    }
    f->renamed = false;
    return MOAT_OK;
}

static moat_err fa_sync(void *ctx)
{
    moat_file_area *f = ctx;

    if (f->wfd < 0)
        return MOAT_OK;
    if (fsync(f->wfd) != 0)
        return MOAT_ERR_IO;
    if (!f->renamed) {
        if (rename(f->tmp, f->path) != 0)
            return MOAT_ERR_IO;
        f->renamed = true;
        close_fd(&f->rfd);
        if (sync_dir_of(f->path) != 0)
            return MOAT_ERR_IO;
    }
    return MOAT_OK;
}

moat_err moat_file_area_init(moat_file_area *f, moat_flash_area *fa, const char *path,
                             uint32_t size, int mode)
{
    memset(f, 0, sizeof *f);
    f->rfd = -1;
    f->wfd = -1;
    f->mode = mode;
    if (strlen(path) >= sizeof f->path)
        return MOAT_ERR_ARG;
    strcpy(f->path, path);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp", path);
    fa->read = fa_read;
    fa->write = fa_write;
    fa->erase = fa_erase;
    fa->sync = fa_sync;
    fa->size = size;
    fa->ctx = f;
    return MOAT_OK;
}

void moat_file_area_close(moat_file_area *f)
{
    close_fd(&f->rfd);
    close_fd(&f->wfd);
}

moat_err moat_file_area_reopen(moat_file_area *f)
{
    close_fd(&f->rfd);
    close_fd(&f->wfd);
    f->wfd = open(f->tmp, O_RDWR | O_CLOEXEC);
    f->renamed = false;
    if (f->wfd < 0 && errno == ENOENT) {
        f->wfd = open(f->path, O_RDWR | O_CLOEXEC);
        f->renamed = true;
    }
    return f->wfd < 0 ? MOAT_ERR_FILE : MOAT_OK;
}

/* ---------------------------------------------------- slot directory -- */

static const char *const file_names[4] = {"boot-0", "boot-1", "slot-a", "slot-b"};

static moat_err say(moat_slots *s, moat_err e, const char *fmt, const char *a, const char *b)
{
    snprintf(s->error, sizeof s->error, fmt, a, b);
    return e;
}

moat_err moat_slots_open(moat_slots *s, const char *dir, bool create)
{
    char path[MOAT_SLOTS_PATH_MAX + 16];
    struct stat st;
    unsigned i;

    memset(s, 0, sizeof *s);
    s->lock_fd = -1;
    for (i = 0; i < 4; i++) {
        s->file[i].rfd = -1;
        s->file[i].wfd = -1;
    }
    if (dir == NULL || dir[0] == '\0')
        dir = MOAT_SLOTS_DEFAULT_DIR;
    if (strlen(dir) + 16 >= sizeof s->dir)
        return say(s, MOAT_ERR_ARG, "%s: %s", "slot directory", "path too long");
    strcpy(s->dir, dir);
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT || !create || mkdir(dir, 0700) != 0 || stat(dir, &st) != 0)
            return say(s, MOAT_ERR_FILE, "slot directory %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return say(s, MOAT_ERR_FILE, "slot directory %s: %s", dir, "not a directory");
    snprintf(s->lock_path, sizeof s->lock_path, "%s/lock", dir);
    for (i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, file_names[i]);
        moat_file_area_init(&s->file[i], &s->area[i], path,
                            i < 2 ? MOAT_BOOT_RECORD_SIZE : MOAT_SLOTS_SLOT_MAX,
                            i < 2 ? 0600 : 0755);
    }
    moat_slots_sha256_hash(&s->sha, &s->hash);
    moat_boot_init(&s->boot, &s->area[0], &s->area[1], &s->area[2], &s->area[3], &s->hash);
    return MOAT_OK;
}

void moat_slots_close(moat_slots *s)
{
    unsigned i;

    for (i = 0; i < 4; i++)
        moat_file_area_close(&s->file[i]);
    close_fd(&s->lock_fd);
}

const char *moat_slots_error(const moat_slots *s)
{
    return s->error;
}

const char *moat_slots_path(const moat_slots *s, uint8_t slot)
{
    return slot < MOAT_BOOT_SLOTS ? s->file[2 + slot].path : "";
}

/* Take the lock and load the record. A directory we may not write (an
 * operator reading the status) is read without the lock: every file is
 * replaced by rename, so a reader sees whole files. */
static moat_err begin_op(moat_slots *s, bool writing)
{
    moat_err e;

    s->error[0] = '\0';
    if (s->lock_fd < 0)
        s->lock_fd = open(s->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0 && writing)
        return say(s, MOAT_ERR_FILE, "%s: %s", s->lock_path, strerror(errno));
    if (s->lock_fd >= 0) {
        while (flock(s->lock_fd, LOCK_EX) != 0) {
            if (errno != EINTR)
                return say(s, MOAT_ERR_FILE, "%s: %s", s->lock_path, strerror(errno));
        }
    }
    e = moat_boot_load(&s->boot);
    if (e != MOAT_OK) {
        snprintf(s->error, sizeof s->error, "%s: %s", s->dir, moat_boot_error(&s->boot));
        if (s->lock_fd >= 0)
            flock(s->lock_fd, LOCK_UN);
    }
    return e;
}

/* Drop the lock and cached descriptors; words of a failure name the dir. */
static moat_err end_op(moat_slots *s, moat_err e)
{
    unsigned i;

    for (i = 0; i < 4; i++)
        close_fd(&s->file[i].rfd);
    if (s->lock_fd >= 0)
        flock(s->lock_fd, LOCK_UN);
    if (moat_boot_error(&s->boot)[0] != '\0')
        snprintf(s->error, sizeof s->error, "%s: %s", s->dir, moat_boot_error(&s->boot));
    return e;
}

moat_err moat_slots_decide(moat_slots *s, moat_boot_choice *c)
{
    moat_err e = begin_op(s, true);

    return e != MOAT_OK ? e : end_op(s, moat_boot_decide(&s->boot, c));
}

moat_err moat_slots_confirm(moat_slots *s, uint8_t slot)
{
    moat_err e = begin_op(s, true);

    return e != MOAT_OK ? e : end_op(s, moat_boot_confirm(&s->boot, slot));
}

moat_err moat_slots_status(moat_slots *s, moat_boot_status *st)
{
    moat_err e = begin_op(s, false);

    if (e != MOAT_OK)
        return e;
    moat_boot_status_get(&s->boot, st);
    return end_op(s, MOAT_OK);
}

moat_err moat_slots_install_begin(moat_slots *s, uint8_t *slot, const moat_flash_area **area)
{
    moat_err e = begin_op(s, true);

    if (e != MOAT_OK)
        return e;
    e = moat_boot_install_begin(&s->boot, slot);
    if (e == MOAT_OK)
        *area = &s->area[2 + *slot];
    return end_op(s, e);
}

moat_err moat_slots_install_resume(moat_slots *s, uint8_t *slot, const moat_flash_area **area)
{
    moat_err e = begin_op(s, true);

    if (e != MOAT_OK)
        return e;
    e = moat_boot_install_resume(&s->boot, slot);
    if (e == MOAT_OK && moat_file_area_reopen(&s->file[2 + *slot]) != MOAT_OK) {
        int err = errno;

        end_op(s, MOAT_OK);
        return say(s, MOAT_ERR_FILE, "%s: %s", moat_slots_path(s, *slot), strerror(err));
    }
    if (e == MOAT_OK)
        *area = &s->area[2 + *slot];
    return end_op(s, e);
}

moat_err moat_slots_install_finish(moat_slots *s, uint8_t slot, const moat_boot_image *image,
                                   unsigned trials, unsigned flags)
{
    moat_err e = begin_op(s, true);

    if (e != MOAT_OK)
        return e;
    e = moat_boot_install_finish(&s->boot, slot, image, trials, flags);
    if (slot < MOAT_BOOT_SLOTS)
        close_fd(&s->file[2 + slot].wfd);
    return end_op(s, e);
}

moat_err moat_slots_install_file(moat_slots *s, const char *file, const char *version,
                                 uint32_t security_counter, unsigned trials, unsigned flags,
                                 uint8_t *slot)
{
    moat_boot_image img;
    const moat_flash_area *a = NULL;
    unsigned char buf[16384];
    uint32_t off = 0;
    ssize_t n;
    moat_err e;
    int fd;

    memset(&img, 0, sizeof img);
    if (strlen(version) >= sizeof img.version)
        return say(s, MOAT_ERR_ARG, "version '%s': %s", version, "longer than 23 characters");
    strcpy(img.version, version);
    img.security_counter = security_counter;
    e = moat_slots_sha256_file(file, img.sha256, &img.size, s->error, sizeof s->error);
    if (e != MOAT_OK)
        return e;
    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return say(s, MOAT_ERR_FILE, "%s: %s", file, strerror(errno));
    e = moat_slots_install_begin(s, slot, &a);
    while (e == MOAT_OK && (n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || off + (uint32_t)n > img.size) { /* changed under us */
            e = say(s, MOAT_ERR_FILE, "%s: %s", file, n < 0 ? strerror(errno)
                                                            : "changed while being installed");
            break;
        }
        e = a->write(a->ctx, off, buf, (size_t)n);
        if (e != MOAT_OK)
            say(s, e, "%s: write failed: %s", moat_slots_path(s, *slot), moat_strerror(e));
        off += (uint32_t)n;
    }
    close(fd);
    if (e == MOAT_OK && (e = a->sync(a->ctx)) != MOAT_OK)
        say(s, e, "%s: sync failed: %s", moat_slots_path(s, *slot), moat_strerror(e));
    if (e == MOAT_OK)
        e = moat_slots_install_finish(s, *slot, &img, trials, flags);
    return e;
}

moat_err moat_slots_running(uint8_t *slot, bool *trial)
{
    const char *v = getenv(MOAT_SLOTS_ENV_SLOT);
    const char *t = getenv(MOAT_SLOTS_ENV_TRIAL);

    if (v == NULL || (strcmp(v, "a") != 0 && strcmp(v, "b") != 0))
        return MOAT_ERR_STATE;
    *slot = v[0] == 'a' ? MOAT_BOOT_SLOT_A : MOAT_BOOT_SLOT_B;
    *trial = t != NULL && strcmp(t, "1") == 0;
    return MOAT_OK;
}

moat_err moat_slots_confirm_running(char *why, size_t cap)
{
    moat_slots s;
    uint8_t slot;
    bool trial;
    moat_err e;

    if (moat_slots_running(&slot, &trial) != MOAT_OK) {
        if (why != NULL)
            snprintf(why, cap, "not started by moat-launch (no %s): nothing to confirm",
                     MOAT_SLOTS_ENV_SLOT);
        return MOAT_ERR_STATE;
    }
    e = moat_slots_open(&s, getenv(MOAT_SLOTS_ENV_DIR), false);
    if (e == MOAT_OK)
        e = moat_slots_confirm(&s, slot);
    if (e != MOAT_OK && why != NULL)
        snprintf(why, cap, "%s", s.error);
    else if (why != NULL && cap > 0)
        why[0] = '\0';
    moat_slots_close(&s);
    return e;
}
