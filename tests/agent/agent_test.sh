#!/bin/bash
# tests/agent/agent_test.sh - moat-agent end to end, against a real Mosquitto.
#
# usage: agent_test.sh SECTION MOAT MOAT_AGENT MOAT_MQTT AGENT_HELPER [MOAT_LAUNCH MOAT_SERVER]
#
# Every section makes its own PKI with `moat pki`, its own broker config with
# `moat broker-config` (TLS, ACL) on a free loopback port, its own fake SNTP
# server (agent_helper) and its own directory, so ctest runs the sections in
# parallel. The operator certificate with moat-mqtt sends the commands and
# reads the results, as an operator would. Every process started here is
# stopped by its pid.
#
# Sections: config online commands zones restart clock watchdog presets,
# and the signed updates (moat-launch runs the agent from A/B slots;
# moat-server is the update server; images are the agent itself, signed
# at run time with `moat keygen` and `moat sign`): update download
# mqttupdate creds powercut
set -u

SECTION=${1:?usage: agent_test.sh SECTION MOAT MOAT_AGENT MOAT_MQTT AGENT_HELPER [MOAT_LAUNCH MOAT_SERVER]}
MOAT=${2:?}
AGENT=${3:?}
MQTT=${4:?}
HELPER=${5:?}
LAUNCH=${6:-}
SERVER=${7:-}
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
SERVER_PID=
LOOP_PID=
PASS=0
FAIL=0
FAILED=()

