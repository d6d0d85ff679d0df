#!/bin/bash
# tests/avr/agent_simavr.sh - moat-agent driving its zones through the
# moat-avr firmware running in simavr (--relay-driver simavr:ELF), end to
# end: a PKI made by `moat pki`, a Mosquitto configured by `moat
# broker-config`, the fake SNTP server, the operator's moat-mqtt.
#
# usage: agent_simavr.sh MOAT MOAT_AGENT MOAT_MQTT AGENT_HELPER MOAT_AVR_ELF
#
# Checks: the agent greets the co-processor (version, fail-safe); a zone
# command arrives on the simulated PORTD, active low, and ends on time; a
# stalled agent (SIGSTOP) lets the firmware's fail-safe switch the zone off,
# and the agent, once running again, says so and shows the zone off.
set -u
MOAT=${1:?usage: agent_simavr.sh MOAT MOAT_AGENT MOAT_MQTT AGENT_HELPER MOAT_AVR_ELF}
AGENT=${2:?}
MQTT=${3:?}
HELPER=${4:?}
ELF=${5:?}
PATH=$PATH:/usr/sbin:/sbin
export LC_ALL=C
command -v mosquitto >/dev/null || { echo "agent_simavr: mosquitto is missing (make deps)" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/moat-agent-simavr.XXXXXX") || exit 1
BROKER_PID= AGENT_PID= SNTP_PID= SUB_PID=
PASS=0 FAIL=0
cleanup() {
    [ -n "$AGENT_PID" ] && kill -CONT "$AGENT_PID" 2>/dev/null
    for p in $AGENT_PID $SUB_PID $SNTP_PID $BROKER_PID; do kill "$p" 2>/dev/null; done
    for p in $AGENT_PID $SUB_PID $SNTP_PID $BROKER_PID; do wait "$p" 2>/dev/null; done
    if [ "$FAIL" -ne 0 ]; then
        echo "---- agent log"; sed 's/^/    | /' "$T/agent.log"
        echo "kept $T"
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $1"; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
now_ms() { date +%s%3N; }
count() { grep -Fc -e "$2" "$1" 2>/dev/null || true; }
wait_for() { # FILE STRING SECONDS [N]
    local deadline=$(($(now_ms) + $3 * 1000))
    while [ "$(count "$1" "$2")" -lt "${4:-1}" ]; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}
wait_relays() { # VALUE SECONDS
    local deadline=$(($(now_ms) + $2 * 1000))
    until [ "$(cat "$T/relays" 2>/dev/null)" = "$1" ]; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.02
    done
}
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

DEV=a1b2c3d4e5f6
P=$T/pki
ROOT_OPT=
[ "$(id -u)" -eq 0 ] && ROOT_OPT="--user root"
"$MOAT" pki init --dir "$P" >/dev/null &&
    "$MOAT" pki server localhost --ip 127.0.0.1 --dir "$P" >/dev/null &&
    "$MOAT" pki device "$DEV" --dir "$P" >/dev/null &&
    "$MOAT" pki operator ops --dir "$P" >/dev/null || { bad "moat pki"; exit 1; }
# A free port can be taken between the check and the bind: try a few.
for try in 1 2 3 4 5; do
    PORT=$(free_port)
    "$MOAT" broker-config --dir "$P" --out "$T/broker" --port "$PORT" --bind 127.0.0.1 \
        --host localhost $ROOT_OPT >/dev/null || { bad "moat broker-config"; exit 1; }
    mosquitto -c "$T/broker/mosquitto.conf" >"$T/broker.log" 2>&1 &
    BROKER_PID=$!
    wait_for "$T/broker.log" " running" 10 && break
    kill "$BROKER_PID" 2>/dev/null; wait "$BROKER_PID" 2>/dev/null; BROKER_PID=
    [ "$try" -lt 5 ] && grep -q "in use" "$T/broker.log" && continue
    bad "mosquitto starts"; sed 's/^/    broker | /' "$T/broker.log"; exit 1
done
"$HELPER" sntp "$T/sntp.port" now >"$T/sntp.log" 2>&1 &
SNTP_PID=$!
i=0; while [ ! -s "$T/sntp.port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
cat >"$T/config.json" <<EOF
{
  "mqttserver": "localhost",
  "mqttport": $PORT,
  "ntpserver": "127.0.0.1:$(cat "$T/sntp.port")",
  "statusinterval": 2000,
  "waittimeout": 60000,
  "retrytimeout": 500,
  "deviceid": "$DEV",
  "cafile": "$P/ca.crt",
  "certfile": "$P/devices/$DEV.crt",
  "keyfile": "$P/devices/$DEV.key",
  "zones": {"count": 8, "maxseconds": 600}
}
EOF
OPS=(-h localhost -p "$PORT" --cafile "$P/ca.crt" --cert "$P/operators/ops.crt" --key "$P/operators/ops.key")
stdbuf -oL "$MQTT" sub "${OPS[@]}" -q 1 -v -d -t "moat/$DEV/#" >"$T/all.out" 2>"$T/sub.err" &
SUB_PID=$!
wait_for "$T/sub.err" "event SUBACK" 10 || { bad "operator subscriber"; exit 1; }

"$AGENT" -c "$T/config.json" --relay-file "$T/relays" --relay-driver "simavr:$ELF" \
    >"$T/agent.log" 2>&1 &
AGENT_PID=$!
check "the agent greets the co-processor in simavr" \
    wait_for "$T/agent.log" "relays: moat-avr 0.1.0 (protocol 1) on simavr:" 10
check "it reports the firmware's fail-safe settings" \
    wait_for "$T/agent.log" "fail-safe 10000 ms, maximum on-time 7200 s" 1
check "all relays off at start: PORTD all high" wait_for "$T/agent.log" "simavr: PORTD 0xff" 1
check "the agent is online" wait_for "$T/all.out" "moat/$DEV/status {" 20

"$MQTT" pub "${OPS[@]}" -q 1 -t "moat/$DEV/cmd/zone" -m "2 3"
check "zone 2 on: the relay file says 0x02" wait_relays 0x02 10
check "and the firmware drives PD1 low (PORTD 0xfd)" wait_for "$T/agent.log" "simavr: PORTD 0xfd" 1
t0=$(now_ms)
check "after 3 s zone 2 is off again" wait_relays 0x00 10
dt=$(($(now_ms) - t0))
check "on time ($dt ms after it was seen on)" test "$dt" -ge 2000 -a "$dt" -le 4500
check "PORTD all high again" wait_for "$T/agent.log" "simavr: PORTD 0xff" 1 2

# The agent stalls with zone 5 on: the co-processor must not wait for it.
"$MQTT" pub "${OPS[@]}" -q 1 -t "moat/$DEV/cmd/zone" -m "5 300"
check "zone 5 on" wait_relays 0x10 10
kill -STOP "$AGENT_PID"
sleep 12
kill -CONT "$AGENT_PID"
check "after the stall the agent hears that the fail-safe switched zone 5 off" \
    wait_for "$T/agent.log" "relay co-processor switched zone 5 off by itself (no valid frame within its fail-safe time)" 10
check "and switches its zones off to match" wait_relays 0x00 10
check "the zones document shows zone 5 off" wait_for "$T/all.out" '{"zone":5,"on":false' 10 2
check "the agent keeps running" kill -0 "$AGENT_PID"
"$MQTT" pub "${OPS[@]}" -q 1 -t "moat/$DEV/cmd/zone" -m "5 2"
check "a new command switches zone 5 on again" wait_relays 0x10 10

echo "agent_simavr: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
