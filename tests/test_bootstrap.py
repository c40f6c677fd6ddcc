"""Bootstrap addresses: names and addresses, parsed, checked, resolved at each join."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.error import DNSLookupError

from dhtkit.bootstrap import check_bootstrap, is_name, parse_bootstrap, resolve
from dhtkit.service import KademliaService
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.network import VirtualNetwork


def test_addresses_are_made_canonical_and_names_lower_case() -> None:
    assert check_bootstrap(("::0:1", 4000)) == ("::1", 4000)
    assert check_bootstrap(("Node-1.Example.ORG.", 4000)) == ("node-1.example.org", 4000)
    assert parse_bootstrap("[2001:db8::1]:4000") == ("2001:db8::1", 4000)
    assert parse_bootstrap("localhost:4000") == ("localhost", 4000)
    assert is_name(("localhost", 4000)) and not is_name(("127.0.0.1", 4000))


@pytest.mark.parametrize(
    "address",
    [("bad_name", 4000), ("-x.org", 4000), ("x" * 64 + ".org", 4000), ("a..b", 4000),
     ("example.org", 0), ("example.org", 65536), ("", 4000)],
)  # fmt: skip
def test_refuses_what_is_neither_an_address_nor_a_name(address: tuple[str, int]) -> None:
    with pytest.raises(ValueError):
        check_bootstrap(address)


class Resolver:
    """Resolves from a table; other names fail as DNS would."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.asked: list[str] = []

    def resolve(self, name: str) -> defer.Deferred[str]:
        self.asked.append(name)
        if name in self.table:
            return defer.succeed(self.table[name])
        return defer.fail(DNSLookupError(name))


def test_names_resolve_in_order_and_a_failing_one_is_left_out() -> None:
    resolver = Resolver({"a.example": "10.0.0.1"})
    addresses = [("a.example", 4000), ("10.0.0.2", 4001), ("gone.example", 4002)]
    found: list[Any] = []
    resolve(resolver, addresses).addCallback(found.append)
    assert found == [[("10.0.0.1", 4000), ("10.0.0.2", 4001)]]
    assert resolver.asked == ["a.example", "gone.example"]  # addresses are not looked up


def test_a_node_whose_bootstrap_names_all_fail_does_not_start_a_network_of_its_own(
    tmp_path: Path,
) -> None:
    clock = HeapClock(now=1_800_000_000.0)
    net = VirtualNetwork(clock, seed=1)
    svc = KademliaService(
        4000,
        "10.77.0.1",
        tmp_path,
        [("seed.example", 4000)],
        reactor=net.reactor_for("10.77.0.1"),  # it resolves nothing
        rejoin_after=5.0,
        rng=random.Random(1),
    )
    svc.startService()
    joined: list[int] = []
    svc.when_joined().addCallback(joined.append)
    clock.run_until(clock.seconds() + 60)
    assert joined == []
    svc.stopService()
    clock.run_until(clock.seconds() + 1)


@pytest_twisted.ensureDeferred
async def test_a_node_joins_through_a_bootstrap_name(tmp_path: Path) -> None:
    first = KademliaService(0, "127.0.0.1", tmp_path / "a")
    first.startService()
    second = KademliaService(0, "127.0.0.1", tmp_path / "b", [("localhost", first.address[1])])
    try:
        await first.when_joined()
        second.startService()
        assert await second.when_joined() == 1
        assert [c.node_id for c in second.overlay.contacts()] == [first.identity.node_id]
    finally:
        await second.stopService()
        await first.stopService()
