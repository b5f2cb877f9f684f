#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests of every crate, then the NAT lab
# when this machine can build network namespaces (root + iproute2 + iptables).
set -euo pipefail
cd "$(dirname "$0")/.."

# The tracker's Redis store tests (tracker/server/tests/redis.rs) start their own redis-server
# and skip LOUDLY without one; REDIS=require makes that a failure, as it is wherever the NAT lab
# is required (CI).
if [ "${NAT_LAB:-auto}" = require ]; then
    export REDIS="${REDIS:-require}"
fi
if ! command -v redis-server >/dev/null; then
    {
        echo "################################################################################"
        echo "##  REDIS STORE TESTS SKIPPED: redis-server is not installed"
        echo "##  (apt-get install redis-server). tracker --store redis:// was NOT tested."
        echo "################################################################################"
    } >&2
    [ "${REDIS:-auto}" != require ] || exit 1
fi

# Integration tests of one crate start the binaries of the others (peer tests start `tracker`),
# so every binary is built before any test runs.
cargo build --workspace --bins --locked
# The hostile-client suite (peer/cli/tests/hostile.rs) appends one figure per attack here.
figures="${CARGO_TARGET_DIR:-target}/tmp/hostile-figures.txt"
rm -f "$figures"
cargo test --workspace --locked
# The HTTP API against its OpenAPI document (schemathesis; fails under CI when it cannot run).
scripts/http-api-check.sh
if [ -s "$figures" ]; then
    echo "== hostile clients against a peer daemon (outcome, daemon peak RSS)"
    sed 's/^/  /' "$figures"
fi

# The NAT lab (scripts/nat-lab.sh test): real peers behind emulated NATs in network namespaces,
# a few minutes. It needs root and namespaces with veth pairs and iptables NAT; where it cannot
# run it is skipped LOUDLY. NAT_LAB=require makes a skip fail the suite, NAT_LAB=skip skips it.
nat_lab_unavailable() {
    [ "$(id -u)" = 0 ] || { echo "not running as root"; return; }
    local c probe="nlprobe$$"
    for c in ip iptables iptables-legacy conntrack turnserver turnutils_stunclient turnutils_natdiscovery miniupnpd upnpc natpmpc; do
        command -v "$c" >/dev/null || { echo "'$c' not installed (apt-get install iproute2 iptables conntrack coturn miniupnpd-iptables miniupnpc natpmpc)"; return; }
    done
    ip netns add "$probe" 2>/dev/null || { echo "cannot create network namespaces"; return; }
    if ! ip -n "$probe" link add name nlpa type veth peer name nlpb 2>/dev/null; then
        echo "cannot create veth pairs"
    elif ! ip netns exec "$probe" iptables -t nat -A POSTROUTING -o nlpa -j MASQUERADE --random-fully 2>/dev/null; then
        echo "iptables NAT does not work inside a network namespace"
    fi
    ip netns del "$probe"
}
nat_lab_reason="$(nat_lab_unavailable)"
[ "${NAT_LAB:-auto}" != skip ] || nat_lab_reason="NAT_LAB=skip"
if [ -z "$nat_lab_reason" ]; then
    scripts/nat-lab.sh test
else
    {
        echo "################################################################################"
        echo "##  NAT LAB SKIPPED: $nat_lab_reason"
        echo "##  The NAT traversal tests (scripts/nat-lab.sh test) did NOT run."
        echo "##  Run this script as root with iproute2, iptables, conntrack, coturn, miniupnpd-iptables,"
        echo "##  miniupnpc and natpmpc."
        echo "################################################################################"
    } >&2
    [ "${NAT_LAB:-auto}" != require ] || exit 1
fi

# The chaos lab (scripts/chaos.sh test): 10% packet loss on the tracker and peer paths, a
# download into a directory that fills up; under a minute. Needs root, namespaces and iptables'
# statistic match; skipped LOUDLY otherwise. CHAOS=require makes a skip fail, CHAOS=skip skips.
chaos_unavailable() {
    [ "$(id -u)" = 0 ] || { echo "not running as root"; return; }
    local c probe="chprobe$$"
    for c in ip iptables mount umount; do
        command -v "$c" >/dev/null || { echo "'$c' not installed (apt-get install iproute2 iptables util-linux)"; return; }
    done
    ip netns add "$probe" 2>/dev/null || { echo "cannot create network namespaces"; return; }
    if ! ip netns exec "$probe" iptables -A INPUT -m statistic --mode random --probability 0.1 -j DROP 2>/dev/null; then
        echo "iptables' statistic match does not work inside a network namespace"
    fi
    ip netns del "$probe"
}
chaos_reason="$(chaos_unavailable)"
[ "${CHAOS:-auto}" != skip ] || chaos_reason="CHAOS=skip"
if [ -z "$chaos_reason" ]; then
    scripts/chaos.sh test
else
    {
        echo "################################################################################"
        echo "##  CHAOS LAB SKIPPED: $chaos_reason"
        echo "##  The packet-loss and full-disk tests (scripts/chaos.sh test) did NOT run."
        echo "##  Run this script as root with iproute2, iptables and util-linux."
        echo "################################################################################"
    } >&2
    [ "${CHAOS:-auto}" != require ] || exit 1
fi
