#!/usr/bin/env bash
# The main job (README.md): a private Tor network on this machine, two
# onion-service instances behind one master address merged and published
# by RustBalance, and a real tor client reaching the master address.
#
# The binary is built with the `demo` profile (Cargo.toml): the demo waits on
# tor's voting cycle, not on the CPU, so unoptimised code (as the lab tests
# run it) serves it as well as a release build and compiles in less time.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v tor >/dev/null || ! command -v tor-gencert >/dev/null; then
  echo "== installing tor"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends tor >/dev/null
fi
bin=target/demo/rustbalance
if [ -n "${CARGO_TARGET_DIR:-}" ]; then bin=$CARGO_TARGET_DIR/demo/rustbalance; fi
if [ ! -x "$bin" ]; then
  echo "== first run: compiling RustBalance and its ~370 crates: about 270 s of CPU, so"
  echo "   several minutes (more on a busy or single-core machine), once. The lab itself"
  echo "   then takes 3-4 minutes."
  echo "   Progress: one 'Compiling' line per crate below (a progress bar on a terminal)."
fi
t0=$SECONDS
cargo build --profile demo --locked -p rustbalance
echo "== built $bin in $((SECONDS - t0)) s"
exec "$bin" lab demo "$@"
