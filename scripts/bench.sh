#!/bin/sh
# make bench: every benchmark of the project, in one run, then
#   bench/results.json   every figure as {"name": value}
#   docs/BENCHMARKS.md   regenerated from bench/BENCHMARKS.md.in
#
# Usage: sh scripts/bench.sh [BUILD]     (BUILD: the CMake build, default build)
#
# Steps, each a script that prints one figure per line ("KIND name... value",
# KIND one of SIZE SIZEOF HEAP BENCH RATIO SIM SIM64; lines starting with
# '#' are notes):
#   1. scripts/size.sh       code size of the MQTT engine and friends
#   2. scripts/size-tls.sh   mbedTLS's microcontroller profile, Cortex-M4
#   3. bench/size-core.sh    the whole core the agent runs on
#   4. scripts/bench-tls.sh  TLS heap and handshake cost (MCU profile, stock)
#   5. bench/tput.sh         throughput: moat, libmosquitto, Paho C; callgrind
#   6. bench/sim.sh          moat-sim: 1,000 devices for 60 s
# A figure's name in results.json is its line without the value, in lower
# case, words joined by dots: "SIZE mqtt_engine cortex-m4 6104" becomes
# "size.mqtt_engine.cortex-m4": 6104. The template names figures the same
# way, as {{size.mqtt_engine.cortex-m4}}; a name the run did not produce is
# an error, so the page never shows a stale number as a fresh one.
#
# Env: MOAT_BENCH_QUICK=1  smoke run (fewer messages, fewer handshakes,
#                          100 devices for 20 s); the page says so.
#      MOAT_BENCH_OUT=DIR  write results.json and BENCHMARKS.md into DIR
#                          instead of bench/ and docs/
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
QUICK=${MOAT_BENCH_QUICK:-0}
JSON=bench/results.json
DOC=docs/BENCHMARKS.md
if [ -n "${MOAT_BENCH_OUT:-}" ]; then
    mkdir -p "$MOAT_BENCH_OUT"
    JSON=$MOAT_BENCH_OUT/results.json
    DOC=$MOAT_BENCH_OUT/BENCHMARKS.md
fi
TEMPLATE=bench/BENCHMARKS.md.in

die() {
    echo "bench: $*" >&2
    exit 1
}
[ -f "$TEMPLATE" ] || die "missing $TEMPLATE"
[ -x "$BUILD/apps/cli/moat" ] || die "no $BUILD/apps/cli/moat: build first (make)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moat-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
lines=$tmp/lines
: >"$lines"
t_start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# step <title> <command...>: run it, show its output, keep its figures.
step() {
    title=$1
    shift
    echo "== $title: $*"
    t0=$(date +%s)
    "$@" >"$tmp/step.out" || {
        cat "$tmp/step.out"
        die "$title failed: $*"
    }
    cat "$tmp/step.out"
    # (a step may print notes only; awk, unlike grep, is content with none)
    awk '$1 ~ /^(SIZE|SIZEOF|HEAP|BENCH|RATIO|SIM|SIM64)$/' "$tmp/step.out" >>"$lines"
    echo "STEP $(echo "$title" | tr 'A-Z ' 'a-z_') $(($(date +%s) - t0))" >>"$lines"
}

step "code size" sh scripts/size.sh
step "TLS code size" sh scripts/size-tls.sh
step "agent core size" sh bench/size-core.sh
if [ "$QUICK" = 1 ]; then
    step "TLS heap and handshakes" sh scripts/bench-tls.sh --quick
    step "throughput and CPU per message" bash bench/tput.sh --quick
    MOAT_BENCH_SIM_COUNT=100 MOAT_BENCH_SIM_DURATION=20 \
        step "simulator" sh bench/sim.sh "$BUILD/apps/cli/moat" "$tmp/sim_report.txt"
