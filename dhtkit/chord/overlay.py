"""The Chord overlay (Stoica et al., SIGCOMM 2001) for one node.

Node ids and keys share the 160-bit ring; ``successor(key)``, the first node
at or after the key, holds it, and the ``k - 1`` nodes after it hold
copies. Each node keeps a predecessor, a successor list of ``r`` nodes and
a finger table (:class:`~dhtkit.chord.state.RingState`), answers four RPCs
(:mod:`~dhtkit.chord.messages`), looks keys up iteratively
(:mod:`~dhtkit.chord.lookup`) and keeps its state right with randomized
maintenance rounds (:mod:`~dhtkit.chord.rounds`).

**Hops**, in :class:`~dhtkit.overlay.Lookup`: the nodes that answered one
after another on the way to the key's predecessor, the paper's path length
(about ½·log2 N). A key between us and our successor takes 0 hops.

Who gets in. Fingers are nodes that answered us: a lookup (which a node
not yet on the ring refuses), a ``chord_state``, a ping; the predecessor
is a node that notified us, proving its id by the RPC layer's check. A
contact named in someone's answer is only a candidate: it is asked
before it becomes a successor, and pinged before it becomes a finger. The
successor list's tail is the exception the paper makes: it is copied from
our successor, which answered; so is the tail of the predecessor list from
our predecessor (it tells who holds the keys behind us: ``holds``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from dhtkit.chord import messages
from dhtkit.chord.lookup import SuccessorSearch
from dhtkit.chord.messages import FIND, LEAVE, STATE, State
from dhtkit.chord.placement import Placement
from dhtkit.chord.protocol import ChordResponder
from dhtkit.chord.rounds import Rounds
from dhtkit.chord.state import RingState
from dhtkit.contact import Address, Contact
from dhtkit.keyspace import check_id
from dhtkit.overlay import IRoutingOverlay, JoinFailed, Lookup, RoutingOverlayBase, ping_bootstrap
from dhtkit.periodic import Maintenance
from dhtkit.remembered import MERGE_EVERY
from dhtkit.transport import IRPC

#: Default seconds between maintenance rounds (each drawn in [0.5, 1.5] x this).
STABILIZE_EVERY = 2.0
FIX_FINGERS_EVERY = 2.0
CHECK_PREDECESSOR_EVERY = 4.0
#: Default replication: with a fifth of the nodes failing at once, a value
#: loses all four copies with odds of 0.2**4, about 0.2%.
DEFAULT_K = 4

#: What :meth:`ChordOverlay.stats` counts, besides the sizes of the tables.
#: (The lookups' are :data:`~dhtkit.overlay.LOOKUP_COUNTERS`.)
COUNTERS = (
    "bad_answers", "joins", "rejoins", "leaves", "leaves_received", "notifies_received",
    "stabilize_rounds", "successor_changes", "successor_refreshes", "successors_failed",
    "fix_fingers_rounds", "fingers_asked", "fingers_confirmed",
    "successor_checks", "successor_checks_corrected",
    "check_predecessor_rounds", "predecessor_changes", "predecessors_failed",
    "merge_attempts", "merges", "merge_notifies",
)  # fmt: skip
#: The keys of :meth:`ChordOverlay.stats` that are levels, not event counts.
GAUGES = frozenset({"fingers", "successors", "has_predecessor"})


@implementer(IRoutingOverlay)
class ChordOverlay(RoutingOverlayBase):
    """Chord routing for one node.

    :param rpc: the node's RPC layer; :meth:`start` registers the ``chord_*``
        methods on it.
    :param clock: the maintenance timers' clock (default: the RPC's reactor).
    :param successors: the successor list's length ``r`` (1 to 16).
    :param k: how many nodes hold each key, ``successor(key)`` and the
        ``k - 1`` after it (default ``min(4, successors)``, at most ``successors``).
    :param rng: the maintenance periods' randomness (seed it in simulations).
    :param stabilize_every: mean seconds between stabilize rounds.
    :param fix_fingers_every: mean seconds between fix_fingers rounds.
    :param check_predecessor_every: mean seconds between predecessor checks.
    :param merge_every: mean seconds between merge rounds (each asks one
        node we lost whether it is on another ring, see :mod:`~dhtkit.chord.rounds`).
    :param timeout: seconds to wait for each try of a call (default: the RPC's).
    :param retries: resends of a call before it times out (default: the RPC's).
    """

    _log = Logger()
    large_answers = messages.LARGE_ANSWERS

    def __init__(
        self,
        rpc: IRPC,
        *,
        clock: IReactorTime | None = None,
        successors: int = 16,
        k: int | None = None,
        rng: random.Random | None = None,
        stabilize_every: float = STABILIZE_EVERY,
        fix_fingers_every: float = FIX_FINGERS_EVERY,
        check_predecessor_every: float = CHECK_PREDECESSOR_EVERY,
        merge_every: float = MERGE_EVERY,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> None:
        if not 1 <= successors <= messages.MAX_SUCCESSORS:
            raise ValueError("successors is between 1 and {}".format(messages.MAX_SUCCESSORS))
        k = min(DEFAULT_K, successors) if k is None else k
        if not 1 <= k <= successors:
            raise ValueError("k is between 1 and successors ({})".format(successors))
        self.rpc = rpc
        self.clock = clock if clock is not None else rpc.clock
        self.k = k
        self.node_id = rpc.identity.node_id
        self.timeout = timeout
        self.retries = retries
        self.counters: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        super().__init__()
        # k - 1 predecessors tell exactly who else holds the keys we hold.
        predecessors = max(1, min(k - 1, messages.MAX_PREDECESSORS))
        self.state = RingState(self.node_id, successors, self.counters, predecessors)
        self.placement = Placement(self.state, self._call, self._search)
        self.rounds = Rounds(
            self.state,
            self._call,
            self.lookup,
            self.placement,
            self._verify,
            self.clock,
            fresh_for=check_predecessor_every,
        )
        self.maintenance = Maintenance(
            self.clock, rng if rng is not None else random.Random(), owner="chord"
        )
        self.maintenance.add("stabilize", stabilize_every, self.rounds.stabilize)
        self.maintenance.add("fix_fingers", fix_fingers_every, self.rounds.fix_fingers)
        self.maintenance.add(
            "check_predecessor", check_predecessor_every, self.rounds.check_predecessor
        )
        self.maintenance.add("merge", merge_every, self.rounds.merge)
        self.responder = ChordResponder(
            self.state, self._own_contact, self._verify, self._stabilize_now
        )

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        """Register the ``chord_*`` RPCs and start the maintenance rounds."""
        self.responder.register(self.rpc)
        self.rpc.add_listener(self._heard_from, self._wants)
        self.maintenance.start()

    def stop(self) -> None:
        """Stop the maintenance rounds and take the RPCs off."""
        self.maintenance.stop()
        self.responder.unregister(self.rpc)
        try:
            self.rpc.remove_listener(self._heard_from)
        except ValueError:
            pass  # not started

    def join(
        self, bootstrap: Sequence[Address], known: Sequence[Contact] = ()
    ) -> defer.Deferred[int]:
        """Ping ``bootstrap`` and ``known``; look our own id up through the
        first that answered (then the next) and make the node found our
        successor. With nothing to join through, we are a ring of one (0)."""
        return defer.Deferred.fromCoroutine(self._join(bootstrap, known))

    async def _join(self, bootstrap: Sequence[Address], known: Sequence[Contact]) -> int:
        self.state.joined = False
        for contact in known:
            if contact.node_id != self.node_id:
                self.state.lost.add(contact)
        pinged = await ping_bootstrap(self.rpc, bootstrap, known)
        if pinged is not None:
            verified = pinged.answered
            for contact in verified:
                self.state.fingers.offer(contact)
                # Where we came in (and the known contacts above): the
                # merge round asks them once they are not in our state.
                self.state.lost.add(contact)
            if not await self.placement.find_place(verified):
                raise JoinFailed("no node found our successor on the ring")
        # else the first node: a ring of one
        self.state.joined = True
        self.counters["joins"] += 1
        if pinged is not None:
            # In the background; its lookups fail quietly, only a bug is logged.
            self.rounds.fill_fingers().addErrback(
                lambda f: self._log.failure("filling the fingers failed", f)
            )
        return len(self.contacts())

    def leave(self) -> defer.Deferred[None]:
        """Stop, and tell our predecessor (with our successors) and our
        successor (with our predecessors), so that they link up at once.
        The value layer hands the keys over first (``DHTNode.leave``)."""
        return defer.Deferred.fromCoroutine(self._leave())

    async def _leave(self) -> None:
        self.stop()
        state = self.state
        predecessor, successors = state.predecessor, state.successors.contacts()
        args = messages.state_answer(State(state.predecessors, successors))
        told = {c.node_id: c for c in successors[:1]}
        if predecessor is not None:
            told.setdefault(predecessor.node_id, predecessor)
        await defer.DeferredList(
            [self._call(c, LEAVE, args) for c in told.values()], consumeErrors=True
        )
        state.joined = False
        state.successors.clear()
        state.set_predecessor(None)
        self.counters["leaves"] += 1

    # -- what the value layer asks ----------------------------------------------------

    def lookup(self, key: bytes, count: int) -> defer.Deferred[Lookup]:
        """``successor(key)`` and the ``count - 1`` distinct nodes after it
        (ourselves included where we are one); fails with
        :class:`~dhtkit.chord.lookup.LookupFailed` when no way to the key answers."""
        try:
            check_id(key)
        except ValueError as e:
            return defer.fail(e)
        me = self._own_contact()
        if me is None:
            return defer.succeed(Lookup(key, [], 0, 0))
        count = max(1, min(count, messages.MAX_CONTACTS))
        answer = self.state.answer_find(me, key, count)
        if answer.done:
            self.lookup_stats.record(0, 0)  # answered from our own state
            return defer.succeed(Lookup(key, answer.contacts, 0, 0))
        search = self._search(
            key,
            count,
            self.state.candidates(key, messages.MAX_CONTACTS),
            own_successors=self.state.successors.contacts(),
        )
        return search.run().addBoth(self._count_lookup, search)

    def _count_lookup(self, result: Any, search: SuccessorSearch) -> Any:
        self.lookup_stats.record(
            search.hops,
            search.messages,
            search.timeouts,
            search.bad_answers,
            failed=not isinstance(result, Lookup),
        )
        return result

    def _search(
        self,
        key: bytes,
        count: int,
        start: list[Contact],
        own_successors: list[Contact] | None = None,
    ) -> SuccessorSearch:
        def ask(contact: Contact) -> defer.Deferred[messages.FindAnswer]:
            call = self._call(contact, FIND, messages.find_args(key, count))
            return call.addCallback(messages.parse_find_answer, contact)

        def successors_of(contact: Contact) -> defer.Deferred[list[Contact]]:
            behind = messages.predecessors_args(self.state.predecessors)
            call = self._call(contact, STATE, behind)
            return call.addCallback(lambda answer: messages.parse_state(answer, contact).successors)

        return SuccessorSearch(
            key, count, self.node_id, start, ask,
            successors_of=successors_of,
            answered=self._answered,
            failed=self._lost_finger,
            own_successors=own_successors or (),
            watch=self.rpc.watch_unreachable,
        )  # fmt: skip

    def contacts(self) -> list[Contact]:
        return self.state.contacts()

    def holds(self, node_id: bytes, key: bytes, count: int) -> bool:
        """From our predecessors and successor list alone; exact for the keys
        we hold (see :meth:`RingState.holds`)."""
        return self.state.holds(node_id, key, count)

    def add_neighbour_listener(self, listener: Callable[[Contact], None]) -> None:
        """Call ``listener`` with a new predecessor or a new successor-list entry."""
        self.state.add_listener(listener)

    def stats(self) -> dict[str, int]:
        out = self.lookup_stats.stats()
        out.update(self.counters)
        out["fingers"] = len(self.state.fingers)
        out["successors"] = len(self.state.successors)
        out["has_predecessor"] = int(self.state.predecessor is not None)
        return out

    # -- calls ---------------------------------------------------------------------------

    def _verify(self, contact: Contact) -> defer.Deferred[Contact]:
        return self.rpc.ping(contact.address, contact.public_key)

    def _own_contact(self) -> Contact | None:
        contact: Contact | None = self.rpc.contact
        return contact

    def _stabilize_now(self) -> None:
        self.maintenance.run_now("stabilize")

    def _lost_finger(self, contact: Contact) -> None:
        # Fingers only: the successor list is stabilize's to change, and one
        # lost reply must not make keys move.
        self.state.lose_finger(contact.node_id)

    def _answered(self, contact: Contact) -> None:
        # It answered a lookup, which a node not on the ring refuses.
        self.state.fingers.offer(contact)

    def _wants(self, contact: Contact) -> bool:
        # Only the predecessor's messages matter to us (see heard_from):
        # nobody else is worth an address probe.
        predecessor = self.state.predecessor
        return predecessor is not None and predecessor.node_id == contact.node_id

    def _heard_from(self, contact: Contact) -> None:
        # The RPC layer verified the sender.
        self.state.heard_from(contact, self.clock.seconds())
