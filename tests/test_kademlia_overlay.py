"""The Kademlia overlay on the virtual network: joins, RPCs, FIND_VALUE, hand-over, refresh."""

from __future__ import annotations

import math
import random

import pytest
from twisted.internet import task
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import FakeDatagramTransport
from zope.interface.verify import verifyObject

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.kademlia import KademliaOverlay
from dhtkit.keyspace import distance, from_int, key_for
from dhtkit.node import PutFailed
from dhtkit.overlay import IRoutingOverlay, IValueFinder, JoinFailed
from dhtkit.rpc import RemoteError, RPCProtocol
from dhtkit.sim.gossip import PORT
from dhtkit.sim.overlays import OverlayNetwork
from dhtkit.values import PlainValue, immutable_key, signed_key, to_wire


def network(count: int, seed: int = 1, **options: object) -> OverlayNetwork:
    net = OverlayNetwork("kademlia", seed=seed, overlay_options=dict(options))
    net.grow(count, batch=10)
    return net


def closest_ids(net: OverlayNetwork, key: bytes, count: int) -> list[bytes]:
    ids = [n.node_id for n in net.live()]
    return sorted(ids, key=lambda i: distance(i, key))[:count]


def test_provides_the_overlay_interfaces() -> None:
    net = network(1)
    overlay = net.nodes[0].overlay
    assert isinstance(overlay, KademliaOverlay)
    assert verifyObject(IRoutingOverlay, overlay)
    assert verifyObject(IValueFinder, overlay)


def test_a_first_node_joins_alone_and_a_dead_bootstrap_fails_the_join() -> None:
    net = network(1)
    lonely = net.add_node()
    with pytest.raises(JoinFailed):
        net.wait(lonely.overlay.join([("10.99.0.1", PORT)]))


def test_lookups_find_the_k_closest_nodes_of_the_network() -> None:
    net = network(40, k=8)
    rng = random.Random(2)
    for _ in range(20):
        key = from_int(rng.getrandbits(160))
        asker = rng.choice(net.nodes)
        found = net.wait(asker.overlay.lookup(key, 8))
        assert [c.node_id for c in found.contacts] == closest_ids(net, key, 8)
        assert found.hops >= 1


def test_every_node_knows_its_neighbours_after_joining() -> None:
    net = network(40, k=8)
    for n in net.nodes:
        table = {c.node_id for c in n.overlay.contacts()}
        nearest = closest_ids(net, n.node_id, 4)[1:]  # [0] is the node itself
        assert set(nearest) <= table


def test_find_node_refuses_a_malformed_target() -> None:
    net = network(3)
    a, b = net.nodes[:2]
    contact = b.rpc.contact
    assert contact is not None
    for bad in (b"short", "text", None, [1, 2]):
        with pytest.raises(RemoteError) as e:
            net.wait(a.rpc.call_contact(contact, "find_node", bad))
        assert e.value.code == "malformed"
        with pytest.raises(RemoteError):
            net.wait(a.rpc.call_contact(contact, "find_value", bad))


@pytest.mark.parametrize("key", [b"short", bytes(21), "a" * 20])
def test_every_lookup_fails_its_deferred_on_a_bad_key(key: object) -> None:
    net = network(3)
    overlay = net.nodes[0].overlay
    calls = [
        overlay.lookup(key, 3),  # type: ignore[arg-type]
        overlay.find_value(key, 3, lambda c, v: True),  # type: ignore[arg-type]
        overlay.find_value_disjoint(key, 3, lambda c, v: True, paths=2),  # type: ignore[arg-type]
        overlay.lookup_storing(key, 3, lambda c: None),  # type: ignore[arg-type]
    ]
    failures: list[object] = []
    for call in calls:
        call.addErrback(lambda f: failures.append(f.trap(ValueError)))
    assert len(failures) == len(calls)


