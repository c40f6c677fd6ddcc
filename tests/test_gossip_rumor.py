"""The SIR loss rules: feedback or blind, coin or counter, per update."""

from __future__ import annotations

import random

import pytest

from dhtkit.gossip.rumor import Rumors

A, B = b"a" * 20, b"b" * 20


def test_feedback_counts_only_peers_that_knew() -> None:
    rumors = Rumors(1, feedback=True)
    rumors.infect(A)
    rng = random.Random(1)
    for _ in range(100):
        assert not rumors.contacted(A, False, rng)
    assert A in rumors
    assert rumors.contacted(A, True, rng)  # k = 1: the coin always falls
    assert A not in rumors and rumors.removed == 1


def test_blind_counts_every_contact() -> None:
    rumors = Rumors(1, feedback=False)
    rumors.infect(A)
    assert rumors.contacted(A, False, random.Random(1))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_a_counter_drops_after_exactly_k_counted_contacts(k: int) -> None:
    rumors = Rumors(k, counter=True)
    rumors.infect(A)
    rng = random.Random(1)
    for _ in range(k - 1):
        assert not rumors.contacted(A, True, rng)
    assert rumors.contacted(A, True, rng)


def test_counts_are_kept_per_update() -> None:
    rumors = Rumors(2, counter=True)
    rumors.infect(A)
    rumors.infect(B)
    rng = random.Random(1)
    rumors.contacted(A, True, rng)
    assert not rumors.contacted(B, True, rng)
    assert rumors.contacted(A, True, rng)
    assert rumors.hot() == [B]


@pytest.mark.parametrize("k", [2, 4])
def test_a_coin_drops_with_probability_one_in_k(k: int) -> None:
    rng = random.Random(7)
    trials, drops = 20_000, 0
    for _ in range(trials):
        rumors = Rumors(k)
        rumors.infect(A)
        drops += rumors.contacted(A, True, rng)
    # Binomial(20000, 1/k): the standard deviation is under 0.0036 of trials.
    assert abs(drops / trials - 1 / k) < 0.015


def test_unknown_updates_and_discards_are_no_losses() -> None:
    rumors = Rumors(1)
    rng = random.Random(1)
    assert not rumors.contacted(A, True, rng)
    rumors.infect(A)
    rumors.infect(A)  # infecting twice keeps one entry
    assert len(rumors) == 1
    rumors.discard([A])
    assert len(rumors) == 0 and rumors.removed == 0
    rumors.infect(B)
    rumors.clear()
    assert rumors.hot() == []


def test_k_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        Rumors(0.5)
