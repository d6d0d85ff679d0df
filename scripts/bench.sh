#!/bin/sh
# make bench: every benchmark the project has, one figure per line
# (SIZE, SIZEOF, HEAP, BENCH). docs/BENCHMARKS.md records them with these
# commands. Peers are measured in the same run where a peer exists.
set -eu
BUILD=${1:-build}
echo "== code size (scripts/size.sh, scripts/size-tls.sh)"
sh scripts/size.sh
sh scripts/size-tls.sh
engine=$(sh scripts/size.sh | awk '$1 == "SIZE" && $2 == "mqtt_engine" && $3 == "cortex-m4" {print $4}')
# coreMQTT v2 (MQTT 3.1.1) publishes 7.0 KB for Cortex-M4 -Os.
awk -v m="$engine" 'BEGIN { printf "RATIO mqtt_engine_vs_coremqtt cortex-m4 %.2f\n", m / (7.0 * 1024) }'
echo "== TLS heap and handshake (scripts/bench-tls.sh)"
BUILD="$BUILD" sh scripts/bench-tls.sh
