"""What only the SQLite store does: persistence, durability, schema, bad files."""

import errno
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, globalLogPublisher

from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.storage import SELF, SQLiteStore, StorageError, StoredRecord
from dhtkit.storage import schema as schema_module
from dhtkit.storage import sqlite as sqlite_module
from dhtkit.storage.schema import APPLICATION_ID, MIGRATIONS
from dhtkit.values import ImmutableValue, PlainValue, SignedValue, immutable_key, signed_key
from tests.conftest import LoggedErrors

ALICE = Identity(b"\1" * 32)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "dhtkit.sqlite"


@pytest.fixture
def open_store(path: Path) -> Iterator[Callable[[], SQLiteStore]]:
    """Open the store at ``path``; whatever is still open is closed afterwards."""
    stores: list[SQLiteStore] = []

    def open_store() -> SQLiteStore:
        stores.append(SQLiteStore(path))
        return stores[-1]

    yield open_store
    for store in stores:
        store.close()


def sample() -> list[StoredRecord]:
    """Records of every kind, with every field and deadline in use."""
    return [
        StoredRecord(ImmutableValue(b"immutable"), "10.0.0.1", 1.5, 86401.5, 3601.25),
        StoredRecord(PlainValue(key_for("plain"), b"plain", 1234567), "10.0.0.2", 2.0, 50.0),
        StoredRecord(ImmutableValue(b"cached"), "10.0.0.3", 3.0, 30.0, cached=True),
        StoredRecord(
            SignedValue.create(ALICE, b"mine", 2**63 - 1, b"salt"),
            SELF,
            4.0,
            None,
            replicate_at=3604.0,
            republish_at=79204.0,
            origin=True,
        ),
    ]


