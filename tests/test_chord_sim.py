"""Chord at scale on the virtual network: a 1,000-node ring, its lookups, its values.

Hop convention (see :mod:`dhtkit.chord.lookup`): the nodes that answered
one after another on the way to the key's predecessor, the Chord paper's
path length, whose mean the paper finds to be about ½·log2 N.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer

from dhtkit.node import DHTNode
from tests.chordnet import ChordNet, Peer

NODES = 1000


class Ring:
    """A built network, and whether a test has damaged it."""

    def __init__(self, net: ChordNet) -> None:
        self.net = net
        self.damaged = False


@pytest.fixture(scope="module")
def _rings() -> Iterator[dict[str, Ring]]:
    yield {}


@pytest.fixture
def ring(_rings: dict[str, Ring]) -> Ring:
    """The 1,000-node ring with a value layer, built by real joins once per
    module (rebuilt if a test damaged it)."""
    built = _rings.get("ring")
    if built is None or built.damaged:
        net = ChordNet(seed=11)
        # Each batch as large as the ring it joins, through random members.
        net.grow(NODES, settle=3.0)
        net.run(4)
        built = _rings["ring"] = Ring(net)
    return built


def node_of(peer: Peer) -> DHTNode:
    assert peer.node is not None
    return peer.node


def gather(net: ChordNet, calls: list[defer.Deferred[Any]]) -> list[Any]:
    return list(net.wait(defer.gatherResults(calls, consumeErrors=True), limit=600))


def test_after_stabilization_every_successor_and_predecessor_is_right(ring: Ring) -> None:
    net = ring.net
    assert len(net.joined) == NODES
    assert net.wrong_links() == []
    # and every successor list starts with the next k nodes, the replicas
    # of the keys its node is the predecessor of (its tail, refreshed one
    # node per round, takes longer).
    ids = [p.node_id for p in net.ring()]
    k = net.joined[0].overlay.k
    for i, peer in enumerate(net.ring()):
        expected = [ids[(i + j) % len(ids)] for j in range(1, k + 1)]
        assert peer.overlay.state.successors.ids()[:k] == expected


def test_mean_lookup_hops_is_within_15_percent_of_half_log2_n(ring: Ring) -> None:
    net = ring.net
    rng = random.Random(12)
    keys = [rng.randbytes(20) for _ in range(1000)]
    askers = [rng.choice(net.joined) for _ in keys]
    found = gather(net, [p.overlay.lookup(key, 1) for p, key in zip(askers, keys, strict=True)])
    assert [f.contacts[0].node_id for f in found] == [net.responsible(k, 1)[0] for k in keys]
    mean = statistics.fmean(f.hops for f in found)
    theory = 0.5 * math.log2(NODES)
    assert abs(mean - theory) <= 0.15 * theory, (mean, theory)
    assert all(f.timeouts == 0 for f in found)


def test_with_a_fifth_of_the_nodes_gone_at_once_99_percent_of_values_are_found(
    ring: Ring,
) -> None:
    net = ring.net
    ring.damaged = True
    rng = random.Random(13)
    values = {rng.randbytes(20): rng.randbytes(40) for _ in range(1000)}
    writers = [rng.choice(net.joined) for _ in values]
    stored = gather(
        net,
        [node_of(p).put(key, v) for p, (key, v) in zip(writers, values.items(), strict=True)],
    )
    k = net.joined[0].overlay.k
    assert all(replicas == k for replicas in stored)
    net.take_down(rng.sample(net.joined, NODES // 5))
    net.run(15)  # the ring stabilizes around the gaps
    assert net.wrong_links() == []
    live = net.alive()
    readers = [rng.choice(live) for _ in values]
    got = gather(net, [node_of(p).get(key) for p, key in zip(readers, values, strict=True)])
    found = sum(g == v for g, v in zip(got, values.values(), strict=True))
    assert found >= 0.99 * len(values)


def test_a_join_moves_about_k_over_n_keys_not_all_of_them() -> None:
    net = ChordNet(seed=14)
    net.grow(40, settle=3.0)
    net.run(10)
    rng = random.Random(15)
    values = {rng.randbytes(20): rng.randbytes(20) for _ in range(800)}
    gather(net, [node_of(rng.choice(net.joined)).put(key, v) for key, v in values.items()])
    before = sum(node_of(p).stats()["handed_over"] for p in net.joined)
    newcomer = net.add()
    net.wait(net.join(newcomer, rng.choice(net.joined)))
    net.run(10)
    assert net.wrong_links() == []
    k = newcomer.overlay.k
    per_node = len(values) / len(net.joined)  # K/N
    # The keys whose successor it now is: about K/N; with their copies on
    # the k - 1 nodes after the successor, it holds about k·K/N.
    owned = {key for key in values if net.responsible(key, 1) == [newcomer.node_id]}
    due = {key for key in values if newcomer.node_id in net.responsible(key, k)}
    assert 0 < len(owned) < 3 * per_node
    assert 0 < len(due) < 3 * k * per_node
    held = {key for key in values if node_of(newcomer).store.get(key) is not None}
    assert held >= due  # every one of them was handed over...
    assert len(held) <= 1.5 * len(due)  # ...and little else: not all K keys
    # Each of the k nodes that held a key may send it, once: O(k·K/N)
    # transfers, not one per key stored.
    moved = sum(node_of(p).stats()["handed_over"] for p in net.joined) - before
    assert 0 < moved <= k * len(due)
    # Reads find every value, through the newcomer too.
    got = gather(net, [node_of(newcomer).get(key) for key in values])
    assert got == list(values.values())


def test_values_stay_when_a_node_leaves_gracefully() -> None:
    net = ChordNet(seed=16)
    net.grow(30, settle=3.0)
    net.run(10)
    rng = random.Random(17)
    values = {rng.randbytes(20): rng.randbytes(20) for _ in range(200)}
    gather(net, [node_of(rng.choice(net.joined)).put(key, v) for key, v in values.items()])
    leavers = rng.sample(net.joined, 5)
    for leaver in leavers:
        handed = net.wait(node_of(leaver).leave())
        assert handed == sum(1 for key in values if node_of(leaver).store.get(key) is not None)
        net.take_down([leaver])
    net.run(10)
    assert net.wrong_links() == []
    readers = net.alive()
    got = gather(net, [node_of(rng.choice(readers)).get(key) for key in values])
    assert got == list(values.values())
    for key in values:  # each value is back on k live nodes
        holders = [p for p in readers if node_of(p).store.get(key) is not None]
        assert len(holders) >= leavers[0].overlay.k
