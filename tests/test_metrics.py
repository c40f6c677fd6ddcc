"""Metrics: the histogram, the families read from real nodes, and docs/metrics.rst against them.

Every exposition here is read with ``prometheus_client``'s own parser.
"""

from __future__ import annotations

import csv
import math
import random
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
import treq
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from twisted.internet import defer, reactor, task
from twisted.web.client import HTTPConnectionPool

from dhtkit import __version__
from dhtkit.gossip.config import GossipConfig
from dhtkit.gossip.service import GossipService
from dhtkit.keyspace import from_int, key_for
from dhtkit.metrics import (
    CONTENT_TYPE,
    FAMILIES,
    HOP_BOUNDS,
    OVERLAY,
    Histogram,
    Source,
    node_registry,
    render,
)
from dhtkit.service import ChordService, KademliaService, OverlayService
from dhtkit.sim.overlays import OverlayNetwork
from dhtkit.web import make_api_factory

DOCS = Path(__file__).resolve().parent.parent / "docs" / "metrics.rst"


@attrs.frozen
class Family:
    """One family of an exposition, as the library's parser read it."""

    type: str
    help: str
    samples: list[Sample]

    def value(self, **labels: str) -> float:
        return next(s.value for s in self.samples if s.labels == labels)

    def suffix(self, suffix: str) -> float:
        return next(s.value for s in self.samples if s.name.endswith(suffix))

    def labels(self) -> set[str]:
        return {name for s in self.samples for name in s.labels if name != "le"}


def parse(text: str) -> dict[str, Family]:
    """Every family of ``text`` by the name a query uses (``_total`` on counters)."""
    families: dict[str, Family] = {}
    for f in text_string_to_metric_families(text):
        name = f.name + "_total" if f.type == "counter" else f.name
        assert name not in families, "family {} written twice".format(name)
        families[name] = Family(f.type, f.documentation, list(f.samples))
    return families


# -- Histogram ----------------------------------------------------------------------------------


def test_a_value_falls_in_the_first_bucket_whose_bound_it_does_not_exceed() -> None:
    h = Histogram((1, 2, 5))
    for value in (0, 1, 1.5, 2, 5, 7, 100):
        h.observe(value)
    assert h.buckets() == [(1.0, 2), (2.0, 4), (5.0, 5), (math.inf, 7)]
    assert h.count == 7
    assert h.sum == pytest.approx(116.5)


def test_an_empty_histogram_has_zero_buckets_ending_in_inf() -> None:
    h = Histogram()
    assert h.bounds == tuple(float(b) for b in HOP_BOUNDS)
    assert h.buckets() == [(float(b), 0) for b in HOP_BOUNDS] + [(math.inf, 0)]
    assert (h.count, h.sum) == (0, 0.0)


def test_histograms_do_not_share_counts() -> None:
    a, b = Histogram(), Histogram()
    a.observe(3)
    assert a.count == 1 and b.count == 0
    assert b.buckets()[-1] == (math.inf, 0)


def test_refuses_nan_and_bounds_that_are_not_increasing_and_finite() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Histogram().observe(math.nan)
    for bounds in ((1, 1), (2, 1), (1, math.inf), (math.nan,)):
        with pytest.raises(ValueError):
            Histogram(bounds)


# -- reading stats() ------------------------------------------------------------------------------


