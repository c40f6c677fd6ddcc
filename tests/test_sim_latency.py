"""The latency models, each named by its median round trip."""

from __future__ import annotations

import random
import statistics

import pytest

from dhtkit.sim.latency import (
    LATENCY_MODELS,
    ConstantLatency,
    LogNormalLatency,
    UniformLatency,
    latency_model,
)


def _round_trips(name: str, rtt: float, count: int = 4001) -> list[float]:
    model = latency_model(name, rtt)
    rng = random.Random(5)
    return [model.delay("a", "b", rng) + model.delay("b", "a", rng) for _ in range(count)]


@pytest.mark.parametrize("name", LATENCY_MODELS)
def test_each_model_has_the_median_round_trip_it_was_given(name: str) -> None:
    assert statistics.median(_round_trips(name, 0.08)) == pytest.approx(0.08, rel=0.05)


def test_constant_is_half_the_round_trip_each_way() -> None:
    assert latency_model("constant", 0.05) == ConstantLatency(0.025)


def test_uniform_spans_zero_to_the_round_trip() -> None:
    assert latency_model("uniform", 0.05) == UniformLatency(0.0, 0.05)


def test_lognormal_has_a_long_tail() -> None:
    trips = sorted(_round_trips("lognormal", 0.02))
    p99 = trips[int(0.99 * len(trips))]
    assert p99 > 2 * statistics.median(trips)
    assert min(trips) > 0


def test_the_same_seed_draws_the_same_delays() -> None:
    model = LogNormalLatency(0.01)
    first = [model.delay("a", "b", random.Random(3)) for _ in range(3)]
    assert first == [model.delay("a", "b", random.Random(3)) for _ in range(3)]


@pytest.mark.parametrize(
    ("name", "rtt"), [("gaussian", 0.02), ("constant", 0.0), ("uniform", -1.0)]
)
def test_unknown_models_and_bad_round_trips_are_refused(name: str, rtt: float) -> None:
    with pytest.raises(ValueError):
        latency_model(name, rtt)


def test_lognormal_needs_a_positive_median() -> None:
    with pytest.raises(ValueError):
        LogNormalLatency(0.0)
