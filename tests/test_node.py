"""The value layer on the virtual network, over a full-mesh overlay."""

from __future__ import annotations

import math
import random
from typing import Any

import attrs
import pytest

from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.node import NotJoined, PutFailed
from dhtkit.overlay import StaticOverlay
from dhtkit.rpc import RemoteError
from dhtkit.sim.gossip import PORT
from dhtkit.sim.overlays import OverlayNetwork
from dhtkit.storage import MemoryStore, Quota, SQLiteStore, StoredRecord
from dhtkit.values import (
    CASMismatch,
    KindConflict,
    OverQuota,
    PlainValue,
    SaltTooLong,
    SequenceConflict,
    SignedValue,
    StaleSequence,
    ValueTooLarge,
    immutable_key,
    signed_key,
    to_wire,
)
from tests.valuenet import Cluster

HOUR = 3600.0
DAY = 24 * HOUR


def test_a_value_put_on_one_node_is_read_on_every_other() -> None:
    net = Cluster(5)
    key = key_for("greeting")
    assert net.wait(net.nodes[0].put(key, b"hello")) == 5
    for node in net.nodes:
        assert net.wait(node.get(key)) == b"hello"
    assert len(net.holders(key)) == 5


def test_the_latest_plain_write_wins() -> None:
    net = Cluster(4)
    key = key_for("counter")
    net.wait(net.nodes[0].put(key, b"one"))
    net.clock.run_until(net.clock.seconds() + 1)
    net.wait(net.nodes[1].put(key, b"two"))
    assert net.wait(net.nodes[3].get(key)) == b"two"


def test_an_immutable_value_lives_under_its_hash() -> None:
    net = Cluster(3)
    assert net.wait(net.nodes[0].put_immutable(b"content")) == 3
    assert net.wait(net.nodes[2].get(immutable_key(b"content"))) == b"content"


def test_an_immutable_value_cannot_take_over_a_name() -> None:
    net = Cluster(5)
    name = "alice's page"
    net.wait(net.nodes[0].put(key_for(name), b"honest"))
    attacker = net.client()
    net.wait(attacker.put_immutable(name.encode()))  # stored under its own key
    assert net.wait(net.nodes[2].get(key_for(name))) == b"honest"
    net.wait(net.nodes[0].put(key_for(name), b"honest, later"))
    assert net.wait(net.nodes[3].get(key_for(name))) == b"honest, later"
    assert net.wait(net.nodes[3].get(immutable_key(name.encode()))) == name.encode()


def test_a_missing_key_reads_as_none() -> None:
    net = Cluster(3)
    assert net.wait(net.nodes[1].get(key_for("nothing"))) is None


def test_signed_values_count_up_their_versions() -> None:
    net = Cluster(4)
    writer = net.nodes[0]
    net.wait(writer.put_signed(b"v1", salt=b"profile"))
    net.wait(writer.put_signed(b"v2", salt=b"profile"))
    found = net.wait(net.nodes[2].get_signed(writer.identity.public_key, b"profile"))
    assert isinstance(found, SignedValue)
    assert (found.value, found.seq, found.salt) == (b"v2", 2, b"profile")
    assert found.public_key == writer.identity.public_key
    # the same key answers a plain get with the value
    key = signed_key(writer.identity.public_key, b"profile")
    assert net.wait(net.nodes[3].get(key)) == b"v2"
    # another salt is another value
    assert net.wait(net.nodes[3].get_signed(writer.identity.public_key, b"other")) is None


def test_a_signed_value_can_be_written_with_another_identity() -> None:
    net = Cluster(3)
    owner = Identity(b"\x07" * 32)
    net.wait(net.nodes[0].put_signed(b"mine", identity=owner))
    found = net.wait(net.nodes[1].get_signed(owner.public_key))
    assert found.value == b"mine" and found.public_key == owner.public_key


