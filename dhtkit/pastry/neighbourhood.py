"""Pastry's neighbourhood set M: the nodes nearest to us by round-trip time.

M is not used to route in the common case; it supplies nearby nodes for
the rare case of a route (any known node that makes progress) and keeps
the proximity of the table honest. Only nodes whose round-trip time was
measured enter; the slowest member leaves when a faster one arrives. The
overlay pings its members periodically, which re-measures them and drops
the dead.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from dhtkit.contact import Contact

#: |M| of the Pastry paper.
NEIGHBOURHOOD_SIZE = 16


class Neighbourhood:
    """At most ``size`` contacts, the lowest round-trip times we measured."""

    def __init__(self, own_id: bytes, size: int = NEIGHBOURHOOD_SIZE) -> None:
        if size < 0:
            raise ValueError("the neighbourhood set size is not negative")
        self.own_id = own_id
        self.size = size
        self._members: dict[bytes, tuple[Contact, float]] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._members

    def ids(self) -> AbstractSet[bytes]:
        """The members' ids (a view)."""
        return self._members.keys()

    def contacts(self) -> list[Contact]:
        """The members, nearest first."""
        ranked = sorted(self._members.values(), key=lambda member: member[1])
        return [contact for contact, _ in ranked]

    def offer(self, contact: Contact, rtt: float) -> bool:
        """Record ``rtt`` for ``contact``; True when it entered M."""
        node_id = contact.node_id
        if node_id == self.own_id or self.size == 0:
            return False
        if node_id in self._members:
            self._members[node_id] = (contact, rtt)
            return False
        if len(self._members) >= self.size:
            slowest = max(self._members, key=lambda i: self._members[i][1])
            if self._members[slowest][1] <= rtt:
                return False
            del self._members[slowest]
        self._members[node_id] = (contact, rtt)
        return True

    def remove(self, node_id: bytes) -> bool:
        """Forget ``node_id``; True if it was a member."""
        return self._members.pop(node_id, None) is not None
