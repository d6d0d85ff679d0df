#!/bin/sh
# make demo: the whole job on this machine, on loopback.
#
#   1. a PKI made with `moat pki` (CA, broker, one device, one operator);
#   2. a Mosquitto with mutual TLS and per-device ACLs from `moat broker-config`;
#   3. moat-agent with simulated relays, its clock from a local SNTP server,
#      run by moat-launch from slot a of its A/B slots (version 1.0.0);
#   4. a status message arriving;
#   5. a zone command with its result and the retained zones document, read
#      and sent with the operator certificate;
#   6. a signed update: the agent itself signed as 2.0.0 with `moat sign`,
#      served by moat-server over HTTPS with mutual TLS; the firmware
#      command installs it in slot b, the agent restarts into it on trial,
#      and it confirms once it is online;
#   7. a broken 3.0.0 (a program that exits at once) never confirms:
#      after 3 trial starts moat-launch goes back to 2.0.0 by itself, and
#      the status says why.
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
LAUNCH="$BUILD/apps/launcher/moat-launch"
SERVER="$BUILD/apps/server/moat-server"
PATH=$PATH:/usr/sbin:/sbin
for b in "$MOAT" "$AGENT" "$MQTT" "$SNTPD" "$LAUNCH" "$SERVER"; do
    [ -x "$b" ] || { echo "demo: $b is missing; run make first" >&2; exit 1; }
done
command -v mosquitto >/dev/null || { echo "demo: mosquitto is missing; run make deps" >&2; exit 1; }

work=$(mktemp -d /tmp/moat-demo.XXXXXX)
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD; MOAT=$PWD/$MOAT; AGENT=$PWD/$AGENT; MQTT=$PWD/$MQTT; SNTPD=$PWD/$SNTPD; LAUNCH=$PWD/$LAUNCH; SERVER=$PWD/$SERVER ;; esac
broker_pid=""
loop_pid=""
sntp_pid=""
sub_pid=""
server_pid=""
# The agent runs under moat-launch, started again after every exit as
# systemd's Restart=always does; stop_agent ends that loop and the agent.
stop_agent() {
    [ -n "$loop_pid" ] || return 0
    : >"$work/launch.stop"
    n=0
    while kill -0 "$loop_pid" 2>/dev/null && [ "$n" -lt 50 ]; do
        kill "$(cat "$work/agent.pid" 2>/dev/null)" 2>/dev/null || :
        sleep 0.1
        n=$((n + 1))
    done
    kill "$loop_pid" 2>/dev/null || :
    wait "$loop_pid" 2>/dev/null || :
    loop_pid=""
}
cleanup() {
    stop_agent
    for p in $sub_pid $server_pid $sntp_pid $broker_pid; do
        kill "$p" 2>/dev/null || :
    done
    for p in $sub_pid $server_pid $sntp_pid $broker_pid; do
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

# DEMO_RELAYS=avr drives the relays through the real moat-avr firmware,
# running under simavr, over the framed SPI link (docs/AVR.md).
RELAY_OPTS=""
RELAY_WORDS="simulated relays"
if [ "${DEMO_RELAYS:-}" = avr ]; then
    RELAY_OPTS="--relay-driver simavr:$BUILD/avr/moat-avr.elf"
    RELAY_WORDS="relays on the moat-avr co-processor (its real firmware, under simavr)"
fi
say "3. moat-agent with $RELAY_WORDS, run by moat-launch from A/B slots"
# The device checks no certificate before its clock is valid. This machine's
# kernel clock may not be NTP-synchronised, so the demo runs a local SNTP
# server that answers with this machine's clock; on a device, ntpserver
# names a real time server (or "system").
"$SNTPD" sntp "$work/sntp.port" now >/dev/null 2>&1 &
sntp_pid=$!
wait_line "$work/sntp.port" "" 5 && sleep 0.2
# The update server (moat-server, HTTPS with mutual TLS) and the key whose
# signatures the agent trusts.
mkdir -p "$work/srv/images"
"$SERVER" --dir "$work/srv" --cert "$PKI/servers/localhost.crt" --key "$PKI/servers/localhost.key" \
    --ca "$PKI/ca.crt" --port 0 --bind 127.0.0.1 --port-file "$work/srv/port" --path /fw/ \
    --product moat-agent >"$work/server.log" 2>&1 &
server_pid=$!
wait_line "$work/srv/port" "" 5 || { show "$work/server.log"; exit 1; }
(cd "$work" && "$MOAT" keygen demo-fw >/dev/null)
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
  "downloadserver": "localhost",
  "downloadport": $(cat "$work/srv/port"),
  "downloadpath": "/fw/",
  "zones": {"count": 8, "exclusive": true, "maxseconds": 3600}
}
EOF
show "$work/config.json"
OPS="-h localhost -p $port --cafile $PKI/ca.crt --cert $PKI/operators/demo-ops.crt --key $PKI/operators/demo-ops.key"
# shellcheck disable=SC2086
"$MQTT" sub $OPS -t "moat/$ID/state" -t "moat/$ID/status" -t "moat/$ID/result/#" \
    -t "moat/$ID/zones" -v -q 1 >"$work/sub.out" 2>"$work/sub.err" &
