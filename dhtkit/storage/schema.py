"""The layout of a dhtkit SQLite file: what marks it as ours, and its migrations.

``PRAGMA application_id`` marks the file as dhtkit's and ``PRAGMA
user_version`` is its schema version. :func:`inspect` refuses a file that is
not a usable store through a read-only connection, so a refused file is left
as it was; :func:`migrate` brings an older file up to date.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from dhtkit.keyspace import IMMUTABLE_DOMAIN, SIGNED_DOMAIN, domain_key
from dhtkit.storage.interface import StorageError

APPLICATION_ID = 0x6468746B
"""``PRAGMA application_id`` of a dhtkit store: "dhtk" in ASCII."""

COLUMNS = tuple(
    "key kind value seq public_key salt signature publisher size cached origin"
    " stored_at expire_at replicate_at republish_at deleted".split()
)
"""The columns of the records table, in the order rows are read and written."""

Migration = Callable[[sqlite3.Connection], None]


def _create_v1(db: sqlite3.Connection) -> None:
    """Version 0 (an empty file) to 1: the records table and its indexes."""
    db.execute(
        "CREATE TABLE records ("
        " key BLOB PRIMARY KEY NOT NULL, kind TEXT NOT NULL, value BLOB NOT NULL,"
        " seq INTEGER NOT NULL, public_key BLOB, salt BLOB, signature BLOB,"
        " publisher TEXT NOT NULL, size INTEGER NOT NULL,"
        " cached INTEGER NOT NULL, origin INTEGER NOT NULL, stored_at REAL NOT NULL,"
        " expire_at REAL, replicate_at REAL, republish_at REAL)"
    )
    # (publisher, size) covers a publisher's usage; the deadline indexes are
    # partial because most records lack one deadline or another, and carry
    # the key so that ties come out in the same order as from MemoryStore.
    for statement in (
        "CREATE INDEX records_by_publisher ON records (publisher, size)",
        "CREATE INDEX records_by_expiry ON records (expire_at) WHERE expire_at IS NOT NULL",
        "CREATE INDEX records_by_replication ON records (replicate_at, key)"
        " WHERE replicate_at IS NOT NULL",
        "CREATE INDEX records_by_republish ON records (republish_at, key)"
        " WHERE republish_at IS NOT NULL",
        "CREATE INDEX records_cached ON records (stored_at, key) WHERE cached",
    ):
        db.execute(statement)


def _separate_key_domains_v2(db: sqlite3.Connection) -> None:
    """Version 1 to 2: immutable and signed records move to their domain-separated keys.

    Up to version 1 an immutable value's key was BLAKE2b-160 of the value,
    and a signed value's that of public key + salt: the very rule of
    ``key_for``, so an immutable value could take a name's key. Both kinds
    describe themselves, so their new keys are computed from their own
    columns. A plain value already at a record's new key gives way to it,
    as :func:`~dhtkit.values.admit` would decide. Plain values keep their
    keys (they are their writers' choice), and so does a row whose columns
    cannot give a key: reads skip and count it as before.
    """
    moving: list[tuple[bytes, bytes]] = []
    rows = db.execute(
        "SELECT key, kind, value, public_key, salt FROM records"
        " WHERE kind IN ('immutable', 'signed')"
    ).fetchall()
    for key, kind, value, public_key, salt in rows:
        if kind == "immutable" and isinstance(value, bytes):
            new = domain_key(IMMUTABLE_DOMAIN, value)
        elif kind == "signed" and isinstance(public_key, bytes) and isinstance(salt, bytes):
            new = domain_key(SIGNED_DOMAIN, public_key + salt)
        else:
            continue
        if new != key:
            moving.append((key, new))
    for old, new in moving:
        db.execute("DELETE FROM records WHERE key = ? AND kind = 'plain'", (new,))
        # OR IGNORE: a verifiable record already at the new key (only a hash
        # collision could put one there) stays, and the moving row goes.
        db.execute("UPDATE OR IGNORE records SET key = ? WHERE key = ?", (new, old))
        db.execute("DELETE FROM records WHERE key = ?", (old,))


def _tombstones_v3(db: sqlite3.Connection) -> None:
    """Version 2 to 3: a ``deleted`` column marks tombstones (deletes kept until they expire).

    A plain value's owner lives in the ``public_key`` column and a plain
    tombstone's signature in ``signature``; rows from before have neither,
    which is what a plain value of no known owner is.
    """
    db.execute("ALTER TABLE records ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0")


MIGRATIONS: list[Migration] = [_create_v1, _separate_key_domains_v2, _tombstones_v3]
"""Step ``i`` turns schema version ``i`` into ``i + 1``; version 0 is an empty file.

A new schema version is one more function appended here. Every step of an
upgrade runs in one transaction with the version bump, so a crash or a
failing step leaves the file at its old version.
"""


def _identity(db: sqlite3.Connection) -> tuple[int, int, list[str]]:
    """The file's application id, schema version and its own (non-SQLite) objects."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    names = db.execute(
        "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).fetchall()
    return app_id, version, sorted(row[0] for row in names)


def _check_identity(path: Path, app_id: int, version: int, names: list[str]) -> None:
    latest = len(MIGRATIONS)
    if app_id == APPLICATION_ID:
        if version > latest:
            raise StorageError(
                "{} was written by a newer dhtkit (schema version {}; this dhtkit "
                "reads versions up to {}); upgrade dhtkit to use it".format(path, version, latest)
            )
    elif app_id != 0:
        raise StorageError(
            "{} belongs to another application (SQLite application_id {:#010x}, "
            "not dhtkit's {:#010x})".format(path, app_id & 0xFFFFFFFF, APPLICATION_ID)
        )
    elif names:
        raise StorageError(
            "{} is an SQLite database of another application (it holds {})".format(
                path, ", ".join(names)
            )
        )


def _check_columns(path: Path, db: sqlite3.Connection) -> None:
    found = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    missing = [name for name in COLUMNS if name not in found]
    if missing:
        raise StorageError(
            "{} claims schema version {} but its records table lacks {}".format(
                path, len(MIGRATIONS), ", ".join(missing)
            )
        )


def inspect(path: Path) -> None:
    """Refuse an existing file that is not a usable dhtkit store.

    A read-only connection cannot change the file; the ``-wal`` and ``-shm``
    files SQLite may create beside a refused file are removed again.
    """
    sidecars = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    existed = {sidecar for sidecar in sidecars if sidecar.exists()}
    try:
        db = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise StorageError("cannot open {}: {}".format(path, e)) from e
    accepted = False
    try:
        try:
            app_id, version, names = _identity(db)
            _check_identity(path, app_id, version, names)
            problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
            if problems == ["ok"] and version == len(MIGRATIONS):
                _check_columns(path, db)
        except sqlite3.DatabaseError as e:
            raise StorageError("{} is not a readable SQLite database: {}".format(path, e)) from e
        if problems != ["ok"]:
            raise StorageError("{} is a damaged database: {}".format(path, "; ".join(problems)))
        accepted = True
    finally:
        db.close()
        if not accepted:
            for sidecar in set(sidecars) - existed:
                try:
                    sidecar.unlink()
                except OSError:
                    pass


def migrate(path: Path, db: sqlite3.Connection) -> int:
    """Bring the file to the latest schema version; the version it had."""
    db.execute("BEGIN IMMEDIATE")
    try:
        # Checked again under the write lock: the file may have changed since.
        app_id, version, names = _identity(db)
        _check_identity(path, app_id, version, names)
        for step in MIGRATIONS[version:]:
            step(db)
        if version < len(MIGRATIONS):
            db.execute("PRAGMA application_id = {:d}".format(APPLICATION_ID))
            db.execute("PRAGMA user_version = {:d}".format(len(MIGRATIONS)))
        _check_columns(path, db)
        db.execute("COMMIT")
    except sqlite3.Error as e:
        raise StorageError(
            "cannot bring {} to schema version {}: {}".format(path, len(MIGRATIONS), e)
        ) from e
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")
    return int(version)
