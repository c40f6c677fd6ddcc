"""The virtual network: delivery, faults and counters, under unchanged protocols."""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError, MessageLengthError
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTime,
    IReactorUDP,
    IUDPTransport,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from dhtkit.sim.clock import HeapClock
from dhtkit.sim.network import (
    COUNTERS,
    ConstantLatency,
    SimUDPPort,
    UniformLatency,
    VirtualNetwork,
)

A, B, C, D = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"


class Recorder(DatagramProtocol):
    """Notes every datagram with the time it arrived."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.received: list[tuple[float, bytes, tuple[str, int]]] = []
        self.started = 0
        self.stopped = 0

    def startProtocol(self) -> None:
        self.started += 1

    def stopProtocol(self) -> None:
        self.stopped += 1

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append((self.clock.seconds(), datagram, addr))

    def payloads(self) -> list[bytes]:
        return [data for _, data, _ in self.received]


def heap_clock(network: VirtualNetwork) -> HeapClock:
    assert isinstance(network.clock, HeapClock)
    return network.clock


def listen(network: VirtualNetwork, host: str, port: int = 4000) -> tuple[SimUDPPort, Recorder]:
    protocol = Recorder(network.clock)
    return network.reactor_for(host).listenUDP(port, protocol), protocol


@pytest.fixture
def network() -> VirtualNetwork:
    return VirtualNetwork(latency=ConstantLatency(0.05))


# -- delivery ---------------------------------------------------------------------


def test_delivers_after_the_latency_with_the_senders_address(network: VirtualNetwork) -> None:
    sender, _ = listen(network, A, 5000)
    _, receiver = listen(network, B)
    clock = heap_clock(network)
    clock.run_until(1.0)
    sender.write(b"hello", (B, 4000))
    clock.run_until(1.049)
    assert receiver.received == []
    clock.run_until(2.0)
    assert receiver.received == [(pytest.approx(1.05), b"hello", (A, 5000))]
    assert network.counters["delivered"] == 1
    assert network.counters["bytes_delivered"] == 5


def test_default_latency_is_ten_milliseconds() -> None:
    network = VirtualNetwork()
    sender, _ = listen(network, A)
    _, receiver = listen(network, B)
    sender.write(b"x", (B, 4000))
    heap_clock(network).run()
    assert receiver.received[0][0] == pytest.approx(0.01)


def test_constant_latency_keeps_datagrams_in_order(network: VirtualNetwork) -> None:
    sender, _ = listen(network, A)
    _, receiver = listen(network, B)
    for i in range(100):
        sender.write(b"%d" % i, (B, 4000))
    heap_clock(network).run()
    assert receiver.payloads() == [b"%d" % i for i in range(100)]


def test_uniform_latency_stays_within_its_bounds() -> None:
    network = VirtualNetwork(latency=UniformLatency(0.02, 0.2), seed=7)
    sender, _ = listen(network, A)
    _, receiver = listen(network, B)
    for _ in range(500):
        sender.write(b"x", (B, 4000))
    heap_clock(network).run()
    times = [t for t, _, _ in receiver.received]
    assert len(times) == 500
    assert all(0.02 <= t <= 0.2 for t in times)
    assert max(times) - min(times) > 0.1


def test_latency_models_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        ConstantLatency(-1.0)
    with pytest.raises(ValueError):
        UniformLatency(0.5, 0.1)


def _lossy_run(seed: int) -> list[tuple[float, bytes, Any]]:
    network = VirtualNetwork(latency=UniformLatency(0.0, 1.0), loss=0.3, seed=seed)
    sender, _ = listen(network, A)
    _, receiver = listen(network, B)
    for i in range(200):
        sender.write(b"%d" % i, (B, 4000))
    heap_clock(network).run()
    return receiver.received


def test_the_same_seed_gives_the_same_run() -> None:
    assert _lossy_run(1) == _lossy_run(1)
    assert _lossy_run(1) != _lossy_run(2)


def test_loss_drops_its_share_of_datagrams() -> None:
    network = VirtualNetwork(loss=0.25, seed=42)
    sender, _ = listen(network, A)
    _, receiver = listen(network, B)
    for _ in range(10_000):
        sender.write(b"x", (B, 4000))
    heap_clock(network).run()
    dropped = network.counters["dropped_loss"]
    # 10,000 draws at p = 0.25: the standard deviation is about 43.
    assert 2300 <= dropped <= 2700
    assert network.counters["delivered"] == len(receiver.received) == 10_000 - dropped


def test_loss_can_change_during_a_run(network: VirtualNetwork) -> None:
    sender, _ = listen(network, A)
    _, receiver = listen(network, B)
    network.loss = 1.0
    sender.write(b"lost", (B, 4000))
    network.loss = 0.0
    sender.write(b"kept", (B, 4000))
    heap_clock(network).run()
    assert receiver.payloads() == [b"kept"]
    with pytest.raises(ValueError):
        network.loss = 1.5


def test_works_on_task_clock_too() -> None:
    clock = Clock()
    network = VirtualNetwork(clock=clock, latency=ConstantLatency(0.5))
    sender, _ = listen(network, A)
    _, receiver = listen(network, B)
    sender.write(b"x", (B, 4000))
    clock.advance(0.4)
    assert receiver.received == []
    clock.advance(0.1)
    assert receiver.payloads() == [b"x"]


def test_a_host_can_send_to_itself(network: VirtualNetwork) -> None:
    first, _ = listen(network, A, 1)
    _, second = listen(network, A, 2)
    first.write(b"x", (A, 2))
    heap_clock(network).run()
    assert second.received == [(0.05, b"x", (A, 1))]


# -- an unchanged DatagramProtocol -----------------------------------------------------


class Echo(DatagramProtocol):
    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.transport.write(datagram.upper(), addr)


class Client(DatagramProtocol):
    def __init__(self, reactor: Any, server: tuple[str, int]) -> None:
        self.reactor = reactor
        self.server = server
        self.replies: list[tuple[float, bytes]] = []

    def startProtocol(self) -> None:
        self.transport.write(b"ping", self.server)
        self.reactor.callLater(1.0, self.transport.write, b"again", self.server)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        assert addr == self.server
        self.replies.append((self.reactor.seconds(), datagram))


def test_an_echo_pair_runs_unchanged(network: VirtualNetwork) -> None:
    network.reactor_for(A).listenUDP(7, Echo())
    reactor = network.reactor_for(B)
    client = Client(reactor, (A, 7))
    reactor.listenUDP(0, client)
    heap_clock(network).run()
    assert client.replies == [(pytest.approx(0.1), b"PING"), (pytest.approx(1.1), b"AGAIN")]


def test_the_host_reactor_provides_the_reactor_interfaces(network: VirtualNetwork) -> None:
    reactor = network.reactor_for(A)
    assert reactor is network.reactor_for(A)
    assert verifyObject(IReactorTime, reactor)
    assert verifyObject(IReactorUDP, reactor)
    port = reactor.listenUDP(0, DatagramProtocol())
    assert verifyObject(IUDPTransport, port)
    assert verifyObject(IListeningPort, port)


def test_the_host_reactor_keeps_the_shared_time(network: VirtualNetwork) -> None:
    fired: list[float] = []
    reactor = network.reactor_for(A)
    call = reactor.callLater(2, lambda: fired.append(reactor.seconds()))
    assert list(reactor.getDelayedCalls()) == [call]
    heap_clock(network).run()
    assert fired == [2.0]
    assert network.reactor_for(B).seconds() == 2.0


def test_listening_starts_the_protocol_and_stopping_stops_it(network: VirtualNetwork) -> None:
    port, protocol = listen(network, A)
    assert protocol.started == 1
    assert protocol.transport is port
    done: list[object] = []
    port.stopListening().addCallback(done.append)
    assert done == [None]
    assert protocol.stopped == 1
    assert protocol.transport is None
    assert not network.is_listening((A, 4000))


def test_a_connected_port_talks_to_its_peer_only(network: VirtualNetwork) -> None:
    port, protocol = listen(network, A)
    port.connect(B, 4000)
    peer, peer_protocol = listen(network, B)
    stranger, _ = listen(network, C)
    port.write(b"to peer")
    peer.write(b"from peer", (A, 4000))
    stranger.write(b"from stranger", (A, 4000))
    heap_clock(network).run()
    assert peer_protocol.payloads() == [b"to peer"]
    assert protocol.payloads() == [b"from peer"]
    assert network.counters["dropped_unreachable"] == 1


# -- ports ---------------------------------------------------------------------------


def test_a_port_in_use_cannot_be_bound_again(network: VirtualNetwork) -> None:
    listen(network, A)
    with pytest.raises(CannotListenError):
        listen(network, A)
    listen(network, B)


def test_a_stopped_port_can_be_bound_again(network: VirtualNetwork) -> None:
    port, _ = listen(network, A)
    port.stopListening()
    listen(network, A)


def test_port_zero_picks_distinct_ephemeral_ports(network: VirtualNetwork) -> None:
    reactor = network.reactor_for(A)
    ports = [reactor.listenUDP(0, DatagramProtocol()).getHost() for _ in range(50)]
    numbers = {address.port for address in ports}
    assert len(numbers) == 50
    assert all(32768 <= n < 61000 for n in numbers)
    assert all(address == IPv4Address("UDP", A, address.port) for address in ports)


def test_listening_on_another_hosts_address_fails(network: VirtualNetwork) -> None:
    reactor = network.reactor_for(A)
    with pytest.raises(CannotListenError):
        reactor.listenUDP(4000, DatagramProtocol(), interface=B)
    wildcard = reactor.listenUDP(4000, DatagramProtocol(), interface="0.0.0.0")
    assert wildcard.getHost() == IPv4Address("UDP", A, 4000)


def test_datagrams_to_nobody_are_dropped_and_counted(network: VirtualNetwork) -> None:
    sender, _ = listen(network, A)
    sender.write(b"x", (B, 4000))
    sender.write(b"x", (A, 9))
    heap_clock(network).run()
    assert network.counters["dropped_unreachable"] == 2


def test_a_port_closed_in_flight_drops_the_datagram(network: VirtualNetwork) -> None:
    sender, _ = listen(network, A)
    receiving, receiver = listen(network, B)
    sender.write(b"x", (B, 4000))
    receiving.stopListening()
    _, newcomer = listen(network, B, 4001)
    heap_clock(network).run()
    assert receiver.received == []
    assert newcomer.received == []
    assert network.counters["dropped_unreachable"] == 1
    assert network.in_flight() == 0


def test_a_port_rebound_in_flight_receives_the_datagram(network: VirtualNetwork) -> None:
    # The recipient is whoever listens when the datagram lands.
    sender, _ = listen(network, A)
    receiving, _ = listen(network, B)
    sender.write(b"x", (B, 4000))
    receiving.stopListening()
    _, successor = listen(network, B)
    heap_clock(network).run()
    assert successor.payloads() == [b"x"]


def test_a_stopped_port_sends_nothing(network: VirtualNetwork) -> None:
    sender, _ = listen(network, A)
    _, receiver = listen(network, B)
    sender.stopListening()
    sender.write(b"x", (B, 4000))
    heap_clock(network).run()
    assert receiver.received == []
    assert network.counters["sent"] == 0


# -- sizes ---------------------------------------------------------------------------


def test_datagrams_larger_than_udp_allows_raise(network: VirtualNetwork) -> None:
    port, _ = listen(network, A)
    with pytest.raises(MessageLengthError):
        port.write(b"x" * 65508, (B, 4000))
    port.write(b"x" * 65507, (B, 4000))
    assert network.counters["sent"] == 1


def test_a_datagram_larger_than_the_receivers_buffer_is_truncated(
    network: VirtualNetwork,
) -> None:
    sender, _ = listen(network, A)
    protocol = Recorder(network.clock)
    network.reactor_for(B).listenUDP(4000, protocol, maxPacketSize=100)
    sender.write(b"x" * 1000, (B, 4000))
    heap_clock(network).run()
    assert protocol.payloads() == [b"x" * 100]


def test_ipv6_hosts_get_ipv6_addresses(network: VirtualNetwork) -> None:
    v6a, v6b = "fd00::1", "fd00::2"
    sender, _ = listen(network, v6a, 5000)
    _, receiver = listen(network, v6b)
    assert sender.getHost() == IPv6Address("UDP", v6a, 5000)
    sender.write(b"x", (v6b, 4000, 0, 0))
    sender.write(b"y" * 65527, (v6b, 4000))
    with pytest.raises(MessageLengthError):
        sender.write(b"y" * 65528, (v6b, 4000))
    heap_clock(network).run()
    assert [(data[:1], addr) for _, data, addr in receiver.received] == [
        (b"x", (v6a, 5000)),
        (b"y", (v6a, 5000)),
    ]


# -- faults --------------------------------------------------------------------------


def _all_pairs(network: VirtualNetwork, hosts: list[str]) -> dict[str, Recorder]:
    """Every host sends its name to every other; returns each host's recorder."""
    ports = {}
    recorders = {}
    for host in hosts:
        ports[host], recorders[host] = listen(network, host)
    for src in hosts:
        for dst in hosts:
            if src != dst:
                ports[src].write(src.encode(), (dst, 4000))
    heap_clock(network).run()
    return recorders


