#!/bin/bash
# tput.sh - MQTT throughput and client CPU per message: moat against
# libmosquitto and Paho C, measured side by side in one run, through one
# Mosquitto on loopback.
#
# Usage: bash bench/tput.sh [--quick]
#   --quick  fewer messages and one repetition (a smoke run)
# Env: MOAT_TPUT_N0 / MOAT_TPUT_N1  messages per QoS 0 / QoS 1 run
#      MOAT_TPUT_REPS               repetitions; the median is reported (7)
#      MOAT_TPUT_WINDOW             in-flight window, every client and the
#                                   broker's max_inflight_messages (64)
#      MOAT_TPUT_CG_N               messages in the callgrind runs (20000)
#      MOAT_TPUT_HOLD               moat's batched-wait hold, microseconds (50)
#      MOAT_TPUT_LAT_S              seconds of each latency run (3)
#      MOAT_TPUT_KEEP=1             keep the work directory (broker log)
#
# Output (the rest goes to stderr or starts with '#'):
#   <lib> is moat (waiting with moat_poll_batched, the hold as moat-mqtt
#   uses it), moatpoll (the same program with a plain poll()), mosq, paho.
#   BENCH tput_<lib>_<plain|tls>_qos<0|1>_msgs_s <messages per second>
#   BENCH tput_<lib>_<plain|tls>_qos<0|1>_cpu_us <CPU microseconds per
#         message, publisher + subscriber + broker together>
#   RATIO tput_<moat|moatpoll>_vs_<mosq|paho>_<plain|tls>_qos<0|1> <moat / peer, msg/s>
#   RATIO tput_cpu_moat_vs_<mosq|paho>_<plain|tls>_qos<0|1> <moat / peer, CPU>
#   BENCH tput_mosq_plain_qos1_{loop,threaded}_probe_msgs_s  the one run of
#         each libmosquitto mode that chooses the faster for the rest
#   BENCH lat_<lib>_<plain|tls>_<rate>_<p50|p99|max>_us <latency at QoS 1, the
#         publisher paced at <rate> messages a second>
#   BENCH cpu_per_msg_<moat|mosq>_plain_qos1_instr <instructions per message>
#   RATIO cpu_per_msg_moat_vs_mosq <moat / libmosquitto>
#
# How, in short (docs/BENCHMARKS.md has the whole of it):
#  - One broker: Mosquitto with a plain and a mutual-TLS listener
#    (require_certificate, TLS 1.2, ECDHE-ECDSA-AES128-GCM-SHA256 for every
#    client alike), max_inflight_messages = the window, max_queued_messages 0
#    (nothing is dropped, so a fast publisher cannot win by losing), and
#    set_tcp_nodelay true.
#  - Each run: the library's subscriber subscribes, then its publisher sends
#    N messages of 64 bytes, keeping at most the window unacknowledged; the
#    rate is N / (last message at the subscriber - first publish), both on
#    CLOCK_MONOTONIC. The libraries take turns within each repetition.
#  - Latency: the publisher stamps each message with its send time and sends
#    at a fixed rate; the subscriber takes the difference on arrival.
#  - CPU: the publisher alone under callgrind, counting inside
#    bench_publish_loop() (the whole publishing, library included), over
#    plain TCP at QoS 1, divided by the messages.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)

QUICK=0
[ "${1:-}" = --quick ] && QUICK=1
N0=${MOAT_TPUT_N0:-200000}
N1=${MOAT_TPUT_N1:-100000}
REPS=${MOAT_TPUT_REPS:-7}
W=${MOAT_TPUT_WINDOW:-64}
CG_N=${MOAT_TPUT_CG_N:-20000}
HOLD=${MOAT_TPUT_HOLD:-50}
LAT_S=${MOAT_TPUT_LAT_S:-3}
SIZE=64
if [ $QUICK -eq 1 ]; then
    N0=20000 N1=10000 REPS=1 CG_N=2000 LAT_S=1
fi

die() {
    echo "tput: $*" >&2
    if [ -n "${T:-}" ] && [ -f "$T/broker.log" ]; then
        echo "tput: the broker's log ends:" >&2
        tail -n 15 "$T/broker.log" >&2
    fi
    exit 1
}
note() { echo "# $*"; }

command -v mosquitto >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
for tool in gcc mosquitto valgrind; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found; run 'make deps'"
done

