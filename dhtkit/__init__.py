"""dhtkit: distributed hash tables and gossip for Twisted."""

from dhtkit.identity import Identity, IdentityError
from dhtkit.keyspace import key_for

__version__ = "0.1.0"

__all__ = ["Identity", "IdentityError", "__version__", "key_for"]
