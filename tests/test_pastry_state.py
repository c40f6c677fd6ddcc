"""Pastry's pieces of state: digits, shared prefixes, the leaf set, the table, M."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import RING_SIZE, circular_distance, from_int, key_for, to_int
from dhtkit.pastry.digits import Digits
from dhtkit.pastry.leafset import MAX_LEAF, LeafSet
from dhtkit.pastry.messages import MAX_COUNT, MAX_ROW
from dhtkit.pastry.neighbourhood import Neighbourhood
from dhtkit.pastry.state import PastryState
from dhtkit.pastry.table import RoutingTable

ids = st.binary(min_size=20, max_size=20)


def node(value: int | str, port: int = 4000) -> Contact:
    """A contact with a chosen id (an int, or leading hex digits)."""
    if isinstance(value, str):
        value = int(value.ljust(40, "0"), 16)
    return Contact(from_int(value % RING_SIZE), b"\x00" * 32, ("10.0.0.1", port))


def test_ids_read_as_forty_hex_digits_by_default() -> None:
    digits = Digits()
    value = from_int(int("0123456789abcdef" * 2 + "01234567", 16))
    assert digits.count == 40 and digits.base == 16
    assert digits.digits(value) == [int(c, 16) for c in ("0123456789abcdef" * 2 + "01234567")]


def test_other_digit_sizes() -> None:
    value = from_int(0b1011 << 156)
    assert Digits(1).count == 160 and Digits(1).digits(value)[:4] == [1, 0, 1, 1]
    assert Digits(2).count == 80 and Digits(2).digits(value)[:2] == [2, 3]
    for bits in (0, 3, 5, 8):
        with pytest.raises(ValueError):
            Digits(bits)
    with pytest.raises(IndexError):
        Digits().digit(value, 40)


def test_shared_prefix_counts_whole_digits() -> None:
    digits = Digits()
    a = node("12345").node_id
    assert digits.prefix(a, node("12345").node_id) == 40
    assert digits.prefix(a, node("12346").node_id) == 4
    assert digits.prefix(a, node("2").node_id) == 0
    # 0x1234 and 0x1238 differ from the fourth digit's top bit on: 3 digits, 12 bits shared.
    assert digits.prefix(node("1234").node_id, node("1238").node_id) == 3
    assert Digits(1).prefix(node("1234").node_id, node("1238").node_id) == 12
    assert Digits(2).prefix(node("1234").node_id, node("1238").node_id) == 6


@given(ids, ids)
def test_shared_prefix_agrees_with_the_digits(a: bytes, b: bytes) -> None:
    for bits in (1, 2, 4):
        digits = Digits(bits)
        da, db = digits.digits(a), digits.digits(b)
        expected = next((i for i, (x, y) in enumerate(zip(da, db, strict=True)) if x != y), None)
        assert digits.prefix(a, b) == (digits.count if expected is None else expected)


@given(ids, ids)
def test_a_table_place_is_the_shared_prefix_and_the_next_digit(a: bytes, b: bytes) -> None:
    for bits in (1, 2, 4):
        digits = Digits(bits)
        row = digits.prefix(a, b)
        expected = None if row == digits.count else (row, digits.digit(b, row))
        assert digits.place(to_int(a), to_int(b)) == expected
        assert RoutingTable(a, digits).place(b) == expected


@given(ids, ids)
def test_circular_distance_is_the_shorter_way_round(a: bytes, b: bytes) -> None:
    d = circular_distance(a, b)
    assert d == circular_distance(b, a) <= RING_SIZE // 2
    assert d in ((to_int(a) - to_int(b)) % RING_SIZE, (to_int(b) - to_int(a)) % RING_SIZE)


def test_the_leaf_set_keeps_the_l_nearest_on_each_side() -> None:
    own = node(1000).node_id
    leaves = LeafSet(own, size=2)
    for value in (1001, 1003, 1005, 999, 990, 980, 1002):
        leaves.offer(node(value))
    assert [to_int(c.node_id) for c in leaves.above] == [1001, 1002]
    assert [to_int(c.node_id) for c in leaves.below] == [999, 990]
    assert leaves.covers(node(995).node_id) and leaves.covers(node(1002).node_id)
    assert not leaves.covers(node(1003).node_id) and not leaves.covers(node(985).node_id)
    assert not leaves.accepts(node(1003).node_id) and leaves.accepts(node(995).node_id)
    assert leaves.remove(node(1001).node_id) == ["above"]
    assert leaves.covers(node(5000).node_id)  # a side not full: the whole ring


def test_the_leaf_set_range_wraps_around_zero() -> None:
    own = node(3).node_id
    leaves = LeafSet(own, size=2)
    for value in (5, 9, 20, -1, -4, -30):
        leaves.offer(node(value))
    assert [to_int(c.node_id) for c in leaves.below] == [RING_SIZE - 1, RING_SIZE - 4]
    assert leaves.covers(node(-2).node_id) and leaves.covers(node(0).node_id)
    assert leaves.covers(node(8).node_id)
    assert not leaves.covers(node(-5).node_id) and not leaves.covers(node(10).node_id)
    closest = leaves.closest(node(-3).node_id, 3, node(3))
    assert [to_int(c.node_id) for c in closest] == [RING_SIZE - 4, RING_SIZE - 1, 3]


def test_in_a_small_ring_a_node_sits_on_both_sides_and_all_keys_are_covered() -> None:
    leaves = LeafSet(node(0).node_id, size=2)
    for value in (10, 20, 30):
        leaves.offer(node(value))
    assert len(leaves.above) == len(leaves.below) == 2
    assert leaves.covers_ring() and leaves.covers(node(1 << 100).node_id)
    assert len(leaves) == 3


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=80))
def test_the_leaf_set_knows_exactly_its_members_whatever_comes_and_goes(
    steps: list[tuple[bool, int]],
) -> None:
    leaves = LeafSet(from_int(20 << 150), size=3)
    for add, n in steps:
        if add:
            leaves.offer(node(n << 150))
        else:
            leaves.remove(from_int(n << 150))
        members = {c.node_id for c in leaves.above + leaves.below}
        every = [from_int(m << 150) for m in range(41)]
        assert all((i in leaves) == (i in members) for i in every)


@given(st.lists(st.integers(0, RING_SIZE - 1), max_size=60), st.integers(0, RING_SIZE - 1))
def test_offers_keep_the_l_nearest_each_way_and_accepts_says_which_enter(
    offered: list[int], newcomer: int
) -> None:
    own = 7 << 140
    leaves = LeafSet(from_int(own), size=3)
    for n in offered:
        leaves.offer(node(n))
    others = {n for n in offered if n != own}
    up = sorted(others, key=lambda n: (n - own) % RING_SIZE)[:3]
    down = sorted(others, key=lambda n: (own - n) % RING_SIZE)[:3]
    assert [to_int(c.node_id) for c in leaves.above] == up
    assert [to_int(c.node_id) for c in leaves.below] == down
    before = {c.node_id for c in leaves}
    would = leaves.accepts(from_int(newcomer))
    entered = leaves.offer(node(newcomer))
    assert would == entered
    assert entered == (from_int(newcomer) in {c.node_id for c in leaves} - before)


def test_the_table_lists_its_entries_row_by_row_then_by_column() -> None:
    table = RoutingTable(from_int(0), Digits())
    for value in ("3", "1", "02", "01", "0003"):
        table.offer(node(value))
    assert [c.node_id for c in table.contacts()] == [
        node(v).node_id for v in ("1", "3", "01", "02", "0003")
    ]


def test_the_table_places_a_node_by_prefix_and_prefers_the_lower_rtt() -> None:
    own = node("1234").node_id
    table = RoutingTable(own, Digits())
    far, near = node("15", 1), node("156", 2)
    assert table.place(far.node_id) == (1, 5)
    assert table.offer(far, rtt=0.2)
    assert not table.offer(near)  # unmeasured: only an empty slot
    assert not table.offer(near, rtt=0.3)
    assert table.offer(near, rtt=0.1)
    assert table.get(1, 5) == near and far.node_id not in table
    assert table.place(own) is None and not table.offer(node("1234"))
    assert table.remove(near.node_id) == (1, 5) and table.get(1, 5) is None
    assert table.offer(node("9"), None) and table.row(0) == [node("9")]


def test_the_neighbourhood_set_keeps_the_nearest_by_rtt() -> None:
    m = Neighbourhood(node(0).node_id, size=2)
    assert m.offer(node(1), 0.3) and m.offer(node(2), 0.1)
    assert not m.offer(node(3), 0.5)
    assert m.offer(node(4), 0.2)
    assert [to_int(c.node_id) for c in m.contacts()] == [2, 4]


def test_a_node_new_to_the_leaf_set_is_announced_to_the_listeners() -> None:
    middle = 1 << 159
    state = PastryState(node(middle).node_id, Digits(), leaf_size=2)
    heard: list[Contact] = []
    state.add_listener(heard.append)
    for offset in (1, 1, -1, 2, -2, 3, -3):
        state.offer(node(middle + offset))
    assert [to_int(c.node_id) - middle for c in heard] == [1, -1, 2, -2]
    me = node(middle)
    assert state.holds(node(middle + 1).node_id, node(middle + 1).node_id, 1, me)
    assert state.holds(me.node_id, node(middle + 1).node_id, 2, me)
    assert not state.holds(node(middle + 2).node_id, me.node_id, 3, me)
    lost = state.forget(node(middle + 1).node_id)
    assert lost.sides == ["above"] and not state.knows(node(middle + 1).node_id)


@given(
    st.lists(
        st.tuples(st.integers(0, RING_SIZE - 1), st.none() | st.floats(0.001, 1.0)), max_size=40
    ),
    st.lists(st.integers(0, 39), max_size=10),
)
def test_the_state_counts_and_tells_its_nodes_as_it_lists_them(
    offers: list[tuple[int, float | None]], forgotten: list[int]
) -> None:
    state = PastryState(node(1 << 159).node_id, Digits(), leaf_size=2, neighbourhood_size=3)
    for value, rtt in offers:
        state.offer(node(value), rtt)
    for i in forgotten:
        if i < len(offers):
            state.forget(node(offers[i][0]).node_id)
    listed = {c.node_id for c in state.contacts()}
    assert state.count() == len(listed)
    assert all(
        (node(value).node_id in state) == (node(value).node_id in listed) for value, _ in offers
    )


@given(
    st.lists(st.integers(0, RING_SIZE - 1), max_size=30),
    st.integers(0, RING_SIZE - 1),
)
def test_a_sender_is_worth_probing_when_known_or_wanted(offered: list[int], sender: int) -> None:
    own = node(1 << 159).node_id
    state = PastryState(own, Digits(), leaf_size=2, neighbourhood_size=3)
    for value in offered:
        state.offer(node(value))
    node_id = node(sender).node_id
    expected = node_id != own and (state.knows(node_id) or state.wanted(node_id))
    assert state.worth_probing(node_id) == expected
    assert not state.worth_probing(own)


def test_key_for_ids_are_spread_over_the_digits() -> None:
    firsts = {Digits().digit(key_for(str(i)), 0) for i in range(200)}
    assert firsts == set(range(16))


def test_the_largest_answers_fit_one_datagram_with_ipv6_contacts() -> None:
    contacts = [
        Contact.from_key(Identity(bytes([i]) * 32).public_key, ("2001:db8::{:x}".format(i), 65535))
        for i in range(2 * MAX_LEAF)
    ]
    me = Identity(b"\x55" * 32)
    route = [
        True,
        wire.encode_contacts(contacts[:MAX_COUNT]),
        wire.encode_contacts(contacts[:MAX_ROW]),
    ]
    for payload in (route, wire.encode_contacts(contacts)):
        body = wire.encode_body(wire.RESPONSE, 2**32 - 1, "", payload, me, 2**63)
        assert len(wire.seal(body, b"\x00" * wire.MAC_BYTES)) <= wire.MAX_DATAGRAM
