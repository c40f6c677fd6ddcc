"""Metrics: the exposition text (checked by a strict parser), and real counters."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer

from dhtkit import __version__
from dhtkit.histogram import Histogram
from dhtkit.keyspace import from_int, key_for
from dhtkit.metrics import (
    Exposition,
    escape_label,
    format_value,
    metric_name,
    render,
)
from dhtkit.overlay import LOOKUP_COUNTERS
from dhtkit.overlays import OVERLAYS
from dhtkit.service import KademliaService, OverlayService
from dhtkit.sim.overlays import OverlayNetwork

# -- a strict reader of the text format 0.0.4 ------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"({})(?:\{{(.*)\}})? (\S+)".format(_NAME))
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
_COMMENT = re.compile(r"# (HELP|TYPE) ({}) ?(.*)".format(_NAME))
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("",), "gauge": ("",)}


@attrs.define
class Family:
    help: str | None = None
    type: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = attrs.Factory(list)

    def value(self, **labels: str) -> float:
        return next(v for name, ls, v in self.samples if ls == labels and "_bucket" not in name)

    def by_suffix(self, suffix: str) -> list[tuple[dict[str, str], float]]:
        return [(ls, v) for name, ls, v in self.samples if name.endswith(suffix)]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL.match(text, position)
        assert match is not None, "bad labels: {!r}".format(text)
        assert match.group(1) not in labels, "label repeated: {!r}".format(text)
        labels[match.group(1)] = _unescape(match.group(2))
        position = match.end()
    return labels


def _family_of(name: str, families: dict[str, Family]) -> str:
    for family, info in families.items():
        assert info.type is not None
        if any(name == family + suffix for suffix in _SUFFIXES[info.type]):
            return family
    raise AssertionError("sample {} before its HELP and TYPE".format(name))


def parse(text: str) -> dict[str, Family]:
    """Every family of ``text``; fails on anything the format does not allow."""
    assert text.endswith("\n")
    families: dict[str, Family] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for line in text[:-1].split("\n"):
        comment = _COMMENT.fullmatch(line)
        if comment is not None:
            kind, name, rest = comment.groups()
            family = families.setdefault(name, Family())
            assert not family.samples, "{} after the samples of {}".format(kind, name)
            if kind == "HELP":
                assert family.help is None and family.type is None
                family.help = rest
            else:
                assert family.help is not None and family.type is None
                assert rest in _SUFFIXES
                family.type = rest
            continue
        sample = _SAMPLE.fullmatch(line)
        assert sample is not None, "not a sample line: {!r}".format(line)
        name, label_text, value = sample.groups()
        labels = _labels(label_text or "")
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, "sample repeated: {}".format(line)
        seen.add(key)
        families[_family_of(name, families)].samples.append((name, labels, float(value)))
    for name, family in families.items():
        assert family.help is not None and family.type is not None and family.samples, name
        if family.type == "counter":
            assert name.endswith("_total")
        if family.type == "histogram":
            _check_histogram(name, family)
    return families


def _check_histogram(name: str, family: Family) -> None:
    buckets = family.by_suffix("_bucket")
    bounds = [float(labels["le"]) for labels, _ in buckets]
    counts = [count for _, count in buckets]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), name
    assert bounds[-1] == math.inf
    assert counts == sorted(counts), "buckets of {} are not cumulative".format(name)
    [(_, total)] = family.by_suffix("_count")
    [(_, _sum)] = family.by_suffix("_sum")
    assert counts[-1] == total


# -- the text format ----------------------------------------------------------------------------


def test_values_are_written_as_prometheus_reads_them() -> None:
    assert [format_value(v) for v in (3, 3.0, 0.25, math.inf, -math.inf)] == [
        "3",
        "3",
        "0.25",
        "+Inf",
        "-Inf",
    ]
    assert format_value(math.nan) == "NaN"
    assert float(format_value(1e300)) == 1e300


def test_names_and_label_values_are_made_safe() -> None:
    assert (
        metric_name("dhtkit_rpc", "dropped-bad.auth", "total")
        == "dhtkit_rpc_dropped_bad_auth_total"
    )
    assert metric_name("9lives") == "_9lives"
    assert escape_label('a "b" \\ c\nd') == 'a \\"b\\" \\\\ c\\nd'


def test_the_exposition_parses_with_escaped_labels_and_one_family_per_name() -> None:
    out = Exposition()
    out.sample("x_info", "gauge", "Help with a \\ and\na newline.", 1, {"v": 'q"\\\n'})
    out.sample("x_info", "gauge", "Again.", 2)  # the same name: kept once
    out.stats("x", "Source:", {"sessions": 4, "sent": 9, "weird key!": 1})
    h = Histogram((1, 2))
    h.observe(2)
    out.histogram("x_hops", "Hops.", h)
    families = parse(out.text())
    assert families["x_info"].samples == [("x_info", {"v": 'q"\\\n'}, 1.0)]
    assert families["x_info"].help == "Help with a \\\\ and\\na newline."
    assert families["x_sessions"].type == "gauge"
    assert families["x_sent_total"].type == "counter"
    assert families["x_weird_key__total"].value() == 1
    assert families["x_hops"].by_suffix("_bucket") == [
        ({"le": "1"}, 0),
        ({"le": "2"}, 1),
        ({"le": "+Inf"}, 1),
    ]


def test_the_strict_reader_refuses_what_the_format_does_not_allow() -> None:
    bad = [
        "x 1\n",  # a sample without HELP and TYPE
        "# HELP x h\n# TYPE x gauge\nx{a=1} 1\n",  # an unquoted label value
        "# HELP x h\n# TYPE x gauge\nx 1\n# HELP x again\n",
        "# HELP x_total h\n# TYPE x_total counter\nx_total 1\nx_total 2\n",
        '# HELP h h\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\n'
        "h_sum 1\nh_count 1\n",
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            parse(text)


# -- a real node's metrics ------------------------------------------------------------------------


async def start_three(
    tmp_path: Path, cls: type[OverlayService] = KademliaService
) -> list[OverlayService]:
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


@pytest_twisted.ensureDeferred
async def test_a_node_reports_its_counters_and_they_move_with_traffic(tmp_path: Path) -> None:
    services = await start_three(tmp_path)
    try:
        svc = services[0]
        before = parse(render(svc))
        assert before["dhtkit_node_info"].samples[0][1] == {
            "node_id": svc.identity.node_id.hex(),
            "protocol": "kademlia",
            "version": __version__,
        }
        assert before["dhtkit_routing_contacts"].value() == 2
        for family in (
            "dhtkit_rpc_sent_total",
            "dhtkit_overlay_lookups_total",
            "dhtkit_uptime_seconds",
        ):
            assert family in before
        await svc.node.put(key_for("k"), b"value")
        assert await services[1].node.get(key_for("k")) == b"value"
        assert await svc.node.get(key_for("k")) == b"value"
        after = parse(render(svc))

        def grew(name: str, suffix: str = "") -> float:
            if suffix:
                return after[name].by_suffix(suffix)[0][1] - before[name].by_suffix(suffix)[0][1]
            return after[name].value() - before[name].value()

        assert grew("dhtkit_values_puts_total") == 1
        assert grew("dhtkit_values_gets_total") == 1
        assert grew("dhtkit_store_records") == 1
        assert grew("dhtkit_store_bytes") > 0
        assert grew("dhtkit_rpc_sent_total") > 0
        assert grew("dhtkit_lookup_hops", "_count") == 2  # the put's lookup and the get's
        assert grew("dhtkit_overlay_lookups_total") == 2
        assert after["dhtkit_lookup_hops"].by_suffix("_sum")[0][1] == (
            after["dhtkit_overlay_lookup_hops_total"].value()
        )
    finally:
        await defer.gatherResults([s.stopService() for s in services])


class FakeGossip:
    """What render needs of a gossip protocol: its counters."""

    def stats(self) -> dict[str, int]:
        return {"rounds": 7, "updates": 2, "updates_sent": 11}


@pytest_twisted.ensureDeferred
async def test_gossip_counters_are_added_when_a_gossip_protocol_is_given(tmp_path: Path) -> None:
    services = await start_three(tmp_path)
    try:
        assert not any(n.startswith("dhtkit_gossip") for n in parse(render(services[0])))
        families = parse(render(services[0], FakeGossip()))
        assert families["dhtkit_gossip_rounds_total"].value() == 7
        assert families["dhtkit_gossip_updates"].type == "gauge"
        assert families["dhtkit_gossip_updates_sent_total"].value() == 11
    finally:
        await defer.gatherResults([s.stopService() for s in services])


@pytest.mark.parametrize("kind", sorted(OVERLAYS))
@pytest_twisted.ensureDeferred
async def test_every_overlay_reports_its_lookups_under_the_same_names_and_its_levels_as_gauges(
    tmp_path: Path, kind: str
) -> None:
    entry = OVERLAYS[kind]
    services = await start_three(tmp_path, entry.service())
    try:
        await services[2].overlay.lookup(key_for("x"), 1)
        families = parse(render(services[2]))
        for counter in LOOKUP_COUNTERS:
            assert families["dhtkit_overlay_{}_total".format(counter)].type == "counter"
        assert families["dhtkit_overlay_lookups_total"].value() >= 1
        assert not any(name.endswith("_total_total") for name in families)
        stats = services[2].overlay.stats()
        assert entry.gauges <= set(stats)
        for gauge in entry.gauges:
            assert families["dhtkit_overlay_{}".format(gauge)].type == "gauge"
    finally:
        await defer.gatherResults([s.stopService() for s in services])


# -- the overlays' hop histograms ----------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(OVERLAYS))
def test_each_overlay_counts_every_lookup_in_its_hop_histogram(kind: str) -> None:
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
        assert (h.count, h.sum) == (stats["lookups"], stats["lookup_hops"])
