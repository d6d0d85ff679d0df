#!/bin/bash
# tests/server/server_test.sh - moat-server end to end over HTTPS with mutual
# TLS, against the device's client (moat_http_fetch over moat_tls).
#
# usage: server_test.sh SECTION MOAT MOAT_SERVER FETCH_CLIENT MAKE_IMAGE
#
# Every section makes its own PKI with `moat pki`, its own server directory
# of images and configs, and its own moat-server on a free loopback port
# (--port 0, read back from --port-file), so ctest runs them in parallel.
# Every process started here is stopped by its pid.
#
# Sections:
#   images   200 with the next image (byte-identical), 304 when current, the
#            product rule, a bad curimage
#   config   config.json per device, 404 for a device without one
#   refuse   no client certificate, another CA's certificate, a server
#            certificate as client, a revoked one, path traversal, listings
#   resume   a connection cut in the middle resumes with Range: the rest
#            only, byte-identical; a partial file resumes too; 1 MB rate
set -u

SECTION=${1:?usage: server_test.sh SECTION MOAT MOAT_SERVER FETCH_CLIENT MAKE_IMAGE}
MOAT=${2:?}
SERVER=${3:?}
FETCH=${4:?}
MKIMG=${5:?}
export LC_ALL=C

T=$(mktemp -d "${TMPDIR:-/tmp}/moat-server-test.$SECTION.XXXXXX") || exit 1
SERVER_PID=
PASS=0
FAIL=0

cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    if [ "$FAIL" -ne 0 ] || [ -n "${MOAT_TEST_KEEP:-}" ]; then
        echo "kept $T"
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT

ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $1"; }
check() {
    local desc=$1
    shift
    if "$@"; then ok "$desc"; else bad "$desc"; fi
}
hasf() { grep -Fq -e "$2" "$1" 2>/dev/null; }
lacks() { ! grep -Fq -e "$2" "$1" 2>/dev/null; }
now_ms() { date +%s%3N; }

DEV=a0b1c2d3e4f5
DEV2=b0b1c2d3e4f5
P=$T/pki
D=$T/srv
mkdir -p "$D/images" "$D/configs" "$D/devices" || exit 1

"$MOAT" pki init --dir "$P" >/dev/null &&
    "$MOAT" pki server localhost --ip 127.0.0.1 --dir "$P" >/dev/null &&
    "$MOAT" pki device "$DEV" --dir "$P" >/dev/null &&
    "$MOAT" pki device "$DEV2" --dir "$P" >/dev/null ||
    { echo "cannot make the PKI"; exit 1; }

# Images: two of product garden, one of product pump, and a private key in
# the server directory that must never come out.
"$MKIMG" "$D/images/garden-1.0.0.bin" garden 1.0.0 1 4000 1 &&
    "$MKIMG" "$D/images/garden-1.1.0.bin" garden 1.1.0 1 1048576 2 &&
    "$MKIMG" "$D/images/pump-2.0.0.bin" pump 2.0.0 1 3000 3 ||
    { echo "cannot make images"; exit 1; }
cp "$P/ca.key" "$D/ca.key"
cp "$P/ca.key" "$D/images/.ca.key"
printf '{"statusinterval": 5000, "downloadpath": "/fw/"}\n' >"$D/configs/$DEV.json"
printf '{"product": "pump"}\n' >"$D/devices/$DEV2.json"

# start_server [options...]: PORT is set once it listens.
start_server() {
    local i
    rm -f "$D/port"
    "$SERVER" --dir "$D" --cert "$P/servers/localhost.crt" --key "$P/servers/localhost.key" \
        --ca "$P/ca.crt" --crl "$P/crl.pem" --port 0 --bind 127.0.0.1 \
        --port-file "$D/port" --path /fw/ --product garden "$@" >"$T/server.log" 2>&1 &
    SERVER_PID=$!
    for i in $(seq 1 100); do
        if [ -s "$D/port" ]; then
            PORT=$(cat "$D/port")
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "moat-server did not start:"
    cat "$T/server.log"
    return 1
}

# stop_server: SIGTERM, then it must exit 0 with nothing from the
# sanitizers in its log (the ASan build runs this too).
stop_server() {
    local rc
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    rc=$?
    SERVER_PID=
    if [ "$rc" -eq 0 ] && lacks "$T/server.log" "Sanitizer" && hasf "$T/server.log" "stopped"; then
        ok "moat-server stops cleanly on SIGTERM"
    else
        bad "moat-server exit status $rc: $(tail -n 5 "$T/server.log")"
    fi
}

