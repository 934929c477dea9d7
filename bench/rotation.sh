#!/usr/bin/env bash
# Service continuity across tor's descriptor rotation (period start and SRV) in the lab:
# a 3-node cluster, one GET every 2 s through one client that keeps its cached master
# descriptor. Runs twice: with RustBalance as built, then with the instance tors fetching
# each consensus on a client's schedule (FetchDirInfoEarly/ExtraEarly 0: the behaviour
# before they were turned on). See docs/BENCHMARKS.md "Descriptor rotation".
#
#   bench/rotation.sh [--duration SECONDS]     (default 1000: two period starts, two SRVs)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-fbench}"
cargo build --release -q -p rustbalance --bin rustbalance
cargo build --release -q -p rustbalance-testbed --example rotation
BIN="$CARGO_TARGET_DIR/release/rustbalance"
ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(--duration 1000)
echo "== as built" >&2
"$CARGO_TARGET_DIR/release/examples/rotation" --bin "$BIN" "${ARGS[@]}"
echo "== nodes' tors on the client consensus schedule" >&2
"$CARGO_TARGET_DIR/release/examples/rotation" --bin "$BIN" "${ARGS[@]}" \
    --tor-line "FetchDirInfoEarly 0" --tor-line "FetchDirInfoExtraEarly 0"
