"""QuorumRead: a read of every responsible node that does not wait for the silent ones."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task

from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.quorumread import QuorumRead
from dhtkit.rpc import RPCTimeout

CONTACTS = [
    Contact.from_key(Identity(bytes([i]) * 32).public_key, ("10.0.0.1", 4000 + i)) for i in range(4)
]


class Peers:
    """Each contact answers after ``delay`` with its answer, or never (silent)."""

    def __init__(self, answers: dict[int, Any], delay: float = 0.01) -> None:
        self.clock = task.Clock()
        self.answers = answers
        self.delay = delay
        self.calls: dict[int, defer.Deferred[Any]] = {}

    def ask(self, contact: Contact) -> defer.Deferred[Any]:
        i = CONTACTS.index(contact)
        d: defer.Deferred[Any] = defer.Deferred()
        self.calls[i] = d
        if i in self.answers:
            self.clock.callLater(self.delay, d.callback, self.answers[i])
        return d


def read(peers: Peers, quorum: int = 2, limit: float = 1.0) -> defer.Deferred[dict[int, Any]]:
    return QuorumRead(
        peers.clock, CONTACTS, peers.ask, lambda i, a: a == "copy", quorum, limit
    ).run()


def test_it_reads_every_node_that_answers() -> None:
    peers = Peers({0: "copy", 1: None, 2: "copy", 3: "old"})
    d = read(peers)
    peers.clock.advance(0.01)
    assert d.called
    assert d.result == {0: "copy", 1: None, 2: "copy", 3: "old"}


def test_a_silent_node_is_hedged_once_a_copy_came_not_waited_for() -> None:
    peers = Peers({0: "copy", 1: None, 3: "copy"})  # 2 is dead
    d = read(peers)
    peers.clock.advance(0.01)
    assert not d.called  # the silent one gets a few round trips
    peers.clock.advance(0.03)  # a few round trips of 10 ms, not the 1 s limit
    assert d.called and d.result == {0: "copy", 1: None, 3: "copy"}
    peers.calls[2].callback("copy")  # too late: ignored, no error


def test_a_miss_needs_a_quorum_of_answers_before_it_stops_waiting() -> None:
    peers = Peers({0: None})  # 1, 2, 3 silent
    d = read(peers, quorum=2)
    peers.clock.advance(1.0)
    assert not d.called  # one answer without a copy is not a miss yet
    peers.calls[1].errback(RPCTimeout("no answer"))
    peers.calls[2].callback(None)
    assert d.called and d.result == {0: None, 2: None}


def test_with_no_node_it_ends_at_once() -> None:
    d = QuorumRead(task.Clock(), [], lambda c: defer.Deferred(), lambda i, a: True, 2, 1.0).run()
    assert d.called and d.result == {}


def test_a_node_the_network_says_is_gone_is_not_waited_for() -> None:
    peers = Peers({0: "copy", 1: None, 3: "copy"})  # 2 is dead
    watched: dict[Any, list[Any]] = {}

    def watch(address: Any, hint: Any) -> Any:
        watched.setdefault(address, []).append(hint)
        return lambda: watched[address].remove(hint)

    d = QuorumRead(
        peers.clock, CONTACTS, peers.ask, lambda i, a: a == "copy", 2, 1.0, watch=watch
    ).run()
    for hint in watched.pop(CONTACTS[2].address):  # an ICMP error came back
        hint()
    assert not d.called  # the others have not answered yet
    peers.clock.advance(0.01)
    # Every other node answered: no hedge to wait for.
    assert d.called and d.result == {0: "copy", 1: None, 3: "copy"}
    assert not any(watched.values())  # every watch ended


def test_a_hinted_node_is_still_waited_for_by_a_miss() -> None:
    peers = Peers({0: None, 1: None, 3: None})
    hints: list[Any] = []
    d = QuorumRead(
        peers.clock,
        CONTACTS,
        peers.ask,
        lambda i, a: a == "copy",
        4,
        1.0,
        watch=lambda address, hint: hints.append((address, hint)) or (lambda: None),
    ).run()
    for address, hint in hints:
        if address == CONTACTS[2].address:
            hint()
    peers.clock.advance(1.0)
    # Three answers without a copy are not a quorum of four: a hint is no
    # proof that node 2 holds nothing, so the miss waits for its timeout.
    assert not d.called
    peers.calls[2].errback(RPCTimeout("no answer"))
    assert d.called and d.result == {0: None, 1: None, 3: None}
