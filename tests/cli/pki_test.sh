#!/bin/bash
# tests/cli/pki_test.sh - end-to-end test of `moat pki` and `moat broker-config`.
#
# Makes a PKI in a temporary directory with the moat binary, checks every
# output with openssl (used here only as an independent checker), then starts
# a real Mosquitto with the generated config on a free loopback port and
# checks with mosquitto_pub/mosquitto_sub that the ACL and the CRL hold.
#
# usage: pki_test.sh /path/to/moat
set -u

MOAT=${1:?usage: pki_test.sh /path/to/moat}
case "$MOAT" in /*) ;; *) MOAT=$PWD/$MOAT ;; esac
# Debian puts mosquitto in /usr/sbin, which a CI PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
export LC_ALL=C

for tool in openssl mosquitto mosquitto_pub mosquitto_sub stdbuf setsid; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "pki_test: $tool is not installed (make deps installs it)" >&2
        exit 1
    fi
done

T=$(mktemp -d "${TMPDIR:-/tmp}/moat-cli-test.XXXXXX") || exit 1
BROKER_PID=
SUB_PIDS=

cleanup() {
    for p in $SUB_PIDS; do kill "$p" 2>/dev/null; done
    if [ -n "$BROKER_PID" ]; then
        kill "$BROKER_PID" 2>/dev/null
        wait "$BROKER_PID" 2>/dev/null
    fi
    if [ -n "${MOAT_TEST_KEEP:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $1"; }

# check DESC CMD...: passes when CMD exits 0.
check() {
    local desc=$1
    shift
    if "$@"; then ok "$desc"; else bad "$desc"; fi
}

# run WANT DESC CMD...: runs CMD with output in $T/out, $T/err; passes when it exits WANT.
run() {
    local want=$1 desc=$2 rc
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [ "$rc" -eq "$want" ]; then
        ok "$desc"
    else
        bad "$desc (exit $rc, wanted $want)"
        sed 's/^/    | /' "$T/out" "$T/err"
    fi
}

has() { grep -Eq -e "$2" "$1"; }     # has FILE ERE
lacks() { ! grep -Eq -e "$2" "$1"; } # lacks FILE ERE
not() { ! "$@"; }
mode_is() { [ "$(stat -c %a "$1")" = "$2" ]; }
same_pubkey() { # same_pubkey CERT(PEM) KEYFILE [DER]
    local form=${3:-PEM}
    [ "$(openssl x509 -in "$1" -noout -pubkey)" = "$(openssl pkey -in "$2" -inform "$form" -pubout)" ]
}
x509_text() { openssl x509 -in "$1" -noout -text >"$T/x509.txt" 2>&1; }

P=$T/pki
DEV1=a0b1c2d3e4f5
DEV2=0a1b2c3d4e5f
DEV3=c0ffee000003 # made from a CSR: its key never enters the PKI
OPS=ops

echo "# usage and exit codes"
run 0 "moat --help exits 0" "$MOAT" --help
check "moat --help names the pki command" has "$T/out" "pki init"
run 2 "moat without a command exits 2" "$MOAT"
run 2 "unknown command exits 2" "$MOAT" frobnicate
run 2 "unknown pki command exits 2" "$MOAT" pki frobnicate
run 0 "moat pki device --help exits 0" "$MOAT" pki device --help
check "device --help documents --not-after" has "$T/out" "--not-after"
run 2 "unknown option exits 2" "$MOAT" pki init --dir "$P" --frobnicate
run 2 "bad --days exits 2" "$MOAT" pki init --dir "$P" --days 12x
run 2 "bad --key-type exits 2" "$MOAT" pki init --dir "$P" --key-type dsa
run 2 "bad --not-after exits 2" "$MOAT" pki init --dir "$P" --not-after 20261340000000
check "usage errors made no PKI" test ! -e "$P/ca.key"
run 1 "device before init: runtime error" "$MOAT" pki device "$DEV1" --dir "$P"
check "... which says how to make a PKI" has "$T/err" "moat pki init"

echo "# pki init (ECDSA P-256)"
run 0 "pki init" "$MOAT" pki init --dir "$P"
check "ca.key is mode 0600" mode_is "$P/ca.key" 600
check "ca.key is not encrypted" has "$P/ca.key" "BEGIN EC PRIVATE KEY"
x509_text "$P/ca.crt"
check "CA is a CA" has "$T/x509.txt" "CA:TRUE"
check "CA may sign certificates and CRLs" has "$T/x509.txt" "Certificate Sign, CRL Sign"
check "CA key is P-256" has "$T/x509.txt" "NIST CURVE: P-256"
check "CA subject is moat CA" has "$T/x509.txt" "Subject: CN = moat CA"
check "CA is valid for 10 years" has "$T/x509.txt" "Not After : .* $(($(date -u +%Y) + 10)) GMT"
check "CA self-signature verifies" openssl verify -CAfile "$P/ca.crt" "$P/ca.crt"
check "ca.der is the same certificate" \
    test "$(openssl x509 -in "$P/ca.der" -inform DER -noout -fingerprint -sha256)" = \
    "$(openssl x509 -in "$P/ca.crt" -noout -fingerprint -sha256)"
check "CA key matches ca.crt" same_pubkey "$P/ca.crt" "$P/ca.key"
check "init wrote a CRL signed by the CA" openssl crl -in "$P/crl.pem" -CAfile "$P/ca.crt" -noout
openssl crl -in "$P/crl.pem" -noout -text >"$T/crl.txt" 2>&1
check "the first CRL revokes nothing" has "$T/crl.txt" "No Revoked Certificates"
check "the CRL has a nextUpdate" has "$T/crl.txt" "Next Update: "
check "the CRL has a CRL number" has "$T/crl.txt" "CRL Number"
sum_before=$(sha256sum "$P/ca.key")
run 1 "a second init is refused" "$MOAT" pki init --dir "$P"
check "... saying it will not overwrite" has "$T/err" "refusing to overwrite"
check "... and ca.key is unchanged" test "$sum_before" = "$(sha256sum "$P/ca.key")"
run 0 "MOAT_PKI_DIR chooses the directory" env MOAT_PKI_DIR="$T/envpki" "$MOAT" pki init
check "... which now holds a CA" test -s "$T/envpki/ca.crt"
env MOAT_PKI_DIR="$T/envpki" "$MOAT" pki device e1 >/dev/null 2>&1
fp_before=$(openssl x509 -in "$T/envpki/ca.crt" -noout -fingerprint -sha256)
run 0 "pki init --force replaces a CA" "$MOAT" pki init --dir "$T/envpki" --force
check "... with a new certificate" \
    test "$fp_before" != "$(openssl x509 -in "$T/envpki/ca.crt" -noout -fingerprint -sha256)"
check "... keeping the old index aside" has "$T/envpki/index.txt.old" "device.e1"
check "... and starting a new one" lacks "$T/envpki/index.txt" "e1"

echo "# pki init with an encrypted RSA-2048 key"
E=$T/enc
printf 'correct horse battery staple\n' >"$T/pass"
printf 'wrong horse\n' >"$T/badpass"
run 1 "a short passphrase is refused" env SHORT=abc "$MOAT" pki init --dir "$T/short" --passphrase-env SHORT
run 0 "pki init --key-type rsa2048 --passphrase-file" \
    "$MOAT" pki init --dir "$E" --key-type rsa2048 --passphrase-file "$T/pass" --cn "Enc CA" --org Test
check "the encrypted key is PKCS#8" has "$E/ca.key" "BEGIN ENCRYPTED PRIVATE KEY"
check "encrypted ca.key is mode 0600" mode_is "$E/ca.key" 600
check "openssl decrypts it with the passphrase" openssl pkey -in "$E/ca.key" -passin "file:$T/pass" -noout
check "openssl refuses the wrong passphrase" not openssl pkey -in "$E/ca.key" -passin "file:$T/badpass" -noout
openssl pkey -in "$E/ca.key" -passin "file:$T/pass" -noout -text 2>&1 | head -1 >"$T/k.txt"
check "the key is RSA-2048" has "$T/k.txt" "2048 bit"
x509_text "$E/ca.crt"
check "the RSA CA signs with SHA-256" has "$T/x509.txt" "sha256WithRSAEncryption"
check "the CA subject has CN and O" has "$T/x509.txt" "Subject: CN = Enc CA, O = Test"
run 1 "the wrong passphrase is refused" "$MOAT" pki device enc1 --dir "$E" --passphrase-file "$T/badpass"
check "... in words naming the file" has "$T/err" "cannot read CA key $E/ca.key: wrong passphrase"
check "... and no device was made" test ! -e "$E/devices/enc1.key"
run 1 "no passphrase and no terminal is refused" setsid -w "$MOAT" pki device enc1 --dir "$E"
check "... saying how to give one" has "$T/err" "passphrase-file"
run 0 "the right passphrase (from the environment) works" \
    env MOAT_TEST_PASS='correct horse battery staple' "$MOAT" pki device enc1 --dir "$E" --passphrase-env MOAT_TEST_PASS
check "the device chains to the RSA CA" openssl verify -CAfile "$E/ca.crt" "$E/devices/enc1.crt"
run 0 "pki init --key-type rsa3072" "$MOAT" pki init --dir "$T/r3" --key-type rsa3072
openssl pkey -in "$T/r3/ca.key" -noout -text 2>&1 | head -1 >"$T/k.txt"
check "the key is RSA-3072" has "$T/k.txt" "3072 bit"

echo "# pki server"
run 0 "pki server localhost --ip 127.0.0.1 --dns broker.test" \
    "$MOAT" pki server localhost --dir "$P" --ip 127.0.0.1 --ip ::1 --dns broker.test
x509_text "$P/servers/localhost.crt"
check "server CN is the host" has "$T/x509.txt" "Subject: CN = localhost"
check "server SAN has the host" has "$T/x509.txt" "DNS:localhost"
check "server SAN has --dns" has "$T/x509.txt" "DNS:broker.test"
check "server SAN has --ip v4" has "$T/x509.txt" "IP Address:127.0.0.1"
check "server SAN has --ip v6" has "$T/x509.txt" "IP Address:0:0:0:0:0:0:0:1"
check "server EKU is serverAuth" has "$T/x509.txt" "TLS Web Server Authentication"
check "server EKU is not clientAuth" lacks "$T/x509.txt" "TLS Web Client Authentication"
check "server is not a CA" has "$T/x509.txt" "CA:FALSE"
check "server key is mode 0600" mode_is "$P/servers/localhost.key" 600
check "server key matches its certificate" same_pubkey "$P/servers/localhost.crt" "$P/servers/localhost.key"
check "server verifies as an SSL server" openssl verify -purpose sslserver -CAfile "$P/ca.crt" "$P/servers/localhost.crt"
check "server does not verify as an SSL client" not openssl verify -purpose sslclient -CAfile "$P/ca.crt" "$P/servers/localhost.crt"
run 2 "a wildcard host is refused" "$MOAT" pki server '*.example' --dir "$P"
run 2 "a bad --ip is refused" "$MOAT" pki server h1 --dir "$P" --ip 300.1.1.1

echo "# pki device"
run 0 "pki device $DEV1" "$MOAT" pki device "$DEV1" --dir "$P"
D=$P/devices
x509_text "$D/$DEV1.crt"
check "device CN is the id" has "$T/x509.txt" "Subject: CN = $DEV1"
check "device EKU is clientAuth" has "$T/x509.txt" "TLS Web Client Authentication"
check "device EKU is not serverAuth" lacks "$T/x509.txt" "TLS Web Server Authentication"
check "device is not a CA" has "$T/x509.txt" "CA:FALSE"
check "device key usage is digitalSignature" has "$T/x509.txt" "Digital Signature"
check "device is issued by the CA" has "$T/x509.txt" "Issuer: CN = moat CA"
check "device is valid for 2 years" has "$T/x509.txt" "Not After : .* $(($(date -u +%Y) + 2)) GMT"
check "device verifies as an SSL client" openssl verify -purpose sslclient -CAfile "$P/ca.crt" "$D/$DEV1.crt"
check "device .key is mode 0600" mode_is "$D/$DEV1.key" 600
check "device .key.der is mode 0600" mode_is "$D/$DEV1.key.der" 600
check "device .der parses as DER" openssl x509 -in "$D/$DEV1.der" -inform DER -noout
check "device .der is the same certificate" \
    test "$(openssl x509 -in "$D/$DEV1.der" -inform DER -noout -fingerprint -sha256)" = \
    "$(openssl x509 -in "$D/$DEV1.crt" -noout -fingerprint -sha256)"
check "device .key matches the certificate" same_pubkey "$D/$DEV1.crt" "$D/$DEV1.key"
check "device .key.der parses and matches" same_pubkey "$D/$DEV1.crt" "$D/$DEV1.key.der" DER
check "no temporary files are left" test -z "$(find "$P" -name '*.tmp.*')"
sum_before=$(sha256sum "$D/$DEV1.key")
run 1 "a second pki device for the same id is refused" "$MOAT" pki device "$DEV1" --dir "$P"
check "... naming the key" has "$T/err" "refusing to overwrite the existing key $D/$DEV1.key"
check "... and the key is unchanged" test "$sum_before" = "$(sha256sum "$D/$DEV1.key")"
run 0 "--force replaces the key" "$MOAT" pki device "$DEV1" --dir "$P" --force
check "... with a new key" test "$sum_before" != "$(sha256sum "$D/$DEV1.key")"
check "... still mode 0600" mode_is "$D/$DEV1.key" 600
check "... that matches the new certificate" same_pubkey "$D/$DEV1.crt" "$D/$DEV1.key"
run 0 "pki device $DEV2" "$MOAT" pki device "$DEV2" --dir "$P"
run 0 "pki device with --key-type p384" "$MOAT" pki device p384dev --dir "$P" --key-type p384
x509_text "$D/p384dev.crt"
check "... has a P-384 key" has "$T/x509.txt" "NIST CURVE: P-384"
for id in 'a/b' 'a+b' 'a#b' 'a b' '' "$(printf 'x%.0s' $(seq 65))"; do
    run 2 "id '$id' is refused" "$MOAT" pki device "$id" --dir "$P"
done
check "... and nothing was written for them" test ! -e "$D/a" -a ! -e "$D/a+b.key"
run 0 "an id of 64 characters is fine" "$MOAT" pki device "$(printf 'y%.0s' $(seq 64))" --dir "$P"
run 0 "upper case, '_' and '-' are fine" "$MOAT" pki device Dev_1-a --dir "$P"

echo "# pki operator"
run 0 "pki operator $OPS" "$MOAT" pki operator "$OPS" --dir "$P"
x509_text "$P/operators/$OPS.crt"
check "operator CN is the name" has "$T/x509.txt" "Subject: CN = $OPS"
check "operator EKU is clientAuth" has "$T/x509.txt" "TLS Web Client Authentication"
check "operator key is mode 0600" mode_is "$P/operators/$OPS.key" 600
run 1 "a device may not take an operator's name" "$MOAT" pki device "$OPS" --dir "$P"
check "... which says why" has "$T/err" "already names an operator"
run 0 "pki device --operator is the same as pki operator" "$MOAT" pki device --operator ops2 --dir "$P"
check "... and wrote operators/ops2.crt" test -s "$P/operators/ops2.crt"

echo "# pki sign"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/dev3.key" \
    -subj "/CN=$DEV3/O=ignored" -out "$T/dev3.csr" 2>/dev/null
run 0 "pki sign a CSR made with openssl" "$MOAT" pki sign "$T/dev3.csr" --dir "$P"
x509_text "$D/$DEV3.crt"
check "signed CN is the CSR's" has "$T/x509.txt" "Subject: CN = $DEV3\$"
check "signed EKU is clientAuth" has "$T/x509.txt" "TLS Web Client Authentication"
check "signed certificate holds the device's key" same_pubkey "$D/$DEV3.crt" "$T/dev3.key"
check "signed certificate verifies" openssl verify -purpose sslclient -CAfile "$P/ca.crt" "$D/$DEV3.crt"
check "signed certificate has a DER copy" openssl x509 -in "$D/$DEV3.der" -inform DER -noout
check "no key was written for the CSR" test ! -e "$D/$DEV3.key"
openssl req -in "$T/dev3.csr" -outform DER -out "$T/dev3.csr.der"
run 0 "pki sign takes a DER CSR with --id" "$MOAT" pki sign "$T/dev3.csr.der" --id "$DEV3" --dir "$P"
run 2 "a CSR whose CN differs from --id is refused" "$MOAT" pki sign "$T/dev3.csr" --id other1 --dir "$P"
# Flip one bit of the signature: the last byte of the DER.
cp "$T/dev3.csr.der" "$T/bad.csr.der"
last=$(($(stat -c %s "$T/bad.csr.der") - 1))
byte=$(od -An -tu1 -j "$last" -N1 "$T/bad.csr.der" | tr -d ' ')
printf "$(printf '\\%03o' $((byte ^ 1)))" | dd of="$T/bad.csr.der" bs=1 seek="$last" conv=notrunc 2>/dev/null
run 1 "a CSR with a broken signature is refused" "$MOAT" pki sign "$T/bad.csr.der" --dir "$P"
check "... saying the signature does not verify" has "$T/err" "signature does not verify"
openssl req -new -newkey rsa:1024 -nodes -keyout "$T/weak.key" -subj "/CN=weak1" -out "$T/weak.csr" 2>/dev/null
run 1 "a CSR with an RSA-1024 key is refused" "$MOAT" pki sign "$T/weak.csr" --dir "$P"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/sl.key" \
    -subj "/CN=a\/b" -out "$T/slash.csr" 2>/dev/null
run 2 "a CSR whose CN is not a valid id is refused" "$MOAT" pki sign "$T/slash.csr" --dir "$P"

echo "# validity: --days, --not-before, --not-after"
run 0 "a device that expired in 2021" \
    "$MOAT" pki device old1 --dir "$P" --not-before 20200101000000 --not-after 20210101000000
x509_text "$D/old1.crt"
check "... has notBefore 2020-01-01" has "$T/x509.txt" "Not Before: Jan  1 00:00:00 2020 GMT"
check "... has notAfter 2021-01-01" has "$T/x509.txt" "Not After : Jan  1 00:00:00 2021 GMT"
check "... and openssl finds it expired" not openssl verify -CAfile "$P/ca.crt" "$D/old1.crt"
run 0 "a device valid from next year" \
    "$MOAT" pki device fut1 --dir "$P" --not-before "$(($(date -u +%Y) + 1))0101000000" --days 10
check "... is not yet valid for openssl" not openssl verify -CAfile "$P/ca.crt" "$D/fut1.crt"
run 0 "--days 30" "$MOAT" pki device short1 --dir "$P" --days 30
x509_text "$D/short1.crt"
check "... ends in 30 days" has "$T/x509.txt" "Not After : $(date -u -d '+30 days' '+%b %e') "
run 2 "--days with --not-after is refused" "$MOAT" pki device x1 --dir "$P" --days 3 --not-after 20300101000000
run 2 "notAfter before notBefore is refused" \
    "$MOAT" pki device x1 --dir "$P" --not-before 20300101000000 --not-after 20290101000000
run 2 "a certificate outliving the CA is refused" "$MOAT" pki device x1 --dir "$P" --days 5000

echo "# pki list"
run 0 "pki list" "$MOAT" pki list --dir "$P"
cp "$T/out" "$T/list.txt"
line_of() { grep -E "^$1 +$2 " "$T/list.txt"; }
check "list shows the CA" has "$T/list.txt" '^ca .*valid$'
check "list shows the server as valid" has "$T/list.txt" '^server +localhost .*valid$'
check "list shows $DEV1 as valid" has "$T/list.txt" "^device +$DEV1 .*valid\$"
check "list shows the CSR device" has "$T/list.txt" "^device +$DEV3 .*valid\$"
check "list shows old1 as expired" has "$T/list.txt" '^device +old1 .* 2021-01-01T00:00:00Z +expired$'
check "list shows fut1 as not yet valid" has "$T/list.txt" '^device +fut1 .*not-yet-valid$'
check "list shows the operator" has "$T/list.txt" "^operator +$OPS .*valid\$"
dev1_serial=$(openssl x509 -in "$D/$DEV1.crt" -noout -serial | cut -d= -f2)
check "list shows $DEV1's serial" has "$T/list.txt" "^device +$DEV1 +$dev1_serial "
check "list shows the CRL's next update" has "$T/list.txt" "crl.pem: next update"
run 0 "list --kind operator" "$MOAT" pki list --dir "$P" --kind operator
check "... lists only operators" lacks "$T/out" "^device"

echo "# broker-config"
ROOT_OPT=
if [ "$(id -u)" -eq 0 ]; then
    # Started as root, mosquitto would switch to the user mosquitto, which
    # cannot read the 0600 keys of this test (see PITFALLS).
    ROOT_OPT="--user root"
fi
B=$T/broker
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}
PORT=$(free_port)
run 2 "broker-config without --out is refused" "$MOAT" broker-config --dir "$P"
run 0 "broker-config" "$MOAT" broker-config --dir "$P" --out "$B" --port "$PORT" --bind 127.0.0.1 \
    --host localhost $ROOT_OPT
C=$B/mosquitto.conf
check "conf has the listener on the port" has "$C" "^listener $PORT 127.0.0.1\$"
check "conf wants TLS 1.2 or newer" has "$C" '^tls_version tlsv1.2$'
check "conf requires a client certificate" has "$C" '^require_certificate true$'
check "conf takes the CN as user name" has "$C" '^use_identity_as_username true$'
check "conf refuses anonymous clients" has "$C" '^allow_anonymous false$'
check "conf has the CA (absolute)" has "$C" "^cafile $P/ca.crt\$"
check "conf has the server certificate" has "$C" "^certfile $P/servers/localhost.crt\$"
check "conf has the server key" has "$C" "^keyfile $P/servers/localhost.key\$"
check "conf checks the CRL" has "$C" "^crlfile $P/crl.pem\$"
check "conf has the ACL file" has "$C" "^acl_file $B/acl\$"
check "conf turns persistence off" has "$C" '^persistence false$'
check "conf allows only AEAD ECDHE suites" has "$C" '^ciphers ECDHE-[A-Z0-9-]*(GCM|CHACHA20-POLY1305)'
check "conf lists no suite without AEAD" not has "$C" '^ciphers .*(CBC|SHA:|-SHA$|RC4|3DES|NULL)'
check "conf has no plain listener" test "$(grep -c '^listener' "$C")" -eq 1
A=$B/acl
check "acl: devices write their state" has "$A" '^pattern write moat/%u/state$'
check "acl: devices write their status" has "$A" '^pattern write moat/%u/status$'
check "acl: devices write their zones" has "$A" '^pattern write moat/%u/zones$'
check "acl: devices write their results" has "$A" '^pattern write moat/%u/result/#$'
check "acl: devices read their commands" has "$A" '^pattern read moat/%u/cmd/#$'
check "acl: devices ask for update blocks" has "$A" '^pattern write moat/%u/ota/req$'
check "acl: devices report update status" has "$A" '^pattern write moat/%u/ota/status$'
check "acl: devices read update offers" has "$A" '^pattern read moat/%u/ota/offer$'
check "acl: devices read update blocks" has "$A" '^pattern read moat/%u/ota/blk/#$'
check "acl: devices get nothing else" test "$(grep -c '^pattern' "$A")" -eq 9
check "acl: the operator is named" has "$A" "^user $OPS\$"
check "acl: operators readwrite moat/#" has "$A" '^topic readwrite moat/#$'
run 0 "broker-config --persistence" "$MOAT" broker-config --dir "$P" --out "$T/b2" --host localhost --persistence
check "... keeps data in the output directory" has "$T/b2/mosquitto.conf" "^persistence_location $T/b2/data/\$"
check "... and the default port is 8883" has "$T/b2/mosquitto.conf" '^listener 8883$'

# The templates in deploy/ must show what broker-config writes.
DEPLOY=$(cd "$(dirname "$0")/../../deploy" && pwd)
X=$T/expki
"$MOAT" pki init --dir "$X" >/dev/null &&
    "$MOAT" pki server broker.example.net --ip 192.0.2.10 --dir "$X" >/dev/null &&
    "$MOAT" pki operator alice --dir "$X" >/dev/null
run 0 "broker-config for the deploy/ example" \
    "$MOAT" broker-config --dir "$X" --out "$T/exout" --host broker.example.net
settings() { grep -v -e '^#' -e '^$' "$1" | sed -e "s|$X|/etc/moat/pki|g" -e "s|$T/exout|/etc/mosquitto/moat|g"; }
check "deploy/mosquitto.conf.example matches the generated form" \
    test "$(settings "$T/exout/mosquitto.conf")" = "$(settings "$DEPLOY/mosquitto.conf.example")"
check "deploy/acl.example matches the generated form" \
    test "$(settings "$T/exout/acl")" = "$(settings "$DEPLOY/acl.example")"

echo "# a real mosquitto with the generated config"
start_broker() {
    local tries=0
    while [ $tries -lt 5 ]; do
        tries=$((tries + 1))
        : >"$B/log"
        mosquitto -c "$C" >"$B/log" 2>&1 &
        BROKER_PID=$!
        local i=0
        while [ $i -lt 100 ]; do
            if grep -q 'running' "$B/log"; then return 0; fi
            if ! kill -0 "$BROKER_PID" 2>/dev/null; then break; fi
            sleep 0.1
            i=$((i + 1))
        done
        kill "$BROKER_PID" 2>/dev/null
        wait "$BROKER_PID" 2>/dev/null
        BROKER_PID=
        if ! grep -q 'in use' "$B/log"; then
            sed 's/^/    | /' "$B/log"
            return 1
        fi
        PORT=$(free_port) # lost a race for the port: take another
        "$MOAT" broker-config --dir "$P" --out "$B" --port "$PORT" --bind 127.0.0.1 \
            --host localhost $ROOT_OPT >/dev/null || return 1
    done
    return 1
}
if ! start_broker; then
    bad "mosquitto starts with the generated config"
    echo "$PASS passed, $FAIL failed"
    exit 1
fi
ok "mosquitto starts with the generated config (port $PORT)"

# TLS options for a client: tls NAME -> the cert and key of devices/NAME or operators/NAME.
tls() {
    local dir=devices
    [ -e "$P/operators/$1.crt" ] && dir=operators
    echo "--cafile $P/ca.crt --cert $P/$dir/$1.crt --key ${2:-$P/$dir/$1.key}"
}
COMMON="-h localhost -p"
pub() { # pub WHO TOPIC MESSAGE [KEY]
    mosquitto_pub $COMMON "$PORT" $(tls "$1" "${4:-}") -q 1 -t "$2" -m "$3"
}
# sub_start OUT WHO COUNT SECONDS TOPIC...: a subscriber in the background; returns when subscribed.
sub_start() {
    local out=$1 who=$2 count=$3 secs=$4 key=
    shift 4
    local topics=()
    for t in "$@"; do topics+=(-t "$t"); done
    [ "$who" = "$DEV3" ] && key=$T/dev3.key
    # Line-buffered, so "received SUBACK" shows while it runs.
    stdbuf -oL mosquitto_sub $COMMON "$PORT" $(tls "$who" "$key") -q 1 -d -v -C "$count" -W "$secs" \
        "${topics[@]}" >"$out" 2>&1 &
    SUB_PID=$!
    SUB_PIDS="$SUB_PIDS $SUB_PID"
    local i=0
    while [ $i -lt 100 ]; do
        grep -q 'received SUBACK' "$out" 2>/dev/null && return 0
        kill -0 "$SUB_PID" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    echo "    subscriber $who did not subscribe:"
    sed 's/^/    | /' "$out"
    return 1
}
msgs() { grep -E '^moat/' "$1"; } # the messages a subscriber printed (-v: topic payload)

# 1. A device publishes its status; the operator sees it.
sub_start "$T/s1" "$OPS" 1 10 'moat/#'
check "device publishes moat/<id>/status" pub "$DEV1" "moat/$DEV1/status" '{"up":1}'
wait "$SUB_PID"
check "... and the operator receives it" test "$(msgs "$T/s1")" = "moat/$DEV1/status {\"up\":1}"

# 2. The operator commands a device; the device receives it on cmd/x.
sub_start "$T/s2" "$DEV1" 1 10 "moat/$DEV1/cmd/#"
check "operator publishes moat/<id>/cmd/x" pub "$OPS" "moat/$DEV1/cmd/x" "go"
wait "$SUB_PID"
check "... and the device receives it" test "$(msgs "$T/s2")" = "moat/$DEV1/cmd/x go"

# 3. The same for the device whose certificate came from a CSR.
sub_start "$T/s3" "$DEV3" 1 10 "moat/$DEV3/cmd/#"
check "operator commands the CSR device" pub "$OPS" "moat/$DEV3/cmd/zone" "1 60"
wait "$SUB_PID"
check "... which receives it" test "$(msgs "$T/s3")" = "moat/$DEV3/cmd/zone 1 60"

# 4. A device may not publish on another device's topics, nor command itself.
#    The operator's subscriber takes the first message only: the marker that
#    DEV2 publishes after DEV1's attempts must be it.
sub_start "$T/s4" "$OPS" 1 10 "moat/$DEV2/#" "moat/$DEV1/cmd/#"
pub "$DEV1" "moat/$DEV2/status" "forged" >/dev/null 2>&1
pub "$DEV1" "moat/$DEV2/cmd/x" "forged" >/dev/null 2>&1
pub "$DEV1" "moat/$DEV1/cmd/x" "forged" >/dev/null 2>&1
check "the other device publishes its own status" pub "$DEV2" "moat/$DEV2/status" "marker"
wait "$SUB_PID"
check "a device cannot publish on another device's or its own cmd topics" \
    test "$(msgs "$T/s4")" = "moat/$DEV2/status marker"

# 5. A device may not read another device's topics. DEV2 reads its own
#    command at the same time, so the message was really sent.
sub_start "$T/s5" "$DEV1" 1 3 "moat/$DEV2/#" 'moat/+/cmd/#' 'moat/#'
spy=$SUB_PID
sub_start "$T/s5b" "$DEV2" 1 10 "moat/$DEV2/cmd/#"
check "operator commands the other device" pub "$OPS" "moat/$DEV2/cmd/secret" "s3cret"
check "the other device publishes its status" pub "$DEV2" "moat/$DEV2/status" "s3cret2"
wait "$SUB_PID"
wait "$spy"
check "... the other device receives its command" test "$(msgs "$T/s5b")" = "moat/$DEV2/cmd/secret s3cret"
check "... and the first device reads none of it" lacks "$T/s5" 's3cret'

# 6. No certificate, a certificate from another CA, an expired one, or the
#    broker's own certificate (serverAuth only): all refused.
check "a client without a certificate is refused" \
    not mosquitto_pub $COMMON "$PORT" --cafile "$P/ca.crt" -q 1 -t "moat/$DEV1/status" -m x
check "a device of another CA is refused" \
    not mosquitto_pub $COMMON "$PORT" --cafile "$P/ca.crt" --cert "$E/devices/enc1.crt" \
    --key "$E/devices/enc1.key" -q 1 -t moat/enc1/status -m x
check "an expired device certificate is refused" not pub old1 moat/old1/status x
check "the broker certificate is refused as a client" \
    not mosquitto_pub $COMMON "$PORT" --cafile "$P/ca.crt" --cert "$P/servers/localhost.crt" \
    --key "$P/servers/localhost.key" -q 1 -t moat/localhost/status -m x

# 7. Revocation: DEV2 works, is revoked, the broker reloads (SIGHUP), and
#    DEV2 is refused while DEV1 still works.
check "before revocation the device connects" pub "$DEV2" "moat/$DEV2/status" "before"
run 0 "pki revoke $DEV2" "$MOAT" pki revoke "$DEV2" --dir "$P"
dev2_serial=$(openssl x509 -in "$D/$DEV2.crt" -noout -serial | cut -d= -f2)
openssl crl -in "$P/crl.pem" -noout -text >"$T/crl.txt" 2>&1
check "the CRL lists the revoked serial" has "$T/crl.txt" "Serial Number: $dev2_serial"
check "the CRL lists only it" test "$(grep -c 'Serial Number' "$T/crl.txt")" -eq 1
check "the CRL verifies against the CA" openssl crl -in "$P/crl.pem" -CAfile "$P/ca.crt" -noout
crl_number_is() { [ "$(grep -A1 'CRL Number' "$T/crl.txt" | tail -1 | tr -d ' ')" = "$1" ]; }
check "the CRL number went from 1 to 2" crl_number_is 2
check "openssl finds the device revoked" \
    not openssl verify -crl_check -CAfile "$P/ca.crt" -CRLfile "$P/crl.pem" "$D/$DEV2.crt"
check "openssl still accepts the other device" \
    openssl verify -crl_check -CAfile "$P/ca.crt" -CRLfile "$P/crl.pem" "$D/$DEV1.crt"
run 0 "pki list after revoke" "$MOAT" pki list --dir "$P"
check "list shows the device revoked" has "$T/out" "^device +$DEV2 .*revoked\$"
run 1 "revoking it again finds nothing to revoke" "$MOAT" pki revoke "$DEV2" --dir "$P"
kill -HUP "$BROKER_PID"
i=0
while [ $i -lt 50 ] && [ "$(grep -c 'Reloading config' "$B/log")" -lt 1 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.5
sub_start "$T/s7" "$OPS" 1 4 "moat/$DEV2/#"
check "the revoked device is refused" not pub "$DEV2" "moat/$DEV2/status" "after"
wait "$SUB_PID"
check "... and nothing it sent arrived" lacks "$T/s7" "after"
check "the other device still connects" pub "$DEV1" "moat/$DEV1/status" "still here"

# 8. A new operator, after broker-config and a reload, commands any device.
run 0 "pki operator ops3" "$MOAT" pki operator ops3 --dir "$P"
run 0 "broker-config again" "$MOAT" broker-config --dir "$P" --out "$B" --port "$PORT" \
    --bind 127.0.0.1 --host localhost $ROOT_OPT
check "the ACL names the new operator" has "$A" '^user ops3$'
kill -HUP "$BROKER_PID"
i=0
while [ $i -lt 50 ] && [ "$(grep -c 'Reloading config' "$B/log")" -lt 2 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.5
sub_start "$T/s8" "$DEV3" 1 10 "moat/$DEV3/cmd/#"
check "the new operator commands a device" pub ops3 "moat/$DEV3/cmd/y" "from ops3"
wait "$SUB_PID"
check "... which receives it" test "$(msgs "$T/s8")" = "moat/$DEV3/cmd/y from ops3"

kill "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null
BROKER_PID=
check "the broker log shows the device identities as user names" has "$B/log" "u'$DEV1'"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