# fetch ID OUT PATH [options]: the device's GET; its report in $OUT.txt.
fetch() {
    local id=$1 out=$2 path=$3
    shift 3
    "$FETCH" --host 127.0.0.1 --port "$PORT" --ca "$P/ca.crt" \
        --cert "$P/devices/$id.crt" --key "$P/devices/$id.key" \
        --path "$path" --out "$out" --retry-ms 50 "$@" >"$out.txt" 2>&1
}

# fetch_as CERT KEY OUT PATH: the same with any certificate.
fetch_as() {
    "$FETCH" --host 127.0.0.1 --port "$PORT" --ca "$P/ca.crt" --cert "$1" --key "$2" \
        --path "$4" --out "$3" --retry-ms 50 --attempts 2 >"$3.txt" 2>&1
}

# The value of key= in a report or log line.
field() { sed -n "s/.*[ ^]$2=\([^ ]*\).*/\1/p" "$1" | head -n 1; }

section_images() {
    start_server || return
    fetch "$DEV" "$T/a.bin" "/fw/firmware.bin?curimage=1.0.0"
    check "200 with the next image" hasf "$T/a.bin.txt" "status=200"
    check "the image arrives byte-identical" cmp -s "$T/a.bin" "$D/images/garden-1.1.0.bin"
    check "in one connection" hasf "$T/a.bin.txt" "connections=1"

    fetch "$DEV" "$T/b.bin" "/fw/firmware.bin?curimage=1.1.0"
    check "304 when the device is current" hasf "$T/b.bin.txt" "status=304"
    check "and no body" test ! -s "$T/b.bin"

    fetch "$DEV" "$T/c.bin" "/fw/firmware.bin?curimage=garden-1.1.0.bin"
    check "304 for the current image by name" hasf "$T/c.bin.txt" "status=304"

    fetch "$DEV" "$T/d.bin" "/fw//firmware.bin?curimage=v1.0.5"
    check "downloadpath with a doubled slash, curimage v1.0.5: next image" \
        cmp -s "$T/d.bin" "$D/images/garden-1.1.0.bin"

    fetch "$DEV2" "$T/e.bin" "/fw/firmware.bin?curimage=1.0.0"
    check "the product of devices/<id>.json: pump" cmp -s "$T/e.bin" "$D/images/pump-2.0.0.bin"
    fetch "$DEV2" "$T/f.bin" "/fw/firmware.bin?curimage=2.0.0"
    check "pump device on 2.0.0 is current" hasf "$T/f.bin.txt" "status=304"

    fetch "$DEV" "$T/g.bin" "/fw/firmware.bin?curimage=latest"
    check "a curimage that is no version: 400 in words" \
        hasf "$T/g.bin.txt" "error: update server answered 400 Bad Request for /fw/firmware.bin"

    # a newer image appears: no restart needed
    "$MKIMG" "$D/images/garden-1.2.0.bin.tmp" garden 1.2.0 1 5000 4 &&
        mv "$D/images/garden-1.2.0.bin.tmp" "$D/images/garden-1.2.0.bin"
    fetch "$DEV" "$T/h.bin" "/fw/firmware.bin?curimage=1.1.0"
    check "a new image is served at once" cmp -s "$T/h.bin" "$D/images/garden-1.2.0.bin"
    check "the server logs the device by its certificate CN" \
        hasf "$T/server.log" "127.0.0.1 $DEV status=200"
}

section_config() {
    start_server || return
    fetch "$DEV" "$T/cfg.json" "/fw/config.json"
    check "config.json of the device (its CN)" cmp -s "$T/cfg.json" "$D/configs/$DEV.json"
    check "with 200" hasf "$T/cfg.json.txt" "status=200"
    fetch "$DEV2" "$T/cfg2.json" "/fw/config.json"
    check "no config for another device: 404 in words" \
        hasf "$T/cfg2.json.txt" "error: update server answered 404 Not Found for /fw/config.json"
    check "never another device's config" test ! -s "$T/cfg2.json"
    fetch "$DEV" "$T/cfg3.json" "/config.json"
    check "outside the download path: 404" hasf "$T/cfg3.json.txt" "answered 404"

    stop_server
    fetch "$DEV" "$T/down.json" "/fw/config.json" --attempts 2
    check "no server: the client gives up in words" \
        hasf "$T/down.json.txt" "cannot connect to update server 127.0.0.1:$PORT"
    check "after the attempts it was given" hasf "$T/down.json.txt" "gave up after 2 attempts"
}

