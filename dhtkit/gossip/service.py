"""The gossip node as a Twisted service."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from dhtkit.contact import Address, Contact, normalize_address
from dhtkit.gossip.config import GossipConfig
from dhtkit.gossip.protocol import GossipProtocol
from dhtkit.gossip.sampler import IPeerSampler, OverlayPeers, StaticPeers
from dhtkit.gossip.state import Subscription, UpdateCallback
from dhtkit.gossip.update import Update
from dhtkit.nodesocket import NodeService

Peers = Sequence[Address] | IPeerSampler | Callable[[], Iterable[Contact]]


class GossipService(NodeService):
    """A gossip node as a Twisted service.

    :param port: the UDP port (0: any free one; see :attr:`address`).
    :param interface: the address to listen on.
    :param data_dir: where ``identity.key`` is kept (created on first start).
    :param peers: partners: a list of ``(host, port)`` IP addresses (their keys
        are learnt by ping, and peers that gossip with us are added), an
        :class:`IPeerSampler`, or a callable returning the contacts of a
        running overlay.
    :param config: the gossip options (:class:`GossipConfig`).
    :param reactor: the reactor (the global one by default).
    :param rpc_options: keyword arguments for :class:`RPCProtocol`.
    :param rng: partner choice and coins (seeded in tests).

    Once started: :attr:`identity`, :attr:`rpc`, :attr:`gossip` (the
    :class:`GossipProtocol`) and :attr:`address`.
    """

    overlay_name = "gossip"
    _log = Logger()

    def __init__(
        self,
        port: int,
        interface: str = "127.0.0.1",
        data_dir: str | os.PathLike[str] = "data",
        peers: Peers = (),
        *,
        config: GossipConfig | None = None,
        reactor: Any = None,
        rpc_options: Mapping[str, Any] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            port, interface, data_dir, reactor=reactor, rpc_options=rpc_options, rng=rng
        )
        if not IPeerSampler.providedBy(peers) and not callable(peers):
            # Checked here, so that a bad address fails before anything listens.
            peers = [normalize_address(address) for address in peers]
        self.peers = peers
        self.config = config if config is not None else GossipConfig()
        self._gossip: GossipProtocol | None = None

    @classmethod
    def riding_on(
        cls,
        host: NodeService,
        contacts: Callable[[], Iterable[Contact]],
        *,
        config: GossipConfig | None = None,
        rng: random.Random | None = None,
    ) -> GossipService:
        """Gossip over another running service's socket, with its contacts as partners.

        ``host`` must start before this service (e.g. earlier in the same
        ``MultiService``); the updates travel on its port, signed with its
        identity, and ``contacts()`` (say, an overlay's) is asked for
        partners each round. The daemon's ``--gossip`` is this.
        """
        service = cls(0, data_dir=host.data_dir, peers=contacts, config=config, rng=rng)
        service._ride_on(host)
        return service

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Load the identity, listen, and start the rounds."""
        reactor = self._reactor()
        node = self._open_socket()
        peers = self.peers
        sampler: IPeerSampler
        if IPeerSampler.providedBy(peers):
            sampler = peers
        elif callable(peers):
            sampler = OverlayPeers(peers)
        else:
            sampler = StaticPeers(peers, node.rpc, reactor)
        self._gossip = GossipProtocol(node.rpc, sampler, self.config, clock=reactor, rng=self.rng)
        self._gossip.start()
        super().startService()  # type: ignore[no-untyped-call]
        self._log.info(
            "gossip node {node_id} listening on {host}:{port}",
            node_id=node.identity.node_id.hex(),
            host=node.address[0],
            port=node.address[1],
        )

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 (Twisted's name)
        """Stop the rounds and close the port; fires once it is closed."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._gossip is not None:
            self._gossip.stop()
        return self._close_socket()

    # -- while running ------------------------------------------------------------

    @property
    def gossip(self) -> GossipProtocol:
        """The gossip protocol (once started)."""
        if self._gossip is None:
            raise RuntimeError("the gossip service has not been started")
        return self._gossip

    def publish(self, topic: str, data: bytes, ttl: float | None = None) -> defer.Deferred[Update]:
        """Sign and spread an update; fires with it (or fails, e.g. too large)."""
        return defer.maybeDeferred(self.gossip.state.publish, topic, data, ttl)

    def delete(self, update: Update, ttl: float | None = None) -> defer.Deferred[Update]:
        """Spread a death certificate for an update published here; fires with it."""
        return defer.maybeDeferred(self.gossip.state.delete, update, ttl)

    def subscribe(
        self,
        topic: str | None,
        on_update: UpdateCallback,
        on_delete: UpdateCallback | None = None,
    ) -> Subscription:
        """Call ``on_update(update)`` for each update of ``topic`` (None: all)."""
        return self.gossip.state.subscribe(topic, on_update, on_delete)

    def stats(self) -> dict[str, int]:
        """The gossip counters (see :meth:`GossipProtocol.stats`)."""
        return self.gossip.stats()
