"""One timer per node for every record's expire, replicate and republish.

The deadlines live in the store, with each record, as absolute times; the
scheduler only keeps a single delayed call for the earliest of them. So a
million records cost one timer, and a node reopened on the same store after
a restart picks up where it left off: what fell due while it was down is
expired, replicated or republished at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhtkit.storage.interface import IValueStore, StoredRecord

HOUR = 3600.0
EXPIRE_AFTER = 24 * HOUR
REPLICATE_EVERY = 1 * HOUR
REPUBLISH_EVERY = 22 * HOUR

Action = Callable[[StoredRecord], "defer.Deferred[Any]"]


class Scheduler:
    """Expire, replicate and republish records when their deadlines come.

    :param store: where the records and their deadlines are.
    :param clock: the node's reactor (or a test clock).
    :param replicate: sends a held record to the nodes responsible for it.
    :param republish: stores a record this node published afresh.
    :param replicate_every: seconds until a replicated record is due again.
    :param republish_every: seconds until a republished record is due again.
    :param batch: records handled per wake-up; a backlog (after a long
        downtime) is worked through in batches so the reactor keeps turning.
    :param max_in_flight: replications and republishes running at once.
    """

    _log = Logger()

    def __init__(
        self,
        store: IValueStore,
        clock: IReactorTime,
        replicate: Action,
        republish: Action,
        *,
        replicate_every: float = REPLICATE_EVERY,
        republish_every: float = REPUBLISH_EVERY,
        batch: int = 100,
        max_in_flight: int = 32,
    ) -> None:
        self.store = store
        self.clock = clock
        self._replicate = replicate
        self._republish = republish
        self.replicate_every = replicate_every
        self.republish_every = republish_every
        self.batch = batch
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.running = False
        self.counters = {"expired": 0, "replicated": 0, "republished": 0, "failed": 0}
        self._timer: IDelayedCall | None = None

    def start(self) -> None:
        """Begin: anything already due is handled at once."""
        self.running = True
        self.poke()

    def stop(self) -> None:
        """Stop waking up; work in flight finishes on its own."""
        self.running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def poke(self, written: StoredRecord | None = None) -> None:
        """Look at the store's earliest deadline again (after a write).

        Given the entry just ``written``, a timer already set for no later
        than its deadlines stays as it is, and the store is not asked: the
        timer may then come early, if the write replaced the entry it was
        set for, and a wake-up with nothing due only sets it again.
        """
        if not self.running:
            return
        timer = self._timer
        if written is not None and timer is not None and timer.active():
            due = [
                t
                for t in (written.expire_at, written.replicate_at, written.republish_at)
                if t is not None
            ]
            if not due or timer.getTime() <= min(due):
                return
        when = self.store.next_deadline()
        if self._timer is not None and self._timer.active():
            if when is not None and self._timer.getTime() <= when:
                return
            self._timer.cancel()
        self._timer = None
        if when is None:
            return
        if self.in_flight >= self.max_in_flight and when <= self.clock.seconds():
            return  # the finishing work pokes again
        self._timer = self.clock.callLater(max(0.0, when - self.clock.seconds()), self._wake)

    def _wake(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        self.counters["expired"] += self.store.expire(now)
        room = min(self.batch, self.max_in_flight - self.in_flight)
        if room > 0:
            for entry in self.store.due_for_republish(now, room):
                self.store.reschedule(entry.key, republish_at=now + self.republish_every)
                self._run(self._republish, entry, "republished")
                room -= 1
        if room > 0:
            for entry in self.store.due_for_replication(now, room):
                self.store.reschedule(entry.key, replicate_at=now + self.replicate_every)
                self._run(self._replicate, entry, "replicated")
        self.poke()

    def _run(self, action: Action, entry: StoredRecord, counter: str) -> None:
        self.in_flight += 1
        try:
            d = action(entry)
        except Exception:
            d = defer.fail()
        d.addCallbacks(self._done, self._failed, callbackArgs=(counter,), errbackArgs=(entry,))

    def _done(self, _: object, counter: str) -> None:
        self.in_flight -= 1
        self.counters[counter] += 1
        self.poke()

    def _failed(self, failure: Failure, entry: StoredRecord) -> None:
        # A replica unreachable or no node known yet: the next round retries.
        self.in_flight -= 1
        self.counters["failed"] += 1
        self._log.info(
            "could not send {key} on: {error}", key=entry.key.hex(), error=failure.getErrorMessage()
        )
        self.poke()
