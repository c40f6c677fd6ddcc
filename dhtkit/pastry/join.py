"""Pastry's join: route toward our own id, collect state on the way, announce.

The new node X routes a join toward its own id through a node it knows
(iteratively, as every lookup: :class:`~dhtkit.pastry.lookup.RouteSearch`).
The ``i``-th node on the path gives X its row ``i`` (when it shares ``i``
digits with X, else the row of the prefix it shares, the deepest row of
its that fits X); the route ends at the node Z numerically closest to X,
whose leaf set X takes. X then announces itself to every node of the
state so assembled; each node that answers enters X's state with its
round-trip time measured, and learns of X from the RPC layer once X's
address is proven. Nodes named by others but dead never enter.

The messages X sends are counted: the route's, one for Z's leaf set, one
per announcement; about ``log16 N`` rows of up to 15 nodes and the leaf set.
"""

from __future__ import annotations

import attrs
from twisted.internet import defer

from dhtkit.contact import Contact
from dhtkit.pastry import messages
from dhtkit.pastry.lookup import RouteSearch
from dhtkit.pastry.messages import ANNOUNCE, LEAFSET, ROUTE, RouteAnswer
from dhtkit.pastry.routing import Route
from dhtkit.pastry.state import PastryState
from dhtkit.rpcerrors import MalformedPayload, RPCError
from dhtkit.transport import Caller


@attrs.define
class JoinReport:
    """What a join did: the path, the rows copied, its messages."""

    path: list[Contact] = attrs.Factory(list)
    rows: dict[int, list[Contact]] = attrs.Factory(dict)
    leafset_from: Contact | None = None
    announced: int = 0
    answered: int = 0
    messages: int = 0
    #: The route's nodes that did not answer, and those that answered garbage.
    timeouts: int = 0
    bad_answers: int = 0


class Join:
    """Join the node of ``state`` through ``via``.

    :param call: sends an RPC (and offers a node that answers to ``state``).
    """

    def __init__(self, state: PastryState, call: Caller) -> None:
        self.state = state
        self._call = call
        self.report = JoinReport()

    def row_for(self, hop: int, node_id: bytes) -> int:
        """The row the ``hop``-th node on the path gives: ``hop``, or the
        prefix it shares with us when shorter (its deeper rows do not fit us)."""
        return min(hop, self.state.digits.prefix(node_id, self.state.own_id))

    def run(self, via: Contact) -> defer.Deferred[JoinReport]:
        """Fire with the :class:`JoinReport`; fail with
        :class:`~dhtkit.pastry.lookup.LookupFailed` when the route fails."""
        return defer.Deferred.fromCoroutine(self._run(via))

    async def _run(self, via: Contact) -> JoinReport:
        state, report = self.state, self.report
        own = state.own_id

        def ask(contact: Contact, hop: int) -> defer.Deferred[RouteAnswer]:
            row = self.row_for(hop, contact.node_id)
            args = messages.route_args(own, messages.MAX_COUNT, row)
            call = self._call(contact, ROUTE, args)
            return call.addCallback(messages.parse_route_answer, messages.MAX_COUNT)

        def answered(contact: Contact, answer: RouteAnswer) -> None:
            report.rows[self.row_for(len(report.path), contact.node_id)] = answer.row
            report.path.append(contact)

        search = RouteSearch(
            own, messages.MAX_COUNT, own, state.digits, Route(False, [via], 0), ask,
            answered=answered,
        )  # fmt: skip
        try:
            found = await search.run()
        finally:
            report.messages += search.messages
            report.timeouts += search.timeouts
            report.bad_answers += search.bad_answers
        candidates = [c for rows in report.rows.values() for c in rows]
        candidates += found.contacts
        for z in [c for c in found.contacts if c.node_id != own]:
            report.messages += 1
            try:
                leaves = messages.parse_leafset(await self._call(z, LEAFSET, None))
            except (RPCError, MalformedPayload):
                continue
            report.leafset_from = z
            candidates += leaves
            break
        await self._announce(candidates)
        return report

    async def _announce(self, candidates: list[Contact]) -> None:
        # The state the candidates would make, without trusting any of them:
        # each enters ours only by answering the announcement.
        draft = PastryState(self.state.own_id, self.state.digits, self.state.leafset.size)
        for contact in candidates + self.report.path:
            draft.offer(contact)
        told = draft.contacts()
        self.report.announced = len(told)
        self.report.messages += len(told)
        answers = await defer.DeferredList(
            [self._call(c, ANNOUNCE, None) for c in told], consumeErrors=True
        )
        self.report.answered = sum(1 for ok, _ in answers if ok)
