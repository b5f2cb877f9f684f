#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests of every crate, then the NAT lab
# when this machine can build network namespaces (root + iproute2 + iptables).
set -euo pipefail
cd "$(dirname "$0")/.."

# Integration tests of one crate start the binaries of the others (peer tests start `tracker`),
# so every binary is built before any test runs.
cargo build --workspace --bins --locked
cargo test --workspace --locked
