#!/bin/bash
# test_cli.sh MOAT_MQTT - moat-mqtt end to end against a real Mosquitto.
#
# Run by itest-broker-exec, which starts the broker and sets MOAT_TEST_HOST,
# MOAT_TEST_PORT, MOAT_TEST_BROKER_LOG, MOAT_TEST_DIR and MOAT_TEST_DEAD_PORT.
# Checks: `sub -C n -v` receives what `pub` sends at QoS 0, 1 and 2; `pub -l`
# sends one message per stdin line; `pub -r` leaves a retained message for a
# later `sub`; usage errors exit 2; an unreachable broker exits 1 with a
# message naming the host and port.
set -u

CLI=${1:?usage: test_cli.sh path/to/moat-mqtt}
H=${MOAT_TEST_HOST:?run me through itest-broker-exec}
P=$MOAT_TEST_PORT
LOG=$MOAT_TEST_BROKER_LOG
D=$MOAT_TEST_DIR
DEAD=$MOAT_TEST_DEAD_PORT
T="itest/cli/$$"
BG=()

cleanup() {
    local p
    for p in "${BG[@]}"; do
        kill "$p" 2>/dev/null
    done
}
trap cleanup EXIT

fail() {
    echo "FAIL test_cli.sh: $*" >&2
    exit 1
}

log() {
    echo "[test_cli.sh] $*"
}

# wait_log NEEDLE SECONDS: until the broker log has a line with NEEDLE.
wait_log() {
    local deadline=$((SECONDS + $2))
    until grep -qF -- "$1" "$LOG"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "no \"$1\" in the broker log after $2 s"
        sleep 0.05
    done
}

# start_sub NAME ARGS...: moat-mqtt sub in the background, output in
# $D/NAME.out and $D/NAME.err, pid in SUB_PID; returns once subscribed.
start_sub() {
    local name=$1 id="cli-$1-$$" q=0 topic="" prev=""
    shift
    for a in "$@"; do
        [ "$prev" = "-q" ] && q=$a
        [ "$prev" = "-t" ] && topic=$a
        prev=$a
    done
    "$CLI" sub -h "$H" -p "$P" -i "$id" "$@" >"$D/$name.out" 2>"$D/$name.err" &
    SUB_PID=$!
    BG+=("$SUB_PID")
    # Mosquitto logs "<client id> <qos> <filter>" for a new subscription.
    wait_log "$id $q $topic" 10
}

# finish_sub NAME: wait for the background sub; it must exit 0.
finish_sub() {
    local rc=0
    wait "$SUB_PID" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "--- stderr of sub $1:" >&2
        cat "$D/$1.err" >&2
        echo "--- it printed $(wc -l <"$D/$1.out") lines; the broker refused" \
             "$(grep -c "rc151)" "$LOG") QoS 2 PUBLISH with PUBREC reason 0x97 (quota exceeded)" >&2
        fail "moat-mqtt sub ($1) exited with status $rc"
    fi
}

# expect_file NAME EXPECTED: $D/NAME.out must equal EXPECTED exactly.
expect_file() {
    printf '%s' "$2" >"$D/$1.want"
    if ! cmp -s "$D/$1.want" "$D/$1.out"; then
        echo "--- expected:" >&2
        od -c "$D/$1.want" | head -20 >&2
        echo "--- got:" >&2
        od -c "$D/$1.out" | head -20 >&2
        diff "$D/$1.want" "$D/$1.out" >&2
        fail "moat-mqtt sub ($1) printed something else"
    fi
}

pub() {
    local rc=0
    "$CLI" pub -h "$H" -p "$P" -W 10 "$@" 2>"$D/pub.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        cat "$D/pub.err" >&2
        fail "moat-mqtt pub $* exited with status $rc"
    fi
}

[ -x "$CLI" ] || fail "$CLI is not an executable"

# 1. pub -> sub -C 3 -v at each QoS.
for q in 0 1 2; do
    start_sub "q$q" -t "$T/q$q" -q "$q" -C 3 -v -W 20
    pub -t "$T/q$q" -q "$q" -m "one"
    pub -t "$T/q$q" -q "$q" -m "two words  with  spaces"
    pub -t "$T/q$q" -q "$q" -m "drei $(printf '\xc3\xa9\xe2\x82\xac')"
    finish_sub "q$q"
    expect_file "q$q" "$T/q$q one
$T/q$q two words  with  spaces
$T/q$q drei $(printf '\xc3\xa9\xe2\x82\xac')
"
    log "QoS $q: sub -C 3 -v printed the 3 messages pub sent"
done

# 2. pub -l: one message per line, an empty line is an empty message; then
# 300 lines at QoS 1 in one pub.
start_sub lines -t "$T/lines" -q 1 -C 4 -v -W 20
printf 'first line\n\nthird line\nlast\n' | pub -t "$T/lines" -q 1 -l
finish_sub lines
expect_file lines "$T/lines first line
$T/lines 
$T/lines third line
$T/lines last
"
seq 1 300 >"$D/many.in"
for q in 1 2; do
    start_sub "many$q" -t "$T/many$q" -q "$q" -C 300 -W 30
    pub -t "$T/many$q" -q "$q" -l <"$D/many.in"
    finish_sub "many$q"
    cmp -s "$D/many.in" "$D/many$q.out" || {
        diff "$D/many.in" "$D/many$q.out" | head -20 >&2
        refused=$(grep -c "rc151)" "$LOG")
        fail "pub -l of 300 lines at QoS $q: sub printed something else" \
             "(the broker answered $refused PUBLISH with PUBREC reason 0x97, quota exceeded)"
    }