def raw(path: Path, sql: str, params: Any = ()) -> list[Any]:
    """Run ``sql`` on the file behind the store's back."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def by_key(entries: Iterator[StoredRecord]) -> list[StoredRecord]:
    return sorted(entries, key=lambda e: e.key)


# -- persistence and durability -------------------------------------------------------


def test_everything_survives_close_and_reopen(open_store: Callable[[], SQLiteStore]) -> None:
    store = open_store()
    for entry in sample():
        store.put(entry)
    store.close()
    store = open_store()
    assert by_key(store.records()) == by_key(iter(sample()))
    assert (len(store), store.usage()) == (4, (4, sum(e.size for e in sample())))
    assert store.usage("10.0.0.1") == (1, 9)
    assert store.next_deadline() == 30.0
    assert [e.record for e in store.due_for_replication(1e6, 10)] == [
        sample()[0].record,
        sample()[3].record,
    ]
    assert store.due_for_republish(1e6, 10) == [sample()[3]]
    assert store.corrupt_rows == 0


def test_the_file_is_in_wal_mode_with_full_synchronous_commits(
    path: Path, open_store: Callable[[], SQLiteStore]
) -> None:
    store = open_store()
    assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]


def test_every_change_is_committed_when_the_call_returns(
    path: Path, open_store: Callable[[], SQLiteStore]
) -> None:
    store = open_store()
    first, second = sample()[0], sample()[1]
    store.put(first)
    assert raw(path, "SELECT value FROM records") == [(b"immutable",)]
    store.reschedule(first.key, replicate_at=7.0)
    assert raw(path, "SELECT replicate_at FROM records") == [(7.0,)]
    store.put(second)
    store.expire(60.0)
    assert raw(path, "SELECT value FROM records") == [(b"immutable",)]
    store.delete(first.key)
    assert raw(path, "SELECT COUNT(*) FROM records") == [(0,)]


@pytest_twisted.ensureDeferred
async def test_with_a_reactor_commits_skip_the_disk_and_a_thread_syncs_the_log(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink("/proc/self/fd/{}".format(fd)))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    store = SQLiteStore(path, reactor=reactor)
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        for entry in sample():
            store.put(entry)  # one turn of the reactor: no sync has run yet
        assert store.syncs == 0
        await store.durable()
        # All the puts of one turn of the reactor share one sync.
        assert store.syncs == 1
        wal = str(path) + "-wal"
        assert synced.count(wal) == 1 and synced.count(str(path.parent)) == 1
        await store.durable()  # nothing new: at once
        assert store.syncs == 1
    finally:
        store.close()
    store = SQLiteStore(path)
    try:
        assert len(store) == len(sample())
    finally:
        store.close()


@pytest_twisted.ensureDeferred
async def test_durable_waits_for_the_sync_to_end(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = threading.Event()
    fsync = os.fsync

    def slow(fd: int) -> None:
        assert disk.wait(30)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", slow)
    store = SQLiteStore(path, reactor=reactor)
    try:
        store.put(sample()[0])
        waiting = store.durable()
        await deferLater(reactor, 0.1)
        assert not waiting.called
        assert store.get(sample()[0].key) == sample()[0]  # seen before it is durable
        disk.set()
        await waiting
    finally:
        disk.set()
        store.close()


@pytest_twisted.ensureDeferred
async def test_a_failed_sync_is_reported_and_no_later_change_is_acknowledged(
    path: Path, monkeypatch: pytest.MonkeyPatch, logged_errors: LoggedErrors
) -> None:
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    store = SQLiteStore(path, reactor=reactor)
    try:
        store.put(sample()[0])
        with pytest.raises(StorageError, match="Input/output error"):
            await store.durable()
        monkeypatch.undo()
        store.put(sample()[1])
        with pytest.raises(StorageError, match="no change is acknowledged until a restart"):
            await store.durable()
        [critical] = logged_errors.take()
        assert critical["log_level"] == LogLevel.critical
    finally:
        store.close()
    store = SQLiteStore(path)  # the records were written all the same
    try:
        assert len(store) == 2
    finally:
        store.close()


def test_without_a_reactor_every_commit_is_synced_before_it_returns(
    path: Path, open_store: Callable[[], SQLiteStore]
) -> None:
    store = open_store()
    store.put(sample()[0])
    durable = store.durable()
    assert durable.called and store.syncs == 0


def test_close_checkpoints_and_a_closed_store_refuses_work(
    path: Path, open_store: Callable[[], SQLiteStore]
) -> None:
    store = open_store()
    store.put(sample()[0])
    assert store.get(sample()[0].key) is not None  # remembered, until the close
    store.close()
    store.close()
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with pytest.raises(StorageError, match=str(path)):
        store.get(sample()[0].key)


WRITER = """
import sys
from dhtkit.keyspace import key_for
from dhtkit.storage import SELF, Quota, SQLiteStore, StoredRecord
from dhtkit.values import PlainValue

store = SQLiteStore(sys.argv[1], Quota(max_records=10**6, max_bytes=10**9))
for n in range(10**6):
    store.put(StoredRecord(PlainValue(key_for(str(n)), b"value %d" % n, n), SELF, 0.0, None))
    sys.stdout.write("%d\\n" % n)
    sys.stdout.flush()
"""

# The same with a reactor: a thread syncs the log, and a put is acknowledged
# once ``durable`` has fired.
WRITER_WITH_A_REACTOR = """
import sys
from twisted.internet import defer, task
from dhtkit.keyspace import key_for
from dhtkit.storage import SELF, Quota, SQLiteStore, StoredRecord
from dhtkit.values import PlainValue

async def main(reactor):
    store = SQLiteStore(sys.argv[1], Quota(max_records=10**6, max_bytes=10**9), reactor)
    for n in range(10**6):
        store.put(StoredRecord(PlainValue(key_for(str(n)), b"value %d" % n, n), SELF, 0.0, None))
        await store.durable()
        sys.stdout.write("%d\\n" % n)
        sys.stdout.flush()

