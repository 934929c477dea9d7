#!/usr/bin/env bash
# The shared body of the lab benchmarks: build the rustbalance binary and one testbed
# example (release, in target-fbench unless CARGO_TARGET_DIR says otherwise), print the
# machine, run the example with --bin pointing at that binary and the caller's arguments.
#
#   bench/lab_example.sh EXAMPLE [ARGS...]      (bench/failover.sh, faults.sh, ... call it)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
example="$1"
shift
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-fbench}"
echo "== building (release)" >&2
cargo build --release -q -p rustbalance --bin rustbalance
cargo build --release -q -p rustbalance-testbed --example "$example"
echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(tor --version | head -1), onionbalance $(dpkg-query -W -f='${Version}' onionbalance 2>/dev/null || echo none), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec "$CARGO_TARGET_DIR/release/examples/$example" --bin "$CARGO_TARGET_DIR/release/rustbalance" "$@"
