#!/usr/bin/env bash
# Chaos lab: real `tracker` and `peer` processes with default flags in network namespaces (the
# NAT lab's topology helpers, scripts/nat-lab/topology.sh, without NATs), under conditions a
# loopback test cannot make:
#
#   loss   10% of the packets arriving at every host (tracker and peers) dropped by
#          `iptables -m statistic --mode random --probability 0.1 -j DROP`: the tracker's UDP
#          and the peers' TCP both suffer it; a download must still complete byte-identical
#   full   a download into a --dir on a tmpfs too small for the file: a clear error, no file
#          that looks complete, no staging garbage, and the download succeeds once there is room
#
#   scripts/chaos.sh test    runs both, prints the figures, always cleans up
#
# (kill -9 of a leecher at 20 instants and a seeder killed mid-transfer need no namespaces:
# peer/cli/tests/chaos.rs runs them on loopback with every `cargo test`.)
# Needs root, iproute2, iptables, util-linux (mount) and the workspace binaries (`cargo build
# --workspace --bins`; found in $NAT_LAB_BIN or $CARGO_TARGET_DIR/debug).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# shellcheck source=nat-lab/topology.sh
. "$HERE/nat-lab/topology.sh"

# Two peers straight on the lab's public segment: a seeder and a leecher.
LAN_NAMES=(s-none l-none)
LOSS=0.1
FILE_BYTES=$((16 << 20))
GET_TIMEOUT=${CHAOS_GET_TIMEOUT:-600}

say() { printf 'chaos: %s\n' "$*"; }

chaos_preflight() {
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, iptables, mount)"
    local c
    for c in ip iptables mount umount timeout cmp awk; do
        command -v "$c" >/dev/null || die "'$c' not found; install iproute2 iptables util-linux coreutils"
    done
    for c in tracker peer; do
        [ -x "$(lab_bin_dir)/$c" ] || die "binary '$(lab_bin_dir)/$c' missing; run: cargo build --workspace --bins (or set NAT_LAB_BIN)"
    done
}

# The public segment with the tracker (which also answers STUN over TCP on 3478, where peers
# look by default) and one host per LAN.
chaos_up() {
    lab_load "$1"
    [ ! -e "$DIR" ] || die "run dir $DIR exists already"
    mkdir -p "$DIR"
    build_public
    local lan
    for lan in "${LAN_NAMES[@]}"; do
        build_lan "$lan"
        # Wire-sized packets: with segmentation offload a veth carries 64 KiB super-packets,
        # and dropping one of those is not what a lossy link does.
        in_ns "$(ns_host "$lan")" ip link set dev "$(if_host "$lan")" gso_max_size 1500
    done
    spawn "$NS_PUB" tracker env RUST_LOG="${RUST_LOG:-info}" \
        "$BIN/tracker" --bind "$TRACKER_IP:$TRACKER_PORT" --stun-tcp "$STUN_PORT"
    wait_for_line "$DIR/tracker.log" '^tracker listening on ' "$DIR/tracker.pid" >/dev/null \
        || die "tracker did not start"
}

chaos_finish() {
    local id="$1" rc="$2" job
    for job in $(jobs -p); do kill "$job" 2>/dev/null || true; done
    if mountpoint -q "$(lab_dir "$id")/small" 2>/dev/null; then umount "$(lab_dir "$id")/small"; fi
    if [ "$rc" != 0 ]; then
        log "FAILED (exit $rc); logs kept in $(lab_dir "$id")"
        NAT_LAB_KEEP=1 lab_down "$id"
    else
        lab_down "$id"
    fi
}

peer_in() {
    local lan="$1"; shift
    in_ns "$(ns_host "$lan")" timeout -k 5 "$GET_TIMEOUT" env RUST_LOG="${RUST_LOG:-info}" \
        "$BIN/peer" --tracker "$TRACKER_IP:$TRACKER_PORT" "$@"
}

# A seeder daemon (default flags) in s-none serving FILE, made of random bytes.
start_seeder() {
    local file="$1"
    mkdir -p "$DIR/seed"
    head -c "$FILE_BYTES" /dev/urandom >"$DIR/seed/$file"
    spawn "$(ns_host s-none)" seeder env RUST_LOG="${RUST_LOG:-info}" \
        "$BIN/peer" --tracker "$TRACKER_IP:$TRACKER_PORT" --dir "$DIR/seed" daemon
    wait_for_line "$DIR/seeder.log" "sharing $file " "$DIR/seeder.pid" >/dev/null \
        || die "the seeder did not share $file"
}

