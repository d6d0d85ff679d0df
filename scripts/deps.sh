#!/bin/sh
# Installs the Debian packages moat needs, and only those that are missing.
# As root it runs apt-get; otherwise it uses sudo if it can, else it prints
# the exact command and fails.
set -eu

PACKAGES="build-essential cmake pkg-config clang libclang-rt-14-dev
 mosquitto mosquitto-clients libmosquitto-dev
 libmbedtls-dev libjsmn-dev libhttp-parser-dev libcmocka-dev
 gcc-arm-none-eabi libnewlib-arm-none-eabi gcc-xtensa-lx106
 gcc-avr avr-libc binutils-avr simavr libsimavr-dev
 libpaho-mqtt-dev valgrind openssl iproute2
 libmicrohttpd-dev libgnutls28-dev
 dpkg-dev gcc-multilib"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "deps: all $(echo $PACKAGES | wc -w) packages present"
    exit 0
fi

echo "deps: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
else
    echo "deps: not root and no sudo; run this as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# shellcheck disable=SC2086
$SUDO apt-get install -y --no-install-recommends $missing