T=$(mktemp -d "${TMPDIR:-/tmp}/moat-tput.XXXXXX")
chmod 700 "$T"
BROKER_PID='' SUB_PID=''
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    set +e # everything below runs, whatever fails
    if [ -n "$SUB_PID" ]; then
        kill "$SUB_PID" 2>/dev/null
    fi
    if [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null; then
        wait "$BROKER_PID" 2>/dev/null
    fi
    if [ "${MOAT_TPUT_KEEP:-}" = 1 ]; then
        echo "tput: keeping $T" >&2
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build: the same flags for the three ----------------------------------

B=${MOAT_TPUT_BUILD:-$ROOT/build-mcu/tput}
mkdir -p "$B"
CFLAGS="-std=c99 -O2 -g -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude -Ibench"
MOAT_SRC="src/core/mqtt_codec.c src/core/mqtt_client.c src/core/mqtt_loop.c src/core/mqtt_topic.c
 src/core/error.c src/port/posix/net.c src/port/posix/clock.c src/port/posix/batch.c
 src/tls/tls.c src/tls/tls_load.c src/tls/tls_verify.c src/tls/tls_words.c"
# shellcheck disable=SC2086
gcc $CFLAGS -DMOAT_MQTT_IO_CHUNK=4096 bench/tput_moat.c $MOAT_SRC \
    -lmbedtls -lmbedx509 -lmbedcrypto -o "$B/tput_moat" || die "building tput_moat failed"
# shellcheck disable=SC2086
gcc $CFLAGS bench/tput_mosq.c -lmosquitto -lpthread -o "$B/tput_mosq" ||
    die "building tput_mosq failed (libmosquitto-dev)"
# shellcheck disable=SC2086
gcc $CFLAGS bench/tput_paho.c -lpaho-mqtt3as -lpthread -o "$B/tput_paho" ||
    die "building tput_paho failed (libpaho-mqtt-dev)"

# ---- broker -----------------------------------------------------------------

sh scripts/bench-certs.sh "$T/certs" >/dev/null 2>&1 || die "scripts/bench-certs.sh failed"
C=$T/certs/p256

free_port() {
    local p i=0
    while [ $i -lt 100 ]; do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
        i=$((i + 1))
    done
    return 1
}
PLAIN=$(free_port) || die "no free port"
TLSP=$(free_port) || die "no free port"
[ "$PLAIN" != "$TLSP" ] || TLSP=$((PLAIN + 1))
{
    echo "per_listener_settings false"
    echo "allow_anonymous true"
    echo "persistence false"
    [ "$(id -u)" -eq 0 ] && echo "user root"
    echo "max_inflight_messages $W"
    echo "max_queued_messages 0"
    echo "set_tcp_nodelay true"
    echo "log_dest file $T/broker.log"
    echo "log_type error"
    echo "log_type warning"
    echo "log_type notice"
    echo "log_type information"
    echo "listener $PLAIN 127.0.0.1"
    echo "listener $TLSP 127.0.0.1"
    echo "cafile $C/ca.crt"
    echo "certfile $C/server.crt"
    echo "keyfile $C/server.key"
    echo "require_certificate true"
    echo "tls_version tlsv1.2"
    echo "ciphers ECDHE-ECDSA-AES128-GCM-SHA256"
} >"$T/mosquitto.conf"
mosquitto -c "$T/mosquitto.conf" >"$T/broker.out" 2>&1 &
BROKER_PID=$!
i=0
until (exec 3<>"/dev/tcp/127.0.0.1/$TLSP") 2>/dev/null; do
    i=$((i + 1))
    if [ $i -ge 200 ] || ! kill -0 "$BROKER_PID" 2>/dev/null; then
        cat "$T/broker.out" >&2
        die "mosquitto did not start"
    fi
    sleep 0.05
done
note "mosquitto $(mosquitto -h | awk 'NR == 1 { print $3 }') pid $BROKER_PID: plain :$PLAIN, mutual TLS :$TLSP; window $W; $SIZE-byte messages"

# ---- one run ----------------------------------------------------------------

RUN=0 RES='' LAT=''
TICK=$(getconf CLK_TCK)
broker_cpu() { awk -v t="$TICK" '{ printf "%.3f\n", ($14 + $15) / t }' "/proc/$BROKER_PID/stat"; }
# run <lib> <plain|tls> <qos> <count> [rate]: sets RES to "<messages per
# second> <CPU microseconds per message of publisher, subscriber and
# broker>" ("0 0" if any message was lost); with a rate, the publisher is
# paced and LAT is "<p50> <p99> <max>" microseconds. Not for $(...): RUN
# must count in this shell.
run() {
    local lib=$1 tr=$2 qos=$3 n=$4 rate=${5:-} bin=$1 args topic i start last got b0 b1 so se po pe
    RUN=$((RUN + 1))
    # Files of this run only: an old READY must never start a publisher.
    so=$T/sub.$RUN.out se=$T/sub.$RUN.err po=$T/pub.$RUN.out pe=$T/pub.$RUN.err
    topic=bench/tput/$lib/$RUN
    args="--qos $qos --count $n --size $SIZE --window $W --topic $topic"
    if [ "$tr" = tls ]; then
        args="$args --port $TLSP --tls $C/ca.crt $C/device.crt $C/device.key"
    else
        args="$args --port $PLAIN"
    fi
    [ "$lib" = mosq ] && [ -n "${MOSQ_MODE:-}" ] && args="$args $MOSQ_MODE"
    [ "$lib" = moat ] && args="$args --hold $HOLD"
    [ "$lib" = moatpoll ] && bin=moat
    [ -n "$rate" ] && args="$args --rate $rate"
    b0=$(broker_cpu)
    # shellcheck disable=SC2086
    "$B/tput_$bin" sub $args >"$so" 2>"$se" &
    SUB_PID=$!
    i=0
    until grep -q READY "$so" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 400 ] || ! kill -0 "$SUB_PID" 2>/dev/null; then
            cat "$se" >&2
            die "$lib subscriber ($tr, QoS $qos) did not get ready"
        fi
        sleep 0.025
    done
    # shellcheck disable=SC2086
    "$B/tput_$bin" pub $args >"$po" 2>"$pe" || {
        cat "$pe" >&2
        die "$lib publisher ($tr, QoS $qos) failed"
    }
    wait "$SUB_PID" || { cat "$se" >&2; die "$lib subscriber ($tr, QoS $qos) failed"; }
    SUB_PID=
    b1=$(broker_cpu)
    start=$(awk '$1 == "PUB" && $2 == "start_ns" { print $3 }' "$po")
    got=$(awk '$1 == "SUB" { print $3 }' "$so")
    last=$(awk '$1 == "SUB" { print $7 }' "$so")
    if [ -z "$start" ] || [ -z "$got" ] || [ -z "$last" ]; then
        die "no figures from the $lib run"
    fi
    if [ "$got" -ne "$n" ]; then
        note "$lib $tr QoS $qos: $got of $n messages arrived"
        RES="0 0" LAT="0 0 0"
        return
    fi
    if [ -n "$rate" ]; then
        LAT=$(awk '$1 == "LAT" { print $3, $5, $7 }' "$so")
        [ -n "$LAT" ] || die "no latencies from the $lib run"
    fi
    RES=$(awk -v n="$n" -v a="$start" -v b="$last" -v b0="$b0" -v b1="$b1" \
        -v pc="$(awk '$1 == "CPU" { print $2 }' "$po")" \
        -v sc="$(awk '$1 == "CPU" { print $2 }' "$so")" \
        'BEGIN { printf "%.0f %.2f\n", n / ((b - a) / 1e9), (pc + sc + b1 - b0) * 1e6 / n }')
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# libmosquitto offers two ways to run; it is measured the way it is faster
# here (one quick run each, plain QoS 1), so the comparison is with its best.
MOSQ_MODE=
run mosq plain 1 "$N1"
a=${RES% *}
MOSQ_MODE=--threaded
run mosq plain 1 "$N1"
b=${RES% *}
if [ "$a" -ge "$b" ]; then MOSQ_MODE='' MODE_NAME="one thread, mosquitto_loop()"; else MODE_NAME="its network thread, mosquitto_loop_start()"; fi
note "libmosquitto: one thread $a msg/s, threaded $b msg/s (QoS 1 plain): measured with $MODE_NAME"
echo "BENCH tput_mosq_plain_qos1_loop_probe_msgs_s $a"
echo "BENCH tput_mosq_plain_qos1_threaded_probe_msgs_s $b"

declare -A R U
for _ in $(seq 1 "$REPS"); do
    for tr in plain tls; do
        for qos in 0 1; do
            n=$N1
            [ "$qos" -eq 0 ] && n=$N0
            for lib in moat moatpoll mosq paho; do
                run "$lib" "$tr" "$qos" "$n"
                R[$lib.$tr.$qos]="${R[$lib.$tr.$qos]:-} ${RES% *}"
                U[$lib.$tr.$qos]="${U[$lib.$tr.$qos]:-} ${RES#* }"
            done
        done
    done
done
for tr in plain tls; do
    for qos in 0 1; do
        for lib in moat moatpoll mosq paho; do
            m=$(echo "${R[$lib.$tr.$qos]}" | median)
            c=$(echo "${U[$lib.$tr.$qos]}" | median)
            R[med.$lib.$tr.$qos]=$m
            U[med.$lib.$tr.$qos]=$c
            echo "BENCH tput_${lib}_${tr}_qos${qos}_msgs_s $m"
            echo "BENCH tput_${lib}_${tr}_qos${qos}_cpu_us $c"
            note "  $lib $tr QoS $qos msg/s:${R[$lib.$tr.$qos]}; CPU us/msg:${U[$lib.$tr.$qos]}"
        done
        for pair in moat.mosq moat.paho moatpoll.mosq moatpoll.paho; do
            me=${pair%.*} peer=${pair#*.}
            awk -v a="${R[med.$me.$tr.$qos]}" -v b="${R[med.$peer.$tr.$qos]}" \
                -v c="${U[med.$me.$tr.$qos]}" -v d="${U[med.$peer.$tr.$qos]}" \
                -v n="${me}_vs_${peer}_${tr}_qos${qos}" 'BEGIN {
                    if (b > 0) printf "RATIO tput_%s %.2f\n", n, a / b
                    if (d > 0) printf "RATIO tput_cpu_%s %.2f\n", n, c / d
                }'
        done
    done
done

# ---- latency: the publisher paced, QoS 1 --------------------------------------

# A lone message (1,000 a second, far below what any of them can carry) and
# a busy stream (20,000 a second): what the batched wait's hold costs.
for tr in plain tls; do
    for rate in 1000 20000; do
        for lib in moat moatpoll mosq paho; do
            run "$lib" "$tr" 1 $((rate * LAT_S)) "$rate"
            # shellcheck disable=SC2086 # three numbers
            set -- $LAT
            echo "BENCH lat_${lib}_${tr}_${rate}_p50_us $1"
            echo "BENCH lat_${lib}_${tr}_${rate}_p99_us $2"
            echo "BENCH lat_${lib}_${tr}_${rate}_max_us $3"
        done
    done
done

# ---- CPU per message: callgrind -------------------------------------------

# cg <lib>: instructions per message of the publisher (plain, QoS 1), the
# subscriber running natively.
cg() {
    local lib=$1 topic=bench/cg/$1 args ir i so=$T/cg-sub.$1.out se=$T/cg-sub.$1.err
    args="--qos 1 --count $CG_N --size $SIZE --window $W --topic $topic --port $PLAIN"
    # shellcheck disable=SC2086
    "$B/tput_$lib" sub $args >"$so" 2>"$se" &
    SUB_PID=$!
    i=0
    until grep -q READY "$so" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 400 ] || die "$lib subscriber for callgrind did not get ready"
        sleep 0.025
    done
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --toggle-collect=bench_publish_loop \
        --callgrind-out-file=/dev/null "$B/tput_$lib" pub $args >"$T/cg.out" 2>"$T/cg.err" || {
        cat "$T/cg.err" >&2
        die "callgrind run of tput_$lib failed"
    }
    wait "$SUB_PID" || die "$lib subscriber for callgrind failed"
    SUB_PID=
    [ "$(awk '$1 == "SUB" { print $3 }' "$so")" = "$CG_N" ] ||
        die "the callgrind run of $lib lost messages"
    ir=$(awk '/Collected :/ { print $NF }' "$T/cg.err")
    [ -n "$ir" ] || die "no instruction count from callgrind ($lib)"
    RES=$(awk -v ir="$ir" -v n="$CG_N" 'BEGIN { printf "%.0f\n", ir / n }')
}
MOSQ_MODE= # callgrind's toggle counts one thread: libmosquitto runs in the caller's
cg moat
cm=$RES
cg mosq
cq=$RES
echo "BENCH cpu_per_msg_moat_plain_qos1_instr $cm"
echo "BENCH cpu_per_msg_mosq_plain_qos1_instr $cq"
awk -v a="$cm" -v b="$cq" 'BEGIN { printf "RATIO cpu_per_msg_moat_vs_mosq %.2f\n", a / b }'
