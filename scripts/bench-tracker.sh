#!/usr/bin/env bash
# Tracker benchmarks (release build), printing figures:
#   store   - store memory: 1,000 peers x 524,288 chunks of one file; a 10,000-file catalogue paged
#   handler - request handler cost per flag, without sockets
#   load    - a null responder (the tracker's sockets and batching, a fixed answer, no store),
#             then the tracker binary with its in-memory store, then the null responder with
#             answers padded to the tracker's mean length per flag, then the tracker with
#             --store redis:// on a redis-server it starts (skipped, saying so, without
#             redis-server), on loopback under mixed flags 1/3/6: requests/s, p50/p99 at half
#             load, mean answer size, CPU per request, RSS, and each tracker's ratio to both
#             null responders in the same run; pinned (1 worker
#             and redis-server on CPU 0, generator on CPU 1) and unpinned, then the heavy
#             scenario (1000-peer swarms, full pages)
# Environment knobs of the load benchmark: LOAD_SECS, LOAD_CLIENTS, LOAD_WINDOW, LOAD_RATE,
# LOAD_WORKERS, LOAD_PIN (see tracker/server/benches/load.rs). Results depend on what else the
# machine runs: repeat, and compare ratios from one run.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench -p tracker --bench store
cargo bench -p tracker --bench handler
LOAD_PIN=1 cargo bench -p tracker --bench load
cargo bench -p tracker --bench load
LOAD_SCENARIO=heavy cargo bench -p tracker --bench load
