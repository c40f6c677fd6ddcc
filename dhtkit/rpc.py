"""Authenticated request/reply over UDP.

:class:`RPCProtocol` is a plain :class:`~twisted.internet.protocol.DatagramProtocol`:
hand it to ``reactor.listenUDP`` (or to the simulator's, which is the same
call). Every datagram goes through one path: rate limit, :func:`wire.decode`,
node-id and authenticator check, replay check; then a query goes to the
handler registered for its method and a reply to the call waiting for it.
Anything that fails a check is dropped and counted, never raised.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Coroutine
from operator import itemgetter
from typing import Any, NamedTuple

from twisted.internet import defer, udp
from twisted.internet.error import MessageLengthError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dhtkit import wire
from dhtkit.answers import IN_PROGRESS, AnswerCache
from dhtkit.contact import Address, Contact, contact_at, normalize_address
from dhtkit.hedge import RoundTrip
from dhtkit.identity import Identity
from dhtkit.ratelimit import RateLimiter
from dhtkit.routability import AMPLIFICATION, CHALLENGE_CHARS, ReturnRoutability
from dhtkit.rpcerrors import RemoteError, RPCError, RPCStopped, RPCTimeout
from dhtkit.sessions import Session, SessionTable
from dhtkit.transport import IRPC, Handler, ITrustedNetwork, Listener, Wants
from dhtkit.udpport import IUnreachableHints

__all__ = [
    "Handler",
    "Listener",
    "RPCError",
    "RPCProtocol",
    "RPCStopped",
    "RPCTimeout",
    "RemoteError",
    "Wants",
]


#: The least wait before a query is resent early (seconds): a peer whose
#: answer waits a moment for its disk (a STORE) is not sent the query twice.
EARLY_RESEND_FLOOR = 0.1


def _cancel_timer(pending: _Pending) -> None:
    timer = pending.timer
    if timer is not None and timer.active():
        timer.cancel()
    pending.timer = None


class _Pending:
    __slots__ = (
        "address",
        "args",
        "deadline",
        "deferred",
        "early_retry",
        "large_answer",
        "method",
        "peer_key",
        "resent",
        "sent_at",
        "timeout",
        "timer",
        "tries_left",
    )

    def __init__(
        self,
        deferred: defer.Deferred[tuple[Contact, Any]],
        address: Address,
        peer_key: bytes | None,
        method: str,
        args: Any,
        tries_left: int,
        timeout: float,
        large_answer: bool = False,
        early_retry: bool = False,
    ) -> None:
        self.deferred = deferred
        self.large_answer = large_answer
        # Whether an early resend is the next retry sent early rather than
        # one datagram more (see _send_query).
        self.early_retry = early_retry
        self.timer: IDelayedCall | None = None
        # When the timeout falls while an early resend is due first,
        # whether the query went out more than once, and when it first did
        # (a round trip is measured only from an answer to a query sent
        # once: Karn's rule).
        self.deadline: float | None = None
        self.resent = False
        self.sent_at = 0.0
        self.address = address
        self.peer_key = peer_key
        self.method = method
        self.args = args
        self.tries_left = tries_left
        self.timeout = timeout


_COUNTERS = (
    "early_resends",
    "received",
    "sent",
    "queries_sent",
    "queries_received",
    "replies_received",
    "errors_sent",
    "errors_received",
    "retries",
    "duplicate_queries",
    "timeouts",
    "send_errors",
    "dropped_rate_limited",
    "dropped_malformed",
    "dropped_oversized",
    "dropped_bad_node_id",
    "dropped_bad_auth",
    "dropped_replay",
    "dropped_stale",
    "dropped_self",
    "dropped_handshake_limited",
    "dropped_unexpected_reply",
    "dropped_unproven",
    "probes_sent",
    "probes_refused",
    "challenges_sent",
    "proofs_sent",
    "proofs_received",
    "dropped_bad_proof",
    "queries_padded",
    "answers_held",
    "answers_released",
    "handler_errors",
    "listener_errors",
    "unreachable_hints",
)

#: Handler failures logged in full per method and minute; the rest are counted.
_FAILURES_LOGGED_PER_MINUTE = 5


@implementer(IRPC, IUnreachableHints)
class RPCProtocol(DatagramProtocol):
    """Authenticated RPC over one UDP socket.

    :param identity: whose key signs and MACs what we send.
    :param clock: the clock for timeouts (and the time in sequence numbers).
    :param timeout: seconds to wait for a reply, per attempt.
    :param retries: how many times a call is resent before :class:`RPCTimeout`.
    :param rate: datagrams per second accepted from one source host (from
        one port, for loopback sources: each is a node of this machine).
    :param burst: how many a source may send at once above ``rate``.
    :param max_sessions: peers whose session keys and replay windows are kept.
    :param max_clock_skew: how far (seconds) the first datagram of a peer we
        hold no session for may be from our clock; older ones are refused as
        possible replays.
    :param handshake_rate: signatures checked plus session keys derived per
        second, all peers together; beyond it such datagrams are dropped
        (``dropped_handshake_limited``) while established sessions go on.
    :param receive_buffer: bytes asked of the kernel for the socket's receive
        buffer (``SO_RCVBUF``); the default buffer overflows with a hundred
        FIND_NODE replies in flight. 0 keeps the system's default.
    :param answer_ttl: seconds a reply is kept to answer a retry of the same
        query again without running its handler twice (at-most-once calls,
        which compare-and-swap writes need).
    :param max_answers: replies kept for that, at most.
    :param rng: source of transaction ids; the system's generator by default,
        since a txid answered proves an address and a Mersenne Twister's
        next outputs follow from 624 of its last (inject a seeded one in
        simulations).
    """

    _log = Logger()

    def __init__(
        self,
        identity: Identity,
        clock: IReactorTime,
        *,
        timeout: float = 2.0,
        retries: int = 1,
        max_datagram: int = wire.MAX_DATAGRAM,
        rate: float = 250.0,
        burst: float = 500.0,
        max_sessions: int = 10_000,
        max_clock_skew: float = 600.0,
        handshake_rate: float = 2000.0,
        receive_buffer: int = 1 << 20,
        answer_ttl: float = 30.0,
        max_answers: int = 4096,
        rng: random.Random | None = None,
    ) -> None:
        self.identity = identity
        self.clock = clock
        self.timeout = timeout
        self.retries = retries
        self.max_datagram = max_datagram
        self.max_sessions = max_sessions
        self.receive_buffer = receive_buffer
        self.answers = AnswerCache(answer_ttl, max_answers)
        self.limiter = RateLimiter(rate, burst)
        self._contact: tuple[object, Contact] | None = None
        self.sessions = SessionTable(
            identity,
            max_sessions=max_sessions,
            max_clock_skew=max_clock_skew,
            handshake_rate=handshake_rate,
        )
        self._rng = rng if rng is not None else random.SystemRandom()
        self._handlers: dict[str, Handler] = {"ping": _answer_ping}
        self._idempotent: set[str] = {"ping"}
        self._listeners: list[Listener] = []
        # What each listener would take from a sender not proven yet (see
        # add_listener); None: anything.
        self._wants: list[Wants | None] = []
        self._pending: dict[int, _Pending] = {}
        # (peer key, or None for a signed call, address) -> our calls waiting
        # for a reply from there: a reply will prove the address, so a query
        # from there needs no probe meanwhile.
        self._awaiting: dict[tuple[bytes | None, Address], int] = {}
        # (peer key, address) of the unproven queriers we did not probe for
        # that reason: probed after all if no reply proved them.
        self._unprobed: dict[Address, set[bytes]] = {}
        # address -> the hints to give if the network says it does not answer.
        self._watching: dict[Address, list[Callable[[], None]]] = {}
        self._seq = 0
        # Our answers' round trips, all peers together: when a query that
        # may be resent is resent early (see _send_query).
        self.round_trip = RoundTrip()
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self.routability = ReturnRoutability(self._probe, self._write_direct, self.counters)
        # The socket's own sendto (see _write_direct); None
        # until listening on a real UDP port.
        self._sendto: Callable[[bytes, Address], object] | None = None
        self._failure_log = RateLimiter(_FAILURES_LOGGED_PER_MINUTE / 60, 5, max_sources=64)

    def startProtocol(self) -> None:  # noqa: N802 (Twisted's name)
        """Enlarge the socket's receive buffer, where there is a socket."""
        # Authenticators go unchecked only on a simulated network that
        # says it carries nothing but the nodes' own datagrams.
        self.sessions.verify_authenticators = not ITrustedNetwork.providedBy(self.transport)
        sock = getattr(self.transport, "socket", None)
        if isinstance(self.transport, udp.Port) and sock is not None:
            self._sendto = sock.sendto
        if self.receive_buffer and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            except OSError as e:  # a limit of the system's, not worth failing over
                self._log.warn("cannot enlarge the receive buffer: {error}", error=str(e))

    # -- registry ------------------------------------------------------------

    def register(self, method: str, handler: Handler, *, idempotent: bool = False) -> None:
        """Answer queries for ``method`` with ``handler(sender, args)``.

        The handler returns the result, a Deferred or a coroutine of it, or
        raises :class:`RemoteError` to send a typed error. Any other exception
        is logged and answered with the error code ``internal``.

        A retried query runs the handler at most once, its first reply being
        sent again, unless the method is ``idempotent`` (a read, which may
        as well run again).
        """
        if len(method) > wire.MAX_METHOD_LENGTH:
            raise ValueError(
                "method names are at most {} characters".format(wire.MAX_METHOD_LENGTH)
            )
        self._handlers[method] = handler
        if idempotent:
            self._idempotent.add(method)
        else:
            self._idempotent.discard(method)

    def unregister(self, method: str) -> None:
        """Stop answering ``method``: its queries get ``unknown_method`` again."""
        if method == "ping":
            raise ValueError("ping is part of the protocol and cannot be unregistered")
        self._handlers.pop(method, None)
        self._idempotent.discard(method)

    def add_listener(self, listener: Listener, wants: Wants | None = None) -> None:
        """Call ``listener(contact)`` for the sender of every verified message.

        A sender is offered only once it has proven that it receives at its
        address; the answer to a querier that has not carries a challenge
        for it to send back (or, when the answer must wait, an address probe
        goes first). With ``wants``, the challenge or the probe is sent only
        if ``wants(contact)`` says the listener would use the contact (a
        routing table with no room for it spares the proof).
        """
        self._listeners.append(listener)
        self._wants.append(wants)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        index = self._listeners.index(listener)
        del self._listeners[index]
        del self._wants[index]

    def _wanted(self, sender: Contact) -> bool:
        # Whether a listener would use a sender not proven at its address.
        for wants in self._wants:
            try:
                if wants is None or wants(sender):
                    return True
            except Exception:
                self.counters["listener_errors"] += 1
                self._log_failure("listener", "listener {wants!r} failed", wants=wants)
        return False

    @property
    def contact(self) -> Contact | None:
        """This node as others reach it, once listening."""
        if self.transport is None:
            return None
        if self._contact is None or self._contact[0] is not self.transport:
            # Kept per transport: overlays ask for it on every round.
            host = self.transport.getHost()
            me = Contact.from_key(self.identity.public_key, (host.host, host.port))
            self._contact = (self.transport, me)
        return self._contact[1]

    def is_proven(self, contact: Contact) -> bool:
        """Whether ``contact``'s key has proven that it receives at its address."""
        session = self.sessions.get(contact.public_key)
        return session is not None and session.is_proven(contact.address)

    # -- calls ----------------------------------------------------------------

    def call(
        self,
        address: Address,
        method: str,
        args: Any = None,
        *,
        key: bytes | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        large_answer: bool = False,
    ) -> defer.Deferred[Any]:
        """Send a query and fire with the peer's result.

        With ``key`` (the peer's public key, as contacts carry it) the query is
        MAC'd and only that peer's reply is accepted; without it the query is
        signed, for a first exchange with an address whose node is unknown.

        With ``large_answer`` (the answer may fill a datagram), a query to a
        peer that has not had an answer from us is padded to a
        :data:`~dhtkit.routability.AMPLIFICATION`-th of the datagram size: the
        peer may then answer at once instead of probing our address first.

        Fails with :class:`RPCTimeout`, :class:`RemoteError`, or
        :class:`RPCStopped`; cancelling the Deferred abandons the call.
        """
        return self._call(address, method, args, key, timeout, retries, large_answer).addCallback(
            itemgetter(1)
        )

    def _call(
        self,
        address: Address,
        method: str,
        args: Any,
        key: bytes | None,
        timeout: float | None,
        retries: int | None,
        large_answer: bool = False,
        early_retry: bool = False,
    ) -> defer.Deferred[tuple[Contact, Any]]:
        # Fires with (the contact that answered, its result).
        if self.transport is None:
            return defer.fail(RPCStopped("the RPC protocol is not listening"))
        try:
            address = normalize_address(address)
        except ValueError as e:
            return defer.fail(e)
        txid = self._rng.getrandbits(32)
        while txid in self._pending:
            txid = self._rng.getrandbits(32)

        def cancel(_: defer.Deferred[Any]) -> None:
            pending = self._pop_pending(txid)
            if pending is not None:
                _cancel_timer(pending)

        d: defer.Deferred[tuple[Contact, Any]] = defer.Deferred(cancel)
        pending = _Pending(
            d,
            address,
            key,
            method,
            args,
            self.retries if retries is None else retries,
            self.timeout if timeout is None else timeout,
            large_answer,
            early_retry,
        )
        self._pending[txid] = pending
        pair = (key, address)
        self._awaiting[pair] = self._awaiting.get(pair, 0) + 1
        try:
            self._send_query(txid, pending)
        except wire.WireError as e:
            self._pop_pending(txid)
            return defer.fail(e)
        return d

    def _pop_pending(self, txid: int) -> _Pending | None:
        pending = self._pending.pop(txid, None)
        if pending is not None:
            pair = (pending.peer_key, pending.address)
            left = self._awaiting[pair] - 1
            if left:
                self._awaiting[pair] = left
            else:
                del self._awaiting[pair]
                if pending.address in self._unprobed:
                    self._probe_unproven(pending.address)
        return pending

    def _probe_unproven(self, address: Address) -> None:
        # Our calls there ended without proving the queriers (cancelled, or
        # timed out): probe them now, unless a call there still waits.
        keys = self._unprobed[address]
        for peer_key in list(keys):
            if (peer_key, address) in self._awaiting or (None, address) in self._awaiting:
                continue
            keys.discard(peer_key)
            session = self.sessions.get(peer_key)
            if session is None or not session.is_proven(address):
                contact = Contact.from_key(peer_key, address)
                if self._wanted(contact):
                    self.routability.check(peer_key, address)
        if not keys:
            del self._unprobed[address]

    def call_contact(
        self, contact: Contact, method: str, args: Any = None, **kw: Any
    ) -> defer.Deferred[Any]:
        """:meth:`call` a known contact (MAC'd, and only it may answer)."""
        return self.call(contact.address, method, args, key=contact.public_key, **kw)

    def ping(self, address: Address, key: bytes | None = None) -> defer.Deferred[Contact]:
        """Ping an address; fire with the (verified) contact that answered."""
        return self._call(address, "ping", None, key, None, None).addCallback(itemgetter(0))

    def _probe(self, peer_key: bytes, address: Address) -> defer.Deferred[Any]:
        # The return-routability probe: a small ping, resent like any call
        # (a lost probe would cost the asker its answer). Its early resend
        # is its retry: the address has not proven that it receives, and
        # gets two probes per query at most (dhtkit.routability).
        return self._call(address, "ping", None, peer_key, None, None, early_retry=True)

    def _send_query(self, txid: int, pending: _Pending) -> None:
        self._write_query(txid, pending)
        now = pending.sent_at = self.clock.seconds()
        wait = pending.timeout
        if pending.tries_left > 0 and not pending.resent and self.round_trip.smoothed is not None:
            # Resent early if no answer comes in the time answers take
            # (RFC 6298's retransmission timer over our round trips, all
            # peers together): most likely a datagram was lost, and waiting
            # out the timeout would cost a lookup or a read that long. The
            # timeout and the retries left stay as they were; or, for an
            # early_retry call, the resend is the next retry, and the call
            # waits until that retry's timeout would have ended.
            early = max(EARLY_RESEND_FLOOR, self.round_trip.patience(wait))
            if early < wait:
                pending.deadline = now + (2 * wait if pending.early_retry else wait)
                wait = early
        pending.timer = self.clock.callLater(wait, self._timed_out, txid)

    def _write_query(self, txid: int, pending: _Pending) -> None:
        seq = self._next_seq()
        if pending.peer_key is None:
            body = wire.encode_body(
                wire.QUERY, txid, pending.method, pending.args, self.identity, seq
            )
            data = wire.seal(body, wire.sign(body, self.identity), self.max_datagram)
        else:
            data = wire.encode(
                wire.QUERY,
                txid,
                pending.method,
                pending.args,
                self.identity,
                seq,
                self.sessions.key_for(pending.peer_key),
                self.max_datagram,
            )
        if pending.large_answer:
            session = None if pending.peer_key is None else self.sessions.get(pending.peer_key)
            if session is None or not session.answered:
                data = wire.pad(data, -(-self.max_datagram // AMPLIFICATION))
                self.counters["queries_padded"] += 1
        self._write_direct(data, pending.address)
        self.counters["queries_sent"] += 1

    def _timed_out(self, txid: int) -> None:
        pending = self._pending.get(txid)
        if pending is None:
            return
        pending.resent = True
        deadline, pending.deadline = pending.deadline, None
        if deadline is not None:  # the early resend
            self.counters["early_resends"] += 1
            if pending.early_retry:
                pending.tries_left -= 1
            self._write_query(txid, pending)
            wait = max(0.0, deadline - self.clock.seconds())
            pending.timer = self.clock.callLater(wait, self._timed_out, txid)
            return
        if pending.tries_left > 0:
            pending.tries_left -= 1
            self.counters["retries"] += 1
            self._send_query(txid, pending)
            return
        self._pop_pending(txid)
        self.counters["timeouts"] += 1
        pending.deferred.errback(
            RPCTimeout("{} to {}:{} timed out".format(pending.method, *pending.address))
        )

    # -- receiving ------------------------------------------------------------

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802 (Twisted's name)
        counters = self.counters
        counters["received"] += 1
        host = addr[0]
        port = addr[1]
        now = self.clock.seconds()
        # One budget per host: an attacker's ports are free. Loopback is
        # the exception: the nodes of one machine differ only by port.
        if not self.limiter.allow((host, port) if host.startswith(_LOOPBACK) else host, now):
            counters["dropped_rate_limited"] += 1
            return
        try:
            message = wire.decode(data, self.max_datagram)
            session = self.sessions.admit(message, now)
        except wire.WireError as e:
            counters["dropped_" + e.reason] += 1
            return
        # The peer's datagrams come from one address, as a rule: one contact
        # serves them all.
        sender = session.contact
        if sender is None or sender.address[1] != port or sender.address[0] != host:
            sender = session.contact = contact_at(session.peer_key, (host, port))
        if message.kind != wire.QUERY:
            if message.kind == wire.PROOF:
                self._handle_proof(message, sender, session, now)
            else:
                self._handle_reply(message, sender, session)
            return
        counters["queries_received"] += 1
        # The routing state hears of a sender only at an address that proved
        # it receives there; anyone can put any source address on a query.
        challenge = ""
        if session.is_proven(sender.address):
            if self._listeners:
                self._offer(sender)
        elif not self._awaits(sender):
            if self._wanted(sender):
                # The answer asks the querier to prove its address.
                challenge = self.routability.challenge(sender.public_key, sender.address, now)
        elif len(self._unprobed) < len(self._awaiting):
            self._unprobed.setdefault(sender.address, set()).add(sender.public_key)
        self._handle_query(message, sender, session.key, now, len(data), challenge)

    def _awaits(self, sender: Contact) -> bool:
        # Whether a call of ours waits for a reply that would prove the sender.
        awaiting = self._awaiting
        return (sender.public_key, sender.address) in awaiting or (
            None,
            sender.address,
        ) in awaiting

    def _offer(self, sender: Contact) -> None:
        for listener in self._listeners:
            try:
                listener(sender)
            except Exception:
                self.counters["listener_errors"] += 1
                self._log_failure("listener", "listener {listener!r} failed", listener=listener)

    def _handle_reply(self, message: wire.Message, sender: Contact, session: Session) -> None:
        pending = self._pending.get(message.txid)
        # With the peer's key known, its MAC proves the reply whatever address
        # it came from (multi-homed hosts); without it, the address must match.
        if pending is None or (
            pending.peer_key != sender.public_key
            if pending.peer_key is not None
            else pending.address != sender.address
        ):
            self.counters["dropped_unexpected_reply"] += 1
            return
        # Only a receiver at the address we wrote to knew the transaction id.
        self._proven(session, pending.address)
        self._pop_pending(message.txid)
        _cancel_timer(pending)
        if not pending.resent:
            self.round_trip.observe(self.clock.seconds() - pending.sent_at)
        if session.is_proven(sender.address):
            self._offer(sender)
        if message.method:
            self._send_proof(message, pending.address, session)
        if message.kind == wire.RESPONSE:
            self.counters["replies_received"] += 1
            pending.deferred.callback((sender, message.payload))
            return
        self.counters["errors_received"] += 1
        payload = message.payload
        if type(payload) is list and len(payload) == 2 and all(type(p) is str for p in payload):
            pending.deferred.errback(RemoteError(payload[0][:64], payload[1][:400]))
        else:
            pending.deferred.errback(RemoteError("malformed_error", repr(payload)[:200]))

    def _send_proof(self, reply: wire.Message, address: Address, session: Session) -> None:
        # The peer's answer carries a challenge: sent back to the address we
        # asked, it proves to the peer that we receive at ours.
        if len(reply.method) != CHALLENGE_CHARS:
            return
        data = wire.encode(
            wire.PROOF,
            reply.txid,
            reply.method,
            None,
            self.identity,
            self._next_seq(),
            session.key,
            self.max_datagram,
        )
        self._write_direct(data, address)
        self.counters["proofs_sent"] += 1

    def _handle_proof(
        self, message: wire.Message, sender: Contact, session: Session, now: float
    ) -> None:
        # A challenge of ours come back: the sender receives at its address.
        address = sender.address
        if session.is_proven(address):
            return  # two answers carried challenges: proven by the first
        if not self.routability.is_answered(sender.public_key, address, message.method, now):
            self.counters["dropped_bad_proof"] += 1
            return
        self.counters["proofs_received"] += 1
        self._proven(session, address)
        self._offer(sender)

    def _proven(self, session: Session, address: Address) -> None:
        # The peer receives at ``address``: remembered, and what a probe
        # held for it sent.
        session.prove(address)
        self.routability.proven(session.peer_key, address)

    def _handle_query(
        self,
        message: wire.Message,
        sender: Contact,
        key: bytes,
        now: float,
        size: int,
        challenge: str = "",
    ) -> None:
        # A retry of a query we saw (its reply was lost, or is late) gets the
        # same reply again instead of a second run of the handler. A read
        # (an idempotent method) is simply run again: cheaper than keeping
        # every reply, which a busy node would hold by the thousand.
        query = _new_query(_Query, (message, sender, key, size, challenge))
        method = message.method
        if method not in self._idempotent:
            answer_key = (message.sender_key, message.txid)
            known = self.answers.seen(answer_key, now)
            if known is not None:
                self.counters["duplicate_queries"] += 1
                if known is not IN_PROGRESS:
                    self._send_again(query, known)
                return
            self.answers.claim(answer_key, now)
        handler = self._handlers.get(method)
        if handler is None:
            self._reply_error(query, RemoteError("unknown_method", method[:64]))
            return
        try:
            result = handler(sender, message.payload)
        except RemoteError as e:
            self._reply_error(query, e)
            return
        except Exception:
            self._handler_failed(query, None)  # the failure being handled
            return
        if type(result) in _PLAIN_RESULTS:  # most handlers answer at once
            self._reply(query, result, now)
            return
        if isinstance(result, Coroutine):
            result = defer.Deferred.fromCoroutine(result)
        if isinstance(result, defer.Deferred):
            result.addCallbacks(
                lambda value: self._reply(query, value),
                lambda failure: self._reply_failure(query, failure),
            )
        else:
            self._reply(query, result, now)

    def _reply(self, query: _Query, value: Any, now: float | None = None) -> None:
        message = query.message
        try:
            data = self._answer(wire.RESPONSE, query, value, now)
        except wire.WireError as e:
            self._log.error(
                "reply to {method} cannot be sent: {error}",
                method=message.method,
                error=str(e),
            )
            self._reply_error(query, RemoteError("internal", "reply too large"))
            return
        self._send_answer(query, data)

    def _reply_failure(self, query: _Query, failure: Failure) -> None:
        if isinstance(failure.value, RemoteError):
            self._reply_error(query, failure.value)
            return
        self._handler_failed(query, failure)

    def _handler_failed(self, query: _Query, failure: Failure | None) -> None:
        # A bug of ours that a peer's input reached: logged in full, but only
        # a few times a minute, so that a peer cannot flood the log with it.
        self.counters["handler_errors"] += 1
        self._log_failure(
            query.message.method,
            "handler for {method} failed",
            failure,
            method=query.message.method,
        )
        self._reply_error(query, RemoteError("internal", "internal error"))

    def _log_failure(
        self, topic: str, format: str, failure: Failure | None = None, **fields: Any
    ) -> None:
        if self._failure_log.allow(topic, self.clock.seconds()):
            self._log.failure(format, failure, **fields)

    def _reply_error(self, query: _Query, error: RemoteError) -> None:
        data = self._answer(wire.ERROR, query, [error.code[:64], error.message[:400]])
        self.counters["errors_sent"] += 1
        self._send_answer(query, data)

    def _answer(self, kind: int, query: _Query, value: Any, now: float | None = None) -> bytes:
        # The datagram answering ``query``: with its challenge if it has one
        # and the answer can go at once. Otherwise (a full datagram, or an
        # answer held until its address is proven) a probe proves it.
        txid = query.message.txid
        seq = self._next_seq(now)
        challenge = query.challenge
        if challenge:
            try:
                data = wire.encode(
                    kind, txid, challenge, value, self.identity, seq, query.key, self.max_datagram
                )
            except wire.MessageTooLarge:
                pass
            else:
                if len(data) <= AMPLIFICATION * query.size:
                    self.counters["challenges_sent"] += 1
                    return data
            self.routability.check(query.sender.public_key, query.sender.address)
        return wire.encode(kind, txid, "", value, self.identity, seq, query.key, self.max_datagram)

    def _send_answer(self, query: _Query, data: bytes) -> None:
        if query.message.method not in self._idempotent:  # else nothing was claimed
            self.answers.fill((query.message.sender_key, query.message.txid), data)
        self._send(query, data)

    def _send_again(self, query: _Query, kept: bytes) -> None:
        # A kept reply is sealed again with a new sequence number: by the
        # time the retry comes, the querier may have had more datagrams from
        # us than its replay window holds, and would refuse the first copy's
        # number as too old. (We wrote it and it fitted once, so it fits; a
        # payload our own reader refuses, such as a bignum a handler chose to
        # answer, goes out as it first did.)
        try:
            reply = wire.decode(kept)
        except wire.WireError:
            data = kept
        else:
            # With the retry's own challenge: the first answer's may be lost
            # with it.
            data = self._answer(reply.kind, query, reply.payload)
        self._send(query, data)

    def _send(self, query: _Query, data: bytes) -> None:
        sender = query.sender
        session = self.sessions.get(sender.public_key)
        if (
            self.routability.send(session, sender.public_key, sender.address, data, query.size)
            and session is not None
        ):
            # Its reply proves our address to the peer: our next large
            # queries there need no padding.
            session.answered = True

    # -- plumbing ---------------------------------------------------------------

    def _next_seq(self, now: float | None = None) -> int:
        # Microseconds of our clock (``now``, if the caller just read it), and
        # strictly increasing: unique for the replay windows, and close to
        # real time for a peer that restarted.
        us = int((self.clock.seconds() if now is None else now) * 1_000_000)
        self._seq = us if us > self._seq else self._seq + 1
        return self._seq

    def _write_direct(self, data: bytes, address: Address) -> None:
        # A datagram goes where one came from (an answer, or a query to an
        # address a datagram or a contact gave) or where call() normalized
        # the address to: an IP literal, which the transport's three checks
        # of the address per write would only confirm, at a quarter of the
        # cost of answering a ping. So it goes straight to the socket; on
        # any error (another family's address, an ICMP error queued for the
        # socket, which a hinting port then reads at once, as its own write
        # would) the transport's write sends it again and tells what went
        # wrong.
        sendto = self._sendto
        if sendto is not None:
            try:
                sendto(data, address)
            except OSError as e:
                write_failed = getattr(self.transport, "write_failed", None)
                if write_failed is not None:
                    write_failed(e)
            else:
                self.counters["sent"] += 1
                return
        self._write(data, address)

    def _write(self, data: bytes, address: Address) -> None:
        if self.transport is None:  # stopped while a handler was still working
            self.counters["send_errors"] += 1
            return
        try:
            self.transport.write(data, address)
        except (OSError, MessageLengthError) as e:
            self.counters["send_errors"] += 1
            self._log.warn(
                "cannot send to {host}:{port}: {error}",
                host=address[0],
                port=address[1],
                error=str(e),
            )
            return
        self.counters["sent"] += 1

    def stopProtocol(self) -> None:  # noqa: N802 (Twisted's name)
        """Fail every waiting call with :class:`RPCStopped`."""
        self._sendto = None
        pending, self._pending = self._pending, {}
        self._awaiting.clear()
        self._unprobed.clear()
        self._watching.clear()
        for call in pending.values():
            _cancel_timer(call)
            call.deferred.errback(RPCStopped("stopped listening"))

    # -- hints -------------------------------------------------------------------

    def watch_unreachable(self, address: Address, hint: Callable[[], None]) -> Callable[[], None]:
        """Call ``hint()`` if the network says that ``address`` does not
        answer, until the function returned is called.

        The network says so where the socket hears ICMP errors (see
        :mod:`dhtkit.udpport`): a hint, which anyone who knows both
        addresses can forge, so what a watcher does on it must cost no more
        than not waiting (asking another node), never failing or evicting.
        """
        hints = self._watching.setdefault(address, [])
        hints.append(hint)

        def unwatch() -> None:
            watched = self._watching.get(address)
            if watched is not None and hint in watched:
                watched.remove(hint)
                if not watched:
                    del self._watching[address]

        return unwatch

    def unreachable(self, address: Address) -> None:
        """A datagram we sent to ``address`` came back unreachable: tell its watchers."""
        self.counters["unreachable_hints"] += 1
        for hint in self._watching.pop(address, ()):
            try:
                hint()
            except Exception:
                self._log.failure("a watcher of an unreachable address failed")

    def stats(self) -> dict[str, int]:
        """A copy of the counters, plus sessions and calls in flight."""
        out = dict(self.counters)
        out["dropped"] = sum(v for k, v in self.counters.items() if k.startswith("dropped_"))
        out["sessions"] = len(self.sessions)
        out["pending_calls"] = len(self._pending)
        return out


class _Query(NamedTuple):
    """A query being answered: what the answer needs to find its way back.

    A named tuple, built in one step (:data:`_new_query`): one per query.
    """

    message: wire.Message
    sender: Contact
    key: bytes
    size: int
    challenge: str  # for the asker to send back (see dhtkit.routability), or ""


# _Query(...) without the Python-level __new__ a named tuple has.
_new_query = tuple.__new__


#: Results that are sent as they are (no Deferred, no coroutine).
_PLAIN_RESULTS = frozenset((bytes, str, int, float, bool, type(None), list, dict))

#: Loopback sources, which the rate limit tells apart by port.
_LOOPBACK = ("127.", "::1", "::ffff:127.")


def _answer_ping(sender: Contact, args: Any) -> bytes:
    # The address the ping came from: how the asker is seen from outside.
    return wire.encode_address(sender.address)
