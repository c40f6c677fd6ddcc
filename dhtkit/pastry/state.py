"""What one Pastry node knows: its leaf set, routing table and neighbourhood set.

Every contact enters through :meth:`PastryState.offer`, with the round-trip
time when we measured one. A node new to the leaf set is announced to the
neighbour listeners: it may now hold copies of keys we hold (PAST's
replicas are the nodes numerically closest to a key, which sit in the
leaf sets of each other). :meth:`forget` removes a node everywhere and
says where it was, for the repair to fill the gap.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from dhtkit.contact import Contact
from dhtkit.pastry.digits import Digits
from dhtkit.pastry.leafset import LeafSet
from dhtkit.pastry.neighbourhood import Neighbourhood
from dhtkit.pastry.table import RoutingTable
from dhtkit.remembered import Remembered


@attrs.frozen
class Lost:
    """Where a forgotten node was: the leaf-set sides and the table slot."""

    sides: list[str]
    slot: tuple[int, int] | None


class PastryState:
    """The routing state of the node ``own_id``.

    :param digits: the digit size ``b`` of the routing table.
    :param leaf_size: ``l``, leaf-set members on each side.
    :param neighbourhood_size: ``|M|``.
    """

    def __init__(
        self, own_id: bytes, digits: Digits, leaf_size: int = 8, neighbourhood_size: int = 16
    ) -> None:
        self.own_id = own_id
        self.digits = digits
        self.leafset = LeafSet(own_id, leaf_size)
        self.table = RoutingTable(own_id, digits)
        self.neighbourhood = Neighbourhood(own_id, neighbourhood_size)
        #: Nodes that proved their ids and were then lost (or joined
        #: through): where the merge round looks for the rest of a split network.
        self.lost = Remembered(own_id)
        self._listeners: list[Callable[[Contact], None]] = []

    def add_listener(self, listener: Callable[[Contact], None]) -> None:
        """Call ``listener(contact)`` for each node new to the leaf set."""
        self._listeners.append(listener)

    def knows(self, node_id: bytes) -> bool:
        """Whether ``node_id`` is anywhere in our state."""
        return node_id in self.leafset or node_id in self.table or node_id in self.neighbourhood

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, bytes) and self.knows(node_id)

    def count(self) -> int:
        """How many nodes :meth:`contacts` would list, without listing them
        (the value layer asks on every read and every new neighbour)."""
        return len(self.leafset.ids() | self.table.ids() | self.neighbourhood.ids())

    def contacts(self) -> list[Contact]:
        """Everything we know, each node once: leaf set, table, then M."""
        seen: dict[bytes, Contact] = {}
        for contact in (
            self.leafset.contacts() + self.table.contacts() + self.neighbourhood.contacts()
        ):
            seen.setdefault(contact.node_id, contact)
        return list(seen.values())

    def wanted(self, node_id: bytes) -> bool:
        """Whether a node we do not know would enter the leaf set or an empty table slot."""
        if node_id == self.own_id or self.knows(node_id):
            return False
        return self._would_enter(node_id)

    def worth_probing(self, node_id: bytes) -> bool:
        """Whether a sender's address is worth proving: it is in our state
        (and may have moved), or :meth:`wanted` (one look at our state)."""
        if node_id == self.own_id:
            return False
        return self.knows(node_id) or self._would_enter(node_id)

    def _would_enter(self, node_id: bytes) -> bool:
        if self.leafset.accepts(node_id):
            return True
        place = self.table.place(node_id)
        return place is not None and self.table.get(*place) is None

    def offer(self, contact: Contact, rtt: float | None = None) -> bool:
        """Offer a node that proved itself; True when it entered the leaf set."""
        if contact.node_id == self.own_id:
            return False
        new_leaf = self.leafset.offer(contact)
        self.table.offer(contact, rtt)
        if rtt is not None:
            self.neighbourhood.offer(contact, rtt)
        if new_leaf:
            for listener in list(self._listeners):
                listener(contact)
        return new_leaf

    def forget(self, node_id: bytes) -> Lost:
        """Remove ``node_id`` everywhere; where it was."""
        self.neighbourhood.remove(node_id)
        return Lost(self.leafset.remove(node_id), self.table.remove(node_id))

    def holds(self, node_id: bytes, key: bytes, count: int, me: Contact | None) -> bool:
        """Whether ``node_id`` is among the ``count`` nodes of our leaf set
        (and us) numerically closest to ``key``: exact for the keys we hold."""
        return any(c.node_id == node_id for c in self.leafset.closest(key, count, me))
