"""Run a small DHT of real nodes on 127.0.0.1: join, put, get, restart, rejoin.

Each node is a :class:`~dhtkit.KademliaService` (or the service of another
overlay of :mod:`dhtkit.overlays`, ``--protocol chord`` or ``pastry``) with its own data
directory (identity, SQLite store, saved contacts) in a temporary directory.
The first node starts alone; each later one joins through the first. One
node puts values, others read them; then a node is stopped and started
again *without* a bootstrap list: it rejoins through the contacts it saved,
with its records still in its SQLite file.

    python examples/dht_network.py [--nodes 12] [--protocol kademlia|chord|pastry]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from dhtkit import key_for
from dhtkit.overlays import OVERLAYS
from dhtkit.service import OverlayService

SERVICES: dict[str, type[OverlayService]] = {n: e.service() for n, e in OVERLAYS.items()}
#: Maintenance quicker than a long-running node's, for a demonstration.
QUICK: dict[str, dict[str, float]] = {n: dict(e.quick) for n, e in OVERLAYS.items()}


async def main(reactor: Any, count: int, protocol: str, data: Path) -> None:
    cls = SERVICES[protocol]
    services: list[OverlayService] = []
    for n in range(count):
        bootstrap = [services[0].address] if services else []
        svc = cls(
            0, "127.0.0.1", data / "node{}".format(n), bootstrap, reactor=reactor, **QUICK[protocol]
        )
        svc.startService()
        await svc.when_joined()
        services.append(svc)
    print("{} {} nodes joined on 127.0.0.1".format(count, protocol.capitalize()))
    # A Chord node fills its successor list in the stabilization rounds after
    # its join, a Pastry node its leaf set in the leaf-set rounds: give them a few.
    await task.deferLater(reactor, 1.0, lambda: None)

    rng = random.Random(1)
    writer, reader = services[1], services[-1]
    stored = await writer.node.put(key_for("greeting"), b"hello")
    print("node 1 put 'greeting' on {} replicas".format(stored))
    print("node {} reads {!r}".format(count - 1, await reader.node.get(key_for("greeting"))))
    await writer.node.put_signed(b"version one", salt=b"profile")
    await writer.node.put_signed(b"version two", salt=b"profile")
    latest = await services[rng.randrange(count)].node.get_signed(
        writer.identity.public_key, b"profile"
    )
    assert latest is not None
    print("a random node reads signed seq {}: {!r}".format(latest.seq, latest.value))

    last = services.pop()
    await last.stopService()
    again = cls(0, "127.0.0.1", last.data_dir, reactor=reactor, **QUICK[protocol])  # no bootstrap
    again.startService()
    contacts = await again.when_joined()
    services.append(again)
    print("node {} restarted and rejoined through {} saved contacts".format(count - 1, contacts))
    print("it reads {!r}".format(await again.node.get(key_for("greeting"))))
    await defer.gatherResults([s.stopService() for s in services])


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=12)
    parser.add_argument("--protocol", choices=sorted(SERVICES), default="kademlia")
    args = parser.parse_args(argv)
    if not 2 <= args.nodes <= 200:
        parser.error("--nodes must be between 2 and 200")
    data = Path(tempfile.mkdtemp(prefix="dhtkit-"))
    try:
        task.react(
            lambda reactor: defer.ensureDeferred(main(reactor, args.nodes, args.protocol, data))
        )
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
