"""PastryOverlay on the virtual network: joins one by one, routes, failures, leave, values."""

from __future__ import annotations

import math
import random

import pytest
from zope.interface.verify import verifyObject

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import from_int, numerically_closest_first, ring_distance
from dhtkit.overlay import IRoutingOverlay, JoinFailed, Lookup
from dhtkit.overlays import OVERLAYS
from dhtkit.pastry import PastryOverlay
from dhtkit.pastry.messages import ROUTE
from dhtkit.pastry.overlay import LEAF_EVERY
from dhtkit.pastry.settled import settled
from dhtkit.rpc import RemoteError, RPCProtocol
from dhtkit.sim.gossip import PORT
from dhtkit.sim.overlays import OverlayNetwork, SimNode, simulate


def network(count: int, seed: int = 1, batch: int = 1, **options: object) -> OverlayNetwork:
    """``count`` nodes, each joined through the join protocol (one at a time by default)."""
    net = OverlayNetwork("pastry", seed=seed, overlay_options=dict(options))
    net.grow(count, batch=batch)
    return net


def pastry(n: SimNode) -> PastryOverlay:
    assert isinstance(n.overlay, PastryOverlay)
    return n.overlay


def closest_ids(net: OverlayNetwork, key: bytes, count: int) -> list[bytes]:
    return sorted((n.node_id for n in net.live()), key=numerically_closest_first(key))[:count]


def check_lookups(net: OverlayNetwork, tries: int, count: int, seed: int = 7) -> list[Lookup]:
    rng = random.Random(seed)
    found = []
    for _ in range(tries):
        key = from_int(rng.getrandbits(160))
        lookup = net.wait(rng.choice(net.live()).overlay.lookup(key, count))
        assert [c.node_id for c in lookup.contacts] == closest_ids(net, key, count)
        found.append(lookup)
    return found


def true_leaves(net: OverlayNetwork, n: SimNode, size: int) -> tuple[list[bytes], list[bytes]]:
    others = [m.node_id for m in net.live() if m is not n]
    up = sorted(others, key=lambda i: ring_distance(n.node_id, i))[:size]
    down = sorted(others, key=lambda i: ring_distance(i, n.node_id))[:size]
    return up, down


def test_provides_the_routing_overlay_interface_and_checks_its_options() -> None:
    net = network(1)
    assert verifyObject(IRoutingOverlay, net.nodes[0].overlay)
    rpc = RPCProtocol(Identity(b"\x01" * 32), net.clock)
    for bad in ({"k": 9}, {"k": 0}, {"leaf_size": 13}, {"digit_bits": 3}, {"leaf_size": 2, "k": 3}):
        with pytest.raises(ValueError):
            PastryOverlay(rpc, **bad)  # type: ignore[arg-type]
    assert PastryOverlay(rpc).k == 4 and PastryOverlay(rpc, leaf_size=2).k == 2


def test_the_first_node_is_alone_and_a_dead_bootstrap_fails_the_join() -> None:
    net = network(1)
    first = net.nodes[0]
    key = b"\x42" * 20
    assert net.wait(first.overlay.lookup(key, 3)) == Lookup(key, [first.contact], 0, 0)
    lonely = net.add_node()
    with pytest.raises(JoinFailed):
        net.wait(lonely.overlay.join([("10.99.0.1", PORT)]))


def test_nodes_joined_one_by_one_deliver_every_key_to_the_numerically_closest() -> None:
    net = network(200)
    for n in net.live():
        up, down = true_leaves(net, n, 8)
        leaves = pastry(n).state.leafset
        assert [c.node_id for c in leaves.above] == up
        assert [c.node_id for c in leaves.below] == down
    lookups = check_lookups(net, 120, 4)
    mean = sum(found.hops for found in lookups) / len(lookups)
    assert 0 < mean < math.ceil(math.log(200, 16))


