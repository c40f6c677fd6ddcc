"""The overlay services (one per registry entry): real sockets, restarts, bad input, retries."""

from __future__ import annotations

import random
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.python.failure import Failure

import dhtkit
from dhtkit.contactfile import CONTACTS_FILE, read_contacts
from dhtkit.identity import solves_puzzle
from dhtkit.keyspace import key_for
from dhtkit.overlays import OVERLAYS
from dhtkit.service import (
    STORE_FILE,
    ChordService,
    KademliaService,
    OverlayService,
    PastryService,
)
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.network import VirtualNetwork
from dhtkit.storage import StorageError
from dhtkit.udpport import poll_based
from dhtkit.values import signed_key

FAST_RPC = {"timeout": 0.5}
#: Chord's maintenance rounds, quick enough for a test to wait for them.
#: Every overlay's service, from the registry.
SERVICES = [entry.service() for entry in OVERLAYS.values()]
FAST_OVERLAY: dict[type, dict[str, float]] = {
    entry.service(): dict(entry.quick) for entry in OVERLAYS.values()
}


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def start_many(
    cls: type[OverlayService],
    tmp_path: Path,
    count: int,
    interface: str = "127.0.0.1",
    rpc_options: dict[str, float] = FAST_RPC,
) -> list[OverlayService]:
    services: list[OverlayService] = []
    for n in range(count):
        bootstrap = [services[0].address] if services else []
        svc = cls(
            0,
            interface,
            tmp_path / "node{}".format(n),
            bootstrap,
            rpc_options=rpc_options,
            rng=random.Random(n),
            **FAST_OVERLAY.get(cls, {}),
        )
        svc.startService()
        services.append(svc)
        await svc.when_joined()
    return services


async def settled(svc: OverlayService, key: bytes) -> None:
    """Wait until ``svc`` finds all the nodes that should hold ``key``.

    A Chord node learns its successor list in the stabilization rounds that
    follow its join; Kademlia's join fills its table at once.
    """
    for _ in range(100):
        if len(await svc.overlay.find_responsible(key, svc.overlay.k)) >= svc.overlay.k:
            return
        await task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError("the overlay did not settle")


async def agreed(services: list[OverlayService], key: bytes) -> None:
    """Wait until every service names the same nodes as responsible for ``key``."""
    for _ in range(100):
        found = await defer.gatherResults(
            [s.overlay.find_responsible(key, s.overlay.k) for s in services]
        )
        views = {frozenset(c.node_id for c in f) for f in found}
        # One view, of a whole replica set: a ring still linking its last
        # nodes up can have every node name the same node or two.
        if len(views) == 1 and len(views.pop()) >= min(services[0].overlay.k, len(services)):
            return
        await task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError("the services never agreed on who holds the key")


async def stop_all(services: list[OverlayService]) -> None:
    await defer.gatherResults([s.stopService() for s in services if s.running])


def test_services_are_exported() -> None:
    assert dhtkit.KademliaService is KademliaService
    assert dhtkit.ChordService is ChordService
    assert dhtkit.PastryService is PastryService
    assert SERVICES == [KademliaService, ChordService, PastryService]


