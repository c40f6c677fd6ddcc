"""Group commit: one sync at a time, each covering every change before it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from dhtkit.storage import StorageError
from dhtkit.storage.groupsync import GroupSync
from tests.conftest import LoggedErrors


class Threads:
    """Runs nothing until the test says so: each call waits in ``calls``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[[], int], defer.Deferred[int]]] = []

    def __call__(self, work: Callable[[], int]) -> defer.Deferred[int]:
        d: defer.Deferred[int] = defer.Deferred()
        self.calls.append((work, d))
        return d

    def finish(self) -> None:
        """Run the oldest call, as its thread would, and report back."""
        work, d = self.calls.pop(0)
        try:
            result = work()
        except Exception:
            d.errback(Failure())
        else:
            d.callback(result)


def fired(d: defer.Deferred[Any]) -> list[Any]:
    results: list[Any] = []
    d.addBoth(results.append)
    return results


def test_nothing_written_is_durable_at_once() -> None:
    syncs = GroupSync(Clock(), Threads(), lambda: None, "f")
    assert fired(syncs.durable()) == [None]


def test_a_change_is_durable_once_a_sync_that_began_after_it_is_done() -> None:
    threads, clock = Threads(), Clock()
    during: list[Callable[[], None]] = []

    def sync() -> None:
        if during:
            during.pop()()  # a write lands while the disk syncs

    syncs = GroupSync(clock, threads, sync, "f")
    syncs.changed()
    first = fired(syncs.durable())
    clock.advance(0)  # the end of the reactor's turn: the sync is asked for
    syncs.changed()  # before the thread began: the same sync covers it
    second = fired(syncs.durable())
    assert len(threads.calls) == 1 and first == second == []
    later: list[list[Any]] = []
    during.append(lambda: (syncs.changed(), later.append(fired(syncs.durable()))) and None)
    threads.finish()
    assert first == second == [None] and later == [[]]
    assert len(threads.calls) == 1  # one more, for the write that landed meanwhile
    threads.finish()
    assert later == [[None]] and syncs.syncs == 2 and threads.calls == []
    assert not clock.getDelayedCalls()
    assert fired(syncs.durable()) == [None]


def test_many_changes_before_the_thread_begins_share_one_sync() -> None:
    threads, clock = Threads(), Clock()
    syncs = GroupSync(clock, threads, lambda: None, "f")
    waits = []
    for _ in range(100):
        syncs.changed()
        waits.append(fired(syncs.durable()))
    assert threads.calls == []  # not within the turn that wrote them
    clock.advance(0)
    assert len(threads.calls) == 1
    threads.finish()
    assert threads.calls == [] and syncs.syncs == 1
    assert all(w == [None] for w in waits)


def test_a_change_made_by_a_waiter_told_of_a_sync_starts_only_one_more() -> None:
    threads, clock = Threads(), Clock()
    syncs = GroupSync(clock, threads, lambda: None, "f")

    def write_again(_: None) -> None:
        syncs.changed()  # as a put acknowledged, then the next one
        syncs.changed()

    syncs.changed()
    syncs.durable().addCallback(write_again)
    clock.advance(0)
    threads.finish()
    # The waiter's two writes came in one turn: one sync, due at its end.
    assert threads.calls == [] and len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert len(threads.calls) == 1
    threads.finish()
    assert threads.calls == [] and fired(syncs.durable()) == [None] and syncs.syncs == 2


def test_a_failed_sync_fails_every_wait_from_then_on(logged_errors: LoggedErrors) -> None:
    threads, clock = Threads(), Clock()

    def sync() -> None:
        raise OSError(5, "Input/output error")

    syncs = GroupSync(clock, threads, sync, "the file")
    syncs.changed()
    waiting = fired(syncs.durable())
    clock.advance(0)
    threads.finish()
    [failure] = waiting
    assert isinstance(failure, Failure) and failure.check(StorageError)
    assert "the file" in str(failure.value) and "Input/output" in str(failure.value)
    [logged] = logged_errors.take()
    assert logged["log_level"] == LogLevel.critical
    # A later sync that succeeds proves nothing of the pages the kernel dropped.
    syncs.changed()
    clock.advance(0)
    assert threads.calls == []
    [later] = fired(syncs.durable())
    assert isinstance(later, Failure) and later.check(StorageError)
    assert syncs.syncs == 0


def test_syncing_inline_makes_everything_durable_without_a_thread() -> None:
    threads, clock, done = Threads(), Clock(), []
    syncs = GroupSync(clock, threads, lambda: done.append(1), "f")
    syncs.changed()
    syncs.changed()
    waiting = fired(syncs.durable())
    clock.advance(0)
    syncs.synced_inline()
    assert waiting == [None] and done == [1]
    threads.finish()  # the thread's sync, started before, ends later: harmless
    assert fired(syncs.durable()) == [None]
    assert threads.calls == []
