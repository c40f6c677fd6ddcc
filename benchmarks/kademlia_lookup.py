"""Kademlia on N real nodes: dhtkit's KademliaService against PyPI ``kademlia``.

Run from the repository root::

    python benchmarks/kademlia_lookup.py [--nodes 100] [--puts 200] [--gets 200]
                                         [--repeat 1] [--seed 1] [--json]
                                         [--kind plain|immutable|signed] [--store sqlite|memory]
                                         [--kill 0.33 [--silent]] [--replication R]
                                         [--read-quorum Q]

One scenario, run once with each library, N nodes in one process per
library, each node on its own UDP port on 127.0.0.1:

1. bootstrap: node 0 starts alone; then, one at a time, each node starts and
   joins through a random earlier node. Measured: the wall time of the whole
   bootstrap, and each node's join (from starting it until its join is done);
2. P puts of distinct keys, one at a time, each from a random node;
3. G gets of those keys (cycling through them), one at a time, each from a
   random node other than the one that put the key; a get succeeds when it
   returns exactly the value put;
4. with ``--kill F``: a fraction F of the nodes (never node 0) stops at once,
   with no goodbye, and the G gets run again from the nodes left: reads must
   not stall on dead replicas (the target is a get p50 within 2x of the
   healthy one). A stopped node's closed port answers with an ICMP error,
   which dhtkit's sockets hear (:mod:`dhtkit.udpport`); with ``--silent``
   a socket that never reads holds each stopped node's port instead, so
   that nothing says the node is gone, as when its host vanished.

Besides the latencies (p50, p95) and success rates it counts, per join, put
and get, the datagrams all the nodes received, and then the contacts in each
routing table, the nodes holding each value, the RPC timeouts, and the
datagrams the kernel dropped.

Both use k = 20 and alpha = 3, and each library's own defaults otherwise
(dhtkit: 2 s RPC timeout and one resend; kademlia: 5 s). The seed fixes
the node ids, who joins through whom, the keys, the values and who puts and
gets what, the same for both libraries. dhtkit stores plain values
(``put``/``get``, last writer wins, as kademlia's ``set``/``get``) unless
``--kind immutable``, or signed mutable values with ``--kind signed``
(``put_signed``/``get_signed``, one salt per key, a new version above the
newest found); ``--store memory`` takes SQLite out of its figures.
``--replication R`` stores each dhtkit value on R nodes instead of k;
``--read-quorum Q`` makes a dhtkit get read Q copies instead of 3 (1 is
kademlia's rule: the first copy found, or the reader's own).

The closing lines print the issue's targets as ratios dhtkit / kademlia
(put p50 at most 0.5, get p50 at most 1.0, every operation succeeding) and
the get p50 after the kill against the healthy one (at most 2).

dhtkit authenticates every datagram and keeps every record in SQLite (one
file per node, in a temporary directory); ``kademlia`` 2.2.3 (asyncio, on
``rpcudp``) authenticates nothing and keeps values in memory. It is an
optional extra: ``pip install -e .[bench]``; without it only dhtkit runs.

Each library runs in a subprocess of this script (``--side ours|kademlia``,
which prints one JSON line), because the Twisted reactor and asyncio each
want the process; with ``--repeat`` the two take turns.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
from machine import machine_busy_s  # benchmarks/machine.py
from rpc_throughput import BUSY_MACHINE_PCT, kademlia_missing, udp_socket_drops

try:
    import dhtkit  # noqa: F401
except ImportError:  # run from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HOST = "127.0.0.1"
K = 20
ALPHA = 3
SIDES = ("ours", "kademlia")
LABELS = {"ours": "dhtkit", "kademlia": "kademlia"}
#: Longer than any join or operation on loopback can take, retries included;
#: one that takes longer counts as failed rather than hanging the benchmark.
JOIN_LIMIT_S = 60.0
OP_LIMIT_S = 60.0
#: What one side's subprocess may take in all before it is stopped.
SIDE_LIMIT_S = 1800.0


# -- the scenario, the same for both --------------------------------------------------


@attrs.frozen
class Plan:
    """Who joins through whom, and who puts and gets what."""

    via: tuple[int | None, ...]  # the earlier node each node joins through
    names: tuple[str, ...]  # the keys' names
    values: tuple[bytes, ...]
    put_from: tuple[int, ...]
    get_key: tuple[int, ...]  # an index into names
    get_from: tuple[int, ...]
    killed: tuple[int, ...] = ()  # the nodes stopped before the gets run again
    get_again_from: tuple[int, ...] = ()  # who gets each key then (a node left)


def make_plan(
    nodes: int, puts: int, gets: int, seed: int, value_size: int, kill: float = 0.0
) -> Plan:
    rng = random.Random(seed)
    via = (None, *(rng.randrange(n) for n in range(1, nodes)))
    values = tuple(rng.randbytes(value_size) for _ in range(puts))
    put_from = tuple(rng.randrange(nodes) for _ in range(puts))
    get_key = tuple(n % puts for n in range(gets))
    get_from = []
    for key in get_key:
        other = rng.randrange(nodes - 1)  # any node but the one that put it
        get_from.append(other + (other >= put_from[key]))
    killed = tuple(sorted(rng.sample(range(1, nodes), round(kill * nodes)))) if kill else ()
    left = [n for n in range(nodes) if n not in set(killed)]
    get_again_from = tuple(rng.choice(left) for _ in get_key) if killed else ()
    return Plan(
        via,
        tuple("kbench-{}-{}".format(seed, n) for n in range(puts)),
        values,
        put_from,
        get_key,
        tuple(get_from),
        killed,
        get_again_from,
    )


class Network(Protocol):
    """One library's nodes, as the scenario drives them."""

    async def start_node(self, index: int, via: int | None) -> bool:
        """Start node ``index`` and join through node ``via``; False if it failed."""

    async def put(self, node: int, name: str, value: bytes) -> bool:
        """Put from node ``node``; False (or an exception) if it failed."""

    async def get(self, node: int, name: str) -> bytes | None:
        """Get from node ``node``: the value, or None if it was not found."""

    def holds(self, node: int, name: str) -> bool:
        """Whether the node holds a copy of the value."""

    def contacts(self, node: int) -> int:
        """How many contacts the node's routing table holds."""

    def datagrams(self) -> int:
        """Datagrams all the nodes have received so far."""

    def timeouts(self) -> int:
        """Calls all the nodes have given up on (after any resends) so far."""

    def refused(self) -> dict[str, int]:
        """Datagrams the nodes refused (dhtkit: rate limit, authentication...), by cause."""

    def ports(self) -> list[int]: ...

    async def kill(self, node: int) -> None:
        """Stop node ``node`` at once, with no goodbye."""

    async def stop(self) -> None: ...


