"""The unchanged RPC layer on the virtual network: many nodes, loss, faults."""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import defer

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.rpc import RPCProtocol, RPCTimeout
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.latency import UniformLatency
from dhtkit.sim.network import VirtualNetwork


def start_nodes(network: VirtualNetwork, count: int, seed: int, **kw: Any) -> list[RPCProtocol]:
    rng = random.Random(seed)
    nodes = []
    for n in range(count):
        host = "10.77.{}.{}".format(n // 250, n % 250 + 1)
        reactor = network.reactor_for(host)
        proto = RPCProtocol(
            Identity(rng.randbytes(32)), reactor, rng=random.Random(rng.random()), **kw
        )
        reactor.listenUDP(4000, proto)
        nodes.append(proto)
    return nodes


def outcomes(deferreds: list[defer.Deferred[Any]]) -> list[Any]:
    """A list that fills, in call order, as the Deferreds fire."""
    results: list[Any] = [None] * len(deferreds)

    def keep(result: Any, n: int) -> None:
        results[n] = result

    for n, d in enumerate(deferreds):
        d.addBoth(keep, n)
    return results


def test_hundreds_of_nodes_talk_through_loss_and_reordering() -> None:
    clock = HeapClock(now=1_000_000.0)
    # Latency spread wider than the gap between calls: datagrams overtake each other.
    network = VirtualNetwork(clock, latency=UniformLatency(0.005, 0.2), loss=0.05, seed=1)
    nodes = start_nodes(network, 300, seed=2, timeout=1.0, retries=3)
    rng = random.Random(3)
    contacts = [n.contact for n in nodes]
    calls = []
    for node in nodes:
        for target in rng.sample(contacts, 10):
            if target is not None and target != node.contact:
                calls.append(node.call_contact(target, "ping"))
        # and one first exchange by address, signed
        calls.append(node.ping(rng.choice(contacts).address))  # type: ignore[union-attr]
    results = outcomes(calls)
    clock.run_until(clock.seconds() + 30)
    assert None not in results
    failures = [r for r in results if hasattr(r, "check")]
    assert all(f.check(RPCTimeout) for f in failures)
    # Four tries at 5% loss each way: a call fails with odds of about 1e-4.
    assert len(failures) <= 3
    stats = [n.stats() for n in nodes]
    assert sum(s["retries"] for s in stats) > 0
    for key in ("dropped_bad_auth", "dropped_malformed", "dropped_replay", "dropped_stale"):
        assert sum(s[key] for s in stats) == 0, key
    assert network.counters["dropped_loss"] > 0


def test_a_partition_times_calls_out_and_healing_restores_them() -> None:
    clock = HeapClock(now=1_000_000.0)
    network = VirtualNetwork(clock, seed=4)
    a, b = start_nodes(network, 2, seed=5, timeout=1.0, retries=1)
    assert b.contact is not None and a.contact is not None
    network.partition({a.contact.address[0]}, {b.contact.address[0]})
    results = outcomes([a.call_contact(b.contact, "ping")])
    clock.run_until(clock.seconds() + 5)
    assert results[0].check(RPCTimeout)
    network.heal()
    results = outcomes([a.call_contact(b.contact, "ping")])
    clock.run_until(clock.seconds() + 5)
    assert not hasattr(results[0], "check")


def test_a_node_that_restarts_with_a_new_key_is_not_confused_with_the_old() -> None:
    clock = HeapClock(now=1_000_000.0)
    network = VirtualNetwork(clock, seed=6)
    a, b = start_nodes(network, 2, seed=7, timeout=1.0, retries=0)
    old_b = b.contact
    assert old_b is not None
    results = outcomes([a.call_contact(old_b, "ping")])
    clock.run_until(clock.seconds() + 1)
    assert not hasattr(results[0], "check")
    # B restarts on the same address with a fresh identity.
    b.transport.stopListening()
    reactor = network.reactor_for(old_b.address[0])
    new_b = RPCProtocol(Identity(b"\x42" * 32), reactor)
    reactor.listenUDP(old_b.address[1], new_b)
    seen: list[Contact] = []
    a.add_listener(seen.append)
    # A call to the old key cannot be answered by the new node...
    results = outcomes([a.call_contact(old_b, "ping"), a.ping(old_b.address)])
    clock.run_until(clock.seconds() + 2)
    assert results[0].check(RPCTimeout)
    assert new_b.stats()["dropped_bad_auth"] == 1
    # ...while a ping by address finds out who is there now.
    assert results[1] == new_b.contact
    assert seen == [new_b.contact]


def forged_ping(sender: RPCProtocol, receiver: RPCProtocol) -> bytes:
    """A ping from ``sender`` whose MAC is wrong (all zeros)."""
    body = wire.encode_body(
        wire.QUERY, 2**31, "ping", None, sender.identity, int(sender.clock.seconds() * 1e6)
    )
    return wire.seal(body, bytes(wire.MAC_BYTES))


def test_a_trusted_virtual_network_takes_authenticators_as_they_come() -> None:
    # --trust-sim: the nodes of a trusted network check everything but MACs
    # and signatures; an untrusted one (the default) drops the forgery.
    for trusted, accepted in ((True, 1), (False, 0)):
        network = VirtualNetwork(HeapClock(now=1_000_000.0), trusted=trusted)
        a, b = start_nodes(network, 2, seed=4)
        assert b.sessions.verify_authenticators is not trusted
        assert b.contact is not None and a.contact is not None
        b.datagramReceived(forged_ping(a, b), a.contact.address)
        assert b.stats()["queries_received"] == accepted
        assert b.stats()["dropped_bad_auth"] == 1 - accepted
        # Still refused on a trusted network: a replay of the same datagram.
        b.datagramReceived(forged_ping(a, b), a.contact.address)
        assert b.stats()["queries_received"] == accepted
