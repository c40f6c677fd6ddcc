"""What the value layer needs from an overlay, and the simplest overlay.

The value layer (:mod:`dhtkit.node`) asks one question of an overlay: which
nodes are responsible for a key. Kademlia, Chord and Pastry each answer it
their own way; :class:`StaticOverlay` answers it for a fixed set of nodes
that all know each other, which is what small clusters and the value
layer's own tests need.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet import defer
from zope.interface import Attribute, Interface, implementer

from dhtkit.contact import Contact
from dhtkit.keyspace import check_id, distance


class IOverlay(Interface):
    """Routing: who is responsible for a key."""

    k = Attribute("How many nodes hold each key by default (the replication factor).")

    def find_responsible(key: bytes, count: int) -> defer.Deferred[list[Contact]]:
        """Up to ``count`` contacts responsible for ``key``, most responsible first.

        The list may include this node's own contact. It fails only when the
        overlay cannot look anything up (it fires with an empty list when it
        knows no node at all).
        """


@implementer(IOverlay)
class StaticOverlay:
    """A full mesh: every member knows every other.

    The members closest to a key by XOR distance are responsible for it, as
    in Kademlia, but found without a lookup. Members join with :meth:`add`
    and leave with :meth:`remove`.
    """

    def __init__(self, members: Iterable[Contact] = (), k: int = 20) -> None:
        self.k = k
        self._members: dict[bytes, Contact] = {}
        for contact in members:
            self.add(contact)

    def add(self, contact: Contact) -> None:
        """Make ``contact`` a member (or update its address)."""
        self._members[contact.node_id] = contact

    def remove(self, node_id: bytes) -> None:
        """Forget the member with ``node_id``, if there is one."""
        self._members.pop(node_id, None)

    def __len__(self) -> int:
        return len(self._members)

    def closest(self, key: bytes, count: int) -> list[Contact]:
        """The ``count`` members closest to ``key``, closest first."""
        check_id(key)
        ranked = sorted(self._members.values(), key=lambda c: distance(c.node_id, key))
        return ranked[:count]

    def find_responsible(self, key: bytes, count: int) -> defer.Deferred[list[Contact]]:
        try:
            return defer.succeed(self.closest(key, count))
        except ValueError as e:
            return defer.fail(e)
