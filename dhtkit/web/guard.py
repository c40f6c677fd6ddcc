"""What keeps slow or greedy HTTP clients from taking the API's connections.

A slowloris client opens many connections and sends a byte now and then,
so that none ever completes a request and each keeps a file descriptor.
Three limits stop it, all counted for ``/metrics``:

- :class:`DeadlineChannel`: a connection must deliver a complete request
  (head and body) within ``request_timeout`` seconds of opening, or of its
  previous answer (so idle keep-alive connections end too); else it is
  aborted. twisted.web's own idle timeout restarts at every byte, which is
  what the attack relies on.
- :class:`GuardedFactory`: at most ``max_per_source`` connections per client
  address (an IPv6 /64 counts as one address) and ``max_connections`` in all,
  kept below the process's file descriptor limit. When a cap is reached, the
  oldest connection (of that source, or of all) that has waited
  :data:`EVICT_AFTER` seconds or more for its request to complete is closed
  to make room, so that slow connections cannot
  keep a quick client out; a connection whose request is being answered is
  never closed for this. Only when no connection is waiting is the newcomer
  closed as soon as it is accepted.
- a ``Content-Length`` too long to be a size is answered 413 at once, before
  anything tries to make a number of it.
"""

from __future__ import annotations

import ipaddress
import json
import resource
from typing import Any

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web import http

__all__ = [
    "EVICT_AFTER",
    "FD_RESERVE",
    "MAX_LENGTH_DIGITS",
    "ConnectionStats",
    "DeadlineChannel",
    "GuardedFactory",
    "HttpLimits",
    "default_max_connections",
    "fd_limit",
    "source_of",
]

#: File descriptors left to the rest of the daemon (the UDP socket, the
#: SQLite store and its journal, logs, the reactor's own) below the limit.
FD_RESERVE = 64

#: Seconds a connection waits before it may be closed to make room: a burst
#: of new connections must not push out a client whose request is on its way.
EVICT_AFTER = 1.0

#: The most digits a ``Content-Length`` may have (10**18 bytes is already
#: beyond any body); a longer one is refused before it is read as a number.
MAX_LENGTH_DIGITS = 18


def fd_limit() -> int:
    """The process's soft limit on open file descriptors (``RLIMIT_NOFILE``)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def default_max_connections(limit: int | None = None) -> int:
    """The default global connection cap: the fd limit less :data:`FD_RESERVE`, at most 1024."""
    if limit is None:
        limit = fd_limit()
    return max(1, min(1024, limit - FD_RESERVE))


@attrs.frozen
class HttpLimits:
    """The HTTP API's connection limits.

    :ivar request_timeout: seconds a connection has to deliver a complete
        request, from its opening or from its previous answer.
    :ivar max_per_source: connections open at once from one client address.
    :ivar max_connections: connections open at once in all.
    :ivar max_streams_per_source: event streams (``/v1/listen``) open at
        once from one client address; each holds one of its connections.
    :ivar max_streams: event streams open at once in all.
    """

    request_timeout: float = 10.0
    max_per_source: int = 32
    max_connections: int = attrs.field(factory=default_max_connections)
    max_streams_per_source: int = 8
    max_streams: int = 256


@attrs.define
class ConnectionStats:
    """Counters of the connections the API refused or closed, and those open."""

    connections: int = 0
    refused_per_source: int = 0
    refused_total_cap: int = 0
    evicted_waiting: int = 0
    request_timeouts: int = 0
    refused_length: int = 0
    streams_opened: int = 0
    streams_closed: int = 0
    streams_closed_slow: int = 0
    streams_refused_per_source: int = 0
    streams_refused_total_cap: int = 0

    def stats(self) -> dict[str, int]:
        """The counters by name (``connections`` is a level, the rest counts)."""
        return attrs.asdict(self)


def source_of(address: IAddress) -> str:
    """The key a client's connections are counted under: its IP, or its IPv6 /64."""
    if isinstance(address, IPv6Address):
        host = address.host.split("%", 1)[0]
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:
            return host
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    if isinstance(address, IPv4Address):
        return address.host
    return "local"  # a UNIX socket: every client is on this machine


def _too_large_answer() -> bytes:
    body = json.dumps({"error": "the Content-Length is too large to be a request body"})
    data = body.encode("utf-8") + b"\n"
    head = (
        b"HTTP/1.1 413 Request Entity Too Large\r\n"
        b"Content-Type: application/json\r\n"
        b"Connection: close\r\n"
        b"Content-Length: " + str(len(data)).encode("ascii") + b"\r\n\r\n"
    )
    return head + data


