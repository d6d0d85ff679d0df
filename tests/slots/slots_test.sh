#!/bin/bash
# tests/slots/slots_test.sh - A/B slots end to end with moat-launch.
#
# usage: slots_test.sh SECTION MOAT_LAUNCH SLOTS_TOOL
#
# The "firmware" images are tiny shell scripts, padded so that writing them
# takes a while: each prints its version, the slot and the trial state the
# launcher gave it, confirms when on trial (through `moat-launch --confirm`,
# or through moat_slots_confirm_running() in slots_tool, as the agent will),
# or never does and exits 3 like an agent killed by its watchdog. Every
# section has its own slot directory.
#
# Sections:
#   rollback  v1 -> v2 on trial, confirmed -> v3 never confirms, back to v2
#             after 3 starts with the reason in the status; anti-rollback;
#             a damaged pending image; a slot file with extra bytes; errors
#   powercut  an update (payload write, record updates, trial start,
#             confirmation) killed with SIGKILL: 100 times by a timer at
#             random moments, and at 80 exact random points inside record
#             updates and the payload write; after each, moat-launch must
#             exec an image whose SHA-256 is one of the installed versions
set -u

SECTION=${1:?usage: slots_test.sh SECTION MOAT_LAUNCH SLOTS_TOOL}
LAUNCH=${2:?}
TOOL=${3:?}
export LC_ALL=C

T=$(mktemp -d "${TMPDIR:-/tmp}/moat-slots-test.$SECTION.XXXXXX") || exit 1
PASS=0
FAIL=0

cleanup() {
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
finish() {
    echo "# $SECTION: $PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
    exit $?
}

# make_fw FILE NAME CONFIRM EXIT PAD_KB: CONFIRM is launch, api or never.
make_fw() {
    local file=$1 name=$2 confirm=$3 code=$4 pad=$5
    {
        echo '#!/bin/sh'
        echo "echo \"firmware $name slot=\$MOAT_SLOT trial=\$MOAT_SLOT_TRIAL left=\$MOAT_SLOT_TRIALS_LEFT version=\$MOAT_SLOT_VERSION args=\$*\""
        case $confirm in
        launch) echo "if [ \"\$MOAT_SLOT_TRIAL\" = 1 ]; then \"$LAUNCH\" --dir \"\$MOAT_SLOTS_DIR\" --confirm || exit 9; fi" ;;
        api) echo "if [ \"\$MOAT_SLOT_TRIAL\" = 1 ]; then \"$TOOL\" confirm-running || exit 9; fi" ;;
        esac
        echo "exit $code"
        head -c "$((pad * 1024))" /dev/zero | tr '\0' '#' | fold -w 99
    } >"$file"
    chmod 0644 "$file" # the slot gets 0755 from the install, not from here
}

# start DIR ARGS...: one start as systemd would do it; sets OUT, ERR, RC.
start() {
    local dir=$1
    shift
    OUT=$("$LAUNCH" --dir "$dir" -- "$@" 2>"$T/start.err")
    RC=$?
    ERR=$(cat "$T/start.err")
}

status() { "$LAUNCH" --dir "$1" --status; }
# A top-level field of the status (the per-slot objects are cut off first).
json_field() { sed -n "s/.*\"$2\":\"\\([^\"]*\\)\".*/\\1/p" <<<"${1%%,\"slots\":*}"; }
json_num() { sed -n "s/.*\"$2\":\\([0-9a-z]*\\).*/\\1/p" <<<"${1%%,\"slots\":*}"; }

# ------------------------------------------------------------------ rollback

