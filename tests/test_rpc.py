from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import cbor2
import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.internet.testing import FakeDatagramTransport

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.rpc import (
    EARLY_RESEND_FLOOR,
    RemoteError,
    RPCProtocol,
    RPCStopped,
    RPCTimeout,
)
from dhtkit.sessions import REPLAY_WINDOW
from dhtkit.transport import ITrustedNetwork

A_ADDR = ("10.0.0.1", 4000)
B_ADDR = ("10.0.0.2", 4000)


class Pair:
    """Two protocols on one clock, with datagrams moved by hand."""

    def __init__(self, **kw: Any) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.a = self.make(Identity(b"\1" * 32), **kw)
        self.b = self.make(Identity(b"\2" * 32), **kw)

    def make(self, identity: Identity, **kw: Any) -> RPCProtocol:
        proto = RPCProtocol(identity, self.clock, **kw)
        proto.makeConnection(FakeDatagramTransport())
        return proto

    @staticmethod
    def take(proto: RPCProtocol) -> list[tuple[bytes, Any]]:
        written = list(proto.transport.written)
        proto.transport.written.clear()
        return written

    def a_to_b(self) -> list[bytes]:
        sent = self.take(self.a)
        for data, addr in sent:
            assert addr == B_ADDR
            self.b.datagramReceived(data, A_ADDR)
        return [data for data, _ in sent]

    def b_to_a(self) -> list[bytes]:
        sent = self.take(self.b)
        for data, addr in sent:
            assert addr == A_ADDR
            self.a.datagramReceived(data, B_ADDR)
        return [data for data, _ in sent]

    def exchange(self) -> None:
        while self.a.transport.written or self.b.transport.written:
            self.a_to_b()
            self.b_to_a()

    @property
    def b_contact(self) -> Contact:
        return Contact.from_key(self.b.identity.public_key, B_ADDR)


def answers(sent: list[bytes]) -> list[bytes]:
    """The replies and errors among ``sent``, without the probes beside them."""
    return [data for data in sent if wire.decode(data).kind != wire.QUERY]


