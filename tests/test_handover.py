"""Hand-overs are paced per peer and in all, bounded, and stop at a silent address (task.Clock)."""

from __future__ import annotations

from collections import Counter

import pytest
from twisted.internet import defer, task

from dhtkit.contact import Contact
from dhtkit.handover import HandOverQueue
from dhtkit.identity import Identity


def peer(n: int) -> Contact:
    return Contact.from_key(Identity(bytes([n]) * 32).public_key, ("10.0.0.{}".format(n), 4000))


def keys(count: int, tag: int = 0) -> list[bytes]:
    return [bytes([tag]) + n.to_bytes(19, "big") for n in range(count)]


class Peers:
    """Who was sent what, and when; each send answers at once unless held."""

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, bytes, bytes]] = []
        self.held: list[defer.Deferred[bool]] = []
        self.hold = False

    def send(self, contact: Contact, key: bytes) -> defer.Deferred[bool]:
        self.sent.append((self.clock.seconds(), contact.node_id, key))
        if self.hold:
            d: defer.Deferred[bool] = defer.Deferred()
            self.held.append(d)
            return d
        return defer.succeed(True)

    def to(self, contact: Contact, until: float | None = None) -> int:
        return sum(
            1
            for t, node_id, _ in self.sent
            if node_id == contact.node_id and (until is None or t <= until)
        )


def make(**options: float) -> tuple[task.Clock, Peers, HandOverQueue, Counter[str]]:
    clock = task.Clock()
    peers = Peers(clock)
    counters: Counter[str] = Counter()
    queue = HandOverQueue(clock, peers.send, counters, **options)  # type: ignore[arg-type]
    return clock, peers, queue, counters


def run(clock: task.Clock, seconds: float, step: float = 0.01) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)


def test_one_peer_gets_a_burst_then_its_rate() -> None:
    clock, peers, queue, counters = make(per_peer_rate=20, per_peer_burst=20)
    a = peer(1)
    queue.offer(a, keys(500))
    assert peers.to(a) == 20  # the burst, at once
    assert counters["hand_over_deferred"] == 480
    run(clock, 10.0)
    assert 20 + 195 <= peers.to(a) <= 20 + 201  # 20 a second after the burst
    run(clock, 30.0)
    assert peers.to(a) == 500 and len(queue) == 0
    assert [k for _, _, k in peers.sent] == keys(500)  # in order, each once
    assert not clock.getDelayedCalls()  # nothing left to wake up for


def test_all_peers_together_share_the_global_rate() -> None:
    clock, peers, queue, _ = make(rate=50, burst=50, per_peer_rate=40, per_peer_burst=40)
    contacts = [peer(n) for n in range(1, 6)]
    for n, contact in enumerate(contacts):
        queue.offer(contact, keys(400, tag=n))
    run(clock, 10.0)
    total = len(peers.sent)
    assert 50 + 495 <= total <= 50 + 501
    # Round robin: no peer is starved; the first one offered had the burst.
    counts = [peers.to(c) for c in contacts]
    assert min(counts) >= 95
    assert max(counts) - min(counts) <= 50


def test_a_peer_that_does_not_answer_gets_a_window_and_no_more() -> None:
    clock, peers, queue, counters = make(window=4)
    peers.hold = True
    victim = peer(9)
    queue.offer(victim, keys(2000))
    run(clock, 5.0)
    assert peers.to(victim) == 4  # never more unanswered at once
    peers.held[0].callback(False)  # the first one timed out
    assert counters["hand_over_dropped"] == 2000 - 4
    assert len(queue) == 0
    for d in peers.held[1:]:
        d.callback(False)
    run(clock, 5.0)
    assert peers.to(victim) == 4


def test_a_peer_that_answers_keeps_receiving_within_its_window() -> None:
    _clock, peers, queue, _ = make(window=2, per_peer_rate=1000, per_peer_burst=1000)
    peers.hold = True
    a = peer(1)
    queue.offer(a, keys(6))
    assert peers.to(a) == 2
    while peers.held:
        peers.held.pop(0).callback(True)
    assert peers.to(a) == 6


@pytest.mark.parametrize(
    ("options", "offered", "kept"),
    [({"max_per_peer": 100}, 1000, 100), ({"max_queued": 150, "max_per_peer": 10_000}, 1000, 150)],
    ids=["per peer", "in all"],
)
def test_the_queue_is_bounded_and_what_overflows_is_counted(
    options: dict[str, float], offered: int, kept: int
) -> None:
    _clock, _peers, queue, counters = make(per_peer_burst=1, **options)
    queue.offer(peer(1), keys(offered))
    assert len(queue) == kept - 1  # one went at once
    assert counters["hand_over_dropped"] == offered - kept
    assert counters["hand_over_deferred"] == kept - 1


def test_the_peers_remembered_are_bounded() -> None:
    clock, peers, queue, counters = make(max_peers=3, per_peer_burst=1)
    for n in range(1, 4):
        queue.offer(peer(n), keys(10, tag=n))
    queue.offer(peer(4), keys(10, tag=4))
    assert peers.to(peer(4)) == 0
    assert counters["hand_over_dropped"] == 10
    run(clock, 60.0)  # the others are done and their budgets full again
    queue.offer(peer(4), keys(10, tag=4))
    assert peers.to(peer(4)) == 1


def test_an_offer_of_nothing_keeps_nothing_for_the_peer() -> None:
    # Every new neighbour is offered our keys; with none to give, many
    # neighbours must not fill the peers remembered (nor memory).
    _clock, _peers, queue, counters = make(max_peers=2)
    for n in range(1, 10):
        queue.offer(peer(n), [])
    assert queue.peers == 0
    queue.offer(peer(10), keys(1))
    queue.offer(peer(11), keys(1))
    assert queue.peers == 2 and counters["hand_over_dropped"] == 0


def test_whether_an_offer_has_room_is_known_before_the_keys_are_gathered() -> None:
    _clock, _peers, queue, _ = make(max_peers=2, max_per_peer=10, per_peer_burst=1)
    assert queue.has_room_for(peer(1))
    queue.offer(peer(1), keys(10))  # one goes at once, nine wait
    assert len(queue) == 9 and queue.has_room_for(peer(1))
    queue.offer(peer(1), keys(1, tag=9))
    assert not queue.has_room_for(peer(1))  # its queue is full
    queue.offer(peer(2), keys(1))
    assert queue.has_room_for(peer(2))
    assert not queue.has_room_for(peer(3))  # no room for another peer


def test_a_key_still_waiting_is_not_queued_twice() -> None:
    clock, peers, queue, _ = make(per_peer_burst=1)
    a = peer(1)
    queue.offer(a, keys(5))  # the first goes at once, four wait
    queue.offer(a, keys(5)[1:])
    assert len(queue) == 4
    run(clock, 5.0)
    assert peers.to(a) == 5


def test_a_spent_budget_is_not_renewed_by_a_new_offer() -> None:
    _clock, peers, queue, _ = make(per_peer_rate=10, per_peer_burst=10)
    a = peer(1)
    queue.offer(a, keys(10, tag=1))
    queue.offer(a, keys(10, tag=2))  # a neighbour seen again at once
    assert peers.to(a) == 10


def test_stop_forgets_the_queue_and_the_timer() -> None:
    clock, _peers, queue, _ = make(per_peer_burst=1)
    queue.offer(peer(1), keys(100))
    assert clock.getDelayedCalls()
    queue.stop()
    assert len(queue) == 0 and not clock.getDelayedCalls()