def hold_port(port: int) -> socket.socket:
    """A socket on a stopped node's port that never reads: what is sent
    there is lost without a word, as on a host that vanished (a closed port
    answers with an ICMP error, which dhtkit's sockets hear)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    return sock


def percentiles(samples: Sequence[float]) -> dict[str, float | None]:
    """p50, p95 and max in milliseconds (nearest rank: each is a measured value)."""
    ordered = sorted(samples)

    def rank(q: float) -> float | None:
        if not ordered:
            return None
        return round(1000 * ordered[max(0, math.ceil(q * len(ordered)) - 1)], 2)

    return {"p50": rank(0.5), "p95": rank(0.95), "max": rank(1.0)}


async def run_scenario(net: Network, plan: Plan, silent: bool = False) -> dict[str, Any]:
    """Bootstrap, put, get, stop; what was measured, as JSON-ready data."""
    busy0, cpu0, start = machine_busy_s(), time.process_time(), time.perf_counter()
    joins: list[float] = []
    joined = 0
    for index, via in enumerate(plan.via):
        began = time.perf_counter()
        ok = await net.start_node(index, via)
        if via is not None:  # node 0 joins no one
            joins.append(time.perf_counter() - began)
            joined += ok
    bootstrap_s = time.perf_counter() - start
    after_join = (net.datagrams(), net.timeouts())
    progress("bootstrapped in {:.1f} s".format(bootstrap_s))

    put_s: list[float] = []
    put_failed: Counter[str] = Counter()
    for name, value, node in zip(plan.names, plan.values, plan.put_from, strict=True):
        began = time.perf_counter()
        try:
            if not await net.put(node, name, value):
                put_failed["refused"] += 1
        except Exception as e:
            put_failed[type(e).__name__] += 1
        put_s.append(time.perf_counter() - began)
    after_put = (net.datagrams(), net.timeouts())
    nodes = range(len(plan.via))
    holders = [sum(net.holds(n, name) for n in nodes) for name in plan.names]
    progress("{} puts done".format(len(plan.names)))

    get_s, got, local = await run_gets(net, plan, plan.get_from)
    after_get = (net.datagrams(), net.timeouts())
    contacts = [net.contacts(n) for n in nodes]
    drops = udp_socket_drops(net.ports())
    refused = net.refused()
    after_kill: dict[str, Any] = {}
    if plan.killed:
        held = []
        ports = net.ports()  # a stopped node has none
        for node in plan.killed:
            await net.kill(node)
            if silent:
                held.append(hold_port(ports[node]))
        progress("{} nodes stopped".format(len(plan.killed)))
        again_s, again, _ = await run_gets(net, plan, plan.get_again_from)
        after_again = (net.datagrams(), net.timeouts())
        for sock in held:
            sock.close()
        after_kill = {
            "killed": len(plan.killed),
            "get_ms": percentiles(again_s),
            "gets_ok": again["right"],
            "gets": len(again_s),
            "get_outcomes": dict(again),
            "datagrams_per_get": round((after_again[0] - after_get[0]) / len(again_s), 1),
            "timeouts": after_again[1] - after_get[1],
            "silent": silent,
        }
    wall_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu0
    busy1 = machine_busy_s()
    await net.stop()

    joins_done = len(plan.via) - 1
    return {
        "bootstrap_s": round(bootstrap_s, 3),
        "join_ms": percentiles(joins),
        "joined": joined,
        "joins": joins_done,
        "contacts_per_node": round(statistics.mean(contacts), 1),
        "datagrams_per_join": round(after_join[0] / max(1, joins_done), 1),
        "put_ms": percentiles(put_s),
        "puts_ok": len(put_s) - sum(put_failed.values()),
        "puts": len(put_s),
        "put_failures": dict(put_failed),
        "holders_per_value": round(statistics.mean(holders), 1),
        "datagrams_per_put": round((after_put[0] - after_join[0]) / len(put_s), 1),
        "get_ms": percentiles(get_s),
        "gets_ok": got["right"],
        "gets": len(get_s),
        "get_outcomes": dict(got),
        "gets_by_a_holder": local,
        "datagrams_per_get": round((after_get[0] - after_put[0]) / max(1, len(get_s)), 1),
        "timeouts": {
            "bootstrap": after_join[1],
            "put": after_put[1] - after_join[1],
            "get": after_get[1] - after_put[1],
        },
        "kernel_drops": drops,
        "refused": refused,
        "after_kill": after_kill,
        "wall_s": round(wall_s, 3),
        "process_cpu_pct": round(100 * cpu_s / wall_s, 1),
        # Whatever else the machine ran meanwhile: a busy neighbour skews figures.
        "other_cpu_pct": None
        if busy0 is None or busy1 is None
        else round(max(0.0, 100 * ((busy1 - busy0) - cpu_s) / wall_s), 1),
    }


async def run_gets(
    net: Network, plan: Plan, readers: Sequence[int]
) -> tuple[list[float], Counter[str], int]:
    """The plan's gets, one at a time, each from its reader: the latencies,
    the outcomes, and how many readers held a copy."""
    get_s: list[float] = []
    got: Counter[str] = Counter()
    local = 0
    for key, node in zip(plan.get_key, readers, strict=True):
        local += net.holds(node, plan.names[key])
        began = time.perf_counter()
        try:
            value = await net.get(node, plan.names[key])
            if value == plan.values[key]:
                got["right"] += 1
            else:
                got["missing" if value is None else "wrong"] += 1
        except Exception as e:
            got[type(e).__name__] += 1
        get_s.append(time.perf_counter() - began)
    return get_s, got, local


def progress(text: str) -> None:
    print("  " + text, file=sys.stderr, flush=True)


# -- dhtkit ------------------------------------------------------------------------------


class DhtkitNetwork:
    """KademliaService nodes on the global reactor, data dirs under ``root``."""

    def __init__(
        self,
        reactor: Any,
        root: Path,
        seed: int,
        store: str,
        kind: str,
        replication: int | None = None,
        read_quorum: int | None = None,
    ) -> None:
        self.reactor = reactor
        self.kind = kind
        self.replication = replication
        self.node_options: dict[str, int] = {}
        if replication is not None:
            self.node_options["replication"] = replication
        if read_quorum is not None:
            self.node_options["read_quorum"] = read_quorum
        self.root = root
        self.ids = random.Random("ids-{}".format(seed))
        self.memory = store == "memory"
        self.immutable = kind == "immutable"
        self.services: list[Any] = []
        self.keys: dict[str, bytes] = {}  # each name's key
        self.signers: dict[str, bytes] = {}  # for signed values, each name's public key
        self.rpcs: list[Any] = []

    async def start_node(self, index: int, via: int | None) -> bool:
        from twisted.internet import defer

        from dhtkit.identity import Identity
        from dhtkit.service import IDENTITY_FILE, KademliaService
        from dhtkit.storage import MemoryStore

        data_dir = self.root / "node{}".format(index)
        data_dir.mkdir(mode=0o700)
        # A seeded key, so that the same seed gives the same ids.
        Identity(self.ids.randbytes(32)).save(data_dir / IDENTITY_FILE)
        svc = KademliaService(
            0,
            HOST,
            data_dir,
            [] if via is None else [self.services[via].address],
            k=K,
            alpha=ALPHA,
            reactor=self.reactor,
            store=MemoryStore() if self.memory else None,
            rng=random.Random(self.ids.random()),
            node_options=self.node_options or None,
        )
        svc.startService()
        self.services.append(svc)
        self.rpcs.append(svc.rpc)  # its counters outlive a kill
        try:
            await svc.when_joined().addTimeout(JOIN_LIMIT_S, self.reactor)
        except defer.TimeoutError:
            return False
        return True

    async def put(self, node: int, name: str, value: bytes) -> bool:
        from dhtkit.keyspace import key_for
        from dhtkit.values import immutable_key

        dht = self.services[node].node
        if self.immutable:  # stored under the value's hash
            self.keys[name] = immutable_key(value)
            put = dht.put_immutable(value)
        elif self.kind == "signed":  # the putting node's key, the name as the salt
            from dhtkit.values import signed_key

            salt = name.encode()
            self.signers[name] = dht.identity.public_key
            self.keys[name] = signed_key(dht.identity.public_key, salt)
            put = dht.put_signed(value, salt)
        else:
            self.keys[name] = key_for(name)
            put = dht.put(self.keys[name], value)
        await put.addTimeout(OP_LIMIT_S, self.reactor)
        return True  # a put that fails raises

    async def get(self, node: int, name: str) -> bytes | None:
        dht = self.services[node].node
        if self.kind == "signed":
            get = dht.get_signed(self.signers[name], name.encode())
            found = await get.addTimeout(OP_LIMIT_S, self.reactor)
            return None if found is None else bytes(found.value)
        get = dht.get(self.keys[name])
        value: bytes | None = await get.addTimeout(OP_LIMIT_S, self.reactor)
        return value

    def holds(self, node: int, name: str) -> bool:
        return self.services[node].node.store.get(self.keys[name]) is not None

    def contacts(self, node: int) -> int:
        return len(self.services[node].overlay.contacts())

    def datagrams(self) -> int:
        return sum(rpc.stats()["received"] for rpc in self.rpcs)

    def timeouts(self) -> int:
        return sum(rpc.stats().get("timeouts", 0) for rpc in self.rpcs)

    def refused(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for rpc in self.rpcs:
            total.update({k: v for k, v in rpc.stats().items() if k.startswith("dropped_") and v})
        return dict(total)

    def ports(self) -> list[int]:
        return [s.address[1] for s in self.services]

    async def kill(self, node: int) -> None:
        await self.services[node].stopService()

    async def stop(self) -> None:
        from twisted.internet import defer

        await defer.gatherResults([s.stopService() for s in self.services if s.running])


def run_ours(args: argparse.Namespace) -> None:
    from twisted.internet import defer, task
    from twisted.logger import LogLevel, globalLogBeginner

    # Warnings and errors are counted and reported, not printed mid-table.
    logged: Counter[str] = Counter()

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level", LogLevel.info) >= LogLevel.warn:
            failure = event.get("log_failure")
            what = str(event.get("log_format") or event.get("log_text") or "?")
            if failure is not None:
                what += " ({})".format(failure.type.__name__)
            logged[what] += 1

    globalLogBeginner.beginLoggingTo([observe], discardBuffer=True, redirectStandardIO=False)
    plan = make_plan(args.nodes, args.puts, args.gets, args.seed, args.value_size, args.kill)

    async def main(reactor: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="kbench-dhtkit-") as root:
            net = DhtkitNetwork(
                reactor,
                Path(root),
                args.seed,
                args.store,
                args.kind,
                args.replication,
                args.read_quorum,
            )
            result = await run_scenario(net, plan, args.silent)
            # Sockets closed: let what the services were still sending fail and settle.
            await task.deferLater(reactor, 0.1)
        result["log_warnings"] = dict(logged)
        print(json.dumps(result), flush=True)

    def run(reactor: Any) -> defer.Deferred[None]:
        # The log observer above only counts, so a crash is printed here.
        return defer.Deferred.fromCoroutine(main(reactor)).addErrback(print_and_fail)

    task.react(run)


def print_and_fail(failure: Any) -> Any:
    failure.printTraceback(file=sys.stderr)
    return failure


# -- kademlia (PyPI) --------------------------------------------------------------------


class _LogCounter(logging.Handler):
    """Counts the records of kademlia and rpcudp by template, printing none."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts["{}: {}".format(record.name, record.msg)] += 1


