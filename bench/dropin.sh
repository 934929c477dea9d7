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
exec "$(dirname "$0")/lab_example.sh" dropin "$@"
