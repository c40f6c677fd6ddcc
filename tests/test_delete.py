"""Deleting values on the virtual network: tombstones that keep old copies out."""

from __future__ import annotations

import pytest

from dhtkit.keyspace import distance, key_for
from dhtkit.rpc import RemoteError
from dhtkit.sim.overlays import OverlayNetwork
from dhtkit.storage import SQLiteStore
from dhtkit.values import (
    CASMismatch,
    KindConflict,
    NotPublisher,
    PlainValue,
    SignedValue,
    ValueDeleted,
    signed_key,
    to_wire,
)
from tests.valuenet import Cluster

HOUR = 3600.0
DAY = 24 * HOUR


def deleted(net: Cluster, d: object) -> ValueDeleted:
    with pytest.raises(ValueDeleted) as raised:
        net.wait(d)  # type: ignore[arg-type]
    return raised.value


# -- signed values ------------------------------------------------------------------


def test_a_deleted_signed_value_reads_as_deleted_everywhere() -> None:
    net = Cluster(5)
    owner = net.nodes[0]
    net.wait(owner.put_signed(b"v1", b"salt"))
    assert net.wait(owner.delete_signed(b"salt")) == 5
    key = signed_key(owner.identity.public_key, b"salt")
    for node in net.nodes:
        entry = node.store.get(key)
        tombstone = SignedValue.tombstone(owner.identity, 2, b"salt")
        assert entry is not None and entry.record == tombstone
        assert deleted(net, node.get_signed(owner.identity.public_key, b"salt")).record.seq == 2
        deleted(net, node.get(key))
    assert owner.stats()["deletes"] == 1


def test_a_put_after_a_delete_is_a_new_version_above_it() -> None:
    net = Cluster(3)
    owner = net.nodes[0]
    net.wait(owner.put_signed(b"v1"))
    net.wait(owner.delete_signed())
    net.wait(owner.put_signed(b"v3"))
    found = net.wait(net.nodes[2].get_signed(owner.identity.public_key))
    assert (found.value, found.seq) == (b"v3", 3)


def test_a_deleted_signed_value_never_comes_back_after_a_replica_that_missed_it_rejoins(
    tmp_path,
) -> None:
    net = Cluster(4)
    path = tmp_path / "replica.sqlite"
    replica = net.add_node(store=SQLiteStore(path))
    net.overlay.add(replica.rpc.contact)
    owner = net.nodes[0]
    public_key = owner.identity.public_key
    key = signed_key(public_key, b"")
    net.wait(owner.put_signed(b"secret plans"))
    assert replica.store.get(key) is not None
    identity, host = replica.identity, replica.rpc.contact.address[0]
    net.shut_down(replica)
    net.wait(owner.delete_signed())  # the replica is down: it misses the delete
    net.advance(2 * HOUR)
    back = net.add_node(store=SQLiteStore(path), identity=identity, host=host)
    stale = back.store.get(key)
    assert stale is not None and stale.record.value == b"secret plans"
    # Its replication offers the old version to the others, who refuse it;
    # theirs brings it the tombstone; reads never see the old value again.
    for _ in range(20):
        net.advance(HOUR)
        for node in net.nodes:
            if node not in net.shut:
                deleted(net, node.get_signed(public_key))
    entry = back.store.get(key)
    assert entry is not None and entry.record.deleted
    assert sum(n.stats().get("store_refused_stale_seq", 0) for n in net.nodes) > 0
    # The tombstones outlive every copy they delete: once they expire, nothing is left.
    net.advance(3 * HOUR)
    assert net.holders(key) == []
    assert net.wait(net.nodes[1].get_signed(public_key)) is None


def test_a_delete_stops_the_republishing_of_a_signed_value() -> None:
    net = Cluster(3)
    owner = net.client()
    net.wait(owner.put_signed(b"v"))
    net.wait(owner.delete_signed())
    net.advance(2 * DAY)
    assert owner.stats()["scheduler_republished"] == 0
    assert net.holders(signed_key(owner.identity.public_key, b"")) == []


# -- plain values ---------------------------------------------------------------------


def test_the_writer_of_a_plain_value_deletes_it() -> None:
    net = Cluster(4)
    writer = net.client()
    key = key_for("greeting")
    net.wait(writer.put(key, b"hello"))
    assert net.wait(writer.delete(key)) == 4
    for node in net.nodes:
        record = node.store.get(key).record
        assert isinstance(record, PlainValue) and record.deleted
        assert record.owner == writer.identity.public_key
        deleted(net, node.get(key))


