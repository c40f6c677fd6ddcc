"""ChordOverlay on a small virtual network: join, lookup, failures, leave, rejoin."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from dhtkit import wire
from dhtkit.chord import ChordOverlay, FingerTable, LookupFailed
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import ID_BITS, from_int, ring_distance, to_int
from dhtkit.node import DHTNode
from dhtkit.overlay import IRoutingOverlay, JoinFailed, Lookup
from dhtkit.rpc import RemoteError, RPCProtocol
from dhtkit.storage import MemoryStore
from tests.chordnet import ChordNet, Peer


def ring_of(count: int, seed: int = 1, settle: float = 10.0, **options: Any) -> ChordNet:
    net = ChordNet(seed=seed, **options)
    net.grow(count)
    net.run(settle)
    return net


def assert_lookups_right(net: ChordNet, tries: int = 40, count: int = 3) -> list[Lookup]:
    rng = random.Random(7)
    found = []
    for _ in range(tries):
        key = rng.randbytes(20)
        lookup = net.wait(rng.choice(net.alive()).overlay.lookup(key, count))
        assert [c.node_id for c in lookup.contacts] == net.responsible(key, count)
        found.append(lookup)
    return found


def test_provides_the_routing_overlay_interface() -> None:
    net = ChordNet()
    assert verifyObject(IRoutingOverlay, net.add().overlay)


def test_refuses_a_replication_factor_beyond_the_successor_list() -> None:
    rpc = RPCProtocol(Identity(b"\x01" * 32), ChordNet().clock)
    with pytest.raises(ValueError):
        ChordOverlay(rpc, successors=4, k=5)
    with pytest.raises(ValueError):
        ChordOverlay(rpc, successors=21)
    assert ChordOverlay(rpc, successors=2).k == 2
    assert ChordOverlay(rpc).k == 4


def test_the_first_node_forms_a_ring_of_one() -> None:
    net = ChordNet()
    first = net.add()
    assert net.wait(first.overlay.join([])) == 0
    lookup = net.wait(first.overlay.lookup(b"\x42" * 20, 3))
    assert lookup == Lookup(b"\x42" * 20, [first.contact], 0, 0)


def test_two_nodes_link_up_both_ways() -> None:
    net = ChordNet()
    a, b = net.add(), net.add()
    net.wait(net.join(a, None))
    assert net.wait(net.join(b, a)) >= 1
    net.run(5)
    assert net.wrong_links() == []
    assert_lookups_right(net, count=2)


def test_join_fails_when_no_one_answers() -> None:
    net = ChordNet()
    lonely = net.add()
    with pytest.raises(JoinFailed):
        net.wait(lonely.overlay.join([("10.77.9.9", 4000)]))
    gone = Contact.from_key(b"\x05" * 32, ("10.77.9.8", 4000))
    with pytest.raises(JoinFailed):
        net.wait(lonely.overlay.join([], [gone]))


def test_join_falls_back_to_the_next_bootstrap_node() -> None:
    net = ring_of(5)
    newcomer = net.add()
    bootstrap = [("10.77.9.9", 4000), net.joined[2].contact.address]
    assert net.wait(newcomer.overlay.join(bootstrap)) > 0
    net.joined.append(newcomer)
    net.run(5)
    assert net.wrong_links() == []


def test_nodes_joining_at_once_through_one_node_form_a_correct_ring() -> None:
    net = ChordNet(seed=3)
    first = net.add()
    net.wait(net.join(first, None))
    joins = [net.join(net.add(), first) for _ in range(30)]
    for d in joins:
        net.wait(d)
    net.run(15)
    assert net.wrong_links() == []
    lookups = assert_lookups_right(net)
    assert any(lookup.hops > 0 for lookup in lookups)
    stats = first.overlay.stats()
    assert stats["stabilize_rounds"] > 0 and stats["lookups"] > 0


def test_a_dead_finger_is_passed_over_and_the_lookup_still_succeeds() -> None:
    net = ring_of(40, seed=4)
    asker = net.joined[0]
    key = asker.overlay.state.fingers.contacts()[-1].node_id  # a far finger's id...
    key = bytes(a ^ b for a, b in zip(key, b"\x00" * 19 + b"\x01", strict=True))  # ...just off it
    first_hop = asker.overlay.state.candidates(key, 1)[0]
    dead = next(p for p in net.joined if p.node_id == first_hop.node_id)
    net.take_down([dead])
    lookup = net.wait(asker.overlay.lookup(key, 2))
    assert lookup.timeouts >= 1
    assert [c.node_id for c in lookup.contacts[:1]] == net.responsible(key, 1)
    assert dead.node_id not in asker.overlay.state.fingers
    stats = asker.overlay.stats()
    assert stats["lookup_timeouts"] >= 1 and stats["lookup_hops"] >= lookup.hops


def test_the_next_successor_takes_over_when_successors_fail() -> None:
    net = ring_of(12, seed=5)
    ring = net.ring()
    net.take_down(ring[3:5])  # two in a row
    net.run(20)
    assert net.wrong_links() == []
    assert_lookups_right(net)


def test_a_node_whose_whole_successor_list_failed_finds_its_place_again() -> None:
    net = ring_of(12, seed=6, successors=2, k=2)
    ring = net.ring()
    net.take_down(ring[1:3])
    net.run(20)
    assert net.wrong_links() == []
    assert ring[0].overlay.stats()["rejoins"] >= 1


def test_two_interleaved_rings_merge_into_one() -> None:
    # Joins answered from stale pointers can leave every node pointing two
    # ahead: two rings, each consistent, which stabilize alone keeps apart.
    net = ring_of(16, seed=11)
    ring = net.ring()
    for i, peer in enumerate(ring):
        state = peer.overlay.state
        state.replace_successors(ring[(i + 2) % 16].contact, [ring[(i + 4) % 16].contact])
        state.set_predecessor(ring[i - 2].contact)
        # and no finger tells of the node in the gap
        state.fingers.remove(ring[(i + 1) % 16].node_id)
    assert len(net.wrong_links()) == 32
    net.run(20)
    assert net.wrong_links() == []
    checks = sum(p.overlay.stats()["successor_checks_corrected"] for p in ring)
    assert checks > 0


def test_a_node_that_just_joined_has_its_fingers_at_once() -> None:
    net = ring_of(40, seed=12, fix_fingers_every=1000.0)  # no periodic round
    newcomer = net.add()
    net.wait(net.join(newcomer, net.joined[3]))
    net.joined.append(newcomer)
    net.run(3)
    others = {p.node_id for p in net.joined} - {newcomer.node_id}
    fingers = newcomer.overlay.state.fingers
    for index in range(1, ID_BITS + 1):
        start = FingerTable.start(newcomer.node_id, index)
        expected = min(others, key=lambda node_id: ring_distance(start, node_id))
        found = fingers.finger(index)
        assert found is not None and found.node_id == expected


def test_a_newcomer_fills_its_fingers_from_its_successors_mostly_without_lookups() -> None:
    net = ring_of(60, seed=13, fix_fingers_every=1000.0)  # no periodic round
    newcomer = net.add()
    net.wait(net.join(newcomer, net.joined[5]))
    net.run(3)
    overlay = newcomer.overlay
    others = {p.node_id for p in net.joined} - {newcomer.node_id}
    distinct = {
        min(others, key=lambda node_id: ring_distance(start, node_id))
        for start in (
            FingerTable.start(newcomer.node_id, i) for i in overlay.state.finger_indexes()
        )
    }
    assert {c.node_id for c in overlay.state.fingers} >= distinct
    # Its successor's fingers answered for the entries: one lookup found its
    # place, and fewer than one in three entries needed a lookup of its own.
    assert overlay.counters["fingers_asked"] >= len(distinct) - 1
    assert overlay.stats()["lookups"] - 1 < len(distinct) / 3


@pytest.mark.parametrize("args", [[], 0, "x"])
def test_chord_fingers_takes_no_arguments(args: Any) -> None:
    net = ring_of(2, seed=10)
    a, b = net.joined
    with pytest.raises(RemoteError) as caught:
        net.wait(a.rpc.call_contact(b.contact, "chord_fingers", args))
    assert caught.value.code == "malformed"
    fingers = net.wait(a.rpc.call_contact(b.contact, "chord_fingers", None))
    assert [wire.decode_contact(f).node_id for f in fingers] == [a.node_id]


def test_filling_the_fingers_never_asks_the_node_itself() -> None:
    # Our successor's fingers name us when we are its finger: asking
    # ourselves for our own predecessors would wait out an RPC timeout.
    net = ring_of(2, seed=10)
    a, b = net.joined
    asked: list[tuple[str, object]] = []
    call = a.rpc.call_contact

    def recording(contact: Contact, method: str, *args: Any, **kw: Any) -> Any:
        asked.append((method, contact.node_id))
        return call(contact, method, *args, **kw)

    a.rpc.call_contact = recording  # type: ignore[method-assign]
    timeouts = a.rpc.stats()["timeouts"]
    net.wait(a.overlay.rounds.fill_fingers())
    assert ("chord_fingers", b.node_id) in asked
    assert all(node_id != a.node_id for _, node_id in asked)
    assert a.rpc.stats()["timeouts"] == timeouts


def test_a_malformed_fingers_answer_is_counted_and_the_fingers_still_filled() -> None:
    net = ring_of(20, seed=14, fix_fingers_every=1000.0)
    for peer in net.joined:  # every node answers chord_fingers with garbage
        peer.rpc.register("chord_fingers", lambda sender, args: ["not a contact"])
    newcomer = net.add()
    net.wait(net.join(newcomer, net.joined[2]))
    net.run(3)
    assert newcomer.overlay.counters["bad_answers"] == 1
    others = {p.node_id for p in net.joined} - {newcomer.node_id}
    for index in newcomer.overlay.state.finger_indexes():
        start = FingerTable.start(newcomer.node_id, index)
        expected = min(others, key=lambda node_id: ring_distance(start, node_id))
        found = newcomer.overlay.state.fingers.finger(index)
        assert found is not None and found.node_id == expected


def test_a_leaving_node_links_its_neighbours_at_once() -> None:
    net = ring_of(10, seed=7)
    for peer in net.joined:
        peer.overlay.maintenance.stop()  # no round may do the work
    ring = net.ring()
    pred, leaver, succ = ring[3], ring[4], ring[5]
    net.wait(leaver.overlay.leave())
    leaver.up = False
    net.run(0.5)
    assert pred.overlay.state.successors.first == succ.contact
    assert succ.overlay.state.predecessor == pred.contact
    assert leaver.node_id not in pred.overlay.state.successors


def stopped(net: ChordNet, old: Peer) -> Peer:
    """``old``, stopped and closed (it no longer listens), off the ring's list."""
    old.node.stop()
    old.overlay.stop()
    old.rpc.transport.stopListening()  # type: ignore[union-attr]
    net.joined.remove(old)
    return old