class DeadlineChannel(http.HTTPChannel):
    """An HTTP channel that must receive each whole request within a deadline.

    The site sets :attr:`request_timeout`, :attr:`counters`, :attr:`clock`
    and ``callLater`` (its clock's) on each channel it builds.
    """

    _log = Logger()
    request_timeout: float | None = None
    counters: ConnectionStats | None = None
    clock: IReactorTime | None = None
    _deadline: IDelayedCall | None = None
    #: When the connection started waiting for its current request.
    waiting_since: float | None = None

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        """Start the deadline of the first request."""
        super().connectionMade()  # type: ignore[no-untyped-call]
        self._start_deadline()

    def _start_deadline(self) -> None:
        self._stop_deadline()
        if self.request_timeout is not None and self.transport is not None:
            self.waiting_since = self.clock.seconds() if self.clock is not None else None
            self._deadline = self.callLater(  # type: ignore[no-untyped-call]
                self.request_timeout, self._expired
            )

    def waiting_longer_than(self, seconds: float) -> bool:
        """Whether the connection has waited ``seconds`` and more for a complete request."""
        if self._deadline is None or not self._deadline.active():
            return False
        if self.clock is None or self.waiting_since is None:
            return True
        return self.clock.seconds() - self.waiting_since >= seconds

    def _stop_deadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _expired(self) -> None:
        self._deadline = None
        if self.counters is not None:
            self.counters.request_timeouts += 1
        self._log.debug(
            "closing {peer}: no complete request within {timeout} s",
            peer=str(self.transport.getPeer()) if self.transport else "?",
            timeout=self.request_timeout,
        )
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def headerReceived(self, line: bytes) -> bool:  # noqa: N802 (Twisted's name)
        """Refuse a ``Content-Length`` too long to be read as a number (413)."""
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            digits = value.strip(b" \t")
            if len(digits) > MAX_LENGTH_DIGITS and digits.isdigit():
                if self.counters is not None:
                    self.counters.refused_length += 1
                self._stop_deadline()
                transport: Any = self.transport
                transport.write(_too_large_answer())
                transport.loseConnection()
                # Nothing more is read from this connection.
                self.length = None
                self.dataReceived = self.lineReceived = lambda *args: None  # type: ignore[method-assign]
                return False
        ok: bool = super().headerReceived(line)  # type: ignore[no-untyped-call]
        return ok

    def allContentReceived(self) -> None:  # noqa: N802 (Twisted's name)
        """The request is complete: its deadline is met."""
        self._stop_deadline()
        super().allContentReceived()  # type: ignore[no-untyped-call]

    def requestDone(self, request: Any) -> None:  # noqa: N802 (Twisted's name)
        """The answer is sent: the next request (if any) has its own deadline."""
        super().requestDone(request)  # type: ignore[no-untyped-call]
        if not self._handlingRequest and self.transport is not None and not self._aborted():
            self._start_deadline()

    def _aborted(self) -> bool:
        return bool(getattr(self.transport, "disconnecting", False)) or not self.persistent

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 (Twisted's name)
        """Forget the deadline."""
        self._stop_deadline()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


class GuardedFactory(WrappingFactory):
    """Wraps a site: at most so many connections per source and in all.

    A connection beyond a cap is closed as soon as it is accepted (the
    wrapped factory never sees it) and counted in ``counters``.
    """

    _log = Logger()

    def __init__(self, wrapped: Any, limits: HttpLimits, counters: ConnectionStats) -> None:
        super().__init__(wrapped)  # type: ignore[no-untyped-call]
        self.limits = limits
        self.counters = counters
        self.by_source: dict[str, int] = {}
        self._source_of: dict[ProtocolWrapper, str] = {}

    def buildProtocol(self, addr: IAddress | None) -> ProtocolWrapper | None:  # type: ignore[override]  # noqa: N802 (Twisted's name)
        """The wrapped site's protocol, or None (refused) beyond a cap."""
        source = source_of(addr) if addr is not None else "local"
        if len(self._source_of) >= self.limits.max_connections and not self._evict(None):
            self.counters.refused_total_cap += 1
            self._log.debug("refusing {peer}: the API holds its most connections", peer=str(addr))
            return None
        if self.by_source.get(source, 0) >= self.limits.max_per_source and not self._evict(source):
            self.counters.refused_per_source += 1
            self._log.debug("refusing {peer}: too many connections from it", peer=str(addr))
            return None
        protocol: ProtocolWrapper | None = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        if protocol is not None:
            self._source_of[protocol] = source
            self.by_source[source] = self.by_source.get(source, 0) + 1
            self.counters.connections = len(self._source_of)
        return protocol

    def _evict(self, source: str | None) -> bool:
        # The oldest connection (of ``source``, or of all) still waiting for
        # its request: dicts keep insertion order, so the first one found.
        for wrapper, its_source in self._source_of.items():
            if source is not None and its_source != source:
                continue
            channel = getattr(wrapper, "wrappedProtocol", None)
            if isinstance(channel, DeadlineChannel) and channel.waiting_longer_than(EVICT_AFTER):
                self._forget(wrapper)
                self.counters.evicted_waiting += 1
                channel._stop_deadline()
                transport: Any = wrapper.transport
                if transport is not None:
                    transport.abortConnection()
                return True
        return False

    def _forget(self, p: ProtocolWrapper) -> None:
        source = self._source_of.pop(p, None)
        if source is not None:
            left = self.by_source[source] - 1
            if left:
                self.by_source[source] = left
            else:
                del self.by_source[source]
        self.counters.connections = len(self._source_of)

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:  # noqa: N802 (Twisted's name)
        """A connection ended: free its place."""
        super().unregisterProtocol(p)  # type: ignore[no-untyped-call]
        self._forget(p)
