#!/usr/bin/env bash
# Issue 2 benchmark: master-descriptor merge+build, RustBalance against the
# raw cryptographic cost and against Onionbalance 0.2.2, on the same
# fixtures, in one run. See docs/BENCHMARKS.md.
#
#   bench/descriptor.sh [--iters N]     (N: Onionbalance iterations, default 20)
#
# Needs: cargo, and Debian's onionbalance package for /usr/bin/python3.
set -euo pipefail

ITERS=20
if [[ "${1:-}" == "--iters" ]]; then ITERS="$2"; fi

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-bench}"
PY=/usr/bin/python3

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
FIX="$WORK/fixtures"
mkdir -p "$FIX"

echo "== building (release)" >&2
cargo build --release -q -p rustbalance-hs --example bench_fixtures --bench merge
cargo run --release -q -p rustbalance-hs --example bench_fixtures -- "$FIX" >&2

echo "== RustBalance (criterion)" >&2
rm -rf "$CARGO_TARGET_DIR/criterion"
RUSTBALANCE_BENCH_FIXTURES="$FIX" cargo bench -q -p rustbalance-hs --bench merge >&2

echo "== Onionbalance ($ITERS iterations per figure)" >&2
# Its logger writes DEBUG lines to stderr; keep them out of the way.
$PY bench/onionbalance_build.py "$FIX" --iters "$ITERS" --json >"$WORK/ob.json" 2>"$WORK/ob.log" \
  || { cat "$WORK/ob.log" >&2; exit 1; }

echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
$PY - "$CARGO_TARGET_DIR/criterion" "$WORK/ob.json" <<'EOF'
import json, os, sys

crit, ob = sys.argv[1], json.load(open(sys.argv[2]))

def ours(stat, group, n=None):
    """Criterion's median, or its fastest sample, in microseconds per iteration."""
    d = os.path.join(crit, group, *([str(n)] if n is not None else []), "new")
    if stat == "median_us":
        return json.load(open(os.path.join(d, "estimates.json")))["median"]["point_estimate"] / 1000
    s = json.load(open(os.path.join(d, "sample.json")))
    return min(t / i for t, i in zip(s["times"], s["iters"])) / 1000

for stat, title in (("median_us", "median"), ("min_us", "minimum (least disturbed)")):
    ope = ours(stat, "revision counter (OPE)")
    print("\n%s, microseconds per master descriptor; our revision counter (OPE) alone: %.0f us"
          % (title, ope))
    print("%4s %6s %8s %8s %12s %8s %8s | %10s %10s %8s | %9s %9s %7s"
          % ("inst", "intros", "ours", "raw", "Onionbalance", "OB/ours", "ours/raw",
             "ours+parse", "OB+parse", "OB/ours", "OB-rev", "ours-OPE", "ratio"))
    for r in ob:
        n = r["instances"]
        mb, pmb, raw = (ours(stat, g, n) for g in ("merge+build", "parse+merge+build", "raw crypto"))
        obb, obp, obx = (r[k][stat] for k in ("build", "parse+build", "build-rev"))
        print("%4d %6d %8.0f %8.0f %12.0f %7.0fx %7.2fx | %10.0f %10.0f %7.0fx | %9.0f %9.0f %6.1fx"
              % (n, r["intro_points"], mb, raw, obb, obb / mb, mb / raw,
                 pmb, obp, obp / pmb, obx, mb - ope, obx / (mb - ope)))
print("\ntargets: Onionbalance/ours >= 100x; ours/raw <= 3x")
EOF