cleanup() {
    local p
    [ -n "$AGENT_PID" ] && kill -CONT "$AGENT_PID" 2>/dev/null
    [ -n "$LOOP_PID" ] && stop_launched
    for p in $AGENT_PID "${PIDS[@]}" $SNTP_PID $SERVER_PID $BROKER_PID; do
        kill "$p" 2>/dev/null
    done
    for p in $AGENT_PID "${PIDS[@]}" $SNTP_PID $SERVER_PID $BROKER_PID; do
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
bad() { FAIL=$((FAIL + 1)); FAILED+=("$1"); echo "FAIL - $1"; }
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

# write_config FILE [EXTRA-JSON-MEMBERS]: a config for this device and broker
# (credentials: $CRED/ca.crt, device.crt, device.key when CRED is set).
write_config() {
    local ca=$P/ca.crt crt=$P/devices/$DEV.crt key=$P/devices/$DEV.key
    [ -n "${CRED:-}" ] && ca=$CRED/ca.crt crt=$CRED/device.crt key=$CRED/device.key
    cat >"$1" <<EOF
{
  "mqttserver": "localhost",
  "mqttport": $PORT,
  "ntpserver": "127.0.0.1:$SNTP_PORT",
  "statusinterval": ${STATUSINTERVAL:-2000},
  "waittimeout": ${WAITTIMEOUT:-30000},
  "retrytimeout": ${RETRYTIMEOUT:-500},
  "deviceid": "$DEV",
  "cafile": "$ca",
  "certfile": "$crt",
  "keyfile": "$key",
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

    echo "# status, unknown, updates without their settings"
    n=$(count "$T/all.out" "moat/$DEV/status {")
    ask status ""
    check "status: ok" test "$RES" = '{"ok":true}'
    check "... and a status is published at once" wait_for "$T/all.out" "moat/$DEV/status {" 2 $((n + 1))
    ask frobnicate "x"
    check "an unknown command gets an error" test "$RES" = "{\"ok\":false,\"error\":\"unknown command 'frobnicate'\"}"
    # Without --update-key, a slot directory or an update server, the update
    # commands refuse with words; a credential that does not parse too.
    ask firmware ""
    check "firmware without a trusted key: $RES" \
        test "$RES" = '{"ok":false,"error":"no trusted update key: start moat-agent with --update-key FILE"}'
    ask firmware "now please"
    check "firmware with a payload other than stage: $RES" \
        has <(echo "$RES") '"ok":false,"error":"the payload is empty .* or \\"stage\\"'
    ask flash ""
    check "flash without a slot directory: $RES" \
        has <(echo "$RES") '"ok":false,"error":"no slot directory: moat-agent was not started by moat-launch'
    for c in ca cert key; do
        ask "$c" "payload"
        check "$c: a payload that is no credential gets an error: $RES" \
            has <(echo "$RES") '^\{"ok":false,"error":".+"\}$'
    done
    ask cert ""
    check "cert: an empty payload: $RES" \
        test "$RES" = '{"ok":false,"error":"the payload is the new device certificate, PEM or DER"}'
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
    # Clearing it: the empty retained message reaches the agent live, as an
    # empty command (an empty reboot must not reboot).
    ask status "" -r
    check "the empty retained message that clears it is not run: $RES" \
        has <(echo "$RES") '^\{"ok":true,"note":"taken as the clearing of the retained .status. refused in this session, not run'
    ask status ""
    check "... and the next empty status runs: $RES" test "$RES" = '{"ok":true}'

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

# ------------------------------------------------------- signed updates --
# The update sections run the agent as a device does: moat-launch picks the
# A/B slot and execs the agent from it, again after every exit (systemd's
# Restart=always), so exit code 5 after an install starts the new image on
# trial. The images are the agent binary itself, signed with `moat sign`
# as 1.0.0, 2.0.0, ...; versions differ only in their signed headers.

S=$T/slots          # the slot directory
SRV=$T/srv          # the update server's directory
PRODUCT=moat-agent  # the agent's default product id

need_update_tools() {
    [ -x "$LAUNCH" ] && [ -x "$SERVER" ] ||
        { bad "agent_test.sh $SECTION needs MOAT_LAUNCH and MOAT_SERVER"; exit 1; }
}

# start_server [options]: moat-server over $SRV on a free port (SPORT).
start_server() {
    local i
    mkdir -p "$SRV/images" "$SRV/configs" "$SRV/devices"
    rm -f "$SRV/port"
    "$SERVER" --dir "$SRV" --cert "$P/servers/localhost.crt" --key "$P/servers/localhost.key" \
        --ca "$P/ca.crt" --port 0 --bind 127.0.0.1 --port-file "$SRV/port" --path /fw/ \
        --product "$PRODUCT" "$@" >>"$T/server.log" 2>&1 &
    SERVER_PID=$!
    for i in $(seq 1 100); do
        [ -s "$SRV/port" ] && { SPORT=$(cat "$SRV/port"); return 0; }
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    sed 's/^/    server | /' "$T/server.log"
    return 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}

# sign OUT VERSION COUNTER [FILE [KEY [PRODUCT]]]: a signed image of FILE
# (default: the agent binary).
sign() {
    "$MOAT" sign --key "${5:-$T/fw.pem}" --product "${6:-$PRODUCT}" --version "$2" \
        --counter "$3" "${4:-$AGENT}" -o "$1" >/dev/null
}

# publish IMAGE: the update server's only image, renamed in atomically.
publish() {
    rm -f "$SRV/images/"*
    cp "$1" "$SRV/images/.new.tmp" && mv "$SRV/images/.new.tmp" "$SRV/images/$(basename "$1")"
}

# flip FILE OFFSET: change one byte of FILE.
flip() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\$(printf '%03o' $(((b + 1) % 256)))" |
        dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# start_launched [AGENT-ARGS...]: moat-launch runs the agent from $S, and
# again after each exit; one line per exit in $T/launch.log.
AGENT_ARGS=()
start_launched() {
    rm -f "$T/launch.stop"
    (
        while [ ! -e "$T/launch.stop" ]; do
            echo "---- moat-launch" >>"$T/agent.log"
            "$LAUNCH" --dir "$S" -- -c "$T/config.json" --relay-file "$T/relays" \
                --status-file "$T/status.json" "${AGENT_ARGS[@]}" "$@" >>"$T/agent.log" 2>&1 &
            echo $! >"$T/agent.pid"
            wait $!
            echo "exit $?" >>"$T/launch.log"
            [ -e "$T/launch.stop" ] || sleep 0.2
        done
    ) &
    LOOP_PID=$!
}

agent_pid() { cat "$T/agent.pid" 2>/dev/null; }

stop_launched() {
    local i p
    [ -n "$LOOP_PID" ] || return 0
    touch "$T/launch.stop"
    for i in $(seq 1 100); do
        p=$(agent_pid)
        [ -n "$p" ] && kill "$p" 2>/dev/null
        kill -0 "$LOOP_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill "$LOOP_PID" 2>/dev/null
    wait "$LOOP_PID" 2>/dev/null
    LOOP_PID=
}

launch_status() { "$LAUNCH" --dir "$S" --status 2>&1; }
exits() { count "$T/launch.log" "exit "; }
last_status() { grep -F "moat/$DEV/status {" "$T/all.out" | tail -1 | cut -d' ' -f2-; }
# wait_status FIXED-STRING SECONDS: a status document holding it arrives
# (counting from the N-th status when N is given).
wait_status() {
    local deadline=$(($(now_ms) + $2 * 1000))
    until grep -F "moat/$DEV/status {" "$T/all.out" | tail -n +"${3:-1}" | grep -Fq -e "$1"; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}
statuses() { count "$T/all.out" "moat/$DEV/status {"; }

# update_setup: PKI, broker, time server, signing keys, update server, a
# config that names it, v1 provisioned into slot a, and the agent launched
# from it and online.
update_setup() {
    need_update_tools
    make_pki || { bad "moat pki made the PKI"; exit 1; }
    start_broker || { bad "mosquitto starts"; exit 1; }
    start_sntp now
    (cd "$T" && "$MOAT" keygen fw >/dev/null && "$MOAT" keygen other >/dev/null) ||
        { bad "moat keygen"; exit 1; }
    start_server || { bad "moat-server starts"; exit 1; }
    write_config "$T/config.json" "\"downloadserver\": \"localhost\", \"downloadport\": $SPORT,
  \"downloadpath\": \"/fw/\"${EXTRA_CONFIG:+, $EXTRA_CONFIG}"
    "$LAUNCH" --dir "$S" --install "$AGENT" --version 1.0.0 --counter 1 --confirmed 2>>"$T/agent.log" ||
        { bad "moat-launch provisions v1"; exit 1; }
    # (not moat/<id>/#: the image blocks would fill the file)
    start_sub all "moat/$DEV/state" "moat/$DEV/status" "moat/$DEV/result/#" \
        "moat/$DEV/zones" "moat/$DEV/ota/status" || { bad "operator subscriber"; exit 1; }
    AGENT_ARGS=(--update-key "$T/fw.pub")
    [ -n "${NO_LAUNCH:-}" ] && return 0
    start_launched
    if wait_status '"version":"1.0.0","slot":"a"' 20; then
        ok "v1 runs from slot a and is online (broker $PORT, update server $SPORT)"
    else
        bad "v1 runs from slot a and is online"
        exit 1
    fi
}

# untouched WHAT SLOT SHA EXITS: after a refusal, the running slot and the
# record are as they were, and the agent did not restart.
untouched() {
    local st
    st=$(launch_status)
    check "$1: the running slot $2 is untouched" test "$(sha256sum <"$S/slot-$2")" = "$3"
    check "$1: ... still the confirmed, active one" \
        has <(echo "$st") "^\{\"slot\":\"$2\",\"active\":\"$2\",\"pending\":\"-\",\"state\":\"confirmed\""
    check "$1: ... and the agent runs on, no restart" test "$(exits)" = "$4"
}

# refuse WHAT IMAGE WORDS: the update server offers IMAGE; the agent refuses
# it with WORDS in its result and its status.
refuse() {
    local what=$1 sum n
    sum=$(sha256sum <"$S/slot-b")
    n=$(exits)
    publish "$2"
    ask firmware ""
    check "$what: refused: $RES" hasf <(echo "$RES") "{\"ok\":false,\"error\":\"$3"
    cmd status ""
    check "$what: ... the status says it in errormessage" \
        wait_status "\"errormessage\":\"firmware: $3" 5 "$(statuses)"
    untouched "$what" b "$sum" "$n"
}

# ---------------------------------------------------------------- update --
# v1 -> v2 over HTTPS with the launcher, 304, every refusal, rollback.
section_update() {
    local st n sz
    update_setup

    echo "# v1 -> v2 from the update server"
    sign "$T/v2.img" 2.0.0 2
    publish "$T/v2.img"
    ask firmware ""
    check "firmware: v2 installed into slot b: $RES" \
        test "$RES" = '{"ok":true,"firmware":"installed","version":"2.0.0","slot":"b"}'
    check "... the server saw curimage=1.0.0" hasf "$T/server.log" "status=200"
    check "... the agent restarts (exit code 5)" wait_for "$T/launch.log" "exit 5" 10
    check "... moat-launch starts v2 on trial" \
        wait_for "$T/agent.log" "slot b (version 2.0.0) on trial: 2 trial starts left" 10
    check "... its status shows slot b, 2.0.0, on trial" \
        wait_status '"version":"2.0.0","slot":"b"' 15
    check "... trial:true before it confirms" \
        hasf <(grep -F '"version":"2.0.0"' "$T/all.out") '"trial":true,"bootstate":"trial"'
    check "... then it confirms: trial:false, counter 2" \
        wait_status '"trial":false,"bootstate":"confirmed","securitycounter":2,"rollback":""' 10
    check "... after it reached the broker and published its status" \
        has "$T/agent.log" "slot b \(version 2.0.0\) reached the broker and confirmed"
    st=$(launch_status)
    check "the boot record: b active and confirmed, counter 2" \
        has <(echo "$st") '^\{"slot":"b","active":"b","pending":"-","state":"confirmed","trial":false,"trialsleft":0,"version":"2.0.0","securitycounter":2'
    check "slot b holds the agent, byte for byte" cmp -s "$S/slot-b" "$AGENT"
    ask firmware ""
    check "firmware again: 304, it runs the newest: $RES" \
        test "$RES" = '{"ok":true,"firmware":"current","version":"2.0.0"}'
    check "... the server said 304" hasf "$T/server.log" "status=304"

    echo "# refusals: each in its own words; the running slot is untouched"
    sign "$T/bad-payload.img" 2.1.0 2
    sz=$(stat -c %s "$T/bad-payload.img")
    flip "$T/bad-payload.img" $((sz - 1000))
    refuse "a changed payload byte" "$T/bad-payload.img" \
        "payload SHA-256 does not match the header: the payload was changed"
    sign "$T/bad-header.img" 2.2.0 2
    flip "$T/bad-header.img" 70
    refuse "a changed header byte" "$T/bad-header.img" "image signature does not verify with key id "
    sign "$T/other-key.img" 2.3.0 2 "$AGENT" "$T/other.pem"
    refuse "an image signed by another key" "$T/other-key.img" "image is signed by unknown key id "
    sign "$T/old-counter.img" 2.4.0 1
    refuse "a lower security counter" "$T/old-counter.img" \
        "image security counter 1 is lower than the device's 2"
    sign "$T/product.img" 2.5.0 2 "$AGENT" "$T/fw.pem" other-board
    echo '{"product": "other-board"}' >"$SRV/devices/$DEV.json"
    refuse "an image for another product" "$T/product.img" 'image is for product \"other-board\"'
    rm -f "$SRV/devices/$DEV.json"
    check "only v2 and the changed payload (good signature) reached a slot; the other refusals came before any write" \
        test "$(count "$T/agent.log" "update: writing slot")" = 2

    echo "# a broken v3 (exits at once) rolls back to v2 by itself"
    printf '#!/bin/sh\necho "broken v3: exits at once" >&2\nexit 3\n' >"$T/broken.sh"
    sign "$T/v3.img" 3.0.0 3 "$T/broken.sh"
    publish "$T/v3.img"
    n=$(exits)
    ask firmware ""
    check "firmware: the broken v3 installed into slot a: $RES" \
        test "$RES" = '{"ok":true,"firmware":"installed","version":"3.0.0","slot":"a"}'
    check "v3 is started on trial 3 times and exits 3 each time" \
        wait_for "$T/launch.log" "exit 3" 20 3
    check "... then v2 runs again by itself" \
        wait_for "$T/agent.log" "last rollback: slot a (version 3.0.0) did not confirm within 3 starts: back to slot b (version 2.0.0)" 10
    check "... and its status says why" \
        wait_status '"rollback":"slot a (version 3.0.0) did not confirm within 3 starts: back to slot b (version 2.0.0)"' 15
    check "... running 2.0.0 from slot b, confirmed, counter still 2" \
        hasf <(last_status) '"version":"2.0.0","slot":"b"'
    check "... (status members)" \
        hasf <(last_status) '"trial":false,"bootstate":"confirmed","securitycounter":2'
    st=$(launch_status)
    check "the boot record: a rejected after 3 trial starts, b active" \
        has <(echo "$st") '"active":"b".*"a":\{"state":"rejected","version":"3.0.0",[^}]*"trialstarts":3'
    check "exits: 5 (install), 3, 3, 3" \
        test "$(tail -n +$((n + 1)) "$T/launch.log" | head -4 | tr '\n' ' ')" = "exit 5 exit 3 exit 3 exit 3 "
}

# -------------------------------------------------------------- download --
# A moat-server that cuts every download after 300000 bytes, and the agent
# told (config + SIGHUP) to download from it; returns once it is back
# online. write_config's settings (RETRYTIMEOUT) pass through. Fails only
# when the server does not start.
cutting_server() {
    local n
    stop_server
    start_server --cut-after 300000 || { bad "moat-server --cut-after starts"; return 1; }
    write_config "$T/config.json" "\"downloadserver\": \"localhost\", \"downloadport\": $SPORT,
  \"downloadpath\": \"/fw/\""
    n=$(count "$T/all.out" "moat/$DEV/state online")
    kill -HUP "$(agent_pid)"
    # as everywhere here, the checks that follow tell whether it came back
    wait_for "$T/all.out" "moat/$DEV/state online" 10 $((n + 1))
    return 0
}

# config.json from the update server; a download cut in the middle goes on
# with Range; firmware stage, then flash.
section_download() {
    local sum n st sz
    update_setup

    echo "# config.json from the update server (config with an empty payload)"
    sum=$(sha256sum <"$T/config.json")
    ask config ""
    check "no config.json for this device on the server: an error: $RES" \
        has <(echo "$RES") '"ok":false,"error":"update server answered 404 Not Found for /fw/config.json'
    echo '{"mqttserver": "localhost", oops' >"$SRV/configs/$DEV.json"
    ask config ""
    check "a broken config.json on the server is refused: $RES" \
        has <(echo "$RES") '"ok":false,"error":"config.json from the update server: line 1: .*JSON'
    check "... the config file is as it was" test "$(sha256sum <"$T/config.json")" = "$sum"
    STATUSINTERVAL=1500 write_config "$SRV/configs/$DEV.json" "\"downloadserver\": \"localhost\",
  \"downloadport\": $SPORT, \"downloadpath\": \"/fw/\""
    n=$(count "$T/all.out" "moat/$DEV/state online")
    ask config ""
    check "a good config.json from the server is applied: $RES" \
        test "$RES" = '{"ok":true,"config":"applied"}'
    check "... written over the config file" cmp -s "$SRV/configs/$DEV.json" "$T/config.json"
    check "... and in force: the agent reconnects" \
        wait_for "$T/all.out" "moat/$DEV/state online" 10 $((n + 1))

    echo "# a download cut in the middle goes on where it stopped (Range)"
    cutting_server || return
    sign "$T/v2.img" 2.0.0 2
    sz=$(stat -c %s "$T/v2.img")
    publish "$T/v2.img"
    n=$(exits)
    ask firmware stage
    check "firmware stage: v2 staged in slot b: $RES" \
        test "$RES" = '{"ok":true,"firmware":"staged","version":"2.0.0","slot":"b"}'
    check "... the server cut the first download after 300000 bytes" \
        hasf "$T/server.log" "sent=300000 of=$sz (connection broken)"
    check "... the agent went on at byte 300000" \
        hasf "$T/agent.log" "firmware: the download goes on at byte 300000 of $sz (connection 2)"
    check "... with Range: the server sent only the rest" \
        has "$T/server.log" "status=206 range=bytes=300000- .*sent=$((sz - 300000)) of=$((sz - 300000))"
    check "... so every byte came once ($sz bytes, 2 connections)" \
        hasf "$T/agent.log" "(2 connections, $sz bytes received)"
    check "... staged: the agent runs on" test "$(exits)" = "$n"
    st=$(launch_status)
    check "the boot record: b pending, a still active" \
        has <(echo "$st") '^\{"slot":"a","active":"a","pending":"b","state":"pending"'
    cmd status ""
    check "the status says the slot waits: bootstate pending" wait_status '"bootstate":"pending"' 5

    echo "# flash: restart into the staged image"
    ask flash ""
    check "flash: ok" test "$RES" = '{"ok":true}'
    check "... the agent restarts (exit 5)" wait_for "$T/launch.log" "exit 5" 10
    check "... v2 runs on trial and confirms" \
        wait_status '"version":"2.0.0","slot":"b","certexpiry"' 15
    check "... confirmed" wait_status '"trial":false,"bootstate":"confirmed","securitycounter":2' 10
    ask flash ""
    check "flash with nothing staged: an error: $RES" \
        has <(echo "$RES") '"ok":false,"error":"no verified image waits for its trial start'

    echo "# a restart (kill -9) in the middle of a download: the next firmware command resumes it"
    # retrytimeout 5 s: the agent waits that long before it connects again,
    # and is killed meanwhile
    RETRYTIMEOUT=5000 cutting_server || return
    sign "$T/v3.img" 3.0.0 3
    sz=$(stat -c %s "$T/v3.img")
    publish "$T/v3.img"
    n=$(count "$T/agent.log" "firmware: the connection broke: ")
    cmd firmware ""
    check "the connection broke after 300000 bytes; the agent made what it had durable" \
        wait_for "$T/agent.log" "firmware: the connection broke: " 10 $((n + 1))
    local durable at
    durable=$(sed -n 's/.*firmware: the connection broke: \([0-9]*\) payload bytes are durable.*/\1/p' "$T/agent.log" | tail -1)
    n=$(count "$T/all.out" "moat/$DEV/state online")
    kill -9 "$(agent_pid)"
    check "... killed (-9) while it waited to connect again" wait_for "$T/launch.log" "exit 137" 5
    check "... moat-launch starts it again (v2)" wait_for "$T/all.out" "moat/$DEV/state online" 15 $((n + 1))
    ask firmware ""
    check "firmware again: v3 installed into slot a: $RES" \
        test "$RES" = '{"ok":true,"firmware":"installed","version":"3.0.0","slot":"a"}'
    check "... from the ${durable:-?} payload bytes slot a already held" \
        hasf "$T/agent.log" "firmware: slot a holds ${durable:-?} payload bytes of an image a restart interrupted"
    at=$(sed -n 's/.*the download resumes at byte \([0-9]*\) .*/\1/p' "$T/agent.log" | tail -1)
    check "... the header came again (Range bytes=0-815), was verified again" \
        has "$T/server.log" "status=206 range=bytes=0-815 "
    check "... then only the rest, from byte ${at:-?} (206 with If-Range)" \
        has "$T/server.log" "status=206 range=bytes=${at:-x}- if-range=\"[^\"]+\" first=${at:-x} sent=$((sz - ${at:-0}))"
    check "... so the restarted agent received $((sz - ${at:-0})) of $sz bytes" \
        hasf "$T/agent.log" "(1 connections, $((sz - ${at:-0})) bytes received)"
    check "v3 runs on trial from slot a and confirms" \
        wait_status '"version":"3.0.0","slot":"a","certexpiry"' 20
    check "... counter 3" wait_status '"trial":false,"bootstate":"confirmed","securitycounter":3' 10
    check "slot a holds the agent, byte for byte" cmp -s "$S/slot-a" "$AGENT"
    check "no resume state is left" test ! -e "$S/download.state"
}

# ------------------------------------------------------------ mqttupdate --
# The image over MQTT (`moat ota push`): v1 -> v2 with the launcher,
# refusals, and transfers that resume after a device restart (kill -9) and
# after an operator restart, without starting over.
# push IMAGE [ARGS...]: moat ota push in the background (PUSH_PID, $T/push.out).
push() {
    local img=$1
    shift
    : >"$T/push.out"
    "$MOAT" ota push "$DEV" "$img" --host localhost --port "$PORT" --dir "$P" "$@" \
        >"$T/push.out" 2>&1 &
    PUSH_PID=$!
    PIDS+=($PUSH_PID)
}
# push_wait SECONDS: the push's exit code in EXIT_CODE.
push_wait() { wait_exit "$PUSH_PID" "$1"; }

section_mqttupdate() {
    local sum n sz st run at
    update_setup

    echo "# v1 -> v2 over MQTT"
    sign "$T/v2.img" 2.0.0 2
    sz=$(stat -c %s "$T/v2.img")
    push "$T/v2.img"
    push_wait 60
    check "moat ota push of v2 exits 0" test "$EXIT_CODE" = 0
    check "... the device said done" hasf "$T/push.out" "done: device $DEV has the image ($sz bytes"
    check "... verified and installed in slot b" \
        hasf "$T/agent.log" "update over MQTT: image 2.0.0 (counter 2,"
    check "... the agent restarts (exit 5)" wait_for "$T/launch.log" "exit 5" 10
    check "... v2 runs from slot b on trial" \
        wait_for "$T/agent.log" "slot b (version 2.0.0) on trial" 10
    check "... and confirms" wait_status '"version":"2.0.0","slot":"b"' 15
    check "... (counter 2)" wait_status '"trial":false,"bootstate":"confirmed","securitycounter":2' 10
    check "slot b holds the agent, byte for byte" cmp -s "$S/slot-b" "$AGENT"

    echo "# refusals over MQTT"
    sum=$(sha256sum <"$S/slot-b")
    n=$(exits)
    sign "$T/v21.img" 2.1.0 2
    head -c $((sz / 2)) "$T/v21.img" >"$T/truncated.img"
    push "$T/truncated.img"
    push_wait 60
    check "a truncated image: the push fails (exit 1)" test "$EXIT_CODE" = 1
    check "... with the device's words" hasf "$T/push.out" "image is truncated: it ended after"
    cmd status ""
    check "... and the status says it" \
        wait_status '"errormessage":"update over MQTT: image is truncated: it ended after' 5 "$(statuses)"
    untouched "truncated over MQTT" b "$sum" "$n"
    sign "$T/other.img" 2.2.0 2 "$AGENT" "$T/other.pem"
    push "$T/other.img"
    push_wait 60
    check "an image signed by another key: exit 1" test "$EXIT_CODE" = 1
    check "... in words" hasf "$T/push.out" "image is signed by unknown key id"
    cmd status ""
    check "... and the status says it" \
        wait_status '"errormessage":"update over MQTT: image is signed by unknown key id' 5 "$(statuses)"
    untouched "another key over MQTT" b "$sum" "$n"
    sign "$T/product.img" 2.3.0 2 "$AGENT" "$T/fw.pem" other-board
    push "$T/product.img"
    push_wait 60
    check "an image for another product: exit 1, in words" \
        hasf "$T/push.out" 'image is for product "other-board", this device is "moat-agent"'
    untouched "another product over MQTT" b "$sum" "$n"

    echo "# a device restart (kill -9) in the middle: the block map resumes it"
    # The agent binary with 4 MB appended (an ELF runs with trailing bytes),
    # so that the transfer lasts long enough to be cut.
    { cat "$AGENT"; head -c 4194304 /dev/zero; } >"$T/agent-padded"
    sign "$T/v3.img" 3.0.0 3 "$T/agent-padded"
    sz=$(stat -c %s "$T/v3.img")
    n=$(exits)
    push "$T/v3.img" --block 4096
    wait_for "$T/push.out" " 20%" 60
    kill -9 "$(agent_pid)"
    push_wait 120
    check "the push completes after the device restarted: exit 0" test "$EXIT_CODE" = 0
    check "... the device was killed once (exit 137)" \
        test "$(tail -n +$((n + 1)) "$T/launch.log" | head -1)" = "exit 137"
    check "... the restarted agent found the transfer in its block map" \
        hasf "$T/agent.log" "update over MQTT: the block map holds a transfer at byte"
    at=$(sed -n 's/.*update over MQTT: resumed at byte \([0-9]*\) of.*/\1/p' "$T/agent.log" | tail -1)
    check "... and resumed at byte ${at:-?} of $sz" test "${at:-0}" -gt 0
    run=$(sed -n 's/.*update over MQTT: image 3.0.0 .*(\([0-9]*\) bytes received in this run).*/\1/p' "$T/agent.log" | tail -1)
    check "... the restarted agent took only the rest (${run:-?} of $sz bytes)" \
        test "${run:-$sz}" -lt "$sz"
    check "v3 runs on trial from slot a and confirms" \
        wait_status '"version":"3.0.0","slot":"a","certexpiry"' 20
    check "... counter 3" wait_status '"trial":false,"bootstate":"confirmed","securitycounter":3' 10
    check "slot a holds the padded agent, byte for byte" cmp -s "$S/slot-a" "$T/agent-padded"

    echo "# the operator stops in the middle and pushes again"
    sign "$T/v4.img" 4.0.0 4 "$T/agent-padded"
    sz=$(stat -c %s "$T/v4.img")
    push "$T/v4.img" --block 4096
    wait_for "$T/push.out" " 20%" 60
    kill "$PUSH_PID"
    wait "$PUSH_PID" 2>/dev/null
    push "$T/v4.img" --block 4096
    push_wait 120
    check "the second push completes: exit 0" test "$EXIT_CODE" = 0
    check "... the device resumed where it was" hasf "$T/push.out" "device $DEV resumes at byte"
    check "... and took each byte once ($sz bytes in this run)" \
        hasf "$T/agent.log" "image 4.0.0 (counter 4, $(stat -c %s "$T/agent-padded") payload bytes) verified and installed in slot b ($sz bytes received in this run)"
    check "v4 runs on trial from slot b and confirms" \
        wait_status '"version":"4.0.0","slot":"b","certexpiry"' 20
}

# ----------------------------------------------------------------- creds --
# Credential rotation: `moat cert rotate` (csr, cert) commits once the broker
# accepts the new set; a certificate the broker rejects goes back to the old
# set and the agent stays connected; the seed's key and ca commands.
section_creds() {
    local old_key old_cert n rc
    make_pki || { bad "moat pki made the PKI"; exit 1; }
    CRED=$T/dev
    mkdir -p "$CRED" && cp "$P/ca.crt" "$CRED/ca.crt" && cp "$P/devices/$DEV.crt" "$CRED/device.crt" &&
        cp "$P/devices/$DEV.key" "$CRED/device.key" && chmod 600 "$CRED/device.key"
    start_broker || { bad "mosquitto starts"; exit 1; }
    start_sntp now
    write_config "$T/config.json"
    start_sub all "moat/$DEV/#" || { bad "operator subscriber"; exit 1; }
    start_agent
    wait_for "$T/all.out" "moat/$DEV/status {" 15 || { bad "the agent is online"; exit 1; }
    ok "the agent is online with its first key and certificate"

    echo "# moat cert rotate: a new key made on the device, a certificate for it"
    old_key=$(sha256sum <"$CRED/device.key")
    old_cert=$(sha256sum <"$CRED/device.crt")
    n=$(count "$T/all.out" "moat/$DEV/state online")
    "$MOAT" cert rotate "$DEV" --host localhost --port "$PORT" --dir "$P" >"$T/rotate.out" 2>&1
    rc=$?
    check "moat cert rotate exits 0" test "$rc" = 0
    check "... the device made a key and sent a CSR" hasf "$T/rotate.out" "device $DEV made a new key"
    check "... the agent tried the new set on a new connection" \
        hasf "$T/agent.log" "credentials: cert staged; connecting with the pending set to try it"
    check "... and committed it once the broker accepted it" \
        hasf "$T/agent.log" "credentials: the broker accepted the new set: committed"
    check "... it is online again" wait_for "$T/all.out" "moat/$DEV/state online" 5 $((n + 1))
    check "... it left the old connection in order (no will)" lacks "$T/all.out" "moat/$DEV/state offline"
    check "... its key changed" test "$(sha256sum <"$CRED/device.key")" != "$old_key"
    check "... its certificate changed" test "$(sha256sum <"$CRED/device.crt")" != "$old_cert"
    check "... to the one the PKI issued" cmp -s "$CRED/device.crt" "$P/devices/$DEV.crt"
    check "... the key file is 0600" test "$(stat -c %a "$CRED/device.key")" = 600
    check "... and the key matches the certificate" test \
        "$(openssl x509 -in "$CRED/device.crt" -noout -pubkey | sha256sum)" = \
        "$(openssl pkey -in "$CRED/device.key" -pubout | sha256sum)"
    check "... nothing left pending" test -z "$(ls -A "$CRED/credstore/pending" 2>/dev/null)"

    echo "# a certificate the broker rejects (another CA): back to the old set"
    "$MOAT" pki init --dir "$T/pki2" --cn "other CA" >/dev/null
    old_key=$(sha256sum <"$CRED/device.key")
    old_cert=$(sha256sum <"$CRED/device.crt")
    n=$(count "$T/all.out" "moat/$DEV/state online")
    "$MOAT" cert rotate "$DEV" --host localhost --port "$PORT" --dir "$T/pki2" \
        --cafile "$P/ca.crt" --cert "$P/operators/ops.crt" --key "$P/operators/ops.key" \
        >"$T/rotate2.out" 2>&1
    rc=$?
    check "moat cert rotate exits 1" test "$rc" = 1
    check "... and says the device kept its old credentials" \
        hasf "$T/rotate2.out" "kept its old credentials: the broker did not accept the new credentials ("
    check "... the agent's words name the broker's refusal" \
        hasf "$T/agent.log" "the broker did not accept the new credentials (the broker refused our certificate"
    check "... it is online again, with the old set" wait_for "$T/all.out" "moat/$DEV/state online" 5 $((n + 1))
    check "... key unchanged" test "$(sha256sum <"$CRED/device.key")" = "$old_key"
    check "... certificate unchanged" test "$(sha256sum <"$CRED/device.crt")" = "$old_cert"
    check "... nothing left pending" test -z "$(ls -A "$CRED/credstore/pending" 2>/dev/null)"
    cmd status ""
    check "... the status says why" \
        wait_for "$T/all.out" '"errormessage":"credentials: the broker did not accept the new credentials' 5
    ask zone "1 1"
    check "... and it takes commands" test "$RES" = '{"ok":true}'
    "$MOAT" cert rotate "$DEV" --host localhost --port "$PORT" --dir "$P" >"$T/rotate3.out" 2>&1
    check "a rotation after the rollback succeeds" test $? = 0

    check "CSRs crossed the broker" hasf "$T/all.out" "BEGIN CERTIFICATE REQUEST"
    check "the rotations sent no private key over the broker" lacks "$T/all.out" "PRIVATE KEY"

    echo "# the seed's commands: key (a private key over MQTT, for seed tools), then cert; ca"
    openssl ecparam -name prime256v1 -genkey -noout -out "$T/seed.key" 2>/dev/null &&
        openssl req -new -key "$T/seed.key" -subj "/CN=$DEV" -out "$T/seed.csr" 2>/dev/null &&
        "$MOAT" pki sign "$T/seed.csr" --dir "$P" >/dev/null
    ask key "@$T/seed.key"
    check "key: staged at once: $RES" test "$RES" = '{"ok":true}'
    ask cert "@$P/devices/$DEV.crt"
    check "cert for that key: committed after the trial: $RES" test "$RES" = '{"ok":true}'
    check "... the device now uses that key" cmp -s "$CRED/device.key" "$T/seed.key"
    ask cert "@$T/pki2/ca.crt"
    check "cert: a CA certificate is refused: $RES" has <(echo "$RES") '"ok":false,"error":".+'
    ask ca "@$CRED/device.crt"
    check "ca: a certificate that is no CA is refused: $RES" has <(echo "$RES") '"ok":false,"error":".+'
    ask ca "@$P/ca.crt"
    check "ca: the same CA again is tried and committed: $RES" test "$RES" = '{"ok":true}'
    ask csr ""
    check "csr: the answer carries a certificate request" \
        has <(echo "$RES") '^\{"ok":true,"csr":"-----BEGIN CERTIFICATE REQUEST-----'
    check "... nor is a key in the log" lacks "$T/agent.log" "PRIVATE KEY|BEGIN"
}

# -------------------------------------------------------------- powercut --
# kill -9 at random moments of updates: the download, the slot write, the
# boot-record updates (install begin and finish), and the trial start and
# its confirmation. After every kill the next start of moat-launch must run
# an image whose bytes the record verified, and the agent must come online.
# Each start is one moat-launch run here (no background loop), so every
# kill lands in a known run. POWERCUT_KILLS (default 100) kills.

# boot: one start of moat-launch in the background (AGENT_PID); its output
# in $T/run.log. boot_wait SECONDS: until the agent is online and, after a
# trial start, confirmed.
boot() {
    rm -f "$T/status.json"
    : >"$T/run.log"
    "$LAUNCH" --dir "$S" -- -c "$T/config.json" --status-file "$T/status.json" \
        "${AGENT_ARGS[@]}" >>"$T/run.log" 2>&1 &
    AGENT_PID=$!
}
boot_wait() {
    local deadline=$(($(now_ms) + $1 * 1000))
    until hasf "$T/status.json" '"state":"online"' && hasf "$T/status.json" '"trial":false'; do
        kill -0 "$AGENT_PID" 2>/dev/null || return 1
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.02
    done
}
# start_online: boot until an agent is online and confirmed. A firmware
# command whose agent was killed before it arrived waits in the persistent
# session and reaches the next start, which then updates and exits 5: that
# start counts (it ran a verified image and came online), and so does the
# next. Each start must run the agent from a slot that holds it.
start_online() {
    local tries=0
    while [ $tries -lt 4 ]; do
        tries=$((tries + 1))
        boot
        boot_wait 30 && boot_verified && return 0
        if grep -q "online: commands" "$T/run.log" && boot_verified; then
            wait "$AGENT_PID" 2>/dev/null
            RC=$?
            if [ "$RC" = 5 ]; then
                installs=$((installs + 1))
                AGENT_PID=
                cat "$T/run.log" >>"$T/agent.log"
                continue
            fi
        fi
        return 1
    done
    return 1
}
# The slot this start ran must hold the agent, byte for byte.
boot_verified() {
    local slot
    slot=$(sed -n 's/^moat-launch: slot \([ab]\) (version .*/\1/p' "$T/run.log" | tail -1)
    [ -n "$slot" ] && cmp -s "$S/slot-$slot" "$AGENT"
}
run_end() {
    wait "$AGENT_PID" 2>/dev/null
    RC=$?
    AGENT_PID=
    cat "$T/run.log" >>"$T/agent.log"
}
# The phase a killed run was in, from its last log lines.
phase_of() {
    local l
    l=$(grep -E "command 'firmware'|firmware: GET|the install begins|update: writing slot|becomes pending|verified and installed in slot|stopping:|on trial:|running slot|online: commands|reached the broker and confirmed" "$T/run.log" | tail -1)
    case $l in
    *"stopping:"* | *"verified and installed"*) echo "installed,stopping" ;;
    *"becomes pending"*) echo "record:install-finish" ;;
    *"update: writing slot"*) echo "slot-write" ;;
    *"the install begins"*) echo "record:install-begin" ;;
    *"firmware: GET"*) echo "download" ;;
    *"command 'firmware'"*) echo "command" ;;
    *"reached the broker and confirmed"*) echo "trial:confirmed" ;;
    *"online: commands"*) echo "trial:online,confirm" ;;
    *"running slot"* | *"on trial:"*) echo "trial:start" ;;
    *) echo "before-start" ;;
    esac
}
ms_s() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

