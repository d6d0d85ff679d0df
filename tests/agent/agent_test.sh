#!/bin/bash
# tests/agent/agent_test.sh - moat-agent end to end, against a real Mosquitto.
#
# usage: agent_test.sh SECTION MOAT MOAT_AGENT MOAT_MQTT AGENT_HELPER
#
# Every section makes its own PKI with `moat pki`, its own broker config with
# `moat broker-config` (TLS, ACL) on a free loopback port, its own fake SNTP
# server (agent_helper) and its own directory, so ctest runs the sections in
# parallel. The operator certificate with moat-mqtt sends the commands and
# reads the results, as an operator would. Every process started here is
# stopped by its pid.
#
# Sections: config online commands zones restart clock watchdog presets
set -u

SECTION=${1:?usage: agent_test.sh SECTION MOAT MOAT_AGENT MOAT_MQTT AGENT_HELPER}
MOAT=${2:?}
AGENT=${3:?}
MQTT=${4:?}
HELPER=${5:?}
PATH=$PATH:/usr/sbin:/sbin
export LC_ALL=C

for tool in mosquitto stdbuf; do
    command -v "$tool" >/dev/null 2>&1 ||
        { echo "agent_test: $tool is not installed (make deps installs it)" >&2; exit 1; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/moat-agent-test.$SECTION.XXXXXX") || exit 1
PIDS=()
BROKER_PID=
AGENT_PID=
SNTP_PID=
PASS=0
FAIL=0

cleanup() {
    local p
    [ -n "$AGENT_PID" ] && kill -CONT "$AGENT_PID" 2>/dev/null
    for p in $AGENT_PID "${PIDS[@]}" $SNTP_PID $BROKER_PID; do
        kill "$p" 2>/dev/null
    done
    for p in $AGENT_PID "${PIDS[@]}" $SNTP_PID $BROKER_PID; do
        wait "$p" 2>/dev/null
    done
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
has() { grep -Eq -e "$2" "$1" 2>/dev/null; }
hasf() { grep -Fq -e "$2" "$1" 2>/dev/null; }
lacks() { ! grep -Eq -e "$2" "$1" 2>/dev/null; }
count() { grep -Fc -e "$2" "$1" 2>/dev/null || true; }
now_ms() { date +%s%3N; }

# wait_for FILE FIXED-STRING SECONDS [N]: until FILE has N lines with the string.
wait_for() {
    local file=$1 s=$2 secs=$3 n=${4:-1} deadline
    deadline=$(($(now_ms) + secs * 1000))
    while [ "$(count "$file" "$s")" -lt "$n" ]; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
    return 0
}
# wait_exit PID SECONDS: wait for the process; EXIT_CODE is its status.
wait_exit() {
    local pid=$1 secs=$2 deadline
    deadline=$(($(now_ms) + secs * 1000))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$(now_ms)" -ge "$deadline" ]; then EXIT_CODE=timeout; return 1; fi
        sleep 0.05
    done
    wait "$pid"
    EXIT_CODE=$?
    return 0
}

DEV=a0b1c2d3e4f5
P=$T/pki
B=$T/broker
ROOT_OPT=
[ "$(id -u)" -eq 0 ] && ROOT_OPT="--user root" # see PITFALLS: 0600 keys in a temp dir

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
        "$MOAT" pki operator ops --dir "$P" >/dev/null
}

# start_broker: a Mosquitto with the config of `moat broker-config`; PORT is set.
start_broker() {
    local tries=0 i
    while [ $tries -lt 5 ]; do
        tries=$((tries + 1))
        if [ -z "${PORT:-}" ] || [ "$tries" -gt 1 ]; then
            PORT=$(free_port)
            "$MOAT" broker-config --dir "$P" --out "$B" --port "$PORT" --bind 127.0.0.1 \
                --host localhost $ROOT_OPT >/dev/null || return 1
        fi
        mosquitto -c "$B/mosquitto.conf" >>"$T/broker.log" 2>&1 &
        BROKER_PID=$!
        i=0
        while [ $i -lt 100 ]; do
            [ "$(count "$T/broker.log" ' running')" -ge "$((BROKER_STARTS + 1))" ] &&
                { BROKER_STARTS=$((BROKER_STARTS + 1)); return 0; }
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
BROKER_STARTS=0

stop_broker() {
    kill "$BROKER_PID" 2>/dev/null
    wait "$BROKER_PID" 2>/dev/null
    BROKER_PID=
}

# start_sntp MODE: the fake time server; SNTP_PORT is set.
start_sntp() {
    [ -n "$SNTP_PID" ] && { kill "$SNTP_PID"; wait "$SNTP_PID" 2>/dev/null; }
    rm -f "$T/sntp.port"
    : >"$T/sntp.log"
    "$HELPER" sntp "$T/sntp.port" "$1" >"$T/sntp.log" 2>&1 &
    SNTP_PID=$!
    local i=0
    while [ ! -s "$T/sntp.port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    SNTP_PORT=$(cat "$T/sntp.port")
}

# write_config FILE [EXTRA-JSON-MEMBERS]: a config for this device and broker.
write_config() {
    cat >"$1" <<EOF
{
  "mqttserver": "localhost",
  "mqttport": $PORT,
  "ntpserver": "127.0.0.1:$SNTP_PORT",
  "statusinterval": ${STATUSINTERVAL:-2000},
  "waittimeout": ${WAITTIMEOUT:-30000},
  "retrytimeout": ${RETRYTIMEOUT:-500},
  "deviceid": "$DEV",
  "cafile": "$P/ca.crt",
  "certfile": "$P/devices/$DEV.crt",
  "keyfile": "$P/devices/$DEV.key",
  "zones": {"count": 8, "maxseconds": 600}${2:+,
  $2}
}
EOF
}

# start_agent [ARGS...]: moat-agent on $T/config.json, log in $T/agent.log.
start_agent() {
    echo "---- start_agent $*" >>"$T/agent.log"
    "$AGENT" -c "$T/config.json" --relay-file "$T/relays" --status-file "$T/status.json" \
        "$@" >>"$T/agent.log" 2>&1 &
    AGENT_PID=$!
}

stop_agent() {
    [ -n "$AGENT_PID" ] || return 0
    kill "$AGENT_PID" 2>/dev/null
    wait_exit "$AGENT_PID" 10 || kill -9 "$AGENT_PID" 2>/dev/null
    AGENT_PID=
}

OPS_TLS=()
ops_tls() { OPS_TLS=(-h localhost -p "$PORT" --cafile "$P/ca.crt" --cert "$P/operators/ops.crt" --key "$P/operators/ops.key"); }

# start_sub NAME FILTER...: an operator subscriber (-v) in $T/NAME.out.
start_sub() {
    local name=$1 f=()
    shift
    for t in "$@"; do f+=(-t "$t"); done
    ops_tls
    : >"$T/$name.out"
    stdbuf -oL "$MQTT" sub "${OPS_TLS[@]}" -q 1 -v -d "${f[@]}" >"$T/$name.out" 2>"$T/$name.err" &
    PIDS+=($!)
    wait_for "$T/$name.err" "event SUBACK" 10 ||
        { echo "    subscriber $name did not subscribe:"; sed 's/^/    | /' "$T/$name.err"; return 1; }
}

# cmd NAME PAYLOAD [moat-mqtt pub options]: send a command as the operator;
# a PAYLOAD of @FILE sends the file.
cmd() {
    local name=$1 payload=$2 src
    shift 2
    ops_tls
    case $payload in
    @*) src=(-f "${payload#@}") ;;
    *) src=(-m "$payload") ;;
    esac
    "$MQTT" pub "${OPS_TLS[@]}" -q 1 -t "moat/$DEV/cmd/$name" "${src[@]}" "$@"
}

last_result() { grep -F "moat/$DEV/result/$1 " "$T/all.out" | tail -1 | cut -d' ' -f2-; }
# ask NAME PAYLOAD [pub options]: send a command, wait for its next result
# (in RES; "none" when none came within 10 s).
ask() {
    local name=$1 n
    n=$(count "$T/all.out" "moat/$DEV/result/$name ")
    cmd "$@"
    if wait_for "$T/all.out" "moat/$DEV/result/$name " 10 $((n + 1)); then
        RES=$(last_result "$name")
    else
        RES=none
    fi
}

relays_are() { [ "$(cat "$T/relays" 2>/dev/null)" = "$1" ]; }
# wait_relays VALUE SECONDS
wait_relays() {
    local deadline=$(($(now_ms) + $2 * 1000))
    until relays_are "$1"; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.02
    done
}

online_setup() {
    make_pki || { bad "moat pki made the PKI"; exit 1; }
    start_broker || { bad "mosquitto starts with the config of moat broker-config"; exit 1; }
    start_sntp "${SNTP_MODE:-now}"
    write_config "$T/config.json" "${EXTRA_CONFIG:-}"
    start_sub all "moat/$DEV/#" || { bad "operator subscriber"; exit 1; }
    start_agent "$@"
    if wait_for "$T/all.out" "moat/$DEV/status {" 15; then
        ok "the agent is online and publishes its status (port $PORT)"
    else
        bad "the agent is online and publishes its status"
        sed 's/^/    broker | /' "$T/broker.log" | tail -20
        exit 1
    fi
}

# ---------------------------------------------------------------- config --
section_config() {
    SNTP_PORT=9 # nothing answers: the agent never gets past the clock here
    PORT=1
    local c=$T/c.json
    echo "# usage"
    "$AGENT" --help >"$T/out" 2>&1
    check "--help exits 0" test $? -eq 0
    check "... and lists the exit codes" hasf "$T/out" "4 broker unreachable"
    "$AGENT" --frobnicate >"$T/out" 2>&1
    check "an unknown option exits 2" test $? -eq 2
    "$AGENT" --stall-limit 0 >"$T/out" 2>&1
    check "a bad --stall-limit exits 2" test $? -eq 2

    echo "# invalid config files exit 2 with words that name the key"
    # expect_config DESC PATTERN: run on $c, expect exit 2 and PATTERN in stderr.
    expect_config() {
        "$AGENT" -c "$c" >"$T/out" 2>&1
        local rc=$?
        if [ "$rc" -eq 2 ] && hasf "$T/out" "$2"; then
            ok "$1"
        else
            bad "$1 (exit $rc)"
            sed 's/^/    | /' "$T/out"
        fi
    }
    rm -f "$c"
    expect_config "a missing file" "cannot read config file '$c'"
    printf '{ "mqttserver": "localhost",\n  "mqttport": 8883,\n  oops }\n' >"$c"
    expect_config "not JSON: the line is named" "line 3"
    write_config "$c"
    sed -i '/"mqttserver"/d' "$c"
    expect_config "mqttserver missing" "'mqttserver'"
    write_config "$c"
    sed -i 's/"mqttport": [0-9]*/"mqttport": "eighty"/' "$c"
    expect_config "mqttport of the wrong type" "'mqttport'"
    write_config "$c"
    sed -i 's/"mqttport": [0-9]*/"mqttport": 70000/' "$c"
    expect_config "mqttport out of range" "70000"
    write_config "$c" '"mqtttls": false'
    expect_config "mqtttls false is refused (no off switch)" "'mqtttls'"
    STATUSINTERVAL=10 write_config "$c"
    expect_config "statusinterval too short" "'statusinterval'"
    write_config "$c" '"topics": {"cmd": "moat/{id}/cmd/#"}'
    expect_config "a cmd topic with a wildcard" "topics.cmd"
    write_config "$c"
    sed -i 's/"count": 8/"count": 9/' "$c"
    expect_config "zones.count over 8" "zones.count"
    write_config "$c"
    sed -i 's|"ntpserver": "[^"]*"|"ntpserver": "127.0.0.1:99999"|' "$c"
    expect_config "an ntpserver port out of range" "'ntpserver'"
    write_config "$c"
    sed -i 's|"deviceid": "[^"]*"|"interface": "nosuch0"|' "$c"
    expect_config "an interface that does not exist" "'nosuch0'"
    write_config "$c"
    sed -i 's|"deviceid": "[^"]*"|"interface": "lo"|' "$c"
    expect_config "an interface without a MAC address" "no MAC address"
    write_config "$c"
    sed -i 's|"deviceid": "[^"]*"|"deviceid": "a/b"|' "$c"
    expect_config "a device id with a slash" "'deviceid'"

    echo "# identity and warnings"
    local ifc mac
    for ifc in /sys/class/net/*; do
        mac=$(cat "$ifc/address" 2>/dev/null)
        [ -n "$mac" ] && [ "$mac" != "00:00:00:00:00:00" ] && break
        mac=
    done
    write_config "$T/config.json" '"mqttuser": "x"'
    if [ -n "$mac" ]; then
        sed -i "s|\"deviceid\": \"[^\"]*\"|\"interface\": \"$(basename "$ifc")\"|" "$T/config.json"
    fi
    start_agent
    wait_for "$T/agent.log" "time: asking" 5
    check "an unknown key is warned about, naming it" hasf "$T/agent.log" "unknown key 'mqttuser'"
    if [ -n "$mac" ]; then
        check "the device id is the MAC of $(basename "$ifc") in lowercase hex" \
            hasf "$T/agent.log" "device $(echo "$mac" | tr -d ':' | tr 'A-F' 'a-f'),"
    else
        ok "# skip: no interface with a MAC address on this machine"
    fi
    kill "$AGENT_PID"
    wait_exit "$AGENT_PID" 10
    check "SIGTERM stops the agent with exit 0" test "$EXIT_CODE" = 0
    AGENT_PID=
}

# ---------------------------------------------------------------- online --
section_online() {
    rm -f "$T/notify.sock"
    "$HELPER" notify "$T/notify.sock" "$T/notify.out" &
    PIDS+=($!)
    local i=0
    while [ ! -S "$T/notify.sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    export NOTIFY_SOCKET=$T/notify.sock WATCHDOG_USEC=5000000
    EXTRA_CONFIG='"unknownkey": 1' online_setup
    unset NOTIFY_SOCKET WATCHDOG_USEC

    echo "# status"
    local st
    st=$(grep -F "moat/$DEV/status {" "$T/all.out" | head -1 | cut -d' ' -f2-)
    for f in uptimemillis maxmillis mqttmillis espname espimage espbuild espip espfreeheap \
        errormessage deviceid state version slot certexpiry timesource time reconnects clockwaitms; do
        check "status has $f" hasf <(echo "$st") "\"$f\":"
    done
    check "status: deviceid is the id" hasf <(echo "$st") "\"deviceid\":\"$DEV\""
    check "status: state online" hasf <(echo "$st") '"state":"online"'
    check "status: time from sntp" hasf <(echo "$st") '"timesource":"sntp"'
    check "status: the certificate expiry is a date" has <(echo "$st") '"certexpiry":"20[0-9]{2}-[0-9]{2}-[0-9]{2}"'
    check "status: no error" hasf <(echo "$st") '"errormessage":""'
    check "status: espip is the address used" hasf <(echo "$st") '"espip":"127.0.0.1"'
    check "status: zero reconnects" hasf <(echo "$st") '"reconnects":0'
    local t0
    t0=$(now_ms)
    check "another status every statusinterval (2 s)" wait_for "$T/all.out" "moat/$DEV/status {" 5 3
    check "... not much faster" test $(($(now_ms) - t0)) -ge 2500
    check "the retained state is online" hasf "$T/all.out" "moat/$DEV/state online"
    check "the retained zones document is all off" has "$T/all.out" "moat/$DEV/zones \{\"zones\":\[\{\"zone\":1,\"on\":false"
    check "the relays are all off at start" relays_are 0x00
    check "the unknown key was warned about" hasf "$T/agent.log" "unknown key 'unknownkey'"
    check "the status file is written" hasf "$T/status.json" '"state":"online"'

    echo "# systemd notify"
    check "READY=1 was sent" wait_for "$T/notify.out" "READY=1" 5
    check "WATCHDOG=1 is sent (WatchdogSec 5 s)" wait_for "$T/notify.out" "WATCHDOG=1" 8 2
    check "STATUS= says online" hasf "$T/notify.out" "STATUS=online as $DEV"
    check "STATUS= showed the wait for the clock" hasf "$T/notify.out" "STATUS=waiting for a valid clock"

    echo "# the last will"
    kill -9 "$AGENT_PID"
    wait "$AGENT_PID" 2>/dev/null
    AGENT_PID=
    check "kill -9: the will publishes offline" wait_for "$T/all.out" "moat/$DEV/state offline" 10
    start_sub late "moat/$DEV/state"
    check "... retained for a later subscriber" wait_for "$T/late.out" "moat/$DEV/state offline" 5

    echo "# restart, then an orderly stop"
    start_agent
    check "the agent comes back online" wait_for "$T/all.out" "moat/$DEV/state online" 15 2
    wait_for "$T/all.out" "moat/$DEV/status {" 10 4
    kill "$AGENT_PID"
    wait_exit "$AGENT_PID" 10
    check "SIGTERM: exit 0" test "$EXIT_CODE" = 0
    AGENT_PID=
    check "... after publishing offline itself" wait_for "$T/all.out" "moat/$DEV/state offline" 5 2
    check "... and saying so in the log" hasf "$T/agent.log" "stopping: signal (exit code 0)"
    check "... with DISCONNECT, not a lost link" wait_for "$T/broker.log" "Client $DEV disconnected." 5
    check "no key material in the log" lacks "$T/agent.log" "PRIVATE KEY|BEGIN"
}

# -------------------------------------------------------------- commands --
section_commands() {
    online_setup
    local n

    echo "# status, unknown, not supported"
    n=$(count "$T/all.out" "moat/$DEV/status {")
    ask status ""
    check "status: ok" test "$RES" = '{"ok":true}'
    check "... and a status is published at once" wait_for "$T/all.out" "moat/$DEV/status {" 2 $((n + 1))
    ask frobnicate "x"
    check "an unknown command gets an error" test "$RES" = "{\"ok\":false,\"error\":\"unknown command 'frobnicate'\"}"
    for c in firmware flash ca cert key; do
        ask "$c" "payload"
        check "$c: not supported" test "$RES" = "{\"ok\":false,\"error\":\"command '$c' is not supported\"}"
    done
    n=$(count "$T/all.out" "moat/$DEV/result/invalid ")
    cmd "$(printf 'x%.0s' $(seq 40))" ""
    check "a name over 32 characters gets an error result under 'invalid'" \
        wait_for "$T/all.out" 'result/invalid {"ok":false,"error":"invalid command name (1..32 of A-Z a-z 0-9 _ . -)"}' 10 $((n + 1))

    echo "# zone payloads"
    ask zone "2 5"
    check "zone '2 5': ok" test "$RES" = '{"ok":true}'
    check "... relay 2 is on" wait_relays 0x02 2
    for p in "abc" "2" "2  5" " 2 5" "9 5" "0 5" "2 99999" "2 -1" '{"zone":2}' \
        '{"zone":"2","seconds":5}' '{"zone":2,"seconds":5,"x":1}' ""; do
        ask zone "$p"
        check "zone '$p': an error result: $RES" has <(echo "$RES") '^\{"ok":false,"error":".+"\}$'
    done
    check "... the words for a zone over the maximum" \
        hasf "$T/all.out" "zone 2: 99999 seconds is over the maximum of 600"
    check "... and bad payloads changed no relay" relays_are 0x02
    ask zone "$(printf '1%.0s' $(seq 100))"
    check "a payload over the zone command's limit" has <(echo "$RES") '"ok":false,"error":".*over the limit'
    head -c 20000 /dev/zero | tr '\0' 'x' >"$T/big"
    ask status "@$T/big"
    check "a payload larger than the receive buffer" \
        has <(echo "$RES") '"ok":false,"error":"payload of 20000 bytes is larger than the receive buffer'
    ask zone "off"
    check "zone 'off'" wait_relays 0x00 3

    echo "# config"
    local sum
    sum=$(sha256sum <"$T/config.json")
    ask config '{"mqttserver": "localhost", oops'
    check "config: not JSON gets an error: $RES" has <(echo "$RES") '"ok":false,"error":"config command: line 1: .*JSON'
    ask config '{"mqttserver": "localhost"}'
    check "config: missing keys get an error naming one: $RES" \
        has <(echo "$RES") "\"ok\":false,\"error\":\"config command: .*'(cafile|certfile|keyfile|deviceid)'"
    write_config "$T/new.json"
    sed -i 's/"retrytimeout": [0-9]*/"retrytimeout": 5/' "$T/new.json"
    ask config "@$T/new.json"
    check "config: a value out of range names the key: $RES" has <(echo "$RES") "'retrytimeout'"
    write_config "$T/new.json"
    sed -i "s|$DEV.crt|nosuch.crt|" "$T/new.json"
    ask config "@$T/new.json"
    check "config: certificate files are checked before anything is written: $RES" \
        has <(echo "$RES") '"ok":false,"error":"credentials: .*nosuch.crt'
    check "... the bad configs left the file as it was" test "$(sha256sum <"$T/config.json")" = "$sum"
    check "... and the agent online" kill -0 "$AGENT_PID"
    STATUSINTERVAL=1000 write_config "$T/new.json" '"zones": {"count": 4}'
    sed -i '/"zones": {"count": 8/d' "$T/new.json"
    # A retained command: run once as it arrives (MQTT clears the retain
    # flag for live delivery), refused when the next session's SUBSCRIBE
    # brings it back, so a retained reboot cannot loop forever.
    ask status "now" -r
    check "a retained command is run as it arrives" test "$RES" = '{"ok":true}'
    n=$(count "$T/all.out" "moat/$DEV/state online")
    ask config "@$T/new.json"
    check "config: a good config is accepted" test "$RES" = '{"ok":true}'
    check "... written over the config file" cmp -s "$T/new.json" "$T/config.json"
    check "... atomically (no temporary file left)" test -z "$(find "$T" -maxdepth 1 -name 'config.json.tmp*')"
    check "... and applied: the agent reconnects" wait_for "$T/all.out" "moat/$DEV/state online" 10 $((n + 1))
    check "... with 4 zones" wait_for "$T/all.out" '"zone":4,"on":false,"remaining":0}],' 5
    ask zone "5 10"
    check "... so zone 5 no longer exists: $RES" has <(echo "$RES") 'zone 5'
    check "... the config change disconnected in order (no will)" \
        hasf "$T/broker.log" "Client $DEV disconnected."
    check "the retained command came back with the new session and was refused" \
        wait_for "$T/all.out" "retained commands are refused" 5
    ops_tls
    "$MQTT" pub "${OPS_TLS[@]}" -q 1 -t "moat/$DEV/cmd/status" -r -n

    echo "# SIGHUP reloads the config file"
    cp "$T/config.json" "$T/good.json"
    echo '{"mqttserver": ' >"$T/config.json"
    kill -HUP "$AGENT_PID"
    check "a bad file is refused on SIGHUP" wait_for "$T/agent.log" "reload refused, the old config stays in force" 5
    ask zone "4 1"
    check "... and the old config stays in force: $RES" test "$RES" = '{"ok":true}'
    cp "$T/good.json" "$T/config.json"
    sed -i 's/"count": 4/"count": 6/' "$T/config.json"
    n=$(count "$T/all.out" "moat/$DEV/state online")
    kill -HUP "$AGENT_PID"
    check "a good file is applied on SIGHUP" wait_for "$T/all.out" "moat/$DEV/state online" 10 $((n + 1))
    check "... with 6 zones" wait_for "$T/all.out" '"zone":6,"on":false,"remaining":0}],' 5

    echo "# reboot"
    ask reboot ""
    check "reboot: ok" test "$RES" = '{"ok":true}'
    wait_exit "$AGENT_PID" 10
    check "... then the agent exits with code 5" test "$EXIT_CODE" = 5
    AGENT_PID=
    check "... and an orderly offline" wait_for "$T/all.out" "moat/$DEV/state offline" 5
    check "... with DISCONNECT (the broker saw no lost link)" \
        wait_for "$T/broker.log" "Client $DEV disconnected." 5 2
    check "... never a reset" lacks "$T/broker.log" "$DEV disconnected due to"
    check "... with the relays off" relays_are 0x00
}

# ----------------------------------------------------------------- zones --
section_zones() {
    online_setup
    local t0 t1 el

    echo "# a timer of 2 s"
    cmd zone "2 2"
    check "zone 2 on" wait_relays 0x02 3
    t0=$(now_ms)
    check "... in the retained zones document" wait_for "$T/all.out" '{"zone":2,"on":true,"remaining":2}' 3
    check "... and off again" wait_relays 0x00 5
    t1=$(now_ms)
    el=$((t1 - t0))
    check "... after 2 s (took ${el} ms)" test "$el" -ge 1700 -a "$el" -le 3000
    check "... the zones document says off" wait_for "$T/all.out" '{"zone":2,"on":false,"remaining":0}' 3 2

    echo "# exclusive"
    cmd zone "1 60"
    check "zone 1 on" wait_relays 0x01 3
    cmd zone "3 2"
    check "zone 3 on stops zone 1 in the same write" wait_relays 0x04 3
    check "... never both on" lacks "$T/agent.log" "relays: 0x05"
    check "... zones document: 1 off, 3 on" \
        wait_for "$T/all.out" '{"zone":1,"on":false,"remaining":0},{"zone":2,"on":false,"remaining":0},{"zone":3,"on":true' 3
    check "... zone 3 ends on time" wait_relays 0x00 4

    echo "# JSON and off payloads"
    cmd zone '{"zone":5,"seconds":30}'
    check "JSON payload" wait_relays 0x10 3
    cmd zone '5 off'
    check "'5 off'" wait_relays 0x00 3
    cmd zone '{"zone":6,"seconds":30}'
    wait_relays 0x20 3
    cmd zone '{"off":true}'
    check "JSON all off" wait_relays 0x00 3

    echo "# retained document and faults"
    cmd zone "7 30"
    wait_relays 0x40 3
    start_sub late "moat/$DEV/zones"
    check "a later subscriber gets the current zones document" \
        wait_for "$T/late.out" '{"zone":7,"on":true' 5
    kill "$AGENT_PID"
    wait_exit "$AGENT_PID" 10
    AGENT_PID=
    check "stopping the agent switches every zone off" relays_are 0x00
    check "... and says so retained" wait_for "$T/all.out" '{"zone":7,"on":false' 5
    start_agent
    wait_for "$T/all.out" "moat/$DEV/state online" 15 2
    check "all zones are off at start" relays_are 0x00
}

# --------------------------------------------------------------- restart --
section_restart() {
    WAITTIMEOUT=10000 RETRYTIMEOUT=500 online_setup
    local t0 el

    echo "# the broker restarts"
    stop_broker
    check "the agent notices the lost link" wait_for "$T/agent.log" "lost the connection" 10
    sleep 2
    start_broker || { bad "the broker restarts on port $PORT"; return; }
    t0=$(now_ms)
    start_sub after "moat/$DEV/state" "moat/$DEV/status"
    # The backoff cap is waittimeout/2 = 5 s: the next attempt comes within
    # it, plus a TLS handshake.
    if wait_for "$T/after.out" "moat/$DEV/state online" 9; then
        el=$(($(now_ms) - t0))
        ok "the agent is back online within its backoff bound (${el} ms)"
    else
        bad "the agent is back online within its backoff bound of 5 s"
    fi
    check "... and publishes status again" wait_for "$T/after.out" "moat/$DEV/status {" 5
    check "... which counts the reconnect" has "$T/after.out" '"reconnects":1[,}]'
    check "the clock was not asked again" test "$(count "$T/agent.log" "clock is valid:")" -eq 1
    check "the credentials were not loaded again" test "$(count "$T/agent.log" "credentials loaded")" -eq 1

    echo "# the broker stays away longer than waittimeout (10 s)"
    cmd zone "1 300"
    wait_relays 0x01 3
    stop_broker
    t0=$(now_ms)
    wait_exit "$AGENT_PID" 20
    el=$(($(now_ms) - t0))
    check "the agent exits with code 4" test "$EXIT_CODE" = 4
    AGENT_PID=
    check "... after about 10 s (${el} ms)" test "$el" -ge 9000 -a "$el" -le 13000
    check "... saying why" hasf "$T/agent.log" "waittimeout 10000 ms"
    check "... with every zone off" relays_are 0x00
}

# ----------------------------------------------------------------- clock --
# No TLS before the clock is valid: the broker must see no connection at all.
section_clock() {
    make_pki || { bad "moat pki"; exit 1; }
    start_broker || { bad "broker"; exit 1; }
    local mode conns
    for mode in silent unsync unix:0 unix:1577836800; do
        echo "# a time server that answers '$mode'"
        start_sntp "$mode"
        WAITTIMEOUT=60000 write_config "$T/config.json"
        conns=$(count "$T/broker.log" "New connection")
        rm -f "$T/status.json"
        start_agent
        case $mode in
        silent) check "$mode: the log says the server did not answer" \
            wait_for "$T/agent.log" "did not answer; next try" 12 ;;
        unsync) check "$mode: the log says it is not synchronised" \
            wait_for "$T/agent.log" "not synchronised" 5 ;;
        *) check "$mode: the log refuses the time from another NTP era" \
            wait_for "$T/agent.log" "earlier NTP era" 5 ;;
        esac
        sleep 1
        check "$mode: the agent asked the time server" has "$T/sntp.log" "^request 48 bytes"
        check "$mode: the agent still runs" kill -0 "$AGENT_PID"
        check "$mode: no connection reached the broker" \
            test "$(count "$T/broker.log" "New connection")" -eq "$conns"
        check "$mode: the status file shows the wait" hasf "$T/status.json" '"state":"time"'
        check "$mode: ... with no time source" hasf "$T/status.json" '"timesource":"none"'
        check "$mode: ... and why in errormessage" has "$T/status.json" '"errormessage":"[^"]+'
        check "$mode: the log shows the wait" hasf "$T/agent.log" "no certificate is checked"
        stop_agent
    done
    echo "# a time server that answers the real time"
    start_sntp now
    write_config "$T/config.json"
    conns=$(count "$T/broker.log" "New client connected")
    start_agent
    check "now: the agent connects" wait_for "$T/broker.log" "New client connected" 15 $((conns + 1))
    check "now: the status file says sntp" wait_for "$T/status.json" '"timesource":"sntp"' 5
    stop_agent
}

