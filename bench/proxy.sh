#!/usr/bin/env bash
# Proxy benchmark: wrk -> target directly, -> rustbalance-proxy (Tcp mode) ->
# target, -> HAProxy (mode tcp) -> target, in one run, interleaved.
# See docs/BENCHMARKS.md, section "Proxy".
#
#   bench/proxy.sh                      # defaults below
#   ROUNDS=5 DURATION=10s CONNS=64 THREADS=2 bench/proxy.sh
#
# THREADS: worker threads of our proxy and HAProxy's nbthread (the same for
# both). The target runs 1 thread. Needs: cargo, wrk, haproxy, python3.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
THREADS="${THREADS:-2}"
BUFFER="${BUFFER:-}"   # our copy buffer per direction (bytes); empty: the default

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-proxy}"
BIN="$CARGO_TARGET_DIR/release/examples"

WORK="$(mktemp -d)"
cleanup() {
  for f in "$WORK"/*.pid; do
    [[ -s "$f" ]] && kill "$(cat "$f")" 2>/dev/null || true
  done
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building (release)" >&2
cargo build --release -q -p rustbalance-proxy --example bench_proxy
cargo build --release -q -p rustbalance-testbed --example bench_target

wait_line() { # file -> the address after "listening "
  for _ in $(seq 100); do
    a="$(sed -n 's/^listening //p' "$1")"
    [[ -n "$a" ]] && { echo "$a"; return; }
    sleep 0.05
  done
  echo "no 'listening' line in $1" >&2; exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$BIN/bench_target" 127.0.0.1:0 1 >"$WORK/target.out" &
echo $! >"$WORK/target.pid"
TARGET="$(wait_line "$WORK/target.out")"

"$BIN/bench_proxy" "$TARGET" "$THREADS" 127.0.0.1:0 ${BUFFER:-} >"$WORK/proxy.out" 2>"$WORK/proxy.err" &
echo $! >"$WORK/proxy.pid"
PROXY="$(wait_line "$WORK/proxy.out")"
PROXY_PID="$(cat "$WORK/proxy.pid")"

HAPROXY_PORT="$(free_port)"
RB_THREADS="$THREADS" RB_HAPROXY_PORT="$HAPROXY_PORT" RB_TARGET_PORT="${TARGET##*:}" \
  haproxy -f bench/proxy/haproxy.cfg -D -p "$WORK/haproxy.pid"
for _ in $(seq 100); do [[ -s "$WORK/haproxy.pid" ]] && break; sleep 0.05; done
HAPROXY="127.0.0.1:$HAPROXY_PORT"
HAPROXY_PID="$(head -1 "$WORK/haproxy.pid")"

declare -A ADDR=([direct]="$TARGET" [ours]="$PROXY" [haproxy]="$HAPROXY")
declare -A PID=([ours]="$PROXY_PID" [haproxy]="$HAPROXY_PID")

rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

echo "== target $TARGET, ours $PROXY (pid $PROXY_PID), haproxy $HAPROXY (pid $HAPROXY_PID)" >&2
echo "== idle RSS: ours $(rss_kb "$PROXY_PID" VmRSS) kB, haproxy $(rss_kb "$HAPROXY_PID" VmRSS) kB" >&2
: >"$WORK/results"
for path in 1k 64k; do
  for name in direct ours haproxy; do # warm-up: connections, allocator, caches
    wrk -t"$WRK_THREADS" -c"$CONNS" -d2s "http://${ADDR[$name]}/$path" >/dev/null
  done
  for round in $(seq "$ROUNDS"); do
    for name in direct ours haproxy; do
      out="$WORK/wrk-$path-$name-$round"
      maxrss=0
      if [[ -n "${PID[$name]:-}" ]]; then
        ( m=0; while :; do r="$(rss_kb "${PID[$name]}" VmRSS)"; ((r > m)) && m=$r && echo "$m" >"$out.rss"; sleep 0.2; done ) &
        echo $! >"$WORK/sampler.pid"
      fi
      wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency "http://${ADDR[$name]}/$path" >"$out"
      if [[ -s "$WORK/sampler.pid" ]]; then kill "$(cat "$WORK/sampler.pid")"; : >"$WORK/sampler.pid"; maxrss="$(cat "$out.rss" 2>/dev/null || echo 0)"; fi
      echo "$path $name $round $maxrss $out" >>"$WORK/results"
      echo "   $path $name round $round: $(grep Requests/sec "$out")" >&2
    done
  done
done
HWM_OURS="$(rss_kb "$PROXY_PID" VmHWM)"
HWM_HAPROXY="$(rss_kb "$HAPROXY_PID" VmHWM)"

echo "== machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), shared by wrk, target and proxy; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== wrk -t$WRK_THREADS -c$CONNS -d$DURATION --latency, $ROUNDS rounds interleaved, proxy threads $THREADS, $(haproxy -v | head -1 | cut -d' ' -f1-3)"
python3 - "$WORK/results" "$HWM_OURS" "$HWM_HAPROXY" <<'PY'
import re, statistics, sys

def ms(t):
    v, u = re.fullmatch(r"([\d.]+)(us|ms|s)", t).groups()
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[u]

runs = {}
for line in open(sys.argv[1]):
    path, name, rnd, rss, f = line.split()
    text = open(f).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    errs = re.search(r"Socket errors: (.*)", text) or re.search(r"Non-2xx.*", text)
    runs.setdefault((path, name), []).append((rps, p50, p99, int(rss), errs.group(0) if errs else ""))

med = lambda xs: statistics.median(xs)
print("\n| body | path | req/s (median) | req/s per round | p50 ms | p99 ms | vs direct | vs HAProxy | p99 overhead ms | peak RSS under load |")
print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
for path in ("1k", "64k"):
    d = {n: runs[(path, n)] for n in ("direct", "ours", "haproxy")}
    r = {n: med([x[0] for x in v]) for n, v in d.items()}
    p50 = {n: med([x[1] for x in v]) for n, v in d.items()}
    p99 = {n: med([x[2] for x in v]) for n, v in d.items()}
    for n, label in (("direct", "wrk → target"), ("ours", "wrk → rustbalance-proxy → target"), ("haproxy", "wrk → HAProxy → target")):
        rss = max(x[3] for x in d[n])
        print("| %s | %s | %.0f | %s | %.3f | %.3f | %s | %s | %s | %s |" % (
            path, label, r[n], " / ".join("%.0f" % x[0] for x in d[n]), p50[n], p99[n],
            "—" if n == "direct" else "%.1f %%" % (100 * r[n] / r["direct"]),
            "%.1f %%" % (100 * r[n] / r["haproxy"]) if n == "ours" else "—",
            "—" if n == "direct" else "%+.3f" % (p99[n] - p99["direct"]),
            "%.1f MB" % (rss / 1024) if rss else "—"))
        for x in d[n]:
            if x[4]:
                print("|  | ↳ %s round: %s |" % (n, x[4]))
print("\nVmHWM at the end (whole run, warm-ups included): ours %.1f MB, HAProxy %.1f MB"
      % (int(sys.argv[2]) / 1024, int(sys.argv[3]) / 1024))
PY
