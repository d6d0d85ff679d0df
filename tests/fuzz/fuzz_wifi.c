/*
 * fuzz_wifi.c - libFuzzer harness for the Wi-Fi level parser (moat/wifi.h)
 * on hostile /proc/net/wireless texts.
 *
 * Byte 0 chooses the interface asked for (bit 0: "wlan0", else the first
 * with a level); the rest is the text, passed without a NUL. Oracles: a
 * level found is a dBm level (-255..-1); nothing found leaves *dbm alone;
 * asking for "wlan0" finds a level only when the text names wlan0, and
 * the first-interface answer exists whenever the named one does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moat/wifi.h"

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *name;
    char *text;
    size_t len;
    int32_t dbm = 1, first = 1;
    bool found, any;

    if (size < 1)
        return 0;
    name = (data[0] & 1u) ? "wlan0" : NULL;
    len = size - 1;
    /* an exact-size copy: a read past len is a heap overflow ASan sees */
    text = malloc(len > 0 ? len : 1);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, len);
    found = moat_wifi_rssi_parse(text, len, name, &dbm);
    any = moat_wifi_rssi_parse(text, len, NULL, &first);
    if (found) {
        CHECK(dbm < 0 && dbm > -256);
        CHECK(any);
        if (name != NULL) {
            int hit = 0;
            for (size_t i = 0; i + 6 <= len && !hit; i++)
                hit = memcmp(text + i, "wlan0:", 6) == 0;
            CHECK(hit);
        }
    } else {
        CHECK(dbm == 1);
    }
    if (any)
        CHECK(first < 0 && first > -256);
    else
        CHECK(first == 1 && !found);
    free(text);
    return 0;
}