def restarted(net: ChordNet, old: Peer, **options: Any) -> Peer:
    """A new node with stopped ``old``'s identity, host and port: started, not joined."""
    reactor = net.network.reactor_for(old.host)
    rpc = RPCProtocol(old.rpc.identity, reactor, timeout=1.0, rng=random.Random(old.host))
    reactor.listenUDP(4000, rpc)
    overlay = ChordOverlay(rpc, clock=reactor, rng=random.Random(1), **options)
    again = Peer(old.host, rpc, overlay, DHTNode(rpc, overlay, MemoryStore(), clock=reactor))
    again.overlay.start()
    net.joined.append(again)
    return again


def test_a_restarted_node_rejoins_through_the_contacts_it_saved() -> None:
    net = ring_of(10, seed=8)
    old = net.joined[4]
    saved = old.overlay.contacts()
    assert len(saved) >= 10 - 1
    again = restarted(net, stopped(net, old))
    assert net.wait(again.overlay.join([], saved)) > 0
    net.run(10)
    assert net.wrong_links() == []


def test_a_node_restarted_beside_a_dead_one_joins_through_the_last_live_one() -> None:
    # Three nodes: one is cut off, another is killed and restarts through the
    # third, which still lists the dead one and the restarted one (in its old
    # place) as its successors. The lookup of the restarted node's own id
    # finds only itself; the node it asked is its successor then (it failed
    # to join before: the multi-host suite's Chord case once waited out the
    # retry).
    net = ChordNet(seed=4, stabilize_every=2.0, check_predecessor_every=4.0)
    net.grow(3)
    net.run(10)
    a, b, c = net.joined[:3]
    net.take_down([b])
    net.run(3.0)
    again = restarted(net, stopped(net, c))
    assert net.wait(again.overlay.join([a.contact.address])) > 0
    net.run(10)
    assert net.wrong_links() == []


