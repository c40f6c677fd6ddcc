"""Ring arithmetic with wrap-around, the successor list, and who holds a key."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dhtkit.chord.state import RingState
from dhtkit.chord.successors import SuccessorList, may_hold
from dhtkit.contact import Contact
from dhtkit.keyspace import RING_SIZE, from_int, in_interval, ring_distance, to_int

ids = st.binary(min_size=20, max_size=20)
ring_ints = st.integers(min_value=0, max_value=RING_SIZE - 1)


def contact(node_id: bytes) -> Contact:
    return Contact(node_id, b"\x01" * 32, ("10.77.0.1", 4000))


# -- intervals on the ring -----------------------------------------------------------------


@given(x=ring_ints, a=ring_ints, b=ring_ints)
def test_open_interval_is_the_clockwise_stretch_between_its_ends(x: int, a: int, b: int) -> None:
    assume(a != b)
    inside = in_interval(from_int(x), from_int(a), from_int(b))
    if a < b:
        assert inside == (a < x < b)
    else:  # wraps round zero
        assert inside == (x > a or x < b)


@given(x=ids, a=ids, b=ids)
def test_the_two_open_arcs_and_their_ends_cover_the_ring_once(x: bytes, a: bytes, b: bytes) -> None:
    assume(a != b)
    arcs = [in_interval(x, a, b), in_interval(x, b, a), x == a, x == b]
    assert arcs.count(True) == 1


@given(x=ids, a=ids, b=ids)
def test_closed_ends_add_exactly_the_ends(x: bytes, a: bytes, b: bytes) -> None:
    assume(a != b)
    assert in_interval(x, a, b, include_end=True) == (in_interval(x, a, b) or x == b)
    assert in_interval(x, a, b, include_start=True) == (in_interval(x, a, b) or x == a)


@given(x=ids, a=ids)
def test_an_interval_from_a_point_to_itself_is_the_whole_ring_but_the_point(
    x: bytes, a: bytes
) -> None:
    # Chord's convention for a ring of one: (n, n] is every key.
    assert in_interval(x, a, a) == (x != a)
    assert in_interval(x, a, a, include_end=True)


@given(x=ring_ints, a=ring_ints, b=ring_ints, shift=ring_ints)
def test_intervals_do_not_change_when_the_ring_turns(x: int, a: int, b: int, shift: int) -> None:
    def turned(v: int) -> bytes:
        return from_int((v + shift) % RING_SIZE)

    assert in_interval(from_int(x), from_int(a), from_int(b)) == in_interval(
        turned(x), turned(a), turned(b)
    )


def test_an_interval_across_zero() -> None:
    top, low = from_int(RING_SIZE - 10), from_int(10)
    assert in_interval(from_int(0), top, low)
    assert in_interval(from_int(RING_SIZE - 1), top, low)
    assert not in_interval(from_int(11), top, low)
    assert in_interval(low, top, low, include_end=True)


# -- the successor list -----------------------------------------------------------------------


def test_the_list_is_the_successor_then_its_list_in_ring_order() -> None:
    own = from_int(100)
    successors = SuccessorList(own, 4)
    s = contact(from_int(200))
    reported = [contact(from_int(v)) for v in (300, 400, 500, 600)]
    new = successors.replace(s, reported)
    assert successors.ids() == [from_int(v) for v in (200, 300, 400, 500)]
    assert new == successors.contacts()
    assert successors.full
    # A refresh that changes only the tail announces only the newcomer.
    again = successors.replace(s, [contact(from_int(v)) for v in (250, 300, 400)])
    assert [c.node_id for c in again] == [from_int(250)]
    assert successors.ids() == [from_int(v) for v in (200, 250, 300, 400)]


def test_a_reported_list_cannot_reorder_the_ring_or_name_us() -> None:
    own = from_int(100)
    successors = SuccessorList(own, 8)
    s = contact(from_int(200))
    # Out of order, with a duplicate, ourselves, and a node between us and
    # the successor (150); 50 lies on the way round from 200 to us.
    reported = [contact(from_int(v)) for v in (400, 50, 300, 300, 100, 150, 2**159)]
    successors.replace(s, reported)
    assert successors.ids() == [from_int(v) for v in (200, 300, 400, 2**159, 50)]
    with pytest.raises(ValueError):
        successors.replace(contact(own), [])


def at(*values: int) -> list[bytes]:
    return [from_int(v) for v in values]


def test_a_short_list_that_does_not_come_round_to_us_keeps_the_nodes_we_knew_past_it() -> None:
    own = from_int(100)
    successors = SuccessorList(own, 8)
    successors.replace(contact(from_int(200)), [contact(n) for n in at(300, 400, 500, 50)])
    # 300 restarted: it answers with an empty list while it looks for its
    # place. Taken alone, our list would say the ring is 300 and us.
    successors.replace(contact(from_int(300)), [])
    assert successors.ids() == at(300, 400, 500, 50)
    # A node that knows part of the ring: what it names comes first, ours
    # past its end follow, and so do nodes known from elsewhere.
    successors.replace(contact(from_int(200)), [contact(from_int(250))], [contact(from_int(70))])
    assert successors.ids() == at(200, 250, 300, 400, 500, 50, 70)


def test_a_list_that_comes_round_to_us_drops_the_nodes_it_does_not_name() -> None:
    own = from_int(100)
    successors = SuccessorList(own, 6)
    successors.replace(contact(from_int(200)), [contact(n) for n in at(300, 400, 500)])
    # 400 and 500 are gone: the ring is 200, 300 and us, as 200 knows.
    successors.replace(contact(from_int(200)), [contact(n) for n in at(300, 100)])
    assert successors.ids() == at(200, 300)
    assert not successors.full


def test_a_list_wraps_round_zero() -> None:
    own = from_int(RING_SIZE - 100)
    successors = SuccessorList(own, 4)
    successors.replace(contact(from_int(RING_SIZE - 50)), [contact(from_int(v)) for v in (5, 7)])
    assert successors.ids() == [from_int(RING_SIZE - 50), from_int(5), from_int(7)]
    assert not successors.full


def test_removing_a_successor_promotes_the_next() -> None:
    own = from_int(1)
    successors = SuccessorList(own, 3)
    successors.replace(contact(from_int(2)), [contact(from_int(3)), contact(from_int(4))])
    assert successors.remove(from_int(2))
    assert not successors.remove(from_int(2))
    first = successors.first
    assert first is not None and first.node_id == from_int(3)


def test_preceding_lists_the_successors_before_a_key_nearest_first() -> None:
    own = from_int(0)
    successors = SuccessorList(own, 8)
    successors.replace(contact(from_int(10)), [contact(from_int(v)) for v in (20, 30, 40)])
    assert [to_int(c.node_id) for c in successors.preceding(from_int(35), 8)] == [30, 20, 10]
    assert [to_int(c.node_id) for c in successors.preceding(from_int(35), 1)] == [30]
    assert successors.preceding(from_int(5), 8) == []
    skip = {from_int(30)}
    assert [to_int(c.node_id) for c in successors.preceding(from_int(35), 2, skip)] == [20, 10]


@given(own=ids, listed=st.lists(ids, max_size=20), key=ids, gone=st.lists(ids, max_size=3))
def test_preceding_is_every_listed_node_strictly_between_us_and_the_key(
    own: bytes, listed: list[bytes], key: bytes, gone: list[bytes]
) -> None:
    others = [node_id for node_id in listed if node_id != own]
    assume(others)
    others.sort(key=lambda node_id: ring_distance(own, node_id))
    successors = SuccessorList(own, 16)
    successors.replace(contact(others[0]), [contact(n) for n in others[1:]])
    for node_id in gone:
        successors.remove(node_id)
    inside = [c for c in successors if in_interval(c.node_id, own, key)]
    assert successors.preceding(key, 20) == inside[::-1]


# -- who holds a key ------------------------------------------------------------------------


def responsible(ring: list[bytes], key: bytes, count: int) -> list[bytes]:
    """successor(key) and the next ``count - 1`` nodes, by brute force."""
    ordered = sorted(ring, key=lambda n: ring_distance(key, n))
    return ordered[:count]


@st.composite
def neighbourhoods(draw: st.DrawFn) -> tuple[list[bytes], int, int, int, int, bytes]:
    ring = sorted(draw(st.sets(ids, min_size=2, max_size=40)))
    me = draw(st.integers(0, len(ring) - 1))
    size = draw(st.integers(1, 16))
    count = draw(st.integers(1, size))
    behind = draw(st.integers(1, 4))
    key = draw(ids)
    return ring, me, size, count, behind, key


def state_between(
    own: bytes, predecessors: list[bytes], successors: list[bytes], size: int
) -> RingState:
    state = RingState(own, size, predecessors=4)
    state.replace_successors(contact(successors[0]), [contact(s) for s in successors[1:]])
    state.set_predecessor(contact(predecessors[0]))
    state.learn_predecessors(contact(predecessors[0]), [contact(p) for p in predecessors[1:]])
    assert [c.node_id for c in state.predecessors] == predecessors
    return state


@given(case=neighbourhoods())
def test_holds_is_exact_where_the_lists_reach_and_never_misses_a_replica(
    case: tuple[list[bytes], int, int, int, int, bytes],
) -> None:
    ring, me, size, count, behind, key = case
    own = ring[me]
    after = [ring[(me + i) % len(ring)] for i in range(1, len(ring))]
    successors = after[:size]
    predecessors = after[::-1][: min(behind, len(after))]
    state = state_between(own, predecessors, successors, size)
    # The lists meet (or the successor list is the rest of the ring).
    whole = len(successors) + len(predecessors) >= len(after)
    truth = responsible(ring, key, count)
    stretch = ring if whole else [*reversed(predecessors), own, *successors]
    inside = whole or in_interval(key, stretch[0], stretch[-1], include_end=True)
    for node in ring:
        says = state.holds(node, key, count)
        if inside and node in stretch and (whole or stretch.index(node) >= stretch.index(truth[0])):
            # From successor(key) on, as far as the lists reach: exact.
            assert says == (node in truth)
        elif own in truth and node in truth and node in stretch:
            # Where the lists do not tell, a replica we know is never denied.
            assert says
        if own in truth and len(predecessors) >= count - 1 and node in stretch:
            # With count - 1 predecessors: exact for every key we hold.
            assert says == (node in truth)


def test_holds_for_a_key_behind_the_predecessors_assumes_the_nearest_case() -> None:
    own, preds = from_int(1000), [from_int(900), from_int(800)]
    successors = [from_int(v) for v in (1100, 1200, 1300)]
    key = from_int(750)  # successor(key) is 800 or a node before it
    assert may_hold(preds[1], key, 3, own, preds, successors, False)
    assert may_hold(own, key, 3, own, preds, successors, False)
    assert not may_hold(successors[0], key, 3, own, preds, successors, False)
    assert not may_hold(own, key, 0, own, preds, successors, False)
    # Within the predecessors' reach it is exact.
    key = from_int(850)
    assert not may_hold(preds[1], key, 2, own, preds, successors, False)
    assert may_hold(own, key, 2, own, preds, successors, False)
