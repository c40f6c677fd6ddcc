"""The HTTP API's cost: put and get through HTTP beside the same calls in Python.

    python benchmarks/http_api.py [--nodes 10] [--ops 300] [--concurrency 1 8] [--json]

``--nodes`` Kademlia nodes run in this one process, each on its own UDP
port on 127.0.0.1 (real sockets, SQLite stores in a temporary directory),
and the first serves the HTTP API (``dhtkit.web.make_site``) on a TCP port
on 127.0.0.1. The baseline is the same node's Python API: ``node.put`` and
``node.get``, awaited directly. Each operation is measured both ways, taking
turns in blocks of 50 so that a busy spell of the machine hits both, with
``--concurrency`` requests kept in flight (a closed loop); the HTTP client
is treq with persistent connections, in the same process and reactor. The
figures: operations per second and the latency p50 / p95 of each side, and
the HTTP overhead (HTTP time / Python time). Also: the time to render
``GET /metrics`` and ``GET /v1/status``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import treq
from machine import machine_busy_s  # benchmarks/machine.py
from twisted.internet import defer, task
from twisted.web.client import HTTPConnectionPool

from dhtkit import KademliaService, key_for
from dhtkit.web import make_site

BLOCK = 50
ROW = "{:<4} {:>3}  {:>9.0f} {:>8.2f} {:>8.2f}   {:>9.0f} {:>8.2f} {:>8.2f}   {:>7.2f}x"


async def start_network(reactor: Any, count: int, root: Path) -> list[KademliaService]:
    nodes: list[KademliaService] = []
    for n in range(count):
        bootstrap = [nodes[0].address] if nodes else []
        node = KademliaService(0, "127.0.0.1", root / "n{}".format(n), bootstrap, reactor=reactor)
        node.startService()
        await node.when_joined()
        nodes.append(node)
    return nodes


async def closed_loop(
    operation: Callable[[int], Awaitable[object]], first: int, count: int, concurrency: int
) -> list[float]:
    """Run ``operation(i)`` for ``count`` values of i, ``concurrency`` at a time."""
    latencies: list[float] = []
    next_index = first

    async def worker() -> None:
        nonlocal next_index
        while next_index < first + count:
            i, next_index = next_index, next_index + 1
            start = time.perf_counter()
            await operation(i)
            latencies.append(time.perf_counter() - start)

    await defer.DeferredList(
        [defer.Deferred.fromCoroutine(worker()) for _ in range(concurrency)],
        fireOnOneErrback=True,
        consumeErrors=True,
    )
    return latencies


def summary(latencies: list[float], wall: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "ops_per_s": len(ordered) / wall,
        "p50_ms": statistics.median(ordered) * 1e3,
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1e3,
    }


async def measure(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        nodes = await start_network(reactor, args.nodes, Path(tmp))
        port = reactor.listenTCP(0, make_site(nodes[0]), interface="127.0.0.1")
        url = "http://127.0.0.1:{}".format(port.getHost().port)
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = max(args.concurrency)
        node = nodes[0].node

        async def http_put(i: int) -> None:
            r = await treq.put(url + "/v1/values/bench-{}".format(i), b"v" * 100, pool=pool)
            assert r.code == 200, await r.text()
            await r.content()

        async def http_get(i: int) -> None:
            r = await treq.get(url + "/v1/values/bench-{}".format(i), pool=pool)
            assert r.code == 200, await r.text()
            await r.content()

        async def py_put(i: int) -> None:
            await node.put(key_for("bench-{}".format(i)), b"v" * 100)

        async def py_get(i: int) -> None:
            assert await node.get(key_for("bench-{}".format(i))) is not None

        results: dict[str, Any] = {"nodes": args.nodes, "ops": args.ops, "rows": []}
        busy_before, cpu_before, wall_before = machine_busy_s(), time.process_time(), time.time()
        for concurrency in args.concurrency:
            for what, via_http, via_python in (
                ("put", http_put, py_put),
                ("get", http_get, py_get),
            ):
                lat: dict[str, list[float]] = {"http": [], "python": []}
                wall = {"http": 0.0, "python": 0.0}
                for block in range(0, args.ops, BLOCK):
                    for side, operation in (("http", via_http), ("python", via_python)):
                        start = time.perf_counter()
                        lat[side] += await closed_loop(
                            operation, block, min(BLOCK, args.ops - block), concurrency
                        )
                        wall[side] += time.perf_counter() - start
                row = {"op": what, "concurrency": concurrency}
                for side in ("http", "python"):
                    row[side] = summary(lat[side], wall[side])
                row["overhead"] = row["http"]["p50_ms"] / row["python"]["p50_ms"]
                results["rows"].append(row)
        for path in ("/metrics", "/v1/status"):
            times = []
            for _ in range(100):
                start = time.perf_counter()
                r = await treq.get(url + path, pool=pool)
                await r.content()
                times.append(time.perf_counter() - start)
            results[path] = statistics.median(times) * 1e3
        wall_s = time.time() - wall_before
        busy_after = machine_busy_s()
        if busy_before is not None and busy_after is not None:
            own = time.process_time() - cpu_before
            results["others_cpu_pct"] = max(0.0, (busy_after - busy_before - own) / wall_s * 100)
        totals: dict[str, int] = {}
        for n in nodes:
            for name, value in n.rpc.stats().items():
                if name.startswith(("dropped", "timeouts", "retries")) and value:
                    totals[name] = totals.get(name, 0) + value
        results["rpc_trouble"] = totals
        await pool.closeCachedConnections()
        await port.stopListening()
        for n in nodes:
            await n.stopService()
        return results


def report(results: dict[str, Any]) -> None:
    print(
        "{} Kademlia nodes on 127.0.0.1; {} operations per row; HTTP through treq".format(
            results["nodes"], results["ops"]
        )
    )
    header = "{:<4} {:>3}  {:>9} {:>8} {:>8}   {:>9} {:>8} {:>8}   {:>8}"
    print(
        header.format(
            "op", "W", "http op/s", "p50 ms", "p95 ms", "py op/s", "p50 ms", "p95 ms", "overhead"
        )
    )
    for row in results["rows"]:
        h, p = row["http"], row["python"]
        print(
            ROW.format(
                row["op"],
                row["concurrency"],
                h["ops_per_s"],
                h["p50_ms"],
                h["p95_ms"],
                p["ops_per_s"],
                p["p50_ms"],
                p["p95_ms"],
                row["overhead"],
            )
        )
    print(
        "GET /metrics p50 {:.2f} ms; GET /v1/status p50 {:.2f} ms".format(
            results["/metrics"], results["/v1/status"]
        )
    )
    print("RPC drops and timeouts over all nodes: {}".format(results["rpc_trouble"] or "none"))
    if "others_cpu_pct" in results:
        print("other processes used {:.0f}% of a CPU meanwhile".format(results["others_cpu_pct"]))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    async def run(reactor: Any) -> None:
        results = await measure(reactor, args)
        if args.json:
            print(json.dumps(results))
        else:
            report(results)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main(sys.argv[1:])
