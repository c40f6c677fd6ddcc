"""Gossip on the virtual network: the real protocol in synchronous rounds.

:class:`GossipNetwork` starts N nodes, each an unchanged
:class:`~dhtkit.rpc.RPCProtocol` with its own Ed25519 identity and a
:class:`~dhtkit.gossip.protocol.GossipProtocol` on top, on one
:class:`~dhtkit.sim.network.VirtualNetwork`. Instead of each node's own
timer, the driver runs *synchronous rounds* as the analyses assume: at the
start of each round every node (in a fresh random order) runs one round of
the protocol, and the clock then runs to the next round. The latency (10 ms
by default) is much shorter than the round (1 s), so every exchange of a
round completes within it, and each answer reflects the peer's state at the
start of the round: an update learnt in a round is passed on from the next
round only.

:meth:`GossipNetwork.spread` publishes one update at a random node and
records, after each round, the fraction of nodes still susceptible (never
received it) and the fraction still spreading it, until everyone has it (SI)
or nobody spreads it any more (SIR). A network runs several rumours in turn;
every node forgets the previous one first, while the RPC layer keeps its
session keys, as a long-running network would.

Several rumours can also spread *together* (up to :data:`MAX_CONCURRENT`,
from distinct origins), as updates do in a real network, and each is then
an exact sample of a single rumour's process: a node's partner is drawn
uniformly whatever it holds, every message carries all the updates the
exchange calls for (they fit one datagram), and each update's feedback and
coins are its own. Only the partner draws are shared, which correlates the
rumours of one batch a little, while one exchange does the work of several
runs: the simulator's cost is in the exchanges, not the updates.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections import Counter
from typing import Any, cast

import attrs
from twisted.internet.interfaces import IReactorTime

from dhtkit.contact import Contact
from dhtkit.gossip.config import GossipConfig
from dhtkit.gossip.protocol import GossipProtocol
from dhtkit.gossip.sampler import ContactList
from dhtkit.gossip.update import Update
from dhtkit.identity import Identity
from dhtkit.rpc import RPCProtocol
from dhtkit.sim.clock import HeapClock
from dhtkit.sim.collector import parked
from dhtkit.sim.latency import ConstantLatency
from dhtkit.sim.network import VirtualNetwork
from dhtkit.sim.progress import Progress

#: The UDP port every simulated node listens on.
PORT = 4000
#: The topic of the simulated rumours.
TOPIC = "sim"
#: The most rumours spread together: all of them, their ids and the flags
#: still fit in one gossip message (about 130 bytes each).
MAX_CONCURRENT = 8


def host_address(n: int) -> str:
    """The IPv4 address of simulated node ``n`` (up to about 16 million)."""
    return "10.{}.{}.{}".format(n // 62500, n // 250 % 250, n % 250 + 1)


def default_max_rounds(nodes: int) -> int:
    """A bound far above what any mode needs to reach ``nodes`` nodes."""
    return 60 + 10 * math.ceil(math.log2(max(nodes, 2)))


@attrs.frozen
class GossipRun:
    """What one rumour did, round by round."""

    model: str
    mode: str
    variant: str
    k: float
    nodes: int
    seed: int
    #: SI: rounds until every node had the update; SIR: until nobody spread it.
    rounds: int
    #: Fraction of nodes that never received the update, before round 1 and
    #: after each round.
    susceptible: tuple[float, ...]
    #: Fraction of nodes spreading it (SI: holding it; SIR: infected).
    spreading: tuple[float, ...]
    #: Susceptible fraction at the end.
    residue: float
    #: Update transmissions per node (Demers' traffic m); for rumours spread
    #: together, the mean over them.
    messages_per_node: float
    #: Gossip calls made per node (shared by rumours spread together).
    exchanges_per_node: float
    #: Whether the run ended on its own (rather than at the round limit).
    complete: bool
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = attrs.asdict(self)
        out["susceptible"] = list(self.susceptible)
        out["spreading"] = list(self.spreading)
        return out


class GossipNetwork:
    """``nodes`` gossip nodes on one virtual network, run in synchronous rounds.

    :param config: every node's :class:`GossipConfig` (its timing options
        are unused: the driver runs the rounds).
    :param seed: identities, partner choices, coins, and the order of the
        nodes in each round all follow from it.
    :param latency: one-way delay of every datagram, in seconds.
    :param period: simulated seconds per round.
    :param progress: counts the nodes started, then the rounds of each spread.
    """

    def __init__(
        self,
        nodes: int,
        config: GossipConfig,
        *,
        seed: int = 1,
        latency: float = 0.01,
        period: float = 1.0,
        progress: Progress | None = None,
    ) -> None:
        if nodes < 2:
            raise ValueError("a gossip network needs at least 2 nodes")
        if not 0 <= 4 * latency < period:
            raise ValueError("an exchange (up to 4 latencies) must fit in one round")
        self.config = config
        self.seed = seed
        self.period = period
        self.progress = progress
        self.rng = random.Random(seed)
        self.clock = HeapClock(now=1_000_000.0)
        self.network = VirtualNetwork(
            cast(IReactorTime, self.clock), latency=ConstantLatency(latency), seed=seed
        )
        contacts: list[Contact] = []
        self.nodes: list[GossipProtocol] = []
        # One generator for every node's draws (transaction ids, partners,
        # coins): they need only be uniform and follow from the seed, and a
        # generator's state is 2.5 KB, two per node were a sixth of a node.
        draws = random.Random(self.rng.getrandbits(64))
        sampler = ContactList(contacts)
        if progress is not None:
            progress.stage("started", nodes)
        for n in range(nodes):
            host = host_address(n)
            reactor = self.network.reactor_for(host)
            identity = Identity(self.rng.randbytes(32))
            rpc = RPCProtocol(identity, reactor, rng=draws)
            reactor.listenUDP(PORT, rpc)
            contacts.append(Contact.from_key(identity.public_key, (host, PORT)))
            gossip = GossipProtocol(rpc, sampler, config, rng=draws)
            gossip.start(rounds=False)  # the rounds are driven from here
            self.nodes.append(gossip)
            if progress is not None and ((n + 1) % 1000 == 0 or n + 1 == nodes):
                progress.advance(n + 1 - progress.done)

    def _total(self, counter: str) -> int:
        return sum(node.counters[counter] for node in self.nodes)

    def spread(self, max_rounds: int | None = None, concurrent: int = 1) -> list[GossipRun]:
        """Publish ``concurrent`` updates at distinct random nodes; run until they settle.

        Returns one :class:`GossipRun` per update. See the module docstring
        for why rumours spread together are each an exact sample.
        """
        start = time.perf_counter()
        nodes = self.nodes
        count = len(nodes)
        if max_rounds is None:
            max_rounds = default_max_rounds(count)
        if not 1 <= concurrent <= min(MAX_CONCURRENT, count):
            raise ValueError(
                "between 1 and {} rumours can spread together".format(min(MAX_CONCURRENT, count))
            )
        # Rumours spread together: each one's messages are counted apart.
        sent_by_id: Counter[bytes] = Counter()

        def sent(updates: list[Update]) -> None:
            for update in updates:
                sent_by_id[update.update_id] += 1

        for node in nodes:
            node.state.reset()
            node.on_sent = sent if concurrent > 1 else None
        sent_before = self._total("updates_sent")
        exchanges_before = self._total("exchanges")
        ttl = min((max_rounds + 10) * self.period, self.config.max_ttl)
        ids = [
            nodes[n].state.publish(TOPIC, b"rumour", ttl=ttl).update_id
            for n in self.rng.sample(range(count), concurrent)
        ]
        sir = self.config.model == "sir"
        susceptible = [[(count - 1) / count] for _ in ids]
        spreading = [[1 / count] for _ in ids]
        finished: list[int | None] = [None for _ in ids]
        order = list(nodes)
        # Counted every round on every node: plain dict lookups, not calls.
        held = [node.state.store.by_id for node in nodes]
        hot = [node.state.rumors.counts for node in nodes if node.state.rumors is not None]
        rounds = 0
        progress = self.progress
        if progress is not None:
            progress.stage("rounds", max_rounds)
        while rounds < max_rounds and None in finished:
            rounds += 1
            if progress is not None:
                progress.advance()
            began = self.clock.seconds()
            self.rng.shuffle(order)
            for node in order:
                node.run_round()
            self.clock.run_until(began + self.period)
            for r, update_id in enumerate(ids):
                if finished[r] is not None:
                    continue
                knowing = sum(update_id in updates for updates in held)
                active = sum(update_id in counts for counts in hot) if sir else knowing
                susceptible[r].append((count - knowing) / count)
                spreading[r].append(active / count)
                if (sir and active == 0) or (not sir and knowing == count):
                    finished[r] = rounds
        if progress is not None:
            progress.finish()
        # One rumour alone: every update sent was one of its.
        total = self._total("updates_sent") - sent_before
        messages = [(sent_by_id[i] if concurrent > 1 else total) / count for i in ids]
        exchanges = (self._total("exchanges") - exchanges_before) / count
        wall_s = (time.perf_counter() - start) / concurrent
        return [
            GossipRun(
                model=self.config.model,
                mode=self.config.mode,
                variant=self.config.variant,
                k=self.config.k,
                nodes=count,
                seed=self.seed,
                rounds=rounds if done is None else done,
                susceptible=tuple(susceptible[r]),
                spreading=tuple(spreading[r]),
                residue=susceptible[r][-1],
                messages_per_node=messages[r],
                exchanges_per_node=exchanges,
                complete=done is not None,
                wall_s=wall_s,
            )
            for r, done in enumerate(finished)
        ]


def simulate(
    config: GossipConfig,
    nodes: int,
    *,
    seed: int = 1,
    runs: int = 1,
    concurrent: int = 1,
    max_rounds: int | None = None,
    latency: float = 0.01,
    progress: Progress | None = None,
) -> list[GossipRun]:
    """``runs`` rumours on one network of ``nodes`` nodes, ``concurrent`` at a time."""
    network = GossipNetwork(nodes, config, seed=seed, latency=latency, progress=progress)
    # A network of 10^5 nodes is millions of objects that live as long as the run.
    out: list[GossipRun] = []
    with parked():
        while len(out) < runs:
            out.extend(network.spread(max_rounds, min(concurrent, runs - len(out))))
    return out


def mean_curve(curves: list[tuple[float, ...]]) -> list[float]:
    """The mean of curves of unequal length, each held at its last value."""
    length = max(len(c) for c in curves)
    return [statistics.fmean(c[min(i, len(c) - 1)] for c in curves) for i in range(length)]


def summarize(runs: list[GossipRun]) -> dict[str, Any]:
    """Means over runs, in the shape ``dhtkit sim gossip --json`` prints."""
    first = runs[0]
    return {
        "model": first.model,
        "mode": first.mode,
        "variant": first.variant,
        "k": first.k,
        "nodes": first.nodes,
        "seed": first.seed,
        "runs": len(runs),
        "rounds": statistics.fmean(r.rounds for r in runs),
        "susceptible": mean_curve([r.susceptible for r in runs]),
        "spreading": mean_curve([r.spreading for r in runs]),
        "residue": statistics.fmean(r.residue for r in runs),
        "messages_per_node": statistics.fmean(r.messages_per_node for r in runs),
        "exchanges_per_node": statistics.fmean(r.exchanges_per_node for r in runs),
        "complete": all(r.complete for r in runs),
        "wall_s": sum(r.wall_s for r in runs),
        "per_run": [
            {
                "rounds": r.rounds,
                "residue": r.residue,
                "messages_per_node": r.messages_per_node,
                "complete": r.complete,
            }
            for r in runs
        ],
    }