task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
"""


@pytest.mark.parametrize("writer_code", [WRITER, WRITER_WITH_A_REACTOR], ids=["alone", "reactor"])
def test_every_acknowledged_put_survives_kill_9(path: Path, writer_code: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    writer = subprocess.Popen(
        [sys.executable, "-c", writer_code, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert writer.stdout is not None and writer.stderr is not None
    guard = threading.Timer(60, writer.kill)  # a hung writer must not hang the suite
    guard.start()
    try:
        lines = [writer.stdout.readline() for _ in range(50)]
        assert lines[-1].endswith("\n"), writer.stderr.read()
        # Killed mid-stream: most likely in the middle of a transaction.
        writer.send_signal(signal.SIGKILL)
        lines += writer.stdout.read().splitlines(keepends=True)
        writer.wait()
    finally:
        guard.cancel()
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        writer.stdout.close()
        writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL
    acknowledged = [int(line) for line in lines if line.endswith("\n")]
    assert acknowledged == list(range(len(acknowledged)))
    store = SQLiteStore(path)
    try:
        for n in acknowledged:
            entry = store.get(key_for(str(n)))
            assert entry is not None, "acknowledged put {} was lost".format(n)
            assert (entry.record.value, entry.record.seq) == (b"value %d" % n, n)
        assert len(store) in (len(acknowledged), len(acknowledged) + 1)
    finally:
        store.close()


# -- files that are refused -----------------------------------------------------------


def random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(16384))


def truncated(path: Path) -> None:
    store = SQLiteStore(path)
    for n in range(40):
        store.put(StoredRecord(ImmutableValue(b"%03d" % n * 300), "peer", 0.0, 100.0))
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def foreign(path: Path, app_id: int = 0x12345678, wal: bool = False) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    if wal:
        db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA application_id = {:d}".format(app_id))
    db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, data BLOB)")
    db.execute("INSERT INTO photos (data) VALUES (x'00ff')")
    db.close()


def ours(path: Path, version: int, table: str) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA application_id = {:d}".format(APPLICATION_ID))
    db.execute("PRAGMA user_version = {:d}".format(version))
    db.execute(table)
    db.close()


REFUSED: dict[str, tuple[Callable[[Path], None], str]] = {
    "random bytes": (random_bytes, "not a readable SQLite database: file is not a database"),
    "truncated": (truncated, "database disk image is malformed|damaged"),
    "another application id": (foreign, "belongs to another application .*0x12345678"),
    "another application in WAL mode": (
        lambda p: foreign(p, wal=True),
        "belongs to another application",
    ),
    "tables that are not ours": (
        lambda p: foreign(p, app_id=0),
        "SQLite database of another application \\(it holds photos\\)",
    ),
    "a newer dhtkit": (
        lambda p: ours(p, 99, "CREATE TABLE records (key BLOB PRIMARY KEY, future TEXT)"),
        "written by a newer dhtkit \\(schema version 99; this dhtkit reads versions up to 3\\)",
    ),
    "our id but not our schema": (
        lambda p: ours(p, len(MIGRATIONS), "CREATE TABLE records (key BLOB PRIMARY KEY)"),
        "claims schema version 3 but its records table lacks kind, value",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_bad_file_is_refused_and_left_as_it_was(name: str, path: Path) -> None:
    build, problem = REFUSED[name]
    build(path)
    before, files = path.read_bytes(), sorted(os.listdir(path.parent))
    with pytest.raises(StorageError, match=problem) as refused:
        SQLiteStore(path)
    assert str(path) in str(refused.value)
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == files


def test_a_file_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    missing = tmp_path / "no such directory" / "dhtkit.sqlite"
    with pytest.raises(StorageError, match=r"cannot open .*no such directory"):
        SQLiteStore(missing)
    assert not missing.parent.exists()


# -- schema versions --------------------------------------------------------------------


def schema(path: Path) -> list[Any]:
    return raw(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name")


def test_a_new_file_gets_the_latest_schema(path: Path, open_store: Callable[[], Any]) -> None:
    open_store().close()
    assert raw(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert raw(path, "PRAGMA user_version") == [(len(MIGRATIONS),)] == [(3,)]
    names = {name for _, name, _ in schema(path)}
    assert {"records", "records_by_publisher", "records_by_expiry"} <= names
    assert {"records_by_replication", "records_by_republish", "records_cached"} <= names


@pytest.mark.parametrize(
    "make_empty",
    [
        lambda p: p.write_bytes(b""),
        lambda p: ours(p, 0, "PRAGMA user_version = 0"),
        lambda p: raw(p, "PRAGMA user_version = 0"),
    ],
    ids=["empty file", "version 0 of ours", "empty database"],
)
def test_an_empty_file_is_version_0_and_is_brought_to_the_latest(
    make_empty: Callable[[Path], None], path: Path, open_store: Callable[[], Any]
) -> None:
    make_empty(path)
    store = open_store()
    store.put(sample()[0])
    assert raw(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert raw(path, "PRAGMA application_id") == [(APPLICATION_ID,)]


def test_reopening_the_latest_version_changes_nothing(
    path: Path, open_store: Callable[[], SQLiteStore]
) -> None:
    store = open_store()
    for entry in sample():
        store.put(entry)
    store.close()
    before = schema(path)
    store = open_store()
    assert schema(path) == before
    assert by_key(store.records()) == by_key(iter(sample()))


def _by_kind(db: sqlite3.Connection) -> None:
    """A version 4 as a later dhtkit might add one: an index on kind."""
    db.execute("CREATE INDEX records_by_kind ON records (kind)")


def test_a_new_version_is_one_more_migration(
    path: Path, open_store: Callable[[], SQLiteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store()
    for entry in sample():
        store.put(entry)
    store.close()
    monkeypatch.setattr(schema_module, "MIGRATIONS", [*MIGRATIONS, _by_kind])
    store = open_store()
    assert raw(path, "PRAGMA user_version") == [(4,)]
    assert "records_by_kind" in {name for _, name, _ in schema(path)}
    assert by_key(store.records()) == by_key(iter(sample()))
    store.close()
    monkeypatch.setattr(schema_module, "MIGRATIONS", MIGRATIONS)
    with pytest.raises(StorageError, match="newer dhtkit \\(schema version 4"):
        SQLiteStore(path)


def test_a_failing_migration_leaves_the_file_at_its_old_version(
    path: Path, open_store: Callable[[], SQLiteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(db: sqlite3.Connection) -> None:
        _by_kind(db)
        db.execute("ALTER TABLE no_such_table ADD COLUMN x")

    store = open_store()
    store.put(sample()[0])
    store.close()
    before = schema(path)
    monkeypatch.setattr(schema_module, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(StorageError, match=r"cannot bring .* to schema version 4: no such table"):
        SQLiteStore(path)
    assert raw(path, "PRAGMA user_version") == [(3,)]
    assert schema(path) == before
    monkeypatch.setattr(schema_module, "MIGRATIONS", MIGRATIONS)
    assert open_store().get(sample()[0].key) == sample()[0]


def _old_key(data: bytes) -> bytes:
    """How versions up to 1 keyed immutable and signed records: plain BLAKE2b-160."""
    return hashlib.blake2b(data, digest_size=20).digest()


def _write_version_1(path: Path, rows: list[tuple[bytes, StoredRecord]]) -> None:
    """A store file as dhtkit wrote it at schema version 1, rows under the given keys."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("BEGIN")
    MIGRATIONS[0](db)
    for key, entry in rows:
        record = entry.record
        signed = record if isinstance(record, SignedValue) else None
        db.execute(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                record.kind,
                record.value,
                record.seq,
                None if signed is None else signed.public_key,
                None if signed is None else signed.salt,
                None if signed is None else signed.signature,
                entry.publisher,
                entry.size,
                int(entry.cached),
                int(entry.origin),
                entry.stored_at,
                entry.expire_at,
                entry.replicate_at,
                entry.republish_at,
            ),
        )
    db.execute("PRAGMA application_id = {:d}".format(APPLICATION_ID))
    db.execute("PRAGMA user_version = 1")
    db.execute("COMMIT")
    db.close()


