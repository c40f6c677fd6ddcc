from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.testing import FakeDatagramTransport

from dhtkit import wire
from dhtkit.identity import Identity
from dhtkit.rpc import RPCProtocol
from dhtkit.sessions import (
    MAX_PROVEN,
    REPLAY_WINDOW,
    SMALL_WINDOW,
    FromSelf,
    ReplayWindow,
    Session,
    SessionTable,
    Stale,
)

ALICE = Identity(b"\1" * 32)
BOB = Identity(b"\2" * 32)
NOW = 1_000_000.0
A_ADDR = ("10.0.0.1", 4000)
B_ADDR = ("10.0.0.2", 4000)


def query_from(sender: Identity, receiver: Identity, seq: int, txid: int = 7) -> wire.Message:
    body = wire.encode_body(wire.QUERY, txid, "ping", None, sender, seq)
    key = wire.session_key(sender, receiver.public_key)
    return wire.decode(wire.seal(body, wire.mac(body, key)))


def test_the_window_refuses_repeats_and_takes_reordering_within_it() -> None:
    window = ReplayWindow()
    assert window.empty
    assert window.accept(100)
    assert not window.accept(100)
    assert window.accept(90)  # late, but within the window
    assert not window.accept(90)
    assert window.accept(200)
    assert window.highest == 200
    assert not window.empty


@given(
    st.lists(
        st.integers(0, 2**64 - 1) | st.integers(10**15, 10**15 + 3 * REPLAY_WINDOW),
        max_size=4 * REPLAY_WINDOW,
    )
)
def test_the_window_agrees_with_a_sorted_list_of_what_it_took(numbers: list[int]) -> None:
    window, kept, floor = ReplayWindow(), [], -1
    for seq in numbers:
        takes = seq > floor and seq not in kept
        if takes:
            kept = sorted([*kept, seq])
            if len(kept) > REPLAY_WINDOW:
                floor = kept.pop(0)
        assert window.accept(seq) == takes
        assert (window.floor, window.remembered) == (floor, len(kept))
        assert window.highest == (kept[-1] if kept else floor)


def test_a_few_numbers_are_one_byte_string_and_more_an_array() -> None:
    window = ReplayWindow()
    numbers = [10**15 + 10 * i for i in range(SMALL_WINDOW)]
    for seq in reversed(numbers):  # out of order: kept sorted all the same
        assert window.accept(seq)
    assert window.recent == b"".join(n.to_bytes(8, "big") for n in numbers)
    assert window.accept(10**15 + 5)
    assert list(window.recent) == sorted([*numbers, 10**15 + 5])
    assert not window.accept(10**15 + 5)
    assert window.highest == numbers[-1]
    assert window.remembered == SMALL_WINDOW + 1


def test_the_window_forgets_the_oldest_and_refuses_below_it() -> None:
    window = ReplayWindow()
    for seq in range(1, REPLAY_WINDOW + 11):
        assert window.accept(seq * 1000)
    assert window.floor == 10_000
    assert not window.accept(10_000)
    assert not window.accept(5_500)  # never seen, but too old to tell
    assert window.accept(10_001)  # above the floor and never seen
    assert window.remembered == REPLAY_WINDOW


