/*
 * catalog.c - the rules of moat-server without the HTTP: which image a
 * device gets, which files exist for it, which request paths are allowed,
 * and how a Range header reads. The images directory is read on every
 * request, so an operator adds or removes an image by renaming a file into
 * or out of it, with no restart.
 */
#include "catalog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moat/json.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* One decimal number up to 65535 at *s. */
static bool number16(const char **s, uint16_t *out)
{
    unsigned long v = 0;
    const char *p = *s;
    if (!is_digit(*p))
        return false;
    while (is_digit(*p)) {
        v = v * 10u + (unsigned long)(*p - '0');
        if (v > 65535u)
            return false;
        p++;
    }
    *s = p;
    *out = (uint16_t)v;
    return true;
}

/* "x.y.z" exactly at s, followed by end or by `end` chars only. */
static bool version_at(const char *s, moat_ota_version *v, const char **after)
{
    moat_ota_version t;
    if (!number16(&s, &t.major) || *s++ != '.' || !number16(&s, &t.minor) ||
        *s++ != '.' || !number16(&s, &t.patch))
        return false;
    *v = t;
    *after = s;
    return true;
}

bool srv_parse_version(const char *s, moat_ota_version *v)
{
    const char *after;
    size_t i, n;

    if (s == NULL || *s == '\0')
        return false;
    if (*s == 'v' || *s == 'V')
        s++;
    if (version_at(s, v, &after) && *after == '\0')
        return true;
    /* a name that ends in a version, perhaps with one extension:
     * "moat-agent-1.2.0.bin", "fw_1.2.0" */
    n = strlen(s);
    for (i = n; i-- > 0;) {
        if ((s[i] == '-' || s[i] == '_' || s[i] == 'v') && version_at(s + i + 1, v, &after)) {
            if (*after == '\0')
                return true;
            if (*after == '.' && strchr(after + 1, '.') == NULL && after[1] != '\0' &&
                !is_digit(after[1]))
                return true;
        }
    }
    return false;
}

