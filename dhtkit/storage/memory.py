"""A value store in memory: for simulations, tests and nodes without a disk."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

import attrs
from twisted.internet import defer
from zope.interface import implementer

from dhtkit.storage.base import StoreBase
from dhtkit.storage.interface import IValueStore, Quota, StoredRecord

_Deadline = Callable[[StoredRecord], "float | None"]


class _DeadlineHeap:
    """Keys by one deadline; stale heap entries are skipped, not removed.

    Each write pushes the record's new deadline; an entry counts only while
    it still matches the stored record, so nothing needs finding and
    removing when a deadline moves.
    """

    def __init__(self, deadline: _Deadline) -> None:
        self._deadline = deadline
        self._heap: list[tuple[float, bytes]] = []

    def push(self, entry: StoredRecord) -> None:
        when = self._deadline(entry)
        if when is not None:
            heapq.heappush(self._heap, (when, entry.key))

    def _current(self, item: tuple[float, bytes], records: dict[bytes, StoredRecord]) -> bool:
        entry = records.get(item[1])
        return entry is not None and self._deadline(entry) == item[0]

    def earliest(self, records: dict[bytes, StoredRecord]) -> float | None:
        while self._heap and not self._current(self._heap[0], records):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def due(self, now: float, limit: int, records: dict[bytes, StoredRecord]) -> list[bytes]:
        """Keys due at ``now``, earliest first; they stay until rescheduled."""
        found: list[bytes] = []
        seen: set[bytes] = set()
        popped: list[tuple[float, bytes]] = []
        while self._heap and len(found) < limit and self._heap[0][0] <= now:
            item = heapq.heappop(self._heap)
            if self._current(item, records) and item[1] not in seen:
                seen.add(item[1])
                found.append(item[1])
                popped.append(item)
        for item in popped:
            heapq.heappush(self._heap, item)
        return found


@implementer(IValueStore)
class MemoryStore(StoreBase):
    """Records in a dict; lost when the process ends."""

    def __init__(self, quota: Quota | None = None) -> None:
        self.quota = quota or Quota()
        self._records: dict[bytes, StoredRecord] = {}
        self._usage: dict[str, list[int]] = {}
        self._total = [0, 0]
        self._expiry = _DeadlineHeap(lambda e: e.expire_at)
        self._replication = _DeadlineHeap(lambda e: e.replicate_at)
        self._republish = _DeadlineHeap(lambda e: e.republish_at)

    def get(self, key: bytes) -> StoredRecord | None:
        return self._records.get(key)

    def durable(self) -> defer.Deferred[None]:
        return defer.succeed(None)  # nothing is ever on disk

    def usage(self, publisher: str | None = None) -> tuple[int, int]:
        if publisher is None:
            return self._total[0], self._total[1]
        counts = self._usage.get(publisher, [0, 0])
        return counts[0], counts[1]

    def _account(self, entry: StoredRecord, sign: int) -> None:
        counts = self._usage.setdefault(entry.publisher, [0, 0])
        counts[0] += sign
        counts[1] += sign * entry.size
        self._total[0] += sign
        self._total[1] += sign * entry.size
        if counts[0] == 0:
            del self._usage[entry.publisher]

    def _oldest_cached(self, limit: int) -> list[StoredRecord]:
        cached = [e for e in self._records.values() if e.cached]
        # Ties go by key, so that every store evicts the same copies.
        return heapq.nsmallest(limit, cached, key=lambda e: (e.stored_at, e.key))

    def _write(self, entry: StoredRecord, evict: list[bytes]) -> None:
        for key in evict:
            self.delete(key)
        old = self._records.get(entry.key)
        if old is not None:
            self._account(old, -1)
        self._records[entry.key] = entry
        self._account(entry, +1)
        for heap in (self._expiry, self._replication, self._republish):
            heap.push(entry)

    def delete(self, key: bytes) -> bool:
        old = self._records.pop(key, None)
        if old is None:
            return False
        self._account(old, -1)
        return True

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> Iterator[StoredRecord]:
        return iter(list(self._records.values()))

    def next_deadline(self) -> float | None:
        times = [
            t
            for t in (
                self._expiry.earliest(self._records),
                self._replication.earliest(self._records),
                self._republish.earliest(self._records),
            )
            if t is not None
        ]
        return min(times) if times else None

    def expire(self, now: float) -> int:
        keys = self._expiry.due(now, len(self._records), self._records)
        for key in keys:
            self.delete(key)
        return len(keys)

    def due_for_replication(self, now: float, limit: int) -> list[StoredRecord]:
        return [self._records[k] for k in self._replication.due(now, limit, self._records)]

    def due_for_republish(self, now: float, limit: int) -> list[StoredRecord]:
        return [self._records[k] for k in self._republish.due(now, limit, self._records)]

    def reschedule(
        self, key: bytes, replicate_at: float | None = None, republish_at: float | None = None
    ) -> None:
        entry = self._records.get(key)
        if entry is None:
            return
        if replicate_at is not None and not entry.cached:
            entry = attrs.evolve(entry, replicate_at=replicate_at)
        if republish_at is not None and entry.origin:
            entry = attrs.evolve(entry, republish_at=republish_at)
        self._records[key] = entry
        self._replication.push(entry)
        self._republish.push(entry)

    def close(self) -> None:
        self._records.clear()
