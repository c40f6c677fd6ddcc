"""The finger table: entry i is successor(n + 2**(i-1)), distinct fingers only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhtkit.chord.fingers import FingerTable
from dhtkit.contact import Contact
from dhtkit.keyspace import ID_BITS, RING_SIZE, from_int, ring_distance, to_int

ids = st.binary(min_size=20, max_size=20)


def contact(node_id: bytes, port: int = 4000) -> Contact:
    # The table reads only ids; a real contact's id is its key's hash.
    return Contact(node_id, b"\x01" * 32, ("10.77.0.1", port))


def at(own: bytes, offset: int) -> bytes:
    return from_int((to_int(own) + offset) % RING_SIZE)


def true_finger(own: bytes, others: set[bytes], index: int) -> bytes | None:
    """successor(own + 2**(index-1)) among ``others``, by brute force."""
    low = 1 << (index - 1)
    beyond = [o for o in others if ring_distance(own, o) >= low]
    return min(beyond, key=lambda o: ring_distance(own, o)) if beyond else None


@given(own=ids, others=st.sets(ids, max_size=40))
def test_entry_i_is_the_successor_of_its_start(own: bytes, others: set[bytes]) -> None:
    others.discard(own)
    table = FingerTable(own)
    for other in others:
        table.offer(contact(other))
    for index in range(1, ID_BITS + 1):
        found = table.finger(index)
        assert (found.node_id if found else None) == true_finger(own, others, index)


@given(own=ids, others=st.sets(ids, max_size=40))
def test_stores_each_distinct_finger_once_and_nothing_else(own: bytes, others: set[bytes]) -> None:
    others.discard(own)
    table = FingerTable(own)
    for other in sorted(others):
        table.offer(contact(other))
    distinct = {true_finger(own, others, i) for i in range(1, ID_BITS + 1)} - {None}
    assert {c.node_id for c in table} == distinct
    assert len(table) == len(distinct)
    distances = [ring_distance(own, c.node_id) for c in table]
    assert distances == sorted(distances)


def test_a_farther_node_in_the_same_range_is_refused() -> None:
    own = bytes(20)
    table = FingerTable(own)
    near, far = contact(at(own, 1 << 100)), contact(at(own, (1 << 100) + 5))
    assert table.offer(near)
    assert not table.offer(far)
    assert table.contacts() == [near]
    assert table.offer(contact(at(own, (1 << 100) - 1)))  # nearer, in the range below
    assert len(table) == 2


def test_a_nearer_node_replaces_the_finger_of_its_range() -> None:
    own = bytes(20)
    table = FingerTable(own)
    far, near = contact(at(own, (1 << 100) + 5)), contact(at(own, (1 << 100) + 1))
    table.offer(far)
    assert table.offer(near)
    assert table.contacts() == [near]


def test_offering_a_known_id_at_a_new_address_updates_it() -> None:
    own = bytes(20)
    table = FingerTable(own)
    node_id = at(own, 1 << 50)
    table.offer(contact(node_id, 4000))
    assert not table.offer(contact(node_id, 4000))
    assert table.offer(contact(node_id, 5000))
    assert table.contacts() == [contact(node_id, 5000)]


def test_we_are_never_our_own_finger() -> None:
    own = bytes(20)
    table = FingerTable(own)
    assert not table.offer(contact(own))
    assert len(table) == 0


def test_set_drops_the_fingers_a_lookup_proved_absent() -> None:
    own = bytes(20)
    table = FingerTable(own)
    stale = [contact(at(own, (1 << i) + 3)) for i in (9, 11, 12, 20)]
    for c in stale:
        table.offer(c)
    found = contact(at(own, (1 << 12) + 7))
    # successor(own + 2**10) is ``found``: nothing lives from there up to it.
    table.set(11, found)
    assert [c.node_id for c in table] == [stale[0].node_id, found.node_id, stale[3].node_id]
    assert table.finger(11) == table.finger(13) == found
    assert table.finger(14) == stale[3]
    assert table.finger(10) == stale[0]  # 2**9 + 3, below the lookup's start


def test_set_to_ourselves_means_nothing_lies_beyond_the_start() -> None:
    own = bytes(20)
    table = FingerTable(own)
    for i in (5, 50, 150):
        table.offer(contact(at(own, 1 << i)))
    table.set(40, contact(own))
    assert [ring_distance(own, c.node_id) for c in table] == [1 << 5]
    table.set(1, None)
    assert len(table) == 0


@given(own=ids, others=st.sets(ids, max_size=40), key=ids)
def test_closest_preceding_is_the_nearest_finger_before_the_key(
    own: bytes, others: set[bytes], key: bytes
) -> None:
    others.discard(own)
    table = FingerTable(own)
    for other in others:
        table.offer(contact(other))
    fingers = {true_finger(own, others, i) for i in range(1, ID_BITS + 1)} - {None}
    limit = ring_distance(own, key) or RING_SIZE  # key == own: the whole ring
    before = [f for f in fingers if f is not None and 0 < ring_distance(own, f) < limit]
    expected = max(before, key=lambda f: ring_distance(own, f)) if before else None
    found = table.closest_preceding(key)
    assert (found.node_id if found else None) == expected


def test_closest_preceding_passes_over_dead_fingers() -> None:
    own = bytes(20)
    table = FingerTable(own)
    fingers = [contact(at(own, 1 << i)) for i in (10, 20, 30, 40)]
    for c in fingers:
        table.offer(c)
    key = at(own, 1 << 35)
    assert table.closest_preceding(key) == fingers[2]
    skip = {fingers[2].node_id, fingers[1].node_id}
    assert table.closest_preceding(key, skip) == fingers[0]
    assert table.preceding(key, 3) == [fingers[2], fingers[1], fingers[0]]
    assert table.closest_preceding(at(own, 1 << 5)) is None


def test_remove_forgets_a_finger() -> None:
    own = bytes(20)
    table = FingerTable(own)
    c = contact(at(own, 1 << 70))
    table.offer(c)
    assert c.node_id in table
    assert table.remove(c.node_id)
    assert not table.remove(c.node_id)
    assert table.finger(1) is None


def test_start_is_own_id_plus_a_power_of_two_and_indexes_are_checked() -> None:
    own = from_int(RING_SIZE - 1)
    assert FingerTable.start(own, 1) == from_int(0)  # wraps round zero
    assert FingerTable.start(bytes(20), 160) == from_int(1 << 159)
    for bad in (0, 161):
        with pytest.raises(ValueError):
            FingerTable.start(own, bad)
        with pytest.raises(ValueError):
            FingerTable(own).finger(bad)
