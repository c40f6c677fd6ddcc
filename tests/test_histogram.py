"""The hop histogram: buckets as Prometheus counts them, and every overlay keeping one."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from dhtkit.histogram import HOP_BOUNDS, Histogram
from dhtkit.keyspace import from_int
from dhtkit.overlays import OVERLAYS
from dhtkit.sim.overlays import OverlayNetwork


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
