/*
 * moat-avr-eeprom.c - writes the moat-avr configuration block (fail-safe
 * time, maximum on-time) as an Intel HEX EEPROM image for avrdude. A host
 * tool, built with the host compiler.
 *
 *   moat-avr-eeprom FAILSAFE_MS MAX_ON_S > moat-avr-eeprom.hex
 *   avrdude -p m168 -c <programmer> -U eeprom:w:moat-avr-eeprom.hex:i
 *
 * The block's layout is in moat/spilink.h; the firmware reads it at every
 * reset and falls back to its defaults when the block is missing or bad.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "moat/spilink.h"

static int parse(const char *s, unsigned long lo, unsigned long hi, const char *what,
                 unsigned long *out)
{
    char *end;

    errno = 0;
    *out = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || *out < lo || *out > hi) {
        fprintf(stderr, "moat-avr-eeprom: %s: expected a whole number from %lu to %lu, got '%s'\n",
                what, lo, hi, s);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    uint8_t ee[MOAT_SPILINK_EE_LEN];
    unsigned long fs, mo;
    unsigned sum;
    size_t i;

    if (argc != 3) {
        fprintf(stderr,
                "usage: moat-avr-eeprom FAILSAFE_MS MAX_ON_S > eeprom.hex\n"
                "  FAILSAFE_MS  all relays off after this long without a valid frame "
                "(%u..%u; default %u)\n"
                "  MAX_ON_S     no relay stays on longer than this (%u..65535; default %u)\n",
                MOAT_SPILINK_FAILSAFE_MIN_MS, MOAT_SPILINK_FAILSAFE_MAX_MS,
                MOAT_SPILINK_DEFAULT_FAILSAFE_MS, MOAT_SPILINK_MAX_ON_MIN_S,
                MOAT_SPILINK_DEFAULT_MAX_ON_S);
        return 2;
    }
    if (parse(argv[1], MOAT_SPILINK_FAILSAFE_MIN_MS, MOAT_SPILINK_FAILSAFE_MAX_MS,
              "FAILSAFE_MS", &fs) != 0 ||
        parse(argv[2], MOAT_SPILINK_MAX_ON_MIN_S, 65535, "MAX_ON_S", &mo) != 0)
        return 2;
    ee[0] = MOAT_SPILINK_EE_MAGIC;
    ee[1] = MOAT_SPILINK_EE_VERSION;
    ee[2] = (uint8_t)fs;
    ee[3] = (uint8_t)(fs >> 8);
    ee[4] = (uint8_t)mo;
    ee[5] = (uint8_t)(mo >> 8);
    ee[6] = moat_spilink_crc8(ee, 6);
    /* One data record at address 0, then the end-of-file record. */
    sum = MOAT_SPILINK_EE_LEN;
    printf(":%02X000000", MOAT_SPILINK_EE_LEN);
    for (i = 0; i < sizeof ee; i++) {
        printf("%02X", ee[i]);
        sum += ee[i];
    }
    printf("%02X\n:00000001FF\n", (unsigned)(-sum & 0xFFu));
    return ferror(stdout) ? 1 : 0;
}
