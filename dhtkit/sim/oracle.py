"""The simulator's global view: which live node is truly responsible for a key.

Each overlay's registry entry names its rule as ``owner(key, ids)``, a scan
of every id; a simulation that asks for each of 10^4 lookups among 10^4
nodes would spend its time there. :class:`Owners` keeps the live ids sorted
as integers and answers the three rules with a few bisections:

- ``xor``: the id XOR-closest to the key (Kademlia), by walking the sorted
  ids bit by bit as a binary trie, preferring the key's own bit;
- ``successor``: the first id at or after the key on the ring (Chord);
- ``numeric``: the id numerically closest on the ring, the lower on a tie (Pastry).
"""

from __future__ import annotations

from bisect import bisect_left, insort

from dhtkit.keyspace import from_int, to_int

__all__ = ["RULES", "Owners"]

#: The rules :class:`Owners` answers.
RULES = ("xor", "successor", "numeric")
_BITS = 160
_RING = 1 << _BITS


class Owners:
    """Live node ids, sorted, and the owner of a key under one rule."""

    def __init__(self, rule: str) -> None:
        if rule not in RULES:
            raise ValueError("unknown owner rule {!r}".format(rule))
        self.rule = rule
        self._ids: list[int] = []

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, node_id: bytes) -> None:
        """A node came up."""
        insort(self._ids, to_int(node_id))

    def remove(self, node_id: bytes) -> None:
        """A node went away."""
        value = to_int(node_id)
        i = bisect_left(self._ids, value)
        if i < len(self._ids) and self._ids[i] == value:
            del self._ids[i]

    def owner(self, key: bytes) -> bytes:
        """The responsible live node's id.

        :raises LookupError: no node is live.
        """
        ids = self._ids
        if not ids:
            raise LookupError("no live node")
        target = to_int(key)
        if self.rule == "successor":
            i = bisect_left(ids, target)
            return from_int(ids[i % len(ids)])
        if self.rule == "numeric":
            i = bisect_left(ids, target)
            below, above = ids[(i - 1) % len(ids)], ids[i % len(ids)]
            d_below, d_above = _ring(below, target), _ring(above, target)
            if d_below != d_above:
                return from_int(below if d_below < d_above else above)
            return from_int(min(below, above))
        return from_int(self._xor_closest(target))

    def _xor_closest(self, target: int) -> int:
        # The ids in [lo, hi) share the bits above ``bit`` with the path taken:
        # at each bit keep the half that matches the key's bit, if not empty.
        ids = self._ids
        lo, hi, prefix = 0, len(ids), 0
        for bit in range(_BITS - 1, -1, -1):
            if hi - lo == 1:
                break
            want = target >> bit & 1
            split = bisect_left(ids, prefix | 1 << bit, lo, hi)
            if want:
                if split < hi:
                    lo, prefix = split, prefix | 1 << bit
                else:
                    hi = split
            elif split > lo:
                hi = split
            else:
                lo, prefix = split, prefix | 1 << bit
        return ids[lo]


def _ring(a: int, b: int) -> int:
    d = (a - b) % _RING
    return min(d, _RING - d)