# Packets the loss rule of namespace $1 dropped so far.
dropped_in() {
    in_ns "$1" iptables -nvxL INPUT | awk '/statistic/ { print $1; exit }'
}

scenario_loss() {
    local file=lossy.bin ns t0 took drops=() got=0
    say "loss: ${LOSS} of the packets into the tracker, the seeder and the leecher dropped"
    for ns in "$NS_PUB" "$(ns_host s-none)" "$(ns_host l-none)"; do
        in_ns "$ns" iptables -A INPUT -m statistic --mode random --probability "$LOSS" -j DROP
    done
    start_seeder "$file"
    mkdir -p "$DIR/leech"
    t0=$SECONDS
    if peer_in l-none --dir "$DIR/leech" get --json "$file" >"$DIR/loss-get.out" 2>"$DIR/loss-get.log" </dev/null &&
        cmp -s "$DIR/seed/$file" "$DIR/leech/$file"; then
        got=1
    fi
    took=$((SECONDS - t0))
    for ns in "$NS_PUB" "$(ns_host s-none)" "$(ns_host l-none)"; do drops+=("$(dropped_in "$ns")"); done
    for ns in "$NS_PUB" "$(ns_host s-none)" "$(ns_host l-none)"; do
        in_ns "$ns" iptables -D INPUT -m statistic --mode random --probability "$LOSS" -j DROP
    done
    if [ "$got" != 1 ]; then
        tail -n 30 "$DIR/loss-get.log" >&2
        die "loss: the download did not complete byte-identical"
    fi
    say "loss: $((FILE_BYTES >> 20)) MiB downloaded byte-identical in ${took}s with packets dropped: ${drops[0]} at the tracker, ${drops[1]} at the seeder, ${drops[2]} at the leecher; $(grep -m1 '^{' "$DIR/loss-get.out")"
}

# The download directory's files other than the resume state, one per line.
visible_files() { find "$1" -mindepth 1 -maxdepth 1 ! -name .peer -printf '%f\n' | sort; }

scenario_full() {
    local file=lossy.bin small="$DIR/small" rc=0 left
    say "full: a $((FILE_BYTES >> 20)) MiB download into a --dir on a 2 MiB tmpfs"
    mkdir -p "$small"
    mount -t tmpfs -o size=2m chaos-small "$small"
    peer_in l-none --dir "$small" get "$file" >"$DIR/full-get.out" 2>"$DIR/full-get.log" </dev/null || rc=$?
    [ "$rc" != 0 ] || die "full: the download into a full directory reported success"
    [ "$rc" != 124 ] && [ "$rc" != 137 ] || die "full: the download hung on a full disk (killed by timeout)"
    grep -qiE 'no space|space left|full|not enough' "$DIR/full-get.log" \
        || { tail -n 20 "$DIR/full-get.log" >&2; die "full: no clear error about the disk being full"; }
    [ ! -e "$small/$file" ] || die "full: a file that looks complete was left: $(ls -la "$small")"
    left="$(visible_files "$small")"
    say "full: exit $rc, error: $(grep -iE 'no space|space left|full|not enough' "$DIR/full-get.log" | tail -n1)"
    say "full: left in --dir: ${left:-nothing} (+ .peer: $(find "$small/.peer" -mindepth 1 -printf '%f ' 2>/dev/null))"
    # Nothing but the download's own resume pair (.part and its record) may stay behind.
    if printf '%s\n' "$left" | grep -v -x -e '' -e "$file.part" | grep -q .; then
        die "full: staging garbage left in --dir: $left"
    fi
    # With room, the same command finishes the job.
    mount -o remount,size=64m "$small"
    peer_in l-none --dir "$small" get "$file" >"$DIR/full-again.out" 2>"$DIR/full-again.log" </dev/null \
        || { tail -n 20 "$DIR/full-again.log" >&2; die "full: the download failed once there was room"; }
    cmp -s "$DIR/seed/$file" "$small/$file" || die "full: the finished file differs"
    say "full: with room the same get completed byte-identical: $(grep -m1 '^downloaded' "$DIR/full-again.out")"
    umount "$small"
}

case "${1:-}" in
    test)
        chaos_preflight
        id="c$(lab_new_id)"
        id="${id:0:7}"
        trap 'rc=$?; trap - EXIT INT TERM; chaos_finish "$id" "$rc"; exit "$rc"' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        chaos_up "$id"
        scenario_loss
        scenario_full
        say "all scenarios passed"
        ;;
    -h|--help|help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