def test_the_ith_node_on_the_join_path_gives_its_row_i() -> None:
    net = network(120)
    newcomer = net.add_node()
    net.wait(newcomer.overlay.join([(net.nodes[0].host, PORT)]))
    overlay = pastry(newcomer)
    report = overlay.last_join
    assert report is not None and len(report.path) >= 2
    by_id = {n.node_id: n for n in net.nodes}
    digits = overlay.state.digits
    for i, hop in enumerate(report.path):
        row = min(i, digits.prefix(hop.node_id, newcomer.node_id))
        theirs = pastry(by_id[hop.node_id]).state.table.row(row)
        assert [c for c in report.rows[row] if c.node_id != newcomer.node_id] == [
            c for c in theirs if c.node_id != newcomer.node_id
        ]
        for contact in report.rows[row]:
            # Every slot the copied row fills is filled in ours (all answered).
            place = overlay.state.table.place(contact.node_id)
            assert place is not None and overlay.state.table.get(*place) is not None
    assert report.leafset_from is not None
    assert report.leafset_from.node_id == closest_ids(net, newcomer.node_id, 2)[1]
    assert report.answered == report.announced > 0
    assert report.messages == overlay.stats()["join_messages"] < 100
    # Its true leaves took it into their leaf sets once its address was proven.
    net.advance(1.0)
    up, down = true_leaves(net, newcomer, 8)
    by_id = {n.node_id: n for n in net.live()}
    for node_id in up + down:
        assert newcomer.node_id in pastry(by_id[node_id]).state.leafset


def test_with_l_minus_1_adjacent_nodes_killed_delivery_succeeds_after_repair() -> None:
    net = network(150, leaf_size=8)
    ring = sorted(net.live(), key=lambda n: n.node_id)
    start = 40
    gone = ring[start : start + 7]
    dead = {n.node_id for n in gone}
    knew = {n.node_id: {c.node_id for c in pastry(n).state.leafset} & dead for n in ring}
    for n in gone:
        n.up = False
        net.network.set_down(n.host)
        n.node.stop()
        n.overlay.stop()
    # Keys in the gap and around it, asked from everywhere, as soon as they die.
    rng = random.Random(4)
    low, high = ring[start - 1].node_id, ring[start + 7].node_id
    keys = [low, high] + [n.node_id for n in gone]
    keys += [from_int(rng.getrandbits(160)) for _ in range(30)]
    for key in keys:
        lookup = net.wait(rng.choice(net.live()).overlay.lookup(key, 1))
        assert lookup.contacts
    net.advance(60.0)
    for key in keys:
        for asker in rng.sample(net.live(), 3):
            lookup = net.wait(asker.overlay.lookup(key, 3))
            assert [c.node_id for c in lookup.contacts] == closest_ids(net, key, 3)
    for n in ring[start - 8 : start] + ring[start + 7 : start + 15]:
        up, down = true_leaves(net, n, 8)
        leaves = pastry(n).state.leafset
        assert [c.node_id for c in leaves.above] == up
        assert [c.node_id for c in leaves.below] == down
    assert sum(pastry(n).stats()["leaf_repairs"] for n in net.live()) > 0
    # The dead are remembered by the leaves that lost them, for the merge
    # round, which asks them in turn and keeps them while they do not answer.
    for n in ring[start - 8 : start]:
        assert knew[n.node_id]
        assert knew[n.node_id] <= {c.node_id for c in pastry(n).state.lost}
    assert sum(pastry(n).stats()["merge_attempts"] for n in net.live()) > 0
    assert sum(pastry(n).stats()["merges"] for n in net.live()) == 0


def test_values_are_put_and_got_through_the_value_layer_on_the_k_closest() -> None:
    net = network(60, batch=10)
    rng = random.Random(5)
    keys = [from_int(rng.getrandbits(160)) for _ in range(20)]
    writers = [rng.choice(net.nodes) for _ in keys]
    for i, (key, writer) in enumerate(zip(keys, writers, strict=True)):
        assert net.wait(writer.node.put(key, b"v%d" % i)) == 4
    for i, (key, writer) in enumerate(zip(keys, writers, strict=True)):
        assert net.wait(rng.choice(net.nodes).node.get(key)) == b"v%d" % i
        # The publisher keeps its own copy too (to republish it).
        holders = {n.node_id for n in net.nodes if n.node.store.get(key) is not None}
        assert holders - {writer.node_id} == set(closest_ids(net, key, 4)) - {writer.node_id}