bool srv_valid_id(const char *id)
{
    size_t i;
    if (id == NULL || id[0] == '\0')
        return false;
    for (i = 0; id[i] != '\0'; i++) {
        char c = id[i];
        if (i >= SRV_ID_MAX)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

/* Names of images/ worth reading: no dot files, no temporary files, no
 * path characters. */
static bool image_name_ok(const char *n)
{
    size_t len = strlen(n), i;
    if (len == 0 || len >= SRV_NAME_MAX || n[0] == '.')
        return false;
    if (len > 4 && strcmp(n + len - 4, ".tmp") == 0)
        return false;
    for (i = 0; i < len; i++)
        if ((unsigned char)n[i] < 0x21 || (unsigned char)n[i] > 0x7e || n[i] == '/' ||
            n[i] == '\\')
            return false;
    return true;
}

int srv_read_image(const char *images_dir, const char *name, srv_image *img, char *why,
                   size_t cap)
{
    char path[4096];
    uint8_t head[MOAT_OTA_HEADER_MAX];
    moat_ota_header h;
    struct stat st;
    size_t need = 0, got = 0;
    char perr[MOAT_OTA_ERROR_MAX];
    int fd;

    if (!image_name_ok(name)) {
        snprintf(why, cap, "image name '%s' is not allowed", name);
        return -1;
    }
    if ((size_t)snprintf(path, sizeof path, "%s/%s", images_dir, name) >= sizeof path) {
        snprintf(why, cap, "image path too long");
        return -1;
    }
    /* never follow a link out of images/: only regular files are images */
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(why, cap, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, cap, "%s is not a regular file", path);
        close(fd);
        return -1;
    }
    while (got < sizeof head) {
        ssize_t n = pread(fd, head + got, sizeof head - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (moat_ota_header_parse(head, got, &h, &need, perr, sizeof perr) != MOAT_OK) {
        snprintf(why, cap, "%s is not a moat image: %s", path, perr);
        return -1;
    }
    if ((uint64_t)st.st_size !=
        (uint64_t)h.header_size + MOAT_OTA_SIG_SIZE + (uint64_t)h.payload_size) {
        snprintf(why, cap, "%s is %lld bytes, its header says %llu", path,
                 (long long)st.st_size,
                 (unsigned long long)h.header_size + MOAT_OTA_SIG_SIZE + h.payload_size);
        return -1;
    }
    memset(img, 0, sizeof *img);
    snprintf(img->name, sizeof img->name, "%s", name);
    memcpy(img->product, h.product, sizeof img->product);
    img->version = h.version;
    img->counter = h.counter;
    img->size = (uint64_t)st.st_size;
    img->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    img->inode = (uint64_t)st.st_ino;
    return 0;
}

/* a newer than b: counter first, then version, then name (so the choice
 * is the same on every request even with duplicates). */
static bool newer(const srv_image *a, const srv_image *b)
{
    int c;
    if (a->counter != b->counter)
        return a->counter > b->counter;
    c = moat_ota_version_cmp(a->version, b->version);
    if (c != 0)
        return c > 0;
    return strcmp(a->name, b->name) > 0;
}

srv_pick srv_pick_image(const char *images_dir, const char *product, const char *curimage,
                        srv_image *out, char *why, size_t cap)
{
    DIR *d;
    struct dirent *e;
    srv_image img, best, named;
    bool have_best = false, have_named = false, have_cur = false;
    moat_ota_version cur = {0, 0, 0};
    char skip[256];

    if (curimage != NULL && curimage[0] != '\0') {
        have_cur = srv_parse_version(curimage, &cur);
    }
    d = opendir(images_dir);
    if (d == NULL) {
        snprintf(why, cap, "cannot read %s: %s", images_dir, strerror(errno));
        return SRV_PICK_NO_PRODUCT;
    }
    while ((e = readdir(d)) != NULL) {
        if (!image_name_ok(e->d_name))
            continue;
        if (srv_read_image(images_dir, e->d_name, &img, skip, sizeof skip) != 0)
            continue;
        if (curimage != NULL && strcmp(img.name, curimage) == 0 &&
            strcmp(img.product, product) == 0) {
            named = img;
            have_named = true;
        }
        if (strcmp(img.product, product) != 0)
            continue;
        if (!have_best || newer(&img, &best)) {
            best = img;
            have_best = true;
        }
    }
    closedir(d);

    if (have_named) {
        cur = named.version;
        have_cur = true;
    }
    if (curimage != NULL && curimage[0] != '\0' && !have_cur) {
        snprintf(why, cap, "curimage '%.64s' is neither a version nor an image", curimage);
        return SRV_PICK_BAD_CURIMAGE;
    }
    if (!have_best) {
        snprintf(why, cap, "no image for product '%s'", product);
        return SRV_PICK_NO_PRODUCT;
    }
    if (!have_cur || moat_ota_version_cmp(best.version, cur) > 0 ||
        (have_named && best.counter > named.counter)) {
        *out = best;
        snprintf(why, cap, "next image %s (%s %u.%u.%u counter %u)", best.name, best.product,
                 best.version.major, best.version.minor, best.version.patch, best.counter);
        return SRV_PICK_IMAGE;
    }
    snprintf(why, cap, "current: newest %s image is %u.%u.%u", product, best.version.major,
             best.version.minor, best.version.patch);
    return SRV_PICK_CURRENT;
}

int srv_device_product(const char *dir, const char *id, const char *fallback, char *out,
                       char *why, size_t cap)
{
    char path[4096], text[4096];
    moat_json_tok tok[64];
    moat_json doc;
    size_t got = 0, pos = 0;
    int fd, i;

    out[0] = '\0';
    if (!srv_valid_id(id)) {
        snprintf(why, cap, "device id '%.64s' is not valid", id);
        return -1;
    }
    snprintf(path, sizeof path, "%s/devices/%s.json", dir, id);
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && fallback != NULL) {
            snprintf(out, MOAT_OTA_PRODUCT_MAX + 1, "%s", fallback);
            return 0;
        }
        if (errno == ENOENT)
            snprintf(why, cap, "no %s and no --product default", path);
        else
            snprintf(why, cap, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, text + got, sizeof text - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == sizeof text)
            break;
    }
    close(fd);
    if (got == sizeof text) {
        snprintf(why, cap, "%s is over %zu bytes", path, sizeof text - 1);
        return -1;
    }
    if (moat_json_parse(&doc, text, got, tok, 64, &pos) != MOAT_OK ||
        moat_json_type_of(&doc, 0) != MOAT_JSON_OBJECT) {
        snprintf(why, cap, "%s: not a JSON object (line %u)", path,
                 moat_json_line(text, got, pos));
        return -1;
    }
    i = moat_json_find(&doc, 0, "product");
    if (i < 0) {
        if (fallback != NULL) {
            snprintf(out, MOAT_OTA_PRODUCT_MAX + 1, "%s", fallback);
            return 0;
        }
        snprintf(why, cap, "%s has no \"product\"", path);
        return -1;
    }
    if (moat_json_get_string(&doc, i, out, MOAT_OTA_PRODUCT_MAX + 1, NULL) != MOAT_OK ||
        out[0] == '\0') {
        snprintf(why, cap, "%s: \"product\" must be a string of 1 to %u bytes", path,
                 MOAT_OTA_PRODUCT_MAX);
        return -1;
    }
    return 0;
}

/* The path's segments after collapsing slashes, checked; writes the
 * normalised form "/a/b" (or "/" for the root) into out. */
static bool normalise(const char *p, char *out, size_t cap, bool *bad)
{
    size_t o = 0;
    *bad = false;
    if (p[0] != '/') {
        *bad = true;
        return false;
    }
    while (*p != '\0') {
        const char *seg;
        size_t n;
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        seg = p;
        while (*p != '\0' && *p != '/')
            p++;
        n = (size_t)(p - seg);
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) {
            *bad = true;
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)seg[i];
            if (c < 0x21 || c == 0x7f || c == '\\' || c == '%') {
                *bad = true;
                return false;
            }
        }
        if (o + 1 + n + 1 > cap)
            return false;
        out[o++] = '/';
        memcpy(out + o, seg, n);
        o += n;
    }
    if (o == 0) {
        if (cap < 2)
            return false;
        out[o++] = '/';
    }
    out[o] = '\0';
    return true;
}

