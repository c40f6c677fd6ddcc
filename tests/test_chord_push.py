"""Telling the neighbours at once (dhtkit.chord.push): news in the state,
``chord_changed`` in the handlers, and a ring that links a newcomer up
without a single maintenance round."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.testing import Clock

from dhtkit.chord import messages
from dhtkit.chord.messages import State
from dhtkit.chord.rounds import Rounds
from dhtkit.chord.settled import settled
from dhtkit.chord.state import RingState
from dhtkit.contact import Contact
from dhtkit.keyspace import from_int
from dhtkit.rpc import RemoteError
from tests.chordnet import ChordNet
from tests.test_chord_protocol import REAL, contact, real_state, responder


def test_a_successor_list_that_changes_is_news_and_one_that_does_not_is_not() -> None:
    state = RingState(from_int(100), 4)
    told: list[int] = []
    state.on_news = lambda: told.append(1)
    state.replace_successors(contact(110), [contact(120)])
    assert state.news.successors and told == [1]
    state.news.successors = False
    state.replace_successors(contact(110), [contact(120)])  # the same list again
    assert not state.news.successors and told == [1]
    state.forget(contact(120).node_id)
    assert state.news.successors and told == [1, 1]


def test_a_nearer_predecessor_passes_over_the_old_one_which_is_told() -> None:
    state = RingState(from_int(100), 4, predecessors=3)
    state.set_predecessor(contact(50))
    assert state.news.predecessors and not state.news.passed_over
    state.news.predecessors = False
    state.set_predecessor(contact(50))  # the same one: nothing new
    assert not state.news.predecessors
    state.set_predecessor(contact(80))
    assert state.news.passed_over == {contact(50).node_id: contact(50)}
    assert state.news.predecessors
    state.news.predecessors = False
    state.learn_predecessors(contact(80), [contact(70)])  # behind it: ours change
    assert state.news.predecessors
    assert state.predecessors == [contact(80), contact(70)]


def test_chord_changed_from_our_successor_runs_a_stabilize_on_what_it_sent() -> None:
    state = real_state(5, [6, 7], predecessor=4)
    calls: list[tuple[Contact, State]] = []
    handler = responder(state)
    handler._stabilize_with = lambda sender, told: calls.append((sender, told))
    told = State([REAL[5]], [REAL[7], REAL[8]])
    handler.answer_changed(REAL[6], messages.state_answer(told))
    assert calls == [(REAL[6], told)]
    # Anyone else is not listened to: only our successor's lists are ours to copy.
    handler.answer_changed(REAL[7], messages.state_answer(told))
    handler.answer_changed(REAL[4], messages.state_answer(told))
    assert len(calls) == 1
    assert state.counters["changes_received"] == 3


@pytest.mark.parametrize("args", [None, [], [[], []][:1], ["x", []], [[b"short"], []]])
def test_a_malformed_chord_changed_gets_a_malformed_error(args: Any) -> None:
    state = real_state(5, [6], predecessor=4)
    with pytest.raises(RemoteError) as caught:
        responder(state).answer_changed(REAL[6], args)
    assert caught.value.code == "malformed"


def test_a_newcomer_is_in_every_list_it_belongs_to_without_a_maintenance_round() -> None:
    net = ChordNet(seed=3)
    net.grow(12)
    net.run(20)
    assert settled([p.overlay for p in net.ring()])
    for peer in net.joined:
        peer.overlay.maintenance.stop()  # no round may do the work
    newcomer = net.add()
    newcomer.overlay.maintenance.stop()
    net.wait(net.join(newcomer, net.joined[0]))
    net.run(1.0)
    # Its predecessor took it as successor, and every node before it within
    # a successor list's reach (the whole ring here) copied it in; the
    # nodes after it, within a predecessor list's, took it in theirs.
    assert net.wrong_links() == []
    assert settled([p.overlay for p in net.ring()])
    assert sum(p.overlay.counters["changes_received"] for p in net.joined) > 0


def test_a_settled_ring_sends_no_news() -> None:
    net = ChordNet(seed=4)
    net.grow(10)
    net.run(20)
    assert settled([p.overlay for p in net.ring()])
    sent = sum(p.overlay.counters["changes_sent"] for p in net.joined)
    net.run(20)
    assert sum(p.overlay.counters["changes_sent"] for p in net.joined) == sent


class SilentPlacement:
    """Answers ``state_of`` only when the test says (None: no answer)."""

    def __init__(self) -> None:
        self.asked: list[Contact] = []
        self.pending: list[defer.Deferred[State | None]] = []

    def state_of(self, contact: Contact) -> defer.Deferred[State | None]:
        self.asked.append(contact)
        self.pending.append(defer.Deferred())
        return self.pending[-1]


def test_news_from_a_successor_is_walked_one_round_at_a_time() -> None:
    state = real_state(5, [8, 9], predecessor=4)
    placement = SilentPlacement()
    rounds = Rounds(
        state,
        lambda contact, method, args: defer.succeed(None),
        lambda key, count: defer.fail(AssertionError("no lookup")),
        placement,  # type: ignore[arg-type]
        lambda contact: defer.succeed(contact),
        Clock(),
        fresh_for=1.0,
    )
    news = State([REAL[7], REAL[6]], [REAL[9]])  # two nodes between us and it
    for _ in range(10):
        rounds.stabilize_with(REAL[8], news)
    assert placement.asked == [REAL[6]]  # the nearest first, one round only
    placement.pending[0].callback(None)  # silent: the next one is asked
    assert placement.asked == [REAL[6], REAL[7]]
    placement.pending[1].callback(None)  # that round ends; the newest news waited
    assert placement.asked == [REAL[6], REAL[7], REAL[6]]
    placement.pending[2].callback(None)
    placement.pending[3].callback(None)
    assert len(placement.asked) == 4  # not twenty
    assert state.successors.first == REAL[8]
    rounds.stabilize_with(REAL[8], news)  # nothing runs now: a new round starts
    assert len(placement.asked) == 5
