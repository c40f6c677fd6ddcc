"""Whether a Chord ring has settled, from the global view only a simulator has.

A node cannot know that the ring around it is right; a simulator, which
sees every node, can. The ring has settled when every node's successor
list holds the nodes that truly follow it and its predecessor list those
that truly precede it, in order: lookups then end at the true successor
of every key (a lookup's answer comes from successor pointers), a value is
stored on, and read from, the nodes truly responsible for it, and each of
them can tell who else holds it (:meth:`~dhtkit.chord.ChordOverlay.holds`,
which reads the whole successor list: a stale tail that wraps round to the
predecessors reads as a whole small ring). Fingers only shorten the way
and are not checked.

The simulator lets a grown ring settle until this holds
(:meth:`~dhtkit.sim.overlays.OverlayNetwork.settle`), not a fixed time.
"""

from __future__ import annotations

from collections.abc import Sequence

from dhtkit.chord.overlay import ChordOverlay
from dhtkit.overlay import IRoutingOverlay


def settled(overlays: Sequence[IRoutingOverlay]) -> bool:
    """Whether every one of ``overlays`` (the live nodes of one ring) has its
    successor and predecessor lists right; False for any overlay but Chord."""
    nodes = [o for o in overlays if isinstance(o, ChordOverlay)]
    if len(nodes) != len(overlays):
        return False
    nodes.sort(key=lambda o: o.node_id)
    count = len(nodes)
    for i, overlay in enumerate(nodes):
        state = overlay.state
        after = min(state.successors.size, count - 1)
        if state.successors.ids() != [nodes[(i + j) % count].node_id for j in range(1, after + 1)]:
            return False
        before = min(state.predecessor_list_size, count - 1)
        behind = [c.node_id for c in state.predecessors]
        if behind != [nodes[(i - j) % count].node_id for j in range(1, before + 1)]:
            return False
    return True
