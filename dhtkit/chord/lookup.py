"""Iterative find_successor: ask the closest preceding node, jump, repeat.

The node looking up ``key`` asks its closest preceding finger. A node
asked answers either ``done``, with ``successor(key)`` and the nodes after
it, or ``next``, with its own closest preceding finger first and a few
fallbacks after it; the lookup jumps to the first. Only nodes strictly
nearer to ``key`` than the nearest node that has answered are taken, so
every answer makes progress, and after a timeout near the key a node
asked again farther back cannot lead the lookup round the ring. A
candidate that does not answer (or answers nonsense) is dropped and the
next one named is asked, then those named earlier: a dead
finger costs a timeout, it never stalls the lookup; where the network says
at once that nothing answers at its address (``watch``, an ICMP error),
the lookup goes on without waiting, and learns from the call's own outcome
later whether the finger failed (a hint may be forged). A node that answers
nonsense is counted in ``bad_answers`` and passed by like a dead one, down
to the last resort below.

**Hops** are the nodes that answered, one after another: the paper's path
length, about ½·log2 N. A key between the asking node and its successor
takes 0 hops. ``messages`` counts every node asked,
``timeouts`` those that did not answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from dhtkit import overlay
from dhtkit.chord.messages import FindAnswer
from dhtkit.contact import Contact
from dhtkit.hedge import hinted
from dhtkit.keyspace import in_interval, ring_distance
from dhtkit.overlay import Lookup, not_joined
from dhtkit.rpcerrors import MalformedPayload, RemoteError, RPCTimeout, Unreachable
from dhtkit.transport import Watch

#: Nodes asked at most by one lookup; far above what a healthy ring needs
#: (½·log2 N plus a few timeouts), it bounds what a hostile node can cause.
MAX_MESSAGES = 100

Ask = Callable[[Contact], "defer.Deferred[FindAnswer]"]


class LookupFailed(overlay.LookupFailed):
    """Every node that could lead to the key failed to answer."""


class SuccessorSearch:
    """One iterative lookup of ``successor(key)`` and the ``count - 1`` nodes after it.

    :param own_id: the asking node's id, never asked.
    :param candidates: where to start, best first (the asking node's
        fingers before ``key``, then its successors; or a bootstrap node).
    :param ask: sends ``chord_find`` to a contact; fails with an
        :class:`~dhtkit.rpc.RPCError` or :class:`MalformedPayload`.
    :param successors_of: asks a contact for its successor list (the last
        resort, below); fails like ``ask``.
    :param answered: called with each node that answered (it proved its id).
    :param failed: called with each node that timed out or refused.
    :param own_successors: the asking node's successor list, in ring order
        from it (for the last resort when no node before the key answers).
    :param watch: hears that nothing answers at an address (see
        :meth:`dhtkit.transport.IRPC.watch_unreachable`): that node is
        passed by at once (counted in ``unreachable``), and ``answered`` or
        ``failed`` hear of it when its call ends.

    The last resort. When the node just before the key has failed, every
    live node before the key points at it, and none other is left to ask.
    The nearest node that answered still lists the nodes after the failed
    one: its successor list, less the nodes that timed out here, gives the
    key's successor. When no node before the key answered, the asking node
    is the nearest one, and its own successor list serves the same way.
    """

    def __init__(
        self,
        key: bytes,
        count: int,
        own_id: bytes,
        candidates: Iterable[Contact],
        ask: Ask,
        *,
        successors_of: Callable[[Contact], defer.Deferred[list[Contact]]] | None = None,
        answered: Callable[[Contact], None] = lambda contact: None,
        failed: Callable[[Contact], None] = lambda contact: None,
        own_successors: Iterable[Contact] = (),
        watch: Watch | None = None,
    ) -> None:
        self.key = key
        self.count = count
        self.own_id = own_id
        self._ask = ask
        self._successors_of = successors_of
        self._answered = answered
        self._failed = failed
        self._own_successors = list(own_successors)
        self._watch = watch
        # Whom to ask, in order: the latest answer's nodes, then earlier ones'.
        self._pool: list[Contact] = []
        self._asked: set[bytes] = {own_id}
        self._dead: set[bytes] = set()
        self._hinted: set[bytes] = set()  # passed by on a hint of unreachability
        # The node nearest before the key that answered.
        self._nearest: Contact | None = None
        self.hops = self.messages = self.timeouts = self.bad_answers = self.unreachable = 0
        self._add(candidates, None)

    def _add(self, contacts: Iterable[Contact], bound: int | None) -> None:
        # Only nodes other than the key's, nearer to it than ``bound`` when given.
        fresh = [
            contact
            for contact in contacts
            if contact.node_id not in self._asked
            and contact.node_id != self.key
            and (bound is None or ring_distance(contact.node_id, self.key) < bound)
        ]
        self._pool[:0] = fresh

    def _next(self) -> Contact | None:
        while self._pool and self._pool[0].node_id in self._asked:
            del self._pool[0]
        if not self._pool:
            return None
        if self.messages >= MAX_MESSAGES:
            raise LookupFailed("gave up after {} messages".format(self.messages))
        contact = self._pool.pop(0)
        self._asked.add(contact.node_id)
        return contact

    def run(self) -> defer.Deferred[Lookup]:
        """Fire with the :class:`~dhtkit.overlay.Lookup`, or fail with :class:`LookupFailed`."""
        return defer.Deferred.fromCoroutine(self._run())

    def _result(self, contacts: list[Contact]) -> Lookup:
        live = [c for c in _distinct(contacts) if c.node_id not in self._dead]
        return Lookup(self.key, live[: self.count], self.hops, self.messages, self.timeouts)

    async def _run(self) -> Lookup:
        while True:
            contact = self._next()
            if contact is None:
                return await self._last_resort()
            self.messages += 1
            try:
                answer = await self._call(contact)
            except Unreachable:
                # Not dead for sure (a hint): on without it, for now; only
                # the last resort passes it by as it passes the dead.
                self.unreachable += 1
                self._hinted.add(contact.node_id)
                continue
            except RPCTimeout:
                self.timeouts += 1
                self._dead.add(contact.node_id)
                self._failed(contact)
                continue
            except (RemoteError, MalformedPayload) as e:
                # Not on the ring (yet), or not a Chord node: no way through
                # it, and no replica either; the last resort passes it by as
                # it passes a dead node. A node still joining (one restarting)
                # said so: no bad answer.
                if not not_joined(e):
                    self.bad_answers += 1
                self._dead.add(contact.node_id)
                self._failed(contact)
                continue
            self.hops += 1
            self._answered(contact)
            if answer.done:
                if self._consistent(contact, answer.contacts[0]):
                    return self._result(answer.contacts)
                self.bad_answers += 1
                self._dead.add(contact.node_id)
                continue
            distance = ring_distance(contact.node_id, self.key)
            nearest = self._nearest
            bound = None if nearest is None else ring_distance(nearest.node_id, self.key)
            if bound is None or distance < bound:
                self._nearest, bound = contact, distance
            # Only nodes nearer than the nearest that answered: after a
            # timeout near the key, a node asked again farther back names
            # nodes the lookup has already passed, and following them
            # walked it back round the ring.
            self._add(answer.contacts, bound)

    def _call(self, contact: Contact) -> defer.Deferred[FindAnswer]:
        call = self._ask(contact)
        if self._watch is None:
            return call
        return hinted(self._watch, contact.address, call, partial(self._late, contact))

    def _late(self, contact: Contact, outcome: Any) -> None:
        """The outcome of a call passed by on a hint: what the finger table learns."""
        if not isinstance(outcome, Failure):
            self._answered(contact)
        elif isinstance(outcome.value, (RPCTimeout, RemoteError, MalformedPayload)):
            self._failed(contact)

    async def _last_resort(self) -> Lookup:
        gone = self._dead | self._hinted
        if gone:
            nearest = self._nearest
            if nearest is None:  # we are the nearest node before the key that answers
                origin, listed = self.own_id, self._own_successors
            elif self._successors_of is not None:
                origin = nearest.node_id
                self.messages += 1
                try:
                    listed = await self._successors_of(nearest)
                except (RPCTimeout, RemoteError, MalformedPayload):
                    listed = []
            else:
                origin, listed = nearest.node_id, []
            # The list runs in ring order from ``origin``: the key's
            # successor is the first live node at or after the key.
            reach = ring_distance(origin, self.key)
            after = [
                c
                for c in listed
                if c.node_id not in gone and ring_distance(origin, c.node_id) >= reach
            ]
            if after:
                return self._result(after)
        raise LookupFailed(
            "no node leading to {} answered ({} asked, {} timed out)".format(
                self.key.hex(), self.messages, self.timeouts
            )
        )

    def _consistent(self, asked: Contact, successor: Contact) -> bool:
        # ``successor(key)`` lies at or after the key, and the node asked
        # precedes the key or is that successor itself.
        return successor.node_id == asked.node_id or in_interval(
            self.key, asked.node_id, successor.node_id, include_end=True
        )


def _distinct(contacts: list[Contact]) -> list[Contact]:
    seen: set[bytes] = set()
    out = []
    for contact in contacts:
        if contact.node_id not in seen:
            seen.add(contact.node_id)
            out.append(contact)
    return out
