"""The persistent expire / replicate / republish schedule, on task.Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from dhtkit.keyspace import key_for
from dhtkit.republish import Scheduler
from dhtkit.storage import SELF, IValueStore, MemoryStore, StoredRecord
from dhtkit.values import PlainValue

HOUR = 3600.0
DAY = 24 * HOUR


class Log:
    """Records what the scheduler asked for; answers with the Deferreds given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, float]] = []
        self.answers: list[defer.Deferred[Any]] = []
        self.clock: Clock | None = None

    def action(self, name: str) -> Any:
        def act(entry: StoredRecord) -> defer.Deferred[Any]:
            assert self.clock is not None
            self.calls.append((name, entry.key, self.clock.seconds()))
            if self.answers:
                return self.answers.pop(0)
            return defer.succeed(None)

        return act

    def of(self, name: str) -> list[tuple[bytes, float]]:
        return [(k, t) for n, k, t in self.calls if n == name]


def scheduler(store: IValueStore, clock: Clock, log: Log, **kw: Any) -> Scheduler:
    log.clock = clock
    s = Scheduler(store, clock, log.action("replicate"), log.action("republish"), **kw)
    s.start()
    return s


def replica(name: str, now: float, ttl: float = DAY) -> StoredRecord:
    record = PlainValue(key_for(name), name.encode(), 1)
    return StoredRecord(record, "host:10.77.0.1", now, now + ttl, replicate_at=now + HOUR)


def published(name: str, now: float) -> StoredRecord:
    record = PlainValue(key_for(name), name.encode(), 1)
    return StoredRecord(record, SELF, now, None, republish_at=now + 22 * HOUR, origin=True)


def test_one_timer_for_any_number_of_records() -> None:
    clock, store, log = Clock(), MemoryStore(), Log()
    s = scheduler(store, clock, log)
    for n in range(500):
        store.put(replica(str(n), now=n))
        s.poke()
    assert len(clock.getDelayedCalls()) == 1
    assert clock.getDelayedCalls()[0].getTime() == HOUR


def test_an_empty_store_sets_no_timer() -> None:
    clock = Clock()
    scheduler(MemoryStore(), clock, Log())
    assert clock.getDelayedCalls() == []


def test_records_expire_at_their_deadline() -> None:
    clock, store, log = Clock(), MemoryStore(), Log()
    s = scheduler(store, clock, log)
    store.put(replica("a", 0, ttl=90 * 60))
    s.poke()
    clock.advance(HOUR)
    clock.advance(30 * 60 - 1)
    assert store.get(key_for("a")) is not None
    clock.advance(1)
    assert store.get(key_for("a")) is None
    assert s.counters["expired"] == 1
    assert log.of("replicate") == [(key_for("a"), HOUR)]  # once, before it expired
    assert clock.getDelayedCalls() == []


def test_replicas_are_sent_on_every_hour_until_they_expire() -> None:
    clock, store, log = Clock(), MemoryStore(), Log()
    s = scheduler(store, clock, log)
    store.put(replica("a", 0))
    s.poke()
    for _ in range(30):
        clock.advance(HOUR)
    times = [t for _, t in log.of("replicate")]
    assert times == [HOUR * n for n in range(1, 24)]
    assert store.get(key_for("a")) is None


def test_the_publisher_republishes_every_22_hours_for_ever() -> None:
    clock, store, log = Clock(), MemoryStore(), Log()
    s = scheduler(store, clock, log)
    store.put(published("mine", 0))
    s.poke()
    for _ in range(10 * 24):
        clock.advance(HOUR)
    assert [t for _, t in log.of("republish")] == [22 * HOUR * n for n in range(1, 11)]
    assert store.get(key_for("mine")) is not None
    assert s.counters["republished"] == 10


def test_the_intervals_are_configurable() -> None:
    clock, store, log = Clock(), MemoryStore(), Log()
    s = scheduler(store, clock, log, replicate_every=600, republish_every=7200)
    store.put(replica("a", 0))
    store.put(published("b", 0))
    store.reschedule(key_for("a"), replicate_at=600)
    store.reschedule(key_for("b"), republish_at=7200)
    s.poke()
    clock.pump([600] * 12)
    assert [t for _, t in log.of("replicate")] == [600.0 * n for n in range(1, 13)]
    assert [t for _, t in log.of("republish")] == [7200.0]


def test_a_failed_action_is_counted_and_tried_again_next_round() -> None:
    clock, store, log = Clock(), MemoryStore(), Log()
    s = scheduler(store, clock, log)
    store.put(replica("a", 0))
    s.poke()
    log.answers.append(defer.fail(ConnectionError("no route")))
    clock.advance(HOUR)
    clock.advance(HOUR)
    assert s.counters == {"expired": 0, "replicated": 1, "republished": 0, "failed": 1}
    assert len(log.of("replicate")) == 2


