"""The behaviour every IValueStore shares, checked on MemoryStore and SQLiteStore."""

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from zope.interface.verify import verifyObject

from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.storage import SELF, IValueStore, MemoryStore, Quota, SQLiteStore, StoredRecord
from dhtkit.values import (
    ImmutableValue,
    OverQuota,
    PlainValue,
    Record,
    SignedValue,
    StaleSequence,
    ValueRefused,
    signed_key,
)

ALICE = Identity(b"\1" * 32)
BOB = Identity(b"\2" * 32)

MakeStore = Callable[..., IValueStore]


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """A factory of empty stores of one kind; all are closed afterwards."""
    stores: list[IValueStore] = []

    def make(quota: Quota | None = None) -> IValueStore:
        if request.param == "memory":
            store: IValueStore = MemoryStore(quota)
        else:
            store = SQLiteStore(tmp_path / "store{}.sqlite".format(len(stores)), quota)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def value(n: int, size: int = 10) -> ImmutableValue:
    return ImmutableValue(b"%d" % n + b"." * (size - len(b"%d" % n)))


def entry(
    record: Record,
    publisher: str = "peer",
    stored_at: float = 0.0,
    expire_at: float | None = 100.0,
    replicate_at: float | None = None,
    republish_at: float | None = None,
    cached: bool = False,
    origin: bool = False,
) -> StoredRecord:
    return StoredRecord(
        record, publisher, stored_at, expire_at, replicate_at, republish_at, cached, origin
    )


def keys(store: IValueStore) -> set[bytes]:
    return {e.key for e in store.records()}


# -- basics -------------------------------------------------------------------------


def test_provides_the_interface(make: MakeStore) -> None:
    assert verifyObject(IValueStore, make())


def test_put_get_delete_len_and_records(make: MakeStore) -> None:
    store = make()
    first, second = entry(value(1)), entry(SignedValue.create(ALICE, b"v", 1), "alice")
    assert store.get(first.key) is None
    assert store.put(first) == first
    assert store.put(second) == second
    assert (store.get(first.key), store.get(second.key)) == (first, second)
    assert len(store) == 2
    assert sorted(store.records(), key=lambda e: e.key) == sorted(
        [first, second], key=lambda e: e.key
    )
    assert store.delete(first.key) is True
    assert store.delete(first.key) is False
    assert store.get(first.key) is None
    assert (len(store), list(store.records())) == (1, [second])


def test_usage_counts_records_and_bytes_in_all_and_per_publisher(make: MakeStore) -> None:
    store = make()
    store.put(entry(value(1, 10), "a"))
    store.put(entry(value(2, 20), "a"))
    store.put(entry(value(3, 30), "b"))
    assert store.usage() == (3, 60)
    assert (store.usage("a"), store.usage("b"), store.usage("c")) == ((2, 30), (1, 30), (0, 0))
    store.delete(value(2, 20).key)
    assert (store.usage(), store.usage("a")) == ((2, 40), (1, 10))


def test_a_newer_version_replaces_the_stored_one(make: MakeStore) -> None:
    store = make()
    store.put(entry(SignedValue.create(ALICE, b"old", 1), "alice"))
    newer = entry(SignedValue.create(ALICE, b"newer value", 2), "alice")
    assert store.put(newer) == newer
    assert store.get(newer.key) == newer
    assert store.usage() == (1, newer.size)


def test_a_refused_put_changes_nothing(make: MakeStore) -> None:
    store = make()
    stored = store.put(entry(SignedValue.create(ALICE, b"v", 2), "alice"))
    with pytest.raises(StaleSequence):
        store.put(entry(SignedValue.create(ALICE, b"w", 1), "alice", expire_at=500.0))
    assert store.get(stored.key) == stored
    assert store.usage() == (1, stored.size)


# -- merging a copy of what is stored -------------------------------------------------


def test_a_refresh_never_shortens_the_expiry(make: MakeStore) -> None:
    store = make()
    record = value(1)
    store.put(entry(record, expire_at=100.0))
    assert store.put(entry(record, expire_at=50.0)).expire_at == 100.0
    assert store.put(entry(record, expire_at=200.0)).expire_at == 200.0
    assert store.get(record.key).expire_at == 200.0  # type: ignore[union-attr]


