"""dhtkit: distributed hash tables and gossip for Twisted.

The names below are imported when first used (PEP 562), so that ``import
dhtkit.client`` (every ``dhtkit`` command) does not load the overlays, the
storage and the services it never touches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dhtkit._version import __version__
from dhtkit.lazy import lazy_names

if TYPE_CHECKING:
    from dhtkit.identity import Identity, IdentityError
    from dhtkit.keyspace import key_for
    from dhtkit.node import DHTNode, PutFailed
    from dhtkit.service import ChordService, GossipService, KademliaService, PastryService
    from dhtkit.values import SignedValue, ValueDeleted, ValueRefused

# public name -> the module that defines it
_WHERE = {
    "ChordService": "dhtkit.service",
    "DHTNode": "dhtkit.node",
    "GossipService": "dhtkit.service",
    "Identity": "dhtkit.identity",
    "IdentityError": "dhtkit.identity",
    "KademliaService": "dhtkit.service",
    "PastryService": "dhtkit.service",
    "PutFailed": "dhtkit.node",
    "SignedValue": "dhtkit.values",
    "ValueDeleted": "dhtkit.values",
    "ValueRefused": "dhtkit.values",
    "key_for": "dhtkit.keyspace",
}

__all__ = [
    "ChordService",
    "DHTNode",
    "GossipService",
    "Identity",
    "IdentityError",
    "KademliaService",
    "PastryService",
    "PutFailed",
    "SignedValue",
    "ValueDeleted",
    "ValueRefused",
    "__version__",
    "key_for",
]


__getattr__, __dir__ = lazy_names(__name__, _WHERE)
