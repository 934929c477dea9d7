#!/usr/bin/env bash
# Gossip convergence and per-node gossip / WireGuard bandwidth of 3 real RustBalance nodes
# in the private Tor lab, each node in its own network namespace, gossiping over the
# WireGuard mesh. Needs root (network namespaces). See docs/BENCHMARKS.md.
#
#   bench/gossip_lab.sh [--window SECONDS]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-fbench}"
cargo build --release -q -p rustbalance --bin rustbalance
cargo build --release -q -p rustbalance-testbed --example gossip_lab
"$CARGO_TARGET_DIR/release/examples/gossip_lab" --bin "$CARGO_TARGET_DIR/release/rustbalance" "$@"
