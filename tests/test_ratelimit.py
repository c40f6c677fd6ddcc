import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhtkit.ratelimit import RateLimiter


def test_a_burst_passes_then_the_rate_applies() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert [limiter.allow("a", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("a", 0.1)  # one token back after 1/10 s
    assert not limiter.allow("a", 0.1)


def test_sources_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate=1, burst=1)
    assert limiter.allow("a", 0.0)
    assert not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)


def test_tokens_never_exceed_the_burst() -> None:
    limiter = RateLimiter(rate=100, burst=3)
    limiter.allow("a", 0.0)
    assert [limiter.allow("a", 1000.0) for _ in range(4)] == [True, True, True, False]


def test_the_table_is_bounded_and_forgets_full_buckets_first() -> None:
    limiter = RateLimiter(rate=1, burst=2, max_sources=10)
    for n in range(10):
        limiter.allow("idle{}".format(n), 0.0)
    limiter.allow("busy", 100.0)
    limiter.allow("busy", 100.0)
    limiter.allow("new", 100.0)
    assert len(limiter) <= 10
    assert not limiter.allow("busy", 100.0)  # its empty bucket was kept


def test_a_table_of_busy_sources_still_stays_bounded() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_sources=8)
    for n in range(100):
        limiter.allow(str(n), 0.0)
    assert len(limiter) <= 8


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 1), (1, 0.5)])
def test_nonsense_limits_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)


@given(st.lists(st.floats(min_value=0, max_value=10), max_size=200))
def test_never_more_than_burst_plus_rate_times_elapsed(gaps: list[float]) -> None:
    limiter = RateLimiter(rate=5, burst=3)
    now = 0.0
    allowed = 0
    for gap in gaps:
        now += gap
        allowed += limiter.allow("a", now)
    assert allowed <= 3 + 5 * now + 1e-9


def test_refilled_buckets_are_swept_long_before_the_bound() -> None:
    # A source that sent once and fell silent is forgotten as the table
    # grows, not kept until max_sources: memory follows the recent senders.
    limiter = RateLimiter(rate=10, burst=2)
    for n in range(10_000):
        limiter.allow(n, n * 1.0)  # a new source each second, each then silent
    assert len(limiter) <= 128
    # A source still within its burst's refill keeps its bucket.
    limiter.allow("busy", 20_000.0)
    limiter.allow("busy", 20_000.0)
    for n in range(200):
        limiter.allow(("late", n), 20_000.0)
    assert not limiter.allow("busy", 20_000.0)
