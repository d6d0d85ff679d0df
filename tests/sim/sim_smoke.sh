#!/bin/bash
# sim_smoke.sh RUN_SH MOAT MOAT_SIM - moat-sim with 20 devices for a few
# seconds against a fresh mutual-TLS Mosquitto (apps/sim/run.sh makes it),
# then checks the report: every device connected, status messages were
# sent, all of them reached the monitor, every command got its result.
set -u
RUN=$1 MOAT=$2 SIM=$3
out=$(mktemp "${TMPDIR:-/tmp}/moat-sim-smoke.XXXXXX")
trap 'rm -f "$out"' EXIT

bash "$RUN" "$MOAT" "$SIM" --count 20 --rate 20 --duration 5 --interval 1 \
    --cmd-rate 5 --progress 0 --drain 20 >"$out" 2>&1
rc=$?
cat "$out"
fig() { awk -v n="$1" '$1 == "SIM" && $2 == n { print $3 }' "$out"; }
fail=0
check() {
    if [ "$2" = "$3" ]; then
        echo "ok - $1"
    else
        echo "FAIL - $1: got '$2', want '$3'"
        fail=1
    fi
}
check "moat-sim exits 0" "$rc" 0
check "all 20 devices connected" "$(fig connected)" 20
check "no status message lost" "$(fig status_lost)" 0
sent=$(fig status_sent)
if [ -n "$sent" ] && [ "$sent" -ge 80 ]; then
    echo "ok - status messages were sent ($sent, every second from 20 devices)"
else
    echo "FAIL - too few status messages sent: '$sent'"
    fail=1
fi
check "every status message reached the monitor" "$(fig status_received)" "$sent"
check "every command got its result" "$(fig command_results)" "$(fig commands_sent)"
exit $fail
