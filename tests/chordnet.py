"""Chord nodes on the virtual network: a ring built by real joins."""

from __future__ import annotations

import random
from typing import Any

import attrs
from twisted.internet import defer
from twisted.python.failure import Failure

from dhtkit.chord import ChordOverlay
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import in_interval
from dhtkit.node import DHTNode
from dhtkit.rpc import RPCProtocol
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.latency import ConstantLatency
from dhtkit.sim.network import VirtualNetwork
from dhtkit.storage import MemoryStore

START = 1_800_000_000.0


@attrs.define(eq=False)
class Peer:
    """One simulated node: its RPC layer, its overlay, its value layer if any."""

    host: str
    rpc: RPCProtocol
    overlay: ChordOverlay
    node: DHTNode | None = None

    @property
    def contact(self) -> Contact:
        contact = self.rpc.contact
        assert contact is not None
        return contact

    @property
    def node_id(self) -> bytes:
        return self.rpc.identity.node_id


class ChordNet:
    """Chord nodes on one virtual network and clock.

    ``overlay_options`` go to every :class:`ChordOverlay`; with ``values``
    each node also gets a :class:`DHTNode` over a :class:`MemoryStore`.
    """

    def __init__(self, seed: int = 1, values: bool = False, **overlay_options: Any) -> None:
        self.clock = HeapClock(now=START)
        self.network = VirtualNetwork(self.clock, latency=ConstantLatency(0.01), seed=seed)
        self.rng = random.Random(seed)
        self.values = values
        self.overlay_options = {
            "stabilize_every": 1.0,
            "fix_fingers_every": 2.0,
            "check_predecessor_every": 2.0,
            **overlay_options,
        }
        self.peers: list[Peer] = []
        self.joined: list[Peer] = []
        self.down: set[str] = set()

    def add(self) -> Peer:
        """A started node on a new host, not yet joined."""
        n = len(self.peers)
        host = "10.77.{}.{}".format(n // 250, n % 250 + 1)
        reactor = self.network.reactor_for(host)
        rpc = RPCProtocol(
            Identity(self.rng.randbytes(32)), reactor, timeout=1.0, rng=random.Random(n)
        )
        reactor.listenUDP(4000, rpc)
        overlay = ChordOverlay(
            rpc, clock=reactor, rng=random.Random(self.rng.random()), **self.overlay_options
        )
        overlay.start()
        peer = Peer(host, rpc, overlay)
        if self.values:
            peer.node = DHTNode(rpc, overlay, MemoryStore())
            peer.node.start()
        self.peers.append(peer)
        return peer

    def join(self, peer: Peer, through: Peer | None) -> defer.Deferred[int]:
        """Join ``peer`` through ``through`` (None: the first node)."""
        bootstrap = [] if through is None else [through.contact.address]
        d = peer.overlay.join(bootstrap)
        d.addCallback(self._joined, peer)
        return d

    def _joined(self, result: int, peer: Peer) -> int:
        self.joined.append(peer)
        return result

    def grow(self, count: int, settle: float = 5.0) -> None:
        """Add ``count`` nodes, each batch as large as the ring it joins
        (through random members), letting the ring settle between batches."""
        if not self.joined:
            self.wait(self.join(self.add(), None))
            count -= 1
        while count > 0:
            batch = min(count, len(self.joined))
            members = list(self.joined)
            joins = [self.join(self.add(), self.rng.choice(members)) for _ in range(batch)]
            self.wait(defer.gatherResults(joins, consumeErrors=True))
            count -= batch
            self.run(settle)

    def run(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass."""
        self.clock.run_until(self.clock.seconds() + seconds)

    def wait(self, d: defer.Deferred[Any], limit: float = 120.0) -> Any:
        """Run the clock until ``d`` fires; its result, or raise its failure."""
        results: list[Any] = []
        d.addBoth(results.append)
        end = self.clock.seconds() + limit
        while not results and self.clock.seconds() < end:
            self.clock.run_until(self.clock.seconds() + 0.1)
        assert results, "nothing happened within {} s".format(limit)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def take_down(self, peers: list[Peer]) -> None:
        """Cut ``peers`` off the network at once, as crashes would."""
        for peer in peers:
            peer.overlay.stop()
            if peer.node is not None:
                peer.node.stop()
            self.network.set_down(peer.host)
            self.down.add(peer.host)

    def alive(self) -> list[Peer]:
        """The joined peers that are up."""
        return [p for p in self.joined if p.host not in self.down]

    def ring(self) -> list[Peer]:
        """The live joined peers in ring order (by id)."""
        return sorted(self.alive(), key=lambda p: p.node_id)

    def wrong_links(self) -> list[str]:
        """Every live peer whose successor or predecessor is not the true one."""
        ring = self.ring()
        wrong = []
        for i, peer in enumerate(ring):
            successor = ring[(i + 1) % len(ring)]
            predecessor = ring[i - 1]
            state = peer.overlay.state
            first = state.successors.first
            if len(ring) > 1 and (first is None or first.node_id != successor.node_id):
                wrong.append("{} successor".format(peer.host))
            pred = state.predecessor
            if len(ring) > 1 and (pred is None or pred.node_id != predecessor.node_id):
                wrong.append("{} predecessor".format(peer.host))
        return wrong

    def responsible(self, key: bytes, count: int) -> list[bytes]:
        """The ids of the ``count`` live nodes responsible for ``key``, by the sorted ids."""
        ring = [p.node_id for p in self.ring()]
        start = next(
            (i for i, node_id in enumerate(ring) if in_interval(key, ring[i - 1], node_id,
                                                                 include_end=True)),
            0,
        )  # fmt: skip
        return [ring[(start + i) % len(ring)] for i in range(min(count, len(ring)))]
