#!/bin/sh
# size-tls.sh - flash cost of the microcontroller TLS profile on Cortex-M4.
# Run by `make size` next to scripts/size.sh.
#
# Builds mbedTLS from Debian's source package with config/mbedtls-mcu.h for
# Cortex-M4 (arm-none-eabi-gcc -Os, scripts/mbedtls-mcu.sh), then prints:
#   SIZE tls_mcu        cortex-m4 <bytes>  text+data+bss of libmbedtls,
#                                          libmbedx509 and libmbedcrypto
#   SIZE tls_mcu_linked cortex-m4 <bytes>  what a TLS client adds to a
#                                          firmware once linked with
#                                          --gc-sections (bench/tls_mcu_link.c
#                                          minus an empty program, newlib-nano)
# and a FAIL line (exit 1) for a budget that is not met.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${MOAT_MCU_BUILD:-build-mcu}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac

# <name> <limit>: the figure must be below the limit.
BUDGETS='
tls_mcu_linked 98304
'

die() {
    echo "size-tls: $*" >&2
    exit 1
}

for tool in gcc size; do
    command -v "arm-none-eabi-$tool" >/dev/null 2>&1 ||
        die "arm-none-eabi-$tool not found; run 'make deps'"
done

# Progress goes to stderr; only SIZE/FAIL lines go to stdout.
sh scripts/mbedtls-mcu.sh cortex-m4 >&2
lib=$OUT/cortex-m4

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moat-size-tls.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# Berkeley format: text data bss dec hex filename; dec = text+data+bss.
arm-none-eabi-size "$lib/libmbedtls.a" "$lib/libmbedx509.a" "$lib/libmbedcrypto.a" \
    >"$tmp/libs.size" || die "arm-none-eabi-size failed"
libs=$(awk 'NR > 1 { s += $4 } END { print s + 0 }' "$tmp/libs.size")

CFLAGS="-mcpu=cortex-m4 -mthumb -Os -ffunction-sections -fdata-sections -std=c99"
LDFLAGS="--specs=nano.specs --specs=nosys.specs -Wl,--gc-sections"
printf 'int main(void)\n{\n    return 0;\n}\n' >"$tmp/empty.c"
# shellcheck disable=SC2086
arm-none-eabi-gcc $CFLAGS -Wall -Wextra -Werror "$tmp/empty.c" $LDFLAGS \
    -o "$tmp/empty.elf" || die "linking the empty program failed"
# shellcheck disable=SC2086
arm-none-eabi-gcc $CFLAGS -Wall -Wextra -Werror -I"$lib/include" \
    -DMBEDTLS_CONFIG_FILE='"mbedtls-mcu.h"' bench/tls_mcu_link.c \
    "$lib/libmbedtls.a" "$lib/libmbedx509.a" "$lib/libmbedcrypto.a" $LDFLAGS \
    -o "$tmp/tls.elf" 2>"$tmp/link.err" || {
    cat "$tmp/link.err" >&2
    die "linking bench/tls_mcu_link.c for Cortex-M4 failed"
}
# Newlib's nosys stubs warn that they are stubs; anything else is an error.
if grep -v 'is not implemented and will always fail' "$tmp/link.err" | grep -q .; then
    cat "$tmp/link.err" >&2
    die "linking bench/tls_mcu_link.c gave warnings"
fi
empty=$(arm-none-eabi-size "$tmp/empty.elf" | awk 'NR == 2 { print $4 }')
tls=$(arm-none-eabi-size "$tmp/tls.elf" | awk 'NR == 2 { print $4 }')
linked=$((tls - empty))

echo "SIZE tls_mcu cortex-m4 $libs"
echo "SIZE tls_mcu_linked cortex-m4 $linked"

fail=0
for b in $(echo "$BUDGETS" | awk 'NF == 2 { print $1 ":" $2 }'); do
    name=${b%%:*} limit=${b#*:}
    case $name in
    tls_mcu) got=$libs ;;
    tls_mcu_linked) got=$linked ;;
    *) die "unknown budget $name" ;;
    esac
    if [ "$got" -ge "$limit" ]; then
        echo "FAIL SIZE $name cortex-m4 $got bytes: over budget (must be under $limit)"
        fail=1
    fi
done
exit $fail
