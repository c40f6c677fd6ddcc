"""The metric families: how stats() keys are read, and docs/metrics.rst against the table.

Every exposition here is written and read by ``prometheus_client``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import attrs
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from dhtkit.web.families import FAMILIES, Source

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


# -- reading stats() ------------------------------------------------------------------------------


def read(source: Source, stats: dict[str, int]) -> dict[str, Family]:
    """``source.read(stats)`` through the library's text writer and parser."""

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
