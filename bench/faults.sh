#!/usr/bin/env bash
# Issue 15 figures: a client loop on fresh circuits across each fault (the publisher's
# tor SIGKILLed, a silent node, an HSDir restarted with an empty cache, the publisher
# cut off and healed, a frozen node) for a 3-node RustBalance cluster in a namespaced private Tor lab,
# then Onionbalance 0.2.2 with 3 instances under the faults that apply to it (a silent
# instance, an HSDir restart) in a loopback lab. See docs/BENCHMARKS.md "Faults".
#
#   bench/faults.sh [--concurrency C] [--before S] [--tail S] [--cut-secs S]
#                   [--ob-cap S] [--faults tor,silent,hsdir,cut,frozen] [--work DIR]
#                   [--json FILE] [--no-onionbalance]
#
# Defaults: 2 GETs at a time, 45 s before each fault, 30 s after each recovery, the
# cut lasts 120 s, Onionbalance's waits capped at 300 s. Root only (network
# namespaces). About 20 minutes: run it in the background with a pid file, e.g.
#   nohup bench/faults.sh --json /tmp/faults.json >/tmp/faults.out 2>&1 &
#   echo $! >/tmp/faults.pid
# Needs: cargo, tor (0.4.8+), tor-gencert, Debian's onionbalance package.
exec "$(dirname "$0")/lab_example.sh" faults "$@"
