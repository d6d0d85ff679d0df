#!/bin/bash
# tests/otamqtt/otamqtt_test.sh - updates over MQTT and credential rotation,
# end to end against a real Mosquitto.
#
# usage: otamqtt_test.sh SECTION MOAT OTA_DEVICE MOAT_MQTT
#
#   transfer  `moat ota push` of a 1 MB image to a device (tests/otamqtt/
#             ota_device.c) over mutual TLS; the bytes arrive whole; the rate
#             is printed; a block size the device cannot take is refused
#   resume    a cut link, a device power cut (restart from the block map) and
#             an operator that stops and runs again: each resumes without
#             starting over
#   rotate    `moat cert rotate`: the device makes its key, the CA signs the
#             CSR, the device commits once the broker accepted the new
#             certificate; a certificate the broker rejects is rolled back
#             and the device stays connected with its old one; no private
#             key crosses the broker
#
# Each section has its own PKI (`moat pki`), broker config (`moat
# broker-config`, plus the ota ACL lines of docs/OTA.md when it lacks them),
# port and directory.
# Every process started here is stopped by its pid.
set -u

SECTION=${1:?usage: otamqtt_test.sh SECTION MOAT OTA_DEVICE MOAT_MQTT}
MOAT=${2:?}
DEVICE=${3:?}
MQTT=${4:?}
PATH=$PATH:/usr/sbin:/sbin
export LC_ALL=C

