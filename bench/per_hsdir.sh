#!/usr/bin/env bash
# Issue 16 item 2 figures: one node of eight SIGKILLed under a client loop on fresh
# circuits, with per-HSDir descriptors and then with one merged descriptor, in the same
# private Tor lab (host loopback, 20 relays). See docs/BENCHMARKS.md "Per-HSDir
# descriptors".
#
#   bench/per_hsdir.sh [--relays R] [--nodes N] [--concurrency C] [--before S]
#                      [--tail S] [--work DIR] [--json FILE]
#
# Defaults: 20 relays, 8 nodes, 2 GETs at a time, 30 s before the kill, 30 s after the
# publication without the dead node. About 15 minutes: run it in the background with a
# pid file, e.g.
#   nohup bench/per_hsdir.sh --json /tmp/per_hsdir.json >/tmp/per_hsdir.out 2>&1 &
#   echo $! >/tmp/per_hsdir.pid
# Needs: cargo, tor (0.4.8+), tor-gencert.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-fbench}"
echo "== building (release)" >&2
cargo build --release -q -p rustbalance --bin rustbalance
cargo build --release -q -p rustbalance-testbed --example per_hsdir
echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(tor --version | head -1), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec "$CARGO_TARGET_DIR/release/examples/per_hsdir" --bin "$CARGO_TARGET_DIR/release/rustbalance" "$@"