def test_version_1_records_move_to_their_domain_separated_keys(
    path: Path, open_store: Callable[[], SQLiteStore]
) -> None:
    immutable, plain, cached, mine = sample()
    assert isinstance(mine.record, SignedValue)
    # An immutable value that had taken a name's key under the old rule, and
    # a plain value where an immutable one's new key falls.
    squat = StoredRecord(ImmutableValue(b"alice's page"), "10.0.0.9", 5.0, 90.0)
    in_the_way = StoredRecord(PlainValue(immutable.key, b"in the way", 1), "10.0.0.8", 6.0, 90.0)
    _write_version_1(
        path,
        [
            (_old_key(b"immutable"), immutable),
            (plain.key, plain),
            (_old_key(b"cached"), cached),
            (_old_key(mine.record.public_key + mine.record.salt), mine),
            (key_for("alice's page"), squat),
            (immutable.key, in_the_way),
        ],
    )
    assert _old_key(b"alice's page") == key_for("alice's page")
    store = open_store()
    assert raw(path, "PRAGMA user_version") == [(len(MIGRATIONS),)] == [(3,)]
    assert store.get(immutable_key(b"immutable")) == immutable
    assert store.get(immutable_key(b"cached")) == cached
    assert store.get(signed_key(ALICE.public_key, b"salt")) == mine  # deadlines kept
    assert store.get(plain.key) == plain
    assert store.get(immutable_key(b"alice's page")) == squat
    assert store.get(key_for("alice's page")) is None  # the name is free again
    assert by_key(store.records()) == by_key(iter([immutable, plain, cached, mine, squat]))
    assert len(store) == 5
    assert store.usage() == (5, sum(e.size for e in (immutable, plain, cached, mine, squat)))
    assert store.corrupt_rows == 0
    store.close()
    # Opening again changes nothing.
    before = raw(path, "SELECT key FROM records ORDER BY key")
    open_store()
    assert raw(path, "SELECT key FROM records ORDER BY key") == before