section_refuse() {
    local other=$T/other out req
    start_server || return

    # A client without a certificate does not get past the TLS handshake.
    out=$T/nocert.txt
    req='GET /fw/config.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
    if command -v openssl >/dev/null 2>&1; then
        for v in -tls1_2 -tls1_3; do
            printf "$req" | timeout 20 openssl s_client $v -quiet -connect "127.0.0.1:$PORT" \
                -CAfile "$P/ca.crt" -servername localhost >"$out" 2>&1
            check "no client certificate ($v): no HTTP answer" lacks "$out" "HTTP/1.1"
            check "no client certificate ($v): no config" lacks "$out" "statusinterval"
        done
    else
        bad "openssl is not installed (make deps installs it)"
    fi

    # A device of another CA.
    "$MOAT" pki init --dir "$other" >/dev/null && "$MOAT" pki device "$DEV" --dir "$other" >/dev/null
    fetch_as "$other/devices/$DEV.crt" "$other/devices/$DEV.key" "$T/o.bin" "/fw/config.json"
    check "a certificate of another CA is refused in the handshake" \
        hasf "$T/o.bin.txt" "the update server refused our certificate (alert: unknown_ca)"
    check "and gets nothing" test ! -s "$T/o.bin"

    # The server's own certificate (serverAuth only) as a client certificate.
    fetch_as "$P/servers/localhost.crt" "$P/servers/localhost.key" "$T/s.bin" "/fw/config.json"
    check "a server certificate cannot act as a device" \
        hasf "$T/s.bin.txt" "the update server refused our certificate"

    # Path traversal, encoded traversal, listings, files by name: refused.
    for path in "/fw/../ca.key" "/fw/../../pki/ca.key" "/fw/%2e%2e/ca.key" \
        "/fw/%2E%2E/%2e%2e/ca.key" "/fw/..%2fca.key" "/fw/images/.ca.key" "/fw/images/" \
        "/fw/" "/" "/ca.key" "/fw/configs/$DEV.json" "/fw/images/garden-1.0.0.bin" \
        "/fw/./config.json" "/fw/config.json/../../ca.key"; do
        fetch "$DEV" "$T/t.bin" "$path"
        if hasf "$T/t.bin.txt" "answered 400" || hasf "$T/t.bin.txt" "answered 404"; then
            ok "refused: $path ($(sed -n 's/.*answered \([0-9]*\).*/\1/p' "$T/t.bin.txt"))"
        else
            bad "refused: $path: $(cat "$T/t.bin.txt")"
        fi
        check "nothing served for $path" lacks "$T/t.bin" "PRIVATE KEY"
    done
    check "no private key ever left the server" lacks "$T/server.log" "PRIVATE KEY"
    stop_server

    # A revoked device, once the CRL says so.
    "$MOAT" pki revoke "$DEV2" --dir "$P" >/dev/null || bad "moat pki revoke"
    start_server || return
    fetch "$DEV2" "$T/r.bin" "/fw/config.json" --attempts 1
    check "a revoked certificate is refused" \
        hasf "$T/r.bin.txt" "the update server refused our certificate (alert: certificate_revoked)"
    fetch "$DEV" "$T/r2.bin" "/fw/config.json"
    check "while the others still work" cmp -s "$T/r2.bin" "$D/configs/$DEV.json"
}

