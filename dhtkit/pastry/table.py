"""Pastry's routing table ``R[row][digit]``, nearer nodes preferred.

Row ``r`` holds nodes that share exactly ``r`` leading digits with us, one
per value of their digit ``r`` (our own digit's column stays empty). Of
several candidates for one slot the table keeps the one with the lower
measured round-trip time, the proximity rule of the Pastry paper; a node
whose time was never measured takes an empty slot only. The table is at
most ``rows x columns`` entries (640 for ``b = 4``).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

import attrs

from dhtkit.contact import Contact
from dhtkit.keyspace import to_int
from dhtkit.pastry.digits import Digits


@attrs.define
class Slot:
    """One table entry: the contact and its round-trip time (None: not measured)."""

    contact: Contact
    rtt: float | None = None


class RoutingTable:
    """``R[row][digit]`` for the node ``own_id``."""

    def __init__(self, own_id: bytes, digits: Digits) -> None:
        self.own_id = own_id
        self.digits = digits
        self._rows: list[dict[int, Slot]] = [{} for _ in range(digits.count)]
        self._where: dict[bytes, tuple[int, int]] = {}
        self._own = to_int(own_id)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._where

    def ids(self) -> AbstractSet[bytes]:
        """The entries' ids (a view)."""
        return self._where.keys()

    def place(self, node_id: bytes) -> tuple[int, int] | None:
        """The ``(row, column)`` a node belongs in (None for our own id)."""
        # Asked of every sender heard: our id is read as a number once.
        return self.digits.place(self._own, int.from_bytes(node_id, "big"))

    def get(self, row: int, column: int) -> Contact | None:
        """The entry ``R[row][column]``, if any."""
        slot = self._rows[row].get(column)
        return slot.contact if slot is not None else None

    def rtt(self, node_id: bytes) -> float | None:
        """The round-trip time measured for an entry, if any."""
        where = self._where.get(node_id)
        if where is None:
            return None
        return self._rows[where[0]][where[1]].rtt

    def row(self, row: int) -> list[Contact]:
        """The entries of one row, by column."""
        slots = self._rows[row]
        return [slots[column].contact for column in sorted(slots)]

    def contacts(self) -> list[Contact]:
        """Every entry, row by row."""
        # Asked for every newcomer heard of: most of the rows are empty.
        return [slots[column].contact for slots in self._rows if slots for column in sorted(slots)]

    def offer(self, contact: Contact, rtt: float | None = None) -> bool:
        """Take ``contact`` into its slot if the slot is empty or its
        occupant is slower (or unmeasured) while ``rtt`` is known; True when
        the contact entered the table."""
        # An entry's place is known: most senders heard are entries already.
        where = self._where.get(contact.node_id) or self.place(contact.node_id)
        if where is None:
            return False
        row, column = where
        slot = self._rows[row].get(column)
        if slot is not None and slot.contact.node_id == contact.node_id:
            slot.contact = contact
            if rtt is not None:
                slot.rtt = rtt
            return False
        if slot is not None and (rtt is None or (slot.rtt is not None and slot.rtt <= rtt)):
            return False
        if slot is not None:
            del self._where[slot.contact.node_id]
        self._rows[row][column] = Slot(contact, rtt)
        self._where[contact.node_id] = where
        return True

    def remove(self, node_id: bytes) -> tuple[int, int] | None:
        """Empty the slot of ``node_id``; where it was (None if absent)."""
        where = self._where.pop(node_id, None)
        if where is not None:
            del self._rows[where[0]][where[1]]
        return where