def test_a_new_version_takes_the_expiry_it_was_sent_with(make: MakeStore) -> None:
    store = make()
    store.put(entry(SignedValue.create(ALICE, b"v", 1), "alice", expire_at=100.0))
    newer = store.put(entry(SignedValue.create(ALICE, b"w", 2), "alice", expire_at=50.0))
    assert newer.expire_at == 50.0


def test_the_origin_flag_sticks_and_its_record_never_expires(make: MakeStore) -> None:
    store = make()
    mine = SignedValue.create(ALICE, b"v", 1)
    store.put(entry(mine, SELF, expire_at=None, replicate_at=10.0, republish_at=20.0, origin=True))
    copy = store.put(entry(mine, "peer", expire_at=50.0, replicate_at=30.0))
    assert (copy.origin, copy.expire_at, copy.republish_at, copy.publisher) == (
        True,
        None,
        20.0,
        SELF,
    )
    newer = store.put(entry(SignedValue.create(ALICE, b"w", 2), "alice", expire_at=50.0))
    assert (newer.origin, newer.expire_at, newer.republish_at) == (True, None, 20.0)
    assert store.expire(1e9) == 0
    assert store.get(mine.key) == newer


def test_a_tombstone_ends_the_republishing_and_expires(make: MakeStore) -> None:
    store = make()
    mine = SignedValue.create(ALICE, b"v", 1)
    store.put(entry(mine, SELF, expire_at=None, replicate_at=10.0, republish_at=20.0, origin=True))
    deleted = store.put(entry(SignedValue.tombstone(ALICE, 2), "alice", expire_at=500.0))
    assert (deleted.origin, deleted.expire_at, deleted.republish_at) == (False, 500.0, None)
    assert store.due_for_republish(1e9, 10) == []
    # kept (and honoured) until it expires: the deleted version is refused
    with pytest.raises(StaleSequence):
        store.put(entry(mine, "peer", expire_at=50.0))
    assert store.get(mine.key) == deleted
    assert store.expire(500.0) == 1
    assert store.get(mine.key) is None


def test_a_plain_tombstone_is_stored_and_read_back(make: MakeStore) -> None:
    store = make()
    key = key_for("k")
    store.put(entry(PlainValue(key, b"v", 1, ALICE.public_key)))
    tombstone = PlainValue.tombstone(ALICE, key, 2)
    stored = store.put(entry(tombstone, expire_at=80.0))
    assert store.get(key) == stored
    assert stored.record == tombstone and stored.size == tombstone.size
    assert store.usage() == (1, tombstone.size)


def test_an_authoritative_copy_beats_a_cached_one(make: MakeStore) -> None:
    store = make()
    record = value(1)
    store.put(entry(record, cached=True))
    promoted = store.put(entry(record, replicate_at=40.0))
    assert (promoted.cached, promoted.replicate_at) == (False, 40.0)
    still = store.put(entry(record, cached=True, expire_at=300.0))
    assert (still.cached, still.replicate_at, still.expire_at) == (False, 40.0, 300.0)


# -- quotas -------------------------------------------------------------------------


def test_the_total_record_quota_refuses_when_nothing_can_be_evicted(make: MakeStore) -> None:
    store = make(Quota(max_records=2))
    store.put(entry(value(1)))
    store.put(entry(value(2)))
    with pytest.raises(OverQuota, match="full"):
        store.put(entry(value(3)))
    assert keys(store) == {value(1).key, value(2).key}
    # A copy of a stored record, or a new version of one, still fits.
    store.put(entry(value(1), expire_at=500.0))
    store.delete(value(2).key)
    store.put(entry(value(3)))


def test_the_total_byte_quota(make: MakeStore) -> None:
    store = make(Quota(max_bytes=25))
    store.put(entry(value(1, 10)))
    store.put(entry(value(2, 10)))
    with pytest.raises(OverQuota):
        store.put(entry(value(3, 10)))
    store.put(entry(value(3, 5)))
    assert store.usage() == (3, 25)


