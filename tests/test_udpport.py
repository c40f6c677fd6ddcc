"""ICMP errors as hints: the port reads them, goes on reading, and loses no send."""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from dhtkit.identity import Identity
from dhtkit.rpc import RPCProtocol
from dhtkit.udpport import HintingPort, IUnreachableHints, listen_udp, poll_based


def reactor() -> Any:
    from twisted.internet import reactor

    return reactor


needs_hints = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not poll_based(reactor()),
    reason="ICMP hints need Linux and a poll-based reactor (epoll or poll)",
)


@implementer(IUnreachableHints)
class Hinted(DatagramProtocol):
    def __init__(self) -> None:
        self.hints: list[tuple[str, int]] = []
        self.received: list[bytes] = []

    def unreachable(self, address: tuple[str, int]) -> None:
        self.hints.append(address)

    def datagramReceived(self, datagram: bytes, address: Any) -> None:
        self.received.append(datagram)


def closed_port(host: str = "127.0.0.1") -> tuple[str, int]:
    """An address on loopback where nothing listens (any more)."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    address = s.getsockname()[:2]
    s.close()
    return address


def has_ipv6_loopback() -> bool:
    try:
        closed_port("::1")
    except OSError:
        return False
    return True


def rpc_on_loopback() -> tuple[RPCProtocol, Any]:
    """An RPC layer on a hinting port of 127.0.0.1 (its calls never retry)."""
    rpc = RPCProtocol(Identity.generate(), reactor(), timeout=30.0, retries=0)
    return rpc, listen_udp(reactor(), 0, rpc, "127.0.0.1")


async def until(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("not within {} s".format(seconds))
        await task.deferLater(reactor(), 0.005, lambda: None)


@needs_hints
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest_twisted.ensureDeferred
async def test_a_datagram_to_a_closed_port_comes_back_as_a_hint(host: str) -> None:
    if host == "::1" and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    protocol = Hinted()
    port = listen_udp(reactor(), 0, protocol, host)
    try:
        assert isinstance(port, HintingPort) and port.hinting
        dead = closed_port(host)
        port.write(b"anyone?", dead)
        await until(lambda: protocol.hints)
        assert protocol.hints == [dead]
        # The port reads on: the error condition did not close it.
        sender = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
        )
        sender.sendto(b"still here", (host, port.getHost().port))
        sender.close()
        await until(lambda: protocol.received)
        assert protocol.received == [b"still here"]
        assert port.connected
    finally:
        await port.stopListening()


@needs_hints
@pytest_twisted.ensureDeferred
async def test_a_send_after_an_error_is_not_lost() -> None:
    # The kernel fails the next send with the pending error: the port reads
    # the error and sends again.
    protocol = Hinted()
    port = listen_udp(reactor(), 0, protocol, "127.0.0.1")
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2.0)
    try:
        dead = closed_port()
        port.write(b"anyone?", dead)
        time.sleep(0.05)  # the ICMP error is queued; the reactor has not run
        port.write(b"for you", receiver.getsockname())
        assert receiver.recvfrom(100)[0] == b"for you"
        await until(lambda: protocol.hints)  # told from the reactor, after the send
        assert protocol.hints == [dead]
    finally:
        receiver.close()
        await port.stopListening()


@needs_hints
@pytest_twisted.ensureDeferred
async def test_a_query_written_straight_to_the_socket_reads_the_error_it_met() -> None:
    # The RPC layer writes queries to the socket itself, not through the
    # port's write: a send that the pending error failed still has the
    # port read the queue at once (as its write would), and goes out.
    rpc, port = rpc_on_loopback()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2.0)
    calls = []
    try:
        dead = closed_port()
        calls.append(rpc.call(dead, "ping"))
        time.sleep(0.05)  # the ICMP error is queued; the reactor has not run
        calls.append(rpc.call(receiver.getsockname(), "ping"))
        assert port.hints == 1  # read while sending, before the reactor ran
        assert receiver.recvfrom(2048)[0]  # and the query went out
        await until(lambda: rpc.stats()["unreachable_hints"])
    finally:
        receiver.close()
        for call in calls:
            call.addErrback(lambda f: None)
            call.cancel()
        await port.stopListening()


@needs_hints
@pytest_twisted.ensureDeferred
async def test_an_rpc_call_to_a_closed_port_hints_its_watchers_and_waits_on() -> None:
    rpc, port = rpc_on_loopback()
    try:
        dead = closed_port()
        hinted: list[str] = []
        rpc.watch_unreachable(dead, lambda: hinted.append("first"))
        stop = rpc.watch_unreachable(dead, lambda: hinted.append("stopped"))
        stop()
        call = rpc.call(dead, "ping")
        await until(lambda: hinted)
        assert hinted == ["first"]
        assert rpc.stats()["unreachable_hints"] >= 1
        # Only a hint: the call still waits for an answer.
        assert not call.called
        call.addErrback(lambda f: None)
        call.cancel()
    finally:
        await port.stopListening()


def test_other_reactors_and_protocols_get_a_plain_port() -> None:
    class Recorder:  # a reactor that is not poll-based
        def listenUDP(self, *args: Any, **kw: Any) -> str:
            return "listening"

    assert listen_udp(Recorder(), 4000, Hinted(), "127.0.0.1") == "listening"
    plain = listen_udp(reactor(), 0, DatagramProtocol(), "127.0.0.1")
    try:
        assert not isinstance(plain, HintingPort)
    finally:
        plain.stopListening()


class FailingOnce:
    """A socket whose next ``method`` call fails with ``error``, as the
    socket's pending error (an ICMP error) makes the kernel do."""

    def __init__(self, real: socket.socket, method: str, error: int) -> None:
        self.real, self.method, self.error = real, method, error
        self.failures = 1

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.real, name)
        if name != self.method:
            return attribute

        def failing(*args: Any) -> Any:
            if self.failures:
                self.failures -= 1
                raise OSError(self.error, os.strerror(self.error))
            return attribute(*args)

        return failing


@needs_hints
@pytest.mark.parametrize("error", [errno.EHOSTUNREACH, errno.EMSGSIZE, errno.ENETUNREACH])
@pytest_twisted.ensureDeferred
async def test_a_receive_failed_by_a_pending_error_does_not_close_the_port(error: int) -> None:
    # Twisted closes a port whose receive fails with anything but
    # ECONNREFUSED: a host unreachable in a partition did.
    protocol = Hinted()
    port = listen_udp(reactor(), 0, protocol, "127.0.0.1")
    real = port.socket
    port.socket = FailingOnce(real, "recvfrom", error)
    try:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.sendto(b"after the error", ("127.0.0.1", port.getHost().port))
        sender.close()
        await until(lambda: protocol.received)
        assert protocol.received == [b"after the error"] and port.connected
    finally:
        port.socket = real
        await port.stopListening()


@needs_hints
@pytest.mark.parametrize("error", [errno.EHOSTUNREACH, errno.EMSGSIZE])
@pytest_twisted.ensureDeferred
async def test_a_send_failed_by_a_pending_error_is_sent_again(error: int) -> None:
    protocol = Hinted()
    port = listen_udp(reactor(), 0, protocol, "127.0.0.1")
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2.0)
    real = port.socket
    port.socket = FailingOnce(real, "sendto", error)
    try:
        port.write(b"for you", receiver.getsockname())
        assert receiver.recvfrom(100)[0] == b"for you"
    finally:
        port.socket = real
        receiver.close()
        await port.stopListening()
