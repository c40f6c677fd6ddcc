"""Whether every node of a ring knows its true neighbours on both sides.

A node cannot know that the ring around it is right; a simulator, which
sees every node, can. Chord's successor and predecessor lists and Pastry's
leaf set are the same kind of state: the nodes that truly follow a node on
the ring, and those that truly precede it, nearest first. Each overlay's
``settled`` module says where its node keeps them; the check is here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar


class _Identified(Protocol):
    node_id: bytes


Node = TypeVar("Node", bound=_Identified)
#: A node's two sides: the ids it lists after it, how many it keeps there,
#: then the same before it; each list nearest first.
Sides = Callable[[Node], tuple[Sequence[bytes], int, Sequence[bytes], int]]


def ring_settled(overlays: Sequence[object], kind: type[Node], sides: Sides[Node]) -> bool:
    """Whether every one of ``overlays`` (the live nodes of one ring, all
    ``kind``) lists, on each side, the nodes that truly lie there in ring
    order: as many as it keeps, or every other node of a smaller ring."""
    nodes = [o for o in overlays if isinstance(o, kind)]
    if len(nodes) != len(overlays):
        return False
    nodes.sort(key=lambda o: o.node_id)
    ids = [o.node_id for o in nodes]
    count = len(ids)
    for i, node in enumerate(nodes):
        after, after_size, before, before_size = sides(node)
        later = min(after_size, count - 1)
        if list(after) != [ids[(i + j) % count] for j in range(1, later + 1)]:
            return False
        earlier = min(before_size, count - 1)
        if list(before) != [ids[(i - j) % count] for j in range(1, earlier + 1)]:
            return False
    return True
