"""RPC between hosts in network namespaces: real interfaces, real cuts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import NetnsLab, unavailable

NODE = str(Path(__file__).with_name("netns_node.py"))
PORT = 4000

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    with NetnsLab(3) as lab:
        yield lab


def start_server(host) -> tuple[subprocess.Popen[str], str]:
    proc = host.popen(
        [sys.executable, NODE, "serve", host.address, str(PORT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY "), proc.stderr.read() if proc.stderr else line
    return proc, line.split()[1]


def probe(host, targets, *extra: str) -> dict:
    result = host.run(
        [
            sys.executable,
            NODE,
            "probe",
            host.address,
            str(PORT),
            *("{}:{}".format(t.address, PORT) for t in targets),
            *extra,
        ]
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_nodes_on_three_hosts_authenticate_and_survive_a_cut_and_garbage(lab: NetnsLab) -> None:
    client, second, third = lab.hosts
    servers = [start_server(second), start_server(third)]
    try:
        key = "{}:{}".format
        report = probe(client, [second, third], "--garbage")
        for host, (_, node_id) in zip((second, third), servers, strict=True):
            entry = report[key(host.address, PORT)]
            assert entry["ok"] and entry["node_id"] == node_id
            # The garbage was dropped and counted; the three real queries answered.
            assert entry["stats"]["dropped_malformed"] == 1
            assert entry["stats"]["queries_received"] == 3

        third.cut()
        report = probe(client, [second, third], "--timeout", "0.5")
        assert report[key(second.address, PORT)]["ok"]
        assert not report[key(third.address, PORT)]["ok"]

        third.plug()
        report = probe(client, [third])
        assert report[key(third.address, PORT)]["ok"]
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=10)
