#!/usr/bin/env bash
# The test command (README.md): installs what the tests need on a fresh
# Debian machine, then runs fmt, clippy and every test, real tor included.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v tor >/dev/null || need+=(tor)
command -v tor-gencert >/dev/null || need+=(tor)
/usr/bin/python3 -c 'import stem, cryptography' 2>/dev/null || need+=(python3-stem python3-cryptography)
command -v onionbalance >/dev/null || need+=(onionbalance)
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null || need+=(iproute2)
# libfaketime: a node's clock ten minutes off (lab_loopback `a_skewed_node_does_not_publish`).
command -v faketime >/dev/null || need+=(faketime)
# headless Chromium for the status page (lab_loopback `status_page`).
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's tor package may start a system tor; the tests never use it.
# promtool (test `monitoring`) from Debian's prometheus package, unpacked and not
# installed: installing it would start a Prometheus server listening on every
# interface. About 5 s (a 19 MB download), once per target directory.
if ! command -v promtool >/dev/null; then
  tools="$(realpath -m "${CARGO_TARGET_DIR:-target}")/tools"
  if [ ! -x "$tools/usr/bin/promtool" ]; then
    echo "== unpacking promtool (Debian prometheus) into $tools"
    mkdir -p "$tools"
    (cd "$tools" && { apt-get download prometheus >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get download prometheus >/dev/null; }; } &&
      dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb)
  fi
  export PATH="$PATH:$tools/usr/bin"
fi

# Incremental compilation only helps repeated local builds; in a one-shot run
# it adds over a gigabyte to the target directory (1.3 GB measured).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
avail_kb=$(df -Pk . | awk 'NR==2 {print $4}')
echo "== disk: $((avail_kb / 1024)) MiB free here (a clean build needs about 2 GiB)"
if [ "$avail_kb" -lt $((2 * 1024 * 1024)) ]; then
  echo "warning: less than 2 GiB free; the build may fail with 'No space left on device'" >&2
fi

# Stages, each timed: fmt; clippy and the build of every test target in ONE
# compile (clippy-driver as the workspace's rustc wrapper lints while it
# builds, as `cargo clippy` does for a check build, so the workspace is not
# compiled twice); the unit and tool-free tests; then the lab tests (real
# tor networks), in two lanes side by side.
STAGES=()
stage() { # NAME COMMAND...
  local name="$1" t0=$SECONDS
  shift
  echo "== $name: $*"
  "$@"
  STAGES+=("$(printf '%-34s %5d s' "$name" $((SECONDS - t0)))")
}
report() {
  echo "== stage times"
  printf '   %s\n' "${STAGES[@]}"
}
trap report EXIT

# The lab tests: private Tor networks (crates/testbed/README.md). Each
# binary boots at most one loopback and one namespaced lab.
LAB_TESTS=(real_tor namespaces netns crosscheck tor_caps node_process lab_loopback lab_netns)
# Every other integration test target (no tor, no root).
UNIT_TESTS=(election_scenarios hostile_input hostile_member membership_scenarios kat roundtrip join
  intercept proxy abuse cli_init cli_onionbalance cli_client_auth
  election_safety model # the election branch's harness test and model checker (model: ~45 s debug)
  monitoring) # monitoring needs promtool (installed above), no tor
