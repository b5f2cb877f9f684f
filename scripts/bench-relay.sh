#!/usr/bin/env bash
# Relay benchmark: a 64 MiB file (BENCH_MIB) fetched in one run of the NAT lab from a seeder
# reached directly and from one behind a symmetric NAT, relayed through coturn's TCP relay
# (RFC 6062), on release binaries. Prints both times, MB/s and the ratio. Needs root and what
# scripts/nat-lab.sh needs.
#
#   scripts/bench-relay.sh
#   BENCH_MIB=256 BENCH_RUNS=5 scripts/bench-relay.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p peer -p tracker --bins
NAT_LAB_BIN="$CARGO_TARGET_DIR/release" exec scripts/nat-lab.sh bench
