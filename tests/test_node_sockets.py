"""The value layer on real UDP sockets on the loopback interface."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor

from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.node import DHTNode
from dhtkit.overlay import StaticOverlay
from dhtkit.rpc import RPCProtocol
from dhtkit.storage import SQLiteStore


@pytest_twisted.ensureDeferred
async def test_nodes_on_loopback_put_and_get_through_sqlite(tmp_path: Path) -> None:
    overlay = StaticOverlay(k=3)
    nodes: list[DHTNode] = []
    ports: list[Any] = []
    try:
        for n in range(6):
            rpc = RPCProtocol(Identity.generate(), reactor)
            ports.append(reactor.listenUDP(0, rpc, interface="127.0.0.1"))
            store = SQLiteStore(tmp_path / "node{}.sqlite".format(n))
            node = DHTNode(rpc, overlay, store)
            node.start()
            nodes.append(node)
            assert rpc.contact is not None
            overlay.add(rpc.contact)
        key = key_for("loopback")
        assert await nodes[0].put(key, b"over real sockets") == 3
        for node in nodes:
            assert await node.get(key) == b"over real sockets"
        await nodes[1].put_signed(b"v1", salt=b"s")
        await nodes[1].put_signed(b"v2", salt=b"s")
        found = await nodes[5].get_signed(nodes[1].identity.public_key, b"s")
        assert found is not None and (found.seq, found.value) == (2, b"v2")
        holders = sum(1 for node in nodes if node.store.get(key) is not None)
        assert holders >= 3
    finally:
        for node in nodes:
            node.stop()
            node.store.close()
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])
