#!/usr/bin/env bash
# Issue 16 item 2 figures: one node of eight SIGKILLed under a client loop on fresh
# circuits, with per-HSDir descriptors and then with one merged descriptor, in the same
# private Tor lab (host loopback, 20 relays). See docs/BENCHMARKS.md "Per-HSDir
# descriptors".
#
#   bench/per_hsdir.sh [--relays R] [--nodes N] [--concurrency C] [--before S]
#                      [--tail S] [--work DIR] [--json FILE]
#
# Defaults: 20 relays, 8 nodes, 2 GETs at a time, 30 s before the kill, 30 s after the
# publication without the dead node. About 15 minutes: run it in the background with a
# pid file, e.g.
#   nohup bench/per_hsdir.sh --json /tmp/per_hsdir.json >/tmp/per_hsdir.out 2>&1 &
#   echo $! >/tmp/per_hsdir.pid
# Needs: cargo, tor (0.4.8+), tor-gencert.
exec "$(dirname "$0")/lab_example.sh" per_hsdir "$@"
