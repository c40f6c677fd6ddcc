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
which is what makes the table resist flooding with fresh ids.
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
from dhtkit.kademlia.bucket import KBucket
from dhtkit.keyspace import ID_BYTES, RING_SIZE, check_id, distance, to_int
from dhtkit.rpc import RPCError

#: The counters of :meth:`RoutingTable.stats` that grow as the table works.
COUNTERS = tuple(
    "added splits pings_sent pings_answered pings_failed evictions dropped_failures"
    " removed promoted".split()
)


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
    ) -> None:
        if k < 1 or max_failures < 1 or (replacements is not None and replacements < 0):
            raise ValueError("k and max_failures must be positive, replacements not negative")
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
        self._failures: dict[bytes, int] = {}
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._on_promoted = on_promoted

    def _bucket(self, node_id: bytes) -> KBucket:
        return self._buckets[bisect_right(self._los, to_int(check_id(node_id))) - 1]

    def add_contact(self, contact: Contact) -> None:
        """Offer a verified sender to the table (never blocks; see the module doc)."""
        node_id = check_id(contact.node_id)
        if node_id == self.node_id:
            return
        bucket = self._bucket(node_id)
        if node_id in bucket.contacts:
            bucket.seen(contact)
            self._failures.pop(node_id, None)
            return
        while len(bucket) >= self.k and self._should_split(bucket, node_id):
            self._split(bucket)
            bucket = self._bucket(node_id)
        if len(bucket) < self.k:
            bucket.seen(contact)
            self._failures.pop(node_id, None)
            self._counters["added"] += 1
            return
        bucket.add_replacement(contact, self.replacements)
        if bucket.pinging is None:
            self._ping_head(bucket)

    def _should_split(self, bucket: KBucket, node_id: bytes) -> bool:
        if not bucket.can_split():
            return False
        if bucket.covers(self._own):
            return True
        # The relaxed rule (section 4.2): keep every contact of the subtree
        # around our id that holds our k closest, wherever the buckets cut it.
        # Buckets are prefix subtrees, so every contact of a bucket nearer to
        # us is nearer than any id of this one: with k of those, it cannot be.
        floor = bucket.min_distance(self._own)
        nearer = sum(len(b.contacts) for b in self._buckets if b.min_distance(self._own) < floor)
        if nearer >= self.k:
            return False
        own = self.node_id
        nearest = self.closest(own, self.k)
        return len(nearest) < self.k or distance(node_id, own) < distance(nearest[-1].node_id, own)

    def _split(self, bucket: KBucket) -> None:
        index = bisect_right(self._los, bucket.lo) - 1
        low, high = bucket.split()
        self._buckets[index : index + 1] = [low, high]
        self._los.insert(index + 1, high.lo)
        self._counters["splits"] += 1
        # A half with room takes the replacements that were waiting for it.
        self._fill(low)
        self._fill(high)

    def _fill(self, bucket: KBucket) -> None:
        while len(bucket) < self.k:
            contact = bucket.take_replacement()
            if contact is None:
                return
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
                bucket.seen(answered)
                self._failures.pop(node_id, None)
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
            return
        failures = self._failures.get(node_id, 0) + 1
        if failures >= self.max_failures:
            self._log.debug("dropping {node} after {n} failures", node=node_id.hex(), n=failures)
            self._drop(bucket, node_id, "dropped_failures")
        else:
            self._failures[node_id] = failures

    def remove_contact(self, node_id: bytes) -> bool:
        """Forget ``node_id`` (also as a replacement); whether it was in the table."""
        bucket = self._bucket(node_id)
        bucket.replacements.pop(node_id, None)
        if node_id not in bucket.contacts:
            return False
        self._drop(bucket, node_id, "removed")
        return True

    def get(self, node_id: bytes) -> Contact | None:
        """The contact with ``node_id``, if the table holds it."""
        return self._bucket(node_id).contacts.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        # A membership test answers for anything, as containers do.
        return (
            isinstance(node_id, bytes)
            and len(node_id) == ID_BYTES
            and self.get(node_id) is not None
        )

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets)

    def contacts(self) -> list[Contact]:
        """Every contact, bucket by bucket, least recently seen first within each."""
        return [contact for bucket in self._buckets for contact in bucket.contacts.values()]

    def closest(self, target: bytes, count: int, exclude: Container[bytes] = ()) -> list[Contact]:
        """Up to ``count`` contacts closest to ``target`` by XOR distance, closest first.

        Buckets are visited in order of their distance to ``target``; the
        distances of two buckets' ids never overlap, so the walk stops at the
        first bucket that completes the count.
        """
        value = to_int(check_id(target))
        if count <= 0:
            return []
        order = [(bucket.min_distance(value), i) for i, bucket in enumerate(self._buckets)]
        heapq.heapify(order)
        found: list[Contact] = []
        while order and len(found) < count:
            bucket = self._buckets[heapq.heappop(order)[1]]
            members = [c for c in bucket.contacts.values() if c.node_id not in exclude]
            members.sort(key=lambda c: int.from_bytes(c.node_id, "big") ^ value)
            found.extend(members)
        return found[:count]

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

    def refresh_ids_after_join(self) -> list[bytes]:
        """A random id in each bucket farther from us than our closest neighbour.

        The last step of joining (section 2.3): after looking up its own id,
        a node refreshes those buckets. Empty when the table is.
        """
        nearest = self.closest(self.node_id, 1)
        if not nearest:
            return []
        neighbour = distance(nearest[0].node_id, self.node_id)
        return [
            bucket.random_id(self._rng)
            for bucket in self._buckets
            if bucket.min_distance(self._own) > neighbour
        ]

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
        for bucket in self._buckets:
            if bucket.min_distance(target) >= own:
                continue  # nobody in it is closer
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
            "replacements": sum(len(b.replacements) for b in self._buckets),
            "pinging": sum(b.pinging is not None for b in self._buckets),
            **self._counters,
        }