def test_find_value_answers_with_the_record_or_with_contacts() -> None:
    net = network(10)
    writer, other = net.nodes[0], net.nodes[1]
    key = net.wait(writer.node.put_immutable(b"hello")) and immutable_key(b"hello")
    holder = next(n for n in net.nodes if n.node.store.get(key) is not None and n is not other)
    contact = holder.rpc.contact
    assert contact is not None
    kind, answer = net.wait(other.rpc.call_contact(contact, "find_value", key))
    assert kind == "value" and isinstance(answer, list)
    kind, answer = net.wait(other.rpc.call_contact(contact, "find_value", b"\x01" * 20))
    assert kind == "nodes"
    assert all(isinstance(c, Contact) for c in wire.decode_contacts(answer))


def test_a_contact_named_in_a_reply_enters_the_table_only_once_it_answers() -> None:
    net = network(5)
    liar = net.nodes[1]
    forged = Contact.from_key(Identity(b"\x07" * 32).public_key, ("10.99.9.9", PORT))
    liar.rpc.register("find_node", lambda sender, args: [wire.encode_contact(forged)])
    newcomer = net.add_node()
    net.wait(newcomer.overlay.join([(liar.host, PORT)]))
    ids = {c.node_id for c in newcomer.overlay.contacts()}
    assert forged.node_id not in ids
    assert liar.node_id in ids


def test_get_of_an_immutable_value_stops_at_a_holder_and_caches_a_copy_on_the_path() -> None:
    net = network(60, k=4)
    net.wait(net.nodes[0].node.put_immutable(b"popular"))
    key = immutable_key(b"popular")
    holders = {n.node_id for n in net.nodes if n.node.store.get(key) is not None}
    readers = [n for n in net.nodes if n.node_id not in holders]
    for reader in readers:
        assert net.wait(reader.node.get(key)) == b"popular"
    net.advance(1.0)
    sent = sum(n.node.counters["cached_copies_sent"] for n in readers)
    cached = [n for n in net.nodes if (e := n.node.store.get(key)) is not None and e.cached]
    # Readers whose first contacts held the value had nowhere to cache it.
    assert 0 < len(cached) <= sent < len(readers)
    assert not holders & {n.node_id for n in cached}


@pytest.mark.parametrize(
    "ttl", [2**64 - 1, math.inf, math.nan, "60"], ids=["u64", "inf", "nan", "text"]
)
def test_a_lying_ttl_in_a_find_value_answer_is_dropped_and_counted(ttl: object) -> None:
    net = network(12, k=4)
    key = key_for("k")
    net.wait(net.nodes[0].node.put(key, b"true"))
    holders = [n for n in net.nodes if n.node.store.get(key) is not None]
    liar = holders[0]
    record = to_wire(liar.node.store.get(key).record)
    liar.rpc.register("find_value", lambda sender, args: ["value", [record, ttl]])
    readers = [n for n in net.nodes if n not in holders]
    for reader in readers:
        assert net.wait(reader.node.get(key)) == b"true"
    assert sum(r.node.stats().get("bad_answers", 0) for r in readers) >= 1


def test_a_malformed_find_node_answer_is_dropped_counted_and_the_lookup_goes_on() -> None:
    net = network(20, k=4)
    liar = net.nodes[3]
    liar.rpc.register("find_node", lambda sender, args: [b"junk", 2**64 - 1])
    for asker in net.nodes:
        if asker is liar:
            continue
        key = from_int(random.Random(asker.host).getrandbits(160))
        found = net.wait(asker.overlay.lookup(key, 4))
        assert [c.node_id for c in found.contacts] == [
            i for i in closest_ids(net, key, 5) if i != liar.node_id
        ][:4]
    bad = sum(n.overlay.stats().get("lookup_bad_answers", 0) for n in net.nodes)
    assert bad >= 1


def _set_down(net: OverlayNetwork, contacts: list[Contact]) -> None:
    hosts = {n.node_id: n for n in net.nodes}
    for contact in contacts:
        net.network.set_down(hosts[contact.node_id].host)
        hosts[contact.node_id].up = False


def test_a_put_falls_back_beyond_its_dead_seeds() -> None:
    net = network(40, k=4)
    writer = net.nodes[5]
    key = key_for("dead seeds")
    seeds = writer.overlay.table.closest(key, 4)
    assert len(writer.overlay.contacts()) > len(seeds)
    _set_down(net, seeds)
    assert net.wait(writer.node.put(key, b"v")) == 4
    holders = {n.node_id for n in net.live() if n.node.store.get(key) is not None}
    assert holders == set(closest_ids(net, key, 4))
    assert net.wait(net.live()[0].node.get(key)) == b"v"


