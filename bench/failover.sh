#!/usr/bin/env bash
# Issue 5 figures: failover of a 3-node RustBalance cluster (publisher and
# non-publisher SIGKILLed) against Onionbalance 0.2.2 with 3 instances (one
# instance's tor SIGKILLed), in one private Tor lab, in one run, with the
# client success rate right after each kill. See docs/BENCHMARKS.md.
#
#   bench/failover.sh [--requests N] [--concurrency C] [--ob-cap SECONDS]
#                     [--work DIR] [--json FILE] [--no-onionbalance]
#
# Defaults: 200 requests, 4 at a time, Onionbalance wait capped at 720 s.
# The Onionbalance part can take the whole cap (~12 min); run it in the
# background, e.g.
#   nohup bench/failover.sh --json /tmp/failover.json >/tmp/failover.out 2>&1 &
#   echo $! >/tmp/failover.pid
# Needs: cargo, tor (0.4.8+), tor-gencert, Debian's onionbalance package.
exec "$(dirname "$0")/lab_example.sh" failover "$@"
