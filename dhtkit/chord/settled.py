"""Whether a Chord ring has settled, from the global view only a simulator has.

The ring has settled when every node's successor list holds the nodes that
truly follow it and its predecessor list those that truly precede it, in
order (:func:`dhtkit.ringsettled.ring_settled`): lookups then end at the
true successor of every key (a lookup's answer comes from successor
pointers), a value is stored on, and read from, the nodes truly
responsible for it, and each of them can tell who else holds it
(:meth:`~dhtkit.chord.ChordOverlay.holds`, which reads the whole successor
list: a stale tail that wraps round to the predecessors reads as a whole
small ring). Fingers only shorten the way and are not checked.

The simulator lets a grown ring settle until this holds
(:meth:`~dhtkit.sim.overlays.OverlayNetwork.settle`), not a fixed time.
"""

from __future__ import annotations

from collections.abc import Sequence

from dhtkit.chord.overlay import ChordOverlay
from dhtkit.overlay import IRoutingOverlay
from dhtkit.ringsettled import ring_settled


def _sides(overlay: ChordOverlay) -> tuple[list[bytes], int, list[bytes], int]:
    state = overlay.state
    behind = [c.node_id for c in state.predecessors]
    return state.successors.ids(), state.successors.size, behind, state.predecessor_list_size


def settled(overlays: Sequence[IRoutingOverlay]) -> bool:
    """Whether every one of ``overlays`` (the live nodes of one ring) has its
    successor and predecessor lists right; False for any overlay but Chord."""
    return ring_settled(overlays, ChordOverlay, _sides)
