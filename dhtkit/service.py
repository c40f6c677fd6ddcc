"""Twisted services: a node with its identity, its UDP port, its store and its overlay.

:class:`KademliaService`, :class:`ChordService` and :class:`PastryService`
share one :class:`OverlayService`: it loads the identity from the data directory,
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
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.logger import Logger

from dhtkit.bootstrap import check_bootstrap, resolve
from dhtkit.contact import Address, Contact
from dhtkit.contactfile import CONTACTS_FILE, ContactFileError, read_contacts, save_contacts
from dhtkit.gossip.service import GossipService, Peers
from dhtkit.identity import MAX_PUZZLE_BITS, Identity, solves_puzzle
from dhtkit.membership import Membership
from dhtkit.node import DHTNode
from dhtkit.nodesocket import IDENTITY_FILE, NodeService, NodeSocket, load_identity, open_node
from dhtkit.overlay import IRoutingOverlay, JoinFailed
from dhtkit.overlays import CHORD, KADEMLIA, PASTRY
from dhtkit.storage import IValueStore, Quota, SQLiteStore
from dhtkit.transport import IRPC

__all__ = [
    "IDENTITY_FILE",
    "STORE_FILE",
    "ChordService",
    "GossipService",
    "KademliaService",
    "NodeSocket",
    "OverlayService",
    "PastryService",
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
        doubles up to ten times as long while no one answers, each wait
        jittered; see :class:`~dhtkit.membership.Membership`).
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
        rng = rng if rng is not None else random.Random()
        super().__init__(
            port, interface, data_dir, reactor=reactor, rpc_options=rpc_options, rng=rng
        )
        # Checked here, so that a bad address fails before anything listens.
        self.bootstrap = [check_bootstrap(address) for address in bootstrap]
        self.node_options = dict(node_options or {})
        self.save_after = save_after
        self.save_every = save_every
        self.overlay_options = overlay_options
        self._given_store = store
        self.quota = quota
        self._store: IValueStore | None = None
        self._overlay: IRoutingOverlay | None = None
        self._node: DHTNode | None = None
        self.membership = Membership(
            self._attempt_join,
            self._cut_off,
            rng,
            rejoin_after=rejoin_after,
            watch_every=watch_every,
            on_joined=self._start_saving,
            name=self.overlay_name,
        )
        self._saving: task.LoopingCall | None = None
        self._last_contacts: list[Contact] = []
        self._saved_set: frozenset[Contact] = frozenset()  # what the file holds
        self._saved_at: float | None = None  # when it was written, this run
        self._started_at = 0.0

    def make_overlay(self, rpc: IRPC, clock: IReactorTime) -> IRoutingOverlay:
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
            else SQLiteStore(
                self.data_dir / STORE_FILE,
                self.quota,
                # The disk is waited for in a thread, where the reactor has threads.
                reactor if IReactorThreads.providedBy(reactor) else None,
            )
        )
        try:
            sock = self._open_socket()
        except BaseException:
            store.close()
            raise
        self._store = store
        self._overlay = self.make_overlay(sock.rpc, reactor)
        self._node = DHTNode(sock.rpc, self._overlay, store, clock=reactor, **self.node_options)
        self._overlay.start()
        self._node.start()
        self._started_at = reactor.seconds()
        super().startService()  # type: ignore[no-untyped-call]
        self._log.info(
            "{overlay} node {node_id} listening on {host}:{port}",
            overlay=self.overlay_name,
            node_id=sock.identity.node_id.hex(),
            host=sock.address[0],
            port=sock.address[1],
        )
        self.membership.start(reactor)

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 (Twisted's name)
        """Stop the timers, save the contacts, close the store and the port."""
        super().stopService()  # type: ignore[no-untyped-call]
        self.membership.stop()
        if self._saving is not None:
            self._saving.stop()
            self._saving = None
        if self._node is not None:
            self._node.stop()
        if self._overlay is not None:
            self._overlay.stop()
            self._save()
        self._node = self._overlay = None
        store, self._store = self._store, None
        closing = self._close_socket()

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

    def _attempt_join(self) -> defer.Deferred[int]:
        overlay = self._overlay
        if overlay is None:
            return defer.fail(JoinFailed("the service stopped"))
        known = list({c.node_id: c for c in self._saved() + self._last_contacts}.values())
        if self.bootstrap or known:
            self.node.expect_peers()  # not a network of its own: no puts until joined

        def join(addresses: list[Address]) -> defer.Deferred[int]:
            if self._overlay is not overlay:
                raise JoinFailed("the service stopped")
            if self.bootstrap and not addresses and not known:
                # Joining through nobody would start a network of our own.
                raise JoinFailed("none of the bootstrap hosts could be resolved")
            return overlay.join(addresses, known)

        return resolve(self._reactor(), self.bootstrap).addCallback(join)

    def _cut_off(self) -> bool:
        if self._overlay is None:
            return False
        contacts = self._overlay.contacts()
        if contacts:
            self._last_contacts = contacts[:64]
            return False
        return bool(self.bootstrap or self._last_contacts)

    def _start_saving(self, contacts: int) -> None:
        if self._saving is None:
            self._saving = task.LoopingCall(self._save_if_changed)
            self._saving.clock = self._reactor()
            self._saving.start(self.save_after, now=False)

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
        """Fires with the number of contacts once the node has joined since
        it was last started."""
        if self.membership.joined_this_run and self._overlay is not None:
            return defer.succeed(len(self._overlay.contacts()))
        return self.membership.when_joined()

    # -- while running ---------------------------------------------------------------

    @property
    def node(self) -> DHTNode:
        """The value layer: put, get, put_signed, get_signed (once started)."""
        if self._node is None:
            raise RuntimeError("the {} service is not running".format(self.overlay_name))
        return self._node

    @property
    def overlay(self) -> IRoutingOverlay:
        """The overlay's routing state and lookups (once started)."""
        if self._overlay is None:
            raise RuntimeError("the {} service is not running".format(self.overlay_name))
        return self._overlay

    def status(self) -> dict[str, Any]:
        """What ``/v1/status`` reports."""
        sock = self.socket
        reactor = self._reactor()
        return {
            "node_id": sock.identity.node_id.hex(),
            "public_key": sock.identity.public_key.hex(),
            "protocol": self.overlay_name,
            "address": "{}:{}".format(*sock.address),
            "contacts": len(self.overlay.contacts()),
            "values": len(self.node.store),
            "uptime_s": reactor.seconds() - self._started_at,
        }


