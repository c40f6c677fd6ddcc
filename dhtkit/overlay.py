"""What the value layer needs from an overlay, the kit every overlay uses, and the simplest overlay.

The value layer (:mod:`dhtkit.node`) asks one question of an overlay: which
nodes are responsible for a key. Kademlia, Chord and Pastry each answer it
their own way; :class:`StaticOverlay` answers it for a fixed set of nodes
that all know each other, which is what small clusters and the value
layer's own tests need.

The kit: :class:`RoutingOverlayBase` (``find_responsible`` through the
overlay's own lookup), :class:`LookupStats` (the same lookup counters and
hop histogram for every overlay), :class:`JoinFailed` and :class:`LookupFailed` (each
overlay's own failures subclass them), and :func:`ping_bootstrap`, the
first step of every join. The periodic-task runner is
:mod:`dhtkit.periodic`; the registry of overlays is :mod:`dhtkit.overlays`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet import defer
from zope.interface import Attribute, Interface, implementer

from dhtkit.contact import Address, Contact
from dhtkit.histogram import Histogram
from dhtkit.keyspace import check_id, distance
from dhtkit.rpcerrors import RemoteError

if TYPE_CHECKING:
    from dhtkit.transport import IRPC


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
    result, for Chord and Pastry the nodes that answered one after another.
    """

    key: bytes
    contacts: list[Contact]
    hops: int
    messages: int
    timeouts: int = 0


