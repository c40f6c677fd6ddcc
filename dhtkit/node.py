"""DHTNode: put and get values over any overlay.

This is the value layer every overlay shares. The overlay says which nodes
are responsible for a key (:class:`~dhtkit.overlay.IOverlay`); the node
stores a record on them with the ``store`` RPC, reads it back with ``get``,
keeps its own copies in an :class:`~dhtkit.storage.IValueStore`, and lets
one :class:`~dhtkit.republish.Scheduler` expire, replicate and republish
them.

A put succeeds when enough of the responsible nodes acknowledge it: by
default a majority of a full replica set, ``replication`` nodes or as many
as the network is known to hold, not merely of the nodes a lookup happened
to find (a lookup whose seeds were dead finds only ourselves). Otherwise
it fails with :class:`PutFailed`, so ``put`` firing with a count always
means a majority holds the value; when the nodes refuse, the caller gets
the same typed refusal a local store would raise. A get asks
the responsible nodes, checks what comes back, returns the newest valid
version, and stores that version on the replicas that answered with an
older one or none (read repair). Over Kademlia a get ends once a read
quorum of the closest copies answered (``read_quorum``); elsewhere it asks
every responsible node. ``docs/values.rst`` says what a read guarantees.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, TypeVar, cast

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhtkit.bounded import BoundedDict
from dhtkit.contact import Contact
from dhtkit.handover import PER_PEER_RATE, RATE, HandOverQueue
from dhtkit.holder import MAX_NEAR, Holder
from dhtkit.identity import Identity
from dhtkit.keyspace import check_id, distance
from dhtkit.listen import Callback, ListenHub, Listening
from dhtkit.listeners import ListenerTable
from dhtkit.overlay import IOverlay, IRoutingOverlay, IValueFinder, Lookup
from dhtkit.quorumread import QuorumRead
from dhtkit.republish import EXPIRE_AFTER, REPLICATE_EVERY, REPUBLISH_EVERY, Scheduler
from dhtkit.rpcerrors import RemoteError, RPCError
from dhtkit.sealed import seal, unseal
from dhtkit.storage.interface import SELF, IValueStore, StoredRecord
from dhtkit.transport import IRPC
from dhtkit.values import (
    MAX_TTL,
    MAX_VALUE_SIZE,
    REFUSALS,
    CASMismatch,
    ImmutableValue,
    KindConflict,
    NotPublisher,
    PlainValue,
    Record,
    SignedValue,
    ValueDeleted,
    ValueRefused,
    ValueTooLarge,
    admit,
    check_record,
    check_ttl,
    check_value,
    from_wire,
    newest,
    refusal_for,
    signed_key,
    to_wire,
)
from dhtkit.wire import MalformedMessage, MessageTooLarge

READ_QUORUM = 3
"""Copies of a mutable value a get reads before it answers, by default."""

MAX_CLOCK_SKEW = 5.0
"""Seconds a plain value's write time may lead a replica's clock, by default."""

CHECKED_RECORDS = 256
"""How many records that passed their checks a node remembers, to spare
checking their signatures again when more copies come."""


class PutFailed(Exception):
    """Too few responsible nodes acknowledged a put (and none refused it).

    :ivar stored: acknowledgments, our own copy included.
    :ivar required: acknowledgments needed.
    :ivar reached: responsible nodes the lookup found.
    :ivar replica_set: how many nodes should hold the key.
    """

    def __init__(
        self, stored: int, required: int, reached: int, replica_set: int | None = None
    ) -> None:
        super().__init__(
            "the value reached {} of the {} nodes found responsible for it{}; {} needed".format(
                stored,
                reached,
                ""
                if replica_set is None or replica_set == reached
                else " (a full replica set is {})".format(replica_set),
                required,
            )
        )
        self.stored = stored
        self.required = required
        self.reached = reached
        self.replica_set = replica_set if replica_set is not None else reached


class NotJoined(Exception):
    """This node belongs to a network of others but has no contact in it.

    It joins through bootstrap addresses or contacts it knew, or it had
    contacts and lost them all: a put would stay on this node alone and a
    get would answer from its own copies, so both are refused until it
    is back in its network. (A node that started a network of its own and
    has been alone since is not refused: it is the whole network.)

    :ivar lost: whether the node had contacts (and lost them all) rather
        than never joined.
    """

    def __init__(self, lost: bool) -> None:
        if lost:
            message = (
                "the node has lost every contact: it is cut off from its network "
                "(check the network and its bootstrap addresses)"
            )
        else:
            message = (
                "the node has no contacts yet: it has not joined its network "
                "(check its bootstrap addresses)"
            )
        super().__init__(message)
        self.lost = lost


class DHTNode:
    """The value layer of one node.

    :param rpc: the node's RPC protocol; the node's :class:`~dhtkit.holder.Holder`
        registers ``store`` and ``get`` on it.
    :param overlay: answers who is responsible for a key.
    :param store: this node's records.
    :param clock: defaults to the RPC layer's clock.
    :param replication: nodes each value is stored on (default: the
        overlay's ``k``).
    :param quorum: acknowledgments that make a put succeed (default: a
        majority of a full replica set, as the module says).
    :param max_value_size: the largest value accepted, in bytes.
    :param expire_after: seconds a stored record lives unless republished.
    :param replicate_every: seconds between a holder's replications.
    :param republish_every: seconds between the publisher's republishes.
    :param max_clock_skew: how far (seconds) ahead of our clock a plain
        value's write time may be; later ones are refused, or they would win
        against every honest write until then. Plain values are ordered by
        their writer's clock (not by each replica's time of arrival, which
        would let replicas disagree on the newest write for ever), so this
        bound is what a write from the future can gain: a few seconds by
        default. Nodes whose clocks differ by more need NTP, or a larger
        bound.
    :param hand_over_rate: records a second handed over to new neighbours,
        all together; :param hand_over_peer_rate: to one of them (see
        :mod:`dhtkit.handover`).
    :param disjoint_paths: signed reads look the key up over this many
        lookups that never ask the same node (S/Kademlia), when the overlay
        can (Kademlia); 1 is a plain lookup.
    :param read_quorum: over an overlay with FIND_VALUE (Kademlia), a get
        of a mutable value ends once this many of the closest nodes
        answered with a valid copy (our own copy counts as one) and every
        node closer than them answered too (see ``docs/values.rst``);
        ``replication - quorum + 1`` makes every read meet every successful
        write, at more datagrams per get.
    """

    _log = Logger()

    def __init__(
        self,
        rpc: IRPC,
        overlay: IOverlay,
        store: IValueStore,
        *,
        clock: IReactorTime | None = None,
        replication: int | None = None,
        quorum: int | None = None,
        max_value_size: int = MAX_VALUE_SIZE,
        expire_after: float = EXPIRE_AFTER,
        replicate_every: float = REPLICATE_EVERY,
        republish_every: float = REPUBLISH_EVERY,
        max_clock_skew: float = MAX_CLOCK_SKEW,
        hand_over_rate: float = RATE,
        hand_over_peer_rate: float = PER_PEER_RATE,
        disjoint_paths: int = 1,
        read_quorum: int = READ_QUORUM,
    ) -> None:
        if read_quorum < 1:
            raise ValueError("read_quorum must be at least 1")
        self.read_quorum = read_quorum
        # Records that passed their checks lately: the copies a read gets of
        # one version are alike, and a signature is checked once, not at
        # every copy (75 us each).
        self._checked: BoundedDict[tuple[bytes, Record], None] = BoundedDict(CHECKED_RECORDS)
        self.rpc = rpc
        # Signed reads over this many disjoint lookups, where the overlay
        # offers them (Kademlia's find_value_disjoint).
        self.disjoint_paths = disjoint_paths
        self.overlay = overlay
        self.store = store
        self.clock = clock if clock is not None else rpc.clock
        self.replication = replication if replication is not None else int(overlay.k)
        if not 1 <= self.replication <= MAX_NEAR:
            raise ValueError("replication is 1-{} nodes".format(MAX_NEAR))
        self.quorum = quorum
        self.max_value_size = max_value_size
        self.expire_after = expire_after
        self.replicate_every = replicate_every
        self.max_clock_skew = max_clock_skew
        self.scheduler = Scheduler(
            store,
            self.clock,
            self._replicate,
            self._republish,
            replicate_every=replicate_every,
            republish_every=republish_every,
        )
        self.counters: Counter[str] = Counter(
            dict.fromkeys(
                ("handed_over", "hand_over_deferred", "hand_over_dropped", "hand_over_skipped"),
                0,
            )
        )
        self.holder = Holder(
            rpc,
            store,
            self.clock,
            self.scheduler,
            self.counters,
            max_value_size=max_value_size,
            expire_after=expire_after,
            replicate_every=replicate_every,
            max_clock_skew=max_clock_skew,
        )
        # Listeners this node keeps as a holder, and its own listenings.
        self.listeners = ListenerTable(rpc, self.clock, self.holder.answer, self.counters)
        self.listenings = ListenHub(
            rpc,
            overlay,
            self.holder,
            self.clock,
            self.counters,
            replication=self.replication,
            valid_answer=self._valid_answer,
            max_value_size=max_value_size,
        )
        self.holder.watchers += [self.listeners, self.listenings]
        self.hand_overs = HandOverQueue(
            self.clock,
            self._hand_over_one,
            self.counters,
            rate=hand_over_rate,
            per_peer_rate=hand_over_peer_rate,
        )
        # What the overlay can do beyond find_responsible.
        self._finder = cast(IValueFinder, overlay) if IValueFinder.providedBy(overlay) else None
        self._routing = overlay if IRoutingOverlay.providedBy(overlay) else None
        if self._finder is not None:
            self._finder.serve_values(self.holder.answer)
            self.holder.nearest = self._finder.nearest_for
        if self._routing is not None:
            self._routing.add_neighbour_listener(self._hand_over)
        self._running = False
        self._peak_seen = (1, self.clock.seconds())
        self._peers_expected = False  # told it joins through others (expect_peers)
        self._had_peers = False  # has seen a contact since it started

    @property
    def identity(self) -> Identity:
        identity: Identity = self.rpc.identity
        return identity

    def start(self) -> None:
        """Answer the value layer's RPCs and start the expire / replicate / republish schedule."""
        self._running = True
        self.holder.start()
        self.listeners.start()
        self.listenings.start()
        self.scheduler.start()

    def stop(self) -> None:
        """Stop answering, the schedule and the hand-overs.

        The store stays open: its owner closes it.
        """
        self._running = False
        self.scheduler.stop()
        self.hand_overs.stop()
        self.listenings.stop()
        self.listeners.stop()
        self.holder.stop()

    def expect_peers(self) -> None:
        """Say that this node joins a network of others (through bootstrap
        addresses, or contacts it knew before a restart).

        Until it has a contact, puts and gets then fail with
        :class:`NotJoined`. A node never told so started a network of its
        own: alone, it stores and reads on itself (one replica of one);
        once it has had contacts, losing them all makes it refuse too.
        """
        self._peers_expected = True

    def _check_in_network(self) -> None:
        """Raise :class:`NotJoined` when this node should have contacts and has none."""
        routing = self._routing
        if routing is None:
            return  # a static overlay's members are all there are
        if routing.contact_count():
            self._had_peers = True
        elif self._had_peers or self._peers_expected:
            raise NotJoined(lost=self._had_peers)

    # -- the public API --------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> defer.Deferred[int]:
        """Store ``value`` under ``key``, last writer wins; fire with the replica count."""
        try:
            record = PlainValue(check_id(key), value, self._write_time(), self.identity.public_key)
        except ValueError as e:
            return defer.fail(e)
        return self._publish(record, None)

    def _write_time(self) -> int:
        return int(self.clock.seconds() * 1_000_000)

    def put_immutable(self, value: bytes) -> defer.Deferred[int]:
        """Store ``value`` under its own hash, :func:`~dhtkit.values.immutable_key`."""
        return self._publish(ImmutableValue(value), None)

    def get(self, key: bytes) -> defer.Deferred[bytes | None]:
        """The newest value stored under ``key``, of any kind, or None.

        Over an overlay with FIND_VALUE (Kademlia) the lookup stops at the
        first node holding an immutable value: its key is its hash, so no
        other version exists. Mutable values are looked for at all the
        responsible nodes, for the newest version.
        """
        return self._fetch(key, stop_at_immutable=True).addCallback(
            lambda r: None if r is None else _live(r).value
        )

    def put_signed(
        self,
        value: bytes,
        salt: bytes = b"",
        identity: Identity | None = None,
        *,
        seq: int | None = None,
        expected_seq: int | None = None,
    ) -> defer.Deferred[int]:
        """Store a new version of the mutable value of ``identity`` and ``salt``.

        Without ``seq`` the version is one more than the newest found in the
        network. With ``expected_seq`` it is stored only where the present
        version has that sequence number (compare-and-swap).
        """
        return defer.Deferred.fromCoroutine(
            self._put_signed(value, salt, identity or self.identity, seq, expected_seq)
        )

    async def _put_signed(
        self,
        value: bytes,
        salt: bytes,
        identity: Identity,
        seq: int | None,
        expected_seq: int | None,
    ) -> int:
        check_value(value, self.max_value_size)  # before any traffic
        found: list[Lookup] = []
        if seq is None:
            seq = await self._next_seq(identity.public_key, salt, expected_seq, found)
        record = SignedValue.create(identity, value, seq, salt)
        return await self._publish_async(record, expected_seq, *found[:1])

    def next_seq(
        self, public_key: bytes, salt: bytes = b"", expected_seq: int | None = None
    ) -> defer.Deferred[int]:
        """The sequence number :meth:`put_signed` gives a new version without ``seq``.

        One more than ``expected_seq`` for a compare-and-swap; else one more
        than the newest version found in the network (1 if there is none).
        """
        return defer.Deferred.fromCoroutine(self._next_seq(public_key, salt, expected_seq))

    async def _next_seq(
        self,
        public_key: bytes,
        salt: bytes,
        expected_seq: int | None,
        found: list[Lookup] | None = None,
    ) -> int:
        """:meth:`next_seq`; with ``found``, a read of every close node
        whose lookup lands there, for the write that follows to reuse."""
        if expected_seq is not None:
            return expected_seq + 1
        # A tombstone counts: the next version comes after the delete.
        current = await self._fetch_signed(public_key, salt, found)
        return 1 if current is None else current.seq + 1

    def get_signed(
        self, public_key: bytes, salt: bytes = b""
    ) -> defer.Deferred[SignedValue | None]:
        """The newest valid version of the mutable value of ``public_key`` and ``salt``.

        :raises ValueDeleted: the newest version is a delete.
        """

        def live(record: SignedValue | None) -> SignedValue | None:
            return None if record is None else _live(record)

        return self._fetch_signed(public_key, salt).addCallback(live)

    def _fetch_signed(
        self, public_key: bytes, salt: bytes = b"", found: list[Lookup] | None = None
    ) -> defer.Deferred[SignedValue | None]:
        """The newest version, tombstones included."""

        def signed_only(record: Record | None) -> SignedValue | None:
            return record if isinstance(record, SignedValue) else None

        try:
            key = signed_key(public_key, salt)
        except TypeError as e:
            return defer.fail(e)
        return self._fetch(key, paths=self.disjoint_paths, found=found).addCallback(signed_only)

    def delete(self, key: bytes) -> defer.Deferred[int]:
        """Withdraw the plain value this node put under ``key``; fire with the replica count.

        The republishing stops at once (durably: the store's record becomes
        the tombstone), and a tombstone signed by this node replaces the
        value on the responsible nodes, which keep it until it expires: so
        no older copy comes back. Only the node that wrote the value can:
        otherwise :class:`~dhtkit.values.NotPublisher`, before any traffic
        when the present value is known to be someone else's.

        :raises LookupError: nothing is stored under ``key``.
        """
        return defer.Deferred.fromCoroutine(self._delete(key))

    async def _delete(self, key: bytes) -> int:
        check_id(key)
        found: list[Lookup] = []
        current = await self._fetch(key, found=found)
        if current is None:
            raise LookupError("no value is stored under {}".format(key.hex()))
        if not isinstance(current, PlainValue):
            raise KindConflict(
                "a {} value is stored under {}; only its signer can delete it, "
                "with delete_signed".format(current.kind, key.hex())
            )
        if not current.deleted and current.owner != self.identity.public_key:
            raise NotPublisher(
                "only the node that wrote a plain value can delete it; the value under {} "
                "was written by {}".format(key.hex(), current.owner.hex() or "a node unknown")
            )
        seq = max(self._write_time(), current.seq + 1)
        return await self._publish_async(
            PlainValue.tombstone(self.identity, key, seq), None, *found[:1]
        )

    def delete_signed(
        self,
        salt: bytes = b"",
        identity: Identity | None = None,
        *,
        seq: int | None = None,
        expected_seq: int | None = None,
    ) -> defer.Deferred[int]:
        """Delete the mutable value of ``identity`` (the node's own by default) and ``salt``.

        The delete is a signed tombstone, one version above the newest found
        (or ``seq``); the responsible nodes keep it until it expires and
        refuse every older version meanwhile. A later :meth:`put_signed`
        stores a new value above it. Fires with the replica count.
        """
        return defer.Deferred.fromCoroutine(
            self._delete_signed(salt, identity or self.identity, seq, expected_seq)
        )

    async def _delete_signed(
        self, salt: bytes, identity: Identity, seq: int | None, expected_seq: int | None
    ) -> int:
        found: list[Lookup] = []
        if seq is None:
            seq = await self._next_seq(identity.public_key, salt, expected_seq, found)
        return await self._publish_async(
            SignedValue.tombstone(identity, seq, salt), expected_seq, *found[:1]
        )

    def put_encrypted(
        self,
        value: bytes,
        recipient_public_key: bytes,
        salt: bytes = b"",
        identity: Identity | None = None,
        *,
        seq: int | None = None,
        expected_seq: int | None = None,
    ) -> defer.Deferred[int]:
        """Store ``value`` sealed for ``recipient_public_key``, as a signed value.

        The record is the signed mutable value of ``identity`` (the node's
        own by default) and ``salt``, as :meth:`put_signed` stores it; its
        value is a sealed box (see :mod:`dhtkit.sealed`) that only the
        recipient can open, with :meth:`get_encrypted`. The nodes storing
        it see only ciphertext. ``value`` may be up to
        :data:`~dhtkit.sealed.OVERHEAD` bytes shorter than the size limit.
        """
        identity = identity or self.identity
        try:
            sealed = seal(value, identity.public_key, recipient_public_key, self.max_value_size)
        except (ValueError, TypeError) as e:
            return defer.fail(e)
        return self.put_signed(sealed, salt, identity, seq=seq, expected_seq=expected_seq)

    def get_encrypted(
        self, public_key: bytes, salt: bytes = b"", identity: Identity | None = None
    ) -> defer.Deferred[bytes | None]:
        """The value ``public_key`` sealed under ``salt`` for this node (or ``identity``).

        None when nothing is stored.

        :raises ~dhtkit.sealed.NotSealedForUs: it is not sealed for this key,
            or not by ``public_key``, or it is damaged.
        :raises ValueDeleted: its publisher deleted it.
        """
        opener = identity or self.identity

        def opened(found: SignedValue | None) -> bytes | None:
            return None if found is None else unseal(found.value, public_key, opener)

        return self.get_signed(public_key, salt).addCallback(opened)

    def listen(self, key: bytes, callback: Callback) -> Listening:
        """Call ``callback(record)`` with the version of ``key`` held now and
        each newer one, once each and in order, until the handle's
        ``cancel()``; see :mod:`dhtkit.listen`."""
        return self.listenings.listen(key, callback)

    def listen_signed(self, public_key: bytes, salt: bytes, callback: Callback) -> Listening:
        """:meth:`listen` to the mutable value of ``public_key`` and ``salt``."""
        return self.listen(signed_key(public_key, salt), callback)

    def delete_local(self, key: bytes) -> defer.Deferred[bool]:
        """Drop this node's copy of ``key`` and stop republishing it.

        Copies on other nodes expire on their own, at most ``expire_after``
        after the last republish.
        """
        deleted = self.store.delete(key)
        return self.store.durable().addCallback(lambda _: deleted)

    def stats(self) -> dict[str, int]:
        """Counters of this node's value traffic, and the store's size."""
        stats = dict(self.counters)
        stats.update({"scheduler_" + k: v for k, v in self.scheduler.counters.items()})
        stats["records"], stats["record_bytes"] = self.store.usage()
        return stats

    # -- storing -----------------------------------------------------------------

    def _is_self(self, contact: Contact) -> bool:
        return contact.node_id == self.identity.node_id

    def _publish(self, record: Record, expected_seq: int | None) -> defer.Deferred[int]:
        return defer.Deferred.fromCoroutine(self._publish_async(record, expected_seq))

    async def _publish_async(
        self, record: Record, expected_seq: int | None, found: Lookup | None = None
    ) -> int:
        """Store ``record`` on its replica set: the nodes of ``found``, a
        lookup of its key the caller made just now, else of a new lookup."""
        check_record(record, record.key, self.max_value_size)
        self._check_in_network()
        local = self.holder.live(record.key)
        if local is not None:
            # A version we already hold newer than this one is refused here,
            # before any traffic. Our copy may be out of date, so for
            # compare-and-swap it proves only that a newer seq exists.
            held = local.record
            if expected_seq is not None and held.kind == record.kind and held.seq > expected_seq:
                raise CASMismatch(
                    "expected seq {}, but seq {} is stored".format(expected_seq, held.seq)
                )
            admit(held, record)
        if record.deleted and expected_seq is None:
            # Kept before any traffic: a compare-and-swap waits for the nodes' word.
            self._keep_tombstone(record)
        contacts, replica_set, stored, refusals = await self._place(
            record, self.expire_after, expected_seq, found
        )
        required = self.quorum if self.quorum is not None else replica_set // 2 + 1
        if stored < required or not contacts:
            if refusals:
                reason, _ = Counter(type(r) for r in refusals).most_common(1)[0]
                raise next(r for r in refusals if type(r) is reason)
            self.counters["puts_failed"] += 1
            raise PutFailed(stored, required, len(contacts), replica_set)
        if record.deleted:
            if expected_seq is not None:
                self._keep_tombstone(record)
            await self.store.durable()  # the tombstone that ends our republishing
            self.counters["deletes"] += 1
            return stored
        now = self.clock.seconds()
        kept = self.holder.keep(
            StoredRecord(
                record,
                SELF,
                now,
                None,
                republish_at=now + self.scheduler.republish_every,
                origin=True,
            )
        )
        self.scheduler.poke(kept)
        await self.store.durable()  # our own copy, which we republish
        self.counters["puts"] += 1
        return stored

    def _keep_tombstone(self, record: Record) -> None:
        """Our own delete, kept here before any traffic: it ends the
        republishing in the same write (so durably), and our replication
        sends it on until it expires, should the network miss it now."""
        now = self.clock.seconds()
        kept = self.holder.keep(
            StoredRecord(
                record, SELF, now, now + self.expire_after, now + self.scheduler.replicate_every
            )
        )
        self.scheduler.poke(kept)

    async def _place(
        self,
        record: Record,
        ttl: float,
        expected_seq: int | None = None,
        found: Lookup | None = None,
        *,
        others_only: bool = False,
    ) -> tuple[list[Contact], int, int, list[ValueRefused]]:
        """Store ``record`` on its replica set: (the nodes found, the size of
        a full replica set, acknowledgments, refusals).

        Over Kademlia, with no lookup of the key made just before
        (``found``) and no compare-and-swap, the lookup's last step asks the
        closest nodes with STORE_NEAR
        (:meth:`~dhtkit.overlay.IValueFinder.lookup_storing`), a STORE
        that names the nodes nearest the key as FIND_NODE would: one round
        trip and one query per replica fewer. A node that knows
        ``replication`` nodes closer to the key than itself declines to
        store; should it be among the closest found in the end all the
        same (those it knows did not answer), it is sent a plain STORE
        after the lookup, as is our own copy. A node that stored but is
        not among the closest found in the end (a later answer named
        closer ones) keeps its copy until it expires, and is not counted.
        With ``others_only``, our own copy is left as it is (a replication
        or a republish sends ours on).
        """
        finder = self._finder
        if finder is None or found is not None or expected_seq is not None:
            contacts, replica_set = await self._replica_set(record.key, found)
            if others_only:
                contacts = [c for c in contacts if not self._is_self(c)]
            stored, refusals = await self._store_on(contacts, record, ttl, expected_seq)
            return contacts, replica_set, stored, refusals
        # Peers refuse a ttl beyond MAX_TTL, whatever our own expire_after.
        args = [to_wire(record), min(ttl, MAX_TTL), self.replication]

        def answered(reply: Any) -> tuple[list[bytes], bool]:
            if not (
                type(reply) is list
                and len(reply) == 2
                and type(reply[0]) is bool
                and type(reply[1]) is list
            ):
                raise MalformedMessage("store_near is answered [stored, contacts]")
            return reply[1], reply[0]

        def refused(failure: Failure) -> tuple[list[bytes], ValueRefused | bool]:
            error = failure.value
            if isinstance(error, RemoteError) and error.code == "unknown_method":
                return [], False  # a node without STORE_NEAR: stored on after
            refusal = self._refusal(failure)
            if refusal is None:
                return failure  # type: ignore[return-value]  # as an unanswered query
            return [], refusal

        def store(contact: Contact) -> defer.Deferred[tuple[list[bytes], Any]]:
            call = self.rpc.call_contact(contact, "store_near", args, large_answer=True)
            return call.addCallback(answered).addErrback(refused)

        lookup = await finder.lookup_storing(record.key, self.replication, store)
        contacts = list(lookup.lookup.contacts)
        replica_set = self._full_set(lookup.lookup)
        if others_only:
            contacts = [c for c in contacts if not self._is_self(c)]
        # True: stored; False: declined (it knows nodes closer); or a refusal.
        outcomes = {contact.node_id: outcome for contact, outcome in lookup.answers}
        stored, refusals = await self._store_on(
            [c for c in contacts if outcomes.get(c.node_id, False) is False],
            record,
            ttl,
            expected_seq,
        )
        for contact in contacts:
            outcome = outcomes.get(contact.node_id)
            if outcome is True:
                stored += 1
                self.counters["stored_by_lookup"] += 1
            elif isinstance(outcome, ValueRefused):
                refusals.append(outcome)
        return contacts, replica_set, stored, refusals

    async def _replica_set(
        self, key: bytes, found: Lookup | None = None
    ) -> tuple[list[Contact], int]:
        """The nodes found responsible for ``key``, and how many there should be.

        Over a routing overlay, a full replica set is ``replication`` nodes,
        or fewer when the network is known to be smaller: the nodes found
        plus those that failed on the way, or the largest number of nodes
        (our contacts and ourselves) seen within the last
        ``replicate_every`` seconds, whichever is more. So a node whose
        contacts all died cannot count its own copy as a majority, while a
        node that started a network of its own and is still alone can.
        Over a static overlay the nodes found are all there are. ``found``,
        a lookup of ``key`` just made (the read before a write), saves one.
        """
        routing = self._routing
        if routing is None:
            contacts = await self.overlay.find_responsible(key, self.replication)
            return contacts, len(contacts)
        if found is None:
            found = await routing.lookup(key, self.replication)
        else:
            self.counters["lookups_reused"] += 1
        return list(found.contacts), self._full_set(found)

    def _full_set(self, found: Lookup) -> int:
        """The size of a full replica set, by the lookup ``found`` of its key
        (see :meth:`_replica_set`)."""
        known = max(len(found.contacts) + found.timeouts, self._network_seen())
        return min(self.replication, known)

    def _network_seen(self) -> int:
        """The most nodes (our contacts and ourselves) seen lately."""
        routing = self._routing
        if routing is None:
            return 1
        now = self.clock.seconds()
        size = routing.contact_count() + 1
        self._had_peers = self._had_peers or size > 1
        peak, when = self._peak_seen
        if size >= peak or now - when > self.replicate_every:
            self._peak_seen = (size, now)
        return self._peak_seen[0]

    async def _store_on(
        self,
        contacts: list[Contact],
        record: Record,
        ttl: float,
        expected_seq: int | None = None,
        cached: bool = False,
    ) -> tuple[int, list[ValueRefused]]:
        """Store ``record`` on ``contacts``: (acknowledgments, refusals)."""
        args = [to_wire(record), min(ttl, MAX_TTL), expected_seq, cached]
        calls: list[defer.Deferred[Any]] = []
        for contact in contacts:
            if self._is_self(contact):
                calls.append(
                    defer.maybeDeferred(
                        self.holder.accept, contact, record, ttl, expected_seq, cached
                    )
                )
            else:
                calls.append(self.rpc.call_contact(contact, "store", args))
        results = await defer.DeferredList(calls, consumeErrors=True)
        stored = 0
        refusals: list[ValueRefused] = []
        for ok, result in results:
            if ok:
                stored += 1
                continue
            assert isinstance(result, Failure)
            refusal = self._refusal(result)
            if refusal is not None:
                refusals.append(refusal)
            elif not isinstance(result.value, RPCError):
                self._log.failure("storing {key} failed", result, key=record.key.hex())
        return stored, refusals

    @staticmethod
    def _refusal(failure: Failure) -> ValueRefused | None:
        """The refusal a failed STORE stands for, if it is one (else it went
        unanswered, or failed here)."""
        error = failure.value
        if isinstance(error, ValueRefused):
            return error
        if isinstance(error, RemoteError) and error.code in REFUSALS:
            return refusal_for(error.code, error.message)
        if isinstance(error, MessageTooLarge):
            # max_value_size set above what one datagram can carry
            return ValueTooLarge("the record does not fit in a datagram")
        return None

    # -- reading -------------------------------------------------------------------

    def _fetch(
        self,
        key: bytes,
        stop_at_immutable: bool = False,
        paths: int = 1,
        found: list[Lookup] | None = None,
    ) -> defer.Deferred[Record | None]:
        """The newest record under ``key``. With ``found`` (a read before a
        write) every close node is read, and a lookup that converged on the
        key's replica set is appended to it, for the write to store on."""
        try:
            check_id(key)
            self._check_in_network()
        except (ValueError, NotJoined) as e:
            return defer.fail(e)
        if self._finder is not None:
            local = self.holder.live(key)
            if stop_at_immutable and local is not None and local.record.kind == "immutable":
                # Its key is its hash: no other version exists to look for.
                self.counters["gets"] += 1
                self.counters["gets_answered_locally"] += 1
                return defer.succeed(local.record)
            return defer.Deferred.fromCoroutine(
                self._find_value(self._finder, key, stop_at_immutable, paths, found)
            )
        return defer.Deferred.fromCoroutine(self._fetch_async(key))

    async def _fetch_async(self, key: bytes) -> Record | None:
        self.counters["gets"] += 1
        contacts = await self.overlay.find_responsible(key, self.replication)
        remote = [c for c in contacts if not self._is_self(c)]
        local = self.holder.live(key)
        own = local is not None and not local.cached and len(remote) < len(contacts)
        quorum = max(0, self._read_quorum() - own)
        if quorum == 0 and local is not None:
            self.counters["gets_answered_locally"] += 1
            return local.record
        checked: dict[int, tuple[Record, float] | None] = {}

        def check(i: int, answer: Any) -> bool:
            if i not in checked:  # each answer is checked (and counted) once
                checked[i] = self._valid_answer(key, answer)
            return checked[i] is not None

        answers = await QuorumRead(
            self.clock,
            remote,
            # A record may fill a datagram: a first query to a replica is
            # padded, so that its answer need not wait for an address probe.
            lambda c: self.rpc.call_contact(c, "get", key, large_answer=True),
            check,
            # A miss waits for every node's answer (or its timeout): where
            # views of the replica set differ (a ring still settling, a node
            # that missed the put), answers without a copy from a quorum are
            # no proof that the value is not there. A copy still ends the
            # read once the silent nodes are hedged.
            len(remote),
            self.rpc.timeout / 2,
            watch=self.rpc.watch_unreachable,
        ).run()
        # (who answered or None for our own copy, the record, its remaining ttl)
        found: list[tuple[Contact | None, Record, float]] = []
        answered: list[Contact] = []
        for i, answer in sorted(answers.items()):
            answered.append(remote[i])
            check(i, answer)
            valid = checked[i]
            if valid is not None:
                found.append((remote[i], *valid))
        if len(answers) < len(remote):
            self.counters["gets_by_quorum"] += 1
        return self._settle(key, contacts, found, answered)

    def _read_quorum(self) -> int:
        """Copies a get reads: ``read_quorum``, at most a write's majority."""
        return min(self.read_quorum, self.replication // 2 + 1)

    async def _find_value(
        self,
        finder: IValueFinder,
        key: bytes,
        stop_at_immutable: bool,
        paths: int = 1,
        found_lookups: list[Lookup] | None = None,
    ) -> Record | None:
        # Kademlia's FIND_VALUE: the lookup itself collects the answers.
        self.counters["gets"] += 1
        checked: dict[bytes, tuple[Record, float] | None] = {}
        immutable_found = False

        def check(contact: Contact, answer: Any) -> tuple[Record, float] | None:
            if contact.node_id not in checked:
                checked[contact.node_id] = self._valid_answer(key, answer)
            return checked[contact.node_id]

        def enough(contact: Contact, answer: Any) -> bool:
            nonlocal immutable_found
            valid = check(contact, answer)
            hit = stop_at_immutable and valid is not None and isinstance(valid[0], ImmutableValue)
            immutable_found = immutable_found or hit  # another path may answer after
            return hit

        def counts(contact: Contact, answer: Any) -> bool:
            return check(contact, answer) is not None

        # Our own copy (not a cached one) is one of the read quorum's answers.
        local = self.holder.live(key)
        own = local is not None and not local.cached
        # A read needs no more copies than a write: a majority of the replicas.
        quorum = max(0, self._read_quorum() - own)
        if paths > 1 or found_lookups is not None:
            # Disjoint paths are asked for against attackers near the key,
            # who could make up a quorum of stale copies; a read before a
            # write finds the nodes to write to: both read them all.
            quorum = 0
        elif quorum == 0 and local is not None:
            self.counters["gets_answered_locally"] += 1
            return local.record
        disjoint = getattr(finder, "find_value_disjoint", None)
        if paths > 1 and disjoint is not None:
            result = await disjoint(key, self.replication, enough, paths, quorum, counts)
        else:
            result = await finder.find_value(key, self.replication, enough, quorum, counts)
        found: list[tuple[Contact | None, Record, float]] = []
        for contact, answer in result.answers:
            valid = check(contact, answer)
            if valid is not None:
                found.append((contact, *valid))
        if found_lookups is not None and not result.stopped_early:
            found_lookups.append(result.lookup)
        if not immutable_found:
            contacts = result.lookup.contacts
            if result.stopped_early:
                # A read quorum answered: the nodes it heard from are those
                # up to the quorum's farthest, and we are one of them only
                # if we are no farther.
                self.counters["gets_by_quorum"] += 1
                contacts = self._up_to_farthest(key, contacts)
            answered = [c for c in contacts if not self._is_self(c)]
            return self._settle(key, contacts, found, answered)
        # As the paper says: the closest node on the path that did not have
        # the value gets a cached copy, so popular keys spread outward.
        record, ttl = found[0][1], found[0][2]
        if result.without:
            self.counters["cached_copies_sent"] += 1
            self._send_in_background("caching", result.without[:1], record, ttl, cached=True)
        return record

    def _settle(
        self,
        key: bytes,
        contacts: list[Contact],
        found: list[tuple[Contact | None, Record, float]],
        answered: list[Contact],
    ) -> Record | None:
        """The newest of what was found; it is stored where it was missing or older."""
        local = self.holder.live(key)
        me = next((c for c in contacts if self._is_self(c)), None)
        if local is not None:
            found.append((me, local.record, self.holder.remaining(local)))
        if me is not None:
            answered.append(me)  # our own copy, when we are a replica, is repaired too
        best = newest([r for _, r, _ in found])
        if best is not None:
            current = {c.node_id for c, r, _ in found if c is not None and r == best}
            stale = [c for c in answered if c.node_id not in current]
            if stale:
                self._repair(stale, best, max(t for _, r, t in found if r == best))
        return best

    def _up_to_farthest(self, key: bytes, contacts: list[Contact]) -> list[Contact]:
        """``contacts`` without our own, when it is farther from ``key`` than
        every other (it was put there by the overlay, not found)."""
        others = [c for c in contacts if not self._is_self(c)]
        if not others:
            return others
        farthest = max(distance(c.node_id, key) for c in others)
        return [c for c in contacts if not self._is_self(c) or distance(c.node_id, key) <= farthest]

    def _repair(self, stale: list[Contact], record: Record, ttl: float) -> None:
        """Store the newest version on replicas that answered with less."""
        self.counters["read_repairs"] += len(stale)
        # Not awaited: the reader has its answer already.
        self._send_in_background("read repair of", stale, record, ttl)

    def _valid_answer(self, key: bytes, answer: Any) -> tuple[Record, float] | None:
        """The record of a peer's answer for ``key`` and the ttl to give it.

        A bad answer (its shape, a number out of range, a record that fails
        its checks or belongs elsewhere) is counted in ``bad_answers`` and
        left out: the others still make the read.
        """
        if answer is None:
            return None
        try:
            if not (isinstance(answer, list) and len(answer) == 2):
                raise ValueRefused("a get answer is [record, ttl]")
            ttl = check_ttl(answer[1])
            record = from_wire(answer[0])
            if isinstance(record, ImmutableValue):  # no signature to spare
                check_record(record, key, self.max_value_size)
            else:
                # Its fields first: only then may the record be hashed.
                record.check_fields(self.max_value_size)
                if (key, record) not in self._checked:
                    check_record(record, key, self.max_value_size)
                    self._checked.remember((key, record), None)
        except ValueRefused:
            self.counters["bad_answers"] += 1
            return None
        return record, min(ttl, self.expire_after)

    # -- keys changing hands ---------------------------------------------------------

    def _hand_over(self, contact: Contact) -> None:
        """Send ``contact`` the records it is now responsible for.

        The overlay calls this when a node appears among our neighbours (a
        join): only the keys it now shares with us move, the paper's O(K/N).
        They go through :attr:`hand_overs`, paced per peer and in all, so
        that a neighbour (perhaps a spoofed one) cannot make us send a
        burst of our whole store to one address.
        """
        routing = self._routing
        if routing is None or not self._running or self._is_self(contact):
            return
        self._network_seen()  # the table has grown: a put will need more replicas
        if not self.hand_overs.has_room_for(contact):
            self.counters["hand_over_skipped"] += 1  # no scan of the store either
            return
        keys = [
            entry.key
            for entry in self.store.records()
            if not entry.cached
            and self.holder.remaining(entry) > 0
            and routing.holds(contact.node_id, entry.key, self.replication)
        ]
        self.hand_overs.offer(contact, keys)

    def _hand_over_one(self, contact: Contact, key: bytes) -> defer.Deferred[bool]:
        """Send our copy of ``key`` to ``contact``, as it is now (if still live).

        Fires True when the contact answered, with an acknowledgment or a
        refusal: either proves it receives at its address.
        """
        entry = self.holder.live(key)
        if entry is None or entry.cached or not self._running:
            return defer.succeed(True)
        self.counters["handed_over"] += 1

        def answered(result: tuple[int, list[ValueRefused]]) -> bool:
            return result[0] > 0 or bool(result[1])

        def failed(failure: Failure) -> bool:
            self._log.failure("handing over {key} failed", failure, key=key.hex())
            return False

        return (
            defer.Deferred.fromCoroutine(
                self._store_on([contact], entry.record, self.holder.remaining(entry))
            )
            .addCallback(answered)
            .addErrback(failed)
        )

    def _send_in_background(
        self, why: str, contacts: list[Contact], record: Record, ttl: float, cached: bool = False
    ) -> None:
        def failed(failure: Failure) -> None:
            self._log.failure("{why} {key} failed", failure, why=why, key=record.key.hex())

        defer.Deferred.fromCoroutine(
            self._store_on(contacts, record, ttl, cached=cached)
        ).addErrback(failed)

    def leave(self) -> defer.Deferred[int]:
        """Hand every record over to the nodes responsible without us, then
        leave the overlay; fires with the number of records handed over."""
        return defer.Deferred.fromCoroutine(self._leave())

    async def _leave(self) -> int:
        handed = 0
        for entry in list(self.store.records()):
            remaining = self.holder.remaining(entry)
            if entry.cached or remaining <= 0:
                continue
            contacts = await self.overlay.find_responsible(entry.key, self.replication + 1)
            others = [c for c in contacts if not self._is_self(c)][: self.replication]
            stored, _ = await self._store_on(others, entry.record, remaining)
            handed += stored > 0
        self.counters["handed_over_on_leave"] += handed
        if self._routing is not None:
            await self._routing.leave()
        return handed

    # -- the schedule's actions ----------------------------------------------------

    async def _send_on(self, entry: StoredRecord, ttl: float) -> None:
        await self._place(entry.record, ttl, others_only=True)

    def _replicate(self, entry: StoredRecord) -> defer.Deferred[None]:
        # A replica passes on only the lifetime it has left, so copies of
        # copies cannot outlive the publisher's last republish.
        remaining = self.holder.remaining(entry)
        if remaining <= 0:
            return defer.succeed(None)
        return defer.Deferred.fromCoroutine(self._send_on(entry, remaining))

    def _republish(self, entry: StoredRecord) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._send_on(entry, self.expire_after))


_R = TypeVar("_R", bound=Record)


def _live(record: _R) -> _R:
    """``record``, unless it is a tombstone: then :class:`ValueDeleted`."""
    if isinstance(record, (PlainValue, SignedValue)) and record.deleted:
        raise ValueDeleted(record)
    return record
