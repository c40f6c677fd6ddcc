"""Store and read values on a small cluster of real nodes on 127.0.0.1.

Each node has its own identity and its own SQLite store in a temporary
directory. The cluster is a full mesh (every node knows every other), so the
``--replication`` nodes closest to a key hold it. The example puts a plain
value, an immutable one and two versions of a signed one, reads them back
from other nodes, shows compare-and-swap refusing a stale write, and
restarts one node from its SQLite file to show that its records are still
there.

    python examples/values.py [--nodes 6] [--replication 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime

from dhtkit import DHTNode, Identity, key_for
from dhtkit.overlay import StaticOverlay
from dhtkit.rpc import RPCProtocol
from dhtkit.storage import SQLiteStore
from dhtkit.values import CASMismatch, immutable_key


def start_node(
    reactor: Any, overlay: StaticOverlay, path: Path, identity: Identity, port: int = 0
) -> tuple[DHTNode, Any]:
    rpc = RPCProtocol(identity, reactor)
    listening = reactor.listenUDP(port, rpc, interface="127.0.0.1")
    node = DHTNode(rpc, overlay, SQLiteStore(path, reactor=reactor))  # syncs in a thread
    node.start()
    return node, listening


async def stop_node(node: DHTNode, listening: Any) -> None:
    node.stop()
    node.store.close()
    await listening.stopListening()


async def main(reactor: Any, count: int, replication: int, data: Path) -> None:
    overlay = StaticOverlay(k=replication)
    nodes, ports = [], []
    for n in range(count):
        node, listening = start_node(
            reactor, overlay, data / "node{}.sqlite".format(n), Identity.generate()
        )
        assert node.rpc.contact is not None
        overlay.add(node.rpc.contact)
        nodes.append(node)
        ports.append(listening)
    print("{} nodes on 127.0.0.1, each value on {} of them".format(count, replication))

    key = key_for("greeting")
    stored = await nodes[0].put(key, b"hello")
    print("node 0 put 'greeting' on {} replicas".format(stored))
    print("node {} reads {!r}".format(count - 1, await nodes[-1].get(key)))

    await nodes[1].put_immutable(b"a value named by its hash")
    found = await nodes[2].get(immutable_key(b"a value named by its hash"))
    print("node 2 reads the immutable value: {!r}".format(found))

    owner = nodes[3]
    await owner.put_signed(b"version one", salt=b"profile")
    await owner.put_signed(b"version two", salt=b"profile")
    latest = await nodes[4 % count].get_signed(owner.identity.public_key, b"profile")
    assert latest is not None
    print("node {} reads signed seq {}: {!r}".format(4 % count, latest.seq, latest.value))
    try:
        await owner.put_signed(b"stale write", salt=b"profile", expected_seq=1)
    except CASMismatch as e:
        print("compare-and-swap on seq 1 refused: {}".format(e))
    else:
        raise SystemExit("a stale compare-and-swap was accepted")

    # Restart one replica of 'greeting' from its file, on the same port.
    holder = next(n for n in nodes if n.store.get(key) is not None)
    index = nodes.index(holder)
    port = ports[index].getHost().port
    await stop_node(holder, ports[index])
    nodes[index], ports[index] = start_node(
        reactor, overlay, data / "node{}.sqlite".format(index), holder.identity, port
    )
    entry = nodes[index].store.get(key)
    print(
        "node {} restarted from its SQLite file and still holds {!r}".format(
            index, None if entry is None else entry.record.value
        )
    )
    if entry is None:
        raise SystemExit("the restarted node lost its record")
    print("node {} reads {!r} again".format(count - 1, await nodes[-1].get(key)))
    for node, listening in zip(nodes, ports, strict=True):
        await stop_node(node, listening)


def run(reactor: IReactorTime, *argv: str) -> defer.Deferred[None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=6, help="how many nodes (4-100, default 6)")
    parser.add_argument(
        "--replication", type=int, default=3, help="nodes per value (1 to --nodes, default 3)"
    )
    args = parser.parse_args(argv)
    if not 4 <= args.nodes <= 100:
        parser.error("--nodes must be between 4 and 100")
    if not 1 <= args.replication <= args.nodes:
        parser.error("--replication must be between 1 and --nodes")
    data = Path(tempfile.mkdtemp(prefix="dhtkit-values-"))

    def clean_up(result: object) -> object:
        shutil.rmtree(data, ignore_errors=True)
        return result

    d = defer.Deferred.fromCoroutine(main(reactor, args.nodes, args.replication, data))
    return d.addBoth(clean_up)


if __name__ == "__main__":
    task.react(run, sys.argv[1:])
