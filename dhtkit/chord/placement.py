"""A node's place on the ring: found by a join, found again, and checked.

A node finds its successor by looking its own id up through a node it
knows, and takes the node found once that node answered ``chord_state``
(a join, or a rejoin after every successor failed). The same lookup, now
and then through a different finger, checks the successor: it can come
back with a node between us and our successor that no neighbour named.
Joins answered from stale pointers can leave two rings interleaved, each
consistent in itself (the "loopy" states of Liben-Nowell, Balakrishnan
and Karger, 2002); stabilization alone never merges them, the check does.

The merge (:meth:`Placement.merge_through`) is the same lookup through a
node we lost (:mod:`~dhtkit.remembered`), which may now be on
another ring: two rings that a healed partition left apart are joined by
each node that finds, on the other ring, a successor nearer than its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet import defer

from dhtkit.chord.lookup import LookupFailed, SuccessorSearch
from dhtkit.chord.messages import (
    MAX_CONTACTS,
    NOTIFY,
    STATE,
    State,
    parse_state,
    predecessors_args,
)
from dhtkit.chord.protocol import ignore_rpc_errors
from dhtkit.chord.state import RingState
from dhtkit.contact import Contact
from dhtkit.keyspace import in_interval
from dhtkit.overlay import not_joined
from dhtkit.rpcerrors import MalformedPayload, RemoteError, RPCError, RPCStopped, RPCTimeout
from dhtkit.transport import Caller

Search = Callable[[bytes, int, list[Contact]], SuccessorSearch]


#: What :meth:`Placement.merge_through` found.
UNANSWERED = "unanswered"  #: the node did not answer: ask again later
BAD = "bad"  #: it answered nonsense, or named a node that did not answer as itself
SAME = "same"  #: it is on our ring, or named no node nearer than our successor
MERGED = "merged"  #: the node it named became our successor
NOTIFIED = "notified"  #: it named a node past our successor: told it of us


class Placement:
    """Finding and checking the successor of one node.

    :param call: sends a query to a contact (with the overlay's timeouts).
    :param search: a lookup of a key starting from the given contacts.
    """

    def __init__(self, state: RingState, call: Caller, search: Search) -> None:
        self.state = state
        self._call = call
        self._search = search
        self._checks = 0

    async def state_of(self, contact: Contact) -> State | None:
        """``contact``'s predecessors and successors, or None if it did not
        answer (or answered nonsense). Our predecessors go along: the node
        asked may be our successor."""
        args = predecessors_args(self.state.predecessors)
        try:
            return parse_state(await self._call(contact, STATE, args), contact)
        except RPCStopped:
            raise
        except RPCTimeout:
            return None
        except RemoteError as e:
            if not not_joined(e):  # one still joining answers nothing yet
                self.state.counters["bad_answers"] += 1
            return None
        except (RPCError, MalformedPayload):
            self.state.counters["bad_answers"] += 1
            return None

    def find_place(self, through: list[Contact]) -> defer.Deferred[bool]:
        """Look our own id up through each of ``through`` in turn until one
        finds our successor, and make it ours; fires with whether one did."""
        return defer.Deferred.fromCoroutine(self._find_place(through))

    async def _find_place(self, through: list[Contact]) -> bool:
        own_id = self.state.own_id
        for contact in through:
            found = await self._look_up_own_id(contact)
            if not found:
                continue  # dead, or not on a ring: a node still joining refuses lookups
            # The first that answers becomes our successor: a dead node
            # still listed somewhere is passed over. Last, the node asked
            # itself: a node restarted at its old address is still listed
            # by the others, in its own place, and in a ring whose other
            # nodes died, the lookup of its own id finds only itself. Any
            # node on the ring will do as a first successor; stabilization
            # then finds the nodes between it and us.
            if all(c.node_id != contact.node_id for c in found):
                found = [*found, contact]
            for candidate in found:
                if candidate.node_id != own_id and await self.adopt(candidate, [*found, *through]):
                    return True
        # No lookup answered: the nodes we reached may all be joining, as
        # when every node of a network restarts at once. The first of them
        # that answers becomes our successor (each takes one, and
        # stabilization makes a ring of them); nodes we know on a ring are
        # always taken first, as a joining node answers with an empty list.
        for contact in through:
            if contact.node_id != own_id and await self.adopt(contact, through):
                return True
        return False

    async def _look_up_own_id(self, through: Contact) -> list[Contact]:
        try:
            found = await self._search(self.state.own_id, MAX_CONTACTS, [through]).run()
        except LookupFailed:
            return []
        return found.contacts

    async def adopt(self, candidate: Contact, found: Sequence[Contact] = ()) -> bool:
        """Make ``candidate`` our successor once it answered ``chord_state``,
        and notify it; whether it answered. ``found``, the lookup that named
        it, fills in after a list it answered that falls short."""
        answer = await self.state_of(candidate)
        if answer is None:
            return False
        self.state.replace_successors(candidate, answer.successors, found)
        self.state.fingers.offer(candidate)
        behind = predecessors_args(self.state.predecessors)
        self._call(candidate, NOTIFY, behind).addErrback(ignore_rpc_errors)
        return True

    def merge_through(self, contact: Contact) -> defer.Deferred[str]:
        """Look our own id up through ``contact``, a node not in our routing
        state; if it names a successor between us and ours, make it ours
        (once it answered ``chord_state``), which joins its ring to ours.

        If it names one past our successor, that node's ring has no node
        between us and it: we notify it, so that its predecessor finds us
        by its stabilize. Fires with one of the outcomes above.
        """
        return defer.Deferred.fromCoroutine(self._merge_through(contact))

    async def _merge_through(self, contact: Contact) -> str:
        state = self.state
        first = state.successors.first
        search = self._search(state.own_id, MAX_CONTACTS, [contact])
        try:
            found = (await search.run()).contacts
        except LookupFailed:
            found = None
        finally:
            state.counters["bad_answers"] += search.bad_answers
        if found is None:
            return BAD if search.bad_answers else UNANSWERED
        nearer = next((c for c in found if c.node_id != state.own_id), None)
        if nearer is None or state.successors.first is not first:
            return SAME  # no node but us, or a join or leave changed it meanwhile
        if first is not None and nearer.node_id in state.successors:
            return SAME
        if first is None or in_interval(nearer.node_id, state.own_id, first.node_id):
            if await self.adopt(nearer, found):
                state.counters["merges"] += 1
                return MERGED
            return BAD  # named a node that does not answer as itself
        behind = predecessors_args(state.predecessors)
        self._call(nearer, NOTIFY, behind).addErrback(ignore_rpc_errors)
        state.counters["merge_notifies"] += 1
        return NOTIFIED

    async def check_successor(self) -> None:
        """Look our own id up through the next finger in turn; a node found
        between us and our successor becomes our successor (once it answered)."""
        state = self.state
        first = state.successors.first
        fingers = state.fingers.contacts()
        if first is None or not fingers:
            return
        self._checks += 1
        state.counters["successor_checks"] += 1
        found = await self._look_up_own_id(fingers[self._checks % len(fingers)])
        nearer = next((c for c in found if c.node_id != state.own_id), None)
        if (
            nearer is not None
            and state.successors.first is first
            and in_interval(nearer.node_id, state.own_id, first.node_id)
            and await self.adopt(nearer, found)
        ):
            state.counters["successor_checks_corrected"] += 1
