"""Bytes per simulated node, part by part: where a simulation's memory goes.

    python benchmarks/sim_memory.py [--overlay kademlia] [--nodes 500]

Grows ``--nodes`` nodes of the overlay on the virtual network and sums, per
node, the deep size (``sys.getsizeof`` over every object reachable from the
part, each object counted once, the clock and the network left out) of:
the RPC layer's sessions (one per peer met: key, replay window, proven
addresses), its rate-limiter buckets and the rest of it, the overlay's
state, and the value layer's hand-over queues and the rest of it. Resident
memory is more (allocator and object headers); this says which part to trim.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

from dhtkit.overlays import OVERLAYS
from dhtkit.sim.overlays import OverlayNetwork


class DeepSize:
    """Deep sizes that count each object once, across calls."""

    def __init__(self, *skip: object) -> None:
        self.seen = {id(o) for o in skip}

    def __call__(self, root: object) -> int:
        total, stack = 0, [root]
        while stack:
            obj = stack.pop()
            if id(obj) in self.seen or isinstance(obj, type):
                continue
            self.seen.add(id(obj))
            total += sys.getsizeof(obj)
            stack.extend(_children(obj))
        return total


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, list | tuple | set | frozenset):
        return list(obj)
    if callable(obj) and not hasattr(obj, "__dict__"):
        return []  # functions and bound methods: code, not per-node data
    out = [getattr(obj, name) for name in getattr(type(obj), "__slots__", ()) if hasattr(obj, name)]
    if hasattr(obj, "__dict__"):
        out.append(vars(obj))
    return out


def measure(overlay: str, nodes: int, seed: int) -> dict[str, float]:
    net = OverlayNetwork(overlay, seed=seed)
    net.grow(nodes)
    size = DeepSize(net.clock, net.network)
    parts: Counter[str] = Counter()
    for n in net.nodes:
        rpc = n.rpc
        parts["sessions"] += size(rpc.sessions)
        parts["rate limiter"] += size(rpc.limiter)
        parts["rest of the RPC layer"] += size(rpc)
        parts["overlay state"] += size(n.overlay)
        parts["hand-over queues"] += size(n.node.hand_overs)
        parts["rest of the value layer"] += size(n.node)
    out = {name: total / nodes for name, total in parts.items()}
    out["sessions per node"] = sum(len(n.rpc.sessions) for n in net.nodes) / nodes
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overlay", default="kademlia", choices=sorted(OVERLAYS))
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("need --nodes of at least 1")
    row = measure(args.overlay, args.nodes, args.seed)
    print("{} at {:,} nodes, bytes per node:".format(args.overlay, args.nodes))
    for name, value in row.items():
        print("  {:<26} {:>10,.0f}".format(name, value))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
