"""Listening to a key: every new version, as the responsible nodes take it.

``node.listen(key, callback)`` returns a :class:`Listening`, a handle whose
:meth:`~Listening.cancel` ends it. At once and then every
``refresh_every`` seconds the listening node looks up the nodes responsible
for the key and asks each to keep it as a listener (the ``listen`` RPC of
:mod:`dhtkit.listeners`); each answers with the version it holds, and
pushes every new version it takes afterwards (``notify``). So a listener
whose responsible set changes under churn finds the new nodes at its next
refresh, subscribes to them, and lets the old registrations go
(``unlisten``); a version pushed while it moves still reaches it through
the replicas it is subscribed to, or with the answers of its next refresh.

The replicas push the same versions, and an old replica may push an older
version late: ``callback(record)`` is called only with a version newer
than the last one it got (:func:`dhtkit.values.newest`), so it sees each
version once, in order. It is called with the version held at the start,
if any, then with every newer one. A push is taken only from a node this
listener subscribed to for that key, and its record is checked in full
(signature, key) like any answer, and a plain value's write time like a
holder checks it (it may not lead our clock by more than the skew allowed,
or it would outrank every honest version to come); a bad one is dropped
and counted.

The node's own store tells its listeners of the versions it takes
directly, whether or not the node is responsible for the key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhtkit.contact import Contact
from dhtkit.holder import Holder
from dhtkit.keyspace import check_id
from dhtkit.listeners import NOT_LISTENING
from dhtkit.overlay import IOverlay, LookupFailed
from dhtkit.rpcerrors import RemoteError, RPCError, malformed
from dhtkit.transport import IRPC
from dhtkit.values import (
    PlainValue,
    Record,
    ValueRefused,
    WriteTimeAhead,
    check_record,
    check_ttl,
    from_wire,
    newest,
)

#: Seconds between a listener's refreshes (at most half the ttl holders grant).
REFRESH_EVERY = 120.0
#: Seconds before a refresh that reached no responsible node is tried again;
#: also the shortest time between two refreshes.
RETRY_AFTER = 15.0

Callback = Callable[[Record], object]
AnswerCheck = Callable[[bytes, Any], "tuple[Record, float] | None"]


class Listening:
    """One ``listen``: the handle its caller keeps.

    :ivar key: the key listened to.
    :ivar last: the newest version the callback got, or None.
    :ivar subscribed: fires after the first round of subscriptions with
        the number of responsible nodes that keep this listener (this node
        included, when it is one of them).
    :ivar ended: fires when the listening ends: cancelled, or its node stopped.
    """

    def __init__(self, hub: ListenHub, key: bytes, callback: Callback) -> None:
        self.key = key
        self.callback = callback
        self.last: Record | None = None
        self.subscribed: defer.Deferred[int] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.active = True
        # The nodes that keep us as a listener: only they may push to us.
        self.sources: dict[bytes, Contact] = {}
        self._hub = hub
        self._timer: IDelayedCall | None = None

    def cancel(self) -> None:
        """Stop listening: no more calls of the callback; the holders are told."""
        self._hub.cancel(self)

    def offer(self, record: Record) -> bool:
        """Give ``record`` to the callback if it is newer than the last; whether it was."""
        last = self.last
        if not self.active or (
            last is not None and (record == last or newest([last, record]) is not record)
        ):
            return False
        self.last = record
        self._hub.deliver(self, record)
        return True


class ListenHub:
    """The listenings of one node: subscribing, refreshing, and taking pushes.

    It registers ``notify`` on ``rpc``. :meth:`new_version` is what the
    node's holder calls for each new version it takes.

    :param valid_answer: checks a holder's ``[record, ttl]`` answer for a
        key (the value layer's check; bad answers are counted there).
    :param replication: how many responsible nodes to subscribe to.
    """

    _log = Logger()

    def __init__(
        self,
        rpc: IRPC,
        overlay: IOverlay,
        holder: Holder,
        clock: IReactorTime,
        counters: Counter[str],
        *,
        replication: int,
        valid_answer: AnswerCheck,
        max_value_size: int,
        refresh_every: float = REFRESH_EVERY,
        retry_after: float = RETRY_AFTER,
    ) -> None:
        self.rpc = rpc
        self.overlay = overlay
        self.holder = holder
        self.clock = clock
        self.counters = counters
        self.replication = replication
        self.valid_answer = valid_answer
        self.max_value_size = max_value_size
        self.refresh_every = refresh_every
        self.retry_after = retry_after
        self._listenings: dict[bytes, list[Listening]] = {}

    def start(self) -> None:
        """Take ``notify`` pushes from the nodes that keep our listenings."""
        self.rpc.register("notify", self.answer_notify, idempotent=True)

    def listen(self, key: bytes, callback: Callback) -> Listening:
        """Call ``callback(record)`` with each new version of ``key``; see the module."""
        check_id(key)
        listening = Listening(self, key, callback)
        self._listenings.setdefault(key, []).append(listening)
        self.counters["listenings"] += 1
        self._refresh(listening)
        return listening

    def cancel(self, listening: Listening) -> None:
        """End ``listening`` and tell the nodes that keep it."""
        if not listening.active:
            return
        listening.active = False
        if listening._timer is not None and listening._timer.active():
            listening._timer.cancel()
        of_key = self._listenings.get(listening.key, [])
        if listening in of_key:
            of_key.remove(listening)
        if not of_key:
            self._listenings.pop(listening.key, None)
        self._unlisten(listening.key, list(listening.sources.values()))
        listening.sources.clear()
        listening.ended.callback(None)

    def stop(self) -> None:
        """End every listening and stop taking pushes (the node stops)."""
        self.rpc.unregister("notify")
        for listenings in list(self._listenings.values()):
            for listening in list(listenings):
                self.cancel(listening)

    def watches(self, key: bytes) -> bool:
        """Whether this node listens to ``key``."""
        return key in self._listenings

    def new_version(self, record: Record) -> None:
        """A version this node's own store took: to its listenings of the key."""
        for listening in list(self._listenings.get(record.key, ())):
            listening.offer(record)

    def deliver(self, listening: Listening, record: Record) -> None:
        """Call ``listening``'s callback; its failure is the caller's bug, logged."""
        self.counters["listen_versions"] += 1
        try:
            listening.callback(record)
        except Exception:
            self._log.failure("the callback listening to {key} failed", key=record.key.hex())

    # -- pushes from the holders ----------------------------------------------------

    def answer_notify(self, sender: Contact, args: Any) -> bool:
        """``notify [key, record]``: a new version from a node we subscribed to."""
        self.counters["notify_received"] += 1
        try:
            if not (isinstance(args, list) and len(args) == 2):
                raise ValueRefused("notify takes [key, record]")
            key = check_id(args[0])
        except ValueError as e:
            self.counters["notify_refused_malformed"] += 1
            raise malformed(e) from None
        listenings = [
            listening
            for listening in self._listenings.get(key, ())
            if sender.node_id in listening.sources
        ]
        if not listenings:
            self.counters["notify_refused_not_listening"] += 1
            raise RemoteError(NOT_LISTENING, "this node does not listen to that key there")
        try:
            record = from_wire(args[1])
            check_record(record, key, self.max_value_size)
        except ValueRefused as e:
            self.counters["notify_refused_malformed"] += 1
            raise malformed(e) from None
        if not self._plausible(record):
            self.counters["notify_refused_clock_skew"] += 1
            raise RemoteError(WriteTimeAhead.reason, "the write time is ahead of this node's clock")
        for listening in listenings:
            listening.offer(record)
        return True

    def _plausible(self, record: Record) -> bool:
        # A plain write time ahead of our clock (beyond the skew a holder
        # allows) would outrank every honest version to come, and blind the
        # listener to them: refused, as a holder refuses to store it.
        return not (isinstance(record, PlainValue) and record.seq > self.holder.latest_write_time())

    # -- subscribing ------------------------------------------------------------------

    def _refresh(self, listening: Listening) -> None:
        listening._timer = None
        d = defer.Deferred.fromCoroutine(self._subscribe(listening))
        d.addErrback(self._round_failed, listening)

    def _round_failed(self, failure: Failure, listening: Listening) -> None:
        self.counters["listen_rounds_failed"] += 1
        if not isinstance(failure.value, (LookupFailed, RPCError)):
            self._log.failure("listening to {key} failed", failure, key=listening.key.hex())
        self._schedule(listening, self.retry_after)
        self._fire_subscribed(listening, 0)

    def _schedule(self, listening: Listening, delay: float) -> None:
        if listening.active and listening._timer is None:
            listening._timer = self.clock.callLater(delay, self._refresh, listening)

    def _fire_subscribed(self, listening: Listening, count: int) -> None:
        if not listening.subscribed.called:
            listening.subscribed.callback(count)

    async def _subscribe(self, listening: Listening) -> None:
        key = listening.key
        contacts = await self.overlay.find_responsible(key, self.replication)
        me = self.rpc.identity.node_id
        others = [c for c in contacts if c.node_id != me]
        answers = await defer.DeferredList(
            [self.rpc.call_contact(c, "listen", [key]) for c in others], consumeErrors=True
        )
        sources: dict[bytes, Contact] = {}
        found: list[Record] = []
        ttls: list[float] = []
        for contact, (ok, answer) in zip(others, answers, strict=True):
            if not ok:
                continue
            try:
                if not (isinstance(answer, list) and len(answer) == 2):
                    raise ValueRefused("a listen answer is [ttl, answer]")
                ttls.append(check_ttl(answer[0]))
            except ValueRefused:
                self.counters["listen_bad_answers"] += 1
                continue
            sources[contact.node_id] = contact
            valid = self.valid_answer(key, answer[1])
            if valid is not None and self._plausible(valid[0]):
                found.append(valid[0])
        local = self.holder.live(key)
        if local is not None:
            found.append(local.record)
        if not listening.active:
            self._unlisten(key, list(sources.values()))
            return
        # Those no longer responsible let us go; pushes are taken only from
        # the nodes that keep us now.
        self._unlisten(key, [c for i, c in listening.sources.items() if i not in sources])
        listening.sources = sources
        best = newest(found)
        if best is not None:
            listening.offer(best)
        self.counters["listen_rounds"] += 1
        mine = len(others) < len(contacts)
        if sources or mine:
            # Never sooner than a retry: a holder granting a tiny ttl would
            # otherwise keep us subscribing in a loop.
            delay = max(self.retry_after, min([self.refresh_every] + [t / 2 for t in ttls]))
        else:
            delay = self.retry_after
        self._schedule(listening, delay)
        self._fire_subscribed(listening, len(sources) + mine)

    def _unlisten(self, key: bytes, contacts: list[Contact]) -> None:
        for contact in contacts:
            # Not awaited: a holder that does not hear it lets us expire.
            self.rpc.call_contact(contact, "unlisten", [key]).addErrback(lambda _: None)