section_rollback() {
    local D=$T/slots st i seq="" line
    make_fw "$T/fw1" v1 launch 0 8
    make_fw "$T/fw2" v2 launch 0 8
    make_fw "$T/fw3" v3 never 3 8
    make_fw "$T/fw4" v4 api 0 8
    make_fw "$T/fw5" v5 launch 0 8

    start "$D"
    check "no slot directory: exit 1 with words" \
        test "$RC" = 1 -a "$ERR" = "moat-launch: slot directory $D: No such file or directory"
    "$LAUNCH" --dir "$D" --install "$T/fw1" --version 1.0.0 --counter 1 --confirmed 2>"$T/err"
    check "provision v1 (confirmed)" grep -q "installed $T/fw1 into slot a (version 1.0.0): active now" "$T/err"
    check "slot files are executable, records private" \
        test "$(stat -c %a "$D/slot-a") $(stat -c %a "$D/boot-0" 2>/dev/null || stat -c %a "$D/boot-1")" = "755 600"

    start "$D" one "two words"
    check "v1 runs from slot a, not on trial, with the agent's args" \
        test "$RC" = 0 -a "$OUT" = "firmware v1 slot=a trial=0 left=0 version=1.0.0 args=one two words"

    "$LAUNCH" --dir "$D" --install "$T/fw2" --version 2.0.0 --counter 2 2>"$T/err"
    check "install v2: pending in slot b" grep -q "into slot b (version 2.0.0): it runs on trial at the next start" "$T/err"
    st=$(status "$D")
    check "status: pending" test "$(json_field "$st" state) $(json_field "$st" pending)" = "pending b"

    start "$D"
    check "v2 starts on trial in slot b" \
        test "$RC" = 0 -a "$OUT" = "firmware v2 slot=b trial=1 left=2 version=2.0.0 args="
    check "the launcher says so" grep -q "slot b (version 2.0.0) on trial: 2 trial starts left after this one" <<<"$ERR"
    st=$(status "$D")
    check "v2 confirmed itself: active b, counter 2" \
        test "$(json_field "$st" state) $(json_field "$st" active) $(json_num "$st" securitycounter)" = "confirmed b 2"
    start "$D"
    check "v2 runs again, not on trial" test "$RC" = 0 -a "$OUT" = "firmware v2 slot=b trial=0 left=0 version=2.0.0 args="

    "$LAUNCH" --dir "$D" --install "$T/fw1" --version 1.0.0 --counter 1 2>"$T/err"
    check "anti-rollback: v1 (counter 1) refused after v2 (counter 2)" \
        grep -q "refused, its security counter 1 is below the device's 2 (older than what runs)" "$T/err"

    "$LAUNCH" --dir "$D" --install "$T/fw3" --version 3.0.0 --counter 3 2>"$T/err"
    check "install v3 (never confirms) into slot a" grep -q "into slot a (version 3.0.0)" "$T/err"
    # systemd's Restart=always: the launcher runs again after every exit.
    for i in 1 2 3 4 5; do
        start "$D"
        line=$(sed -n 's/^firmware \(v[0-9]\) slot=\(.\) trial=\(.\).*/\1\2\3/p' <<<"$OUT")
        seq="$seq $line:$RC"
        [ "$i" = 4 ] && cp "$T/start.err" "$T/start4.err"
    done
    check "v3 on trial 3 times (exit 3 each), then v2 by itself" \
        test "$seq" = " v3a1:3 v3a1:3 v3a1:3 v2b0:0 v2b0:0"
    check "the launcher logs the rollback" \
        grep -q "last rollback: slot a (version 3.0.0) did not confirm within 3 starts: back to slot b (version 2.0.0)" "$T/start4.err"
    st=$(status "$D")
    check "status says why" \
        test "$(json_field "$st" rollback)" = "slot a (version 3.0.0) did not confirm within 3 starts: back to slot b (version 2.0.0)"
    check "status: v2 confirmed in b, counter still 2" \
        test "$(json_field "$st" state) $(json_field "$st" slot) $(json_field "$st" version) $(json_num "$st" securitycounter)" = "confirmed b 2.0.0 2"
    check "status: slot a rejected after 3 trial starts" grep -q '"a":{"state":"rejected","version":"3.0.0",[^}]*"trialstarts":3' <<<"$st"
    "$LAUNCH" --dir "$D" --confirm --slot a 2>"$T/err"
    check "the rolled-back v3 cannot confirm" \
        grep -q "confirm: $D: slot a (version 3.0.0) cannot confirm: it was rolled back" "$T/err"

    "$LAUNCH" --dir "$D" --install "$T/fw4" --version 4.0.0 --counter 3 2>/dev/null
    start "$D"
    check "v4 on trial confirms through moat_slots_confirm_running()" \
        test "$RC" = 0 -a "$OUT" = "firmware v4 slot=a trial=1 left=2 version=4.0.0 args="
    st=$(status "$D")
    check "v4 active, counter 3, the old reason cleared" \
        test "$(json_field "$st" active) $(json_num "$st" securitycounter) [$(json_field "$st" rollback)]" = "a 3 []"
    env -u MOAT_SLOT "$TOOL" confirm-running 2>"$T/err"
    check "confirm-running without MOAT_SLOT: refused in words" \
        grep -q "not started by moat-launch (no MOAT_SLOT): nothing to confirm" "$T/err"

    # A pending image damaged on disk never runs.
    "$LAUNCH" --dir "$D" --install "$T/fw5" --version 5.0.0 --counter 3 2>/dev/null
    printf 'X' | dd of="$D/slot-b" bs=1 seek=3000 conv=notrunc status=none
    start "$D"
    check "damaged v5 is not run; v4 is" test "$RC" = 0 -a "$OUT" = "firmware v4 slot=a trial=0 left=0 version=4.0.0 args="
    st=$(status "$D")
    check "status says the image was damaged" \
        test "$(json_field "$st" rollback)" = "slot b (version 5.0.0) does not match its SHA-256 (damaged or partly written): back to slot a (version 4.0.0)"

    # Bytes appended to the image: the checked prefix would run more.
    cp "$D/slot-a" "$T/slot-a.good"
    echo 'echo unverified' >>"$D/slot-a"
    start "$D"
    check "a slot file longer than its record is refused" \
        test "$RC" = 1 -a -z "$OUT"
    check "... in words" grep -q "slot-a: [0-9]* bytes, but the boot record says [0-9]*: refusing to run it" <<<"$ERR"
    cat "$T/slot-a.good" >"$D/slot-a"
    start "$D"
    check "restored, v4 runs again" test "$RC" = 0 -a "$OUT" = "firmware v4 slot=a trial=0 left=0 version=4.0.0 args="

    # A download cut in the middle goes on after a restart, whether its
    # first half was synced (in the slot file) or not (in the .tmp file).
    make_fw "$T/fw6" v6 launch 0 64
    make_fw "$T/fw7" v7 launch 0 64
    "$TOOL" write-half "$D" "$T/fw6" --sync >/dev/null
    start "$D"
    check "cut mid-install: v4 still runs" test "$RC" = 0 -a "$OUT" = "firmware v4 slot=a trial=0 left=0 version=4.0.0 args="
    check "status: slot b is being written" grep -q '"b":{"state":"writing"}' <<<"$(status "$D")"
    "$TOOL" resume "$D" "$T/fw6" 6.0.0 3
    start "$D"
    check "resumed install (synced half) runs on trial" \
        test "$RC" = 0 -a "$OUT" = "firmware v6 slot=b trial=1 left=2 version=6.0.0 args="
    "$TOOL" write-half "$D" "$T/fw7" >/dev/null
    check "the unsynced half is in the .tmp file" test -s "$D/slot-a.tmp"
    "$TOOL" resume "$D" "$T/fw7" 7.0.0 3
    start "$D"
    check "resumed install (unsynced half) runs on trial" \
        test "$RC" = 0 -a "$OUT" = "firmware v7 slot=a trial=1 left=2 version=7.0.0 args="
    "$TOOL" resume "$D" "$T/fw7" 7.0.0 3 2>"$T/err"
    check "nothing to resume once installed" grep -q "no install in progress to resume" "$T/err"

    mkdir "$T/empty"
    start "$T/empty"
    check "an empty slot directory: nothing runs, exit 1 with words" \
        test "$RC" = 1 -a "$ERR" = "moat-launch: $T/empty: no slot holds an image that can run: slot a: empty; slot b: empty"
    "$LAUNCH" --bogus 2>/dev/null
    check "unknown option: exit 2" test $? = 2
    "$LAUNCH" --dir "$D" --install "$T/fw1" 2>/dev/null
    check "--install without --version: exit 2" test $? = 2
    "$LAUNCH" --dir "$D" --install "$T/fw1" --version "has space" 2>"$T/err"
    check "a bad version is refused" grep -q "the version must be 1 to 23 printable characters" "$T/err"
}