def test_compare_and_swap_succeeds_only_on_the_expected_seq() -> None:
    net = Cluster(3)
    client = net.client()
    net.wait(client.put_signed(b"a", seq=1))
    assert net.wait(client.put_signed(b"b", expected_seq=1)) == 3
    found = net.wait(net.nodes[0].get_signed(client.identity.public_key))
    assert (found.seq, found.value) == (2, b"b")
    with pytest.raises(CASMismatch):
        net.wait(client.put_signed(b"c", seq=9, expected_seq=1))
    with pytest.raises(CASMismatch):
        net.wait(client.put_signed(b"x", salt=b"new", expected_seq=0))
    assert net.wait(net.nodes[1].get_signed(client.identity.public_key)).value == b"b"


def test_compare_and_swap_on_an_old_seq_is_refused_before_sending() -> None:
    net = Cluster(3)
    writer = net.nodes[0]
    net.wait(writer.put_signed(b"a"))
    net.wait(writer.put_signed(b"b"))
    sent = net.network.counters["sent"]
    with pytest.raises(CASMismatch, match="expected seq 1, but seq 2 is stored"):
        net.wait(writer.put_signed(b"c", expected_seq=1))
    assert net.network.counters["sent"] == sent
    # an out-of-date local copy does not decide: the replicas do
    stale = SignedValue.create(writer.identity, b"a", 1)
    now = net.clock.seconds()
    client = net.client()
    client.store.put(StoredRecord(stale, "test", now, now + DAY))
    assert net.wait(client.put_signed(b"c", identity=writer.identity, expected_seq=2)) == 3


def test_a_lower_seq_is_refused_by_the_replicas() -> None:
    net = Cluster(3)
    owner = Identity(b"\x01" * 32)
    net.wait(net.nodes[0].put_signed(b"new", identity=owner, seq=5))
    # A client holds no copy, so the refusal comes from the replicas.
    client = net.client()
    with pytest.raises(StaleSequence) as caught:
        net.wait(client.put_signed(b"old", identity=owner, seq=4))
    assert "5" in str(caught.value)
    assert net.wait(client.get_signed(owner.public_key)).value == b"new"
    assert net.nodes[1].stats()["store_refused_stale_seq"] == 1


def test_the_same_seq_with_other_content_is_refused() -> None:
    net = Cluster(3)
    owner = Identity(b"\x02" * 32)
    net.wait(net.nodes[0].put_signed(b"first", identity=owner, seq=3))
    with pytest.raises(SequenceConflict):
        net.wait(net.client().put_signed(b"second", identity=owner, seq=3))
    # the very same version again is a refresh, not a conflict
    assert net.wait(net.client().put_signed(b"first", identity=owner, seq=3)) == 3


def test_a_lower_seq_than_the_local_copy_is_refused_before_sending() -> None:
    net = Cluster(3)
    writer = net.nodes[0]
    net.wait(writer.put_signed(b"v", seq=7))
    sent = net.network.counters["sent"]
    with pytest.raises(StaleSequence):
        net.wait(writer.put_signed(b"w", seq=6))
    assert net.network.counters["sent"] == sent


def test_a_plain_put_cannot_replace_a_signed_value() -> None:
    net = Cluster(3)
    writer = net.nodes[0]
    net.wait(writer.put_signed(b"signed"))
    key = signed_key(writer.identity.public_key)
    with pytest.raises(KindConflict):
        net.wait(net.client().put(key, b"hijack"))
    assert net.wait(net.nodes[2].get(key)) == b"signed"


def test_an_oversized_value_is_refused_locally() -> None:
    net = Cluster(3)
    sent = net.network.counters["sent"]
    with pytest.raises(ValueTooLarge, match="1001 bytes; the limit is 1000"):
        net.wait(net.nodes[0].put(key_for("big"), b"x" * 1001))
    with pytest.raises(ValueTooLarge):
        net.wait(net.nodes[0].put_signed(b"x" * 1001))
    assert net.network.counters["sent"] == sent
    # exactly the limit fits in a datagram, signed value and all
    assert net.wait(net.nodes[0].put_signed(b"x" * 1000, salt=b"s" * 64)) == 3


