"""fix_fingers asks the finger it holds about itself; the simulator's settled check."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer

from dhtkit.chord import FingerTable
from dhtkit.chord.rounds import LOOKUP_CYCLES, successor_by_predecessors
from dhtkit.chord.settled import settled
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import from_int, ring_distance
from dhtkit.overlays import OVERLAYS
from dhtkit.sim.overlays import OverlayNetwork
from tests.chordnet import ChordNet, Peer


def contact_at(position: int) -> Contact:
    """A contact whose id is ``position`` (its key does not match: state only)."""
    return Contact(from_int(position), bytes(32), ("10.0.0.1", 4000))


START = 1000


@pytest.mark.parametrize(
    ("node", "predecessors", "expected"),
    [
        (1100, [900], 1100),  # its predecessor lies before the start: the node itself
        (1100, [1050, 990], 1050),  # the last predecessor not before the start
        (1100, [1050, 1000, 990], 1000),  # one exactly at the start is its successor
        (1100, [1050, 1020], None),  # all after the start: it may lie further back
        (1100, [], None),  # no predecessor known
        (1100, [1050, 1080, 900], None),  # out of ring order: no guess
        (1100, [1100, 900], None),  # itself named as its predecessor
    ],
)
def test_successor_of_a_start_from_a_node_and_its_predecessors(
    node: int, predecessors: list[int], expected: int | None
) -> None:
    found = successor_by_predecessors(
        from_int(START), contact_at(node), [contact_at(p) for p in predecessors]
    )
    assert (found.node_id if found is not None else None) == (
        from_int(expected) if expected is not None else None
    )


def test_the_start_wraps_round_zero() -> None:
    ring = 2**160
    start = from_int(ring - 10)
    found = successor_by_predecessors(start, contact_at(20), [contact_at(3), contact_at(ring - 40)])
    assert found is not None and found.node_id == from_int(3)


def settled_ring(count: int, seed: int) -> ChordNet:
    net = ChordNet(seed=seed)
    net.grow(count)
    net.run(60)  # every finger refreshed since the last join
    return net


def quiet(peer: Peer) -> Any:
    """``peer``'s maintenance rounds, stopped: the test runs them."""
    peer.overlay.maintenance.stop()  # type: ignore[attr-defined]
    return peer.overlay.rounds  # type: ignore[attr-defined]


def refresh(net: ChordNet, rounds: Any, index: int) -> None:
    """One fix_fingers round for entry ``index``."""
    net.wait(defer.Deferred.fromCoroutine(rounds._fix_fingers(index)))


def true_finger(net: ChordNet, peer: Peer, index: int) -> bytes:
    start = FingerTable.start(peer.node_id, index)
    others = [p.node_id for p in net.alive() if p is not peer]
    return min(others, key=lambda node_id: ring_distance(start, node_id))


def farthest_finger(seed: int, at: int) -> tuple[ChordNet, Peer, Any, int, Contact]:
    """A settled 32-node ring, its ``at``-th node with its rounds quiet and
    not in a cycle of lookups, and that node's farthest finger."""
    net = settled_ring(32, seed=seed)
    peer = net.joined[at]
    rounds = quiet(peer)
    rounds._cycles = 1
    index = rounds.state.finger_indexes()[-1]
    held = rounds.state.fingers.finger(index)
    assert held is not None
    return net, peer, rounds, index, held


def test_in_a_settled_ring_a_finger_is_refreshed_by_one_exchange_with_it() -> None:
    net, peer, rounds, index, held = farthest_finger(seed=21, at=5)
    assert held.node_id == true_finger(net, peer, index)
    sent = peer.rpc.counters["queries_sent"]
    before = peer.overlay.stats()
    refresh(net, rounds, index)
    assert peer.rpc.counters["queries_sent"] - sent == 1
    after = peer.overlay.stats()
    assert after["lookups"] == before["lookups"]
    assert after["fingers_confirmed"] == before["fingers_confirmed"] + 1
    assert rounds.state.fingers.finger(index) == held


def test_a_node_that_joined_before_a_finger_replaces_it_through_its_predecessor() -> None:
    net, peer, rounds, index, held = farthest_finger(seed=22, at=3)
    # A newcomer between the entry's start and the finger held.
    start = FingerTable.start(peer.node_id, index)
    gap = ring_distance(start, held.node_id)
    identity = next(
        Identity(n.to_bytes(32, "big"))
        for n in range(1, 1_000_000)
        if 0 < ring_distance(start, Identity(n.to_bytes(32, "big")).node_id) < gap
    )
    newcomer = net.add_node(identity=identity)
    net.wait(net.join(newcomer, held_peer(net, held)))
    net.run(0.5)  # its notify reached the finger: now its predecessor
    lookups = peer.overlay.stats()["lookups"]
    refresh(net, rounds, index)
    assert peer.overlay.stats()["lookups"] == lookups  # no lookup was needed
    found = rounds.state.fingers.finger(index)
    assert found is not None and found.node_id == newcomer.node_id == true_finger(net, peer, index)


def held_peer(net: ChordNet, contact: Contact) -> Peer:
    return next(p for p in net.joined if p.node_id == contact.node_id)


def test_a_finger_that_does_not_answer_is_looked_up_instead() -> None:
    net, peer, rounds, index, held = farthest_finger(seed=23, at=7)
    net.take_down([held_peer(net, held)])
    net.run(10)  # its neighbours stabilize past it
    lookups = peer.overlay.stats()["lookups"]
    refresh(net, rounds, index)
    assert peer.overlay.stats()["lookups"] == lookups + 1
    found = rounds.state.fingers.finger(index)
    assert found is not None and found.node_id == true_finger(net, peer, index)


def test_every_few_cycles_each_finger_is_looked_up_anew() -> None:
    net = settled_ring(16, seed=24)
    peer = net.joined[2]
    rounds = quiet(peer)
    rounds._cycles = LOOKUP_CYCLES
    index = rounds.state.finger_indexes()[-1]
    before = peer.overlay.stats()
    refresh(net, rounds, index)
    after = peer.overlay.stats()
    assert after["lookups"] == before["lookups"] + 1
    assert after["fingers_asked"] == before["fingers_asked"]


def test_settled_holds_for_a_settled_ring_and_not_for_one_wrong_successor() -> None:
    net = settled_ring(20, seed=25)
    overlays = [p.overlay for p in net.alive()]
    assert settled(overlays)
    ring = net.ring()
    state = ring[4].overlay.state  # type: ignore[attr-defined]
    # Skip the true third successor: a replica would be missed.
    listed = state.successors.contacts()
    state.successors.replace(listed[0], [listed[1], *listed[3:]])
    assert not settled(overlays)
    net.run(10)
    assert settled(overlays)


def test_settled_checks_the_predecessors_too() -> None:
    net = settled_ring(12, seed=26)
    overlays = [p.overlay for p in net.alive()]
    net.ring()[6].overlay.state.set_predecessor(None)  # type: ignore[attr-defined]
    assert not settled(overlays)


def test_grow_stops_settling_once_the_ring_is_right() -> None:
    net = OverlayNetwork("chord", seed=27)
    net.grow(60, batch=10)
    assert 0 < net.settled_after < OVERLAYS["chord"].settle
    assert settled([n.overlay for n in net.live()])


def test_an_overlay_without_a_check_settles_for_its_full_time() -> None:
    net = OverlayNetwork("kademlia", seed=28)
    net.grow(5, batch=5)
    assert net.settled_after == OVERLAYS["kademlia"].settle
