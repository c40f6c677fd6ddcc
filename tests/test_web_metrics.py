"""GET /metrics of real nodes: counters that move, reasons, process metrics, and the docs.

Every exposition here is read with ``prometheus_client``'s own parser.
"""

from __future__ import annotations

import random
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from prometheus_client import REGISTRY
from twisted.internet import defer, reactor, task
from twisted.web.client import HTTPConnectionPool

from dhtkit import __version__
from dhtkit.gossip.config import GossipConfig
from dhtkit.gossip.service import GossipService
from dhtkit.keyspace import key_for
from dhtkit.overlay import LOOKUP_COUNTERS
from dhtkit.overlays import OVERLAYS
from dhtkit.service import KademliaService, OverlayService
from dhtkit.web import make_api_factory
from dhtkit.web.metrics import CONTENT_TYPE, node_registry, render
from tests.test_web_families import compare, documented, expected_on, parse

# -- real nodes ---------------------------------------------------------------------------------


async def start_three(tmp_path: Path, cls: type[OverlayService] = KademliaService) -> list[Any]:
    services: list[OverlayService] = []
    for n in range(3):
        bootstrap = [services[0].address] if services else []
        svc = cls(
            0,
            "127.0.0.1",
            tmp_path / "node{}".format(n),
            bootstrap,
            rpc_options={"timeout": 0.5},
            rng=random.Random(n),
        )
        svc.startService()
        services.append(svc)
        await svc.when_joined()
    return services


@pytest_twisted.async_yield_fixture
async def three(tmp_path: Path) -> AsyncIterator[list[OverlayService]]:
    services = await start_three(tmp_path)
    try:
        yield services
    finally:
        await defer.gatherResults([s.stopService() for s in services])


@pytest_twisted.ensureDeferred
async def test_a_node_reports_its_counters_and_they_move_with_traffic(
    three: list[OverlayService],
) -> None:
    svc = three[0]
    before = parse(render(svc))
    [info] = before["dhtkit_node_info"].samples
    assert info.labels == {
        "node_id": svc.identity.node_id.hex(),
        "protocol": "kademlia",
        "version": __version__,
    }
    assert before["dhtkit_routing_contacts"].value() == 2
    assert before["dhtkit_rpc_sent_total"].type == "counter"
    assert before["dhtkit_uptime_seconds"].type == "gauge"
    await svc.node.put(key_for("k"), b"value")
    assert await three[1].node.get(key_for("k")) == b"value"
    assert await svc.node.get(key_for("k")) == b"value"
    after = parse(render(svc))

    def grew(name: str, suffix: str | None = None) -> float:
        if suffix is not None:
            return after[name].suffix(suffix) - before[name].suffix(suffix)
        return after[name].value() - before[name].value()

    assert grew("dhtkit_values_puts_total") == 1
    assert grew("dhtkit_values_gets_total") == 1
    assert grew("dhtkit_store_records") == 1
    assert grew("dhtkit_store_bytes") > 0
    assert grew("dhtkit_rpc_sent_total") > 0
    assert after["dhtkit_lookup_hops"].type == "histogram"
    assert grew("dhtkit_lookup_hops", "_count") == 2  # the put's lookup and the get's
    assert grew("dhtkit_overlay_lookups_total") == 2
    assert after["dhtkit_lookup_hops"].suffix("_sum") == (
        after["dhtkit_overlay_lookup_hops_total"].value()
    )


@pytest_twisted.ensureDeferred
async def test_a_dropped_datagram_is_counted_under_its_reason(
    three: list[OverlayService],
) -> None:
    svc = three[0]
    before = parse(render(svc))["dhtkit_rpc_dropped_total"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"\x82garbage", svc.address)
    for _ in range(200):
        if svc.rpc.stats()["dropped_malformed"]:
            break
        await task.deferLater(reactor, 0.01, lambda: None)
    families = parse(render(svc))
    after = families["dhtkit_rpc_dropped_total"]
    assert after.value(reason="malformed") == before.value(reason="malformed") + 1
    assert after.value(reason="bad_auth") == before.value(reason="bad_auth")
    # No cause is built into a name, and the sum is the query's to make.
    assert not [name for name in families if re.search("dropped_(?!total$)", name)]


