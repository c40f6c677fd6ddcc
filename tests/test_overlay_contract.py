"""The contract every overlay of the registry keeps, on the virtual network.

Each test runs once per entry of :data:`dhtkit.overlays.OVERLAYS`: a new
overlay is done when it passes them. The simulator's owner oracle (the
entry's ``owner`` rule over the global view only the simulator has) says
which node truly holds a key.
"""

from __future__ import annotations

import random

import pytest
from zope.interface.verify import verifyObject

from dhtkit.chord import messages as chord_messages
from dhtkit.contact import Contact
from dhtkit.keyspace import from_int
from dhtkit.overlay import IRoutingOverlay, JoinFailed
from dhtkit.overlays import OVERLAYS
from dhtkit.pastry import messages as pastry_messages
from dhtkit.rpcerrors import RemoteError
from dhtkit.sim.gossip import PORT
from dhtkit.sim.overlays import OverlayNetwork, SimNode

pytestmark = pytest.mark.parametrize("kind", sorted(OVERLAYS))

#: Nodes in the networks of these tests, and how many hold each value.
NODES = 40
K = 4


def network(kind: str, count: int = NODES, seed: int = 1) -> OverlayNetwork:
    """``count`` nodes joined through the join protocol, replication ``K``."""
    entry = OVERLAYS[kind]
    replication = entry.service_options({}, K)
    net = OverlayNetwork(
        kind,
        seed=seed,
        overlay_options={k: v for k, v in replication.items() if k != "node_options"},
        node_options=replication.get("node_options", {}),
    )
    net.grow(count, batch=10)
    return net


def holders(net: OverlayNetwork, key: bytes, count: int) -> list[bytes]:
    """The ``count`` live nodes truly responsible for ``key``, most responsible first."""
    ids = [n.node_id for n in net.live()]
    ranked: list[bytes] = []
    while ids and len(ranked) < count:
        owner = net.kind.owner(key, ids)
        ranked.append(owner)
        ids.remove(owner)
    return ranked