def test_the_per_publisher_quotas(make: MakeStore) -> None:
    store = make(Quota(max_records_per_publisher=2, max_bytes_per_publisher=30))
    store.put(entry(value(1), "a"))
    store.put(entry(value(2), "a"))
    with pytest.raises(OverQuota, match="publisher a"):
        store.put(entry(value(3), "a"))
    store.put(entry(value(3, 25), "b"))
    with pytest.raises(OverQuota, match="publisher b"):
        store.put(entry(value(4, 10), "b"))
    store.put(entry(value(4, 5), "b"))
    # A publisher at its limit may still replace its own record.
    store.put(entry(PlainValue(key_for("k"), b"x" * 10, 1), "c"))
    store.put(entry(PlainValue(key_for("k"), b"y" * 10, 2), "c"))
    assert store.usage("c") == (1, 30)


def test_records_this_node_published_are_exempt_from_publisher_quotas(make: MakeStore) -> None:
    store = make(Quota(max_records_per_publisher=1, max_bytes_per_publisher=10))
    for n in range(3):
        store.put(entry(value(n, 50), SELF, expire_at=None, origin=True))
        store.put(entry(value(n + 10, 50), "a", expire_at=None, republish_at=9.0, origin=True))
    assert store.usage() == (6, 300)


def test_the_oldest_cached_copies_make_room_never_authoritative_ones(make: MakeStore) -> None:
    store = make(Quota(max_records=3))
    store.put(entry(value(1), stored_at=0.0))
    store.put(entry(value(2), stored_at=2.0, cached=True))
    store.put(entry(value(3), stored_at=1.0, cached=True))
    store.put(entry(value(4), stored_at=5.0))
    assert keys(store) == {value(1).key, value(2).key, value(4).key}
    store.put(entry(value(5), stored_at=6.0))
    assert keys(store) == {value(1).key, value(4).key, value(5).key}
    with pytest.raises(OverQuota):
        store.put(entry(value(6), stored_at=7.0))
    with pytest.raises(OverQuota):
        store.put(entry(value(6), stored_at=7.0, cached=True))
    assert len(store) == 3


def test_a_cached_copy_evicts_only_older_cached_copies(make: MakeStore) -> None:
    store = make(Quota(max_records=2))
    store.put(entry(value(1), stored_at=5.0, cached=True))
    store.put(entry(value(2), stored_at=6.0, cached=True))
    with pytest.raises(OverQuota):
        store.put(entry(value(3), stored_at=4.0, cached=True))
    store.put(entry(value(3), stored_at=5.5, cached=True))
    assert keys(store) == {value(2).key, value(3).key}


def test_as_many_cached_copies_as_the_bytes_need_are_evicted(make: MakeStore) -> None:
    store = make(Quota(max_bytes=100))
    for n in range(10):
        store.put(entry(value(n, 10), stored_at=float(n), cached=True))
    store.put(entry(value(99, 35), stored_at=20.0))
    assert keys(store) == {value(n, 10).key for n in range(4, 10)} | {value(99, 35).key}
    assert store.usage() == (7, 95)


def test_cached_copies_stored_at_the_same_time_are_evicted_in_key_order(
    make: MakeStore,
) -> None:
    store = make(Quota(max_records=4))
    cached = [value(n) for n in range(4)]
    for record in cached:
        store.put(entry(record, stored_at=1.0, cached=True))
    store.put(entry(value(9), stored_at=2.0))
    store.put(entry(value(10), stored_at=2.0))
    evicted = sorted(r.key for r in cached)[:2]
    assert keys(store).isdisjoint(evicted)
    assert len(store) == 4


# -- deadlines ----------------------------------------------------------------------


def test_next_deadline_is_the_earliest_of_all_three(make: MakeStore) -> None:
    store = make()
    assert store.next_deadline() is None
    store.put(entry(value(1), expire_at=100.0, replicate_at=60.0))
    assert store.next_deadline() == 60.0
    store.put(
        entry(value(2), SELF, expire_at=None, replicate_at=70.0, republish_at=30.0, origin=True)
    )
    assert store.next_deadline() == 30.0
    store.put(entry(value(3), expire_at=20.0, cached=True))
    assert store.next_deadline() == 20.0
    store.delete(value(3).key)
    assert store.next_deadline() == 30.0
    store.reschedule(value(2).key, republish_at=90.0)
    assert store.next_deadline() == 60.0


