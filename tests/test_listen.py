"""node.listen: the held version, then each newer one, once and in order."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.listeners import LISTEN_TTL, NOT_LISTENING
from dhtkit.rpc import RemoteError
from dhtkit.values import PlainValue, Record, SignedValue, to_wire
from tests.conftest import LoggedErrors
from tests.test_listeners import PLAIN_CBOR
from tests.valuenet import Cluster

OWNER = Identity(b"\x05" * 32)


def _signed(seq: int, value: bytes | None = None) -> SignedValue:
    return SignedValue.create(OWNER, value or b"v%d" % seq, seq, b"s")


def _listening(net: Cluster, seen: list[Record]) -> Any:
    client = net.client()
    handle = client.listen_signed(OWNER.public_key, b"s", seen.append)
    assert net.wait(handle.subscribed) == len(net.nodes) - 1
    return client, handle


def test_the_callback_gets_the_held_version_then_each_newer_one_once() -> None:
    net = Cluster(4)
    net.wait(net.nodes[0].put_signed(b"v1", b"s", OWNER, seq=1))
    seen: list[Record] = []
    client, _ = _listening(net, seen)
    assert [r.seq for r in seen] == [1]
    for seq in (2, 3):
        net.wait(net.nodes[1].put_signed(b"v%d" % seq, b"s", OWNER, seq=seq))
        net.advance(5, step=0.5)
    # Four replicas pushed each version; the callback saw each once.
    assert [r.seq for r in seen] == [1, 2, 3]
    assert client.counters["notify_received"] == 8
    assert seen[-1] == _signed(3)


def test_plain_values_are_heard_too() -> None:
    net = Cluster(3)
    key = key_for("plain")
    seen: list[Record] = []
    client = net.client()
    client.listen(key, seen.append)
    net.advance(1, step=0.1)
    net.wait(net.nodes[0].put(key, b"one"))
    net.advance(1, step=0.1)
    net.wait(net.nodes[1].put(key, b"two"))
    net.advance(1, step=0.1)
    assert [r.value for r in seen] == [b"one", b"two"]


def test_an_older_version_pushed_late_is_left_out() -> None:
    net = Cluster(3)
    seen: list[Record] = []
    client, handle = _listening(net, seen)
    source = next(iter(handle.sources.values()))
    hub = client.listenings
    assert hub.answer_notify(source, [_signed(2).key, to_wire(_signed(2))]) is True
    hub.answer_notify(source, [_signed(1).key, to_wire(_signed(1))])
    hub.answer_notify(source, [_signed(2).key, to_wire(_signed(2))])
    assert [r.seq for r in seen] == [2]


def test_a_push_from_a_node_not_listened_to_is_refused() -> None:
    net = Cluster(3)
    seen: list[Record] = []
    client, _ = _listening(net, seen)
    stranger = Contact.from_key(Identity(b"\x0b" * 32).public_key, ("10.9.9.9", 4000))
    with pytest.raises(RemoteError) as caught:
        client.listenings.answer_notify(stranger, [_signed(1).key, to_wire(_signed(1))])
    assert caught.value.code == NOT_LISTENING
    assert client.counters["notify_refused_not_listening"] == 1
    assert seen == []


def _forged() -> list[Any]:
    wire = to_wire(_signed(1))
    wire[4] = b"forged"
    return wire


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(_forged(), id="bad signature"),
        pytest.param(to_wire(PlainValue(key_for("elsewhere"), b"v", 1)), id="another key"),
        pytest.param([2, "junk"], id="not a record"),
        pytest.param(to_wire(_signed(1))[:-1], id="a field short"),
    ],
)
def test_a_bad_push_is_refused_and_counted(record: Any) -> None:
    net = Cluster(2)
    seen: list[Record] = []
    client, handle = _listening(net, seen)
    source = next(iter(handle.sources.values()))
    with pytest.raises(RemoteError) as caught:
        client.listenings.answer_notify(source, [_signed(1).key, record])
    assert caught.value.code == "malformed"
    for args in (None, [b"short", to_wire(_signed(1))], [_signed(1).key]):
        with pytest.raises(RemoteError):
            client.listenings.answer_notify(source, args)
    assert client.counters["notify_refused_malformed"] == 4
    assert seen == []


def test_cancel_ends_the_calls_and_the_registrations() -> None:
    net = Cluster(3)
    seen: list[Record] = []
    _, handle = _listening(net, seen)
    assert all(len(n.listeners) == 1 for n in net.nodes[:3])
    handle.cancel()
    net.advance(2, step=0.1)
    assert all(len(n.listeners) == 0 for n in net.nodes[:3])
    net.wait(net.nodes[0].put_signed(b"v1", b"s", OWNER, seq=1))
    net.advance(2, step=0.1)
    assert seen == []


def test_refreshes_keep_the_registrations_past_their_ttl() -> None:
    net = Cluster(3)
    seen: list[Record] = []
    _listening(net, seen)
    net.advance(3 * LISTEN_TTL, step=10)
    assert all(len(n.listeners) == 1 for n in net.nodes[:3])
    net.wait(net.nodes[0].put_signed(b"v1", b"s", OWNER, seq=1))
    net.advance(2, step=0.1)
    assert [r.seq for r in seen] == [1]


def test_a_node_hears_of_the_versions_its_own_store_takes() -> None:
    # The listener is a replica itself: its own copy tells it.
    net = Cluster(3)
    seen: list[Record] = []
    handle = net.nodes[0].listen_signed(OWNER.public_key, b"s", seen.append)
    assert net.wait(handle.subscribed) == 3  # two others and itself
    net.wait(net.nodes[0].put_signed(b"v1", b"s", OWNER, seq=1))
    assert [r.seq for r in seen] == [1]  # before any push came


def test_a_failing_callback_is_logged_and_listening_goes_on(logged_errors: LoggedErrors) -> None:
    net = Cluster(2)
    seen: list[Record] = []

    def callback(record: Record) -> None:
        seen.append(record)
        raise RuntimeError("the application's bug")

    client = net.client()
    client.listen_signed(OWNER.public_key, b"s", callback)
    net.advance(1, step=0.1)
    for seq in (1, 2):
        net.wait(net.nodes[0].put_signed(b"v", b"s", OWNER, seq=seq))
        net.advance(1, step=0.1)
    assert [r.seq for r in seen] == [1, 2]
    assert len(logged_errors.take()) == 2


def test_a_node_that_stops_ends_its_listenings() -> None:
    net = Cluster(2)
    seen: list[Record] = []
    client, handle = _listening(net, seen)
    assert not handle.ended.called
    client.stop()
    assert not handle.active and not client.listenings.watches(handle.key)
    assert handle.ended.called


@given(args=PLAIN_CBOR)
@settings(max_examples=50)
def test_whatever_a_peer_pushes_is_taken_or_refused_never_raised(args: Any) -> None:
    net = Cluster(2)
    client, handle = _listening(net, [])
    source = next(iter(handle.sources.values()))
    for pushed in (args, [handle.key, args]):
        try:
            client.listenings.answer_notify(source, pushed)
        except RemoteError:
            pass


def test_a_holder_granting_a_tiny_ttl_does_not_make_the_listener_spin() -> None:
    net = Cluster(2)
    net.nodes[0].listeners.ttl = 1e-9
    client, _ = _listening(net, [])
    net.advance(150, step=1)
    # A refresh every 15 s at most: the first round and ten more.
    assert client.counters["listen_rounds"] <= 11


def test_a_plain_value_from_the_future_cannot_blind_the_listener() -> None:
    net = Cluster(2)
    key = key_for("plain")
    seen: list[Record] = []
    client = net.client()
    handle = client.listen(key, seen.append)
    net.wait(handle.subscribed)
    source = next(iter(handle.sources.values()))
    ahead = int((net.clock.seconds() + 3600) * 1_000_000)
    with pytest.raises(RemoteError) as caught:
        client.listenings.answer_notify(source, [key, to_wire(PlainValue(key, b"evil", ahead))])
    assert caught.value.code == "clock_skew"
    assert client.counters["notify_refused_clock_skew"] == 1
    net.wait(net.nodes[0].put(key, b"honest"))
    net.advance(1, step=0.1)
    assert [r.value for r in seen] == [b"honest"]


def test_a_delete_reaches_the_listener_as_the_newest_version() -> None:
    net = Cluster(4)
    net.wait(net.nodes[0].put_signed(b"v1", b"s", OWNER, seq=1))
    seen: list[Record] = []
    _listening(net, seen)
    net.wait(net.nodes[1].delete_signed(b"s", OWNER))
    net.advance(5, step=0.5)
    assert [(r.seq, r.deleted) for r in seen] == [(1, False), (2, True)]


def test_a_node_hears_of_its_own_delete() -> None:
    # The publisher's own listener hears of the delete like any version.
    net = Cluster(3)
    key = key_for("withdrawn")
    seen: list[Record] = []
    net.nodes[0].listen(key, seen.append)
    net.advance(1, step=0.1)
    net.wait(net.nodes[0].put(key, b"one"))
    net.wait(net.nodes[0].delete(key))
    assert [r.deleted for r in seen] == [False, True]
