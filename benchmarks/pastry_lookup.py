"""Pastry routes: the hop curve against log16 N, messages per join, correctness.

    python benchmarks/pastry_lookup.py [--min-exp 8] [--max-exp 14] [--lookups 500]
        [--batch 32] [--settle 60] [--budget 600] [--seed 1] [--json]

One network of unchanged Pastry nodes (each an ``RPCProtocol`` with its own
Ed25519 key, ``PastryOverlay`` with b = 4, l = 8, |M| = 16 and a
``DHTNode`` above, on one ``VirtualNetwork`` and ``HeapClock``, the default
maintenance periods) grows through the join protocol, never from a global
view: batches of ``--batch`` nodes, each node joining through a random
node already in. At each N = 2**min-exp ... 2**max-exp the network runs
``--settle`` simulated seconds, then ``--lookups`` lookups of random keys
for the 4 closest nodes run one after another, each from a random node.

Reported per N: the mean, p50 and p95 of the hops (the nodes that answered
one after another; 0 when the key is in the asker's own leaf-set range)
beside log16 N and the paper's bound ceil(log16 N); the messages per lookup;
the messages a join sent (mean and p95 over the nodes that joined since
the previous N: pings, the route toward its own id, the leaf-set fetch
and its announcements); the share of lookups whose first node is the
numerically closest live node, and of those naming the exact 4 closest;
the wall time. It stops before a size whose build would exceed
``--budget`` wall seconds in all (estimated from the last one, which
grows about as N log N).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from typing import Any

from dhtkit.keyspace import from_int, numerically_closest_first
from dhtkit.pastry import PastryOverlay
from dhtkit.sim.overlays import OverlayNetwork


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(net: OverlayNetwork, lookups: int, rng: random.Random) -> dict[str, Any]:
    live = net.live()
    ids = [n.node_id for n in live]
    hops: list[float] = []
    messages: list[float] = []
    first_right = all_right = failed = 0
    for _ in range(lookups):
        key = from_int(rng.getrandbits(160))
        truth = sorted(ids, key=numerically_closest_first(key))[:4]
        try:
            found = net.wait(rng.choice(live).overlay.lookup(key, 4))
        except Exception:
            failed += 1
            continue
        hops.append(float(found.hops))
        messages.append(float(found.messages))
        got = [c.node_id for c in found.contacts]
        first_right += bool(got) and got[0] == truth[0]
        all_right += got == truth
    return {
        "hops_mean": statistics.fmean(hops),
        "hops_p50": percentile(hops, 0.5),
        "hops_p95": percentile(hops, 0.95),
        "hops_max": max(hops),
        "messages_per_lookup": statistics.fmean(messages),
        "correct_first": first_right / lookups,
        "correct_all4": all_right / lookups,
        "failed": failed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-exp", type=int, default=8)
    parser.add_argument("--max-exp", type=int, default=14)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--settle", type=float, default=60.0)
    parser.add_argument("--budget", type=float, default=600.0, help="wall seconds in all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed + 1)
    net = OverlayNetwork("pastry", seed=args.seed)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    last_build = 0.0
    if not args.json:
        print(
            "{:>6} {:>6} {:>5} {:>4} {:>6} {:>5} {:>7} {:>7} {:>8} {:>8} {:>7} {:>7}".format(
                "N", "mean", "p50", "p95", "log16N", "ceil", "msg/lk", "join", "join p95",
                "first ok", "4 ok", "wall s",
            )
        )  # fmt: skip
    for exp in range(args.min_exp, args.max_exp + 1):
        nodes = 1 << exp
        elapsed = time.perf_counter() - started
        if rows and elapsed + last_build * 2.3 > args.budget:
            print("stopped before N = {}: the budget of {:.0f} s".format(nodes, args.budget))
            break
        before = len(net.nodes)
        t0 = time.perf_counter()
        net.grow(nodes - before, batch=args.batch)
        net.advance(args.settle)
        last_build = time.perf_counter() - t0
        joins = [
            float(n.overlay.last_join.messages)
            for n in net.nodes[max(before, 1) :]
            if isinstance(n.overlay, PastryOverlay) and n.overlay.last_join is not None
        ]
        row: dict[str, Any] = {
            "nodes": nodes,
            "log16_n": math.log(nodes, 16),
            "bound": math.ceil(math.log(nodes, 16)),
            "join_messages_mean": statistics.fmean(joins),
            "join_messages_p95": percentile(joins, 0.95),
            "build_s": last_build,
        }
        row.update(measure(net, args.lookups, rng))
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(
                "{nodes:>6} {hops_mean:>6.2f} {hops_p50:>5.0f} {hops_p95:>4.0f} {log16_n:>6.2f} "
                "{bound:>5} {messages_per_lookup:>7.2f} {join_messages_mean:>7.1f} "
                "{join_messages_p95:>8.0f} {correct_first:>8.3f} {correct_all4:>7.3f} "
                "{wall_s:>7.1f}".format(**row),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
