#!/bin/sh
# make demo: the whole job on this machine, on loopback.
#
#   1. a PKI made with `moat pki` (CA, broker, one device, one operator);
#   2. a Mosquitto with mutual TLS and per-device ACLs from `moat broker-config`;
#   3. moat-agent with simulated relays, its clock from a local SNTP server;
#   4. a status message arriving, a zone command with its result and the
#      retained zones document, read and sent with the operator certificate.
#
# Everything it starts, it stops (by pid); its directory is removed at the
# end. DEMO_HOLD=1 keeps it all running until Enter, to try the commands it
# prints.
set -eu
BUILD=${1:-build}
MOAT="$BUILD/apps/cli/moat"
AGENT="$BUILD/apps/agent/moat-agent"
MQTT="$BUILD/apps/mqtt/moat-mqtt"
SNTPD="$BUILD/tests/agent/agent_helper"
PATH=$PATH:/usr/sbin:/sbin
for b in "$MOAT" "$AGENT" "$MQTT" "$SNTPD"; do
    [ -x "$b" ] || { echo "demo: $b is missing; run make first" >&2; exit 1; }
done
command -v mosquitto >/dev/null || { echo "demo: mosquitto is missing; run make deps" >&2; exit 1; }

work=$(mktemp -d /tmp/moat-demo.XXXXXX)
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD; MOAT=$PWD/$MOAT; AGENT=$PWD/$AGENT; MQTT=$PWD/$MQTT; SNTPD=$PWD/$SNTPD ;; esac
broker_pid=""
agent_pid=""
sntp_pid=""
sub_pid=""
cleanup() {
    for p in $sub_pid $agent_pid $sntp_pid $broker_pid; do
        kill "$p" 2>/dev/null || :
    done
    for p in $sub_pid $agent_pid $sntp_pid $broker_pid; do
        wait "$p" 2>/dev/null || :
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

say() { printf '\ndemo: %s\n' "$*"; }
show() { sed 's/^/    /' "$@"; }
free_port() {
    p=$((20000 + $$ % 20000))
    while ss -ltnH "sport = :$p" | grep -q .; do p=$((p + 1)); done
    echo "$p"
}
# wait_line FILE STRING SECONDS
wait_line() {
    n=0
    while ! grep -qF -- "$2" "$1" 2>/dev/null; do
        n=$((n + 1))
        [ "$n" -lt $(($3 * 10)) ] || return 1
        sleep 0.1
    done
}

ID=d0e1f2a3b4c5
PKI=$work/pki
say "1. a PKI: CA, broker certificate for localhost, device $ID, operator 'demo-ops'"
"$MOAT" pki init --dir "$PKI" >/dev/null
"$MOAT" pki server localhost --ip 127.0.0.1 --dir "$PKI" >/dev/null
"$MOAT" pki device "$ID" --dir "$PKI" >/dev/null
"$MOAT" pki operator demo-ops --dir "$PKI" >/dev/null
"$MOAT" pki list --dir "$PKI" | show

say "2. a Mosquitto with mutual TLS and ACLs (moat broker-config)"
port=$(free_port)
user_opt=""
[ "$(id -u)" -eq 0 ] && user_opt="--user root" # throw-away broker: it must read 0600 keys
"$MOAT" broker-config --dir "$PKI" --out "$work/broker" --port "$port" --bind 127.0.0.1 \
    --host localhost $user_opt | show
echo "    ACL:"
grep -v '^#' "$work/broker/acl" | grep . | show
mosquitto -c "$work/broker/mosquitto.conf" >"$work/broker.log" 2>&1 &
broker_pid=$!
wait_line "$work/broker.log" " running" 10 || { show "$work/broker.log"; exit 1; }
echo "    mosquitto is running on 127.0.0.1:$port (pid $broker_pid)"

say "3. moat-agent with simulated relays"
# The device checks no certificate before its clock is valid. This machine's
# kernel clock may not be NTP-synchronised, so the demo runs a local SNTP
# server that answers with this machine's clock; on a device, ntpserver
# names a real time server (or "system").
"$SNTPD" sntp "$work/sntp.port" now >/dev/null 2>&1 &
sntp_pid=$!
wait_line "$work/sntp.port" "" 5 && sleep 0.2
cat >"$work/config.json" <<EOF
{
  "mqttserver": "localhost",
  "mqttport": $port,
  "ntpserver": "127.0.0.1:$(cat "$work/sntp.port")",
  "statusinterval": 5000,
  "waittimeout": 60000,
  "retrytimeout": 1000,
  "deviceid": "$ID",
  "cafile": "$PKI/ca.crt",
  "certfile": "$PKI/devices/$ID.crt",
  "keyfile": "$PKI/devices/$ID.key",
  "zones": {"count": 8, "exclusive": true, "maxseconds": 3600}
}
EOF
show "$work/config.json"
OPS="-h localhost -p $port --cafile $PKI/ca.crt --cert $PKI/operators/demo-ops.crt --key $PKI/operators/demo-ops.key"
# shellcheck disable=SC2086
"$MQTT" sub $OPS -t "moat/$ID/#" -v -q 1 >"$work/sub.out" 2>"$work/sub.err" &
sub_pid=$!
"$AGENT" -c "$work/config.json" --relay-file "$work/relays" >"$work/agent.log" 2>&1 &
agent_pid=$!
echo "    moat-agent -c config.json --relay-file relays  (pid $agent_pid)"

say "4. a status message arrives on moat/$ID/status"
if ! wait_line "$work/sub.out" "moat/$ID/status " 20; then
    echo "demo: no status arrived; the agent said:" >&2
    show "$work/agent.log" >&2
    exit 1
fi
grep -F "moat/$ID/state " "$work/sub.out" | head -1 | show
grep -F "moat/$ID/status " "$work/sub.out" | head -1 | show

say "5. the operator sends a zone command: zone 2 for 5 seconds"
echo "    moat-mqtt pub ... -t moat/$ID/cmd/zone -q 1 -m '2 5'"
# shellcheck disable=SC2086
"$MQTT" pub $OPS -t "moat/$ID/cmd/zone" -q 1 -m "2 5"
wait_line "$work/sub.out" "moat/$ID/result/zone " 10
grep -F "moat/$ID/result/zone " "$work/sub.out" | show
wait_line "$work/sub.out" '"zone":2,"on":true' 5
echo "    the retained zones document:"
grep -F '"zone":2,"on":true' "$work/sub.out" | head -1 | show
echo "    the relay file: $(cat "$work/relays")  (bit 1 = zone 2)"
echo "    a bad command gets an error result, never a crash:"
# shellcheck disable=SC2086
"$MQTT" pub $OPS -t "moat/$ID/cmd/zone" -q 1 -m "9 5"
wait_line "$work/sub.out" "zones are 1 to 8" 10
grep -F "moat/$ID/result/zone " "$work/sub.out" | tail -1 | show
echo "    ... after 5 s zone 2 switches itself off:"
n=0
while [ "$(cat "$work/relays")" != 0x00 ] && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
sleep 0.2
echo "    the relay file: $(cat "$work/relays")"
grep -F "moat/$ID/zones " "$work/sub.out" | tail -1 | show

say "the agent's log"
show "$work/agent.log"

cat <<EOF

demo: try it yourself (DEMO_HOLD=1 make demo keeps this demo running):
    # send a zone command: zone 2 for 120 seconds
    $MQTT pub $OPS \\
        -t moat/$ID/cmd/zone -q 1 -m "2 120"
    # watch the status, the results and the zones
    $MQTT sub $OPS \\
        -t 'moat/$ID/#' -v
    # other commands: status, reboot, config (a whole config.json as payload);
    # results arrive on moat/$ID/result/<command>
EOF

if [ -n "${DEMO_HOLD:-}" ]; then
    printf '\ndemo: running; press Enter to stop everything.\n'
    read -r _ || :
fi
say "stopping the agent, the SNTP server and the broker"