def test_a_long_salt_is_refused_locally() -> None:
    net = Cluster(2)
    with pytest.raises(SaltTooLong, match="65 bytes; the limit is 64"):
        net.wait(net.nodes[0].put_signed(b"v", salt=b"s" * 65, seq=1))


def test_the_size_limit_is_configurable() -> None:
    net = Cluster(3, max_value_size=10)
    with pytest.raises(ValueTooLarge, match="limit is 10 bytes"):
        net.wait(net.nodes[0].put(key_for("k"), b"x" * 11))


def test_a_limit_above_what_a_datagram_carries_fails_clearly() -> None:
    net = Cluster(3, max_value_size=1400)
    with pytest.raises(ValueTooLarge, match="does not fit in a datagram"):
        net.wait(net.nodes[0].put(key_for("k"), b"x" * 1350))


def test_a_bad_key_is_a_clear_error() -> None:
    net = Cluster(2)
    with pytest.raises(ValueError, match="20 bytes"):
        net.wait(net.nodes[0].put(b"short", b"v"))
    with pytest.raises(ValueError, match="20 bytes"):
        net.wait(net.nodes[0].get(b"short"))


def test_over_quota_reaches_the_caller() -> None:
    net = Cluster(3, make_store=lambda: MemoryStore(Quota(max_records_per_publisher=2)))
    client = net.client()
    net.wait(client.put(key_for("a"), b"1"))
    net.wait(client.put(key_for("b"), b"2"))
    with pytest.raises(OverQuota, match="publisher net:"):
        net.wait(client.put(key_for("c"), b"3"))
    assert net.wait(net.nodes[0].get(key_for("b"))) == b"2"


def test_forged_and_malformed_stores_are_refused_and_counted() -> None:
    net = Cluster(2)
    attacker, target = net.nodes[0], net.nodes[1]
    assert target.rpc.contact is not None
    good = SignedValue.create(Identity(b"\x03" * 32), b"v", 1)
    forged = attrs.evolve(good, value=b"w")
    calls = {
        "bad_signature": [to_wire(forged), 60, None, False],
        "malformed": [[9, b"?"], 60, None, False],
    }
    for code, args in calls.items():
        with pytest.raises(RemoteError) as caught:
            net.wait(attacker.rpc.call_contact(target.rpc.contact, "store", args))
        assert caught.value.code == code
    future = PlainValue(key_for("k"), b"v", int((net.clock.seconds() + 3600) * 1_000_000))
    with pytest.raises(RemoteError, match="clock_skew"):
        net.wait(
            attacker.rpc.call_contact(
                target.rpc.contact, "store", [to_wire(future), 60, None, False]
            )
        )
    for args in (
        None,
        5,
        [to_wire(good), -1, None, False],
        [to_wire(good), 60, "x", False],
        [to_wire(good), 60, None, 1],
        [to_wire(good), 2**64 - 1, None, False],
    ):
        with pytest.raises(RemoteError, match="malformed"):
            net.wait(attacker.rpc.call_contact(target.rpc.contact, "store", args))
    for args in (None, b"short", [b"x"]):
        with pytest.raises(RemoteError, match="malformed"):
            net.wait(attacker.rpc.call_contact(target.rpc.contact, "get", args))
    stats = target.stats()
    assert stats["store_refused_bad_signature"] == 1
    assert stats["store_refused_clock_skew"] == 1
    assert stats["store_refused_malformed"] == 7
    assert stats["get_refused_malformed"] == 3
    assert len(target.store) == 0


