"""The bounded dict behind the per-process and per-node caches."""

from __future__ import annotations

import pytest

from dhtkit.bounded import BoundedDict


def test_the_oldest_entry_goes_when_full() -> None:
    d: BoundedDict[str, int] = BoundedDict(3)
    for i, key in enumerate("abcde"):
        d.remember(key, i)
    assert list(d.items()) == [("c", 2), ("d", 3), ("e", 4)]


def test_replacing_a_kept_entry_forgets_nothing() -> None:
    d: BoundedDict[str, int] = BoundedDict(2)
    d.remember("a", 1)
    d.remember("b", 2)
    d.remember("a", 3)
    assert d == {"a": 3, "b": 2}


def test_entries_set_directly_count_at_the_next_remember() -> None:
    d: BoundedDict[int, int] = BoundedDict(2)
    for i in range(5):
        d[i] = i
    d.remember(9, 9)
    assert list(d) == [4, 9]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BoundedDict(0)
