/*
 * catalog.h - what moat-server serves and to whom: the signed images of a
 * directory with the curimage rule, per-device files, request paths and
 * Range headers. No HTTP library and no TLS here, so the rules are plain
 * functions (docs/SERVER.md).
 */
#ifndef MOAT_SERVER_CATALOG_H
#define MOAT_SERVER_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "moat/ota.h"

#define SRV_NAME_MAX 128  /* an image file name */
#define SRV_ID_MAX 64     /* a device id (certificate CN) */

/* One image of images/, as its header says. */
typedef struct srv_image {
    char name[SRV_NAME_MAX];   /* file name in images/ */
    char product[MOAT_OTA_PRODUCT_MAX + 1];
    moat_ota_version version;
    uint32_t counter;
    uint64_t size;             /* of the whole file */
    int64_t mtime_ns;
    uint64_t inode;
} srv_image;

/* The answer to GET firmware.bin?curimage=... */
typedef enum srv_pick {
    SRV_PICK_IMAGE = 0,     /* serve *out */
    SRV_PICK_CURRENT,       /* 304: the device runs the newest image */
    SRV_PICK_NO_PRODUCT,    /* 404: no image for the device's product */
    SRV_PICK_BAD_CURIMAGE   /* 400: curimage is neither a version nor an image */
} srv_pick;

/*
 * Choose the image for a device of `product` that runs `curimage`: a version
 * ("1.2.0", "v1.2.0"), the file name of an image of the catalog, or any
 * name ending in a version ("moat-agent-1.2.0.bin"). The newest image of
 * the product is the one with the highest security counter, then the
 * highest version. It is served when its version is above the running one,
 * or when curimage names a catalog image with a lower counter (an operator
 * roll-back re-signed with a higher counter); otherwise SRV_PICK_CURRENT.
 * An empty or missing curimage gets the newest image.
 * why[0..cap) says the decision in words for the log.
 */
srv_pick srv_pick_image(const char *images_dir, const char *product, const char *curimage,
                        srv_image *out, char *why, size_t cap);

/* Read images_dir/name's header into *img: 0, or -1 with words in why. */
int srv_read_image(const char *images_dir, const char *name, srv_image *img,
                   char *why, size_t cap);

/* "1.2.0" / "v1.2.0" / "...-1.2.0[.bin]" into *v. */
bool srv_parse_version(const char *s, moat_ota_version *v);

/* A device id (1..64 of A-Z a-z 0-9 _ -), as moat pki makes them. */
bool srv_valid_id(const char *id);

/* The device's product: devices/<id>.json {"product": "..."} under dir, or
 * fallback (may be NULL). 0, or -1 with words (a broken file is an error,
 * not a silent default). out has MOAT_OTA_PRODUCT_MAX + 1 bytes. */
int srv_device_product(const char *dir, const char *id, const char *fallback, char *out,
                       char *why, size_t cap);

/* What a request path asks for, after the download prefix. */
typedef enum srv_route {
    SRV_ROUTE_FIRMWARE = 0,  /* <prefix>/firmware.bin */
    SRV_ROUTE_CONFIG,        /* <prefix>/config.json */
    SRV_ROUTE_NONE,          /* anything else: 404 */
    SRV_ROUTE_BAD            /* "." or ".." segments, backslashes, control
                                bytes, or not absolute: 400 */
} srv_route;

/* prefix is the downloadpath ("/", "/firmware/", "/fw"); repeated slashes
 * count as one, so "<downloadpath>/firmware.bin" always matches. */
srv_route srv_route_path(const char *prefix, const char *url);

/* A parsed Range header against a resource of size bytes. */
typedef enum srv_range {
    SRV_RANGE_NONE = 0,      /* absent, or a form we ignore (several ranges,
                                another unit): serve it all with 200 */
    SRV_RANGE_OK,            /* serve [*first, *last] with 206 */
    SRV_RANGE_UNSATISFIABLE  /* 416 */
} srv_range;

srv_range srv_parse_range(const char *header, uint64_t size, uint64_t *first,
                          uint64_t *last);

/* The ETag of an image or file: changes when the file does. */
void srv_etag(uint64_t size, int64_t mtime_ns, uint64_t inode, char *out, size_t cap);

#endif
