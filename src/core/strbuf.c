/*
 * strbuf.c - bounded writing of error words and integers, without printf.
 */
#include "strbuf.h"

#include "mem.h"

void moat_sb_init(moat_sb *sb, char *buf, size_t cap)
{
    sb->buf = cap > 0 ? buf : NULL;
    sb->cap = (buf != NULL && cap > 0) ? cap - 1 : 0;
    sb->len = 0;
    sb->over = false;
}

void moat_sb_mem(moat_sb *sb, const char *s, size_t n)
{
    size_t room = sb->cap - sb->len;
    if (n > room) {
        n = room;
        sb->over = true;
    }
    if (n > 0) {
        memcpy(sb->buf + sb->len, s, n);
        sb->len += n;
    }
}

void moat_sb_str(moat_sb *sb, const char *s)
{
    if (s != NULL)
        moat_sb_mem(sb, s, strlen(s));
}

void moat_sb_u64(moat_sb *sb, uint64_t v)
{
    char d[20];
    size_t i = sizeof d;
    do {
        d[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0);
    moat_sb_mem(sb, d + i, sizeof d - i);
}

void moat_sb_words(moat_sb *sb)
{
    if (sb->buf != NULL)
        sb->buf[sb->len] = '\0';
}

void moat_sb_say(char *buf, size_t cap, const char *a, uint64_t n1, const char *b, uint64_t n2,
                 const char *c)
{
    moat_sb sb;

    if (buf == NULL || cap == 0)
        return;
    moat_sb_init(&sb, buf, cap);
    moat_sb_str(&sb, a);
    if (b != NULL) {
        moat_sb_u64(&sb, n1);
        moat_sb_str(&sb, b);
    }
    if (c != NULL) {
        moat_sb_u64(&sb, n2);
        moat_sb_str(&sb, c);
    }
    moat_sb_words(&sb);
}
