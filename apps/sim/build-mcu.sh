#!/bin/sh
# build-mcu.sh - moat-sim against the microcontroller profile of mbedTLS
# (config/mbedtls-mcu.h: 1024-byte records, MFLN, small ECC window), so each
# virtual device's TLS session costs what it would on a device (about 5 KB
# of heap) instead of Debian libmbedtls's 16 KB record buffers per
# direction.
#
# Usage: sh apps/sim/build-mcu.sh [--m32] [OUT]
#   --m32  build for 32-bit x86 (-m32, gcc-multilib): pointers and words
#          the size of a Cortex-M's, so each device's structs and heap are
#          what a microcontroller's would be (default OUT moat-sim32)
#   OUT    the program to write (default build-mcu/sim/moat-sim)
#
# The profile is built by scripts/mbedtls-mcu.sh into build-mcu/sim/ with
# the X.509 writer added (MBEDTLS_X509_CRT_WRITE_C, MBEDTLS_X509_CREATE_C,
# MBEDTLS_PK_WRITE_C), which moat-sim needs to make device certificates;
# they add code, not memory per session. Everything else about a session -
# record sizes, suites, curves, ECC window - is the profile's.
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
LIB=${MOAT_SIM_MCU_BUILD:-$ROOT/build-mcu/sim}
TARGET=host M32='' NAME=moat-sim
if [ "${1:-}" = --m32 ]; then
    TARGET=host32 M32=-m32 NAME=moat-sim32
    shift
fi
OUT=${1:-$LIB/$NAME}

MOAT_MCU_BUILD=$LIB MOAT_MCU_SRC=${MOAT_MCU_SRC:-$ROOT/build-mcu/src} \
    MOAT_MCU_DEFINES="MBEDTLS_X509_CRT_WRITE_C=1 MBEDTLS_X509_CREATE_C=1 MBEDTLS_PK_WRITE_C=1" \
    sh scripts/mbedtls-mcu.sh $TARGET >&2

lib=$LIB/$TARGET
mkdir -p "$(dirname "$OUT")"
# The engine, the POSIX port and moat's TLS transport, exactly as the CMake
# build compiles them (MOAT_MQTT_IO_CHUNK as on Linux).
# shellcheck disable=SC2086
gcc $M32 -std=c99 -O2 -g -Wall -Wextra -Werror \
    -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -D_GNU_SOURCE -DMOAT_MQTT_IO_CHUNK=4096 \
    -Iinclude -I"$lib/include" -DMBEDTLS_CONFIG_FILE='"mbedtls-mcu.h"' \
    apps/sim/main.c apps/sim/ident.c apps/sim/device.c apps/sim/monitor.c \
    apps/sim/loop.c apps/sim/stats.c \
    src/core/mqtt_codec.c src/core/mqtt_client.c src/core/mqtt_loop.c src/core/mqtt_topic.c \
    src/core/error.c src/port/posix/net.c src/port/posix/clock.c \
    src/tls/tls.c src/tls/tls_load.c src/tls/tls_verify.c src/tls/tls_words.c \
    "$lib/libmbedtls.a" "$lib/libmbedx509.a" "$lib/libmbedcrypto.a" \
    -o "$OUT"
echo "$OUT"
