#!/usr/bin/env bash
# Issue 16 item 3 figures: introductions per second one node completes with one tor and
# with two (`[tor] instances`), and the CPU per request, under a flood of fresh-circuit
# requests from lab client tors, in the same private Tor lab (host loopback). See
# docs/BENCHMARKS.md "Turbo mode".
#
#   bench/turbo.sh [--relays R] [--clients C] [--rate N] [--secs S] [--in-flight F]
#                  [--work DIR] [--json FILE]
#
# Defaults: 12 relays, 4 flood clients, 40 requests/s for 60 s, 40 in flight. About 8
# minutes: run it in the background with a pid file, e.g.
#   nohup bench/turbo.sh --json /tmp/turbo.json >/tmp/turbo.out 2>&1 &
#   echo $! >/tmp/turbo.pid
# Needs: cargo, tor (0.4.8+), tor-gencert.
exec "$(dirname "$0")/lab_example.sh" turbo "$@"
