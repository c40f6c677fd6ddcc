"""Structured overlays on the virtual network: the real code, thousands of nodes.

:class:`OverlayNetwork` starts N nodes of one overlay, each an unchanged
:class:`~dhtkit.rpc.RPCProtocol` with its own Ed25519 identity, the
overlay's routing on top and a :class:`~dhtkit.node.DHTNode` over it, on
one :class:`~dhtkit.sim.network.VirtualNetwork` driven by a
:class:`~dhtkit.sim.clock.HeapClock`. Nodes join through a random node that
has joined already, a batch at a time, as a network grows; every timer (a
Chord stabilization, a Kademlia refresh) runs on the one clock.

:func:`simulate` is what ``dhtkit sim kademlia|chord|pastry`` runs: build the
network, put values from random nodes, optionally remove a fraction of the
nodes at once and let the overlay repair itself, then look keys up from
random live nodes and read the values back. A lookup is *correct* when the
first node it names is the node truly responsible for the key, computed
from the global view only the simulator has; a read *succeeds* when it
returns the value that was put.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any, cast

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from dhtkit import overlays
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import from_int
from dhtkit.node import DHTNode
from dhtkit.overlay import IRoutingOverlay, JoinFailed, LookupFailed
from dhtkit.rpc import RPCProtocol
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.gossip import PORT, host_address
from dhtkit.sim.latency import ConstantLatency
from dhtkit.sim.network import VirtualNetwork
from dhtkit.storage import MemoryStore

#: The overlays the simulator runs: the registry's entries (owner rule,
#: theory line and settle time included).
OVERLAYS = overlays.OVERLAYS


@attrs.define
class SimNode:
    """One simulated node: its host, RPC layer, overlay and value layer."""

    host: str
    rpc: RPCProtocol
    overlay: IRoutingOverlay
    node: DHTNode
    up: bool = True

    @property
    def node_id(self) -> bytes:
        return self.rpc.identity.node_id

    @property
    def contact(self) -> Contact:
        """How other nodes reach this one (it listens from the start)."""
        contact = self.rpc.contact
        assert contact is not None
        return contact


class OverlayNetwork:
    """N nodes of one overlay on one virtual network.

    :param kind: a key of :data:`OVERLAYS`.
    :param seed: every random choice (identities, hosts, keys) follows it.
    :param loss: the fraction of datagrams lost.
    :param overlay_options: keyword arguments for the overlay.
    :param node_options: keyword arguments for :class:`DHTNode`.
    """

    def __init__(
        self,
        kind: str,
        *,
        seed: int = 1,
        loss: float = 0.0,
        latency: float = 0.01,
        timeout: float = 1.0,
        overlay_options: dict[str, Any] | None = None,
        node_options: dict[str, Any] | None = None,
    ) -> None:
        self.kind = OVERLAYS[kind]
        self.rng = random.Random(seed)
        self.clock = HeapClock(now=1_800_000_000.0)
        self.network = VirtualNetwork(
            cast(IReactorTime, self.clock), latency=ConstantLatency(latency), loss=loss, seed=seed
        )
        self.timeout = timeout
        self.overlay_options = dict(overlay_options or {})
        self.node_options = dict(node_options or {})
        self.nodes: list[SimNode] = []

    # -- running the clock ------------------------------------------------------

    def wait(self, d: defer.Deferred[Any], limit: float = 3600.0) -> Any:
        """Run the clock until ``d`` fires; its result (or its exception, raised)."""
        results: list[Any] = []
        d.addBoth(results.append)
        deadline = self.clock.seconds() + limit
        while not results and self.clock.seconds() <= deadline and self.clock.step():
            pass
        if not results:
            raise RuntimeError("still waiting after {} s of virtual time".format(limit))
        result = results[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, every timer running."""
        self.clock.run_until(self.clock.seconds() + seconds)

    # -- nodes --------------------------------------------------------------------

    def add_node(self, host: str | None = None, identity: Identity | None = None) -> SimNode:
        """A new node, started but not joined: on ``host`` (else the next host
        of the network) and with ``identity`` (else a random one)."""
        if host is None:
            host = host_address(len(self.nodes))
        reactor = self.network.reactor_for(host)
        rpc = RPCProtocol(
            identity if identity is not None else Identity(self.rng.randbytes(32)),
            reactor,
            timeout=self.timeout,
            rng=random.Random(self.rng.random()),
        )
        reactor.listenUDP(PORT, rpc)
        overlay = self.kind.factory(
            rpc, clock=reactor, rng=random.Random(self.rng.random()), **self.overlay_options
        )
        node = DHTNode(rpc, overlay, MemoryStore(), clock=reactor, **self.node_options)
        overlay.start()
        node.start()
        sim = SimNode(host, rpc, overlay, node)
        self.nodes.append(sim)
        return sim

    def grow(self, count: int, batch: int = 25) -> None:
        """Add ``count`` nodes, each joining through a random joined node."""
        if not self.nodes:
            first = self.add_node()
            self.wait(first.overlay.join([]))
            count -= 1
        while count > 0:
            joined = [n for n in self.nodes if n.up]
            newcomers = [self.add_node() for _ in range(min(batch, count))]
            count -= len(newcomers)
            joins = [self._join(n, joined, attempts=5) for n in newcomers]
            self.wait(defer.gatherResults(joins, consumeErrors=True))
        self.advance(self.kind.settle)

    def _join(self, node: SimNode, joined: list[SimNode], attempts: int) -> defer.Deferred[int]:
        # With datagram loss a join can fail (a ping and its retry both
        # lost): try again through another node, as an operator would.
        d = node.overlay.join([(self.rng.choice(joined).host, PORT)])
        if attempts > 1:

            def again(failure: Failure) -> defer.Deferred[int] | Failure:
                if not isinstance(failure.value, JoinFailed):
                    return failure
                return self._join(node, joined, attempts - 1)

            d.addErrback(again)
        return d

    def remove(self, fraction: float) -> list[SimNode]:
        """Take ``fraction`` of the live nodes off the network at once (no goodbye)."""
        live = self.live()
        gone = self.rng.sample(live, round(len(live) * fraction))
        for n in gone:
            n.up = False
            self.network.set_down(n.host)
            n.node.stop()
            n.overlay.stop()
        return gone

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes if n.up]

    def owner(self, key: bytes) -> bytes:
        """The live node truly responsible for ``key``."""
        return self.kind.owner(key, [n.node_id for n in self.live()])


