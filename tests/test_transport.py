"""The transport seam: what runs on the network knows :class:`~dhtkit.transport.IRPC` only.

A second transport (another wire format) must be able to carry the overlays,
the value layer and gossip without touching them, so none of them imports
the transport dhtkit ships (:mod:`dhtkit.rpc`); its errors live in
:mod:`dhtkit.rpcerrors`. Only the services (which open the socket), the
simulator and the surfaces build an :class:`~dhtkit.rpc.RPCProtocol`.
"""

from __future__ import annotations

from tests.test_web_layering import modules, within

#: Modules that build the concrete transport, and the transport itself.
BUILDERS = ("dhtkit.rpc", "dhtkit.nodesocket", "dhtkit.service", "dhtkit.gossip.service")

#: What runs on top of the seam.
ON_THE_SEAM = (
    "dhtkit.kademlia",
    "dhtkit.chord",
    "dhtkit.pastry",
    "dhtkit.gossip",
    "dhtkit.overlay",
    "dhtkit.holder",
    "dhtkit.node",
    "dhtkit.listen",
    "dhtkit.listeners",
    "dhtkit.handover",
    "dhtkit.republish",
    "dhtkit.membership",
)


def test_the_overlays_the_value_layer_and_gossip_never_import_the_concrete_transport() -> None:
    found = modules()
    checked = {
        name: sorted(t for t in targets if within(t, "dhtkit.rpc"))
        for name, targets in found.items()
        if any(within(name, package) for package in ON_THE_SEAM) and name not in BUILDERS
    }
    assert "dhtkit.kademlia.overlay" in checked and "dhtkit.gossip.protocol" in checked
    assert {name: targets for name, targets in checked.items() if targets} == {}
    # They type against the interface instead.
    for name in ("dhtkit.kademlia.overlay", "dhtkit.holder", "dhtkit.node", "dhtkit.listen"):
        assert "dhtkit.transport.IRPC" in found[name], name
