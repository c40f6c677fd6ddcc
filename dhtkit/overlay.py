"""What the value layer needs from an overlay, and the simplest overlay.

The value layer (:mod:`dhtkit.node`) asks one question of an overlay: which
nodes are responsible for a key. Kademlia, Chord and Pastry each answer it
their own way; :class:`StaticOverlay` answers it for a fixed set of nodes
that all know each other, which is what small clusters and the value
layer's own tests need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from zope.interface import Attribute, Interface, implementer

from dhtkit.contact import Address, Contact
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


@attrs.frozen
class Lookup:
    """What one lookup found, and what it cost.

    ``hops`` follows each overlay's convention, stated in its module: for
    Kademlia the length of the longest chain of replies that led to the
    result, for Chord the nodes asked one after another.
    """

    key: bytes
    contacts: list[Contact]
    hops: int
    messages: int
    timeouts: int = 0


class IRoutingOverlay(IOverlay):
    """An overlay that builds, keeps and saves routing state of its own."""

    hop_histogram = Attribute(
        "A :class:`dhtkit.metrics.Histogram` of the hops of each lookup (as in :class:`Lookup`)."
    )

    def start() -> None:
        """Register the overlay's RPCs and start its maintenance timers."""

    def stop() -> None:
        """Stop the maintenance timers (the RPC layer stays the owner's)."""

    def join(bootstrap: Sequence[Address], known: Sequence[Contact] = ()) -> defer.Deferred[int]:
        """Enter the network through ``bootstrap`` addresses and ``known`` contacts.

        ``known`` are contacts saved by an earlier run (see :meth:`contacts`);
        they are tried like the bootstrap addresses. Fires with the number of
        contacts the routing state holds afterwards; fails with
        :class:`JoinFailed` when no one answered.
        """

    def lookup(key: bytes, count: int) -> defer.Deferred[Lookup]:
        """Find the ``count`` nodes responsible for ``key``, with the cost."""

    def leave() -> defer.Deferred[None]:
        """Leave gracefully: tell the neighbours, so they close the gap at once."""

    def contacts() -> list[Contact]:
        """Every contact in the routing state (what a restart rejoins through)."""

    def holds(node_id: bytes, key: bytes, count: int) -> bool:
        """Whether, as far as this node knows, ``node_id`` is among the
        ``count`` nodes responsible for ``key`` (without any traffic)."""

    def add_neighbour_listener(listener: Callable[[Contact], None]) -> None:
        """Call ``listener(contact)`` when a node appears that may now hold
        some of the keys this node holds (a new predecessor or successor in
        Chord, a contact among our k closest in Kademlia); the value layer
        hands those keys over to it."""

    def stats() -> dict[str, int]:
        """The overlay's counters (lookups, hops, timeouts, ...)."""


#: The value layer's answer for a key it holds: ``[record, ttl]`` on the
#: wire, or None when it holds nothing.
ValueSource = Callable[[bytes], Any]


@attrs.frozen
class ValueLookup:
    """What a FIND_VALUE lookup found.

    ``answers`` are the raw ``[record, ttl]`` answers of the nodes that hold
    the key (the value layer checks them); ``without`` are the nodes that
    answered without it, closest to the key first; ``lookup.contacts`` are
    the closest nodes that answered, as in :meth:`IRoutingOverlay.lookup`.
    """

    lookup: Lookup
    answers: list[tuple[Contact, Any]]
    without: list[Contact]
    stopped_early: bool


class IValueFinder(Interface):
    """Kademlia's FIND_VALUE: a lookup that stops at a node holding the key."""

    def serve_values(source: ValueSource) -> None:
        """Answer FIND_VALUE for a key with ``source(key)`` when it is not None."""

    def find_value(
        key: bytes,
        count: int,
        enough: Callable[[Contact, Any], bool],
        quorum: int = 0,
        valid: Callable[[Contact, Any], bool] | None = None,
    ) -> defer.Deferred[ValueLookup]:
        """Look ``key`` up asking for its value; stop as soon as
        ``enough(contact, answer)`` is true for an answer, or once ``quorum``
        answers for which ``valid(contact, answer)`` holds came from the
        closest nodes the lookup heard from (then ``stopped_early`` and
        ``lookup.contacts`` are those nodes); else go on until the
        ``count`` closest nodes answered."""


class JoinFailed(Exception):
    """No bootstrap address and no saved contact answered."""


class LookupFailed(Exception):
    """No way to the key answered; each overlay raises a subclass of its own."""


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
