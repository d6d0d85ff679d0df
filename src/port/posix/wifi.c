/*
 * wifi.c - the Wi-Fi signal level from /proc/net/wireless (moat/wifi.h).
 */
#include "moat/wifi.h"

#include <stdio.h>
#include <string.h>

/* Skip spaces; then an optionally signed decimal number, followed by an
 * optional '.' (the kernel's "updated" mark). False when there is none. */
static bool take_int(const char **p, const char *end, long *out)
{
    const char *s = *p;
    bool neg = false;
    long v = 0;
    int digits = 0;

    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    if (s < end && (*s == '-' || *s == '+'))
        neg = *s++ == '-';
    for (; s < end && *s >= '0' && *s <= '9' && digits < 9; s++, digits++)
        v = v * 10 + (*s - '0');
    if (digits == 0 || (s < end && *s >= '0' && *s <= '9'))
        return false;
    if (s < end && *s == '.')
        s++;
    *p = s;
    *out = neg ? -v : v;
    return true;
}

/* One interface line: "  wlan0: 0000   54.  -56.  -256 ...". */
static bool parse_line(const char *s, const char *end, const char *ifname, int32_t *dbm)
{
    const char *colon, *name;
    long status, qual, level;
    size_t name_len;

    while (s < end && *s == ' ')
        s++;
    colon = memchr(s, ':', (size_t)(end - s));
    if (colon == NULL)
        return false;
    name = s;
    name_len = (size_t)(colon - s);
    if (name_len == 0 ||
        (ifname != NULL && (strlen(ifname) != name_len || memcmp(ifname, name, name_len) != 0)))
        return false;
    s = colon + 1;
    /* status is hexadecimal: skip it as a word */
    while (s < end && *s == ' ')
        s++;
    status = 0;
    while (s < end && ((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') ||
                       (*s >= 'A' && *s <= 'F'))) {
        s++;
        status++;
    }
    if (status == 0 || !take_int(&s, end, &qual) || !take_int(&s, end, &level))
        return false;
    /* dBm levels are negative; -256 is "no level" with IW_QUAL_DBM */
    if (level >= 0 || level <= -256)
        return false;
    *dbm = (int32_t)level;
    return true;
}

bool moat_wifi_rssi_parse(const char *text, size_t len, const char *ifname, int32_t *dbm)
{
    const char *s = text, *end = text + len;
    int line = 0;

    if (text == NULL || dbm == NULL)
        return false;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *eol = nl != NULL ? nl : end;
        /* the first two lines are headers */
        if (line++ >= 2 && parse_line(s, eol, ifname, dbm))
            return true;
        s = nl != NULL ? nl + 1 : end;
    }
    return false;
}

bool moat_wifi_rssi(const char *path, const char *ifname, int32_t *dbm)
{
    char buf[4096];
    size_t n;
    FILE *f = fopen(path != NULL ? path : "/proc/net/wireless", "r");

    if (f == NULL)
        return false;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return moat_wifi_rssi_parse(buf, n, ifname, dbm);
}
