"""Churn as exponential sessions."""

from __future__ import annotations

import random
import statistics

import pytest

from dhtkit.sim.churn import HOUR, SessionChurn


def test_sessions_last_one_over_the_rate_on_average() -> None:
    churn = SessionChurn(0.5)
    assert churn.mean_lifetime == 2 * HOUR
    rng = random.Random(1)
    sessions = [churn.session(rng) for _ in range(20_000)]
    assert statistics.fmean(sessions) == pytest.approx(2 * HOUR, rel=0.03)


def test_sessions_are_memoryless() -> None:
    # Exponential: about e^-1 of the sessions outlive the mean.
    churn = SessionChurn(0.1)
    rng = random.Random(2)
    sessions = [churn.session(rng) for _ in range(20_000)]
    outliving = sum(s > churn.mean_lifetime for s in sessions) / len(sessions)
    assert outliving == pytest.approx(0.368, abs=0.01)


def test_a_rate_of_zero_is_no_churn_and_refused() -> None:
    with pytest.raises(ValueError):
        SessionChurn(0.0)
