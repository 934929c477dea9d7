#!/usr/bin/env bash
# Build the Debian package (docs/OPERATIONS.md, "Debian package"):
#   bash scripts/package.sh            # release build, then the .deb
# Output: $TARGET/debian/rustbalance_VERSION_ARCH.deb and SHA256SUMS beside it
# (the .deb and the binary inside it).
#
# PROFILE=dev NO_BUILD=1 packages the debug binary a test build already made
# (deploy/test-package.sh does, to test the package in seconds). Needs
# cargo-deb: installed with `cargo install --locked cargo-deb` if missing.
# Builds are reproducible from the same commit in any directory: file times
# come from the commit (SOURCE_DATE_EPOCH) and source paths are remapped.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
case "$profile" in dev | test) out_dir=debug ;; *) out_dir=$profile ;; esac
bin_dir="$target/$out_dir"

if ! command -v cargo-deb >/dev/null; then
  echo "== installing cargo-deb (cargo install --locked cargo-deb; a few minutes, once)"
  cargo install --locked cargo-deb
fi
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
if [ -z "${NO_BUILD:-}" ]; then
  # The remaps make the binary independent of where the clone and the cargo
  # home are (panic messages carry source paths).
  export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$PWD=/build/rustbalance --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
  cargo build --locked --profile "$profile" -p rustbalance
fi
[ -x "$bin_dir/rustbalance" ] || { echo "package.sh: no $bin_dir/rustbalance (build it first)" >&2; exit 1; }
rm -rf "$bin_dir/generated"
"$bin_dir/rustbalance" generate man "$bin_dir/generated/man"
"$bin_dir/rustbalance" generate completions "$bin_dir/generated/completions"
touch -d "@$SOURCE_DATE_EPOCH" "$bin_dir"/generated/*/*
rm -rf "$target/debian"
# DEB_FAST=1 (deploy/test-package.sh): faster, larger compression.
cargo deb -p rustbalance --no-build --profile "$profile" ${DEB_FAST:+--fast} --output "$target/debian/"
cd "$target/debian"
deb=$(ls ./*.deb)
sha256sum "$(basename "$deb")" >SHA256SUMS
(cd "$bin_dir" && sha256sum rustbalance) | sed 's|  rustbalance$|  usr/bin/rustbalance|' >>SHA256SUMS
echo "== $target/debian:"
cat SHA256SUMS
