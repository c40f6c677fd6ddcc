"""dhtkit demo: a local network of real nodes, started, used and stopped in one command."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from dhtkit import cli
from dhtkit.cli import demo
from dhtkit.cli.demo import ProgressBar
from dhtkit.node import DHTNode
from dhtkit.overlays import OVERLAYS
from dhtkit.service import KademliaService

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("protocol", sorted(OVERLAYS))
@pytest_twisted.ensureDeferred
async def test_the_demo_finds_every_value_on_other_nodes(
    protocol: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--nodes", "6", "--protocol", protocol, "--values", "4"]
    assert await cli.execute(argv, reactor) == 0
    out, err = capsys.readouterr()
    # The progress on stderr, what happened on stdout.
    assert err.splitlines()[5] == "joining  [####################] 6/6"
    assert err.splitlines()[-1] == "stopping the nodes"
    assert "[#" not in out and "stopping" not in out
    assert "6 {} nodes joined".format(protocol.capitalize()) in out
    for n in range(1, 5):
        assert "  demo-{} on node {}: found 'value of demo-{}'".format(n, n, n) in out
    assert out.splitlines()[-1] == "4 of 4 values found"


@pytest_twisted.ensureDeferred
async def test_the_demo_stops_its_nodes_and_removes_their_directories(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[KademliaService] = []

    class Recorded(KademliaService):
        def startService(self) -> None:
            started.append(self)
            super().startService()

    monkeypatch.setitem(demo.PROTOCOLS, "kademlia", Recorded)
    assert await cli.execute(["demo", "--nodes", "3", "--values", "1"], reactor) == 0
    assert "1 of 1 values found" in capsys.readouterr().out
    assert len(started) == 3
    assert not any(svc.running for svc in started)
    assert not any(svc.data_dir.exists() for svc in started)


@pytest_twisted.ensureDeferred
async def test_a_value_not_found_makes_the_demo_fail(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DHTNode, "get", lambda self, key: defer.succeed(None))
    assert await cli.execute(["demo", "--nodes", "3", "--values", "2"], reactor) == 1
    out = capsys.readouterr().out
    assert "demo-1 on node 1: NOT FOUND" in out and "0 of 2 values found" in out


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        (["demo", "--nodes", "1"], "--nodes"),
        (["demo", "--nodes", "65"], "maximum of 64"),
        (["demo", "--values", "0"], "--values"),
        (["demo", "--protocol", "tapestry"], "--protocol"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_demo_arguments_are_usage_errors(
    argv: list[str], mentions: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli.execute(argv, reactor) == 2
    err = capsys.readouterr().err
    assert err.startswith("dhtkit: error: ") and mentions in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_is_rewritten_in_place_on_a_terminal() -> None:
    stream = Terminal()
    bar = ProgressBar(stream, "joining", 4, width=8)
    for done in range(1, 5):
        bar.show(done)
    assert stream.getvalue() == (
        "\rjoining  [##------] 1/4\rjoining  [####----] 2/4"
        "\rjoining  [######--] 3/4\rjoining  [########] 4/4\n"
    )


def test_the_progress_bar_prints_lines_elsewhere() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, "putting", 3, width=6)
    for done in range(1, 4):
        bar.show(done)
    assert stream.getvalue().splitlines() == [
        "putting  [##----] 1/3",
        "putting  [####--] 2/3",
        "putting  [######] 3/3",
    ]


def test_the_demo_runs_as_a_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dhtkit.cli", "demo", "--nodes", "4"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.splitlines()[-1] == "5 of 5 values found"
    assert "putting  [####################] 5/5" in done.stderr.splitlines()


def test_the_report_says_which_values_were_missing_or_wrong() -> None:
    out = io.StringIO()
    report = demo.Report(out)
    report.read(demo.Read("demo-1", 2, b"value of demo-1", 0.0015, 1, 3))
    report.read(demo.Read("demo-2", 3, None, 0.5, 2, 1))
    report.read(demo.Read("demo-3", 1, b"other", 0.25, 0, 0))
    report.total(1, 3)
    assert out.getvalue().splitlines() == [
        "  demo-1 on node 2: found 'value of demo-1' in 1.5 ms (a lookup: 1 hop, 3 messages)",
        "  demo-2 on node 3: NOT FOUND in 500.0 ms (a lookup: 2 hops, 1 message)",
        "  demo-3 on node 1: WRONG VALUE b'other' in 250.0 ms (a lookup: 0 hops, 0 messages)",
        "1 of 3 values found",
    ]
