"""GossipService on real UDP sockets, and the node plumbing the services share."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.error import CannotListenError
from zope.interface.verify import verifyObject

import dhtkit
from dhtkit.gossip.config import GossipConfig
from dhtkit.gossip.sampler import ContactList, IPeerSampler, OverlayPeers, StaticPeers
from dhtkit.gossip.update import Update, UpdateTooLarge
from dhtkit.identity import Identity, IdentityError
from dhtkit.service import GossipService, load_identity, open_node

FAST = GossipConfig(period=0.05, jitter=0.5)


def test_gossip_service_is_exported() -> None:
    assert dhtkit.GossipService is GossipService


def test_a_first_start_creates_the_identity_and_later_ones_reuse_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "node" / "data"
    first = load_identity(data_dir)
    key_file = data_dir / "identity.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert load_identity(data_dir).public_key == first.public_key


def test_a_foreign_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "identity.key").write_bytes(b"not a key")
    with pytest.raises(IdentityError):
        load_identity(tmp_path)


@pytest_twisted.ensureDeferred
async def test_open_node_listens_with_the_saved_identity(tmp_path: Path) -> None:
    Identity(b"\5" * 32).save(tmp_path / "identity.key")
    node = open_node(reactor, tmp_path, 0, timeout=0.5)
    try:
        assert node.identity.public_key == Identity(b"\5" * 32).public_key
        assert node.address[0] == "127.0.0.1" and node.address[1] > 0
        assert node.rpc.timeout == 0.5
        with pytest.raises(CannotListenError):
            open_node(reactor, tmp_path, node.address[1])
    finally:
        await node.close()


def started(tmp_path: Path, name: str, peers: Any = (), **kw: Any) -> GossipService:
    service = GossipService(0, data_dir=tmp_path / name, peers=peers, config=FAST, **kw)
    service.startService()
    return service


def delivered(service: GossipService, topic: str) -> defer.Deferred[Update]:
    d: defer.Deferred[Update] = defer.Deferred()
    service.subscribe(topic, lambda update: None if d.called else d.callback(update))
    return d.addTimeout(10, reactor)


@pytest_twisted.ensureDeferred
async def test_three_services_on_real_sockets_spread_and_delete(tmp_path: Path) -> None:
    # A knows nobody; B and C know only A's address: A learns them when they
    # gossip with it, so an update from C reaches B through A.
    a = started(tmp_path, "a")
    b = started(tmp_path, "b", peers=[a.address])
    c = started(tmp_path, "c", peers=[a.address])
    try:
        at_a, at_b = delivered(a, "news"), delivered(b, "news")
        update = await c.publish("news", b"hello over UDP")
        assert (await at_a).data == b"hello over UDP"
        assert (await at_b).update_id == update.update_id
        assert update.origin == c.identity.public_key

        gone: defer.Deferred[Update] = defer.Deferred()
        b.subscribe("news", lambda u: None, gone.callback)
        certificate = await c.delete(update)
        assert (await gone.addTimeout(10, reactor)).deletes == update.update_id
        assert certificate.deletes == update.update_id
        assert b.gossip.state.updates() == []
        for service in (a, b, c):
            assert service.stats()["dropped"] == 0
            assert service.rpc.stats()["dropped_bad_auth"] == 0
    finally:
        await defer.gatherResults([s.stopService() for s in (a, b, c)])
    assert not a.running and not a.gossip.running


@pytest_twisted.ensureDeferred
async def test_publishing_too_much_fails_the_deferred(tmp_path: Path) -> None:
    service = started(tmp_path, "a")
    try:
        with pytest.raises(UpdateTooLarge):
            await service.publish("news", b"x" * 5000)
    finally:
        await service.stopService()


def test_peers_may_be_a_sampler_or_an_overlays_contacts(tmp_path: Path) -> None:
    fixed = ContactList([])
    with_sampler = GossipService(0, data_dir=tmp_path / "a", peers=fixed, reactor=reactor)
    with_overlay = GossipService(0, data_dir=tmp_path / "b", peers=list, reactor=reactor)
    with_addresses = GossipService(0, data_dir=tmp_path / "c", peers=[("127.0.0.1", 9)])
    services = [with_sampler, with_overlay, with_addresses]
    for service in services:
        service.startService()
    try:
        assert with_sampler.gossip.sampler is fixed
        assert isinstance(with_overlay.gossip.sampler, OverlayPeers)
        assert isinstance(with_addresses.gossip.sampler, StaticPeers)
        for service in services:
            assert verifyObject(IPeerSampler, service.gossip.sampler)
    finally:
        for service in services:
            service.stopService()


def test_a_service_not_started_says_so(tmp_path: Path) -> None:
    service = GossipService(0, data_dir=tmp_path)
    with pytest.raises(RuntimeError, match="not"):
        service.rpc  # noqa: B018
    with pytest.raises(RuntimeError, match="not"):
        service.address  # noqa: B018
    with pytest.raises(RuntimeError, match="not"):
        service.gossip  # noqa: B018
    assert service.stopService().called


def test_the_identity_is_known_before_the_service_starts(tmp_path: Path) -> None:
    # As DESIGN has it: the node's identity, from its data directory.
    service = GossipService(0, data_dir=tmp_path)
    assert service.identity.public_key == load_identity(tmp_path).public_key


@pytest.mark.parametrize("peer", [("localhost", 4000), ("10.77.0.1", 0), ("10.77.0.1",), "x"])
def test_a_bad_peer_address_is_refused_before_anything_listens(tmp_path: Path, peer: Any) -> None:
    with pytest.raises(ValueError, match=r"address|pair"):
        GossipService(0, data_dir=tmp_path / "data", peers=[peer])
    assert not (tmp_path / "data").exists()


@pytest_twisted.ensureDeferred
async def test_gossip_rides_on_a_dht_node_and_leaves_its_socket_open(tmp_path: Path) -> None:
    from dhtkit.service import KademliaService

    nodes = []
    for n in range(3):
        bootstrap = [nodes[0].address] if nodes else []
        node = KademliaService(0, data_dir=tmp_path / "n{}".format(n), bootstrap=bootstrap)
        node.startService()
        await node.when_joined()
        nodes.append(node)
    riders = [GossipService.riding_on(node, node.overlay.contacts, config=FAST) for node in nodes]
    received: list[Update] = []
    try:
        for rider in riders:
            rider.startService()
        assert all(r.rpc is n.rpc for r, n in zip(riders, nodes, strict=True))
        riders[2].subscribe("news", received.append)
        published = await riders[0].publish("news", b"hello")
        for _ in range(200):
            if received:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        assert [u.update_id for u in received] == [published.update_id]
        assert received[0].origin == nodes[0].identity.public_key
    finally:
        for rider in riders:
            await rider.stopService()
    # The node still answers on its port after the rider stopped.
    assert (await nodes[1].rpc.ping(nodes[0].address)).node_id == nodes[0].identity.node_id
    for node in nodes:
        await node.stopService()