def test_nodes_restarting_together_never_leave_a_list_shorter_than_k() -> None:
    # Four of twelve stop and restart at once through the contacts they
    # saved. Each may first reach another that is still joining: one that
    # refuses lookups is not where a node finds its place, and the empty
    # list it answers does not cut short the list of a node taking it as
    # successor. A list that short answered lookups with two replicas (the
    # multi-host suite's Chord case failed puts so).
    net = ChordNet(seed=1, k=5)
    net.grow(12)
    net.run(15)
    victims = random.Random(1).sample(net.joined, 4)
    saved = {v.host: v.overlay.contacts() for v in victims}
    for victim in victims:
        stopped(net, victim)
        net.run(0.5)
    again = [restarted(net, victim, k=5) for victim in victims]
    joining = {peer.host for peer in again}
    for peer in again:
        peer.overlay.join([], saved[peer.host]).addCallback(
            lambda _, host=peer.host: joining.discard(host)
        )
    shortest = []
    for _ in range(200):
        net.run(0.05)
        shortest.append(
            min(len(p.overlay.state.successors) for p in net.joined if p.host not in joining)
        )
    assert not joining
    assert min(shortest) >= 5
    assert net.wrong_links() == []


def test_every_node_restarting_at_once_makes_a_ring_again() -> None:
    # No node is on a ring to find a place through: each takes the first
    # that answers, and stabilization makes one ring of them.
    net = ChordNet(seed=2, k=3)
    net.grow(6)
    net.run(10)
    saved = {p.host: p.overlay.contacts() for p in net.joined}
    again = [restarted(net, stopped(net, peer), k=3) for peer in list(net.joined)]
    joins = [peer.overlay.join([], saved[peer.host]) for peer in again]
    assert all(net.wait(d) > 0 for d in joins)
    net.run(20)
    assert net.wrong_links() == []
    assert_lookups_right(net, tries=10)


