"""HeapClock behaves as task.Clock does, and adds the simulator's helpers.

The expectation tests run on both clocks: whatever they say of HeapClock they
say of task.Clock too, so they are the specification HeapClock copies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from dhtkit.sim.clock import HeapClock


@pytest.fixture(params=[Clock, HeapClock], ids=["task.Clock", "HeapClock"])
def clock(request: pytest.FixtureRequest) -> Any:
    return request.param()


class Recorder:
    """Callbacks that note (label, time) when they run."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.fired: list[tuple[str, float]] = []

    def __call__(self, label: str) -> Callable[[], None]:
        def fire() -> None:
            self.fired.append((label, self.clock.seconds()))

        return fire

    def labels(self) -> list[str]:
        return [label for label, _ in self.fired]


# -- expectations on both clocks ---------------------------------------------------


def test_time_starts_at_zero_and_advances(clock: Any) -> None:
    assert clock.seconds() == 0
    clock.advance(1.5)
    clock.advance(2)
    assert clock.seconds() == 3.5


def test_calls_run_in_time_order(clock: Any) -> None:
    rec = Recorder(clock)
    clock.callLater(3, rec("c"))
    clock.callLater(1, rec("a"))
    clock.callLater(2, rec("b"))
    clock.advance(10)
    assert rec.labels() == ["a", "b", "c"]


def test_equal_times_run_in_scheduling_order(clock: Any) -> None:
    rec = Recorder(clock)
    for label in "abcdef":
        clock.callLater(1, rec(label))
    clock.advance(1)
    assert rec.labels() == list("abcdef")


def test_advance_runs_only_calls_due(clock: Any) -> None:
    rec = Recorder(clock)
    clock.callLater(2, rec("a"))
    clock.advance(1.999)
    assert rec.fired == []
    clock.advance(0.001)
    assert rec.labels() == ["a"]


def test_calls_see_the_time_advanced_to(clock: Any) -> None:
    rec = Recorder(clock)
    clock.callLater(1, rec("a"))
    clock.callLater(2, rec("b"))
    clock.advance(5)
    assert rec.fired == [("a", 5), ("b", 5)]


def test_passes_args_and_keywords(clock: Any) -> None:
    got: list[tuple[Any, ...]] = []
    clock.callLater(1, lambda *a, **kw: got.append((a, kw)), 1, 2, x=3)
    clock.advance(1)
    assert got == [((1, 2), {"x": 3})]


def test_call_time_is_now_plus_delay(clock: Any) -> None:
    clock.advance(10)
    call = clock.callLater(2.5, lambda: None)
    assert call.getTime() == 12.5
    assert call.active()


def test_cancelled_call_never_runs(clock: Any) -> None:
    rec = Recorder(clock)
    call = clock.callLater(1, rec("a"))
    clock.callLater(1, rec("b"))
    call.cancel()
    assert not call.active()
    assert call.cancelled
    clock.advance(2)
    assert rec.labels() == ["b"]


def test_cancelling_twice_raises_already_cancelled(clock: Any) -> None:
    call = clock.callLater(1, lambda: None)
    call.cancel()
    with pytest.raises(AlreadyCancelled):
        call.cancel()
    with pytest.raises(AlreadyCancelled):
        call.reset(1)
    with pytest.raises(AlreadyCancelled):
        call.delay(1)


def test_touching_a_call_that_ran_raises_already_called(clock: Any) -> None:
    call = clock.callLater(1, lambda: None)
    clock.advance(1)
    assert call.called
    assert not call.active()
    for touch in (call.cancel, lambda: call.reset(1), lambda: call.delay(1)):
        with pytest.raises(AlreadyCalled):
            touch()


def test_a_running_call_counts_as_called(clock: Any) -> None:
    seen: list[tuple[bool, int]] = []
    holder: list[Any] = []

    def fire() -> None:
        seen.append((holder[0].active(), holder[0].called))
        with pytest.raises(AlreadyCalled):
            holder[0].cancel()

    holder.append(clock.callLater(1, fire))
    clock.advance(1)
    assert seen == [(False, 1)]