def test_a_forged_answer_to_get_is_ignored() -> None:
    net = Cluster(3)
    key = key_for("k")
    net.wait(net.nodes[0].put(key, b"true"))
    liar = net.nodes[1]
    # The liar answers with a record that belongs to another key, and with junk.
    other = key_for("other")
    answers = iter([[to_wire(attrs.evolve(liar.store.get(key).record, key=other)), 60], "junk"])
    liar.rpc.register("get", lambda sender, args: next(answers))
    reader = net.nodes[2]
    assert net.wait(reader.get(key)) == b"true"
    assert net.wait(reader.get(key)) == b"true"
    assert reader.stats()["bad_answers"] == 2


@pytest.mark.parametrize(
    "ttl",
    [2**64 - 1, math.inf, -math.inf, math.nan, 0, -1, True, "60", None],
    ids=["u64", "inf", "-inf", "nan", "zero", "negative", "bool", "text", "null"],
)
def test_a_lying_ttl_in_one_answer_is_dropped_and_the_get_answered(ttl: Any) -> None:
    net = Cluster(5)
    key = key_for("k")
    net.wait(net.nodes[0].put(key, b"true"))
    liar = net.nodes[1]
    record = to_wire(liar.store.get(key).record)
    liar.rpc.register("get", lambda sender, args: [record, ttl])
    reader = net.nodes[2]
    for n in range(1, 4):
        assert net.wait(reader.get(key)) == b"true"
        assert reader.stats()["bad_answers"] == n
    # The signed path reads first too.
    net.wait(reader.put_signed(b"mine"))
    assert net.wait(reader.get_signed(reader.identity.public_key)).value == b"mine"


def test_get_believes_the_newest_version_and_repairs_the_rest() -> None:
    net = Cluster(4)
    owner = Identity(b"\x04" * 32)
    net.wait(net.nodes[0].put_signed(b"v1", identity=owner, seq=1))
    # One replica alone learns version 2 (a put that reached only it).
    newer = SignedValue.create(owner, b"v2", 2)
    lone = net.nodes[3]
    now = net.clock.seconds()
    lone.store.put(StoredRecord(newer, "test", now, now + DAY))
    found = net.wait(net.nodes[1].get_signed(owner.public_key))
    assert (found.seq, found.value) == (2, b"v2")
    net.advance(5, step=0.05)
    assert all(n.store.get(newer.key).record == newer for n in net.nodes)
    assert net.nodes[1].stats()["read_repairs"] == 3  # nodes 0 and 2, and the reader itself


def test_a_put_succeeds_with_a_majority_and_fails_without() -> None:
    net = Cluster(5)
    for node in net.nodes[3:]:
        net.network.set_down(node.rpc.contact.address[0])
    assert net.wait(net.nodes[0].put(key_for("a"), b"1")) == 3
    net.network.set_down(net.nodes[2].rpc.contact.address[0])
    with pytest.raises(PutFailed, match=r"reached 2 of the 5 nodes .* 3 needed"):
        net.wait(net.nodes[0].put(key_for("b"), b"2"))
    # reads still work from what is left
    assert net.wait(net.nodes[1].get(key_for("a"))) == b"1"


def test_the_quorum_is_configurable() -> None:
    net = Cluster(4, quorum=4)
    net.network.set_down(net.nodes[3].rpc.contact.address[0])
    with pytest.raises(PutFailed):
        net.wait(net.nodes[0].put(key_for("a"), b"1"))


def test_a_node_alone_cannot_put() -> None:
    net = Cluster(0)
    loner = net.add_node(overlay=StaticOverlay())
    with pytest.raises(PutFailed, match="0 of the 0"):
        net.wait(loner.put(key_for("a"), b"1"))


#: Every routing overlay: the value layer treats a lone node the same over each.
ROUTING = ["kademlia", "chord", "pastry"]