def test_a_whole_network_restart_waits_for_a_dead_saved_contact_once() -> None:
    # Every node restarts at once but one, which stays down, first in every
    # node's saved contacts. The join's ping of the saved contacts passes
    # it by; neither the lookups nor the fallback that takes the first
    # contact answering chord_state (no lookup answers: every node is
    # still joining) wait for it again.
    net = ChordNet(seed=2, k=3)
    net.grow(6)
    net.run(10)
    saved = {p.host: p.overlay.contacts() for p in net.joined}
    peers = list(net.joined)
    dead = stopped(net, peers[0])
    again = [restarted(net, stopped(net, peer), k=3) for peer in peers[1:]]
    # The dead node first in every list: each join asks it before the others.
    first = [dead.rpc.identity.node_id]
    for contacts in saved.values():
        contacts.sort(key=lambda c: c.node_id not in first)
    joins = [peer.overlay.join([], saved[peer.host]) for peer in again]
    assert all(net.wait(d) > 0 for d in joins)
    for peer in again:
        # One call to the dead node (its lookup, sent and retried) at most.
        assert peer.rpc.counters["timeouts"] <= 1, peer.host
    net.run(20)
    assert dead.host not in {p.host for p in net.joined}
    assert net.wrong_links() == []
    assert_lookups_right(net, tries=10)


def listening(net: ChordNet, host: str, identity: Identity) -> RPCProtocol:
    reactor = net.network.reactor_for(host)
    rpc = RPCProtocol(identity, reactor, timeout=1.0, rng=random.Random(host))
    reactor.listenUDP(4000, rpc)
    return rpc


def identity_near(origin: bytes, below: int, above: int = 0) -> Identity:
    """The first of a fixed series of identities at a clockwise distance
    from ``origin`` in ``[2**above, 2**below)``."""
    for n in range(1, 100_000):
        identity = Identity(n.to_bytes(32, "big"))
        if 2**above <= ring_distance(origin, identity.node_id) < 2**below:
            return identity
    raise AssertionError("no such identity")


