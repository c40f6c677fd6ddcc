"""One ``dhtkit sim OVERLAY`` run, in three steps: build, run, report.

:func:`build` grows the network (every node joins with its protocol's own
join messages) and puts ``lookups`` values from random nodes. :func:`run`
optionally takes a fraction of the nodes down at once, starts churn
(:mod:`dhtkit.sim.churn`: sessions of exponential length, each leaver
replaced by a newcomer that joins), and issues the lookups at random times
over a window of simulated time, each from a random live node: a lookup of
the key, then a read of the value. :func:`report` turns what happened into
the JSON ``dhtkit sim`` prints.

A lookup is *correct* when the first node it names is the live node truly
responsible for the key when it ends (:mod:`dhtkit.sim.oracle`, the global
view only the simulator has); a read *succeeds* when it returns the value
that was put. A lookup whose reader left before it ended is *abandoned* and
counted in neither. Latency is simulated time, from the start of a lookup
(or read) to its end, under the chosen latency model.

Every datagram is authenticated as on a real network (signatures for the
first exchange, MACs after), unless ``trust_sim`` says otherwise: the report
says which in ``authenticated``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall

from dhtkit.keyspace import from_int
from dhtkit.overlay import Lookup
from dhtkit.sim.churn import HOUR, SessionChurn
from dhtkit.sim.collector import park, parked
from dhtkit.sim.latency import latency_model
from dhtkit.sim.oracle import Owners
from dhtkit.sim.overlays import OverlayNetwork, SimNode
from dhtkit.sim.progress import Progress, simulated

__all__ = [
    "Built",
    "LookupRecord",
    "Scenario",
    "build",
    "join_batch",
    "put_batch",
    "report",
    "run",
    "simulate",
]

#: Lookups issued per simulated second when no window is given and there is no churn ...
DEFAULT_RATE = 100.0
#: ... or faster, so that the window lasts at most this many simulated seconds.
#: As with :data:`JOIN_ROUNDS`: every node runs its maintenance through the
#: window, so a window growing with the lookups made a run of N lookups over
#: N nodes cost as N squared (at N = 10^4 and 100 s, Chord's stabilization
#: was about half of the run's CPU). With L = N each node starts a lookup
#: every N / 100 s on average up to N = 1,000 and every 10 s beyond.
MAX_WINDOW = 10.0
#: Values are put a batch at a time, at least this many together ...
PUT_BATCH = 100
#: ... and in at most this many batches, for the reason of :data:`MAX_WINDOW`
#: (at 10^4 values in batches of 100, Chord's puts took 20-30 s of virtual time).
PUT_ROUNDS = 10
#: Bins of the window in the report's ``timeline``.
TIMELINE_BINS = 12
#: Nodes join a batch at a time, at least this many together ...
JOIN_BATCH = 25
#: ... and in at most this many batches: the virtual time a network takes to
#: grow, during which every joined node runs its maintenance timers (a Pastry
#: leaf-set round every 20 s pings its leaves), then stays about the same
#: whatever N, instead of growing with it (at N = 10^4 in batches of 25,
#: that maintenance was more datagrams than the joins themselves).
JOIN_ROUNDS = 100
#: The owner rule of each overlay (see :mod:`dhtkit.sim.oracle`).
OWNER_RULES = {"kademlia": "xor", "chord": "successor", "pastry": "numeric"}


def _window(instance: Scenario) -> float:
    if instance.churn:
        return HOUR
    return min(MAX_WINDOW, instance.lookups / DEFAULT_RATE)


@attrs.frozen
class Scenario:
    """What to simulate.

    :param kind: the overlay (a key of :data:`dhtkit.overlays.OVERLAYS`).
    :param churn: the fraction of nodes that leaves per simulated hour (0: none).
    :param remove: the fraction of nodes taken down at once before the lookups.
    :param latency: a name of :data:`dhtkit.sim.latency.LATENCY_MODELS`.
    :param rtt: the median round trip, seconds.
    :param duration: simulated seconds over which the lookups are spread
        (default: an hour under churn, else :data:`DEFAULT_RATE` per second
        over at most :data:`MAX_WINDOW` seconds).
    :param trust_sim: skip checking MACs and signatures (``--trust-sim``);
        the report then says ``"authenticated": false``.
    """

    kind: str
    nodes: int
    lookups: int
    seed: int = 1
    churn: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    remove: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    loss: float = 0.0
    latency: str = "constant"
    rtt: float = 0.02
    duration: float = attrs.field(
        default=attrs.Factory(_window, takes_self=True), validator=attrs.validators.gt(0.0)
    )
    overlay_options: Mapping[str, Any] | None = None
    trust_sim: bool = False


@attrs.define
class LookupRecord:
    """What one lookup and its read did."""

    key: bytes
    value: bytes
    #: Simulated seconds from the start of the window.
    started: float
    reader: SimNode | None = None
    ended: bool = False
    abandoned: bool = False
    looked_up: bool = False
    correct: bool = False
    hops: int = 0
    messages: int = 0
    latency: float = 0.0
    found: bool = False
    read_latency: float = 0.0


@attrs.define
class Built:
    """A grown network, its values, and the simulator's view of who is up."""

    scenario: Scenario
    net: OverlayNetwork
    values: list[tuple[bytes, bytes]]
    live: list[SimNode]
    owners: Owners
    build_s: float
    started: float
    records: list[LookupRecord] = attrs.field(factory=list)
    left: int = 0
    joined: int = 0
    run_s: float = 0.0

    def up(self, node: SimNode) -> None:
        """``node`` joined: readers and the oracle see it."""
        self.live.append(node)
        self.owners.add(node.node_id)

    def down(self, node: SimNode) -> None:
        """``node`` left."""
        self.net.take_down(node)
        self.live.remove(node)
        self.owners.remove(node.node_id)


