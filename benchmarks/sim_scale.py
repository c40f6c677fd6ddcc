"""How far the simulator scales: HeapClock beside task.Clock, thousands of
RPC nodes on the virtual network, and whole ``dhtkit sim`` runs.

    python benchmarks/sim_scale.py [--nodes 10000] [--peers 5] [--json]
    python benchmarks/sim_scale.py --sims kademlia,chord,pastry,gossip --sizes 1000,10000

Part 1 schedules N timers with random delays, cancels a third of them and
runs the rest, on Twisted's ``task.Clock`` (the baseline) and on
``HeapClock``, in this one process. ``task.Clock`` re-sorts on every
``callLater``, so its sizes stop where it takes tens of seconds.

Part 2 starts ``--nodes`` unchanged ``RPCProtocol`` nodes on one
``VirtualNetwork`` (each with its own Ed25519 identity), has each ping
``--peers`` random others (a signed first exchange) and then call each of
them again (MAC'd), and reports simulated and wall time, events per wall
second and memory per node.

With ``--sims``, it instead runs ``dhtkit sim OVERLAY --nodes N --lookups N``
(``dhtkit sim gossip --nodes N``) for each overlay and size, each in its own
process (niced), and prints its wall time and peak resident memory (the
child's ``ru_maxrss``) beside the issue's targets: 5 minutes and 2 GiB for
an overlay at 10^4 nodes, 10 minutes and 4 GiB for gossip at 10^5.
``--tree DIR`` runs the code of another checkout (a "before").
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import time
from typing import Any

from twisted.internet import task

from dhtkit.identity import Identity
from dhtkit.rpc import RPCProtocol
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.latency import UniformLatency
from dhtkit.sim.network import VirtualNetwork


def clock_workload(clock: Any, count: int, seed: int) -> float:
    """Seconds of wall time to schedule, cancel a third of, and run ``count`` timers."""
    rng = random.Random(seed)
    fired = [0]

    def fire() -> None:
        fired[0] += 1

    start = time.perf_counter()
    calls = [clock.callLater(rng.uniform(0, 1000), fire) for _ in range(count)]
    for call in calls[::3]:
        call.cancel()
    remaining = count - len(calls[::3])
    while fired[0] < remaining:
        clock.advance(10)
    elapsed = time.perf_counter() - start
    assert fired[0] == remaining
    return elapsed


def compare_clocks(sizes: list[int], baseline_limit: int) -> list[dict[str, Any]]:
    rows = []
    for count in sizes:
        heap = clock_workload(HeapClock(), count, seed=count)
        base = clock_workload(task.Clock(), count, seed=count) if count <= baseline_limit else None
        rows.append({"timers": count, "heap_clock_s": heap, "task_clock_s": base})
    return rows


def rss_bytes() -> int | None:
    """The resident memory of this process now (Linux), or None."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def rpc_network(nodes: int, peers: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    clock = HeapClock(now=1_700_000_000.0)
    network = VirtualNetwork(clock, latency=UniformLatency(0.01, 0.1), seed=seed)
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    protocols = []
    for n in range(nodes):
        host = "10.{}.{}.{}".format(n // 62500, n // 250 % 250, n % 250 + 1)
        reactor = network.reactor_for(host)
        proto = RPCProtocol(
            Identity(rng.randbytes(32)), reactor, rng=random.Random(rng.random()), retries=0
        )
        reactor.listenUDP(4000, proto)
        protocols.append(proto)
    setup_s = time.perf_counter() - start
    addresses = [(p.transport.getHost().host, 4000) for p in protocols]
    answered = [0]
    failed = [0]

    def ok(_: Any) -> None:
        answered[0] += 1

    def fail(_: Any) -> None:
        failed[0] += 1

    def again(contact: Any, proto: RPCProtocol) -> Any:
        answered[0] += 1
        return proto.call_contact(contact, "ping").addCallbacks(ok, fail)

    start_sim = clock.seconds()
    for n, proto in enumerate(protocols):
        for target in rng.sample(range(nodes - 1), peers):
            target += target >= n  # anyone but n
            proto.ping(addresses[target]).addCallbacks(again, fail, callbackArgs=(proto,))
    events = clock.run()
    wall_s = time.perf_counter() - start
    gc.collect()
    after = rss_bytes()
    return {
        "nodes": nodes,
        "calls": answered[0] + failed[0],
        "answered": answered[0],
        "failed": failed[0],
        "datagrams": network.counters["delivered"],
        "setup_s": setup_s,
        "wall_s": wall_s,
        "simulated_s": clock.seconds() - start_sim,
        "events": events,
        "events_per_s": events / wall_s,
        "bytes_per_node": None if before is None or after is None else (after - before) / nodes,
    }


#: The issue's targets: (nodes, wall seconds, bytes) per kind of simulation.
TARGETS = {"overlay": (10_000, 300, 2 << 30), "gossip": (100_000, 600, 4 << 30)}


def run_sim(
    kind: str, nodes: int, lookups: int, seed: int, tree: str | None, nice: int
) -> dict[str, Any]:
    """One ``dhtkit sim`` in a child process: its wall and CPU time, peak RSS and report."""
    argv = [sys.executable, "-m", "dhtkit.cli", "sim", kind, "--nodes", str(nodes)]
    argv += ["--seed", str(seed), "--json"]
    if kind != "gossip":
        argv += ["--lookups", str(lookups)]
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    start = time.perf_counter()
    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, env=env, preexec_fn=lambda: os.nice(nice)
    )
    assert child.stdout is not None
    out = child.stdout.read()
    child.stdout.close()
    # Reaped here, not by Popen, for the child's own resource usage.
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall_s = time.perf_counter() - start
    report = json.loads(out) if child.returncode == 0 else None
    return {
        "sim": kind,
        "nodes": nodes,
        "wall_s": wall_s,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "status": child.returncode,
        "report": report,
    }