@pytest.mark.parametrize("kind", ROUTING)
def test_a_node_that_started_a_network_of_its_own_stores_and_reads_on_itself(kind: str) -> None:
    net = OverlayNetwork(kind)
    loner = net.add_node()
    assert net.wait(loner.overlay.join([])) == 0  # no bootstrap: a network of its own
    key = key_for("alone")
    assert net.wait(loner.node.put(key, b"v")) == 1  # one replica of one
    assert net.wait(loner.node.get(key)) == b"v"
    assert net.wait(loner.node.put_signed(b"w", b"s")) == 1
    found = net.wait(loner.node.get_signed(loner.node.identity.public_key, b"s"))
    assert found is not None and found.value == b"w"


@pytest.mark.parametrize("kind", ["chord", "pastry"])
def test_a_large_record_is_answered_at_once_not_held_for_an_address_probe(kind: str) -> None:
    # Over an overlay without FIND_VALUE a read asks the replicas with
    # "get": a first query to a replica is padded, so that an answer that
    # fills most of a datagram may go at once (it used to wait a probe's
    # round trip at about one replica in two).
    net = OverlayNetwork(kind, seed=5)
    net.grow(40, batch=10)
    rng = random.Random(3)
    keys = [key_for("large {}".format(i)) for i in range(10)]
    for i, key in enumerate(keys):
        net.wait(rng.choice(net.live()).node.put(key, bytes([i]) * 1000))
    held = sum(n.rpc.stats()["answers_held"] for n in net.live())
    for i, key in enumerate(keys * 3):
        assert net.wait(rng.choice(net.live()).node.get(key)) == bytes([i % 10]) * 1000
    assert sum(n.rpc.stats()["answers_held"] for n in net.live()) == held


@pytest.mark.parametrize("kind", ROUTING)
def test_a_node_that_joins_through_others_refuses_until_it_has_a_contact(kind: str) -> None:
    net = OverlayNetwork(kind)
    net.grow(1)
    newcomer = net.add_node()
    newcomer.node.expect_peers()  # it has bootstrap addresses
    key = key_for("early")
    with pytest.raises(NotJoined, match=r"no contacts yet.*check its bootstrap addresses") as e:
        net.wait(newcomer.node.put(key, b"v"))
    assert not e.value.lost
    with pytest.raises(NotJoined):
        net.wait(newcomer.node.get(key))
    with pytest.raises(NotJoined):
        net.wait(newcomer.node.put_signed(b"w"))
    assert len(newcomer.node.store) == 0
    net.wait(newcomer.overlay.join([(net.nodes[0].host, PORT)]))
    net.advance(net.kind.settle)
    assert net.wait(newcomer.node.put(key, b"v")) == 2
    assert net.wait(net.nodes[0].node.get(key)) == b"v"


# Chord and Pastry nodes that leave tell their neighbours, which forget them
# at once; a Kademlia node keeps a silent contact until it fails its checks
# (and until then a put fails for want of replicas, test_kademlia_overlay).
@pytest.mark.parametrize("kind", ["chord", "pastry"])
def test_a_node_that_lost_every_contact_refuses(kind: str) -> None:
    net = OverlayNetwork(kind)
    net.grow(2)
    first, second = net.nodes
    assert first.overlay.contacts()
    net.wait(second.node.leave())
    assert not first.overlay.contacts()
    with pytest.raises(NotJoined, match="lost every contact") as e:
        net.wait(first.node.put(key_for("x"), b"v"))
    assert e.value.lost
    with pytest.raises(NotJoined, match="lost every contact"):
        net.wait(first.node.get(key_for("x")))


def test_the_replication_factor_limits_the_holders() -> None:
    net = Cluster(8, replication=3)
    key = key_for("few")
    assert net.wait(net.nodes[0].put(key, b"v")) == 3
    responsible = {c.node_id for c in net.overlay.closest(key, 3)}
    holders = {n.identity.node_id for n in net.holders(key)} - {net.nodes[0].identity.node_id}
    assert holders <= responsible
    assert net.wait(net.nodes[5].get(key)) == b"v"