def join_batch(nodes: int) -> int:
    """How many of ``nodes`` join together (see :data:`JOIN_ROUNDS`)."""
    return max(JOIN_BATCH, -(-nodes // JOIN_ROUNDS))


def put_batch(values: int) -> int:
    """How many of ``values`` are put together (see :data:`PUT_ROUNDS`)."""
    return max(PUT_BATCH, -(-values // PUT_ROUNDS))


def _owners(scenario: Scenario) -> Owners:
    return Owners(OWNER_RULES[scenario.kind])


def build(scenario: Scenario, progress: Progress | None = None) -> Built:
    """Grow the network and put the values."""
    started = time.perf_counter()
    net = OverlayNetwork(
        scenario.kind,
        seed=scenario.seed,
        loss=scenario.loss,
        latency=latency_model(scenario.latency, scenario.rtt),
        overlay_options=dict(scenario.overlay_options or {}),
        trusted=scenario.trust_sim,
    )

    def joined(count: int) -> None:
        if progress is not None:
            progress.advance(count - progress.done)
        # Out of the collector's passes with the rest of the network.
        park()

    if progress is not None:
        progress.stage("joined", scenario.nodes)
    net.grow(scenario.nodes, batch=join_batch(scenario.nodes), joined=joined)
    built = Built(scenario, net, [], [], _owners(scenario), 0.0, started)
    for node in net.live():
        built.up(node)
    if progress is not None:
        progress.stage("put", scenario.lookups)
    rng = net.rng
    batch = put_batch(scenario.lookups)
    for first in range(0, scenario.lookups, batch):
        puts = []
        for i in range(first, min(first + batch, scenario.lookups)):
            key, value = from_int(rng.getrandbits(160)), b"value %d" % i
            built.values.append((key, value))
            puts.append(rng.choice(built.live).node.put(key, value))
        # A put that fails shows as a failed read.
        net.wait(defer.gatherResults(puts, consumeErrors=True).addErrback(lambda _: None))
        if progress is not None:
            progress.advance(len(puts))
    park()
    built.build_s = time.perf_counter() - started
    return built


def run(built: Built, progress: Progress | None = None) -> Built:
    """Churn, then the lookups and reads over the window; fills ``built.records``."""
    scenario, net = built.scenario, built.net
    began = time.perf_counter()
    if scenario.remove:
        # One node at least stays up to look up from (round(2 * 0.9) is 2).
        count = min(round(len(built.live) * scenario.remove), len(built.live) - 1)
        for node in net.rng.sample(built.live, count):
            built.down(node)
        net.advance(net.kind.settle)
    start = net.clock.seconds()
    end = start + scenario.duration
    sessions = SessionChurn(scenario.churn) if scenario.churn else None
    timers: list[IDelayedCall] = []

    def schedule_leave(node: SimNode) -> None:
        if sessions is not None:
            delay = sessions.session(net.rng)
            if net.clock.seconds() + delay < end:
                timers.append(net.clock.callLater(delay, leave, node))

    def leave(node: SimNode) -> None:
        if not node.up or len(built.live) < 2:
            return
        built.down(node)
        built.left += 1
        newcomer = net.add_node()
        d = net.join(newcomer, built.live)

        def arrived(_: object) -> None:
            if newcomer.up:
                built.joined += 1
                built.up(newcomer)
                schedule_leave(newcomer)

        d.addCallbacks(arrived, lambda _: net.take_down(newcomer))

    for node in list(built.live):
        schedule_leave(node)
    finished: defer.Deferred[None] = defer.Deferred()
    remaining = [len(built.values)]
    ticker = None
    if progress is not None:
        progress.stage("looked up", len(built.values))
        # The lookups of a long window may be hours of simulated time apart:
        # the bar also says how far the window has gone.
        bar = progress
        ticker = task.LoopingCall(
            lambda: bar.note(simulated(net.clock.seconds() - start, scenario.duration))
        )
        ticker.clock = net.clock
        ticker.start(scenario.duration / 100, now=False)

    def ended(record: LookupRecord) -> None:
        record.ended = True
        remaining[0] -= 1
        if progress is not None:
            progress.advance()
        if not remaining[0]:
            finished.callback(None)

    offsets = sorted(net.rng.uniform(0, scenario.duration) for _ in built.values)
    for offset, (key, value) in zip(offsets, built.values, strict=True):
        record = LookupRecord(key, value, offset)
        built.records.append(record)
        net.clock.callLater(offset, _look_up, built, record, ended)
    if built.values:
        net.wait(finished, limit=scenario.duration + HOUR)
    for timer in timers:
        if timer.active():
            timer.cancel()
    if ticker is not None:
        ticker.stop()
    built.run_s = time.perf_counter() - began
    return built


def _look_up(built: Built, record: LookupRecord, ended: Any) -> None:
    net = built.net
    reader = record.reader = net.rng.choice(built.live)
    began = net.clock.seconds()

    def looked_up(lookup: Lookup) -> defer.Deferred[Any]:
        record.latency = net.clock.seconds() - began
        record.looked_up = True
        record.hops, record.messages = lookup.hops, lookup.messages
        record.correct = bool(lookup.contacts) and (
            lookup.contacts[0].node_id == built.owners.owner(record.key)
        )
        read_began = net.clock.seconds()

        def read(value: Any) -> None:
            record.read_latency = net.clock.seconds() - read_began
            record.found = value == record.value

        return reader.node.get(record.key).addCallback(read)

    def done(result: object) -> None:
        # Returning None consumes a failure: a lookup or read that fails is a miss.
        record.abandoned = not reader.up
        ended(record)

    reader.overlay.lookup(record.key, 1).addCallback(looked_up).addBoth(done)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]) if ordered else 0.0


def _ms(seconds: list[float]) -> dict[str, float]:
    # Rounded to a microsecond: the clock's float runs far from zero.
    ms = [round(s * 1000, 3) for s in seconds]
    return {
        "mean": round(statistics.fmean(ms), 3) if ms else 0.0,
        "p50": _percentile(ms, 0.5),
        "p95": _percentile(ms, 0.95),
        "p99": _percentile(ms, 0.99),
    }


def _timeline(records: list[LookupRecord], duration: float) -> list[dict[str, Any]]:
    width = duration / TIMELINE_BINS
    bins: list[list[LookupRecord]] = [[] for _ in range(TIMELINE_BINS)]
    for r in records:
        if not r.abandoned:
            bins[min(TIMELINE_BINS - 1, int(r.started / width))].append(r)
    return [
        {
            "t_s": (i + 0.5) * width,
            "lookups": len(b),
            "success_rate": sum(r.found for r in b) / len(b) if b else None,
            "latency_ms_p50": _percentile(
                [round(r.latency * 1000, 3) for r in b if r.looked_up], 0.5
            )
            if any(r.looked_up for r in b)
            else None,
        }
        for i, b in enumerate(bins)
    ]


def report(built: Built) -> dict[str, Any]:
    """The JSON ``dhtkit sim OVERLAY`` prints."""
    scenario, net = built.scenario, built.net
    counted = [r for r in built.records if not r.abandoned]
    done = [r for r in counted if r.looked_up]
    hops = [r.hops for r in done]
    histogram: dict[str, int] = {}
    for h in sorted(hops):
        histogram[str(h)] = histogram.get(str(h), 0) + 1
    count = max(len(counted), 1)
    label, value = net.kind.theory(scenario.nodes)
    return {
        "overlay": scenario.kind,
        "nodes": scenario.nodes,
        "lookups": len(built.values),
        "seed": scenario.seed,
        "churn": scenario.churn,
        "remove": scenario.remove,
        "loss": scenario.loss,
        "authenticated": not scenario.trust_sim,
        "latency_model": {"name": scenario.latency, "rtt_ms": scenario.rtt * 1000},
        "window_s_simulated": scenario.duration,
        "settle_s_simulated": net.settled_after,
        "success_rate": sum(r.found for r in counted) / count,
        "correct_rate": sum(r.correct for r in counted) / count,
        "abandoned": len(built.records) - len(counted),
        "hops": {
            "mean": statistics.fmean(hops) if hops else 0.0,
            "p50": _percentile([float(h) for h in hops], 0.5),
            "p95": _percentile([float(h) for h in hops], 0.95),
            "max": max(hops, default=0),
        },
        "hop_histogram": histogram,
        "latency_ms": _ms([r.latency for r in done]),
        "read_latency_ms": _ms([r.read_latency for r in counted if r.found]),
        "theory": {"label": label, "hops": value},
        "messages_per_lookup": statistics.fmean(r.messages for r in done) if done else 0.0,
        "datagrams": net.network.counters.get("sent", 0),
        "left": built.left,
        "joined": built.joined,
        "join_failures": net.join_failures,
        "timeline": _timeline(built.records, scenario.duration),
        "build_s": built.build_s,
        "run_s": built.run_s,
        "wall_s": time.perf_counter() - built.started,
    }


def simulate(scenario: Scenario, progress: Progress | None = None) -> dict[str, Any]:
    """Build, run and report one scenario."""
    with parked():
        return report(run(build(scenario, progress), progress))
