"""The storing rules every store shares: admission, merging and quotas.

A concrete store provides the primitives (read one record, write one,
delete, count usage, list the oldest cached copies) and gets ``put`` from
here, so memory and SQLite stores cannot drift apart on the rules.
"""

from __future__ import annotations

from dhtkit.storage.interface import SELF, Quota, StoredRecord
from dhtkit.values import OverQuota, admit


def merge(old: StoredRecord | None, new: StoredRecord, replaces: bool) -> StoredRecord:
    """What to store when ``new`` arrives for a key that holds ``old``.

    An authoritative copy beats a cached one, and the origin flag sticks:
    the publisher keeps republishing whatever version is newest, unless it
    is a tombstone. A copy of
    the same version never shortens its expiry, and a replica's expiry only
    comes from what it was sent, so replication cannot make a record live
    forever; only the publisher's republish renews it.
    """
    if old is None:
        return new
    record = new.record if replaces else old.record
    # A tombstone is never republished: it stops the publisher's renewals
    # and then lives out its expiry, which outlasts every copy it deletes.
    origin = (old.origin or new.origin) and not record.deleted
    cached = old.cached and new.cached
    if origin:
        expire_at = None
    elif replaces or old.expire_at is None or new.expire_at is None:
        expire_at = new.expire_at
    else:
        expire_at = max(old.expire_at, new.expire_at)
    if cached:
        replicate_at = None
    elif new.replicate_at is not None:
        replicate_at = new.replicate_at
    else:
        replicate_at = old.replicate_at
    republish_at = new.republish_at if new.origin else old.republish_at
    return StoredRecord(
        record=record,
        publisher=new.publisher if replaces else old.publisher,
        stored_at=new.stored_at if replaces else old.stored_at,
        expire_at=expire_at,
        replicate_at=replicate_at,
        republish_at=republish_at if origin else None,
        cached=cached,
        origin=origin,
    )


class StoreBase:
    """``put`` built on a store's primitives; see :class:`IValueStore`."""

    quota: Quota

    def get(self, key: bytes) -> StoredRecord | None:
        raise NotImplementedError

    def usage(self, publisher: str | None = None) -> tuple[int, int]:
        raise NotImplementedError

    def _oldest_cached(self, limit: int) -> list[StoredRecord]:
        """Up to ``limit`` cached copies, the longest-stored first."""
        raise NotImplementedError

    def _write(self, entry: StoredRecord, evict: list[bytes]) -> None:
        """Write ``entry`` and delete the ``evict`` keys, all at once."""
        raise NotImplementedError

    def put(self, entry: StoredRecord, expected_seq: int | None = None) -> StoredRecord:
        old = self.get(entry.key)
        replaces = admit(old.record if old is not None else None, entry.record, expected_seq)
        stored = merge(old, entry, replaces)
        evict: list[bytes] = []
        if replaces:
            self._check_publisher(old, stored)
            evict = self._make_room(old, stored)
        elif stored == old:
            return stored
        self._write(stored, evict)
        return stored

    def _check_publisher(self, old: StoredRecord | None, new: StoredRecord) -> None:
        if new.origin or new.publisher == SELF:
            return
        records, size = self.usage(new.publisher)
        if old is not None and old.publisher == new.publisher:
            records, size = records - 1, size - old.size
        if records + 1 > self.quota.max_records_per_publisher:
            raise OverQuota(
                "publisher {} already has {} records here".format(new.publisher, records)
            )
        if size + new.size > self.quota.max_bytes_per_publisher:
            raise OverQuota("publisher {} already has {} bytes here".format(new.publisher, size))

    def _make_room(self, old: StoredRecord | None, new: StoredRecord) -> list[bytes]:
        """The cached copies to evict so that ``new`` fits; or OverQuota."""
        records, size = self.usage()
        if old is not None:
            records, size = records - 1, size - old.size
        records += 1
        size += new.size
        evict: list[bytes] = []
        if records <= self.quota.max_records and size <= self.quota.max_bytes:
            return evict
        # Only caches give way, oldest first; authoritative copies never do.
        candidates = self._oldest_cached(max(records - self.quota.max_records, 0) + 256)
        for victim in candidates:
            if records <= self.quota.max_records and size <= self.quota.max_bytes:
                break
            if victim.key == new.key or (new.cached and victim.stored_at > new.stored_at):
                continue
            evict.append(victim.key)
            records, size = records - 1, size - victim.size
        if records > self.quota.max_records or size > self.quota.max_bytes:
            raise OverQuota(
                "the store is full ({} of {} records, {} of {} bytes)".format(
                    records - 1,
                    self.quota.max_records,
                    size - new.size,
                    self.quota.max_bytes,
                )
            )
        return evict


__all__ = ["StoreBase", "merge"]
