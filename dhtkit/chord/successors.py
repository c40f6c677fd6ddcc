"""The successor list, and what it tells about who holds a key.

A node keeps the ``r`` nodes that follow it clockwise (the paper's
successor list, §4.4): when its successor fails, the next one takes over at
once, so the ring survives the loss of any ``r - 1`` consecutive nodes. The
list is refreshed from the successor's own list at every stabilization:
the successor, then the nodes it lists that lie between it and us.

The same list, with the predecessors, says which nodes are responsible for
a key near us (:func:`may_hold`): a key lives at ``successor(key)`` and on
the ``k - 1`` nodes after it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Container, Iterable, Iterator, Sequence

from dhtkit.contact import Contact
from dhtkit.keyspace import RING_SIZE, check_id, in_interval, ring_distance


class SuccessorList:
    """The up to ``size`` nodes after ``own_id`` on the ring, in ring order."""

    def __init__(self, own_id: bytes, size: int) -> None:
        if size < 1:
            raise ValueError("a successor list holds at least one node")
        self.own_id = check_id(own_id)
        self.size = size
        self._contacts: list[Contact] = []
        # Each one's clockwise distance from us: increasing, as the list is in ring order.
        self._offsets: list[int] = []

    def __len__(self) -> int:
        return len(self._contacts)

    def __iter__(self) -> Iterator[Contact]:
        return iter(list(self._contacts))

    def __contains__(self, node_id: object) -> bool:
        return any(c.node_id == node_id for c in self._contacts)

    @property
    def first(self) -> Contact | None:
        """Our successor, or None when we know no other node."""
        return self._contacts[0] if self._contacts else None

    @property
    def full(self) -> bool:
        """Whether the list holds ``size`` nodes (else the ring may be smaller)."""
        return len(self._contacts) >= self.size

    def contacts(self) -> list[Contact]:
        """The list, nearest first."""
        return list(self._contacts)

    def ids(self) -> list[bytes]:
        """The node ids of the list, nearest first."""
        return [c.node_id for c in self._contacts]

    def replace(
        self, successor: Contact, reported: Sequence[Contact], known: Iterable[Contact] = ()
    ) -> list[Contact]:
        """Make ``successor`` first, followed by what it ``reported`` as its list.

        Of the reported contacts only those clockwise after the successor
        and before us are kept, in ring order, each once: a stale or hostile
        list can neither put a node out of order nor list us.

        A reported list too short to fill ours that does not come round to
        us is a partial view: its node is still joining (a node restarted
        at its old address answers with an empty list), or knows only part
        of the ring. The nodes we listed before, and those ``known`` from
        elsewhere (a lookup's answer), that lie past its end then follow
        it. Cut short, the list would claim the ring ends there (see
        :attr:`full`): keys near us would get too few replicas.

        Returns the contacts that were not in the list before.
        """
        if successor.node_id == self.own_id:
            raise ValueError("a node is not its own successor")
        span = ring_distance(successor.node_id, self.own_id)
        after = within(reported, lambda node_id: ring_distance(successor.node_id, node_id), span)
        ordered = [successor, *after]
        if len(ordered) < self.size and all(c.node_id != self.own_id for c in reported):
            last = ordered[-1].node_id
            ordered += within(
                [*self._contacts, *known],
                lambda node_id: ring_distance(last, node_id),
                ring_distance(last, self.own_id),
            )
        ordered = ordered[: self.size]
        before = set(self.ids())
        self._set(ordered)
        return [c for c in ordered if c.node_id not in before]

    def _set(self, contacts: list[Contact]) -> None:
        self._contacts = contacts
        self._offsets = [ring_distance(self.own_id, c.node_id) for c in contacts]

    def remove(self, node_id: bytes) -> bool:
        """Drop ``node_id`` (it failed or left); whether it was listed."""
        kept = [c for c in self._contacts if c.node_id != node_id]
        removed = len(kept) != len(self._contacts)
        if removed:
            self._set(kept)
        return removed

    def clear(self) -> None:
        """Forget every successor."""
        self._set([])

    def preceding(self, key: bytes, count: int, skip: Container[bytes] = ()) -> list[Contact]:
        """Up to ``count`` listed nodes strictly between us and ``key``,
        nearest to ``key`` first."""
        # The list is in ring order, so those nodes are a prefix of it
        # (our own id as the key: every one of them).
        inside = self._contacts[
            : bisect_left(self._offsets, ring_distance(self.own_id, key) or RING_SIZE)
        ]
        return [c for c in reversed(inside) if c.node_id not in skip][:count]


def within(contacts: Iterable[Contact], offset: Callable[[bytes], int], span: int) -> list[Contact]:
    """The distinct ``contacts`` whose ``offset(node_id)`` lies strictly
    between 0 and ``span``, in order of that offset (the nodes of an arc of
    the ring, from one end)."""
    found: dict[bytes, tuple[int, Contact]] = {}
    for contact in contacts:
        distance = offset(contact.node_id)
        if 0 < distance < span:
            found[contact.node_id] = (distance, contact)
    return [c for _, c in sorted(found.values(), key=_offset_of)]


def _offset_of(item: tuple[int, Contact]) -> int:
    return item[0]


def may_hold(
    node_id: bytes,
    key: bytes,
    count: int,
    own_id: bytes,
    predecessors: Sequence[bytes],
    successors: Sequence[bytes],
    whole_ring: bool,
) -> bool:
    """Whether ``node_id`` is among the ``count`` nodes responsible for ``key``,
    as far as a node's predecessors and successor list tell.

    ``predecessors`` run backwards from the nearest, ``successors`` forwards.
    ``whole_ring`` says that ``own_id`` followed by ``successors`` is every
    node of the ring: the answer is then exact. Otherwise the known stretch
    of ring runs from the farthest predecessor to the last successor. For a
    key inside it the answer is exact, as far as the stretch reaches. For a
    key behind it, ``successor(key)`` is the stretch's first node or one
    before it; the answer then assumes the former, the nearest that is
    possible, so it may say yes for a node past the last replica but never
    no for a replica we know. Keeping ``count - 1`` predecessors makes the
    answer exact for every key the node itself holds.
    """
    if count < 1:
        return False
    if whole_ring:
        ring = [own_id, *successors]
        start = _successor_index(ring, key) or 0
        return node_id in _window(ring, start, count)
    stretch = [*reversed(predecessors), own_id, *successors]
    # Behind the stretch (or at its first node): the nearest case, its first node.
    start = _successor_index(stretch, key) or 0
    return node_id in _window(stretch, start, count)


def _window(ring_order: Sequence[bytes], start: int, count: int) -> list[bytes]:
    # ``count`` nodes from ``start``; past the end the stretch is read as if
    # it closed on itself. That is exact for a ring that small; in a larger
    # one it concerns only keys whose replicas lie beyond our list, which a
    # node does not hold (unless it kept a stale copy), so it is never asked.
    return [ring_order[(start + i) % len(ring_order)] for i in range(min(count, len(ring_order)))]


def _successor_index(ring_order: Sequence[bytes], key: bytes) -> int | None:
    """The index of the first node at or after ``key`` in a stretch listed in
    ring order, if ``key`` lies within ``(ring_order[0], ring_order[-1]]``;
    for a whole ring (read circularly) it is always found."""
    for i in range(1, len(ring_order)):
        if in_interval(key, ring_order[i - 1], ring_order[i], include_end=True):
            return i
    if len(ring_order) > 1 and key == ring_order[0]:
        return 0
    return None
