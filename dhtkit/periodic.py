"""An overlay's periodic work on the injected clock, with randomized periods.

Each task (Chord's stabilize, Pastry's leaf-set round, ...) runs again a
random time after its previous run *ended*, uniform in ``[0.5, 1.5] x period``:
the randomness keeps thousands of nodes from falling into step, and waiting
for the end keeps a slow round (a timeout) from overlapping the next.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

Task = Callable[[], "defer.Deferred[Any]"]

#: The spread of the randomized periods, as fractions of the period.
JITTER = (0.5, 1.5)


@attrs.define
class _Job:
    name: str
    period: float
    task: Task
    timer: IDelayedCall | None = None
    busy: bool = False
    again: bool = False


class Maintenance:
    """Named periodic tasks, each run again a random interval after it ends.

    :param clock: where the timers live.
    :param rng: draws the intervals (seed it in simulations).
    :param owner: who runs them (an overlay's name), as the log says it.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime, rng: random.Random, owner: str = "overlay") -> None:
        self.clock = clock
        self.rng = rng
        self.owner = owner
        self.running = False
        self._jobs: dict[str, _Job] = {}

    def add(self, name: str, period: float, task: Task) -> None:
        """Run ``task`` about every ``period`` seconds once started."""
        if not period > 0:
            raise ValueError("the period of {} must be positive".format(name))
        self._jobs[name] = _Job(name, period, task)
        if self.running:
            self._schedule(self._jobs[name])

    def start(self) -> None:
        """Schedule every task's first run (each a random interval from now)."""
        if self.running:
            return
        self.running = True
        for job in self._jobs.values():
            self._schedule(job)

    def stop(self) -> None:
        """Cancel every timer; a task running now ends without a successor."""
        self.running = False
        for job in self._jobs.values():
            if job.timer is not None and job.timer.active():
                job.timer.cancel()
            job.timer = None

    def run_now(self, name: str) -> None:
        """Run ``name`` at once (or right after its current run), then as usual."""
        job = self._jobs[name]
        if job.busy:
            job.again = True
            return
        if job.timer is not None and job.timer.active():
            job.timer.cancel()
        job.timer = None
        self._fire(job)

    def _schedule(self, job: _Job, delay: float | None = None) -> None:
        if delay is None:
            delay = job.period * self.rng.uniform(*JITTER)
        job.timer = self.clock.callLater(delay, self._fire, job)

    def _fire(self, job: _Job) -> None:
        job.timer = None
        job.busy = True
        job.again = False
        try:
            d = job.task()
        except Exception:
            d = defer.fail()
        d.addCallbacks(self._done, self._failed, callbackArgs=(job,), errbackArgs=(job,))

    def _done(self, _: object, job: _Job) -> None:
        job.busy = False
        if self.running and job.timer is None:
            self._schedule(job, 0.0 if job.again else None)

    def _failed(self, failure: Failure, job: _Job) -> None:
        # Tasks handle the network's failures themselves; this is a bug.
        self._log.failure("{owner} {name} failed", failure, owner=self.owner, name=job.name)
        self._done(None, job)
