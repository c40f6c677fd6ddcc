"""What listening costs, and whether it keeps up, while nodes come and go.

    python benchmarks/listen_churn.py [--overlays kademlia,chord,pastry] [--nodes 40]
        [--versions 10] [--every 150] [--churn 0.2] [--seed 7] [--json]

On the virtual network, for each overlay: N nodes; one node listens to a
signed value (``node.listen``) while another puts ``--versions`` versions
``--every`` seconds apart. Between versions, a share of the network is
replaced (``--churn`` of it over the run), the nodes the listener listens to
first, so that its responsible set changes under it. Reported: the versions
the callback got, in order or not; the pushes the listener received per
version (the replicas push the same versions; the filter keeps one); the
``listen`` queries holders answered; and the virtual seconds from the start
of each put to the callback (latency 10 ms a hop).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from dhtkit.identity import Identity
from dhtkit.node import PutFailed
from dhtkit.overlay import LookupFailed
from dhtkit.sim.overlays import OverlayNetwork
from dhtkit.values import Record


def measure(kind: str, nodes: int, versions: int, every: float, churn: float, seed: int) -> Any:
    started = time.perf_counter()
    net = OverlayNetwork(kind, seed=seed)
    net.grow(nodes)
    publisher, listener = net.nodes[0], net.nodes[1]
    owner = Identity(net.rng.randbytes(32))
    seen: list[tuple[Record, float]] = []
    handle = listener.node.listen_signed(
        owner.public_key, b"feed", lambda r: seen.append((r, net.clock.seconds()))
    )
    net.wait(handle.subscribed)
    put_at: dict[int, float] = {}
    replaced = failed = 0
    for seq in range(1, versions + 1):
        put_at[seq] = net.clock.seconds()
        for _ in range(5):
            try:
                net.wait(publisher.node.put_signed(b"v%d" % seq, b"feed", owner, seq=seq))
                break
            except (PutFailed, LookupFailed):
                failed += 1
                net.advance(10.0)
        due = round(nodes * churn * seq / versions) - replaced
        net.replace(due, spared=[publisher, listener], first=set(handle.sources))
        replaced += due
        net.advance(every)
    seqs = [r.seq for r, _ in seen]
    delays = [at - put_at[r.seq] for r, at in seen if r.seq in put_at]
    return {
        "overlay": kind,
        "nodes": nodes,
        "replaced": replaced,
        "versions_put": versions,
        "versions_seen": len(seqs),
        "in_order_once": seqs == sorted(set(seqs)),
        "puts_retried": failed,
        "pushes_per_version": listener.node.counters["notify_received"] / versions,
        "listen_queries_answered": sum(n.node.counters["listen_received"] for n in net.nodes),
        "delay_s": {"mean": statistics.fmean(delays), "max": max(delays)} if delays else None,
        "wall_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overlays", default="kademlia,chord,pastry")
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--every", type=float, default=150.0)
    parser.add_argument("--churn", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for kind in args.overlays.split(","):
        result = measure(kind, args.nodes, args.versions, args.every, args.churn, args.seed)
        if args.json:
            print(json.dumps(result))
            continue
        delay = result["delay_s"]
        print(
            "{overlay:9} {versions_seen}/{versions_put} versions, in order once: "
            "{in_order_once}; {pushes_per_version:.1f} pushes a version; {listen_queries_answered}"
            " listen queries; {replaced} of {nodes} nodes replaced; wall {wall_s:.1f} s".format(
                **result
            )
            + (
                ""
                if delay is None
                else "; delay mean {:.3f} s, max {:.3f} s".format(delay["mean"], delay["max"])
            )
        )


if __name__ == "__main__":
    main()