# kill_on MARKER: kill -9 the running start as soon as its log shows MARKER
# (or after 30 s); counts the kill by the phase its log was in.
kill_on() {
    local line tpid
    exec 7< <(exec tail -n +1 -f "$T/run.log")
    tpid=$!
    while IFS= read -r -t 30 line <&7; do
        case $line in *"$1"*) break ;; esac
    done
    kill -9 "$AGENT_PID" 2>/dev/null
    kill "$tpid" 2>/dev/null
    exec 7<&-
    run_end
    if [ "$RC" = 137 ]; then
        kills=$((kills + 1))
        ph=$(phase_of)
        phases[$ph]=$((${phases[$ph]:-0} + 1))
    fi
}
# aim_update MARKER: (an agent is online) the next image and its command,
# killed at MARKER.
aim_update() {
    v=$((v + 1))
    sign "$T/img" "1.0.$v" 1
    publish "$T/img"
    cmd firmware ""
    kill_on "$1"
}
# aim_trial: (an agent is online) a whole update, then its trial start
# killed as the launcher starts it.
aim_trial() {
    v=$((v + 1))
    sign "$T/img" "1.0.$v" 1
    publish "$T/img"
    cmd firmware ""
    wait_exit "$AGENT_PID" 30
    RC=$EXIT_CODE
    AGENT_PID=
    cat "$T/run.log" >>"$T/agent.log"
    [ "$RC" = 5 ] && installs=$((installs + 1))
    boot
    kill_on "on trial:"
}
# phase_hit GROUP: a kill landed in the group's phases.
phase_hit() {
    case $1 in
    trial) [ $((${phases[trial:start]:-0} + ${phases[trial:online,confirm]:-0} + ${phases[trial:confirmed]:-0})) -ge 1 ] ;;
    *) [ "${phases[$1]:-0}" -ge 1 ] ;;
    esac
}