def test_values_are_republished_and_outlive_their_expiry() -> None:
    net = Cluster(3)
    client = net.client()
    key = key_for("kept")
    net.wait(client.put(key, b"v"))
    net.advance(3 * DAY)
    assert net.wait(net.nodes[0].get(key)) == b"v"
    # the replicas' expiry was renewed by the republishes, never beyond a day ahead
    for node in net.nodes[:3]:
        entry = node.store.get(key)
        assert entry is not None
        assert net.clock.seconds() < entry.expire_at <= net.clock.seconds() + DAY
    assert client.stats()["scheduler_republished"] == 3


def test_values_expire_once_the_publisher_stops() -> None:
    net = Cluster(3)
    client = net.client()
    key = key_for("dropped")
    net.wait(client.put(key, b"v"))
    assert net.wait(client.delete_local(key)) is True
    net.advance(DAY - 60)
    assert net.wait(net.nodes[0].get(key)) == b"v"
    # hourly replication among the holders does not keep it alive
    net.advance(2 * HOUR)
    assert net.holders(key) == []
    assert net.wait(net.nodes[0].get(key)) is None


def test_a_new_member_receives_values_by_replication() -> None:
    net = Cluster(3)
    key = key_for("spread")
    net.wait(net.nodes[0].put(key, b"v"))
    newcomer = net.add_node()
    net.overlay.add(newcomer.rpc.contact)
    assert newcomer.store.get(key) is None
    net.advance(HOUR + 120)
    entry = newcomer.store.get(key)
    assert entry is not None and entry.record.value == b"v"
    assert not entry.origin and not entry.cached


def test_a_restarted_publisher_resumes_republishing_from_its_sqlite_file(tmp_path) -> None:
    net = Cluster(3)
    path = tmp_path / "dhtkit.sqlite"
    client = net.add_node(store=SQLiteStore(path))
    identity, host = client.identity, client.rpc.contact.address[0]
    key = key_for("persistent")
    net.wait(client.put(key, b"v"))
    net.shut_down(client)
    # Down for two days: the replicas' copies expire after one.
    net.advance(2 * DAY)
    assert net.holders(key) == []
    restarted = net.add_node(store=SQLiteStore(path), identity=identity, host=host)
    entry = restarted.store.get(key)
    assert entry is not None and entry.origin
    net.advance(60, step=0.05)
    assert restarted.stats()["scheduler_republished"] == 1
    assert net.wait(net.nodes[0].get(key)) == b"v"
    assert len(net.holders(key)) == 4


def test_a_restarted_replica_expires_what_fell_due_while_it_was_down(tmp_path) -> None:
    path = tmp_path / "dhtkit.sqlite"
    net = Cluster(2)
    replica = net.add_node(store=SQLiteStore(path))
    net.overlay.add(replica.rpc.contact)
    key = key_for("transient")
    writer = net.client()
    net.wait(writer.put(key, b"v"))
    net.wait(writer.delete_local(key))
    assert replica.store.get(key) is not None
    identity, host = replica.identity, replica.rpc.contact.address[0]
    net.shut_down(replica)
    net.advance(DAY + HOUR)
    reopened = SQLiteStore(path)
    assert reopened.get(key) is not None  # nothing ran while it was down
    restarted = net.add_node(store=reopened, identity=identity, host=host)
    net.advance(1, step=0.05)
    assert restarted.store.get(key) is None
    assert restarted.stats()["scheduler_expired"] == 1


def test_a_get_does_not_wait_for_a_dead_replica() -> None:
    net = Cluster(6, replication=3)
    key = key_for("k")
    assert net.wait(net.nodes[0].put(key, b"value")) == 3
    holders = net.holders(key)
    net.shut_down(next(n for n in holders if n is not net.nodes[0]))
    reader = next(n for n in net.nodes if n not in holders)
    began = net.clock.seconds()
    assert net.wait(reader.get(key)) == b"value"
    # A few round trips of 20 ms, not the dead node's 1 s timeout (and retry).
    assert net.clock.seconds() - began < 0.5
    assert reader.stats()["gets_by_quorum"] == 1