class KademliaNetwork:
    """``kademlia.network.Server`` nodes on one asyncio loop."""

    def __init__(self, seed: int, log: _LogCounter) -> None:
        from kademlia.network import Server
        from kademlia.protocol import KademliaProtocol

        self.ids = random.Random("ids-{}".format(seed))
        self.log = log
        self.received = 0
        network = self

        class CountingProtocol(KademliaProtocol):  # type: ignore[misc]
            def datagram_received(self, data: bytes, addr: Any) -> None:
                network.received += 1
                super().datagram_received(data, addr)

        class CountingServer(Server):  # type: ignore[misc]
            protocol_class = CountingProtocol

        self.server_class = CountingServer
        self.servers: list[Any] = []
        self.addresses: list[tuple[str, int]] = []
        self.stopped: set[int] = set()

    async def start_node(self, index: int, via: int | None) -> bool:
        import asyncio

        server = self.server_class(ksize=K, alpha=ALPHA, node_id=self.ids.randbytes(20))
        await server.listen(0, interface=HOST)
        self.servers.append(server)
        self.addresses.append(server.transport.get_extra_info("sockname")[:2])
        if via is None:
            return True
        try:
            await asyncio.wait_for(server.bootstrap([self.addresses[via]]), JOIN_LIMIT_S)
        except asyncio.TimeoutError:
            return False
        # Its bootstrap reports no failure; a node that knows no one did not join.
        return self.contacts(index) > 0

    async def put(self, node: int, name: str, value: bytes) -> bool:
        import asyncio

        stored: bool = await asyncio.wait_for(self.servers[node].set(name, value), OP_LIMIT_S)
        return stored

    async def get(self, node: int, name: str) -> bytes | None:
        import asyncio

        value: bytes | None = await asyncio.wait_for(self.servers[node].get(name), OP_LIMIT_S)
        return value

    def holds(self, node: int, name: str) -> bool:
        from kademlia.utils import digest

        return digest(name) in self.servers[node].storage.data

    def contacts(self, node: int) -> int:
        return sum(len(b) for b in self.servers[node].protocol.router.buckets)

    def datagrams(self) -> int:
        return self.received

    def timeouts(self) -> int:
        return sum(n for what, n in self.log.counts.items() if "Did not receive reply" in what)

    def refused(self) -> dict[str, int]:
        return {}  # it checks nothing, so it refuses nothing

    def ports(self) -> list[int]:
        return [port for _, port in self.addresses]

    async def kill(self, node: int) -> None:
        import asyncio

        self.servers[node].stop()
        self.stopped.add(node)
        # The transport closes its socket on the loop's next turn: the port
        # is free (for --silent to hold) only after it.
        await asyncio.sleep(0)

    async def stop(self) -> None:
        for n, server in enumerate(self.servers):
            if n not in self.stopped:
                server.stop()