sub_pid=$!
echo "    moat-launch --dir slots --install moat-agent --version 1.0.0 --counter 1 --confirmed"
"$LAUNCH" --dir "$work/slots" --install "$AGENT" --version 1.0.0 --counter 1 --confirmed 2>&1 | show
(
    while [ ! -e "$work/launch.stop" ]; do
        # shellcheck disable=SC2086
        "$LAUNCH" --dir "$work/slots" -- -c "$work/config.json" --relay-file "$work/relays" \
            $RELAY_OPTS --update-key "$work/demo-fw.pub" >>"$work/agent.log" 2>&1 &
        echo $! >"$work/agent.pid"
        rc=0
        wait $! || rc=$?
        echo "exit $rc" >>"$work/launch.log"
        [ -e "$work/launch.stop" ] || sleep 0.3
    done
) &
loop_pid=$!
echo "    moat-launch --dir slots -- -c config.json --relay-file relays $RELAY_OPTS --update-key demo-fw.pub"
echo "    (started again after every exit, as systemd's Restart=always does)"

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

# status_line VERSION: the newest status document of that version.
status_line() { grep -F "moat/$ID/status " "$work/sub.out" | grep -F "\"version\":\"$1\"" | tail -1; }
# the update members of a status document
members() { sed 's/.*\("version":"[^"]*","slot":"[^"]*"\).*"clockwaitms":[0-9]*,\(.*\)}$/\1 ... \2/'; }

say "6. a signed update over HTTPS: 1.0.0 -> 2.0.0"
echo "    moat sign --key demo-fw.pem --product moat-agent --version 2.0.0 --counter 2 moat-agent"
"$MOAT" sign --key "$work/demo-fw.pem" --product moat-agent --version 2.0.0 --counter 2 \
    "$AGENT" -o "$work/srv/images/moat-agent-2.0.0.img" | show
echo "    the operator sends the firmware command:"
echo "    moat-mqtt pub ... -t moat/$ID/cmd/firmware -q 1 -n"
# shellcheck disable=SC2086
"$MQTT" pub $OPS -t "moat/$ID/cmd/firmware" -q 1 -n
wait_line "$work/sub.out" "moat/$ID/result/firmware " 20 || { show "$work/agent.log"; exit 1; }
grep -F "moat/$ID/result/firmware " "$work/sub.out" | tail -1 | show
echo "    the agent checked the signature before it wrote a byte, verified the payload as"
echo "    it streamed into slot b, and restarted (exit 5); moat-launch runs 2.0.0 on"
echo "    trial, and it confirms once it is online and has published its status:"
wait_line "$work/sub.out" '"version":"2.0.0","slot":"b"' 20 || { show "$work/agent.log"; exit 1; }
n=0
until status_line 2.0.0 | grep -q '"trial":false' || [ "$n" -ge 100 ]; do sleep 0.1; n=$((n + 1)); done
grep -F "moat/$ID/status " "$work/sub.out" | grep -F '"version":"2.0.0"' | head -1 | members | show
status_line 2.0.0 | members | show
grep -E "GET https|moat-launch: slot|reached the broker and confirmed|verified and installed" \
    "$work/agent.log" | sed 's/^moat-agent\[[0-9]*\] info: //' | show

say "7. a broken 3.0.0 (it exits at once) rolls back to 2.0.0 by itself"
printf '#!/bin/sh\necho "broken 3.0.0: exits at once" >&2\nexit 3\n' >"$work/broken.sh"
"$MOAT" sign --key "$work/demo-fw.pem" --product moat-agent --version 3.0.0 --counter 3 \
    "$work/broken.sh" -o "$work/srv/images/moat-agent-3.0.0.img" >/dev/null
echo "    moat sign ... --version 3.0.0 --counter 3 broken.sh; then the firmware command"
lines=$(wc -l <"$work/agent.log")
# shellcheck disable=SC2086
"$MQTT" pub $OPS -t "moat/$ID/cmd/firmware" -q 1 -n
wait_line "$work/sub.out" '"rollback":"slot a (version 3.0.0) did not confirm' 40 ||
    { show "$work/agent.log"; exit 1; }
grep -F "moat/$ID/result/firmware " "$work/sub.out" | tail -1 | show
tail -n +"$((lines + 1))" "$work/agent.log" |
    grep -E "moat-launch: |broken 3.0.0|verified and installed|running slot" |
    sed 's/^moat-agent\[[0-9]*\] info: //' | show
echo "    exit codes seen by the restart loop: $(tr '\n' ' ' <"$work/launch.log")"
echo "    the status of 2.0.0, running again:"
grep -F '"rollback":"slot a (version 3.0.0)' "$work/sub.out" | tail -1 | members | show
echo "    moat-launch --status:"
"$LAUNCH" --dir "$work/slots" --status | show

say "the agent's log (the last 15 lines)"
tail -n 15 "$work/agent.log" | show

cat <<EOF

demo: try it yourself (DEMO_HOLD=1 make demo keeps this demo running):
    # send a zone command: zone 2 for 120 seconds
    $MQTT pub $OPS \\
        -t moat/$ID/cmd/zone -q 1 -m "2 120"
    # watch the status, the results and the zones
    $MQTT sub $OPS \\
        -t 'moat/$ID/#' -v
    # other commands: status, reboot, config (a whole config.json as payload,
    # or none to fetch it from the update server), firmware (install the
    # update server's next image and restart into it), flash, csr, cert, ca;
    # results arrive on moat/$ID/result/<command>
    # an image over MQTT, and a new key and certificate made on the device:
    $MOAT ota push $ID IMAGE --host localhost --port $port --dir $PKI
    $MOAT cert rotate $ID --host localhost --port $port --dir $PKI
EOF

if [ -n "${DEMO_HOLD:-}" ]; then
    printf '\ndemo: running; press Enter to stop everything.\n'
    read -r _ || :
fi
say "stopping the agent, the update server, the SNTP server and the broker"
