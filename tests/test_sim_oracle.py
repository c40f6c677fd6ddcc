"""The simulator's owner index agrees with each overlay's own rule."""

from __future__ import annotations

import random

import pytest

from dhtkit.overlays import OVERLAYS
from dhtkit.sim.oracle import Owners
from dhtkit.sim.scenario import OWNER_RULES


@pytest.mark.parametrize("kind", sorted(OVERLAYS))
def test_owner_is_the_registrys_owner(kind: str) -> None:
    rng = random.Random(kind)
    ids = [rng.randbytes(20) for _ in range(300)]
    owners = Owners(OWNER_RULES[kind])
    for node_id in ids:
        owners.add(node_id)
    for node_id in ids[:100]:
        owners.remove(node_id)
    live = ids[100:]
    for _ in range(300):
        key = rng.randbytes(20)
        assert owners.owner(key) == OVERLAYS[kind].owner(key, live)
    # A node's own id is its own.
    assert owners.owner(live[0]) == live[0]


def test_xor_owner_is_not_always_a_numeric_neighbour() -> None:
    # key 011, ids 100 and 101 (3 bits at the top): 101 ^ 011 = 110 < 100 ^ 011 = 111.
    owners = Owners("xor")
    for top in (0b100, 0b101, 0b000):
        owners.add(bytes([top << 5]) + bytes(19))
    key = bytes([0b011 << 5]) + bytes(19)
    assert owners.owner(key) == bytes([0b000]) + bytes(19)
    owners.remove(bytes(20))
    assert owners.owner(key) == bytes([0b101 << 5]) + bytes(19)


def test_no_live_node_is_an_error() -> None:
    with pytest.raises(LookupError):
        Owners("successor").owner(bytes(20))
    with pytest.raises(ValueError):
        Owners("closest")
