"""A node that cannot start says why in one line naming the thing, and exits non-zero.

Real ``twistd -n dhtkit`` processes (and one daemonized), each stopped by
one cause: its UDP or HTTP port in use, its data directory locked by a
live process, a damaged SQLite file, a bad key file, an HTTP endpoint that
cannot listen once the node already runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhtkit.cli import run as cli
from dhtkit.datadir import LOCK_FILE
from dhtkit.nodesocket import IDENTITY_FILE
from dhtkit.ports import PortUnavailable
from dhtkit.service import STORE_FILE
from dhtkit.startup import describe, tcp_address
from dhtkit.storage import StorageError
from tests.daemons import TWISTD, child_env, free_udp_port_with_tcp_after


def twistd(cwd: Path, *args: str, foreground: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [*TWISTD, *(["-n"] if foreground else []), "--pidfile", "", *args]
    if not foreground:
        argv[len(TWISTD) : len(TWISTD)] = ["--logfile", str(cwd / "twistd.log")]
    return subprocess.run(
        argv, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=60, check=False
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The process failed with one ``dhtkit: error:`` line and no traceback; that line."""
    assert done.returncode == 1, done.stdout + done.stderr
    everything = done.stdout + done.stderr
    assert "Traceback" not in everything, everything
    lines = [line for line in everything.splitlines() if "dhtkit: error: " in line]
    assert len(lines) == 1, everything
    return lines[0].split("dhtkit: error: ", 1)[1]


@pytest.fixture
def port() -> int:
    return free_udp_port_with_tcp_after()


@pytest.fixture
def udp_taken(port: int) -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))
        yield port


def test_a_udp_port_in_use_is_named_with_its_process(tmp_path: Path, udp_taken: int) -> None:
    done = twistd(tmp_path, "dhtkit", "-p", str(udp_taken), "-d", "node")
    line = one_line(done)
    assert done.stderr.strip() == "dhtkit: error: " + line  # before any logging
    assert line.startswith(
        "UDP port {} on 127.0.0.1 is in use by process {} (".format(udp_taken, os.getpid())
    )
    assert line.endswith("give another --port")


def test_an_http_port_in_use_is_named_with_its_process(tmp_path: Path, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port + 1))
        sock.listen(1)
        line = one_line(twistd(tmp_path, "dhtkit", "-p", str(port), "-d", "node"))
    assert line.startswith(
        "HTTP port {} on 127.0.0.1 is in use by process {} (".format(port + 1, os.getpid())
    )
    assert line.endswith("give another --http")


def test_a_locked_data_dir_names_the_process_holding_it(tmp_path: Path) -> None:
    (tmp_path / "node").mkdir()
    os.symlink(str(os.getpid()), tmp_path / "node" / LOCK_FILE)  # a live process holds it
    line = one_line(twistd(tmp_path, "dhtkit", "-p", "0", "-d", "node"))
    assert line.startswith(
        "process {} holds {} for another dhtkit daemon".format(
            os.getpid(), Path("node") / LOCK_FILE
        )
    )


def test_a_damaged_sqlite_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "node").mkdir()
    (tmp_path / "node" / STORE_FILE).write_bytes(b"not a database, " * 512)
    line = one_line(twistd(tmp_path, "dhtkit", "-p", "0", "-d", "node"))
    assert line.startswith("{} is not a readable SQLite database".format(Path("node") / STORE_FILE))


def test_a_bad_key_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "node").mkdir()
    (tmp_path / "node" / IDENTITY_FILE).write_bytes(b"garbage\n")
    line = one_line(twistd(tmp_path, "dhtkit", "-p", "0", "-d", "node"))
    assert line.startswith(
        "{} is not a dhtkit identity key file".format(Path("node") / IDENTITY_FILE)
    )


def test_a_failure_once_the_node_runs_is_one_line_too(tmp_path: Path) -> None:
    # Nothing checks a UNIX socket's directory beforehand: the node starts,
    # then its HTTP API cannot listen.
    endpoint = "unix:{}".format(tmp_path / "missing" / "api.sock")
    done = twistd(tmp_path, "dhtkit", "-p", "0", "-d", "node", "--http", endpoint)
    assert "cannot use {}".format(tmp_path / "missing" / "api.sock") in one_line(done)


def test_a_daemon_reports_its_failure_to_the_command_that_started_it(tmp_path: Path) -> None:
    # Daemonized, twistd waits for the child's word: the failure must reach
    # it (an exit without a word would leave twistd waiting for ever).
    endpoint = "unix:{}".format(tmp_path / "missing" / "api.sock")
    done = twistd(tmp_path, "dhtkit", "-p", "0", "-d", "node", "--http", endpoint, foreground=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "StartupError: cannot use " in done.stderr  # twistd cuts it at 100 bytes
    line = "dhtkit: error: cannot use {}".format(tmp_path / "missing" / "api.sock")
    assert line in (tmp_path / "twistd.log").read_text()


def test_a_daemon_reports_a_port_in_use_before_it_forks(tmp_path: Path, udp_taken: int) -> None:
    done = twistd(tmp_path, "dhtkit", "-p", str(udp_taken), "-d", "node", foreground=False)
    assert one_line(done).startswith("UDP port {} on 127.0.0.1 is in use".format(udp_taken))


def test_describe_knows_start_up_errors_only() -> None:
    error = PortUnavailable("UDP", "127.0.0.1", 9, OSError(13, "Permission denied"))
    assert (
        describe(error)
        == "UDP port 9 on 127.0.0.1: permission denied (ports below 1024 need privileges)"
    )
    assert describe(StorageError("x.sqlite is damaged")) == "x.sqlite is damaged"
    assert describe(FileNotFoundError(2, "No such file or directory", "a/b")) == (
        "cannot use a/b: No such file or directory"
    )
    assert describe(ValueError("a bug")) is None


def test_tcp_endpoint_descriptions_give_their_address() -> None:
    assert tcp_address("tcp:4001:interface=127.0.0.1") == ("127.0.0.1", 4001)
    assert tcp_address(r"tcp6:port=4001:interface=\:\:1") == ("::1", 4001)
    assert tcp_address("tcp:4001") == ("0.0.0.0", 4001)
    assert tcp_address("unix:/run/dhtkit.sock") is None


def test_the_command_reports_a_start_up_error_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As `dhtkit demo` would, were its node's store damaged: no "internal error".
    assert cli._report(StorageError("x.sqlite is not a readable SQLite database")) == 1
    assert capsys.readouterr().err == "dhtkit: error: x.sqlite is not a readable SQLite database\n"