section_resume() {
    local size cut first sent1 sent2 t0 t1 ms
    size=$(stat -c %s "$D/images/garden-1.1.0.bin")
    cut=300000
    start_server --cut-after "$cut" || return

    fetch "$DEV" "$T/r.bin" "/fw/firmware.bin?curimage=1.0.0"
    check "a download cut after $cut bytes completes" hasf "$T/r.bin.txt" "status=206"
    check "byte-identical" cmp -s "$T/r.bin" "$D/images/garden-1.1.0.bin"
    check "over two connections" hasf "$T/r.bin.txt" "connections=2"
    check "every byte delivered once ($size)" hasf "$T/r.bin.txt" "delivered=$size "
    check "the server broke the first one" hasf "$T/server.log" "(connection broken)"
    # The second request asks for the rest only, and gets only the rest.
    first=$(sed -n 's/.*status=206 range=bytes=\([0-9]*\)-.*/\1/p' "$T/server.log" | head -n 1)
    sent1=$(grep -F "status=200" "$T/server.log" | sed -n 's/.* sent=\([0-9]*\).*/\1/p' | head -n 1)
    sent2=$(grep -F "status=206" "$T/server.log" | sed -n 's/.* sent=\([0-9]*\).*/\1/p' | head -n 1)
    echo "# cut: first connection sent ${sent1:-?}, resumed at ${first:-?}, second sent ${sent2:-?} of $size"
    if [ -n "$first" ] && [ -n "$sent2" ] && [ -n "$sent1" ] && [ "$first" -gt 0 ] &&
        [ "$first" -le "$sent1" ] && [ $((first + sent2)) -eq "$size" ]; then
        ok "the resumed request starts at the bytes held ($first) and re-sends only the remainder"
    else
        bad "resume: first=$first sent1=$sent1 sent2=$sent2 size=$size"
    fi

    etag=$(sed -n 's/.* etag=\([^ ]*\).*/\1/p' "$T/r.bin.txt")
    check "the image has an ETag" test -n "$etag" -a "$etag" != "-"
    check "the resumed request carried If-Range with it" \
        hasf "$T/server.log" "status=206 range=bytes=$first- if-range=$etag "

    # A partial file from an earlier run (a reboot): Range from its size,
    # If-Range with the ETag kept with it.
    head -c 500000 "$D/images/garden-1.1.0.bin" >"$T/p.bin"
    fetch "$DEV" "$T/p.bin" "/fw/firmware.bin?curimage=1.0.0" --resume --if-range "$etag"
    check "a partial file resumes with 206 from its size" hasf "$T/p.bin.txt" "first=500000"
    check "only the remainder is fetched" hasf "$T/p.bin.txt" "delivered=$((size - 500000)) "
    check "and the file is complete, byte-identical" cmp -s "$T/p.bin" "$D/images/garden-1.1.0.bin"

    # Partial bytes of another version (its ETag differs): the whole image
    # comes again, and the receiver starts over instead of mixing the two.
    printf 'stale bytes of an older image' >"$T/q.bin"
    fetch "$DEV" "$T/q.bin" "/fw/firmware.bin?curimage=1.0.0" --resume --if-range '"0-0-0"'
    check "a changed image comes whole (200) despite Range" hasf "$T/q.bin.txt" "status=200"
    check "the receiver was told to start over" hasf "$T/q.bin.txt" "restarts=1"
    check "and the file is the new image, byte-identical" \
        cmp -s "$T/q.bin" "$D/images/garden-1.1.0.bin"

    # A file already complete: 416 says so in words, nothing is changed.
    fetch "$DEV" "$T/p.bin" "/fw/firmware.bin?curimage=1.0.0" --resume
    check "resuming a complete file: 416 in words" hasf "$T/p.bin.txt" "answered 416"
    check "the file is untouched" cmp -s "$T/p.bin" "$D/images/garden-1.1.0.bin"

    # The rate of a 1 MB image over HTTPS on loopback (handshake included).
    t0=$(now_ms)
    fetch "$DEV" "$T/rate.bin" "/fw/firmware.bin?curimage=1.0.0"
    t1=$(now_ms)
    ms=$((t1 - t0))
    [ "$ms" -gt 0 ] || ms=1
    check "1 MB image for the rate" cmp -s "$T/rate.bin" "$D/images/garden-1.1.0.bin"
    echo "# rate: $size bytes in $ms ms over HTTPS with mutual TLS: $((size * 1000 / ms / 1024)) KiB/s (process start and handshake included)"
}

case "$SECTION" in
images) section_images ;;
config) section_config ;;
refuse) section_refuse ;;
resume) section_resume ;;
*)
    echo "unknown section $SECTION"
    exit 2
    ;;
esac
[ -n "$SERVER_PID" ] && stop_server

echo "# $SECTION: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ] && [ "$PASS" -gt 0 ]