def run_kademlia(args: argparse.Namespace) -> None:
    import asyncio

    log = _LogCounter()
    root = logging.getLogger()
    root.addHandler(log)  # and so no last-resort printing to stderr
    root.setLevel(logging.WARNING)
    plan = make_plan(args.nodes, args.puts, args.gets, args.seed, args.value_size, args.kill)

    async def main() -> dict[str, Any]:
        net = KademliaNetwork(args.seed, log)
        result = await run_scenario(net, plan, args.silent)
        await asyncio.sleep(0.1)  # as for dhtkit: what was in flight settles
        return result

    result = asyncio.run(main())  # closes the loop, cancelling what is left
    result["log_warnings"] = dict(log.counts)
    print(json.dumps(result), flush=True)


# -- orchestration ----------------------------------------------------------------------


def run_side(side: str, repeat: int, args: argparse.Namespace) -> dict[str, Any]:
    """One run of the scenario with one library, in a fresh subprocess."""
    progress("{} run {}:".format(LABELS[side], repeat + 1))
    command = [sys.executable, str(Path(__file__).resolve()), "--side", side]
    for option in ("nodes", "puts", "gets", "seed", "value_size", "store", "kind", "kill"):
        command += ["--" + option.replace("_", "-"), str(getattr(args, option))]
    for option in ("replication", "read_quorum"):
        if getattr(args, option) is not None:
            command += ["--" + option.replace("_", "-"), str(getattr(args, option))]
    if args.silent:
        command.append("--silent")
    child = subprocess.run(
        command, stdout=subprocess.PIPE, text=True, check=False, timeout=SIDE_LIMIT_S
    )
    if child.returncode != 0 or not child.stdout.strip():
        raise SystemExit(
            "the {} run failed (exit status {})".format(LABELS[side], child.returncode)
        )
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    result.update(side=side, repeat=repeat)
    progress(
        "put p50 {} ms, get p50 {} ms, {} s in all".format(
            result["put_ms"]["p50"], result["get_ms"]["p50"], result["wall_s"]
        )
    )
    return result


