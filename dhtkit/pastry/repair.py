"""Keeping a Pastry node's state right as nodes fail (the paper's repair).

- A dead leaf is replaced from the leaf set of the farthest live leaf on
  its side: that node's leaf set reaches beyond ours.
- A dead table entry ``R[r][d]`` is replaced by asking another entry of
  row ``r`` for its row ``r`` (its entry ``[r][d]`` fits us too), then the
  entries of row ``r + 1`` for their row ``r``.
- Periodic rounds: the leaves we have not heard from lately are pinged,
  and the nearest leaf on each side is asked for its leaf set (which
  merges the leaf sets of nodes that joined at the same moment); the
  members of M are pinged, which re-measures their round-trip times.

A node named by another is only a candidate: it is pinged, and enters
our state when it answers (:meth:`Repair.consider`). At most
:data:`MAX_PENDING` such pings are in flight.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from dhtkit.contact import Contact
from dhtkit.pastry import messages
from dhtkit.pastry.messages import LEAFSET, ROW
from dhtkit.pastry.state import PastryState
from dhtkit.rpcerrors import MalformedPayload, RPCError, RPCTimeout
from dhtkit.transport import Caller

#: Candidates being pinged at once, at most.
MAX_PENDING = 32
#: Nodes asked for a row when replacing one table entry, at most.
MAX_ASKED_PER_ENTRY = 3


class Repair:
    """The repairs and periodic rounds of one node.

    :param call: sends an RPC; a node that answers is offered to ``state``
        by it, one that times out is passed to :meth:`lost` by it.
    """

    def __init__(
        self, state: PastryState, call: Caller, clock: IReactorTime, counters: Counter[str]
    ) -> None:
        self.state = state
        self._call = call
        self.clock = clock
        self.counters = counters
        self._pending: set[bytes] = set()
        self._heard: dict[bytes, float] = {}

    def heard(self, node_id: bytes) -> None:
        """Note that ``node_id`` answered or wrote to us (kept for leaves only)."""
        if node_id in self.state.leafset:
            self._heard[node_id] = self.clock.seconds()

    # -- candidates ----------------------------------------------------------------

    def consider(self, contacts: list[Contact]) -> None:
        """Ping each named node we would take; it enters our state by answering."""
        for contact in contacts:
            node_id = contact.node_id
            if len(self._pending) >= MAX_PENDING:
                self.counters["candidates_dropped"] += 1
                return
            if node_id in self._pending or not self.state.wanted(node_id):
                continue
            self._pending.add(node_id)
            self.counters["candidates_pinged"] += 1
            d = self._call(contact, "ping", None)
            d.addBoth(self._pinged, node_id)

    def _pinged(self, result: object, node_id: bytes) -> None:
        # A dead candidate simply never enters.
        self._pending.discard(node_id)

    # -- failures ------------------------------------------------------------------

    def lost(self, contact: Contact, *, left: bool = False) -> defer.Deferred[None]:
        """``contact`` failed (or ``left``): forget it and fill the gaps it
        leaves. One that failed is remembered for the merge round (it may
        come back on the other side of a partition); one that left is not."""
        return defer.Deferred.fromCoroutine(self._lost(contact, left))

    async def _lost(self, contact: Contact, left: bool) -> None:
        if left:
            self.state.lost.discard(contact.node_id)
        if not self.state.knows(contact.node_id):
            return
        if not left:
            self.state.lost.add(contact)  # it entered our state by proving its id
        self._heard.pop(contact.node_id, None)
        where = self.state.forget(contact.node_id)
        for side in where.sides:
            await self.repair_leaf(side)
        if where.slot is not None:
            await self.repair_entry(*where.slot)

    async def repair_leaf(self, side: str) -> None:
        """Refill one side of the leaf set from its farthest live member."""
        self.counters["leaf_repairs"] += 1
        members = self.state.leafset.side(side)
        for farthest in reversed(list(members)):
            try:
                answer = await self._call(farthest, LEAFSET, None)
                self.consider(messages.parse_leafset(answer))
                return
            except MalformedPayload:
                self.counters["bad_answers"] += 1
            except RPCTimeout:
                return  # our call forgot it, and repairs this side again without it
            except RPCError:
                pass  # it refused: the next one inward is asked

    async def repair_entry(self, row: int, column: int) -> None:
        """Look for a new ``R[row][column]`` in the same row, then the next."""
        self.counters["table_repairs"] += 1
        table = self.state.table
        asked = 0
        for ask_row in (row, row + 1):
            if ask_row >= self.state.digits.count:
                break
            for contact in table.row(ask_row):
                if asked >= MAX_ASKED_PER_ENTRY or table.get(row, column) is not None:
                    return
                asked += 1
                try:
                    answer = messages.parse_row(await self._call(contact, ROW, row))
                except MalformedPayload:
                    self.counters["bad_answers"] += 1
                    continue
                except RPCError:
                    continue
                fits = [c for c in answer if table.place(c.node_id) == (row, column)]
                if fits:
                    self.consider(fits[:1])
                    return

    # -- periodic rounds -------------------------------------------------------------

    def check_leaves(self, period: float) -> defer.Deferred[None]:
        """Ping the leaves silent for ``period``; swap leaf sets with the nearest two."""
        return defer.Deferred.fromCoroutine(self._check_leaves(period))

    async def _check_leaves(self, period: float) -> None:
        self.counters["leaf_rounds"] += 1
        leafset = self.state.leafset
        members = {c.node_id for c in leafset}
        self._heard = {i: t for i, t in self._heard.items() if i in members}
        now = self.clock.seconds()
        silent = [c for c in leafset if now - self._heard.get(c.node_id, 0.0) >= period]
        nearest = [side[0] for side in (leafset.above, leafset.below) if side]
        calls = [self._quiet(self._call(c, "ping", None)) for c in silent]
        for contact in {c.node_id: c for c in nearest}.values():
            calls.append(self._quiet(self._exchange(contact)))
        await defer.gatherResults(calls)

    async def _exchange_run(self, contact: Contact) -> None:
        try:
            self.consider(messages.parse_leafset(await self._call(contact, LEAFSET, None)))
        except MalformedPayload:
            self.counters["bad_answers"] += 1

    def _exchange(self, contact: Contact) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._exchange_run(contact))

    def check_neighbourhood(self) -> defer.Deferred[None]:
        """Ping every member of M: re-measured, or forgotten when dead."""
        self.counters["neighbourhood_rounds"] += 1
        calls = [
            self._quiet(self._call(c, "ping", None)) for c in self.state.neighbourhood.contacts()
        ]
        return defer.gatherResults(calls).addCallback(lambda _: None)

    @staticmethod
    def _quiet(d: defer.Deferred[Any]) -> defer.Deferred[None]:
        # The call itself dealt with a timeout (it forgot the node).
        def ignore(failure: Any) -> None:
            failure.trap(RPCError)

        return d.addCallbacks(lambda _: None, ignore)