def test_reset_moves_a_call_later_or_earlier(clock: Any) -> None:
    rec = Recorder(clock)
    later = clock.callLater(1, rec("later"))
    earlier = clock.callLater(5, rec("earlier"))
    clock.advance(0.5)
    later.reset(3)
    earlier.reset(0.25)
    assert later.getTime() == 3.5
    assert earlier.getTime() == 0.75
    clock.pump([0.25, 2.75])
    assert rec.fired == [("earlier", 0.75), ("later", 3.5)]


def test_delay_moves_a_call_from_its_own_time(clock: Any) -> None:
    rec = Recorder(clock)
    call = clock.callLater(2, rec("a"))
    clock.advance(1)
    call.delay(3)
    assert call.getTime() == 5
    call.delay(-4)
    assert call.getTime() == 1
    clock.advance(0)
    assert rec.fired == [("a", 1)]


def test_a_call_delayed_onto_a_busy_time_runs_before_those_already_there(clock: Any) -> None:
    # task.Clock's stable sort keeps the delayed call's earlier place in its list.
    rec = Recorder(clock)
    moved = clock.callLater(5, rec("moved"))
    clock.callLater(10, rec("there"))
    moved.delay(5)
    clock.advance(10)
    assert rec.labels() == ["moved", "there"]


def test_a_call_reset_back_onto_a_busy_time_runs_after_those_already_there(clock: Any) -> None:
    rec = Recorder(clock)
    clock.callLater(2, rec("there"))
    moved = clock.callLater(9, rec("moved"))
    moved.reset(2)
    clock.advance(2)
    assert rec.labels() == ["there", "moved"]


def test_calls_moved_together_keep_their_order(clock: Any) -> None:
    rec = Recorder(clock)
    first = clock.callLater(1, rec("first"))
    second = clock.callLater(2, rec("second"))
    second.reset(7)
    first.reset(7)
    clock.advance(7)
    assert rec.labels() == ["first", "second"]


def test_get_delayed_calls_lists_pending_calls_in_order(clock: Any) -> None:
    a = clock.callLater(2, lambda: None)
    b = clock.callLater(1, lambda: None)
    c = clock.callLater(3, lambda: None)
    d = clock.callLater(0.5, lambda: None)
    c.cancel()
    clock.advance(0.5)
    assert list(clock.getDelayedCalls()) == [b, a]
    assert d.called


def test_zero_delay_calls_scheduled_while_advancing_run_in_that_advance(clock: Any) -> None:
    rec = Recorder(clock)

    def parent() -> None:
        rec("parent")()
        clock.callLater(0, rec("child"))
        clock.callLater(1, rec("grandchild"))

    clock.callLater(1, parent)
    clock.callLater(1, rec("sibling"))
    clock.advance(1)
    assert rec.labels() == ["parent", "sibling", "child"]
    clock.advance(1)
    assert rec.labels()[-1] == "grandchild"


def test_calls_scheduled_in_the_past_run_at_the_next_advance(clock: Any) -> None:
    rec = Recorder(clock)
    clock.advance(5)
    clock.callLater(-2, rec("past"))
    assert rec.fired == []
    clock.advance(0)
    assert rec.fired == [("past", 5)]


def test_pump_advances_by_each_amount(clock: Any) -> None:
    rec = Recorder(clock)
    clock.callLater(1, rec("a"))
    clock.callLater(2.5, rec("b"))
    clock.pump([1, 1, 1])
    assert rec.fired == [("a", 1), ("b", 3)]
    assert clock.seconds() == 3


def test_an_exception_propagates_out_of_advance_and_the_rest_stay_scheduled(clock: Any) -> None:
    rec = Recorder(clock)

    def boom() -> None:
        raise ZeroDivisionError

    call = clock.callLater(1, boom)
    clock.callLater(1, rec("after"))
    with pytest.raises(ZeroDivisionError):
        clock.advance(2)
    assert call.called
    assert clock.seconds() == 2
    assert rec.fired == []
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert rec.fired == [("after", 2)]


