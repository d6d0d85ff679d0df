/*
 * fuzz_check.h - what every libFuzzer harness here shares: the entry point's
 * prototype, and CHECK, an oracle that aborts (libFuzzer and the corpus
 * replay both report an abort as a failure, with the line).
 */
#ifndef MOAT_FUZZ_CHECK_H
#define MOAT_FUZZ_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

#endif
