"""The figures of docs/simulator.rst: hops, latency and churn beside the published values.

    python benchmarks/sim_figures.py [--sizes 1000,10000] [--churn-nodes 1000] [--lookups 1000]

Runs ``dhtkit sim`` (the same code, in this process, one run after another):

1. each overlay at each size without churn: mean hops beside the published
   figure (Chord 1/2 log2 N, Pastry log16 N, Kademlia's log2 N bound), and
   the lookup latency in simulated ms (constant 20 ms RTT, and log-normal
   with the same median);
2. each overlay at ``--churn-nodes`` under 10% and 50% churn per simulated
   hour with default maintenance: the share of reads that found the value
   and the lookup latency;
3. SIR gossip (push-pull, coin, k = 1..4) at each size: the residue beside
   Demers' ODE root.

It prints reStructuredText tables (what the doc shows) and, with ``--json``,
the reports. A progress line per run goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from dhtkit.gossip import theory
from dhtkit.gossip.config import GossipConfig
from dhtkit.overlays import OVERLAYS
from dhtkit.sim.gossip import simulate as simulate_gossip
from dhtkit.sim.gossip import summarize
from dhtkit.sim.overlays import simulate


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([*lines, rule])


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def hops_and_latency(
    kinds: list[str], sizes: list[int], lookups: int, seed: int
) -> tuple[str, list[Any]]:
    rows, reports = [], []
    for kind in kinds:
        for nodes in sizes:
            for latency in ("constant", "lognormal"):
                started = time.perf_counter()
                r = simulate(kind, nodes, min(lookups, nodes), seed=seed, latency=latency)
                _log(
                    "{} {} {}: {:.0f} s".format(kind, nodes, latency, time.perf_counter() - started)
                )
                reports.append(r)
                rows.append(
                    [
                        kind,
                        "{:,}".format(nodes),
                        latency,
                        "{:.2f}".format(r["hops"]["mean"]),
                        "{} = {:.2f}".format(r["theory"]["label"], r["theory"]["hops"]),
                        "{:.0f} / {:.0f}".format(r["latency_ms"]["p50"], r["latency_ms"]["p99"]),
                        "{:.1%}".format(r["success_rate"]),
                    ]
                )
    header = ["overlay", "N", "latency", "hops", "published", "ms p50 / p99", "reads found"]
    return _table(header, rows), reports


def churn(kinds: list[str], nodes: int, lookups: int, seed: int) -> tuple[str, list[Any]]:
    rows, reports = [], []
    for kind in kinds:
        for rate in (0.1, 0.5):
            started = time.perf_counter()
            r = simulate(kind, nodes, lookups, seed=seed, churn=rate)
            _log(
                "{} {} churn {}: {:.0f} s".format(kind, nodes, rate, time.perf_counter() - started)
            )
            reports.append(r)
            rows.append(
                [
                    kind,
                    "{:,}".format(nodes),
                    "{:.0%}".format(rate),
                    "{} / {}".format(r["left"], r["joined"]),
                    "{:.1%}".format(r["success_rate"]),
                    "{:.1%}".format(r["correct_rate"]),
                    "{:.0f} / {:.0f}".format(r["latency_ms"]["p50"], r["latency_ms"]["p99"]),
                ]
            )
    header = [
        "overlay",
        "N",
        "churn/h",
        "left / joined",
        "reads found",
        "true owner",
        "ms p50 / p99",
    ]
    return _table(header, rows), reports


def residues(sizes: list[int], seed: int) -> tuple[str, list[Any]]:
    rows, reports = [], []
    for nodes in sizes:
        for k in (1, 2, 3, 4):
            config = GossipConfig(model="sir", mode="pushpull", variant="coin", k=float(k))
            r = summarize(simulate_gossip(config, nodes, seed=seed))
            _log("gossip {} k={}: {:.0f} s".format(nodes, k, r["wall_s"]))
            reports.append(r)
            rows.append(
                [
                    "{:,}".format(nodes),
                    str(k),
                    "{:.4f}".format(r["residue"]),
                    "{:.4f}".format(theory.sir_residue(float(k), config.feedback)),
                    "{:.2f}".format(r["messages_per_node"]),
                ]
            )
    header = ["N", "k", "residue", "Demers (ODE root)", "messages per node"]
    return _table(header, rows), reports


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated node counts")
    parser.add_argument("--churn-nodes", type=int, default=1000)
    parser.add_argument("--lookups", type=int, default=1000, help="per run, at most N")
    parser.add_argument("--gossip-sizes", default="1000,10000,100000")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--parts", default="hops,churn,gossip")
    parser.add_argument("--overlays", default=",".join(OVERLAYS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    parts = args.parts.split(",")
    kinds = args.overlays.split(",")
    reports: dict[str, Any] = {}
    if "hops" in parts:
        text, reports["hops"] = hops_and_latency(kinds, sizes, args.lookups, args.seed)
        print(text, end="\n\n", flush=True)
    if "churn" in parts:
        text, reports["churn"] = churn(kinds, args.churn_nodes, min(args.lookups, 200), args.seed)
        print(text, end="\n\n", flush=True)
    if "gossip" in parts:
        gossip_sizes = [int(n) for n in args.gossip_sizes.split(",")]
        text, reports["gossip"] = residues(gossip_sizes, args.seed)
        print(text, flush=True)
    if args.json:
        print(json.dumps(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