#: The table's rows: label, how to read the figure from a run, how runs
#: combine ("median" of the runs, or "sum" of success counts), and whether a
#: ratio kademlia / dhtkit is shown (for times and datagrams: above 1, dhtkit
#: is faster or sends fewer).
Row = tuple[str, Callable[[dict[str, Any]], Any], str, bool]
ROWS: list[Row] = [
    ("bootstrap, all nodes (s)", lambda r: r["bootstrap_s"], "median", True),
    ("join p50 (ms)", lambda r: r["join_ms"]["p50"], "median", True),
    ("join p95 (ms)", lambda r: r["join_ms"]["p95"], "median", True),
    ("nodes joined", lambda r: (r["joined"], r["joins"]), "sum", False),
    ("contacts per node", lambda r: r["contacts_per_node"], "median", False),
    ("datagrams per join", lambda r: r["datagrams_per_join"], "median", True),
    ("put p50 (ms)", lambda r: r["put_ms"]["p50"], "median", True),
    ("put p95 (ms)", lambda r: r["put_ms"]["p95"], "median", True),
    ("puts that succeeded", lambda r: (r["puts_ok"], r["puts"]), "sum", False),
    ("nodes holding a value", lambda r: r["holders_per_value"], "median", False),
    ("datagrams per put", lambda r: r["datagrams_per_put"], "median", True),
    ("get p50 (ms)", lambda r: r["get_ms"]["p50"], "median", True),
    ("get p95 (ms)", lambda r: r["get_ms"]["p95"], "median", True),
    ("gets returning the value", lambda r: (r["gets_ok"], r["gets"]), "sum", False),
    ("gets by a node with a copy", lambda r: (r["gets_by_a_holder"], r["gets"]), "sum", False),
    ("datagrams per get", lambda r: r["datagrams_per_get"], "median", True),
    ("RPC timeouts", lambda r: sum(r["timeouts"].values()), "median", False),
    ("after the kill: nodes stopped", lambda r: _killed(r, "killed"), "median", False),
    ("  get p50 (ms)", lambda r: _killed(r, "get_ms", "p50"), "median", True),
    ("  get p95 (ms)", lambda r: _killed(r, "get_ms", "p95"), "median", True),
    (
        "  gets returning the value",
        lambda r: (
            None if not r["after_kill"] else (r["after_kill"]["gets_ok"], r["after_kill"]["gets"])
        ),
        "sum",
        False,
    ),
    ("  datagrams per get", lambda r: _killed(r, "datagrams_per_get"), "median", True),
    ("  RPC timeouts", lambda r: _killed(r, "timeouts"), "median", False),
    ("kernel drops", lambda r: r["kernel_drops"], "median", False),
    ("wall time of the run (s)", lambda r: r["wall_s"], "median", True),
    ("process CPU (% of wall)", lambda r: r["process_cpu_pct"], "median", False),
    ("other processes' CPU (%)", lambda r: r["other_cpu_pct"], "median", False),
]