def _percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))])


def simulate(
    kind: str,
    nodes: int,
    lookups: int,
    *,
    seed: int = 1,
    churn: float = 0.0,
    loss: float = 0.0,
    overlay_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one scenario; the JSON ``dhtkit sim`` prints (see the module docstring)."""
    started = time.perf_counter()
    net = OverlayNetwork(kind, seed=seed, loss=loss, overlay_options=overlay_options)
    net.grow(nodes)
    built = time.perf_counter()
    values: list[tuple[bytes, bytes]] = []
    for i in range(lookups):
        key = from_int(net.rng.getrandbits(160))
        value = b"value %d" % i
        writer = net.rng.choice(net.live())
        try:
            net.wait(writer.node.put(key, value))
            values.append((key, value))
        except Exception:
            values.append((key, value))
    if churn:
        net.remove(churn)
        net.advance(net.kind.settle)
    hops: list[int] = []
    messages: list[int] = []
    correct = found = 0
    for key, value in values:
        reader = net.rng.choice(net.live())
        try:
            lookup = net.wait(reader.overlay.lookup(key, 1))
        except LookupFailed:
            continue  # neither correct nor found
        hops.append(lookup.hops)
        messages.append(lookup.messages)
        correct += bool(lookup.contacts) and lookup.contacts[0].node_id == net.owner(key)
        try:
            found += net.wait(reader.node.get(key)) == value
        except Exception:  # noqa: S110 (a read that fails is a miss)
            pass
    count = max(len(values), 1)
    return {
        "overlay": kind,
        "nodes": nodes,
        "lookups": len(values),
        "seed": seed,
        "churn": churn,
        "loss": loss,
        "success_rate": found / count,
        "correct_rate": correct / count,
        "hops": {
            "mean": statistics.fmean(hops) if hops else 0.0,
            "p50": _percentile(hops, 0.5) if hops else 0.0,
            "p95": _percentile(hops, 0.95) if hops else 0.0,
            "max": max(hops, default=0),
        },
        "theory": dict(zip(("label", "hops"), net.kind.theory(nodes), strict=True)),
        "messages_per_lookup": statistics.fmean(messages) if messages else 0.0,
        "datagrams": net.network.counters.get("sent", 0),
        "build_s": built - started,
        "wall_s": time.perf_counter() - started,
    }
