"""``dhtkit demo``: a small network of real nodes in one process, and values through it.

The nodes are the services a daemon runs (one per overlay of
:mod:`dhtkit.overlays`) on UDP ports of 127.0.0.1, with data
directories in a temporary directory that is removed at the end. The first
node starts alone, the others join through it; once every node agrees on
who holds each key, one node puts the values and the others get them back.

What happened (the joins, the puts, each value found or not) is printed on
stdout; the progress bars and what the demo is doing meanwhile go to
stderr, so that ``dhtkit demo > result.txt`` keeps only the result.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import attrs
from twisted.internet import defer, task

from dhtkit.cli.args import CommandFailed, at_most
from dhtkit.cli.commands import summary
from dhtkit.keyspace import key_for
from dhtkit.node import PutFailed
from dhtkit.overlays import OVERLAYS, protocols
from dhtkit.service import OverlayService

PROTOCOLS: dict[str, type[OverlayService]] = protocols()
#: Seconds a join, or the agreement of every node on the holders, may take.
JOIN_TIMEOUT = 10.0
SETTLE_TIMEOUT = 15.0


def add_commands(commands: Any) -> None:
    """Add ``dhtkit demo``: start, join, put, get and stop a local network."""
    parser = commands.add_parser(
        "demo",
        help=summary("demo"),
        description="Start N nodes of the real protocol on 127.0.0.1 in this process, join "
        "them, put values on one node, get them back on the others, and stop. Exit status 1 "
        "if a value was not found.",
    )
    parser.add_argument("--nodes", type=at_most(2, 64), default=16, metavar="N")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default=next(iter(PROTOCOLS)))
    parser.add_argument("--values", type=at_most(1, 50), default=5, metavar="V")
    parser.set_defaults(run=run_demo, uses_reactor=True)


class ProgressBar:
    """``label [#####-----] done/total``: rewritten in place on a terminal, a line per step
    elsewhere."""

    def __init__(self, stream: TextIO, label: str, total: int, width: int = 20) -> None:
        self.stream = stream
        self.label = label
        self.total = total
        self.width = width
        self.in_place = stream.isatty()

    def show(self, done: int) -> None:
        """Draw the bar at ``done`` of ``total`` steps."""
        filled = self.width * done // self.total
        text = "{:<8} [{}{}] {}/{}".format(
            self.label, "#" * filled, "-" * (self.width - filled), done, self.total
        )
        if self.in_place:
            self.stream.write("\r" + text + ("\n" if done >= self.total else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _value_of(name: str) -> bytes:
    return "value of {}".format(name).encode()


@attrs.frozen
class Read:
    """A demo value read back on another node than the one that put it."""

    name: str
    node: int
    value: bytes | None
    seconds: float
    #: A lookup of the value's key from the same node: its hops and messages.
    hops: int
    messages: int

    @property
    def found(self) -> bool:
        """Whether the value read is the one that was put."""
        return self.value == _value_of(self.name)


class Report:
    """What ``dhtkit demo`` tells on its output, step by step, as the steps end."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def joined(self, nodes: int, protocol: str, seconds: float) -> None:
        """Every node has joined."""
        self._say(
            "{} {} nodes joined on 127.0.0.1 in {:.2f} s".format(
                nodes, protocol.capitalize(), seconds
            )
        )

    def settled(self, seconds: float) -> None:
        """Every node names the same holders of every key."""
        self._say("every node agrees on the holders after {:.2f} s".format(seconds))

    def stored(self, values: int, replicas: list[int]) -> None:
        """The values are put, each on ``replicas`` nodes."""
        self._say(
            "{} values put on node 0, stored on {} to {} nodes each".format(
                values, min(replicas), max(replicas)
            )
        )

    def read(self, read: Read) -> None:
        """A value was read back (or not)."""
        if read.value is None:
            what = "NOT FOUND"
        elif read.found:
            what = "found {!r}".format(read.value.decode())
        else:
            what = "WRONG VALUE {!r}".format(read.value)
        self._say(
            "  {} on node {}: {} in {:.1f} ms (a lookup: {} hop{}, {} message{})".format(
                read.name,
                read.node,
                what,
                read.seconds * 1000,
                read.hops,
                "" if read.hops == 1 else "s",
                read.messages,
                "" if read.messages == 1 else "s",
            )
        )

    def total(self, found: int, values: int) -> None:
        """How many of the values were found."""
        self._say("{} of {} values found".format(found, values))

    def _say(self, line: str) -> None:
        print(line, file=self.out)


def run_demo(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit demo``; fires with 0 if every value was found, else 1."""
    services: list[OverlayService] = []
    scratch = tempfile.TemporaryDirectory(prefix="dhtkit-demo-")

    def stop_all() -> defer.Deferred[Any]:
        def remove(result: object) -> object:
            scratch.cleanup()
            return result

        stopping = [s.stopService() for s in services if s.running]
        return defer.gatherResults(stopping).addBoth(remove)

    # Ctrl-C stops the reactor: the nodes close their ports and stores first.
    trigger = reactor.addSystemEventTrigger("before", "shutdown", stop_all)

    def finished(result: Any) -> defer.Deferred[Any]:
        reactor.removeSystemEventTrigger(trigger)
        return stop_all().addCallback(lambda _: result)

    demo = _demo(args, reactor, Path(scratch.name), services, sys.stdout, sys.stderr)
    return defer.Deferred.fromCoroutine(demo).addBoth(finished)


async def _demo(
    args: argparse.Namespace,
    reactor: Any,
    scratch: Path,
    services: list[OverlayService],
    out: TextIO,
    progress: TextIO,
) -> int:
    report = Report(out)
    began = reactor.seconds()
    await _build(args, reactor, scratch, services, ProgressBar(progress, "joining", args.nodes))
    report.joined(args.nodes, args.protocol, reactor.seconds() - began)
    found = await _run(args.values, reactor, services, report, progress)
    print("stopping the nodes", file=progress)
    return 0 if found == args.values else 1


async def _build(
    args: argparse.Namespace,
    reactor: Any,
    scratch: Path,
    services: list[OverlayService],
    joining: ProgressBar,
) -> None:
    """Start ``args.nodes`` nodes into ``services``, each joining through the first."""
    cls = PROTOCOLS[args.protocol]
    # Maintenance rounds fast enough for a few nodes to settle in a second.
    options: dict[str, Any] = dict(OVERLAYS[args.protocol].quick)
    for n in range(args.nodes):
        bootstrap = [services[0].address] if services else []
        svc = cls(
            0,
            "127.0.0.1",
            scratch / "node{}".format(n),
            bootstrap,
            reactor=reactor,
            rpc_options={"timeout": 0.5},
            **options,
        )
        svc.startService()
        services.append(svc)
        try:
            await svc.when_joined().addTimeout(JOIN_TIMEOUT, reactor)
        except defer.TimeoutError:
            message = "node {} did not join within {:g} s".format(n, JOIN_TIMEOUT)
            raise CommandFailed(message) from None
        joining.show(n + 1)


async def _run(
    values: int, reactor: Any, services: list[OverlayService], report: Report, progress: TextIO
) -> int:
    """Put ``values`` values on the first node and read each back on another: how many came."""
    names = ["demo-{}".format(i) for i in range(1, values + 1)]
    keys = [key_for(name) for name in names]
    began = reactor.seconds()
    await _settle(services, keys, reactor)
    report.settled(reactor.seconds() - began)
    writer = services[0].node
    putting = ProgressBar(progress, "putting", len(names))
    replicas = []
    for i, (name, key) in enumerate(zip(names, keys, strict=True)):
        try:
            replicas.append(await writer.put(key, _value_of(name)))
        except PutFailed as e:
            raise CommandFailed("putting {}: {}".format(name, e)) from None
        putting.show(i + 1)
    report.stored(len(names), replicas)
    found = 0
    for i, (name, key) in enumerate(zip(names, keys, strict=True)):
        n = 1 + i % (len(services) - 1)
        reader = services[n]
        start = reactor.seconds()
        value = await reader.node.get(key)
        took = reactor.seconds() - start
        lookup = await reader.overlay.lookup(key, reader.overlay.k)
        read = Read(name, n, value, took, lookup.hops, lookup.messages)
        if read.found:
            found += 1
        report.read(read)
    report.total(found, len(names))
    return found


async def _settle(services: list[OverlayService], keys: list[bytes], reactor: Any) -> None:
    """Wait until every node names the same, full set of holders for every key.

    Kademlia's join fills the tables at once; a Chord ring settles over the
    stabilization rounds after the joins and Pastry's leaf sets over the
    leaf-set rounds (a put needs a majority of a full replica set, which
    young successor lists and leaf sets do not name yet).
    """
    deadline = reactor.seconds() + SETTLE_TIMEOUT
    while True:
        asked = [
            svc.overlay.find_responsible(key, svc.overlay.k) for key in keys for svc in services
        ]
        answers = await defer.DeferredList(asked, consumeErrors=True)
        agree = True
        for i in range(len(keys)):
            per_node = answers[i * len(services) : (i + 1) * len(services)]
            holders = {
                frozenset(c.node_id for c in found) if ok else None for ok, found in per_node
            }
            full = min(services[0].overlay.k, len(services))
            agree = (
                agree
                and len(holders) == 1
                and None not in holders
                and all(len(h) == full for h in holders if h is not None)
            )
        if agree:
            return
        if reactor.seconds() > deadline:
            raise CommandFailed(
                "the nodes did not agree on the holders within {:g} s".format(SETTLE_TIMEOUT)
            )
        # Not sooner: each round is a lookup per node and key, and rounds in
        # quick succession would outrun the nodes' per-source rate limits.
        await task.deferLater(reactor, 0.5, lambda: None)


__all__ = ["PROTOCOLS", "ProgressBar", "Read", "Report", "add_commands", "run_demo"]
