#!/usr/bin/env bash
# Issue 16 figures: a legitimate client during an introduction flood, against plain tor
# (one tor, its own PoW), a RustBalance cluster of two nodes and Onionbalance with two
# backends, side by side in one private Tor lab (host loopback) under the same flood.
# See docs/BENCHMARKS.md "A legitimate client under a flood".
#
#   bench/flood.sh [--relays R] [--rate N] [--queue-rate Q] [--secs S]
#                  [--flood-clients K] [--work DIR] [--json FILE]
#
# Defaults: 12 relays; 4 introductions a second at each service from 3 flood client
# tors; every tor's PoW queue dispatches 1 a second; 420 s (tor changes its suggested
# effort every 300 s). About 10 minutes: run it in the background with a pid file, e.g.
#   nohup bench/flood.sh --json /tmp/flood.json >/tmp/flood.out 2>&1 &
#   echo $! >/tmp/flood.pid
# Needs: cargo, tor (0.4.8+ with PoW), tor-gencert, onionbalance.
exec "$(dirname "$0")/lab_example.sh" flood "$@"
