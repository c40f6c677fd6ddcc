"""dhtkit: distributed hash tables and gossip for Twisted."""

from dhtkit.identity import Identity, IdentityError
from dhtkit.keyspace import key_for
from dhtkit.node import DHTNode, PutFailed
from dhtkit.service import ChordService, GossipService, KademliaService, PastryService
from dhtkit.values import SignedValue, ValueRefused

__version__ = "0.1.0"

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
    "ValueRefused",
    "__version__",
    "key_for",
]
