"""Structured overlays on the virtual network: the real code, thousands of nodes.

:class:`OverlayNetwork` starts N nodes of one overlay, each an unchanged
:class:`~dhtkit.rpc.RPCProtocol` with its own Ed25519 identity, the
overlay's routing on top and a :class:`~dhtkit.node.DHTNode` over it, on
one :class:`~dhtkit.sim.network.VirtualNetwork` driven by a
:class:`~dhtkit.sim.clock.HeapClock`. Nodes join through a random node that
has joined already, a batch at a time, as a network grows; every timer (a
Chord stabilization, a Kademlia refresh) runs on the one clock.

:func:`simulate` is what ``dhtkit sim kademlia|chord|pastry`` runs; the
scenario itself (build, run under churn, report) is :mod:`dhtkit.sim.scenario`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence, Set
from typing import Any, cast

import attrs
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from dhtkit import overlays
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.node import DHTNode
from dhtkit.overlay import IRoutingOverlay, JoinFailed
from dhtkit.rpc import RPCProtocol
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.gossip import PORT, host_address
from dhtkit.sim.latency import ConstantLatency, LatencyModel
from dhtkit.sim.network import VirtualNetwork
from dhtkit.storage import MemoryStore

#: The overlays the simulator runs: the registry's entries (owner rule,
#: theory line and settle time included).
OVERLAYS = overlays.OVERLAYS
#: Seconds of virtual time between two checks of whether a network settled.
SETTLE_CHECK = 1.0
#: How many times a node of a growing network tries to join, and the
#: seconds of virtual time between two tries.
JOIN_ATTEMPTS = 5
JOIN_RETRY_AFTER = 5.0


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
    :param latency: one-way seconds per datagram, or a :class:`~dhtkit.sim.latency.LatencyModel`.
    :param overlay_options: keyword arguments for the overlay.
    :param node_options: keyword arguments for :class:`DHTNode`.
    :param trusted: MACs and signatures go unchecked (see
        :class:`~dhtkit.transport.ITrustedNetwork`).
    """

    def __init__(
        self,
        kind: str,
        *,
        seed: int = 1,
        loss: float = 0.0,
        latency: float | LatencyModel = 0.01,
        timeout: float = 1.0,
        overlay_options: dict[str, Any] | None = None,
        node_options: dict[str, Any] | None = None,
        trusted: bool = False,
    ) -> None:
        self.kind = OVERLAYS[kind]
        self.rng = random.Random(seed)
        self.clock = HeapClock(now=1_800_000_000.0)
        self.network = VirtualNetwork(
            cast(IReactorTime, self.clock),
            latency=ConstantLatency(latency) if isinstance(latency, float | int) else latency,
            loss=loss,
            seed=seed,
            trusted=trusted,
        )
        self.timeout = timeout
        self.overlay_options = dict(overlay_options or {})
        self.node_options = dict(node_options or {})
        self.nodes: list[SimNode] = []
        #: Seconds of virtual time the last :meth:`settle` took.
        self.settled_after = 0.0
        #: Nodes that :meth:`grow` took down after every attempt to join failed.
        self.join_failures = 0

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

    def grow(
        self, count: int, batch: int = 25, joined: Callable[[int], object] | None = None
    ) -> None:
        """Add ``count`` nodes, each joining through a random joined node.

        :param joined: called with the number of nodes joined after each batch.
        """
        done = 0
        if not self.nodes:
            first = self.add_node()
            self.wait(first.overlay.join([]))
            count -= 1
            done += 1
            if joined is not None:
                joined(done)
        while count > 0:
            up = [n for n in self.nodes if n.up]
            newcomers = [self.add_node() for _ in range(min(batch, count))]
            count -= len(newcomers)
            joins = [
                self._join(n, up, attempts=JOIN_ATTEMPTS).addErrback(self._failed_join, n)
                for n in newcomers
            ]
            self.wait(defer.gatherResults(joins, consumeErrors=True))
            done += len(newcomers)
            if joined is not None:
                joined(done)
        self.settle()

    def _failed_join(self, failure: Failure, node: SimNode) -> Failure | None:
        # On a lossy network a node may fail every attempt: it stays out (a
        # node that cannot join is no member), and the report counts it.
        if not isinstance(failure.value, JoinFailed):
            return failure
        self.take_down(node)
        self.join_failures += 1
        return None

    def settle(self) -> float:
        """Let the network settle after it grew: the overlay's settle time,
        or less once its registry entry finds every live node's neighbours
        right (checked every :data:`SETTLE_CHECK` seconds). Returns the
        seconds of virtual time it took, also kept in :attr:`settled_after`."""
        limit, check = self.kind.settle, self.kind.settled
        began = self.clock.seconds()
        if check is None:
            self.advance(limit)
        else:
            while self.clock.seconds() - began < limit:
                if check([n.overlay for n in self.nodes if n.up]):
                    break
                self.advance(min(SETTLE_CHECK, began + limit - self.clock.seconds()))
        self.settled_after = self.clock.seconds() - began
        return self.settled_after

    def join(self, node: SimNode, joined: list[SimNode], attempts: int = 5) -> defer.Deferred[int]:
        """Join ``node`` through a random one of ``joined``, trying up to ``attempts`` of them."""
        return self._join(node, joined, attempts)

    def _join(self, node: SimNode, joined: list[SimNode], attempts: int) -> defer.Deferred[int]:
        # With datagram loss a join can fail (a ping and its retry both
        # lost): try again through another node a little later, as an
        # operator would. At once would meet the same route again: nodes of
        # the same batch that are still joining (or whose joins failed) may
        # be the nodes nearest our id, and answer that they have not joined.
        d = node.overlay.join([(self.rng.choice(joined).host, PORT)])
        if attempts > 1:

            def again(failure: Failure) -> defer.Deferred[int] | Failure:
                if not isinstance(failure.value, JoinFailed):
                    return failure
                later = task.deferLater(self.clock, JOIN_RETRY_AFTER, lambda: None)
                return later.addCallback(lambda _: self._join(node, joined, attempts - 1))

            d.addErrback(again)
        return d

    def remove(self, fraction: float) -> list[SimNode]:
        """Take ``fraction`` of the live nodes off the network at once (no goodbye)."""
        live = self.live()
        gone = self.rng.sample(live, round(len(live) * fraction))
        for n in gone:
            self.take_down(n)
        return gone

    def replace(
        self, count: int, spared: Sequence[SimNode] = (), first: Set[bytes] = frozenset()
    ) -> None:
        """``count`` live nodes leave without a word (never one of ``spared``;
        those whose ids are in ``first`` go first), and as many new ones join."""
        candidates = [n for n in self.live() if n not in spared]
        self.rng.shuffle(candidates)
        candidates.sort(key=lambda n: n.node_id not in first)
        for gone in candidates[:count]:
            self.take_down(gone)
        for _ in range(count):
            newcomer = self.add_node()
            self.wait(self.join(newcomer, [n for n in self.live() if n is not newcomer]))

    def take_down(self, node: SimNode) -> None:
        """Take ``node`` off the network for good, without a goodbye."""
        node.up = False
        self.network.set_down(node.host)
        node.node.stop()
        node.overlay.stop()

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes if n.up]

    def owner(self, key: bytes) -> bytes:
        """The live node truly responsible for ``key``."""
        return self.kind.owner(key, [n.node_id for n in self.live()])


def simulate(kind: str, nodes: int, lookups: int, **options: Any) -> dict[str, Any]:
    """Run one scenario and return the report ``dhtkit sim`` prints.

    The keyword arguments are :class:`~dhtkit.sim.scenario.Scenario`'s, and
    ``progress`` (a :class:`~dhtkit.sim.progress.Progress`).
    """
    # Here, not at the top: the scenario builds on this module's network.
    from dhtkit.sim import scenario

    progress = options.pop("progress", None)
    return scenario.simulate(scenario.Scenario(kind, nodes, lookups, **options), progress)
