"""Twelve ``twistd dhtkit`` daemons per overlay, each in a network namespace, under faults.

200 values are put on a healthy network; four daemons are killed with
SIGKILL and every value is still found; they are restarted from their data
directories without any bootstrap host and serve what they held; then the
network is cut in two, each side takes new values, and after the cut heals
every value is found from both sides.

This suite needs root and takes a few minutes of CPU, so it runs only when
``DHTKIT_MULTIHOST_FAULTS=1`` (tox sets it in its ``faults`` environment). On the
healthy network every call must succeed on its first try; after a kill, a
restart or a cut, calls may be repeated for a bounded time while the overlay
repairs itself. A failure shows the end of every daemon's log.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dhtkit import overlays
from tests.daemons import HostDaemon, HttpBatch
from tests.netns import NetnsLab, clean_leftovers, unavailable

#: The environment variable that turns the suite on.
SWITCH = "DHTKIT_MULTIHOST_FAULTS"
HOSTS = 12
VALUES = 200
#: Daemons killed and restarted (host 0, every host's bootstrap, stays up).
VICTIMS = (1, 4, 7, 10)
#: Values put on each side of the cut.
PER_SIDE = 12
#: Seconds a call may be repeated after a fault while the overlay repairs itself.
REPAIR = 60.0
#: Lines of each daemon's log shown when the suite fails (without the HTTP access log).
LOG_LINES = 60
_ACCESS = re.compile(r'"(?:GET|PUT|POST|DELETE) /')
#: Contacts each daemon must know before the first put: enough to be one network.
JOINED = HOSTS // 2

#: Each overlay's options: replica sets larger than the number of daemons killed.
OVERLAYS = {
    name: ["--k", "8"] if name == "kademlia" else ["--replication", "5"]
    for name in overlays.OVERLAYS
}

pytestmark = [
    pytest.mark.skipif(unavailable() is not None, reason=str(unavailable())),
    pytest.mark.skipif(
        os.environ.get(SWITCH) != "1",
        reason="the multi-host fault suite runs only with {}=1 (tox -e faults sets it)".format(
            SWITCH
        ),
    ),
]


def _subnet() -> str:
    # Addresses exist only inside the lab's namespaces; a subnet of its own
    # per process anyway, away from the other multi-host tests' 10.77.0.
    return "10.78.{}".format(os.getpid() % 250 + 1)


class Cluster:
    """The lab's daemons, with calls spread over them and failures that show their logs."""

    def __init__(self, lab: NetnsLab, daemons: list[HostDaemon]) -> None:
        self.lab = lab
        self.daemons = daemons

    def logs(self) -> str:
        parts = []
        for daemon in self.daemons:
            lines = [x for x in daemon.output().splitlines() if not _ACCESS.search(x)]
            tail = lines[-LOG_LINES:]
            parts.append(
                "----- {} ({})\n{}".format(daemon.host.name, daemon.host.address, "\n".join(tail))
            )
        return "\n".join(parts)

    @contextmanager
    def showing_logs(self) -> Iterator[None]:
        """Any failure inside gets every daemon's log appended."""
        try:
            yield
        except AssertionError as e:
            raise AssertionError("{}\n{}".format(e, self.logs())) from None

    def start(self, daemons: list[HostDaemon], bootstrap: bool = True) -> None:
        """Start ``daemons`` side by side and wait until each one answers."""
        for daemon in daemons:
            daemon.launch(bootstrap)
        for daemon in daemons:
            daemon.wait_ready(timeout=60)

    def call(
        self, plan: list[tuple[HostDaemon, list[str]]], within: float, what: str
    ) -> list[dict[str, Any]]:
        """Run every call on its daemon, all daemons at once; fail unless all succeed."""
        results = self.run(plan, within)
        failed = [r for r in results if not r["ok"]]
        assert not failed, "{}: {} of {} calls failed, e.g. {}".format(
            what, len(failed), len(results), failed[:3]
        )
        return results

    def run(self, plan: list[tuple[HostDaemon, list[str]]], within: float) -> list[dict[str, Any]]:
        """Run every call on its daemon, all daemons at once; each call's result."""
        calls: dict[HostDaemon, list[list[str]]] = {}
        for daemon, call in plan:
            calls.setdefault(daemon, []).append(call)
        batches: list[HttpBatch] = [d.http(c, within=within) for d, c in calls.items()]
        return [r for batch in batches for r in batch.results()]

    def settle(self, within: float) -> None:
        """Wait until the overlay agrees with itself: probes put anywhere are read everywhere.

        Right after joins and restarts a Chord ring is still being stabilized,
        and a value put then may land where a later lookup does not look.
        """
        deadline = time.monotonic() + within
        for attempt in itertools.count():
            names = ["probe-{}-{}".format(attempt, i) for i in range(len(self.daemons))]
            puts = [(d, ["put", n, n]) for d, n in zip(self.daemons, names, strict=True)]
            gets = [(d, ["get", n, n]) for d in self.daemons for n in names]
            if all(r["ok"] for r in self.run(puts, 0)) and all(r["ok"] for r in self.run(gets, 0)):
                return
            assert time.monotonic() < deadline, "the overlay never settled"
            time.sleep(1.0)

    def wait_for_contacts(self, daemons: list[HostDaemon], count: int, within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            seen = {d.host.name: d.contacts() for d in daemons}
            if min(seen.values()) >= count:
                return
            assert time.monotonic() < deadline, "contacts never reached {}: {}".format(count, seen)
            time.sleep(0.5)


@pytest.fixture(params=sorted(OVERLAYS))
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    clean_leftovers()
    protocol = request.param
    lab = NetnsLab(HOSTS, subnet=_subnet())
    request.addfinalizer(lab.close)
    first = lab.hosts[0]
    daemons = [
        HostDaemon(
            h, tmp_path, None if h is first else first, protocol, h.address, OVERLAYS[protocol]
        )
        for h in lab.hosts
    ]

    def stop_all() -> None:
        for daemon in daemons:
            daemon.stop(signal.SIGKILL)

    request.addfinalizer(stop_all)  # runs before lab.close: last in, first out
    cluster = Cluster(lab, daemons)
    with cluster.showing_logs():
        cluster.start(daemons[:1])
        cluster.start(daemons[1:])
        cluster.wait_for_contacts(daemons, JOINED, within=REPAIR)
    yield cluster


def spread(daemons: list[HostDaemon], calls: list[list[str]]) -> list[tuple[HostDaemon, list[str]]]:
    """Each call on the next daemon in turn."""
    return [(daemons[i % len(daemons)], call) for i, call in enumerate(calls)]


def across(west: list[HostDaemon], east: list[HostDaemon]) -> dict[str, int]:
    """How many contacts each daemon has on the other side of the (healed) cut."""
    sides = [({d.host.address for d in east}, west), ({d.host.address for d in west}, east)]
    return {
        d.host.name: sum(a.rsplit(":", 1)[0] in other for a in d.contact_addresses())
        for other, side in sides
        for d in side
    }


def test_values_survive_kills_restarts_and_a_partition(cluster: Cluster) -> None:
    daemons = cluster.daemons
    values = [
        ("value-{:03d}".format(i), "payload {} of {}".format(i, VALUES)) for i in range(VALUES)
    ]
    victims = [daemons[i] for i in VICTIMS]
    survivors = [d for d in daemons if d not in victims]
    with cluster.showing_logs():
        # The victims have run before: a clean stop saved their contacts (a
        # running daemon saves them only every 5 minutes).
        for victim in victims:
            victim.stop()
        cluster.start(victims, bootstrap=False)
        cluster.wait_for_contacts(victims, JOINED, within=REPAIR)
        cluster.settle(within=REPAIR)

        # A healthy network: the first try succeeds.
        cluster.call(
            spread(daemons, [["put", n, v] for n, v in values]), 0, "put on a healthy network"
        )
        cluster.call(
            spread(daemons[1:], [["get", n, v] for n, v in values]), 0, "get on a healthy network"
        )

        # Four daemons die without a word; the others still find every value.
        held = {d.host.name: d.status()["values"] for d in victims}
        for victim in victims:
            victim.stop(signal.SIGKILL)
        cluster.call(
            spread(survivors, [["get", n, v] for n, v in values]), REPAIR, "get after kill -9"
        )

        # Restarted from their data directories alone (no --bootstrap): they
        # rejoin through their saved contacts and still hold their records.
        cluster.start(victims, bootstrap=False)
        cluster.wait_for_contacts(victims, 1, within=REPAIR)
        for victim in victims:
            assert victim.status()["values"] >= held[victim.host.name], victim.host.name
        cluster.call(
            spread(victims, [["get", n, v] for n, v in values]), REPAIR, "get from the restarted"
        )

        # The network is cut in two; each side takes values of its own.
        west, east = daemons[: HOSTS // 2], daemons[HOSTS // 2 :]
        cluster.lab.partition([d.host for d in west], [d.host for d in east])
        sides = {
            "west": (
                west,
                [
                    ("west-{:02d}".format(i), "put in the west {}".format(i))
                    for i in range(PER_SIDE)
                ],
            ),
            "east": (
                east,
                [
                    ("east-{:02d}".format(i), "put in the east {}".format(i))
                    for i in range(PER_SIDE)
                ],
            ),
        }
        cluster.call(
            [
                p
                for side, put in sides.values()
                for p in spread(side, [["put", n, v] for n, v in put])
            ],
            REPAIR,
            "put during the partition",
        )

        # Healed: what either side took is found from both.
        cluster.lab.heal()
        both = [nv for _, put in sides.values() for nv in put]
        reads = spread(west, [["get", n, v] for n, v in both])
        reads += spread(east, [["get", n, v] for n, v in both])
        results = cluster.run(reads, REPAIR)
        failed = [r for r in results if not r["ok"]]
        assert not failed, (
            "get after the partition healed: {} of {} calls failed, e.g. {}; contacts on the "
            "other side, per host: {}".format(
                len(failed), len(results), failed[:3], across(west, east)
            )
        )

        for daemon in daemons:
            assert "Traceback" not in daemon.output(), daemon.host.name
