"""Whether a Pastry network has settled, from the global view only a simulator has.

It has settled when every node's leaf set holds, on each side, the ``l``
nodes that truly lie there, nearest first
(:func:`dhtkit.ringsettled.ring_settled`): a route's last hop then reaches
the node numerically closest to its key, and a value is stored on, and
read from, the nodes truly responsible for it (PAST's replicas are the
nearest members of the leaf set). The routing table and the neighbourhood
set only shorten the way and are not checked.

The simulator lets a grown network settle until this holds
(:meth:`~dhtkit.sim.overlays.OverlayNetwork.settle`), not a fixed time.
"""

from __future__ import annotations

from collections.abc import Sequence

from dhtkit.overlay import IRoutingOverlay
from dhtkit.pastry.overlay import PastryOverlay
from dhtkit.ringsettled import ring_settled


def _sides(overlay: PastryOverlay) -> tuple[list[bytes], int, list[bytes], int]:
    leafset = overlay.state.leafset
    above = [c.node_id for c in leafset.above]
    below = [c.node_id for c in leafset.below]
    return above, leafset.size, below, leafset.size


def settled(overlays: Sequence[IRoutingOverlay]) -> bool:
    """Whether every one of ``overlays`` (the live nodes of one network) has
    both sides of its leaf set right; False for any overlay but Pastry."""
    return ring_settled(overlays, PastryOverlay, _sides)
