"""Route(key): the paper's three cases, the no-progress guard, the iterative route."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.internet import defer

from dhtkit.contact import Contact
from dhtkit.keyspace import RING_SIZE, circular_distance, from_int
from dhtkit.pastry.digits import Digits
from dhtkit.pastry.lookup import MAX_MESSAGES, LookupFailed, RouteSearch
from dhtkit.pastry.messages import RouteAnswer
from dhtkit.pastry.routing import FALLBACKS, Route, makes_progress, route
from dhtkit.pastry.state import PastryState
from dhtkit.rpc import RPCTimeout


def node(value: int | str, port: int = 4000) -> Contact:
    """A contact with a chosen id (an int, or leading hex digits)."""
    if isinstance(value, str):
        value = int(value.ljust(40, "0"), 16)
    return Contact(from_int(value % RING_SIZE), b"\x00" * 32, ("10.0.0.1", port))


def key(value: str) -> bytes:
    return node(value).node_id


def state_of(own: str, *others: str, leaf_size: int = 2) -> tuple[PastryState, Contact]:
    me = node(own)
    state = PastryState(me.node_id, Digits(), leaf_size)
    for other in others:
        state.offer(node(other))
    return state, me


# A node 0x5000.. with leaves 0x4f.., 0x4e.. below and 0x51.., 0x52.. above.
LEAVES = ("4f", "4e", "51", "52")


def test_case_1_a_key_in_the_leaf_range_goes_to_the_numerically_closest() -> None:
    state, me = state_of("50", *LEAVES)
    found = route(state, me, key("50c0"), 1)
    assert found == Route(True, [node("51")], 1)
    found = route(state, me, key("4fff"), 2)
    assert found.done and found.contacts == [node("50"), node("4f")]


def test_case_1_forwards_when_the_closest_reach_the_edge_of_the_leaf_set() -> None:
    state, me = state_of("50", *LEAVES)
    # The three closest to 0x51ff.. include the far end 0x52: beyond it may be closer ones.
    found = route(state, me, key("51ff"), 3)
    assert found == Route(False, [node("52"), node("51")], 1)


def test_case_2_forwards_to_the_table_entry_sharing_a_longer_prefix() -> None:
    state, me = state_of("50", *LEAVES, "a1", "a7", "3")
    found = route(state, me, key("a745"), 1)
    assert not found.done and found.case == 2
    assert found.contacts[0] == node("a1")  # R[0][0xa]: the first of 0xa1, 0xa7 offered
    assert state.table.get(0, 0xA) == node("a1")
    assert all(
        makes_progress(state.digits, c.node_id, me.node_id, key("a745")) for c in found.contacts
    )


def test_case_3_forwards_to_a_numerically_closer_node_of_as_long_a_prefix() -> None:
    # No entry for digit 0xa at row 0; 0x9f.. shares no digit either but is closer.
    state, me = state_of("50", *LEAVES, "9f", "3")
    found = route(state, me, key("a745"), 1)
    assert found.case == 3 and found.contacts[0] == node("9f")


def test_case_3_with_no_node_closer_we_are_the_destination() -> None:
    state, me = state_of("50", *LEAVES, "3")
    found = route(state, me, key("a745"), 1)
    # No table entry for 0xa.., but the leaves 0x52.., 0x51.. are nearer than we are.
    assert found.contacts == [node("52"), node("51")] and not found.done
    state.forget(node("52").node_id)
    state.forget(node("51").node_id)
    state.offer(node("1"))
    state.offer(node("2"))
    found = route(state, me, key("a745"), 1)
    assert found.done and found.contacts == [me]


def test_a_route_never_names_an_excluded_or_backward_node() -> None:
    state, me = state_of("50", *LEAVES, "a1", "3", "20")
    found = route(state, me, key("a745"), 1, exclude=(node("a1").node_id,))
    assert found.case == 3 and node("a1") not in found.contacts
    assert node("3") not in found.contacts and node("20") not in found.contacts


ids = st.binary(min_size=20, max_size=20)


@settings(max_examples=200)
@given(st.lists(ids, min_size=1, max_size=40, unique=True), ids, ids)
def test_outside_the_leaf_range_the_hops_are_the_entry_then_the_best_of_the_rest(
    others: list[bytes], own: bytes, target: bytes
) -> None:
    me = Contact(own, b"\x00" * 32, ("10.0.0.1", 4000))
    state = PastryState(own, Digits(), 2)
    for other in others:
        state.offer(Contact(other, b"\x00" * 32, ("10.0.0.2", 4000)))
    assume(not state.leafset.covers(target))
    digits = Digits()
    p = digits.prefix(own, target)
    entry = state.table.get(p, digits.digit(target, p)) if p < digits.count else None
    rest = [
        c
        for c in state.contacts()
        if c != entry
        and digits.prefix(c.node_id, target) >= p
        and circular_distance(c.node_id, target) < circular_distance(own, target)
    ]
    rest.sort(
        key=lambda c: (-digits.prefix(c.node_id, target), circular_distance(c.node_id, target))
    )
    hops = ([entry] if entry is not None else []) + rest
    found = route(state, me, target, 1)
    if hops:
        assert found.contacts == hops[:FALLBACKS] and not found.done
    else:
        assert found.done and found.case == 3


def test_the_no_progress_guard() -> None:
    digits = Digits()
    target = key("a745")
    assert makes_progress(digits, key("a7"), key("a1"), target)  # longer prefix
    assert makes_progress(digits, key("a750"), key("a700"), target)  # closer
    assert not makes_progress(digits, key("a1"), key("a7"), target)
    assert not makes_progress(digits, key("a7"), key("a7"), target)  # itself


def run(d: defer.Deferred[object]) -> object:
    results: list[object] = []
    d.addBoth(results.append)
    assert results, "the route did not finish"
    result = results[0]
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result


def searching(
    answers: dict[bytes, RouteAnswer | Exception], first: list[Contact]
) -> tuple[RouteSearch, list[bytes]]:
    asked: list[bytes] = []

    def ask(contact: Contact, hop: int) -> defer.Deferred[RouteAnswer]:
        asked.append(contact.node_id)
        answer = answers[contact.node_id]
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)

    search = RouteSearch(key("a745"), 1, key("50"), Digits(), Route(False, first, 2), ask)
    return search, asked


def test_the_route_goes_around_a_dead_hop_and_counts_hops() -> None:
    answers: dict[bytes, RouteAnswer | Exception] = {
        key("a1"): RouteAnswer(False, [node("a74"), node("a7")], []),
        key("a74"): RPCTimeout("dead"),
        key("a7"): RouteAnswer(True, [node("a745")], []),
    }
    search, asked = searching(answers, [node("a1")])
    found = run(search.run())
    assert asked == [key("a1"), key("a74"), key("a7")]
    assert found.contacts == [node("a745")]  # type: ignore[attr-defined]
    assert (search.hops, search.messages, search.timeouts) == (2, 3, 1)


def test_hops_that_make_no_progress_are_dropped_and_counted() -> None:
    # 0xa1 names 0x50 (the asker) and 0x30 (backwards): a loop if followed.
    answers: dict[bytes, RouteAnswer | Exception] = {
        key("a1"): RouteAnswer(False, [node("3"), node("50")], []),
    }
    search, asked = searching(answers, [node("a1")])
    with pytest.raises(LookupFailed):
        run(search.run())
    assert asked == [key("a1")] and search.no_progress == 2


def test_a_done_answer_out_of_order_or_farther_than_its_sender_is_dropped() -> None:
    answers: dict[bytes, RouteAnswer | Exception] = {
        key("a1"): RouteAnswer(True, [node("b"), node("a745")], []),
        key("a7"): RouteAnswer(True, [node("2")], []),
        key("a74"): RouteAnswer(True, [node("a745"), node("a74")], []),
    }
    search, asked = searching(answers, [node("a1"), node("a7"), node("a74")])
    found = run(search.run())
    assert found.contacts == [node("a745")]  # type: ignore[attr-defined]
    assert asked == [key("a1"), key("a7"), key("a74")]
    assert (search.bad_answers, search.hops) == (2, 1)


def test_a_hostile_chain_of_hops_is_cut_off() -> None:
    # Each hop names a slightly closer node, for ever: the route gives up.
    target = int("a745".ljust(40, "0"), 16)
    chain: Callable[[int], Contact] = lambda i: node(target - (1 << 100) + i)  # noqa: E731
    answers: dict[bytes, RouteAnswer | Exception] = {}
    for i in range(MAX_MESSAGES + 5):
        answers[chain(i).node_id] = RouteAnswer(False, [chain(i + 1)], [])
    search, asked = searching(answers, [chain(0)])
    with pytest.raises(LookupFailed):
        run(search.run())
    assert len(asked) == MAX_MESSAGES
