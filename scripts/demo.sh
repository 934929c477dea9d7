#!/usr/bin/env bash
# The main job (README.md): a private Tor network on this machine, two
# onion-service instances behind one master address merged and published
# by RustBalance, and a real tor client reaching the master address.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v tor >/dev/null || ! command -v tor-gencert >/dev/null; then
  echo "== installing tor"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends tor >/dev/null
fi
cargo build --release --locked -p rustbalance
exec ./target/release/rustbalance lab demo "$@"