def test_a_bad_bootstrap_address_fails_before_anything_listens(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        KademliaService(0, data_dir=tmp_path, bootstrap=[("not a host", 4000)])
    with pytest.raises(ValueError):
        ChordService(0, data_dir=tmp_path, bootstrap=[("127.0.0.1", 70000)])


@pytest.mark.parametrize("cls", SERVICES, ids=list(OVERLAYS))
@pytest_twisted.ensureDeferred
async def test_twenty_services_on_loopback_put_and_get(
    cls: type[OverlayService], tmp_path: Path
) -> None:
    # The RPC layer's default timeout: a reply slowed by a loaded machine
    # must not count as a failure here, where no node fails.
    services = await start_many(cls, tmp_path, 20, rpc_options={"timeout": 2.0})
    try:
        key = key_for("twenty")
        # Every node names the same holders: a Chord ring whose last nodes
        # joined a moment ago may not have linked them up yet, and a reader
        # then asks other nodes than the writer stored on.
        await agreed(services, key)
        assert await services[3].node.put(key, b"on real sockets") >= 2
        for svc in services[::4]:
            assert await svc.node.get(key) == b"on real sockets"
        # Read-your-writes holds once the ring has settled around the key.
        await agreed(services, signed_key(services[7].identity.public_key, b"s"))
        await services[7].node.put_signed(b"v1", salt=b"s")
        await services[7].node.put_signed(b"v2", salt=b"s")
        found = await services[15].node.get_signed(services[7].identity.public_key, b"s")
        assert found is not None and (found.seq, found.value) == (2, b"v2")
        status = services[0].status()
        assert status["protocol"] == cls.overlay_name
        assert status["node_id"] == services[0].identity.node_id.hex()
        assert status["contacts"] >= 1
    finally:
        await stop_all(services)


@pytest.mark.parametrize("cls", SERVICES, ids=list(OVERLAYS))
@pytest_twisted.ensureDeferred
async def test_a_read_hears_that_stopped_replicas_are_gone(
    cls: type[OverlayService], tmp_path: Path
) -> None:
    # A stopped node's port answers with ICMP "port unreachable": the
    # reader's socket hears it (Linux, epoll), and the read goes on without
    # that node, whose calls the RPC layer still waits out.
    services = await start_many(cls, tmp_path, 8, rpc_options={"timeout": 2.0})
    try:
        key = key_for("gone")
        await agreed(services, key)
        assert await services[0].node.put(key, b"still here") >= 3
        holders = await services[0].overlay.find_responsible(key, 3)
        by_id = {s.identity.node_id: s for s in services}
        stopped = [by_id[c.node_id] for c in holders[:2] if by_id[c.node_id] is not services[0]]
        for svc in stopped:
            await svc.stopService()
        reader = next(s for s in services if s.running and s is not services[0])
        assert await reader.node.get(key) == b"still here"
        if sys.platform.startswith("linux") and poll_based(reactor):
            assert reader.rpc.stats()["unreachable_hints"] >= 1
    finally:
        await stop_all(services)


@pytest.mark.parametrize("cls", SERVICES, ids=list(OVERLAYS))
@pytest_twisted.ensureDeferred
async def test_a_restarted_node_rejoins_through_its_saved_contacts(
    cls: type[OverlayService], tmp_path: Path
) -> None:
    services = await start_many(cls, tmp_path, 5)
    restarted: OverlayService | None = None
    try:
        key = key_for("kept")
        # A put needs a majority of a full replica set (all five here): wait
        # until a young Chord ring's successor lists name three.
        for _ in range(100):
            if len(await services[4].overlay.find_responsible(key, 5)) >= 3:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        await services[4].node.put(key, b"across a restart")
        await services[4].stopService()
        saved = read_contacts(tmp_path / "node4" / CONTACTS_FILE)
        assert saved and all(c.node_id != services[4].identity.node_id for c in saved)
        # No bootstrap list this time: only what it saved.
        restarted = cls(0, "127.0.0.1", tmp_path / "node4", rpc_options=FAST_RPC)
        restarted.startService()
        assert await restarted.when_joined() >= 1
        assert restarted.identity.node_id == services[4].identity.node_id
        assert restarted.node.store.get(key) is not None  # the SQLite file kept it
        assert await restarted.node.get(key) == b"across a restart"
    finally:
        await stop_all(services + ([restarted] if restarted else []))


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
@pytest_twisted.ensureDeferred
async def test_kademlia_works_over_ipv6(tmp_path: Path) -> None:
    services = await start_many(KademliaService, tmp_path, 3, interface="::1")
    try:
        assert services[1].address[0] == "::1"
        key = key_for("six")
        assert await services[1].node.put(key, b"over IPv6") >= 2
        assert await services[2].node.get(key) == b"over IPv6"
    finally:
        await stop_all(services)


@pytest_twisted.ensureDeferred
async def test_a_damaged_contact_file_is_ignored_with_a_warning(tmp_path: Path) -> None:
    services = await start_many(KademliaService, tmp_path, 2)
    (tmp_path / "late").mkdir()
    (tmp_path / "late" / CONTACTS_FILE).write_bytes(b"\xff garbage")
    late = KademliaService(
        0, "127.0.0.1", tmp_path / "late", [services[0].address], rpc_options=FAST_RPC
    )
    try:
        late.startService()
        assert await late.when_joined() >= 1
    finally:
        await stop_all([*services, late])
    assert read_contacts(tmp_path / "late" / CONTACTS_FILE)  # replaced by a good list


def test_a_damaged_store_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / STORE_FILE).write_bytes(b"this is not SQLite at all" * 100)
    svc = KademliaService(0, data_dir=tmp_path, reactor=reactor)
    with pytest.raises(StorageError, match=STORE_FILE):
        svc.startService()
    assert not svc.running
    assert (tmp_path / STORE_FILE).read_bytes() == b"this is not SQLite at all" * 100