class KademliaService(OverlayService):
    """A Kademlia node as a Twisted service.

    :param k: bucket size and replication factor (default 20).
    :param alpha: queries in flight per lookup (default 3).
    :param puzzle_bits: leading zero bits of the S/Kademlia static puzzle
        (:func:`dhtkit.identity.solves_puzzle`) that every id must solve to
        enter the routing table (0: no puzzle). A first run makes an
        identity that solves it.

    The other parameters are :class:`OverlayService`'s.
    """

    overlay_name = KADEMLIA.name
    overlay_factory = KADEMLIA.factory

    def __init__(
        self,
        port: int,
        interface: str = "127.0.0.1",
        data_dir: str | os.PathLike[str] = "data",
        bootstrap: Iterable[Address] = (),
        *,
        puzzle_bits: int = 0,
        **options: Any,
    ) -> None:
        if not 0 <= puzzle_bits <= MAX_PUZZLE_BITS:
            raise ValueError("puzzle_bits is 0-{}".format(MAX_PUZZLE_BITS))
        self.puzzle_bits = puzzle_bits
        if puzzle_bits:
            options["puzzle_bits"] = puzzle_bits
        super().__init__(port, interface, data_dir, bootstrap, **options)

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

    :param successors: the length of the successor list (default 16).
    :param k: how many nodes hold each key (default ``min(4, successors)``).

    The other parameters are :class:`OverlayService`'s; the rest of the
    keyword arguments are :class:`~dhtkit.chord.ChordOverlay`'s.
    """

    overlay_name = CHORD.name
    overlay_factory = CHORD.factory


class PastryService(OverlayService):
    """A Pastry node as a Twisted service.

    :param leaf_size: ``l``, leaf-set members on each side (default 8).
    :param digit_bits: ``b``, bits per digit of the routing table (1, 2 or 4; default 4).
    :param k: how many nodes hold each key (default ``min(4, leaf_size)``).

    The other parameters are :class:`OverlayService`'s; the rest of the
    keyword arguments are :class:`~dhtkit.pastry.PastryOverlay`'s.
    """

    overlay_name = PASTRY.name
    overlay_factory = PASTRY.factory