def test_a_call_may_cancel_another_due_at_the_same_time(clock: Any) -> None:
    rec = Recorder(clock)
    victim = clock.callLater(1, rec("victim"))
    clock.callLater(0.5, victim.cancel)
    clock.callLater(1, rec("other"))
    clock.advance(1)
    assert rec.labels() == ["other"]


# -- the same firing order as task.Clock, whatever the operations -------------------

# Few distinct values, so that calls often tie; 0.1 and 0.7 are not exact
# binary fractions, so reset and delay must do task.Clock's float arithmetic.
_times = st.sampled_from([0.0, 1.0, 0.5, 0.1])
_delays = st.sampled_from([0.0, 1.0, 2.0, 0.1, 0.7, -1.0])
_shifts = st.sampled_from([0.0, 1.0, -1.0, 0.1, -0.7])
_handle = st.integers(0, 10)
_changes = st.one_of(
    st.tuples(st.just("cancel"), _handle),
    st.tuples(st.just("reset"), _handle, _delays),
    st.tuples(st.just("delay"), _handle, _shifts),
    # Move one call onto another's time: the ties that ordering rules are about.
    st.tuples(st.just("reset onto"), _handle, _handle),
    st.tuples(st.just("delay onto"), _handle, _handle),
)
# What a fired call does: nothing, or one more operation.
_actions = st.none() | st.one_of(
    st.tuples(st.just("schedule"), _delays, st.none()),
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.5, 1.0])),
    _changes,
)
_schedule = st.tuples(st.just("schedule"), _delays, _actions)
_operations = st.lists(
    # Scheduling as often as changing keeps enough calls pending to tie.
    st.one_of(_schedule, _schedule, _changes, _changes, st.tuples(st.just("advance"), _times)),
    min_size=4,
    max_size=60,
)


