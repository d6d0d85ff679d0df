/*
 * mem.h - the few C library functions the core uses.
 *
 * The core builds freestanding for microcontrollers whose compilers ship no C
 * library headers (make size defines MOAT_FREESTANDING); every such target
 * still links memcpy and friends from its libc or ROM.
 */
#ifndef MOAT_CORE_MEM_H
#define MOAT_CORE_MEM_H

#include <stddef.h>

#ifdef MOAT_FREESTANDING
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
#else
#include <string.h>
#endif

#endif