def test_an_empty_store_given_is_the_one_used(tmp_path: Path) -> None:
    from dhtkit.storage import MemoryStore

    given = MemoryStore()
    svc = KademliaService(0, data_dir=tmp_path, reactor=reactor, store=given)
    svc.startService()
    try:
        assert svc.node.store is given
        assert not (tmp_path / STORE_FILE).exists()
    finally:
        svc.stopService()


def virtual(tmp_path: Path, **kw: Any) -> tuple[HeapClock, VirtualNetwork, Any]:
    clock = HeapClock(now=1_800_000_000.0)
    net = VirtualNetwork(clock, seed=1)
    return clock, net, net.reactor_for("10.77.0.1")


def test_a_join_nobody_answers_is_tried_again_until_someone_does(tmp_path: Path) -> None:
    clock, net, node_reactor = virtual(tmp_path)
    svc = KademliaService(
        4000,
        "10.77.0.1",
        tmp_path / "a",
        [("10.77.0.2", 4000)],
        reactor=node_reactor,
        rpc_options={"timeout": 1.0},
        rejoin_after=10.0,
    )
    svc.startService()
    joined: list[int] = []
    svc.when_joined().addCallback(joined.append)
    clock.run_until(clock.seconds() + 30)
    assert not joined
    # The bootstrap node comes up late; the retries find it.
    other = KademliaService(4000, "10.77.0.2", tmp_path / "b", reactor=net.reactor_for("10.77.0.2"))
    other.startService()
    clock.run_until(clock.seconds() + 120)
    assert joined == [1]
    for s in (svc, other):
        s.stopService()
    clock.run_until(clock.seconds() + 1)


def test_a_node_cut_off_until_it_knows_nobody_joins_again_once_it_can(tmp_path: Path) -> None:
    clock, net, _ = virtual(tmp_path)
    hosts = ["10.77.0.1", "10.77.0.2", "10.77.0.3"]
    services = [
        ChordService(
            4000,
            host,
            tmp_path / host,
            [] if i == 0 else [(hosts[0], 4000)],
            reactor=net.reactor_for(host),
            rpc_options={"timeout": 1.0},
            rng=random.Random(i),
            stabilize_every=1.0,
            fix_fingers_every=1.0,
        )
        for i, host in enumerate(hosts)
    ]
    for svc in services:
        svc.startService()
        clock.run_until(clock.seconds() + 5)
    clock.run_until(clock.seconds() + 30)
    cut = services[1]
    assert len(cut.overlay.contacts()) == 2
    net.partition([hosts[1]], [hosts[0], hosts[2]])
    clock.run_until(clock.seconds() + 60)
    assert cut.overlay.contacts() == []  # every neighbour timed out and was forgotten
    net.heal()
    clock.run_until(clock.seconds() + 60)
    # Through the contacts it knew last (its bootstrap node too), it is back on the ring.
    assert {c.node_id for c in cut.overlay.contacts()} == {
        s.identity.node_id for s in (services[0], services[2])
    }
    key = services[2].identity.node_id
    found = [clock_wait(clock, s.overlay.lookup(key, 1)) for s in services]
    assert len({tuple(c.node_id for c in f.contacts) for f in found}) == 1
    for svc in services:
        svc.stopService()
    clock.run_until(clock.seconds() + 1)