@pytest_twisted.ensureDeferred
async def test_events_are_counters_and_levels_gauges(three: list[OverlayService]) -> None:
    families = parse(render(three[0]))
    # "removed" was typed gauge once: it is a count of contacts removed.
    assert families["dhtkit_overlay_contacts_removed_total"].type == "counter"
    assert families["dhtkit_rpc_sessions"].type == "gauge"
    assert families["dhtkit_overlay_buckets"].type == "gauge"
    for name, family in families.items():
        if family.type == "counter":
            assert name.endswith("_total") and not name.endswith("_total_total"), name


@pytest.mark.skipif(sys.platform != "linux", reason="process_* is read from /proc")
@pytest_twisted.ensureDeferred
async def test_the_process_metrics_are_there(three: list[OverlayService]) -> None:
    families = parse(render(three[0]))
    assert families["process_resident_memory_bytes"].value() > 0
    assert families["process_cpu_seconds_total"].type == "counter"
    assert families["process_open_fds"].value() > 0


@pytest_twisted.ensureDeferred
async def test_nodes_in_one_process_keep_registries_of_their_own(
    three: list[OverlayService],
) -> None:
    ids = set()
    for svc in three:
        [info] = parse(render(svc))["dhtkit_node_info"].samples
        ids.add(info.labels["node_id"])
    assert ids == {svc.identity.node_id.hex() for svc in three}
    a, b = node_registry(three[0]), node_registry(three[0])
    assert a is not b
    # The library's global registry is left to the application.
    assert not [m for m in REGISTRY.collect() if m.name.startswith("dhtkit")]


@pytest_twisted.ensureDeferred
async def test_gossip_counters_are_added_when_a_gossip_protocol_is_given(
    three: list[OverlayService],
) -> None:
    svc = three[0]
    assert not [name for name in parse(render(svc)) if name.startswith("dhtkit_gossip")]
    rider = GossipService.riding_on(svc, svc.overlay.contacts, config=GossipConfig(period=0.05))
    rider.startService()
    try:
        rider.publish("news", b"hello")
        families = parse(render(svc, rider))
        assert families["dhtkit_gossip_published_total"].value() == 1
        assert families["dhtkit_gossip_updates"].type == "gauge"
        assert families["dhtkit_gossip_updates"].value() == 1
        assert families["dhtkit_gossip_removed_total"].type == "counter"
        assert families["dhtkit_gossip_dropped_total"].value(reason="forged") == 0
    finally:
        await rider.stopService()


async def scrape(api: Any, token: str, pool: HTTPConnectionPool) -> tuple[int, str, str]:
    url = "http://127.0.0.1:{}/metrics".format(api.getHost().port)
    headers = {"Authorization": "Bearer " + token} if token else {}
    response = await treq.get(url, headers=headers, pool=pool)
    body = await treq.content(response)
    content_type = response.headers.getRawHeaders(b"content-type", [b""])[0].decode()
    return response.code, content_type, body.decode("utf-8")


@pytest.mark.parametrize("kind", sorted(OVERLAYS))
@pytest_twisted.ensureDeferred
async def test_docs_list_exactly_what_a_real_node_exports(tmp_path: Path, kind: str) -> None:
    """A node with gossip and a token-protected API, scraped as Prometheus does."""
    services = await start_three(tmp_path, OVERLAYS[kind].service())
    await services[0].overlay.lookup(key_for("x"), 1)
    svc = services[0]
    rider = GossipService.riding_on(svc, svc.overlay.contacts, config=GossipConfig(period=0.05))
    rider.startService()
    api = reactor.listenTCP(
        0, make_api_factory(svc, token="s3cret", gossip=rider), interface="127.0.0.1"
    )
    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        code, _, _ = await scrape(api, "", pool)
        assert code == 401
        code, content_type, text = await scrape(api, "s3cret", pool)
        assert code == 200
        assert content_type == CONTENT_TYPE
        scraped = parse(text)
        table = documented()
        compare(scraped, table)
        protocol = svc.status()["protocol"]
        missing = expected_on(table, str(protocol), gossip=True) - set(scraped)
        assert not missing, "documented for {} but not exported: {}".format(protocol, missing)
        # Every overlay counts its lookups under the same names.
        for counter in LOOKUP_COUNTERS:
            assert "dhtkit_overlay_{}_total".format(counter) in scraped
        assert scraped["dhtkit_overlay_lookups_total"].samples[0].value >= 1
    finally:
        await api.stopListening()
        await rider.stopService()
        await defer.gatherResults([s.stopService() for s in services])
        await pool.closeCachedConnections()
