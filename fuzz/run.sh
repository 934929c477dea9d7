#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) and prints, per target, the executions,
# executions per second, corpus size and crashes (files under fuzz/artifacts/<target>/).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     (default: every target)
#
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`). The corpus grows in place
# (fuzz/corpus/<target>/; only the seed-* files are committed). Targets run one after the
# other, one process each; set JOBS=2 to run two at a time. RUNS=N also stops a target
# after N executions (issue 14: 10 minutes or 10 million, whichever comes first).
# SANITIZER (default none): every crate of ours forbids unsafe code, so AddressSanitizer
# mostly costs speed; panics, overflows (debug assertions) and timeouts are what we find.
# SANITIZER=address runs it anyway. LOGS=DIR keeps the logs there. BUILD=0 skips the
# build and runs the binaries already built (the same libFuzzer flags): cargo would
# otherwise rebuild at each target whenever a workspace source changed meanwhile.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
jobs="${JOBS:-1}"
sanitizer="${SANITIZER:-none}"
runs=()
[ -n "${RUNS:-}" ] && runs=(-runs="$RUNS")
targets="${*:-$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^rustbalance-fuzz$')}"
logs="${LOGS:-$(mktemp -d)}"
mkdir -p "$logs"

if [ "${BUILD:-1}" != 0 ]; then
    cargo +nightly fuzz build -s "$sanitizer" --debug-assertions >"$logs/build.log" 2>&1 || {
        tail -30 "$logs/build.log"
        exit 1
    }
fi
bin="target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

run_one() {
    local t="$1"
    mkdir -p "corpus/$t" "artifacts/$t"
    # -rss_limit_mb: an input that makes a parser allocate 2 GB is a finding (OOM).
    local flags=(-max_total_time="$seconds" "${runs[@]}" -rss_limit_mb=2048 -timeout=10
        -print_final_stats=1)
    if [ "${BUILD:-1}" = 0 ]; then
        "$bin/$t" -artifact_prefix="artifacts/$t/" "${flags[@]}" "corpus/$t" \
            >"$logs/$t.log" 2>&1 || true
    else
        cargo +nightly fuzz run -s "$sanitizer" --debug-assertions "$t" "corpus/$t" -- \
            "${flags[@]}" >"$logs/$t.log" 2>&1 || true
    fi
}

running=0
for t in $targets; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

printf '%-15s %12s %9s %8s %8s %8s\n' target execs exec/s seconds corpus crashes
for t in $targets; do
    log="$logs/$t.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    corpus=$(find "corpus/$t" -type f | wc -l)
    crashes=$(find "artifacts/$t" -type f | wc -l)
    printf '%-15s %12s %9s %8s %8s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "${secs:-?}" "$corpus" "$crashes"
done
echo "logs: $logs"
