"""Chord's five RPCs on the wire: their arguments, their answers, their checks.

==============  ==========================  ===========================================
method          arguments                   answer
==============  ==========================  ===========================================
chord_find      ``[key, count]``            ``["done", contacts]``: ``successor(key)``
                                            and the nodes after it, or
                                            ``["next", contacts]``: nodes nearer before
                                            ``key`` to ask next, nearest first
chord_state     the sender's predecessors   ``[predecessors, successors]``
chord_notify    the sender's predecessors   whether the sender is now our predecessor
chord_leave     ``[predecessors,            ``null``
                successors]``
chord_fingers   ``null``                    the distinct nodes of our finger table
==============  ==========================  ===========================================

Predecessor lists run backwards from the nearest, successor lists forwards.
A node's stabilize query and notify carry its own predecessors to its
successor, which so learns the nodes behind its predecessor at no extra
cost (who holds a key behind us depends on them). A node that just
joined asks its successor for its fingers (``chord_fingers``): they are
its own, or near them, as the Chord paper notes, so each of its finger
entries starts from one of them.

Contacts travel as :func:`dhtkit.wire.encode_contact` byte strings. A list
holds at most :data:`MAX_CONTACTS` (:data:`MAX_SUCCESSORS` and
:data:`MAX_PREDECESSORS` in a node's state), so that every message fits in
one datagram even with IPv6 addresses and a signature (see the tests). The
decoders check everything and raise :class:`MalformedPayload`, which a
handler turns into ``RemoteError("malformed", ...)``.
"""

from __future__ import annotations

from typing import Any

import attrs

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.keyspace import ID_BYTES
from dhtkit.rpcerrors import MalformedPayload

FIND = "chord_find"
STATE = "chord_state"
NOTIFY = "chord_notify"
LEAVE = "chord_leave"
#: A node that just joined asks its successor for its fingers.
FINGERS = "chord_fingers"
#: The methods whose answers may fill a datagram (see
#: :attr:`dhtkit.overlay.RoutingOverlayBase.large_answers`).
LARGE_ANSWERS = frozenset({FIND, STATE, FINGERS})

#: The longest contact list in any message.
MAX_CONTACTS = 20
#: The longest successor list a node keeps and sends.
MAX_SUCCESSORS = 16
#: The longest predecessor list a node keeps and sends.
MAX_PREDECESSORS = 4
#: How many nodes a ``next`` answer offers: the best one and fallbacks.
NEXT_CANDIDATES = 4

DONE, NEXT = "done", "next"


@attrs.frozen
class FindAnswer:
    """An answer to ``chord_find``: final (``done``) or a step closer."""

    done: bool
    contacts: list[Contact]


@attrs.frozen
class State:
    """A node's neighbours, as ``chord_state`` reports them."""

    predecessors: list[Contact]
    successors: list[Contact]

    @property
    def predecessor(self) -> Contact | None:
        """The nearest predecessor, if any."""
        return self.predecessors[0] if self.predecessors else None


def _contacts(value: Any, sender: Contact, limit: int = MAX_CONTACTS) -> list[Contact]:
    try:
        contacts = wire.decode_contacts(value, limit=limit)
    except wire.WireError as e:
        raise MalformedPayload(str(e)) from None
    # A node names itself by the address its socket reports, which is
    # 0.0.0.0 or :: when it listens on every interface; where its messages
    # came from is how it is reached.
    return [sender if c.node_id == sender.node_id else c for c in contacts]


def find_args(key: bytes, count: int) -> list[Any]:
    """The arguments of ``chord_find``."""
    return [key, count]


def parse_find_args(args: Any) -> tuple[bytes, int]:
    """``(key, count)`` from ``chord_find`` arguments."""
    if type(args) is not list or len(args) != 2:
        raise MalformedPayload("chord_find takes [key, count]")
    key, count = args
    if type(key) is not bytes or len(key) != ID_BYTES:
        raise MalformedPayload("the key is {} bytes".format(ID_BYTES))
    if type(count) is not int or not 1 <= count <= MAX_CONTACTS:
        raise MalformedPayload("count is between 1 and {}".format(MAX_CONTACTS))
    return key, count


def find_answer(answer: FindAnswer) -> list[Any]:
    """The wire form of a ``chord_find`` answer."""
    return [DONE if answer.done else NEXT, wire.encode_contacts(answer.contacts[:MAX_CONTACTS])]


def parse_find_answer(value: Any, sender: Contact) -> FindAnswer:
    """A ``chord_find`` answer from the wire, as ``sender`` gave it."""
    if type(value) is not list or len(value) != 2 or value[0] not in (DONE, NEXT):
        raise MalformedPayload('a chord_find answer is ["done" or "next", contacts]')
    contacts = _contacts(value[1], sender)
    if value[0] == DONE and not contacts:
        raise MalformedPayload("a final chord_find answer names the successor")
    return FindAnswer(value[0] == DONE, contacts)


def state_answer(state: State) -> list[Any]:
    """The wire form of a ``chord_state`` answer (and of ``chord_leave`` arguments)."""
    return [
        wire.encode_contacts(state.predecessors[:MAX_PREDECESSORS]),
        wire.encode_contacts(state.successors[:MAX_SUCCESSORS]),
    ]


def parse_state(value: Any, sender: Contact) -> State:
    """A ``chord_state`` answer, or ``chord_leave`` arguments, as ``sender`` gave them."""
    if type(value) is not list or len(value) != 2:
        raise MalformedPayload("a node's state is [predecessors, successors]")
    return State(
        _contacts(value[0], sender, MAX_PREDECESSORS), _contacts(value[1], sender, MAX_SUCCESSORS)
    )


def fingers_answer(fingers: list[Contact]) -> list[bytes]:
    """The wire form of a ``chord_fingers`` answer: at most
    :data:`MAX_CONTACTS` of ``fingers``, the farthest first (they tell the
    most: the nearest entries are the successor's)."""
    return wire.encode_contacts(fingers[::-1][:MAX_CONTACTS])


def parse_fingers(value: Any, sender: Contact) -> list[Contact]:
    """A ``chord_fingers`` answer from the wire, as ``sender`` gave it."""
    return _contacts(value, sender)


def predecessors_args(predecessors: list[Contact]) -> list[bytes]:
    """The arguments of ``chord_state`` and ``chord_notify``: our predecessors."""
    return wire.encode_contacts(predecessors[:MAX_PREDECESSORS])


def parse_predecessors(args: Any, sender: Contact) -> list[Contact]:
    """The sender's predecessors from ``chord_state`` or ``chord_notify`` arguments."""
    return _contacts(args, sender, MAX_PREDECESSORS)