# The fuzz smoke test: the committed seed corpus of every fuzz target (fuzz/corpus)
# through the same checks the libFuzzer targets run (crates/fuzzing), on stable. It is a
# workspace test so that it shares the build stage; the long fuzz runs (fuzz/run.sh,
# nightly) are not part of this script.
FUZZ_TESTS=(fuzz_corpus)
# A test target in no list would never run: refuse.
listed=" ${LAB_TESTS[*]} ${UNIT_TESTS[*]} ${FUZZ_TESTS[*]} "
for f in crates/*/tests/*.rs; do
  if [[ "$listed" != *" $(basename "$f" .rs) "* ]]; then
    echo "scripts/test.sh: test target $f is in no list (LAB_TESTS, UNIT_TESTS or FUZZ_TESTS)" >&2
    exit 1
  fi
done
# Always --workspace: the same feature set as the build stage, so nothing
# is compiled again (`-p CRATE` alone would resolve other features).
UNIT_ARGS=()
for t in "${UNIT_TESTS[@]}"; do UNIT_ARGS+=(--test "$t"); done

export RUSTC_WORKSPACE_WRAPPER="${RUSTC_WORKSPACE_WRAPPER:-$(command -v clippy-driver)}"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
stage "cargo fmt --check" cargo fmt --all -- --check
stage "clippy -D warnings + test build" cargo test --workspace --all-targets --locked --no-run
stage "unit tests (lib, bins)" cargo test --workspace --locked --lib --bins -- --test-threads="${TEST_THREADS:-2}"
FUZZ_ARGS=()
for t in "${FUZZ_TESTS[@]}"; do FUZZ_ARGS+=(--test "$t"); done
stage "fuzz smoke (seed corpus, stable)" cargo test --workspace --locked "${FUZZ_ARGS[@]}" -- --test-threads="${TEST_THREADS:-2}"
stage "tool-free integration tests" cargo test --workspace --locked "${UNIT_ARGS[@]}" -- --test-threads="${TEST_THREADS:-2}"
stage "doc tests" cargo test --workspace --locked --doc
# The lab tests run in four lanes side by side: they spend most of their time
# waiting on tor (publication, bootstrap, failure detection), every lab owns
# its own 127.B.C.0/24 and namespaces, and the suite took 800 s of wall time at
# under 50 % CPU one binary at a time. The loopback lab's scenarios are split
# over lanes A and C (`--shard 1/2` and `2/2`, each on a lab of its own: every
# scenario runs exactly once, rustbalance_testbed::suite); lanes B and D split the
# namespaced lab the same way, and the small binaries go where the lanes come out
# even (one run, 2026-12-06: loopback shards ~320 s each with the lab's start,
# namespaced shards ~250 s, real_tor 57 s, namespaces 32 s, the rest 7 s).
# Each lane's output goes to a log shown when the lane ends.
LANE_A=(lab_loopback@1/2)
# The loopback scenarios with many intro points run alone after the lanes, on one lab
# of 16 relays (stage "lab tail"). The eight-node one and four nodes of two tors are the
# heaviest (sixteen processes): beside three other labs on two cores the eight-node one
# once took over 420 s to start (CI of ab0c885) while it starts in 10-45 s alone, even
# beside two CPU hogs. The Onionbalance-backends one lists 12 points of four groups: on
# the default lab's 9 relays all three of one backend's points once sat on relays other
# groups' points took (a descriptor lists one point per relay), so that backend was in
# no descriptor (CI run of 5fd662c under two CPU hogs). Those collisions were mostly the
# lab's uneven consensus weights (half the relays weighed 0); the lab now gives every relay
# the same weight (crates/lab/README.md), and the tail stays for the load it takes off the
# lanes.
TAIL=(eight_nodes_per_hsdir_descriptors four_nodes_of_two_tors
  publisher_only_cluster_for_onionbalance_backends)

LANE_B=(lab_netns@1/2 real_tor)
LANE_C=(lab_loopback@2/2 netns crosscheck tor_caps node_process)
LANE_D=(lab_netns@2/2 namespaces)
in_lanes=" ${LANE_A[*]%%@*} ${LANE_B[*]%%@*} ${LANE_C[*]%%@*} ${LANE_D[*]%%@*} "
for t in "${LAB_TESTS[@]}"; do
  if [[ "$in_lanes" != *" $t "* ]]; then
    echo "scripts/test.sh: lab test $t is in no lane (LANE_A to LANE_D)" >&2
    exit 1
  fi
done
lab_lane() { # LOG TEST[@K/N]...
  local log="$1" item t shard s
  shift
  for item in "$@"; do
    t="${item%%@*}"
    shard=()
    [ "$item" = "$t" ] || shard=(--shard "${item#*@}")
    local tl
    if [ "$t" = lab_loopback ]; then
      for tl in "${TAIL[@]}"; do shard+=(--skip "$tl"); done
    fi
    s=$SECONDS
    echo "== lab: $item: cargo test --workspace --locked --test $t -- --test-threads=1 ${shard[*]}"
    if ! cargo test --workspace --locked --test "$t" -- --test-threads=1 "${shard[@]}"; then
      echo "== lab: $item FAILED after $((SECONDS - s)) s"
      return 1
    fi
    echo "== lab time: $item $((SECONDS - s))"
  done >"$log" 2>&1
}
# Beside the lab lanes, the install tests: install.sh (deploy/install.sh, as root: a
# system user, /etc/rustbalance, a systemd unit) and the Debian package of the debug
# binary built above (no release build here: scripts/package.sh builds release packages;
# cargo-deb is installed first if missing, `cargo install --locked cargo-deb`, once per
# machine). Both touch only system paths no lab test uses; they run one after the other
# (both create and delete the rustbalance user).
install_lane() { # LOG
  local log="$1" s=$SECONDS
  {
    bash deploy/test-install.sh || { echo "== install: install.sh FAILED"; return 1; }
    echo "== lab time: install.sh $((SECONDS - s))"
    s=$SECONDS
    bash deploy/test-package.sh || { echo "== install: debian package FAILED"; return 1; }
    echo "== lab time: debian-package $((SECONDS - s))"
  } >"$log" 2>&1
}
lab_lanes() {
  local dir rc_a=0 rc_b=0 rc_c=0 rc_d=0 rc_e=0 t0=$SECONDS
  dir=$(mktemp -d)
  echo "== lab tests, four lanes: A = ${LANE_A[*]}; B = ${LANE_B[*]}; C = ${LANE_C[*]}; D = ${LANE_D[*]}; and lane E: install.sh and the Debian package (logs follow as each lane ends)"
  lab_lane "$dir/a.log" "${LANE_A[@]}" &
  local pid_a=$!
  lab_lane "$dir/c.log" "${LANE_C[@]}" &
  local pid_c=$!
  lab_lane "$dir/d.log" "${LANE_D[@]}" &
  local pid_d=$!
  install_lane "$dir/e.log" &
  local pid_e=$!
  lab_lane "$dir/b.log" "${LANE_B[@]}" || rc_b=$?
  echo "== lane B log"; cat "$dir/b.log"
  wait "$pid_a" || rc_a=$?
  echo "== lane A log"; cat "$dir/a.log"
  wait "$pid_c" || rc_c=$?
  echo "== lane C log"; cat "$dir/c.log"
  wait "$pid_d" || rc_d=$?
  echo "== lane D log"; cat "$dir/d.log"
  wait "$pid_e" || rc_e=$?
  echo "== lane E log"; cat "$dir/e.log"
  for lane in a b c d e; do
    while read -r _ _ _ t secs; do
      STAGES+=("$(printf '%-34s %5d s' "  lab: $t (lane ${lane^^})" "$secs")")
    done < <(grep '^== lab time: ' "$dir/$lane.log")
  done
  rm -rf "$dir"
  echo "== lab tests: lane A rc=$rc_a, lane B rc=$rc_b, lane C rc=$rc_c, lane D rc=$rc_d, lane E (install) rc=$rc_e, $((SECONDS - t0)) s"
  [ "$rc_a" = 0 ] && [ "$rc_b" = 0 ] && [ "$rc_c" = 0 ] && [ "$rc_d" = 0 ] && [ "$rc_e" = 0 ]
}
stage "lab tests (four lanes) + install" lab_lanes
# 16 relays, not 6: their intro points would share 9 relays, and a descriptor lists one
# point per relay.
lab_tail() {
  echo "== lab tail: RB_LAB_RELAYS=16 cargo test --workspace --locked --test lab_loopback -- --test-threads=1 ${TAIL[*]}"
  RB_LAB_RELAYS=16 cargo test --workspace --locked --test lab_loopback -- --test-threads=1 "${TAIL[@]}"
}
stage "lab tail (alone)" lab_tail
