"""Route(key): the three cases of the Pastry paper, and the no-progress guard.

At node A with shared prefix length ``p = shl(A, key)``:

1. the key is within the leaf set's range: the numerically closest of the
   leaf set and A is the destination. We answer ``done`` with the
   ``count`` closest (PAST's replica set) when they all lie inside the
   leaf set, or when A is the closest; else the closest is the next hop;
2. otherwise the table entry ``R[p][digit(key, p)]``, which shares a
   longer prefix with the key, is the next hop;
3. otherwise (the entry is empty, or known dead) any known node, in the
   leaf set, the table or M, that shares at least ``p`` digits with the key
   and is numerically closer to it than A; if there is none, A is the
   destination.

A next hop always *makes progress* (:func:`makes_progress`): it shares a
longer prefix with the key, or it is numerically closer to it. The lookup
(:mod:`~dhtkit.pastry.lookup`) applies the same rule to what each hop
names and never asks a node twice, so neither a stale table nor a lying
node can make a route go round in circles.
"""

from __future__ import annotations

from collections.abc import Collection

import attrs

from dhtkit.contact import Contact
from dhtkit.keyspace import circular_distance, circular_gap, to_int
from dhtkit.pastry.digits import Digits
from dhtkit.pastry.state import PastryState

#: Next hops named in one answer: the best, then alternatives for a dead one.
FALLBACKS = 3


@attrs.frozen
class Route:
    """Where a key goes from here.

    ``done``: we are the destination's neighbour or the destination, and
    ``contacts`` are the nodes numerically closest to the key, closest
    first. Otherwise ``contacts`` are next hops, best first.
    """

    done: bool
    contacts: list[Contact]
    case: int


def makes_progress(digits: Digits, candidate: bytes, current: bytes, key: bytes) -> bool:
    """Whether routing from ``current`` to ``candidate`` brings ``key`` nearer:
    a longer shared prefix, or a numerically closer id."""
    if digits.prefix(candidate, key) > digits.prefix(current, key):
        return True
    return circular_distance(candidate, key) < circular_distance(current, key)


def route(
    state: PastryState,
    me: Contact | None,
    key: bytes,
    count: int,
    *,
    exclude: Collection[bytes] = (),
    fallbacks: int = FALLBACKS,
) -> Route:
    """Route ``key`` one step from the node of ``state`` (its contact ``me``).

    ``exclude`` are nodes known dead, never named as a next hop.
    """
    own, digits = state.own_id, state.digits
    leafset = state.leafset
    if leafset.covers(key):
        closest = _closest(state, me, key, count, exclude)
        nearest = closest[0] if closest else None
        if nearest is None or nearest.node_id == own or leafset.inside(closest):
            return Route(True, closest, 1)
        # The closest nodes reach the edge of what we know: the node closest
        # to the key, its leaf set centred on it, knows the rest (the next
        # closest, nearer than we are, stand in for it if it fails).
        here = circular_distance(own, key)
        nearer = [
            c
            for c in _closest(state, me, key, fallbacks, exclude)
            if circular_distance(c.node_id, key) < here
        ]
        return Route(False, nearer, 1) if nearer else Route(True, closest, 1)
    hops: list[Contact] = []
    case = 3
    p = digits.prefix(own, key)
    entry = state.table.get(p, digits.digit(key, p)) if p < digits.count else None
    if entry is not None and entry.node_id not in exclude:
        hops.append(entry)
        case = 2
    # Every known node is a candidate: each id is read as a number once,
    # and what it shares with the key and how near it is are kept to sort.
    target = to_int(key)
    here = circular_gap(to_int(own), target)
    rare: list[tuple[int, int, Contact]] = []
    for c in state.contacts():
        if c.node_id in exclude or (entry is not None and c.node_id == entry.node_id):
            continue
        at = to_int(c.node_id)
        shared = digits.shared(at, target)
        gap = circular_gap(at, target)
        if shared >= p and gap < here:
            rare.append((-shared, gap, c))
    rare.sort(key=lambda r: (r[0], r[1]))
    hops += [c for _, _, c in rare[: max(0, fallbacks - len(hops))]]
    if not hops:
        return Route(True, _closest(state, me, key, count, exclude), 3)
    return Route(False, hops, case)


def _closest(
    state: PastryState, me: Contact | None, key: bytes, count: int, exclude: Collection[bytes]
) -> list[Contact]:
    pool = state.leafset.closest(key, count + len(exclude), me)
    return [c for c in pool if c.node_id not in exclude][:count]