def test_a_contact_named_in_an_answer_is_no_finger_until_it_answered() -> None:
    net = ChordNet(seed=9)
    victim = net.add()
    net.wait(net.join(victim, None))
    victim.overlay.maintenance.stop()  # its rounds would drop the hostile node
    # The victim, a hostile node after it, and a contact the hostile node
    # names: a real key at an address where no one listens (yet).
    hostile = listening(net, "10.77.8.1", identity_near(victim.node_id, below=155))
    assert hostile.contact is not None
    far = ring_distance(victim.node_id, hostile.contact.node_id).bit_length() + 1
    fake_identity = identity_near(victim.node_id, below=160, above=far)
    fake = Contact.from_key(fake_identity.public_key, ("10.77.8.2", 4000))
    victim.overlay.state.replace_successors(hostile.contact, [])

    # A lookup: "ask the fake next".
    hostile.register("chord_find", lambda sender, args: ["next", [wire.encode_contact(fake)]])
    with pytest.raises(LookupFailed):
        net.wait(victim.overlay.lookup(bytes(b ^ 0xFF for b in victim.node_id), 1))
    assert fake.node_id not in victim.overlay.state.fingers
    assert hostile.contact.node_id in victim.overlay.state.fingers  # it did answer

    # fix_fingers: "the fake is the finger you look for".
    hostile.register("chord_find", lambda sender, args: ["done", [wire.encode_contact(fake)]])
    for _ in range(160):  # every finger index in turn
        net.wait(victim.overlay.rounds.fix_fingers())
        assert fake.node_id not in victim.overlay.state.fingers
    listening(net, "10.77.8.2", fake_identity)  # now it exists, and answers pings
    rounds_a_finger = 0
    for _ in range(160):
        net.wait(victim.overlay.rounds.fix_fingers())
        rounds_a_finger += fake.node_id in victim.overlay.state.fingers
    # It answers pings but no Chord query (a bare RPC node), so a later
    # round that asks it about its entry may drop it again: whether it is
    # a finger after the very last round depends on the rounds' timing.
    assert rounds_a_finger > 0


def test_malformed_queries_from_the_network_get_a_malformed_error() -> None:
    net = ring_of(2, seed=10)
    a, b = net.joined
    with pytest.raises(RemoteError) as caught:
        net.wait(a.rpc.call_contact(b.contact, "chord_find", [b"short", 1]))
    assert caught.value.code == "malformed"
    net.run(5)
    assert net.wrong_links() == []


def test_when_no_node_before_the_key_answers_our_own_successor_list_finds_it() -> None:
    net = ring_of(3, seed=5)
    for peer in net.joined:
        peer.overlay.maintenance.stop()  # no round may repair anything meanwhile
    asker, dead, after = net.ring()
    assert asker.overlay.state.successors.ids()[:2] == [dead.node_id, after.node_id]
    net.take_down([dead])
    # The key's successor is `after`; the only node before the key is `dead`.
    key = from_int(to_int(dead.node_id) + 1)
    found = net.wait(asker.overlay.lookup(key, 1))
    assert [c.node_id for c in found.contacts] == [after.node_id]
    assert found.timeouts == 1


@pytest.mark.parametrize(
    "garbage",
    [["done", [b"junk"]], ["next", 2**64 - 1], ["done", []], [math.nan, []], "x" * 50],
    ids=["junk contact", "a number for contacts", "done without a successor", "nan", "text"],
)
def test_a_malformed_find_answer_is_dropped_counted_and_the_lookup_goes_on(garbage: Any) -> None:
    net = ring_of(16)
    liar = net.alive()[3]
    liar.rpc.register("chord_find", lambda sender, args: garbage)
    rng = random.Random(8)
    askers = [p for p in net.alive() if p is not liar]
    for _ in range(30):
        key = rng.randbytes(20)
        lookup = net.wait(rng.choice(askers).overlay.lookup(key, 3))
        assert [c.node_id for c in lookup.contacts] == net.responsible(key, 3)
    assert sum(p.overlay.stats()["lookup_bad_answers"] for p in askers) >= 1
