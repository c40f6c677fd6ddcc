"""A read of one key from the nodes responsible for it, ended by a quorum.

Over overlays without FIND_VALUE (Chord, Pastry, a static set of nodes) the
value layer finds the responsible nodes first and then asks each of them
for the key with the ``get`` RPC, all at once. :class:`QuorumRead` decides
when the read has heard enough, so that it does not wait out the timeout
of a dead node. It ends

* once every node answered or failed; or
* once the silent nodes are *hedged* (silent since the read began for
  longer than :class:`dhtkit.hedge.RoundTrip` allows for the answers
  seen, or the network said that nothing answers at their address: see
  :meth:`dhtkit.transport.IRPC.watch_unreachable`) and at least one valid
  copy came, or ``quorum`` nodes answered without one (a miss).

Every node is asked anyway (the datagrams are those of a full read), so on
a healthy network every answer is in before the hedge and the read is the
newest of all the copies; a dead node costs the hedge, not its timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dhtkit.contact import Contact
from dhtkit.hedge import RoundTrip
from dhtkit.transport import Watch

_PENDING, _COPY, _NONE, _FAILED = range(4)


class QuorumRead:
    """Ask ``contacts`` with ``ask``; :meth:`run` fires with
    ``{index: answer}`` of the nodes that answered in time.

    :param quorum: answers without a copy that make a miss once the silent
        nodes are hedged.

    :param valid: whether the answer of node ``index`` holds a valid copy
        (it counts toward the quorum): ``valid(index, answer)``.
    :param limit: the most a silent node is waited for before it is hedged
        (seconds), before any node answered.
    :param watch: ``watch(address, hint)`` calls ``hint()`` if the network
        says nothing answers at ``address``, and returns the function that
        stops watching: such a node counts as hedged at once.
    """

    def __init__(
        self,
        clock: IReactorTime,
        contacts: Sequence[Contact],
        ask: Callable[[Contact], defer.Deferred[Any]],
        valid: Callable[[int, Any], bool],
        quorum: int,
        limit: float,
        watch: Watch | None = None,
    ) -> None:
        self.clock = clock
        self.contacts = list(contacts)
        self.ask = ask
        self.valid = valid
        self.quorum = quorum
        self.limit = limit
        self.watch = watch
        self._hinted: set[int] = set()
        self._unwatch: dict[int, Callable[[], None]] = {}
        self._state = [_PENDING] * len(self.contacts)
        self._answers: dict[int, Any] = {}
        self._hedged = False
        self._round_trip = RoundTrip()
        self._timer: IDelayedCall | None = None
        self._began = 0.0
        self._done: defer.Deferred[dict[int, Any]] = defer.Deferred()

    def run(self) -> defer.Deferred[dict[int, Any]]:
        """Ask every node at once; fires as the module says (never fails)."""
        self._began = self.clock.seconds()
        for i, contact in enumerate(self.contacts):
            if self.watch is not None:
                self._unwatch[i] = self.watch(contact.address, partial(self._unreachable, i))
            self.ask(contact).addCallbacks(
                self._answered, self._failed, callbackArgs=(i,), errbackArgs=(i,)
            )
        self._arm()
        self._check()
        return self._done

    def _unreachable(self, i: int) -> None:
        self._unwatch.pop(i, None)
        self._hinted.add(i)
        self._check()

    def _stop_watching(self, i: int) -> None:
        unwatch = self._unwatch.pop(i, None)
        if unwatch is not None:
            unwatch()

    def _answered(self, answer: Any, i: int) -> None:
        self._stop_watching(i)
        if self._done.called:
            return
        self._round_trip.observe(self.clock.seconds() - self._began)
        self._state[i] = _COPY if self.valid(i, answer) else _NONE
        self._answers[i] = answer
        self._arm()
        self._check()

    def _failed(self, failure: Any, i: int) -> None:
        self._stop_watching(i)
        if not self._done.called:
            self._state[i] = _FAILED
            self._check()

    def _arm(self) -> None:
        """(Re)start the hedge timer: due ``patience`` after the read began."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        due = self._began + self._round_trip.patience(self.limit)
        self._timer = self.clock.callLater(max(0.0, due - self.clock.seconds()), self._hedge)

    def _hedge(self) -> None:
        self._timer = None
        self._hedged = True
        self._check()

    def _check(self) -> None:
        if self._done.called:
            return
        pending = [i for i, state in enumerate(self._state) if state == _PENDING]
        settled = not pending
        if not settled and (self._hedged or self._hinted.issuperset(pending)):
            copies = self._state.count(_COPY)
            settled = copies > 0 or self._state.count(_NONE) >= max(1, self.quorum)
        if settled:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            for i in list(self._unwatch):
                self._stop_watching(i)
            self._done.callback(dict(self._answers))
