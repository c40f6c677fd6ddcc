"""Rounds for anti-entropy to reach every node: push, pull and push-pull.

    python benchmarks/gossip_rounds.py [--sizes 1000,10000,100000] [--seeds 3]
        [--modes push,pull,pushpull] [--rumours 1] [--json]

For each network size N and each mode, ``--seeds`` networks of N nodes run
the real gossip protocol (SI, every node an unchanged RPCProtocol with its
own Ed25519 key) on the virtual network in synchronous rounds; one update
(or ``--rumours`` together) starts at a random node, and the rounds until
every node holds it are counted. Beside the mean: the leading-order figures
of the analyses, log2 N + ln N for push (Frieze and Grimmett; Pittel) and
log3 N for push-pull (Karp et al.); pull is log2 N + O(ln ln N).

The cost is the protocol's: each exchange is two authenticated datagrams
and, with a new partner, a session key on each side. Pull has every node
call every round, so N = 100,000 takes minutes per run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from typing import Any

from machine import machine_busy_s  # benchmarks/machine.py

from dhtkit.gossip import theory
from dhtkit.gossip.config import MODES, GossipConfig
from dhtkit.sim.gossip import MAX_CONCURRENT, GossipNetwork

#: Above this share of a CPU used by other processes, the wall times are suspect.
BUSY_MACHINE_PCT = 25.0


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(nodes: int, mode: str, seeds: int, rumours: int) -> dict[str, Any]:
    """Rounds to reach every node, over ``seeds`` networks."""
    rounds: list[int] = []
    messages: list[float] = []
    exchanges: list[float] = []
    incomplete = 0
    busy0, own0, start = machine_busy_s(), own_cpu_s(), time.perf_counter()
    for seed in range(1, seeds + 1):
        network = GossipNetwork(nodes, GossipConfig(model="si", mode=mode), seed=seed)
        for run in network.spread(concurrent=rumours):
            rounds.append(run.rounds)
            messages.append(run.messages_per_node)
            exchanges.append(run.exchanges_per_node)
            incomplete += not run.complete
        del network
    wall = time.perf_counter() - start
    busy1, own1 = machine_busy_s(), own_cpu_s()
    other = None
    if busy0 is not None and busy1 is not None:
        other = round(max(0.0, 100 * ((busy1 - busy0) - (own1 - own0)) / wall), 1)
    return {
        "nodes": nodes,
        "mode": mode,
        "samples": len(rounds),
        "rounds_mean": statistics.fmean(rounds),
        "rounds_min": min(rounds),
        "rounds_max": max(rounds),
        "incomplete": incomplete,
        "log2_plus_ln": theory.rounds_push(nodes),
        "log3": theory.rounds_pushpull(nodes),
        "messages_per_node": statistics.fmean(messages),
        "exchanges_per_node": statistics.fmean(exchanges),
        "wall_s": wall,
        "other_cpu_pct": other,
    }


def print_row(row: dict[str, Any]) -> None:
    print(
        "{nodes:>8,}  {mode:<8}  {mean:>6.2f}  {span:>7}  {log2_plus_ln:>9.1f}  {log3:>5.1f}  "
        "{messages_per_node:>9.2f}  {exchanges_per_node:>9.1f}  {wall_s:>8.1f}  {other:>5}".format(
            mean=row["rounds_mean"],
            span="{}-{}".format(row["rounds_min"], row["rounds_max"]),
            other="?" if row["other_cpu_pct"] is None else "{:.0f}%".format(row["other_cpu_pct"]),
            **row,
        ),
        flush=True,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated N")
    parser.add_argument("--modes", default="push,pull,pushpull")
    parser.add_argument("--seeds", type=int, default=3, help="networks per N and mode")
    parser.add_argument("--rumours", type=int, default=1, help="updates spread together")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        modes = args.modes.split(",")
    except ValueError:
        parser.error("--sizes is a comma-separated list of whole numbers")
    if any(n < 2 for n in sizes) or not set(modes) <= set(MODES):
        parser.error("need sizes >= 2 and modes among {}".format(", ".join(MODES)))
    if args.seeds < 1 or not 1 <= args.rumours <= MAX_CONCURRENT:
        parser.error("need --seeds >= 1 and 1 <= --rumours <= {}".format(MAX_CONCURRENT))

    print("SI anti-entropy: rounds until every node holds the update (synchronous rounds)")
    print(
        "{:>8}  {:<8}  {:>6}  {:>7}  {:>9}  {:>5}  {:>9}  {:>9}  {:>8}  {:>5}".format(
            "N", "mode", "rounds", "min-max", "log2N+lnN", "log3N", "msgs/node", "calls/node",
            "wall s", "other",
        )
    )  # fmt: skip
    rows = []
    start = time.perf_counter()
    for nodes in sizes:
        for mode in modes:
            row = measure(nodes, mode, args.seeds, args.rumours)
            rows.append(row)
            print_row(row)
    total = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        "{} seed(s) x {} rumour(s) per row; total wall {:.1f} s; peak RSS {:.0f} MiB".format(
            args.seeds, args.rumours, total, peak_mib
        )
    )
    if any(r["incomplete"] for r in rows):
        print("warning: some runs stopped at the round limit before reaching every node")
    if any((r["other_cpu_pct"] or 0) > BUSY_MACHINE_PCT for r in rows):
        print("warning: other processes used the CPU meanwhile; wall times are inflated")
    if args.json:
        print(json.dumps({"rows": rows, "total_wall_s": total, "peak_rss_mib": peak_mib}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
