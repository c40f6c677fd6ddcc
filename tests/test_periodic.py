"""Periodic overlay tasks on a task.Clock: randomized, never overlapping, stoppable."""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import defer, task

from dhtkit.periodic import Maintenance
from tests.conftest import LoggedErrors


def recorder(clock: task.Clock, runs: list[float]) -> Any:
    def run() -> defer.Deferred[None]:
        runs.append(clock.seconds())
        return defer.succeed(None)

    return run


def test_each_round_follows_the_last_by_a_random_half_to_one_and_a_half_periods() -> None:
    clock = task.Clock()
    maintenance = Maintenance(clock, random.Random(1))
    runs: list[float] = []
    maintenance.add("stabilize", 2.0, recorder(clock, runs))
    maintenance.start()
    clock.pump([0.01] * 20_000)
    gaps = [b - a for a, b in zip([0.0, *runs], runs, strict=False)]
    assert len(runs) > 60
    assert all(1.0 - 0.011 <= gap <= 3.0 + 0.011 for gap in gaps)
    assert max(gaps) - min(gaps) > 1.0  # randomized, not a fixed beat


def test_a_slow_round_is_not_overlapped_by_the_next() -> None:
    clock = task.Clock()
    maintenance = Maintenance(clock, random.Random(2))
    pending: list[defer.Deferred[None]] = []

    def slow() -> defer.Deferred[None]:
        pending.append(defer.Deferred())
        return pending[-1]

    maintenance.add("fix_fingers", 1.0, slow)
    maintenance.start()
    clock.advance(1.6)
    assert len(pending) == 1
    clock.advance(100)
    assert len(pending) == 1  # still waiting for the first
    pending[0].callback(None)
    assert clock.getDelayedCalls()  # the next one is scheduled only now
    clock.advance(1.6)
    assert len(pending) == 2


def test_stop_cancels_every_timer_and_a_running_round_schedules_none() -> None:
    clock = task.Clock()
    maintenance = Maintenance(clock, random.Random(3))
    pending: list[defer.Deferred[None]] = []

    def slow() -> defer.Deferred[None]:
        pending.append(defer.Deferred())
        return pending[-1]

    runs: list[float] = []
    maintenance.add("a", 1.0, slow)
    maintenance.add("b", 10.0, recorder(clock, runs))
    maintenance.start()
    clock.advance(1.6)
    assert len(pending) == 1
    maintenance.stop()
    assert not clock.getDelayedCalls()
    pending[0].callback(None)
    assert not clock.getDelayedCalls()
    clock.advance(100)
    assert runs == []


def test_run_now_runs_at_once_or_right_after_the_current_run() -> None:
    clock = task.Clock()
    maintenance = Maintenance(clock, random.Random(4))
    pending: list[defer.Deferred[None]] = []

    def slow() -> defer.Deferred[None]:
        pending.append(defer.Deferred())
        return pending[-1]

    maintenance.add("stabilize", 100.0, slow)
    maintenance.start()
    maintenance.run_now("stabilize")
    assert len(pending) == 1
    maintenance.run_now("stabilize")  # busy: remembered
    assert len(pending) == 1
    pending[0].callback(None)
    clock.advance(0)
    assert len(pending) == 2
    pending[1].callback(None)
    clock.advance(40)  # then the usual period again (at least 50 s)
    assert len(pending) == 2


def test_a_failing_round_is_logged_and_the_schedule_goes_on(logged_errors: LoggedErrors) -> None:
    clock = task.Clock()
    maintenance = Maintenance(clock, random.Random(5), owner="pastry")
    calls: list[float] = []

    def broken() -> defer.Deferred[None]:
        calls.append(clock.seconds())
        raise ZeroDivisionError

    maintenance.add("check_predecessor", 1.0, broken)
    maintenance.start()
    clock.pump([0.1] * 50)
    assert len(calls) >= 3
    errors = logged_errors.take()
    assert len(errors) == len(calls)
    assert all(e["log_format"].startswith("{owner} {name} failed") for e in errors)
    assert all((e["owner"], e["name"]) == ("pastry", "check_predecessor") for e in errors)
