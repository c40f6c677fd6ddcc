"""The theory the simulations are checked against."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from dhtkit.gossip import theory


@pytest.mark.parametrize(
    ("k", "expected"), [(1, 0.203), (2, 0.0595), (3, 0.0198), (4, 0.0070), (5, 0.0025)]
)
def test_sir_residue_is_the_root_the_papers_give(k: int, expected: float) -> None:
    s = theory.sir_residue(k)
    assert s == pytest.approx(expected, rel=0.01)
    assert s == pytest.approx(math.exp(-(k + 1) * (1 - s)), abs=1e-12)


def test_the_seeds_bounds_hold() -> None:
    assert theory.sir_residue(3) <= 0.02
    assert theory.sir_residue(4) <= 0.007


def test_blind_at_k_plus_one_is_feedback_at_k() -> None:
    for k in range(1, 6):
        assert theory.sir_residue(k + 1, feedback=False) == pytest.approx(theory.sir_residue(k))
    assert theory.sir_residue(1, feedback=False) == 1.0  # the rumour dies at once


def test_the_ode_ends_at_the_residue() -> None:
    curve = theory.sir_curve(2, 10**6, 60)
    assert curve[0] == 1 - 1e-6
    assert all(a >= b for a, b in pairwise(curve))
    assert curve[-1] == pytest.approx(theory.sir_residue(2), rel=1e-3)
    blind = theory.sir_curve(3, 10**6, 80, feedback=False)
    assert blind[-1] == pytest.approx(theory.sir_residue(3, feedback=False), rel=1e-3)


def test_the_recurrences() -> None:
    assert theory.pull_next(0.1) == pytest.approx(0.01)
    assert theory.push_next(0.001) == pytest.approx(0.001 * math.exp(-0.999))
    assert theory.pushpull_next(0.1) == pytest.approx(0.01 * math.exp(-0.9))
    # Exact among n nodes: a susceptible node asks one of the n - 1 others.
    assert theory.pull_next(0.5, 11) == pytest.approx(0.5 * 4.5 / 10)
    assert theory.push_next(0.5, 11) == pytest.approx(0.5 * 0.9**5.5)
    assert theory.pull_next(1 / 11, 11) == 0.0
    assert theory.pushpull_next(0.0) == 0.0


@pytest.mark.parametrize("mode", ["pull", "push", "pushpull"])
def test_anti_entropy_curves_fall_from_all_but_one(mode: str) -> None:
    curve = theory.anti_entropy_curve(mode, 1000, 30)
    assert curve[0] == pytest.approx(0.999)
    assert all(a > b for a, b in pairwise(curve) if a > 1e-12)
    assert curve[-1] < 1e-3


def test_push_pull_is_fastest_and_push_slowest() -> None:
    def rounds(mode: str) -> int:
        curve = theory.anti_entropy_curve(mode, 10_000, 100)
        return next(i for i, p in enumerate(curve) if p * 10_000 < 0.5)

    assert rounds("pushpull") < rounds("pull") < rounds("push")
    assert rounds("push") == pytest.approx(theory.rounds_push(10_000), abs=3)


def test_round_formulas_and_traffic() -> None:
    assert theory.rounds_push(1024) == pytest.approx(10 + math.log(1024))
    assert theory.rounds_pushpull(3**7) == pytest.approx(7)
    assert theory.residue_from_traffic(2) == pytest.approx(math.exp(-2))


def test_the_curve_to_plot_says_what_it_is() -> None:
    si, label = theory.susceptible_curve("si", "pull", 100, 5)
    assert len(si) == 6 and "pull" in label
    sir, label = theory.susceptible_curve("sir", "push", 100, 5, k=3, variant="blind-coin")
    assert len(sir) == 6 and "blind" in label
