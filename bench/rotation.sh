#!/usr/bin/env bash
# Service continuity across tor's descriptor rotation (period start and SRV) in the lab:
# a 3-node cluster, one GET every 2 s for 12 minutes through one client that keeps its
# cached master descriptor. Runs twice: with RustBalance as built, then with the nodes
# advertising tor's *current* descriptor after a period starts (the behaviour before the
# fix; RUSTBALANCE_DIAG_CURRENT_DESC_ONLY=1). See docs/BENCHMARKS.md.
#
#   bench/rotation.sh [--duration SECONDS]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-fbench}"
cargo build --release -q -p rustbalance --bin rustbalance --example rotation
BIN="$CARGO_TARGET_DIR/release/rustbalance"
echo "== with the fix" >&2
"$CARGO_TARGET_DIR/release/examples/rotation" --bin "$BIN" "$@"
echo "== without it (current descriptor only)" >&2
RUSTBALANCE_DIAG_CURRENT_DESC_ONLY=1 "$CARGO_TARGET_DIR/release/examples/rotation" --bin "$BIN" "$@"
