"""Pastry on real UDP sockets on the loopback interface."""

from __future__ import annotations

import random
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor, task

from dhtkit.identity import Identity
from dhtkit.keyspace import from_int, numerically_closest_first, ring_distance
from dhtkit.node import DHTNode
from dhtkit.pastry import PastryOverlay
from dhtkit.rpc import RPCProtocol
from dhtkit.storage import MemoryStore


def leaf_sets_right(overlays: list[PastryOverlay]) -> bool:
    ids = [o.node_id for o in overlays]
    for o in overlays:
        others = [i for i in ids if i != o.node_id]
        up = sorted(others, key=lambda i: ring_distance(o.node_id, i))[:8]
        down = sorted(others, key=lambda i: ring_distance(i, o.node_id))[:8]
        leaves = o.state.leafset
        if [c.node_id for c in leaves.above] != up or [c.node_id for c in leaves.below] != down:
            return False
    return True


@pytest_twisted.ensureDeferred
async def test_twenty_nodes_on_loopback_join_one_by_one_route_and_store() -> None:
    overlays: list[PastryOverlay] = []
    nodes: list[DHTNode] = []
    ports: list[Any] = []
    rng = random.Random(11)
    try:
        for _ in range(20):
            rpc = RPCProtocol(Identity.generate(), reactor, timeout=1.0)
            ports.append(reactor.listenUDP(0, rpc, interface="127.0.0.1"))
            overlay = PastryOverlay(rpc)
            node = DHTNode(rpc, overlay, MemoryStore())
            overlay.start()
            node.start()
            through = [] if not overlays else [rng.choice(overlays).rpc.contact.address]
            await overlay.join(through)
            overlays.append(overlay)
            nodes.append(node)
        # The last nodes' neighbours take them in once their addresses are
        # proven, a probe round trip after the announcements.
        for _ in range(100):
            if leaf_sets_right(overlays):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        assert leaf_sets_right(overlays)
        ids = [o.node_id for o in overlays]
        for i in range(20):
            key = from_int(rng.getrandbits(160))
            found = await rng.choice(overlays).lookup(key, 4)
            assert [c.node_id for c in found.contacts] == sorted(
                ids, key=numerically_closest_first(key)
            )[:4]
            assert await rng.choice(nodes).put(key, b"v%d" % i) == 4
            assert await rng.choice(nodes).get(key) == b"v%d" % i
    finally:
        for node, overlay in zip(nodes, overlays, strict=False):
            node.stop()
            overlay.stop()
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])
