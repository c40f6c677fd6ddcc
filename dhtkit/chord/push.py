"""Telling the neighbours at once when a node's lists change.

Stabilization (:mod:`dhtkit.chord.rounds`) carries every change along the
ring, but one neighbour per round: a node copies its successor's successor
list each round, so a node that joined reaches the lists of the ``r``
nodes before it only after about ``r`` rounds, and the predecessor lists
after it likewise. Growing a 1,000-node ring, the successor lists took
37 s of virtual time (18 rounds) to be right after the last join.

So a node tells its neighbours as soon as its lists change, instead of
waiting to be asked:

- its successor list changed: it sends its state (``chord_changed``) to
  its predecessor, which takes it as a stabilize round would take the
  answer to its own ``chord_state`` (and so tells its predecessor in
  turn, if its list changed too);
- it took a predecessor nearer than the one it had: it sends its state to
  the old one, which now has a node between it and us that it does not
  know of, and which walks to it as a stabilize round would;
- its predecessor list changed: it notifies its successor
  (``chord_notify`` carries the list).

Each change is told once, and the changes of one moment together (one
message of each kind per reactor turn). A settled ring changes nothing and
sends nothing. Only a node's successor is listened to, and one round on
its news runs at a time (:meth:`dhtkit.chord.rounds.Rounds.stabilize_with`),
so a successor that sends news without end gets no more queries out of
us than a stabilize round asks. The rounds still run: a message lost is
found out by the next one.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dhtkit.chord.messages import (
    CHANGED,
    NOTIFY,
    State,
    predecessors_args,
    state_answer,
)
from dhtkit.chord.protocol import ignore_rpc_errors
from dhtkit.chord.state import News, RingState
from dhtkit.contact import Contact
from dhtkit.transport import Caller


class Push:
    """Sends a node's news (:class:`~dhtkit.chord.state.News`) to its neighbours.

    :param call: sends a query to a contact (with the overlay's timeouts).
    :param clock: where the sending of one moment's news is scheduled.
    """

    def __init__(
        self, state: RingState, call: Caller, clock: IReactorTime, counters: Counter[str]
    ) -> None:
        self.state = state
        self._call = call
        self._clock = clock
        self._counters = counters
        self._due: IDelayedCall | None = None
        self._running = False

    def start(self) -> None:
        """Send news from now on (what came before is dropped)."""
        self._running = True
        self.state.news = News()
        self.state.on_news = self._schedule

    def stop(self) -> None:
        """Send no more news."""
        self._running = False
        self.state.on_news = None
        if self._due is not None and self._due.active():
            self._due.cancel()
        self._due = None

    def _schedule(self) -> None:
        if self._running and self._due is None:
            self._due = self._clock.callLater(0, self._send)

    def _send(self) -> None:
        self._due = None
        state = self.state
        news, state.news = state.news, News()
        if not state.joined:
            return
        behind = state.predecessor
        told: dict[bytes, Contact] = {}
        if news.successors and behind is not None:
            told[behind.node_id] = behind
        for contact in news.passed_over.values():
            told.setdefault(contact.node_id, contact)
        told.pop(state.own_id, None)
        if told:
            ours = state_answer(State(state.predecessors, state.successors.contacts()))
            for contact in told.values():
                self._counters["changes_sent"] += 1
                self._call(contact, CHANGED, ours).addErrback(ignore_rpc_errors)
        ahead = state.successors.first
        if news.predecessors and ahead is not None and state.predecessors:
            self._counters["changes_sent"] += 1
            args = predecessors_args(state.predecessors)
            self._call(ahead, NOTIFY, args).addErrback(ignore_rpc_errors)
