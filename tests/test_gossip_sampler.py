"""Peer samplers: fixed lists, a running overlay's contacts, and addresses to resolve."""

from __future__ import annotations

import random

import pytest
from zope.interface.verify import verifyObject

from dhtkit.contact import Contact
from dhtkit.gossip.sampler import ContactList, IPeerSampler, OverlayPeers, StaticPeers
from dhtkit.identity import Identity
from dhtkit.rpc import RPCProtocol
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.network import VirtualNetwork
from tests.conftest import LoggedErrors


def contact(n: int) -> Contact:
    return Contact.from_key(Identity(bytes([n]) * 32).public_key, ("10.0.0.{}".format(n), 4000))


class Hosts:
    """RPC nodes on a virtual network, to resolve addresses against."""

    def __init__(self, count: int) -> None:
        self.clock = HeapClock(now=1_000_000.0)
        self.network = VirtualNetwork(self.clock, seed=1)
        self.rpcs = []
        for n in range(count):
            reactor = self.network.reactor_for("10.0.0.{}".format(n + 1))
            rpc = RPCProtocol(
                Identity(bytes([n + 1]) * 32), reactor, timeout=1.0, retries=0, rng=random.Random(n)
            )
            reactor.listenUDP(4000, rpc)
            self.rpcs.append(rpc)

    def sampler(self, addresses: list[tuple[str, int]], **kw: float) -> StaticPeers:
        return StaticPeers(addresses, self.rpcs[0], self.clock, **kw)  # type: ignore[arg-type]

    def run(self, seconds: float) -> None:
        self.clock.run_until(self.clock.seconds() + seconds)


def test_every_sampler_provides_the_interface() -> None:
    hosts = Hosts(1)
    for sampler in (ContactList([]), OverlayPeers(list), hosts.sampler([])):
        assert verifyObject(IPeerSampler, sampler)


def test_a_contact_list_is_shared_not_copied() -> None:
    contacts = [contact(1), contact(2)]
    sampler = ContactList(contacts)
    sampler.start()
    sampler.offer(contact(3))
    sampler.failed(contact(1))
    sampler.stop()
    assert sampler.candidates() is contacts and contacts == [contact(1), contact(2)]


def test_overlay_peers_asks_the_overlay_each_time() -> None:
    known = [contact(1)]
    sampler = OverlayPeers(lambda: iter(known))
    assert sampler.candidates() == [contact(1)]
    known.append(contact(2))
    sampler.offer(contact(3))
    sampler.failed(contact(1))
    assert sampler.candidates() == [contact(1), contact(2)]


def test_static_peers_learn_the_keys_of_their_addresses(logged_errors: LoggedErrors) -> None:
    hosts = Hosts(3)
    sampler = hosts.sampler([("10.0.0.2", 4000), ("10.0.0.3", 4000), ("10.0.0.9", 4000)])
    assert sampler.candidates() == []
    sampler.start()
    hosts.run(0.5)
    assert sorted(c.address for c in sampler.candidates()) == [
        ("10.0.0.2", 4000),
        ("10.0.0.3", 4000),
    ]
    assert {c.public_key for c in sampler.candidates()} == {
        hosts.rpcs[1].identity.public_key,
        hosts.rpcs[2].identity.public_key,
    }
    sampler.stop()
    assert logged_errors.events == []


def test_unanswered_addresses_are_pinged_again() -> None:
    hosts = Hosts(2)
    hosts.network.set_down("10.0.0.2")
    sampler = hosts.sampler([("10.0.0.2", 4000)], retry=10)
    sampler.start()
    hosts.run(5)
    assert sampler.candidates() == []
    hosts.network.set_up("10.0.0.2")
    hosts.run(10)
    assert [c.address for c in sampler.candidates()] == [("10.0.0.2", 4000)]
    sampler.stop()
    pings = hosts.rpcs[0].stats()["queries_sent"]
    hosts.run(100)
    assert hosts.rpcs[0].stats()["queries_sent"] == pings


def test_a_failing_peer_is_resolved_again() -> None:
    hosts = Hosts(2)
    sampler = hosts.sampler([("10.0.0.2", 4000)], retry=10)
    sampler.start()
    hosts.run(1)
    [peer] = sampler.candidates()
    sampler.failed(peer)
    assert sampler.candidates() == []
    hosts.run(11)
    assert sampler.candidates() == [peer]
    sampler.stop()


def test_peers_that_gossip_with_us_are_learnt_up_to_a_bound() -> None:
    hosts = Hosts(1)
    sampler = hosts.sampler([], max_learned=2)
    for n in (1, 2, 3):
        sampler.offer(contact(n))
    sampler.offer(contact(2))
    assert sampler.candidates() == [contact(3), contact(2)]
    sampler.failed(contact(3))
    assert sampler.candidates() == [contact(2)]


def test_addresses_must_be_ip_literals() -> None:
    hosts = Hosts(1)
    with pytest.raises(ValueError):
        hosts.sampler([("localhost", 4000)])


def test_its_own_address_in_the_list_is_skipped() -> None:
    hosts = Hosts(2)
    sampler = hosts.sampler([("10.0.0.1", 4000), ("10.0.0.2", 4000)], retry=10)
    sampler.start()
    hosts.run(30)
    assert [c.address for c in sampler.candidates()] == [("10.0.0.2", 4000)]
    assert hosts.rpcs[0].stats()["queries_sent"] == 1
    sampler.stop()
