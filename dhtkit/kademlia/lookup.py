"""Kademlia's iterative lookup: alpha queries in flight, converging on the k closest.

The lookup keeps a shortlist of the contacts closest to the target. It asks
the closest ones it has not asked yet, alpha at a time; every answer brings
contacts, which join the shortlist. When a round brings nothing closer than
the closest contact already seen, it asks all of the k closest it has not
asked yet (the paper's last step). It ends when the k closest contacts that
have not failed have all answered.

A slow contact does not hold the lookup up: once it has been waiting
``stall_after`` seconds it stops counting against alpha and the next candidate
is asked; if its answer comes later it is still used. A contact that fails
(times out after its retries, or answers garbage) leaves the shortlist; a
malformed answer is counted in ``bad_answers`` (not as a timeout) and the
lookup goes on with the others.

Hops are counted as the paper's analysis counts them: a contact from our own
table is asked at hop 1, a contact learnt from an answer at hop d is asked at
hop d + 1, and the lookup's ``hops`` is the hop at which the closest contact
that answered was asked.

Two hooks harden it against Sybils: ``select`` picks the shortlist and the
result among the closest (the overlay keeps a few contacts per network),
and ``claim`` lets several lookups share out the nodes they ask, so that
S/Kademlia's disjoint paths never meet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhtkit.contact import Contact
from dhtkit.keyspace import distance
from dhtkit.rpcerrors import RPCError
from dhtkit.wire import WireError

_log = Logger()

#: What asking a contact yields: the contacts it returned and, for FIND_VALUE,
#: its answer for the key (None when it does not hold it).
Answer = tuple[list[Contact], Any]
Ask = Callable[[Contact], defer.Deferred[Answer]]
#: Picks up to n of the contacts given, closest first, in the order given.
Select = Callable[[list[Contact], int], list[Contact]]


def _first(contacts: list[Contact], count: int) -> list[Contact]:
    return contacts[:count]


_WAITING, _ASKING, _ANSWERED, _FAILED = range(4)


@attrs.define
class _Candidate:
    contact: Contact
    distance: int
    hop: int
    state: int = _WAITING
    stalled: bool = False
    timer: IDelayedCall | None = None


@attrs.define
class LookupOutcome:
    """The closest contacts that answered, with the answers holding the value."""

    contacts: list[Contact]
    hops: int
    messages: int
    timeouts: int
    values: list[tuple[Contact, Any]]
    without: list[Contact]
    stopped_early: bool
    bad_answers: int = 0


class IterativeLookup:
    """One lookup of ``target``; :meth:`run` fires with a :class:`LookupOutcome`.

    :param ask: sends the query to a contact (FIND_NODE or FIND_VALUE).
    :param failed: told of each contact that did not answer.
    :param enough: for FIND_VALUE, whether an answer ends the lookup at once.
    :param select: picks the shortlist and the result among the closest
        (the first k by default).
    :param claim: whether this lookup may ask a contact it learnt of
        (another lookup may have it); every contact by default.
    """

    def __init__(
        self,
        target: bytes,
        seeds: list[Contact],
        ask: Ask,
        clock: IReactorTime,
        *,
        k: int,
        alpha: int,
        stall_after: float,
        exclude: bytes,
        failed: Callable[[Contact], None] = lambda contact: None,
        enough: Callable[[Contact, Any], bool] | None = None,
        select: Select = _first,
        claim: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.target = target
        self.ask = ask
        self.clock = clock
        self.k = k
        self.alpha = alpha
        self.stall_after = stall_after
        self.exclude = exclude
        self.failed = failed
        self.enough = enough
        self.select = select
        self.claim = claim
        self._candidates: dict[bytes, _Candidate] = {}
        self._values: list[tuple[Contact, Any]] = []
        self._messages = 0
        self._timeouts = 0
        self._bad_answers = 0
        self._closest_seen: int | None = None
        self._improved = True
        self._done: defer.Deferred[LookupOutcome] | None = None
        self._add(seeds, 1)

    def run(self) -> defer.Deferred[LookupOutcome]:
        """Start the lookup; fires once it has converged (it never fails)."""
        self._done = defer.Deferred()
        self._step()
        return self._done

    # -- the shortlist -------------------------------------------------------------

    def _add(self, contacts: list[Contact], hop: int) -> bool:
        """Add new contacts; whether one is closer than any seen before."""
        closer = False
        for contact in contacts:
            if contact.node_id == self.exclude or contact.node_id in self._candidates:
                continue
            if self.claim is not None and not self.claim(contact.node_id):
                continue
            d = distance(contact.node_id, self.target)
            self._candidates[contact.node_id] = _Candidate(contact, d, hop)
            if self._closest_seen is None or d < self._closest_seen:
                self._closest_seen = d
                closer = True
        return closer

    def _shortlist(self) -> list[_Candidate]:
        """The k closest candidates that have not failed and are not stalled."""
        alive = [
            c
            for c in self._candidates.values()
            if c.state != _FAILED and not (c.state == _ASKING and c.stalled)
        ]
        alive.sort(key=lambda c: c.distance)
        return self._pick(alive)

    def _pick(self, candidates: list[_Candidate]) -> list[_Candidate]:
        chosen = {c.node_id for c in self.select([c.contact for c in candidates], self.k)}
        return [c for c in candidates if c.contact.node_id in chosen][: self.k]

    # -- the rounds ------------------------------------------------------------------

    def _step(self) -> None:
        if self._done is None or self._done.called:
            return
        shortlist = self._shortlist()
        if all(c.state == _ANSWERED for c in shortlist):
            self._finish(stopped_early=False)
            return
        in_flight = sum(
            1 for c in self._candidates.values() if c.state == _ASKING and not c.stalled
        )
        # After an answer that brought nothing closer, ask all of the k closest.
        limit = self.alpha if self._improved else self.k
        for candidate in shortlist:
            if in_flight >= limit or self._done.called:  # an answer may come at once
                break
            if candidate.state == _WAITING:
                self._query(candidate)
                in_flight += 1

    def _query(self, candidate: _Candidate) -> None:
        candidate.state = _ASKING
        self._messages += 1
        candidate.timer = self.clock.callLater(self.stall_after, self._stalled, candidate)
        self.ask(candidate.contact).addCallbacks(
            self._answered, self._no_answer, (candidate,), errbackArgs=(candidate,)
        )

    def _stalled(self, candidate: _Candidate) -> None:
        candidate.timer = None
        if candidate.state == _ASKING:
            candidate.stalled = True
            self._step()

    def _settle(self, candidate: _Candidate, state: int) -> None:
        candidate.state = state
        candidate.stalled = False
        if candidate.timer is not None and candidate.timer.active():
            candidate.timer.cancel()
        candidate.timer = None

    def _answered(self, answer: Answer, candidate: _Candidate) -> None:
        if self._done is None or self._done.called:
            return
        self._settle(candidate, _ANSWERED)
        contacts, value = answer
        if value is not None:
            self._values.append((candidate.contact, value))
            if self.enough is not None and self.enough(candidate.contact, value):
                self._finish(stopped_early=True)
                return
        self._improved = self._add(contacts, candidate.hop + 1)
        self._step()

    def _no_answer(self, failure: Failure, candidate: _Candidate) -> None:
        if not isinstance(failure.value, (RPCError, WireError, defer.CancelledError)):
            _log.failure("asking {contact} failed", failure, contact=candidate.contact)
        # Told even after the lookup ended: the routing table learns from it.
        self.failed(candidate.contact)
        if self._done is None or self._done.called:
            return
        self._settle(candidate, _FAILED)
        if isinstance(failure.value, WireError):
            self._bad_answers += 1  # it answered, with something no node would send
        else:
            self._timeouts += 1
        self._step()

    def _finish(self, stopped_early: bool) -> None:
        assert self._done is not None
        for candidate in self._candidates.values():
            if candidate.timer is not None and candidate.timer.active():
                candidate.timer.cancel()
        answered = sorted(
            (c for c in self._candidates.values() if c.state == _ANSWERED),
            key=lambda c: c.distance,
        )
        holders = {contact.node_id for contact, _ in self._values}
        closest = self._pick(answered)
        self._done.callback(
            LookupOutcome(
                contacts=[c.contact for c in closest],
                hops=closest[0].hop if closest else 0,
                messages=self._messages,
                timeouts=self._timeouts,
                values=list(self._values),
                without=[c.contact for c in answered if c.contact.node_id not in holders],
                stopped_early=stopped_early,
                bad_answers=self._bad_answers,
            )
        )