def test_a_put_that_reaches_no_other_node_fails() -> None:
    net = network(40, k=4)
    loner = net.nodes[9]
    _set_down(net, loner.overlay.contacts())
    with pytest.raises(PutFailed, match=r"reached 1 of the 1 .* full replica set is 4\); 3 needed"):
        net.wait(loner.node.put(key_for("alone"), b"v"))
    assert loner.node.stats()["puts_failed"] == 1


def test_a_put_needs_a_majority_of_a_full_replica_set_not_of_the_nodes_found() -> None:
    net = network(40, k=4)
    writer = net.nodes[5]
    key = key_for("few found")
    # Every node but two of the writer's contacts is down: the lookup finds
    # those two and the writer, three of the four a replica set should hold.
    alive = writer.overlay.contacts()[:2]
    _set_down(net, [c for c in writer.overlay.contacts() if c not in alive])
    for node in net.nodes:
        if node is not writer and node.contact not in alive:
            net.network.set_down(node.host)
    assert net.wait(writer.node.put(key, b"v")) == 3
    net.network.set_down(alive[0].address[0])
    with pytest.raises(PutFailed, match=r"reached 2 of the .* 3 needed"):
        net.wait(writer.node.put(key_for("fewer"), b"v"))


def test_get_of_a_mutable_value_finds_the_newest_version() -> None:
    net = network(30, k=5)
    owner = Identity(b"\x05" * 32)
    a, b = net.nodes[0], net.nodes[1]
    net.wait(a.node.put_signed(b"one", identity=owner))
    net.wait(b.node.put_signed(b"two", identity=owner))
    found = net.wait(net.nodes[2].node.get_signed(owner.public_key))
    assert found is not None and (found.seq, found.value) == (2, b"two")


def test_a_joining_node_receives_the_keys_it_is_now_responsible_for() -> None:
    net = network(40, k=4)
    rng = random.Random(3)
    keys = [from_int(rng.getrandbits(160)) for _ in range(60)]
    for i, key in enumerate(keys):
        net.wait(rng.choice(net.nodes).node.put(key, b"v%d" % i))
    newcomer = net.add_node()
    net.wait(newcomer.overlay.join([(net.nodes[0].host, PORT)]))
    net.advance(5.0)
    held = {e.key for e in newcomer.node.store.records()}
    responsible = {k for k in keys if newcomer.node_id in closest_ids(net, k, 4)}
    assert responsible, "the seed gives the newcomer some keys to hold"
    assert responsible <= held
    assert len(held) < len(keys) / 2  # only its share moved, not everything


def newcomer_knowing_the_bootstrap(k: int) -> tuple[OverlayNetwork, KademliaOverlay, bytes]:
    """A node new to a grown network of 60 that has pinged only the
    bootstrap, and an id in the far half of the id space (its bucket has room)."""
    net = network(60, k=k)
    newcomer = net.add_node()
    overlay = newcomer.overlay
    assert isinstance(overlay, KademliaOverlay)
    net.wait(overlay.rpc.call(("10.0.0.1", PORT), "ping"))
    return net, overlay, from_int(int.from_bytes(newcomer.node_id, "big") ^ (1 << 159))


def test_a_joining_bucket_refresh_ends_once_the_bucket_is_full() -> None:
    net, overlay, far = newcomer_knowing_the_bootstrap(k=4)
    assert not overlay.table.is_full(far)
    outcome = net.wait(overlay._fill_bucket(far))
    assert overlay.table.is_full(far)
    assert outcome.stopped_early


def test_a_joining_bucket_refresh_pings_the_nodes_the_first_answer_names() -> None:
    # One answer names k nodes of a far bucket's range: each is proven by a
    # ping rather than asked about the range in turn (about k find_node).
    net, overlay, far = newcomer_knowing_the_bootstrap(k=8)
    outcome = net.wait(overlay._fill_bucket(far))
    assert outcome.messages <= 2
    assert overlay.table.is_full(far)
    bucket = [c for c in overlay.table.contacts() if overlay.table.same_bucket(c.node_id, far)]
    assert len(bucket) == 8
    assert all(overlay.rpc.is_proven(c) for c in bucket)


