#!/usr/bin/env bash
# Issue 3 figures: private-lab cold start until usable (median of N runs),
# and how long a master address takes to answer — RustBalance (from the
# moment the instance descriptors exist) against Onionbalance 0.2.2 (from its
# start), in the same lab of each run. See docs/BENCHMARKS.md.
#
#   bench/lab_startup.sh [--runs N] [--instances K] [--work DIR] [--json FILE]
#
# Defaults: 3 runs, 2 instances per side, a temporary work directory.
# Needs: cargo, tor (0.4.8+), tor-gencert, Debian's onionbalance package.
# Every process is started with a pid file and stopped by that pid; every
# address is on 127.0.0.0/8.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-fbench}"

echo "== building (release)" >&2
cargo build --release -q -p rustbalance-testbed --example lab_startup
echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(tor --version | head -1), onionbalance $(dpkg-query -W -f='${Version}' onionbalance 2>/dev/null), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec "$CARGO_TARGET_DIR/release/examples/lab_startup" "$@"