def _killed(run: dict[str, Any], *path: str) -> Any:
    """A figure of the gets after the kill, or None without ``--kill``."""
    found: Any = run.get("after_kill") or None
    for step in path:
        if found is None:
            return None
        found = found.get(step)
    return found


def combine(runs: list[dict[str, Any]], read: Callable[[dict[str, Any]], Any], how: str) -> Any:
    """One row's figure for one side: the median of the runs with their range,
    or the success counts summed over the runs."""
    values = [read(r) for r in runs]
    if any(v is None for v in values) and how == "sum":
        return None
    if how == "sum":
        return [sum(v[0] for v in values), sum(v[1] for v in values)]
    if any(v is None for v in values):
        return None
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}


def summarize(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for label, read, how, with_ratio in ROWS:
        row: dict[str, Any] = {"metric": label}
        for side in report["sides"]:
            row[side] = combine([r for r in report["runs"] if r["side"] == side], read, how)
        ratio = None
        if with_ratio and row.get("ours") and row.get("kademlia") and row["ours"]["median"]:
            ratio = round(row["kademlia"]["median"] / row["ours"]["median"], 2)
        row["ratio"] = ratio
        rows.append(row)
    return rows


def fmt_cell(cell: Any, repeated: bool) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, list):
        ok, total = cell
        return "{:.1f}% ({}/{})".format(100 * ok / total if total else 0.0, ok, total)
    text = "{:,.4g}".format(cell["median"])
    if repeated and cell["min"] != cell["max"]:
        text += " ({:,.4g}-{:,.4g})".format(cell["min"], cell["max"])
    return text


def print_report(report: dict[str, Any]) -> None:
    repeated = report["repeat"] > 1
    sides = report["sides"]
    print()
    print(
        "Kademlia on {} nodes over {} (real UDP, one process per library), k={}, alpha={}, "
        "seed {}:".format(report["nodes"], HOST, K, ALPHA, report["seed"])
    )
    print(
        "{} puts, then {} gets, one at a time, {}-byte values (dhtkit: {}, {} store{}){}.".format(
            report["puts"],
            report["gets"],
            report["value_size"],
            report["kind"],
            report["store"],
            ""
            if report.get("read_quorum") is None
            else ", read quorum {}".format(report["read_quorum"]),
            "; median of {} runs (min-max)".format(report["repeat"]) if repeated else "",
        )
    )
    print()
    width = 26 if repeated else 16
    header = "  {:<26}".format("metric") + "".join(
        " {:>{w}}".format(LABELS[side], w=width) for side in sides
    )
    if "kademlia" in sides:
        header += " {:>7}".format("ratio")
    print(header)
    for row in report["summary"]:
        line = "  {:<26}".format(row["metric"]) + "".join(
            " {:>{w}}".format(fmt_cell(row[side], repeated), w=width) for side in sides
        )
        if "kademlia" in sides:
            line += " {:>7}".format("-" if row["ratio"] is None else "{:.2f}x".format(row["ratio"]))
        print(line)
    print_targets(report)
    print()
    if "kademlia" in sides:
        print("ratio = kademlia / dhtkit: above 1, dhtkit is faster (times) or sends fewer")
        print("datagrams; below 1, kademlia is.")
    else:
        print(
            "kademlia: not measured, it is not importable ({}).".format(report["kademlia_missing"])
        )
        print("To compare, install the optional extra: pip install -e .[bench]")
    print_notes(report)