def test_a_join_looks_its_own_id_up_once_then_asks_only_alpha_neighbours_again() -> None:
    net = network(60, k=8)
    newcomer = net.add_node()
    overlay = newcomer.overlay
    assert isinstance(overlay, KademliaOverlay)
    fills, asked_after = [], []
    fill, find_node = overlay._fill_bucket, overlay._find_node

    def counted_fill(target: bytes):  # type: ignore[no-untyped-def]
        fills.append(target)
        return fill(target)

    def counted_find_node(contact: Contact, target: bytes):  # type: ignore[no-untyped-def]
        if target == newcomer.node_id and overlay.stats()["lookups"] >= 1 + len(fills):
            asked_after.append(contact)  # after the self-lookup and the refreshes
        return find_node(contact, target)

    overlay._fill_bucket = counted_fill  # type: ignore[method-assign]
    overlay._find_node = counted_find_node  # type: ignore[method-assign]
    net.wait(net.join(newcomer, net.live()[:-1]))
    # One self-lookup and the refreshes are the only lookups; the last step
    # asks alpha of the nearest contacts, not a second whole lookup (~k).
    assert overlay.stats()["lookups"] == 1 + len(fills)
    assert 1 <= len(asked_after) <= overlay.alpha
    nearest = closest_ids(net, newcomer.node_id, 4)[1:]
    assert set(nearest) <= {c.node_id for c in overlay.contacts()}


def test_a_join_refreshes_only_empty_buckets_and_lookups_stay_exact() -> None:
    net = network(80, k=4)
    newcomers = []
    for _ in range(5):
        newcomers.append(net.add_node())
        net.wait(net.join(newcomers[-1], net.live()[:-1]))
    # The self-lookup twice and a refresh of each bucket left empty: fewer
    # lookups than buckets (a refresh of every bucket beyond the closest
    # neighbour would take more).
    stats = [n.overlay.stats() for n in newcomers]
    assert sum(s["lookups"] for s in stats) <= sum(s["buckets"] for s in stats)
    rng = random.Random(5)
    for _ in range(20):
        key = from_int(rng.getrandbits(160))
        found = net.wait(rng.choice(newcomers).overlay.lookup(key, 4))
        assert [c.node_id for c in found.contacts] == closest_ids(net, key, 4)


def test_untouched_buckets_are_refreshed() -> None:
    net = network(20, refresh_every=600.0)
    before = sum(n.overlay.stats()["refreshes"] for n in net.nodes)
    net.advance(1200.0)
    after = sum(n.overlay.stats()["refreshes"] for n in net.nodes)
    assert after > before


def test_nodes_that_stop_answering_are_dropped_from_the_tables() -> None:
    net = network(30, k=8, max_failures=1)
    dead = {n.node_id for n in net.remove(0.2)}

    def dead_references() -> int:
        return sum(len(dead & {c.node_id for c in n.overlay.contacts()}) for n in net.live())

    before = dead_references()
    rng = random.Random(4)
    for _ in range(30):
        net.wait(rng.choice(net.live()).overlay.lookup(from_int(rng.getrandbits(160)), 8))
    net.advance(10.0)  # the calls the lookups stopped waiting for time out
    assert dead_references() < before
    dropped = sum(n.overlay.stats()["dropped_failures"] for n in net.live())
    assert dropped > 0


def test_a_node_holding_an_immutable_value_reads_it_without_traffic() -> None:
    net = network(10, k=3)
    net.wait(net.nodes[0].node.put_immutable(b"mine"))
    holder = next(n for n in net.nodes if n.node.store.get(immutable_key(b"mine")) is not None)
    sent = holder.rpc.stats()["queries_sent"]
    assert net.wait(holder.node.get(immutable_key(b"mine"))) == b"mine"
    assert holder.rpc.stats()["queries_sent"] == sent
    assert holder.node.stats()["gets_answered_locally"] == 1


