"""The Pastry overlay (Rowstron and Druschel, Middleware 2001) for one node.

Ids are read as base-2^b digits (:mod:`~dhtkit.pastry.digits`). Each node
keeps a leaf set of the ``l`` numerically closest nodes on each side, a
routing table ``R[row][digit]`` preferring nearer nodes, and a
neighbourhood set M (:mod:`~dhtkit.pastry.state`); routes a key by the
paper's three cases (:mod:`~dhtkit.pastry.routing`), iteratively
(:mod:`~dhtkit.pastry.lookup`); joins by routing toward its own id
(:mod:`~dhtkit.pastry.join`) and repairs its state
(:mod:`~dhtkit.pastry.repair`). The numerically closest node is
responsible for a key and the next closest hold its copies, as in PAST.

After a partition heals, neither side knows a node of the other: the
merge round joins again through a node we lost
(:mod:`~dhtkit.remembered`), once it answers. That join's route toward
our own id crosses to the other side, and its announcements tell the
nodes there of us; the leaf-set rounds weave the rest.

Who gets in. A node enters our state when it proved its id and address:
the RPC layer's listener hears of a querier only after a probe round trip,
and a node that answers one of our calls proved both. A node named in an
answer is a candidate, pinged first. Round-trip times come from our own
calls that were answered.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dhtkit.contact import Address, Contact
from dhtkit.keyspace import check_id
from dhtkit.overlay import IRoutingOverlay, JoinFailed, Lookup, RoutingOverlayBase, ping_bootstrap
from dhtkit.pastry import messages
from dhtkit.pastry.digits import Digits
from dhtkit.pastry.join import Join, JoinReport
from dhtkit.pastry.lookup import LookupFailed, RouteSearch
from dhtkit.pastry.messages import LEAVE, ROUTE
from dhtkit.pastry.repair import Repair
from dhtkit.pastry.responder import Departed, PastryResponder
from dhtkit.pastry.routing import route
from dhtkit.pastry.state import PastryState
from dhtkit.periodic import Maintenance
from dhtkit.remembered import MERGE_EVERY
from dhtkit.rpcerrors import RPCError, RPCTimeout
from dhtkit.transport import IRPC

#: Default replication: the responsible node and the three next closest.
DEFAULT_K = 4
#: Default mean seconds between leaf-set rounds and neighbourhood rounds.
LEAF_EVERY = 20.0
NEIGHBOURHOOD_EVERY = 60.0

#: What :meth:`PastryOverlay.stats` counts, besides the sizes of the state.
#: (The lookups' are :data:`~dhtkit.overlay.LOOKUP_COUNTERS`.)
COUNTERS = (
    "bad_answers", "no_progress", "joins", "join_messages", "leaves", "leaves_received",
    "announces_received", "leaf_repairs", "table_repairs", "leaf_rounds",
    "neighbourhood_rounds", "candidates_pinged", "candidates_dropped",
    "merge_attempts", "merges",
)  # fmt: skip
#: The keys of :meth:`PastryOverlay.stats` that are levels, not event counts.
GAUGES = frozenset({"leaf_set", "table_entries", "neighbourhood"})


@implementer(IRoutingOverlay)
class PastryOverlay(RoutingOverlayBase):
    """Pastry routing for one node.

    :param rpc: the node's RPC layer; :meth:`start` registers ``pastry_*`` on it.
    :param clock: the timers' clock, and round-trip times (default: the RPC's reactor).
    :param leaf_size: ``l``, leaf-set members on each side (``|L| = 2l``).
    :param digit_bits: ``b``, bits per digit (1, 2 or 4).
    :param neighbourhood_size: ``|M|``.
    :param k: how many nodes hold each key (1 to ``min(l, 8)``; default 4).
    :param rng: the rounds' randomness (seed it in simulations).
    :param leaf_every: mean seconds between leaf-set rounds.
    :param neighbourhood_every: mean seconds between pings of M.
    :param merge_every: mean seconds between merge rounds (each joins again
        through one node we lost, once it answers: see :mod:`~dhtkit.remembered`).
    :param timeout: seconds per try of a call (default: the RPC's).
    :param retries: resends of a call before it times out (default: the RPC's).
    """

    _log = Logger()
    large_answers = messages.LARGE_ANSWERS

    def __init__(
        self,
        rpc: IRPC,
        *,
        clock: IReactorTime | None = None,
        leaf_size: int = 8,
        digit_bits: int = 4,
        neighbourhood_size: int = 16,
        k: int | None = None,
        rng: random.Random | None = None,
        leaf_every: float = LEAF_EVERY,
        neighbourhood_every: float = NEIGHBOURHOOD_EVERY,
        merge_every: float = MERGE_EVERY,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> None:
        digits = Digits(digit_bits)
        k = min(DEFAULT_K, leaf_size) if k is None else k
        if not 1 <= k <= min(leaf_size, messages.MAX_COUNT):
            raise ValueError("k is between 1 and min(leaf_size, {})".format(messages.MAX_COUNT))
        self.rpc = rpc
        self.clock = clock if clock is not None else rpc.clock
        self.k = k
        self.node_id = rpc.identity.node_id
        self.timeout = timeout
        self.retries = retries
        self.state = PastryState(self.node_id, digits, leaf_size, neighbourhood_size)
        self.counters: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        super().__init__()
        self.repair = Repair(self.state, self._call, self.clock, self.counters)
        self.maintenance = Maintenance(
            self.clock, rng if rng is not None else random.Random(), owner="pastry"
        )
        self.maintenance.add("leaves", leaf_every, lambda: self.repair.check_leaves(leaf_every))
        self.maintenance.add("neighbourhood", neighbourhood_every, self.repair.check_neighbourhood)
        self.maintenance.add("merge", merge_every, self._merge)
        self.joined = False
        #: What the last join did (its path, rows and messages).
        self.last_join: JoinReport | None = None
        self.departed = Departed(self.clock)
        self.responder = PastryResponder(
            self.state,
            lambda: self.rpc.contact,
            lambda: self.joined,
            lambda contact: self.repair.lost(contact, left=True),
            self.departed,
            self.counters,
        )
        self._listening = False

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        """Register the ``pastry_*`` RPCs and start the periodic rounds."""
        self.responder.register(self.rpc)
        if not self._listening:
            self._listening = True
            self.rpc.add_listener(self._heard_from, self._wants)
        self.maintenance.start()

    def stop(self) -> None:
        """Stop the periodic rounds and take the RPCs off."""
        self.maintenance.stop()
        self.responder.unregister(self.rpc)
        if self._listening:
            self._listening = False
            self.rpc.remove_listener(self._heard_from)

    def join(
        self, bootstrap: Sequence[Address], known: Sequence[Contact] = ()
    ) -> defer.Deferred[int]:
        """Ping ``bootstrap`` and ``known``, then route a join toward our own
        id through the first that answered (then the next). With nothing to
        join through, we are the first node (0)."""
        return defer.Deferred.fromCoroutine(self._join(bootstrap, known))

    async def _join(self, bootstrap: Sequence[Address], known: Sequence[Contact]) -> int:
        self.joined = False
        for contact in known:
            self.state.lost.add(contact)
        pinged = await ping_bootstrap(self.rpc, bootstrap, known)
        if pinged is not None:
            # Where we came in: the merge round asks them once they are not in our state.
            for contact in pinged.answered:
                self.state.lost.add(contact)
        if pinged is None:
            self.joined = True
            self.counters["joins"] += 1
            return 0
        spent = pinged.pinged
        for via in pinged.answered:
            join = Join(self.state, self._call)
            try:
                report = await join.run(via)
            except LookupFailed:
                spent += join.report.messages
                continue
            report.messages += spent
            break
        else:
            raise JoinFailed("no route toward our own id answered")
        self.joined = True
        self.last_join = report
        self.counters["joins"] += 1
        self.counters["join_messages"] += report.messages
        # Nodes that joined just before us may be missing from the leaf set we
        # copied (their neighbours learn of them a probe round trip after
        # their announcements): swap leaf sets with our nearest leaves now.
        self.maintenance.run_now("leaves")
        return len(self.contacts())

    def leave(self) -> defer.Deferred[None]:
        """Stop, and tell the leaf set, whose members repair at once.
        The value layer hands the keys over first (``DHTNode.leave``)."""
        return defer.Deferred.fromCoroutine(self._leave())

    async def _leave(self) -> None:
        self.stop()
        told = self.state.leafset.contacts()
        await defer.DeferredList(
            [self.rpc.call_contact(c, LEAVE, None, timeout=self.timeout, retries=0) for c in told],
            consumeErrors=True,
        )
        for contact in self.state.contacts():
            self.state.forget(contact.node_id)
        self.joined = False
        self.counters["leaves"] += 1

    def _merge(self) -> defer.Deferred[None]:
        """One merge round: join again through the next node we lost that is
        not in our state. A node still away costs one message; one that
        answers, about as many as a join."""
        if not self.joined:
            return defer.succeed(None)
        return self.state.lost.ask_next(self.state, self._merge_through).addCallback(lambda _: None)

    def _merge_through(self, contact: Contact) -> defer.Deferred[bool]:
        self.counters["merge_attempts"] += 1
        join = Join(self.state, self._call)

        def joined(report: JoinReport) -> bool:
            self.counters["merges"] += 1
            return True

        def failed(failure: Failure) -> bool | Failure:
            if not isinstance(failure.value, (LookupFailed, RPCError)):  # RPCStopped: we stopped
                return failure
            self.counters["bad_answers"] += join.report.bad_answers
            return bool(join.report.path) or join.report.bad_answers > 0

        return join.run(contact).addCallbacks(joined, failed)

    # -- what the value layer asks ------------------------------------------------------

    def lookup(self, key: bytes, count: int) -> defer.Deferred[Lookup]:
        """The ``count`` nodes numerically closest to ``key`` (ourselves
        included where we are one); fails with
        :class:`~dhtkit.pastry.lookup.LookupFailed` when no way to the key answers."""
        try:
            check_id(key)
        except ValueError as e:
            return defer.fail(e)
        me = self.rpc.contact
        if me is None:
            return defer.succeed(Lookup(key, [], 0, 0))
        count = max(1, min(count, messages.MAX_COUNT))

        def ask(contact: Contact, hop: int) -> defer.Deferred[messages.RouteAnswer]:
            call = self._call(contact, ROUTE, messages.route_args(key, count))
            return call.addCallback(messages.parse_route_answer, count)

        first = route(self.state, me, key, count)
        search = RouteSearch(
            key, count, self.node_id, self.state.digits, first, ask, me=me,
            reroute=lambda avoid: route(self.state, me, key, count, exclude=avoid),
            watch=self.rpc.watch_unreachable,
        )  # fmt: skip
        return search.run().addBoth(self._count_lookup, search)

    def _count_lookup(self, result: Any, search: RouteSearch) -> Any:
        self.lookup_stats.record(
            search.hops,
            search.messages,
            search.timeouts,
            search.bad_answers,
            failed=not isinstance(result, Lookup),
        )
        self.counters["no_progress"] += search.no_progress
        return result

    def contacts(self) -> list[Contact]:
        return self.state.contacts()

    def contact_count(self) -> int:
        return self.state.count()

    def holds(self, node_id: bytes, key: bytes, count: int) -> bool:
        """From our leaf set alone; exact for the keys we hold."""
        return self.state.holds(node_id, key, count, self.rpc.contact)

    def add_neighbour_listener(self, listener: Callable[[Contact], None]) -> None:
        """Call ``listener`` with each node new to our leaf set."""
        self.state.add_listener(listener)

    def stats(self) -> dict[str, int]:
        out = self.lookup_stats.stats()
        out.update(self.counters)
        out["leaf_set"] = len(self.state.leafset)
        out["table_entries"] = len(self.state.table)
        out["neighbourhood"] = len(self.state.neighbourhood)
        return out

    # -- calls ---------------------------------------------------------------------------

    def _call(self, contact: Contact, method: str, args: Any) -> defer.Deferred[Any]:
        """Call ``contact``; an answer offers it with its round-trip time,
        a timeout makes us forget it and repair."""
        started = self.clock.seconds()
        d = super()._call(contact, method, args)

        def answered(result: Any) -> Any:
            if self._welcome(contact.node_id):
                self.state.offer(contact, self.clock.seconds() - started)
                self.repair.heard(contact.node_id)
            return result

        def failed(failure: Failure) -> Failure:
            if isinstance(failure.value, RPCTimeout):
                self.repair.lost(contact).addErrback(
                    lambda f: self._log.failure("repairing after {node} failed", f, node=contact)
                )
            return failure

        return d.addCallbacks(answered, failed)

    def _welcome(self, node_id: bytes) -> bool:
        return node_id != self.node_id and node_id not in self.departed

    def _wants(self, contact: Contact) -> bool:
        # A sender whose address is not proven is worth a probe only when
        # it is in our state (at a new address) or would enter it (the leaf
        # set, or an empty table slot): anyone else would be offered for
        # nothing, so probing it only doubled the datagrams of a stranger's
        # lookups and reads.
        node_id = contact.node_id
        return self._welcome(node_id) and self.state.worth_probing(node_id)

    def _heard_from(self, contact: Contact) -> None:
        # The RPC layer verified the sender's id and proved its address.
        if self._welcome(contact.node_id):
            self.state.offer(contact)
            self.repair.heard(contact.node_id)
