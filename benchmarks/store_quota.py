"""Storage exhaustion: what one source network can fill, and what honest nodes lose.

    python benchmarks/store_quota.py [--store-kib 4096] [--keys 20] [--json]

Everything runs in this process on the virtual network (no socket is
opened), through the real ``store`` RPC of a real node, so a refusal comes
from the same code a daemon runs. The store is scaled down from the
daemon's defaults (64 MiB in all, 4 MiB per publisher: a share of 1/16)
to ``--store-kib`` with the same 1/16 share, so that a run takes seconds.

1. ``exhaustion``: one attacker host (198.51.100.7) signs 900-byte values
   with ``--keys`` fresh signing keys, round robin, and stores them on the
   target until it has sent twice the store's size. Then 50 honest peers,
   each in its own network, store 4 plain values each. Reported: the
   fraction of the store the attacker holds and of honest puts refused.
2. ``loopback``: five honest nodes on 127.0.0.1 (ports 4001-4005) each
   store ``--load`` of one share in 900-byte plain values on a fresh
   target, as several daemons on one machine do under ordinary load.
   Reported: the fraction of their puts refused.
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.node import DHTNode
from dhtkit.overlay import StaticOverlay
from dhtkit.rpc import RemoteError, RPCProtocol
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.latency import ConstantLatency
from dhtkit.sim.network import VirtualNetwork
from dhtkit.storage import MemoryStore, Quota
from dhtkit.values import PlainValue, Record, SignedValue, to_wire

VALUE_SIZE = 900
SHARE_OF_STORE = 16  # the daemon's default: 4 MiB of 64 MiB


class Lab:
    """A target node and any number of peers on one virtual network."""

    def __init__(self, quota: Quota, seed: int) -> None:
        self.clock = HeapClock(now=1_800_000_000.0)
        self.network = VirtualNetwork(self.clock, latency=ConstantLatency(0.005), seed=seed)
        self.rng = random.Random(seed)
        rpc = self.peer("10.0.0.1", 4000)
        self.target = DHTNode(rpc, StaticOverlay([]), MemoryStore(quota))
        self.target.start()

    def peer(self, host: str, port: int) -> RPCProtocol:
        reactor = self.network.reactor_for(host)
        rpc = RPCProtocol(
            Identity(self.rng.randbytes(32)), reactor, timeout=1.0, rng=random.Random(1)
        )
        reactor.listenUDP(port, rpc)
        return rpc

    def store(self, rpc: RPCProtocol, record: Record) -> bool:
        """Store ``record`` on the target; whether it was accepted."""
        contact = self.target.rpc.contact
        assert contact is not None
        results: list[Any] = []
        d: defer.Deferred[Any] = rpc.call_contact(
            contact, "store", [to_wire(record), 3600, None, False]
        )
        d.addBoth(results.append)
        while not results:
            self.clock.run_until(self.clock.seconds() + 0.01)
        if isinstance(results[0], Failure):
            results[0].trap(RemoteError)
            return False
        return True

    def plain(self, name: str) -> PlainValue:
        value = name.encode().ljust(VALUE_SIZE, b".")
        return PlainValue(key_for(name), value, int(self.clock.seconds() * 1_000_000))


def make_quota(store_bytes: int) -> Quota:
    share = store_bytes // SHARE_OF_STORE
    return Quota(
        max_records=store_bytes // 100,
        max_bytes=store_bytes,
        max_records_per_publisher=share // 100,
        max_bytes_per_publisher=share,
    )


def exhaustion(store_bytes: int, keys: int, seed: int) -> dict[str, Any]:
    lab = Lab(make_quota(store_bytes), seed)
    attacker = lab.peer("198.51.100.7", 4000)
    signers = [Identity(lab.rng.randbytes(32)) for _ in range(keys)]
    sent = accepted = 0
    for n in range(2 * store_bytes // VALUE_SIZE):
        record = SignedValue.create(signers[n % keys], b"a" * VALUE_SIZE, 1, salt=b"%d" % n)
        sent += 1
        accepted += lab.store(attacker, record)
    attacker_bytes = lab.target.store.usage()[1]
    honest_refused = honest = 0
    for net in range(50):
        rpc = lab.peer("198.18.{}.1".format(net), 4000)
        for v in range(4):
            honest += 1
            honest_refused += not lab.store(rpc, lab.plain("honest {} {}".format(net, v)))
    return {
        "store_bytes": store_bytes,
        "keys": keys,
        "attacker_puts": sent,
        "attacker_accepted": accepted,
        "attacker_share_of_store": round(attacker_bytes / store_bytes, 4),
        "honest_puts": honest,
        "honest_refused_fraction": round(honest_refused / honest, 4),
    }


def loopback(store_bytes: int, load: float, seed: int) -> dict[str, Any]:
    quota = make_quota(store_bytes)
    lab = Lab(quota, seed)
    per_node = int(load * quota.max_bytes_per_publisher) // VALUE_SIZE
    nodes = [lab.peer("127.0.0.1", 4001 + n) for n in range(5)]
    refused = puts = 0
    for v in range(per_node):
        for n, rpc in enumerate(nodes):
            puts += 1
            refused += not lab.store(rpc, lab.plain("node {} value {}".format(n, v)))
    return {
        "nodes": len(nodes),
        "puts_per_node": per_node,
        "load_per_node_of_share": load,
        "refused_fraction": round(refused / puts, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-kib", type=int, default=4096, help="the store's total size")
    parser.add_argument("--keys", type=int, default=20, help="the attacker's signing keys")
    parser.add_argument(
        "--load", type=float, default=0.25, help="what each loopback node stores, in shares"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not (64 <= args.store_kib <= 65536 and 1 <= args.keys <= 10_000 and 0 < args.load <= 4):
        parser.error("--store-kib 64-65536, --keys 1-10000, --load above 0 and at most 4")
    figures = {
        "exhaustion": exhaustion(args.store_kib * 1024, args.keys, args.seed),
        "loopback": loopback(args.store_kib * 1024, args.load, args.seed),
    }
    if args.json:
        print(json.dumps(figures))
        return
    for name, result in figures.items():
        print(name)
        for field, figure in result.items():
            print("  {:28} {}".format(field, figure))


if __name__ == "__main__":
    main()
