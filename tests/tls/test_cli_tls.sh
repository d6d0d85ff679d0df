#!/bin/bash
# test_cli_tls.sh MOAT_MQTT - moat-mqtt over mutual TLS against a real
# Mosquitto (require_certificate, use_identity_as_username).
#
# Run by tls-broker-exec, which makes the throw-away PKI of gen-certs.sh,
# starts the broker and sets MOAT_TLS_DIR (certificates, scratch),
# MOAT_TLS_PORT (listeners on 127.0.0.1 and 127.0.0.2) and MOAT_TLS_LOG.
# Checks:
#   - `sub --cafile --cert --key -C n` prints what `pub --cafile --cert --key`
#     sends at QoS 0, 1 and 2; the broker takes the certificate CN as the
#     user name;
#   - a 60,000-byte message and 500 lines in one `pub -l` arrive whole (many
#     TLS records, bytes held inside mbedTLS drained);
#   - a `sub` whose link is cut reconnects and resumes its TLS session;
#   - an encrypted key with --key-pass;
#   - refusals exit 1 with the words of moat_tls_last_error(), naming host and
#     port: a wrong CA, a missing certificate file, a certificate the broker
#     does not trust, a host name the broker certificate does not name, an
#     encrypted key without its password;
#   - usage errors exit 2: --cafile without --cert/--key, --cert without
#     --cafile, --insecure; and --cafile makes 8883 the default port.
set -u

CLI=${1:?usage: test_cli_tls.sh path/to/moat-mqtt}
D=${MOAT_TLS_DIR:?run me through tls-broker-exec}
P=$MOAT_TLS_PORT
LOG=$MOAT_TLS_LOG
H=localhost
T="tls/cli/$$"
TLS=(--cafile "$D/ca.pem" --cert "$D/device.pem" --key "$D/device.key")
BG=()

cleanup() {
    local p
    for p in "${BG[@]}"; do
        kill "$p" 2>/dev/null
    done
}
trap cleanup EXIT

fail() {
    echo "FAIL test_cli_tls.sh: $*" >&2
    exit 1
}

log() {
    echo "[test_cli_tls.sh] $*"
}

