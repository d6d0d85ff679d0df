#!/bin/bash
# tests/ota/ota_cli_test.sh - end-to-end test of the firmware signing commands:
# moat keygen, keyrotate, sign, image info, image verify.
#
# Keys are made in a temporary directory for this run only. Every refusal a
# device makes is provoked on a real image (tampered payload, header,
# signature and rotation record; wrong key; lower counter; older version;
# wrong product; truncated; trailing bytes) and must come with its own words.
# openssl checks, independently, that the keys are standard PEM and that the
# signature is ECDSA P-256 over SHA-256 of the header.
#
# usage: ota_cli_test.sh /path/to/moat
set -u

MOAT=${1:?usage: ota_cli_test.sh /path/to/moat}
case "$MOAT" in /*) ;; *) MOAT=$PWD/$MOAT ;; esac
export LC_ALL=C

T=$(mktemp -d "${TMPDIR:-/tmp}/moat-ota-test.XXXXXX") || exit 1
cleanup() {
    if [ -n "${MOAT_TEST_KEEP:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
cd "$T" || exit 1

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $1"; }
check() {
    local desc=$1
    shift
    if "$@"; then ok "$desc"; else bad "$desc"; fi
}
# run WANT DESC CMD...: output in $T/out and $T/err; passes when CMD exits WANT.
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
has() { grep -Fq -e "$2" "$1"; } # has FILE STRING
mode_is() { [ "$(stat -c %a "$1")" = "$2" ]; }

# flip FILE OFFSET: xor one byte with 0x01, in place.
flip() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
# raw_to_der RAW DER: a raw 64-byte r||s signature as an ASN.1 ECDSA-Sig-Value.
der_int() { # the 32 bytes (decimal, one a line) on stdin as a DER INTEGER, octal escapes
    local -a b
    mapfile -t b
    local i=0
    while [ $i -lt 31 ] && [ "${b[$i]}" -eq 0 ]; do i=$((i + 1)); done
    local out="" n=$((32 - i))
    if [ "${b[$i]}" -ge 128 ]; then out='\000'; n=$((n + 1)); fi
    for ((; i < 32; i++)); do out="$out$(printf '\\%03o' "${b[$i]}")"; done
    printf '\\002%s%s' "$(printf '\\%03o' $n)" "$out"
}
raw_to_der() {
    local r s
    r=$(od -An -tu1 -v -N32 "$1" | tr -s ' ' '\n' | grep . | der_int)
    s=$(od -An -tu1 -v -j32 -N32 "$1" | tr -s ' ' '\n' | grep . | der_int)
    local body="$r$s"
    local len=$(printf "$body" | wc -c)
    printf "\\060$(printf '\\%03o' "$len")$body" >"$2"
}
u16le() { od -An -tu2 -j "$2" -N2 --endian=little "$1" | tr -d ' '; }
size() { stat -c %s "$1"; }

# refused DESC WORDS ARGS...: `moat image verify ARGS` exits 1 and says WORDS.
refused() {
    local desc=$1 words=$2
    shift 2
    run 1 "$desc is refused" "$MOAT" image verify "$@"
    check "... saying \"$words\"" has "$T/err" "$words"
}

head -c 20000 /dev/urandom >fw.bin

echo "# usage"
run 0 "moat --help lists sign" "$MOAT" --help
check "... and keygen and image" has "$T/out" "image verify"
run 0 "moat sign --help" "$MOAT" sign --help
check "... documents --counter" has "$T/out" "--counter N"
run 2 "sign without options is a usage error" "$MOAT" sign fw.bin
run 2 "a bad version is a usage error" "$MOAT" sign --key k.pem --product p --version 1.2 \
    --counter 1 fw.bin -o x.img
run 2 "a product with a space is a usage error" "$MOAT" sign --key k.pem --product "a b" \
    --version 1.2.3 --counter 1 fw.bin -o x.img
run 2 "a counter over 32 bits is a usage error" "$MOAT" sign --key k.pem --product p \
    --version 1.2.3 --counter 4294967296 fw.bin -o x.img
run 2 "image without a command" "$MOAT" image
run 2 "image verify without --pub" "$MOAT" image verify fw.bin

echo "# keygen"
run 0 "keygen fw1" "$MOAT" keygen fw1
check "fw1.pem is mode 0600" mode_is fw1.pem 600
check "fw1.pub is mode 0644" mode_is fw1.pub 644
check "keygen prints the key id" grep -Eq '^key id [0-9a-f]{16}$' "$T/out"
ID1=$(sed -n 's/^key id //p' "$T/out")
run 0 "keygen fw2" "$MOAT" keygen fw2
ID2=$(sed -n 's/^key id //p' "$T/out")
run 0 "keygen other" "$MOAT" keygen other
check "openssl reads fw1.pem as a P-256 key" sh -c 'openssl pkey -in fw1.pem -noout -text | grep -q "NIST CURVE: P-256"'
check "fw1.pub is fw1.pem's public key" test "$(openssl pkey -in fw1.pem -pubout)" = "$(cat fw1.pub)"
check "the key id is SHA-256 of the uncompressed point" test "$ID1" = \
    "$(openssl pkey -pubin -in fw1.pub -outform DER | tail -c 65 | sha256sum | cut -c1-16)"
sum=$(sha256sum fw1.pem)
run 1 "keygen refuses to overwrite a key" "$MOAT" keygen fw1
check "... saying so" has "$T/err" "refusing to overwrite"
check "... and fw1.pem is unchanged" test "$sum" = "$(sha256sum fw1.pem)"
run 0 "keygen --encrypt with a passphrase file" "$MOAT" keygen enc --passphrase-file /dev/stdin <<<"correct horse battery"
check "enc.pem is encrypted" has enc.pem "BEGIN ENCRYPTED PRIVATE KEY"

echo "# sign, info, verify"
run 0 "sign" "$MOAT" sign --key fw1.pem --product moat-demo --version 1.2.3 --counter 5 \
    fw.bin -o fw.img
check "sign names the key id" has "$T/out" "signed by key id $ID1"
check "the image is header + signature + payload" test "$(size fw.img)" = $((128 + 64 + 20000))
check "the image starts with MOAT" test "$(head -c 4 fw.img)" = MOAT
run 0 "image info" "$MOAT" image info fw.img
for field in "product:          moat-demo" "version:          1.2.3" "security counter: 5" \
    "payload size:     20000" "payload sha256:   $(sha256sum fw.bin | cut -c1-64)" \
    "key id:           $ID1" "rotation records: 0" "format:           1" \
    "payload hash:     matches the header" "signature:        not checked"; do
    check "info shows '$field'" has "$T/out" "$field"
done
run 0 "image info --pub fw1.pub" "$MOAT" image info --pub fw1.pub fw.img
check "... says the signature verifies" has "$T/out" "signature:        verifies (key id $ID1)"
run 1 "image info --pub fw2.pub" "$MOAT" image info --pub fw2.pub fw.img
check "... says it does not verify" has "$T/out" "DOES NOT VERIFY: image is signed by unknown key id $ID1"
run 0 "image verify" "$MOAT" image verify --pub fw1.pub fw.img
check "... ok" has "$T/out" "fw.img: ok: moat-demo 1.2.3, security counter 5"
run 0 "verify with a device policy that takes it" "$MOAT" image verify --pub fw2.pub --pub fw1.pub \
    --product moat-demo --counter 5 --running 1.2.3 fw.img
head -c 128 fw.img >hdr.bin
tail -c +129 fw.img | head -c 64 >sig.raw
raw_to_der sig.raw sig.der
check "openssl verifies the signature over the header" \
    sh -c 'openssl dgst -sha256 -verify fw1.pub -signature sig.der hdr.bin >/dev/null'
run 0 "sign with an encrypted key" env PW="correct horse battery" "$MOAT" sign --key enc.pem \
    --passphrase-env PW --product moat-demo --version 1.2.4 --counter 5 fw.bin -o enc.img
run 1 "sign with the wrong passphrase" env PW="wrong" "$MOAT" sign --key enc.pem \
    --passphrase-env PW --product moat-demo --version 1.2.4 --counter 5 fw.bin -o enc2.img
check "... says so" has "$T/err" "wrong passphrase"
check "... and writes no image" test ! -e enc2.img

echo "# every refusal, in words"
cp fw.img t.img; flip t.img 10000
refused "a tampered payload" "payload SHA-256 does not match the header" --pub fw1.pub t.img
run 1 "info on a tampered payload" "$MOAT" image info t.img
check "... says the hash does not match" has "$T/out" "DOES NOT MATCH"
cp fw.img t.img; flip t.img 44 # version major
refused "a tampered header" "image signature does not verify with key id $ID1" --pub fw1.pub t.img
cp fw.img t.img; flip t.img 150 # inside the signature
refused "a tampered signature" "image signature does not verify" --pub fw1.pub t.img
refused "an image signed by another key" "image is signed by unknown key id $ID1" --pub other.pub fw.img
refused "a lower security counter" "image security counter 5 is lower than the device's 6" \
    --pub fw1.pub --counter 6 fw.img
refused "an older version at the same counter" \
    "image version 1.2.3 is older than the running 1.3.0 at the same security counter 5" \
    --pub fw1.pub --counter 5 --running 1.3.0 fw.img
refused "another product's image" 'image is for product "moat-demo", this device is "irrigator"' \
    --pub fw1.pub --product irrigator fw.img
head -c 15000 fw.img >t.img
refused "a truncated image" "image is truncated: it ended after 15000 of 20192 bytes" --pub fw1.pub t.img
head -c 100 fw.img >t.img
run 1 "a header cut short" "$MOAT" image info t.img
check "... says so" has "$T/err" "image header is cut short: 100 of 128 bytes"
cp fw.img t.img; printf 'x' >>t.img
refused "an image with bytes after its end" "image is longer than its header says" --pub fw1.pub t.img
cp fw.img t.img; flip t.img 0
refused "a file that is not an image" 'not a moat image' --pub fw1.pub t.img

echo "# key rotation"
run 0 "keyrotate fw1 -> fw2" "$MOAT" keyrotate --key fw1.pem --to fw2.pub -o r12.rot
check "the record is 156 bytes" test "$(size r12.rot)" = 156
run 0 "sign with fw2 and the record" "$MOAT" sign --key fw2.pem --rotation r12.rot \
    --product moat-demo --version 2.0.0 --counter 6 fw.bin -o rot.img
check "the header grew by one record" test "$(u16le rot.img 6)" = 284
run 0 "a device that trusts only fw1 takes it" "$MOAT" image verify --pub fw1.pub --counter 5 rot.img
check "... and learns to trust fw2" has "$T/out" "trust key id $ID2 from now on"
run 0 "a device that trusts fw2 takes it" "$MOAT" image verify --pub fw2.pub rot.img
run 0 "info shows the record" "$MOAT" image info --pub fw1.pub rot.img
check "... with both key ids" has "$T/out" "record 1:       key id $ID1 -> key id $ID2"
run 0 "sign with fw2 alone" "$MOAT" sign --key fw2.pem --product moat-demo --version 2.0.1 \
    --counter 6 fw.bin -o norot.img
refused "fw2's image without the record, on a device that trusts fw1" "unknown key id $ID2" \
    --pub fw1.pub norot.img
run 0 "keyrotate other -> fw2" "$MOAT" keyrotate --key other.pem --to fw2.pub -o rx2.rot
run 0 "sign with a record by an untrusted key" "$MOAT" sign --key fw2.pem --rotation rx2.rot \
    --product moat-demo --version 2.0.0 --counter 6 fw.bin -o badrot.img
refused "a rotation signed by an unknown key" "its key rotation records start from unknown key id" \
    --pub fw1.pub badrot.img
cp rot.img t.img; flip t.img $((128 + 24 + 10)) # the new key in the record
refused "a tampered rotation record" "key rotation record 1: its key id does not match its key" \
    --pub fw1.pub t.img
cp rot.img t.img; flip t.img $((128 + 92 + 5)) # the record's signature
refused "a forged rotation record" "key rotation record 1 (to key id $ID2) is not validly signed by key id $ID1" \
    --pub fw1.pub t.img
run 1 "sign refuses a record that does not lead to its key" "$MOAT" sign --key other.pem \
    --rotation r12.rot --product moat-demo --version 2.0.0 --counter 6 fw.bin -o x.img
check "... saying so" has "$T/err" "does not lead to the signing key"
run 0 "sign --rotate-to: fw1 introduces fw2" "$MOAT" sign --key fw1.pem --rotate-to fw2.pub \
    --product moat-demo --version 1.9.0 --counter 5 fw.bin -o intro.img
run 0 "a device on fw1 takes it" "$MOAT" image verify --pub fw1.pub intro.img
check "... and learns fw2" has "$T/out" "trust key id $ID2 from now on"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
