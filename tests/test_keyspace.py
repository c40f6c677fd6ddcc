import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhtkit import key_for
from dhtkit.keyspace import (
    DIGITS,
    RING_SIZE,
    bucket_index,
    check_id,
    digit,
    digits,
    distance,
    from_int,
    in_interval,
    ring_add,
    ring_distance,
    shared_prefix_length,
    to_int,
)

ids = st.binary(min_size=20, max_size=20)


def test_key_for_is_blake2b_160_of_the_name() -> None:
    assert key_for(b"abc") == hashlib.blake2b(b"abc", digest_size=20).digest()
    assert key_for("é") == key_for("é".encode())
    assert len(key_for("")) == 20


def test_key_for_refuses_other_types() -> None:
    with pytest.raises(TypeError):
        key_for(42)  # type: ignore[arg-type]


def test_check_id() -> None:
    assert check_id(b"\0" * 20) == b"\0" * 20
    for bad in (b"", b"\0" * 19, b"\0" * 21, "x" * 20):
        with pytest.raises(ValueError):
            check_id(bad)  # type: ignore[arg-type]


@given(ids)
def test_distance_to_self_is_zero(x: bytes) -> None:
    assert distance(x, x) == 0


@given(ids, ids)
def test_distance_is_symmetric_and_positive_between_distinct_ids(x: bytes, y: bytes) -> None:
    assert distance(x, y) == distance(y, x)
    assert (distance(x, y) > 0) == (x != y)


@given(ids, ids, ids)
def test_distance_satisfies_the_triangle_inequality(x: bytes, y: bytes, z: bytes) -> None:
    assert distance(x, y) <= distance(x, z) + distance(z, y)


@given(ids, ids)
def test_bucket_index_is_the_highest_differing_bit(x: bytes, y: bytes) -> None:
    i = bucket_index(x, y)
    if x == y:
        assert i == -1
    else:
        assert 2**i <= distance(x, y) < 2 ** (i + 1)


@given(ids)
def test_int_round_trip(x: bytes) -> None:
    assert from_int(to_int(x)) == x


@given(ids, st.integers(min_value=-(2**170), max_value=2**170))
def test_ring_add_wraps_around(x: bytes, offset: int) -> None:
    assert to_int(ring_add(x, offset)) == (to_int(x) + offset) % RING_SIZE


@given(ids, ids)
def test_ring_distance_of_both_directions_adds_up_to_the_ring(a: bytes, b: bytes) -> None:
    if a == b:
        assert ring_distance(a, b) == 0
    else:
        assert ring_distance(a, b) + ring_distance(b, a) == RING_SIZE


def test_interval_examples_with_wrap_around() -> None:
    def i(n: int) -> bytes:
        return from_int(n % RING_SIZE)

    assert in_interval(i(5), i(1), i(10))
    assert not in_interval(i(1), i(1), i(10))
    assert in_interval(i(1), i(1), i(10), include_start=True)
    assert not in_interval(i(10), i(1), i(10))
    assert in_interval(i(10), i(1), i(10), include_end=True)
    # (2**160 - 5, 3) wraps through zero
    assert in_interval(i(0), i(-5), i(3))
    assert in_interval(i(-1), i(-5), i(3))
    assert not in_interval(i(4), i(-5), i(3))
    # start == end: everything but the boundary
    assert in_interval(i(7), i(3), i(3))
    assert not in_interval(i(3), i(3), i(3))
    assert in_interval(i(3), i(3), i(3), include_end=True)


@given(ids, ids, ids)
def test_interval_agrees_with_ring_distance(x: bytes, start: bytes, end: bytes) -> None:
    if start == end:
        return
    expected = 0 < ring_distance(start, x) < ring_distance(start, end)
    assert in_interval(x, start, end) == expected
    assert in_interval(x, start, end, include_end=True) == (expected or x == end)
    assert in_interval(x, start, end, include_start=True) == (expected or x == start)


@given(ids, ids)
def test_open_intervals_split_the_ring(x: bytes, a: bytes) -> None:
    # Every id other than the two boundaries lies in exactly one of (a, b), (b, a).
    b = ring_add(a, 1 + to_int(x) % (RING_SIZE - 1))
    if x in (a, b):
        return
    assert in_interval(x, a, b) != in_interval(x, b, a)


@given(ids)
def test_digits_are_the_hex_digits(x: bytes) -> None:
    assert digits(x) == [int(c, 16) for c in x.hex()]
    assert [digit(x, n) for n in range(DIGITS)] == digits(x)


@given(ids, ids)
def test_shared_prefix_length_counts_leading_equal_digits(a: bytes, b: bytes) -> None:
    ha, hb = a.hex(), b.hex()
    n = 0
    while n < DIGITS and ha[n] == hb[n]:
        n += 1
    assert shared_prefix_length(a, b) == n
