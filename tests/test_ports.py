"""Ports a node needs: a taken one is named, with the process that holds it."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.error import CannotListenError

from dhtkit.ports import PortUnavailable, check_tcp_port, check_udp_port, port_holder
from dhtkit.service import KademliaService
from tests.daemons import free_udp_port_with_tcp_after


@pytest.fixture
def udp_taken() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", free_udp_port_with_tcp_after()))
        yield sock.getsockname()[1]


def test_the_holder_of_a_port_is_found(udp_taken: int) -> None:
    holder = port_holder("udp", udp_taken)
    if holder is None:
        pytest.skip("no /proc/net here to find the holder of a port")
    assert holder.startswith("process {} (".format(os.getpid()))
    assert port_holder("tcp", udp_taken) is None  # only a UDP socket is there


def test_the_probes_find_a_taken_port_and_keep_nothing(udp_taken: int) -> None:
    with pytest.raises(
        PortUnavailable, match="UDP port {} on 127.0.0.1 is in use".format(udp_taken)
    ):
        check_udp_port("127.0.0.1", udp_taken)
    check_tcp_port("127.0.0.1", udp_taken)  # TCP is another port space
    free = free_udp_port_with_tcp_after()
    check_udp_port("127.0.0.1", free)
    check_udp_port("127.0.0.1", free)  # the probe closed its socket
    check_udp_port("127.0.0.1", 0)


def test_other_reasons_are_said_plainly() -> None:
    denied = PortUnavailable("UDP", "127.0.0.1", 9, OSError(errno.EACCES, "Permission denied"))
    assert str(denied) == (
        "UDP port 9 on 127.0.0.1: permission denied (ports below 1024 need privileges)"
    )
    elsewhere = PortUnavailable("HTTP", "192.0.2.1", 80, OSError(errno.EADDRNOTAVAIL, "x"))
    assert str(elsewhere) == "HTTP port 80 on 192.0.2.1: not an address of this machine"


def test_a_node_service_names_its_udp_port_in_use(tmp_path: Path, udp_taken: int) -> None:
    svc = KademliaService(udp_taken, "127.0.0.1", tmp_path)
    with pytest.raises(CannotListenError) as caught:  # a PortUnavailable, as before
        svc.startService()
    assert isinstance(caught.value, PortUnavailable)
    assert str(caught.value).startswith(
        "UDP port {} on 127.0.0.1 is in use by process {} (".format(udp_taken, os.getpid())
    )
