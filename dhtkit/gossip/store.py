"""The updates one node holds, the deletions it knows of, and their expiry.

Updates are kept in one canonical order, the same on every node: by the
origin's sequence number (its clock in microseconds), then by id. Anti-entropy
compares two stores one window of that order at a time: a window names a
range of keys, so whatever one side holds in the range and the other's list
lacks is known to be missing, whatever either holds outside it.
"""

from __future__ import annotations

import enum
import heapq
import random
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Mapping

from dhtkit.gossip.update import Update

#: An update's place in the canonical order: (seq, update id).
Key = tuple[int, bytes]
#: A range of keys, ``low < key <= high``; None for no bound.
Window = tuple[Key | None, Key | None]


def key_of(update: Update) -> Key:
    """The update's place in the canonical order."""
    return (update.seq, update.update_id)


class Added(enum.Enum):
    """What :meth:`UpdateStore.add` did with an update."""

    #: Stored: it is new here.
    NEW = "new"
    #: Already held (or already deleted by its origin): nothing changed.
    KNOWN = "known"
    #: Refused: the store holds as many updates as it may.
    FULL = "full"


class UpdateStore:
    """Updates by id, in canonical order, with death certificates and expiry.

    Data updates and death certificates are held alike (both are gossiped);
    a certificate also remembers which update it deletes, so that a stale
    copy of that update arriving later is recognised and refused.

    :param max_updates: how many updates (certificates included) are held at
        most; beyond that new ones are refused until some expire.
    """

    def __init__(self, max_updates: int = 10_000) -> None:
        if max_updates < 1:
            raise ValueError("max_updates must be at least 1")
        self.max_updates = max_updates
        self._updates: dict[bytes, Update] = {}
        self._keys: list[Key] = []
        # deleted update id -> the certificates naming it; usually one, but
        # until the update itself arrives nobody knows which origin is its own
        self._deleted: dict[bytes, list[Update]] = {}
        # (expires, update id); entries of updates gone already are skipped
        self._expiry: list[tuple[int, bytes]] = []

    def __len__(self) -> int:
        return len(self._updates)

    def __contains__(self, update_id: object) -> bool:
        return update_id in self._updates

    def __iter__(self) -> Iterator[Update]:
        """The updates in canonical order (a snapshot)."""
        updates = self._updates
        return iter([updates[k[1]] for k in self._keys])

    @property
    def by_id(self) -> Mapping[bytes, Update]:
        """The updates held, by id (read only)."""
        return self._updates

    def knows(self, update_id: bytes) -> bool:
        """Whether the update is held, or a certificate held deletes it."""
        return update_id in self._updates or update_id in self._deleted

    def get(self, update_id: bytes) -> Update | None:
        """The update with this id, if held."""
        return self._updates.get(update_id)

    def deleted_by(self, update: Update) -> Update | None:
        """The certificate held that deletes ``update``, if any.

        A certificate counts only if it comes from the update's own origin.
        """
        for certificate in self._deleted.get(update.update_id, ()):
            if certificate.origin == update.origin:
                return certificate
        return None

    def add(self, update: Update) -> tuple[Added, Update | None]:
        """Store ``update``; for a certificate, also remove what it deletes.

        Returns what happened and, for a certificate that removed an update
        held here, that update.
        """
        if update.update_id in self._updates or self.deleted_by(update) is not None:
            return Added.KNOWN, None
        if len(self._updates) >= self.max_updates:
            return Added.FULL, None
        self._updates[update.update_id] = update
        insort(self._keys, key_of(update))
        heapq.heappush(self._expiry, (update.expires, update.update_id))
        removed = None
        target = update.deletes
        if target is not None:
            # Remembered even when the target is not held, so that a stale
            # copy arriving later is refused.
            self._deleted.setdefault(target, []).append(update)
            held = self._updates.get(target)
            if held is not None and held.origin == update.origin and held.deletes is None:
                removed = self.remove(target)
        return Added.NEW, removed

    def remove(self, update_id: bytes) -> Update | None:
        """Forget an update (its expiry entry is skipped later)."""
        update = self._updates.pop(update_id, None)
        if update is None:
            return None
        key = key_of(update)
        index = bisect_left(self._keys, key)
        del self._keys[index]
        target = update.deletes
        if target is not None:
            certificates = [c for c in self._deleted.get(target, ()) if c is not update]
            if certificates:
                self._deleted[target] = certificates
            else:
                self._deleted.pop(target, None)
        return update

    def expire(self, now: float) -> list[Update]:
        """Remove and return every update whose expiry time has passed."""
        expired = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, update_id = heapq.heappop(heap)
            update = self._updates.get(update_id)
            if update is not None and update.expires <= now:
                self.remove(update_id)
                expired.append(update)
        if len(heap) > 2 * len(self._updates) + 64:
            # Removed updates leave their entries behind: rebuild now and then.
            self._expiry = [(u.expires, i) for i, u in self._updates.items()]
            heapq.heapify(self._expiry)
        return expired

    def keys(self, start: int = 0, stop: int | None = None) -> list[Key]:
        """Keys by position in the canonical order (a slice)."""
        return self._keys[start:stop]

    def newest(self, limit: int) -> list[Update]:
        """Up to ``limit`` updates, the newest (highest key) first."""
        updates = self._updates
        return [updates[k[1]] for k in reversed(self._keys[-limit:])] if limit > 0 else []

    def between(self, low: Key | None, high: Key | None) -> Iterator[Update]:
        """The updates with ``low < key <= high``, newest first (None: unbounded).

        Lazy, so that taking the first few of a large store costs little; do
        not change the store while iterating.
        """
        keys = self._keys
        start = 0 if low is None else bisect_right(keys, low)
        stop = len(keys) if high is None else bisect_right(keys, high)
        updates = self._updates
        for index in range(stop - 1, start - 1, -1):
            yield updates[keys[index][1]]

    def window(self, limit: int, rng: random.Random) -> tuple[list[bytes], Window]:
        """Ids for a digest of at most ``limit``, and the key range they cover whole.

        A store that fits is listed whole. A larger one is compared a window
        at a time: half the time the newest (what peers most likely lack),
        else one of as few equal slices as cover the store, so that every
        position, the oldest included, is as likely to be compared.
        """
        count = len(self._keys)
        if count <= limit:
            return [key[1] for key in self._keys], (None, None)
        if rng.random() < 0.5:
            start, stop = count - limit, count
        else:
            slices = -(-count // limit)
            index = int(rng.random() * slices)
            start, stop = index * count // slices, (index + 1) * count // slices
        keys = self._keys[start - 1 if start else 0 : stop]
        low = keys.pop(0) if start else None
        high = keys[-1] if stop < count else None
        return [key[1] for key in keys], (low, high)

    def clear(self) -> None:
        """Forget everything."""
        self._updates.clear()
        self._keys.clear()
        self._deleted.clear()
        self._expiry.clear()
