#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) and prints, per target, the executions,
# executions per second, corpus size and crashes (files under fuzz/artifacts/<target>/).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     (default: every target)
#
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`). The corpus grows in place
# (fuzz/corpus/<target>/; only the seed-* files are committed). Targets run one after the
# other, one process each; set JOBS=2 to run two at a time.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
jobs="${JOBS:-1}"
targets="${*:-$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^rustbalance-fuzz$')}"
logs="$(mktemp -d)"

cargo +nightly fuzz build --debug-assertions >"$logs/build.log" 2>&1 || {
    tail -30 "$logs/build.log"
    exit 1
}

run_one() {
    local t="$1"
    mkdir -p "corpus/$t" "artifacts/$t"
    # -rss_limit_mb: an input that makes a parser allocate 2 GB is a finding (OOM).
    cargo +nightly fuzz run --debug-assertions "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$logs/$t.log" 2>&1 || true
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

printf '%-15s %12s %9s %8s %8s\n' target execs exec/s corpus crashes
for t in $targets; do
    log="$logs/$t.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "corpus/$t" -type f | wc -l)
    crashes=$(find "artifacts/$t" -type f | wc -l)
    printf '%-15s %12s %9s %8s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$crashes"
done
echo "logs: $logs"