def heard(recorder: Recorder) -> set[str]:
    return {data.decode() for data in recorder.payloads()}


def test_a_partition_drops_datagrams_between_groups(network: VirtualNetwork) -> None:
    network.partition({A, B}, {C})
    got = _all_pairs(network, [A, B, C, D])
    assert heard(got[A]) == {B}
    assert heard(got[B]) == {A}
    assert heard(got[C]) == set()
    # D is in no group: it is with the rest, here alone.
    assert heard(got[D]) == set()
    assert network.counters["dropped_partition"] == 10


def test_hosts_in_no_group_form_one_group_together(network: VirtualNetwork) -> None:
    network.partition([A])
    got = _all_pairs(network, [A, B, C])
    assert heard(got[A]) == set()
    assert heard(got[B]) == {C}
    assert heard(got[C]) == {B}


def test_heal_joins_the_network_again(network: VirtualNetwork) -> None:
    network.partition({A}, {B})
    network.heal()
    got = _all_pairs(network, [A, B])
    assert heard(got[A]) == {B}
    assert network.counters["dropped_partition"] == 0


def test_a_new_partition_replaces_the_old(network: VirtualNetwork) -> None:
    network.partition({A}, {B, C})
    network.partition({A, B}, {C})
    got = _all_pairs(network, [A, B, C])
    assert heard(got[A]) == {B}


