"""Chord's messages and their handlers, and the rules that change a node's state."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer

from dhtkit import wire
from dhtkit.chord import messages
from dhtkit.chord.messages import (
    MAX_CONTACTS,
    MAX_PREDECESSORS,
    MAX_SUCCESSORS,
    FindAnswer,
    State,
)
from dhtkit.chord.protocol import ChordResponder
from dhtkit.chord.state import RingState
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import from_int, to_int
from dhtkit.rpc import RemoteError
from dhtkit.rpcerrors import MalformedPayload


def contact(value: int, port: int = 4000) -> Contact:
    return Contact(from_int(value), b"\x01" * 32, ("10.77.0.1", port))


def real_contact(n: int, host: str = "10.77.0.1") -> Contact:
    return Contact.from_key(Identity(bytes([n]) * 32).public_key, (host, 4000))


def state_at(own: int, successors: list[int], predecessor: int | None = None) -> RingState:
    state = RingState(from_int(own), 4)
    if successors:
        state.replace_successors(contact(successors[0]), [contact(v) for v in successors[1:]])
    if predecessor is not None:
        state.set_predecessor(contact(predecessor))
    state.joined = True
    return state


# -- the wire ------------------------------------------------------------------------------


def test_the_largest_messages_fit_in_one_datagram() -> None:
    identity = Identity(b"\x07" * 32)
    v6 = [
        Contact.from_key(Identity(bytes([n]) * 32).public_key, ("2001:db8::{:x}".format(n), 65535))
        for n in range(1, MAX_CONTACTS + 2)
    ]
    payloads = [
        messages.find_answer(FindAnswer(True, v6)),
        messages.state_answer(State(v6[:MAX_CONTACTS], v6)),  # cut to 4 + 16
        messages.predecessors_args(v6),
        messages.find_args(b"\xff" * 20, MAX_CONTACTS),
        messages.fingers_answer(v6),  # cut to MAX_CONTACTS
    ]
    for payload in payloads:
        body = wire.encode_body(wire.QUERY, 2**32 - 1, "chord_leave", payload, identity, 2**63)
        signed = wire.seal(body, wire.sign(body, identity))  # raises if too large
        assert len(signed) <= wire.MAX_DATAGRAM
    # Answers are cut to the limit, not refused.
    assert len(messages.find_answer(FindAnswer(True, v6))[1]) == MAX_CONTACTS


def test_answers_survive_the_wire() -> None:
    found = [real_contact(n) for n in (1, 2, 3)]
    sender = real_contact(9)
    for done in (True, False):
        answer = messages.parse_find_answer(messages.find_answer(FindAnswer(done, found)), sender)
        assert answer == FindAnswer(done, found)
    state = State([real_contact(4), real_contact(5)], found)
    assert messages.parse_state(messages.state_answer(state), sender) == state
    assert messages.parse_state(messages.state_answer(State([], [])), sender) == State([], [])
    assert messages.parse_predecessors(messages.predecessors_args(found), sender) == found


def test_a_node_naming_itself_is_reached_where_its_answer_came_from() -> None:
    # Listening on every interface, a node's socket calls it 0.0.0.0.
    itself = real_contact(9, host="0.0.0.0")
    seen = real_contact(9, host="10.77.0.9")
    others = [real_contact(1), real_contact(2)]
    answer = messages.parse_find_answer(messages.find_answer(FindAnswer(True, [itself])), seen)
    assert answer.contacts == [seen]
    state = messages.parse_state(messages.state_answer(State([itself], [*others, itself])), seen)
    assert state == State([seen], [*others, seen])
    assert messages.parse_predecessors(messages.predecessors_args([itself]), seen) == [seen]
    assert messages.parse_find_args(messages.find_args(b"k" * 20, 3)) == (b"k" * 20, 3)


@pytest.mark.parametrize(
    "answer",
    [
        None,
        ["done"],
        ["maybe", []],
        ["done", []],  # a final answer must name the successor
        ["next", "x"],
        ["next", [b"short"]],
        ["next", [wire.encode_contact(real_contact(1))] * (MAX_CONTACTS + 1)],
    ],
)
def test_refuses_malformed_find_answers(answer: Any) -> None:
    with pytest.raises(MalformedPayload):
        messages.parse_find_answer(answer, real_contact(9))


# -- the handlers ----------------------------------------------------------------------------


def responder(state: RingState, stabilized: list[int] | None = None) -> ChordResponder:
    me = contact(to_int(state.own_id))

    def verify(c: Contact) -> defer.Deferred[Contact]:
        return defer.succeed(c)

    def stabilize_now() -> None:
        if stabilized is not None:
            stabilized.append(1)

    return ChordResponder(state, lambda: me, verify, stabilize_now)


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("find", None),
        ("find", [b"k" * 20]),
        ("find", [b"k" * 19, 1]),
        ("find", ["k" * 20, 1]),
        ("find", [b"k" * 20, 0]),
        ("find", [b"k" * 20, MAX_CONTACTS + 1]),
        ("find", [b"k" * 20, True]),
        ("find", [b"k" * 20, 1.0]),
        ("state", None),
        ("state", [1]),
        ("state", [wire.encode_contact(real_contact(1))] * (MAX_PREDECESSORS + 1)),
        ("notify", "x"),
        ("notify", [b"x" * 37]),
        ("leave", None),
        ("leave", [[]]),
        ("leave", [None, []]),
        ("leave", [[b"bad"], []]),
        ("leave", [[], "not a list"]),
        ("leave", [[], [b"x" * 37]]),
        ("leave", [[], [wire.encode_contact(real_contact(1))] * (MAX_SUCCESSORS + 1)]),
    ],
)
def test_answers_malformed_arguments_with_a_malformed_error(method: str, args: Any) -> None:
    state = state_at(100, [200, 300], predecessor=50)
    handler = getattr(responder(state), "answer_" + method)
    with pytest.raises(RemoteError) as caught:
        handler(real_contact(9), args)
    assert caught.value.code == "malformed"
    # and nothing changed
    assert state.successors.ids() == [from_int(200), from_int(300)]
    assert state.predecessor == contact(50)


def test_a_node_not_on_the_ring_answers_no_lookup() -> None:
    state = RingState(from_int(100), 4)
    with pytest.raises(RemoteError) as caught:
        responder(state).answer_find(real_contact(9), [b"k" * 20, 1])
    assert caught.value.code == "not_joined"


REAL = sorted((real_contact(n) for n in range(1, 12)), key=lambda c: c.node_id)


def real_state(own: int, successors: list[int], predecessor: int) -> RingState:
    """A node at REAL[own] (contacts that survive the wire: their ids are their keys')."""
    state = RingState(REAL[own].node_id, 4, predecessors=3)
    state.replace_successors(REAL[successors[0]], [REAL[i] for i in successors[1:]])
    state.set_predecessor(REAL[predecessor])
    state.joined = True
    return state


def test_state_reports_predecessor_and_successors() -> None:
    state = real_state(5, [6, 7], predecessor=4)
    answer = messages.parse_state(responder(state).answer_state(REAL[9], []), REAL[5])
    assert answer == State([REAL[4]], [REAL[6], REAL[7]])


def test_a_stabilize_query_from_our_predecessor_tells_us_the_nodes_behind_it() -> None:
    state = real_state(5, [6, 7], predecessor=4)
    handler = responder(state)
    told = messages.predecessors_args([REAL[3], REAL[2], REAL[1]])
    handler.answer_state(REAL[9], told)  # not our predecessor: ignored
    assert state.predecessors == [REAL[4]]
    handler.answer_state(REAL[4], told)
    assert state.predecessors == [REAL[4], REAL[3], REAL[2]]  # as many as we keep
    # Out of order, with us and nodes between it and us: only those behind it, in order.
    handler.answer_state(REAL[4], messages.predecessors_args([REAL[2], REAL[5], REAL[3]]))
    assert state.predecessors == [REAL[4], REAL[3], REAL[2]]
    # A node that joins between keeps the others behind it.
    state.set_predecessor(REAL[4])
    assert handler.answer_notify(REAL[4], messages.predecessors_args([REAL[3]])) is True
    assert state.predecessors == [REAL[4], REAL[3]]


def test_notify_from_a_node_between_the_predecessor_and_us_replaces_it() -> None:
    state = real_state(5, [6], predecessor=2)
    handler = responder(state)
    # The verified sender speaks for itself only: its id decides.
    assert handler.answer_notify(REAL[1], []) is False
    assert handler.answer_notify(REAL[4], []) is True
    assert handler.answer_notify(REAL[3], []) is False
    assert state.predecessors == [REAL[4], REAL[2]]


def test_leave_of_our_successor_links_us_to_the_next_at_once() -> None:
    state = real_state(5, [6, 7, 8], predecessor=4)
    stabilized: list[int] = []
    told = messages.state_answer(State([REAL[5]], [REAL[7], REAL[8], REAL[9]]))
    responder(state, stabilized).answer_leave(REAL[6], told)
    assert state.successors.contacts() == [REAL[7], REAL[8], REAL[9]]
    assert stabilized == [1]  # and the next one hears from us now


def test_leave_of_our_predecessor_takes_the_one_it_names_once_it_answered() -> None:
    state = real_state(5, [6], predecessor=4)
    responder(state).answer_leave(REAL[4], messages.state_answer(State([REAL[3]], [REAL[5]])))
    assert state.predecessor == REAL[3]


def test_leave_of_another_node_only_forgets_it() -> None:
    state = real_state(5, [6, 7, 8], predecessor=4)
    state.fingers.offer(REAL[9])
    responder(state).answer_leave(REAL[7], messages.state_answer(State([REAL[6]], [REAL[8]])))
    assert state.successors.contacts() == [REAL[6], REAL[8]]
    assert REAL[7].node_id not in state.fingers
    assert state.predecessor == REAL[4]


# -- the rules ---------------------------------------------------------------------------------


def test_notify_rules() -> None:
    state = RingState(from_int(100), 4)
    announced: list[Contact] = []
    state.add_listener(announced.append)
    assert not state.consider_predecessor(contact(100))  # never ourselves
    assert state.consider_predecessor(contact(10))  # none yet: taken
    assert state.consider_predecessor(contact(50))  # between it and us: taken
    assert not state.consider_predecessor(contact(20))  # farther: refused
    assert not state.consider_predecessor(contact(150))  # after us: refused
    assert state.consider_predecessor(contact(50, port=5000))  # the same node, moved
    assert state.predecessor == contact(50, port=5000)
    assert announced == [contact(10), contact(50)]
    # A predecessor lost for a while and back is not new.
    state.set_predecessor(None)
    assert state.consider_predecessor(contact(50))
    assert announced == [contact(10), contact(50)]


def test_notify_rules_wrap_round_zero() -> None:
    state = RingState(from_int(5), 4)
    assert state.consider_predecessor(contact(2**160 - 100))
    assert state.consider_predecessor(contact(2))
    assert not state.consider_predecessor(contact(2**160 - 50))


def test_new_successors_are_announced_once() -> None:
    state = RingState(from_int(100), 3)
    announced: list[Contact] = []
    state.add_listener(announced.append)
    state.replace_successors(contact(200), [contact(300)])
    state.replace_successors(contact(200), [contact(300), contact(400), contact(500)])
    assert announced == [contact(200), contact(300), contact(400)]


def test_answer_find_in_each_case() -> None:
    me = contact(100)
    alone = state_at(100, [])
    assert alone.answer_find(me, from_int(7), 3) == FindAnswer(True, [me])
    state = state_at(100, [200, 300, 400, 500], predecessor=50)
    state.fingers.offer(contact(2**100))
    state.fingers.offer(contact(2**80))
    # Our successor's: it, then those after it.
    assert state.answer_find(me, from_int(150), 2) == FindAnswer(True, [contact(200), contact(300)])
    # Between our predecessor and us: not answered from the predecessor
    # pointer, but round the ring to the key's predecessor, as in the paper.
    behind = state.answer_find(me, from_int(70), 2)
    assert not behind.done and behind.contacts[0] == contact(2**100)
    # Farther: the closest preceding finger first, then fallbacks.
    answer = state.answer_find(me, from_int(2**100 + 1), 3)
    assert not answer.done
    assert answer.contacts[0] == contact(2**100)
    assert answer.contacts[1:] == [contact(2**80), contact(500), contact(400)]


def test_a_short_successor_list_comes_round_to_us() -> None:
    state = state_at(100, [200, 300], predecessor=300)
    me = contact(100)
    found = state.answer_find(me, from_int(150), 4)
    assert found == FindAnswer(True, [contact(200), contact(300), me])
    assert state.answer_find(me, from_int(250), 4) == FindAnswer(False, [contact(200)])
    # The whole ring is known: holds is exact, round zero too.
    assert state.holds(from_int(100), from_int(250), 2)
    assert not state.holds(from_int(200), from_int(250), 2)
    assert state.holds(from_int(200), from_int(350), 2)


def test_next_finger_index_skips_the_entries_that_are_our_successor() -> None:
    state = state_at(0, [2**20])
    indexes = [state.next_finger_index() for _ in range(200)]
    assert min(i for i in indexes if i is not None) == 22
    assert set(indexes) == set(range(22, 161))
    assert state_at(0, []).next_finger_index() is None


def test_contacts_are_successors_predecessor_and_fingers_each_once() -> None:
    state = state_at(100, [200, 300], predecessor=50)
    state.fingers.offer(contact(200))
    state.fingers.offer(contact(2**90))
    assert state.contacts() == [contact(200), contact(300), contact(50), contact(2**90)]
