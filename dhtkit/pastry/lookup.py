"""An iterative Pastry route: the initiator asks each hop for its next hop.

The node looking a key up routes it one step itself
(:func:`~dhtkit.pastry.routing.route`); unless it is done, it asks the
first next hop with ``pastry_route``, which answers ``done`` with the
nodes numerically closest to the key, or with its own next hops. The
initiator takes only next hops that make progress over the node that
named them (:func:`~dhtkit.pastry.routing.makes_progress`) and never asks
a node twice: no answer can make the route loop. A hop that does not
answer is routed around: the next alternative named with it is asked,
then those named earlier; where the network says at once that nothing
answers at its address (``watch``, an ICMP error), without waiting for its
timeout, and the call's own outcome tells ``answered`` or ``failed`` later
(a hint may be forged).

**Hops**, in :class:`~dhtkit.overlay.Lookup`: the nodes that answered, one
after another. A key within the initiator's own leaf-set range takes 0
hops; the paper's bound is ``ceil(log_{2^b} N)``. ``messages`` counts the
nodes asked, ``timeouts`` those that did not answer.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from dhtkit import overlay
from dhtkit.contact import Contact
from dhtkit.hedge import hinted
from dhtkit.keyspace import circular_distance, numerically_closest_first
from dhtkit.overlay import Lookup, not_joined
from dhtkit.pastry.digits import Digits
from dhtkit.pastry.messages import RouteAnswer
from dhtkit.pastry.routing import Route, makes_progress
from dhtkit.rpcerrors import MalformedPayload, RemoteError, RPCTimeout, Unreachable
from dhtkit.transport import Watch

#: Nodes asked at most by one route; far above what a healthy network
#: needs (log16 N plus a few timeouts), it bounds what a hostile node can cause.
MAX_MESSAGES = 64

#: ``ask(contact, hop)``: ``pastry_route`` to ``contact``, the ``hop``-th
#: node to answer (0 for the first), parsed.
Ask = Callable[[Contact, int], "defer.Deferred[RouteAnswer]"]


class LookupFailed(overlay.LookupFailed):
    """Every node that could lead to the key failed to answer."""


class RouteSearch:
    """One iterative route of ``key`` to the ``count`` nodes closest to it.

    :param own_id: the initiator's id, never asked.
    :param first: the initiator's own step of the route.
    :param ask: sends ``pastry_route``; fails with an RPC error or
        :class:`~dhtkit.pastry.messages.MalformedPayload`.
    :param answered: called with each node that answered, and its answer.
    :param failed: called with each node that timed out.
    :param reroute: the initiator's own route step again, avoiding the
        given nodes: where the route goes on when no node named so far is
        left to ask (the nodes asked lied, or died).
    :param me: the initiator's contact, merged into the closest nodes found
        (the nodes asked leave it out of their answers).
    """

    def __init__(
        self,
        key: bytes,
        count: int,
        own_id: bytes,
        digits: Digits,
        first: Route,
        ask: Ask,
        *,
        answered: Callable[[Contact, RouteAnswer], None] = lambda contact, answer: None,
        failed: Callable[[Contact], None] = lambda contact: None,
        me: Contact | None = None,
        reroute: Callable[[set[bytes]], Route] | None = None,
        watch: Watch | None = None,
    ) -> None:
        self.key = key
        self.count = count
        self.own_id = own_id
        self.digits = digits
        self.first = first
        self._ask = ask
        self._answered = answered
        self._failed = failed
        self._me = me
        self._reroute = reroute
        self._watch = watch
        self._pool: list[Contact] = []
        self._asked: set[bytes] = {own_id}
        self.dead: set[bytes] = set()
        self.path: list[Contact] = []
        self.hops = self.messages = self.timeouts = self.bad_answers = self.no_progress = 0
        self.unreachable = 0

    def run(self) -> defer.Deferred[Lookup]:
        """Fire with the :class:`~dhtkit.overlay.Lookup`, or fail with :class:`LookupFailed`."""
        return defer.Deferred.fromCoroutine(self._run())

    def _result(self, contacts: list[Contact]) -> Lookup:
        if self._me is not None and all(c.node_id != self.own_id for c in contacts):
            # Nodes answer without the asker: it is among the closest or not.
            order = numerically_closest_first(self.key)
            contacts = sorted([*contacts, self._me], key=lambda c: order(c.node_id))
        return Lookup(self.key, contacts[: self.count], self.hops, self.messages, self.timeouts)

    def _next(self) -> Contact | None:
        while self._pool:
            contact = self._pool.pop(0)
            if contact.node_id not in self._asked:
                self._asked.add(contact.node_id)
                return contact
        return None

    async def _run(self) -> Lookup:
        if self.first.done:
            return self._result(self.first.contacts)
        self._pool = list(self.first.contacts)
        while True:
            contact = self._next()
            if contact is None and self._reroute is not None:
                # Every node named so far was asked: on from our own state.
                again = self._reroute(self._asked | self.dead)
                if again.done and again.contacts:
                    return self._result(again.contacts)
                self._pool = list(again.contacts)
                contact = self._next()
            if contact is None or self.messages >= MAX_MESSAGES:
                break
            self.messages += 1
            try:
                answer = await self._call(contact)
            except Unreachable:
                # Not dead for sure (a hint): routed around, for now.
                self.unreachable += 1
                continue
            except RPCTimeout:
                self.timeouts += 1
                self.dead.add(contact.node_id)
                self._failed(contact)
                continue
            except (RemoteError, MalformedPayload) as e:
                if not not_joined(e):  # one still joining (restarting) said so
                    self.bad_answers += 1
                continue
            if answer.done and not self._consistent(contact, answer.contacts):
                self.bad_answers += 1
                continue
            self.hops += 1
            self.path.append(contact)
            self._answered(contact, answer)
            if answer.done:
                live = [c for c in answer.contacts if c.node_id not in self.dead]
                if live:
                    return self._result(live)
                continue
            fresh = []
            for hop in answer.contacts:
                if not makes_progress(self.digits, hop.node_id, contact.node_id, self.key):
                    self.no_progress += 1  # the guard: such a hop could loop
                elif hop.node_id not in self._asked:
                    fresh.append(hop)
            self._pool[:0] = fresh
        raise LookupFailed(
            "no node leading to {} answered ({} asked, {} timed out)".format(
                self.key.hex(), self.messages, self.timeouts
            )
        )

    def _call(self, contact: Contact) -> defer.Deferred[RouteAnswer]:
        call = self._ask(contact, self.hops)
        if self._watch is None:
            return call
        return hinted(self._watch, contact.address, call, partial(self._late, contact))

    def _late(self, contact: Contact, outcome: Any) -> None:
        """The outcome of a call routed around on a hint: what the state learns."""
        if not isinstance(outcome, Failure):
            if not outcome.done or self._consistent(contact, outcome.contacts):
                self._answered(contact, outcome)
        elif isinstance(outcome.value, RPCTimeout):
            self._failed(contact)

    def _consistent(self, asked: Contact, contacts: list[Contact]) -> bool:
        # Closest first, and the first no farther than the node that answered.
        order = numerically_closest_first(self.key)
        ranks = [order(c.node_id) for c in contacts]
        if ranks != sorted(ranks):
            return False
        nearest = circular_distance(contacts[0].node_id, self.key)
        return nearest <= circular_distance(asked.node_id, self.key)