def test_a_stopped_node_hands_nothing_over() -> None:
    # Its store may be closed already: a service closes it once its port is.
    net = network(12, k=4)
    rng = random.Random(5)
    for i in range(30):
        net.wait(rng.choice(net.nodes).node.put(from_int(rng.getrandbits(160)), b"v%d" % i))
    for n in net.nodes:
        n.node.stop()
    newcomer = net.add_node()
    net.wait(newcomer.overlay.join([(net.nodes[0].host, PORT)]))
    net.advance(5.0)
    assert sum(n.node.counters["handed_over"] for n in net.nodes) == 0
    assert len(newcomer.node.store) == 0


def test_a_replacement_promoted_among_our_closest_gets_our_keys() -> None:
    clock = task.Clock()
    rpc = RPCProtocol(Identity(b"\7" * 32), clock)
    rpc.makeConnection(FakeDatagramTransport())
    overlay = KademliaOverlay(rpc, clock=clock, k=2, max_failures=1)
    heard: list[Contact] = []
    overlay.add_neighbour_listener(heard.append)
    # Real keys (the table pings a full bucket's head), sorted by the half
    # of the id space they fall in: ours, or the far one.
    contacts = [
        Contact.from_key(Identity(bytes([n]) * 32).public_key, ("10.0.0.1", 4000 + n))
        for n in range(8, 40)
    ]
    top = overlay.node_id[0] & 0x80
    near = [c for c in contacts if c.node_id[0] & 0x80 == top][:2]
    far = [c for c in contacts if c.node_id[0] & 0x80 != top][:3]
    for contact in near + far:
        overlay.table.add_contact(contact)
    assert overlay.table.stats()["replacements"] == 1  # far[2] waits: its bucket is full
    for contact in near:
        overlay.table.remove_contact(contact.node_id)
    overlay.table.record_failure(far[1].node_id)  # dropped: far[2] takes its place
    assert heard == [far[2]]  # now one of our 2 closest: it is handed our keys


def test_a_close_contact_back_after_failing_gets_our_keys_again() -> None:
    # Across a partition that heals, say: it may have missed our writes.
    clock = task.Clock()
    rpc = RPCProtocol(Identity(b"\7" * 32), clock)
    rpc.makeConnection(FakeDatagramTransport())
    overlay = KademliaOverlay(rpc, clock=clock, k=2, max_failures=3)
    overlay.start()
    heard: list[Contact] = []
    overlay.add_neighbour_listener(heard.append)
    neighbour = Contact.from_key(Identity(b"\10" * 32).public_key, ("10.0.0.1", 4008))
    for _ in range(2):  # every verified message offers its sender
        for listener in list(rpc._listeners):
            listener(neighbour)
    assert heard == [neighbour]  # once, when it arrived
    overlay.table.record_failure(neighbour.node_id)
    for listener in list(rpc._listeners):
        listener(neighbour)
    assert heard == [neighbour, neighbour]
    overlay.stop()


class _Sink(DatagramProtocol):
    """An address that receives but is no dhtkit node: it never answers."""

    def __init__(self) -> None:
        self.received = 0

    def datagramReceived(self, datagram: bytes, addr: object) -> None:
        self.received += len(datagram)


def test_a_spoofed_neighbour_gets_a_window_of_records_not_the_whole_store() -> None:
    net = network(6, k=4)
    x = net.nodes[0]
    rng = random.Random(4)
    for n in range(300):
        net.wait(x.node.put(key_for("r{}".format(n)), rng.randbytes(800)))
    held = sum(1 for e in x.node.store.records() if not e.cached)
    assert held > 200
    sink = _Sink()
    net.network.reactor_for("10.99.0.1").listenUDP(PORT, sink)
    # An id next to ours, at an address that is not the sender's: the RPC
    # layer offers such a sender to the routing table, which makes it a neighbour.
    near = bytes(x.node_id[:-1]) + bytes([x.node_id[-1] ^ 1])
    spoofed = Contact(near, Identity(b"\x09" * 32).public_key, ("10.99.0.1", PORT))
    x.overlay._heard_from(spoofed)
    net.advance(120.0)
    stats = x.node.stats()
    assert stats["handed_over"] == 8  # one window, unanswered
    assert stats["hand_over_dropped"] > 100  # the rest of what it would hold
    assert sink.received < 8 * 1000 * 3  # each store sent once and retried