else
    step "TLS heap and handshakes" sh scripts/bench-tls.sh
    step "throughput and CPU per message" bash bench/tput.sh
    step "simulator" sh bench/sim.sh "$BUILD/apps/cli/moat" "$tmp/sim_report.txt"
fi

# Ratios against figures published by others (quoted, not measured here).
engine=$(awk '$1 == "SIZE" && $2 == "mqtt_engine" && $3 == "cortex-m4" { print $4 }' "$lines")
[ -n "$engine" ] || die "no SIZE mqtt_engine cortex-m4 figure"
# coreMQTT v2: 7.0 KB for MQTT 3.1.1, 18.9 KB for MQTT 5 (Cortex-M4, -Os).
awk -v m="$engine" 'BEGIN {
    printf "RATIO mqtt_engine_vs_coremqtt cortex-m4 %.2f\n", m / (7.0 * 1024)
    printf "RATIO mqtt_engine_vs_coremqtt5 cortex-m4 %.2f\n", m / (18.9 * 1024)
}' >>"$lines"

# Derived ratios: ratio <name> <numerator> <denominator>, each a figure as it
# appears in the lines ("HEAP tls_peak") or a number. Skipped when a figure
# is missing (a quick run has no instruction counts): the page then says so.
fig() { awk -v k="$1" '{ n = $1; for (i = 2; i < NF; i++) n = n " " $i; if (n == k) v = $NF } END { print v }' "$lines"; }
ratio() {
    a=$2 b=$3 fmt=${4:-%.2f}
    case $a in [0-9]*) ;; *) a=$(fig "$a") ;; esac
    case $b in [0-9]*) ;; *) b=$(fig "$b") ;; esac
    [ -n "$a" ] && [ -n "$b" ] || return 0
    awk -v n="$1" -v a="$a" -v b="$b" -v f="$fmt" 'BEGIN { if (b > 0) printf "RATIO %s " f "\n", n, a / b }' >>"$lines"
}
ratio tls_peak_vs_budget "HEAP tls_peak" 12288
ratio tls_steady_vs_budget "HEAP tls_steady" 6144
ratio tls_peak_vs_mbedtls36 "HEAP tls_peak" 16179
ratio tls_peak_ilp32_vs_mbedtls36 "HEAP tls_peak_ilp32" 16179
ratio tls_peak_vs_bearssl "HEAP tls_peak" 22528
ratio tls_peak_ilp32_vs_bearssl "HEAP tls_peak_ilp32" 22528
ratio handshake_resumed_vs_full_p256 "BENCH handshake_resumed_p256_minstr" "BENCH handshake_full_p256_minstr" %.4f
ratio handshake_resumed_vs_full_rsa2048 "BENCH handshake_resumed_rsa2048_minstr" "BENCH handshake_full_rsa2048_minstr" %.4f
ratio handshake_resumed_vs_full_p256_mcu "BENCH handshake_resumed_p256_mcu_minstr" "BENCH handshake_full_p256_mcu_minstr" %.4f
ratio handshake_mcu_vs_stock_p256 "BENCH handshake_full_p256_mcu_minstr" "BENCH handshake_full_p256_minstr"
ratio handshake_mcu_vs_stock_rsa2048 "BENCH handshake_full_rsa2048_mcu_minstr" "BENCH handshake_full_rsa2048_minstr"
ratio agent_core_vs_coremqtt5 "SIZE agent_core cortex-m4" 19354
echo "STEP total $(($(date +%s) - t_start))" >>"$lines"

# ---- results.json -----------------------------------------------------------

# "KIND a b value" -> "kind.a.b<TAB>value"
awk '{
    name = tolower($1)
    for (i = 2; i < NF; i++) name = name "." $i
    print name "\t" $NF
}' "$lines" >"$tmp/named"
dup=$(cut -f1 "$tmp/named" | sort | uniq -d | head -n 1)
[ -z "$dup" ] || die "the figure '$dup' was produced twice"
{
    echo "{"
    awk -F '\t' '{
        v = $2
        if (v !~ /^-?[0-9]+(\.[0-9]+)?$/) v = "\"" v "\""
        printf "%s  \"%s\": %s", (NR > 1 ? ",\n" : ""), $1, v
    } END { print "" }' "$tmp/named"
    echo "}"
} >"$tmp/results.json"
mv "$tmp/results.json" "$JSON"

