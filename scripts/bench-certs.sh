#!/bin/sh
# bench-certs.sh - throw-away credentials for the TLS benchmarks.
#
# Usage: scripts/bench-certs.sh DIR
# Makes DIR/p256/ and DIR/rsa2048/, each with ca.crt, server.crt,
# server.key (CN and SAN localhost, SAN 127.0.0.1, serverAuth) and
# device.crt, device.key (CN bench-device, clientAuth), valid for 30 days.
# Keys are mode 0600; DIR is the caller's to remove.
#
# They are made with moat's own PKI tool (`moat pki`) when it is built:
# $MOAT_CLI, else build/apps/cli/moat. Otherwise, or with
# MOAT_BENCH_CERTS=openssl, with openssl, and the CA key is deleted once it
# has signed.
set -eu
cd "$(dirname "$0")/.."

die() {
    echo "bench-certs: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: bench-certs.sh DIR"
dir=$1
mkdir -p "$dir"
MOAT_CLI=${MOAT_CLI:-build/apps/cli/moat}

# moatcert <dir> <key type>: the same with `moat pki` (the CA outlives what
# it signs by a day, as the tool requires).
moatcert() {
    d=$1 type=$2 pki=$1/pki
    mkdir -p "$d"
    if ! "$MOAT_CLI" pki init --dir "$pki" --key-type "$type" --days 31 >/dev/null ||
        ! "$MOAT_CLI" pki server localhost --ip 127.0.0.1 --dir "$pki" \
            --key-type "$type" --days 30 >/dev/null ||
        ! "$MOAT_CLI" pki device bench-device --dir "$pki" --key-type "$type" \
            --days 30 >/dev/null; then
        die "moat pki failed making $type credentials in $pki"
    fi
    (
        umask 077
        cp "$pki/ca.crt" "$d/ca.crt"
        cp "$pki/servers/localhost.crt" "$d/server.crt"
        cp "$pki/servers/localhost.key" "$d/server.key"
        cp "$pki/devices/bench-device.crt" "$d/device.crt"
        cp "$pki/devices/bench-device.key" "$d/device.key"
    ) || die "copying credentials from $pki failed"
}

# mkcert <dir> <openssl key options>: a CA, the broker (SAN localhost) and
# the device (CN bench-device), all with keys of that kind.
mkcert() {
    d=$1 keyopts=$2
    mkdir -p "$d"
    (
        cd "$d"
        umask 077
        # shellcheck disable=SC2086
        openssl req -x509 -new $keyopts -nodes -sha256 -days 30 \
            -keyout ca.key -out ca.crt -subj "/CN=moat bench CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        for who in server device; do
            if [ $who = server ]; then
                cn=localhost
                printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >$who.ext
            else
                cn=bench-device
                printf 'extendedKeyUsage=clientAuth\n' >$who.ext
            fi
            printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n' >>$who.ext
            # shellcheck disable=SC2086
            openssl req -new $keyopts -nodes -sha256 \
                -keyout $who.key -out $who.csr -subj "/CN=$cn" 2>/dev/null
            openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                -sha256 -days 30 -extfile $who.ext -out $who.crt 2>/dev/null
        done
        rm -f ./*.csr ./*.ext ca.srl ca.key
    ) || die "making credentials in $d failed"
}
if [ "${MOAT_BENCH_CERTS:-}" != openssl ] && [ -x "$MOAT_CLI" ]; then
    echo "bench-certs: credentials from $MOAT_CLI pki" >&2
    moatcert "$dir/p256" p256
    moatcert "$dir/rsa2048" rsa2048
else
    command -v openssl >/dev/null 2>&1 || die "openssl not found"
    echo "bench-certs: credentials from openssl" >&2
    mkcert "$dir/p256" "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
    mkcert "$dir/rsa2048" "-newkey rsa:2048"
fi