def test_an_action_that_raises_is_a_failure_too() -> None:
    clock, store = Clock(), MemoryStore()

    def explode(entry: StoredRecord) -> defer.Deferred[None]:
        raise RuntimeError("bug")

    s = Scheduler(store, clock, explode, explode)
    s.start()
    store.put(replica("a", 0))
    s.poke()
    clock.advance(HOUR)
    assert s.counters["failed"] == 1 and s.in_flight == 0


def test_a_backlog_is_worked_through_within_the_in_flight_limit() -> None:
    clock, store, log = Clock(), MemoryStore(), Log()
    for n in range(100):
        store.put(replica(str(n), 0))
    waiting = [defer.Deferred[Any]() for _ in range(100)]
    log.answers.extend(waiting)
    clock.advance(HOUR)  # nothing runs before start
    s = scheduler(store, clock, log, max_in_flight=8, batch=5)
    clock.advance(0)
    assert s.in_flight == 8 and len(log.calls) == 8
    for d in waiting[:8]:
        d.callback(None)
    clock.advance(0)
    assert len(log.calls) == 16
    for d in waiting:
        if not d.called:
            d.callback(None)
            clock.advance(0)
    assert len(log.calls) == 100 and s.in_flight == 0
    assert len({k for k, _ in log.of("replicate")}) == 100


def test_stop_cancels_the_timer_and_start_resumes() -> None:
    clock, store, log = Clock(), MemoryStore(), Log()
    s = scheduler(store, clock, log)
    store.put(replica("a", 0))
    s.poke()
    s.stop()
    assert clock.getDelayedCalls() == []
    clock.advance(3 * HOUR)
    s.poke()  # a write while stopped arms nothing
    assert log.calls == []
    s.start()
    clock.advance(0)
    assert log.of("replicate") == [(key_for("a"), 3 * HOUR)]


def test_a_restarted_scheduler_catches_up_on_what_fell_due() -> None:
    store, log = MemoryStore(), Log()
    first = Clock()
    s = scheduler(store, first, log)
    store.put(replica("short", 0, ttl=2 * HOUR))
    store.put(replica("long", 0, ttl=5 * DAY))
    store.put(published("mine", 0))
    s.poke()
    first.advance(HOUR / 2)
    s.stop()
    # Down for a day and a half; a new process starts with a new clock.
    later = Clock()
    later.advance(1.5 * DAY)
    log.calls.clear()
    scheduler(store, later, log)
    later.advance(0)
    assert store.get(key_for("short")) is None
    assert log.of("replicate") == [(key_for("long"), 1.5 * DAY)]
    assert log.of("republish") == [(key_for("mine"), 1.5 * DAY)]
    later.advance(HOUR)
    assert [t for _, t in log.of("replicate")] == [1.5 * DAY, 1.5 * DAY + HOUR]


class CountingStore(MemoryStore):
    """A MemoryStore that counts how often the scheduler asks for its earliest deadline."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def next_deadline(self) -> float | None:
        self.asked += 1
        return super().next_deadline()


def test_a_write_due_after_the_timer_does_not_ask_the_store() -> None:
    clock, store, log = Clock(), CountingStore(), Log()
    s = scheduler(store, clock, log)
    s.poke(store.put(replica("a", now=0)))
    asked = store.asked
    for n in range(1, 50):
        s.poke(store.put(replica(str(n), now=n)))
    assert store.asked == asked  # every one of them due after the first
    assert [c.getTime() for c in clock.getDelayedCalls()] == [HOUR]


def test_a_write_due_before_the_timer_moves_it() -> None:
    clock, store, log = Clock(), CountingStore(), Log()
    s = scheduler(store, clock, log)
    s.poke(store.put(replica("late", now=0, ttl=DAY)))
    early = StoredRecord(
        PlainValue(key_for("early"), b"x", 1), "host:10.77.0.1", 0, 10 * 60, replicate_at=None
    )
    s.poke(store.put(early))
    assert [c.getTime() for c in clock.getDelayedCalls()] == [10 * 60]
    clock.advance(10 * 60)
    assert store.get(key_for("early")) is None
    assert s.counters["expired"] == 1


def test_a_timer_set_for_a_replaced_entry_comes_early_and_does_no_harm() -> None:
    clock, store, log = Clock(), CountingStore(), Log()
    s = scheduler(store, clock, log)
    s.poke(store.put(replica("a", now=0)))
    # A newer version of the same key, an hour later: the timer set for the
    # first copy's replication stays, and finds nothing due.
    clock.advance(30 * 60)
    newer = StoredRecord(
        PlainValue(key_for("a"), b"newer", 2),
        "host:10.77.0.1",
        clock.seconds(),
        clock.seconds() + DAY,
        replicate_at=clock.seconds() + HOUR,
    )
    s.poke(store.put(newer))
    assert [c.getTime() for c in clock.getDelayedCalls()] == [HOUR]
    clock.advance(30 * 60)
    assert log.of("replicate") == []
    assert [c.getTime() for c in clock.getDelayedCalls()] == [HOUR + 30 * 60]
    clock.advance(30 * 60)
    assert log.of("replicate") == [(key_for("a"), HOUR + 30 * 60)]