def run_sims(
    kinds: list[str], sizes: list[int], seed: int, tree: str | None, nice: int
) -> list[dict[str, Any]]:
    rows = []
    print("dhtkit sim, one process each (lookups = nodes)")
    print(
        "  {:>9}  {:>8}  {:>9}  {:>9}  {:>10}  {:>8}  {}".format(
            "sim", "nodes", "wall s", "CPU s", "peak MiB", "hops", "target"
        )
    )
    for kind in kinds:
        for nodes in sizes:
            row = run_sim(kind, nodes, nodes, seed, tree, nice)
            rows.append(row)
            target_nodes, target_s, target_bytes = TARGETS[
                "gossip" if kind == "gossip" else "overlay"
            ]
            report = row["report"] or {}
            hops = report.get("hops", {}).get("mean", report.get("rounds"))
            rss = row["peak_rss_bytes"]
            print(
                "  {:>9}  {:>8,}  {:>9.1f}  {:>9.1f}  {:>10}  {:>8}  {}".format(
                    kind,
                    nodes,
                    row["wall_s"],
                    row["cpu_s"],
                    "?" if rss is None else "{:,.0f}".format(rss / 2**20),
                    "-" if hops is None else "{:.2f}".format(hops),
                    "{} s / {:.0f} GiB at {:,}".format(target_s, target_bytes / 2**30, target_nodes)
                    if nodes == target_nodes
                    else "",
                ),
                flush=True,
            )
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--peers", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sims", help="comma-separated: kademlia,chord,pastry,gossip")
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated node counts")
    parser.add_argument("--tree", help="run the dhtkit of this checkout instead")
    parser.add_argument("--nice", type=int, default=10, help="niceness of each run (default 10)")
    args = parser.parse_args(argv)
    if args.sims:
        rows = run_sims(
            args.sims.split(","),
            [int(n) for n in args.sizes.split(",")],
            args.seed,
            args.tree,
            args.nice,
        )
        if args.json:
            print(json.dumps(rows))
        return 0
    if args.nodes < 2 or not 1 <= args.peers < args.nodes:
        parser.error("need --nodes >= 2 and 1 <= --peers < --nodes")

    # The network first: its memory is measured before the clocks' million
    # timers have grown the heap.
    sim = rpc_network(args.nodes, args.peers, args.seed)
    clocks = compare_clocks([1_000, 5_000, 20_000, 100_000, 1_000_000], baseline_limit=20_000)
    print("timers: schedule, cancel a third, run the rest (wall seconds)")
    print("  {:>9}  {:>10}  {:>10}  {:>8}".format("timers", "HeapClock", "task.Clock", "speed-up"))
    for row in clocks:
        base = row["task_clock_s"]
        print(
            "  {:>9,}  {:>10.3f}  {:>10}  {:>8}".format(
                row["timers"],
                row["heap_clock_s"],
                "-" if base is None else "{:.3f}".format(base),
                "-" if base is None else "{:.0f}x".format(base / row["heap_clock_s"]),
            )
        )

    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(
        "{nodes:,} RPC nodes on the virtual network: {calls:,} calls "
        "({answered:,} answered, {failed:,} failed), {datagrams:,} datagrams".format(**sim)
    )
    print(
        "  setup {setup_s:.1f} s; total wall {wall_s:.1f} s for {simulated_s:.2f} simulated s; "
        "{events:,} clock events, {events_per_s:,.0f} per wall second".format(**sim)
    )
    per_node = sim["bytes_per_node"]
    print(
        "  memory: {} per node (resident growth), peak RSS {:.0f} MiB".format(
            "?" if per_node is None else "{:,.0f} bytes".format(per_node), peak_rss_mib
        )
    )
    if args.json:
        print(json.dumps({"clocks": clocks, "rpc_network": sim, "peak_rss_mib": peak_rss_mib}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
