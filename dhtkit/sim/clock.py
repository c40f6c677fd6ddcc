"""A virtual clock for simulations: ``task.Clock``'s behaviour on a heap.

``twisted.internet.task.Clock`` keeps its calls in a list that it re-sorts on
every ``callLater`` and pops from the front, so each event costs O(pending
calls). A simulation of thousands of nodes keeps hundreds of thousands of
timers pending, which makes that quadratic. :class:`HeapClock` gives the same
observable behaviour, firing order on ties included, at O(log n) per event.

How ties are ordered. ``task.Clock`` stable-sorts its list by
:meth:`~twisted.internet.interfaces.IDelayedCall.getTime` at every
``callLater`` and before each call that ``advance`` runs (each is a *sort
event* below). Among calls due at the same time, then:

- a new call goes after every call already there (FIFO);
- a call whose time changed (``reset``/``delay``) since the last sort event
  goes *before* the calls already at its new time if it moved later, and
  *after* them if it moved earlier (it keeps its old place in the list);
- calls that moved between the same two sort events keep the order they had.

:class:`HeapClock` encodes this in the heap key ``(time, window, rank)``:
``window`` numbers the sort event that placed the call, negated for a call
that moved later; ``rank`` is the call's place among the calls that moved in
that window, or ``_LAST`` for a new call. Keys are unique, so the heap never
compares anything else.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from heapq import heapify, heappop, heappush
from typing import Any, cast

from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer  # type: ignore[import-untyped]

__all__ = ["HeapClock", "HeapDelayedCall"]

#: The rank of a new call: after every call moved in the same window.
_LAST = sys.maxsize

#: A cancellable call's heap entry: (time, window, rank, call).
_CallEntry = tuple[float, int, int, "HeapDelayedCall"]
#: A bare scheduled function (see :meth:`HeapClock._schedule`):
#: (time, window, rank, None, function, args).
_BareEntry = tuple[float, int, int, None, Callable[..., object], tuple[Any, ...]]
_Entry = _CallEntry | _BareEntry

#: Below this many heap entries compaction is not worth a rebuild.
_MIN_COMPACT = 64


@implementer(IDelayedCall)
class HeapDelayedCall:
    """One call scheduled on a :class:`HeapClock`.

    It behaves as Twisted's ``DelayedCall`` does: the same attributes
    (``time``, ``delayed_time``, ``func``, ``args``, ``kw``, ``called``,
    ``cancelled``), the same arithmetic for ``reset`` and ``delay`` (so that
    ``getTime()`` gives the same float), the same exceptions.
    """

    __slots__ = (
        "_clock",
        "_entry",
        "args",
        "called",
        "cancelled",
        "delayed_time",
        "func",
        "kw",
        "time",
    )

    def __init__(
        self,
        clock: HeapClock,
        time: float,
        func: Callable[..., object],
        args: tuple[Any, ...],
        kw: dict[str, Any],
    ) -> None:
        self._clock = clock
        # The heap entry that will run this call; None once called or cancelled.
        self._entry: _CallEntry | None = None
        self.time = time
        self.delayed_time = 0.0
        self.func = func
        self.args = args
        self.kw = kw
        self.called = 0
        self.cancelled = 0

    def getTime(self) -> float:  # noqa: N802 (Twisted's name)
        """The time at which this call will run."""
        return self.time + self.delayed_time

    def cancel(self) -> None:
        """Unschedule this call.

        :raises AlreadyCancelled: if it was already cancelled.
        :raises AlreadyCalled: if it already ran.
        """
        self._require_pending()
        self._clock._drop(self)
        self.cancelled = 1
        # As Twisted does: a cancelled timer must not keep its arguments alive.
        del self.func, self.args, self.kw

    def _require_pending(self) -> None:
        if self.cancelled:
            raise AlreadyCancelled
        if self.called:
            raise AlreadyCalled

    def reset(self, secondsFromNow: float) -> None:  # noqa: N803 (Twisted's name)
        """Reschedule this call to run ``secondsFromNow`` after now.

        :raises AlreadyCancelled: if it was cancelled.
        :raises AlreadyCalled: if it already ran.
        """
        self._require_pending()
        new_time = self._clock._now + secondsFromNow
        if new_time < self.time:
            self.delayed_time = 0.0
            self.time = new_time
        else:
            self.delayed_time = new_time - self.time
        self._clock._moved.add(self)

    def delay(self, secondsLater: float) -> None:  # noqa: N803 (Twisted's name)
        """Reschedule this call ``secondsLater`` after its current time.

        :raises AlreadyCancelled: if it was cancelled.
        :raises AlreadyCalled: if it already ran.
        """
        self._require_pending()
        self.delayed_time += secondsLater
        if self.delayed_time < 0.0:
            self.time += self.delayed_time
            self.delayed_time = 0.0
        self._clock._moved.add(self)

    def active(self) -> bool:
        """Whether this call has neither run nor been cancelled."""
        return not (self.cancelled or self.called)

    def __repr__(self) -> str:
        func = getattr(self, "func", None)
        name = getattr(func, "__qualname__", None) or repr(func)
        return "<HeapDelayedCall 0x{:x} [{}s] called={} cancelled={} {}>".format(
            id(self), self.getTime() - self._clock._now, self.called, self.cancelled, name
        )


def _entry_of(call: HeapDelayedCall) -> _CallEntry:
    assert call._entry is not None
    return call._entry


@implementer(IReactorTime)
class HeapClock:
    """A deterministic :class:`~twisted.internet.interfaces.IReactorTime`.

    A drop-in for ``task.Clock`` (``seconds``, ``callLater``,
    ``getDelayedCalls``, ``advance``, ``pump``) with the same firing order,
    plus the simulator's helpers :meth:`step`, :meth:`run_until`, :meth:`run`
    and :meth:`pending`.

    ``advance`` moves the time first and then runs the due calls, so every
    call sees the new time (as in ``task.Clock``); the simulator's helpers
    instead move the time to each call's own time before running it, as a
    real reactor would. An exception raised by a call propagates out of
    whichever method ran it; that call counts as called and the others stay
    scheduled.
    """

    def __init__(self, now: float = 0.0) -> None:
        self._now = now
        self._heap: list[_Entry] = []
        # Calls whose time changed since the last sort event, placed at the next.
        self._moved: set[HeapDelayedCall] = set()
        # Number of sort events so far (see the module docstring).
        self._window = 0
        # Heap entries that will be skipped: cancelled calls, or moved ones' old places.
        self._dead = 0
        self._active = 0

    # -- IReactorTime ---------------------------------------------------------

    def seconds(self) -> float:
        """The current virtual time."""
        return self._now

    def callLater(  # noqa: N802 (Twisted's name)
        self, delay: float, callable: Callable[..., object], *args: Any, **kw: Any
    ) -> IDelayedCall:
        """Run ``callable(*args, **kw)`` ``delay`` seconds from now."""
        self._window += 1
        if self._moved:
            self._place_moved()
        call = HeapDelayedCall(self, self._now + delay, callable, args, kw)
        entry: _CallEntry = (call.time, self._window, _LAST, call)
        call._entry = entry
        heappush(self._heap, entry)
        self._active += 1
        return cast(IDelayedCall, call)

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:  # noqa: N802 (Twisted's name)
        """The scheduled calls in the order they would run as of the last sort event.

        A copy (``task.Clock`` returns its own list). Functions scheduled with
        :meth:`_schedule` have no call object and are not included.
        """
        return [
            cast(IDelayedCall, entry[3])
            for entry in sorted(self._heap)
            if entry[3] is not None and entry[3]._entry is entry
        ]

    # -- task.Clock -------------------------------------------------------------

    def advance(self, amount: float) -> None:
        """Move the time forward by ``amount``, then run every call now due.

        Calls scheduled while this runs are run too if they are due by then,
        as are calls scheduled in the past.
        """
        self._now += amount
        self._run(None, follow=False, once=False)

    def pump(self, timings: Iterable[float]) -> None:
        """:meth:`advance` by each amount in turn."""
        for amount in timings:
            self.advance(amount)

    # -- the simulator's helpers -------------------------------------------------

    def step(self) -> bool:
        """Run the next scheduled call, moving the time to it; False if there is none."""
        return self._run(float("inf"), follow=True, once=True) > 0

    def run_until(self, when: float) -> int:
        """Run, in order, every call due at or before ``when``; then set the time to ``when``.

        Returns how many calls ran.

        :raises ValueError: if ``when`` is before the current time.
        """
        if when < self._now:
            raise ValueError("the clock is at {}; it cannot run back to {}".format(self._now, when))
        ran = self._run(when, follow=True, once=False)
        self._now = when
        return ran

    def run(self, max_time: float | None = None) -> int:
        """Run calls until none is left, or up to ``max_time`` (as :meth:`run_until`).

        Without ``max_time`` this returns only once nothing is scheduled, so a
        simulation with periodic timers needs one. Returns how many calls ran.
        """
        if max_time is not None:
            return self.run_until(max_time)
        return self._run(float("inf"), follow=True, once=False)

    def pending(self) -> int:
        """How many calls are scheduled (those from :meth:`_schedule` included)."""
        return self._active

    # -- internals ----------------------------------------------------------------

    def _schedule(self, when: float, f: Callable[..., object], args: tuple[Any, ...]) -> None:
        """Run ``f(*args)`` at the absolute time ``when``; it cannot be cancelled.

        The fast path for the virtual network: no call object, just one heap
        entry. It is ordered exactly as ``callLater(when - now, f, *args)``.
        """
        self._window += 1
        if self._moved:
            self._place_moved()
        heappush(self._heap, (when, self._window, _LAST, None, f, args))
        self._active += 1

    def _run(self, limit: float | None, follow: bool, once: bool) -> int:
        # Runs due calls up to ``limit`` (None: the current time, re-read after
        # every call as a call may advance the clock itself). With ``follow``
        # the time moves to each call's time before it runs.
        heap = self._heap
        ran = 0
        while True:
            # A sort event, as before each of task.Clock's checks.
            self._window += 1
            if self._moved:
                self._place_moved()
            while heap:
                entry = heap[0]
                call = entry[3]
                if call is None or call._entry is entry:
                    break
                heappop(heap)
                self._dead -= 1
            else:
                return ran
            when = entry[0]
            if when > (self._now if limit is None else limit):
                return ran
            heappop(heap)
            self._active -= 1
            ran += 1
            if follow and when > self._now:
                self._now = when
            if call is None:
                bare = cast(_BareEntry, entry)
                bare[4](*bare[5])
            else:
                call._entry = None
                call.called = 1
                call.func(*call.args, **call.kw)
            if once:
                return ran

    def _place_moved(self) -> None:
        # Give each call whose time changed since the last sort event its new
        # place; see the module docstring for the ordering this reproduces.
        moved = [
            call
            for call in self._moved
            if call._entry is not None and call.time + call.delayed_time != call._entry[0]
        ]
        self._moved.clear()
        if not moved:
            return
        moved.sort(key=_entry_of)
        window = self._window
        heap = self._heap
        for rank, call in enumerate(moved):
            old = _entry_of(call)
            when = call.time + call.delayed_time
            entry: _CallEntry = (when, -window if when > old[0] else window, rank, call)
            call._entry = entry
            heappush(heap, entry)
        self._dead += len(moved)
        self._maybe_compact()

    def _drop(self, call: HeapDelayedCall) -> None:
        # Cancellation is lazy: the entry stays in the heap, marked dead by the
        # call no longer pointing at it, until popped or compacted away.
        call._entry = None
        self._active -= 1
        self._dead += 1
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        heap = self._heap
        if self._dead > _MIN_COMPACT and 2 * self._dead > len(heap):
            # In place: a _run further up the stack holds this list.
            heap[:] = [entry for entry in heap if entry[3] is None or entry[3]._entry is entry]
            heapify(heap)
            self._dead = 0
