"""Answering Chord's five RPCs (formats in :mod:`~dhtkit.chord.messages`).

Every handler checks its arguments in full and answers anything else with
``RemoteError("malformed", ...)``. The sender is the RPC layer's verified
contact, so a notify or a leave speaks only for the node that sent it; a
contact a leaver names as its predecessor is pinged before we take it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from dhtkit.chord import messages
from dhtkit.chord.messages import (
    FIND,
    FINGERS,
    LEAVE,
    NOTIFY,
    STATE,
    State,
)
from dhtkit.chord.state import RingState
from dhtkit.contact import Contact
from dhtkit.overlay import NOT_JOINED
from dhtkit.rpcerrors import MalformedPayload, RemoteError, RPCError, malformed
from dhtkit.transport import IRPC


def ignore_rpc_errors(failure: Failure) -> None:
    """An errback for calls whose failure the next maintenance round finds out."""
    if not isinstance(failure.value, RPCError):
        failure.raiseException()


class ChordResponder:
    """The ``chord_*`` handlers of one node.

    :param state: the node's view of the ring, read and changed here.
    :param me: our own contact (None until the RPC layer listens).
    :param verify: pings a contact; fires with it once it answered.
    :param stabilize_now: runs a stabilize round at once.
    """

    def __init__(
        self,
        state: RingState,
        me: Callable[[], Contact | None],
        verify: Callable[[Contact], defer.Deferred[Contact]],
        stabilize_now: Callable[[], None],
    ) -> None:
        self.state = state
        self._me = me
        self._verify = verify
        self._stabilize_now = stabilize_now

    def register(self, rpc: IRPC) -> None:
        """Register the five handlers on ``rpc``."""
        # Running any of them twice for a retried query does no harm (a
        # notify or a leave only sets what is already set), so no reply is
        # kept for retries: a node asked every round by its neighbours would
        # otherwise hold thousands.
        for method, handler in (
            (FIND, self.answer_find),
            (STATE, self.answer_state),
            (NOTIFY, self.answer_notify),
            (LEAVE, self.answer_leave),
            (FINGERS, self.answer_fingers),
        ):
            rpc.register(method, handler, idempotent=True)

    def unregister(self, rpc: IRPC) -> None:
        """Take the five handlers off ``rpc``."""
        for method in (FIND, STATE, NOTIFY, LEAVE, FINGERS):
            rpc.unregister(method)

    def answer_find(self, sender: Contact, args: Any) -> list[Any]:
        """``chord_find``: the key's successors, or nodes nearer to it."""
        try:
            key, count = messages.parse_find_args(args)
        except MalformedPayload as e:
            raise malformed(e) from None
        self._require_joined()
        me = self._me()
        assert me is not None  # a query reached us, so we listen
        return messages.find_answer(self.state.answer_find(me, key, count))

    def answer_state(self, sender: Contact, args: Any) -> list[Any]:
        """``chord_state``: our predecessors and successor list.

        A stabilize query from our predecessor carries its predecessors.
        """
        try:
            behind = messages.parse_predecessors(args, sender)
        except MalformedPayload as e:
            raise malformed(e) from None
        state = self.state
        state.learn_predecessors(sender, behind)
        return messages.state_answer(State(state.predecessors, state.successors.contacts()))

    def answer_notify(self, sender: Contact, args: Any) -> bool:
        """``chord_notify``: the sender thinks it is our predecessor."""
        try:
            behind = messages.parse_predecessors(args, sender)
        except MalformedPayload as e:
            raise malformed(e) from None
        state = self.state
        state.counters["notifies_received"] += 1
        if not state.consider_predecessor(sender):
            return False
        state.learn_predecessors(sender, behind)
        state.fingers.offer(sender)  # it has a successor: it is on the ring
        return True

    def answer_fingers(self, sender: Contact, args: Any) -> list[bytes]:
        """``chord_fingers``: the distinct nodes of our finger table."""
        if args is not None:
            raise malformed(MalformedPayload("chord_fingers takes no arguments"))
        self._require_joined()
        return messages.fingers_answer(self.state.fingers.contacts())

    def _require_joined(self) -> None:
        # A node still finding its place would answer for every key, and
        # with fingers it does not have yet.
        if not self.state.joined:
            raise RemoteError(NOT_JOINED, "this node is not on the ring yet")

    def answer_leave(self, sender: Contact, args: Any) -> None:
        """``chord_leave``: the sender leaves; its neighbours close the gap."""
        try:
            told = messages.parse_state(args, sender)
        except MalformedPayload as e:
            raise malformed(e) from None
        self.state.counters["leaves_received"] += 1
        state = self.state
        first = state.successors.first
        if first is not None and first.node_id == sender.node_id:
            # Our successor leaves: its successors follow it in our list at
            # once, and stabilizing now makes the next one link up with us.
            rest = [c for c in state.successors if c.node_id != sender.node_id]
            state.forget(sender.node_id, left=True)
            if rest:
                state.replace_successors(rest[0], rest[1:] + told.successors)
            self._stabilize_now()
        else:
            state.forget(sender.node_id, left=True)
        predecessor = state.predecessor
        if predecessor is not None and predecessor.node_id == sender.node_id:
            state.set_predecessor(None)
            if told.predecessor is not None and told.predecessor.node_id != state.own_id:
                # Named by the leaver: it becomes our predecessor once it answered.
                self._verify(told.predecessor).addCallbacks(
                    state.consider_predecessor, ignore_rpc_errors
                )
