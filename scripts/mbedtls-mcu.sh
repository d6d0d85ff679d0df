#!/bin/sh
# mbedtls-mcu.sh - mbedTLS 2.28 from Debian's source package, built with
# moat's microcontroller profile (config/mbedtls-mcu.h): small record
# buffers, MFLN, TLS 1.2 client only, ECDHE + AEAD, P-256 (and RSA for
# comparison), platform calloc/free hooks so every allocation can be counted.
#
# Usage: scripts/mbedtls-mcu.sh [TARGET...]
#   TARGET: host (default), host32 (x86 -m32), cortex-m4
#
# Result, under $MOAT_MCU_BUILD (default build-mcu/):
#   src/                     the downloaded source package (.dsc, tarballs): a
#                            cache ($MOAT_MCU_SRC, default build-mcu/src)
#   mbedtls/                 the unpacked source, Debian's patches applied
#   <target>/libmbedcrypto.a, libmbedx509.a, libmbedtls.a
#   <target>/include/        the headers to compile against, with
#                            -DMBEDTLS_CONFIG_FILE='"mbedtls-mcu.h"' (the
#                            config copy there carries MOAT_MCU_DEFINES)
#
# MOAT_MCU_DEFINES="NAME=VALUE ..." overrides settings of the config for
# experiments (e.g. MBEDTLS_SSL_IN_CONTENT_LEN=1024); use another
# MOAT_MCU_BUILD folder for them.
#
# Fetching the source needs a deb-src entry: one is added
# (/etc/apt/sources.list.d/moat-src.sources, same archive and key as the deb
# entry) only when no deb-src entry exists. Once src/ holds the package, the
# script works offline. Re-running rebuilds only what changed.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${MOAT_MCU_BUILD:-build-mcu}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
CONFIG=$ROOT/config/mbedtls-mcu.h
# The downloaded source package, shared by every build folder.
SRC=${MOAT_MCU_SRC:-$ROOT/build-mcu/src}
SRC_LIST=/etc/apt/sources.list.d/moat-src.sources

log() { echo "mbedtls-mcu: $*" >&2; }
die() {
    log "$*"
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        die "needs root for: $*"
    fi
}

# ---- the source package ---------------------------------------------------

# Any deb-src line or deb822 stanza already configured?
has_deb_src() {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        if grep -Eq '^[[:space:]]*deb-src[[:space:]]|^[[:space:]]*Types:.*deb-src' "$f"; then
            return 0
        fi
    done
    return 1
}

# Write a deb-src stanza for the first deb entry of debian.sources (URIs and
# Signed-By copied), with the suite of the release this machine runs.
add_deb_src() {
    base=/etc/apt/sources.list.d/debian.sources
    [ -f "$base" ] || die "no $base to copy the archive from; add a deb-src entry by hand"
    uris=$(awk '/^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); print; exit }' "$base")
    signed=$(awk '/^Signed-By:/ { sub(/^Signed-By:[[:space:]]*/, ""); print; exit }' "$base")
    suite=$(awk '/^Suites:/ { print $2; exit }' "$base")
    if [ -z "$uris" ] || [ -z "$suite" ]; then
        die "cannot read URIs/Suites from $base"
    fi
    [ -n "$signed" ] || signed=/usr/share/keyrings/debian-archive-keyring.gpg
    log "adding $SRC_LIST ($uris $suite)"
    tmpf=$(mktemp)
    cat >"$tmpf" <<EOF
# Added by moat's scripts/mbedtls-mcu.sh: source packages, for apt-get source.
Types: deb-src
URIs: $uris
Suites: $suite
Components: main
Signed-By: $signed
EOF
    as_root install -m 0644 "$tmpf" "$SRC_LIST"
    rm -f "$tmpf"
}

fetch_source() {
    mkdir -p "$SRC"
    if ls "$SRC"/mbedtls_*.dsc >/dev/null 2>&1; then
        return 0
    fi
    if ! has_deb_src; then
        add_deb_src
    fi
    # apt's progress goes to stderr: stdout is for the callers' result lines.
    as_root apt-get update >&2
    log "downloading the mbedtls source package into $OUT/src"
    (cd "$SRC" && apt-get source --download-only mbedtls) >&2
    ls "$SRC"/mbedtls_*.dsc >/dev/null 2>&1 || die "apt-get source gave no .dsc"
}

