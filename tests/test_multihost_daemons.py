"""twistd dhtkit daemons on three hosts in network namespaces: partitioned and killed on purpose."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhtkit.overlays import OVERLAYS
from tests.daemons import HostDaemon
from tests.netns import NetnsLab, unavailable

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


#: Each overlay once; the second on every interface (0.0.0.0), the others on the host's address.
PARAMS = [(name, "0.0.0.0" if i == 1 else "host") for i, name in enumerate(OVERLAYS)]


@pytest.fixture(
    params=PARAMS,
    ids=[
        "{}-on-{}".format(name, "every-interface" if where == "0.0.0.0" else "its-address")
        for name, where in PARAMS
    ],
)
def daemons(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[HostDaemon]]:
    # Bound to every interface, a node's socket calls it 0.0.0.0: it must be
    # known by the address its datagrams come from, not by what it says.
    protocol, interface = request.param
    with NetnsLab(3) as lab:
        nodes = [
            HostDaemon(
                h,
                tmp_path,
                None if i == 0 else lab.hosts[0],
                protocol,
                h.address if interface == "host" else interface,
            )
            for i, h in enumerate(lab.hosts)
        ]
        try:
            for node in nodes:
                node.start()
            yield nodes
        finally:
            for node in nodes:
                node.stop()


def succeeds(node: HostDaemon, *args: str, expect: str | None = None, within: float = 30.0) -> None:
    """Run ``dhtkit ARGS`` on ``node`` until it succeeds (and prints ``expect``).

    Right after a cut or a restart the overlay is still repairing itself: a
    Chord ring needs a few stabilization rounds (2 s each by default).
    """
    deadline = time.monotonic() + within
    while True:
        result = node.command(*args)
        if result.returncode == 0 and (expect is None or result.stdout == expect):
            return
        assert time.monotonic() < deadline, "{}: {!r}\n{}".format(
            " ".join(args), result, node.log.read_text()
        )
        time.sleep(0.5)


def test_values_survive_a_partition_and_a_killed_daemon(daemons: list[HostDaemon]) -> None:
    a, b, c = daemons
    for node in daemons:
        node.wait_for_contacts(2)
    # Two contacts each do not make a stable ring yet: a Chord node may still
    # know a successor list of one for a while (several stabilization rounds on
    # a loaded machine), and a put that reaches fewer than two replicas is
    # refused. It is retried like every other step.
    succeeds(a, "put", "greeting", "hello")
    succeeds(c, "get", "greeting", expect="hello")

    # b is cut off: the two others still read and write.
    b.host.cut()
    succeeds(c, "get", "greeting", expect="hello")
    succeeds(c, "put", "while-cut", "still here")
    succeeds(a, "get", "while-cut", expect="still here")

    # c dies without a word and comes back from its files, without --bootstrap help
    # beyond its saved contacts and a.
    c.stop(signal.SIGKILL)
    c.start()
    c.wait_for_contacts(1)
    succeeds(c, "get", "greeting", expect="hello")

    # b is plugged back in and catches up (a node that lost every contact
    # looks for the network again every 10 s).
    b.host.plug()
    succeeds(b, "get", "while-cut", expect="still here", within=60)
    for node in daemons:
        assert "Traceback" not in node.log.read_text(), node.log.read_text()
