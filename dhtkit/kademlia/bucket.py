"""One k-bucket of a Kademlia routing table.

A bucket covers a range ``[lo, hi)`` of the 160-bit id space. Ranges come
from halving the whole space, so every range is aligned on its own size (a
power of two): it is the set of ids that share one prefix. That is what
makes :meth:`KBucket.min_distance` exact and lets the table visit buckets in
order of XOR distance without looking at their contacts.
"""

from __future__ import annotations

import random
from collections import OrderedDict

import attrs

from dhtkit.contact import Contact
from dhtkit.keyspace import from_int, to_int


@attrs.define(eq=False)
class KBucket:
    """The contacts whose ids fall in ``[lo, hi)``, least recently seen first.

    ``replacements`` holds verified senders that found the bucket full,
    newest last; they take the place of contacts that stop answering.
    ``pinging`` is the id of the contact whose liveness check is in flight
    (at most one per bucket). ``last_touched`` is when a lookup last covered
    the range, on the table's clock.
    """

    lo: int
    hi: int
    last_touched: float
    contacts: OrderedDict[bytes, Contact] = attrs.field(factory=OrderedDict)
    replacements: OrderedDict[bytes, Contact] = attrs.field(factory=OrderedDict)
    pinging: bytes | None = None

    def __len__(self) -> int:
        return len(self.contacts)

    def covers(self, value: int) -> bool:
        """Whether the id ``value`` (as an integer) falls in this bucket's range."""
        return self.lo <= value < self.hi

    def can_split(self) -> bool:
        """Whether the range holds more than one id."""
        return self.hi - self.lo > 1

    def head(self) -> Contact:
        """The least recently seen contact (the bucket must not be empty)."""
        return next(iter(self.contacts.values()))

    def seen(self, contact: Contact) -> None:
        """Put ``contact`` at the tail (most recently seen), with its current address."""
        self.contacts[contact.node_id] = contact
        self.contacts.move_to_end(contact.node_id)
        self.replacements.pop(contact.node_id, None)

    def add_replacement(self, contact: Contact, limit: int) -> list[bytes]:
        """Keep ``contact`` as the newest replacement; the oldest go beyond ``limit``.

        Returns the ids of the replacements pushed out.
        """
        self.replacements[contact.node_id] = contact
        self.replacements.move_to_end(contact.node_id)
        gone = []
        while len(self.replacements) > limit:
            gone.append(self.replacements.popitem(last=False)[0])
        return gone

    def take_replacement(self) -> Contact | None:
        """Remove and return the newest replacement, if any."""
        if not self.replacements:
            return None
        return self.replacements.popitem(last=True)[1]

    def split(self) -> tuple[KBucket, KBucket]:
        """The two halves of this bucket, each with its share of the state.

        Order within the contacts and within the replacements is kept, and
        the ping in flight goes with the half that covers the pinged id.
        """
        mid = (self.lo + self.hi) // 2
        low = KBucket(self.lo, mid, self.last_touched)
        high = KBucket(mid, self.hi, self.last_touched)
        for node_id, contact in self.contacts.items():
            (low if to_int(node_id) < mid else high).contacts[node_id] = contact
        for node_id, contact in self.replacements.items():
            (low if to_int(node_id) < mid else high).replacements[node_id] = contact
        if self.pinging is not None:
            (low if to_int(self.pinging) < mid else high).pinging = self.pinging
        return low, high

    def min_distance(self, target: int) -> int:
        """The smallest XOR distance from ``target`` to any id in the range.

        The range is every id with one prefix, so the low bits can match
        ``target``'s exactly: only the prefix bits count.
        """
        shift = (self.hi - self.lo).bit_length() - 1
        return ((self.lo ^ target) >> shift) << shift

    def random_id(self, rng: random.Random) -> bytes:
        """A uniformly random id in the range."""
        return from_int(self.lo + rng.randrange(self.hi - self.lo))
