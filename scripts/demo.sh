#!/bin/sh
# make demo: a local Mosquitto on a free loopback port, and moat-mqtt talking
# through it at each QoS. Everything it starts, it stops.
set -eu
BUILD=${1:-build}
MQTT="$BUILD/apps/mqtt/moat-mqtt"
[ -x "$MQTT" ] || { echo "demo: $MQTT is missing; run make first" >&2; exit 1; }

free_port() {
    p=18830
    while ss -ltnH "sport = :$p" | grep -q .; do p=$((p + 1)); done
    echo "$p"
}

work=$(mktemp -d /tmp/moat-demo.XXXXXX)
broker_pid=""
sub_pid=""
cleanup() {
    [ -n "$sub_pid" ] && kill "$sub_pid" 2>/dev/null
    [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$(free_port)
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest file $work/mosquitto.log
user root
CONF
echo "demo: starting mosquitto on 127.0.0.1:$port"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.out" 2>&1 &
broker_pid=$!
i=0
until "$MQTT" pub -h 127.0.0.1 -p "$port" -t demo/ping -m up -q 1 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 50 ] || { echo "demo: broker did not start; log:" >&2; cat "$work/mosquitto.log" >&2; exit 1; }
    sleep 0.1
done

echo "demo: moat-mqtt sub -t 'demo/#' -v -C 5"
"$MQTT" sub -h 127.0.0.1 -p "$port" -t 'demo/#' -v -C 5 -W 10 > "$work/sub.out" &
sub_pid=$!
sleep 0.5
for q in 0 1 2; do
    echo "demo: moat-mqtt pub -t demo/qos$q -m 'hello at QoS $q' -q $q"
    "$MQTT" pub -h 127.0.0.1 -p "$port" -t "demo/qos$q" -m "hello at QoS $q" -q "$q"
done
printf 'line one\nline two\n' | "$MQTT" pub -h 127.0.0.1 -p "$port" -t demo/lines -q 1 -l
wait "$sub_pid"
sub_pid=""
echo "demo: the subscriber received:"
sed 's/^/  /' "$work/sub.out"
echo "demo: done; try it yourself with: $MQTT --help"