def print_targets(report: dict[str, Any]) -> None:
    """The issue's targets, as ratios: dhtkit / kademlia, and after / before the kill."""
    rows = {row["metric"]: row for row in report["summary"]}

    def median(metric: str, side: str) -> float | None:
        cell = rows[metric].get(side)
        return None if not cell else cell["median"]

    def ratio(a: float | None, b: float | None) -> str:
        return "-" if a is None or not b else "{:.2f}".format(a / b)

    def success(side: str) -> str:
        cells = [rows[m].get(side) for m in ("puts that succeeded", "gets returning the value")]
        cells += [rows["  gets returning the value"].get(side)]
        ok = sum(c[0] for c in cells if c)
        total = sum(c[1] for c in cells if c)
        return "{:.1f}%".format(100 * ok / total) if total else "-"

    lines = []
    if "kademlia" in report["sides"]:
        for what, metric, target in (
            ("put p50", "put p50 (ms)", 0.5),
            ("get p50", "get p50 (ms)", 1.0),
        ):
            lines.append(
                "{} dhtkit / kademlia: {} (target <= {})".format(
                    what, ratio(median(metric, "ours"), median(metric, "kademlia")), target
                )
            )
    if report.get("kill"):
        for side in report["sides"]:
            lines.append(
                "{} get p50 after the kill{} / healthy: {} (target <= 2, dhtkit)".format(
                    LABELS[side],
                    " (ports held silent)" if report.get("silent") else "",
                    ratio(median("  get p50 (ms)", side), median("get p50 (ms)", side)),
                )
            )
    for side in report["sides"]:
        lines.append(
            "{} operations that succeeded: {} (target 100%)".format(LABELS[side], success(side))
        )
    print()
    print("Targets ({} values):".format(report["kind"]))
    for line in lines:
        print("  " + line)


def print_notes(report: dict[str, Any]) -> None:
    notes = [
        "dhtkit {} authenticates every datagram (a signed first exchange, then per-peer "
        "session MACs) and {}.".format(
            report["dhtkit_version"],
            "keeps every record in SQLite, one file per node (WAL; a STORE is answered once a"
            " thread of the reactor's pool has synced it to disk)"
            if report["store"] == "sqlite"
            else "here keeps records in memory (--store memory)",
        )
    ]
    if "kademlia" in report["sides"]:
        notes[0] += " kademlia {} does neither: no authentication, values in memory.".format(
            report["kademlia_version"]
        )
        notes.append(
            "dhtkit's join fills the buckets farther than its nearest neighbour that "
            "its self-lookup left empty (section 2.3 of the paper), and every node it "
            "meets first probes its address, hence more datagrams per join; "
            "kademlia's bootstrap is one lookup of its own id."
        )
        if report["kind"] in ("plain", "signed"):
            notes.append(
                "A dhtkit get of a {} value reads a quorum of copies (3 by default, its own "
                "counting as one) from the closest nodes, for the newest version, and repairs "
                "stale copies; a kademlia get returns the first copy found, and its own copy "
                "without any traffic when the node getting holds one. --kind immutable makes "
                "dhtkit's get stop at the first copy too.".format(report["kind"])
            )
            if report["kind"] == "signed":
                notes.append(
                    "A dhtkit put_signed first reads the newest version (its seq + 1 is the "
                    "new one), then stores; kademlia's set stores plain bytes."
                )
        else:
            notes.append(
                "dhtkit stores immutable values (under the value's hash): a get stops at the "
                "first copy, like kademlia's, which also returns its own copy without any "
                "traffic when the node getting holds one."
            )
    notes.append(
        "All the nodes of a side share one process and one thread: a latency includes the "
        "work of every node the operation reaches (CPU, and for dhtkit each replica's "
        "SQLite write and sync to disk, all on one disk), which a deployment spreads over "
        "machines."
    )
    print()
    print("To read it fairly:")
    for note in notes:
        print(textwrap.fill(note, 88, initial_indent="- ", subsequent_indent="  "))
    for side in report["sides"]:
        logged: Counter[str] = Counter()
        for run in report["runs"]:
            if run["side"] == side:
                logged.update(run["log_warnings"])
                logged.update({"refused datagrams, " + k: v for k, v in run["refused"].items()})
        if logged:
            print()
            print("{} logged or counted, over all runs:".format(LABELS[side]))
            for what, count in logged.most_common(8):
                print("  {:>6} x {}".format(count, what))
    busy = [
        r
        for r in report["runs"]
        if r["other_cpu_pct"] is not None and r["other_cpu_pct"] > BUSY_MACHINE_PCT
    ]
    if busy:
        print()
        print(
            "Warning: other processes used more than {}% CPU during {} of the {} runs, "
            "so their".format(BUSY_MACHINE_PCT, len(busy), len(report["runs"]))
        )
        print(
            "figures are unreliable. Rerun on a quiet machine, or with --repeat {}.".format(
                max(3, 2 * report["repeat"])
            )
        )


