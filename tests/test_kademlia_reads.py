"""Reads over Kademlia on the virtual network: a read quorum, and dead replicas.

A get ends once a read quorum of the closest nodes answered, and it does
not wait out the timeout of a dead replica: it asks the next node after a
few round trips (:mod:`dhtkit.kademlia.lookup`). Times here are simulated
seconds on the virtual clock, 10 ms each way.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import attrs
import pytest

from dhtkit.keyspace import from_int
from dhtkit.sim.overlays import OverlayNetwork
from dhtkit.values import ValueDeleted

NODES = 90
VALUES = 30
TIMEOUT = 1.0  # the RPC timeout: a lookup stalls on a silent node for half of it


@pytest.fixture(scope="module")
def net() -> Iterator[tuple[OverlayNetwork, list[tuple[bytes, bytes]]]]:
    net = OverlayNetwork("kademlia", seed=31, timeout=TIMEOUT, node_options={"replication": 3})
    net.grow(NODES)
    rng = random.Random(32)
    values = []
    for i in range(VALUES):
        key, value = from_int(rng.getrandbits(160)), b"value %d" % i
        assert net.wait(rng.choice(net.nodes).node.put(key, value)) >= 2
        values.append((key, value))
    yield net, values


def timed_get(network: OverlayNetwork, reader: object, key: bytes) -> tuple[bytes | None, float]:
    began = network.clock.seconds()
    value = network.wait(reader.node.get(key))  # type: ignore[attr-defined]
    return value, network.clock.seconds() - began


def test_a_get_reads_a_quorum_not_every_replica(
    net: tuple[OverlayNetwork, list[tuple[bytes, bytes]]],
) -> None:
    network, values = net
    rng = random.Random(33)
    before = sum(n.overlay.stats()["lookup_messages"] for n in network.nodes)
    for key, value in values:
        assert timed_get(network, rng.choice(network.nodes), key)[0] == value
    after = sum(n.overlay.stats()["lookup_messages"] for n in network.nodes)
    # A full lookup asks the k = 20 closest and more; a quorum read far fewer.
    assert (after - before) / len(values) < 15
    assert sum(n.node.stats().get("gets_by_quorum", 0) for n in network.nodes) > 0


def test_a_node_holding_a_copy_answers_from_it_when_one_copy_is_a_quorum(
    net: tuple[OverlayNetwork, list[tuple[bytes, bytes]]],
) -> None:
    network, values = net
    key, value = values[0]
    holder = next(n for n in network.nodes if n.node.store.get(key) is not None)
    lookups = holder.overlay.stats()["lookups"]
    holder.node.read_quorum = 1
    try:
        assert network.wait(holder.node.get(key)) == value
    finally:
        holder.node.read_quorum = 3
    assert holder.overlay.stats()["lookups"] == lookups  # no traffic at all
    assert holder.node.stats()["gets_answered_locally"] >= 1


def test_signed_reads_over_disjoint_paths_read_every_close_node(
    net: tuple[OverlayNetwork, list[tuple[bytes, bytes]]],
) -> None:
    network, _ = net
    writer, reader = network.nodes[1], network.nodes[2]
    assert network.wait(writer.node.put_signed(b"signed", b"salt")) >= 2
    by_quorum = reader.node.stats().get("gets_by_quorum", 0)
    reader.node.disjoint_paths = 2
    try:
        found = network.wait(reader.node.get_signed(writer.node.identity.public_key, b"salt"))
    finally:
        reader.node.disjoint_paths = 1
    assert found is not None and found.value == b"signed"
    assert reader.node.stats().get("gets_by_quorum", 0) == by_quorum
    found = network.wait(reader.node.get_signed(writer.node.identity.public_key, b"salt"))
    assert found is not None and found.value == b"signed"
    assert reader.node.stats()["gets_by_quorum"] == by_quorum + 1


def test_a_signed_put_stores_on_the_nodes_its_read_found(
    net: tuple[OverlayNetwork, list[tuple[bytes, bytes]]],
) -> None:
    network, _ = net
    writer, reader = network.nodes[3], network.nodes[4]
    for version in (b"first", b"second"):
        lookups = writer.overlay.stats()["lookups"]
        assert network.wait(writer.node.put_signed(version, b"reused")) >= 2
        # One lookup, the read of the newest seq, not a second to store.
        assert writer.overlay.stats()["lookups"] == lookups + 1
    assert writer.node.stats()["lookups_reused"] >= 2
    found = network.wait(reader.node.get_signed(writer.node.identity.public_key, b"reused"))
    assert found is not None and (found.value, found.seq) == (b"second", 2)
    lookups = writer.overlay.stats()["lookups"]
    assert network.wait(writer.node.delete_signed(b"reused")) >= 2
    assert writer.overlay.stats()["lookups"] == lookups + 1
    with pytest.raises(ValueDeleted):
        network.wait(reader.node.get_signed(writer.node.identity.public_key, b"reused"))


def test_a_get_does_not_wait_for_dead_replicas(
    net: tuple[OverlayNetwork, list[tuple[bytes, bytes]]],
) -> None:
    # Last in this module: it takes a third of the nodes away.
    network, values = net
    network.remove(1 / 3)
    rng = random.Random(34)
    hits, misses = [], []
    for key, value in values:
        got, took = timed_get(network, rng.choice(network.live()), key)
        (hits if got == value else misses).append(took)
    # A get that finds the value takes a few round trips of 20 ms, never a
    # stall of TIMEOUT / 2 on a dead replica, let alone its timeout; one
    # that finds nothing asks the k closest, still without waiting a timeout.
    assert max(hits) < TIMEOUT / 2
    assert max(misses, default=0.0) < TIMEOUT
    # Each value is on 3 nodes; a few may have lost them all.
    assert len(hits) >= 0.8 * len(values)


def test_a_signature_is_checked_once_for_all_the_copies_of_a_version(
    net: tuple[OverlayNetwork, list[tuple[bytes, bytes]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dhtkit import values as values_module

    network, _ = net
    writer, reader = network.nodes[3], network.nodes[4]
    assert network.wait(writer.node.put_signed(b"once", b"checked")) >= 2
    checks: list[bytes] = []
    verify = values_module._verify

    def counted(signature: bytes, payload: bytes, public_key: bytes) -> None:
        checks.append(signature)
        verify(signature, payload, public_key)

    monkeypatch.setattr(values_module, "_verify", counted)
    copies: list[object] = []
    valid_answer = reader.node._valid_answer

    def seen(key: bytes, answer: object) -> object:
        copies.extend([answer] if answer is not None else [])
        return valid_answer(key, answer)

    monkeypatch.setattr(reader.node, "_valid_answer", seen)
    found = network.wait(reader.node.get_signed(writer.node.identity.public_key, b"checked"))
    assert found is not None and found.value == b"once"
    assert len(copies) >= 2 and len(checks) == 1
    monkeypatch.undo()
    # A forged copy of the same version is still refused: it is another record.
    forged = attrs.evolve(found, signature=bytes(64))
    answer = [values_module.to_wire(forged), 60]
    assert reader.node._valid_answer(found.key, answer) is None


@pytest.mark.parametrize(
    "fields",
    [
        [2, b"p" * 32, [1], 1, b"v", b"s" * 64],  # a list where the salt goes
        [1, b"k" * 20, {1: 2}, 5],  # a map as a plain value
        [2, b"p" * 32, b"", 10**400, b"v", b"s" * 64],  # a seq far out of range
    ],
)
def test_a_copy_with_fields_of_the_wrong_kind_is_dropped_and_counted(
    net: tuple[OverlayNetwork, list[tuple[bytes, bytes]]], fields: list[object]
) -> None:
    # Fields are checked before the record is looked up among those checked
    # already: an unhashable field must not escape as a TypeError.
    network, values = net
    reader = network.nodes[5]
    key, value = values[1]
    before = reader.node.stats().get("bad_answers", 0)
    assert reader.node._valid_answer(key, [fields, 60]) is None
    assert reader.node.stats()["bad_answers"] == before + 1
    assert network.wait(reader.node.get(key)) == value
