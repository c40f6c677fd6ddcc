"""The join life-cycle on a ``task.Clock``: joining, backing off, watching, rejoining, stopping."""

from __future__ import annotations

import random

import pytest
from twisted.internet import defer, task

from dhtkit.membership import BACKOFF_CAP, JITTER, Membership, State
from dhtkit.overlay import JoinFailed
from tests.conftest import LoggedErrors


class FixedJitter(random.Random):
    """An rng whose jitter factor is always ``fraction`` of the way through :data:`JITTER`."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


class Network:
    """The attempts a membership makes, answered by the test."""

    def __init__(self) -> None:
        self.attempts: list[defer.Deferred[int]] = []
        self.cut_off = False
        self.joined: list[int] = []

    def attempt(self) -> defer.Deferred[int]:
        d: defer.Deferred[int] = defer.Deferred()
        self.attempts.append(d)
        return d

    def is_cut_off(self) -> bool:
        return self.cut_off


def started(
    rng: random.Random | None = None, rejoin_after: float = 10.0, watch_every: float = 5.0
) -> tuple[task.Clock, Network, Membership]:
    clock, net = task.Clock(), Network()
    membership = Membership(
        net.attempt,
        net.is_cut_off,
        rng if rng is not None else random.Random(1),
        rejoin_after=rejoin_after,
        watch_every=watch_every,
        on_joined=net.joined.append,
        name="test",
    )
    assert membership.state is State.IDLE
    membership.start(clock)
    return clock, net, membership


def test_start_joins_at_once_and_a_success_is_joined() -> None:
    _clock, net, membership = started()
    assert membership.state is State.JOINING
    assert len(net.attempts) == 1
    waiting: list[int] = []
    membership.when_joined().addCallback(waiting.append)
    net.attempts[0].callback(3)
    assert membership.state is State.JOINED
    assert waiting == [3] and net.joined == [3]
    assert membership.joined_once
    later: list[int] = []
    membership.when_joined().addCallback(later.append)
    assert later == [3]


def test_a_failed_attempt_backs_off_then_tries_again() -> None:
    clock, net, membership = started(rng=FixedJitter(1.0), rejoin_after=10.0)
    net.attempts[0].errback(JoinFailed("nobody answered"))
    assert membership.state is State.BACKING_OFF
    clock.advance(9.9)
    assert len(net.attempts) == 1
    clock.advance(0.1)
    assert membership.state is State.JOINING
    assert len(net.attempts) == 2
    net.attempts[1].callback(1)
    assert membership.state is State.JOINED


def wait_before_next_attempt(clock: task.Clock, net: Network) -> float:
    """Fail the attempt in flight and return how long the next one waits."""
    before = len(net.attempts)
    net.attempts[-1].errback(JoinFailed("nobody answered"))
    (call,) = clock.getDelayedCalls()
    wait = call.getTime() - clock.seconds()
    clock.advance(wait)
    assert len(net.attempts) == before + 1
    return wait


def test_the_back_off_doubles_up_to_its_cap() -> None:
    clock, net, _membership = started(rng=FixedJitter(1.0), rejoin_after=10.0)
    waits = [wait_before_next_attempt(clock, net) for _ in range(7)]
    assert waits == [10.0, 20.0, 40.0, 80.0, 100.0, 100.0, 100.0]
    assert 10.0 * BACKOFF_CAP == 100.0


def test_the_jitter_comes_from_the_injected_rng() -> None:
    low = started(rng=FixedJitter(0.0), rejoin_after=10.0)
    assert [wait_before_next_attempt(low[0], low[1]) for _ in range(6)] == [
        10.0 * JITTER[0] * factor for factor in (1, 2, 4, 8, 10, 10)
    ]
    seeded = [started(rng=random.Random(seed), rejoin_after=10.0) for seed in (1, 1, 2)]
    waits = [[wait_before_next_attempt(c, n) for _ in range(6)] for c, n, _ in seeded]
    assert waits[0] == waits[1]  # the same seed: the same waits
    assert waits[0] != waits[2]
    for wait, base in zip(waits[2], (10, 20, 40, 80, 100, 100), strict=True):
        assert base * JITTER[0] <= wait <= base * JITTER[1]


def test_a_bug_in_the_attempt_is_logged_and_backed_off_like_a_failure(
    logged_errors: LoggedErrors,
) -> None:
    clock, net, membership = started(rng=FixedJitter(1.0))
    net.attempts[0].errback(ValueError("a bug"))
    assert membership.state is State.BACKING_OFF
    (error,) = logged_errors.take()
    assert error["log_failure"].check(ValueError)
    clock.advance(10.0)
    assert membership.state is State.JOINING


def test_a_joined_node_is_watched_and_one_that_lost_its_contacts_rejoins() -> None:
    clock, net, membership = started(rng=FixedJitter(1.0), rejoin_after=10.0, watch_every=5.0)
    net.attempts[0].callback(2)
    clock.advance(5.0 * 4)
    assert membership.state is State.JOINED and len(net.attempts) == 1  # still has contacts
    net.cut_off = True
    clock.advance(5.0)
    assert membership.state is State.LOST
    assert len(net.attempts) == 2  # trying to get back in at once
    net.attempts[1].errback(JoinFailed("nobody answered"))
    assert membership.state is State.BACKING_OFF
    net.cut_off = False
    clock.advance(10.0)  # the back-off starts again from the first wait
    assert membership.state is State.JOINING and len(net.attempts) == 3
    net.attempts[2].callback(2)
    assert membership.state is State.JOINED
    assert net.joined == [2, 2]


def test_the_back_off_starts_over_after_a_join() -> None:
    clock, net, membership = started(rng=FixedJitter(1.0), rejoin_after=10.0, watch_every=5.0)
    for _ in range(3):
        wait_before_next_attempt(clock, net)
    assert membership.backoff == 80.0
    net.attempts[-1].callback(1)
    assert membership.backoff == 10.0
    net.cut_off = True
    clock.advance(5.0)
    assert membership.state is State.LOST
    assert wait_before_next_attempt(clock, net) == 10.0


def test_stop_during_joining_forgets_the_attempt() -> None:
    clock, net, membership = started()
    waiting: list[int] = []
    membership.when_joined().addCallback(waiting.append)
    membership.stop()
    assert membership.state is State.IDLE
    net.attempts[0].callback(4)  # the answer comes after the stop
    assert membership.state is State.IDLE
    assert waiting == [] and net.joined == []
    assert clock.getDelayedCalls() == []


def test_stop_while_backing_off_or_joined_cancels_every_timer() -> None:
    clock, net, membership = started()
    net.attempts[0].errback(JoinFailed("nobody answered"))
    assert clock.getDelayedCalls()
    membership.stop()
    assert clock.getDelayedCalls() == [] and membership.state is State.IDLE
    membership.start(clock)
    net.attempts[1].callback(1)
    assert clock.getDelayedCalls()  # the watch
    membership.stop()
    assert clock.getDelayedCalls() == []
    clock.advance(1000)
    assert len(net.attempts) == 2


def test_a_late_failure_after_stop_schedules_nothing(logged_errors: LoggedErrors) -> None:
    clock, net, membership = started()
    membership.stop()
    net.attempts[0].errback(ValueError("the stop's"))
    assert clock.getDelayedCalls() == [] and logged_errors.take() == []


def test_a_second_start_without_a_stop_is_refused() -> None:
    clock, _, membership = started()
    with pytest.raises(RuntimeError, match="already started"):
        membership.start(clock)


def test_after_a_stop_and_a_start_when_joined_waits_for_the_new_join() -> None:
    clock, net, membership = started()
    net.attempts[0].callback(3)
    assert membership.when_joined().result == 3
    membership.stop()
    stopped: list[int] = []
    membership.when_joined().addCallback(stopped.append)
    membership.start(clock)
    restarted: list[int] = []
    membership.when_joined().addCallback(restarted.append)
    assert stopped == restarted == []  # the new attempt has not answered yet
    net.attempts[1].callback(5)
    assert stopped == restarted == [5]
    assert membership.when_joined().result == 5
