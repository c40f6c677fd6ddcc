"""Limits per network: which network an address counts against, and picking
the closest contacts while keeping a few of each network."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhtkit.contact import Contact
from dhtkit.kademlia import diversity
from dhtkit.kademlia.diversity import NetworkLimit, Selection
from dhtkit.keyspace import from_int


def contact(n: int, host: str) -> Contact:
    return Contact(from_int(n), n.to_bytes(32, "big"), (host, 4000))


HOSTS = st.sampled_from(
    ["93.184.216.1", "93.184.216.2", "93.184.217.1", "2a00:1450::1", "2a00:1450::2", "10.0.0.1"]
)


def test_networks_are_a_slash_24_or_a_slash_64_and_private_ones_are_not_limited() -> None:
    limit = NetworkLimit()
    assert limit.network_of(("93.184.216.7", 1)) == "93.184.216.0/24"
    assert limit.network_of(("2a00:1450:4001:800::9", 1)) == "2a00:1450:4001:800::/64"
    assert limit.network_of(("::ffff:93.184.216.7", 1)) == "93.184.216.0/24"
    assert limit.network_of(("10.1.2.3", 1)) is None
    assert limit.network_of(("127.0.0.1", 1)) is None
    assert NetworkLimit(limit_private=True).network_of(("10.1.2.3", 1)) == "10.1.2.0/24"
    assert NetworkLimit(ipv4_prefix=16).network_of(("93.184.216.7", 1)) == "93.184.0.0/16"


def test_the_memory_of_networks_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diversity, "MAX_HOSTS", 8)
    limit = NetworkLimit(ipv4_prefix=20)  # a memory of its own among the tests
    for i in range(50):
        assert limit.network_of(("93.184.{}.1".format(i), 1)) == "93.184.{}.0/20".format(
            i // 16 * 16
        )
        assert len(limit._hosts) <= 8


@settings(max_examples=200)
@given(
    st.lists(HOSTS, max_size=40),
    st.integers(0, 4),
    st.integers(0, 45),
    st.lists(st.integers(1, 10), max_size=6),
)
def test_a_selection_built_in_batches_is_what_select_picks_at_once(
    hosts: list[str], per_network: int, count: int, cuts: list[int]
) -> None:
    contacts = [contact(i + 1, host) for i, host in enumerate(hosts)]
    limit = NetworkLimit(per_network=per_network)
    # What select promises, spelt out: the first count, skipping a contact
    # whose network already has per_network.
    expected: list[Contact] = []
    taken: dict[str | None, int] = {}
    for c in contacts:
        network = limit.network_of(c.address)
        if len(expected) < count and (
            network is None or not per_network or taken.get(network, 0) < per_network
        ):
            taken[network] = taken.get(network, 0) + 1
            expected.append(c)
    assert limit.select(contacts, count) == expected
    selection, start = Selection(limit, count), 0
    for cut in [*cuts, len(contacts)]:
        selection.offer(contacts[start : start + cut])
        start += cut
    assert selection.chosen == expected
    assert selection.is_full() == (len(expected) >= count)


def test_select_reads_no_further_than_it_needs() -> None:
    # A lookup hands its candidates over one by one, closest first.
    read: list[int] = []

    def contacts() -> Iterator[Contact]:
        for i in range(1, 100):
            read.append(i)
            yield contact(i, "93.184.216.1" if i <= 4 else "93.184.{}.1".format(i))

    assert [c.node_id for c in NetworkLimit().select(contacts(), 4)] == [
        from_int(n) for n in (1, 2, 3, 5)
    ]
    assert read == [1, 2, 3, 4, 5]  # the fourth of one /24 is skipped