section_powercut() {
    local want=${POWERCUT_KILLS:-100} kills=0 fails=0 runs=0 installs=0 rollbacks=0
    local v=2 d D t0 t1 tc ph trial_next=false start_ms k dsum=0 dn=0
    local -A phases=()
    NO_LAUNCH=1 update_setup
    t0=$(now_ms)

    # A dry run: how long a start takes, and a whole update after it.
    sign "$T/img" "1.0.$v" 1
    publish "$T/img"
    t1=$(now_ms)
    boot
    boot_wait 30 || { bad "the provisioned v1 starts"; run_end; return; }
    start_ms=$(($(now_ms) - t1))
    t1=$(now_ms)
    cmd firmware ""
    wait "$AGENT_PID"
    D=$(($(now_ms) - t1))
    run_end
    check "dry run: a start takes $start_ms ms, an update $D ms after the command (exit $RC)" \
        test "$RC" = 5
    trial_next=true
    [ "$D" -gt 0 ] || D=1

    while [ "$kills" -lt "$want" ] && [ "$runs" -lt $((want * 3)) ]; do
        runs=$((runs + 1))
        if $trial_next && [ $((RANDOM % 2)) = 0 ]; then
            # kill the trial start: the launcher's record write, the
            # connection, the confirmation
            boot
            d=$((RANDOM % (start_ms + 1)))
            sleep "$(ms_s "$d")"
            if kill -9 "$AGENT_PID" 2>/dev/null; then
                run_end
                if [ "$RC" = 137 ]; then
                    kills=$((kills + 1))
                    ph=$(phase_of)
                    phases[$ph]=$((${phases[$ph]:-0} + 1))
                fi
            fi
            [ -n "$AGENT_PID" ] && { kill "$AGENT_PID"; run_end; }
        fi
        # a start after any kill: it must run a verified image and get online
        if ! start_online; then
            fails=$((fails + 1))
            bad "run $runs: no verified image came online after the kill (phase ${ph:-none}): $(tail -n 3 "$T/run.log" | tr '\n' ' ')"
            [ -n "$AGENT_PID" ] && { kill -9 "$AGENT_PID" 2>/dev/null; run_end; }
            break
        fi
        grep -q "last rollback" "$T/run.log" && rollbacks=$((rollbacks + 1))
        trial_next=false
        ph=
        # the next image, then kill the update at a random moment (a run
        # that finishes before its kill installs, and the next start is a
        # trial start)
        v=$((v + 1))
        sign "$T/img" "1.0.$v" 1
        publish "$T/img"
        # the window: from the command's publish to the agent's exit, as
        # long as the updates that completed took on average
        [ "$dn" -gt 0 ] && D=$((dsum / dn))
        d=$((RANDOM % (D + D / 8 + 1)))
        tc=$(now_ms)
        cmd firmware "" &
        sleep "$(ms_s "$d")"
        if kill -9 "$AGENT_PID" 2>/dev/null; then
            run_end
            if [ "$RC" = 137 ]; then
                kills=$((kills + 1))
                ph=$(phase_of)
                phases[$ph]=$((${phases[$ph]:-0} + 1))
            fi
        else
            run_end
        fi
        if [ "$RC" = 5 ]; then
            installs=$((installs + 1))
            trial_next=true
            dsum=$((dsum + $(now_ms) - tc))
            dn=$((dn + 1))
        fi
        wait $! 2>/dev/null # the command's publisher
    done
    # A fast machine can leave a short phase without a random kill: aim at
    # it. Each aimed kill is followed by a start that must come online from
    # a verified image, as above.
    local group aims
    for group in download slot-write trial; do
        aims=0
        while [ "$fails" = 0 ] && [ "$aims" -lt 5 ] && ! phase_hit "$group"; do
            aims=$((aims + 1))
            runs=$((runs + 1))
            if [ -z "$AGENT_PID" ] && ! start_online; then
                fails=$((fails + 1))
                bad "before an aimed kill ($group): no verified image came online: $(tail -n 3 "$T/run.log" | tr '\n' ' ')"
                break
            fi
            case $group in
            download) aim_update "firmware: GET" ;;
            slot-write) aim_update "update: writing slot" ;;
            trial) aim_trial ;;
            esac
            if ! start_online; then
                fails=$((fails + 1))
                bad "aimed kill ($group): no verified image came online after it: $(tail -n 3 "$T/run.log" | tr '\n' ' ')"
                [ -n "$AGENT_PID" ] && { kill -9 "$AGENT_PID" 2>/dev/null; run_end; }
            fi
        done
        [ "$aims" -gt 0 ] && echo "# $aims kills aimed at the phase '$group'"
    done
    [ -n "$AGENT_PID" ] && { kill "$AGENT_PID"; run_end; }
    t1=$(now_ms)
    check "$kills kills -9 in $runs runs ($(((t1 - t0) / 1000)) s); after each, the next start ran a verified image and came online" \
        test "$kills" -ge "$want" -a "$fails" = 0
    echo "# where the kills landed:$(for k in "${!phases[@]}"; do printf ' %s=%s' "$k" "${phases[$k]}"; done)"
    echo "# $installs updates completed between the kills; $rollbacks starts after a rollback"
    check "kills hit the download" phase_hit download
    check "kills hit the slot write" phase_hit slot-write
    check "kills hit the trial start or its confirmation" phase_hit trial
    check "the boot record is readable" has <(launch_status) '^\{"slot":"[ab]"'

    # no stale state blocks a whole update afterwards
    v=$((v + 1))
    sign "$T/img" "1.0.$v" 1
    publish "$T/img"
    boot
    boot_wait 30
    cmd firmware ""
    wait_exit "$AGENT_PID" 20
    RC=$EXIT_CODE
    AGENT_PID=
    cat "$T/run.log" >>"$T/agent.log"
    check "a whole update afterwards (1.0.$v) exits 5" test "$RC" = 5
    boot
    check "... and 1.0.$v starts on trial and confirms" boot_wait 30
    check "... from a slot that holds the agent" boot_verified
    check "... as the status says" hasf "$T/status.json" "\"version\":\"1.0.$v\""
    kill "$AGENT_PID"
    run_end
}

