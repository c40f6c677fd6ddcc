"""Value-layer nodes on the virtual network, over a full-mesh overlay."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from dhtkit.identity import Identity
from dhtkit.node import DHTNode
from dhtkit.overlay import StaticOverlay
from dhtkit.rpc import RPCProtocol
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.latency import ConstantLatency
from dhtkit.sim.network import VirtualNetwork
from dhtkit.storage import IValueStore, MemoryStore

START = 1_800_000_000.0


class Cluster:
    """``count`` members that all know each other, plus any clients added."""

    def __init__(
        self,
        count: int,
        seed: int = 1,
        make_store: Callable[[], IValueStore] = MemoryStore,
        **node_options: Any,
    ) -> None:
        self.clock = HeapClock(now=START)
        self.network = VirtualNetwork(self.clock, latency=ConstantLatency(0.01), seed=seed)
        self.rng = random.Random(seed)
        self.overlay = StaticOverlay(k=node_options.pop("k", 20))
        self.node_options = node_options
        self.make_store = make_store
        self.nodes: list[DHTNode] = []
        self.ports: dict[str, Any] = {}
        self.shut: list[DHTNode] = []
        for _ in range(count):
            node = self.add_node()
            assert node.rpc.contact is not None
            self.overlay.add(node.rpc.contact)

    def add_node(
        self,
        overlay: StaticOverlay | None = None,
        store: IValueStore | None = None,
        identity: Identity | None = None,
        host: str | None = None,
    ) -> DHTNode:
        """A node on a new host, over ``overlay`` (the members' by default).

        It is not a member until its contact is added to the overlay. With
        ``identity`` and ``host`` it is an old node started again.
        """
        n = len(self.nodes)
        if host is None:
            host = "10.77.{}.{}".format(n // 250, n % 250 + 1)
        reactor = self.network.reactor_for(host)
        rpc = RPCProtocol(
            identity if identity is not None else Identity(self.rng.randbytes(32)),
            reactor,
            timeout=1.0,
            rng=random.Random(self.rng.random()),
        )
        self.ports[host] = reactor.listenUDP(4000, rpc)
        node = DHTNode(
            rpc,
            overlay if overlay is not None else self.overlay,
            store if store is not None else self.make_store(),
            **self.node_options,
        )
        node.start()
        self.nodes.append(node)
        return node

    def shut_down(self, node: DHTNode) -> None:
        """Stop ``node`` as a process exit would: timers, socket, store."""
        node.stop()
        assert node.rpc.contact is not None
        self.ports.pop(node.rpc.contact.address[0]).stopListening()
        node.store.close()
        self.shut.append(node)

    def client(self) -> DHTNode:
        """A node that uses the members but is not one of them."""
        return self.add_node(overlay=self.overlay)

    def wait(self, d: defer.Deferred[Any], limit: float = 60.0) -> Any:
        """Run the clock until ``d`` fires; its result, or raise its failure."""
        results: list[Any] = []
        d.addBoth(results.append)
        end = self.clock.seconds() + limit
        while not results and self.clock.seconds() < end:
            self.clock.run_until(self.clock.seconds() + 0.05)
        assert results, "nothing happened within {} s".format(limit)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def advance(self, seconds: float, step: float = 60.0) -> None:
        """Let ``seconds`` pass, in steps so that timers fire along the way."""
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end:
            self.clock.run_until(min(end, self.clock.seconds() + step))

    def holders(self, key: bytes) -> list[DHTNode]:
        """The running nodes whose stores hold ``key``."""
        return [n for n in self.nodes if n not in self.shut and n.store.get(key) is not None]
