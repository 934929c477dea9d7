#!/usr/bin/env bash
# Issue 5 figures: failover of a 3-node RustBalance cluster (publisher and
# non-publisher SIGKILLed) against Onionbalance 0.2.2 with 3 instances (one
# instance's tor SIGKILLed), in one private Tor lab, in one run, with the
# client success rate right after each kill. See docs/BENCHMARKS.md.
#
#   bench/failover.sh [--requests N] [--concurrency C] [--ob-cap SECONDS]
#                     [--work DIR] [--json FILE] [--no-onionbalance]
#
# Defaults: 200 requests, 4 at a time, Onionbalance wait capped at 720 s.
# The Onionbalance part can take the whole cap (~12 min); run it in the
# background, e.g.
#   nohup bench/failover.sh --json /tmp/failover.json >/tmp/failover.out 2>&1 &
#   echo $! >/tmp/failover.pid
# Needs: cargo, tor (0.4.8+), tor-gencert, Debian's onionbalance package.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-fbench}"

echo "== building (release)" >&2
cargo build --release -q -p rustbalance --bin rustbalance
cargo build --release -q -p rustbalance-testbed --example failover
echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(tor --version | head -1), onionbalance $(dpkg-query -W -f='${Version}' onionbalance 2>/dev/null), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec "$CARGO_TARGET_DIR/release/examples/failover" --bin "$CARGO_TARGET_DIR/release/rustbalance" "$@"
