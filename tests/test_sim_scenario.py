"""``dhtkit sim OVERLAY`` scenarios: the report's fields, latency in simulated ms, churn."""

from __future__ import annotations

import pytest

from dhtkit.sim.churn import HOUR
from dhtkit.sim.overlays import OverlayNetwork, simulate
from dhtkit.sim.scenario import (
    DEFAULT_RATE,
    JOIN_BATCH,
    JOIN_ROUNDS,
    MAX_WINDOW,
    PUT_BATCH,
    PUT_ROUNDS,
    TIMELINE_BINS,
    Scenario,
    build,
    join_batch,
    put_batch,
    report,
    run,
)


def test_the_report_says_datagrams_are_authenticated_and_gives_latency_in_ms() -> None:
    result = simulate("pastry", 40, 12, seed=2, rtt=0.05)
    assert result["authenticated"] is True
    assert result["latency_model"] == {"name": "constant", "rtt_ms": 50.0}
    assert result["success_rate"] == 1.0 and result["correct_rate"] == 1.0
    latency = result["latency_ms"]
    assert set(latency) == {"mean", "p50", "p95", "p99"}
    # Constant latency: each hop is one round trip of 50 ms.
    assert latency["p50"] == pytest.approx(50.0 * result["hops"]["p50"], abs=0.01)
    assert latency["p50"] <= latency["p99"]
    assert sum(result["hop_histogram"].values()) == 12
    assert len(result["timeline"]) == TIMELINE_BINS


def test_a_slower_network_gives_slower_lookups() -> None:
    fast = simulate("kademlia", 30, 8, seed=4, rtt=0.01)
    slow = simulate("kademlia", 30, 8, seed=4, rtt=0.1)
    assert fast["hops"] == slow["hops"]
    assert slow["latency_ms"]["p50"] == pytest.approx(10 * fast["latency_ms"]["p50"], rel=0.01)


def test_lognormal_latency_spreads_the_lookups() -> None:
    result = simulate("kademlia", 30, 20, seed=4, latency="lognormal")
    assert result["latency_model"]["name"] == "lognormal"
    assert result["latency_ms"]["p99"] > result["latency_ms"]["p50"] > 0


def test_churn_replaces_nodes_during_the_window() -> None:
    built = run(build(Scenario("pastry", 40, 10, seed=5, churn=2.0, duration=600.0)))
    result = report(built)
    # 40 nodes at 200% per hour for 10 minutes: about 13 leave, each replaced.
    assert 5 <= result["left"] <= 25
    assert result["joined"] == result["left"]
    assert len(built.live) == 40
    assert all(node.up for node in built.live)
    assert result["window_s_simulated"] == 600.0
    assert result["success_rate"] >= 0.8


def test_without_churn_nobody_leaves() -> None:
    result = simulate("chord", 30, 5, seed=1)
    assert (result["left"], result["joined"], result["churn"]) == (0, 0, 0.0)


def test_remove_takes_nodes_down_at_once() -> None:
    built = run(build(Scenario("kademlia", 40, 5, seed=6, remove=0.25)))
    assert len(built.live) == 30
    assert report(built)["remove"] == 0.25


def test_the_same_seed_gives_the_same_report() -> None:
    first = simulate("pastry", 30, 10, seed=9, churn=1.0, duration=300.0, latency="uniform")
    second = simulate("pastry", 30, 10, seed=9, churn=1.0, duration=300.0, latency="uniform")
    assert {k: v for k, v in first.items() if not k.endswith("_s")} == {
        k: v for k, v in second.items() if not k.endswith("_s")
    }


def test_a_large_network_grows_in_a_bounded_number_of_batches() -> None:
    assert join_batch(10) == join_batch(JOIN_BATCH * JOIN_ROUNDS) == JOIN_BATCH
    assert join_batch(10_000) == 100 and join_batch(10_001) == 101
    for nodes in (1_000, 10_000, 100_000):
        assert -(-nodes // join_batch(nodes)) <= JOIN_ROUNDS


def test_many_values_are_put_in_a_bounded_number_of_batches() -> None:
    assert put_batch(10) == put_batch(PUT_BATCH * PUT_ROUNDS) == PUT_BATCH
    assert put_batch(PUT_BATCH * PUT_ROUNDS + 1) == PUT_BATCH + 1
    for values in (1_000, 10_000, 100_000):
        assert -(-values // put_batch(values)) <= PUT_ROUNDS


def test_the_default_window_is_the_default_rate_but_never_longer_than_its_cap() -> None:
    # The maintenance of every node runs through the window: its length must
    # not grow with the lookups (and so with N), as the growth's does not.
    assert Scenario("chord", 10, 200).duration == 200 / DEFAULT_RATE
    cap = round(MAX_WINDOW * DEFAULT_RATE)
    assert Scenario("chord", 10, cap).duration == Scenario("chord", 10, 10 * cap).duration
    assert Scenario("chord", 10, 10 * cap).duration == MAX_WINDOW
    assert Scenario("chord", 10, 10 * cap, churn=0.1).duration == HOUR
    assert Scenario("chord", 10, 10 * cap, duration=500.0).duration == 500.0


@pytest.mark.parametrize("seed", [3, 6])
def test_on_a_lossy_network_a_failed_join_is_tried_again_later_and_succeeds(seed: int) -> None:
    # These seeds once failed every attempt at once: the route toward the
    # newcomer's id met nodes of its own batch that had not joined yet.
    net = OverlayNetwork("pastry", seed=seed, loss=0.1)
    net.grow(60, batch=25)
    assert net.join_failures == 0 and len(net.live()) == 60


def test_nodes_that_cannot_join_stay_out_and_are_counted() -> None:
    # Every datagram lost: the first node is alone, and every other one fails
    # all its attempts; the run goes on with the network that grew.
    result = simulate("kademlia", 6, 3, seed=8, loss=1.0)
    assert result["join_failures"] == 5
    assert result["success_rate"] == 1.0  # the one node holds every value itself
