#!/usr/bin/python3
"""Time Onionbalance's own descriptor code on RustBalance's benchmark fixtures.

Run with Debian's interpreter (the `onionbalance` 0.2.2 package, with its
`stem` 1.8 and `cryptography`):

    /usr/bin/python3 bench/onionbalance_build.py FIXTURE_DIR [--iters N] [--json]

FIXTURE_DIR is written by `cargo run -p rustbalance-hs --example
bench_fixtures -- DIR` (the same files `crates/hs/benches/merge.rs` reads).

For 1, 5 and 10 instances it times, per operation:

* parse      - ReceivedDescriptor(text, address) for every instance
               (stem parse + decrypt of both layers), as instance.py does;
               stem's from_str defaults to validate=False, so no signature
               is checked there;
* build      - what service.py's _publish_descriptor does once it has the
               intros: IntroductionPointSetV3(...).choose(...), then
               OBDescriptor(...) (recertification, revision counter, stem's
               HiddenServiceDescriptorV3.create with blinding, encryption,
               signing and validation, and its size check) and
               str(desc.v3_desc), the text that is uploaded;
* parse+build - the two together;
* rev        - OBDescriptor._get_revision_counter alone (part of build);
* build-rev  - build with _get_revision_counter replaced by a constant, i.e.
               everything in build except the revision counter.

Each figure is reported as median, mean and minimum over the iterations;
on a shared machine the minimum is the least disturbed by other processes.

Stubbed, because it is not descriptor building: the consensus. The blinding
parameter comes from Onionbalance's own Consensus.get_blinding_param (a
Consensus object made without fetching a consensus), for the fixtures' time
period; the start of the SR protocol run, which Onionbalance reads from the
live consensus for the revision counter, is set so that "now minus SR run
start" is the same number of seconds as in the Rust benchmark.

Onionbalance picks N_INTROS_PER_INSTANCE (2) intros per instance; here it is
asked for min(3 x instances, 20), the number RustBalance puts in the same
master descriptor, so both sides build descriptors of the same size.
"""

import argparse
import json
import logging
import os
import statistics
import sys
import time

from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import serialization

import onionbalance.hs_v3.onionbalance as ob_runtime
from onionbalance.hs_v3 import consensus as ob_consensus
from onionbalance.hs_v3 import descriptor as ob_descriptor
from onionbalance.hs_v3 import params as ob_params

INSTANCE_COUNTS = (1, 5, 10)
MAX_INTRO_POINTS = 20


class FixedSrvConsensus(ob_consensus.Consensus):
    """A Consensus that needs no tor: only the SR run start is stubbed."""

    def __init__(self, srv_elapsed):
        super().__init__(do_refresh_consensus=False)
        self.srv_elapsed = srv_elapsed

    def _srv_start(self):
        # OBDescriptor takes "now" from the wall clock, so the run start
        # moves with it to keep now - start fixed.
        return int(time.time()) - self.srv_elapsed

    def get_start_time_of_previous_srv_run(self):
        return self._srv_start()

    def get_start_time_of_current_srv_run(self):
        return self._srv_start()


def load(fixture_dir):
    with open(os.path.join(fixture_dir, "fixtures.json")) as f:
        meta = json.load(f)
    with open(os.path.join(fixture_dir, "master.pem"), "rb") as f:
        # As Service._load_service_keys does for Onionbalance's own PEM keys.
        key = serialization.load_pem_private_key(f.read(), password=None, backend=default_backend())
    instances = []
    for inst in meta["instances"]:
        with open(os.path.join(fixture_dir, inst["file"])) as f:
            instances.append((inst["address"], f.read()))
    return meta, key, instances


def parse(instances):
    return [ob_descriptor.ReceivedDescriptor(text, addr) for addr, text in instances]


def build(meta, key, received, blinding_param):
    # Service.get_all_intros_for_publish + _get_intros_for_desc.
    intros = ob_descriptor.IntroductionPointSetV3([list(d.get_intro_points()) for d in received])
    chosen = intros.choose(min(len(intros), MAX_INTRO_POINTS))
    desc = ob_descriptor.OBDescriptor(meta["master_address"], key, blinding_param, chosen, True)
    return desc, str(desc.v3_desc)


def timeit(fn, iters):
    fn()  # warm up
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {
        "median_us": statistics.median(times) * 1e6,
        "mean_us": statistics.mean(times) * 1e6,
        "min_us": min(times) * 1e6,
    }


def without_rev_counter(fn, rev):
    """Run fn with OBDescriptor's revision counter replaced by `rev`."""
    real = ob_descriptor.OBDescriptor._get_revision_counter
    ob_descriptor.OBDescriptor._get_revision_counter = lambda self, key, first: rev
    try:
        return fn()
    finally:
        ob_descriptor.OBDescriptor._get_revision_counter = real


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fixtures")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()

    # Onionbalance's logger is set to DEBUG at import; its CLI runs at
    # "warning" unless asked otherwise, so measure it that way.
    logging.getLogger("onionbalance").setLevel(logging.WARNING)
    meta, key, instances = load(args.fixtures)
    ob_runtime.my_onionbalance.is_testnet = False
    cons = FixedSrvConsensus(meta["now"] - meta["srv_run_start"])
    ob_runtime.my_onionbalance.consensus = cons
    pub = key.public_key().public_bytes(encoding=serialization.Encoding.Raw,
                                        format=serialization.PublicFormat.Raw)
    blinding_param = cons.get_blinding_param(pub, meta["period_num"])
    if meta["period_minutes"] != cons.get_time_period_length():
        sys.exit("fixtures use a %d-minute time period; Onionbalance assumes %d"
                 % (meta["period_minutes"], cons.get_time_period_length()))

    # Same blinded key as ours, and a descriptor of the expected size.
    received = parse(instances)
    desc, text = build(meta, key, received, blinding_param)
    assert desc.get_blinded_key().hex() == meta["master_blinded_key"], "blinded keys differ"
    assert len(desc.get_intro_points()) == MAX_INTRO_POINTS
    assert len(text) <= ob_params.MAX_DESCRIPTOR_SIZE

    results = []
    for n in INSTANCE_COUNTS:
        sub = instances[:n]
        pre = parse(sub)
        want = min(n * meta["intros_per_instance"], MAX_INTRO_POINTS)
        assert len(build(meta, key, pre, blinding_param)[0].get_intro_points()) == want
        row = {"instances": n, "intro_points": want}
        row["parse"] = timeit(lambda: parse(sub), args.iters)
        row["build"] = timeit(lambda: build(meta, key, pre, blinding_param), args.iters)
        row["parse+build"] = timeit(lambda: build(meta, key, parse(sub), blinding_param), args.iters)
        row["rev"] = timeit(lambda: desc._get_revision_counter(key, True), args.iters)
        rev = desc._get_revision_counter(key, True)
        row["build-rev"] = without_rev_counter(
            lambda: timeit(lambda: build(meta, key, pre, blinding_param), args.iters), rev)
        results.append(row)

    if args.json:
        print(json.dumps(results))
        return
    keys = ("parse", "build", "parse+build", "rev", "build-rev")
    print("Onionbalance, %d iterations, median (minimum) in microseconds per operation" % args.iters)
    print("%9s %6s" % ("instances", "intros") + "".join("%22s" % k for k in keys))
    for r in results:
        cells = ["%10.0f (%8.0f)" % (r[k]["median_us"], r[k]["min_us"]) for k in keys]
        print("%9d %6d %s" % (r["instances"], r["intro_points"], " ".join("%22s" % c for c in cells)))


if __name__ == "__main__":
    main()
