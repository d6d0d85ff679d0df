#!/bin/sh
# bench-tls.sh - TLS benchmarks of the microcontroller profile against a real
# Mosquitto: peak and steady heap of a mutual-TLS session (P-256 and
# RSA-2048), and handshake CPU (full and resumed) with Debian's stock mbedTLS
# and with the profile. TLS is moat's own transport (src/tls) throughout,
# with the MQTT engine (src/core) and the POSIX port on top.
#
# Usage: scripts/bench-tls.sh [--quick | --profile]
#   --quick    fewer handshakes, no callgrind instruction counts
#   --profile  only the MCU profile: HEAP lines and its handshake CPU
# Env: MOAT_TLS_BENCH_N      handshakes per median (default 20)
#      MOAT_MCU_BUILD        build folder (default build-mcu)
#      MOAT_MCU_DEFINES      config overrides, e.g. "MOAT_MCU_TICKETS=1"
#                            (give them their own MOAT_MCU_BUILD)
#      MOAT_TLS_BENCH_DIRECT=1  bare mbedTLS instead of moat's transport
#
# Output lines (the rest goes to stderr or starts with '#'):
#   HEAP  tls_peak <bytes>          P-256, the profile as configured (x86-64)
#   HEAP  tls_steady <bytes>        the same, MQTT session idle
#   HEAP  tls_{peak,steady}_rsa2048 RSA-2048, with 2048-byte records
#   HEAP  ..._ilp32                 the same built 32-bit (a Cortex-M's sizes)
#   HEAP  ..._buf2048               P-256 with 2048-byte records
#   HEAP  tls_after_init, tls_handshake_peak, tls_peak_blocks, tls_allocs:
#         after moat_tls_init (credentials and record buffers), the peak up
#         to the end of the handshake, live blocks at peak, calloc calls
#   BENCH handshake_{full,resumed}_{p256,rsa2048}[_mcu]_ms
#         client CPU ms per handshake, median of N; _mcu: the MCU profile,
#         otherwise Debian's stock libmbedtls
#   BENCH ..._wall_ms               the same, wall clock (broker included)
#   BENCH ..._minstr                million instructions (callgrind), client
# Steps:
#   1. scripts/mbedtls-mcu.sh: mbedTLS with config/mbedtls-mcu.h, as
#      configured and with 2048-byte records, 64- and 32-bit
#   2. bench/tls_heap.c built against each, and against Debian's libmbedtls
#   3. scripts/bench-certs.sh: fresh CA, broker and device credentials
#      (P-256 and RSA-2048) in a private temporary folder, removed at the end
#   4. each tls_heap run starts its own mosquitto, measures, and stops it
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${MOAT_MCU_BUILD:-build-mcu}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
N=${MOAT_TLS_BENCH_N:-20}
QUICK=0 PROFILE_ONLY=0
case ${1:-} in
--quick) QUICK=1 ;;
--profile) PROFILE_ONLY=1 ;;
"") ;;
*)
    echo "usage: bench-tls.sh [--quick | --profile]" >&2
    exit 2
    ;;
esac

die() {
    echo "bench-tls: $*" >&2
    exit 1
}

for tool in gcc openssl mosquitto; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found; run 'make deps'"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moat-bench-tls.XXXXXX")
chmod 700 "$tmp"
trap 'rm -rf "$tmp"' EXIT INT TERM

# ---- build ----------------------------------------------------------------

# The profile as configured (1024-byte records: P-256), and with 2048-byte
# records, the least that holds Mosquitto's RSA-2048 certificate chain.
# Each also for 32-bit x86 (-m32), whose word and pointer size are a
# Cortex-M's: struct sizes, and so heap figures, match a microcontroller's.
BUF2048=$OUT/buf2048
sh scripts/mbedtls-mcu.sh host host32
MOAT_MCU_BUILD=$BUF2048 MOAT_MCU_SRC=${MOAT_MCU_SRC:-$ROOT/build-mcu/src} \
    MOAT_MCU_DEFINES="${MOAT_MCU_DEFINES:-} MBEDTLS_SSL_IN_CONTENT_LEN=2048 MBEDTLS_SSL_OUT_CONTENT_LEN=2048" \
    sh scripts/mbedtls-mcu.sh host host32

# The MQTT engine, the POSIX port and moat's TLS transport, as they are: only
# what a TLS session with MQTT needs (the profile lacks, on purpose, what the
# rest of the tree uses, such as the CSR writer of the credential store).
MOAT_SRC="src/core/mqtt_codec.c src/core/mqtt_client.c src/core/mqtt_loop.c src/core/mqtt_topic.c
 src/core/error.c src/port/posix/net.c src/port/posix/clock.c
 src/tls/tls.c src/tls/tls_load.c src/tls/tls_verify.c src/tls/tls_words.c"