done
log "pub -l: 4 lines (one empty), and 300 lines at QoS 1 and 2, delivered in order"

# 3. Retained: a sub that starts later still gets it.
pub -t "$T/retained" -q 1 -r -m "kept for later"
start_sub retained -t "$T/retained" -q 1 -C 1 -v -W 10
finish_sub retained
expect_file retained "$T/retained kept for later
"
pub -t "$T/retained" -q 1 -r -n   # clear it again
log "pub -r: a later sub got the retained message"

# 4. -c -i: a persistent session keeps a QoS 1 message for an offline sub;
# -k reaches the broker.
start_sub persist1 -c -k 7 -t "$T/persist" -q 1 -W 10 -C 1
pub -t "$T/persist" -q 1 -m "first"
finish_sub persist1
grep -qF "as cli-persist1-$$ (p2, c0, k7)" "$LOG" ||
    fail "sub -c -k 7: the broker did not see clean session 0 and keep-alive 7"
pub -t "$T/persist" -q 1 -m "while away"
rc=0
timeout 20 "$CLI" sub -h "$H" -p "$P" -i "cli-persist1-$$" -c -t "$T/persist" -q 1 -C 1 -v -W 10 \
    >"$D/persist2.out" 2>"$D/persist2.err" || rc=$?
[ "$rc" -eq 0 ] || { cat "$D/persist2.err" >&2; fail "sub -c (second run) exited with $rc"; }
expect_file persist2 "$T/persist while away
"
log "sub -c -i: a message published while it was away arrived on its return"

# 5. --will-topic: killed without DISCONNECT, the broker publishes the will.
start_sub willwatch -t "$T/will" -q 1 -C 1 -v -W 10
WATCH_PID=$SUB_PID
"$CLI" sub -h "$H" -p "$P" -i "cli-willer-$$" -t "$T/unused" --will-topic "$T/will" \
    --will-payload "gone away" --will-qos 1 -W 30 >/dev/null 2>"$D/willer.err" &
WILLER=$!
BG+=("$WILLER")
wait_log "as cli-willer-$$ " 10
wait_log "Will message specified (9 bytes) (r0, q1)." 5
kill -KILL "$WILLER"
wait "$WILLER" 2>/dev/null
SUB_PID=$WATCH_PID
finish_sub willwatch
expect_file willwatch "$T/will gone away
"
log "--will-topic: the will was published when the sub was killed"

# 6. Usage errors exit 2 with a message.
usage_case() {
    local rc=0
    timeout 10 "$CLI" "$@" >"$D/usage.out" 2>"$D/usage.err" </dev/null || rc=$?
    [ "$rc" -eq 2 ] || fail "moat-mqtt $* exited with $rc, expected 2 (usage error)"
    [ -s "$D/usage.err" ] || fail "moat-mqtt $* exited 2 without a message on stderr"
}
usage_case
usage_case bogus
usage_case pub -h "$H" -p "$P" -m "no topic"
usage_case pub -h "$H" -p "$P" -t "$T/x"
usage_case pub -h "$H" -p "$P" -t "$T/x" -m x -q 3
usage_case pub -h "$H" -p "$P" -t "$T/x" -m x --no-such-flag
usage_case pub -h "$H" -p notaport -t "$T/x" -m x
usage_case pub -h "$H" -p "$P" -t "$T/+" -m wildcard
usage_case sub -h "$H" -p "$P"
usage_case sub -h "$H" -p "$P" -t "$T/x" -C
log "usage errors exit 2 with a message"

# 7. Nothing listens on DEAD: exit 1, naming host and port.
for cmd in pub sub; do
    rc=0
    if [ "$cmd" = pub ]; then
        timeout 20 "$CLI" pub -h "$H" -p "$DEAD" -t "$T/x" -m x 2>"$D/dead.err" || rc=$?
    else
        timeout 20 "$CLI" sub -h "$H" -p "$DEAD" -t "$T/x" 2>"$D/dead.err" || rc=$?
    fi
    [ "$rc" -ne 124 ] || fail "moat-mqtt $cmd to a dead port was still running after 20 s"
    [ "$rc" -eq 1 ] || { cat "$D/dead.err" >&2; fail "moat-mqtt $cmd to a dead port exited with $rc, expected 1"; }
    grep -qF "$H:$DEAD" "$D/dead.err" ||
        { cat "$D/dead.err" >&2; fail "moat-mqtt $cmd: the error does not name $H:$DEAD"; }
    log "$cmd to a dead port: exit 1, \"$(head -1 "$D/dead.err")\""
done

echo "test_cli.sh: all checks passed"
