"""Twisted services: a node with its identity, its UDP port, its store and its overlay.

:class:`KademliaService` and :class:`ChordService` share one
:class:`OverlayService`: it loads the identity from the data directory,
opens the SQLite store there, listens on UDP, builds the overlay and the
:class:`~dhtkit.node.DHTNode` on top, and joins through the bootstrap
addresses plus the contacts it saved the last time it ran.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dhtkit.bootstrap import check_bootstrap, resolve
from dhtkit.chord import ChordOverlay
from dhtkit.contact import Address, Contact
from dhtkit.contactfile import CONTACTS_FILE, ContactFileError, read_contacts, save_contacts
from dhtkit.gossip.service import GossipService, Peers
from dhtkit.identity import MAX_PUZZLE_BITS, Identity, solves_puzzle
from dhtkit.kademlia import KademliaOverlay
from dhtkit.node import DHTNode
from dhtkit.nodesocket import (
    IDENTITY_FILE,
    NodeService,
    NodeSocket,
    default_reactor,
    load_identity,
    open_node,
)
from dhtkit.overlay import IRoutingOverlay, JoinFailed
from dhtkit.rpc import RPCProtocol
from dhtkit.storage import IValueStore, Quota, SQLiteStore

__all__ = [
    "IDENTITY_FILE",
    "STORE_FILE",
    "ChordService",
    "GossipService",
    "KademliaService",
    "NodeSocket",
    "OverlayService",
    "Peers",
    "load_identity",
    "open_node",
]

#: The file in the data directory that holds the node's records.
STORE_FILE = "dhtkit.sqlite"


class OverlayService(NodeService):
    """A DHT node as a Twisted service; subclasses choose the overlay.

    :param port: the UDP port (0: any free one; see :attr:`address`).
    :param interface: the address to listen on (IPv4 or IPv6).
    :param data_dir: holds ``identity.key``, ``dhtkit.sqlite`` and the saved
        contacts; created on first start.
    :param bootstrap: ``(host, port)`` addresses of nodes to join through;
        a host may be a name, resolved at each join (see :mod:`dhtkit.bootstrap`).
    :param reactor: the reactor (the global one by default).
    :param store: the record store (by default SQLite in ``data_dir``); the
        service closes it when it stops.
    :param quota: the limits of the default store: its total and each
        source network's share (:class:`~dhtkit.storage.Quota`); ignored
        when ``store`` is given, which enforces its own.
    :param rpc_options: keyword arguments for :class:`RPCProtocol`.
    :param node_options: keyword arguments for :class:`DHTNode`.
    :param save_after: seconds between checks whether the routing contacts
        changed; a changed set is written then (to a temporary file renamed
        over the old one), so a node killed without a clean stop still finds
        the contacts it had seconds before.
    :param save_every: the shortest time between two saves, so that a busy
        overlay whose contacts change all the time writes at most once in
        this many seconds (the first change after a start is saved at once).
    :param rejoin_after: seconds before a failed join is tried again (it
        doubles up to ten times as long while no one answers).
    :param watch_every: seconds between checks that the node still has
        contacts; one that lost them all (cut off the network, or every
        neighbour gone) joins again through its bootstrap addresses and the
        contacts it knew last.
    :param rng: randomness of the overlay's timers (seeded in tests).
    :param overlay_options: keyword arguments for the overlay.
    """

    data_dir: Path
    #: Builds the overlay: ``factory(rpc, clock=, rng=, **overlay_options)``.
    overlay_factory: ClassVar[Callable[..., IRoutingOverlay]]

    _log = Logger()

    def __init__(
        self,
        port: int,
        interface: str = "127.0.0.1",
        data_dir: str | os.PathLike[str] = "data",
        bootstrap: Iterable[Address] = (),
        *,
        reactor: Any = None,
        store: IValueStore | None = None,
        quota: Quota | None = None,
        rpc_options: Mapping[str, Any] | None = None,
        node_options: Mapping[str, Any] | None = None,
        save_after: float = 5.0,
        save_every: float = 30.0,
        rejoin_after: float = 30.0,
        watch_every: float = 10.0,
        rng: random.Random | None = None,
        **overlay_options: Any,
    ) -> None:
        self.port = port
        self.interface = interface
        self.data_dir = Path(data_dir)
        # Checked here, so that a bad address fails before anything listens.
        self.bootstrap = [check_bootstrap(address) for address in bootstrap]
        self.reactor = reactor
        self.rpc_options = dict(rpc_options or {})
        self.node_options = dict(node_options or {})
        self.save_after = save_after
        self.save_every = save_every
        self.rejoin_after = rejoin_after
        self.watch_every = watch_every
        self.rng = rng if rng is not None else random.Random()
        self.overlay_options = overlay_options
        self._given_store = store
        self.quota = quota
        self._socket: NodeSocket | None = None
        self._store: IValueStore | None = None
        self._overlay: IRoutingOverlay | None = None
        self._node: DHTNode | None = None
        self._timer: IDelayedCall | None = None  # the next join attempt
        self._joining = False
        self._loops: list[task.LoopingCall] = []  # saving and watching, once joined
        self._last_contacts: list[Contact] = []
        self._saved_set: frozenset[Contact] = frozenset()  # what the file holds
        self._saved_at: float | None = None  # when it was written, this run
        self._joined = False
        self._waiting: list[defer.Deferred[int]] = []
        self._started_at = 0.0

    def make_overlay(self, rpc: RPCProtocol, clock: IReactorTime) -> IRoutingOverlay:
        """The overlay this service runs."""
        return type(self).overlay_factory(rpc, clock=clock, rng=self.rng, **self.overlay_options)

    # -- starting and stopping ----------------------------------------------------

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Open the store, listen, and start joining (see :meth:`when_joined`).

        :raises StorageError: the store in the data directory is damaged.
        :raises CannotListenError: the port is taken.
        """
        reactor = self._reactor()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = (  # an empty store is falsy (it has a length), and still the one given
            self._given_store
            if self._given_store is not None
            else SQLiteStore(self.data_dir / STORE_FILE, self.quota)
        )
        try:
            sock = open_node(reactor, self.data_dir, self.port, self.interface, **self.rpc_options)
        except BaseException:
            store.close()
            raise
        self._store, self._socket = store, sock
        self._overlay = self.make_overlay(sock.rpc, reactor)
        self._node = DHTNode(sock.rpc, self._overlay, store, clock=reactor, **self.node_options)
        self._overlay.start()
        self._node.start()
        self._started_at = reactor.seconds()
        super().startService()  # type: ignore[no-untyped-call]
        self._log.info(
            "{protocol} node {node_id} listening on {host}:{port}",
            protocol=self.protocol,
            node_id=sock.identity.node_id.hex(),
            host=sock.address[0],
            port=sock.address[1],
        )
        self._join(self.rejoin_after)

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 (Twisted's name)
        """Stop the timers, save the contacts, close the store and the port."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for loop in self._loops:
            loop.stop()
        self._loops = []
        if self._node is not None:
            self._node.stop()
        if self._overlay is not None:
            self._overlay.stop()
            self._save()
        self._node = self._overlay = None
        sock, self._socket = self._socket, None
        store, self._store = self._store, None
        closing = sock.close() if sock is not None else defer.succeed(None)

        def close_store(result: object) -> object:
            # Only once the port is closed: a datagram still being handled
            # may read the store until then.
            if store is not None:
                store.close()
            return result

        return closing.addBoth(close_store)

    def leave(self) -> defer.Deferred[None]:
        """Hand this node's records over, tell the neighbours, and stop."""

        def stop(_: object) -> defer.Deferred[None]:
            return self.stopService()

        return self.node.leave().addCallback(stop)

    # -- joining and saving ------------------------------------------------------------

    def _saved(self) -> list[Contact]:
        try:
            return read_contacts(self.data_dir / CONTACTS_FILE)
        except ContactFileError as e:
            # Only routing hints: the bootstrap list still works, and the
            # next save replaces the file.
            self._log.warn("ignoring the saved contacts: {error}", error=str(e))
            return []

    def _join(self, retry_after: float) -> None:
        overlay = self._overlay
        if overlay is None:
            return
        self._timer, self._joining = None, True
        known = list({c.node_id: c for c in self._saved() + self._last_contacts}.values())

        def join(addresses: list[Address]) -> defer.Deferred[int]:
            if self._overlay is not overlay:
                raise JoinFailed("the service stopped")
            if self.bootstrap and not addresses and not known:
                # Joining through nobody would start a network of our own.
                raise JoinFailed("none of the bootstrap hosts could be resolved")
            return overlay.join(addresses, known)

        joining = resolve(self._reactor(), self.bootstrap).addCallback(join)
        joining.addCallbacks(self._joined_with, self._join_failed, errbackArgs=(retry_after,))

    def _joined_with(self, contacts: int) -> None:
        self._joining = False
        rejoined, self._joined = self._joined, True
        if rejoined:
            self._log.info("back in the {protocol} network", protocol=self.protocol)
        elif contacts:
            self._log.info(
                "joined the {protocol} network: {contacts} contacts",
                protocol=self.protocol,
                contacts=contacts,
            )
        else:
            self._log.info(
                "no bootstrap node and no saved contacts: this node starts a {protocol} "
                "network of its own, for others to join through it",
                protocol=self.protocol,
            )
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(contacts)
        if not self._loops:
            self._loops = [self._every(self.save_after, self._save_if_changed)]
            self._loops.append(self._every(self.watch_every, self._watch))

    def _every(self, seconds: float, f: Callable[[], None]) -> task.LoopingCall:
        loop = task.LoopingCall(f)
        loop.clock = self._reactor()
        loop.start(seconds, now=False)
        return loop

    def _watch(self) -> None:
        if self._overlay is None or self._joining or self._timer is not None:
            return  # stopped, or a join is under way or due
        contacts = self._overlay.contacts()
        if contacts:
            self._last_contacts = contacts[:64]
        elif self.bootstrap or self._last_contacts:
            self._log.warn(
                "this node lost every contact: joining the {protocol} network again",
                protocol=self.protocol,
            )
            self._join(self.rejoin_after)

    def _join_failed(self, failure: Failure, retry_after: float) -> None:
        self._joining = False
        if self._overlay is None:
            return
        if not isinstance(failure.value, JoinFailed):
            self._log.failure("joining failed", failure)
        else:
            self._log.warn(
                "no bootstrap node answered; trying again in {delay:.0f} s", delay=retry_after
            )
        later = min(retry_after * 2, self.rejoin_after * 10)
        self._schedule(retry_after, self._join, later)

    def _reactor(self) -> Any:
        return self.reactor if self.reactor is not None else default_reactor()

    def _schedule(self, delay: float, f: Any, *args: Any) -> None:
        self._timer = self._reactor().callLater(delay, f, *args)

    def _save_if_changed(self) -> None:
        if self._overlay is None or frozenset(self._overlay.contacts()) == self._saved_set:
            return
        now = self._reactor().seconds()
        if self._saved_at is not None and now - self._saved_at < self.save_every:
            return  # saved moments ago: the next check after the gap writes the change
        self._save()

    def _save(self) -> None:
        if self._overlay is None:
            return
        contacts = self._overlay.contacts()
        if not contacts and self._last_contacts:
            return  # cut off for now: the last list is the better hint for a restart
        # A failed write waits for the gap too, so a full disk is not retried
        # (and warned about) every few seconds.
        self._saved_at = self._reactor().seconds()
        try:
            save_contacts(self.data_dir / CONTACTS_FILE, contacts)
        except OSError as e:
            self._log.warn("cannot save the contacts: {error}", error=str(e))
        else:
            self._saved_set = frozenset(contacts)

    def when_joined(self) -> defer.Deferred[int]:
        """Fires with the number of contacts once the node has joined."""
        if self._joined and self._overlay is not None:
            return defer.succeed(len(self._overlay.contacts()))
        d: defer.Deferred[int] = defer.Deferred()
        self._waiting.append(d)
        return d

    # -- while running ---------------------------------------------------------------

    @property
    def node(self) -> DHTNode:
        """The value layer: put, get, put_signed, get_signed (once started)."""
        if self._node is None:
            raise RuntimeError("the {} service is not running".format(self.protocol))
        return self._node

    @property
    def overlay(self) -> IRoutingOverlay:
        """The overlay's routing state and lookups (once started)."""
        if self._overlay is None:
            raise RuntimeError("the {} service is not running".format(self.protocol))
        return self._overlay

    def status(self) -> dict[str, Any]:
        """What ``/v1/status`` reports."""
        sock = self._node_socket()
        reactor = self._reactor()
        return {
            "node_id": sock.identity.node_id.hex(),
            "protocol": self.protocol,
            "address": "{}:{}".format(*sock.address),
            "contacts": len(self.overlay.contacts()),
            "values": len(self.node.store),
            "uptime_s": reactor.seconds() - self._started_at,
        }


class KademliaService(OverlayService):
    """A Kademlia node as a Twisted service.

    :param k: bucket size and replication factor.
    :param alpha: queries in flight per lookup.
    :param puzzle_bits: leading zero bits of the S/Kademlia static puzzle
        (:func:`dhtkit.identity.solves_puzzle`) that every id must solve to
        enter the routing table (0: no puzzle). A first run makes an
        identity that solves it.

    The other parameters are :class:`OverlayService`'s.
    """

    protocol = "kademlia"
    overlay_factory = KademliaOverlay

    def __init__(
        self,
        port: int,
        interface: str = "127.0.0.1",
        data_dir: str | os.PathLike[str] = "data",
        bootstrap: Iterable[Address] = (),
        k: int = 20,
        alpha: int = 3,
        puzzle_bits: int = 0,
        **options: Any,
    ) -> None:
        if not 0 <= puzzle_bits <= MAX_PUZZLE_BITS:
            raise ValueError("puzzle_bits is 0-{}".format(MAX_PUZZLE_BITS))
        self.puzzle_bits = puzzle_bits
        if puzzle_bits:
            options["puzzle_bits"] = puzzle_bits
        super().__init__(
            port,
            interface,
            data_dir,
            bootstrap,
            k=k,
            alpha=alpha,
            **options,
        )

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """As :meth:`OverlayService.startService`, with an identity that solves the puzzle."""
        path = self.data_dir / IDENTITY_FILE
        if self.puzzle_bits and not path.exists():
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            Identity.generate(puzzle_bits=self.puzzle_bits).save(path)
        super().startService()
        assert self._socket is not None
        identity = self._socket.identity
        if not solves_puzzle(identity.public_key, self.puzzle_bits):
            self._log.warn(
                "the identity {node} does not solve the {bits}-bit puzzle: nodes that ask"
                " for it will not keep this one in their tables",
                node=identity.node_id.hex(),
                bits=self.puzzle_bits,
            )


class ChordService(OverlayService):
    """A Chord node as a Twisted service.

    :param successors: the length of the successor list.

    The other parameters are :class:`OverlayService`'s.
    """

    protocol = "chord"
    overlay_factory = ChordOverlay

    def __init__(
        self,
        port: int,
        interface: str = "127.0.0.1",
        data_dir: str | os.PathLike[str] = "data",
        bootstrap: Iterable[Address] = (),
        successors: int = 16,
        **options: Any,
    ) -> None:
        super().__init__(port, interface, data_dir, bootstrap, successors=successors, **options)
