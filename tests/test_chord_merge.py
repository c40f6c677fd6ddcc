"""Two Chord rings that a healed partition left apart merge into one.

A partition makes each side forget the other and repair into a ring of its
own; the merge round (:meth:`dhtkit.chord.rounds.Rounds.merge`) asks the
nodes a node lost, and joins the rings once one answers again. Here on the
simulator's virtual network, with its partitions.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet import defer

from dhtkit import key_for
from dhtkit.chord import messages
from dhtkit.chord.placement import BAD, UNANSWERED
from dhtkit.chord.state import RingState
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import from_int, in_interval
from dhtkit.node import DHTNode
from dhtkit.remembered import Remembered
from tests.chordnet import ChordNet, Peer

NODES = 20
#: Virtual seconds the rings get to merge after the heal: a few merge periods.
MERGE_TIME = 60.0


def node_of(peer: Peer) -> DHTNode:
    assert peer.node is not None
    return peer.node


def chord_state(peer: Peer) -> RingState:
    return peer.overlay.state  # type: ignore[attr-defined, no-any-return]


def ring_seen_from(peer: Peer, by_id: dict[bytes, Peer]) -> set[bytes]:
    """The nodes met following successors from ``peer`` until it comes round."""
    seen = {peer.node_id}
    at = peer
    for _ in range(len(by_id) + 1):
        first = chord_state(at).successors.first
        if first is None or first.node_id in seen or first.node_id not in by_id:
            break
        seen.add(first.node_id)
        at = by_id[first.node_id]
    return seen


def gather(net: ChordNet, calls: list[defer.Deferred[Any]]) -> list[Any]:
    return list(net.wait(defer.gatherResults(calls, consumeErrors=True), limit=600))


def partitioned_ring(seed: int) -> tuple[ChordNet, list[Peer], list[Peer]]:
    """A ring of :data:`NODES`, cut in two halves (interleaved on the ring)
    that have each repaired into a ring of their own."""
    net = ChordNet(seed=seed)
    net.grow(NODES)
    net.run(20)
    assert net.wrong_links() == []
    rng = random.Random(seed)
    peers = list(net.joined)
    rng.shuffle(peers)
    west, east = peers[: NODES // 2], peers[NODES // 2 :]
    net.network.partition([p.host for p in west], [p.host for p in east])
    net.run(60)
    for side in (west, east):
        by_id = {p.node_id: p for p in side}
        for peer in side:
            assert ring_seen_from(peer, by_id) == set(by_id), "each side is a ring"
    return net, west, east


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_rings_left_by_a_partition_merge_once_it_heals(seed: int) -> None:
    net, west, east = partitioned_ring(seed)
    # Each side forgot the other: no node knows one across the cut.
    for side, other in ((west, east), (east, west)):
        across = {p.node_id for p in other}
        for peer in side:
            assert not {c.node_id for c in peer.overlay.contacts()} & across
    values = {}
    for name, side in (("west", west), ("east", east)):
        puts = []
        for i in range(10):
            key = key_for("{}-{}".format(name, i))
            value = "{} {}".format(name, i).encode()
            values[key] = value
            puts.append(node_of(side[i % len(side)]).put(key, value))
        gather(net, puts)

    net.network.heal()
    net.run(MERGE_TIME)

    everyone = {p.node_id: p for p in net.joined}
    for peer in net.joined:
        assert ring_seen_from(peer, everyone) == set(everyone), "one ring"
    assert net.wrong_links() == []
    counters = [chord_state(p).counters for p in net.joined]
    assert sum(c["merges"] + c["merge_notifies"] for c in counters) > 0
    rng = random.Random(seed)
    for key in values:
        for peer in net.joined:
            found = net.wait(peer.overlay.lookup(key, 3))
            assert [c.node_id for c in found.contacts] == net.responsible(key, 3)
    readers = [rng.choice(net.joined) for _ in values]
    got = gather(net, [node_of(p).get(key) for p, key in zip(readers, values, strict=True)])
    assert got == list(values.values())
    for key, value in values.items():
        assert gather(net, [node_of(p).get(key) for p in net.joined]) == [value] * NODES


def two_rings(seed: int = 5) -> tuple[ChordNet, Peer, Peer]:
    """Two separate rings of four, and a node of each: the second is one
    the first lost (and remembers)."""
    net = ChordNet(seed=seed)
    rings = []
    for _ in range(2):
        first = net.add()
        net.wait(net.join(first, None))
        for _ in range(3):
            net.wait(net.join(net.add(), first))
        rings.append(first)
    net.run(20)
    ours, theirs = rings
    chord_state(ours).lost.add(theirs.contact)
    return net, ours, theirs


def liar(peer: Peer, answer: Any) -> None:
    """Make ``peer`` answer every ``chord_find`` with ``answer(args)``."""
    peer.rpc.register(messages.FIND, lambda sender, args: answer(args), idempotent=True)


def test_without_a_remembered_node_two_rings_stay_apart() -> None:
    net, ours, theirs = two_rings()
    chord_state(ours).lost.discard(theirs.node_id)
    net.run(MERGE_TIME)
    assert len(ring_seen_from(ours, {p.node_id: p for p in net.joined})) == 4


def test_one_remembered_node_merges_two_rings() -> None:
    net, ours, theirs = two_rings()
    net.run(MERGE_TIME)
    counters = chord_state(ours).counters
    assert counters["merges"] + counters["merge_notifies"] == 1
    assert theirs.node_id not in chord_state(ours).lost
    everyone = {p.node_id: p for p in net.joined}
    for peer in net.joined:
        assert ring_seen_from(peer, everyone) == set(everyone)
    assert net.wrong_links() == []


@pytest.mark.parametrize(
    "garbage",
    [
        ["garbage", -1],
        [True, [["not", "a", "contact"]]],
        [True, []],
        None,
        [False, [[b"\x00" * 20, b"\x00" * 32, ["10.0.0.1", 70000]]]],
    ],
)
def test_a_remembered_node_that_answers_garbage_is_not_merged_through(garbage: Any) -> None:
    net, ours, theirs = two_rings()
    liar(theirs, lambda args: garbage)
    state = chord_state(ours)
    successor = state.successors.first
    bad = state.counters["bad_answers"]
    net.run(MERGE_TIME)
    assert state.counters["merge_attempts"] >= 1
    assert state.counters["merges"] == 0
    assert state.successors.first == successor
    assert state.counters["bad_answers"] > bad
    assert theirs.node_id not in state.lost  # it answered: not asked again
    assert len(ring_seen_from(ours, {p.node_id: p for p in net.joined})) == 4


def test_a_remembered_node_naming_a_node_that_does_not_exist_is_not_merged_through() -> None:
    net, ours, theirs = two_rings()
    state = chord_state(ours)
    successor = state.successors.first
    assert successor is not None
    # A node of its own making between us and our successor, at an address
    # where nobody listens.
    while True:
        key = Identity.generate().public_key
        fake = Contact.from_key(key, ("10.9.9.9", 4000))
        if in_interval(fake.node_id, ours.node_id, successor.node_id):
            break

    def done_with_fake(args: Any) -> Any:
        return messages.find_answer(messages.FindAnswer(True, [fake]))

    liar(theirs, done_with_fake)
    outcome = net.wait(ours.overlay.placement.merge_through(theirs.contact))  # type: ignore[attr-defined]
    assert outcome == BAD
    assert state.successors.first == successor
    assert state.counters["merges"] == 0


def test_a_lost_node_that_does_not_answer_is_asked_again_later() -> None:
    net, ours, theirs = two_rings()
    net.network.partition([ours.host])
    state = chord_state(ours)
    outcome = net.wait(ours.overlay.placement.merge_through(theirs.contact))  # type: ignore[attr-defined]
    assert outcome == UNANSWERED
    net.run(MERGE_TIME)
    assert theirs.node_id in state.lost
    assert state.counters["merge_attempts"] >= 2


def test_a_lost_node_still_joining_is_no_bad_answer_and_is_asked_again_later() -> None:
    # A node restarting refuses lookups until it has joined: it said
    # nothing wrong, and it may well be on the other ring in a moment.
    net, ours, theirs = two_rings()
    chord_state(theirs).joined = False
    state = chord_state(ours)
    bad = state.counters["bad_answers"]
    outcome = net.wait(ours.overlay.placement.merge_through(theirs.contact))  # type: ignore[attr-defined]
    assert outcome == UNANSWERED
    assert state.counters["bad_answers"] == bad
    net.run(MERGE_TIME)
    assert theirs.node_id in state.lost
    assert state.counters["bad_answers"] == bad


def test_failed_fingers_are_remembered_and_nodes_that_left_are_not() -> None:
    own = from_int(0)
    state = RingState(own, 4)
    a = Contact(from_int(10), ("10.0.0.1", 1), b"\x01" * 32)
    b = Contact(from_int(20), ("10.0.0.2", 1), b"\x02" * 32)
    state.fingers.offer(a)
    state.fingers.offer(b)
    state.forget(a.node_id)
    state.forget(b.node_id, left=True)
    assert [c.node_id for c in state.lost] == [a.node_id]
    assert a.node_id not in state.fingers and b.node_id not in state.fingers
    # A successor-list entry that never answered us is not remembered.
    state.replace_successors(b, [a])
    state.forget(a.node_id)
    assert [c.node_id for c in state.lost] == [a.node_id]


def test_the_remembered_set_is_bounded_and_asked_in_turn() -> None:
    own = from_int(0)
    lost = Remembered(own, size=3)
    contacts = [Contact(from_int(i), ("10.0.0.1", i), bytes([i]) * 32) for i in range(1, 6)]
    for contact in contacts:
        lost.add(contact)
    lost.add(Contact(own, ("10.0.0.1", 9), b"\x09" * 32))
    assert [c.node_id for c in lost] == [c.node_id for c in contacts[2:]]
    first = lost.next(set())
    assert first is not None and first.node_id == contacts[2].node_id
    second = lost.next({contacts[3].node_id})
    assert second is not None and second.node_id == contacts[4].node_id
    assert lost.next({c.node_id for c in contacts}) is None
    with pytest.raises(ValueError):
        Remembered(own, size=0)
