#!/bin/bash
# run.sh - moat-sim against a Mosquitto made for it, from nothing:
#
#   bash apps/sim/run.sh MOAT MOAT_SIM [moat-sim options...]
#
# MOAT is the `moat` CLI, MOAT_SIM the simulator. In a private temporary
# directory (removed at the end, keys included) this makes a fleet PKI with
# `moat pki` (CA, the broker's certificate for localhost/127.0.0.1, the
# monitor's operator certificate "moat-sim"), writes the broker's
# configuration and ACL with `moat broker-config` (mutual TLS,
# require_certificate, use_identity_as_username, devices confined to
# moat/<id>/...), adds what thousands of clients need, and starts Mosquitto
# on a free loopback port with a raised open-file limit. Then it runs
# MOAT_SIM --pki <dir> --port <port> plus the options given, stops the
# broker by its pid and exits with the simulator's status.
#
# Env: MOAT_SIM_KEEP=1 keeps the directory (and says where) for inspection;
#      MOAT_SIM_BROKER_LOG=FILE copies the broker's log there.
set -eu

die() {
    echo "sim/run.sh: $*" >&2
    exit 1
}

[ $# -ge 2 ] || die "usage: run.sh MOAT MOAT_SIM [moat-sim options...]"
MOAT=$1 SIM=$2
shift 2
[ -x "$MOAT" ] || die "no moat CLI at $MOAT"
[ -x "$SIM" ] || die "no moat-sim at $SIM"
command -v mosquitto >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
command -v mosquitto >/dev/null 2>&1 || die "mosquitto not found; run 'make deps'"

T=$(mktemp -d "${TMPDIR:-/tmp}/moat-sim.XXXXXX")
chmod 700 "$T"
BROKER_PID=''
stop_broker() {
    if [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null; then
        wait "$BROKER_PID" 2>/dev/null
    fi
    BROKER_PID=''
}
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    set +e # everything below runs, whatever fails
    stop_broker
    if [ -n "${MOAT_SIM_BROKER_LOG:-}" ] && [ -f "$T/broker.log" ]; then
        cp "$T/broker.log" "$MOAT_SIM_BROKER_LOG"
    fi
    if [ "${MOAT_SIM_KEEP:-}" = 1 ]; then
        echo "sim/run.sh: keeping $T" >&2
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

P=$T/pki
B=$T/broker
"$MOAT" pki init --dir "$P" --cn "moat-sim CA" --days 30 >/dev/null || die "moat pki init failed"
"$MOAT" pki server localhost --ip 127.0.0.1 --dir "$P" --days 29 >/dev/null ||
    die "moat pki server failed"
"$MOAT" pki operator moat-sim --dir "$P" --days 29 >/dev/null || die "moat pki operator failed"

# A free loopback port: one nobody answers on.
free_port() {
    i=0
    while [ $i -lt 50 ]; do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
        i=$((i + 1))
    done
    return 1
}

ROOT_OPT=
[ "$(id -u)" -eq 0 ] && ROOT_OPT="--user root" # 0600 keys in a private directory

tries=0
while :; do
    tries=$((tries + 1))
    [ $tries -le 5 ] || die "mosquitto did not start (see $T/broker.log)"
    PORT=$(free_port) || die "no free port"
    # shellcheck disable=SC2086
    "$MOAT" broker-config --dir "$P" --out "$B" --port "$PORT" --bind 127.0.0.1 \
        --host localhost $ROOT_OPT >/dev/null || die "moat broker-config failed"
    # What a simulated fleet needs beyond the production settings: no
    # connection cap; for the one subscriber that sees every status (the
    # monitor) a wide window and a queue without a cap, so it is never the
    # bottleneck (nothing is dropped: it only lags while the simulator is
    # busy with handshakes); no Nagle delay on the broker's small writes (its
    # default adds up to 40 ms to a command's round trip); a quiet log.
    cat >>"$B/mosquitto.conf" <<EOF

# Added by apps/sim/run.sh for moat-sim.
max_connections -1
max_inflight_messages 1000
max_queued_messages 0
log_dest file $T/broker.log
log_type error
log_type warning
log_type notice
connection_messages false
EOF
    grep -q '^set_tcp_nodelay true' "$B/mosquitto.conf" ||
        echo "set_tcp_nodelay true" >>"$B/mosquitto.conf"
    # The broker needs a socket per device too.
    sh -c 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec mosquitto -c "$1"' \
        sh "$B/mosquitto.conf" >>"$T/broker.out" 2>&1 &
    BROKER_PID=$!
    i=0
    up=0
    while [ $i -lt 200 ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            up=1
            break
        fi
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.05
        i=$((i + 1))
    done
    [ $up -eq 1 ] && break
    set +e
    stop_broker
    set -e
done
echo "sim/run.sh: mosquitto $(mosquitto -h 2>/dev/null | awk 'NR == 1 { print $3 }') pid $BROKER_PID on 127.0.0.1:$PORT (mutual TLS, moat broker-config)"

status=0
"$SIM" --pki "$P" --port "$PORT" --host 127.0.0.1 "$@" || status=$?
if ! kill -0 "$BROKER_PID" 2>/dev/null; then
    echo "sim/run.sh: the broker died during the run" >&2
    for f in "$T/broker.out" "$T/broker.log"; do
        [ -f "$f" ] && cat "$f" >&2
    done
    [ $status -ne 0 ] || status=1
fi
exit $status
