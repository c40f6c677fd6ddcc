"""The holder answers every store and get a peer sends: refused and counted, never logged."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer

from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.rpc import RemoteError
from dhtkit.storage import MemoryStore, StorageError
from dhtkit.values import MAX_SEQ, MAX_TTL, ImmutableValue, PlainValue, SignedValue, to_wire
from tests.valuenet import Cluster

OWNER = Identity(b"\x03" * 32)
GOOD = to_wire(SignedValue.create(OWNER, b"v", 1, b"salt"))
PLAIN = to_wire(PlainValue(key_for("k"), b"v", 1))
PEER = Contact.from_key(Identity(b"\x07" * 32).public_key, ("10.1.1.1", 4000))


def _with(record: list[Any], index: int, value: Any) -> list[Any]:
    out = list(record)
    out[index] = value
    return out


# (what is wrong, the store's arguments, the reason code sent back)
MALFORMED_STORES: list[tuple[str, Any, str]] = [
    ("not a list", b"junk", "malformed"),
    ("three arguments", [GOOD, 60, None], "malformed"),
    ("a non-bytes salt", [_with(GOOD, 2, 7), 60, None, False], "malformed"),
    ("a list for a salt", [_with(GOOD, 2, []), 60, None, False], "malformed"),
    ("a non-bytes public key", [_with(GOOD, 1, "k" * 32), 60, None, False], "malformed"),
    ("a text immutable value", [[0, "text"], 60, None, False], "malformed"),
    ("an integer immutable value", [[0, 12345], 60, None, False], "malformed"),
    ("a non-bytes plain key", [_with(PLAIN, 1, 5), 60, None, False], "malformed"),
    ("a 64-bit ttl", [GOOD, 2**64 - 1, None, False], "malformed"),
    ("a ttl above the cap", [GOOD, MAX_TTL + 1, None, False], "malformed"),
    ("an infinite ttl", [GOOD, math.inf, None, False], "malformed"),
    ("a NaN ttl", [GOOD, math.nan, None, False], "malformed"),
    ("a negative ttl", [GOOD, -1, None, False], "malformed"),
    ("a zero ttl", [GOOD, 0, None, False], "malformed"),
    ("a boolean ttl", [GOOD, True, None, False], "malformed"),
    ("a text ttl", [GOOD, "60", None, False], "malformed"),
    ("a 64-bit expected seq", [GOOD, 60, 2**64 - 1, False], "malformed"),
    ("a negative expected seq", [GOOD, 60, -1, False], "malformed"),
    ("a float expected seq", [GOOD, 60, 1.0, False], "malformed"),
    ("a text expected seq", [GOOD, 60, "1", False], "malformed"),
    ("a 64-bit plain seq", [_with(PLAIN, 3, 2**64 - 1), 60, None, False], "malformed"),
    ("a NaN plain seq", [_with(PLAIN, 3, math.nan), 60, None, False], "malformed"),
    ("an integer for cached", [GOOD, 60, None, 1], "malformed"),
    ("a forged signature", [_with(GOOD, 4, b"w"), 60, None, False], "bad_signature"),
    (
        "a long salt",
        [to_wire(SignedValue(b"k" * 32, b"s" * 65, 1, b"v", b"s" * 64)), 60, None, False],
        "salt_too_long",
    ),
]


@pytest.mark.parametrize(
    ("args", "code"),
    [(args, code) for _, args, code in MALFORMED_STORES],
    ids=[what for what, _, _ in MALFORMED_STORES],
)
def test_a_malformed_store_is_refused_with_its_reason_and_counted(args: Any, code: str) -> None:
    # The logged_errors fixture fails the test if anything is logged as an error.
    net = Cluster(2)
    attacker, target = net.nodes[0], net.nodes[1]
    with pytest.raises(RemoteError) as caught:
        net.wait(attacker.rpc.call_contact(target.rpc.contact, "store", args))
    assert caught.value.code == code
    stats = target.stats()
    assert stats["store_refused_" + code] == 1
    assert len(target.store) == 0


@pytest.mark.parametrize(
    "args", [None, 5, b"short", b"k" * 21, [b"x"], 2**64 - 1, math.nan, "k" * 20]
)
def test_a_malformed_get_is_refused_and_counted(args: Any) -> None:
    net = Cluster(2)
    attacker, target = net.nodes[0], net.nodes[1]
    with pytest.raises(RemoteError, match="malformed"):
        net.wait(attacker.rpc.call_contact(target.rpc.contact, "get", args))
    assert target.stats()["get_refused_malformed"] == 1


# Anything CBOR can carry, numbers at their extremes included.
wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.sampled_from([10**400, -(10**400), MAX_SEQ, MAX_SEQ + 1, MAX_TTL, MAX_TTL + 1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.binary(max_size=70)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=7),
    max_leaves=20,
)


@given(
    which=st.sampled_from([GOOD, PLAIN, to_wire(ImmutableValue(b"v"))]),
    field=st.integers(min_value=0, max_value=9),
    junk=wire_values,
)
def test_no_store_a_peer_sends_makes_the_holder_fail(
    which: list[Any], field: int, junk: Any
) -> None:
    """One field of a valid store, record fields included, replaced by anything."""
    net = Cluster(1)
    holder = net.nodes[0].holder
    record = list(which)
    args: list[Any] = [record, 60, None, False]
    if field < 4:
        args[field] = junk
    else:
        record[min(field - 4, len(record) - 1)] = junk
    try:
        assert net.wait(holder.answer_store(PEER, args)) is True
    except RemoteError as e:
        assert holder.counters["store_refused_" + e.code] == 1
        assert len(holder.store) == 0
    else:
        assert len(holder.store) == 1


@given(args=wire_values)
def test_no_get_a_peer_sends_makes_the_holder_fail(args: Any) -> None:
    net = Cluster(1)
    holder = net.nodes[0].holder
    try:
        assert holder.answer_get(PEER, args) is None
    except RemoteError as e:
        assert e.code == "malformed"
        assert holder.counters["get_refused_malformed"] == 1


def test_a_plain_write_time_ahead_of_the_clock_is_refused_beyond_a_few_seconds() -> None:
    net = Cluster(2)
    attacker, target = net.nodes[0], net.nodes[1]

    def store(lead: float) -> Any:
        seq = int((net.clock.seconds() + lead) * 1_000_000)
        record = PlainValue(key_for("pin{}".format(lead)), b"v", seq)
        args = [to_wire(record), 60, None, False]
        return net.wait(attacker.rpc.call_contact(target.rpc.contact, "store", args))

    assert store(2) is True
    for lead in (10, 60, 590):
        with pytest.raises(RemoteError, match="clock_skew") as caught:
            store(lead)
        assert "ahead of this node's clock" in caught.value.message
    assert target.stats()["store_refused_clock_skew"] == 3


def test_the_clock_skew_allowed_is_a_node_option() -> None:
    net = Cluster(2, max_clock_skew=120.0)
    attacker, target = net.nodes[0], net.nodes[1]
    seq = int((net.clock.seconds() + 60) * 1_000_000)
    args = [to_wire(PlainValue(key_for("k"), b"v", seq)), 60, None, False]
    assert net.wait(attacker.rpc.call_contact(target.rpc.contact, "store", args)) is True


class SlowDisk(MemoryStore):
    """A store whose changes become durable only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[defer.Deferred[None]] = []
        self.broken = False

    def durable(self) -> defer.Deferred[None]:
        if self.broken:
            return defer.fail(StorageError("the disk failed"))
        d: defer.Deferred[None] = defer.Deferred()
        self.waiting.append(d)
        return d

    def sync(self) -> None:
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)


