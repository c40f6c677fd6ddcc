"""What one join costs in a grown network: queries, datagrams and CPU.

    python benchmarks/join_cost.py [--overlay kademlia] [--nodes 1000] [--joins 20]

Grows ``--nodes`` nodes of the overlay on the virtual network (the same
code as ``dhtkit sim``), then has ``--joins`` newcomers join one after
another through a random node, and prints, per join: the lookup queries the
newcomer sent (its ``lookup_messages``: Kademlia's joins are lookups, while
Chord's and Pastry's route and ask without that counter, so 0 there), the
datagrams the newcomer itself sent (queries and answers, any overlay),
every datagram the join caused on the network (the newcomer's and the
answers, address probes, proofs and table pings of the nodes it met, the
last three also counted apart), and the CPU seconds;
and the CPU the growth took, and the CPU other processes used while the
joins were measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from machine import machine_busy_s  # benchmarks/machine.py

from dhtkit.overlays import OVERLAYS
from dhtkit.sim.overlays import OverlayNetwork


def measure(overlay: str, nodes: int, joins: int, seed: int) -> dict[str, float]:
    net = OverlayNetwork(overlay, seed=seed)
    started = time.process_time()
    net.grow(nodes)
    grow_cpu = time.process_time() - started
    queries, newcomer_sent, datagrams, cpu = [], [], [], []
    probes_before, proofs_before, pings_before = _proofs_and_pings(net)
    busy, began_all = machine_busy_s(), time.process_time()
    for _ in range(joins):
        newcomer = net.add_node()
        sent, began = net.network.counters["sent"], time.process_time()
        net.wait(net.join(newcomer, [n for n in net.live() if n is not newcomer]))
        cpu.append(time.process_time() - began)
        datagrams.append(net.network.counters["sent"] - sent)
        queries.append(newcomer.overlay.stats()["lookup_messages"])
        newcomer_sent.append(newcomer.rpc.stats()["sent"])
    probes, proofs, pings = _proofs_and_pings(net)
    busy_after, own = machine_busy_s(), time.process_time() - began_all
    return {
        "overlay_nodes": nodes,
        "grow_cpu_s": grow_cpu,
        "queries_per_join": statistics.mean(queries),
        "queries_min": min(queries),
        "queries_max": max(queries),
        "newcomer_sent_per_join": statistics.mean(newcomer_sent),
        "datagrams_per_join": statistics.mean(datagrams),
        # Address probes and routing-table pings (each a query and its
        # reply), and challenges sent back (one datagram each).
        "probes_per_join": (probes - probes_before) / joins,
        "proofs_per_join": (proofs - proofs_before) / joins,
        "table_pings_per_join": (pings - pings_before) / joins,
        "cpu_ms_per_join": 1000 * statistics.mean(cpu),
        # What the rest of the machine used meanwhile, in CPU seconds (-1: unknown).
        "others_cpu_s": -1.0 if busy is None or busy_after is None else busy_after - busy - own,
    }


def _proofs_and_pings(net: OverlayNetwork) -> tuple[int, int, int]:
    # Summed over every node ever added: the probes and proofs the RPC
    # layers sent, and the pings the routing state sent of its own accord
    # (Kademlia's heads).
    rpcs = [n.rpc.stats() for n in net.nodes]
    pings = sum(n.overlay.stats().get("pings_sent", 0) for n in net.nodes)
    return sum(s["probes_sent"] for s in rpcs), sum(s["proofs_sent"] for s in rpcs), pings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overlay", default="kademlia", choices=sorted(OVERLAYS))
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.joins < 1:
        parser.error("need --nodes and --joins of at least 1")
    row = measure(args.overlay, args.nodes, args.joins, args.seed)
    if args.json:
        print(json.dumps(row))
        return 0
    print(
        "{overlay} at {nodes:,} nodes (growth: {grow_cpu_s:.1f} s of CPU)".format(
            overlay=args.overlay, nodes=args.nodes, **row
        )
    )
    print(
        "  per join: {queries_per_join:.1f} lookup queries ({queries_min}-{queries_max}), "
        "{newcomer_sent_per_join:.0f} datagrams sent by the newcomer, "
        "{datagrams_per_join:.0f} datagrams in all, {cpu_ms_per_join:.0f} ms of CPU".format(**row)
    )
    print(
        "  of which address probes {probes_per_join:.1f} and table pings "
        "{table_pings_per_join:.1f} (each a query and its reply), and proofs "
        "{proofs_per_join:.1f} (one datagram each)".format(**row)
    )
    if row["others_cpu_s"] >= 0:
        print("  other processes meanwhile: {:.1f} s of CPU".format(row["others_cpu_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
