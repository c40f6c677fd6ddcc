"""Chord rings on the simulator's :class:`OverlayNetwork`, and the oracles the tests check them by.

The network, the nodes and the clock are the simulator's; what is added
here is what only a test needs: a ring grown in batches as large as itself
(as the Chord paper's experiments grow it), and the true ring order,
successors and owners, computed from the global view, to compare every
node's own state against.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from dhtkit.keyspace import in_interval
from dhtkit.sim.overlays import OverlayNetwork, SimNode

#: One simulated node (its host, RPC layer, Chord overlay and value layer).
Peer = SimNode


class ChordNet(OverlayNetwork):
    """Chord nodes on one virtual network and clock, with quick maintenance rounds.

    ``overlay_options`` go to every :class:`~dhtkit.chord.ChordOverlay`.
    """

    def __init__(self, seed: int = 1, **overlay_options: Any) -> None:
        options = {
            "stabilize_every": 1.0,
            "fix_fingers_every": 2.0,
            "check_predecessor_every": 2.0,
            **overlay_options,
        }
        super().__init__("chord", seed=seed, timeout=1.0, overlay_options=options)
        self.joined: list[Peer] = []

    def add(self) -> Peer:
        """A started node on a new host, not yet joined."""
        return self.add_node()

    def join(self, peer: Peer, through: Peer | None) -> defer.Deferred[int]:
        """Join ``peer`` through ``through`` (None: the first node)."""
        bootstrap = [] if through is None else [through.contact.address]
        d = peer.overlay.join(bootstrap)
        d.addCallback(self._joined, peer)
        return d

    def _joined(self, result: int, peer: Peer) -> int:
        self.joined.append(peer)
        return result

    def grow(self, count: int, settle: float = 5.0) -> None:  # type: ignore[override]
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
        self.advance(seconds)

    def take_down(self, peers: list[Peer]) -> None:
        """Cut ``peers`` off the network at once, as crashes would."""
        for peer in peers:
            peer.up = False
            peer.overlay.stop()
            peer.node.stop()
            self.network.set_down(peer.host)

    def alive(self) -> list[Peer]:
        """The joined peers that are up."""
        return [p for p in self.joined if p.up]

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
            state = peer.overlay.state  # type: ignore[attr-defined]
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
