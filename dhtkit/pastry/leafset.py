"""Pastry's leaf set: the ``l`` nodes numerically closest above us and ``l`` below.

Closeness is numeric on the circular id space: the ``above`` side holds
the nodes first met going clockwise (up) from our id, the ``below`` side
those first met going counter-clockwise. In a network of fewer than
``2l + 1`` nodes a node may sit on both sides; a side with fewer than
``l`` nodes means we know the whole ring, and the leaf set then covers
every key.

The leaf set decides the last step of a route (a key within its range is
delivered to the numerically closest of its members and ourselves) and
who holds copies of a key (PAST's replicas: the nodes next closest to it).
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet

from dhtkit.contact import Contact
from dhtkit.keyspace import RING_SIZE, in_interval, numerically_closest_first, to_int

#: The largest ``l`` accepted: the whole leaf set (2l contacts) must fit one answer.
MAX_LEAF = 12


class LeafSet:
    """The ``size`` closest nodes on each side of ``own_id``.

    :param own_id: our node id.
    :param size: ``l``, the nodes kept on each side (1 to :data:`MAX_LEAF`).
    """

    def __init__(self, own_id: bytes, size: int = 8) -> None:
        if not 1 <= size <= MAX_LEAF:
            raise ValueError("the leaf set size l is between 1 and {}".format(MAX_LEAF))
        self.own_id = own_id
        self.size = size
        # Each side ordered nearest first.
        self.above: list[Contact] = []
        self.below: list[Contact] = []
        # The members' ids: every datagram heard offers its sender, and most
        # senders are not members, so the question is asked far more often
        # than the sides change (only offer and remove change them).
        self._ids: set[bytes] = set()
        self._own = to_int(own_id)
        # The distance up, and down, below which a newcomer enters each side
        # (past the ring's size: the side has room): most senders enter
        # neither, and are told so by two subtractions.
        self._limits = (RING_SIZE, RING_SIZE)

    def _up(self, node_id: bytes) -> int:
        # Clockwise from us to the node.
        return (int.from_bytes(node_id, "big") - self._own) % RING_SIZE

    def _down(self, node_id: bytes) -> int:
        # Counter-clockwise from us to the node.
        return (self._own - int.from_bytes(node_id, "big")) % RING_SIZE

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._ids

    def ids(self) -> AbstractSet[bytes]:
        """The members' ids (a view: not to be changed)."""
        return self._ids

    def __iter__(self) -> Iterator[Contact]:
        return iter(self.contacts())

    def __len__(self) -> int:
        return len(self.contacts())

    def contacts(self) -> list[Contact]:
        """Every member once, the nearer side's members first."""
        seen: dict[bytes, Contact] = {}
        for contact in self.above + self.below:
            seen.setdefault(contact.node_id, contact)
        return list(seen.values())

    def accepts(self, node_id: bytes) -> bool:
        """Whether a node with ``node_id`` would enter the leaf set (and is new)."""
        if node_id == self.own_id or node_id in self:
            return False
        return self._enters(self._reach(node_id))

    def _reach(self, node_id: bytes) -> tuple[int, int]:
        # The distances up and down to a node other than us (they add up to
        # the ring's size: neither is zero).
        up = self._up(node_id)
        return up, RING_SIZE - up

    def _enters(self, reach: tuple[int, int]) -> bool:
        # Whether a node not in the leaf set, this far up and down, would enter a side of it.
        return reach[0] < self._limits[0] or reach[1] < self._limits[1]

    def offer(self, contact: Contact) -> bool:
        """Add ``contact`` where it is among the ``l`` nearest; True when it is new."""
        node_id = contact.node_id
        if node_id == self.own_id:
            return False
        known = node_id in self._ids
        up, down = self._reach(node_id)
        if not known and not self._enters((up, down)):
            return False
        added = changed = False
        for side, reach, measure in ((self.above, up, self._up), (self.below, down, self._down)):
            if known:
                at = next((i for i, c in enumerate(side) if c.node_id == node_id), None)
                if at is not None:
                    side[at] = contact  # a new address
                    continue
            if len(side) < self.size or reach < measure(side[-1].node_id):
                side.append(contact)
                side.sort(key=lambda c: measure(c.node_id))
                del side[self.size :]
                added = added or any(c.node_id == node_id for c in side)
                changed = True
        if changed:
            self._reindex()
        return added and not known

    def _reindex(self) -> None:
        self._ids = {c.node_id for c in self.above}
        self._ids.update(c.node_id for c in self.below)
        self._limits = (
            self._up(self.above[-1].node_id) if len(self.above) >= self.size else RING_SIZE,
            self._down(self.below[-1].node_id) if len(self.below) >= self.size else RING_SIZE,
        )

    def remove(self, node_id: bytes) -> list[str]:
        """Forget ``node_id``; the sides (``"above"``, ``"below"``) it was on."""
        sides = []
        for name, side in (("above", self.above), ("below", self.below)):
            kept = [c for c in side if c.node_id != node_id]
            if len(kept) != len(side):
                side[:] = kept
                sides.append(name)
        if sides:
            self._reindex()
        return sides

    def side(self, name: str) -> list[Contact]:
        """The members of one side, nearest first."""
        return self.above if name == "above" else self.below

    def covers(self, key: bytes) -> bool:
        """Whether ``key`` lies within the leaf set's range (case 1 of a route).

        With a side not full, or the two sides meeting, we know every node
        of the ring: the range is the whole ring.
        """
        if self.covers_ring():
            return True
        low, high = self.below[-1].node_id, self.above[-1].node_id
        return in_interval(key, low, high, include_start=True, include_end=True)

    def inside(self, contacts: list[Contact]) -> bool:
        """Whether ``contacts``, the nodes closest to some key, stop short of
        both ends of the leaf set: then no node beyond it is closer."""
        if not self.covers_ring():
            ends = {side[-1].node_id for side in (self.above, self.below)}
            return not any(c.node_id in ends for c in contacts)
        return True

    def covers_ring(self) -> bool:
        """Whether we know every node of the ring (a side not full, or the sides meet)."""
        if len(self.above) < self.size or len(self.below) < self.size:
            return True
        return bool({c.node_id for c in self.above} & {c.node_id for c in self.below})

    def closest(self, key: bytes, count: int, me: Contact | None) -> list[Contact]:
        """The ``count`` members (and ``me``) numerically closest to ``key``, closest first."""
        pool = self.contacts()
        if me is not None:
            pool.append(me)
        order = numerically_closest_first(key)
        return sorted(pool, key=lambda c: order(c.node_id))[:count]