command -v mosquitto >/dev/null 2>&1 ||
    { echo "otamqtt_test: mosquitto is not installed (make deps installs it)" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/moat-otamqtt-test.$SECTION.XXXXXX") || exit 1
BROKER_PID=
DEV_PID=
PUSH_PID=
SUB_PID=
PASS=0
FAIL=0

cleanup() {
    local p
    for p in $PUSH_PID $DEV_PID $SUB_PID $BROKER_PID; do kill "$p" 2>/dev/null; done
    for p in $PUSH_PID $DEV_PID $SUB_PID $BROKER_PID; do wait "$p" 2>/dev/null; done
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
count() { grep -Fc -e "$2" "$1" 2>/dev/null || true; }
now_ms() { date +%s%3N; }

# wait_for FILE FIXED-STRING SECONDS [N]
wait_for() {
    local file=$1 s=$2 secs=$3 n=${4:-1} deadline
    deadline=$(($(now_ms) + secs * 1000))
    while [ "$(count "$file" "$s")" -lt "$n" ]; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}
# wait_exit PID SECONDS: EXIT_CODE is its status.
wait_exit() {
    local pid=$1 secs=$2 deadline
    deadline=$(($(now_ms) + secs * 1000))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$(now_ms)" -ge "$deadline" ]; then EXIT_CODE=timeout; return 1; fi
        sleep 0.05
    done
    wait "$pid"
    EXIT_CODE=$?
}

DEV=a0b1c2d3e4f5
P=$T/pki
B=$T/broker
D=$T/device
mkdir -p "$D"
ROOT_OPT=
[ "$(id -u)" -eq 0 ] && ROOT_OPT="--user root"

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

make_pki() {
    "$MOAT" pki init --dir "$P" >/dev/null &&
        "$MOAT" pki server localhost --ip 127.0.0.1 --dir "$P" >/dev/null &&
        "$MOAT" pki device "$DEV" --dir "$P" >/dev/null &&
        "$MOAT" pki operator ops --dir "$P" >/dev/null &&
        cp "$P/ca.crt" "$D/ca.crt" && cp "$P/devices/$DEV.crt" "$D/device.crt" &&
        cp "$P/devices/$DEV.key" "$D/device.key" && chmod 600 "$D/device.key"
}

start_broker() {
    local tries=0 i
    while [ $tries -lt 5 ]; do
        tries=$((tries + 1))
        PORT=$(free_port)
        "$MOAT" broker-config --dir "$P" --out "$B" --port "$PORT" --bind 127.0.0.1 \
            --host localhost --persistence $ROOT_OPT >/dev/null || return 1
        # The device's ota topics (docs/OTA.md), until broker-config writes them.
        grep -q 'ota/req' "$B/acl" || cat >>"$B/acl" <<'ACL'
pattern write moat/%u/ota/req
pattern write moat/%u/ota/status
pattern read moat/%u/ota/offer
pattern read moat/%u/ota/blk/#
ACL
        : >"$T/broker.log"
        mosquitto -c "$B/mosquitto.conf" >>"$T/broker.log" 2>&1 &
        BROKER_PID=$!
        i=0
        while [ $i -lt 100 ]; do
            hasf "$T/broker.log" ' running' && return 0
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.05
            i=$((i + 1))
        done
        kill "$BROKER_PID" 2>/dev/null
        wait "$BROKER_PID" 2>/dev/null
        BROKER_PID=
        hasf "$T/broker.log" "in use" || { sed 's/^/    broker | /' "$T/broker.log"; return 1; }
    done
    return 1
}

# start_device [ARGS...]: the test device, log appended to $DEVLOG.
DEVLOG=$T/device.log
start_device() {
    echo "---- start_device $*" >>"$DEVLOG"
    "$DEVICE" --host localhost --port "$PORT" --id "$DEV" --cafile "$D/ca.crt" \
        --cert "$D/device.crt" --key "$D/device.key" --out "$D/image.bin" \
        --map "$D/ota.map" "$@" >>"$DEVLOG" 2>&1 &
    DEV_PID=$!
}

stop_device() {
    [ -n "$DEV_PID" ] || return 0
    kill "$DEV_PID" 2>/dev/null
    wait_exit "$DEV_PID" 10 || kill -9 "$DEV_PID" 2>/dev/null
    DEV_PID=
}

OPS=(--host localhost --dir "$P")
# push [ARGS...]: moat ota push in the background; PUSH_PID, output in $T/push.out.
push() {
    : >"$T/push.out"
    "$MOAT" ota push "$DEV" "${OPS[@]}" --port "$PORT" "$@" >"$T/push.out" 2>&1 &
    PUSH_PID=$!
}

show() { echo "    --- $1"; sed 's/^/    | /' "$1" | tail -n "${2:-30}"; }

make_pki || { echo "cannot make the PKI"; exit 1; }
start_broker || { echo "cannot start mosquitto"; exit 1; }
head -c 1048576 /dev/urandom >"$T/image-1m.bin"

case $SECTION in
transfer)
    start_device
    check "the device comes online" wait_for "$T/device.log" "online" 15
    start=$(now_ms)
    push "$T/image-1m.bin" --block 1024
    wait_exit "$PUSH_PID" 120
    rc=$EXIT_CODE
    PUSH_PID=
    ms=$(($(now_ms) - start))
    check "moat ota push of 1 MB exits 0" test "$rc" = 0
    check "the push reports done" hasf "$T/push.out" "done: device $DEV has the image"
    check "the push shows progress" hasf "$T/push.out" "100%"
    check "the device has the image, byte for byte" cmp -s "$T/image-1m.bin" "$D/image.bin"
    check "the device says done" wait_for "$T/device.log" "ota: done" 5
    check "each byte reached the device once" hasf "$T/device.log" "1048576 bytes this run"
    echo "# 1 MB over MQTT (1 KB blocks, mutual TLS, loopback): $ms ms," \
        "$((1048576 * 1000 / 1024 / (ms > 0 ? ms : 1))) KB/s (whole command, connect included)"
    grep -F "done:" "$T/push.out" | sed 's/^/# /'
    # larger blocks
    head -c 300000 /dev/urandom >"$T/image-300k.bin"
    push "$T/image-300k.bin" --block 4096
    wait_exit "$PUSH_PID" 60
    check "a 300 KB image in 4 KB blocks" test "$EXIT_CODE" = 0
    PUSH_PID=
    check "  arrives whole" cmp -s "$T/image-300k.bin" "$D/image.bin"
    # a block size the device does not take whole is refused with words
    push "$T/image-300k.bin" --block 8192
    wait_exit "$PUSH_PID" 60
    check "a block size over the device's limit fails (exit 1)" test "$EXIT_CODE" = 1
    PUSH_PID=
    check "  and says why" hasf "$T/push.out" "block size 8192 is larger than this device takes whole (4096 bytes)"
    # nobody listening: the push gives up with words
    stop_device
    "$MOAT" ota push nosuchdevice "${OPS[@]}" --port "$PORT" --timeout 2 "$T/image-300k.bin" \
        >"$T/push-none.out" 2>&1
    check "a device that never answers: exit 1" test $? = 1
    check "  with words" hasf "$T/push-none.out" "did not answer the offer for 2 s"
    ;;
resume)
    # (a) the device's link is cut in the middle: no restart, no bytes twice
    start_device --cut-after 300
    check "the device comes online" wait_for "$DEVLOG" "online" 15
    push "$T/image-1m.bin"
    wait_exit "$PUSH_PID" 120
    check "cut link: the push completes" test "$EXIT_CODE" = 0
    PUSH_PID=
    cut=$(sed -n 's/.*cutting the link after \([0-9]*\) blocks.*/\1/p' "$DEVLOG" | head -1)
    check "  the link was cut in the middle (after ${cut:-no} blocks)" test "${cut:-0}" -ge 300
    check "  the device came online again" test "$(count "$DEVLOG" "online")" -ge 2
    check "  the image is whole" cmp -s "$T/image-1m.bin" "$D/image.bin"
    check "  no byte was taken twice (no start over)" hasf "$DEVLOG" "1048576 bytes this run"
    stop_device
    # (b) a power cut on the device: the block map resumes the next run
    DEVLOG=$T/device-b.log
    rm -f "$D/image.bin" "$D/ota.map"
    start_device --exit-after 500
    wait_for "$DEVLOG" "online" 15
    push "$T/image-1m.bin" --timeout 30
    wait_exit "$DEV_PID" 60
    check "power cut: the device stops after 500 blocks" test "$EXIT_CODE" = 3
    DEV_PID=
    start_device
    wait_exit "$PUSH_PID" 120
    check "  the same push completes after the restart" test "$EXIT_CODE" = 0
    PUSH_PID=
    check "  the block map held the transfer" hasf "$DEVLOG" "ota: block map holds a transfer at"
    at=$(sed -n 's/.*ota: resumed at \([0-9]*\) of.*/\1/p' "$DEVLOG" | tail -1)
    check "  it resumed past the start (at ${at:-?} bytes)" test "${at:-0}" -gt 0
    check "  the operator saw it resume" hasf "$T/push.out" "device $DEV resumes at byte"
    check "  the image is whole" cmp -s "$T/image-1m.bin" "$D/image.bin"
    run2=$(sed -n 's/.*ota: done .*blocks, \([0-9]*\) bytes this run.*/\1/p' "$DEVLOG" | tail -1)
    check "  the second run took only the rest (${run2:-?} of 1048576 bytes)" \
        test "${run2:-1048576}" -lt 1048576
    # (c) the operator stops in the middle and runs again
    stop_device
    DEVLOG=$T/device-c.log
    rm -f "$D/image.bin" "$D/ota.map"
    start_device
    wait_for "$DEVLOG" "online" 15
    push "$T/image-1m.bin"
    wait_for "$T/push.out" " 30%" 60
    kill "$PUSH_PID"
    wait "$PUSH_PID" 2>/dev/null
    PUSH_PID=
    check "operator stop: the device stalls and keeps its progress" \
        wait_for "$DEVLOG" "ota: stalled" 30
    push "$T/image-1m.bin"
    wait_exit "$PUSH_PID" 120
    check "  the push run again completes" test "$EXIT_CODE" = 0
    PUSH_PID=
    check "  and the device resumed" hasf "$T/push.out" "device $DEV resumes at byte"
    check "  the image is whole" cmp -s "$T/image-1m.bin" "$D/image.bin"
    check "  no byte was taken twice" hasf "$DEVLOG" "1048576 bytes this run"
    ;;
