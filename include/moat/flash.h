/*
 * moat/flash.h - the flash-area interface the update logic is written against.
 *
 * As in MCUboot's bootutil, the core never touches storage itself: a slot,
 * a boot record or a credential store is a moat_flash_area given by the port.
 * src/port/posix implements it with files; a microcontroller port implements
 * it with its flash driver. All offsets are relative to the area's start.
 *
 * Contract:
 *  - read/write/erase return MOAT_OK or a negative moat_err; they may block
 *    for as long as the medium needs (a flash page write), never on I/O.
 *  - write may require erase first (flash semantics): callers erase an area
 *    before writing it from the start, and write each byte at most once.
 *  - sync makes everything written so far durable (fsync on POSIX); after a
 *    power cut, data written before a successful sync is intact and data
 *    after it may be missing or partly written, never anything else.
 */
#ifndef MOAT_FLASH_H
#define MOAT_FLASH_H

#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"

typedef struct moat_flash_area {
    moat_err (*read)(void *ctx, uint32_t off, void *buf, size_t len);
    moat_err (*write)(void *ctx, uint32_t off, const void *buf, size_t len);
    moat_err (*erase)(void *ctx);
    moat_err (*sync)(void *ctx);
    uint32_t size;  /* bytes */
    void *ctx;
} moat_flash_area;

#endif