# ------------------------------------------------------------------ powercut

# After a kill: the next start must exec an installed, verified image.
# Sets BOOTED to its version (v1 or v2).
boot_check() {
    local D=$1 what=$2 ver slot want
    start "$D" pc
    ver=$(sed -n 's/^firmware \(v[12]\) slot=\([ab]\) .*/\1/p' <<<"$OUT")
    slot=$(sed -n 's/^firmware \(v[12]\) slot=\([ab]\) .*/\2/p' <<<"$OUT")
    BOOTED=$ver
    if [ "$RC" != 0 ] || [ -z "$ver" ]; then
        bad "$what: no verified image ran (rc $RC): $OUT $ERR"
        return 1
    fi
    want=$(sha256sum <"$T/fw${ver#v}" | cut -d' ' -f1)
    if [ "$(sha256sum <"$D/slot-$slot" | cut -d' ' -f1)" != "$want" ]; then
        bad "$what: slot $slot ran but is not $ver byte for byte"
        return 1
    fi
    return 0
}

# The image to install next: the one that is not running.
next_image() {
    if [ "$BOOTED" = v1 ]; then NEXT_FILE=$T/fw2 NEXT_VER=2.0.0; else NEXT_FILE=$T/fw1 NEXT_VER=1.0.0; fi
}

