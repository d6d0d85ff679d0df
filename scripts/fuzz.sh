#!/bin/sh
# fuzz.sh - runs every libFuzzer harness (tests/fuzz/fuzz_*.c) for a while.
# Run by `make fuzz`, after a build with -DMOAT_FUZZ=ON.
#
#   fuzz.sh <build-dir> <seconds>
#
# Each harness runs for <seconds> on its own copy of the committed seed corpus,
# <build-dir>/fuzz/<harness>/corpus, which grows from run to run; the committed
# corpus is never written. Harnesses run side by side, up to FUZZ_JOBS (default:
# the number of CPUs) at a time; FUZZ_HARNESSES="fuzz_a fuzz_b" runs only those.
# Logs and crash reproducers go to
# <build-dir>/fuzz/<harness>/run-<time>/. One line per harness:
#   FUZZ <harness> execs=<n> seconds=<s> crashes=<n>
# Exits non-zero if any harness crashed or could not run.
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 <build-dir> <seconds>" >&2
    exit 2
fi
case $2 in
'' | *[!0-9]*)
    echo "fuzz: seconds must be a whole number, not '$2'" >&2
    exit 2
    ;;
esac
seconds=$2
[ -d "$1" ] || { echo "fuzz: no build directory $1" >&2; exit 1; }
build=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
jobs=${FUZZ_JOBS:-$(nproc)}
stamp=$(date +%Y%m%d-%H%M%S)

harnesses=""
for src in tests/fuzz/fuzz_*.c; do
    [ -f "$src" ] || continue
    h=$(basename "$src" .c)
    if [ -n "${FUZZ_HARNESSES:-}" ]; then
        case " $FUZZ_HARNESSES " in
        *" $h "*) ;;
        *) continue ;;
        esac
    fi
    bin=$build/tests/fuzz/$h
    if [ ! -x "$bin" ]; then
        echo "fuzz: $bin is not built; configure $build with CC=clang -DMOAT_FUZZ=ON" >&2
        exit 1
    fi
    if [ ! -d "tests/fuzz/corpus/$h" ]; then
        echo "fuzz: no seed corpus tests/fuzz/corpus/$h" >&2
        exit 1
    fi
    harnesses="$harnesses $h"
done
[ -n "$harnesses" ] || { echo "fuzz: no harnesses in tests/fuzz${FUZZ_HARNESSES:+ named $FUZZ_HARNESSES}" >&2; exit 1; }

# run_one <harness>: the fuzzer in the background; leaves rc, start, end.
run_one() {
    h=$1
    work=$build/fuzz/$h
    run=$work/run-$stamp
    mkdir -p "$work/corpus" "$run"
    cp tests/fuzz/corpus/"$h"/* "$work/corpus/"
    (
        date +%s >"$run/start"
        rc=0
        "$build/tests/fuzz/$h" -max_total_time="$seconds" -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$run/" \
            "$work/corpus" >"$run/log" 2>&1 || rc=$?
        date +%s >"$run/end"
        echo "$rc" >"$run/rc"
    ) &
}

running=0
for h in $harnesses; do
    if [ "$running" -ge "$jobs" ]; then
        wait
        running=0
    fi
    echo "fuzz: $h for ${seconds}s, log in $build/fuzz/$h/run-$stamp/log" >&2
    run_one "$h"
    running=$((running + 1))
done
wait

failed=0
for h in $harnesses; do
    run=$build/fuzz/$h/run-$stamp
    rc=$(cat "$run/rc")
    # The final stats line; after a crash, the last status line "#<n> ...".
    execs=$(awk '/^stat::number_of_executed_units:/ { n = $2 }
                 /^#[0-9]+/ { if (n == "") last = substr($1, 2) }
                 END { print (n != "" ? n : (last != "" ? last : 0)) }' "$run/log")
    secs=$(($(cat "$run/end") - $(cat "$run/start")))
    crashes=$(find "$run" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
        -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    echo "FUZZ $h execs=$execs seconds=$secs crashes=$crashes"
    if [ "$crashes" -gt 0 ]; then
        failed=1
        echo "fuzz: $h crashed; reproducers:" >&2
        find "$run" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
            -o -name 'timeout-*' -o -name 'oom-*' \) >&2
        # What failed, and where in moat's own code.
        awk '/^harness: |ERROR:|check failed|SUMMARY:|runtime error/ ||
             (/^ *#[0-9]+ 0x/ && /\/(src|tests)\/.*\.c:[0-9]+/) { if (n++ < 30) print }' \
            "$run/log" >&2
    elif [ "$rc" -ne 0 ]; then
        failed=1
        echo "fuzz: $h exited with status $rc and no reproducer; see $run/log" >&2
        tail -n 20 "$run/log" >&2
    fi
done
exit $failed