def read(source: Source, stats: dict[str, int]) -> dict[str, Family]:
    """``source.read(stats)`` through the library's text writer and parser."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    class One:
        def collect(self) -> Any:
            return source.read(stats, "test")

    registry = CollectorRegistry()
    registry.register(One())
    return parse(generate_latest(registry).decode())


def test_causes_become_a_reason_label_and_their_sum_is_not_exported() -> None:
    rpc = Source("x")
    rpc.skip.add("dropped")
    rpc.by_reason("dropped", "Dropped, by reason.", prefix="dropped_")
    rpc.counter("received", "Received.")
    families = read(rpc, {"received": 9, "dropped": 5, "dropped_bad_auth": 2, "dropped_self": 3})
    assert set(families) == {"x_received_total", "x_dropped_total"}
    dropped = families["x_dropped_total"]
    assert dropped.type == "counter"
    assert dropped.value(reason="bad_auth") == 2
    assert dropped.value(reason="self") == 3


def test_several_keys_can_share_one_family_by_reason() -> None:
    table = Source("t", reported=False)
    table.by_reason("removed", "Removed, by reason.", keys={"evictions": "evicted", "gone": "left"})
    families = read(table, {"evictions": 4})
    assert [(s.labels, s.value) for s in families["t_removed_total"].samples] == [
        ({"reason": "evicted"}, 4.0)
    ]


def test_a_key_ending_in_total_gets_total_once() -> None:
    overlay = Source("o", reported=False)
    overlay.counter("hops_total", "Hops.")
    assert set(read(overlay, {"hops_total": 7})) == {"o_hops_total"}


def test_reported_keys_start_at_zero_and_the_overlays_only_when_present() -> None:
    values = Source("v")
    values.counter("puts", "Puts.")
    assert read(values, {})["v_puts_total"].value() == 0
    overlay = Source("o", reported=False)
    overlay.counter("fingers_fixed", "Fixed.")
    assert read(overlay, {}) == {}


def test_a_stat_not_described_is_exported_untyped_rather_than_lost() -> None:
    families = read(Source("s"), {"brand_new": 3, "odd key!": 1})
    assert families["s_brand_new"].type == "unknown"
    assert families["s_brand_new"].value() == 3
    assert families["s_odd_key_"].value() == 1


def test_every_family_is_declared_once_with_a_help_text_of_its_own() -> None:
    helps = [f.help for f in FAMILIES.values()]
    assert len(set(helps)) == len(helps)
    for family in FAMILIES.values():
        assert family.help.endswith("."), family.name
        assert not family.name.endswith("_total"), family.name


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


# -- the overlays' hop histograms ----------------------------------------------------------------


@pytest.mark.parametrize(("kind", "hops"), [("kademlia", "lookup_hops"), ("chord", "hops_total")])
def test_each_overlay_counts_every_lookup_in_its_hop_histogram(kind: str, hops: str) -> None:
    net = OverlayNetwork(kind, seed=3)
    net.grow(30, batch=10)
    rng = random.Random(4)
    asker = net.nodes[5].overlay
    before = asker.hop_histogram.count
    found: list[Any] = [
        net.wait(asker.lookup(from_int(rng.getrandbits(160)), 3)) for _ in range(10)
    ]
    histogram = asker.hop_histogram
    assert histogram.count == before + 10
    assert sum(f.hops for f in found) > 0
    for node in net.nodes:
        stats = node.overlay.stats()
        h = node.overlay.hop_histogram
        assert (h.count, h.sum) == (stats["lookups"], stats[hops])


# -- docs/metrics.rst against real nodes --------------------------------------------------------


@attrs.frozen
class Documented:
    name: str
    type: str
    labels: frozenset[str]
    where: frozenset[str]
    meaning: str


def documented() -> dict[str, Documented]:
    """The rows of the csv-table of docs/metrics.rst, by metric name."""
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    start = lines.index(".. csv-table::") + 1
    rows: list[str] = []
    for line in lines[start:]:
        if line and not line.startswith("   "):
            break
        if line.strip() and not line.strip().startswith(":"):
            rows.append(line.strip())
    table: dict[str, Documented] = {}
    for name, kind, labels, where, meaning in csv.reader(rows):
        assert name not in table, "{} is listed twice".format(name)
        table[name] = Documented(
            name,
            kind,
            frozenset(label.strip() for label in labels.split(",") if label.strip()),
            frozenset(w.strip() for w in where.split(",")),
            meaning,
        )
    return table


def expected_on(table: dict[str, Documented], overlay: str, gossip: bool) -> set[str]:
    wanted = {"all", overlay} | ({"gossip"} if gossip else set())
    if sys.platform == "linux":
        wanted.add("process")
    return {name for name, row in table.items() if row.where & wanted}


def compare(scraped: dict[str, Family], table: dict[str, Documented]) -> None:
    for name, family in scraped.items():
        assert name in table, "{} is exported but not in docs/metrics.rst".format(name)
        row = table[name]
        assert family.type == row.type, name
        if family.samples:
            assert family.labels() == row.labels, name
        if name.startswith("dhtkit_"):
            assert family.help == row.meaning, name
        for sample in family.samples:
            reason = sample.labels.get("reason")
            if reason is not None:
                assert reason in row.meaning, "{}: reason {} undocumented".format(name, reason)


async def scrape(api: Any, token: str, pool: HTTPConnectionPool) -> tuple[int, str, str]:
    url = "http://127.0.0.1:{}/metrics".format(api.getHost().port)
    headers = {"Authorization": "Bearer " + token} if token else {}
    response = await treq.get(url, headers=headers, pool=pool)
    body = await treq.content(response)
    content_type = response.headers.getRawHeaders(b"content-type", [b""])[0].decode()
    return response.code, content_type, body.decode("utf-8")


@pytest.mark.parametrize("cls", [KademliaService, ChordService])
@pytest_twisted.ensureDeferred
async def test_docs_list_exactly_what_a_real_node_exports(
    tmp_path: Path, cls: type[OverlayService]
) -> None:
    """A node with gossip and a token-protected API, scraped as Prometheus does."""
    services = await start_three(tmp_path, cls)
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
    finally:
        await api.stopListening()
        await rider.stopService()
        await defer.gatherResults([s.stopService() for s in services])
        await pool.closeCachedConnections()


def test_docs_list_exactly_what_a_pastry_overlay_exports() -> None:
    # No service runs Pastry yet: its overlay's stats, read as a node would.
    net = OverlayNetwork("pastry", seed=3)
    net.grow(10, batch=10)
    scraped = read(OVERLAY, net.nodes[2].overlay.stats())
    table = documented()
    compare(scraped, table)
    overlay_rows = {
        n for n in expected_on(table, "pastry", False) if n.startswith("dhtkit_overlay")
    }
    assert set(scraped) == overlay_rows


def test_every_declared_family_is_documented_and_every_documented_one_declared() -> None:
    table = documented()
    declared = {f.sample_name for f in FAMILIES.values()}
    assert declared == {name for name in table if name.startswith("dhtkit_")}
    for family in FAMILIES.values():
        row = table[family.sample_name]
        assert (row.type, row.labels, row.meaning) == (
            family.kind,
            frozenset(family.labels),
            family.help,
        )