class IRoutingOverlay(IOverlay):
    """An overlay that builds, keeps and saves routing state of its own."""

    lookup_stats = Attribute("The :class:`LookupStats` of the overlay's lookups.")
    hop_histogram = Attribute(
        "A :class:`dhtkit.histogram.Histogram` of the hops of each lookup (as in "
        ":class:`Lookup`): ``lookup_stats.hops``."
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

    def contact_count() -> int:
        """How many contacts :meth:`contacts` would give (the value layer asks
        on every put and get, so an overlay may count without the list)."""

    def holds(node_id: bytes, key: bytes, count: int) -> bool:
        """Whether, as far as this node knows, ``node_id`` is among the
        ``count`` nodes responsible for ``key`` (without any traffic)."""

    def add_neighbour_listener(listener: Callable[[Contact], None]) -> None:
        """Call ``listener(contact)`` when a node appears that may now hold
        some of the keys this node holds (a new predecessor or successor in
        Chord, a contact among our k closest in Kademlia, a new leaf in
        Pastry); the value layer hands those keys over to it."""

    def stats() -> dict[str, int]:
        """The overlay's counters: :data:`LOOKUP_COUNTERS` and its own."""


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

    def lookup_storing(
        key: bytes,
        count: int,
        store: Callable[[Contact], defer.Deferred[tuple[list[bytes], Any]]],
    ) -> defer.Deferred[ValueLookup]:
        """Look ``key`` up as :meth:`IRoutingOverlay.lookup` does, but ask
        the ``count`` closest nodes of the lookup's last step (once a round
        brought nothing closer), those asked before included, with
        ``store(contact)`` instead of FIND_NODE: a put's STORE, whose
        answer names the nodes nearest the key (:meth:`nearest_for`). It
        fires with ``(named, outcome)``, the wire-encoded contacts the node
        named and what the caller makes of its answer, or fails as an
        unanswered query does; the result's ``answers`` are the
        ``(contact, outcome)`` pairs of the nodes so asked that answered,
        among them some that may not be among the closest found in the end."""

    def nearest_for(key: bytes, sender: Contact, count: int) -> tuple[list[bytes], bool]:
        """The contacts nearest ``key`` this node names to ``sender``, as
        FIND_NODE answers them (wire-encoded), and whether this node may be
        one of the ``count`` nodes closest to ``key`` (it knows fewer than
        ``count`` closer)."""


#: The error code of a node still joining: it answers no routing query yet
#: (a query of a half-made state would route wrongly). Every overlay sends it.
NOT_JOINED = "not_joined"


def not_joined(error: Exception) -> bool:
    """Whether ``error`` is a node's refusal because it is still joining: no
    way through it for now, but no bad answer either (a restarting node
    sends it)."""
    return isinstance(error, RemoteError) and error.code == NOT_JOINED


class JoinFailed(Exception):
    """Joining failed: no bootstrap address or saved contact answered, or
    none that answered led to our place; the message says which."""


class LookupFailed(Exception):
    """No way to the key answered; each overlay raises a subclass of its own."""


#: The lookup counters every overlay's ``stats()`` reports, under these names.
LOOKUP_COUNTERS = (
    "lookups", "lookup_hops", "lookup_messages", "lookup_timeouts", "lookup_bad_answers",
    "lookups_failed",
)  # fmt: skip


class LookupStats:
    """What an overlay's lookups cost, counted the same way for every overlay.

    A lookup is counted once it ended (one under way is in neither the
    counters nor the histogram); a failed one counts its cost too.
    """

    def __init__(self) -> None:
        self.counters: dict[str, int] = dict.fromkeys(LOOKUP_COUNTERS, 0)
        #: The hops of each lookup, as the overlay counts them (see :class:`Lookup`).
        self.hops = Histogram()

    def record(
        self,
        hops: int,
        messages: int,
        timeouts: int = 0,
        bad_answers: int = 0,
        failed: bool = False,
    ) -> None:
        """Count one lookup that ended."""
        c = self.counters
        c["lookups"] += 1
        c["lookup_hops"] += hops
        c["lookup_messages"] += messages
        c["lookup_timeouts"] += timeouts
        c["lookup_bad_answers"] += bad_answers
        c["lookups_failed"] += failed
        self.hops.observe(hops)

    def stats(self) -> dict[str, int]:
        """The counters, by the names of :data:`LOOKUP_COUNTERS`."""
        return dict(self.counters)


@attrs.frozen
class Bootstrapped:
    """Who answered the first pings of a join."""

    #: The pings sent (one per address and known contact).
    pinged: int
    #: The nodes that answered, each having proved its id and address; never ourselves.
    answered: list[Contact]


class RoutingOverlayBase:
    """What every routing overlay does the same way: it answers
    :meth:`IOverlay.find_responsible` with its own :meth:`lookup`, keeps
    the :class:`LookupStats` of its lookups, and calls its peers with its
    timeout and retries."""

    #: The node's RPC layer (each overlay's ``__init__`` sets it).
    rpc: IRPC
    #: Seconds to wait for each try of a call, and the resends before it
    #: times out (None: the RPC layer's own).
    timeout: float | None = None
    retries: int | None = None
    #: The methods whose answers may fill a datagram (contacts, records): a
    #: first query of them to a peer is padded so that its answer need not
    #: wait for an address probe (see :mod:`dhtkit.routability`).
    large_answers: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.lookup_stats = LookupStats()

    def _call(self, contact: Contact, method: str, args: Any) -> defer.Deferred[Any]:
        return self.rpc.call_contact(
            contact,
            method,
            args,
            timeout=self.timeout,
            retries=self.retries,
            large_answer=method in self.large_answers,
        )

    @property
    def hop_histogram(self) -> Histogram:
        """The hops of each lookup (``lookup_stats.hops``)."""
        return self.lookup_stats.hops

    def lookup(self, key: bytes, count: int) -> defer.Deferred[Lookup]:
        """Find the ``count`` nodes responsible for ``key`` (each overlay's own)."""
        raise NotImplementedError

    def find_responsible(self, key: bytes, count: int) -> defer.Deferred[list[Contact]]:
        """The contacts :meth:`lookup` found."""
        return self.lookup(key, count).addCallback(_contacts_found)

    def contacts(self) -> list[Contact]:
        """Every contact in the routing state (each overlay's own)."""
        raise NotImplementedError

    def contact_count(self) -> int:
        """``len(contacts())``; an overlay that can count cheaper says so."""
        return len(self.contacts())


def _contacts_found(found: Lookup) -> list[Contact]:
    return found.contacts


async def ping_bootstrap(
    rpc: IRPC, bootstrap: Sequence[Address], known: Sequence[Contact]
) -> Bootstrapped | None:
    """The first step of a join: ping ``bootstrap`` and ``known`` at once.

    Fires with who answered; with None when there is nobody to ask (the
    first node of a network).

    :raises JoinFailed: nobody answered.
    """
    own = rpc.identity.node_id
    pings = [rpc.ping(address) for address in bootstrap]
    pings += [rpc.ping(c.address, c.public_key) for c in known if c.node_id != own]
    if not pings:
        return None
    answers = await defer.DeferredList(pings, consumeErrors=True)
    answered = [c for ok, c in answers if ok and c.node_id != own]
    if not answered:
        raise JoinFailed("none of the {} bootstrap nodes answered".format(len(pings)))
    return Bootstrapped(len(pings), answered)


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
