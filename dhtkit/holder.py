"""This node as a holder of records: it answers ``store`` and ``get``.

Whatever a peer sends is checked in full (shape, size, signature, key, the
write time of a plain value, and every number: ttl, seq, expected seq)
before the store's own rules decide; every refusal goes back to the sender
as a :class:`~dhtkit.rpc.RemoteError` with its reason code and is counted
here (``store_refused_<reason>``, ``get_refused_malformed``). A peer's bad
input is never logged: it cannot fill the log.

Plain values are ordered by their writer's clock, so a replica refuses a
write time more than ``max_clock_skew`` seconds ahead of its own clock
(:class:`~dhtkit.values.WriteTimeAhead`): a write from the future would
otherwise win against every honest write until its time came, and a
publisher could renew it for ever.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from dhtkit.contact import Contact
from dhtkit.keyspace import check_id
from dhtkit.republish import Scheduler
from dhtkit.rpcerrors import RemoteError
from dhtkit.storage.interface import SELF, IValueStore, StorageError, StoredRecord
from dhtkit.storage.networks import source_network
from dhtkit.transport import IRPC
from dhtkit.values import (
    PlainValue,
    Record,
    ValueRefused,
    WriteTimeAhead,
    check_expected_seq,
    check_ttl,
    from_wire,
    to_wire,
)

#: The largest replica set a STORE_NEAR may say it looks for.
MAX_NEAR = 256


class Watcher(Protocol):
    """Told of each new version this node takes of a key it watches (see :mod:`dhtkit.listen`)."""

    def watches(self, key: bytes) -> bool: ...

    def new_version(self, record: Record) -> None: ...


class Holder:
    """Keeps the records peers store here and hands them out.

    It registers the ``store`` and ``get`` RPCs on ``rpc``; the parameters
    are :class:`~dhtkit.node.DHTNode`'s, which makes one.
    """

    def __init__(
        self,
        rpc: IRPC,
        store: IValueStore,
        clock: IReactorTime,
        scheduler: Scheduler,
        counters: Counter[str],
        *,
        max_value_size: int,
        expire_after: float,
        replicate_every: float,
        max_clock_skew: float,
    ) -> None:
        self.rpc = rpc
        self.store = store
        self.clock = clock
        self.scheduler = scheduler
        self.counters = counters
        self.max_value_size = max_value_size
        self.expire_after = expire_after
        self.replicate_every = replicate_every
        self.max_clock_skew = max_clock_skew
        #: Told of every new version of the keys they watch.
        self.watchers: list[Watcher] = []
        #: ``nearest(key, sender, count)``: the contacts nearest ``key`` we
        #: name to ``sender`` (Kademlia's FIND_NODE answer), and whether we
        #: may be among the ``count`` nodes closest to it. With it, set
        #: before :meth:`start`, STORE_NEAR is answered.
        self.nearest: Callable[[bytes, Contact, int], tuple[list[bytes], bool]] | None = None

    def start(self) -> None:
        """Answer ``store`` and ``get`` queries, and ``store_near`` ones
        where the overlay names the nodes nearest a key (:attr:`nearest`)."""
        self.rpc.register("store", self.answer_store)
        self.rpc.register("get", self.answer_get, idempotent=True)
        if self.nearest is not None:
            self.rpc.register("store_near", self.answer_store_near, idempotent=True)

    def stop(self) -> None:
        """Stop answering them (the store stays open: its owner closes it)."""
        self.rpc.unregister("store")
        self.rpc.unregister("get")
        if self.nearest is not None:
            self.rpc.unregister("store_near")

    def keep(self, entry: StoredRecord, expected_seq: int | None = None) -> StoredRecord:
        """Put ``entry`` in the store; a new version goes to the watchers of its key.

        A copy of the version already held only refreshes its deadlines,
        and nobody hears of it.
        """
        watching = [w for w in self.watchers if w.watches(entry.key)]
        old = self.store.get(entry.key) if watching else None
        stored = self.store.put(entry, expected_seq)
        if watching and (old is None or old.record != stored.record):
            for watcher in watching:
                watcher.new_version(stored.record)
        return stored

    def accept(
        self,
        sender: Contact,
        record: Record,
        ttl: float,
        expected_seq: int | None,
        cached: bool,
    ) -> defer.Deferred[bool]:
        """Keep a record a peer (or this node) stores here; fires with True
        once it is durable, so that a STORE is acknowledged only then."""
        now = self.clock.seconds()
        # Charged to the network the store came from, whatever key signed
        # the record: keys are free to make, addresses in many networks are not.
        publisher = (
            SELF if sender.node_id == self.rpc.identity.node_id else source_network(*sender.address)
        )
        entry = StoredRecord(
            record,
            publisher,
            now,
            now + min(ttl, self.expire_after),
            replicate_at=None if cached else now + self.replicate_every,
            cached=cached,
        )
        self.scheduler.poke(self.keep(entry, expected_seq))
        return self.store.durable().addCallbacks(lambda _: True, self._not_durable)

    def _not_durable(self, failure: Failure) -> bool:
        failure.trap(StorageError)  # type: ignore[no-untyped-call]  # logged by the store
        self.counters["store_not_durable"] += 1
        raise RemoteError("unavailable", "this node cannot make a record durable now")

    def answer_store(self, sender: Contact, args: Any) -> defer.Deferred[bool]:
        """Answer a STORE: ``[record, ttl, expected seq, cached]``."""
        self.counters["store_received"] += 1
        try:
            if not (isinstance(args, list) and len(args) == 4):
                raise ValueError("store takes [record, ttl, expected seq, cached]")
            wire_record, wire_ttl, wire_expected_seq, cached = args
            ttl = check_ttl(wire_ttl)
            expected_seq = check_expected_seq(wire_expected_seq)
            if type(cached) is not bool:
                raise ValueError("cached must be a boolean")
            record = self._record(wire_record)
            return self.accept(sender, record, ttl, expected_seq, cached)
        except ValueError as e:  # a ValueRefused too
            raise self._refused(e) from None

    def answer_store_near(self, sender: Contact, args: Any) -> defer.Deferred[list[Any]]:
        """Answer a STORE_NEAR: ``[record, ttl, count]``, a put's STORE that
        is also a FIND_NODE for the record's key.

        It is answered ``[stored, contacts]``: the contacts this node names
        for the key (:attr:`nearest`), and whether it stored the record. It
        does not when it knows ``count`` nodes closer to the key than
        itself: it is not one of the ``count`` replicas the put looks for.
        It carries no compare-and-swap, so running it again for a retry
        stores the same record again: it is idempotent, and no reply is
        kept for retries.
        """
        self.counters["store_received"] += 1
        try:
            if not (isinstance(args, list) and len(args) == 3):
                raise ValueError("store_near takes [record, ttl, count]")
            wire_record, wire_ttl, count = args
            ttl = check_ttl(wire_ttl)
            if not (type(count) is int and 1 <= count <= MAX_NEAR):
                raise ValueError("count is a number of nodes, 1-{}".format(MAX_NEAR))
            record = self._record(wire_record)
            assert self.nearest is not None  # registered only then
            contacts, close = self.nearest(record.key, sender, count)
            if not close:
                self.counters["store_declined_not_close"] += 1
                return defer.succeed([False, contacts])
            stored = self.accept(sender, record, ttl, None, False)
            return stored.addCallback(lambda _: [True, contacts])
        except ValueError as e:  # a ValueRefused too
            raise self._refused(e) from None

    def _record(self, wire_record: Any) -> Record:
        """The record of a STORE, every field checked.

        :raises ValueRefused: the record is refused.
        :raises ValueError: it is malformed.
        """
        record = from_wire(wire_record)
        # Every field is checked before the key is computed from them;
        # a record is stored under its own key, so nothing more to match.
        record.check(self.max_value_size)
        if isinstance(record, PlainValue) and record.seq > self.latest_write_time():
            # A write time ahead would pin the value against every later write.
            raise WriteTimeAhead(
                "the write time is {:.1f} s ahead of this node's clock; at most {} s"
                " is accepted".format(
                    record.seq / 1_000_000 - self.clock.seconds(), self.max_clock_skew
                )
            )
        return record

    def _refused(self, error: ValueError) -> RemoteError:
        """What a refused STORE answers, counted by its reason."""
        reason = error.reason if isinstance(error, ValueRefused) else "malformed"
        self.counters["store_refused_" + reason] += 1
        return RemoteError(reason, str(error))

    def latest_write_time(self) -> int:
        """The latest plain-value write time (in microseconds) accepted now."""
        return int((self.clock.seconds() + self.max_clock_skew) * 1_000_000)

    def answer_get(self, sender: Contact, args: Any) -> list[Any] | None:
        self.counters["get_received"] += 1
        try:
            check_id(args)
        except ValueError as e:
            self.counters["get_refused_malformed"] += 1
            raise RemoteError("malformed", "get takes a key: {}".format(e)) from None
        return self.answer(args)

    def answer(self, key: bytes) -> list[Any] | None:
        """What a peer asking for ``key`` gets: ``[record, ttl]``, or None."""
        entry = self.live(key)
        if entry is None:
            return None
        return [to_wire(entry.record), self.remaining(entry)]

    def remaining(self, entry: StoredRecord) -> float:
        """The lifetime a copy of ``entry`` may be given."""
        if entry.expire_at is None:
            return self.expire_after
        return entry.expire_at - self.clock.seconds()

    def live(self, key: bytes) -> StoredRecord | None:
        """Our copy of ``key``, unless it expired (and awaits deletion)."""
        entry = self.store.get(key)
        if entry is None or (
            entry.expire_at is not None and entry.expire_at <= self.clock.seconds()
        ):
            return None
        return entry
