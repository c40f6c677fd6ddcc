"""The nodes an overlay knew and lost: where it looks for the rest of a split network.

A partition makes every node forget the nodes on the other side (a node
that does not answer is dropped from the routing state), and each side
repairs into a network of its own. When the partition heals, the periodic
rounds alone never join the two again: they ask only nodes in the routing
state, and no node knows one of the other side. So a node remembers, in a
set bounded by a constant, the last nodes it dropped (and those it joined
through), and a merge round asks one of them now and then
(:meth:`Remembered.ask_next`); one that answers again may be on the other
side, and the overlay joins through it: Chord looks its own id up through
it (Stoica et al., 2003, on ring merging), Pastry routes a join toward its
own id through it.

Only nodes that proved their ids get in (a dropped finger or leaf, a node
that answered the join's ping), so a peer cannot fill the set by talking
to us; the oldest is pushed out by the newest, and a node that said
goodbye is not remembered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Container, Iterator

from twisted.internet import defer

from dhtkit.contact import Contact

#: Nodes remembered at most.
MAX_REMEMBERED = 16
#: Default mean seconds between merge rounds: each asks one remembered node.
MERGE_EVERY = 10.0


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

    def ask_next(
        self, skip: Container[bytes], through: Callable[[Contact], defer.Deferred[bool]]
    ) -> defer.Deferred[bool]:
        """One merge round: hand the next contact not in ``skip`` (the nodes
        in our routing state) to ``through``, which joins through it and
        fires with whether it answered; one that answered is forgotten, one
        that did not is asked again in its turn. Fires with whether a
        contact was asked."""
        contact = self.next(skip)
        if contact is None:
            return defer.succeed(False)

        def done(answered: bool) -> bool:
            if answered:
                self.discard(contact.node_id)
            return True

        return through(contact).addCallback(done)
