"""What storing a value costs: SQLiteStore and MemoryStore beside bare sqlite3.

    python benchmarks/value_store.py [--records 5000] [--json]

The baseline is the least any durable SQLite store can do per write: one
INSERT OR REPLACE of the same columns in its own committed transaction, WAL
mode, ``synchronous=FULL``, through the stdlib ``sqlite3`` with nothing else.
Beside it ``SQLiteStore.put`` adds what dhtkit does per write (admission
against the stored version, quotas, bookkeeping), and ``MemoryStore`` shows
the cost without a disk. Then reads by key, ``next_deadline`` (what the
scheduler asks after every write), and one expiry sweep of all records.
Each store works in a fresh temporary directory; all of it in this process.

Last, what a node's store does with a reactor (group commit,
:mod:`dhtkit.storage.groupsync`): writes commit at once and a thread syncs
the log for all the writes that came meanwhile. ``--burst`` writes arrive
together (as stores from many peers in one turn of the reactor), each
acknowledged once ``durable`` fires, then the next burst; it prints the
acknowledged writes per second and the reactor thread's own time per write
(the rest of the wall time it was free, waiting for the sync), beside
``SQLiteStore`` without a reactor, which syncs inside every put.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.storage import MemoryStore, Quota, SQLiteStore, StoredRecord
from dhtkit.values import PlainValue, SignedValue

NOW = 1_800_000_000.0


def entries(count: int) -> list[StoredRecord]:
    """Half plain, half signed records of 200-byte values, with deadlines."""
    owner = Identity(b"\x05" * 32)
    out = []
    for n in range(count):
        value = n.to_bytes(4, "big") * 50
        if n % 2:
            record: Any = SignedValue.create(owner, value, 1, salt=n.to_bytes(4, "big"))
        else:
            record = PlainValue(key_for(value), value, n)
        out.append(
            StoredRecord(
                record,
                "host:10.77.0.{}".format(n % 200),
                NOW + n,
                NOW + 86400 + n,
                replicate_at=NOW + 3600 + n,
            )
        )
    return out


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def baseline_puts(path: Path, batch: list[StoredRecord]) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE records (key BLOB PRIMARY KEY, kind TEXT, value BLOB, seq INTEGER,"
        " publisher TEXT, stored_at REAL, expire_at REAL, replicate_at REAL)"
    )

    def work() -> None:
        for e in batch:
            db.execute("BEGIN")
            db.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    e.key,
                    e.record.kind,
                    e.record.value,
                    e.record.seq,
                    e.publisher,
                    e.stored_at,
                    e.expire_at,
                    e.replicate_at,
                ),
            )
            db.execute("COMMIT")

    elapsed = timed(work)
    db.close()
    return elapsed


def store_figures(store: Any, batch: list[StoredRecord]) -> dict[str, float]:
    count = len(batch)
    put = timed(lambda: [store.put(e) for e in batch])
    get = timed(lambda: [store.get(e.key) for e in batch])
    deadline = timed(lambda: [store.next_deadline() for _ in range(1000)])
    sweep = timed(lambda: store.expire(NOW + 10 * 86400))
    assert len(store) == 0
    return {
        "puts_per_s": count / put,
        "gets_per_s": count / get,
        "next_deadline_us": deadline / 1000 * 1e6,
        "expire_all_s": sweep,
    }


def acknowledged_puts(path: Path, batch: list[StoredRecord], burst: int, quota: Quota) -> Any:
    """Per setting: writes acknowledged per second, and the reactor thread's
    time per write (µs); ``burst`` at a time, each burst waiting for
    ``durable``: without a reactor, and with one (group commit)."""
    from twisted.internet import defer, reactor
    from twisted.python.failure import Failure

    figures: dict[str, Any] = {}

    async def run(threads: Any) -> None:
        for name, given in (("alone", None), ("group", threads)):
            store = SQLiteStore(path.with_name(name + ".sqlite"), quota=quota, reactor=given)
            start, cpu = time.perf_counter(), time.thread_time()
            for first in range(0, len(batch), burst):
                for e in batch[first : first + burst]:
                    store.put(e)
                await store.durable()
            wall = time.perf_counter() - start
            # Without a reactor the put waits for the disk: all its wall time is the thread's.
            busy = wall if given is None else time.thread_time() - cpu
            figures[name] = {
                "acknowledged_per_s": len(batch) / wall,
                "thread_us_per_put": busy / len(batch) * 1e6,
                "syncs": store.syncs,
            }
            store.close()

    done = defer.ensureDeferred(run(reactor))
    outcome: list[Any] = []
    done.addBoth(outcome.append).addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if outcome and isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--burst", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.burst < 1:
        parser.error("--burst must be at least 1")
    batch = entries(args.records)
    quota = Quota(max_records=10**7, max_bytes=10**10, max_records_per_publisher=10**7)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        results: dict[str, Any] = {
            "records": args.records,
            "baseline_sqlite3_puts_per_s": args.records / baseline_puts(base / "raw.db", batch),
        }
        sqlite_store = SQLiteStore(base / "dhtkit.sqlite", quota=quota)
        results["sqlite"] = store_figures(sqlite_store, batch)
        sqlite_store.close()
        results["memory"] = store_figures(MemoryStore(quota=quota), batch)
        results["burst"] = args.burst
        results["acknowledged"] = acknowledged_puts(base / "acked.sqlite", batch, args.burst, quota)
    base_rate = results["baseline_sqlite3_puts_per_s"]
    print("{} records of 200-byte values, half plain, half signed".format(args.records))
    print("durable puts/s: bare sqlite3 {:,.0f}".format(base_rate))
    for name in ("sqlite", "memory"):
        f = results[name]
        print(
            "{:7} puts/s {:>10,.0f} ({:.2f}x the bare sqlite3 baseline)  gets/s {:>10,.0f}"
            "  next_deadline {:6.1f} us  expire all {:.3f} s".format(
                name,
                f["puts_per_s"],
                f["puts_per_s"] / base_rate,
                f["gets_per_s"],
                f["next_deadline_us"],
                f["expire_all_s"],
            )
        )
    acked = results["acknowledged"]
    print(
        "durable puts acknowledged, {} at a time: alone {:,.0f}/s ({:.0f} us of its thread"
        " per put, the sync included); group commit {:,.0f}/s ({:.0f} us of the reactor"
        " thread per put, {} syncs)".format(
            args.burst,
            acked["alone"]["acknowledged_per_s"],
            acked["alone"]["thread_us_per_put"],
            acked["group"]["acknowledged_per_s"],
            acked["group"]["thread_us_per_put"],
            acked["group"]["syncs"],
        )
    )
    print("(load average {:.2f} over the last minute)".format(os.getloadavg()[0]))
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
