"""What a hostile peer can do to the value layer, measured on the virtual network.

    python benchmarks/hostile_values.py [--json]

Every scenario runs the real protocol code (RPC, holder, value layer,
Kademlia where an overlay is needed) on one virtual clock, in this process:

- ``lying_ttl``: one of five replicas answers ``get`` with a valid record
  whose ttl is 10**400, infinity or NaN; how many of 30 gets by an honest
  node fail, how many bad answers it counted, and how many answers its RPC
  layer dropped as malformed (a bignum is a CBOR tag, which the wire
  decoder refuses before the value layer sees it).
- ``malformed_store``: 200 malformed ``store`` calls (a non-bytes salt, a
  huge, infinite or NaN ttl, a huge expected seq, a bignum seq); bytes of
  error log they caused, how many the holder counted as refused, and how
  many datagrams the RPC layer dropped as malformed (the bignum ttl's).
- ``name_takeover``: an honest plain value under a name, then an immutable
  value whose content is that name; what the name reads as afterwards.
- ``future_write``: the largest lead (seconds) of a plain value's write time
  over the replica's clock that a replica accepts, out of 1 s ... 590 s.
- ``dead_seeds``: a Kademlia node whose table's closest contacts to a key
  are all down puts a value: replicas reported, or the error raised; and a
  node whose contacts are all down.
- ``hand_over``: a node holding 2,000 records sees a new neighbour whose id
  is next to its own (as a spoofed first contact would make it): bytes sent
  to that address in the first second and in the first minute.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from typing import Any

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import eventAsText, globalLogPublisher

from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.rpc import RPCError
from dhtkit.sim.overlays import OverlayNetwork
from dhtkit.values import ImmutableValue, PlainValue, SignedValue, to_wire
from tests.valuenet import Cluster


def lying_ttl() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, ttl in (("bignum", 10**400), ("inf", math.inf), ("nan", math.nan)):
        net = Cluster(5)
        key = key_for("k")
        net.wait(net.nodes[0].put(key, b"true"))
        liar = net.nodes[1]
        record = to_wire(liar.store.get(key).record)
        liar.rpc.register("get", lambda sender, args, r=record, t=ttl: [r, t])
        reader = net.nodes[2]
        failed = 0
        for _ in range(30):
            try:
                assert net.wait(reader.get(key)) == b"true"
            except Exception:
                failed += 1
        out[name] = {
            "gets_failed": failed,
            "of": 30,
            "bad_answers": reader.stats().get("bad_answers", 0),
            # A bignum is a CBOR tag: the RPC layer drops that answer as
            # malformed before the value layer sees it.
            "answers_dropped_malformed": reader.rpc.stats()["dropped_malformed"],
        }
    return out


def malformed_store() -> dict[str, Any]:
    net = Cluster(2)
    attacker, target = net.nodes[0], net.nodes[1]
    good = SignedValue.create(Identity(b"\x03" * 32), b"v", 1)
    wire = to_wire(good)
    bad_salt = [*wire[:2], 7, *wire[3:]]
    bad_seq = [*to_wire(PlainValue(key_for("k"), b"v", 1))[:3], 2**64 - 1]
    calls = [
        [bad_salt, 60, None, False],
        [wire, 10**400, None, False],
        [wire, math.inf, None, False],
        [wire, math.nan, None, False],
        [wire, 60, 2**64 - 1, False],
        [bad_seq, 60, None, False],
        [[0, 12345], 60, None, False],
        [[2, b"k" * 32, [], 1, b"v", b"s" * 64], 60, None, False],
    ]
    logged: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        logged.append(eventAsText(event))

    globalLogPublisher.addObserver(observe)
    sent = 0
    try:
        for n in range(200):
            try:
                net.wait(attacker.rpc.call_contact(target.rpc.contact, "store", calls[n % 8]))
            except RPCError:
                pass
            sent += 1
    finally:
        globalLogPublisher.removeObserver(observe)
    stats = target.stats()
    return {
        "stores_sent": sent,
        "log_events": len(logged),
        "log_bytes": sum(len(text) for text in logged),
        "refused_and_counted": sum(v for k, v in stats.items() if k.startswith("store_refused")),
        # The calls with a 10**400 ttl (a CBOR tag) never reach the holder:
        # the RPC layer drops each datagram (the call and its resend).
        "dropped_by_rpc_as_malformed": target.rpc.stats()["dropped_malformed"],
        "stored": len(target.store),
    }


def name_takeover() -> dict[str, Any]:
    net = Cluster(5)
    name = "alice's page"
    net.wait(net.nodes[0].put(key_for(name), b"honest"))
    attacker = net.client()
    try:
        net.wait(attacker.put_immutable(name.encode()))
        attack = "accepted"
    except Exception as e:
        attack = "refused: " + type(e).__name__
    later = "unchanged"
    try:
        net.wait(net.nodes[0].put(key_for(name), b"honest, later"))
    except Exception as e:
        later = "refused: " + type(e).__name__
    read = net.wait(net.nodes[2].get(key_for(name)))
    return {
        "immutable_put": attack,
        "honest_rewrite": later,
        "name_reads": read.decode() if read is not None else None,
        "immutable_key_is_name_key": ImmutableValue(name.encode()).key == key_for(name),
    }


def future_write() -> dict[str, Any]:
    net = Cluster(2)
    attacker, target = net.nodes[0], net.nodes[1]
    accepted = 0.0
    for lead in (1, 2, 5, 10, 30, 60, 300, 590):
        seq = int((net.clock.seconds() + lead) * 1_000_000)
        record = PlainValue(key_for("pin{}".format(lead)), b"v", seq)
        try:
            net.wait(
                attacker.rpc.call_contact(
                    target.rpc.contact, "store", [to_wire(record), 60, None, False]
                )
            )
            accepted = lead
        except RPCError:
            pass
    return {"largest_lead_accepted_s": accepted}


def _kademlia(nodes: int, seed: int) -> OverlayNetwork:
    net = OverlayNetwork("kademlia", seed=seed, overlay_options={"k": 4})
    net.grow(nodes)
    return net


def dead_seeds() -> dict[str, Any]:
    out: dict[str, Any] = {}
    net = _kademlia(40, seed=3)
    writer = net.nodes[5]
    key = key_for("dead seeds")
    seeds = writer.overlay.table.closest(key, 4)  # type: ignore[attr-defined]
    hosts = {n.contact.node_id: n for n in net.nodes}
    for contact in seeds:
        net.network.set_down(hosts[contact.node_id].host)
    try:
        out["closest_seeds_down"] = {"replicas": net.wait(writer.node.put(key, b"v"))}
    except Exception as e:
        out["closest_seeds_down"] = {"error": type(e).__name__, "message": str(e)}
    loner = net.nodes[9]
    for contact in loner.overlay.contacts():
        net.network.set_down(hosts[contact.node_id].host)
    try:
        out["every_contact_down"] = {"replicas": net.wait(loner.node.put(key_for("x"), b"v"))}
    except Exception as e:
        out["every_contact_down"] = {"error": type(e).__name__, "message": str(e)}
    return out


class _Sink(DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        self.received += len(datagram)


def hand_over() -> dict[str, Any]:
    net = Cluster(3, replication=3)
    holder = net.nodes[0]
    from dhtkit.overlay import StaticOverlay

    # The holder runs a routing overlay of one: every key is its own.
    class Routing(StaticOverlay):
        def holds(self, node_id: bytes, key: bytes, count: int) -> bool:
            return True

        def contacts(self) -> list[Contact]:
            return []

        def contact_count(self) -> int:
            return 0

    rng = random.Random(5)
    for n in range(2000):
        record = PlainValue(key_for("r{}".format(n)), rng.randbytes(900), 1)
        holder.holder.accept(holder.rpc.contact, record, 3600.0, None, False)
    sink = _Sink()
    victim = "10.99.0.1"
    net.network.reactor_for(victim).listenUDP(4000, sink)
    spoofed = Contact.from_key(Identity(b"\x09" * 32).public_key, (victim, 4000))
    holder._routing = Routing()  # what a routing overlay would do
    holder._hand_over(spoofed)
    net.advance(1.0, step=0.01)
    first_second = sink.received
    net.advance(59.0, step=0.1)
    return {
        "records_held": 2000,
        "bytes_to_victim_1s": first_second,
        "bytes_to_victim_60s": sink.received,
        "handed_over": holder.stats().get("handed_over", 0),
        "hand_over_deferred": holder.stats().get("hand_over_deferred", 0),
        "hand_over_dropped": holder.stats().get("hand_over_dropped", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {
        "lying_ttl": lying_ttl(),
        "malformed_store": malformed_store(),
        "name_takeover": name_takeover(),
        "future_write": future_write(),
        "dead_seeds": dead_seeds(),
        "hand_over": hand_over(),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, figures in results.items():
        print("{}: {}".format(name, json.dumps(figures)))


if __name__ == "__main__":
    main()
