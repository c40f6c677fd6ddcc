"""The examples the README and the docs point at run and succeed."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dhtkit.overlays import OVERLAYS
from tests.daemons import TWISTD, Daemon, free_udp_port_with_tcp_after

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``examples/name`` with ``args`` in a process of its own."""
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_authenticated_rpc_example_runs_a_network_and_drops_forgeries() -> None:
    result = run_example("authenticated_rpc.py", "--nodes", "5")
    assert result.returncode == 0, result.stderr
    # Each of the four newcomers pings the three others.
    assert "12 MAC'd pings between 5 nodes answered" in result.stdout
    assert "1 forged and 1 replayed dropped" in result.stdout


@pytest.mark.parametrize("nodes", ["1", "1000", "many"])
def test_authenticated_rpc_example_refuses_bad_arguments(nodes: str) -> None:
    result = run_example("authenticated_rpc.py", "--nodes", nodes)
    assert result.returncode == 2
    assert "--nodes" in result.stderr
    assert "Traceback" not in result.stderr


def test_values_example_stores_reads_refuses_a_stale_swap_and_survives_a_restart() -> None:
    result = run_example("values.py", "--nodes", "5")
    assert result.returncode == 0, result.stderr
    assert "node 4 reads b'hello'" in result.stdout
    assert "reads signed seq 2: b'version two'" in result.stdout
    assert "compare-and-swap on seq 1 refused" in result.stdout
    assert "restarted from its SQLite file and still holds b'hello'" in result.stdout


@pytest.mark.parametrize("args", [["--nodes", "2"], ["--replication", "0"], ["--nodes", "x"]])
def test_values_example_refuses_bad_arguments(args: list[str]) -> None:
    result = run_example("values.py", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("protocol", sorted(OVERLAYS))
def test_dht_network_example_joins_stores_reads_and_rejoins_after_a_restart(
    protocol: str,
) -> None:
    result = run_example("dht_network.py", "--nodes", "8", "--protocol", protocol)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "8 {} nodes joined".format(protocol.capitalize()) in out
    assert "node 7 reads b'hello'" in out
    assert "reads signed seq 2: b'version two'" in out
    assert "restarted and rejoined through" in out
    assert out.rstrip().endswith("it reads b'hello'")


def wait_for_line(daemon: Daemon, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.output():
        assert daemon.process is not None
        if daemon.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("{!r} never logged:\n{}".format(text, daemon.output()))
        time.sleep(0.05)


def test_the_tac_example_refuses_a_bootstrap_without_a_port_in_one_line(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [*TWISTD, "-n", "--pidfile=", "-y", str(ROOT / "examples" / "notebook.tac")],
        cwd=tmp_path,
        env={
            **os.environ,
            "DHTKIT_BOOTSTRAP": "127.0.0.1",
            "DHTKIT_PORT": str(free_udp_port_with_tcp_after()),
            "DHTKIT_DATA_DIR": str(tmp_path / "data"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DHTKIT_BOOTSTRAP: '127.0.0.1': give HOST:PORT" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_the_tac_example_embeds_a_node_and_keeps_its_note_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DHTKIT_PORT", str(free_udp_port_with_tcp_after()))
    monkeypatch.setenv("DHTKIT_DATA_DIR", str(tmp_path / "data"))
    daemon = Daemon(tmp_path, ["-y", str(ROOT / "examples" / "notebook.tac")])
    try:
        daemon.start()
        wait_for_line(daemon, "has started 1 times")
        assert daemon.stop() == 0, daemon.output()[-3000:]
        daemon.start()
        wait_for_line(daemon, "has started 2 times")
    finally:
        assert daemon.stop() == 0, daemon.output()[-3000:]
    assert "Traceback" not in daemon.output()
