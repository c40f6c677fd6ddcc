"""The listeners a holder keeps, and the pushes it sends them.

A node that wants to hear of new versions of a key (see :mod:`dhtkit.listen`)
asks each node responsible for the key to keep it as a listener, with the
``listen`` RPC (``[key]``, answered ``[ttl, the holder's copy or None]``). A
registration lives ``ttl`` seconds unless the listener asks again; it is
keyed by the key and the listener's node id (which the RPC layer has
checked against the datagram's authenticator), so a second ``listen`` of
the same node refreshes the first one, and ``unlisten`` (``[key]``) ends it.

Whenever the holder takes a new version of a key (a higher seq, a later
plain write, or anything else its store accepts as a new version), it
pushes the record to every listener of the key with ``notify``
(``[key, record]``), one push at a time per listener, in the order the
versions came. Registrations are bounded: in all, per key, and per source
network of the listener (as storage quotas are: node ids are free to make,
addresses in many networks are not); beyond a bound ``listen`` is refused
with the error code ``listen_full``.

A push is a datagram sent to the address the registration came from, which
a ``listen`` can forge; so it goes only to an address that proved it
receives for that node (see :mod:`dhtkit.routability`): otherwise a ping
goes first and the pushes wait for its reply. A listener that does not
answer a push (or its ping), or answers that it no longer listens, is
dropped; it subscribes again at its next refresh if it still listens.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhtkit.contact import Contact
from dhtkit.keyspace import check_id
from dhtkit.rpcerrors import RemoteError, RPCError, malformed
from dhtkit.storage.networks import source_network
from dhtkit.transport import IRPC
from dhtkit.values import Record, to_wire
from dhtkit.wire import WireError

#: Seconds a registration lives unless the listener refreshes it.
LISTEN_TTL = 600.0
#: Registrations a holder keeps, in all.
MAX_LISTENERS = 10_000
#: Registrations from one source network (see :mod:`dhtkit.storage.networks`):
#: a quarter of a key's, so that no one network can take all of a key's places.
MAX_LISTENERS_PER_SOURCE = 64
#: Registrations for one key: the pushes one new version costs.
MAX_LISTENERS_PER_KEY = 256
#: Versions waiting to be pushed to one listener; beyond, the oldest is dropped.
MAX_QUEUED_PUSHES = 8

#: The error code of a ``listen`` beyond a bound.
LISTEN_FULL = "listen_full"
#: The error code a listener answers a push for a key it does not listen to.
NOT_LISTENING = "not_listening"

AnswerSource = Callable[[bytes], Any]


@attrs.define(eq=False)
class Registration:
    """One listener of one key, and the pushes on their way to it."""

    key: bytes
    contact: Contact
    source: str
    expire_at: float
    queue: deque[Record] = attrs.field(factory=deque)
    sending: bool = False
    dropped: bool = False


class ListenerTable:
    """The listeners this node keeps as a holder, and their pushes.

    It registers ``listen`` and ``unlisten`` on ``rpc``. :meth:`new_version`
    is what the holder calls for each new version it takes.

    :param answer: the holder's answer for a key (``[record, ttl]`` or None),
        sent back with each registration so that a listener starts from the
        version held here.
    :param counters: where ``listen_*`` and ``push_*`` counts go.
    """

    _log = Logger()

    def __init__(
        self,
        rpc: IRPC,
        clock: IReactorTime,
        answer: AnswerSource,
        counters: Counter[str],
        *,
        ttl: float = LISTEN_TTL,
        max_listeners: int = MAX_LISTENERS,
        max_per_source: int = MAX_LISTENERS_PER_SOURCE,
        max_per_key: int = MAX_LISTENERS_PER_KEY,
        max_queued: int = MAX_QUEUED_PUSHES,
    ) -> None:
        self.rpc = rpc
        self.clock = clock
        self.answer = answer
        self.counters = counters
        self.ttl = ttl
        self.max_listeners = max_listeners
        self.max_per_source = max_per_source
        self.max_per_key = max_per_key
        self.max_queued = max_queued
        # Every registration is granted the same ttl, so refresh order is
        # expiry order: the oldest refresh is first, and expired ones are
        # dropped from the front in O(1) each.
        self._registrations: OrderedDict[tuple[bytes, bytes], Registration] = OrderedDict()
        self._by_key: dict[bytes, dict[bytes, Registration]] = {}
        self._by_source: dict[str, int] = {}

    def start(self) -> None:
        """Answer ``listen`` and ``unlisten`` queries."""
        self.rpc.register("listen", self.answer_listen, idempotent=True)
        self.rpc.register("unlisten", self.answer_unlisten, idempotent=True)

    def stop(self) -> None:
        """Stop answering, and forget every listener (the node stops)."""
        self.rpc.unregister("listen")
        self.rpc.unregister("unlisten")
        self.clear()

    def __len__(self) -> int:
        self._expire()
        return len(self._registrations)

    def watches(self, key: bytes) -> bool:
        """Whether anyone listens to ``key`` here (before any expiry)."""
        return key in self._by_key

    def listeners(self, key: bytes) -> list[Contact]:
        """The live listeners of ``key``."""
        self._expire()
        return [r.contact for r in self._by_key.get(key, {}).values()]

    # -- the RPCs ----------------------------------------------------------------

    def answer_listen(self, sender: Contact, args: Any) -> list[Any]:
        """``listen [key]``: keep ``sender`` as a listener of ``key``; ``[ttl, answer]``."""
        self.counters["listen_received"] += 1
        key = self._key_of(args, "listen")
        self._expire()
        now = self.clock.seconds()
        ident = (key, sender.node_id)
        registration = self._registrations.get(ident)
        if registration is None:
            source = source_network(*sender.address)
            self._check_room(key, source)
            registration = Registration(key, sender, source, now + self.ttl)
            self._by_key.setdefault(key, {})[sender.node_id] = registration
            self._by_source[source] = self._by_source.get(source, 0) + 1
            self._registrations[ident] = registration
            self.counters["listen_registered"] += 1
        else:
            # A refresh; the address may have changed (pushes follow it,
            # once it is proven). It stays charged to its first source.
            registration.contact = sender
            registration.expire_at = now + self.ttl
            self._registrations.move_to_end(ident)
            self.counters["listen_refreshed"] += 1
        return [self.ttl, self.answer(key)]

    def answer_unlisten(self, sender: Contact, args: Any) -> bool:
        """``unlisten [key]``: forget ``sender`` as a listener of ``key``."""
        key = self._key_of(args, "unlisten")
        registration = self._registrations.get((key, sender.node_id))
        if registration is None:
            return False
        self._drop(registration)
        self.counters["listen_cancelled"] += 1
        return True

    def _key_of(self, args: Any, method: str) -> bytes:
        try:
            if not (isinstance(args, list) and len(args) == 1):
                raise ValueError("{} takes [key]".format(method))
            return check_id(args[0])
        except ValueError as e:
            self.counters["listen_refused_malformed"] += 1
            raise malformed(e) from None

    def _check_room(self, key: bytes, source: str) -> None:
        if len(self._registrations) >= self.max_listeners:
            why = "this node keeps {} listeners, its most".format(self.max_listeners)
        elif self._by_source.get(source, 0) >= self.max_per_source:
            why = "{} listeners from your network, the most it may have".format(self.max_per_source)
        elif len(self._by_key.get(key, ())) >= self.max_per_key:
            why = "{} listeners of this key, the most it may have".format(self.max_per_key)
        else:
            return
        self.counters["listen_refused_full"] += 1
        raise RemoteError(LISTEN_FULL, why)

    # -- expiry ---------------------------------------------------------------------

    def _expire(self) -> None:
        now = self.clock.seconds()
        while self._registrations:
            registration = next(iter(self._registrations.values()))
            if registration.expire_at > now:
                break
            self._drop(registration)
            self.counters["listen_expired"] += 1

    def _drop(self, registration: Registration) -> None:
        if registration.dropped:
            return
        registration.dropped = True
        registration.queue.clear()
        key, node_id = registration.key, registration.contact.node_id
        self._registrations.pop((key, node_id), None)
        of_key = self._by_key.get(key)
        if of_key is not None:
            of_key.pop(node_id, None)
            if not of_key:
                del self._by_key[key]
        left = self._by_source.get(registration.source, 0) - 1
        if left > 0:
            self._by_source[registration.source] = left
        else:
            self._by_source.pop(registration.source, None)

    def clear(self) -> None:
        """Forget every listener (the node stops)."""
        for registration in list(self._registrations.values()):
            self._drop(registration)

    # -- pushing --------------------------------------------------------------------

    def new_version(self, record: Record) -> None:
        """Push ``record``, a new version the holder took, to the listeners of its key."""
        if record.key not in self._by_key:
            return
        self._expire()
        for registration in list(self._by_key.get(record.key, {}).values()):
            if len(registration.queue) >= self.max_queued:
                registration.queue.popleft()
                self.counters["push_dropped_queue_full"] += 1
            registration.queue.append(record)
            if not registration.sending:
                self._send_next(registration)

    def _send_next(self, registration: Registration) -> None:
        if registration.dropped or not registration.queue:
            registration.sending = False
            return
        registration.sending = True
        record = registration.queue.popleft()
        contact = registration.contact
        if self.rpc.is_proven(contact):
            d = self._push(contact, record)
        else:
            # The address came with a query and may be forged: a small
            # ping first, whose reply proves it, then the push.
            self.counters["push_probes"] += 1
            d = self.rpc.ping(contact.address, contact.public_key).addCallback(
                lambda _: self._push(contact, record)
            )
        d.addCallback(self._pushed, registration)
        d.addErrback(self._push_failed, registration)

    def _push(self, contact: Contact, record: Record) -> defer.Deferred[Any]:
        self.counters["push_sent"] += 1
        return self.rpc.call_contact(contact, "notify", [record.key, to_wire(record)])

    def _pushed(self, _: object, registration: Registration) -> None:
        self.counters["push_delivered"] += 1
        self._send_next(registration)  # its own failures are its own errback's

    def _push_failed(self, failure: Failure, registration: Registration) -> None:
        error = failure.value
        if isinstance(error, RemoteError) and error.code == NOT_LISTENING:
            self.counters["push_not_listening"] += 1
        elif isinstance(error, (RPCError, WireError)):
            self.counters["push_failed"] += 1
        else:
            self._log.failure("pushing {key} failed", failure, key=registration.key.hex())
        # It subscribes again at its next refresh if it still listens.
        registration.sending = False
        self._drop(registration)
