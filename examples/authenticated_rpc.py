"""Start a small network of dhtkit nodes on 127.0.0.1 and watch them talk.

Every node gets a fresh Ed25519 identity and listens on a real UDP port.
Each newcomer introduces itself to the first node with a signed ping (it does
not know that node's key yet); the first node tells each one who else is
there; then each newcomer pings every other newcomer (it has spoken to the
first node already) with MAC'd queries under per-pair session keys. Last,
a forged datagram and a replayed one are sent to the first node, which
drops and counts them.

    python examples/authenticated_rpc.py [--nodes 8]
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.rpc import RPCProtocol


async def main(reactor: Any, nodes: int) -> None:
    protocols = [RPCProtocol(Identity.generate(), reactor) for _ in range(nodes)]
    ports = [reactor.listenUDP(0, p, interface="127.0.0.1") for p in protocols]
    first = protocols[0]
    known: dict[bytes, Contact] = {}
    first.add_listener(lambda contact: known.setdefault(contact.node_id, contact))
    first.register("peers", lambda sender, args: wire.encode_contacts(list(known.values())))
    address = ("127.0.0.1", ports[0].getHost().port)
    print("node 0 {} listening on {}:{}".format(first.identity.node_id.hex(), *address))

    for n, proto in enumerate(protocols[1:], start=1):
        contact = await proto.ping(address)  # signed: the key is not known yet
        assert contact.node_id == first.identity.node_id
        print("node {} {} joined through node 0".format(n, proto.identity.node_id.hex()))

    pings = 0
    for proto in protocols[1:]:
        bootstrap = Contact.from_key(first.identity.public_key, address)
        peers = wire.decode_contacts(await proto.call_contact(bootstrap, "peers"))
        others = [c for c in peers if c.node_id != proto.identity.node_id]
        await defer.gatherResults([proto.ping(c.address, key=c.public_key) for c in others])
        pings += len(others)
    print("{} MAC'd pings between {} nodes answered".format(pings, nodes))

    # A forged datagram (MAC of zeros, claiming node 1's key) and a replay.
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    now = int(reactor.seconds() * 1_000_000)
    body = wire.encode_body(wire.QUERY, 1, "ping", None, protocols[1].identity, now)
    raw.sendto(wire.seal(body, b"\0" * 16), address)
    replayed = wire.seal(
        body, wire.mac(body, wire.session_key(protocols[1].identity, first.identity.public_key))
    )
    raw.sendto(replayed, address)
    raw.sendto(replayed, address)
    raw.close()
    # Node 0 reads its socket in order: once a ping sent after them is
    # answered, the forged and replayed datagrams have been dealt with.
    await protocols[1].ping(address, key=first.identity.public_key)

    stats = first.stats()
    print(
        "node 0: {received} datagrams received, {queries_received} queries answered, "
        "{dropped_bad_auth} forged and {dropped_replay} replayed dropped".format(**stats)
    )
    for port in ports:
        await port.stopListening()
    if stats["dropped_bad_auth"] != 1 or stats["dropped_replay"] != 1:
        raise SystemExit("the forged or replayed datagram was not dropped")


def run(reactor: IReactorTime, *argv: str) -> defer.Deferred[None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8, help="how many nodes (2-200, default 8)")
    args = parser.parse_args(argv)
    if not 2 <= args.nodes <= 200:
        parser.error("--nodes must be between 2 and 200")
    return defer.Deferred.fromCoroutine(main(reactor, args.nodes))


if __name__ == "__main__":
    task.react(run, sys.argv[1:])