def test_a_partition_does_not_catch_datagrams_already_sent(network: VirtualNetwork) -> None:
    sender, _ = listen(network, A)
    _, receiver = listen(network, B)
    sender.write(b"x", (B, 4000))
    network.partition({A}, {B})
    heap_clock(network).run()
    assert receiver.payloads() == [b"x"]


def test_partition_groups_must_not_overlap(network: VirtualNetwork) -> None:
    with pytest.raises(ValueError):
        network.partition({A, B}, {B, C})
    with pytest.raises(TypeError):
        network.partition(A)  # type: ignore[arg-type]


def test_a_down_host_neither_sends_nor_receives(network: VirtualNetwork) -> None:
    network.set_down(C)
    assert network.is_down(C)
    got = _all_pairs(network, [A, B, C])
    assert heard(got[A]) == {B}
    assert heard(got[C]) == set()
    assert network.counters["dropped_down"] == 4


def test_a_host_set_up_again_takes_part_again(network: VirtualNetwork) -> None:
    network.set_down(A)
    network.set_up(A)
    got = _all_pairs(network, [A, B])
    assert heard(got[A]) == {B}
    assert heard(got[B]) == {A}


def test_a_host_going_down_loses_what_is_in_flight_to_it(network: VirtualNetwork) -> None:
    sender, _ = listen(network, A)
    _, receiver = listen(network, B)
    sender.write(b"x", (B, 4000))
    network.set_down(B)
    heap_clock(network).run()
    assert receiver.received == []
    assert network.counters["dropped_down"] == 1


