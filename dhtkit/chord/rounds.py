"""The maintenance rounds: stabilize (with notify), fix_fingers, check_predecessor.

As in the paper (§4.3, §4.4):

- **stabilize** asks our successor for its predecessors and successor list
  (``chord_state``, which carries our own predecessors to it). A node it
  names between us and it becomes our successor once *it* has answered
  ``chord_state`` too (and so on, while each names a node nearer to us:
  several nodes that joined into one gap are walked in one round, not one
  a round); then we take the successor's list as the tail of ours (the
  successor-list refresh) and notify it. A successor that does not answer
  is dropped and the next in the list is asked in the same round; with
  none left, the node finds its place again by a lookup of its own id
  through the nodes it still knows (which also turns a ring of one into a
  ring of two).
- **fix_fingers** looks up the start of one finger per round, in turn among
  those above our successor, and sets it once the node found answered a
  ping (or is already a finger). Once a cycle it also checks the successor
  (:meth:`~dhtkit.chord.placement.Placement.check_successor`).
- **merge** asks one node we knew and lost (:mod:`~dhtkit.remembered`),
  in turn, that is not in our routing state, to look our own id up
  (:meth:`~dhtkit.chord.placement.Placement.merge_through`): after a
  partition heals, a node that answers may be on another ring, and a
  successor it names between us and ours joins the two rings, which
  stabilize and notify then weave into one. A node that does not answer
  is asked again in its turn; one that answered is forgotten.
- **check_predecessor** pings the predecessor and forgets it when it does
  not answer, so that the next notify may replace it. A predecessor that
  spoke to us within the last period (its own stabilize asks us every
  period) is alive without a ping.

A notify that would change nothing (our successor already names us as its
predecessor) is not sent: in a stable ring a round costs one exchange.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from dhtkit.chord.fingers import FingerTable
from dhtkit.chord.lookup import LookupFailed
from dhtkit.chord.messages import (
    NOTIFY,
    predecessors_args,
)
from dhtkit.chord.placement import UNANSWERED, Placement
from dhtkit.chord.state import RingState
from dhtkit.contact import Contact
from dhtkit.keyspace import ring_distance
from dhtkit.overlay import Lookup
from dhtkit.rpcerrors import RPCError, RPCStopped, RPCTimeout
from dhtkit.transport import Caller

Find = Callable[[bytes, int], "defer.Deferred[Lookup]"]
Verify = Callable[[Contact], "defer.Deferred[Contact]"]


class Rounds:
    """The maintenance of one node's :class:`RingState`.

    :param call: sends a query to a contact (with the overlay's timeouts).
    :param find: looks a key up (the overlay's lookup).
    :param placement: finds and checks our successor.
    :param verify: pings a contact; fires with it once it answered.
    :param clock: tells how long ago the predecessor spoke to us.
    :param fresh_for: seconds after a message from the predecessor during
        which it counts as alive without a ping.
    """

    def __init__(
        self,
        state: RingState,
        call: Caller,
        find: Find,
        placement: Placement,
        verify: Verify,
        clock: IReactorTime,
        fresh_for: float,
    ) -> None:
        self.state = state
        self._clock = clock
        self.fresh_for = fresh_for
        self._call = call
        self._find = find
        self._placement = placement
        self._verify = verify

    def stabilize(self) -> defer.Deferred[None]:
        """One stabilize round."""
        return defer.Deferred.fromCoroutine(_unless_stopped(self._stabilize()))

    def fix_fingers(self) -> defer.Deferred[None]:
        """One fix_fingers round."""
        return defer.Deferred.fromCoroutine(_unless_stopped(self._fix_fingers()))

    def fill_fingers(self) -> defer.Deferred[None]:
        """A fix_fingers round for every finger above our successor, one
        after another: a node that just joined has its fingers in about
        log2 N lookups (the paper's O(log² N) messages per join) instead of
        one every period."""

        async def fill() -> None:
            for index in self.state.finger_indexes():
                await self._fix_fingers(index)

        return defer.Deferred.fromCoroutine(_unless_stopped(fill()))

    def check_predecessor(self) -> defer.Deferred[None]:
        """One check_predecessor round."""
        return defer.Deferred.fromCoroutine(_unless_stopped(self._check_predecessor()))

    def merge(self) -> defer.Deferred[None]:
        """One merge round."""
        return defer.Deferred.fromCoroutine(_unless_stopped(self._merge()))

    async def _merge(self) -> None:
        state = self.state
        if not state.joined:
            return

        def through(contact: Contact) -> defer.Deferred[bool]:
            state.counters["merge_attempts"] += 1
            return self._placement.merge_through(contact).addCallback(
                lambda outcome: outcome != UNANSWERED
            )

        await state.lost.ask_next({c.node_id for c in state.contacts()}, through)

    async def _stabilize(self) -> None:
        state = self.state
        if not state.joined:
            return
        state.counters["stabilize_rounds"] += 1
        # Each failure drops a node, so this ends; the bound is a safeguard.
        for _ in range(state.successors.size + 2):
            successor = first = state.successors.first
            if successor is None:
                # Every successor failed (or a ring of one just got a second
                # node): find our place again through the nodes we still know.
                known = state.verified_contacts()
                if known:
                    state.counters["rejoins"] += 1
                    # The nearest before our id first: theirs take fewest hops.
                    known.sort(key=lambda c: ring_distance(c.node_id, state.own_id))
                    await self._placement.find_place(known)
                return
            answer = await self._placement.state_of(successor)
            if state.successors.first is not first:
                return  # a join or a leave changed it meanwhile: that one wins
            if answer is None:
                state.counters["successors_failed"] += 1
                state.forget(successor.node_id)
                continue
            reported, its_predecessor = answer.successors, answer.predecessor
            # Nodes between us and our successor: those it names as its
            # predecessors, and fingers we know there. The nearest to us
            # becomes our successor once it answered itself, and so on:
            # several nodes that joined into one gap are passed in one
            # round, not one a round, and a node that knows of one inside
            # a gap no neighbour told it about (two rings interleaved by
            # joins on stale pointers) closes that gap too.
            tried: set[bytes] = set()
            for _ in range(state.successors.size):
                between = _nearest_between(state, successor, answer.predecessors, tried)
                if between is None:
                    break
                tried.add(between.node_id)
                closer = await self._placement.state_of(between)
                if state.successors.first is not first:
                    return
                if closer is None:
                    state.lose_finger(between.node_id)
                    continue
                successor, reported, answer = between, closer.successors, closer
                its_predecessor = closer.predecessor
            state.replace_successors(successor, reported)
            state.fingers.offer(successor)  # it answered
            if its_predecessor is not None and its_predecessor.node_id == state.own_id:
                return  # it knows us already: a notify would change nothing
            try:
                await self._call(successor, NOTIFY, predecessors_args(state.predecessors))
            except RPCStopped:
                raise
            except RPCError:
                pass  # the next round finds out
            return

    async def _fix_fingers(self, index: int | None = None) -> None:
        state = self.state
        if not state.joined:
            return
        if index is None:
            index = state.next_finger_index()
            if index is None:
                return
            if index == state.finger_indexes().start:
                await self._placement.check_successor()  # once a cycle
        state.counters["fix_fingers_rounds"] += 1
        try:
            found = await self._find(FingerTable.start(state.own_id, index), 1)
        except LookupFailed:
            return
        if not found.contacts:
            return
        finger = found.contacts[0]
        if finger.node_id == state.own_id:
            state.fingers.set(index, None)
            return
        if finger not in state.fingers.contacts():
            # Named in someone's answer: a candidate until it answers us.
            try:
                finger = await self._verify(finger)
            except RPCStopped:
                raise
            except RPCError:
                return
        state.fingers.set(index, finger)

    async def _check_predecessor(self) -> None:
        state = self.state
        predecessor = state.predecessor
        if predecessor is None:
            return
        if self._clock.seconds() - state.predecessor_heard < self.fresh_for:
            return  # it spoke to us lately (its own stabilize): alive
        state.counters["check_predecessor_rounds"] += 1
        try:
            await self._call(predecessor, "ping", None)
        except RPCStopped:
            raise
        except RPCTimeout:
            if state.predecessor is predecessor:
                state.counters["predecessors_failed"] += 1
                state.set_predecessor(None)
                state.lose_finger(predecessor.node_id)
                state.lost.add(predecessor)  # it proved its id by its notify
        except RPCError:
            pass


def _nearest_between(
    state: RingState, successor: Contact, named: list[Contact], tried: set[bytes]
) -> Contact | None:
    """The node nearest after us, before ``successor``, among those it
    ``named`` as its predecessors and our fingers; None if there is none."""
    own, limit = state.own_id, ring_distance(state.own_id, successor.node_id)
    best: Contact | None = None
    best_distance = limit
    for contact in [*named, *state.fingers]:
        distance = ring_distance(own, contact.node_id)
        if 0 < distance < best_distance and contact.node_id not in tried:
            best, best_distance = contact, distance
    return best


async def _unless_stopped(round_: Coroutine[Any, Any, None]) -> None:
    # The node stopped listening while a round waited: nothing left to do.
    try:
        await round_
    except RPCStopped:
        pass