# ---- docs/BENCHMARKS.md -------------------------------------------------------

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
# shellcheck disable=SC1091
os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")
ver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }
{
    printf 'machine\t%s, %s cores (%s), %s GiB RAM, Linux %s\n' "$os" "$(nproc)" "$cpu" \
        "$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)"
    printf 'tools\tgcc %s, arm-none-eabi-gcc %s, xtensa-lx106-elf-gcc %s, mosquitto %s, libmosquitto %s, Paho C %s, mbedTLS %s (Debian) and 2.28.3 (the profile), valgrind %s\n' \
        "$(gcc -dumpfullversion)" "$(arm-none-eabi-gcc -dumpversion 2>/dev/null || echo ?)" \
        "$(xtensa-lx106-elf-gcc -dumpversion 2>/dev/null || echo ?)" "$(ver mosquitto)" \
        "$(ver libmosquitto-dev)" "$(ver libpaho-mqtt-dev)" "$(ver libmbedtls-dev)" \
        "$(valgrind --version 2>/dev/null | sed 's/valgrind-//')"
    printf 'date\t%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
    printf 'load\t%s at the start, %s at the end (1, 5, 15 minutes)\n' "$load_start" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'commit\t%s%s\n' "$(git rev-parse --short HEAD 2>/dev/null || echo ?)" \
        "$(git diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')"
    if [ "$QUICK" = 1 ]; then
        printf 'mode\t**a quick smoke run (MOAT_BENCH_QUICK=1): fewer messages and handshakes, 100 devices for 20 s; not the figures of record**\n'
    else
        printf 'mode\tthe full run\n'
    fi
} >"$tmp/text"

# {{name}}: a figure; {{text:name}}: a line above; {{file:sim_report}}: the
# simulator's report. Any name not produced is an error.
awk -F '\t' -v named="$tmp/named" -v text="$tmp/text" -v simrep="$tmp/sim_report.txt" -v quick="$QUICK" '
BEGIN {
    while ((getline l < named) > 0) { split(l, a, "\t"); fig[a[1]] = a[2] }
    while ((getline l < text) > 0) { split(l, a, "\t"); txt[a[1]] = a[2] }
    missing = 0
}
{
    line = $0
    if (line ~ /^\{\{file:sim_report\}\}$/) {
        n = 0
        while ((getline l < simrep) > 0) { print l; n++ }
        if (n == 0) { print "bench: no simulator report" > "/dev/stderr"; missing = 1 }
        next
    }
    out = ""
    while (match(line, /\{\{[^}]+\}\}/)) {
        key = substr(line, RSTART + 2, RLENGTH - 4)
        if (key ~ /^text:/) {
            k = substr(key, 6)
            if (!(k in txt)) { print "bench: unknown text " k > "/dev/stderr"; missing = 1 }
            val = txt[k]
        } else {
            if (key in fig) val = fig[key]
            else if (quick == 1) val = "n/a (quick run)"
            else { print "bench: the run produced no figure " key > "/dev/stderr"; missing = 1 }
        }
        out = out substr(line, 1, RSTART - 1) val
        line = substr(line, RSTART + RLENGTH)
    }
    print out line
}
END { exit missing }' "$TEMPLATE" >"$tmp/BENCHMARKS.md" || die "$TEMPLATE names figures this run did not produce"
mv "$tmp/BENCHMARKS.md" "$DOC"
echo "== wrote $JSON ($(wc -l <"$tmp/named") figures) and $DOC in $(($(date +%s) - t_start)) s"
