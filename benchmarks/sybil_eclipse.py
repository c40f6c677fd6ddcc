"""Eclipse attack on Kademlia in the simulator: what 10% of the ids can stop.

Run from the repository root::

    python benchmarks/sybil_eclipse.py [--nodes 300] [--attackers 0.1] [--keys 60]
                                       [--reads 120] [--seed 1] [--json]

N nodes of the real Kademlia code run on the virtual network (dhtkit.sim),
as ``dhtkit sim kademlia`` runs them, k = 20. Honest node n has an address
of its own /24 (10.a.b.1); the attacker's nodes (10% of the ids by default)
share three /24s (10.250.{0,1,2}.x).

1. The honest nodes join and put signed values (each from a random writer,
   under its own key).
2. The attacker picks target keys (one per k of its nodes) and grinds node
   ids closer to each target than any honest node (ids are free without the
   static puzzle: about N * 4 key generations each); its nodes join honestly.
3. The attacker turns: its nodes answer ``find_node`` and ``find_value`` with
   the attacker's nodes closest to the target only (a lookup that asks them
   hears of nobody else) and never return a value (they acknowledge stores).
4. Each owner publishes a new version of its value (seq 2), from a random
   honest node.
5. Random honest readers read the targeted values, and as many other values.

Measured, for each set of defences:

- ``targeted_reads_stopped``: the fraction of reads of a targeted value that
  do not return its new version (the eclipse: the new version went to the
  attacker only, or the read met only the attacker);
- ``other_reads_stopped``: the same for the values not targeted;
- ``lookups_eclipsed``: the fraction of lookups of a targeted key (FIND_NODE,
  from a random honest node) whose result holds none of the k honest nodes
  closest to the key;
- ``attacker_share``: the mean fraction of attacker contacts in those
  lookups' results.

The defences: ``none`` (no network limit, one lookup path); ``limit`` (3
contacts per /24 in each bucket, replacement cache, lookup shortlist and
result, applied to private addresses too since the simulator uses 10.x);
``disjoint`` (signed reads over d = 3 disjoint paths); ``limit+disjoint``.
The static puzzle does not change what a fixed share of ids can do; it
changes what that share costs (see ``docs/kademlia.rst``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

from dhtkit import wire
from dhtkit.identity import Identity
from dhtkit.kademlia.diversity import UNLIMITED, NetworkLimit
from dhtkit.keyspace import distance
from dhtkit.sim.overlays import OverlayNetwork, SimNode
from dhtkit.values import signed_key

ATTACKER_NETWORKS = 3
K = 20

DEFENCES: dict[str, tuple[NetworkLimit, int]] = {
    "none": (UNLIMITED, 1),
    "limit": (NetworkLimit(limit_private=True), 1),
    "disjoint": (UNLIMITED, 3),
    "limit+disjoint": (NetworkLimit(limit_private=True), 3),
}


class AttackedNetwork(OverlayNetwork):
    """An overlay network whose nodes get the hosts the scenario gives them."""

    def __init__(self, *, attackers: int, nodes: int, **kw: Any) -> None:
        super().__init__("kademlia", **kw)
        honest = ["10.{}.{}.1".format(n // 250, n % 250) for n in range(nodes - attackers)]
        bad = [
            "10.250.{}.{}".format(j % ATTACKER_NETWORKS, j // ATTACKER_NETWORKS + 1)
            for j in range(attackers)
        ]
        self.hosts = honest + bad
        self.attacker_hosts = set(bad)
        self.identities: list[Identity] = []  # for the next nodes, else random

    def add_node(self, host: str | None = None, identity: Identity | None = None) -> SimNode:
        # The scenario's host, and its identity when it has one ready.
        if identity is None and self.identities:
            identity = self.identities.pop(0)
        return super().add_node(host or self.hosts[len(self.nodes)], identity)


def turn(attackers: list[SimNode], k: int) -> None:
    """Make the attacker's nodes answer lookups with one another only."""
    contacts = [a.contact for a in attackers]

    def closest(target: Any) -> list[bytes]:
        if type(target) is not bytes or len(target) != 20:
            return []
        ranked = sorted(contacts, key=lambda c: distance(c.node_id, target))
        return wire.encode_contacts(ranked[:k])

    for attacker in attackers:
        attacker.rpc.register("find_node", lambda sender, args: closest(args))
        attacker.rpc.register("find_value", lambda sender, args: ["nodes", closest(args)])


