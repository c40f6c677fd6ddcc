"""What every service starts with: the node's identity and its UDP socket.

Each service loads (or creates, on first run) the node's identity from
``data_dir/identity.key`` and listens on UDP with an :class:`RPCProtocol`;
its protocol runs on top.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import attrs
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorTime, IReactorUDP

from dhtkit.contact import Address
from dhtkit.identity import Identity
from dhtkit.ports import PortUnavailable
from dhtkit.rpc import RPCProtocol

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
        listening = cast(IReactorUDP, reactor).listenUDP(
            port, rpc, interface=interface, maxPacketSize=8192
        )
    except CannotListenError as e:
        raise PortUnavailable("UDP", interface, port, e.socketError) from None
    return NodeSocket(identity, rpc, listening)


def default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class NodeService(Service):
    """What every node service shares: its identity, RPC layer and address.

    Subclasses set :attr:`protocol`, :attr:`data_dir`, and ``_socket`` (from
    :func:`open_node`) while they run.
    """

    #: The protocol's name, as ``--protocol`` and ``/v1/status`` spell it.
    protocol = ""
    data_dir: str | os.PathLike[str]
    _socket: NodeSocket | None = None

    def _node_socket(self) -> NodeSocket:
        if self._socket is None:
            raise RuntimeError("the {} service is not running".format(self.protocol))
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
        return self._node_socket().rpc

    @property
    def address(self) -> Address:
        """Where the node listens (once started)."""
        return self._node_socket().address