def keys(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [from_int(rng.getrandbits(160)) for _ in range(count)]


def test_provides_the_routing_overlay_interface(kind: str) -> None:
    net = OverlayNetwork(kind)
    node = net.add_node()
    assert verifyObject(IRoutingOverlay, node.overlay)
    assert node.overlay.hop_histogram is node.overlay.lookup_stats.hops


def test_contact_count_counts_the_contacts(kind: str) -> None:
    net = network(kind, count=12)
    for node in net.live():
        assert node.overlay.contact_count() == len(node.overlay.contacts()) > 0


def test_joining_through_nobody_starts_a_network_of_one(kind: str) -> None:
    net = OverlayNetwork(kind)
    first = net.add_node()
    assert net.wait(first.overlay.join([])) == 0
    key = from_int(12345)
    found = net.wait(first.overlay.lookup(key, 3))
    assert [c.node_id for c in found.contacts] == [first.node_id]
    assert first.overlay.holds(first.node_id, key, 1)
    # And the next node joins through it.
    second = net.add_node()
    assert net.wait(second.overlay.join([(first.host, PORT)])) >= 1
    assert first.contact in second.overlay.contacts()


def test_join_fails_when_nobody_answers(kind: str) -> None:
    net = OverlayNetwork(kind)
    gone = net.add_node()
    net.network.set_down(gone.host)
    newcomer = net.add_node()
    with pytest.raises(JoinFailed):
        net.wait(newcomer.overlay.join([(gone.host, PORT), ("10.0.99.99", PORT)]))
    with pytest.raises(JoinFailed):
        net.wait(newcomer.overlay.join([], known=[gone.contact]))


def test_lookups_agree_with_the_owner_oracle(kind: str) -> None:
    net = network(kind)
    rng = random.Random(2)
    for key in keys(30, seed=3):
        asker = rng.choice(net.live()).overlay
        found = net.wait(asker.lookup(key, K))
        assert [c.node_id for c in found.contacts] == holders(net, key, K)
        # What the value layer asks: the same nodes.
        assert net.wait(asker.find_responsible(key, K)) == found.contacts
    assert sum(n.overlay.stats()["lookups"] for n in net.live()) >= 30


def test_holds_agrees_with_the_owner_oracle_on_the_holders(kind: str) -> None:
    net = network(kind)
    by_id = {n.node_id: n for n in net.live()}
    for key in keys(30, seed=4):
        ranked = holders(net, key, K + 1)
        inside, outside = ranked[:K], ranked[K]
        for node_id in inside:
            overlay = by_id[node_id].overlay
            assert overlay.holds(node_id, key, K)
            assert not overlay.holds(outside, key, K)


def test_the_neighbour_listener_hears_of_a_node_that_joins_next_to_it(kind: str) -> None:
    net = network(kind, count=30)
    heard: dict[bytes, list[Contact]] = {n.node_id: [] for n in net.live()}
    for n in net.live():
        n.overlay.add_neighbour_listener(heard[n.node_id].append)
    newcomer = net.add_node()
    net.wait(newcomer.overlay.join([(net.nodes[0].host, PORT)]))
    net.advance(net.kind.settle)
    # The node nearest to it by the overlay's own rule shares keys with it,
    # and so do others (as many as the overlay's neighbourhood holds).
    others = [n.node_id for n in net.live() if n is not newcomer]
    assert newcomer.contact in heard[net.kind.owner(newcomer.node_id, others)]
    assert sum(newcomer.contact in contacts for contacts in heard.values()) >= 2


def test_leave_hands_every_key_over(kind: str) -> None:
    net = network(kind)
    rng = random.Random(6)
    values = {key: b"v%d" % i for i, key in enumerate(keys(40, seed=5))}
    for key, value in values.items():
        net.wait(rng.choice(net.live()).node.put(key, value))
    leaver = max(net.live(), key=lambda n: len(list(n.node.store.records())))
    held = [e.key for e in leaver.node.store.records()]
    assert held
    net.wait(leaver.node.leave())
    leaver.up = False
    net.network.set_down(leaver.host)
    by_id = {n.node_id: n for n in net.live()}
    for key in held:
        # The node now responsible has it, without a republish or a repair round.
        owner = by_id[holders(net, key, 1)[0]]
        assert owner.node.store.get(key) is not None
        assert net.wait(rng.choice(net.live()).node.get(key)) == values[key]


def test_values_survive_a_fifth_of_the_nodes_removed_at_once(kind: str) -> None:
    net = network(kind, count=50)
    rng = random.Random(7)
    values = {key: b"v%d" % i for i, key in enumerate(keys(40, seed=8))}
    for key, value in values.items():
        net.wait(rng.choice(net.live()).node.put(key, value))
    gone = net.remove(0.2)
    assert len(gone) == 10
    net.advance(net.kind.settle)
    for key, value in values.items():
        assert net.wait(rng.choice(net.live()).node.get(key)) == value


#: Virtual seconds a partition lasts (each side repairs without the other),
#: and the seconds after it heals: several merge rounds.
PARTITION_TIME = 180.0
MERGE_TIME = 120.0


def test_a_network_split_by_a_partition_is_one_again_once_it_heals(kind: str) -> None:
    net = network(kind, count=30)
    rng = random.Random(9)
    nodes = net.live()
    rng.shuffle(nodes)
    west, east = nodes[:15], nodes[15:]
    net.network.partition([n.host for n in west], [n.host for n in east])
    net.advance(PARTITION_TIME)
    values = {}
    for name, side in (("west", west), ("east", east)):
        for i, key in enumerate(keys(10, seed=len(name))):
            values[key] = "{} {}".format(name, i).encode()
            net.wait(side[i % len(side)].node.put(key, values[key]))

    net.network.heal()
    net.advance(MERGE_TIME)
    for key, value in values.items():
        for asker in (rng.choice(west), rng.choice(east)):
            found = net.wait(asker.overlay.lookup(key, K))
            assert [c.node_id for c in found.contacts] == holders(net, key, K)
            assert net.wait(asker.node.get(key)) == value


#: The RPCs each overlay answers while started.
OVERLAY_METHODS = {
    "kademlia": ("find_node", "find_value"),
    "chord": (
        chord_messages.FIND,
        chord_messages.STATE,
        chord_messages.NOTIFY,
        chord_messages.LEAVE,
    ),
    "pastry": (
        pastry_messages.ROUTE,
        pastry_messages.LEAFSET,
        pastry_messages.ROW,
        pastry_messages.ANNOUNCE,
        pastry_messages.LEAVE,
    ),
}

#: The value layer's RPCs (its holder, its listener table, its listenings).
VALUE_METHODS = ("store", "get", "listen", "unlisten", "notify")


def answered(net: OverlayNetwork, asker: SimNode, target: SimNode, method: str) -> bool:
    """Whether ``target`` has a handler for ``method`` (bad arguments are still an answer)."""
    try:
        net.wait(asker.rpc.call_contact(target.contact, method, None))
    except RemoteError as e:
        return e.code != "unknown_method"
    return True


def test_stop_takes_the_rpcs_off_and_a_start_on_the_same_rpc_puts_them_back(kind: str) -> None:
    net = OverlayNetwork(kind)
    asker, target = net.add_node(), net.add_node()
    methods = OVERLAY_METHODS[kind] + VALUE_METHODS
    assert [m for m in methods if not answered(net, asker, target, m)] == []
    target.node.stop()
    target.overlay.stop()
    assert [m for m in methods if answered(net, asker, target, m)] == []
    target.overlay.start()
    target.node.start()
    assert [m for m in methods if not answered(net, asker, target, m)] == []