# -- rows that cannot be read -----------------------------------------------------------

CORRUPTIONS = {
    "unknown kind": "UPDATE records SET kind = 'bogus' WHERE key = :bad",
    "value of the wrong type": "UPDATE records SET value = 'text' WHERE key = :bad",
    "short public key": "UPDATE records SET public_key = x'00' WHERE key = :bad",
    "another key": "UPDATE records SET key = :elsewhere WHERE key = :bad",
    "wrong size": "UPDATE records SET size = 1 WHERE key = :bad",
    "a deadline that is not a time": "UPDATE records SET replicate_at = 'soon' WHERE key = :bad",
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_an_unreadable_row_is_skipped_counted_and_kept(
    corruption: str, path: Path, open_store: Callable[[], SQLiteStore]
) -> None:
    bad = StoredRecord(SignedValue.create(ALICE, b"v", 1), "alice", 0.0, 100.0, 10.0)
    good = StoredRecord(ImmutableValue(b"good"), "peer", 0.0, 100.0, 20.0)
    store = open_store()
    store.put(bad)
    store.put(good)
    store.close()
    raw(path, CORRUPTIONS[corruption], {"bad": bad.key, "elsewhere": key_for("elsewhere")})
    warnings: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") == LogLevel.warn:
            warnings.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        store = open_store()
        assert store.next_deadline() in (10.0, 20.0)
        assert list(store.records()) == [good]
        assert store.corrupt_rows == 1
        assert store.get(bad.key) is None
        assert store.due_for_replication(50.0, 10) == [good]
        assert store.corrupt_rows == 1
    finally:
        globalLogPublisher.removeObserver(observe)
    assert len(warnings) == 1 and "unreadable row" in warnings[0]["log_format"]
    # Its replication deadline would wake the scheduler for nothing.
    assert store.next_deadline() == 20.0
    # Kept, not deleted: it is still in the file and still counted.
    assert len(store) == 2
    assert raw(path, "SELECT COUNT(*) FROM records") == [(2,)]
    # A new record for its key replaces it.
    newer = StoredRecord(SignedValue.create(ALICE, b"w", 2), "alice", 1.0, 100.0)
    store.put(newer)
    assert store.get(newer.key) == newer


def test_reads_come_from_memory_until_the_key_changes(
    open_store: Callable[[], SQLiteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store()
    first = StoredRecord(SignedValue.create(ALICE, b"v", 1), SELF, 0.0, 100.0, 10.0, origin=True)
    first = store.put(first)
    reads: list[str] = []
    entries = store._entries

    def counted(sql: str, params: Any, limit: int) -> list[StoredRecord]:
        reads.append(sql)
        return entries(sql, params, limit)

    monkeypatch.setattr(store, "_entries", counted)
    absent = key_for("absent")
    assert [store.get(first.key) for _ in range(3)] == [first] * 3
    assert [store.get(absent) for _ in range(3)] == [None] * 3
    assert len(reads) == 2  # one read of the file per key
    # Every change to a key is seen by the next read.
    second = StoredRecord(SignedValue.create(ALICE, b"w", 2), SELF, 1.0, 50.0, 10.0, origin=True)
    second = store.put(second)
    assert store.get(first.key) == second
    store.reschedule(first.key, replicate_at=30.0)
    assert store.get(first.key).replicate_at == 30.0
    mortal = StoredRecord(PlainValue(key_for("plain"), b"p", 1), "peer", 0.0, 50.0)
    assert store.get(mortal.key) is None
    store.put(mortal)
    assert store.get(mortal.key) == mortal
    assert store.expire(60.0) == 1
    assert store.get(mortal.key) is None
    assert store.delete(first.key)
    assert store.get(first.key) is None
    # At most RECENT_KEYS keys are remembered.
    for i in range(sqlite_module.RECENT_KEYS + 10):
        store.get(key_for(str(i)))
    assert len(store._recent) == sqlite_module.RECENT_KEYS


def test_queries_use_indexes(open_store: Callable[[], SQLiteStore]) -> None:
    store = open_store()
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    for n, entry in enumerate(sample() * 2):
        store.put(entry)
        store.reschedule(entry.key, replicate_at=float(n), republish_at=float(n))
        store.usage(entry.publisher)
        store.get(entry.key)
    store.next_deadline()
    store.due_for_replication(5.0, 2)
    store.due_for_republish(5.0, 2)
    store._oldest_cached(3)
    store.expire(40.0)
    store.delete(sample()[1].key)
    store._db.set_trace_callback(None)
    checked = 0
    for sql in set(statements):
        if sql.split()[0] in ("SELECT", "UPDATE", "DELETE"):
            plan = " / ".join(row[-1] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql))
            assert "USING" in plan and "TEMP B-TREE" not in plan, (sql, plan)
            checked += 1
    assert checked >= 8


def test_a_delete_stops_the_republishing_across_a_restart(
    path: Path, open_store: Callable[[], SQLiteStore]
) -> None:
    store = open_store()
    mine = PlainValue(key_for("k"), b"v", 1, ALICE.public_key)
    store.put(StoredRecord(mine, SELF, 1.0, None, 10.0, 20.0, origin=True))
    tombstone = PlainValue.tombstone(ALICE, mine.key, 2)
    store.put(StoredRecord(tombstone, SELF, 2.0, 90.0, 12.0))
    store.close()
    store = open_store()
    assert store.due_for_republish(1e9, 10) == []
    assert store.get(mine.key) == StoredRecord(tombstone, SELF, 2.0, 90.0, 12.0)
    assert raw(path, "SELECT deleted, public_key FROM records") == [(1, ALICE.public_key)]