def test_a_plain_delete_survives_a_restart_of_its_publisher(tmp_path) -> None:
    net = Cluster(3)
    path = tmp_path / "writer.sqlite"
    writer = net.add_node(store=SQLiteStore(path))
    identity, host = writer.identity, writer.rpc.contact.address[0]
    key = key_for("withdrawn")
    net.wait(writer.put(key, b"v"))
    net.wait(writer.delete(key))
    net.shut_down(writer)
    again = net.add_node(store=SQLiteStore(path), identity=identity, host=host)
    net.advance(2 * DAY)
    assert again.stats()["scheduler_republished"] == 0
    assert net.holders(key) == []  # the tombstones expired, and nothing came back
    assert net.wait(net.nodes[0].get(key)) is None


def test_a_stranger_cannot_delete_a_plain_value() -> None:
    net = Cluster(3)
    writer, stranger = net.client(), net.client()
    key = key_for("mine")
    net.wait(writer.put(key, b"v"))
    with pytest.raises(NotPublisher):
        net.wait(stranger.delete(key))
    # Sent to a replica by hand, the stranger's tombstone is refused there too.
    tombstone = PlainValue.tombstone(stranger.identity, key, int(net.clock.seconds() * 1e6))
    contact = net.nodes[0].rpc.contact
    with pytest.raises(RemoteError) as refused:
        net.wait(stranger.rpc.call_contact(contact, "store", [to_wire(tombstone), 60, None, False]))
    assert refused.value.code == "not_publisher"
    assert net.wait(net.nodes[1].get(key)) == b"v"


def test_a_strangers_tombstone_where_the_value_was_missing_hides_nothing() -> None:
    net = Cluster(3)
    writer, stranger = net.client(), net.client()
    key = key_for("mine")
    net.wait(writer.put(key, b"v"))
    newcomer = net.add_node()
    net.overlay.add(newcomer.rpc.contact)
    tombstone = PlainValue.tombstone(stranger.identity, key, int(net.clock.seconds() * 1e6))
    net.wait(
        stranger.rpc.call_contact(
            newcomer.rpc.contact, "store", [to_wire(tombstone), 60, None, False]
        )
    )
    assert net.wait(net.nodes[0].get(key)) == b"v"


def test_deleting_what_nobody_stores_or_another_kind_is_an_error() -> None:
    net = Cluster(2)
    with pytest.raises(LookupError):
        net.wait(net.nodes[0].delete(key_for("nothing")))
    owner = net.nodes[0]
    net.wait(owner.put_signed(b"v"))
    with pytest.raises(KindConflict):
        net.wait(owner.delete(signed_key(owner.identity.public_key, b"")))


def test_a_delete_the_network_missed_is_sent_on_by_replication() -> None:
    net = Cluster(3, quorum=1)
    writer = net.nodes[0]
    key = key_for("later")
    net.wait(writer.put(key, b"v"))
    others = net.nodes[1:]
    hosts = [node.rpc.contact.address[0] for node in others]
    for host in hosts:
        net.ports[host].stopListening()
    net.wait(writer.delete(key))  # only its own copy takes it
    for node, host in zip(others, hosts, strict=True):
        net.ports[host] = net.network.reactor_for(host).listenUDP(4000, node.rpc)
    net.advance(HOUR + 60)
    for node in others:
        assert node.store.get(key).record.deleted


def test_a_compare_and_swap_delete_that_fails_changes_nothing() -> None:
    net = Cluster(3)
    owner = net.client()
    net.wait(owner.put_signed(b"v1"))
    with pytest.raises(CASMismatch):
        net.wait(owner.delete_signed(expected_seq=7))
    key = signed_key(owner.identity.public_key, b"")
    mine = owner.store.get(key)
    assert mine is not None and mine.origin and not mine.record.deleted
    net.wait(owner.delete_signed(expected_seq=1))
    assert owner.store.get(key).record.deleted
    deleted(net, net.nodes[0].get_signed(owner.identity.public_key))


def test_a_delete_holds_on_kademlia_through_churn_and_joins() -> None:
    net = OverlayNetwork("kademlia", seed=5, overlay_options={"k": 5})
    net.grow(40)
    owner = net.nodes[0]
    public_key = owner.rpc.identity.public_key
    key = signed_key(public_key, b"")
    net.wait(owner.node.put_signed(b"old"))
    net.wait(owner.node.delete_signed())
    gone = net.remove(0.2)
    net.grow(10)  # newcomers are handed the keys they now hold: the tombstone
    net.advance(2 * HOUR)
    live = net.live()
    held = [n.node.store.get(key) for n in live]
    assert [e for e in held if e is not None and not e.record.deleted] == []
    # The nodes now responsible, newcomers among them, all hold the tombstone.
    closest = sorted(live, key=lambda n: distance(n.node_id, key))[:5]
    assert any(n in net.nodes[-10:] for n in closest)
    for sim in closest:
        entry = sim.node.store.get(key)
        assert entry is not None and entry.record.deleted
    for sim in live[::5]:
        with pytest.raises(ValueDeleted):
            net.wait(sim.node.get_signed(public_key))
    assert all(not n.up for n in gone)
