"""Kademlia's routing table: k-buckets over the XOR metric.

Maymounkov and Mazières, "Kademlia" (IPTPS 2002), sections 2.2, 2.4 and 4.2.
The table starts as one bucket covering the whole id space and splits a
bucket in two when it is full and either

* its range covers our own id (section 2.4), or
* the newcomer would be among the ``k`` contacts closest to our own id
  (the relaxed rule of section 4.2: in an unbalanced tree the smallest
  subtree around our id holding ``k`` contacts can reach into buckets that
  do not cover our id, and every valid contact of that subtree is kept).

Any other full bucket follows the least-recently-seen rule: its head (the
contact heard from longest ago) is pinged while the newcomer waits in the
bucket's replacement cache; a head that answers moves to the tail and the
newcomer stays a replacement, a head that does not is evicted and the newest
replacement takes its place. Long-lived contacts are thereby preferred,
which is what makes the table resist flooding with fresh ids. With
``ping_after`` a head heard from within that many seconds is known alive
and is not pinged (BEP 5's "good" node): the newcomer simply waits as a
replacement, which spares a ping per message from a stranger in a busy
network. A stranger that has only queried us, its address not proven, is
not even probed while its bucket is full (see :meth:`RoutingTable.wants`).

Against Sybil floods the table adds three rules (see ``docs/kademlia.rst``):

* a bucket, and its replacement cache, hold at most a few contacts of one
  network (:class:`~dhtkit.kademlia.diversity.NetworkLimit`);
* with ``puzzle_bits`` set, only ids that solve the S/Kademlia static
  puzzle get in (:func:`dhtkit.identity.solves_puzzle`);
* a contact with a failed RPC not yet followed by an answer, or not heard
  from for ``stale_after`` seconds, is not handed to other nodes
  (:meth:`RoutingTable.closest` with ``answerable``), and
  :meth:`RoutingTable.recheck_stale` pings the stale ones, dropping those
  that do not answer.
"""

from __future__ import annotations

import heapq
import random
from bisect import bisect_right
from collections.abc import Callable, Container

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhtkit.contact import Contact
from dhtkit.identity import solves_puzzle
from dhtkit.kademlia.bucket import KBucket
from dhtkit.kademlia.diversity import NetworkLimit, Selection
from dhtkit.keyspace import ID_BYTES, RING_SIZE, check_id, distance, to_int
from dhtkit.rpcerrors import RPCError

#: The counters of :meth:`RoutingTable.stats` that grow as the table works.
COUNTERS = tuple(
    "added splits pings_sent pings_answered pings_failed evictions dropped_failures"
    " removed promoted refused_network refused_puzzle stale_pings stale_dropped".split()
)

#: Seconds without a word from a contact after which it is re-checked
#: before it is handed out again.
STALE_AFTER = 300.0

#: The most contacts remembered as silent (see RoutingTable.record_silence).
MAX_SILENT = 4096

# When a contact never heard from was last heard from.
_NEVER = float("-inf")


