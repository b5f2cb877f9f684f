#!/usr/bin/env bash
# NAT lab: real peers behind emulated home-router NATs, built from Linux network namespaces,
# veth pairs and iptables, with the tracker and a third-party STUN server (coturn) on a
# "public" segment.
#
#   scripts/nat-lab.sh up          build the lab, start tracker + coturn, print the run id; stays up
#   scripts/nat-lab.sh down ID     remove everything of run ID (processes, namespaces, run dir)
#   scripts/nat-lab.sh check ID    verify a running lab with coturn's tools (mapping through each NAT)
#   scripts/nat-lab.sh test        up + check + transfer matrix + mapping change, always torn down
#   scripts/nat-lab.sh bench       64 MiB fetched direct and relayed through coturn, one run
#                                  (BENCH_MIB, BENCH_RUNS); scripts/bench-relay.sh runs it on
#                                  release binaries
#   scripts/nat-lab.sh list        run ids with namespaces still present
#
# Needs root, iproute2, iptables, conntrack, coturn (turnserver, turnutils_*), miniupnpd-iptables,
# miniupnpc (upnpc), natpmpc, and the workspace
# binaries (`cargo build --workspace --bins`; found in $NAT_LAB_BIN or $CARGO_TARGET_DIR/debug).
# All traffic stays inside namespaces this script creates: every veth end lives in one of them,
# nothing is added to the host's own namespace. 203.0.113.0/24 (TEST-NET-3) plays the internet,
# 10.0.N.0/24 are the private LANs. See scripts/nat-lab/README.md for the picture.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# shellcheck source=nat-lab/topology.sh
. "$HERE/nat-lab/topology.sh"
# shellcheck source=nat-lab/scenarios.sh
. "$HERE/nat-lab/scenarios.sh"
# shellcheck source=nat-lab/bench.sh
. "$HERE/nat-lab/bench.sh"

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

cmd="${1:-}"
case "$cmd" in
    up)
        lab_preflight tracker
        id="${2:-$(lab_new_id)}"
        lab_up "$id"
        echo "nat-lab: run $id is up; state in $(lab_dir "$id"); remove with: $0 down $id"
        ;;
    down)
        [ -n "${2:-}" ] || { echo "nat-lab: down needs a run id (see: $0 list)" >&2; exit 2; }
        lab_down "$2"
        ;;
    check)
        [ -n "${2:-}" ] || { echo "nat-lab: check needs a run id (see: $0 list)" >&2; exit 2; }
        lab_load "$2"
        lab_check_topology
        ;;
    list)
        lab_list
        ;;
    test)
        lab_preflight tracker peer stun-probe
        id="$(lab_new_id)"
        # Cleanup runs whatever happens: normal end, a failed step (set -e), Ctrl-C or kill.
        trap 'rc=$?; trap - EXIT INT TERM; lab_finish "$id" "$rc"; exit "$rc"' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        lab_up "$id"
        lab_check_topology
        lab_test_all
        ;;
    bench)
        lab_preflight tracker peer
        id="$(lab_new_id)"
        trap 'rc=$?; trap - EXIT INT TERM; lab_finish "$id" "$rc"; exit "$rc"' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        lab_up "$id"
        lab_bench_relay
        ;;
    -h|--help|help)
        usage
        ;;
    *)
        usage >&2
        exit 2
        ;;
esac