def test_expire_deletes_what_is_due_and_says_how_many(make: MakeStore) -> None:
    store = make()
    store.put(entry(value(1), expire_at=10.0))
    store.put(entry(value(2), expire_at=20.0))
    store.put(entry(value(3), expire_at=30.0))
    store.put(entry(value(4), SELF, expire_at=None, republish_at=50.0, origin=True))
    assert store.expire(5.0) == 0
    assert store.expire(20.0) == 2
    assert keys(store) == {value(3).key, value(4).key}
    assert store.usage() == (2, 20)
    assert store.expire(1e12) == 1
    assert keys(store) == {value(4).key}


def test_due_for_replication_is_ordered_limited_and_stays_due(make: MakeStore) -> None:
    store = make()
    times = {1: 30.0, 2: 10.0, 3: 20.0, 4: 20.0, 5: 90.0}
    for n, when in times.items():
        store.put(entry(value(n), replicate_at=when))
    store.put(entry(value(6), cached=True))
    due = store.due_for_replication(50.0, 10)
    tied = sorted([value(3).key, value(4).key])
    assert [e.key for e in due] == [value(2).key, *tied, value(1).key]
    assert [e.key for e in store.due_for_replication(50.0, 2)] == [value(2).key, tied[0]]
    assert store.due_for_replication(50.0, 0) == []
    assert store.due_for_replication(5.0, 10) == []
    assert store.due_for_replication(50.0, 10) == due
    store.reschedule(value(2).key, replicate_at=70.0)
    assert [e.key for e in store.due_for_replication(50.0, 1)] == [tied[0]]
    assert store.get(value(2).key).replicate_at == 70.0  # type: ignore[union-attr]


def test_due_for_republish_lists_this_nodes_records(make: MakeStore) -> None:
    store = make()
    for n, when in ((1, 40.0), (2, 20.0), (3, 60.0)):
        store.put(entry(value(n), SELF, expire_at=None, republish_at=when, origin=True))
    store.put(entry(value(4), replicate_at=1.0))
    assert [e.key for e in store.due_for_republish(50.0, 10)] == [value(2).key, value(1).key]
    assert [e.key for e in store.due_for_republish(50.0, 1)] == [value(2).key]
    store.reschedule(value(2).key, republish_at=100.0)
    assert [e.key for e in store.due_for_republish(50.0, 10)] == [value(1).key]


def test_reschedule_moves_only_deadlines_a_record_can_have(make: MakeStore) -> None:
    store = make()
    store.put(entry(value(1), replicate_at=10.0))
    store.put(entry(value(2), cached=True))
    store.reschedule(value(1).key, replicate_at=20.0, republish_at=30.0)
    store.reschedule(value(2).key, replicate_at=20.0, republish_at=30.0)
    store.reschedule(value(3).key, replicate_at=20.0)
    one, two = store.get(value(1).key), store.get(value(2).key)
    assert one is not None and two is not None
    assert (one.replicate_at, one.republish_at) == (20.0, None)
    assert (two.replicate_at, two.republish_at) == (None, None)
    store.reschedule(value(1).key)
    assert store.get(value(1).key) == one
    assert store.get(value(3).key) is None


# -- both stores behave alike ---------------------------------------------------------

SALTS = (b"", b"salt")
POOL: list[Record] = [
    ImmutableValue(b"a"),
    ImmutableValue(b"b" * 40),
    ImmutableValue(ALICE.public_key),  # a squat on Alice's signed key
    *(
        SignedValue.create(who, v, seq, salt)
        for who in (ALICE, BOB)
        for salt in SALTS
        for seq in range(4)
        for v in (b"v", b"w" * 60)
    ),
    *(
        PlainValue(k, v, seq)
        for k in (key_for("p"), signed_key(ALICE.public_key), key_for(b"a"))
        for seq in (0, 5, 9)
        for v in (b"p", b"q" * 30)
    ),
]
KEYS = sorted({r.key for r in POOL})
PUBLISHERS = (SELF, "a", "b")
# Coarse times, so that deadlines tie and fall exactly on "now".
times = st.integers(0, 12).map(float)
deadlines = st.none() | st.integers(0, 12).map(float)


