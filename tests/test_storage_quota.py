"""Quotas per source network: what one network may store, whatever keys it uses."""

from __future__ import annotations

import random
from typing import Any

import pytest

from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.node import DHTNode
from dhtkit.rpc import RemoteError, RPCProtocol
from dhtkit.storage import MemoryStore, Quota
from dhtkit.storage.networks import source_network
from dhtkit.values import PlainValue, Record, SignedValue, to_wire
from tests.valuenet import Cluster

SHARE = 10_000
QUOTA = Quota(
    max_records=1_000,
    max_bytes=4 * SHARE,
    max_records_per_publisher=1_000,
    max_bytes_per_publisher=SHARE,
)


@pytest.mark.parametrize(
    ("host", "port", "network"),
    [
        ("198.51.100.7", 4000, "net:198.51.100.0/24"),
        ("198.51.100.200", 5000, "net:198.51.100.0/24"),
        ("2001:db8:1:2:3:4:5:6", 4000, "net:2001:db8:1:2::/64"),
        ("::ffff:198.51.100.9", 4000, "net:198.51.100.0/24"),
        ("10.1.2.3", 4000, "net:10.1.2.3"),
        ("192.168.0.9", 4000, "net:192.168.0.9"),
        ("172.20.0.9", 4000, "net:172.20.0.9"),
        ("127.0.0.1", 4001, "net:127.0.0.1:4001"),
        ("127.0.0.1", 4002, "net:127.0.0.1:4002"),
        ("::1", 4001, "net:[::1]:4001"),
        ("fe80::1%eth0", 4000, "net:fe80::/64"),
        ("not-an-address", 4000, "host:not-an-address"),
    ],
)
def test_a_source_is_charged_to_its_network(host: str, port: int, network: str) -> None:
    assert source_network(host, port) == network


def peer(net: Cluster, host: str, port: int = 4000) -> RPCProtocol:
    """An RPC endpoint at ``host:port`` on the cluster's network, not a member."""
    reactor = net.network.reactor_for(host)
    rpc = RPCProtocol(Identity(net.rng.randbytes(32)), reactor, timeout=1.0, rng=random.Random(7))
    reactor.listenUDP(port, rpc)
    return rpc


def store_on(net: Cluster, rpc: RPCProtocol, target: DHTNode, record: Record) -> str | None:
    """Store ``record`` on ``target`` from ``rpc``: None, or the refusal's code."""
    assert target.rpc.contact is not None
    args: list[Any] = [to_wire(record), 3600, None, False]
    try:
        net.wait(rpc.call_contact(target.rpc.contact, "store", args))
    except RemoteError as e:
        return e.code
    return None


def plain(net: Cluster, name: str, size: int) -> PlainValue:
    value = name.encode().ljust(size, b".")
    return PlainValue(key_for(name), value, int(net.clock.seconds() * 1_000_000))


def test_many_signing_keys_from_one_network_stop_at_its_share() -> None:
    net = Cluster(1, make_store=lambda: MemoryStore(QUOTA))
    target = net.nodes[0]
    attackers = [peer(net, "198.51.100.{}".format(n + 1)) for n in range(4)]
    accepted = 0
    for n in range(80):
        signer = Identity(bytes([n + 1]) * 32)
        record = SignedValue.create(signer, b"x" * 900, 1, salt=b"%d" % n)
        if store_on(net, attackers[n % 4], target, record) is None:
            accepted += 1
    _, held = target.store.usage(source_network("198.51.100.1", 4000))
    assert 0 < held <= SHARE
    assert accepted < 80
    assert target.counters["store_refused_over_quota"] > 0
    honest = peer(net, "203.0.113.5")
    assert store_on(net, honest, target, plain(net, "honest", 900)) is None
    signed = SignedValue.create(Identity(b"\xee" * 32), b"h" * 900, 1)
    assert store_on(net, honest, target, signed) is None


def test_five_nodes_on_one_loopback_address_each_get_a_share() -> None:
    net = Cluster(1, make_store=lambda: MemoryStore(QUOTA))
    target = net.nodes[0]
    nodes = [peer(net, "127.0.0.1", 4001 + n) for n in range(5)]
    refused = [
        store_on(net, rpc, target, plain(net, "node {} value {}".format(n, v), 500))
        for n, rpc in enumerate(nodes)
        for v in range(15)  # 7.5 kB each: within one share, but 37.5 kB for the address
    ]
    assert refused == [None] * 75
    _, held = target.store.usage(source_network("127.0.0.1", 4001))
    assert 7_000 < held <= SHARE


def test_each_loopback_node_is_still_bounded_by_its_share() -> None:
    net = Cluster(1, make_store=lambda: MemoryStore(QUOTA))
    target = net.nodes[0]
    rpc = peer(net, "127.0.0.1", 4001)
    refused = [store_on(net, rpc, target, plain(net, "v{}".format(v), 900)) for v in range(20)]
    assert "over_quota" in refused
    _, held = target.store.usage(source_network("127.0.0.1", 4001))
    assert held <= SHARE


def test_records_this_node_publishes_are_charged_to_no_network() -> None:
    net = Cluster(1, make_store=lambda: MemoryStore(QUOTA))
    node = net.nodes[0]
    for n in range(20):  # 18 kB: beyond one share
        net.wait(node.put_signed(b"s" * 900, salt=b"%d" % n))
    assert len(node.store) == 20
    assert node.store.usage()[1] > SHARE
