#!/bin/sh
# dns_blackhole.sh TEST - run TEST (test_tcp_connect) where host-name lookups
# hang: in a private mount namespace whose /etc/resolv.conf names 127.0.0.1,
# where the test itself holds port 53 and never answers. Needs root (CI runs
# as root); anywhere else it exits 77, which ctest reports as skipped.
set -eu
test_bin=${1:?usage: dns_blackhole.sh TEST}
if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null 2>&1; then
    echo "dns_blackhole: needs root and unshare; skipped" >&2
    exit 77
fi
conf=$(mktemp "${TMPDIR:-/tmp}/moat-resolv.XXXXXX")
trap 'rm -f "$conf"' EXIT
printf 'nameserver 127.0.0.1\noptions timeout:5 attempts:2\n' >"$conf"
if ! unshare -m true 2>/dev/null; then
    echo "dns_blackhole: cannot make a mount namespace here; skipped" >&2
    exit 77
fi
unshare -m sh -c 'mount --bind "$1" /etc/resolv.conf && exec env MOAT_TEST_DNS_BLACKHOLE=1 "$2"' \
    sh "$conf" "$test_bin"