def test_a_store_is_acknowledged_once_it_is_durable_and_a_put_waits_for_that() -> None:
    net = Cluster(2, make_store=SlowDisk)
    writer, replica = net.nodes
    put = writer.put(key_for("slow disk"), b"value")
    net.advance(0.5, step=0.05)  # many round trips, within the RPC timeout (1 s)
    assert not put.called
    assert replica.store.get(key_for("slow disk")) is not None  # kept, not yet acknowledged
    assert writer.store.get(key_for("slow disk")) is not None
    for node in net.nodes:
        node.store.sync()
    net.advance(0.2, step=0.05)
    assert not put.called  # the writer's own copy, kept once the replicas answered
    writer.store.sync()
    assert net.wait(put) == 2


def test_a_node_that_cannot_make_a_store_durable_refuses_it_as_unavailable() -> None:
    net = Cluster(2, make_store=SlowDisk)
    sender, broken = net.nodes
    broken.store.broken = True
    record = PlainValue(key_for("k"), b"v", int(net.clock.seconds() * 1_000_000))
    args = [to_wire(record), 60, None, False]
    with pytest.raises(RemoteError) as caught:
        net.wait(sender.rpc.call_contact(broken.rpc.contact, "store", args))
    assert caught.value.code == "unavailable"
    assert broken.stats()["store_not_durable"] == 1


def test_a_node_that_cannot_name_the_nodes_nearest_a_key_does_not_answer_store_near() -> None:
    # Over an overlay without FIND_NODE a put stores with STORE alone.
    net = Cluster(2)
    asker, target = net.nodes
    args = [PLAIN, 60, 3]
    with pytest.raises(RemoteError) as caught:
        net.wait(asker.rpc.call_contact(target.rpc.contact, "store_near", args))
    assert caught.value.code == "unknown_method"
    assert len(target.store) == 0
