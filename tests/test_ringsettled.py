"""ring_settled: every node lists its true neighbours on both sides, nearest first."""

from __future__ import annotations

import random

import attrs

from dhtkit.ringsettled import ring_settled


@attrs.define
class Node:
    node_id: bytes
    size: int
    after: list[bytes] = attrs.field(factory=list)
    before: list[bytes] = attrs.field(factory=list)


@attrs.define
class Other:
    node_id: bytes


def sides(node: Node) -> tuple[list[bytes], int, list[bytes], int]:
    return node.after, node.size, node.before, node.size


def ring(count: int, size: int, seed: int = 1) -> list[Node]:
    """``count`` nodes in a shuffled order, each listing its true neighbours."""
    rng = random.Random(seed)
    ids = sorted(rng.randbytes(20) for _ in range(count))
    nodes = []
    for i, node_id in enumerate(ids):
        reach = min(size, count - 1)
        after = [ids[(i + j) % count] for j in range(1, reach + 1)]
        before = [ids[(i - j) % count] for j in range(1, reach + 1)]
        nodes.append(Node(node_id, size, after, before))
    rng.shuffle(nodes)
    return nodes


def test_a_ring_whose_nodes_list_their_true_neighbours_has_settled() -> None:
    assert ring_settled(ring(12, 3), Node, sides)


def test_in_a_ring_smaller_than_the_lists_every_node_lists_every_other() -> None:
    nodes = ring(4, 8)
    assert all(len(n.after) == len(n.before) == 3 for n in nodes)
    assert ring_settled(nodes, Node, sides)
    nodes[0].after.append(nodes[0].after[0])  # one listed twice
    assert not ring_settled(nodes, Node, sides)


def test_a_missing_neighbour_on_either_side_is_not_settled() -> None:
    nodes = ring(12, 3)
    del nodes[5].after[1]
    assert not ring_settled(nodes, Node, sides)
    nodes = ring(12, 3)
    nodes[7].before = nodes[7].before[:2]
    assert not ring_settled(nodes, Node, sides)


def test_neighbours_out_of_order_are_not_settled() -> None:
    nodes = ring(12, 3)
    nodes[2].before.reverse()
    assert not ring_settled(nodes, Node, sides)


def test_a_node_of_another_kind_is_not_settled() -> None:
    nodes: list[object] = list(ring(12, 3))
    nodes.append(Other(bytes(20)))
    assert not ring_settled(nodes, Node, sides)