CFLAGS="-std=c99 -O2 -g -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude"
# MOAT_TLS_BENCH_DIRECT=1: drive mbedTLS directly instead of through src/tls.
[ -n "${MOAT_TLS_BENCH_DIRECT:-}" ] && CFLAGS="$CFLAGS -DBENCH_TLS_DIRECT"
B=$OUT/bench
mkdir -p "$B"

# build_heap <mbedtls build folder> <output> [-m32]: tls_heap against an MCU
# profile build, which counts the heap through the platform hooks.
build_heap() {
    lib=$1 exe=$2
    shift 2
    # shellcheck disable=SC2086
    gcc $CFLAGS "$@" -I"$lib/include" -DMBEDTLS_CONFIG_FILE='"mbedtls-mcu.h"' \
        bench/tls_heap.c $MOAT_SRC \
        "$lib/libmbedtls.a" "$lib/libmbedx509.a" "$lib/libmbedcrypto.a" \
        -o "$exe" || die "building $exe failed"
}
build_heap "$OUT/host" "$B/tls_heap_mcu"
build_heap "$OUT/host32" "$B/tls_heap_mcu32" -m32
build_heap "$BUF2048/host" "$B/tls_heap_mcu2048"
build_heap "$BUF2048/host32" "$B/tls_heap_mcu2048_32" -m32

# The same program against Debian's libmbedtls (16 KB records, every
# algorithm): the handshake CPU of the stock library.
if [ "$PROFILE_ONLY" -eq 0 ]; then
    # shellcheck disable=SC2086
    gcc $CFLAGS bench/tls_heap.c $MOAT_SRC -lmbedtls -lmbedx509 -lmbedcrypto \
        -o "$B/tls_heap_stock" || die "building tls_heap_stock failed"
fi

# ---- credentials ----------------------------------------------------------

sh scripts/bench-certs.sh "$tmp"

# ---- heap -----------------------------------------------------------------

"$B/tls_heap_mcu" --certs "$tmp" --only p256
"$B/tls_heap_mcu2048" --certs "$tmp" --only rsa2048
"$B/tls_heap_mcu2048" --certs "$tmp" --only p256 --suffix _buf2048
"$B/tls_heap_mcu32" --certs "$tmp" --only p256 --suffix _ilp32
"$B/tls_heap_mcu2048_32" --certs "$tmp" --only rsa2048 --suffix _ilp32

# ---- handshake CPU ----------------------------------------------------------

# Client CPU time per handshake, median of N: Debian's stock mbedTLS, then
# the MCU profile (small ECC window, no fixed-point table).
[ "$QUICK" -eq 1 ] && N=5
if [ "$PROFILE_ONLY" -eq 0 ]; then
    "$B/tls_heap_stock" --certs "$tmp" --cpu "$N"
fi
"$B/tls_heap_mcu" --certs "$tmp" --cpu "$N" --only p256 --suffix _mcu
"$B/tls_heap_mcu2048" --certs "$tmp" --cpu "$N" --only rsa2048 --suffix _mcu

# Instructions of one handshake, client side only: callgrind counts inside
# bench_handshake_full() or bench_handshake_resumed() and nowhere else.
if [ "$QUICK" -eq 1 ] || [ "$PROFILE_ONLY" -eq 1 ]; then
    exit 0
fi
command -v valgrind >/dev/null 2>&1 || die "valgrind not found; run 'make deps'"
# <program>:<name suffix>:<credential kinds>
for run in tls_heap_stock::"p256 rsa2048" tls_heap_mcu:_mcu:p256 tls_heap_mcu2048:_mcu:rsa2048; do
    prog=${run%%:*} rest=${run#*:}
    sfx=${rest%%:*} kinds=${rest#*:}
    for kind in $kinds; do
        for hs in full resumed; do
            valgrind --tool=callgrind --toggle-collect="bench_handshake_$hs" \
                --callgrind-out-file=/dev/null \
                "$B/$prog" --certs "$tmp" --cpu 1 --only "$kind" \
                >"$tmp/cg.out" 2>"$tmp/cg.err" || {
                cat "$tmp/cg.out" "$tmp/cg.err" >&2
                die "callgrind run of $prog ($kind, $hs) failed"
            }
            ir=$(awk '/Collected :/ { print $NF }' "$tmp/cg.err")
            [ -n "$ir" ] || die "no instruction count from callgrind ($prog $kind $hs)"
            awk -v n="handshake_${hs}_${kind}${sfx}_minstr" -v ir="$ir" \
                'BEGIN { printf "BENCH %s %.2f\n", n, ir / 1e6 }'
        done
    done
done