# -- Sybil defences ---------------------------------------------------------------


def test_find_node_answers_leave_out_contacts_whose_calls_failed() -> None:
    net = network(10)
    a, b = net.nodes[:2]
    victim = next(c for c in a.overlay.contacts() if c.node_id != b.node_id)
    a.overlay.table.record_failure(victim.node_id)
    assert victim.node_id in a.overlay.table  # one failure does not drop it
    answer = net.wait(b.rpc.call_contact(a.contact, "find_node", victim.node_id))
    assert victim.node_id not in {c.node_id for c in wire.decode_contacts(answer)}
    kind, answer = net.wait(b.rpc.call_contact(a.contact, "find_value", victim.node_id))
    assert kind == "nodes"
    assert victim.node_id not in {c.node_id for c in wire.decode_contacts(answer)}


def test_dead_contacts_leave_every_table_within_the_recheck_time() -> None:
    net = network(30, k=8, stale_after=300.0, recheck_every=60.0)
    dead = {n.node_id for n in net.remove(0.2)}

    def dead_references() -> int:
        return sum(len(dead & {c.node_id for c in n.overlay.contacts()}) for n in net.live())

    before = dead_references()
    # A dead contact waiting as a replacement takes a dropped one's place,
    # and is dropped in turn: each is dropped at most once.
    waiting = sum(
        len(dead & set(bucket.replacements))
        for n in net.live()
        for bucket in n.overlay.table._buckets
    )
    known = {n.node_id: {c.node_id for c in n.overlay.contacts()} - dead for n in net.live()}
    assert before > 0
    # No lookup runs: only the re-checks find out. Stale after 300 s, found
    # by the next round (60 s, jittered up to 75 s), and the ping times out.
    net.advance(300.0 + 75.0 + 10.0)
    assert dead_references() == 0
    # The live ones answered their re-checks and stayed.
    assert all(known[n.node_id] <= {c.node_id for c in n.overlay.contacts()} for n in net.live())
    assert 0 < sum(n.overlay.stats()["stale_dropped"] for n in net.live()) <= before + waiting


def test_a_signed_read_over_disjoint_paths_gets_past_an_eclipsed_path() -> None:
    k = 4
    net = network(30, k=k)
    owner = Identity(b"\x09" * 32)
    net.wait(net.nodes[0].node.put_signed(b"the value", identity=owner))
    key = signed_key(owner.public_key, b"")
    honest = sorted(net.live(), key=lambda n: distance(n.node_id, key))
    holders_reach = distance(honest[k - 1].node_id, key)
    far = honest[-1]  # an honest node the reader knows, far from the key
    # Attackers between the holders and that node: closer to the key than
    # the honest contact the reader knows, so a single lookup that meets them
    # never asks it; they answer with one another only, and hold nothing.
    attackers = []
    while len(attackers) < 10:
        candidate = net.add_node()
        if holders_reach < distance(candidate.node_id, key) < distance(far.node_id, key):
            attackers.append(candidate)
    by_closeness = sorted(attackers, key=lambda n: distance(n.node_id, key))
    circle = wire.encode_contacts([a.contact for a in by_closeness[:k]])
    for attacker in attackers:
        attacker.rpc.register("find_node", lambda sender, args: circle)
        attacker.rpc.register("find_value", lambda sender, args: ["nodes", circle])
    readers = [net.add_node(), net.add_node()]
    for reader in readers:
        for n in [*by_closeness[:3], far]:
            reader.overlay.table.add_contact(n.contact)
    # Their k closest: three attackers and the honest node. One lookup is
    # eclipsed; two disjoint ones deal the honest node to a path of its own.
    single, reader = readers
    assert net.wait(single.node.get_signed(owner.public_key)) is None
    reader.node.disjoint_paths = 2
    found = net.wait(reader.node.get_signed(owner.public_key))
    assert found is not None and found.value == b"the value"
    assert reader.overlay.stats()["disjoint_lookups"] == 1


