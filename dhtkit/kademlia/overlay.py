"""The Kademlia overlay: a routing table kept fresh, and lookups over it.

Every verified message offers its sender to the routing table (the RPC
layer has checked that the sender holds the key behind its id, so a node
that only claims an id never gets in). Two RPCs serve lookups:
``find_node`` answers a target with the k closest contacts we know, and
``find_value`` answers with the value layer's record when we hold the key,
else with contacts like ``find_node``. ``ping`` is the RPC layer's own.
Storing goes through the value layer's ``store``.

Against Sybils and eclipses (``docs/kademlia.rst``): the table keeps a few
contacts per network and, optionally, only ids that solve the static
puzzle; answers hand out only contacts heard from recently and without a
pending failure; stale contacts are re-checked every ``recheck_every``
seconds; lookups keep a few contacts per network in their shortlist and
result; and :meth:`KademliaOverlay.find_value_disjoint` runs S/Kademlia's
disjoint lookups for the reads that ask for them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from dhtkit import wire
from dhtkit.contact import Address, Contact
from dhtkit.hedge import RoundTrip
from dhtkit.identity import solves_puzzle
from dhtkit.kademlia.diversity import NetworkLimit
from dhtkit.kademlia.lookup import Answer, IterativeLookup, LookupOutcome
from dhtkit.kademlia.table import STALE_AFTER, RoutingTable
from dhtkit.keyspace import check_id, distance
from dhtkit.overlay import (
    IRoutingOverlay,
    IValueFinder,
    Lookup,
    RoutingOverlayBase,
    ValueLookup,
    ValueSource,
    ping_bootstrap,
)
from dhtkit.rpcerrors import MALFORMED, RemoteError, malformed
from dhtkit.transport import IRPC

#: How often a bucket no lookup went through is refreshed (the paper's hour).
REFRESH_EVERY = 3600.0

#: A lookup starts from our k closest contacts, and this many times k stand
#: by: only when the first seeds fail are the others read from the table and
#: take their place, so a lookup does not end empty while our table holds
#: live contacts, and costs nothing more while the first seeds answer.
SEEDS_PER_K = 3

#: A full bucket's head heard from this recently is not pinged for a newcomer.
PING_AFTER = 60.0

#: How often stale contacts are re-checked, and how many at most each time.
RECHECK_EVERY = 60.0
RECHECK_BATCH = 64

#: The most disjoint paths a read may ask for.
MAX_PATHS = 8

#: What a join's bucket refresh takes as its "value": enough nodes named to fill the bucket.
_BUCKET_FULL = object()

#: The keys of :meth:`KademliaOverlay.stats` that are levels, not event counts.
GAUGES = frozenset({"contacts", "buckets", "replacements", "pinging"})


@implementer(IRoutingOverlay, IValueFinder)
class KademliaOverlay(RoutingOverlayBase):
    """Kademlia routing for one node.

    :param rpc: the node's RPC layer (``find_node`` and ``find_value`` are
        registered on it by :meth:`start`).
    :param clock: defaults to the RPC layer's reactor.
    :param k: bucket size, and how many nodes hold each key.
    :param alpha: queries in flight per lookup.
    :param refresh_every: seconds after which an untouched bucket is refreshed.
    :param stall_after: seconds after which a lookup stops waiting for a
        contact and asks the next one (default: half the RPC timeout).
    :param max_failures: failed calls in a row that drop a contact.
    :param rng: random ids for refreshes and the timers' jitter.
    :param network_limit: contacts of one network per bucket, replacement
        cache and lookup result (:class:`NetworkLimit`: 3 per /24 or /64,
        loopback and private ranges not limited).
    :param puzzle_bits: leading zero bits of the static puzzle every id
        must solve to enter the table or a lookup (0: none).
    :param stale_after: seconds without a word after which a contact is no
        longer handed out until a re-check hears from it.
    :param recheck_every: seconds between two rounds of re-checks.
    """

    _log = Logger()
    large_answers = frozenset({"find_node", "find_value"})

    def __init__(
        self,
        rpc: IRPC,
        *,
        clock: IReactorTime | None = None,
        k: int = 20,
        alpha: int = 3,
        refresh_every: float = REFRESH_EVERY,
        stall_after: float | None = None,
        max_failures: int = 3,
        rng: random.Random | None = None,
        network_limit: NetworkLimit | None = None,
        puzzle_bits: int = 0,
        stale_after: float = STALE_AFTER,
        recheck_every: float = RECHECK_EVERY,
    ) -> None:
        if k < 1 or alpha < 1:
            raise ValueError("k and alpha must be at least 1")
        if recheck_every <= 0:
            raise ValueError("recheck_every must be positive")
        self.recheck_every = recheck_every
        self.rpc = rpc
        self.clock = clock if clock is not None else rpc.clock
        self.k = k
        self.alpha = alpha
        self.refresh_every = refresh_every
        self.stall_after = stall_after if stall_after is not None else rpc.timeout / 2
        self.rng = rng if rng is not None else random.Random()
        self.node_id = rpc.identity.node_id
        self.table = RoutingTable(
            self.node_id,
            ping=self._ping,
            clock=self.clock,
            k=k,
            max_failures=max_failures,
            rng=self.rng,
            on_promoted=self._offer_neighbour,
            network_limit=network_limit,
            puzzle_bits=puzzle_bits,
            stale_after=stale_after,
            ping_after=PING_AFTER,
        )
        self._values: ValueSource = lambda key: None
        self._neighbour_listeners: list[Callable[[Contact], None]] = []
        self._timer: IDelayedCall | None = None
        self._recheck_timer: IDelayedCall | None = None
        self._started = False
        self.counters: dict[str, int] = dict.fromkeys(
            ("refreshes", "unsolved_contacts_dropped", "disjoint_lookups"), 0
        )
        super().__init__()
        #: The round trips of recent lookups.
        self.round_trip: RoundTrip | None = None

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        self.rpc.register("find_node", self._answer_find_node, idempotent=True)
        self.rpc.register("find_value", self._answer_find_value, idempotent=True)
        if not self._started:
            self._started = True
            self.rpc.add_listener(self._heard_from, self.table.wants)
        self._schedule_refresh()
        self._schedule_recheck()

    def stop(self) -> None:
        self.rpc.unregister("find_node")
        self.rpc.unregister("find_value")
        if self._started:
            self._started = False
            self.rpc.remove_listener(self._heard_from)
        for timer in (self._timer, self._recheck_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._recheck_timer = None

    def leave(self) -> defer.Deferred[None]:
        # Kademlia needs no goodbye: contacts that stop answering are dropped.
        return defer.succeed(None)

    def join(
        self, bootstrap: Sequence[Address], known: Sequence[Contact] = ()
    ) -> defer.Deferred[int]:
        return defer.Deferred.fromCoroutine(self._join(bootstrap, known))

    async def _join(self, bootstrap: Sequence[Address], known: Sequence[Contact]) -> int:
        if await ping_bootstrap(self.rpc, bootstrap, known) is None:
            return 0  # the first node of a network
        # The answers went into the table (every verified reply does).
        own = await self._run(self.node_id, self._find_node)
        reach = -1
        if len(own.contacts) >= self.k:
            reach = distance(own.contacts[self.k - 1].node_id, self.node_id)
        for target in self.table.refresh_ids_after_join(reach):
            await self._fill_bucket(target)
        await self._meet_neighbours()
        return len(self.table)

    async def _meet_neighbours(self) -> None:
        """The last step of a join: ask our alpha nearest contacts for the
        nodes nearest to us again, and ping those among our k nearest that
        we do not know yet.

        A node learns of a querier only when its address has answered a
        probe, so neighbours joining at the same moment as we did may have
        been missing from the self-lookup's answers; by now the nodes
        nearest to us have proven them. This took a whole second
        self-lookup (about k queries, each answered with k contacts).
        """
        nearest = self.table.closest(self.node_id, self.alpha)
        answers = await defer.DeferredList(
            [self._find_node(contact, self.node_id) for contact in nearest], consumeErrors=True
        )
        named: dict[bytes, Contact] = {}
        for ok, answer in answers:
            if ok:
                self._note_strangers(
                    named, answer[0], lambda i: self.table.is_close(i, self.node_id, self.k)
                )
        await self._ping_all(named.values())

    def _note_strangers(
        self,
        named: dict[bytes, Contact],
        contacts: Iterable[Contact],
        keep: Callable[[bytes], bool],
    ) -> None:
        """Add to ``named`` each of ``contacts`` that is neither us nor in
        the table and whose id ``keep`` accepts (the first named wins)."""
        table = self.table
        for contact in contacts:
            node_id = contact.node_id
            if node_id != self.node_id and node_id not in table and keep(node_id):
                named.setdefault(node_id, contact)

    def _ping_all(self, contacts: Iterable[Contact]) -> defer.Deferred[Any]:
        """Ping each of ``contacts`` at once; each that answers enters the
        table, as every verified sender does. Fires when all have ended."""
        return defer.DeferredList([self._ping(c) for c in contacts], consumeErrors=True)

    # -- what the value layer asks ------------------------------------------------------

    def lookup(self, key: bytes, count: int) -> defer.Deferred[Lookup]:
        return self._run(key, self._find_node).addCallback(self._as_lookup, key, count)

    def find_value(
        self,
        key: bytes,
        count: int,
        enough: Callable[[Contact, Any], bool],
        quorum: int = 0,
        valid: Callable[[Contact, Any], bool] | None = None,
    ) -> defer.Deferred[ValueLookup]:
        return self._run(key, self._find_value, enough, quorum, valid, count).addCallback(
            self._as_value_lookup, key, count
        )

    def lookup_storing(
        self,
        key: bytes,
        count: int,
        store: Callable[[Contact], defer.Deferred[tuple[list[bytes], Any]]],
    ) -> defer.Deferred[ValueLookup]:
        def ask(contact: Contact, target: bytes) -> defer.Deferred[Answer]:
            def parse(result: tuple[list[bytes], Any]) -> Answer:
                named, outcome = result
                return (self._contacts_in(named) if named else [], outcome)

            return store(contact).addCallback(parse)

        return self._run(key, self._find_node, last_ask=ask, last_count=count).addCallback(
            self._as_value_lookup, key, count
        )

    def nearest_for(self, key: bytes, sender: Contact, count: int) -> tuple[list[bytes], bool]:
        # Only the contacts closer to the key than we are: a put asks each
        # of the nodes it takes for the closest, and a node it has not
        # heard of is one of the closest only if it is closer than one of
        # them, who then names it if it knows it (half the datagram, on
        # average).
        closer = self.table.closest(
            key,
            self.k,
            exclude={sender.node_id},
            answerable=True,
            closer_than=distance(self.node_id, key),
        )
        return wire.encode_contacts(closer), self.table.is_close(self.node_id, key, count)

    def find_value_disjoint(
        self,
        key: bytes,
        count: int,
        enough: Callable[[Contact, Any], bool],
        paths: int = 1,
        quorum: int = 0,
        valid: Callable[[Contact, Any], bool] | None = None,
    ) -> defer.Deferred[ValueLookup]:
        """:meth:`find_value` over ``paths`` lookups that never ask the same node.

        S/Kademlia's disjoint paths: our closest contacts are dealt out over
        the paths, and a node learnt of belongs to the first path that hears
        of it; the others never ask it. The answers of every path come back
        together, so the value layer keeps the newest valid one: one path
        whose nodes are all attackers no longer hides the value. With one
        path this is :meth:`find_value`.
        """
        if not 1 <= paths <= MAX_PATHS:
            return defer.fail(ValueError("paths is 1-{}".format(MAX_PATHS)))
        if paths == 1:
            return self.find_value(key, count, enough, quorum, valid)
        try:
            check_id(key)
        except ValueError as e:
            return defer.fail(e)
        self.table.touch(key)
        self.counters["disjoint_lookups"] += 1
        owner: dict[bytes, int] = {}
        seeds: list[list[Contact]] = [[] for _ in range(paths)]
        for i, contact in enumerate(self.table.closest(key, self.k)):
            seeds[i % paths].append(contact)
            owner[contact.node_id] = i % paths

        def claim_for(path: int) -> Callable[[bytes], bool]:
            return lambda node_id: owner.setdefault(node_id, path) == path

        runs = [
            self._search(
                key, seeds[path], self._find_value, enough, claim_for(path), quorum, valid, count
            )
            for path in range(paths)
        ]

        def merge(outcomes: list[LookupOutcome]) -> ValueLookup:
            answered = sorted(
                (c for o in outcomes for c in o.contacts), key=lambda c: distance(c.node_id, key)
            )
            merged = LookupOutcome(
                contacts=self.table.network_limit.select(answered, self.k),
                hops=max(o.hops for o in outcomes),
                messages=sum(o.messages for o in outcomes),
                timeouts=sum(o.timeouts for o in outcomes),
                values=[v for o in outcomes for v in o.values],
                without=[c for o in outcomes for c in o.without],
                stopped_early=any(o.stopped_early for o in outcomes),
            )
            return ValueLookup(
                self._as_lookup(merged, key, count),
                merged.values,
                merged.without,
                merged.stopped_early,
            )

        return defer.gatherResults(runs).addCallback(merge)

    def serve_values(self, source: ValueSource) -> None:
        self._values = source

    def contacts(self) -> list[Contact]:
        return self.table.contacts()

    def contact_count(self) -> int:
        return len(self.table)

    def holds(self, node_id: bytes, key: bytes, count: int) -> bool:
        return self.table.is_close(node_id, key, count)

    def add_neighbour_listener(self, listener: Callable[[Contact], None]) -> None:
        self._neighbour_listeners.append(listener)

    def stats(self) -> dict[str, int]:
        out = self.lookup_stats.stats()
        out.update(self.counters)
        out.update(self.table.stats())
        return out

    # -- lookups -------------------------------------------------------------------------

    def _run(
        self,
        target: bytes,
        ask: Callable[[Contact, bytes], defer.Deferred[Answer]],
        enough: Callable[[Contact, Any], bool] | None = None,
        quorum: int = 0,
        valid: Callable[[Contact, Any], bool] | None = None,
        replicas: int = 0,
        last_ask: Callable[[Contact, bytes], defer.Deferred[Answer]] | None = None,
        last_count: int | None = None,
    ) -> defer.Deferred[LookupOutcome]:
        try:
            check_id(target)  # a caller's key: a bad one fails the Deferred
        except ValueError as e:
            return defer.fail(e)
        self.table.touch(target)
        seeds = self.table.closest(target, self.k)

        def more_seeds() -> list[Contact]:
            return self.table.closest(target, SEEDS_PER_K * self.k)

        return self._search(
            target,
            seeds,
            ask,
            enough,
            None,
            quorum,
            valid,
            replicas,
            more_seeds,
            last_ask,
            last_count,
        )

    def _search(
        self,
        target: bytes,
        seeds: list[Contact],
        ask: Callable[[Contact, bytes], defer.Deferred[Answer]],
        enough: Callable[[Contact, Any], bool] | None = None,
        claim: Callable[[bytes], bool] | None = None,
        quorum: int = 0,
        valid: Callable[[Contact, Any], bool] | None = None,
        replicas: int = 0,
        more_seeds: Callable[[], list[Contact]] | None = None,
        last_ask: Callable[[Contact, bytes], defer.Deferred[Answer]] | None = None,
        last_count: int | None = None,
    ) -> defer.Deferred[LookupOutcome]:
        search = IterativeLookup(
            target,
            seeds,
            lambda contact: ask(contact, target),
            self.clock,
            k=self.k,
            alpha=self.alpha,
            stall_after=self.stall_after,
            exclude=self.node_id,
            failed=self._failed,
            enough=enough,
            select=self.table.network_limit.select,
            claim=claim,
            quorum=quorum,
            rtt=self.round_trip,
            replicas=replicas,
            # Reads by quorum skip the contacts that kept lookups waiting;
            # other lookups must find the true closest, slow or not.
            suspect=self.table.is_suspect if quorum else None,
            slow=self._slow if quorum else None,
            more_seeds=more_seeds,
            # A contact the network says is gone is hedged at once.
            watch=self.rpc.watch_unreachable,
            last_ask=None if last_ask is None else lambda contact: last_ask(contact, target),
            last_count=last_count,
            **({} if valid is None else {"valid": valid}),
        )
        return search.run().addCallback(self._count)

    def _fill_bucket(self, target: bytes) -> defer.Deferred[LookupOutcome]:
        """A join's refresh of the empty bucket covering ``target``: a lookup
        of ``target`` until the bucket is full or the answers named enough
        nodes in its range to fill it, then a ping to each of those.

        A node enters the table when it answers us, so a refresh that only
        looked up ``target`` asked about as many nodes as the bucket takes
        (k, each answer a datagram of contacts the next hop then decodes
        and ranks); the first answers already name k nodes in a far
        bucket's range, and a ping proves each as well, for a fraction of
        the work. What the pings leave empty, as when the lookup ended
        without filling the bucket, the traffic and the hourly refresh fill.
        """
        return defer.Deferred.fromCoroutine(self._fill(target))

    async def _fill(self, target: bytes) -> LookupOutcome:
        table = self.table
        named: dict[bytes, Contact] = {}

        def ask(contact: Contact, key: bytes) -> defer.Deferred[Answer]:
            def note(answer: Answer) -> Answer:
                self._note_strangers(named, answer[0], lambda i: table.same_bucket(i, target))
                enough = len(named) >= table.room(target)
                return (answer[0], _BUCKET_FULL if enough else None)

            return self._find_node(contact, key).addCallback(note)

        outcome = await self._run(target, ask, lambda contact, marker: marker is _BUCKET_FULL)
        waiting = list(named.values())
        while waiting and not table.is_full(target):
            room = table.room(target)
            batch = [c for c in waiting[:room] if c.node_id not in table]
            del waiting[:room]
            await self._ping_all(batch)
        return outcome

    def _count(self, outcome: LookupOutcome) -> LookupOutcome:
        self.lookup_stats.record(
            outcome.hops, outcome.messages, outcome.timeouts, outcome.bad_answers
        )
        if outcome.round_trip is not None:
            # What the next lookup hedges by until it has seen answers of its own.
            self.round_trip = outcome.round_trip
        return outcome

    def _as_value_lookup(self, outcome: LookupOutcome, key: bytes, count: int) -> ValueLookup:
        return ValueLookup(
            self._as_lookup(outcome, key, count),
            outcome.values,
            outcome.without,
            outcome.stopped_early,
        )

    def _as_lookup(self, outcome: LookupOutcome, key: bytes, count: int) -> Lookup:
        contacts = list(outcome.contacts)
        me = self.rpc.contact
        if me is not None:
            # We are one of the nodes responsible when we are among the closest.
            contacts.append(me)
            contacts.sort(key=lambda c: distance(c.node_id, key))
        return Lookup(key, contacts[:count], outcome.hops, outcome.messages, outcome.timeouts)

    def _find_node(self, contact: Contact, target: bytes) -> defer.Deferred[Answer]:
        def parse(reply: Any) -> Answer:
            return (self._contacts_in(reply), None)

        return self._call(contact, "find_node", target).addCallback(parse)

    def _find_value(self, contact: Contact, key: bytes) -> defer.Deferred[Answer]:
        def parse(reply: Any) -> Answer:
            if type(reply) is list and len(reply) == 2 and reply[0] == "value":
                return ([], reply[1])  # the value layer checks it
            if type(reply) is list and len(reply) == 2 and reply[0] == "nodes":
                return (self._contacts_in(reply[1]), None)
            raise wire.MalformedMessage("a find_value reply is [value|nodes, ...]")

        return self._call(contact, "find_value", key).addCallback(parse)

    def _contacts_in(self, reply: Any) -> list[Contact]:
        # Candidates only: each enters the table when it answers us itself.
        contacts = wire.decode_contacts(reply, limit=self.k)
        bits = self.table.puzzle_bits
        if bits:
            solved = [c for c in contacts if solves_puzzle(c.public_key, bits)]
            self.counters["unsolved_contacts_dropped"] += len(contacts) - len(solved)
            return solved
        return contacts

    def _slow(self, contact: Contact) -> None:
        self.table.record_silence(contact.node_id)

    def _failed(self, contact: Contact) -> None:
        self.table.record_failure(contact.node_id)

    def _ping(self, contact: Contact) -> defer.Deferred[object]:
        return self.rpc.call_contact(contact, "ping")

    # -- answering -------------------------------------------------------------------------

    def _target(self, args: Any) -> bytes:
        if type(args) is not bytes:
            raise RemoteError(MALFORMED, "the target is an id")
        try:
            return check_id(args)
        except ValueError as e:
            raise malformed(e) from None

    def _closest_to(self, target: bytes, sender: Contact) -> list[bytes]:
        # Only contacts heard from lately, without a pending failure, a few
        # per network: dead or flooding contacts are not passed on.
        closest = self.table.closest(target, self.k, exclude={sender.node_id}, answerable=True)
        return wire.encode_contacts(closest)

    def _answer_find_node(self, sender: Contact, args: Any) -> list[bytes]:
        return self._closest_to(self._target(args), sender)

    def _answer_find_value(self, sender: Contact, args: Any) -> list[Any]:
        key = self._target(args)
        held = self._values(key)
        if held is not None:
            return ["value", held]
        return ["nodes", self._closest_to(key, sender)]

    # -- routing table upkeep ----------------------------------------------------------------

    def _heard_from(self, contact: Contact) -> None:
        if contact.node_id == self.node_id:
            return
        # A contact back after failing (a partition healed, say) may have
        # missed our writes, or made its own: offered our keys like a newcomer.
        if self.table.add_contact(contact):
            self._offer_neighbour(contact)

    def _offer_neighbour(self, contact: Contact) -> None:
        # A contact new to the table (arrived, or promoted from a bucket's
        # replacements) that is among the nodes closest to us shares our keys.
        if self._neighbour_listeners and self.table.is_close(contact.node_id, self.node_id, self.k):
            for listener in list(self._neighbour_listeners):
                listener(contact)

    def _schedule_refresh(self) -> None:
        # Checked a few times per period, with jitter, so nodes started
        # together do not refresh in step.
        delay = self.refresh_every / 4 * self.rng.uniform(0.75, 1.25)
        self._timer = self.clock.callLater(delay, self._refresh)

    def _schedule_recheck(self) -> None:
        delay = self.recheck_every * self.rng.uniform(0.75, 1.25)
        self._recheck_timer = self.clock.callLater(delay, self._recheck)

    def _recheck(self) -> None:
        self._recheck_timer = None
        self.table.recheck_stale(RECHECK_BATCH)
        self._schedule_recheck()

    def _refresh(self) -> None:
        self._timer = None
        for target in self.table.stale_buckets(self.refresh_every):
            self.counters["refreshes"] += 1
            self._run(target, self._find_node).addErrback(
                lambda f: self._log.failure("refreshing a bucket failed", f)
            )
        self._schedule_refresh()
