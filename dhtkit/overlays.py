"""The one registry of overlays: what the daemon, the demo, the simulator and the tests run.

Each :class:`OverlayEntry` names an overlay and says everything the rest of
dhtkit needs to know about it: the class that builds it, its service, its
options (each stated once, with its range; the default is the overlay
class's own), how ``--replication`` maps onto it, whom the simulator holds
responsible for a key, what the published analysis says of its hops, how
long it takes to settle, and its memory per simulated node. Adding an
overlay is one package plus one entry in :data:`OVERLAYS`.

This module sits above the overlays (it imports them) and below the
services and surfaces (which read it); the service classes are named by
their dotted path and imported when asked for, so nothing here imports a
service.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from dhtkit.chord import ChordOverlay
from dhtkit.chord import overlay as chord_overlay
from dhtkit.chord.messages import MAX_SUCCESSORS
from dhtkit.chord.settled import settled as chord_settled
from dhtkit.identity import MAX_PUZZLE_BITS
from dhtkit.kademlia import KademliaOverlay
from dhtkit.kademlia import overlay as kademlia_overlay
from dhtkit.keyspace import distance, numerically_closest_first, ring_distance
from dhtkit.overlay import IRoutingOverlay
from dhtkit.pastry import PastryOverlay
from dhtkit.pastry import overlay as pastry_overlay
from dhtkit.pastry.digits import DIGIT_BITS_ALLOWED
from dhtkit.pastry.leafset import MAX_LEAF
from dhtkit.pastry.messages import MAX_COUNT
from dhtkit.pastry.settled import settled as pastry_settled

if TYPE_CHECKING:
    from dhtkit.service import OverlayService

#: The hardest static puzzle the daemon accepts: about 2**20 key
#: generations (a minute or so) for a new node, more is a typo.
PUZZLE_BITS_LIMIT = min(20, MAX_PUZZLE_BITS)


@attrs.frozen
class Option:
    """One whole-number option of an overlay, as ``twistd dhtkit`` spells it.

    :param flag: the long option (``--{flag}``).
    :param keyword: the overlay's (and its service's) keyword argument.
    :param low: the smallest value allowed.
    :param high: the largest value allowed.
    :param help: what it is, for ``--help``.
    :param choices: the only values allowed, when not every one from ``low`` to ``high`` is.
    :param short: a one-letter option, if it has one.
    """

    flag: str
    keyword: str
    low: int
    high: int
    help: str
    choices: tuple[int, ...] = ()
    short: str | None = None


@attrs.frozen
class Replication:
    """How ``--replication`` (the nodes each value is stored on) maps onto an overlay.

    :param default: the replication, given the overlay's option values (by keyword).
    :param most: the largest replication the overlay allows, given the same.
    :param keyword: where it goes: the overlay's keyword argument, or
        ``"replication"`` with ``to_node`` for the value layer's.
    :param to_node: the value layer (:class:`~dhtkit.node.DHTNode`) takes it,
        not the overlay.
    :param help: the default in words, for ``--help``.
    """

    default: Callable[[Mapping[str, int]], int]
    most: Callable[[Mapping[str, int]], int]
    keyword: str
    to_node: bool
    help: str


@attrs.frozen
class OverlayEntry:
    """One overlay, as the daemon, the demo, the simulator and the tests see it."""

    #: ``--protocol`` and ``dhtkit sim`` name it so.
    name: str
    #: Builds the overlay: ``factory(rpc, clock=, rng=, **options)``.
    factory: Callable[..., IRoutingOverlay]
    #: The dotted name of its :class:`~dhtkit.service.OverlayService`.
    service_path: str
    options: tuple[Option, ...]
    replication: Replication
    #: The node truly responsible for a key, among the given ids (the simulator's oracle).
    owner: Callable[[bytes, list[bytes]], bytes]
    #: What the published analysis says of the hops at N nodes: (label, value).
    theory: Callable[[int], tuple[str, float]]
    #: Seconds of virtual time for the overlay to settle after joins or churn.
    settle: float
    #: Peak bytes per node of a simulation, measured (at 1,000 nodes, or the
    #: largest N run) and rounded up.
    bytes_per_node: int
    #: The keys of its ``stats()`` that are levels, not event counts.
    gauges: frozenset[str]
    #: Overlay keyword arguments that make a few nodes on one machine settle
    #: within a second (the demo and the tests).
    quick: Mapping[str, float] = attrs.field(factory=dict)
    #: Whether the live nodes' overlays have settled, from the simulator's
    #: global view: a grown network settles until it holds, at most
    #: ``settle`` seconds (None: always ``settle`` seconds).
    settled: Callable[[Sequence[IRoutingOverlay]], bool] | None = None

    @property
    def title(self) -> str:
        """The name as a sentence writes it."""
        return self.name.capitalize()

    def service(self) -> type[OverlayService]:
        """Its service class."""
        module, _, name = self.service_path.rpartition(".")
        cls: type[OverlayService] = getattr(importlib.import_module(module), name)
        return cls

    def defaults(self) -> dict[str, int]:
        """Each option's default by keyword: the overlay class's own."""
        parameters = inspect.signature(self.factory).parameters
        return {o.keyword: int(parameters[o.keyword].default) for o in self.options}

    def option(self, flag: str) -> Option:
        """The option spelled ``--{flag}``."""
        for option in self.options:
            if option.flag == flag:
                return option
        raise KeyError(flag)

    def service_options(self, values: Mapping[str, int], replication: int) -> dict[str, Any]:
        """The service's keyword arguments for option ``values`` (by keyword) and a replication."""
        out: dict[str, Any] = dict(values)
        if self.replication.to_node:
            out["node_options"] = {self.replication.keyword: replication}
        else:
            out[self.replication.keyword] = replication
        return out


