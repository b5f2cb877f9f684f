#!/usr/bin/env bash
# Tracker benchmarks (release build), printing figures:
#   store   - store memory: 1,000 peers x 524,288 chunks of one file; a 10,000-file catalogue paged
#   handler - request handler cost per flag, without sockets
#   load    - the tracker binary on loopback under mixed flags 1/3/6: requests/s, p50/p99, RSS
#             (default scenario, then the heavy one with 1000-peer swarms and full pages)
# Environment knobs of the load benchmark: LOAD_SECS, LOAD_CLIENTS, LOAD_WINDOW, LOAD_RATE,
# LOAD_WORKERS (see tracker/server/benches/load.rs). Results depend on what else the machine runs.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench -p tracker --bench store
cargo bench -p tracker --bench handler
cargo bench -p tracker --bench load
LOAD_SCENARIO=heavy cargo bench -p tracker --bench load
