"""The registry of overlays: each entry is whole and agrees with its overlay and its service."""

from __future__ import annotations

import inspect

import pytest

from dhtkit import tap
from dhtkit.cli import demo
from dhtkit.keyspace import from_int
from dhtkit.overlays import OVERLAYS, OverlayEntry, gauges, protocols
from dhtkit.sim import overlays as sim_overlays

ENTRIES = list(OVERLAYS.values())


@pytest.fixture(params=ENTRIES, ids=[e.name for e in ENTRIES])
def entry(request: pytest.FixtureRequest) -> OverlayEntry:
    found: OverlayEntry = request.param
    return found


def test_the_surfaces_read_the_registry() -> None:
    assert list(OVERLAYS) == ["kademlia", "chord", "pastry"]
    assert tap.PROTOCOLS == demo.PROTOCOLS == protocols()
    assert sim_overlays.OVERLAYS is OVERLAYS
    assert set(tap.OVERLAY_PARAMETERS) == {o.flag for e in ENTRIES for o in e.options}


def test_the_service_runs_the_entry_s_overlay(entry: OverlayEntry) -> None:
    service = entry.service()
    assert service.overlay_name == entry.name
    assert service.overlay_factory is entry.factory


def test_each_option_is_a_keyword_of_the_overlay_with_a_default_in_range(
    entry: OverlayEntry,
) -> None:
    parameters = inspect.signature(entry.factory).parameters
    defaults = entry.defaults()
    for option in entry.options:
        assert option.keyword in parameters
        assert option.low <= defaults[option.keyword] <= option.high
        assert not option.choices or defaults[option.keyword] in option.choices
    assert 1 <= entry.replication.default(defaults) <= entry.replication.most(defaults)


def test_replication_goes_where_the_entry_says(entry: OverlayEntry) -> None:
    options = entry.service_options(entry.defaults(), 3)
    if entry.replication.to_node:
        assert options["node_options"] == {entry.replication.keyword: 3}
    else:
        assert options[entry.replication.keyword] == 3


def test_the_owner_rule_picks_one_of_the_ids(entry: OverlayEntry) -> None:
    ids = [from_int(n << 150) for n in (1, 5, 9)]
    key = from_int(6 << 150)
    assert entry.owner(key, ids) in ids
    label, value = entry.theory(4096)
    assert label and value > 0
    assert entry.settle > 0 and entry.bytes_per_node > 0


def test_every_overlay_s_gauges_are_known_to_the_metrics() -> None:
    from dhtkit.web.families import FAMILIES, GAUGE, OVERLAY

    for gauge in gauges() - OVERLAY.skip:  # contacts: dhtkit_routing_contacts, for all
        found = OVERLAY.family_of(gauge)
        assert found is not None, gauge
        assert FAMILIES[found[0]].kind == GAUGE, gauge
    assert {"leaf_set", "fingers", "buckets"} <= gauges()
