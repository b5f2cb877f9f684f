#!/usr/bin/env bash
# Quick start: builds the release binaries, then, on 127.0.0.1 only, runs a tracker with its STUN
# responder and two peers; one shares a generated file, the other downloads it. Shows both
# SHA-256 sums and the transfer statistics, then stops everything it started.
# Needs no input. Usage: scripts/demo.sh [SIZE_MIB]   (default 16)
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib="${1:-16}"
if ! [[ "$size_mib" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/demo.sh [SIZE_MIB]  (a positive whole number, default 16)" >&2
    exit 2
fi

# Release binaries, so the rate the download prints is the real one (debug builds are about
# forty times slower); the first run compiles them once.
echo "== building (cargo build --release --workspace --bins; the first time takes a few minutes)"
cargo build --release --workspace --bins --quiet
bin="${CARGO_TARGET_DIR:-target}/release"

work="$(mktemp -d "${TMPDIR:-/tmp}/p2p-demo.XXXXXX")"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# wait_line FILE PREFIX: prints the rest of the first line of FILE starting with PREFIX,
# waiting up to 60 s for it to appear.
wait_line() {
    local file="$1" prefix="$2" line
    for _ in $(seq 600); do
        line="$(grep -m1 "^$prefix" "$file" 2>/dev/null || true)"
        if [ -n "$line" ]; then
            echo "${line#"$prefix"}"
            return 0
        fi
        sleep 0.1
    done
    echo "demo: no line \"$prefix\" in $file; log:" >&2
    cat "${file%.out}.log" >&2 || true
    return 1
}

echo "== tracker on 127.0.0.1 (UDP, ephemeral port) with its STUN responder (TCP)"
"$bin/tracker" --bind 127.0.0.1:0 --stun --stun-tcp 0 >"$work/tracker.out" 2>"$work/tracker.log" &
pids+=($!)
tracker="$(wait_line "$work/tracker.out" "tracker listening on ")"
stun="$(wait_line "$work/tracker.out" "stun listening on tcp ")"
echo "   tracker $tracker, STUN $stun"

mkdir -p "$work/alice" "$work/bob"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$work/demo.bin"
common=(--tracker "$tracker" --stun "$stun" --listen 127.0.0.1:0)

echo "== alice shares demo.bin (${size_mib} MiB) and keeps serving it"
"$bin/peer" "${common[@]}" --dir "$work/alice" share "$work/demo.bin" >"$work/alice.out" 2>"$work/alice.log" &
pids+=($!)
echo "   alice serves on $(wait_line "$work/alice.out" "peer listening on ")"
wait_line "$work/alice.out" "shared " >/dev/null

echo "== the tracker's catalogue (peer list, flag 6)"
"$bin/peer" "${common[@]}" --dir "$work/bob" list

echo "== bob downloads demo.bin (peer get, flags 1 and 3)"
"$bin/peer" "${common[@]}" --dir "$work/bob" get demo.bin 2>"$work/bob.log"

echo "== SHA-256 of the original and of bob's copy"
( cd "$work" && sha256sum demo.bin bob/demo.bin )
if cmp -s "$work/demo.bin" "$work/bob/demo.bin"; then
    echo "   identical"
else
    echo "demo: the copies differ" >&2
    exit 1
fi

echo "== bob's files (peer status)"
"$bin/peer" "${common[@]}" --dir "$work/bob" status

echo "== alice leaves the swarm (peer exit: her peer sends flag 5 and stops)"
"$bin/peer" "${common[@]}" --dir "$work/alice" exit
echo "== alice's upload statistics, printed as she left"
sed -n '/^CURRENT SESSION/,$p' "$work/alice.out"
echo "== the tracker now: bob left when his download ended, alice just now (peer list)"
"$bin/peer" "${common[@]}" --dir "$work/bob" list
echo "== done"