def test_a_joining_node_receives_the_keys_it_is_now_responsible_for() -> None:
    net = network(50, batch=10)
    rng = random.Random(3)
    keys = [from_int(rng.getrandbits(160)) for _ in range(80)]
    for i, key in enumerate(keys):
        net.wait(rng.choice(net.nodes).node.put(key, b"v%d" % i))
    newcomer = net.add_node()
    net.wait(newcomer.overlay.join([(net.nodes[0].host, PORT)]))
    net.advance(5.0)
    held = {e.key for e in newcomer.node.store.records()}
    responsible = {k for k in keys if newcomer.node_id in closest_ids(net, k, 4)}
    assert responsible, "the seed gives the newcomer some keys to hold"
    assert responsible <= held
    assert len(held) < len(keys) / 2


def test_a_leaving_node_hands_its_keys_over_and_its_leaves_forget_it() -> None:
    net = network(40, batch=10)
    rng = random.Random(6)
    keys = [from_int(rng.getrandbits(160)) for _ in range(40)]
    for i, key in enumerate(keys):
        net.wait(rng.choice(net.nodes).node.put(key, b"v%d" % i))
    leaver = max(net.nodes, key=lambda n: len(list(n.node.store.records())))
    held = [e.key for e in leaver.node.store.records()]
    assert held
    leaves = [c.node_id for c in pastry(leaver).state.leafset]
    assert net.wait(leaver.node.leave()) == len(held)
    leaver.up = False
    net.network.set_down(leaver.host)
    for n in net.live():
        if n.node_id in leaves:
            assert not pastry(n).state.knows(leaver.node_id)
            assert leaver.node_id not in pastry(n).state.lost  # it said goodbye
    for key in held:
        holders = {n.node_id for n in net.live() if n.node.store.get(key) is not None}
        assert set(closest_ids(net, key, 4)) <= holders
        assert net.wait(rng.choice(net.live()).node.get(key)) is not None


def test_a_grown_network_settles_once_every_leaf_set_is_right() -> None:
    net = network(60, seed=29, batch=15)
    assert net.settled_after < OVERLAYS["pastry"].settle
    overlays = [n.overlay for n in net.live()]
    assert settled(overlays)
    for n in net.live():
        leaves = pastry(n).state.leafset
        up, down = true_leaves(net, n, leaves.size)
        assert [c.node_id for c in leaves.above] == up
        assert [c.node_id for c in leaves.below] == down
    # One leaf forgotten: not settled until the leaf-set rounds bring it back.
    node = pastry(net.live()[3])
    node.state.forget(node.state.leafset.above[2].node_id)
    assert not settled(overlays)
    net.advance(3 * LEAF_EVERY)
    assert settled(overlays)


def test_malformed_queries_get_a_malformed_error() -> None:
    net = network(3)
    a, b = net.nodes[:2]
    for method, bad in (
        (ROUTE, [b"short", 1, -1]),
        (ROUTE, [b"\x01" * 20, 0, -1]),
        (ROUTE, [b"\x01" * 20, 9, -1]),
        (ROUTE, [b"\x01" * 20, 1, 40]),
        (ROUTE, [b"\x01" * 20, True, -1]),
        (ROUTE, "text"),
        ("pastry_row", -1),
        ("pastry_row", 40),
        ("pastry_leafset", [1]),
        ("pastry_announce", 0),
        ("pastry_leave", "bye"),
    ):
        with pytest.raises(RemoteError) as e:
            net.wait(a.rpc.call_contact(b.contact, method, bad))
        assert e.value.code == "malformed", (method, bad)


def test_a_lying_hop_is_dropped_and_counted_and_the_routes_go_on() -> None:
    net = network(80, batch=10)
    liars = net.nodes[1:6]
    lies = [
        [True, [], []],  # done, naming nobody
        [False, ["x"], []],
        [True, [wire.encode_contact(liars[0].contact)] * 2, []],  # a node twice
        [False, [wire.encode_contact(liars[0].contact)] * 4, []],  # too many hops
        ["yes", [], []],
    ]
    for liar, lie in zip(liars, lies, strict=True):
        liar.rpc.register(ROUTE, lambda sender, args, lie=lie: lie)
    honest = [n for n in net.nodes if n not in liars]
    rng = random.Random(8)
    for _ in range(60):
        key = from_int(rng.getrandbits(160))
        lookup = net.wait(rng.choice(honest).overlay.lookup(key, 1))
        assert lookup.contacts[0].node_id == closest_ids(net, key, 1)[0]
    assert sum(pastry(n).stats()["lookup_bad_answers"] for n in honest) > 0


