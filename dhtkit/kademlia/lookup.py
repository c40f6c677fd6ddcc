"""Kademlia's iterative lookup: alpha queries in flight, converging on the k closest.

The lookup keeps a shortlist of the contacts closest to the target. It asks
the closest ones it has not asked yet, alpha at a time; every answer brings
contacts, which join the shortlist. When a round brings nothing closer than
the closest contact already seen, it asks all of the k closest it has not
asked yet (the paper's last step). It ends when the k closest contacts that
have not failed have all answered.

A slow contact does not hold the lookup up: once it has been waiting
``stall_after`` seconds it *stalls*: it leaves the shortlist, and the next
candidate is asked; if its answer comes later it is still used. Once some
contacts have answered, a contact is *hedged* much sooner, by
:mod:`dhtkit.hedge`'s rule (TCP's retransmission timer): it stops counting
against alpha and the next candidate is asked, so a dead contact costs a
few round trips rather than a stall. A lookup waits for a hedged contact
until it stalls; a read (a ``quorum``, below) asks past it at once, and
waits for it only while it has found no copy. A contact that fails
(times out after its retries, or answers garbage) leaves the shortlist; a
malformed answer is counted in ``bad_answers`` (not as a timeout) and the
lookup goes on with the others.

A lookup with fewer than k contacts left does not end while one it passed
over is still being asked: on a lossy network a stall is most often a lost
datagram that the RPC layer resends later, and a lookup that ended short
would leave a join (whose first lookup has one contact, its bootstrap
node) with a table of one, and a put from there with a "majority" of two.

Where the network says that nothing answers at a contact's address (an
ICMP error, ``watch``), the lookup treats it as stalled at once: no lost
datagram, a stopped node. A forged error does no more than a dropped
datagram would: the contact's answer, should it come, is still taken.

Hops are counted as the paper's analysis counts them: a contact from our own
table is asked at hop 1, a contact learnt from an answer at hop d is asked at
hop d + 1, and the lookup's ``hops`` is the hop at which the closest contact
that answered was asked.

A FIND_VALUE lookup with a read ``quorum`` ends as soon as ``quorum``
contacts have answered with a valid value and every contact of the shortlist
closer to the key than the farthest of them has answered too (or, when
replicas died, once the ``replicas`` closest answered and one of them held
the value): the result
is then those contacts, the closest the lookup heard from (see
:mod:`dhtkit.node` for what a read makes of them). Once it has copies, it
keeps no more queries in flight than the copies it still lacks.

A put's lookup may ask the contacts of its last step with the STORE
itself (``last_ask``): its answer names the contacts nearest the key as a
FIND_NODE's would, so the nodes that a put would ask twice, once to find
them and once to store, are asked once, and those of the k closest that
answered an earlier round are sent the STORE in the same round. The put
then takes one round trip fewer.

Two hooks harden it against Sybils: ``select`` picks the shortlist and the
result among the closest (the overlay keeps a few contacts per network),
and ``claim`` lets several lookups share out the nodes they ask, so that
S/Kademlia's disjoint paths never meet.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import islice
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhtkit.contact import Contact
from dhtkit.hedge import RoundTrip
from dhtkit.rpcerrors import RPCError
from dhtkit.transport import Watch
from dhtkit.wire import WireError

_log = Logger()

#: What asking a contact yields: the contacts it returned and, for FIND_VALUE,
#: its answer for the key (None when it does not hold it).
Answer = tuple[list[Contact], Any]
Ask = Callable[[Contact], defer.Deferred[Answer]]
#: Picks up to n of the contacts given, closest first, in the order given;
#: it need not read them all (they come one by one, as the lookup finds them).
Select = Callable[[Iterable[Contact], int], list[Contact]]


def _first(contacts: Iterable[Contact], count: int) -> list[Contact]:
    return list(islice(contacts, count))


_WAITING, _ASKING, _ANSWERED, _FAILED = range(4)


@attrs.define
class _Candidate:
    contact: Contact
    distance: int
    hop: int
    index: int = 0  # how many candidates came before it
    state: int = _WAITING
    stalled: bool = False
    hedged: bool = False
    suspect: bool = False
    timer: IDelayedCall | None = None
    sent_at: float = 0.0
    unwatch: Callable[[], None] | None = None  # stops the hint of unreachability
    hinted: bool = False  # the network said nothing answers at its address
    last: bool = False  # asked in the last step, by ``last_ask``


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
    quorum_reached: bool = False
    round_trip: RoundTrip | None = None  # what it learnt of round trips (None: no answer)


def _distance(candidate: _Candidate) -> int:
    return candidate.distance


def _unwatch(candidate: _Candidate) -> None:
    if candidate.unwatch is not None:
        candidate.unwatch()
        candidate.unwatch = None


def _index(candidate: _Candidate) -> int:
    return candidate.index


class IterativeLookup:
    """One lookup of ``target``; :meth:`run` fires with a :class:`LookupOutcome`.

    :param ask: sends the query to a contact (FIND_NODE or FIND_VALUE).
    :param failed: told of each contact that did not answer.
    :param enough: for FIND_VALUE, whether an answer ends the lookup at once.
    :param select: picks the shortlist and the result among the closest
        (the first k by default).
    :param claim: whether this lookup may ask a contact it learnt of
        (another lookup may have it); every contact by default.
    :param quorum: for FIND_VALUE, end once this many contacts answered
        with the value, as the module says (0: go on until the k closest
        answered).
    :param replicas: with ``quorum``, the nodes that hold a key: a read
        also ends once that many of the closest contacts answered, one of
        them with the value (fewer than ``quorum`` are left alive).
    :param suspect: whether a contact failed or kept a lookup waiting
        before: such contacts are asked only when too few others are left.
    :param slow: told of each contact hedged (waited for too long).
    :param more_seeds: contacts that take the place of ``seeds`` that fail
        (farther from the target than every seed), fetched only then; seeds
        beyond the k closest wait in reserve the same way.
    :param rtt: the round trips earlier lookups saw, to hedge by before
        this one has seen any (else ``stall_after``); not changed.
    :param valid: whether an answer with the value counts toward the
        quorum (the value layer checks the record; a forged one does not).
    :param watch: ``watch(address, hint)`` calls ``hint()`` if the network
        says nothing answers at ``address`` (an ICMP error: see
        :meth:`dhtkit.transport.IRPC.watch_unreachable`) and returns the
        function that stops watching; a contact so hinted is hedged at once.
    :param last_ask: asks the ``last_count`` closest contacts of the last
        step (once a round brought nothing closer) in place of ``ask``, and
        asks again with it those of them that had answered ``ask``; its
        answers' round trips are not learnt from. A put's STORE, which
        names contacts as FIND_NODE does but answers only once the record
        is durable: so the lookup ends once the closest contacts hold the
        record. Each answer's second item (the outcome) goes into ``values``.
    :param last_count: how many of the closest ``last_ask`` asks (k by default).
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
        quorum: int = 0,
        valid: Callable[[Contact, Any], bool] = lambda contact, answer: True,
        rtt: RoundTrip | None = None,
        replicas: int = 0,
        suspect: Callable[[bytes], bool] | None = None,
        slow: Callable[[Contact], None] | None = None,
        more_seeds: Callable[[], list[Contact]] | None = None,
        watch: Watch | None = None,
        last_ask: Ask | None = None,
        last_count: int | None = None,
    ) -> None:
        self.target = target
        self.ask = ask
        self.last_ask = last_ask
        self.last_count = k if last_count is None else min(last_count, k)
        self.clock = clock
        self.k = k
        self.alpha = alpha
        self.stall_after = stall_after
        self.exclude = exclude
        self.failed = failed
        self.enough = enough
        self.select = select
        self.claim = claim
        self.quorum = quorum
        self.valid = valid
        self.replicas = replicas
        self.suspect = suspect
        self.slow = slow
        self.watch = watch
        self._holders: list[int] = []  # the distances of those with a valid answer
        # The round trip so far, to begin with what earlier lookups saw: so a
        # first round of dead contacts is hedged too.
        self._round_trip = RoundTrip() if rtt is None else attrs.evolve(rtt)
        # This lookup's own answers alone: once it has one, it hedges by
        # them where that is sooner, for the lookups past may have seen the
        # round trips of a busier moment (a burst of joins or disk writes).
        self._own_round_trip = RoundTrip()
        self._measured = False  # whether this lookup had an answer of its own
        self._target = int.from_bytes(target, "big")
        self._candidates: dict[bytes, _Candidate] = {}
        # The same candidates, closest first; and those being asked.
        self._by_distance: list[_Candidate] = []
        self._asking: dict[bytes, _Candidate] = {}
        self._values: list[tuple[Contact, Any]] = []
        self._messages = 0
        self._timeouts = 0
        self._bad_answers = 0
        self._closest_seen: int | None = None
        self._improved = True
        # The shortlist, until a candidate comes or changes state.
        self._changes = 0
        self._shortlist_at: tuple[int, list[_Candidate]] = (-1, [])
        self._done: defer.Deferred[LookupOutcome] | None = None
        # Seeds beyond the k closest wait in reserve: they stand in for
        # seeds that fail, and most lookups never need them.
        self._reserve = more_seeds
        if len(seeds) > k:
            seeds = sorted(seeds, key=self._distance_of)
            extra = seeds[k:]
            self._reserve = lambda: extra
            seeds = seeds[:k]
        # Every seed in reserve is farther than this (the farthest seed).
        self._horizon = max(map(self._distance_of, seeds), default=-1)
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
        candidates = self._candidates
        by_distance = self._by_distance
        exclude, claim, suspect, target = self.exclude, self.claim, self.suspect, self._target
        for contact in contacts:
            node_id = contact.node_id
            if node_id == exclude or node_id in candidates:
                continue
            if claim is not None and not claim(node_id):
                continue
            d = contact.number ^ target
            candidate = _Candidate(
                contact,
                d,
                hop,
                len(candidates),
                suspect=suspect is not None and suspect(node_id),
            )
            candidates[node_id] = candidate
            self._changes += 1
            # Ids differ, so do distances: the order is exact. Seeds come
            # closest first, and go at the end.
            if not by_distance or by_distance[-1].distance < d:
                by_distance.append(candidate)
            else:
                insort(by_distance, candidate, key=_distance)
            if self._closest_seen is None or d < self._closest_seen:
                self._closest_seen = d
                closer = True
        return closer

    def _shortlist(self) -> list[_Candidate]:
        """The k closest candidates that have not failed and are not stalled."""
        changes, shortlist = self._shortlist_at
        if changes != self._changes:
            shortlist = self._pick(self._alive())
            if self._reserve is not None and self._reaches_reserve(shortlist):
                reserve, self._reserve = self._reserve, None
                self._add(reserve(), 1)
                shortlist = self._pick(self._alive())
            self._shortlist_at = (self._changes, shortlist)
        return shortlist

    def _distance_of(self, contact: Contact) -> int:
        return contact.number ^ self._target

    def _reaches_reserve(self, shortlist: list[_Candidate]) -> bool:
        """Whether the seeds in reserve could be in ``shortlist`` (so it is
        to be picked again with them): it is short, or it reaches past the
        seeds, or into the suspects, which come after them."""
        if len(shortlist) < self.k:
            return True
        last = shortlist[-1]
        if last.suspect and last.state == _WAITING:
            return True
        return last.distance > self._horizon

    def _alive(self) -> Iterator[_Candidate]:
        """The candidates that have not failed and are not stalled, closest first;
        suspects (silent or failed in earlier lookups) not yet asked come last:
        they are asked only when too few others are left."""
        read = self.quorum > 0
        suspects = []
        for c in self._by_distance:
            state = c.state
            if state == _FAILED:
                continue
            # A read asks past a hedged contact at once; other lookups wait
            # for it, until it stalls, so as to find the true closest, unless
            # the network said nothing answers there: as good as a stall.
            if state == _ASKING and (c.stalled or c.hinted or (c.hedged and read)):
                continue
            if c.suspect and state == _WAITING:
                suspects.append(c)
                continue
            yield c
        yield from suspects

    def _counted(self, candidate: _Candidate) -> bool:
        """Whether :meth:`_alive` yields ``candidate`` (before its suspects)."""
        state = candidate.state
        if state == _FAILED:
            return False
        if state == _ASKING:
            read = self.quorum > 0
            return not (candidate.stalled or candidate.hinted or (candidate.hedged and read))
        return not (candidate.suspect and state == _WAITING)

    def _pick(self, candidates: Iterable[_Candidate]) -> list[_Candidate]:
        """Those of ``candidates`` that ``select`` picks, in their order; it
        reads only as many as it needs."""
        # select keeps the order given, and gives back contacts it was given.
        by_id = self._candidates
        chosen = self.select((candidate.contact for candidate in candidates), self.k)
        return [by_id[contact.node_id] for contact in chosen[: self.k]]

    # -- the rounds ------------------------------------------------------------------

    def _step(self) -> None:
        if self._done is None or self._done.called:
            return
        if self._quorum_reached():
            self._finish(stopped_early=True, quorum=True)
            return
        shortlist = self._shortlist()
        if (
            all(c.state == _ANSWERED for c in shortlist)
            and not self._short(shortlist)
            and not self._unsure(shortlist)
        ):
            if not self._unstored(shortlist):
                self._finish(stopped_early=False)
                return
            # Converged, but some of the closest answered only FIND_NODE.
            self._improved = False
        in_flight = sum(1 for c in self._asking.values() if not (c.stalled or c.hedged))
        # After an answer that brought nothing closer, ask all of the k closest.
        limit = self.alpha if self._improved else self.k
        if self._holders:
            # A read that found copies needs only those its quorum still
            # lacks (or an answer from a closer contact): more queries in
            # flight would be answered after it ended.
            limit = min(limit, max(1, self.quorum - len(self._holders)))
        # The last step of a put asks the last_count closest of the
        # shortlist with last_ask: those not asked yet, and those that
        # answered before.
        last = self.last_count if self.last_ask is not None and not self._improved else 0
        for i, candidate in enumerate(shortlist):
            if in_flight >= limit or self._done.called:  # an answer may come at once
                break
            state = candidate.state
            if state == _WAITING or (i < last and state == _ANSWERED and not candidate.last):
                self._query(candidate, i < last)
                in_flight += 1

    def _unstored(self, shortlist: list[_Candidate]) -> bool:
        """Whether one of the ``last_count`` closest of ``shortlist`` is
        still to be asked with ``last_ask``."""
        if self.last_ask is None:
            return False
        return not all(c.last for c in shortlist[: self.last_count])

    def _short(self, shortlist: list[_Candidate]) -> bool:
        """Whether fewer than k contacts are left while one passed over is
        still being asked (the module says why its answer is waited for,
        until the RPC layer gives up on it), unless the network said that
        nothing answers there: no lost datagram then, a stopped node."""
        return len(shortlist) < self.k and any(not c.hinted for c in self._asking.values())

    def _unsure(self, shortlist: list[_Candidate]) -> bool:
        """Whether a read that has found no copy yet still waits for a
        hedged contact closer than the farthest of ``shortlist``: it may
        hold one (on a lossy network a hedged contact is most often alive),
        so the read does not end empty before that contact stalls."""
        if self.quorum <= 0 or self._holders or not shortlist:
            return False
        farthest = shortlist[-1].distance
        return any(
            c.hedged and not c.stalled and not c.hinted and c.distance < farthest
            for c in self._asking.values()
        )

    def _query(self, candidate: _Candidate, last: bool = False) -> None:
        if candidate.suspect and candidate.state == _WAITING:
            self._changes += 1  # no longer at the end of the shortlist's order
        candidate.state = _ASKING
        self._asking[candidate.contact.node_id] = candidate
        self._messages += 1
        candidate.sent_at = self.clock.seconds()
        candidate.timer = self.clock.callLater(self._patience(), self._stalled, candidate)
        if self.watch is not None:
            hint = partial(self._hinted, candidate)
            candidate.unwatch = self.watch(candidate.contact.address, hint)
        ask = self.ask
        if last and self.last_ask is not None:
            ask = self.last_ask
            candidate.last = True
        ask(candidate.contact).addCallbacks(
            self._answered, self._no_answer, (candidate,), errbackArgs=(candidate,)
        )

    def _patience(self) -> float:
        """Seconds to wait for a contact before asking the next one."""
        patience = self._round_trip.patience(self.stall_after)
        if self._measured:
            return min(patience, self._own_round_trip.patience(self.stall_after))
        return patience

    def _observe(self, candidate: _Candidate) -> None:
        """Learn from an answer's round trip; hedge the contacts waited on too long."""
        now = self.clock.seconds()
        self._round_trip.observe(now - candidate.sent_at)
        self._own_round_trip.observe(now - candidate.sent_at)
        self._measured = True
        wait = self._patience()
        # In the order the candidates came, so that timers due at the same
        # time run in that order.
        for other in sorted(self._asking.values(), key=_index):
            timer = other.timer
            if other.hedged or timer is None:
                continue
            due = max(0.0, other.sent_at + wait - now)
            if timer.active():
                # Most answers leave the patience as it was (a steady round
                # trip): a timer already due then is left alone.
                if timer.getTime() == now + due:
                    continue
                timer.cancel()
            other.timer = self.clock.callLater(due, self._stalled, other)

    def _stalled(self, candidate: _Candidate) -> None:
        candidate.timer = None
        if candidate.state != _ASKING:
            return
        if not candidate.hedged:
            # Hedged: the next candidate is asked; it stalls at stall_after.
            candidate.hedged = True
            self._changes += 1
            if self.slow is not None:
                self.slow(candidate.contact)
            left = candidate.sent_at + self.stall_after - self.clock.seconds()
            if left > 0:
                candidate.timer = self.clock.callLater(left, self._stalled, candidate)
                self._step()
                return
        candidate.stalled = True
        self._changes += 1
        self._step()

    def _hinted(self, candidate: _Candidate) -> None:
        """The network said nothing answers where ``candidate`` is: hedge it
        now rather than when its timer would (its answer is still taken)."""
        candidate.unwatch = None
        if self._done is None or self._done.called:
            return
        if candidate.state != _ASKING or candidate.hedged or candidate.stalled:
            return
        if candidate.timer is not None and candidate.timer.active():
            candidate.timer.cancel()
        candidate.hinted = True
        self._stalled(candidate)

    def _settle(self, candidate: _Candidate, state: int) -> None:
        # The shortlist changes only if the candidate leaves or enters it:
        # an answer from a contact being asked leaves it as it was.
        if state != _ANSWERED or not self._counted(candidate):
            self._changes += 1
        candidate.state = state
        self._asking.pop(candidate.contact.node_id, None)
        candidate.stalled = candidate.hedged = candidate.hinted = False
        if candidate.timer is not None and candidate.timer.active():
            candidate.timer.cancel()
        candidate.timer = None
        _unwatch(candidate)

    def _answered(self, answer: Answer, candidate: _Candidate) -> None:
        if self._done is None or self._done.called:
            return
        learn = not (candidate.hedged or candidate.last)
        # Settled first: its own timer is then cancelled, not moved.
        self._settle(candidate, _ANSWERED)
        if learn:
            self._observe(candidate)
        contacts, value = answer
        if value is not None:
            self._values.append((candidate.contact, value))
            if self.quorum > 0 and self.valid(candidate.contact, value):
                self._holders.append(candidate.distance)
            if self.enough is not None and self.enough(candidate.contact, value):
                self._finish(stopped_early=True)
                return
        if value is None or self.quorum <= 0:
            self._improved = self._add(contacts, candidate.hop + 1)
        # else a copy of the value, which names no contacts: not a sign
        # that the lookup has converged, so no reason to ask all the k closest.
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

    def _quorum_distance(self) -> int | None:
        """How far from the target a read's answers reach: the distance of the
        ``quorum``-th closest contact that answered with the value; or, when
        fewer did (replicas died), of the ``replicas``-th contact of the
        shortlist if one of those holds it. None while neither is known."""
        if self.quorum <= 0 or not self._holders:
            return None
        if len(self._holders) >= self.quorum:
            return sorted(self._holders)[self.quorum - 1]
        shortlist = self._shortlist()
        if self.replicas <= 0 or len(shortlist) < self.replicas:
            return None
        farthest = shortlist[self.replicas - 1].distance
        return farthest if min(self._holders) <= farthest else None

    def _quorum_reached(self) -> bool:
        """Whether a read quorum answered with the value (or the whole
        replica set, one of them with it), and every contact of the
        shortlist closer than the farthest of them answered too."""
        farthest = self._quorum_distance()
        if farthest is None:
            return False
        # A hedged contact is not waited for: a read must not stall on the dead.
        return all(
            c.state == _ANSWERED or c.hedged for c in self._shortlist() if c.distance <= farthest
        )

    def _finish(self, stopped_early: bool, quorum: bool = False) -> None:
        assert self._done is not None
        for candidate in self._asking.values():  # only those have timers
            if candidate.timer is not None and candidate.timer.active():
                candidate.timer.cancel()
            _unwatch(candidate)
        answered = [c for c in self._by_distance if c.state == _ANSWERED]
        holders = {contact.node_id for contact, _ in self._values}
        if quorum:
            # The closest that answered, up to the quorum's farthest holder.
            farthest = self._quorum_distance()
            answered = [c for c in answered if farthest is None or c.distance <= farthest]
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
                quorum_reached=quorum,
                round_trip=self._round_trip if self._measured else None,
            )
        )