def result_of(d: defer.Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def test_a_first_ping_is_signed_and_returns_the_verified_contact() -> None:
    pair = Pair()
    d = pair.a.ping(B_ADDR)
    (query,) = pair.a_to_b()
    assert wire.decode(query).signed
    pair.b_to_a()
    contact = result_of(d)
    assert contact == pair.b_contact
    assert contact.node_id == pair.b.identity.node_id


def test_a_peer_heard_from_and_named_in_answers_is_one_contact() -> None:
    pair = Pair()
    d = pair.a.ping(B_ADDR)
    pair.a_to_b()
    pair.b_to_a()
    assert result_of(d) is wire.decode_contact(wire.encode_contact(pair.b_contact))


def test_calls_to_a_known_key_are_maced() -> None:
    pair = Pair()
    pair.b.register("echo", lambda sender, args: args)
    d = pair.a.call_contact(pair.b_contact, "echo", {"x": [1, b"2"]})
    (query,) = pair.a_to_b()
    assert not wire.decode(query).signed
    (reply,) = answers(pair.b_to_a())
    assert not wire.decode(reply).signed
    assert result_of(d) == {"x": [1, b"2"]}


def test_the_ping_answer_carries_the_address_the_asker_was_seen_from() -> None:
    pair = Pair()
    d = pair.a.call(B_ADDR, "ping")
    pair.exchange()
    assert wire.decode_address(result_of(d)) == A_ADDR


def test_handlers_see_the_verified_sender_and_may_return_deferreds_or_coroutines() -> None:
    pair = Pair()
    seen: list[Contact] = []
    later: defer.Deferred[str] = defer.Deferred()

    async def coro(sender: Contact, args: Any) -> str:
        return "from coroutine"

    def deferred(sender: Contact, args: Any) -> defer.Deferred[str]:
        seen.append(sender)
        return later

    pair.b.register("deferred", deferred)
    pair.b.register("coro", coro)
    d1 = pair.a.call_contact(pair.b_contact, "deferred")
    d2 = pair.a.call_contact(pair.b_contact, "coro")
    pair.exchange()
    assert result_of(d2) == "from coroutine"
    assert seen == [Contact.from_key(pair.a.identity.public_key, A_ADDR)]
    later.callback("later")
    pair.exchange()
    assert result_of(d1) == "later"


def test_a_remote_error_reaches_the_caller_with_its_code() -> None:
    pair = Pair()

    def refuse(sender: Contact, args: Any) -> None:
        raise RemoteError("seq_too_low", "stored seq is 5")

    pair.b.register("store", refuse)
    d = pair.a.call_contact(pair.b_contact, "store")
    pair.exchange()
    failure = result_of(d)
    assert failure.check(RemoteError)
    assert (failure.value.code, failure.value.message) == ("seq_too_low", "stored seq is 5")


def test_a_failed_deferred_with_a_remote_error_reaches_the_caller() -> None:
    pair = Pair()
    pair.b.register("x", lambda s, a: defer.fail(RemoteError("nope", "no")))
    d = pair.a.call_contact(pair.b_contact, "x")
    pair.exchange()
    assert result_of(d).value.code == "nope"


def test_a_crashing_handler_is_logged_and_answered_with_internal(logged_errors) -> None:
    pair = Pair()
    pair.b.register("crash", lambda sender, args: 1 / 0)
    pair.b.register("crash_later", lambda sender, args: defer.fail(KeyError("secret detail")))
    d1 = pair.a.call_contact(pair.b_contact, "crash")
    d2 = pair.a.call_contact(pair.b_contact, "crash_later")
    pair.exchange()
    for d in (d1, d2):
        error = result_of(d).value
        assert isinstance(error, RemoteError)
        assert error.code == "internal"
        assert "secret" not in error.message
    assert len(logged_errors.take()) == 2


def test_an_unknown_method_is_a_remote_error() -> None:
    pair = Pair()
    d = pair.a.call_contact(pair.b_contact, "no_such_method")
    pair.exchange()
    error = result_of(d).value
    assert isinstance(error, RemoteError) and error.code == "unknown_method"


def test_a_reply_too_large_becomes_an_internal_error(logged_errors) -> None:
    pair = Pair()
    pair.b.register("big", lambda sender, args: b"x" * 2000)
    d = pair.a.call_contact(pair.b_contact, "big")
    pair.exchange()
    assert result_of(d).value.code == "internal"
    assert len(logged_errors.take()) == 1


def test_arguments_too_large_fail_the_call_at_once() -> None:
    pair = Pair()
    failure = result_of(pair.a.call_contact(pair.b_contact, "x", b"y" * 2000))
    assert failure.check(wire.MessageTooLarge)
    assert pair.a.stats()["pending_calls"] == 0
    assert pair.a.transport.written == []


def test_timeouts_retry_then_fail_with_rpc_timeout() -> None:
    pair = Pair(timeout=2.0, retries=2)
    d = pair.a.call_contact(pair.b_contact, "ping")
    first = pair.take(pair.a)
    pair.clock.advance(2.0)
    second = pair.take(pair.a)
    pair.clock.advance(2.0)
    third = pair.take(pair.a)
    assert len(first) == len(second) == len(third) == 1
    # Each attempt is a fresh datagram (a new seq) for the same transaction.
    messages = [wire.decode(batch[0][0]) for batch in (first, second, third)]
    assert len({m.txid for m in messages}) == 1
    assert len({m.seq for m in messages}) == 3
    assert not d.called
    pair.clock.advance(2.0)
    assert result_of(d).check(RPCTimeout)
    stats = pair.a.stats()
    assert (stats["retries"], stats["timeouts"], stats["pending_calls"]) == (2, 1, 0)


def measured(pair: Pair, rtt: float) -> None:
    """One ping from a to b answered after ``rtt`` seconds: a has a round trip."""
    d = pair.a.call_contact(pair.b_contact, "ping")
    pair.a_to_b()
    pair.clock.advance(rtt)
    pair.exchange()
    assert d.called
    pair.take(pair.a)


def test_a_query_lost_once_is_resent_after_the_round_trip_timer_not_the_timeout() -> None:
    pair = Pair(timeout=2.0, retries=1)
    measured(pair, 0.04)
    d = pair.a.call_contact(pair.b_contact, "ping")
    assert len(pair.take(pair.a)) == 1  # lost
    pair.clock.advance(0.119)
    assert pair.a.transport.written == []
    pair.clock.advance(0.002)  # RFC 6298 after one round trip R of 40 ms: 3 R
    resent = pair.take(pair.a)
    assert len(resent) == 1
    for data, _ in resent:
        pair.b.datagramReceived(data, A_ADDR)
    pair.b_to_a()
    assert d.called and not isinstance(result_of(d), Exception)
    stats = pair.a.stats()
    assert (stats["early_resends"], stats["retries"], stats["timeouts"]) == (1, 0, 0)


def test_an_early_resend_moves_neither_the_retries_nor_the_timeout() -> None:
    pair = Pair(timeout=2.0, retries=1)
    measured(pair, 0.2)
    d = pair.a.call_contact(pair.b_contact, "ping")
    sent = [len(pair.take(pair.a))]
    for step in (0.5, 0.5, 1.0, 1.99, 0.01):
        pair.clock.advance(step)
        sent.append(len(pair.take(pair.a)))
    # Sent, resent early at 0.6 s, retried at the timeout (2 s), failed at 4 s.
    assert sent == [1, 0, 1, 1, 0, 0]
    assert result_of(d).check(RPCTimeout)
    stats = pair.a.stats()
    assert (stats["early_resends"], stats["retries"], stats["timeouts"]) == (1, 1, 1)


def test_no_early_resend_without_a_round_trip_or_a_retry_allowed() -> None:
    pair = Pair(timeout=2.0, retries=1)
    pair.a.call_contact(pair.b_contact, "ping")
    pair.take(pair.a)
    pair.clock.advance(1.9)
    assert pair.a.transport.written == []  # nothing measured yet: the timeout
    pair.clock.advance(2.2)
    measured(pair, 0.01)
    pair.a.call_contact(pair.b_contact, "ping", retries=0)
    pair.take(pair.a)
    pair.clock.advance(1.9)
    assert pair.a.transport.written == []  # one datagram, as the caller asked
    assert pair.a.stats()["early_resends"] == 0


def test_the_early_resend_waits_at_least_its_floor_on_a_fast_path() -> None:
    pair = Pair(timeout=2.0, retries=1)
    measured(pair, 0.0001)
    pair.a.call_contact(pair.b_contact, "ping")
    pair.take(pair.a)
    pair.clock.advance(EARLY_RESEND_FLOOR - 0.001)
    assert pair.a.transport.written == []
    pair.clock.advance(0.002)
    assert len(pair.take(pair.a)) == 1


def test_an_answer_to_a_resent_query_is_not_taken_as_a_round_trip() -> None:
    pair = Pair(timeout=2.0, retries=1)
    measured(pair, 0.04)
    before = pair.a.round_trip.smoothed
    d = pair.a.call_contact(pair.b_contact, "ping")
    pair.take(pair.a)
    pair.clock.advance(0.15)
    pair.a_to_b()  # the early resend
    pair.clock.advance(0.5)
    pair.b_to_a()
    assert d.called
    # Karn's rule: which of the two the answer was to is not known.
    assert pair.a.round_trip.smoothed == before


def test_a_retried_query_runs_its_handler_once_and_gets_the_same_reply() -> None:
    pair = Pair(timeout=1.0, retries=1)
    calls: list[Any] = []
    pair.b.register("cas", lambda sender, args: calls.append(args) or len(calls))
    d = pair.a.call_contact(pair.b_contact, "cas", 7)
    pair.a_to_b()
    pair.take(pair.b)  # the reply is lost
    pair.clock.advance(1.0)  # so A retries
    pair.a_to_b()
    pair.b_to_a()
    assert result_of(d) == 1
    assert calls == [7]
    assert pair.b.stats()["duplicate_queries"] == 1


def test_a_kept_reply_is_sealed_again_so_newer_datagrams_do_not_make_it_a_replay() -> None:
    # The reply is lost; then B sends A more datagrams than A's replay window
    # holds. The first reply's sequence number is now below A's window: the
    # retry's answer is accepted only because it is sealed with a new one.
    pair = Pair(timeout=1.0, retries=1)
    calls: list[Any] = []
    pair.b.register("cas", lambda sender, args: calls.append(args) or len(calls))
    d = pair.a.call_contact(pair.b_contact, "cas", 7)
    pair.a_to_b()
    lost = answers([data for data, _ in pair.take(pair.b)])
    a_contact = Contact.from_key(pair.a.identity.public_key, A_ADDR)
    pings = [pair.b.call_contact(a_contact, "ping") for _ in range(REPLAY_WINDOW + 1)]
    pair.exchange()
    assert all(result_of(p) is not None for p in pings)
    pair.clock.advance(1.0)  # so A retries
    pair.a_to_b()
    again = answers(pair.b_to_a())
    assert result_of(d) == 1
    assert calls == [7]
    assert pair.b.stats()["duplicate_queries"] == 1
    assert wire.decode(again[0]).seq > wire.decode(lost[0]).seq
    assert wire.decode(again[0]).payload == wire.decode(lost[0]).payload


def test_a_retried_read_runs_its_handler_again_without_keeping_its_reply() -> None:
    pair = Pair(timeout=1.0, retries=1)
    calls: list[Any] = []
    pair.b.register("read", lambda sender, args: calls.append(args) or "data", idempotent=True)
    d = pair.a.call_contact(pair.b_contact, "read", 7)
    pair.a_to_b()
    pair.take(pair.b)  # the reply is lost
    pair.clock.advance(1.0)  # so A retries
    pair.a_to_b()
    pair.b_to_a()
    assert result_of(d) == "data"
    assert calls == [7, 7]
    assert pair.b.stats()["duplicate_queries"] == 0


def test_a_late_reply_and_its_resent_copy_complete_the_call_once() -> None:
    pair = Pair(timeout=1.0, retries=1)
    pair.b.register("cas", lambda sender, args: True)
    d = pair.a.call_contact(pair.b_contact, "cas")
    pair.a_to_b()
    pair.clock.advance(1.0)  # the first reply is still in flight; a retry goes out
    pair.a_to_b()
    pair.b_to_a()  # the reply, and the same reply again (sealed anew) for the retry
    assert result_of(d) is True
    assert pair.a.stats()["dropped_unexpected_reply"] == 1
    assert pair.b.stats()["duplicate_queries"] == 1


def test_a_retry_while_the_handler_works_waits_for_its_answer() -> None:
    pair = Pair(timeout=1.0, retries=2)
    later: defer.Deferred[str] = defer.Deferred()
    calls: list[Any] = []

    def slow(sender: Contact, args: Any) -> defer.Deferred[str]:
        calls.append(args)
        return later

    pair.b.register("slow", slow)
    d = pair.a.call_contact(pair.b_contact, "slow")
    pair.a_to_b()
    pair.clock.advance(1.0)
    pair.a_to_b()  # the retry finds the handler still working: no answer yet
    assert answers([data for data, _ in pair.take(pair.b)]) == []
    later.callback("done")
    pair.take(pair.b)  # that answer is lost too
    pair.clock.advance(1.0)
    pair.a_to_b()  # the second retry gets the stored answer
    pair.b_to_a()
    assert result_of(d) == "done"
    assert calls == [None]


def test_answers_are_forgotten_after_their_ttl_and_beyond_their_number() -> None:
    pair = Pair(answer_ttl=5.0, max_answers=3)
    calls: list[Any] = []
    pair.b.register("note", lambda sender, args: calls.append(args))
    pair.a.call_contact(pair.b_contact, "note", 1)
    (query,) = pair.a_to_b()
    pair.clock.advance(6.0)
    # Past the TTL the same query would run again; the replay window still
    # refuses this copy, so build a fresh datagram for the same transaction.
    message = wire.decode(query)
    seq = int(pair.clock.seconds() * 1e6) - 1000  # fresh, and below A's next ones
    body = wire.encode_body(wire.QUERY, message.txid, "note", 1, pair.a.identity, seq)
    key = wire.session_key(pair.a.identity, pair.b.identity.public_key)
    pair.b.datagramReceived(wire.seal(body, wire.mac(body, key)), A_ADDR)
    assert calls == [1, 1]
    for n in range(5):
        pair.a.call_contact(pair.b_contact, "note", n)
    pair.a_to_b()
    assert len(pair.b.answers) == 3


def test_a_reply_with_another_key_is_dropped_and_the_right_key_may_use_another_address() -> None:
    pair = Pair()
    carol = pair.make(Identity(b"\3" * 32))
    d = pair.a.call_contact(pair.b_contact, "ping")
    ((query, _),) = pair.take(pair.a)
    # Carol answers from B's address with her own key.
    carol.datagramReceived(wire.seal(*_resign(query, pair.a.identity, carol.identity)), A_ADDR)
    (carol_reply,) = answers([data for data, _ in pair.take(carol)])
    pair.a.datagramReceived(carol_reply, B_ADDR)
    assert not d.called
    assert pair.a.stats()["dropped_unexpected_reply"] == 1
    # B answers from another of its addresses: its MAC is what counts.
    pair.b.datagramReceived(query, A_ADDR)
    (reply,) = answers([data for data, _ in pair.take(pair.b)])
    pair.a.datagramReceived(reply, ("10.0.0.9", 4000))
    assert isinstance(result_of(d), bytes)


def test_a_reply_to_a_signed_query_must_come_from_the_address_asked() -> None:
    pair = Pair()
    d = pair.a.ping(B_ADDR)
    pair.a_to_b()
    (reply,) = answers([data for data, _ in pair.take(pair.b)])
    pair.a.datagramReceived(reply, ("10.0.0.9", 4000))
    assert not d.called
    assert pair.a.stats()["dropped_unexpected_reply"] == 1


def _resign(query: bytes, sender: Identity, receiver: Identity) -> tuple[bytes, bytes]:
    message = wire.decode(query)
    body = wire.encode_body(
        wire.QUERY, message.txid, message.method, message.payload, sender, message.seq + 1
    )
    return body, wire.mac(body, wire.session_key(sender, receiver.public_key))


def test_a_replayed_query_is_dropped_and_the_handler_runs_once() -> None:
    pair = Pair()
    calls: list[Any] = []
    pair.b.register("store", lambda sender, args: calls.append(args))
    pair.a.call_contact(pair.b_contact, "store", b"v1")
    (query,) = pair.a_to_b()
    pair.b.datagramReceived(query, A_ADDR)
    pair.b.datagramReceived(query, ("10.0.0.66", 9999))
    assert calls == [b"v1"]
    assert pair.b.stats()["dropped_replay"] == 2


def test_a_replayed_signed_query_is_dropped() -> None:
    pair = Pair()
    pair.a.ping(B_ADDR)
    (query,) = pair.a_to_b()
    pair.b.datagramReceived(query, A_ADDR)
    assert pair.b.stats()["dropped_replay"] == 1
    assert pair.b.stats()["queries_received"] == 1


def test_a_replayed_reply_does_not_complete_a_new_call() -> None:
    pair = Pair()
    pair.a.call_contact(pair.b_contact, "ping")
    pair.a_to_b()
    (reply,) = answers(pair.b_to_a())
    d = pair.a.call_contact(pair.b_contact, "ping")
    pair.a.datagramReceived(reply, B_ADDR)
    assert not d.called
    assert pair.a.stats()["dropped_replay"] == 1


def ping_sent_at(identity: Identity, when: float, to: Any) -> bytes:
    """The signed ping ``identity`` would have sent to ``to`` at time ``when``."""
    clock = task.Clock()
    clock.advance(when)
    proto = RPCProtocol(identity, clock)
    proto.makeConnection(FakeDatagramTransport())
    proto.ping(to)
    ((data, _),) = Pair.take(proto)
    return data


def test_a_stale_datagram_from_a_peer_without_session_is_dropped() -> None:
    pair = Pair(max_clock_skew=600)
    query = ping_sent_at(Identity(b"\5" * 32), pair.clock.seconds() - 601, B_ADDR)
    pair.b.datagramReceived(query, ("10.0.0.5", 4000))
    assert pair.b.stats()["dropped_stale"] == 1
    assert pair.b.transport.written == []


def test_a_stale_datagram_is_dropped_even_after_we_called_the_peer_first() -> None:
    # Calling B makes A derive a session key for B before hearing from it; an
    # old datagram of B's must not be able to open that session's window.
    pair = Pair()
    captured = ping_sent_at(pair.b.identity, pair.clock.seconds() - 3600, A_ADDR)
    d = pair.a.call_contact(pair.b_contact, "ping")
    pair.a.datagramReceived(captured, B_ADDR)
    assert pair.a.stats()["dropped_stale"] == 1
    pair.a_to_b()
    pair.b_to_a()
    assert isinstance(result_of(d), bytes)


def test_reordered_datagrams_within_the_window_are_accepted() -> None:
    pair = Pair()
    calls: list[Any] = []
    pair.b.register("note", lambda sender, args: calls.append(args))
    for n in range(3):
        pair.a.call_contact(pair.b_contact, "note", n)
        pair.clock.advance(0.1)
    sent = pair.take(pair.a)
    for data, _ in reversed(sent):
        pair.b.datagramReceived(data, A_ADDR)
    assert calls == [2, 1, 0]


@pytest.mark.parametrize(
    "data, cause",
    [
        (b"", "dropped_malformed"),
        (b"\xff" * 50, "dropped_malformed"),
        (cbor2.dumps([b"x", b"y"]), "dropped_malformed"),
        (b"\x00" * 1401, "dropped_oversized"),
    ],
)
def test_malformed_datagrams_are_dropped_and_counted(data: bytes, cause: str) -> None:
    pair = Pair()
    seen: list[Contact] = []
    pair.b.add_listener(seen.append)
    pair.b.datagramReceived(data, A_ADDR)
    stats = pair.b.stats()
    assert stats[cause] == 1 and stats["dropped"] == 1
    assert seen == [] and pair.b.transport.written == []


def test_forged_datagrams_never_reach_handlers_or_listeners() -> None:
    pair = Pair()
    mallory = Identity(b"\6" * 32)
    calls: list[Any] = []
    seen: list[Contact] = []
    pair.b.register("store", lambda sender, args: calls.append(args))
    pair.b.add_listener(seen.append)
    now = int(pair.clock.seconds() * 1e6)
    # Claiming A's key with a MAC Mallory cannot compute.
    body = wire.encode_body(wire.QUERY, 1, "store", b"evil", pair.a.identity, now)
    pair.b.datagramReceived(wire.seal(body, b"\0" * 16), ("10.0.0.6", 1))
    # Claiming A's key, signed by Mallory.
    pair.b.datagramReceived(wire.seal(body, wire.sign(body, mallory)), ("10.0.0.6", 1))
    # Claiming A's node id with Mallory's key.
    forged = cbor2.dumps(
        [1, 0, 2, "store", b"evil", mallory.public_key, pair.a.identity.node_id, now]
    )
    pair.b.datagramReceived(wire.seal(forged, wire.sign(forged, mallory)), ("10.0.0.6", 1))
    # B's own key reflected back at it.
    own = wire.encode_body(wire.QUERY, 3, "store", b"evil", pair.b.identity, now)
    pair.b.datagramReceived(wire.seal(own, wire.sign(own, pair.b.identity)), ("10.0.0.6", 1))
    stats = pair.b.stats()
    assert (stats["dropped_bad_auth"], stats["dropped_bad_node_id"], stats["dropped_self"]) == (
        2,
        1,
        1,
    )
    assert calls == [] and seen == [] and pair.b.transport.written == []


def test_listeners_hear_every_verified_sender() -> None:
    pair = Pair()
    seen_by_a: list[Contact] = []
    seen_by_b: list[Contact] = []
    pair.a.add_listener(seen_by_a.append)
    pair.b.add_listener(seen_by_b.append)
    pair.a.ping(B_ADDR)
    pair.exchange()
    # B heard of A once A's address proved itself (by answering B's probe);
    # A heard of B in B's reply.
    assert seen_by_b == [Contact.from_key(pair.a.identity.public_key, A_ADDR)]
    assert seen_by_a == [pair.b_contact]
    pair.a.remove_listener(seen_by_a.append)


def test_handlers_see_each_datagram_from_the_address_it_came_from() -> None:
    # The sender's contact is kept per session between datagrams; a peer
    # that moves (or a forger reusing its key's session) must be seen where
    # each datagram came from, never at an address an earlier one used.
    pair = Pair()
    seen: list[Contact] = []
    pair.b.register("where", lambda sender, args: seen.append(sender))
    pair.a.ping(B_ADDR)
    pair.exchange()
    moved = ("10.0.0.7", 4001)
    for source in (A_ADDR, moved, moved, A_ADDR):
        pair.a.call_contact(pair.b_contact, "where")
        for data, _ in pair.take(pair.a):
            pair.b.datagramReceived(data, source)
    assert [c.address for c in seen] == [A_ADDR, moved, moved, A_ADDR]
    assert {c.public_key for c in seen} == {pair.a.identity.public_key}


def test_the_rate_limit_drops_a_flood_and_recovers() -> None:
    pair = Pair(rate=10, burst=5)
    for _ in range(8):
        pair.a.call_contact(pair.b_contact, "ping")
    pair.a_to_b()
    assert pair.b.stats()["dropped_rate_limited"] == 3
    assert pair.b.stats()["queries_received"] == 5
    pair.clock.advance(0.5)  # five tokens back
    for _ in range(5):
        pair.a.call_contact(pair.b_contact, "ping")
    pair.a_to_b()
    assert pair.b.stats()["queries_received"] == 10


def test_the_rate_limit_counts_per_host_but_per_port_on_loopback() -> None:
    pair = Pair(rate=10, burst=5)
    for source in (("10.0.0.9", 1), ("10.0.0.9", 2)):
        for _ in range(8):
            pair.b.datagramReceived(b"garbage", source)
    assert pair.b.stats()["dropped_rate_limited"] == 11  # one budget of 5 for the host
    for source in (("127.0.0.1", 1), ("127.0.0.1", 2), ("::1", 1)):
        for _ in range(8):
            pair.b.datagramReceived(b"garbage", source)
    assert pair.b.stats()["dropped_rate_limited"] == 11 + 3 * 3  # a budget per local port


def test_stopping_fails_pending_calls() -> None:
    pair = Pair()
    d = pair.a.call_contact(pair.b_contact, "ping")
    pair.a.doStop()
    assert result_of(d).check(RPCStopped)
    assert pair.clock.getDelayedCalls() == []


def test_calling_before_listening_fails() -> None:
    proto = RPCProtocol(Identity.generate(), task.Clock())
    assert result_of(proto.call(B_ADDR, "ping")).check(RPCStopped)


def test_cancelling_a_call_forgets_it() -> None:
    pair = Pair()
    d = pair.a.call_contact(pair.b_contact, "ping")
    d.cancel()
    assert result_of(d).check(defer.CancelledError)
    assert pair.a.stats()["pending_calls"] == 0
    assert pair.clock.getDelayedCalls() == []
    pair.a_to_b()
    pair.b_to_a()
    assert pair.a.stats()["dropped_unexpected_reply"] == 1


def test_sessions_are_bounded() -> None:
    pair = Pair(max_sessions=2)
    for n in range(5):
        other = pair.make(Identity(bytes([10 + n]) * 32))
        other.ping(B_ADDR)
        ((data, _),) = pair.take(other)
        pair.b.datagramReceived(data, ("10.0.1.{}".format(n), 4000))
    assert pair.b.stats()["sessions"] == 2
    assert pair.b.stats()["queries_received"] == 5


def test_send_errors_are_counted_not_raised(logged_errors) -> None:
    pair = Pair(retries=0)

    def refuse(data: bytes, addr: Any) -> None:
        raise OSError("network unreachable")

    pair.a.transport.write = refuse
    d = pair.a.call_contact(pair.b_contact, "ping")
    assert pair.a.stats()["send_errors"] == 1
    pair.clock.advance(10)
    assert result_of(d).check(RPCTimeout)
    assert logged_errors.take() == []


def test_register_refuses_overlong_method_names() -> None:
    with pytest.raises(ValueError):
        RPCProtocol(Identity.generate(), task.Clock()).register("m" * 65, lambda s, a: None)


@pytest_twisted.inlineCallbacks
def test_real_sockets_on_loopback():
    import socket

    from twisted.internet import reactor

    a = RPCProtocol(Identity.generate(), reactor)
    b = RPCProtocol(Identity.generate(), reactor)
    b.register("add", lambda sender, args: args[0] + args[1])
    port_a = reactor.listenUDP(0, a, interface="127.0.0.1")
    port_b = reactor.listenUDP(0, b, interface="127.0.0.1")
    try:
        address_b = ("127.0.0.1", port_b.getHost().port)
        contact = yield a.ping(address_b)
        assert contact.node_id == b.identity.node_id
        assert contact == b.contact
        # Only the simulator, asked by name, skips checking authenticators.
        assert not ITrustedNetwork.providedBy(port_b)
        assert b.sessions.verify_authenticators is True
        results = yield defer.gatherResults(
            [a.call_contact(contact, "add", [n, n]) for n in range(50)]
        )
        assert results == [2 * n for n in range(50)]
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.sendto(b"\x82garbage", address_b)
        raw.close()
        # A round trip after the garbage proves it was read (and dropped) first.
        yield a.call_contact(contact, "add", [1, 1])
        assert b.stats()["dropped_malformed"] == 1
        assert a.stats()["dropped"] == 0
    finally:
        yield port_a.stopListening()
        yield port_b.stopListening()


@pytest_twisted.inlineCallbacks
def test_an_answer_the_socket_refuses_is_counted_as_a_send_error(logged_errors):
    # Answers go straight to the socket; when it refuses one, the error is
    # counted as the transport's write would have (and nothing is raised).
    from twisted.internet import reactor

    a = RPCProtocol(Identity.generate(), reactor, max_datagram=70_000, timeout=0.3, retries=0)
    b = RPCProtocol(Identity.generate(), reactor, max_datagram=70_000)
    b.register("huge", lambda sender, args: bytes(66_000))  # beyond any UDP datagram
    port_a = reactor.listenUDP(0, a, interface="127.0.0.1")
    port_b = reactor.listenUDP(0, b, interface="127.0.0.1")
    try:
        contact = yield a.ping(("127.0.0.1", port_b.getHost().port))
        yield b.ping(("127.0.0.1", port_a.getHost().port))  # a's answer proves its address
        sent = b.stats()["sent"]
        with pytest.raises(RPCTimeout):
            yield a.call_contact(contact, "huge")
        assert b.stats()["send_errors"] == 1
        assert b.stats()["sent"] == sent
        assert b.stats()["handler_errors"] == 0
    finally:
        yield port_a.stopListening()
        yield port_b.stopListening()
    assert logged_errors.take() == []


def _has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no IPv6 loopback (::1)")
@pytest_twisted.inlineCallbacks
def test_real_sockets_on_ipv6_loopback():
    from twisted.internet import reactor

    a = RPCProtocol(Identity.generate(), reactor)
    b = RPCProtocol(Identity.generate(), reactor)
    port_a = reactor.listenUDP(0, a, interface="::1")
    port_b = reactor.listenUDP(0, b, interface="::1")
    try:
        contact = yield a.ping(("::1", port_b.getHost().port))
        assert contact == b.contact
        seen_as = yield a.call_contact(contact, "ping")
        assert wire.decode_address(seen_as) == ("::1", port_a.getHost().port)
    finally:
        yield port_a.stopListening()
        yield port_b.stopListening()


def test_public_key_work_has_a_global_budget_and_sessions_go_on() -> None:
    pair = Pair(handshake_rate=3)
    pair.a.ping(B_ADDR)
    pair.exchange()  # A's session with B: one signature checked by B
    for n in range(4):  # four strangers: two fit in the budget, two do not
        other = pair.make(Identity(bytes([20 + n]) * 32))
        other.ping(B_ADDR)
        ((data, _),) = pair.take(other)
        pair.b.datagramReceived(data, ("10.0.2.{}".format(n), 4000))
    assert pair.b.stats()["dropped_handshake_limited"] == 2
    sent = [data for data, _ in pair.take(pair.b)]
    assert len(answers(sent)) == 2  # the answers to the two that fitted
    d = pair.a.call_contact(pair.b_contact, "ping")  # MAC'd: no public-key work
    pair.exchange()
    assert isinstance(result_of(d), bytes)


def test_a_failing_listener_is_logged_and_the_query_still_answered(logged_errors) -> None:
    pair = Pair()

    def broken(contact: Contact) -> None:
        raise RuntimeError("listener bug")

    pair.b.add_listener(broken)
    d = pair.a.ping(B_ADDR)
    pair.exchange()
    assert result_of(d) == pair.b_contact
    assert len(logged_errors.take()) == 1


@pytest.mark.parametrize(
    "address",
    [
        ("localhost", 4000),
        ("10.0.0.300", 1),
        ("10.0.0.1", 0),
        ("10.0.0.1", 65536),
        ("10.0.0.1",),
        "10.0.0.1:4000",
        ("10.0.0.1", "4000"),
    ],
)
def test_calls_to_bad_addresses_fail_at_once(address: Any) -> None:
    pair = Pair()
    failure = result_of(pair.a.call(address, "ping"))
    assert failure.check(ValueError)
    assert pair.a.transport.written == []


def test_addresses_are_normalized_so_replies_match() -> None:
    pair = Pair()
    d = pair.a.ping(("0:0::0:1", 4000))
    ((query, addr),) = pair.take(pair.a)
    assert addr == ("::1", 4000)
    pair.b.datagramReceived(query, A_ADDR)
    (reply,) = answers([data for data, _ in pair.take(pair.b)])
    pair.a.datagramReceived(reply, ("::1", 4000))
    assert result_of(d).address == ("::1", 4000)


@given(st.binary(max_size=1500))
def test_any_datagram_is_answered_or_dropped_and_counted_never_raised(data: bytes) -> None:
    pair = Pair()
    pair.b.datagramReceived(data, A_ADDR)
    stats = pair.b.stats()
    assert stats["received"] == 1
    assert stats["dropped"] == 1


@pytest.mark.skipif(
    not Path("/proc/sys/net/core/rmem_max").exists(), reason="needs Linux's rmem_max to predict"
)
@pytest_twisted.inlineCallbacks
def test_listening_enlarges_the_receive_buffer():
    import socket

    from twisted.internet import reactor

    proto = RPCProtocol(Identity.generate(), reactor, receive_buffer=1 << 19)
    port = reactor.listenUDP(0, proto, interface="127.0.0.1")
    try:
        # Linux grants what was asked up to rmem_max, and reports it doubled.
        granted = port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
        assert granted == 2 * min(1 << 19, rmem_max)
    finally:
        yield port.stopListening()


def test_a_stale_datagram_does_not_spend_the_public_key_budget() -> None:
    pair = Pair(handshake_rate=1)
    stale = ping_sent_at(Identity(b"\7" * 32), pair.clock.seconds() - 3600, B_ADDR)
    pair.b.datagramReceived(stale, ("10.0.0.7", 4000))
    d = pair.a.ping(B_ADDR)  # the one signature B may check this second
    pair.exchange()
    assert result_of(d) == pair.b_contact
    assert pair.b.stats()["dropped_stale"] == 1
    assert pair.b.stats()["dropped_handshake_limited"] == 0


def test_a_handler_failing_on_a_flood_of_queries_is_logged_a_few_times_a_minute(
    logged_errors,
) -> None:
    # Peer input that reaches a bug must not turn every datagram into a
    # traceback in the log: each failure is counted, a few are logged.
    pair = Pair()

    def broken(sender: Contact, args: Any) -> None:
        raise KeyError(args)

    pair.b.register("broken", broken)
    calls = [pair.a.call_contact(pair.b_contact, "broken", n) for n in range(20)]
    pair.exchange()
    assert all(result_of(d).check(RemoteError) for d in calls)
    assert pair.b.stats()["handler_errors"] == 20
    assert pair.b.stats()["errors_sent"] == 20
    assert len(logged_errors.take()) == 5
    pair.clock.advance(60)
    last = pair.a.call_contact(pair.b_contact, "broken", 99)
    pair.exchange()
    assert result_of(last).check(RemoteError)
    assert len(logged_errors.take()) == 1


def test_transaction_ids_are_unpredictable_by_default() -> None:
    # An answered txid proves an address (dhtkit.routability): a Mersenne
    # Twister's next outputs follow from 624 of its last, which a peer we
    # query often enough would see. Simulations inject a seeded generator.
    proto = RPCProtocol(Identity(b"\5" * 32), task.Clock())
    assert isinstance(proto._rng, random.SystemRandom)
    seeded = random.Random(7)
    assert RPCProtocol(Identity(b"\5" * 32), task.Clock(), rng=seeded)._rng is seeded
