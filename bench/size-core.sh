#!/bin/sh
# size-core.sh - code size of the whole portable core that moat-agent runs
# on (src/core: the MQTT engine, SNTP, JSON, config, status, commands, zones,
# OTA, ...), for Cortex-M4 and the ESP8266's lx106, with the flags of
# scripts/size.sh. The broker direction of the codec (mqtt_codec_server.c)
# is left out: tests and tools use it, a device does not.
#
# Output:
#   SIZE agent_core cortex-m4 <bytes>     text+data+bss of the objects
#   SIZE agent_core lx106 <bytes>
#   # files: ...                           what was counted
#
# The core includes two library headers: jsmn (header-only, compiled into
# json.c, so counted) and http-parser (only its header; its library code is
# not counted). Both are copied from /usr/include into a private folder so
# the cross compilers see nothing else of the host's headers.
set -eu
cd "$(dirname "$0")/.."

die() {
    echo "size-core: $*" >&2
    exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moat-size-core.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir -p "$tmp/inc"
for h in jsmn.h http_parser.h; do
    [ -f "/usr/include/$h" ] || die "/usr/include/$h not found; run 'make deps'"
    cp "/usr/include/$h" "$tmp/inc/"
done

files=""
for f in src/core/*.c; do
    case $f in */mqtt_codec_server.c) continue ;; esac
    files="$files $f"
done

# <target> <prefix> <flags>, as in scripts/size.sh
measure() {
    target=$1 prefix=$2
    shift 2
    command -v "${prefix}gcc" >/dev/null 2>&1 || die "${prefix}gcc not found; run 'make deps'"
    objs=""
    for f in $files; do
        o=$tmp/$target-$(basename "$f" .c).o
        "${prefix}gcc" "$@" -I"$tmp/inc" -Wall -Wextra -Werror -c "$f" -o "$o" ||
            die "compiling $f for $target failed"
        objs="$objs $o"
    done
    # shellcheck disable=SC2086
    bytes=$("${prefix}size" $objs | awk 'NR > 1 { s += $4 } END { print s + 0 }')
    echo "SIZE agent_core $target $bytes"
}

measure cortex-m4 arm-none-eabi- -mcpu=cortex-m4 -mthumb -Os -ffunction-sections \
    -fdata-sections -std=c99 -DMOAT_FREESTANDING -Iinclude
measure lx106 xtensa-lx106-elf- -Os -mlongcalls -ffunction-sections -fdata-sections -std=c99 \
    -DMOAT_FREESTANDING -Iinclude -ffreestanding -fbuiltin
echo "# files:$(echo "$files" | sed 's| src/core/| |g')"
