"""The join life-cycle of a node: a small state machine on the injected clock.

A node is :data:`IDLE` until started, then :data:`JOINING` (one attempt in
flight). An attempt that fails leaves it :data:`BACKING_OFF` until the next
one, each wait about twice the last (with jitter, so that nodes cut off
together do not retry in step) up to a cap. Once :data:`JOINED` it checks
every ``watch_every`` seconds that it still has contacts; a node that lost
them all is :data:`LOST` while it tries to get back in, and backs off the
same way when that fails. Stopping, in any state, makes it :data:`IDLE` and
forgets the attempt in flight.

:class:`Membership` knows nothing of overlays or sockets: it is handed one
join attempt and one check, so it runs on a ``task.Clock`` alone.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhtkit.overlay import JoinFailed

__all__ = ["BACKOFF_CAP", "JITTER", "Membership", "State"]

#: The longest wait between two attempts, as a multiple of the first.
BACKOFF_CAP = 10.0

#: Each wait is the back-off times a factor drawn uniformly from this range:
#: never longer than the cap, and never in step with other nodes.
JITTER = (0.75, 1.0)


class State(enum.Enum):
    """Where a node is in its join life-cycle."""

    IDLE = "idle"
    JOINING = "joining"
    JOINED = "joined"
    LOST = "lost"
    BACKING_OFF = "backing off"


IDLE = State.IDLE
JOINING = State.JOINING
JOINED = State.JOINED
LOST = State.LOST
BACKING_OFF = State.BACKING_OFF


class Membership:
    """Joins, retries with back-off, watches, and rejoins a node that lost its contacts.

    :param attempt: one join attempt: a Deferred firing with the number of
        contacts found, or failing (:class:`~dhtkit.overlay.JoinFailed` when
        nobody answered; anything else is a bug, logged as one).
    :param cut_off: asked every ``watch_every`` seconds while joined: True
        when the node lost every contact and has somewhere to rejoin through.
    :param rng: draws the jitter of the back-off (seed it in tests).
    :param rejoin_after: the first wait after a failed attempt, in seconds;
        it doubles after each failure up to :data:`BACKOFF_CAP` times this.
    :param watch_every: seconds between two ``cut_off`` checks.
    :param on_joined: called with the number of contacts after every
        successful attempt.
    :param name: the network's name, as the log says it ("kademlia").
    """

    _log = Logger()

    def __init__(
        self,
        attempt: Callable[[], defer.Deferred[int]],
        cut_off: Callable[[], bool],
        rng: random.Random,
        *,
        rejoin_after: float = 30.0,
        watch_every: float = 10.0,
        on_joined: Callable[[int], object] | None = None,
        name: str = "overlay",
    ) -> None:
        if not rejoin_after > 0 or not watch_every > 0:
            raise ValueError("rejoin_after and watch_every must be positive")
        self.attempt = attempt
        self.cut_off = cut_off
        self.rng = rng
        self.rejoin_after = rejoin_after
        self.watch_every = watch_every
        self.on_joined = on_joined
        self.name = name
        self.state = IDLE
        #: True once an attempt succeeded (it stays so across a loss and a stop).
        self.joined_once = False
        self.contacts = 0  # found by the last successful attempt
        self._joined_run: int | None = None  # the run (see stop) that last joined
        self._clock: IReactorTime | None = None
        self._backoff = rejoin_after
        self._timer: IDelayedCall | None = None
        self._run = 0  # bumped by stop(): a late answer of an older run is ignored
        self._waiting: list[defer.Deferred[int]] = []

    @property
    def backoff(self) -> float:
        """The wait (before jitter) after the next failed attempt."""
        return self._backoff

    def start(self, clock: IReactorTime) -> None:
        """Start joining at once; the timers live on ``clock``."""
        if self.state is not IDLE:
            raise RuntimeError("the membership of {} is already started".format(self.name))
        self._clock = clock
        self._backoff = self.rejoin_after
        self._try(JOINING)

    def stop(self) -> None:
        """Cancel the timers and forget the attempt in flight."""
        self._run += 1
        self._cancel()
        self.state = IDLE

    @property
    def joined_this_run(self) -> bool:
        """Whether an attempt since the last start succeeded (a node that
        lost its contacts since still counts: it is getting back in)."""
        return self.state is not IDLE and self._joined_run == self._run

    def when_joined(self) -> defer.Deferred[int]:
        """Fires with the number of contacts once an attempt since the last
        start has succeeded: at once if one has, and after a stop not before
        the next start joins again."""
        if self.joined_this_run:
            return defer.succeed(self.contacts)
        d: defer.Deferred[int] = defer.Deferred()
        self._waiting.append(d)
        return d

    # -- transitions ---------------------------------------------------------------

    def _try(self, state: State) -> None:
        self._timer = None
        self.state = state
        run = self._run
        d = defer.maybeDeferred(self.attempt)
        d.addCallbacks(self._succeeded, self._failed, callbackArgs=(run,), errbackArgs=(run,))

    def _succeeded(self, contacts: int, run: int) -> None:
        if run != self._run:
            return  # stopped meanwhile
        rejoined = self.joined_once
        self.state, self.joined_once, self.contacts = JOINED, True, contacts
        self._joined_run = run
        self._backoff = self.rejoin_after
        if rejoined:
            self._log.info("back in the {overlay} network", overlay=self.name)
        elif contacts:
            self._log.info(
                "joined the {overlay} network: {contacts} contacts",
                overlay=self.name,
                contacts=contacts,
            )
        else:
            self._log.info(
                "no bootstrap node and no saved contacts: this node starts a {overlay} "
                "network of its own, for others to join through it",
                overlay=self.name,
            )
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(contacts)
        if self.on_joined is not None:
            self.on_joined(contacts)
        self._later(self.watch_every, self._watch)

    def _failed(self, failure: Failure, run: int) -> None:
        if run != self._run:
            return  # stopped meanwhile: the failure is the stop's
        delay = self._backoff * self.rng.uniform(*JITTER)
        self._backoff = min(self._backoff * 2, self.rejoin_after * BACKOFF_CAP)
        if isinstance(failure.value, JoinFailed):
            self._log.warn(
                "could not join: {why}; trying again in {delay:.0f} s",
                why=str(failure.value),
                delay=delay,
            )
        else:
            self._log.failure("joining failed", failure)
        self.state = BACKING_OFF
        self._later(delay, self._try, JOINING)

    def _watch(self) -> None:
        self._timer = None
        if not self.cut_off():
            self._later(self.watch_every, self._watch)
            return
        self._log.warn(
            "this node lost every contact: joining the {overlay} network again",
            overlay=self.name,
        )
        self._backoff = self.rejoin_after
        self._try(LOST)

    def _later(self, delay: float, f: Callable[..., object], *args: object) -> None:
        assert self._clock is not None
        self._timer = self._clock.callLater(delay, f, *args)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
