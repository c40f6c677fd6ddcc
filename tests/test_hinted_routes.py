"""Routes that ask one node at a time go on past a node hinted unreachable.

A hint (an ICMP error, :mod:`dhtkit.udpport`) may be forged: the route
moves on at once, but only the call's own outcome, later, tells the routing
state that the node failed or answered.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure

from dhtkit.chord.lookup import SuccessorSearch
from dhtkit.chord.messages import FindAnswer
from dhtkit.contact import Contact
from dhtkit.hedge import hinted
from dhtkit.keyspace import RING_SIZE, from_int
from dhtkit.pastry.digits import Digits
from dhtkit.pastry.lookup import RouteSearch
from dhtkit.pastry.messages import RouteAnswer
from dhtkit.pastry.routing import Route
from dhtkit.rpcerrors import RPCTimeout, Unreachable
from tests.hints import Watches


def node(leading_hex: str, port: int = 4000) -> Contact:
    value = int(leading_hex.ljust(40, "0"), 16) % RING_SIZE
    return Contact(from_int(value), b"\x00" * 32, ("10.0.0.{}".format(port % 250 + 1), port))


def outcome(d: defer.Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "not finished"
    return results[0]


def test_a_call_that_ends_first_is_passed_through_and_unwatched() -> None:
    watches = Watches()
    call: defer.Deferred[str] = defer.Deferred()
    late: list[Any] = []
    d = hinted(watches.watch, ("10.0.0.1", 4000), call, late.append)
    call.callback("answer")
    assert outcome(d) == "answer" and late == []
    assert not any(watches.hints.values())


def test_a_hint_fails_at_once_and_the_call_is_told_later() -> None:
    watches = Watches()
    call: defer.Deferred[str] = defer.Deferred()
    late: list[Any] = []
    d = hinted(watches.watch, ("10.0.0.1", 4000), call, late.append)
    watches.unreachable(("10.0.0.1", 4000))
    failure = outcome(d)
    assert isinstance(failure, Failure) and isinstance(failure.value, Unreachable)
    call.errback(RPCTimeout("no answer"))
    assert len(late) == 1 and isinstance(late[0].value, RPCTimeout)


def chord_search(
    answers: dict[bytes, Any], candidates: list[Contact], watch: Any
) -> tuple[SuccessorSearch, list[Contact], dict[bytes, defer.Deferred[FindAnswer]], list[str]]:
    asked: list[Contact] = []
    pending: dict[bytes, defer.Deferred[FindAnswer]] = {}
    told: list[str] = []

    def ask(contact: Contact) -> defer.Deferred[FindAnswer]:
        asked.append(contact)
        answer = answers.get(contact.node_id)
        if answer is None:  # silent: the test ends the call
            pending[contact.node_id] = defer.Deferred()
            return pending[contact.node_id]
        return defer.succeed(answer)

    search = SuccessorSearch(
        node("80").node_id,
        1,
        node("10").node_id,
        candidates,
        ask,
        answered=lambda c: told.append("answered " + c.node_id.hex()[:2]),
        failed=lambda c: told.append("failed " + c.node_id.hex()[:2]),
        watch=watch,
    )
    return search, asked, pending, told


def test_a_chord_lookup_goes_past_a_hinted_finger_and_hears_its_timeout_later() -> None:
    dead, other, successor = node("70", 4001), node("60", 4002), node("85", 4003)
    watches = Watches()
    answers = {other.node_id: FindAnswer(True, [successor])}
    search, asked, pending, told = chord_search(answers, [dead, other], watches.watch)
    d = search.run()
    assert asked == [dead] and not d.called
    watches.unreachable(dead.address)
    assert asked == [dead, other]
    assert outcome(d).contacts == [successor]
    assert (search.unreachable, search.timeouts) == (1, 0)
    # The hint counted for nothing in the finger table; the timeout does.
    assert told == ["answered 60"]
    pending[dead.node_id].errback(RPCTimeout("no answer"))
    assert told == ["answered 60", "failed 70"]


def test_a_chord_finger_hinted_by_a_forger_is_still_heard_from() -> None:
    alive, other, successor = node("70", 4001), node("60", 4002), node("85", 4003)
    watches = Watches()
    answers = {other.node_id: FindAnswer(True, [successor])}
    search, _, pending, told = chord_search(answers, [alive, other], watches.watch)
    d = search.run()
    watches.unreachable(alive.address)  # forged
    outcome(d)
    pending[alive.node_id].callback(FindAnswer(True, [successor]))
    assert "answered 70" in told and "failed 70" not in told


def test_without_a_watch_a_chord_lookup_waits_for_the_silent_finger() -> None:
    dead, other, successor = node("70", 4001), node("60", 4002), node("85", 4003)
    answers = {other.node_id: FindAnswer(True, [successor])}
    search, asked, pending, _ = chord_search(answers, [dead, other], None)
    d = search.run()
    assert asked == [dead] and not d.called
    pending[dead.node_id].errback(RPCTimeout("no answer"))
    assert asked == [dead, other] and search.timeouts == 1


@pytest.mark.parametrize("hint", [True, False])
def test_a_pastry_route_goes_around_a_hinted_hop(hint: bool) -> None:
    first, dead, around, target = node("a1", 4001), node("a74", 4002), node("a7", 4003), "a745"
    answers = {
        first.node_id: RouteAnswer(False, [dead, around], []),
        around.node_id: RouteAnswer(True, [node(target, 4004)], []),
    }
    asked: list[Contact] = []
    pending: dict[bytes, defer.Deferred[RouteAnswer]] = {}
    failed: list[Contact] = []

    def ask(contact: Contact, hop: int) -> defer.Deferred[RouteAnswer]:
        asked.append(contact)
        if contact.node_id not in answers:
            pending[contact.node_id] = defer.Deferred()
            return pending[contact.node_id]
        return defer.succeed(answers[contact.node_id])

    watches = Watches()
    search = RouteSearch(
        node(target).node_id,
        1,
        node("50").node_id,
        Digits(),
        Route(False, [first], 2),
        ask,
        failed=failed.append,
        watch=watches.watch if hint else None,
    )
    d = search.run()
    assert asked == [first, dead] and not d.called
    watches.unreachable(dead.address)
    if hint:
        assert asked == [first, dead, around]
        assert outcome(d).contacts[0].node_id == node(target).node_id
        assert (search.hops, search.unreachable, search.timeouts) == (2, 1, 0)
        assert failed == []
    else:
        assert not d.called  # no watch: the route waits for the timeout
    pending[dead.node_id].errback(RPCTimeout("no answer"))
    assert failed == [dead]  # the timeout, later or in the route
    if not hint:
        assert outcome(d).contacts[0].node_id == node(target).node_id
        assert (search.unreachable, search.timeouts) == (0, 1)