def _closest_by_xor(key: bytes, ids: list[bytes]) -> bytes:
    return min(ids, key=lambda node_id: distance(node_id, key))


def _successor(key: bytes, ids: list[bytes]) -> bytes:
    return min(ids, key=lambda node_id: ring_distance(key, node_id))


def _numerically_closest(key: bytes, ids: list[bytes]) -> bytes:
    return min(ids, key=numerically_closest_first(key))


def _kademlia_theory(nodes: int) -> tuple[str, float]:
    # Maymounkov and Mazieres: a lookup contacts at most ceil(log2 N) + c nodes
    # in sequence; k-buckets make the mean much lower.
    return ("bound log2 N", math.log2(nodes))


def _chord_theory(nodes: int) -> tuple[str, float]:
    # Stoica et al.: the mean path length is 1/2 log2 N.
    return ("1/2 log2 N", math.log2(nodes) / 2)


def _pastry_theory(nodes: int) -> tuple[str, float]:
    # Rowstron and Druschel: a route takes at most ceil(log_{2^b} N) hops (b = 4).
    return ("log16 N", math.log(nodes, 16))


KADEMLIA = OverlayEntry(
    name="kademlia",
    factory=KademliaOverlay,
    service_path="dhtkit.service.KademliaService",
    options=(
        Option("k", "k", 1, 64, "bucket size"),
        Option("alpha", "alpha", 1, 16, "queries in flight per lookup", short="a"),
        Option(
            "puzzle-bits",
            "puzzle_bits",
            0,
            PUZZLE_BITS_LIMIT,
            "leading zero bits of the S/Kademlia static puzzle every node id must solve "
            "to enter the routing table; a new identity is made to solve it (0: no puzzle)",
        ),
    ),
    # Kademlia stores on the k closest nodes it found: the value layer picks how many.
    replication=Replication(
        default=lambda o: o["k"],
        most=lambda o: o["k"],
        keyword="replication",
        to_node=True,
        help="k for Kademlia",
    ),
    owner=_closest_by_xor,
    theory=_kademlia_theory,
    settle=60.0,
    bytes_per_node=200_000,  # 1.7 GiB at 10,000 nodes
    gauges=kademlia_overlay.GAUGES,
)

CHORD = OverlayEntry(
    name="chord",
    factory=ChordOverlay,
    service_path="dhtkit.service.ChordService",
    options=(
        Option("successors", "successors", 1, MAX_SUCCESSORS, "length of the successor list"),
    ),
    # Chord keeps a key on its successor and the next k - 1 nodes.
    replication=Replication(
        default=lambda o: min(chord_overlay.DEFAULT_K, o["successors"]),
        most=lambda o: o["successors"],
        keyword="k",
        to_node=False,
        help="{} for Chord".format(chord_overlay.DEFAULT_K),
    ),
    owner=_successor,
    theory=_chord_theory,
    settle=60.0,
    bytes_per_node=120_000,  # 1.0 GiB at 10,000 nodes
    gauges=chord_overlay.GAUGES,
    quick={"stabilize_every": 0.1, "fix_fingers_every": 0.1},
    settled=chord_settled,
)

PASTRY = OverlayEntry(
    name="pastry",
    factory=PastryOverlay,
    service_path="dhtkit.service.PastryService",
    options=(
        Option("leaf-set", "leaf_size", 1, MAX_LEAF, "leaf-set members on each side (l)"),
        Option(
            "digit-bits",
            "digit_bits",
            min(DIGIT_BITS_ALLOWED),
            max(DIGIT_BITS_ALLOWED),
            "bits per digit of the routing table (b)",
            choices=DIGIT_BITS_ALLOWED,
        ),
    ),
    # The numerically closest node holds a key, the next closest in the leaf set its copies.
    replication=Replication(
        default=lambda o: min(pastry_overlay.DEFAULT_K, o["leaf_size"]),
        most=lambda o: min(o["leaf_size"], MAX_COUNT),
        keyword="k",
        to_node=False,
        help="{} for Pastry".format(pastry_overlay.DEFAULT_K),
    ),
    owner=_numerically_closest,
    theory=_pastry_theory,
    settle=60.0,
    bytes_per_node=110_000,  # 0.9 GiB at 10,000 nodes
    gauges=pastry_overlay.GAUGES,
    quick={"leaf_every": 0.2},
    settled=pastry_settled,
)

#: Every overlay, by name; the first is the default.
OVERLAYS: dict[str, OverlayEntry] = {e.name: e for e in (KADEMLIA, CHORD, PASTRY)}


def names() -> list[str]:
    """The overlays' names, the default first."""
    return list(OVERLAYS)


def gauges() -> frozenset[str]:
    """Every overlay's gauges (the keys of ``stats()`` that are levels)."""
    return frozenset().union(*(e.gauges for e in OVERLAYS.values()))


def protocols() -> dict[str, type[OverlayService]]:
    """Each overlay's service, by name."""
    return {name: entry.service() for name, entry in OVERLAYS.items()}
