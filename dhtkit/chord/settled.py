"""Whether a Chord ring has settled, from the global view only a simulator has.

A node cannot know that the ring around it is right; a simulator, which
sees every node, can. The ring has settled when, at every node, the first
``k`` entries of the successor list are the ``k`` nodes that truly follow
it and the predecessor list (``k - 1`` long) holds those that truly
precede it, in order: lookups then end at the true successor of every key
(a lookup's answer comes from successor pointers), a value is stored on,
and read from, the ``k`` nodes truly responsible for it, and each of them
knows it holds it. The rest of the successor list (``r = 16`` by default,
there to survive failures) is not waited for: errors in it move back one
node per stabilize round, and at 1,000 nodes it took 38 s of virtual time
against 21 s for the rest; it goes on settling while the simulation runs.
Fingers only shorten the way and are not checked either.

The simulator lets a grown ring settle until this holds
(:meth:`~dhtkit.sim.overlays.OverlayNetwork.settle`), not a fixed time.
"""

from __future__ import annotations

from collections.abc import Sequence

from dhtkit.chord.overlay import ChordOverlay
from dhtkit.overlay import IRoutingOverlay


def settled(overlays: Sequence[IRoutingOverlay]) -> bool:
    """Whether every one of ``overlays`` (the live nodes of one ring) has the
    first ``k`` entries of its successor list and its predecessor list
    right; False for any overlay but Chord."""
    nodes = [o for o in overlays if isinstance(o, ChordOverlay)]
    if len(nodes) != len(overlays):
        return False
    nodes.sort(key=lambda o: o.node_id)
    count = len(nodes)
    for i, overlay in enumerate(nodes):
        state = overlay.state
        after = min(overlay.k, count - 1)
        if state.successors.ids()[:after] != [
            nodes[(i + j) % count].node_id for j in range(1, after + 1)
        ]:
            return False
        before = min(state.predecessor_list_size, count - 1)
        behind = [c.node_id for c in state.predecessors]
        if behind != [nodes[(i - j) % count].node_id for j in range(1, before + 1)]:
            return False
    return True