def grind(key: bytes, bits: int, rng: random.Random) -> Identity:
    """An identity whose id shares its first ``bits`` bits with ``key``."""
    want = int.from_bytes(key, "big") >> (160 - bits)
    while True:
        identity = Identity(rng.randbytes(32))
        if int.from_bytes(identity.node_id, "big") >> (160 - bits) == want:
            return identity


def run(defence: str, args: argparse.Namespace) -> dict[str, Any]:
    limit, paths = DEFENCES[defence]
    attackers = round(args.nodes * args.attackers)
    net = AttackedNetwork(
        attackers=attackers,
        nodes=args.nodes,
        seed=args.seed,
        overlay_options={"network_limit": limit},
        node_options={"disjoint_paths": paths},
    )
    started = time.perf_counter()
    net.grow(args.nodes - attackers)
    honest = list(net.nodes)
    honest_ids = {n.node_id for n in honest}
    rng = random.Random(args.seed + 1)
    written: list[tuple[Identity, bytes]] = []
    for i in range(args.keys):
        owner = Identity(rng.randbytes(32))
        value = b"value %d" % i
        net.wait(rng.choice(honest).node.put_signed(value, identity=owner))
        written.append((owner, value))
    # The attacker's ids: as many per target as a lookup keeps (k), each
    # closer to its target than any honest node.
    targets = written[: max(1, attackers // K)]
    bits = len(honest).bit_length() + 3
    for j in range(attackers):
        owner = targets[j % len(targets)][0]
        net.identities.append(grind(signed_key(owner.public_key), bits, rng))
    net.grow(attackers)
    bad = [n for n in net.nodes if n.host in net.attacker_hosts]
    bad_ids = {n.node_id for n in bad}
    turn(bad, K)
    for i, (owner, _) in enumerate(written):
        value = b"value %d, version 2" % i
        try:
            net.wait(rng.choice(honest).node.put_signed(value, identity=owner))
        except Exception:
            pass
        written[i] = (owner, value)
    targets = written[: len(targets)]
    others = written[len(targets) :]
    stopped = {"targeted": 0, "other": 0}
    eclipsed = 0
    shares: list[float] = []
    for i in range(args.reads):
        for kind, pool in (("targeted", targets), ("other", others)):
            owner, value = pool[i % len(pool)]
            reader = rng.choice(honest)
            try:
                found = net.wait(reader.node.get_signed(owner.public_key))
            except Exception:
                found = None
            stopped[kind] += found is None or found.value != value
            if kind == "other":
                continue
            key = signed_key(owner.public_key)
            lookup = net.wait(reader.overlay.lookup(key, K))
            truth = set(sorted(honest_ids, key=lambda n: distance(n, key))[:K])
            result = [c.node_id for c in lookup.contacts if c.node_id != reader.node_id]
            eclipsed += not truth & set(result)
            shares.append(sum(n in bad_ids for n in result) / max(len(result), 1))
    return {
        "defence": defence,
        "nodes": args.nodes,
        "attackers": attackers,
        "attacker_networks": ATTACKER_NETWORKS,
        "paths": paths,
        "per_network": limit.per_network,
        "targets": len(targets),
        "reads": args.reads,
        "targeted_reads_stopped": stopped["targeted"] / args.reads,
        "other_reads_stopped": stopped["other"] / args.reads,
        "lookups_eclipsed": eclipsed / args.reads,
        "attacker_share": statistics.fmean(shares),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--attackers", type=float, default=0.1, help="fraction of the ids")
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--reads", type=int, default=60, help="of targeted values, and of others")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--defence", choices=sorted(DEFENCES), action="append")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for defence in args.defence or list(DEFENCES):
        row = run(defence, args)
        if args.json:
            print(json.dumps(row))
        else:
            print(
                "{defence:15} reads stopped: targeted {targeted_reads_stopped:6.1%}"
                " others {other_reads_stopped:6.1%}  lookups eclipsed {lookups_eclipsed:6.1%}"
                "  attacker share of results {attacker_share:6.1%}"
                "  ({attackers} attackers in {attacker_networks} /24s, {targets} targets,"
                " {wall_s} s)".format(**row)
            )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