class RoutingTable:
    """The contacts a Kademlia node knows, in k-buckets.

    The table trusts its caller: every contact given to :meth:`add_contact`
    must come from a verified message (its id is the hash of its key and it
    proved it holds the private key), which :class:`dhtkit.rpc.RPCProtocol`
    guarantees for the contacts it hands to its listeners.

    :param node_id: our own id; it never enters the table.
    :param ping: checks that a contact is alive; the Deferred fails (with an
        :class:`~dhtkit.rpc.RPCError`, typically a timeout) when it is not.
        It must fire eventually: a bucket pings no other contact meanwhile.
    :param clock: the time that buckets are touched at.
    :param k: the bucket size.
    :param max_failures: failed RPCs in a row after which a contact is dropped.
    :param replacements: the size of each bucket's replacement cache (``k``
        by default).
    :param on_promoted: called with each replacement that takes a place in
        a bucket (after a drop, an eviction or a split), as a new contact
        arriving is seen by whoever offers it.
    :param network_limit: how many contacts of one network a bucket (and
        its replacement cache) may hold.
    :param puzzle_bits: the leading zero bits the S/Kademlia static puzzle
        asks of every id (0: no puzzle).
    :param stale_after: seconds without a word after which a contact is not
        handed out until it answers a re-check.
    :param ping_after: a full bucket's head heard from within this many
        seconds is not pinged for a newcomer (0: always pinged).
    """

    _log = Logger()

    def __init__(
        self,
        node_id: bytes,
        *,
        ping: Callable[[Contact], defer.Deferred[object]],
        clock: IReactorTime,
        k: int = 20,
        max_failures: int = 3,
        replacements: int | None = None,
        rng: random.Random | None = None,
        on_promoted: Callable[[Contact], None] | None = None,
        network_limit: NetworkLimit | None = None,
        puzzle_bits: int = 0,
        stale_after: float = STALE_AFTER,
        ping_after: float = 0.0,
    ) -> None:
        if k < 1 or max_failures < 1 or (replacements is not None and replacements < 0):
            raise ValueError("k and max_failures must be positive, replacements not negative")
        if not 0 <= puzzle_bits <= 64 or stale_after <= 0:
            raise ValueError("puzzle_bits is 0-64 and stale_after positive")
        self.network_limit = NetworkLimit() if network_limit is None else network_limit
        self.puzzle_bits = puzzle_bits
        self.stale_after = stale_after
        self.ping_after = ping_after
        # When each contact (or replacement) was last heard from.
        self._last_seen: dict[bytes, float] = {}
        self.node_id = check_id(node_id)
        self.k = k
        self.max_failures = max_failures
        self.replacements = k if replacements is None else replacements
        self._own = to_int(node_id)
        self._ping = ping
        self._clock = clock
        self._rng = random.Random() if rng is None else rng
        self._buckets = [KBucket(0, RING_SIZE, clock.seconds())]
        self._los = [0]  # the buckets' lower bounds, for bisect
        # Each bucket's prefix bits (its range's size is a power of two).
        self._masks = [0]
        self._failures: dict[bytes, int] = {}
        self._silent: dict[bytes, None] = {}  # kept a lookup waiting; see is_suspect
        self._rechecking: set[bytes] = set()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._on_promoted = on_promoted

    def _bucket(self, node_id: bytes) -> KBucket:
        if type(node_id) is not bytes or len(node_id) != ID_BYTES:
            check_id(node_id)  # raises, unless a subclass of bytes
        return self._buckets[bisect_right(self._los, int.from_bytes(node_id, "big")) - 1]

    def add_contact(self, contact: Contact) -> bool:
        """Offer a verified sender to the table (never blocks; see the module doc).

        Returns whether the contact is new to the table, or back in it
        after it had failed: a contact whose keys it may have missed.
        """
        node_id = check_id(contact.node_id)
        if node_id == self.node_id:
            return False
        bucket = self._bucket(node_id)
        known = bucket.contacts.get(node_id)
        if known is not None:
            if known.address != contact.address and not self.network_limit.allows(
                contact, bucket.contacts.values()
            ):
                contact = known  # alive, but it may not move into a full network
            back = node_id in self._failures
            self._heard(bucket, contact)
            return back
        if self.puzzle_bits and not solves_puzzle(contact.public_key, self.puzzle_bits):
            self._counters["refused_puzzle"] += 1
            return False
        while len(bucket) >= self.k and self._should_split(bucket, node_id):
            self._split(bucket)
            bucket = self._bucket(node_id)
        if not self.network_limit.allows(contact, bucket.contacts.values()):
            self._counters["refused_network"] += 1
            return False
        if len(bucket) < self.k:
            self._heard(bucket, contact)
            self._counters["added"] += 1
            return True
        others = (c for c in bucket.replacements.values() if c.node_id != node_id)
        if not self.network_limit.allows(contact, others):
            self._counters["refused_network"] += 1
            return False
        self._last_seen[node_id] = self._clock.seconds()
        for gone in bucket.add_replacement(contact, self.replacements):
            self._last_seen.pop(gone, None)
        if bucket.pinging is None and not self._heard_lately(bucket.head().node_id):
            self._ping_head(bucket)
        return False

    def _heard_lately(self, node_id: bytes) -> bool:
        """Whether ``node_id`` was heard from within ``ping_after`` seconds."""
        heard = self._last_seen.get(node_id)
        return heard is not None and self._clock.seconds() - heard < self.ping_after

    def wants(self, contact: Contact) -> bool:
        """Whether ``contact``, a sender that has not proven its address, is
        worth an address probe: the table knows it, or has room for it (in
        its bucket, or by a split).

        A stranger whose bucket is full is not: it would only wait as a
        replacement, and its unsolicited query does not set off the
        least-recently-seen ping either (the paper's section 4.1 defers such
        checks until the bucket is used). Dead contacts still go: a lookup
        that finds one silent records the failure, and
        :meth:`recheck_stale` pings the contacts not heard from lately; a
        bucket with room takes the next stranger. One the table refuses
        (puzzle, network limit) is counted as refused."""
        node_id = contact.node_id
        if node_id == self.node_id:
            return False
        bucket = self._bucket(node_id)
        if node_id in bucket.contacts:
            return True
        if self.puzzle_bits and not solves_puzzle(contact.public_key, self.puzzle_bits):
            self._counters["refused_puzzle"] += 1
            return False
        if len(bucket) < self.k:
            if self.network_limit.allows(contact, bucket.contacts.values()):
                return True
            self._counters["refused_network"] += 1
            return False
        if self._should_split(bucket, node_id):
            return True
        # A full bucket: the stranger would only wait as a replacement.
        return False

    def _heard(self, bucket: KBucket, contact: Contact) -> None:
        bucket.seen(contact)
        self._failures.pop(contact.node_id, None)
        self._silent.pop(contact.node_id, None)
        self._last_seen[contact.node_id] = self._clock.seconds()

    def stats_replacements(self) -> int:
        """How many contacts wait in replacement caches."""
        return sum(len(b.replacements) for b in self._buckets)

    def _should_split(self, bucket: KBucket, node_id: bytes) -> bool:
        if not bucket.can_split():
            return False
        if bucket.covers(self._own):
            return True
        # The relaxed rule (section 4.2): keep every contact of the subtree
        # around our id that holds our k closest, wherever the buckets cut it.
        # Buckets are prefix subtrees, so every contact of a bucket nearer to
        # us is nearer than any id of this one: with k of those, it cannot be.
        own = self._own
        floor = bucket.min_distance(own)
        nearer = 0
        for b, lo, mask in zip(self._buckets, self._los, self._masks, strict=True):
            if (lo ^ own) & mask < floor:  # b.min_distance(own), inline
                nearer += len(b.contacts)
                if nearer >= self.k:
                    return False
        nearest = self.closest(self.node_id, self.k)
        return len(nearest) < self.k or distance(node_id, self.node_id) < distance(
            nearest[-1].node_id, self.node_id
        )

    def _split(self, bucket: KBucket) -> None:
        index = bisect_right(self._los, bucket.lo) - 1
        low, high = bucket.split()
        self._buckets[index : index + 1] = [low, high]
        self._los.insert(index + 1, high.lo)
        self._masks[index] = RING_SIZE - (low.hi - low.lo)
        self._masks.insert(index + 1, RING_SIZE - (high.hi - high.lo))
        self._counters["splits"] += 1
        # A half with room takes the replacements that were waiting for it.
        self._fill(low)
        self._fill(high)

    def _fill(self, bucket: KBucket) -> None:
        while len(bucket) < self.k:
            contact = bucket.take_replacement()
            if contact is None:
                return
            if not self.network_limit.allows(contact, bucket.contacts.values()):
                self._last_seen.pop(contact.node_id, None)
                continue
            bucket.seen(contact)
            self._counters["promoted"] += 1
            if self._on_promoted is not None:
                self._on_promoted(contact)

    def _ping_head(self, bucket: KBucket) -> None:
        head = bucket.head()
        bucket.pinging = head.node_id
        self._counters["pings_sent"] += 1
        pinged = defer.maybeDeferred(self._ping, head)
        pinged.addBoth(self._ping_done, head.node_id)

    def _ping_done(self, result: object, node_id: bytes) -> None:
        # Splits move the ping with the pinged id, so the bucket covering it
        # is the one that waited; the head may have changed or gone since.
        bucket = self._bucket(node_id)
        bucket.pinging = None
        if not isinstance(result, Failure):
            self._counters["pings_answered"] += 1
            answered = bucket.contacts.get(node_id)
            if answered is not None:
                self._heard(bucket, answered)
            return
        self._counters["pings_failed"] += 1
        if not isinstance(result.value, RPCError):
            self._log.failure("pinging {node} failed unexpectedly", result, node=node_id.hex())
        # A head heard from while the ping was pending moved to the tail: it is alive.
        if bucket.contacts and bucket.head().node_id == node_id:
            self._log.debug("evicting {node}: it did not answer a ping", node=node_id.hex())
            self._drop(bucket, node_id, "evictions")

    def _drop(self, bucket: KBucket, node_id: bytes, counter: str) -> None:
        del bucket.contacts[node_id]
        self._failures.pop(node_id, None)
        self._last_seen.pop(node_id, None)
        self._counters[counter] += 1
        self._fill(bucket)

    def record_failure(self, node_id: bytes) -> None:
        """An RPC to ``node_id`` failed; drop it after ``max_failures`` in a row.

        The newest replacement takes a dropped contact's place. A replacement
        that fails is forgotten at once. Any message from the contact (it
        reaches :meth:`add_contact`) resets the count.
        """
        bucket = self._bucket(node_id)
        if node_id not in bucket.contacts:
            bucket.replacements.pop(node_id, None)
            self._last_seen.pop(node_id, None)
            return
        failures = self._failures.get(node_id, 0) + 1
        if failures >= self.max_failures:
            self._log.debug("dropping {node} after {n} failures", node=node_id.hex(), n=failures)
            self._drop(bucket, node_id, "dropped_failures")
        else:
            self._failures[node_id] = failures

    def record_silence(self, node_id: bytes) -> None:
        """A lookup gave up waiting for ``node_id`` (it may be slow, or dead).

        Unlike a failure it drops nothing; until the contact is heard from
        again, lookups ask others first (:meth:`is_suspect`).
        """
        if node_id in self:
            if len(self._silent) >= MAX_SILENT:
                self._silent.pop(next(iter(self._silent)))
            self._silent[node_id] = None

    def has_failed(self, node_id: bytes) -> bool:
        """Whether an RPC to ``node_id`` failed since it was last heard from."""
        return node_id in self._failures

    def is_suspect(self, node_id: bytes) -> bool:
        """Whether ``node_id`` failed or kept a lookup waiting since it was
        last heard from: lookups ask it only when no one else is left."""
        return node_id in self._failures or node_id in self._silent

    def remove_contact(self, node_id: bytes) -> bool:
        """Forget ``node_id`` (also as a replacement); whether it was in the table."""
        bucket = self._bucket(node_id)
        if bucket.replacements.pop(node_id, None) is not None:
            self._last_seen.pop(node_id, None)
        if node_id not in bucket.contacts:
            return False
        self._drop(bucket, node_id, "removed")
        return True

    def get(self, node_id: bytes) -> Contact | None:
        """The contact with ``node_id``, if the table holds it."""
        return self._bucket(node_id).contacts.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        # A membership test answers for anything, as containers do.
        if not isinstance(node_id, bytes) or len(node_id) != ID_BYTES:
            return False
        index = bisect_right(self._los, int.from_bytes(node_id, "big")) - 1
        return node_id in self._buckets[index].contacts

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets)

    def contacts(self) -> list[Contact]:
        """Every contact, bucket by bucket, least recently seen first within each."""
        return [contact for bucket in self._buckets for contact in bucket.contacts.values()]

    def closest(
        self,
        target: bytes,
        count: int,
        exclude: Container[bytes] = (),
        *,
        answerable: bool = False,
        closer_than: int | None = None,
    ) -> list[Contact]:
        """Up to ``count`` contacts closest to ``target`` by XOR distance, closest first.

        Buckets are visited in order of their distance to ``target``; the
        distances of two buckets' ids never overlap, so the walk stops at the
        first bucket that completes the count.

        With ``answerable`` (what we hand to other nodes) contacts with a
        failed RPC not followed by an answer, or not heard from for
        ``stale_after`` seconds, are left out, and the result keeps at most
        the network limit of contacts per network. With ``closer_than``, only
        contacts at a distance below it: the walk stops at the first bucket
        that holds none.
        """
        value = to_int(check_id(target))
        if count <= 0:
            return []
        buckets = self._buckets
        # Each bucket's smallest distance to the target (as KBucket.min_distance):
        # its nearest id differs from the target only in the prefix bits.
        order = [
            ((lo ^ value) & mask, i)
            for i, (lo, mask) in enumerate(zip(self._los, self._masks, strict=True))
        ]
        heapq.heapify(order)
        # What answerable() asks, read once rather than per contact.
        now = self._clock.seconds()
        failures = self._failures
        last_seen = self._last_seen
        stale_after = self.stale_after
        found: list[Contact] = []
        picked = Selection(self.network_limit, count) if answerable else None
        bound = RING_SIZE if closer_than is None else closer_than
        while order:
            nearest, index = heapq.heappop(order)
            if nearest >= bound:
                break  # this bucket and those after it are all farther
            bucket = buckets[index]
            # Ids differ, so do distances: the sort never compares contacts.
            members = [
                (contact.number ^ value, contact)
                for node_id, contact in bucket.contacts.items()
                if node_id not in exclude
                and not (
                    answerable
                    and (
                        node_id in failures
                        or not now - last_seen.get(node_id, _NEVER) < stale_after
                    )
                )
            ]
            members.sort()
            if closer_than is not None:
                members = [m for m in members if m[0] < bound]
            if picked is None:
                found.extend([contact for _, contact in members])
                if len(found) >= count:
                    break
            else:
                picked.offer([contact for _, contact in members])
                if picked.is_full():
                    break
        if picked is not None:
            return picked.chosen
        return found[:count]

    def answerable(self, node_id: bytes) -> bool:
        """Whether the contact ``node_id`` may be handed to other nodes now."""
        if node_id in self._failures:
            return False
        heard = self._last_seen.get(node_id)
        return heard is not None and self._clock.seconds() - heard < self.stale_after

    def recheck_stale(self, limit: int) -> int:
        """Ping up to ``limit`` stale contacts, oldest first; drop those that do not answer.

        A contact that answers is heard from again (the answer reaches
        :meth:`add_contact`, and the ping's success is recorded here too).
        Returns how many pings were sent.
        """
        now = self._clock.seconds()
        stale = sorted(
            (heard, node_id)
            for node_id, heard in self._last_seen.items()
            if now - heard >= self.stale_after
            and node_id not in self._rechecking
            and self.get(node_id) is not None
        )
        for heard, node_id in stale[:limit]:
            contact = self.get(node_id)
            assert contact is not None
            self._counters["stale_pings"] += 1
            self._rechecking.add(node_id)
            pinged = defer.maybeDeferred(self._ping, contact)
            pinged.addBoth(self._recheck_done, node_id, heard)
        return min(limit, len(stale))

    def _recheck_done(self, result: object, node_id: bytes, heard: float) -> None:
        self._rechecking.discard(node_id)
        bucket = self._bucket(node_id)
        if node_id not in bucket.contacts:
            return
        if not isinstance(result, Failure):
            self._heard(bucket, bucket.contacts[node_id])
            return
        if not isinstance(result.value, RPCError):
            self._log.failure("re-checking {node} failed unexpectedly", result, node=node_id.hex())
        if self._last_seen.get(node_id, heard) > heard:
            return  # heard from while the ping was pending: alive
        self._log.debug("dropping stale {node}: it did not answer", node=node_id.hex())
        self._drop(bucket, node_id, "stale_dropped")

    def touch(self, target: bytes) -> None:
        """Record that a lookup for ``target`` refreshed the bucket covering it."""
        self._bucket(target).last_touched = self._clock.seconds()

    def stale_buckets(self, older_than: float) -> list[bytes]:
        """A random id in each bucket not touched for ``older_than`` seconds."""
        now = self._clock.seconds()
        return [
            bucket.random_id(self._rng)
            for bucket in self._buckets
            if now - bucket.last_touched >= older_than
        ]

    def refresh_ids_after_join(self, reach: int = -1) -> list[bytes]:
        """A random id in each bucket a join still needs to refresh.

        The last step of joining (section 2.3): after looking up its own id,
        a node refreshes the buckets farther from us than our closest
        neighbour. Of those, one that holds contacts already (the bootstrap
        or the self-lookup put them there) is left to fill with traffic and
        the periodic refresh: a lookup needs one contact of a bucket to go
        through it. Nor does one need a refresh whose every id lies within
        ``reach`` of us (the distance of the farthest of the k closest nodes
        the self-lookup heard from): each node in it was among those, and
        answered, so it is here. Empty when the table is.
        """
        nearest = self.closest(self.node_id, 1)
        if not nearest:
            return []
        neighbour = distance(nearest[0].node_id, self.node_id)
        return [
            bucket.random_id(self._rng)
            for bucket in self._buckets
            if bucket.min_distance(self._own) > neighbour
            and not bucket.contacts
            and bucket.min_distance(self._own) + (bucket.hi - bucket.lo) - 1 > reach
        ]

    def is_full(self, node_id: bytes) -> bool:
        """Whether the bucket that covers ``node_id`` holds k contacts."""
        return len(self._bucket(node_id)) >= self.k

    def room(self, node_id: bytes) -> int:
        """How many contacts the bucket that covers ``node_id`` lacks of k."""
        return max(0, self.k - len(self._bucket(node_id)))

    def same_bucket(self, node_id: bytes, other: bytes) -> bool:
        """Whether one bucket covers both ids."""
        return self._bucket(node_id) is self._bucket(other)

    def is_close(self, node_id: bytes, key: bytes, count: int) -> bool:
        """Whether ``node_id`` is among the ``count`` nodes closest to ``key``.

        Judged among the table's contacts and ourselves, with ``node_id``
        counted whether or not the table holds it.
        """
        check_id(node_id)
        target = to_int(check_id(key))
        own = to_int(node_id) ^ target
        ahead = int(node_id != self.node_id and self._own ^ target < own)
        # Counting, not sorting: this runs for every newcomer we hear from.
        for bucket, lo, mask in zip(self._buckets, self._los, self._masks, strict=True):
            nearest = (lo ^ target) & mask  # bucket.min_distance(target), inline
            if nearest >= own:
                continue  # nobody in it is closer
            if nearest + (RING_SIZE - mask) <= own:
                # Every id of the range is closer (so node_id is not in it).
                ahead += len(bucket.contacts)
            else:
                for other in bucket.contacts:
                    if other != node_id and int.from_bytes(other, "big") ^ target < own:
                        ahead += 1
            if ahead >= count:
                return False
        return ahead < count

    def stats(self) -> dict[str, int]:
        """Size (contacts, buckets, replacements, pings in flight) and counters."""
        return {
            "contacts": len(self),
            "buckets": len(self._buckets),
            "replacements": self.stats_replacements(),
            "pinging": sum(b.pinging is not None for b in self._buckets),
            **self._counters,
        }
