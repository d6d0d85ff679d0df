/*
 * strbuf.h - a bounded writer for error words with numbers in them
 * ("zone 3: 7200 seconds is over the maximum of 3600"), without printf.
 * Internal: not a public header. JSON documents use moat/json.h.
 *
 * Writes never overrun: what does not fit is dropped and `over` is set;
 * moat_sb_words() NUL-terminates what fit. No heap.
 */
#ifndef MOAT_CORE_STRBUF_H
#define MOAT_CORE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moat/error.h"

typedef struct moat_sb {
    char *buf;
    size_t cap; /* bytes of buf usable for text: one is kept for the NUL */
    size_t len;
    bool over;
} moat_sb;

void moat_sb_init(moat_sb *sb, char *buf, size_t cap);
void moat_sb_mem(moat_sb *sb, const char *s, size_t n);
void moat_sb_str(moat_sb *sb, const char *s); /* NULL writes nothing */
void moat_sb_u64(moat_sb *sb, uint64_t v);
/* NUL-terminate what fits (words may be cut); never fails. */
void moat_sb_words(moat_sb *sb);
/* buf = a, then n1 and b if b is given, then n2 and c if c is given:
 * ("zone ", 3, ": over the maximum of ", 3600, " seconds"). NULL or 0-sized
 * buf: nothing. */
void moat_sb_say(char *buf, size_t cap, const char *a, uint64_t n1, const char *b, uint64_t n2,
                 const char *c);

#endif
