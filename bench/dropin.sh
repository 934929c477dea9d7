#!/usr/bin/env bash
# Issue 17 figures: two publisher-only RustBalance nodes against Onionbalance 0.2.2 on
# the same three backends (instances of two master keys at once), in one private Tor
# lab, at the same time: start → master answers, backend death → its intro points
# gone, publisher death → next publication, and a client loop on each master
# throughout. See docs/BENCHMARKS.md "Fetch-mode backends".
#
#   bench/dropin.sh [--concurrency C] [--ob-cap SECONDS] [--work DIR] [--json FILE]
#
# Defaults: 2 GETs at a time per master, Onionbalance's drop capped at 720 s (it can
# take the whole cap: run it in the background with a pid file).
# Needs: cargo, tor (0.4.8+), tor-gencert, Debian's onionbalance package.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-fbench}"
echo "== building (release)" >&2
cargo build --release -q -p rustbalance --bin rustbalance
cargo build --release -q -p rustbalance-testbed --example dropin
echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(tor --version | head -1), onionbalance $(dpkg-query -W -f='${Version}' onionbalance 2>/dev/null), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec "$CARGO_TARGET_DIR/release/examples/dropin" --bin "$CARGO_TARGET_DIR/release/rustbalance" "$@"