srv_route srv_route_path(const char *prefix, const char *url)
{
    char np[1024], nu[2048];
    size_t plen;
    bool bad;
    const char *rest;

    if (url == NULL)
        return SRV_ROUTE_BAD;
    if (!normalise(url, nu, sizeof nu, &bad))
        return bad ? SRV_ROUTE_BAD : SRV_ROUTE_NONE;
    if (!normalise(prefix != NULL && prefix[0] != '\0' ? prefix : "/", np, sizeof np, &bad))
        return SRV_ROUTE_NONE;
    plen = strlen(np);
    if (plen == 1) {
        rest = nu;
    } else {
        if (strncmp(nu, np, plen) != 0 || nu[plen] != '/')
            return SRV_ROUTE_NONE;
        rest = nu + plen;
    }
    if (strcmp(rest, "/firmware.bin") == 0)
        return SRV_ROUTE_FIRMWARE;
    if (strcmp(rest, "/config.json") == 0)
        return SRV_ROUTE_CONFIG;
    return SRV_ROUTE_NONE;
}

/* Digits into a uint64 without overflow. */
static bool u64_at(const char **s, uint64_t *v)
{
    uint64_t x = 0;
    const char *p = *s;
    if (!is_digit(*p))
        return false;
    while (is_digit(*p)) {
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10u)
            return false;
        x = x * 10u + d;
        p++;
    }
    *s = p;
    *v = x;
    return true;
}

srv_range srv_parse_range(const char *h, uint64_t size, uint64_t *first, uint64_t *last)
{
    uint64_t a, b;
    if (h == NULL)
        return SRV_RANGE_NONE;
    while (*h == ' ' || *h == '\t')
        h++;
    if (strncmp(h, "bytes=", 6) != 0)
        return SRV_RANGE_NONE;
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    if (strchr(h, ',') != NULL)
        return SRV_RANGE_NONE; /* several ranges: the whole file instead */
    if (*h == '-') { /* the last b bytes */
        h++;
        if (!u64_at(&h, &b))
            return SRV_RANGE_NONE;
        while (*h == ' ' || *h == '\t')
            h++;
        if (*h != '\0')
            return SRV_RANGE_NONE;
        if (b == 0 || size == 0)
            return SRV_RANGE_UNSATISFIABLE;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return SRV_RANGE_OK;
    }
    if (!u64_at(&h, &a) || *h++ != '-')
        return SRV_RANGE_NONE;
    if (is_digit(*h)) {
        if (!u64_at(&h, &b) || b < a)
            return SRV_RANGE_NONE;
    } else {
        b = UINT64_MAX;
    }
    while (*h == ' ' || *h == '\t')
        h++;
    if (*h != '\0')
        return SRV_RANGE_NONE;
    if (a >= size)
        return SRV_RANGE_UNSATISFIABLE;
    *first = a;
    *last = b >= size ? size - 1 : b;
    return SRV_RANGE_OK;
}

void srv_etag(uint64_t size, int64_t mtime_ns, uint64_t inode, char *out, size_t cap)
{
    snprintf(out, cap, "\"%llx-%llx-%llx\"", (unsigned long long)inode,
             (unsigned long long)size, (unsigned long long)mtime_ns);
}
