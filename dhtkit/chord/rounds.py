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
- **fix_fingers** refreshes one finger entry per round, in turn among
  those above our successor, and sets it once the node found answered a
  ping (or is already a finger). It asks the finger it holds for the entry
  for its predecessors (``chord_state``, one exchange): the last of them
  not before the entry's start is the finger, the one held if its
  predecessor lies before the start. In a settled ring this replaces a
  lookup per round (about ½·log2 N exchanges); a lookup of the start is
  the fallback when the finger does not answer, we hold none, or its
  predecessors do not reach back past the start, and once every
  :data:`LOOKUP_CYCLES` cycles every entry is looked up anew, so that a
  finger never vouches for itself for long. A node that just joined
  looks each entry up (:meth:`Rounds.fill_fingers`). Once a cycle
  fix_fingers also checks the successor
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
    FINGERS,
    NOTIFY,
    parse_fingers,
    predecessors_args,
)
from dhtkit.chord.placement import UNANSWERED, Placement
from dhtkit.chord.state import RingState
from dhtkit.contact import Contact
from dhtkit.keyspace import ring_distance
from dhtkit.overlay import Lookup
from dhtkit.rpcerrors import MalformedPayload, RPCError, RPCStopped, RPCTimeout
from dhtkit.transport import Caller

Find = Callable[[bytes, int], "defer.Deferred[Lookup]"]

#: fix_fingers asks a finger about itself (one ``chord_state``), except once
#: every this many cycles of the finger indexes, when it looks each up anew.
LOOKUP_CYCLES = 8
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
        # Cycles of fix_fingers begun (a node's first fingers are looked up).
        self._cycles = 0

    def stabilize(self) -> defer.Deferred[None]:
        """One stabilize round."""
        return defer.Deferred.fromCoroutine(_unless_stopped(self._stabilize()))

    def fix_fingers(self) -> defer.Deferred[None]:
        """One fix_fingers round."""
        return defer.Deferred.fromCoroutine(_unless_stopped(self._fix_fingers()))

    def fill_fingers(self) -> defer.Deferred[None]:
        """A fix_fingers round for every finger above our successor, one
        after another: a node that just joined has its fingers at once
        instead of one every period. An entry the finger just found covers
        too is skipped (the paper's ``init_finger_table``).

        Each entry starts from our successor's fingers (``chord_fingers``),
        as the paper suggests: our successor is next to us, so its finger
        for an entry is ours, or near it. The one at or after the entry's
        start is asked for its predecessors, as fix_fingers asks a finger
        it holds (one exchange), and a lookup (about ½·log2 N exchanges)
        is the fallback: while a ring grows fast its fingers are stale, and
        about half the entries still need one."""

        async def fill() -> None:
            state = self.state
            hints = await self._successor_fingers()
            reach = 0
            for index in state.finger_indexes():
                if 1 << (index - 1) <= reach:
                    continue
                start = FingerTable.start(state.own_id, index)
                finger = await self._fix_fingers(index, _first_from(start, hints))
                if finger is not None:
                    reach = ring_distance(state.own_id, finger.node_id)

        return defer.Deferred.fromCoroutine(_unless_stopped(fill()))

    async def _successor_fingers(self) -> list[Contact]:
        """Our successor list (the nodes nearest after us, where the
        successor's fingers are sparse) and our successor's fingers."""
        listed = self.state.successors.contacts()
        if not listed:
            return []
        try:
            answer = await self._call(listed[0], FINGERS, None)
            own = self.state.own_id
            # Its fingers name us when we are one of them: a hint to ask
            # ourselves would only wait out a timeout.
            return [*listed, *(c for c in parse_fingers(answer, listed[0]) if c.node_id != own)]
        except RPCStopped:
            raise
        except RPCError:
            return listed
        except MalformedPayload:
            self.state.counters["bad_answers"] += 1
            return listed

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

    async def _fix_fingers(
        self, index: int | None = None, hint: Contact | None = None
    ) -> Contact | None:
        # The finger now set for entry ``index``, if a node answered for it;
        # ``hint``, a node that may be it, is asked before any lookup.
        state = self.state
        if not state.joined:
            return None
        if index is None:
            index = state.next_finger_index()
            if index is None:
                return None
            if index == state.finger_indexes().start:
                self._cycles += 1
                await self._placement.check_successor()  # once a cycle
        state.counters["fix_fingers_rounds"] += 1
        start = FingerTable.start(state.own_id, index)
        if hint is None and self._lookups_due():
            finger = await self._look_up_finger(start)
        else:
            finger = await self._ask_finger(index, start, hint)
            if finger is None:
                finger = await self._look_up_finger(start)
        if finger is None:
            return None
        if finger.node_id == state.own_id:
            state.fingers.set(index, None)
            return None
        if finger not in state.fingers.contacts():
            # Named in someone's answer: a candidate until it answers us.
            try:
                finger = await self._verify(finger)
            except RPCStopped:
                raise
            except RPCError:
                return None
        state.fingers.set(index, finger)
        return finger

    def _lookups_due(self) -> bool:
        # Once every LOOKUP_CYCLES cycles of the finger indexes, each finger
        # is looked up anew rather than asked about itself.
        return self._cycles % LOOKUP_CYCLES == 0

    async def _look_up_finger(self, start: bytes) -> Contact | None:
        """``successor(start)`` by a lookup; None if it failed."""
        try:
            found = await self._find(start, 1)
        except LookupFailed:
            return None
        return found.contacts[0] if found.contacts else None

    async def _ask_finger(
        self, index: int, start: bytes, held: Contact | None = None
    ) -> Contact | None:
        """``successor(start)`` as the finger we hold for entry ``index``
        (or ``held``) tells it, by its predecessors; None if it cannot tell
        (we hold none, it did not answer, or all the predecessors it names
        lie at or after ``start``): then a lookup finds out."""
        state = self.state
        if held is None:
            held = state.fingers.finger(index)
        if held is None:
            return None
        answer = await self._placement.state_of(held)
        if answer is None:
            state.lose_finger(held.node_id)
            return None
        state.counters["fingers_asked"] += 1
        found = successor_by_predecessors(start, held, answer.predecessors)
        if found is not None:
            state.counters["fingers_confirmed"] += found is held
        return found

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


def successor_by_predecessors(
    start: bytes, node: Contact, predecessors: list[Contact]
) -> Contact | None:
    """``successor(start)``, from ``node`` (at or after ``start``) and the
    ``predecessors`` it names, nearest first: the last of them not before
    ``start``, or ``node`` itself when the first already lies before it.

    None when it cannot tell: every node named lies at or after ``start``
    (or none is named), so the successor may lie further back than they
    reach, or the list is out of ring order.
    """
    span = ring_distance(start, node.node_id)  # how far ``node`` lies past ``start``
    found, reach = node, 0
    for contact in predecessors:
        back = ring_distance(contact.node_id, node.node_id)
        if back <= reach:
            return None  # not behind the previous one: no guess from a muddled list
        if back > span:
            return found  # before ``start``: the node after it is the successor
        found, reach = contact, back
    return None


def _first_from(start: bytes, contacts: list[Contact]) -> Contact | None:
    """The first of ``contacts`` at or after ``start`` going round the
    ring; None if there are none."""
    return min(contacts, key=lambda c: ring_distance(start, c.node_id), default=None)


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


async def _unless_stopped(round_: Coroutine[Any, Any, object]) -> None:
    # The node stopped listening while a round waited: nothing left to do.
    try:
        await round_
    except RPCStopped:
        pass
