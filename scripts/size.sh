#!/bin/sh
# size.sh - how much flash and RAM the portable core costs on the two
# microcontroller targets: Cortex-M4 (arm-none-eabi) and the ESP8266's lx106.
# Run by `make size`. Nothing here runs target code: code size is text+data+bss
# of the objects, and a struct's size is the size of a `char x[sizeof(T)]`
# symbol read back with nm -S.
#
# Output, one line per figure:
#   SIZE   <component> <target> <bytes>
#   SIZEOF <type>      <target> <bytes>
# and a FAIL line (exit 1) for every budget that is not met. A missing
# compiler or a failed compile also exits non-zero.
set -eu
cd "$(dirname "$0")/.."

# ---- what to measure: add a component or a type with one line ----------

# <component> <source>...  (a component is measured as the sum of its objects)
COMPONENTS='
mqtt_engine        src/core/mqtt_codec.c src/core/mqtt_client.c src/core/mqtt_loop.c src/core/mqtt_topic.c
mqtt_codec_server  src/core/mqtt_codec_server.c
mqtt_match         src/core/mqtt_match.c
sntp               src/core/sntp.c
strerror           src/core/error.c
'

# <name> <C type> <header>
TYPES='
moat_mqtt_client   moat_mqtt_client   moat/mqtt.h
moat_mqtt_inflight moat_mqtt_inflight moat/mqtt.h
moat_sntp          moat_sntp          moat/sntp.h
'

# <SIZE|SIZEOF> <name> <target> <limit>: the figure must be below the limit.
BUDGETS='
SIZE   mqtt_engine      cortex-m4 6144
SIZEOF moat_mqtt_client cortex-m4 100
SIZEOF moat_mqtt_client lx106     100
'

# <target> <tool prefix> <flags>
# lx106 adds -ffreestanding: its gcc ships no C library, and its <stdint.h>
# only works freestanding; -fbuiltin keeps memcpy & co. optimisable as on ARM.
TARGETS='
cortex-m4 arm-none-eabi-   -mcpu=cortex-m4 -mthumb -Os -ffunction-sections -fdata-sections -std=c99 -DMOAT_FREESTANDING -Iinclude
lx106     xtensa-lx106-elf- -Os -mlongcalls -ffunction-sections -fdata-sections -std=c99 -DMOAT_FREESTANDING -Iinclude -ffreestanding -fbuiltin
'

# ---- the measuring -------------------------------------------------------

die() {
    echo "size: $*" >&2
    exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moat-size.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# Every tool first, so a missing one is reported before any work.
echo "$TARGETS" | while read -r target prefix flags; do
    [ -n "$target" ] || continue
    for tool in gcc size nm; do
        command -v "${prefix}$tool" >/dev/null 2>&1 ||
            die "${prefix}$tool not found (for $target); run 'make deps'"
    done
done

results=$tmp/results
: >"$results"

# measure <target> <prefix> <flags>: appends "KIND name target bytes" lines.
measure() {
    target=$1 prefix=$2 flags=$3
    dir=$tmp/$target
    mkdir -p "$dir"

    echo "$COMPONENTS" | while read -r comp sources; do
        [ -n "$comp" ] || continue
        objs=""
        for src in $sources; do
            obj=$dir/$comp-$(basename "$src" .c).o
            # shellcheck disable=SC2086
            "${prefix}gcc" $flags -Wall -Wextra -Werror -c "$src" -o "$obj" ||
                die "compiling $src for $target failed"
            objs="$objs $obj"
        done
        # Berkeley format: text data bss dec hex file; dec = text+data+bss.
        # shellcheck disable=SC2086
        "${prefix}size" $objs >"$dir/$comp.size" || die "${prefix}size failed"
        bytes=$(awk 'NR > 1 { s += $4 } END { print s + 0 }' "$dir/$comp.size")
        echo "SIZE $comp $target $bytes" >>"$results"
    done || exit 1

    probe=$dir/sizeof.c
    echo "$TYPES" | awk 'NF == 3 { print "#include \"" $3 "\"" }' | sort -u >"$probe"
    echo "$TYPES" | awk 'NF == 3 { print "char moat_sizeof_" $1 "[sizeof(" $2 ")];" }' >>"$probe"
    # shellcheck disable=SC2086
    "${prefix}gcc" $flags -fno-common -c "$probe" -o "$dir/sizeof.o" ||
        die "compiling the sizeof probe for $target failed"
    "${prefix}nm" -S "$dir/sizeof.o" >"$dir/sizeof.nm" || die "${prefix}nm failed"
    echo "$TYPES" | while read -r name type _header; do
        [ -n "$name" ] || continue
        hex=$(awk -v s="moat_sizeof_$name" '$4 == s { print $2 }' "$dir/sizeof.nm")
        [ -n "$hex" ] || die "no size for $type on $target"
        echo "SIZEOF $name $target $(printf '%d' "0x$hex")" >>"$results"
    done || exit 1
}

echo "$TARGETS" | while read -r target prefix flags; do
    [ -n "$target" ] || continue
    measure "$target" "$prefix" "$flags"
done

# Components first, then types; targets in the order listed.
grep '^SIZE ' "$results"
grep '^SIZEOF ' "$results"

fail=0
echo "$BUDGETS" | {
    while read -r kind name target limit; do
        [ -n "$kind" ] || continue
        got=$(awk -v k="$kind" -v n="$name" -v t="$target" \
            '$1 == k && $2 == n && $3 == t { print $4 }' "$results")
        if [ -z "$got" ]; then
            echo "FAIL $kind $name $target: no such figure to check against the budget of $limit"
            fail=1
        elif [ "$got" -ge "$limit" ]; then
            echo "FAIL $kind $name $target $got bytes: over budget (must be under $limit)"
            fail=1
        fi
    done
    exit $fail
}