def test_an_exception_in_a_protocol_is_logged_and_delivery_goes_on(
    network: VirtualNetwork, logged_errors: Any
) -> None:
    class Broken(DatagramProtocol):
        def datagramReceived(self, datagram: bytes, addr: Any) -> None:
            raise ZeroDivisionError

    sender, _ = listen(network, A)
    network.reactor_for(B).listenUDP(4000, Broken())
    _, receiver = listen(network, C)
    sender.write(b"x", (B, 4000))
    sender.write(b"y", (C, 4000))
    heap_clock(network).run()
    assert receiver.payloads() == [b"y"]
    errors = logged_errors.take()
    assert len(errors) == 1
    assert errors[0]["log_failure"].check(ZeroDivisionError)


# -- counters and scale ----------------------------------------------------------------


def test_counters_account_for_every_datagram() -> None:
    network = VirtualNetwork(loss=0.2, seed=3)
    hosts = ["10.1.0.{}".format(i) for i in range(1, 11)]
    ports = [listen(network, host)[0] for host in hosts]
    network.set_down(hosts[0])
    network.partition(hosts[:5])
    rng = random.Random(5)
    for _ in range(2000):
        rng.choice(ports).write(b"abc", (rng.choice(hosts), rng.choice([4000, 4001])))
    assert network.in_flight() > 0
    heap_clock(network).run()
    counters = network.counters
    assert set(counters) == set(COUNTERS)
    assert network.in_flight() == 0
    assert counters["sent"] == 2000
    assert counters["bytes_delivered"] == 3 * counters["delivered"]
    assert all(counters[name] > 0 for name in COUNTERS)


def test_thousands_of_hosts_exchange_a_hundred_thousand_datagrams() -> None:
    # A smoke test of scale: counts are asserted, never time.
    network = VirtualNetwork(latency=UniformLatency(0.005, 0.05), seed=11)
    hosts = ["10.0.{}.{}".format(i >> 8, i & 255) for i in range(1, 2001)]
    ports = [listen(network, host) for host in hosts]
    rng = random.Random(13)
    clock = heap_clock(network)
    for round_ in range(50):
        for port, _ in ports:
            port.write(b"%d" % round_, (rng.choice(hosts), 4000))
        clock.run_until(clock.seconds() + 0.01)
    clock.run()
    assert network.counters["sent"] == 100_000
    assert network.counters["delivered"] == 100_000
    assert sum(len(recorder.received) for _, recorder in ports) == 100_000


@pytest.mark.parametrize("host", ["localhost", "10.0.0.256", "0:0::1", "", "10.0.0.1 "])
def test_hosts_are_canonical_ip_addresses(network: VirtualNetwork, host: str) -> None:
    with pytest.raises(ValueError):
        network.reactor_for(host)