unpack_source() {
    dsc=""
    for f in "$SRC"/mbedtls_*.dsc; do
        dsc=$f # the glob sorts; the last is the newest version
    done
    stamp=$OUT/mbedtls/.moat-unpacked
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(basename "$dsc")" ]; then
        return 0
    fi
    if ! command -v dpkg-source >/dev/null 2>&1; then
        log "installing dpkg-dev for dpkg-source"
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends dpkg-dev >&2
    fi
    rm -rf "$OUT/mbedtls"
    mkdir -p "$OUT"
    # --no-check: the .dsc was checked by apt against the archive's signed
    # index when downloaded; the cache may be used offline later.
    dpkg-source --no-check -x "$dsc" "$OUT/mbedtls" >&2
    # dpkg-source leaves a copy of the upstream tarball beside the tree.
    rm -f "$OUT"/mbedtls_*.orig.tar.*
    basename "$dsc" >"$stamp"
}

# ---- building ---------------------------------------------------------------

# The three libraries' sources, as the package's own library/Makefile lists them.
# shellcheck disable=SC2020 # tr maps backslash, space and tab to newlines
objs_of() {
    sed -n "/^$1[[:space:]]*=/,/^[[:space:]]*\$/p" "$OUT/mbedtls/library/Makefile" |
        tr -s '\\ \t' '\n\n\n' | grep '\.o$' | sed 's/\.o$//'
}

# build <target> <cc prefix> <cflags>
build() {
    target=$1 prefix=$2 cflags=$3
    dir=$OUT/$target
    mkdir -p "$dir/obj"
    # The headers used for the build are the ones to compile against; the
    # config copy carries MOAT_MCU_DEFINES, so users of the libraries see them.
    rm -rf "$dir/include.new"
    cp -R "$OUT/mbedtls/include" "$dir/include.new"
    {
        for d in ${MOAT_MCU_DEFINES:-}; do
            echo "#define ${d%%=*} ${d#*=}"
        done
        cat "$CONFIG"
    } >"$dir/include.new/mbedtls-mcu.h"
    flags="$cflags -I$dir/include -DMBEDTLS_CONFIG_FILE=<mbedtls-mcu.h>"
    # The source version and the flags: another of either rebuilds all.
    echo "$(cat "$OUT/mbedtls/.moat-unpacked") $prefix $flags" >"$dir/include.new/moat-build-flags"
    # Another config or other flags: start over.
    if ! diff -r "$dir/include.new" "$dir/include" >/dev/null 2>&1; then
        rm -rf "$dir/include" "$dir/obj"
        mv "$dir/include.new" "$dir/include"
        mkdir -p "$dir/obj"
    else
        rm -rf "$dir/include.new"
    fi
    for lib in CRYPTO:mbedcrypto X509:mbedx509 TLS:mbedtls; do
        var=OBJS_${lib%%:*}
        name=lib${lib#*:}.a
        objs=""
        for o in $(objs_of "$var"); do
            src=$OUT/mbedtls/library/$o.c
            obj=$dir/obj/$o.o
            [ -f "$src" ] || die "$var lists $o but $src is missing"
            if [ ! -f "$obj" ] || [ -n "$(find "$src" -newer "$obj")" ]; then
                # shellcheck disable=SC2086
                "${prefix}gcc" $flags -c "$src" -o "$obj" ||
                    die "compiling $o.c for $target failed"
            fi
            objs="$objs $obj"
        done
        [ -n "$objs" ] || die "no objects for $name"
        rm -f "$dir/$name"
        # shellcheck disable=SC2086
        "${prefix}ar" rcs "$dir/$name" $objs || die "${prefix}ar failed"
    done
    log "built $dir/libmbedtls.a libmbedx509.a libmbedcrypto.a"
}

[ -f "$CONFIG" ] || die "missing $CONFIG"
targets=${*:-host}
fetch_source
unpack_source
for t in $targets; do
    case $t in
    host) build host "" "-O2 -g -Wall -Wextra -Werror -std=c99" ;;
    host32)
        # 32-bit x86 (gcc-multilib): the word and pointer size of a
        # Cortex-M, so heap figures of structs match a microcontroller's.
        build host32 "" "-m32 -O2 -g -Wall -Wextra -Werror -std=c99"
        ;;
    cortex-m4)
        command -v arm-none-eabi-gcc >/dev/null 2>&1 ||
            die "arm-none-eabi-gcc not found; run 'make deps'"
        build cortex-m4 arm-none-eabi- \
            "-mcpu=cortex-m4 -mthumb -Os -ffunction-sections -fdata-sections -Wall -Wextra -Werror -std=c99"
        ;;
    *) die "unknown target $t (host, host32, cortex-m4)" ;;
    esac
done
