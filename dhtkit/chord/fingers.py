"""The finger table: shortcuts around the ring at doubling distances.

Entry ``i`` (1 to 160) of node ``n`` is ``successor(n + 2**(i-1))``, the
first node at a clockwise distance of at least ``2**(i-1)``. In a network of
N nodes only about log2 N entries differ, so only the distinct fingers are
stored, one per *range*: range ``j`` holds the distances in
``[2**(j-1), 2**j)``, and its finger is the nearest node we know in it.
Entry ``i`` is then the finger of the first non-empty range at or above
``i``: the same answer as the paper's table, without 160 copies of the
successor.

Only contacts that proved themselves (a verified message from them) are
given to this table; its owner makes sure of that.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Container, Iterator

from dhtkit.contact import Contact
from dhtkit.keyspace import ID_BITS, RING_SIZE, check_id, ring_add, ring_distance


def finger_range(distance: int) -> int:
    """The range (1 to 160) of a clockwise distance from the owner (> 0)."""
    return distance.bit_length()


class FingerTable:
    """The distinct fingers of the node ``own_id``, nearest first."""

    def __init__(self, own_id: bytes) -> None:
        self.own_id = check_id(own_id)
        # (clockwise distance from own_id, contact), sorted, at most one per range.
        self._entries: list[tuple[int, Contact]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Contact]:
        return (contact for _, contact in self._entries)

    def __contains__(self, node_id: object) -> bool:
        return any(contact.node_id == node_id for _, contact in self._entries)

    def contacts(self) -> list[Contact]:
        """The fingers, nearest (clockwise) first."""
        return [contact for _, contact in self._entries]

    @staticmethod
    def start(own_id: bytes, index: int) -> bytes:
        """Where entry ``index`` starts looking: ``own_id + 2**(index-1)``."""
        _check_index(index)
        return ring_add(own_id, 1 << (index - 1))

    def finger(self, index: int) -> Contact | None:
        """Entry ``index``: the nearest finger at least ``2**(index-1)`` away."""
        _check_index(index)
        at = bisect_left(self._entries, 1 << (index - 1), key=_distance_of)
        return self._entries[at][1] if at < len(self._entries) else None

    def offer(self, contact: Contact) -> bool:
        """Take a verified contact if it is nearer than the finger of its range.

        Returns whether the table changed. A contact already held under the
        same id has its address updated.
        """
        distance = ring_distance(self.own_id, contact.node_id)
        if distance == 0:
            return False
        entries = self._entries
        low = 1 << (finger_range(distance) - 1)
        at = bisect_left(entries, low, key=_distance_of)
        if at < len(entries) and entries[at][0] < 2 * low:
            held_distance, held = entries[at]
            if held_distance < distance:
                return False
            if held_distance == distance:
                if held == contact:
                    return False
                entries[at] = (distance, contact)
                return True
            del entries[at]
        insort(entries, (distance, contact), key=_distance_of)
        return True

    def set(self, index: int, contact: Contact | None) -> None:
        """Record that ``contact`` is ``successor(start(index))``, as a lookup found.

        No node then lies between the start and ``contact``, so fingers
        there are dropped; ``None`` (or our own contact: the lookup came back
        round to us) means no node lies beyond the start at all.
        """
        low = 1 << (_check_index(index) - 1)
        if contact is None or contact.node_id == self.own_id:
            del self._entries[bisect_left(self._entries, low, key=_distance_of) :]
            return
        distance = ring_distance(self.own_id, contact.node_id)
        # The contact's range keeps only the contact; the ranges from the
        # start up to it are empty.
        high = 1 << finger_range(distance)
        self._entries = [e for e in self._entries if not low <= e[0] < high]
        insort(self._entries, (distance, contact), key=_distance_of)

    def remove(self, node_id: bytes) -> bool:
        """Forget the finger with ``node_id``; whether there was one."""
        for at, (_, contact) in enumerate(self._entries):
            if contact.node_id == node_id:
                del self._entries[at]
                return True
        return False

    def preceding(self, key: bytes, count: int, skip: Container[bytes] = ()) -> list[Contact]:
        """Up to ``count`` fingers strictly between us and ``key``, nearest to ``key`` first.

        ``skip`` holds ids not to return (nodes that failed to answer).
        """
        limit = ring_distance(self.own_id, key) or RING_SIZE
        at = bisect_left(self._entries, limit, key=_distance_of)
        out: list[Contact] = []
        while at > 0 and len(out) < count:
            at -= 1
            contact = self._entries[at][1]
            if contact.node_id not in skip:
                out.append(contact)
        return out

    def closest_preceding(self, key: bytes, skip: Container[bytes] = ()) -> Contact | None:
        """The finger nearest before ``key`` (the paper's closest_preceding_finger),
        passing over the ids in ``skip``; None if no finger precedes ``key``."""
        found = self.preceding(key, 1, skip)
        return found[0] if found else None


def _distance_of(entry: tuple[int, Contact]) -> int:
    return entry[0]


def _check_index(index: int) -> int:
    if not 1 <= index <= ID_BITS:
        raise ValueError("a finger index is between 1 and {}".format(ID_BITS))
    return index
