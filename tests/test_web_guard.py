"""The HTTP API's connection limits on a task.Clock: the request deadline and the caps."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import StringTransportWithDisconnection

from dhtkit.web import make_api_factory
from dhtkit.web.guard import (
    EVICT_AFTER,
    FD_RESERVE,
    GuardedFactory,
    HttpLimits,
    default_max_connections,
    fd_limit,
    source_of,
)

# Only paths the API refuses before it looks at the node: no node is needed.
COMPLETE = b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"


#: A request the node never finishes answering (see :class:`StuckNode`).
PENDING = b"GET /v1/values/x HTTP/1.1\r\nHost: x\r\n\r\n"


class StuckNode:
    """Stands in for a node service whose every read waits for ever (a slow network)."""

    running = True

    def __init__(self) -> None:
        self.overlay = self
        self.node = self
        self.reads: list[defer.Deferred[bytes | None]] = []

    def contacts(self) -> list[object]:
        return [object()]

    def get(self, key: bytes) -> defer.Deferred[bytes | None]:
        self.reads.append(defer.Deferred())
        return self.reads[-1]


def factory(clock: task.Clock, **limits: Any) -> GuardedFactory:
    # /nowhere is a 404 before the node is looked at; /v1/values/x waits for ever.
    return make_api_factory(cast(Any, StuckNode()), limits=HttpLimits(**limits), clock=clock)


class Client:
    """One connection into ``factory`` from ``host``, over a string transport."""

    def __init__(self, factory: GuardedFactory, host: str = "192.0.2.1", port: int = 5000) -> None:
        self.protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        self.transport = StringTransportWithDisconnection()
        if self.protocol is not None:
            self.transport.protocol = self.protocol
            self.protocol.makeConnection(self.transport)

    @property
    def refused(self) -> bool:
        return self.protocol is None

    @property
    def open(self) -> bool:
        return bool(self.transport.connected) and not self.transport.disconnecting

    def send(self, data: bytes) -> None:
        assert self.protocol is not None
        self.protocol.dataReceived(data)


def test_a_connection_without_a_complete_request_is_aborted_at_the_deadline() -> None:
    clock = task.Clock()
    api = factory(clock, request_timeout=10)
    slow = Client(api)
    # A byte every 2 s would keep twisted.web's idle timeout from ever firing.
    for byte in b"GET /":
        slow.send(bytes([byte]))
        clock.advance(1.9)
    assert clock.seconds() == pytest.approx(9.5)
    assert slow.open
    clock.advance(0.5)
    assert not slow.open
    assert api.counters.request_timeouts == 1
    assert api.counters.connections == 0


def test_a_complete_request_meets_its_deadline_and_keep_alive_gets_a_new_one() -> None:
    clock = task.Clock()
    api = factory(clock, request_timeout=10)
    client = Client(api)
    clock.advance(9)
    client.send(COMPLETE)
    assert b"404" in client.transport.value().split(b"\r\n", 1)[0]
    # The answer is written: the idle connection has 10 s for its next request.
    clock.advance(9)
    assert client.open
    client.send(COMPLETE)
    clock.advance(9.9)
    assert client.open
    clock.advance(0.2)
    assert not client.open
    assert api.counters.request_timeouts == 1


def test_a_body_that_never_ends_is_cut_at_the_deadline() -> None:
    clock = task.Clock()
    api = factory(clock, request_timeout=5)
    client = Client(api)
    client.send(b"PUT /v1/values/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    for _ in range(4):
        clock.advance(1)
        client.send(b"d")
    clock.advance(1)
    assert not client.open
    assert client.transport.value() == b""


def test_connections_beyond_the_per_source_cap_are_refused_and_counted() -> None:
    clock = task.Clock()
    api = factory(clock, max_per_source=3, max_connections=100)
    first = [Client(api, "192.0.2.1", 5000 + i) for i in range(3)]
    for client in first:
        client.send(PENDING)  # being answered: never closed to make room
    assert Client(api, "192.0.2.1", 6000).refused
    # Another source still gets in.
    assert not Client(api, "192.0.2.2").refused
    assert api.counters.refused_per_source == 1
    # A place freed is a place taken again.
    first[0].transport.loseConnection()
    assert not Client(api, "192.0.2.1", 6001).refused
    assert api.by_source == {"192.0.2.1": 3, "192.0.2.2": 1}


def test_connections_beyond_the_global_cap_are_refused_and_counted() -> None:
    clock = task.Clock()
    api = factory(clock, max_per_source=2, max_connections=4)
    clients = [Client(api, "192.0.2.{}".format(i)) for i in range(1, 5)]
    for client in clients:
        client.send(PENDING)
    assert Client(api, "192.0.2.9").refused
    assert api.counters.refused_total_cap == 1
    assert api.counters.connections == 4
    clients[0].transport.loseConnection()
    assert api.counters.connections == 3
    assert not Client(api, "192.0.2.9").refused


def test_at_the_cap_the_oldest_waiting_connection_makes_room() -> None:
    clock = task.Clock()
    api = factory(clock, max_per_source=3, max_connections=4)
    answered = Client(api, "192.0.2.1", 5000)
    answered.send(PENDING)
    slow = [Client(api, "192.0.2.1", 5001 + i) for i in range(2)]
    for client in slow:
        client.send(b"GET /")
    # Just opened: not closed to make room yet (their request may be on its way).
    assert Client(api, "192.0.2.1", 5999).refused
    clock.advance(EVICT_AFTER)
    # The source is full: its oldest slow connection goes, not the newcomer
    # and not the one being answered.
    quick = Client(api, "192.0.2.1", 6000)
    assert not quick.refused
    assert (answered.open, slow[0].open, slow[1].open) == (True, False, True)
    quick.send(COMPLETE)
    assert b" 404 " in quick.transport.value().split(b"\r\n", 1)[0]
    assert api.counters.evicted_waiting == 1
    assert not Client(api, "192.0.2.2").refused
    clock.advance(EVICT_AFTER)
    # Full in all: the oldest waiting connection of any source goes.
    assert not Client(api, "192.0.2.3").refused
    assert api.counters.connections == 4
    assert not slow[1].open
    assert api.counters.evicted_waiting == 2
    assert api.counters.refused_per_source == 1
    assert api.counters.refused_total_cap == 0


def test_a_slow_connection_frees_its_place_at_the_deadline() -> None:
    clock = task.Clock()
    api = factory(clock, request_timeout=10, max_per_source=2)
    Client(api).send(PENDING)
    slow = Client(api, port=6000)
    slow.send(b"GET /")
    clock.advance(10)
    assert not slow.open
    assert api.counters.connections == 1
    assert api.by_source == {"192.0.2.1": 1}


def test_a_content_length_of_thousands_of_digits_is_413_and_nothing_is_raised() -> None:
    clock = task.Clock()
    api = factory(clock)
    client = Client(api)
    client.send(
        b"PUT /v1/values/x HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n"
    )
    head, _, body = client.transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert "Content-Length" in json.loads(body)["error"]
    assert not client.open
    assert api.counters.refused_length == 1


def test_sources_are_ip_addresses_and_ipv6_64s() -> None:
    assert source_of(IPv4Address("TCP", "192.0.2.1", 1)) == "192.0.2.1"
    a = source_of(IPv6Address("TCP", "2001:db8:1:2::1", 1))
    b = source_of(IPv6Address("TCP", "2001:db8:1:2:ffff::9", 1))
    assert a == b == "2001:db8:1:2::/64"
    assert source_of(IPv6Address("TCP", "2001:db8:1:3::1", 1)) != a
    assert source_of(IPv6Address("TCP", "::ffff:192.0.2.1", 1)) == "192.0.2.1"
    assert source_of(UNIXAddress(b"/tmp/x")) == "local"


@pytest.mark.parametrize(("limit", "cap"), [(1024, 960), (256, 192), (65536, 1024), (10, 1)])
def test_the_default_global_cap_stays_below_the_fd_limit(limit: int, cap: int) -> None:
    assert default_max_connections(limit) == cap
    assert default_max_connections() <= max(1, fd_limit() - FD_RESERVE)