# -------------------------------------------------------------- watchdog --
section_watchdog() {
    online_setup --stall-limit 2
    cmd zone "1 300"
    check "zone 1 on" wait_relays 0x01 3
    echo "# the loop stalls (SIGSTOP) past --stall-limit 2"
    kill -STOP "$AGENT_PID"
    sleep 3
    kill -CONT "$AGENT_PID"
    wait_exit "$AGENT_PID" 5
    check "the agent exits with code 3" test "$EXIT_CODE" = 3
    AGENT_PID=
    check "... saying the loop stalled" hasf "$T/agent.log" "watchdog: the main loop stalled"
    check "... with every relay off" relays_are 0x00
    check "... and the will says offline" wait_for "$T/all.out" "moat/$DEV/state offline" 40
}

# --------------------------------------------------------------- presets --
# The seed's topics, selected by "preset"; the broker ACL gets their rules.
section_presets() {
    make_pki || { bad "moat pki"; exit 1; }
    start_broker || { bad "broker"; exit 1; }
    cat >>"$B/acl" <<EOF

# secureESP8266 and poc topics (this test only)
pattern write /will/%u
pattern write /status/%u
pattern write /zones/%u
pattern write /result/%u/#
pattern read /command/%u/#
pattern read irrigation/zone/on
user ops
topic readwrite /#
topic readwrite irrigation/#
EOF
    kill -HUP "$BROKER_PID"
    wait_for "$T/broker.log" "Reloading config" 5
    sleep 0.3
    start_sntp now

    echo "# preset secureesp8266"
    write_config "$T/config.json" '"preset": "secureesp8266"'
    start_sub seed "/will/$DEV" "/status/$DEV" "/result/$DEV/#" "/zones/$DEV"
    start_agent
    check "the state is on /will/<id>" wait_for "$T/seed.out" "/will/$DEV online" 15
    check "the status is on /status/<id>" wait_for "$T/seed.out" "/status/$DEV {" 5
    check "... with the seed's field names only" \
        has <(grep -F "/status/$DEV {" "$T/seed.out" | head -1) '"uptimemillis":.*"espfreeheap":[0-9]+,"errormessage":"[^"]*"\}$'
    ops_tls
    "$MQTT" pub "${OPS_TLS[@]}" -q 1 -t "/command/$DEV/zone" -m "3 30"
    check "a command on /command/<id>/zone runs" wait_relays 0x04 5
    check "... its result is on /result/<id>/zone" wait_for "$T/seed.out" "/result/$DEV/zone {\"ok\":true}" 5
    check "... and the zones on /zones/<id>" wait_for "$T/seed.out" "/zones/$DEV {" 5
    check "the broker granted the subscription" lacks "$T/agent.log" "refused the subscription"
    stop_agent
    check "an orderly stop says offline on /will/<id>" wait_for "$T/seed.out" "/will/$DEV offline" 5

    echo "# preset poc: zone commands on irrigation/zone/on"
    write_config "$T/config.json" '"preset": "poc"'
    start_sub poc "moat/$DEV/#"
    start_agent
    check "online on the moat topics" wait_for "$T/poc.out" "moat/$DEV/state online" 15
    ops_tls
    "$MQTT" pub "${OPS_TLS[@]}" -q 1 -t "irrigation/zone/on" -m "2 30"
    check "irrigation/zone/on '2 30' switches zone 2" wait_relays 0x02 5
    check "... with its result as the zone command's" wait_for "$T/poc.out" "moat/$DEV/result/zone {\"ok\":true}" 5
    stop_agent
}

case $SECTION in
config | online | commands | zones | restart | clock | watchdog | presets) "section_$SECTION" ;;
*) echo "agent_test: unknown section '$SECTION'" >&2; exit 2 ;;
esac

if [ "$FAIL" -ne 0 ]; then
    [ -f "$T/agent.log" ] && tail -100 "$T/agent.log" | sed 's/^/    agent | /'
    [ -f "$T/broker.log" ] && tail -20 "$T/broker.log" | sed 's/^/    broker | /'
fi
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
