"""Listening on the virtual network, over every overlay, while nodes come and go."""

from __future__ import annotations

import pytest

from dhtkit.identity import Identity
from dhtkit.node import PutFailed
from dhtkit.overlay import LookupFailed
from dhtkit.sim.overlays import OVERLAYS, OverlayNetwork, SimNode
from dhtkit.values import Record

NODES = 40
VERSIONS = 10
#: Seconds between versions: more than a listener's refresh, as the module says.
EVERY = 150.0


def _put(net: OverlayNetwork, publisher: SimNode, owner: Identity, seq: int) -> None:
    # A put that fails under churn is tried again, as a publisher would.
    for _ in range(5):
        try:
            net.wait(publisher.node.put_signed(b"version %d" % seq, b"feed", owner, seq=seq))
            return
        except (PutFailed, LookupFailed):
            net.advance(10.0)
    raise AssertionError("version {} could not be put".format(seq))


@pytest.mark.parametrize("kind", sorted(OVERLAYS))
def test_a_listener_sees_every_version_in_order_under_churn(kind: str) -> None:
    net = OverlayNetwork(kind, seed=7, overlay_options={"k": 6} if kind == "kademlia" else None)
    net.grow(NODES)
    publisher, listener = net.nodes[0], net.nodes[1]
    owner = Identity(net.rng.randbytes(32))
    seen: list[Record] = []
    handle = listener.node.listen_signed(owner.public_key, b"feed", seen.append)
    assert net.wait(handle.subscribed) > 0
    first_sources = set(handle.sources)
    replaced = 0
    for seq in range(1, VERSIONS + 1):
        _put(net, publisher, owner, seq)
        # 20% of the network is replaced over the run, a node or so at a
        # time, and the nodes the listener listens to go first: its
        # responsible set changes under it.
        due = round(NODES * 0.2 * seq / VERSIONS) - replaced
        net.replace(due, spared=[publisher, listener], first=set(handle.sources))
        replaced += due
        net.advance(EVERY)
    assert replaced == NODES * 0.2
    assert [r.seq for r in seen] == list(range(1, VERSIONS + 1))
    assert [r.value for r in seen] == [b"version %d" % s for s in range(1, VERSIONS + 1)]
    # The listener moved with the responsible set: nodes it first listened
    # to went first, and it listens to live nodes only.
    live = {n.node_id for n in net.live()}
    assert first_sources - live
    assert handle.sources and set(handle.sources) <= live
    handle.cancel()
