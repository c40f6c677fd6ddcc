"""Twenty PastryServices on real UDP sockets on the loopback interface."""

from __future__ import annotations

import random
from pathlib import Path

import pytest_twisted
from twisted.internet import defer, reactor, task

from dhtkit.keyspace import from_int, numerically_closest_first, ring_distance
from dhtkit.pastry import PastryOverlay
from dhtkit.service import PastryService


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
async def test_twenty_services_on_loopback_join_one_by_one_route_and_store(
    tmp_path: Path,
) -> None:
    services: list[PastryService] = []
    rng = random.Random(11)
    try:
        for n in range(20):
            through = [] if not services else [rng.choice(services).address]
            svc = PastryService(
                0,
                "127.0.0.1",
                tmp_path / "node{}".format(n),
                through,
                rng=random.Random(n),
                rpc_options={"timeout": 1.0},
            )
            svc.startService()
            services.append(svc)
            await svc.when_joined()
        overlays = [svc.overlay for svc in services]
        assert all(isinstance(o, PastryOverlay) for o in overlays)
        pastries = [o for o in overlays if isinstance(o, PastryOverlay)]
        # The last nodes' neighbours take them in once their addresses are
        # proven, a probe round trip after the announcements.
        for _ in range(100):
            if leaf_sets_right(pastries):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        assert leaf_sets_right(pastries)
        ids = [o.node_id for o in pastries]
        for i in range(20):
            key = from_int(rng.getrandbits(160))
            found = await rng.choice(pastries).lookup(key, 4)
            assert [c.node_id for c in found.contacts] == sorted(
                ids, key=numerically_closest_first(key)
            )[:4]
            assert await rng.choice(services).node.put(key, b"v%d" % i) == 4
            assert await rng.choice(services).node.get(key) == b"v%d" % i
        status = services[3].status()
        assert status["protocol"] == "pastry" and status["contacts"] >= 8
    finally:
        await defer.gatherResults([s.stopService() for s in services if s.running])