def test_a_node_named_in_an_answer_enters_only_once_it_answers() -> None:
    net = network(20, batch=5)
    liar = net.nodes[1]
    forged = Contact.from_key(Identity(b"\x07" * 32).public_key, ("10.99.9.9", PORT))
    liar.rpc.register("pastry_leafset", lambda sender, args: [wire.encode_contact(forged)])
    liar.rpc.register("pastry_row", lambda sender, args: [wire.encode_contact(forged)])
    net.advance(120.0)
    newcomer = net.add_node()
    net.wait(newcomer.overlay.join([(liar.host, PORT)]))
    net.advance(60.0)
    for n in net.live():
        assert not pastry(n).state.knows(forged.node_id)
    assert pastry(newcomer).state.knows(liar.node_id)


def test_an_announcement_alone_does_not_put_its_sender_in_our_state() -> None:
    # The RPC layer's listener offers a querier once its address is proven;
    # the handler must neither add it nor expect it there.
    net = network(3)
    overlay = pastry(net.nodes[0])
    stranger = Contact.from_key(Identity(b"\x09" * 32).public_key, ("10.99.9.8", PORT))
    assert overlay.responder.answer_announce(stranger, None) is True
    overlay.responder.answer_leave(stranger, None)
    assert not overlay.state.knows(stranger.node_id)
    assert overlay.stats()["leaves_received"] == 1


def stranger_for(overlay: PastryOverlay, wanted: bool) -> Identity:
    """An identity whose node ``overlay`` would (or would not) take into its state."""
    rng = random.Random(11)
    while True:
        identity = Identity(rng.randbytes(32))
        if overlay.state.wanted(identity.node_id) == wanted:
            return identity


@pytest.mark.parametrize("wanted", [False, True])
def test_a_stranger_must_prove_its_address_only_when_it_would_enter_our_state(
    wanted: bool,
) -> None:
    net = network(150, batch=25)
    target = net.live()[0]
    overlay = pastry(target)
    stranger = net.add_node(identity=stranger_for(overlay, wanted))
    before = target.rpc.stats()
    net.wait(stranger.rpc.call_contact(target.contact, "ping"))
    net.advance(1.0)
    # It is answered either way (a ping is no larger than its query), with
    # a challenge only if wanted.
    after = target.rpc.stats()
    assert after["challenges_sent"] - before["challenges_sent"] == int(wanted)
    assert after["proofs_received"] - before["proofs_received"] == int(wanted)
    assert after["probes_sent"] == before["probes_sent"]
    assert overlay.state.knows(stranger.node_id) == wanted


def test_a_known_node_at_a_new_address_proves_it_and_is_moved() -> None:
    net = network(30, batch=10)
    target, moving = net.live()[0], pastry(net.live()[0]).state.leafset.above[0]
    mover = next(n for n in net.live() if n.node_id == moving.node_id)
    net.take_down(mover)
    moved = net.add_node(identity=mover.rpc.identity)
    proofs = target.rpc.stats()["proofs_received"]
    net.wait(moved.rpc.call_contact(target.contact, "ping"))
    net.advance(1.0)
    assert target.rpc.stats()["proofs_received"] - proofs == 1
    leaves = pastry(target).state.leafset
    assert [c.address for c in leaves if c.node_id == moving.node_id] == [moved.contact.address]


def test_dhtkit_sim_pastry_reports_the_fields_of_the_other_overlays() -> None:
    result = simulate("pastry", 60, 20, seed=3, remove=0.1)
    assert result["overlay"] == "pastry" and result["success_rate"] == 1.0
    assert result["correct_rate"] == 1.0
    assert result["theory"]["label"] == "log16 N"
    assert set(result["hops"]) == {"mean", "p50", "p95", "max"}


def test_a_node_still_joining_is_no_bad_answer_to_a_merge_and_is_asked_again() -> None:
    # A node restarting refuses routing queries until it has joined: it
    # said nothing wrong, so the merge round keeps it to ask again.
    net = network(12)
    ours, theirs = net.live()[0], net.live()[5]
    pastry(theirs).joined = False
    bad = pastry(ours).stats()["bad_answers"]
    asked = net.wait(pastry(ours)._merge_through(theirs.contact))
    assert asked is False
    assert pastry(ours).stats()["bad_answers"] == bad
