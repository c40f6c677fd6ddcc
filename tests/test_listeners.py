"""A holder's listeners: bounded in all, per key and per source network; pushed
only to proven addresses; dropped when they expire, leave or stop answering."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import task

from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.listeners import LISTEN_FULL, ListenerTable
from dhtkit.rpc import RemoteError, RPCProtocol
from dhtkit.values import PlainValue, SignedValue, to_wire
from tests.valuenet import Cluster

KEY = key_for("watched")
OWNER = Identity(b"\x05" * 32)


def _peer(n: int, host: str) -> Contact:
    return Contact.from_key(Identity(bytes([n]) * 32).public_key, (host, 4000))


def _table(**bounds: Any) -> tuple[ListenerTable, task.Clock, Counter[str]]:
    clock = task.Clock()
    counters: Counter[str] = Counter()
    rpc = RPCProtocol(Identity(b"\x01" * 32), clock)
    return ListenerTable(rpc, clock, lambda key: None, counters, **bounds), clock, counters


def _refused(table: ListenerTable, peer: Contact, key: bytes = KEY) -> str:
    with pytest.raises(RemoteError) as caught:
        table.answer_listen(peer, [key])
    return caught.value.code


def test_a_listen_is_answered_with_the_ttl_and_the_copy_held() -> None:
    record = PlainValue(KEY, b"v", 1)
    clock = task.Clock()
    table = ListenerTable(
        RPCProtocol(Identity(b"\x01" * 32), clock),
        clock,
        lambda key: [to_wire(record), 60.0] if key == KEY else None,
        Counter(),
        ttl=300.0,
    )
    assert table.answer_listen(_peer(2, "10.0.0.2"), [KEY]) == [300.0, [to_wire(record), 60.0]]
    assert table.answer_listen(_peer(2, "10.0.0.2"), [key_for("other")]) == [300.0, None]
    assert table.listeners(KEY) == [_peer(2, "10.0.0.2")]


def test_listeners_from_one_source_network_are_bounded() -> None:
    table, _, counters = _table(max_per_source=2)
    # Public IPv4 addresses count per /24: node ids and hosts there are cheap.
    table.answer_listen(_peer(2, "198.51.100.1"), [KEY])
    table.answer_listen(_peer(3, "198.51.100.2"), [key_for("other")])
    assert _refused(table, _peer(4, "198.51.100.3")) == LISTEN_FULL
    assert counters["listen_refused_full"] == 1
    table.answer_listen(_peer(5, "203.0.113.1"), [KEY])  # another network has room
    assert len(table) == 3


def test_listeners_of_one_key_are_bounded() -> None:
    table, _, _ = _table(max_per_key=2)
    table.answer_listen(_peer(2, "10.0.0.2"), [KEY])
    table.answer_listen(_peer(3, "10.0.0.3"), [KEY])
    assert _refused(table, _peer(4, "10.0.0.4")) == LISTEN_FULL
    table.answer_listen(_peer(4, "10.0.0.4"), [key_for("other")])


def test_listeners_in_all_are_bounded() -> None:
    table, _, _ = _table(max_listeners=3)
    for n in range(3):
        table.answer_listen(_peer(10 + n, "10.0.1.{}".format(n)), [key_for(str(n))])
    assert _refused(table, _peer(20, "10.0.2.1"), key_for("new")) == LISTEN_FULL
    assert len(table) == 3


def test_a_refresh_takes_no_second_place_and_follows_the_address() -> None:
    table, _, counters = _table(max_per_source=1)
    table.answer_listen(_peer(2, "10.0.0.2"), [KEY])
    moved = _peer(2, "10.0.0.2")
    moved = Contact(moved.node_id, moved.public_key, ("10.0.0.2", 5000))
    table.answer_listen(moved, [KEY])
    assert len(table) == 1 and counters["listen_refreshed"] == 1
    assert table.listeners(KEY) == [moved]


def test_a_registration_expires_unless_refreshed_and_frees_its_place() -> None:
    table, clock, counters = _table(ttl=100.0, max_per_source=1)
    table.answer_listen(_peer(2, "10.0.0.2"), [KEY])
    table.answer_listen(_peer(3, "10.0.0.3"), [KEY])
    clock.advance(60)
    table.answer_listen(_peer(3, "10.0.0.3"), [KEY])  # refreshed
    clock.advance(60)
    assert table.listeners(KEY) == [_peer(3, "10.0.0.3")]
    assert counters["listen_expired"] == 1
    table.answer_listen(_peer(4, "10.0.0.2"), [KEY])  # the source's place is free again
    clock.advance(101)
    assert len(table) == 0 and not table.watches(KEY)


def test_unlisten_ends_a_registration() -> None:
    table, _, _ = _table(max_per_source=1)
    table.answer_listen(_peer(2, "10.0.0.2"), [KEY])
    assert table.answer_unlisten(_peer(2, "10.0.0.2"), [KEY]) is True
    assert table.answer_unlisten(_peer(2, "10.0.0.2"), [KEY]) is False
    assert len(table) == 0
    table.answer_listen(_peer(3, "10.0.0.2"), [KEY])


@pytest.mark.parametrize(
    "args",
    [None, KEY, [], [KEY, KEY], [b"short"], ["a" * 20], [20], [True], [[KEY]], {"key": KEY}],
)
def test_a_malformed_listen_is_refused_and_counted(args: Any) -> None:
    table, _, counters = _table()
    for answer in (table.answer_listen, table.answer_unlisten):
        with pytest.raises(RemoteError) as caught:
            answer(_peer(2, "10.0.0.2"), args)
        assert caught.value.code == "malformed"
    assert counters["listen_refused_malformed"] == 2
    assert len(table) == 0


def _signed(seq: int) -> SignedValue:
    return SignedValue.create(OWNER, b"v%d" % seq, seq, b"s")


def test_a_push_to_an_address_that_never_proved_itself_is_not_sent() -> None:
    # A listen with a forged source address: the holder pings the address
    # first; the node there is not the one that asked, so no push follows.
    net = Cluster(2)
    holder, victim = net.nodes
    assert victim.rpc.contact is not None
    forged = Contact.from_key(Identity(b"\x09" * 32).public_key, victim.rpc.contact.address)
    record = _signed(1)
    holder.listeners.answer_listen(forged, [record.key])
    holder.listeners.new_version(record)
    net.advance(10, step=0.5)
    assert holder.counters["push_probes"] == 1
    assert holder.counters["push_sent"] == 0
    assert victim.counters["notify_received"] == 0
    assert holder.listeners.listeners(record.key) == []  # it did not answer: dropped


def test_a_listener_that_no_longer_listens_is_dropped() -> None:
    net = Cluster(2)
    holder, listener = net.nodes
    assert listener.rpc.contact is not None
    record = _signed(1)
    # Registered, but the node there listens to nothing: it says so.
    net.wait(listener.rpc.call_contact(holder.rpc.contact, "listen", [record.key]))
    holder.listeners.new_version(record)
    net.advance(10, step=0.5)
    assert listener.counters["notify_refused_not_listening"] == 1
    assert holder.counters["push_not_listening"] == 1
    assert holder.listeners.listeners(record.key) == []


def test_versions_waiting_for_one_listener_are_bounded() -> None:
    net = Cluster(2)
    holder, listener = net.nodes
    assert listener.rpc.contact is not None
    holder.listeners.max_queued = 3
    gone = Contact.from_key(Identity(b"\x0a" * 32).public_key, ("10.99.0.1", 4000))
    key = _signed(1).key
    holder.listeners.answer_listen(gone, [key])
    for seq in range(1, 8):
        holder.listeners.new_version(_signed(seq))
    # One is on its way (behind a ping nobody answers), three wait, the rest dropped.
    assert holder.counters["push_dropped_queue_full"] == 3
    net.advance(10, step=0.5)
    assert holder.listeners.listeners(key) == []


def test_only_a_new_version_is_pushed_not_a_copy_of_the_one_held() -> None:
    net = Cluster(2)
    holder, listener = net.nodes
    seen: list[Any] = []
    handle = listener.listen_signed(OWNER.public_key, b"s", seen.append)
    net.wait(handle.subscribed)
    net.wait(listener.put_signed(b"v1", b"s", OWNER, seq=1))
    net.advance(2, step=0.1)
    pushed = holder.counters["push_sent"]
    # The same version again (a republish, a replication): nobody hears of it.
    stored = holder.holder.accept(listener.rpc.contact, _signed(1), 60.0, None, False)
    assert net.wait(stored) is True and holder.counters["push_sent"] == pushed == 1
    holder.holder.accept(listener.rpc.contact, _signed(2), 60.0, None, False)
    net.advance(2, step=0.1)
    assert holder.counters["push_sent"] == 2
    assert [r.seq for r in seen] == [1, 2]


PLAIN_CBOR = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.binary(max_size=40) | st.text(),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=10,
)


@given(args=PLAIN_CBOR)
def test_whatever_a_peer_sends_is_answered_or_refused_never_raised(args: Any) -> None:
    table, _, _ = _table()
    for answer in (table.answer_listen, table.answer_unlisten):
        try:
            answer(_peer(2, "10.0.0.2"), args)
        except RemoteError:
            pass
