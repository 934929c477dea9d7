#!/usr/bin/env bash
# Test of the Debian package (run by scripts/test.sh after the lab tests; needs
# root and dpkg): packages the debug binary the test build already made
# (scripts/package.sh with PROFILE=dev NO_BUILD=1: seconds, no release build),
# installs it, runs `rustbalance --version`, checks the man pages, completions
# and unit it installs, removes it, purges it, and removes what its postinst
# created (the user and the directories that purge keeps on purpose), leaving
# the machine as it found it. Refuses to run where a RustBalance install exists.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "test-package: FAIL: $*" >&2
  exit 1
}
ok() { echo "test-package: ok: $*"; }

[ "$(id -u)" = 0 ] || fail "run as root (dpkg)"
if dpkg-query -W -f='${Status}' rustbalance 2>/dev/null | grep -q installed; then
  fail "the rustbalance package is installed here; this test would remove it"
fi
for p in /etc/rustbalance /var/lib/rustbalance /usr/bin/rustbalance; do
  [ ! -e "$p" ] || fail "$p exists: this machine has a RustBalance install"
done
if getent passwd rustbalance >/dev/null || getent group rustbalance >/dev/null; then
  fail "a rustbalance user or group exists: this machine has a RustBalance install"
fi
command -v tor >/dev/null || fail "the package depends on tor: install it first"

cleanup() {
  dpkg --purge rustbalance >/dev/null 2>&1 || true
  getent passwd rustbalance >/dev/null && userdel rustbalance
  getent group rustbalance >/dev/null && groupdel rustbalance
  rm -rf /etc/rustbalance /var/lib/rustbalance
}
trap cleanup EXIT

t0=$SECONDS
PROFILE=${PROFILE:-dev} NO_BUILD=${NO_BUILD-1} DEB_FAST=1 bash scripts/package.sh
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
deb=$(ls "$target"/debian/rustbalance_*.deb)
(cd "$target/debian" && sha256sum -c --ignore-missing SHA256SUMS >/dev/null) || fail "SHA256SUMS does not match $deb"
ok "built $(basename "$deb") in $((SECONDS - t0)) s"

dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb"
version=$(/usr/bin/rustbalance --version) || fail "rustbalance --version"
[[ "$version" == "rustbalance "* ]] || fail "unexpected --version output: $version"
ok "installed: $version"
for f in /usr/share/man/man1/rustbalance.1 /usr/share/man/man1/rustbalance-doctor.1 \
  /usr/share/bash-completion/completions/rustbalance \
  /usr/share/zsh/vendor-completions/_rustbalance \
  /usr/share/fish/vendor_completions.d/rustbalance.fish \
  /lib/systemd/system/rustbalance.service \
  /usr/share/rustbalance/monitoring/alerts.yml; do
  [ -e "$f" ] || [ -e "$f.gz" ] || fail "the package did not install $f"
done
ok "man pages, completions, unit and monitoring files installed"
getent passwd rustbalance >/dev/null || fail "postinst did not create the rustbalance user"

dpkg --remove rustbalance >/dev/null || fail "dpkg --remove"
[ ! -e /usr/bin/rustbalance ] || fail "/usr/bin/rustbalance left after remove"
dpkg --purge rustbalance >/dev/null || fail "dpkg --purge"
if dpkg-query -W rustbalance >/dev/null 2>&1; then fail "dpkg still knows rustbalance after purge"; fi
ok "removed and purged (keys in /etc/rustbalance and /var/lib/rustbalance are kept by design; this test deletes them)"
