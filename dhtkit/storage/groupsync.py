"""Group commit: a file's changes made durable off the reactor thread.

A commit that waits for the disk (an ``fsync``) holds the reactor for the
better part of a millisecond, and a node that answers a burst of stores
waits for one ``fsync`` after another. :class:`GroupSync` instead lets the
changes be written at once and asks a thread to ``fsync`` them once the
reactor has handled what it read in this turn, so that stores that came
together share one ``fsync``. Whoever must not answer before they are
durable (the answer to a STORE, the end of a put) waits on
:meth:`GroupSync.durable`. At most one ``fsync`` runs at a time: the
changes made while it runs wait for the next one, which then covers them
all.

A failed ``fsync`` is final. The kernel may have dropped the pages it
could not write, so a later ``fsync`` that succeeds proves nothing about
them: every wait from then on fails with :class:`StorageError`, so the
node acknowledges no store and no put until it is restarted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhtkit.storage.interface import StorageError

#: Runs a blocking call in a thread; fires with its result (Twisted's
#: ``deferToThreadPool`` bound to a reactor and its pool).
InThread = Callable[[Callable[[], int]], "defer.Deferred[int]"]


class GroupSync:
    """The durability of one file's changes, one ``fsync`` at a time.

    :param clock: where the first change of a turn schedules the sync.
    :param in_thread: runs ``sync`` in a thread.
    :param sync: makes every change written so far durable (blocking).
    :param name: what the log calls the file.
    """

    _log = Logger()

    def __init__(
        self, clock: IReactorTime, in_thread: InThread, sync: Callable[[], None], name: str
    ) -> None:
        self._clock = clock
        self._in_thread = in_thread
        self._sync = sync
        self._name = name
        self._changes = 0  # changes written (a count, so a wait knows which sync covers it)
        self._durable = 0  # of those, how many are durable
        self._running = False  # a sync runs in the thread, or is due this turn
        self._waiting: list[tuple[int, defer.Deferred[None]]] = []
        self._broken: StorageError | None = None
        self.syncs = 0
        """How many ``fsync`` rounds have completed."""

    def changed(self) -> None:
        """A change was written: make it durable soon."""
        self._changes += 1
        if not self._running and self._broken is None:
            self._running = True
            self._clock.callLater(0, self._start)

    def durable(self) -> defer.Deferred[None]:
        """Fires once every change written so far is durable.

        Fails with :class:`StorageError` once an ``fsync`` has failed.
        """
        if self._broken is not None:
            return defer.fail(self._broken)
        if self._durable >= self._changes:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((self._changes, waiter))
        return waiter

    def synced_inline(self) -> None:
        """Make everything durable now, on this thread (when the file closes)."""
        if self._broken is None and self._durable < self._changes:
            try:
                self._sync()
            except OSError as e:
                self._fail(e)
                return
            self._done(self._changes)

    def _start(self) -> None:
        self._running = True
        self._in_thread(self._covering).addCallbacks(
            lambda covers: self._finished(covers, None), lambda f: self._finished(0, f)
        )

    def _covering(self) -> int:
        """Sync (in the thread); how many changes that covered.

        The count is read here rather than when the sync was asked for: a
        change is counted once it is written, so every change counted by now
        is in the file the sync is about to flush, even those written while
        the thread was on its way.
        """
        covers = self._changes
        self._sync()
        return covers

    def _finished(self, covers: int, failure: Failure | None) -> None:
        self._running = False
        if failure is not None:
            self._fail(failure.value)
            return
        self.syncs += 1
        self._done(covers)
        # A waiter told just now may have changed more, and started its sync.
        if not self._running and self._durable < self._changes and self._broken is None:
            self._start()

    def _done(self, covers: int) -> None:
        self._durable = max(self._durable, covers)
        ready = [d for count, d in self._waiting if count <= self._durable]
        self._waiting = [(count, d) for count, d in self._waiting if count > self._durable]
        for waiter in ready:
            waiter.callback(None)

    def _fail(self, error: Any) -> None:
        if self._broken is None:
            self._broken = StorageError(
                "{}: making changes durable failed ({}); no change is acknowledged"
                " until a restart".format(self._name, error)
            )
            self._log.critical("{problem}", problem=str(self._broken))
        waiting, self._waiting = self._waiting, []
        for _, waiter in waiting:
            waiter.errback(self._broken)


__all__ = ["GroupSync", "InThread"]
