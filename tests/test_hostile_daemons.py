"""Real ``twistd -n dhtkit`` daemons on 127.0.0.1 with a lying peer among them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemons import Daemon, child_env, dhtkit_command, free_udp_port_with_tcp_after
from tests.test_daemon import node_daemon, wait_for_contacts

LIAR = Path(__file__).with_name("lying_node.py")


@pytest.fixture
def processes() -> Iterator[list[Daemon | subprocess.Popen[bytes]]]:
    started: list[Daemon | subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if isinstance(process, Daemon):
            process.stop()
        else:
            process.kill()
            process.wait()


def start_liar(
    tmp_path: Path, bootstrap: int, lie: str, processes: list[Daemon | subprocess.Popen[bytes]]
) -> None:
    port = free_udp_port_with_tcp_after()
    liar = subprocess.Popen(
        [sys.executable, str(LIAR), str(port), str(tmp_path / "liar"), str(bootstrap), lie],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    processes.append(liar)
    assert liar.stdout is not None
    line = liar.stdout.readline()
    assert line.strip() == b"READY", line + liar.stdout.read()


def test_a_peer_answering_with_a_bignum_ttl_does_not_break_reads(
    tmp_path: Path, processes: list[Daemon | subprocess.Popen[bytes]]
) -> None:
    # Once every get on every honest node failed (HTTP 500): float(10**400)
    # overflowed in the read path. Now the lie is dropped at decoding and
    # the value is read from the honest replicas.
    port_a, port_b = free_udp_port_with_tcp_after(), free_udp_port_with_tcp_after()
    a = node_daemon(tmp_path, "a", port_a)
    processes.append(a)
    a.start()
    a.wait_for(tmp_path / "a" / "data" / "api.url")
    start_liar(tmp_path, port_a, "bignum-ttl", processes)
    b = node_daemon(tmp_path, "b", port_b, port_a)
    processes.append(b)
    b.start()
    b.wait_for(tmp_path / "b" / "data" / "api.url")
    wait_for_contacts(b, 2)
    wait_for_contacts(a, 2)
    put = dhtkit_command("--data-dir", str(tmp_path / "a" / "data"), "put", "greeting", "hello")
    assert put.returncode == 0, put.stderr.decode() + a.output()
    for node in (a, b):
        got = dhtkit_command("--data-dir", str(node.workdir / "data"), "get", "greeting")
        assert got.returncode == 0, got.stderr.decode() + node.output()
        assert got.stdout == b"hello"
        assert "Traceback" not in node.output()