def _play(clock: Any, operations: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Everything observable while running ``operations``: firings, errors, queue."""
    trace: list[tuple[Any, ...]] = []
    calls: list[Any] = []
    label_of: dict[int, int] = {}

    def fire(label: int, action: tuple[Any, ...] | None) -> None:
        trace.append(("fired", label, clock.seconds()))
        if action is not None:
            apply(action)

    def pick(handle: int) -> Any:
        # Counted from the newest: recent calls are the likeliest still pending.
        return calls[-1 - handle % len(calls)]

    def apply(operation: tuple[Any, ...]) -> None:
        kind = operation[0]
        if kind == "schedule":
            call = clock.callLater(operation[1], fire, len(calls), operation[2])
            label_of[id(call)] = len(calls)
            calls.append(call)
            return
        if kind == "advance":
            clock.advance(operation[1])
            return
        if not calls:
            return
        call = pick(operation[1])
        try:
            if kind == "reset onto":
                call.reset(pick(operation[2]).getTime() - clock.seconds())
            elif kind == "delay onto":
                call.delay(pick(operation[2]).getTime() - call.getTime())
            else:
                getattr(call, kind)(*operation[2:])
        except (AlreadyCalled, AlreadyCancelled) as e:
            trace.append(("raised", kind, type(e).__name__))

    for operation in operations:
        apply(operation)
        queue = [(label_of[id(c)], c.getTime()) for c in clock.getDelayedCalls()]
        trace.append(("queue", clock.seconds(), queue))
    clock.advance(1000)
    trace.append(("left", len(clock.getDelayedCalls())))
    return trace


@settings(max_examples=400)
@given(_operations)
def test_fires_exactly_as_task_clock_does(operations: list[tuple[Any, ...]]) -> None:
    assert _play(HeapClock(), operations) == _play(Clock(), operations)


# -- HeapClock only ---------------------------------------------------------------------


def test_provides_ireactortime_and_idelayedcall() -> None:
    clock = HeapClock()
    assert verifyObject(IReactorTime, clock)
    assert verifyObject(IDelayedCall, clock.callLater(1, lambda: None))


def test_can_start_at_any_time() -> None:
    assert HeapClock(100.0).seconds() == 100.0


def test_step_runs_the_next_call_at_its_own_time() -> None:
    clock = HeapClock()
    rec = Recorder(clock)
    clock.callLater(2, rec("b"))
    clock.callLater(1, rec("a"))
    assert clock.step()
    assert rec.fired == [("a", 1)]
    assert clock.step()
    assert rec.fired == [("a", 1), ("b", 2)]
    assert not clock.step()
    assert clock.seconds() == 2


def test_run_until_moves_time_to_each_call_then_to_the_end() -> None:
    clock = HeapClock()
    rec = Recorder(clock)

    def parent() -> None:
        rec("parent")()
        clock.callLater(0.5, rec("child"))

    clock.callLater(1, parent)
    clock.callLater(4, rec("late"))
    assert clock.run_until(3) == 2
    assert rec.fired == [("parent", 1), ("child", 1.5)]
    assert clock.seconds() == 3
    assert clock.pending() == 1


def test_run_until_runs_calls_due_exactly_then() -> None:
    clock = HeapClock()
    rec = Recorder(clock)
    clock.callLater(3, rec("a"))
    clock.run_until(3)
    assert rec.fired == [("a", 3)]


def test_run_until_refuses_to_go_back() -> None:
    clock = HeapClock(5.0)
    with pytest.raises(ValueError):
        clock.run_until(4)


def test_run_drains_the_clock_or_stops_at_max_time() -> None:
    clock = HeapClock()
    rec = Recorder(clock)
    for t in (1, 2, 3):
        clock.callLater(t, rec(str(t)))
    assert clock.run(max_time=2.5) == 2
    assert clock.seconds() == 2.5
    assert clock.run() == 1
    assert rec.fired[-1] == ("3", 3)
    assert clock.seconds() == 3


def test_an_exception_leaves_the_time_at_the_failing_call() -> None:
    clock = HeapClock()

    def boom() -> None:
        raise ZeroDivisionError

    clock.callLater(1, boom)
    clock.callLater(2, lambda: None)
    with pytest.raises(ZeroDivisionError):
        clock.run_until(5)
    assert clock.seconds() == 1
    assert clock.pending() == 1


def test_pending_counts_active_calls() -> None:
    clock = HeapClock()
    calls = [clock.callLater(t, lambda: None) for t in (1, 2, 3)]
    clock._schedule(1.5, lambda: None, ())
    assert clock.pending() == 4
    calls[2].cancel()
    calls[0].reset(10)
    assert clock.pending() == 3
    clock.advance(2)
    assert clock.pending() == 1


def test_scheduled_functions_interleave_with_calls_in_fifo_order() -> None:
    clock = HeapClock()
    rec = Recorder(clock)
    clock.callLater(1, rec("call 1"))
    clock._schedule(1.0, rec("fast 1"), ())
    clock.callLater(1, rec("call 2"))
    clock._schedule(0.5, rec("fast 0"), ())
    clock.run()
    assert rec.labels() == ["fast 0", "call 1", "fast 1", "call 2"]
    assert len(clock.getDelayedCalls()) == 0


def test_cancelled_entries_do_not_pile_up() -> None:
    clock = HeapClock()
    keep = clock.callLater(1e6, lambda: None)
    for _ in range(10_000):
        clock.callLater(5, lambda: None).cancel()
    assert len(clock._heap) < 200
    assert clock.getDelayedCalls() == [keep]


def test_a_timer_reset_again_and_again_does_not_pile_up() -> None:
    clock = HeapClock()
    timer = clock.callLater(1, lambda: None)
    for i in range(10_000):
        timer.reset(1 + i % 7)
        clock.advance(0)
    assert len(clock._heap) < 200
    assert clock.pending() == 1


def test_many_calls_run_in_time_order() -> None:
    # A smoke test of scale and of the heap's order; no timing is asserted.
    clock = HeapClock()
    times: list[float] = []
    n = 200_000
    for i in range(n):
        clock.callLater((i * 7919) % n / 1000.0, lambda: times.append(clock.seconds()))
    assert clock.run() == n
    assert times == sorted(times)
    assert len(times) == n
