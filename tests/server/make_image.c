/*
 * make_image.c - a moat image file for the update server tests:
 * make_image OUT PRODUCT VERSION COUNTER PAYLOAD_BYTES SEED
 *
 * The header is the core's encoder (moat_ota_header_encode) with the real
 * payload size and SHA-256; the payload is pseudo-random from SEED. The
 * signature field is zeros: moat-server reads headers to choose an image
 * and never verifies signatures (the device does, moat/ota.h), so these
 * tests need no signing key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/sha256.h>

#include "moat/ota.h"

int main(int argc, char **argv)
{
    moat_ota_header h;
    uint8_t head[MOAT_OTA_HEADER_MAX], sig[MOAT_OTA_SIG_SIZE];
    unsigned long major, minor, patch, counter, size, seed, i;
    uint8_t *payload;
    size_t len;
    FILE *f;

    if (argc != 7 || sscanf(argv[3], "%lu.%lu.%lu", &major, &minor, &patch) != 3) {
        fprintf(stderr, "usage: make_image OUT PRODUCT X.Y.Z COUNTER PAYLOAD_BYTES SEED\n");
        return 2;
    }
    counter = strtoul(argv[4], NULL, 10);
    size = strtoul(argv[5], NULL, 10);
    seed = strtoul(argv[6], NULL, 10);
    payload = malloc(size ? size : 1);
    if (payload == NULL)
        return 1;
    for (i = 0; i < size; i++) {
        seed = seed * 1103515245ul + 12345ul;
        payload[i] = (uint8_t)(seed >> 16);
    }
    memset(&h, 0, sizeof h);
    snprintf(h.product, sizeof h.product, "%s", argv[2]);
    h.version.major = (uint16_t)major;
    h.version.minor = (uint16_t)minor;
    h.version.patch = (uint16_t)patch;
    h.counter = (uint32_t)counter;
    h.payload_size = (uint32_t)size;
    mbedtls_sha256_ret(payload, size, h.payload_sha256, 0);
    if (moat_ota_header_encode(&h, NULL, 0, head, sizeof head, &len) != MOAT_OK) {
        fprintf(stderr, "make_image: bad header fields\n");
        return 1;
    }
    memset(sig, 0, sizeof sig);
    f = fopen(argv[1], "wb");
    if (f == NULL || fwrite(head, 1, len, f) != len || fwrite(sig, 1, sizeof sig, f) != sizeof sig ||
        fwrite(payload, 1, size, f) != size || fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    free(payload);
    return 0;
}
