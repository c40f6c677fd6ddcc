"""What a value store is: records with their deadlines, quotas, and the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs
from zope.interface import Attribute, Interface

from dhtkit.values import Record

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

SELF = "self"
"""The publisher name of records this node published itself."""


class StorageError(Exception):
    """A store that cannot be opened or used: corrupt, foreign, or too new."""


@attrs.frozen
class StoredRecord:
    """A record as a store holds it, with who put it and when it is due.

    Deadlines are absolute times on the node's clock (seconds since the epoch
    on a real reactor), so they mean the same after a restart.

    - ``expire_at``: the record is deleted then (None: never, for records
      this node published and keeps republishing);
    - ``replicate_at``: a holder sends its copy to the responsible nodes
      again (None for cached copies, which are not replicated);
    - ``republish_at``: the original publisher stores it afresh, which
      renews its expiry everywhere (None unless ``origin``).
    """

    record: Record
    publisher: str
    stored_at: float
    expire_at: float | None
    replicate_at: float | None = None
    republish_at: float | None = None
    cached: bool = False
    origin: bool = False

    @property
    def key(self) -> bytes:
        return self.record.key

    @property
    def size(self) -> int:
        return self.record.size


@attrs.frozen
class Quota:
    """Limits on what a store holds, in all and per publisher.

    A publisher is the source network of the peer that stored the record
    (see :func:`dhtkit.storage.networks.source_network`), whatever its kind
    and whatever key signed it, so one network can never hold more than its
    share however many keys it makes. Records this node published itself
    count towards the totals but not towards any publisher's share.
    """

    max_records: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    max_records_per_publisher: int = 10_000
    max_bytes_per_publisher: int = 4 * 1024 * 1024


class IValueStore(Interface):
    """Records by key, with quotas and persistent deadlines.

    Every method is synchronous and, once it returns, its effect is seen by
    every later call. It is durable, as far as the implementation is durable
    at all, once :meth:`durable` fires: whoever acknowledges a change to
    another node waits for that.
    """

    quota = Attribute("The :class:`Quota` this store enforces.")

    def get(key: bytes) -> StoredRecord | None:
        """The record stored under ``key``, or None."""

    def put(entry: StoredRecord, expected_seq: int | None = None) -> StoredRecord:
        """Store ``entry`` under its key and return what is now stored.

        The rules of :func:`dhtkit.values.admit` decide whether it replaces
        the present record (a copy of the present record only refreshes its
        deadlines). Over quota, the oldest cached copies of other keys make
        room; if that is not enough, :class:`dhtkit.values.OverQuota`.

        :raises dhtkit.values.ValueRefused: the record is refused; nothing
            changed.
        """

    def durable() -> Deferred[None]:
        """Fires once every change made so far is durable (at once, for a
        store that syncs as it writes or keeps nothing on disk).

        :raises StorageError: (as the Deferred's failure) the store could
            not make them durable; it acknowledges nothing more.
        """

    def delete(key: bytes) -> bool:
        """Remove the record under ``key``; whether there was one."""

    def __len__() -> int:
        """The number of records."""

    def usage(publisher: str | None = None) -> tuple[int, int]:
        """(records, bytes) held in all, or for one publisher."""

    def records() -> Iterator[StoredRecord]:
        """Every record, in no particular order."""

    def next_deadline() -> float | None:
        """The earliest expire, replicate or republish time, or None."""

    def expire(now: float) -> int:
        """Delete every record whose expiry is at or before ``now``; how many."""

    def due_for_replication(now: float, limit: int) -> list[StoredRecord]:
        """Up to ``limit`` records whose ``replicate_at`` has come, earliest first."""

    def due_for_republish(now: float, limit: int) -> list[StoredRecord]:
        """Up to ``limit`` records whose ``republish_at`` has come, earliest first."""

    def reschedule(
        key: bytes, replicate_at: float | None = None, republish_at: float | None = None
    ) -> None:
        """Move the given deadlines of the record under ``key``, if it exists."""

    def close() -> None:
        """Release the store's resources; it is unusable afterwards."""
