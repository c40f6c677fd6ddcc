"""The hedge rule: TCP's retransmission timer over the round trips seen."""

from __future__ import annotations

from dhtkit.hedge import HEDGE_FLOOR, RoundTrip


def test_with_no_answer_yet_the_whole_limit_is_waited() -> None:
    assert RoundTrip().patience(1.0) == 1.0


def test_steady_round_trips_make_a_short_wait_and_a_jump_a_longer_one() -> None:
    rt = RoundTrip()
    for _ in range(20):
        rt.observe(0.010)
    steady = rt.patience(1.0)
    assert 0.010 <= steady < 0.015
    rt.observe(0.050)  # one slow answer widens the wait, not to four times it
    assert steady < rt.patience(1.0) < 0.2


def test_the_wait_stays_between_the_floor_and_the_limit() -> None:
    fast, slow = RoundTrip(), RoundTrip()
    fast.observe(0.0001)
    slow.observe(10.0)
    assert fast.patience(1.0) == 0.0001 + HEDGE_FLOOR
    assert slow.patience(1.0) == 1.0


def test_a_round_trip_that_never_varies_is_waited_for_past_its_time() -> None:
    # With no deviation at all the wait is not the round trip itself: an
    # answer due at that moment is not given up on (RFC 6298's G term).
    rt = RoundTrip()
    for _ in range(100):
        rt.observe(0.020)
    assert rt.patience(1.0) >= 0.020 + HEDGE_FLOOR
