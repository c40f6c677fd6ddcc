"""Chord lookups: the hop curve on the virtual network, and 100 nodes on real sockets.

    python benchmarks/chord_lookup.py [--max-exp 13] [--lookups 1000] [--seed 1]
        [--sim-settle 10] [--real-nodes 100] [--real-lookups 500] [--settle 20] [--json]

Part 1, the hop curve. For N = 2**8 ... 2**max-exp, N unchanged Chord nodes
(each an ``RPCProtocol`` with its own Ed25519 key, on one ``VirtualNetwork``
and ``HeapClock``, default maintenance periods) build a ring by real joins:
batches as large as the ring, each node through a random member, three
simulated seconds between batches; then the ring runs until every
successor and predecessor is right (``stab s``, simulated) and
``--sim-settle`` seconds more for the fingers. Then ``--lookups`` lookups
of random keys from random nodes, all at once. Beside the mean, p50 and p95
of the hops (the nodes that answered one after another: the paper's path
length) is the paper's ½·log2 N; then the messages per lookup, the share
of lookups that named the true successor, and the wall time of the build
and of the whole row.

Part 2, real sockets. ``--real-nodes`` nodes in this one process, each on
its own UDP port on 127.0.0.1, with the real reactor and the default
maintenance periods: they join one after another, each through a random
earlier node; once every successor and predecessor is right, the fingers
get ``--settle`` seconds; then ``--real-lookups`` lookups run one at a
time (no two in flight), each from a random node. Reported: the hops and
the latency (p50, p95) of a lookup, end to end.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import statistics
import sys
import time
from typing import Any

from machine import machine_busy_s  # benchmarks/machine.py
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from dhtkit.chord import ChordOverlay
from dhtkit.identity import Identity
from dhtkit.keyspace import ring_distance
from dhtkit.overlay import Lookup
from dhtkit.rpc import RPCProtocol
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.latency import ConstantLatency
from dhtkit.sim.network import VirtualNetwork

#: Above this share of a CPU used by other processes, the wall times are suspect.
BUSY_MACHINE_PCT = 25.0


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def successor_of(key: bytes, ids: list[bytes]) -> bytes:
    return min(ids, key=lambda node_id: ring_distance(key, node_id))


def summary(found: list[Lookup], ids: list[bytes]) -> dict[str, Any]:
    hops = [float(f.hops) for f in found]
    right = sum(
        bool(f.contacts) and f.contacts[0].node_id == successor_of(f.key, ids) for f in found
    )
    return {
        "hops_mean": statistics.fmean(hops),
        "hops_p50": percentile(hops, 0.5),
        "hops_p95": percentile(hops, 0.95),
        "messages_per_lookup": statistics.fmean(f.messages for f in found),
        "correct": right / len(found),
    }


# -- part 1: the virtual network --------------------------------------------------------------


class SimRing:
    """N Chord nodes on one virtual network, joined into a ring."""

    def __init__(self, seed: int) -> None:
        self.clock = HeapClock(now=1_800_000_000.0)
        self.network = VirtualNetwork(self.clock, latency=ConstantLatency(0.01), seed=seed)
        self.rng = random.Random(seed)
        self.nodes: list[ChordOverlay] = []
        self.started = 0
        self.join_retries = 0

    def add(self) -> ChordOverlay:
        n = self.started = self.started + 1
        reactor = self.network.reactor_for("10.{}.{}.{}".format(n >> 16, (n >> 8) & 255, n & 255))
        rpc = RPCProtocol(
            Identity(self.rng.randbytes(32)), reactor, timeout=1.0, rng=random.Random(n)
        )
        reactor.listenUDP(4000, rpc)
        overlay = ChordOverlay(rpc, clock=reactor, rng=random.Random(self.rng.random()))
        overlay.start()
        return overlay

    def wait(self, d: defer.Deferred[Any]) -> Any:
        results: list[Any] = []
        d.addBoth(results.append)
        while not results:
            self.clock.run_until(self.clock.seconds() + 0.1)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def grow(self, count: int) -> None:
        first = self.add()
        self.wait(defer.gatherResults([first.join([])]))
        self.nodes.append(first)
        while len(self.nodes) < count:
            waiting = [self.add() for _ in range(min(count - len(self.nodes), len(self.nodes)))]
            while waiting:
                # A join that found no way in is tried again, as a node would.
                joins = []
                for newcomer in waiting:
                    through = self.rng.choice(self.nodes).rpc.contact
                    assert through is not None
                    joins.append(newcomer.join([through.address]))
                results = self.wait(defer.DeferredList(joins, consumeErrors=True))
                self.nodes.extend(o for o, (ok, _) in zip(waiting, results, strict=True) if ok)
                waiting = [o for o, (ok, _) in zip(waiting, results, strict=True) if not ok]
                self.join_retries += len(waiting)
            self.clock.run_until(self.clock.seconds() + 3.0)

    def stabilize(self, limit: float) -> float:
        """Run until every successor and predecessor is right; the simulated seconds."""
        start = self.clock.seconds()
        while wrong_links(self.nodes) and self.clock.seconds() - start < limit:
            self.clock.run_until(self.clock.seconds() + 1.0)
        return self.clock.seconds() - start

    def lookups(self, count: int) -> list[Lookup]:
        calls = [
            self.rng.choice(self.nodes).lookup(self.rng.randbytes(20), 1) for _ in range(count)
        ]
        return list(self.wait(defer.gatherResults(calls, consumeErrors=True)))


def hop_row(nodes: int, lookups: int, seed: int, settle: float) -> dict[str, Any]:
    busy0, own0, start = machine_busy_s(), own_cpu_s(), time.perf_counter()
    ring = SimRing(seed)
    ring.grow(nodes)
    stabilized = ring.stabilize(limit=300.0)
    ring.clock.run_until(ring.clock.seconds() + settle)
    built = time.perf_counter()
    found = ring.lookups(lookups)
    wall = time.perf_counter() - start
    busy1, own1 = machine_busy_s(), own_cpu_s()
    other = None
    if busy0 is not None and busy1 is not None:
        other = round(max(0.0, 100 * ((busy1 - busy0) - (own1 - own0)) / wall), 1)
    row = {"nodes": nodes, "half_log2_n": math.log2(nodes) / 2, "lookups": lookups}
    row.update(summary(found, [o.node_id for o in ring.nodes]))
    row.update(
        {
            "stabilized_after_s": stabilized,
            "join_retries": ring.join_retries,
            "build_s": built - start,
            "wall_s": wall,
            "other_cpu_pct": other,
        }
    )
    return row


def print_hop_row(row: dict[str, Any]) -> None:
    print(
        "{nodes:>6,}  {half_log2_n:>6.2f}  {hops_mean:>5.2f}  {hops_p50:>4.0f}  {hops_p95:>4.0f}  "
        "{messages_per_lookup:>9.2f}  {correct:>7.1%}  {stabilized_after_s:>6.0f}  "
        "{build_s:>7.1f}  {wall_s:>7.1f}  {other:>5}".format(
            other="?" if row["other_cpu_pct"] is None else "{:.0f}%".format(row["other_cpu_pct"]),
            **row,
        ),
        flush=True,
    )


# -- part 2: real sockets --------------------------------------------------------------------------


async def real_sockets(
    reactor: Any, nodes: int, lookups: int, settle: float, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    clock: IReactorTime = reactor
    overlays: list[ChordOverlay] = []
    ports = []
    start = time.perf_counter()
    try:
        for _ in range(nodes):
            rpc = RPCProtocol(Identity.generate(), clock, rng=random.Random(rng.random()))
            ports.append(reactor.listenUDP(0, rpc, interface="127.0.0.1"))
            overlay = ChordOverlay(rpc, clock=clock, rng=random.Random(rng.random()))
            overlay.start()
            bootstrap = []
            if overlays:
                through = rng.choice(overlays).rpc.contact
                assert through is not None
                bootstrap = [through.address]
            await overlay.join(bootstrap)
            overlays.append(overlay)
        joined = time.perf_counter()
        while wrong_links(overlays):
            if time.perf_counter() - joined > 300:
                raise RuntimeError("the ring did not stabilize within 300 s")
            await task.deferLater(reactor, 0.5, lambda: None)
        stable = time.perf_counter()
        await task.deferLater(reactor, settle, lambda: None)
        found: list[Lookup] = []
        latencies: list[float] = []
        for _ in range(lookups):
            began = time.perf_counter()
            found.append(await rng.choice(overlays).lookup(rng.randbytes(20), 1))
            latencies.append(1000 * (time.perf_counter() - began))
        row: dict[str, Any] = {"nodes": nodes, "lookups": lookups}
        row.update(summary(found, [o.node_id for o in overlays]))
        row.update(
            {
                "latency_ms_p50": percentile(latencies, 0.5),
                "latency_ms_p95": percentile(latencies, 0.95),
                "latency_ms_mean": statistics.fmean(latencies),
                "join_all_s": joined - start,
                "stabilize_s": stable - joined,
                "settle_s": settle,
                "timeouts": sum(f.timeouts for f in found),
                "rpc_timeouts": sum(o.rpc.counters["timeouts"] for o in overlays),
                "rate_limited": sum(o.rpc.counters["dropped_rate_limited"] for o in overlays),
            }
        )
        return row
    finally:
        for overlay in overlays:
            overlay.stop()
        for port in ports:
            port.stopListening()


def wrong_links(overlays: list[ChordOverlay]) -> int:
    ring = sorted(overlays, key=lambda o: o.node_id)
    wrong = 0
    for i, overlay in enumerate(ring):
        first, pred = overlay.state.successors.first, overlay.state.predecessor
        wrong += first is None or first.node_id != ring[(i + 1) % len(ring)].node_id
        wrong += pred is None or pred.node_id != ring[i - 1].node_id
    return wrong


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-exp", type=int, default=13, help="largest N is 2**max-exp")
    parser.add_argument("--lookups", type=int, default=1000, help="lookups per N")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--real-nodes", type=int, default=100, help="0 skips part 2")
    parser.add_argument("--real-lookups", type=int, default=500)
    parser.add_argument(
        "--sim-settle", type=float, default=10.0, help="simulated seconds for the fingers"
    )
    parser.add_argument("--settle", type=float, default=20.0, help="seconds for the fingers")
    parser.add_argument("--json", action="store_true", help="also print everything as JSON")
    args = parser.parse_args(argv)
    if not 8 <= args.max_exp <= 20 or args.lookups < 1 or args.real_lookups < 1:
        parser.error("need 8 <= --max-exp <= 20 and at least one lookup")
    if args.real_nodes == 1 or args.real_nodes < 0:
        parser.error("--real-nodes is 0 (skip) or at least 2")

    print("Chord on the virtual network: hops per lookup (nodes that answered in turn)")
    print(
        "{:>6}  {:>6}  {:>5}  {:>4}  {:>4}  {:>9}  {:>7}  {:>6}  {:>7}  {:>7}  {:>5}".format(
            "N", "½log2N", "mean", "p50", "p95", "msgs/look", "correct", "stab s", "build s",
            "wall s", "other",
        )
    )  # fmt: skip
    rows = []
    for exp in range(8, args.max_exp + 1):
        row = hop_row(2**exp, args.lookups, args.seed, args.sim_settle)
        rows.append(row)
        print_hop_row(row)
    retried = sum(r["join_retries"] for r in rows)
    if retried:
        print(
            "{} join(s) found no way in at the first try and joined at a later one".format(retried)
        )
    if any((r["other_cpu_pct"] or 0) > BUSY_MACHINE_PCT for r in rows):
        print("warning: other processes used the CPU meanwhile; wall times are inflated")

    if not args.real_nodes:
        if args.json:
            print(json.dumps({"virtual": rows, "real": None}))
        return 0

    async def part_two(reactor: Any) -> None:
        print()
        print("Chord on real UDP sockets, 127.0.0.1, one process, lookups one at a time")
        real = await real_sockets(
            reactor, args.real_nodes, args.real_lookups, args.settle, args.seed
        )
        print_real(real)
        if args.json:
            print(json.dumps({"virtual": rows, "real": real}))

    # react() runs the reactor, then exits the process with the outcome.
    task.react(lambda reactor: defer.Deferred.fromCoroutine(part_two(reactor)), [])
    return 0


def print_real(row: dict[str, Any]) -> None:
    print(
        "{nodes} nodes, {lookups} lookups: hops mean {hops_mean:.2f} (½log2N {half:.2f}), "
        "p50 {hops_p50:.0f}, p95 {hops_p95:.0f}; {messages_per_lookup:.2f} messages per lookup; "
        "{correct:.1%} correct; {timeouts} timeouts; all calls: {rpc_timeouts} timed out, "
        "{rate_limited} datagrams dropped by rate limits".format(
            half=math.log2(row["nodes"]) / 2, **row
        )
    )
    print(
        "latency p50 {latency_ms_p50:.2f} ms, p95 {latency_ms_p95:.2f} ms, "
        "mean {latency_ms_mean:.2f} ms; joins took {join_all_s:.1f} s, the ring was right "
        "{stabilize_s:.1f} s later, then {settle_s:.0f} s for the fingers".format(**row),
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
