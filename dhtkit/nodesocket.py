"""What every service starts with: the node's identity and its UDP socket.

Each service loads (or creates, on first run) the node's identity from
``data_dir/identity.key`` and listens on UDP with an :class:`RPCProtocol`;
its protocol runs on top.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import attrs
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorTime

from dhtkit.contact import Address
from dhtkit.identity import Identity
from dhtkit.ports import PortUnavailable
from dhtkit.rpc import RPCProtocol
from dhtkit.udpport import listen_udp

#: The file in the data directory that holds the node's private key.
IDENTITY_FILE = "identity.key"


def load_identity(data_dir: str | os.PathLike[str]) -> Identity:
    """The identity saved in ``data_dir``, created (with the directory) on first use.

    :raises IdentityError: the key file exists but is not a dhtkit key.
    :raises OSError: the directory or file cannot be read or written.
    """
    path = Path(data_dir) / IDENTITY_FILE
    if path.exists():
        return Identity.from_file(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    identity = Identity.generate()
    identity.save(path)
    return identity


@attrs.frozen
class NodeSocket:
    """A node's identity and its RPC layer listening on a UDP port."""

    identity: Identity
    rpc: RPCProtocol
    port: IListeningPort

    @property
    def address(self) -> Address:
        """Where the node listens (the port chosen, if 0 was asked for)."""
        host = self.port.getHost()
        return (host.host, host.port)  # type: ignore[attr-defined]

    def close(self) -> defer.Deferred[None]:
        """Stop listening; fires when the port is closed."""
        closing = self.port.stopListening()
        return closing if closing is not None else defer.succeed(None)


def open_node(
    reactor: Any,
    data_dir: str | os.PathLike[str],
    port: int,
    interface: str = "127.0.0.1",
    **rpc_options: Any,
) -> NodeSocket:
    """Load the identity from ``data_dir`` and listen on UDP with an RPCProtocol.

    ``reactor`` provides ``IReactorUDP`` and ``IReactorTime``;
    ``rpc_options`` go to :class:`RPCProtocol`.

    :raises PortUnavailable: (a ``CannotListenError``) the port is taken;
        its message names it, and the process holding it.
    """
    identity = load_identity(data_dir)
    rpc = RPCProtocol(identity, cast(IReactorTime, reactor), **rpc_options)
    try:
        listening = listen_udp(reactor, port, rpc, interface=interface, max_packet_size=8192)
    except CannotListenError as e:
        raise PortUnavailable("UDP", interface, port, e.socketError) from None
    return NodeSocket(identity, rpc, listening)


def default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class NodeService(Service):
    """What every node service shares: its identity, its UDP socket, its RPC layer.

    :param port: the UDP port (0: any free one; see :attr:`address`).
    :param interface: the address to listen on (IPv4 or IPv6).
    :param data_dir: holds ``identity.key`` (created on first start).
    :param reactor: the reactor (the global one by default).
    :param rpc_options: keyword arguments for :class:`RPCProtocol`.
    :param rng: the randomness of the protocol on top (seeded in tests).

    Subclasses set :attr:`overlay_name`, open the socket with :meth:`_open_socket`
    when they start and close it with :meth:`_close_socket` when they stop. A
    service made to ride on another (:meth:`_ride_on`) borrows that one's
    socket instead, and leaves it open.
    """

    #: The overlay's name ("kademlia", "gossip"), as ``--protocol`` and
    #: ``/v1/status``'s ``protocol`` field spell it.
    overlay_name = ""
    data_dir: Path
    _socket: NodeSocket | None = None
    _host: NodeService | None = None

    def __init__(
        self,
        port: int,
        interface: str = "127.0.0.1",
        data_dir: str | os.PathLike[str] = "data",
        *,
        reactor: Any = None,
        rpc_options: Mapping[str, Any] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.port = port
        self.interface = interface
        self.data_dir = Path(data_dir)
        self.reactor = reactor
        self.rpc_options = dict(rpc_options or {})
        self.rng = rng
        self._socket = None
        self._host = None

    def _ride_on(self, host: NodeService) -> None:
        """Use ``host``'s socket (and reactor) once started, instead of a port of our own."""
        self._host = host
        self.data_dir = host.data_dir

    def _reactor(self) -> Any:
        if self._host is not None:
            return self._host._reactor()
        return self.reactor if self.reactor is not None else default_reactor()

    def _open_socket(self) -> NodeSocket:
        """Listen (or borrow the host's socket); the socket is :attr:`socket` until closed.

        :raises PortUnavailable: the port is taken.
        """
        if self._host is not None:
            self._socket = self._host.socket
        else:
            self._socket = open_node(
                self._reactor(), self.data_dir, self.port, self.interface, **self.rpc_options
            )
        return self._socket

    def _close_socket(self) -> defer.Deferred[None]:
        """Stop listening (a borrowed socket stays open: it is the host's); fires once closed."""
        sock, self._socket = self._socket, None
        if sock is None or self._host is not None:
            return defer.succeed(None)
        return sock.close()

    @property
    def socket(self) -> NodeSocket:
        """The node's identity, RPC layer and port (once started)."""
        if self._socket is None:
            raise RuntimeError("the {} service is not running".format(self.overlay_name))
        return self._socket

    @property
    def identity(self) -> Identity:
        """The node's identity: loaded from (or created in) the data directory."""
        if self._socket is None:
            return load_identity(self.data_dir)
        return self._socket.identity

    @property
    def rpc(self) -> RPCProtocol:
        """The node's RPC layer (once started)."""
        return self.socket.rpc

    @property
    def address(self) -> Address:
        """Where the node listens (once started)."""
        return self.socket.address
