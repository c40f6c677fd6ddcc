"""The hop histogram: buckets as Prometheus counts them."""

from __future__ import annotations

import math

import pytest

from dhtkit.histogram import HOP_BOUNDS, Histogram


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