# wait_log NEEDLE COUNT SECONDS: until the broker log has COUNT lines with NEEDLE.
wait_log() {
    local deadline=$((SECONDS + $3))
    until [ "$(grep -cF -- "$1" "$LOG")" -ge "$2" ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "fewer than $2 \"$1\" in the broker log after $3 s"
        sleep 0.05
    done
}

# start_sub NAME QOS FILTER ARGS...: moat-mqtt sub over TLS in the
# background, output in $D/NAME.out and .err, pid in SUB_PID; returns once
# the broker has the subscription.
start_sub() {
    local name=$1 q=$2 filter=$3 id="tls-$1-$$"
    shift 3
    "$CLI" sub -h "$H" -p "$P" "${TLS[@]}" -i "$id" -q "$q" -t "$filter" "$@" \
        >"$D/$name.out" 2>"$D/$name.err" &
    SUB_PID=$!
    BG+=("$SUB_PID")
    # Mosquitto logs "<client id> <qos> <filter>" for a new subscription.
    wait_log "$id $q $filter" 1 15
}

# finish_sub NAME: wait for the background sub; it must exit 0.
finish_sub() {
    local rc=0
    wait "$SUB_PID" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "--- stderr of sub $1:" >&2
        cat "$D/$1.err" >&2
        fail "moat-mqtt sub ($1) exited with status $rc"
    fi
}

# expect_file NAME FILE: $D/NAME.out must equal FILE exactly.
expect_file() {
    if ! cmp -s "$2" "$D/$1.out"; then
        diff "$2" "$D/$1.out" | head -20 >&2
        fail "moat-mqtt sub ($1) printed something else than $2"
    fi
}

pub() {
    local rc=0
    "$CLI" pub -h "$H" -p "$P" "${TLS[@]}" -W 20 "$@" 2>"$D/pub.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        cat "$D/pub.err" >&2
        fail "moat-mqtt pub $* exited with status $rc"
    fi
}

# refused WANT_RC WORDS ARGS...: moat-mqtt ARGS must exit WANT_RC with
# exactly one line on stderr, "moat-mqtt: WORDS" (usage errors add a hint).
refused() {
    local want_rc=$1 words=$2 rc=0
    shift 2
    "$CLI" "$@" >"$D/refused.out" 2>"$D/refused.err" || rc=$?
    [ "$rc" -eq "$want_rc" ] || {
        cat "$D/refused.err" >&2
        fail "moat-mqtt $* exited with status $rc, expected $want_rc"
    }
    [ "$(head -n 1 "$D/refused.err")" = "moat-mqtt: $words" ] || {
        echo "--- expected: moat-mqtt: $words" >&2
        echo "--- got:" >&2
        cat "$D/refused.err" >&2
        fail "moat-mqtt $* said something else"
    }
    [ ! -s "$D/refused.out" ] || fail "moat-mqtt $* printed on stdout"
}

[ -x "$CLI" ] || fail "$CLI is not an executable"

# 1. pub -> sub -C 3 -v over mutual TLS, at each QoS.
for q in 0 1 2; do
    start_sub "q$q" "$q" "$T/q$q" -C 3 -v -W 30
    pub -t "$T/q$q" -q "$q" -m "one"
    pub -t "$T/q$q" -q "$q" -m "two words  with  spaces"
    pub -t "$T/q$q" -q "$q" -m "drei $(printf '\xc3\xa9\xe2\x82\xac')"
    finish_sub "q$q"
    printf '%s\n' "$T/q$q one" "$T/q$q two words  with  spaces" \
        "$T/q$q drei $(printf '\xc3\xa9\xe2\x82\xac')" >"$D/q$q.want"
    expect_file "q$q" "$D/q$q.want"
    log "QoS $q: sub -C 3 over mutual TLS printed the 3 messages pub sent"
done
grep -qF "u'moat-dev-1'" "$LOG" || fail "the broker did not take the certificate CN as the user name"
log "the broker took the certificate CN (moat-dev-1) as the user name"

# 2. Many TLS records: a 60,000-byte message, then 500 lines at QoS 1.
head -c 45000 /dev/urandom | base64 -w 0 | head -c 60000 >"$D/big.msg"
printf '\n' >>"$D/big.msg"
start_sub big 1 "$T/big" -C 1 -W 30
head -c 60000 "$D/big.msg" >"$D/big.send"
pub -t "$T/big" -q 1 -f "$D/big.send"
finish_sub big
expect_file big "$D/big.msg"
seq 1 500 | sed 's/^/line /' >"$D/lines.want"
start_sub lines 1 "$T/lines" -C 500 -W 30
pub -t "$T/lines" -q 1 -l <"$D/lines.want"
finish_sub lines
expect_file lines "$D/lines.want"
log "a 60,000-byte message and 500 lines at QoS 1 arrived whole"

# 3. Resumption: a second client with the same id makes the broker drop the
# sub's link; the sub reconnects, resumes its TLS session and subscribes again.
id="tls-resume-$$"
"$CLI" sub -h "$H" -p "$P" "${TLS[@]}" -i "$id" -t "$T/resume" -C 1 -W 30 -d \
    >"$D/resume.out" 2>"$D/resume.err" &
SUB_PID=$!
BG+=("$SUB_PID")
wait_log "$id 0 $T/resume" 1 15
# The intruder's own link may be dropped in turn if the sub is back first.
rc=0
"$CLI" pub -h "$H" -p "$P" "${TLS[@]}" -i "$id" -t "$T/other" -n -W 10 2>"$D/intruder.err" || rc=$?
[ "$rc" -le 1 ] || { cat "$D/intruder.err" >&2; fail "the intruding pub exited with status $rc"; }
wait_log "$id 0 $T/resume" 2 15
pub -t "$T/resume" -m "after the reconnect"
finish_sub resume
printf 'after the reconnect\n' >"$D/resume.want"
expect_file resume "$D/resume.want"
grep -q "TLS is up: .*, full handshake, broker certificate verified" "$D/resume.err" ||
    fail "the first connection of the sub was not a full handshake"
grep -q "connection lost to $H:$P: .*; trying again" "$D/resume.err" ||
    { cat "$D/resume.err" >&2; fail "the sub did not report the lost link"; }
grep -q "TLS is up: .*, session resumed" "$D/resume.err" ||
    { cat "$D/resume.err" >&2; fail "the sub's reconnect did not resume the TLS session"; }
log "a sub whose link was cut reconnected with TLS session resumption"

# 4. An encrypted key with its password (gen-certs.sh: "s3cret").
start_sub enc 1 "$T/enc" -C 1 -W 30
"$CLI" pub -h "$H" -p "$P" --cafile "$D/ca.pem" --cert "$D/device.pem" \
    --key "$D/device-enc.key" --key-pass s3cret -t "$T/enc" -q 1 -m sealed -W 20 ||
    fail "pub with an encrypted key and --key-pass failed"
finish_sub enc
printf 'sealed\n' >"$D/enc.want"
expect_file enc "$D/enc.want"
log "an encrypted key works with --key-pass"

# 5. Refusals: exit 1, the words of moat_tls_last_error(), host and port.
refused 1 "cannot connect to $H:$P: broker certificate is not signed by the configured CA (issuer 'CN=moat test CA')" \
    pub -h "$H" -p "$P" --cafile "$D/other-ca.pem" --cert "$D/device.pem" --key "$D/device.key" -t "$T/x" -m x
log "wrong CA: exit 1, the broker certificate is not signed by the configured CA"
refused 1 "cannot set up TLS for $H:$P: cannot read client certificate '$D/missing.pem': No such file or directory" \
    sub -h "$H" -p "$P" --cafile "$D/ca.pem" --cert "$D/missing.pem" --key "$D/device.key" -t "$T/x" -C 1
log "missing certificate file: exit 1, the file is named"
refused 1 "cannot connect to $H:$P: the broker refused our certificate (alert: unknown_ca)" \
    pub -h "$H" -p "$P" --cafile "$D/ca.pem" --cert "$D/rogue.pem" --key "$D/rogue.key" -t "$T/x" -m x
log "a certificate the broker does not trust: exit 1, the broker's alert is named"
refused 1 "cannot connect to 127.0.0.2:$P: broker certificate does not name host '127.0.0.2' (it names localhost, 127.0.0.1, 0:0:0:0:0:0:0:1)" \
    pub -h 127.0.0.2 -p "$P" "${TLS[@]}" -t "$T/x" -m x
log "a host the broker certificate does not name: exit 1"
refused 1 "cannot set up TLS for $H:$P: client key '$D/device-enc.key' is encrypted and no password is set" \
    pub -h "$H" -p "$P" --cafile "$D/ca.pem" --cert "$D/device.pem" --key "$D/device-enc.key" -t "$T/x" -m x
refused 1 "cannot set up TLS for $H:$P: wrong password for client key '$D/device-enc.key'" \
    pub -h "$H" -p "$P" --cafile "$D/ca.pem" --cert "$D/device.pem" --key "$D/device-enc.key" \
    --key-pass wrong -t "$T/x" -m x
log "an encrypted key without or with a wrong password: exit 1"

# 6. Usage: TLS is mutual and always verified.
refused 2 "--cafile: TLS is mutual; give the client certificate (--cert) and its key (--key) too" \
    pub -h "$H" -p "$P" --cafile "$D/ca.pem" -t "$T/x" -m x
refused 2 "--cafile: TLS is mutual; give the client certificate (--cert) and its key (--key) too" \
    sub -h "$H" -p "$P" --cafile "$D/ca.pem" --cert "$D/device.pem" -t "$T/x"
refused 2 "--cert: needs --cafile (the CA that signed the broker's certificate)" \
    pub -h "$H" -p "$P" --cert "$D/device.pem" --key "$D/device.key" -t "$T/x" -m x
refused 2 "--key-pass: needs --cafile (the CA that signed the broker's certificate)" \
    pub -h "$H" -p "$P" --key-pass s3cret -t "$T/x" -m x
refused 2 "--insecure: moat-mqtt always verifies the broker's certificate and host name; there is no way to turn that off" \
    pub -h "$H" -p "$P" "${TLS[@]}" --insecure -t "$T/x" -m x
log "usage errors exit 2: no half TLS, no --insecure"

# 7. --cafile makes 8883 the default port (whatever listens there, if
# anything, it is not this test's broker: the run fails with exit 1).
rc=0
"$CLI" pub -h 127.0.0.1 "${TLS[@]}" -t "$T/x" -m x -W 5 -d 2>"$D/port.err" || rc=$?
[ "$rc" -eq 1 ] || { cat "$D/port.err" >&2; fail "pub to port 8883 exited with status $rc"; }
grep -q "connecting to 127.0.0.1:8883 (mutual TLS)" "$D/port.err" ||
    { cat "$D/port.err" >&2; fail "--cafile did not make 8883 the default port"; }
log "--cafile makes 8883 the default port"

log "all passed"