rotate)
    "$MQTT" sub -h localhost -p "$PORT" --cafile "$P/ca.crt" --cert "$P/operators/ops.crt" \
        --key "$P/operators/ops.key" -v -t "moat/$DEV/#" >"$T/wire.out" 2>"$T/wire.err" &
    SUB_PID=$!
    start_device --store "$D/store"
    check "the device comes online" wait_for "$T/device.log" "online" 15
    old_key=$(sha256sum <"$D/device.key")
    old_cert=$(sha256sum <"$D/device.crt")
    "$MOAT" cert rotate "$DEV" "${OPS[@]}" --port "$PORT" >"$T/rotate.out" 2>&1
    rc=$?
    check "moat cert rotate exits 0" test "$rc" = 0
    check "  the device made a key and a CSR" hasf "$T/rotate.out" "device $DEV made a new key"
    check "  the device committed after the broker accepted" hasf "$T/device.log" "creds: committed"
    check "  the device is online again" test "$(count "$T/device.log" "online")" -ge 2
    check "  its key changed" test "$(sha256sum <"$D/device.key")" != "$old_key"
    check "  its certificate changed" test "$(sha256sum <"$D/device.crt")" != "$old_cert"
    check "  the key file is 0600" test "$(stat -c %a "$D/device.key")" = 600
    check "  the certificate is the one the PKI issued" cmp -s "$D/device.crt" "$P/devices/$DEV.crt"
    check "  the key matches it" test \
        "$(openssl x509 -in "$D/device.crt" -noout -pubkey | sha256sum)" = \
        "$(openssl pkey -in "$D/device.key" -pubout | sha256sum)"
    check "  the CA's index lists two certificates for the device" \
        test "$(grep -c "device	$DEV\$" "$P/index.txt")" -ge 2
    # a certificate the broker rejects: signed by another CA
    "$MOAT" pki init --dir "$T/pki2" --cn "other CA" >/dev/null
    cur_key=$(sha256sum <"$D/device.key")
    cur_cert=$(sha256sum <"$D/device.crt")
    "$MOAT" cert rotate "$DEV" --host localhost --port "$PORT" --dir "$T/pki2" \
        --cafile "$P/ca.crt" --cert "$P/operators/ops.crt" --key "$P/operators/ops.key" \
        >"$T/rotate2.out" 2>&1
    rc=$?
    check "a rotation to a certificate the broker rejects exits 1" test "$rc" = 1
    check "  and says the device kept its old credentials" \
        hasf "$T/rotate2.out" "kept its old credentials"
    check "  the device rolled back" hasf "$T/device.log" "creds: rolled back"
    check "  the device is online again with the old set" test "$(count "$T/device.log" "online")" -ge 3
    check "  its key is the one before" test "$(sha256sum <"$D/device.key")" = "$cur_key"
    check "  its certificate is the one before" test "$(sha256sum <"$D/device.crt")" = "$cur_cert"
    check "  no pending set is left" test -z "$(ls -A "$D/store/pending")"
    # it stays connected and usable: a third rotation works
    "$MOAT" cert rotate "$DEV" "${OPS[@]}" --port "$PORT" >"$T/rotate3.out" 2>&1
    check "a rotation after the rollback succeeds" test $? = 0
    sleep 0.5
    check "CSRs crossed the broker" hasf "$T/wire.out" "BEGIN CERTIFICATE REQUEST"
    check "no private key crossed the broker" lacks "$T/wire.out" "PRIVATE KEY"
    ;;
*)
    echo "unknown section $SECTION"
    exit 2
    ;;
esac

if [ "$FAIL" -ne 0 ]; then
    for f in "$T"/device*.log; do show "$f" 40; done
    [ -f "$T/push.out" ] && show "$T/push.out"
    [ -f "$T/rotate.out" ] && show "$T/rotate.out"
    [ -f "$T/rotate2.out" ] && show "$T/rotate2.out"
    show "$T/broker.log" 20
fi
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