def test_a_put_stores_with_its_lookups_last_step_asking_each_replica_once() -> None:
    net = network(40, k=8)
    writer = net.nodes[3]
    key = key_for("one query per replica")
    before = {n.node_id: n.node.stats().get("store_received", 0) for n in net.nodes}
    assert net.wait(writer.node.put(key, b"v")) == 8
    replicas = [i for i in closest_ids(net, key, 8) if i != writer.node_id]
    by_id = {n.node_id: n for n in net.nodes}
    for node_id in replicas:
        node = by_id[node_id]
        assert node.node.store.get(key) is not None
        assert node.node.stats()["store_received"] == before[node_id] + 1
    assert writer.node.stats()["stored_by_lookup"] == len(replicas)
    assert net.wait(net.nodes[30].node.get(key)) == b"v"


def _store_near_args(net: OverlayNetwork, key: bytes, count: int) -> list[object]:
    record = PlainValue(key, b"v", int(net.clock.seconds() * 1_000_000))
    return [to_wire(record), 60, count]


def test_a_node_that_knows_closer_nodes_declines_a_store_near() -> None:
    net = network(40, k=8)
    key = key_for("declined")
    far = next(n for n in net.nodes if n.node_id not in closest_ids(net, key, 20))
    asker = net.nodes[0] if net.nodes[0] is not far else net.nodes[1]
    stored, named = net.wait(
        asker.rpc.call_contact(far.rpc.contact, "store_near", _store_near_args(net, key, 3))
    )
    assert stored is False
    assert far.node.store.get(key) is None
    assert far.node.stats()["store_declined_not_close"] == 1
    # It names the contacts it knows closer to the key than itself.
    contacts = wire.decode_contacts(named)
    assert contacts
    assert all(distance(c.node_id, key) < distance(far.node_id, key) for c in contacts)
    near = next(n for n in net.nodes if n.node_id == closest_ids(net, key, 1)[0])
    stored, named = net.wait(
        asker.rpc.call_contact(near.rpc.contact, "store_near", _store_near_args(net, key, 3))
    )
    assert stored is True and named == []  # none closer than the closest
    assert near.node.store.get(key) is not None


@pytest.mark.parametrize(
    "args",
    [
        "junk",
        ["record", 60],
        ["record", 60, 0],
        ["record", 60, 257],
        ["record", 60, True],
        ["record", 60, 3.0],
        ["record", 60, "3"],
        ["record", 60, 10**9],
        ["record", 60, -1],
        ["record", -1, 3],
        ["record", 60, 3, None],
        [[9, b"?"], 60, 3],
    ],
)
def test_a_malformed_store_near_is_refused_and_counted(args: object) -> None:
    net = network(3)
    asker, target = net.nodes[0], net.nodes[1]
    if isinstance(args, list) and args[0] == "record":
        args = [_store_near_args(net, key_for("k"), 3)[0], *args[1:]]
    with pytest.raises(RemoteError) as caught:
        net.wait(asker.rpc.call_contact(target.rpc.contact, "store_near", args))
    assert caught.value.code == "malformed"
    assert target.node.stats()["store_refused_malformed"] == 1
    assert len(target.node.store) == 0


def test_a_put_goes_past_a_junk_store_near_answer_and_a_node_without_the_method() -> None:
    net = network(40, k=8)
    writer = net.nodes[3]
    key = key_for("junk and old")
    by_id = {n.node_id: n for n in net.nodes}
    replicas = [i for i in closest_ids(net, key, 8) if i != writer.node_id]
    liar, old = by_id[replicas[0]], by_id[replicas[1]]
    liar.rpc.register("store_near", lambda sender, args: ["stored", 5], idempotent=True)
    old.rpc.unregister("store_near")
    assert net.wait(writer.node.put(key, b"v")) >= 6
    # The node that does not know STORE_NEAR was sent a plain STORE after.
    assert old.node.store.get(key) is not None
    assert writer.overlay.stats()["lookup_bad_answers"] >= 1
    assert net.wait(net.nodes[30].node.get(key)) == b"v"
