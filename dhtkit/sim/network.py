"""An in-memory UDP network on one virtual clock.

:class:`VirtualNetwork` gives each simulated host a :class:`SimReactor` whose
``listenUDP`` and ``callLater`` are the real reactor's calls, so an unchanged
:class:`~twisted.internet.protocol.DatagramProtocol` runs on it: thousands of
hosts in one process, every datagram delivered through the shared clock after
the latency model's delay.

A datagram's fate is decided in two steps. When it is sent: dropped if the
sender is down, if a partition separates the two hosts, or by random loss.
When it arrives: dropped if the receiving host is down or nothing listens on
the address any more; otherwise ``datagramReceived`` runs. Every datagram
counts once in ``sent`` and, once it has landed, once in either ``delivered``
or one of the ``dropped_*`` counters.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError, MessageLengthError
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IReactorTime,
    IReactorUDP,
    IUDPTransport,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import alsoProvides, implementer  # type: ignore[import-untyped]

from dhtkit.contact import normalize_address
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.latency import ConstantLatency, LatencyModel, UniformLatency
from dhtkit.transport import ITrustedNetwork

__all__ = [
    "COUNTERS",
    "ConstantLatency",
    "SimReactor",
    "SimUDPPort",
    "UniformLatency",
    "VirtualNetwork",
]

#: The largest UDP payload over IPv4: 65535 less the IP and UDP headers.
MAX_UDP_PAYLOAD_IPV4 = 65507
#: Over IPv6 the payload length field covers only the UDP header and data.
MAX_UDP_PAYLOAD_IPV6 = 65527
#: Linux's default ``ip_local_port_range``.
EPHEMERAL_PORTS = range(32768, 61000)

#: The names in :attr:`VirtualNetwork.counters`.
COUNTERS = (
    "sent",
    "delivered",
    "dropped_loss",
    "dropped_partition",
    "dropped_down",
    "dropped_unreachable",
    "bytes_delivered",
)

Address = tuple[str, int]
# The group of every host that no partition group names.
_REST = -1


def _cannot_listen(interface: str, port: int, reason: Exception) -> CannotListenError:
    return CannotListenError(interface, port, reason)  # type: ignore[no-untyped-call]


def _make_address(host: str, port: int) -> IPv4Address | IPv6Address:
    if ":" in host:
        return IPv6Address("UDP", host, port)
    return IPv4Address("UDP", host, port)


class VirtualNetwork:
    """Hosts, their UDP ports, and the datagrams between them.

    :param clock: the shared clock; a new :class:`HeapClock` by default. Any
        ``IReactorTime`` works; a :class:`HeapClock` takes a cheaper path.
    :param latency: a :class:`~dhtkit.sim.latency.LatencyModel`;
        ``ConstantLatency(0.01)`` by default.
    :param loss: the probability that a datagram is dropped (settable later).
    :param seed: seeds the one random generator behind loss and latency, so a
        run with the same seed and the same sends is the same run.
    :param trusted: its ports provide :class:`~dhtkit.transport.ITrustedNetwork`:
        the nodes on it do not check MACs and signatures (``--trust-sim``).

    ``clock`` is typed ``IReactorTime``: to drive a run with
    :meth:`HeapClock.run_until` and friends, create the :class:`HeapClock`
    and pass it in.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime | None = None,
        latency: LatencyModel | None = None,
        loss: float = 0.0,
        seed: int = 0,
        trusted: bool = False,
    ) -> None:
        self.trusted = trusted
        if clock is None:
            clock = cast(IReactorTime, HeapClock())
        self.clock = clock
        self.latency: LatencyModel = latency if latency is not None else ConstantLatency(0.01)
        self.rng = random.Random(seed)
        self.loss = loss
        #: Datagram counts by fate (see :data:`COUNTERS`); a plain dict, free to reset.
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._ports: dict[Address, SimUDPPort] = {}
        self._reactors: dict[str, SimReactor] = {}
        self._next_ephemeral: dict[str, int] = {}
        self._down: set[str] = set()
        self._group: dict[str, int] = {}
        # HeapClock's uncancellable fast path spares a call object per datagram.
        self._schedule: Callable[[float, Callable[..., object], tuple[Any, ...]], None] | None = (
            clock._schedule if isinstance(clock, HeapClock) else None
        )
        # Bound once, not once per datagram.
        self._deliver_later = self._deliver

    # -- hosts ------------------------------------------------------------------

    def reactor_for(self, host: str) -> SimReactor:
        """The reactor of ``host`` (the same object on every call).

        :raises ValueError: ``host`` is not an IP address in canonical form
            (what a real socket would report as a datagram's source).
        """
        reactor = self._reactors.get(host)
        if reactor is None:
            if normalize_address((host, 1))[0] != host:
                raise ValueError("{!r} is not a canonical IP address".format(host))
            reactor = self._reactors[host] = SimReactor(self, host)
        return reactor

    @property
    def loss(self) -> float:
        """The probability that a datagram is dropped in transit."""
        return self._loss

    @loss.setter
    def loss(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError("loss is a probability, between 0 and 1, not {}".format(value))
        self._loss = value

    def in_flight(self) -> int:
        """Datagrams sent whose fate is not yet decided."""
        c = self.counters
        landed = c["delivered"] + sum(c[name] for name in COUNTERS if name.startswith("dropped_"))
        return c["sent"] - landed

    def is_listening(self, address: Address) -> bool:
        """Whether a port is bound at ``address`` (``(host, port)``)."""
        return (address[0], address[1]) in self._ports

    # -- faults -----------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network: datagrams between hosts of different groups are dropped.

        Every host that no group names belongs to one further group, *the
        rest*: ``partition({"a", "b"})`` cuts a and b off from everyone else,
        who still reach each other. Each call replaces the previous partition;
        datagrams already in flight are not affected.

        :raises ValueError: if a host is in two groups.
        """
        group_of: dict[str, int] = {}
        for index, hosts in enumerate(groups):
            if isinstance(hosts, str):
                raise TypeError(
                    "each group is a collection of hosts, not the host {!r}".format(hosts)
                )
            for host in hosts:
                if group_of.setdefault(host, index) != index:
                    raise ValueError("host {!r} is in two partition groups".format(host))
        self._group = group_of

    def heal(self) -> None:
        """Remove the partition."""
        self._group = {}

    def set_down(self, host: str) -> None:
        """Take ``host`` off the network: it neither sends nor receives.

        Its ports stay bound and its protocols keep running; what it sends is
        dropped, and so is what reaches it while it is down.
        """
        self._down.add(host)

    def set_up(self, host: str) -> None:
        """Put ``host`` back on the network."""
        self._down.discard(host)

    def is_down(self, host: str) -> bool:
        """Whether ``host`` is down."""
        return host in self._down

    # -- ports ------------------------------------------------------------------

    def _bind(self, port: SimUDPPort, host: str, number: int) -> int:
        if number == 0:
            number = self._ephemeral_port(host)
        elif not 0 < number < 65536:
            raise _cannot_listen(host, number, ValueError("a port is between 0 and 65535"))
        elif (host, number) in self._ports:
            raise _cannot_listen(host, number, OSError(errno.EADDRINUSE, "Address already in use"))
        self._ports[(host, number)] = port
        return number

    def _unbind(self, port: SimUDPPort, address: Address) -> None:
        if self._ports.get(address) is port:
            del self._ports[address]

    def _ephemeral_port(self, host: str) -> int:
        # Sequential, not random: allocating a port must not draw from the
        # generator that decides loss and latency.
        start = self._next_ephemeral.get(host, EPHEMERAL_PORTS.start)
        span = len(EPHEMERAL_PORTS)
        for i in range(span):
            number = EPHEMERAL_PORTS.start + (start - EPHEMERAL_PORTS.start + i) % span
            if (host, number) not in self._ports:
                self._next_ephemeral[host] = number + 1
                return number
        raise _cannot_listen(host, 0, OSError(errno.EADDRINUSE, "no free ephemeral port"))

    # -- datagrams ----------------------------------------------------------------

    def _send(self, src: Address, data: bytes, dst: Address) -> None:
        counters = self.counters
        counters["sent"] += 1
        if self._down and src[0] in self._down:
            counters["dropped_down"] += 1
            return
        group = self._group
        if group and group.get(src[0], _REST) != group.get(dst[0], _REST):
            counters["dropped_partition"] += 1
            return
        if self._loss and self.rng.random() < self._loss:
            counters["dropped_loss"] += 1
            return
        delay = self.latency.delay(src[0], dst[0], self.rng)
        if self._schedule is not None:
            self._schedule(self.clock.seconds() + delay, self._deliver_later, (dst, data, src))
        else:
            self.clock.callLater(delay, self._deliver_later, dst, data, src)

    def _deliver(self, dst: Address, data: bytes, src: Address) -> None:
        counters = self.counters
        if self._down and dst[0] in self._down:
            counters["dropped_down"] += 1
            return
        port = self._ports.get(dst)
        if port is None or (port._peer is not None and port._peer != src):
            counters["dropped_unreachable"] += 1
            return
        if len(data) > port.maxPacketSize:
            # A real recvfrom(maxPacketSize) truncates the datagram.
            data = data[: port.maxPacketSize]
        counters["delivered"] += 1
        counters["bytes_delivered"] += len(data)
        try:
            port.protocol.datagramReceived(data, src)
        except Exception:
            # As a real reactor does: log, and go on delivering.
            self._log.failure(
                "datagramReceived of {protocol!r} at {host}:{port} raised",
                protocol=port.protocol,
                host=dst[0],
                port=dst[1],
            )


@implementer(IReactorTime, IReactorUDP)
class SimReactor:
    """One host's reactor: the network's clock, and UDP ports on this host.

    Pass it wherever code expects ``IReactorTime`` or ``IReactorUDP``.
    ``getDelayedCalls`` returns every host's calls: they share one clock.
    """

    def __init__(self, network: VirtualNetwork, host: str) -> None:
        self.network = network
        self.host = host
        self._clock = network.clock

    def seconds(self) -> float:
        """The shared clock's time."""
        return self._clock.seconds()

    def callLater(  # noqa: N802 (Twisted's name)
        self, delay: float, callable: Callable[..., object], *args: Any, **kw: Any
    ) -> IDelayedCall:
        """Schedule on the shared clock."""
        return self._clock.callLater(delay, callable, *args, **kw)

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:  # noqa: N802 (Twisted's name)
        """The shared clock's calls (every host's)."""
        return self._clock.getDelayedCalls()

    def listenUDP(  # noqa: N802 (Twisted's name)
        self,
        port: int,
        protocol: DatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,  # noqa: N803 (Twisted's name)
    ) -> SimUDPPort:
        """Bind ``protocol`` to ``port`` on this host (0: a free ephemeral port).

        ``interface`` may be empty, this host's address, or a wildcard
        (``0.0.0.0``, ``::``), which all mean this host's one address.

        :raises CannotListenError: if the port is taken or the interface is
            not this host's.
        """
        if interface not in ("", "0.0.0.0", "::", self.host):  # noqa: S104 (a wildcard, compared)
            raise _cannot_listen(
                interface,
                port,
                OSError(errno.EADDRNOTAVAIL, "not an address of host {}".format(self.host)),
            )
        listening = SimUDPPort(self.network, self.host, port, protocol, maxPacketSize)
        if self.network.trusted:
            alsoProvides(listening, ITrustedNetwork)
        listening.startListening()
        return listening


@implementer(IUDPTransport, IListeningPort)
class SimUDPPort:
    """A bound UDP port: the protocol's transport and its listening port."""

    def __init__(
        self,
        network: VirtualNetwork,
        host: str,
        port: int,
        protocol: DatagramProtocol,
        maxPacketSize: int = 8192,  # noqa: N803 (Twisted's name)
    ) -> None:
        self.network = network
        self.protocol = protocol
        self.maxPacketSize = maxPacketSize
        self.listening = False
        self._host = host
        self._requested_port = port
        self._address: Address = (host, port)
        self._max_payload = MAX_UDP_PAYLOAD_IPV6 if ":" in host else MAX_UDP_PAYLOAD_IPV4
        self._peer: Address | None = None
        self._broadcast = False

    def startListening(self) -> None:  # noqa: N802 (Twisted's name)
        """Bind the port and start the protocol (``listenUDP`` does this)."""
        if self.listening:
            return
        number = self.network._bind(self, self._host, self._requested_port)
        self._address = (self._host, number)
        self.listening = True
        self.protocol.makeConnection(self)

    def write(self, datagram: bytes, addr: Address | None = None) -> None:
        """Send ``datagram`` to ``addr`` (``(host, port)``).

        Nothing is sent once the port has stopped listening.

        :raises MessageLengthError: if it is larger than one UDP datagram.
        """
        if len(datagram) > self._max_payload:
            raise MessageLengthError("message too long")
        if addr is None:
            if self._peer is None:
                raise ValueError("write() on an unconnected port needs an address")
            addr = self._peer
        elif len(addr) != 2:
            # An IPv6 (host, port, flowinfo, scope_id) address.
            addr = (addr[0], addr[1])
        if self.listening:
            self.network._send(self._address, datagram, addr)

    def connect(self, host: str, port: int) -> None:
        """Talk to one peer only: ``write`` needs no address, others are not heard."""
        if self._peer is not None:
            raise RuntimeError("already connected, reconnecting is not currently supported")
        self._peer = (host, port)

    def getHost(self) -> IPv4Address | IPv6Address:  # noqa: N802 (Twisted's name)
        """This port's address (the port chosen, when 0 was asked for)."""
        return _make_address(*self._address)

    def stopListening(self) -> defer.Deferred[None]:  # noqa: N802 (Twisted's name)
        """Unbind at once and stop the protocol; datagrams in flight to it are dropped."""
        if self.listening:
            self.listening = False
            self.network._unbind(self, self._address)
            self.protocol.doStop()  # type: ignore[no-untyped-call]
        return defer.succeed(None)

    def loseConnection(self) -> None:  # noqa: N802 (Twisted's name)
        """The same as :meth:`stopListening`."""
        self.stopListening()

    def setBroadcastAllowed(self, enabled: bool) -> None:  # noqa: N802 (Twisted's name)
        """Recorded only: the virtual network has no broadcast."""
        self._broadcast = enabled

    def getBroadcastAllowed(self) -> bool:  # noqa: N802 (Twisted's name)
        """What :meth:`setBroadcastAllowed` recorded."""
        return self._broadcast

    def __repr__(self) -> str:
        state = "listening" if self.listening else "stopped"
        return "<SimUDPPort {}:{} {} {!r}>".format(
            self._address[0], self._address[1], state, self.protocol
        )
