"""Answering the ``pastry_*`` RPCs (formats in :mod:`~dhtkit.pastry.messages`).

Every handler checks its arguments in full and answers anything else with
``RemoteError("malformed", ...)``. The sender is the RPC layer's verified
contact, but its address may not be proven yet: no handler puts it into
our state (the RPC layer's listener does, once the address is proven),
and no handler assumes it is there already.

A node that said goodbye (``pastry_leave``) is remembered for a while in
a bounded :class:`Departed` set, so that a leaf set still naming it does
not bring it back before its neighbours forgot it too.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.overlay import NOT_JOINED
from dhtkit.pastry import messages
from dhtkit.pastry.messages import ANNOUNCE, LEAFSET, LEAVE, ROUTE, ROW
from dhtkit.pastry.routing import route
from dhtkit.pastry.state import PastryState
from dhtkit.rpcerrors import MalformedPayload, RemoteError, malformed
from dhtkit.transport import IRPC

#: Seconds a node that said goodbye is not taken back, and how many are remembered.
DEPARTED_FOR = 60.0
MAX_DEPARTED = 64


class Departed:
    """Nodes that left lately, at most ``size``, each for ``period`` seconds."""

    def __init__(
        self, clock: IReactorTime, period: float = DEPARTED_FOR, size: int = MAX_DEPARTED
    ) -> None:
        self.clock = clock
        self.period = period
        self.size = size
        self._until: OrderedDict[bytes, float] = OrderedDict()

    def add(self, node_id: bytes) -> None:
        """Remember that ``node_id`` left."""
        self._until[node_id] = self.clock.seconds() + self.period
        self._until.move_to_end(node_id)
        while len(self._until) > self.size:
            self._until.popitem(last=False)

    def discard(self, node_id: bytes) -> None:
        """Forget that ``node_id`` left (it came back)."""
        self._until.pop(node_id, None)

    def __contains__(self, node_id: object) -> bool:
        now = self.clock.seconds()
        while self._until and next(iter(self._until.values())) <= now:
            self._until.popitem(last=False)
        return node_id in self._until


class PastryResponder:
    """The ``pastry_*`` handlers of one node.

    :param state: the node's routing state, read here.
    :param me: our own contact (None until the RPC layer listens).
    :param joined: whether we have joined (a route is refused before).
    :param lost: forgets a node that left and repairs the gap it leaves.
    """

    _log = Logger()

    def __init__(
        self,
        state: PastryState,
        me: Callable[[], Contact | None],
        joined: Callable[[], bool],
        lost: Callable[[Contact], defer.Deferred[None]],
        departed: Departed,
        counters: Counter[str],
    ) -> None:
        self.state = state
        self._me = me
        self._joined = joined
        self._lost = lost
        self.departed = departed
        self.counters = counters

    def register(self, rpc: IRPC) -> None:
        """Register the five handlers on ``rpc``."""
        # All are reads, or set what is set already when run twice.
        for method, handler in (
            (ROUTE, self.answer_route),
            (LEAFSET, self.answer_leafset),
            (ROW, self.answer_row),
            (ANNOUNCE, self.answer_announce),
            (LEAVE, self.answer_leave),
        ):
            rpc.register(method, handler, idempotent=True)

    def unregister(self, rpc: IRPC) -> None:
        """Take the five handlers off ``rpc``."""
        for method in (ROUTE, LEAFSET, ROW, ANNOUNCE, LEAVE):
            rpc.unregister(method)

    def answer_route(self, sender: Contact, args: Any) -> list[Any]:
        """``pastry_route``: one step of a route, and a table row if asked."""
        try:
            key, count, row = messages.parse_route_args(args, self.state.digits.count)
        except MalformedPayload as e:
            raise malformed(e) from None
        if not self._joined():
            raise RemoteError(NOT_JOINED, "this node has not joined yet")
        # The sender never asks itself, and merges itself into the closest.
        found = route(self.state, self._me(), key, count, exclude=(sender.node_id,))
        return messages.route_answer(found, self.state.table.row(row) if row >= 0 else [])

    def answer_leafset(self, sender: Contact, args: Any) -> list[bytes]:
        """``pastry_leafset``: our leaf set."""
        try:
            messages.parse_nothing(args)
        except MalformedPayload as e:
            raise malformed(e) from None
        return wire.encode_contacts(self.state.leafset.contacts())

    def answer_row(self, sender: Contact, args: Any) -> list[bytes]:
        """``pastry_row``: one row of our routing table."""
        try:
            row = messages.parse_row_args(args, self.state.digits.count)
        except MalformedPayload as e:
            raise malformed(e) from None
        return wire.encode_contacts(self.state.table.row(row))

    def answer_announce(self, sender: Contact, args: Any) -> bool:
        """``pastry_announce``: the sender joined. It enters our state when
        the RPC layer has proven its address (its listener), not here."""
        try:
            messages.parse_nothing(args)
        except MalformedPayload as e:
            raise malformed(e) from None
        self.counters["announces_received"] += 1
        self.departed.discard(sender.node_id)
        return True

    def answer_leave(self, sender: Contact, args: Any) -> None:
        """``pastry_leave``: the sender leaves; forget it and repair now."""
        try:
            messages.parse_nothing(args)
        except MalformedPayload as e:
            raise malformed(e) from None
        self.counters["leaves_received"] += 1
        self.departed.add(sender.node_id)
        self._lost(sender).addErrback(
            lambda f: self._log.failure("repairing after {node} left failed", f, node=sender)
        )