@st.composite
def entries(draw: Any) -> StoredRecord:
    origin, cached = draw(st.booleans()), draw(st.booleans())
    stored_at = draw(times)
    expire_in, replicate_in, republish_in = draw(deadlines), draw(deadlines), draw(deadlines)
    return StoredRecord(
        record=draw(st.sampled_from(POOL)),
        publisher=draw(st.sampled_from(PUBLISHERS)),
        stored_at=stored_at,
        expire_at=None if origin or expire_in is None else stored_at + expire_in,
        replicate_at=None if cached or replicate_in is None else stored_at + replicate_in,
        republish_at=None if not origin or republish_in is None else stored_at + republish_in,
        cached=cached and not origin,
        origin=origin,
    )


class UnsyncedSQLiteStore(SQLiteStore):
    """What this comparison checks is behaviour, not durability: no fsyncs."""

    def __init__(self, path: Path, quota: Quota) -> None:
        super().__init__(path, quota)
        self._db.execute("PRAGMA synchronous = OFF")


class SameBehaviour(RuleBasedStateMachine):
    """Every operation on MemoryStore and SQLiteStore has the same outcome."""

    empty: Path  # a new, empty store file to start from: cheaper than creating one

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.path = Path(self.directory.name) / "store.sqlite"
        shutil.copyfile(self.empty, self.path)
        self.quota = Quota(
            max_records=5, max_bytes=2000, max_records_per_publisher=4, max_bytes_per_publisher=600
        )
        self.memory = MemoryStore(self.quota)
        self.sqlite = UnsyncedSQLiteStore(self.path, self.quota)

    def both(self, call: Callable[[IValueStore], Any]) -> Any:
        """The outcome, the same from both stores: a result or a refusal type."""
        outcomes = []
        for store in (self.memory, self.sqlite):
            try:
                outcomes.append(call(store))
            except ValueRefused as refusal:
                outcomes.append(type(refusal))
        assert outcomes[0] == outcomes[1]
        return outcomes[0]

    @initialize(news=st.lists(entries(), min_size=4, max_size=12))
    def fill(self, news: list[StoredRecord]) -> None:
        self.put(news)

    @rule(news=st.lists(entries(), min_size=1, max_size=6))
    def put(self, news: list[StoredRecord]) -> None:
        for new in news:
            self.both(lambda s, new=new: s.put(new))

    @rule(new=entries(), expected_seq=st.integers(0, 3))
    def compare_and_swap(self, new: StoredRecord, expected_seq: int) -> None:
        self.both(lambda s: s.put(new, expected_seq))

    @rule(key=st.sampled_from(KEYS))
    def get(self, key: bytes) -> None:
        self.both(lambda s: s.get(key))

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: bytes) -> None:
        self.both(lambda s: s.delete(key))

    @rule(now=st.integers(0, 30).map(float))
    def expire(self, now: float) -> None:
        self.both(lambda s: s.expire(now))

    @rule(now=st.integers(0, 30).map(float), limit=st.integers(0, 5))
    def due(self, now: float, limit: int) -> None:
        self.both(lambda s: s.due_for_replication(now, limit))
        self.both(lambda s: s.due_for_republish(now, limit))

    @rule(key=st.sampled_from(KEYS), replicate_at=deadlines, republish_at=deadlines)
    def reschedule(
        self, key: bytes, replicate_at: float | None, republish_at: float | None
    ) -> None:
        self.both(lambda s: s.reschedule(key, replicate_at, republish_at))

    @rule()
    def reopen(self) -> None:
        self.sqlite.close()
        self.sqlite = UnsyncedSQLiteStore(self.path, self.quota)

    @invariant()
    def same_contents(self) -> None:
        self.both(len)
        self.both(lambda s: sorted(s.records(), key=lambda e: e.key))
        self.both(lambda s: s.next_deadline())
        for publisher in (None, *PUBLISHERS):
            self.both(lambda s, p=publisher: s.usage(p))

    def teardown(self) -> None:
        self.memory.close()
        self.sqlite.close()
        self.directory.cleanup()


def test_memory_and_sqlite_stores_behave_alike(tmp_path: Path) -> None:
    class FromEmpty(SameBehaviour):
        empty = tmp_path / "empty.sqlite"

    SQLiteStore(FromEmpty.empty).close()
    run_state_machine_as_test(
        FromEmpty, settings=settings(max_examples=60, stateful_step_count=40, deadline=None)
    )