def clock_wait(clock: HeapClock, d: defer.Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    while not results and clock.step():
        pass
    assert results and not isinstance(results[0], Failure), results
    return results[0]


@pytest_twisted.ensureDeferred
async def test_a_puzzle_service_makes_a_solved_identity_and_keeps_unsolved_ids_out(
    tmp_path: Path,
) -> None:
    first = KademliaService(
        0, data_dir=tmp_path / "first", puzzle_bits=6, rpc_options=FAST_RPC, rng=random.Random(1)
    )
    first.startService()
    # A node whose identity does not solve the puzzle (a fixed key checked below).
    (tmp_path / "cheap").mkdir()
    cheap_identity = dhtkit.Identity(bytes(32))
    assert not solves_puzzle(cheap_identity.public_key, 6)
    cheap_identity.save(tmp_path / "cheap" / "identity.key")
    cheap = KademliaService(
        0, data_dir=tmp_path / "cheap", bootstrap=[first.address], rpc_options=FAST_RPC
    )
    try:
        await first.when_joined()
        assert solves_puzzle(first.overlay.rpc.identity.public_key, 6)  # type: ignore[attr-defined]
        cheap.startService()
        await cheap.when_joined()
        assert cheap.overlay.rpc.identity.node_id not in first.overlay.table  # type: ignore[attr-defined]
        assert first.overlay.stats()["refused_puzzle"] >= 1
    finally:
        await stop_all([first, cheap])


def test_a_contact_learned_is_on_disk_within_seconds_without_a_clean_stop(tmp_path: Path) -> None:
    clock, net, _ = virtual(tmp_path)
    hosts = ["10.77.0.1", "10.77.0.2"]
    services = [
        KademliaService(
            4000,
            host,
            tmp_path / host,
            [] if i == 0 else [(hosts[0], 4000)],
            reactor=net.reactor_for(host),
            rpc_options={"timeout": 1.0},
            rng=random.Random(i),
        )
        for i, host in enumerate(hosts)
    ]
    for svc in services:
        svc.startService()
    clock.run_until(clock.seconds() + 1)
    assert len(services[0].overlay.contacts()) == 1  # the first node learned the second
    # No stopService: as after a kill -9, only what is on disk already counts.
    clock.run_until(clock.seconds() + services[0].save_after)
    for svc, other in (services, services[::-1]):
        saved = read_contacts(svc.data_dir / CONTACTS_FILE)
        assert [c.node_id for c in saved] == [other.identity.node_id]
    # An unchanged contact set is not written again.
    path = services[0].data_dir / CONTACTS_FILE
    written = path.stat().st_ino, path.stat().st_mtime_ns
    clock.run_until(clock.seconds() + 600)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == written
    # A third node: on disk within the shortest gap between two saves.
    third = KademliaService(
        4000,
        "10.77.0.3",
        tmp_path / "third",
        [(hosts[0], 4000)],
        reactor=net.reactor_for("10.77.0.3"),
        rpc_options={"timeout": 1.0},
        rng=random.Random(3),
    )
    third.startService()
    clock.run_until(clock.seconds() + 1)
    assert third.identity.node_id in {c.node_id for c in services[0].overlay.contacts()}
    clock.run_until(clock.seconds() + services[0].save_every + services[0].save_after)
    saved = read_contacts(path)
    assert third.identity.node_id in {c.node_id for c in saved}
    for svc in (*services, third):
        svc.stopService()
    clock.run_until(clock.seconds() + 1)