def orchestrate(args: argparse.Namespace) -> int:
    from dhtkit import __version__

    missing = kademlia_missing()
    sides = ["ours"] if missing else list(SIDES)
    report: dict[str, Any] = {
        "nodes": args.nodes,
        "puts": args.puts,
        "gets": args.gets,
        "value_size": args.value_size,
        "store": args.store,
        "kind": args.kind,
        "kill": args.kill,
        "silent": args.silent,
        "replication": args.replication,
        "read_quorum": args.read_quorum,
        "seed": args.seed,
        "repeat": args.repeat,
        "k": K,
        "alpha": ALPHA,
        "sides": sides,
        "dhtkit_version": __version__,
        "kademlia_version": None,
        "kademlia_missing": missing,
    }
    if missing:
        progress("kademlia is not importable ({}): running dhtkit only.".format(missing))
    else:
        from importlib.metadata import version

        report["kademlia_version"] = version("kademlia")
    runs = []
    for repeat in range(args.repeat):
        # Turn about, so that neither library always runs first.
        for side in sides if repeat % 2 == 0 else sides[::-1]:
            runs.append(run_side(side, repeat, args))
    report["runs"] = runs
    report["summary"] = summarize(report)
    print_report(report)
    if args.json:
        print()
        print(json.dumps(report, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100, help="nodes per library (default 100)")
    parser.add_argument("--puts", type=int, default=200, help="puts, one key each (default 200)")
    parser.add_argument("--gets", type=int, help="gets of the keys put (default: as many as puts)")
    parser.add_argument("--value-size", type=int, default=100, help="bytes per value (default 100)")
    parser.add_argument(
        "--store",
        choices=("sqlite", "memory"),
        default="sqlite",
        help="dhtkit's record store (default sqlite, what a service uses)",
    )
    parser.add_argument(
        "--kind",
        choices=("plain", "immutable", "signed"),
        default="plain",
        help="dhtkit's values: plain (put/get, last writer wins; the default) or "
        "immutable (put_immutable: under the value's hash; a get stops at the first copy) "
        "or signed (put_signed/get_signed)",
    )
    parser.add_argument(
        "--kill",
        type=float,
        default=0.0,
        help="then stop this fraction of the nodes at once and get again (e.g. 0.33)",
    )
    parser.add_argument(
        "--silent",
        action="store_true",
        help="with --kill: hold the stopped nodes' ports open, unread, so that no ICMP "
        "error says they are gone (a host that vanished, not a process that stopped)",
    )
    parser.add_argument(
        "--replication",
        type=int,
        help="dhtkit: nodes each value is stored on (default k)",
    )
    parser.add_argument(
        "--read-quorum",
        type=int,
        help="dhtkit: copies a get reads (default 3; 1 reads as kademlia does)",
    )
    parser.add_argument("--seed", type=int, default=1, help="the scenario's seed (default 1)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per library, taking turns; each figure is the median (default 1)",
    )
    parser.add_argument(
        "--json", action="store_true", help="also print everything as one JSON line"
    )
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.gets is None:
        args.gets = args.puts
    if args.nodes < 2 or args.puts < 1 or args.gets < 1 or args.repeat < 1:
        parser.error("--nodes must be at least 2, and --puts, --gets and --repeat at least 1")
    if args.silent and not args.kill:
        parser.error("--silent goes with --kill")
    if not 0 <= args.kill < 1 or any(
        v is not None and v < 1 for v in (args.replication, args.read_quorum)
    ):
        parser.error("--kill must be in [0, 1), and --replication and --read-quorum at least 1")
    if not 1 <= args.value_size <= 1000:
        parser.error("--value-size must be between 1 and 1000 bytes (one datagram)")
    if args.side == "ours":
        run_ours(args)
    elif args.side == "kademlia":
        run_kademlia(args)
    else:
        return orchestrate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