def test_the_window_of_a_flooding_peer_stays_the_same_size() -> None:
    # The old window kept every number of a two-second generation: a peer
    # sending with numbers one microsecond apart grew it without bound.
    window = ReplayWindow()
    window.accept(0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for seq in range(1, 200_000):
            window.accept(seq)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert window.remembered == REPLAY_WINDOW
    assert grown < 16_384


def test_a_session_of_a_peer_met_once_stays_small() -> None:
    # A simulated node keeps hundreds of sessions, a network millions: a
    # session with a few numbers and one proven address was 335 bytes of
    # its own (a window object, a list of addresses), not counting its key,
    # then 272 (an array and a tuple of addresses), now under 200.
    peers = [bytes([i % 256, i // 256]) * 16 for i in range(1000)]
    addresses = [("10.0.{}.{}".format(i // 250, i % 250), 4000) for i in range(1000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sessions = []
        for peer, address in zip(peers, addresses, strict=True):
            session = Session(peer, -1, peer)
            for seq in range(3):
                session.accept(10**15 + seq)
            session.prove(address)
            sessions.append(session)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown / len(sessions) < 200


def test_a_session_remembers_a_few_proven_addresses() -> None:
    session = Session(b"k" * 32)
    for port in range(1, MAX_PROVEN + 3):
        session.prove(("10.0.0.1", port))
    assert not session.is_proven(("10.0.0.1", 1))
    assert session.is_proven(("10.0.0.1", MAX_PROVEN + 2))
    assert len(session.proven_addresses()) == MAX_PROVEN
    assert session.proven_addresses()[-1] == ("10.0.0.1", MAX_PROVEN + 2)


def test_one_proven_address_is_kept_as_itself() -> None:
    session = Session(b"k" * 32)
    assert not session.is_proven(A_ADDR)
    assert session.proven_addresses() == ()
    session.prove(A_ADDR)
    assert session.proven is A_ADDR
    assert session.proven_addresses() == (A_ADDR,)
    assert session.is_proven(A_ADDR)
    assert not session.is_proven(("10.0.0.1", 4001))
    assert not session.is_proven(B_ADDR)
    session.prove(B_ADDR)
    assert session.proven_addresses() == (A_ADDR, B_ADDR)
    assert session.is_proven(A_ADDR) and session.is_proven(B_ADDR)


def test_the_sessions_of_one_process_share_a_peer_key() -> None:
    carol = Identity(b"\3" * 32)
    seq = int(NOW * 1e6)
    to_bob, to_carol = query_from(ALICE, BOB, seq), query_from(ALICE, carol, seq)
    assert to_bob.sender_key is not to_carol.sender_key
    at_bob = SessionTable(BOB).admit(to_bob, NOW)
    at_carol = SessionTable(carol).admit(to_carol, NOW)
    assert at_bob.peer_key is at_carol.peer_key


def test_admission_opens_a_session_and_refuses_a_replay() -> None:
    table = SessionTable(BOB)
    message = query_from(ALICE, BOB, int(NOW * 1e6))
    session = table.admit(message, NOW)
    assert session is table.get(ALICE.public_key)
    with pytest.raises(wire.WireError) as refused:
        table.admit(message, NOW)
    assert refused.value.reason == "replay"


def test_our_own_datagrams_and_stale_first_datagrams_are_refused() -> None:
    table = SessionTable(BOB, max_clock_skew=60)
    with pytest.raises(FromSelf):
        table.admit(query_from(BOB, ALICE, int(NOW * 1e6)), NOW)
    with pytest.raises(Stale):
        table.admit(query_from(ALICE, BOB, int((NOW - 61) * 1e6)), NOW)
    assert len(table) == 0


def test_a_datagram_captured_before_an_eviction_cannot_be_replayed_after_it() -> None:
    table = SessionTable(BOB, max_sessions=2)
    captured = query_from(ALICE, BOB, int(NOW * 1e6), txid=1)
    table.admit(captured, NOW)
    table.admit(query_from(ALICE, BOB, int(NOW * 1e6) + 5, txid=2), NOW)
    for n in range(2):  # two strangers push Alice's session out
        stranger = Identity(bytes([30 + n]) * 32)
        table.admit(query_from(stranger, BOB, int(NOW * 1e6)), NOW)
    assert table.get(ALICE.public_key) is None
    with pytest.raises(Stale):
        table.admit(captured, NOW + 1)
    # Alice's new datagrams are welcome, and continue her old window.
    assert table.admit(query_from(ALICE, BOB, int(NOW * 1e6) + 10, txid=3), NOW + 1)


def test_a_replay_stays_refused_when_the_tombstone_is_pushed_out_too() -> None:
    table = SessionTable(BOB, max_sessions=2)
    captured = query_from(ALICE, BOB, int(NOW * 1e6))
    table.admit(captured, NOW)
    for n in range(6):  # enough strangers to evict Alice's tombstone as well
        stranger = Identity(bytes([40 + n]) * 32)
        table.admit(query_from(stranger, BOB, int(NOW * 1e6) + 1 + n), NOW)
    assert table.floor >= captured.seq
    with pytest.raises(Stale):
        table.admit(captured, NOW + 1)


def test_ten_thousand_strangers_do_not_open_a_replay_through_the_rpc_layer() -> None:
    # The attack of the hardening issue, scaled down: enough fresh identities
    # to evict a peer's session, then one of its captured datagrams again.
    clock = task.Clock()
    clock.advance(NOW)
    bob = RPCProtocol(BOB, clock, max_sessions=50, handshake_rate=10**6, rate=10**6)
    bob.makeConnection(FakeDatagramTransport())
    calls: list[object] = []
    bob.register("note", lambda sender, args: calls.append(args))
    body = wire.encode_body(wire.QUERY, 1, "note", 1, ALICE, int(NOW * 1e6))
    captured = wire.seal(body, wire.mac(body, wire.session_key(ALICE, BOB.public_key)))
    bob.datagramReceived(captured, A_ADDR)
    for n in range(150):
        stranger = Identity(n.to_bytes(2, "big") * 16)
        body = wire.encode_body(wire.QUERY, 1, "ping", None, stranger, int(NOW * 1e6) + n)
        data = wire.seal(body, wire.sign(body, stranger))
        bob.datagramReceived(data, ("10.1.{}.{}".format(n // 250, n % 250 + 1), 4000))
    clock.advance(1)
    bob.datagramReceived(captured, A_ADDR)
    assert calls == [1]
    assert bob.stats()["dropped_stale"] == 1
