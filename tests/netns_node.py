"""A dhtkit RPC node for the multi-host tests; runs inside a namespace.

netns_node.py serve HOST PORT
    listen, print "READY <node id hex>", answer until killed; besides
    ping it answers "stats" with its counters.
netns_node.py probe HOST PORT TARGET:PORT ... [--garbage] [--timeout S]
    ping every target (a signed first exchange), call each verified
    contact once more (MAC'd), optionally send a malformed datagram to
    each target first, and print one JSON object with the results and
    each reachable target's counters.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any

from twisted.internet import defer, task

from dhtkit.identity import Identity
from dhtkit.rpc import RPCProtocol, RPCTimeout


def serve(reactor: Any, host: str, port: int) -> defer.Deferred[None]:
    proto = RPCProtocol(Identity.generate(), reactor)
    proto.register("stats", lambda sender, args: proto.stats())
    reactor.listenUDP(port, proto, interface=host)
    print("READY {}".format(proto.identity.node_id.hex()), flush=True)
    return defer.Deferred()  # until the test kills us


async def probe(reactor: Any, args: argparse.Namespace) -> None:
    proto = RPCProtocol(Identity.generate(), reactor, timeout=args.timeout, retries=1)
    reactor.listenUDP(args.port, proto, interface=args.host)
    report: dict[str, Any] = {}
    for target in args.targets:
        host, port = target.rsplit(":", 1)
        address = (host, int(port))
        if args.garbage:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.bind((args.host, 0))
                raw.sendto(b"\xa1garbage", address)
        try:
            contact = await proto.ping(address)
            await proto.call_contact(contact, "ping")
            stats = await proto.call_contact(contact, "stats")
            report[target] = {"ok": True, "node_id": contact.node_id.hex(), "stats": stats}
        except RPCTimeout:
            report[target] = {"ok": False}
    print(json.dumps(report), flush=True)


def main(reactor: Any, *argv: str) -> defer.Deferred[None]:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "probe"])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("targets", nargs="*")
    parser.add_argument("--garbage", action="store_true")
    parser.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.mode == "serve":
        return serve(reactor, args.host, args.port)
    return defer.Deferred.fromCoroutine(probe(reactor, args))


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
