"""Three ``twistd -n dhtkit`` processes on 127.0.0.1, driven through the ``dhtkit`` command."""

from __future__ import annotations

import json
import os
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhtkit.datadir import API_FILE, LOCK_FILE
from dhtkit.nodesocket import IDENTITY_FILE
from dhtkit.overlays import OVERLAYS
from dhtkit.service import STORE_FILE
from tests.daemons import Daemon, dhtkit_command, free_udp_port_with_tcp_after


def node_daemon(
    root: Path, name: str, port: int, *bootstrap: int, protocol: str = "kademlia"
) -> Daemon:
    args = ["dhtkit", "--port", str(port), "--data-dir", str(root / name / "data")]
    args += ["--protocol", protocol]
    for other in bootstrap:
        args += ["--bootstrap", "127.0.0.1:{}".format(other)]
    return Daemon(root / name, args)


def status(daemon: Daemon) -> dict[str, object]:
    result = dhtkit_command("--data-dir", str(daemon.workdir / "data"), "status", "--json")
    assert result.returncode == 0, result.stderr.decode()
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def wait_for_contacts(daemon: Daemon, count: int, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        now = status(daemon)
        if isinstance(now["contacts"], int) and now["contacts"] >= count:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(
                "{} has {} contacts:\n{}".format(daemon.workdir, now, daemon.output())
            )
        time.sleep(0.2)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


@pytest.mark.parametrize("protocol", sorted(OVERLAYS))
def test_three_daemons_put_get_restart_and_stop_cleanly(
    tmp_path: Path, daemons: list[Daemon], protocol: str
) -> None:
    ports = []
    while len(ports) < 3:
        port = free_udp_port_with_tcp_after()
        if all(abs(port - p) > 1 for p in ports):
            ports.append(port)
    first = node_daemon(tmp_path, "a", ports[0], protocol=protocol)
    others = [
        node_daemon(tmp_path, name, port, ports[0], protocol=protocol)
        for name, port in zip("bc", ports[1:], strict=True)
    ]
    for daemon in [first, *others]:
        daemons.append(daemon)
        daemon.start()
        daemon.wait_for(daemon.workdir / "data" / API_FILE)
    for daemon in daemons:
        wait_for_contacts(daemon, 2)
    # A fresh data dir got a key, a store and the lock; the log names the node.
    data_a = first.workdir / "data"
    assert (data_a / IDENTITY_FILE).stat().st_mode & 0o777 == 0o600
    assert (data_a / STORE_FILE).exists() and (data_a / LOCK_FILE).is_symlink()
    node_id = status(first)["node_id"]
    assert isinstance(node_id, str) and node_id in first.output()

    put = dhtkit_command("--data-dir", str(data_a), "put", "greeting", "hello")
    assert put.returncode == 0, put.stderr.decode()
    got = dhtkit_command("--data-dir", str(others[1].workdir / "data"), "get", "greeting")
    assert (got.returncode, got.stdout) == (0, b"hello"), got.stderr.decode()

    # Restart b: same key, same records, back in the network through its saved contacts.
    restarted = others[0]
    before = status(restarted)["node_id"]
    assert restarted.stop() == 0
    assert not (restarted.workdir / "data" / API_FILE).exists()
    restarted.start()
    restarted.wait_for(restarted.workdir / "data" / API_FILE)
    after = wait_for_contacts(restarted, 1)
    assert after["node_id"] == before
    got = dhtkit_command("--data-dir", str(restarted.workdir / "data"), "get", "greeting")
    assert (got.returncode, got.stdout) == (0, b"hello"), got.stderr.decode()

    missing = dhtkit_command("--data-dir", str(data_a), "get", "no such name")
    assert missing.returncode == 1
    assert b"no value" in missing.stderr and b"Traceback" not in missing.stderr

    for daemon in list(daemons):
        daemons.remove(daemon)
        assert daemon.stop() == 0, daemon.output()
        log = daemon.output()
        assert "Traceback" not in log and "Unhandled" not in log, log
        assert not os.path.lexists(daemon.workdir / "data" / LOCK_FILE)
    assert (data_a / "contacts.cbor").exists()


def test_a_bad_option_stops_twistd_with_a_sentence_and_creates_nothing(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "w", ["dhtkit", "--data-dir", str(tmp_path / "d"), "--port", "x"])
    daemon.start()
    assert daemon.process is not None
    status = daemon.process.wait(60)
    # Older twistd (Twisted 22.10, our floor) exits 0 after printing a usage
    # error; newer ones exit 1. Either way it stops with our sentence.
    assert status in (0, 1)
    assert "--port x: not a whole number" in daemon.output()
    assert "Traceback" not in daemon.output()
    assert not (tmp_path / "d").exists()


def test_a_second_daemon_on_the_same_directory_stops(tmp_path: Path, daemons: list[Daemon]) -> None:
    first = node_daemon(tmp_path, "a", free_udp_port_with_tcp_after())
    daemons.append(first)
    first.start()
    first.wait_for(first.workdir / "data" / API_FILE)
    second = Daemon(
        tmp_path / "b",
        ["dhtkit", "--port", "0", "--data-dir", str(first.workdir / "data")],
    )
    second.start()
    assert second.process is not None
    assert second.process.wait(60) != 0
    assert "for another dhtkit daemon" in second.output()
    # The first is untouched and still answers.
    assert status(first)["protocol"] == "kademlia"


def hung_up(sockets: list[socket.socket], expected: int, timeout: float) -> set[socket.socket]:
    """The sockets the server closed, once ``expected`` of them are (or ``timeout`` passed)."""
    closed: set[socket.socket] = set()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for s in sockets:
            selector.register(s, selectors.EVENT_READ)
        while len(closed) < expected and time.monotonic() < deadline:
            for key, _ in selector.select(0.5):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    data = s.recv(1)
                except ConnectionError:
                    data = b""
                assert data == b"", "the daemon answered a request it never got whole"
                closed.add(s)
                selector.unregister(s)
        # Anything else that would close now.
        for key, _ in selector.select(0.2):
            closed.add(key.fileobj)  # type: ignore[arg-type]
    return closed


def test_slow_http_clients_leave_the_daemons_api_to_others(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = node_daemon(tmp_path, "a", free_udp_port_with_tcp_after())
    daemon.args += ["--http-max-per-source", "4", "--http-timeout", "60"]
    daemons.append(daemon)
    daemon.start()
    daemon.wait_for(daemon.workdir / "data" / API_FILE)
    url = (daemon.workdir / "data" / API_FILE).read_text().strip()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    slow = []
    try:
        for _ in range(20):
            s = socket.create_connection(
                (host, int(port)), timeout=30, source_address=("127.0.0.2", 0)
            )
            s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        # The daemon keeps 4 of them and hangs up on the others at once.
        closed = hung_up(slow, expected=16, timeout=30)
        assert len(closed) == 16
        # A client on another address is answered meanwhile.
        assert status(daemon)["protocol"] == "kademlia"
    finally:
        for s in slow:
            s.close()
    assert daemon.stop() == 0
    daemons.remove(daemon)
    assert "Traceback" not in daemon.output()


def test_a_command_right_after_the_daemon_is_started_waits_for_it(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    # As the README runs it: `twistd ... &` then at once `dhtkit -d DIR put`.
    # The command once failed with "no running node found": it now waits,
    # --wait seconds at most, for the node to start and join.
    port_a = free_udp_port_with_tcp_after()
    a = node_daemon(tmp_path, "a", port_a)
    b = node_daemon(tmp_path, "b", free_udp_port_with_tcp_after(), port_a)
    daemons.extend([a, b])
    a.start()
    b.start()
    put = dhtkit_command("--data-dir", str(a.workdir / "data"), "put", "greeting", "hello")
    assert put.returncode == 0, put.stderr.decode() + a.output()
    got = dhtkit_command("--data-dir", str(b.workdir / "data"), "get", "greeting")
    assert (got.returncode, got.stdout) == (0, b"hello"), got.stderr.decode() + b.output()
