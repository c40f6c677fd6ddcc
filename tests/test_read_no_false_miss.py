"""A get over an overlay without FIND_VALUE never calls a value missing
while a node that may hold it has not answered (Chord, Pastry).

Views of the replica set can differ (a ring still settling, a node that
missed the put): answers without a copy from a quorum of the nodes asked
are no proof that the value is not there, so a miss waits for every node
to answer or time out. A copy ends the read as soon as the silent nodes
are hedged.
"""

from __future__ import annotations

import pytest

from dhtkit.keyspace import key_for
from dhtkit.sim.overlays import OverlayNetwork

pytestmark = pytest.mark.parametrize("kind", ["chord", "pastry"])


def test_a_copy_on_one_slow_holder_is_found_not_missed(kind: str) -> None:
    net = OverlayNetwork(kind, seed=3)
    net.grow(12, batch=4)
    net.advance(60)
    key = key_for("one copy")
    reader = net.live()[0]
    net.wait(reader.node.put(key, b"only here"))
    holders = [n for n in net.live() if n.node.store.get(key) is not None]
    keep = next(n for n in holders if n is not reader)
    for n in holders:
        if n is not keep:
            n.node.store.delete(key)  # the others missed the put
    # The holder is unreachable while the others answer (and the silent one
    # is hedged); it comes back before the call's retries give up.
    net.network.set_down(keep.host)
    d = reader.node.get(key)
    net.advance(0.5)
    net.network.set_up(keep.host)
    assert net.wait(d) == b"only here"
