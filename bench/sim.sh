#!/bin/sh
# sim.sh - the simulator's part of `make bench`: moat-sim built against the
# microcontroller profile of mbedTLS, run by apps/sim/run.sh against a fresh
# mutual-TLS Mosquitto. A shorter run than the 10,000-device target (which
# takes 10 minutes and more, see docs/SIM.md) so that `make bench` stays
# under 15 minutes:
#
#   SIM  ...   1,000 devices, 60 s steady, the ILP32 build (moat-sim32:
#              pointers and words the size of a Cortex-M's), as the target run
#   SIM64 ...  the x86-64 build of the same program, 1,000 devices, 20 s:
#              its memory per device
#
# Usage: sh bench/sim.sh MOAT_CLI [REPORT_FILE]
#   MOAT_CLI     the `moat` CLI (its pki and broker-config make the broker)
#   REPORT_FILE  the ILP32 run's whole report is copied here
# Env: MOAT_BENCH_SIM_COUNT (1000), MOAT_BENCH_SIM_DURATION (60)
set -eu
cd "$(dirname "$0")/.."

die() {
    echo "bench/sim: $*" >&2
    exit 1
}
[ $# -ge 1 ] || die "usage: sim.sh MOAT_CLI [REPORT_FILE]"
MOAT=$1
REPORT=${2:-}
N=${MOAT_BENCH_SIM_COUNT:-1000}
D=${MOAT_BENCH_SIM_DURATION:-60}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moat-bench-sim.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

sim32=$(sh apps/sim/build-mcu.sh --m32) || die "building moat-sim32 failed"
sim64=$(sh apps/sim/build-mcu.sh) || die "building moat-sim failed"

# <program> <prefix> <count> <duration>: the SIM lines, renamed with prefix.
run() {
    prog=$1 prefix=$2 count=$3 dur=$4
    # moat-sim exits 1 when a device never connected or a message was lost:
    # that is a figure to report (SIM connected, SIM status_lost), not a
    # reason to stop; no report at all is.
    st=0
    bash apps/sim/run.sh "$MOAT" "$prog" --count "$count" --rate 100 --interval 10 \
        --duration "$dur" --payload 128 --seed 1 --cmd-rate 10 --progress 0 >"$tmp/out" 2>&1 ||
        st=$?
    if ! grep -q '^SIM status_lost ' "$tmp/out"; then
        cat "$tmp/out" >&2
        die "moat-sim ($prog, $count devices) gave no report (status $st)"
    fi
    [ "$st" -eq 0 ] || echo "# moat-sim ($prog) exited $st: see the connected and lost figures"
    awk -v p="$prefix" '$1 == "SIM" { $1 = p; print }' "$tmp/out"
}

run "$sim32" SIM "$N" "$D"
if [ -n "$REPORT" ]; then
    sed -n '/^== moat-sim report ==/,$p' "$tmp/out" | grep -v '^SIM ' >"$REPORT"
fi
run "$sim64" SIM64 "$N" 20
