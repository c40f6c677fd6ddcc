"""A UDP port that hears the network say an address does not answer.

When a datagram reaches a host where nothing listens on its port (a node
that crashed or stopped), the host answers with an ICMP "port unreachable";
a router may answer "host" or "network unreachable". An unconnected UDP
socket hears none of that by default. With ``IP_RECVERR`` (Linux) the
kernel queues each such error on the socket, with the address the datagram
went to, and :class:`HintingPort` reads the queue and tells its protocol
(:class:`IUnreachableHints`), so that a lookup can ask another node in the
dead one's place at once instead of waiting for a hedge timer.

An ICMP error is easy to forge for anyone who knows both addresses, so it
is only a *hint*: nothing is failed or evicted for it, a query still waits
for its answer (which is used if it comes), and the worst a forger gets is
one more query sent elsewhere.

How the error reaches us is where Twisted needs help. The queued error
makes the socket report an error condition (``EPOLLERR``); a poll-based
reactor (epoll, poll) takes that, when no datagram is waiting, for the end
of the connection, and calls :meth:`HintingPort.readConnectionLost`, which
reads the queue and goes back to reading. Any other reactor (select, kqueue,
asyncio) would call ``doRead`` for ever instead, so :func:`listen_udp` turns
the option on only for the poll-based ones and opens a plain port otherwise.
And while an error is pending, the kernel fails the socket's next send or
receive with it. Twisted drops a send failed with ``ECONNREFUSED`` in
silence and raises any other error, and a receive failed with anything but
``ECONNREFUSED`` closes the port: :meth:`HintingPort.write` reads the queue
and sends again, and :meth:`HintingPort.doRead` reads on.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from typing import Any, cast

from twisted.internet import udp
from twisted.internet.error import MessageLengthError
from twisted.internet.interfaces import IHalfCloseableDescriptor, IListeningPort, IReactorTime
from twisted.logger import Logger
from zope.interface import Interface, implementer

from dhtkit.contact import Address

# Linux's numbers; Python's socket module does not name them.
_SOL_IP, _IP_RECVERR = 0, 11
_SOL_IPV6, _IPV6_RECVERR = 41, 25
#: sock_extended_err: ee_errno (u32), ee_origin (u8), then type, code, pad.
_EXTENDED_ERR = struct.Struct("=IB")
_FROM_ICMP = frozenset({2, 3})  # SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6
#: The errors that say nothing answers at an address.
UNREACHABLE = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})
#: What an ICMP error (or a local one, as a message too long for the path)
#: becomes as the socket's pending error, which its next call fails with.
PENDING_ERRORS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.ENONET,
        errno.ENOPROTOOPT,
        errno.EOPNOTSUPP,
        errno.EPROTO,
        errno.EMSGSIZE,
        errno.EACCES,
    }
)
#: Receives that a pending error may fail in a row before a read gives up.
_ERRORS_PER_DOREAD = 64
#: Queued errors read at a time; the rest are read when the reactor comes back.
_ERRORS_PER_READ = 64


class IUnreachableHints(Interface):
    """A datagram protocol told of addresses the network said do not answer."""

    def unreachable(address: Address) -> None:
        """A datagram sent to ``address`` came back as unreachable (a hint only)."""


def poll_based(reactor: Any) -> bool:
    """Whether ``reactor`` takes a socket's error condition for its end
    (as epoll and poll do), which :class:`HintingPort` relies on."""
    bases: list[type] = []
    try:
        from twisted.internet.epollreactor import EPollReactor

        bases.append(EPollReactor)
    except ImportError:
        pass
    try:
        from twisted.internet.pollreactor import PollReactor

        bases.append(PollReactor)
    except ImportError:
        pass
    return bool(bases) and isinstance(reactor, tuple(bases))


def listen_udp(
    reactor: Any, port: int, protocol: Any, interface: str = "", max_packet_size: int = 8192
) -> IListeningPort:
    """Listen on UDP as ``reactor.listenUDP`` does; where the platform and
    the reactor allow, with a :class:`HintingPort` for a protocol that
    takes hints.

    :raises CannotListenError: the port cannot be listened on.
    """
    if (
        sys.platform.startswith("linux")
        and IUnreachableHints.providedBy(protocol)
        and poll_based(reactor)
    ):
        hinting = HintingPort(port, protocol, interface, max_packet_size, reactor)
        hinting.startListening()  # type: ignore[no-untyped-call]
        return hinting
    listening: IListeningPort = reactor.listenUDP(
        port, protocol, interface=interface, maxPacketSize=max_packet_size
    )
    return listening


@implementer(IHalfCloseableDescriptor)
class HintingPort(udp.Port):
    """A UDP port that reads the socket's queued ICMP errors and tells its
    protocol of each address found unreachable.

    :ivar hints: errors read that named an unreachable address.
    :ivar hinting: whether the socket queues its errors (the option took).
    """

    _log = Logger()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.hints = 0
        self.hinting = False

    def _bindSocket(self) -> None:  # noqa: N802 (Twisted's name)
        super()._bindSocket()  # type: ignore[no-untyped-call]
        level, option = self._option()
        try:
            self.socket.setsockopt(level, option, 1)
        except OSError as e:  # not this kernel's: a plain port, then
            self._log.info("no ICMP hints on this socket: {error}", error=str(e))
        else:
            self.hinting = True

    def _option(self) -> tuple[int, int]:
        if self.addressFamily == socket.AF_INET6:
            return _SOL_IPV6, _IPV6_RECVERR
        return _SOL_IP, _IP_RECVERR

    def readConnectionLost(self, reason: Any) -> None:  # noqa: N802 (Twisted's name)
        """The reactor saw the error condition with no datagram waiting: read
        the queued errors and go back to reading (the socket is still open)."""
        self.read_errors()
        if self.connected:
            self.startReading()  # type: ignore[no-untyped-call]

    def writeConnectionLost(self, reason: Any) -> None:  # noqa: N802 (Twisted's name)
        """Not called for a port that only reads; as a lost connection if it is."""
        self.connectionLost(reason)  # type: ignore[no-untyped-call]

    def doRead(self) -> None:  # noqa: N802 (Twisted's name)
        """Read datagrams as Twisted does, but go on past a receive that a
        pending error failed (Twisted would close the port for it)."""
        for _ in range(_ERRORS_PER_DOREAD):
            try:
                super().doRead()  # type: ignore[no-untyped-call]
                return
            except OSError as e:
                if not self.hinting or e.errno not in PENDING_ERRORS:
                    raise
                # That receive took the socket's pending error; the queued
                # ones are read now, and the datagrams after them next.
                self.read_errors()

    def write(self, datagram: bytes, addr: Any = None) -> Any:
        # Twisted returns None from an unconnected port's write when the send
        # failed with ECONNREFUSED, and raises other errors: an error queued
        # for another address may have taken this datagram's place. Read the
        # queue (which clears it) and send it again, once; what fails then
        # is this datagram's own failure.
        try:
            sent = super().write(datagram, addr)
        except (OSError, MessageLengthError) as e:
            pending = errno.EMSGSIZE if isinstance(e, MessageLengthError) else e.errno
            if not self.hinting or pending not in PENDING_ERRORS:
                raise
            sent = None
        if sent is None and self._read_errors_after_send():
            sent = super().write(datagram, addr)
        return sent

    def write_failed(self, error: OSError) -> None:
        """A datagram written straight to the socket (not through
        :meth:`write`) failed with ``error``: if that was a queued error
        taking its place, read the queue as :meth:`write` would (the
        protocol hears of the addresses from the reactor)."""
        if error.errno in PENDING_ERRORS:
            self._read_errors_after_send()

    def _read_errors_after_send(self) -> bool:
        """Read the queued errors after a send that one of them may have
        failed, if this port hints; whether it did. The protocol hears of
        the addresses from the reactor, not while it sends."""
        if not (self.hinting and self.connected):
            return False
        self.read_errors(cast(IReactorTime, self.reactor).callLater)
        return True

    def read_errors(self, later: Any = None) -> int:
        """Read up to a bound of queued errors; tell the protocol of each
        unreachable address (with ``later(0, ...)`` if given, else at once).
        Returns how many errors were read."""
        read = 0
        while read < _ERRORS_PER_READ:
            try:
                _, ancillary, _, address = self.socket.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                # Never seen; but were it to last, the reactor would call
                # back at once for ever: go on as a plain port.
                self._log.warn("cannot read the socket's errors: {error}", error=str(e))
                self._stop_hinting()
                break
            read += 1
            if self._unreachable(ancillary) and isinstance(address, tuple):
                self.hints += 1
                if later is not None:
                    later(0, self._tell, (address[0], address[1]))
                else:
                    self._tell((address[0], address[1]))
        # An error the queue had no room for is still the socket's pending
        # error, which keeps the error condition up: reading it clears it.
        self._clear_pending_error()
        return read

    def _clear_pending_error(self) -> None:
        try:
            self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            pass

    def _stop_hinting(self) -> None:
        self.hinting = False
        level, option = self._option()
        try:
            self.socket.setsockopt(level, option, 0)
        except OSError:
            pass

    def _tell(self, address: Address) -> None:
        try:
            self.protocol.unreachable(address)
        except Exception:
            self._log.failure("a hint of an unreachable address failed")

    @staticmethod
    def _unreachable(ancillary: list[tuple[int, int, bytes]]) -> bool:
        """Whether the error's message says an ICMP error of unreachability."""
        for level, kind, data in ancillary:
            if (level, kind) in ((_SOL_IP, _IP_RECVERR), (_SOL_IPV6, _IPV6_RECVERR)):
                if len(data) < _EXTENDED_ERR.size:
                    return False
                code, origin = _EXTENDED_ERR.unpack_from(data)
                return origin in _FROM_ICMP and code in UNREACHABLE
        return False