section_powercut() {
    local D=$T/slots i d rc ph= t0 t1 ms fails=0 killed=0 runs=0 size kind r o k
    local -A phases=()
    make_fw "$T/fw1" v1 launch 0 200
    make_fw "$T/fw2" v2 launch 0 260
    "$LAUNCH" --dir "$D" --install "$T/fw1" --version 1.0.0 --counter 1 --confirmed 2>/dev/null
    boot_check "$D" "provisioned" || { finish; }
    check "v1 runs after provisioning" test "$BOOTED" = v1

    # How long a slow update takes, to spread the timer over it.
    next_image
    t0=$(date +%s%N)
    "$TOOL" cycle "$D" "$NEXT_FILE" "$NEXT_VER" 1 --slow >"$T/dry.out" 2>/dev/null
    t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000))
    check "a slow update completes ($ms ms, $(grep -c '^record' "$T/dry.out") record updates)" \
        grep -q '^events ' "$T/dry.out"
    boot_check "$D" "after the dry run" || fails=$((fails + 1))

    # 100 kills by a timer at random moments of the update (a run that
    # finishes before its timer is checked too, and does not count).
    i=0
    while [ "$killed" -lt 100 ] && [ "$i" -lt 400 ]; do
        i=$((i + 1))
        next_image
        d=$((RANDOM % ms + 1))
        # (a subshell, so that bash's "Killed" notice goes to /dev/null)
        (timeout -s KILL "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))" \
            "$TOOL" cycle "$D" "$NEXT_FILE" "$NEXT_VER" 1 --slow >/dev/null 2>"$T/phase.log") \
            2>/dev/null
        rc=$?
        if [ "$rc" = 137 ]; then
            killed=$((killed + 1))
            ph=$(sed -n 's/^phase //p' "$T/phase.log" | tail -n 1)
            ph=${ph:-start}
            phases[$ph]=$((${phases[$ph]:-0} + 1))
        elif [ "$rc" != 0 ]; then
            bad "timer run $i: the update failed by itself (rc $rc): $(cat "$T/phase.log")"
        fi
        boot_check "$D" "timer run $i after $d ms (${ph:-no kill})" || fails=$((fails + 1))
        ph=
    done
    check "100 timer kills in $i runs; after each run a verified image ran (phases:$(for k in "${!phases[@]}"; do printf ' %s=%s' "$k" "${phases[$k]}"; done))" \
        test "$fails" = 0 -a "$killed" = 100
    check "some timer kills hit a record update" test "${phases[record-write]:-0}" -ge 3
    check "some timer kills hit the slot write" test "${phases[slot-write]:-0}" -ge 10

    # 80 exact points: 60 inside record updates (the erase, any byte, the
    # sync of the 1st..4th update; a cycle makes 3 or 4), 20 inside the
    # payload write.
    fails=0 runs=0 killed=0
    for i in $(seq 1 80); do
        next_image
        if [ "$i" -le 60 ]; then
            r=$((RANDOM % 4 + 1))
            o=$((RANDOM % 258))
            kind="record update $r event $o"
            "$TOOL" cycle "$D" "$NEXT_FILE" "$NEXT_VER" 1 --kill-record "$r" "$o" >/dev/null 2>&1
        else
            size=$(stat -c %s "$NEXT_FILE")
            o=$(((RANDOM * 32768 + RANDOM) % (size + 2)))
            kind="slot write event $o of $((size + 1))"
            "$TOOL" cycle "$D" "$NEXT_FILE" "$NEXT_VER" 1 --kill-slot "$o" >/dev/null 2>&1
        fi
        rc=$?
        [ "$rc" = 137 ] || [ "$rc" = 0 ] || bad "exact kill $i ($kind): rc $rc"
        [ "$rc" = 137 ] && killed=$((killed + 1))
        boot_check "$D" "exact kill $i ($kind)" || fails=$((fails + 1))
        runs=$((runs + 1))
    done
    check "80 exact runs, $killed killed" test "$runs" = 80 -a "$killed" -ge 60
    check "after each of 80 exact kills a verified image ran" test "$fails" = 0
    next_image
    "$TOOL" cycle "$D" "$NEXT_FILE" "$NEXT_VER" 1 >/dev/null 2>"$T/err"
    check "no stale state blocks a clean update afterwards" test $? = 0
}

case $SECTION in
rollback) section_rollback ;;
powercut) section_powercut ;;
*) echo "slots_test: unknown section '$SECTION'" >&2; exit 2 ;;
esac
finish
