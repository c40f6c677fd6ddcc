"""The nodes a Chord node knew and lost: where it looks for a ring it split from.

A partition makes every node forget the nodes on the other side (a failed
successor or finger is dropped), and each side repairs into a ring of its
own. When the partition heals, stabilization alone never joins the two
rings again: no node knows one of the other. So a node remembers, in a set
bounded by a constant, the last nodes it dropped (and those it joined
through), and the merge round (:meth:`~dhtkit.chord.rounds.Rounds.merge`)
asks one of them now and then; one that answers again may be on another
ring (Stoica et al., 2003, on ring merging).

Only nodes that proved their ids get in (a dropped successor or finger, a
node that answered the join's ping), so a peer cannot fill the set by
talking to us; and the oldest is pushed out by the newest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Iterator

from dhtkit.contact import Contact

#: Nodes remembered at most.
MAX_REMEMBERED = 16


class Remembered:
    """A bounded set of contacts, oldest first, asked in turn.

    :param own_id: never remembered.
    :param size: how many are kept; the oldest is pushed out by a new one.
    """

    def __init__(self, own_id: bytes, size: int = MAX_REMEMBERED) -> None:
        if size < 1:
            raise ValueError("remember at least one node")
        self.own_id = own_id
        self.size = size
        self._contacts: OrderedDict[bytes, Contact] = OrderedDict()

    def __len__(self) -> int:
        return len(self._contacts)

    def __iter__(self) -> Iterator[Contact]:
        return iter(list(self._contacts.values()))

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._contacts

    def add(self, contact: Contact) -> None:
        """Remember ``contact`` (as the newest); the oldest goes when full."""
        if contact.node_id == self.own_id:
            return
        self._contacts.pop(contact.node_id, None)
        self._contacts[contact.node_id] = contact
        while len(self._contacts) > self.size:
            self._contacts.popitem(last=False)

    def discard(self, node_id: bytes) -> None:
        """Forget ``node_id`` if it is remembered."""
        self._contacts.pop(node_id, None)

    def next(self, skip: Container[bytes]) -> Contact | None:
        """The oldest contact not in ``skip``, moved to the end so that the
        next call asks another; None if there is none."""
        for node_id, contact in self._contacts.items():
            if node_id not in skip:
                self._contacts.move_to_end(node_id)
                return contact
        return None
