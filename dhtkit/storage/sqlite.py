"""The embedded default value store: one SQLite file, durable on every write.

The file runs in WAL mode and every change is one explicit transaction. On
its own the store commits with ``synchronous=FULL``, so a write that has
returned survives a crash of the process or the machine. Given a reactor
with threads, it commits with ``synchronous=NORMAL`` instead (a write that
has returned survives a crash of the process) and a thread syncs the
write-ahead log after the commit, many commits at a time
(:mod:`dhtkit.storage.groupsync`): the write survives a crash of the
machine once :meth:`SQLiteStore.durable` has fired, and the reactor does
not wait for the disk. SQLite syncs the log and the file itself at every
checkpoint. :mod:`dhtkit.storage.schema` marks the file as ours,
keeps its schema version and migrates older files. A file that is not ours,
is damaged, or comes from a newer dhtkit is refused at open with a
:class:`StorageError`, and is only ever looked at through a read-only
connection, so it is left as it was.

The totals of records and bytes live in memory: they are counted once at
open and moved only after a commit, so every ``put`` does not scan the file.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from dhtkit.bounded import BoundedDict
from dhtkit.storage import schema
from dhtkit.storage.base import StoreBase
from dhtkit.storage.groupsync import GroupSync
from dhtkit.storage.interface import IValueStore, Quota, StorageError, StoredRecord
from dhtkit.storage.schema import COLUMNS
from dhtkit.values import KeyMismatch, MalformedRecord, PlainValue, SignedValue, from_columns

# Built from COLUMNS alone, never from input.
_SELECT = "SELECT {} FROM records".format(", ".join(COLUMNS))  # noqa: S608
_INSERT = "INSERT INTO records ({}) VALUES ({})".format(  # noqa: S608
    ", ".join(COLUMNS), ", ".join("?" * len(COLUMNS))
)
# (rows to be deleted, delete them): for one key, and for what has expired.
_BY_KEY = ("SELECT key, size FROM records WHERE key = ?", "DELETE FROM records WHERE key = ?")
_EXPIRED = (
    "SELECT key, size FROM records WHERE expire_at <= ?",
    "DELETE FROM records WHERE expire_at <= ?",
)
_EARLIEST = (
    "SELECT replicate_at, key FROM records WHERE replicate_at IS NOT NULL"
    " ORDER BY replicate_at, key LIMIT ?",
    "SELECT republish_at, key FROM records WHERE republish_at IS NOT NULL"
    " ORDER BY republish_at, key LIMIT ?",
)
_PAGE = 256

#: How many keys' entries a store keeps in memory after reading them.
RECENT_KEYS = 512

# Rows are checked on the way in against the node's size limit; on the way
# out only their shape matters, whatever limit was in force when they came.
_ANY_SIZE = sys.maxsize


def _columns(entry: StoredRecord) -> tuple[Any, ...]:
    record = entry.record
    signed = record if isinstance(record, SignedValue) else None
    plain = record if isinstance(record, PlainValue) else None
    public_key = signed.public_key if signed is not None else plain.owner if plain else None
    signature = signed.signature if signed is not None else plain.signature if plain else None
    return (
        entry.key,
        record.kind,
        record.value,
        record.seq,
        public_key or None,
        None if signed is None else signed.salt,
        signature or None,
        entry.publisher,
        entry.size,
        int(entry.cached),
        int(entry.origin),
        entry.stored_at,
        entry.expire_at,
        entry.replicate_at,
        entry.republish_at,
        int(record.deleted),
    )


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


def _rebuild(row: tuple[Any, ...]) -> StoredRecord:
    """The entry a row holds; a ValueError (or TypeError) if it cannot be one."""
    key, kind, value, seq, public_key, salt, signature, publisher, size = row[:9]
    cached, origin, stored_at, expire_at, replicate_at, republish_at, deleted = row[9:]
    if deleted not in (0, 1):
        raise MalformedRecord("the deleted column is wrong")
    record = from_columns(
        kind, key, value, seq, public_key or b"", salt or b"", signature or b"", bool(deleted)
    )
    if isinstance(record, (SignedValue, PlainValue)):
        # Signatures were verified when records came in; 75 µs a read is not
        # worth repeating.
        record.check_fields(_ANY_SIZE)
    else:
        record.check(_ANY_SIZE)
    if record.key != key:
        raise KeyMismatch("the record belongs to another key")
    if size != record.size or not isinstance(publisher, str):
        raise MalformedRecord("the size or publisher column is wrong")
    if cached not in (0, 1) or origin not in (0, 1) or not _is_number(stored_at):
        raise MalformedRecord("the cached, origin or stored_at column is wrong")
    if not all(t is None or _is_number(t) for t in (expire_at, replicate_at, republish_at)):
        raise MalformedRecord("a deadline column is not a number")
    return StoredRecord(
        record,
        publisher,
        stored_at,
        expire_at,
        replicate_at,
        republish_at,
        bool(cached),
        bool(origin),
    )


@implementer(IValueStore)
class SQLiteStore(StoreBase):
    """Records in one SQLite file, every acknowledged change committed.

    Opening checks the whole file once (``PRAGMA quick_check``). A row that
    cannot be rebuilt into a record is skipped by every read, counted in
    :attr:`corrupt_rows` and logged once, but left in the file for someone
    to look at; only its own expiry or a new write to its key removes it.

    One store per file: the totals live in this object, so another process
    writing the same file would make them drift.

    :param reactor: with one, commits do not wait for the disk and a thread
        of its pool syncs them (see the module); :meth:`durable` says when.
        Without, every commit is synced before it returns.
    :raises StorageError: the file cannot be opened, is damaged, belongs to
        another application, or was written by a newer dhtkit.
    """

    _log = Logger()

    def __init__(
        self,
        path: str | os.PathLike[str],
        quota: Quota | None = None,
        reactor: IReactorThreads | None = None,
    ) -> None:
        self.path = Path(path)
        self.quota = quota or Quota()
        self.corrupt_rows = 0
        """How many unreadable rows reads have come across since the store opened."""
        self._corrupt: set[bytes] = set()
        if self.path.exists():
            schema.inspect(self.path)
        try:
            # isolation_level=None: the module opens no transaction of its
            # own; every change below is an explicit BEGIN ... COMMIT.
            self._db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as e:
            raise StorageError("cannot open {}: {}".format(self.path, e)) from e
        try:
            with self._errors():
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise StorageError(
                        "{} cannot use write-ahead logging (journal mode {})".format(
                            self.path, mode
                        )
                    )
                self._db.execute(
                    "PRAGMA synchronous = {}".format("FULL" if reactor is None else "NORMAL")
                )
                old = schema.migrate(self.path, self._db)
                count, size = self._db.execute(
                    "SELECT COUNT(*), TOTAL(size) FROM records"
                ).fetchone()
        except BaseException:
            self._db.close()
            raise
        if old != len(schema.MIGRATIONS):
            self._log.info(
                "{path} is at schema version {new} (was {old})",
                path=str(self.path),
                new=len(schema.MIGRATIONS),
                old=old,
            )
        self._count, self._bytes = int(count), int(size)
        self._closed = False
        self._synced_log: tuple[int, int] | None = None  # the log file whose entry is synced
        self._syncs = (
            None
            if reactor is None
            else GroupSync(
                IReactorTime(reactor),
                partial(deferToThreadPool, reactor, reactor.getThreadPool()),
                self._sync_log,
                str(self.path),
            )
        )
        # The entries (or their absence) of the keys read lately, oldest
        # first: a node answers the same keys again and again, and a read
        # from the file costs tens of microseconds. Every change to a key
        # forgets it first.
        self._recent: BoundedDict[bytes, StoredRecord | None] = BoundedDict(RECENT_KEYS)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise StorageError("{}: {}".format(self.path, e)) from e

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            finally:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
        if self._syncs is not None:
            self._syncs.changed()

    def _sync_log(self) -> None:
        """Make every commit so far durable: ``fsync`` the write-ahead log.

        It runs in a thread, one at a time, and touches no Python object but
        ``_synced_log``; at close it also runs on the reactor thread, where
        a lost update of ``_synced_log`` costs one more sync of the directory.

        A new log file's directory entry is synced too, once. Without a log
        file there is nothing to sync: SQLite removes it only after
        checkpointing it into the database, and syncs that.
        """
        log = str(self.path) + "-wal"
        try:
            fd = os.open(log, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
            info = os.fstat(fd)
        finally:
            os.close(fd)
        if self._synced_log != (info.st_dev, info.st_ino):
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._synced_log = (info.st_dev, info.st_ino)

    def durable(self) -> defer.Deferred[None]:
        if self._syncs is None:
            return defer.succeed(None)
        return self._syncs.durable()

    @property
    def syncs(self) -> int:
        """How many times a thread has synced the log (0 without a reactor)."""
        return 0 if self._syncs is None else self._syncs.syncs

    def _entry(self, row: tuple[Any, ...]) -> StoredRecord | None:
        try:
            return _rebuild(row)
        except (ValueError, TypeError) as e:
            if row[0] not in self._corrupt:
                self._corrupt.add(row[0])
                self.corrupt_rows += 1
                self._log.warn(
                    "skipping an unreadable row in {path} (key {key}): {problem}",
                    path=str(self.path),
                    key=row[0].hex() if isinstance(row[0], bytes) else row[0],
                    problem=str(e),
                )
            return None

    def _entries(self, sql: str, params: tuple[Any, ...], limit: int) -> list[StoredRecord]:
        """Up to ``limit`` readable entries from the rows of ``sql``, in order."""
        found: list[StoredRecord] = []
        if limit <= 0:
            return found
        with self._errors():
            cursor = self._db.execute(sql, params)
            try:
                for row in cursor:
                    entry = self._entry(row)
                    if entry is not None:
                        found.append(entry)
                        if len(found) == limit:
                            break
            finally:
                cursor.close()
        return found

    def _remove(
        self, db: sqlite3.Connection, queries: tuple[str, str], params: tuple[Any, ...]
    ) -> list[Any]:
        """Delete the rows ``queries`` select; their (key, size) pairs."""
        gone = db.execute(queries[0], params).fetchall()
        if gone:
            db.execute(queries[1], params)
        return gone

    def _forget(self, gone: list[Any], added: int = 0, added_bytes: int = 0) -> None:
        """Move the totals once a transaction has committed."""
        self._count += added - len(gone)
        self._bytes += added_bytes - sum(int(size) if _is_number(size) else 0 for _, size in gone)
        self._corrupt.difference_update(key for key, _ in gone)

    # -- IValueStore ------------------------------------------------------------

    def get(self, key: bytes) -> StoredRecord | None:
        recent = self._recent
        try:
            return recent[key]
        except KeyError:
            pass
        found = self._entries(_SELECT + " WHERE key = ?", (key,), 1)
        entry = found[0] if found else None
        recent.remember(key, entry)
        return entry

    def _changing(self, keys: Iterable[bytes]) -> None:
        """Forget what was read of ``keys``, before they change."""
        for key in keys:
            self._recent.pop(key, None)

    def usage(self, publisher: str | None = None) -> tuple[int, int]:
        if publisher is None:
            return self._count, self._bytes
        with self._errors():
            count, size = self._db.execute(
                "SELECT COUNT(*), TOTAL(size) FROM records WHERE publisher = ?", (publisher,)
            ).fetchone()
        return int(count), int(size)

    def _oldest_cached(self, limit: int) -> list[StoredRecord]:
        return self._entries(_SELECT + " WHERE cached ORDER BY stored_at, key", (), limit)

    def _write(self, entry: StoredRecord, evict: list[bytes]) -> None:
        gone: list[Any] = []
        keys = [*evict, entry.key]
        self._changing(keys)
        with self._transaction() as db:
            for key in keys:
                gone += self._remove(db, _BY_KEY, (key,))
            db.execute(_INSERT, _columns(entry))
        self._forget(gone, 1, entry.size)

    def delete(self, key: bytes) -> bool:
        self._changing([key])
        with self._transaction() as db:
            gone = self._remove(db, _BY_KEY, (key,))
        self._forget(gone)
        return bool(gone)

    def __len__(self) -> int:
        return self._count

    def records(self) -> Iterator[StoredRecord]:
        # Page by key rather than hold a cursor open while the caller writes.
        rows = self._page(_SELECT + " ORDER BY key LIMIT ?", (_PAGE,))
        while True:
            for row in rows:
                entry = self._entry(row)
                if entry is not None:
                    yield entry
            if len(rows) < _PAGE:
                return
            rows = self._page(_SELECT + " WHERE key > ? ORDER BY key LIMIT ?", (rows[-1][0], _PAGE))

    def _page(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self._errors():
            return self._db.execute(sql, params).fetchall()

    def next_deadline(self) -> float | None:
        times: list[Any] = []
        with self._errors():
            times += self._db.execute(
                "SELECT MIN(expire_at) FROM records WHERE expire_at IS NOT NULL"
            ).fetchone()
            # An unreadable row cannot be replicated or republished, so its
            # deadline would only wake the scheduler for nothing, again and again.
            for query in _EARLIEST:
                rows = self._db.execute(query, (len(self._corrupt) + 1,)).fetchall()
                times += [t for t, key in rows if key not in self._corrupt]
        # Text in a deadline column (a damaged row) never falls due.
        due: list[float] = [t for t in times if _is_number(t)]
        return min(due) if due else None

    def expire(self, now: float) -> int:
        with self._transaction() as db:
            gone = self._remove(db, _EXPIRED, (now,))
        self._changing(key for key, _ in gone)
        self._forget(gone)
        return len(gone)

    def due_for_replication(self, now: float, limit: int) -> list[StoredRecord]:
        return self._entries(
            _SELECT + " WHERE replicate_at <= ? ORDER BY replicate_at, key", (now,), limit
        )

    def due_for_republish(self, now: float, limit: int) -> list[StoredRecord]:
        return self._entries(
            _SELECT + " WHERE republish_at <= ? ORDER BY republish_at, key", (now,), limit
        )

    def reschedule(
        self, key: bytes, replicate_at: float | None = None, republish_at: float | None = None
    ) -> None:
        if (replicate_at is None and republish_at is None) or key in self._corrupt:
            return
        # As in merge(): cached copies are not replicated, and only records
        # this node published are republished.
        self._changing([key])
        with self._transaction() as db:
            db.execute(
                "UPDATE records SET"
                " replicate_at = CASE WHEN :replicate IS NULL OR cached"
                " THEN replicate_at ELSE :replicate END,"
                " republish_at = CASE WHEN :republish IS NULL OR NOT origin"
                " THEN republish_at ELSE :republish END"
                " WHERE key = :key",
                {"replicate": replicate_at, "republish": republish_at, "key": key},
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._recent.clear()  # a closed store answers nothing, not even from memory
        try:
            with self._errors():
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.close()
            if self._syncs is not None:
                # The checkpoint synced what it moved, unless another
                # connection held it back; then the log is synced here.
                self._syncs.synced_inline()

    def __repr__(self) -> str:
        return "<SQLiteStore {}>".format(self.path)


__all__ = ["SQLiteStore"]
