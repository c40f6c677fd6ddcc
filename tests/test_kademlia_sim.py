"""500 Kademlia nodes on the virtual network: reads, hop counts, and a fifth of them gone.

Hops follow :mod:`dhtkit.kademlia.lookup`'s convention: the hop at which the
closest node that answered was asked (a contact of our own table is hop 1).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterator

import pytest

from dhtkit.keyspace import from_int
from dhtkit.sim.overlays import OverlayNetwork

NODES = 500
VALUES = 150


@pytest.fixture(scope="module")
def net() -> Iterator[tuple[OverlayNetwork, list[tuple[bytes, bytes]]]]:
    net = OverlayNetwork("kademlia", seed=11)
    net.grow(NODES)
    rng = random.Random(12)
    values = []
    for i in range(VALUES):
        key, value = from_int(rng.getrandbits(160)), b"value %d" % i
        assert net.wait(rng.choice(net.nodes).node.put(key, value)) >= 11
        values.append((key, value))
    yield net, values


def test_every_node_can_get_what_another_put(
    net: tuple[OverlayNetwork, list[tuple[bytes, bytes]]],
) -> None:
    network, values = net
    rng = random.Random(13)
    for key, value in values:
        reader = rng.choice(network.nodes)
        assert network.wait(reader.node.get(key)) == value


def test_lookups_take_logarithmically_many_hops(
    net: tuple[OverlayNetwork, list[tuple[bytes, bytes]]],
) -> None:
    network, _ = net
    rng = random.Random(14)
    hops = []
    for _ in range(200):
        key = from_int(rng.getrandbits(160))
        found = network.wait(rng.choice(network.nodes).overlay.lookup(key, 20))
        assert found.contacts[0].node_id == network.owner(key)
        hops.append(found.hops)
    # The paper: ⌈log2 N⌉ + c steps at most; with k-buckets each step gains
    # about a bit or more, so on average far fewer.
    assert max(hops) <= math.ceil(math.log2(NODES))
    assert statistics.fmean(hops) <= math.log2(NODES) / 2


def test_values_survive_a_fifth_of_the_nodes_leaving_at_once(
    net: tuple[OverlayNetwork, list[tuple[bytes, bytes]]],
) -> None:
    # Last in this module: it takes nodes away from the shared network.
    network, values = net
    network.remove(0.2)
    rng = random.Random(15)
    found = sum(
        network.wait(rng.choice(network.live()).node.get(key)) == value for key, value in values
    )
    assert found >= 0.99 * len(values)