case $SECTION in
config | online | commands | zones | restart | clock | watchdog | presets) "section_$SECTION" ;;
update | download | mqttupdate | creds | powercut) "section_$SECTION" ;;
*) echo "agent_test: unknown section '$SECTION'" >&2; exit 2 ;;
esac

# The ASan+UBSan build runs these too: any report of theirs is a failure.
if [ -f "$T/agent.log" ] && grep -Eq "Sanitizer|runtime error:" "$T/agent.log"; then
    bad "the sanitizers reported: $(grep -E -m 3 "Sanitizer|runtime error:" "$T/agent.log" | tr '\n' ' ')"
fi
if [ "$FAIL" -ne 0 ]; then
    [ -f "$T/agent.log" ] && tail -100 "$T/agent.log" | sed 's/^/    agent | /'
    [ -f "$T/broker.log" ] && tail -20 "$T/broker.log" | sed 's/^/    broker | /'
    [ -f "$T/server.log" ] && tail -20 "$T/server.log" | sed 's/^/    server | /'
    [ -f "$T/launch.log" ] && sed 's/^/    launch | /' "$T/launch.log" | tr '\n' ' ' && echo
fi
# the failures again, last, where a truncated log still shows them
for f in "${FAILED[@]}"; do echo "FAIL - $f"; done
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
