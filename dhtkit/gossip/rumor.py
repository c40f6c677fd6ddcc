"""Rumour mongering's per-update state: which updates a node still spreads.

In the SIR model a node is *infected* with an update (spreads it) from the
moment it learns it until it loses interest, and *removed* after that; a
node that never learnt it is *susceptible*. What decides the loss is the
variant (Demers et al., 1987): with feedback only a contact with a peer that
already knew the update counts, blind every contact counts; a coin drops the
update with probability 1/k at each counted contact, a counter after k of
them. The counter is kept per update.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping


class Rumors:
    """The updates a node is infected with, each with its contact count."""

    __slots__ = ("_hot", "counter", "feedback", "k", "removed")

    def __init__(self, k: float, *, feedback: bool = True, counter: bool = False) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.feedback = feedback
        self.counter = counter
        # update id -> contacts counted so far
        self._hot: dict[bytes, int] = {}
        #: How many updates were dropped by the loss rule so far.
        self.removed = 0

    def __len__(self) -> int:
        return len(self._hot)

    def __contains__(self, update_id: object) -> bool:
        return update_id in self._hot

    @property
    def counts(self) -> Mapping[bytes, int]:
        """Each update still spread, with its contacts counted so far (read only)."""
        return self._hot

    def infect(self, update_id: bytes) -> None:
        """Start spreading an update just learnt."""
        self._hot.setdefault(update_id, 0)

    def hot(self) -> list[bytes]:
        """The ids still spread, in the order they were learnt."""
        return list(self._hot)

    def contacted(self, update_id: bytes, knew: bool, rng: random.Random) -> bool:
        """Apply the loss rule after a contact that involved ``update_id``.

        ``knew`` tells whether the peer already had it. Returns True if the
        update is dropped (the node is now removed for it).
        """
        count = self._hot.get(update_id)
        if count is None or (self.feedback and not knew):
            return False
        if self.counter:
            count += 1
            lost = count >= self.k
        else:
            lost = rng.random() * self.k < 1.0
        if lost:
            del self._hot[update_id]
            self.removed += 1
        else:
            self._hot[update_id] = count
        return lost

    def discard(self, update_ids: Iterable[bytes]) -> None:
        """Stop spreading updates that expired or were deleted (not a loss)."""
        for update_id in update_ids:
            self._hot.pop(update_id, None)

    def clear(self) -> None:
        """Forget every rumour."""
        self._hot.clear()
